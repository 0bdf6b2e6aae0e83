package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSecretsHygiene runs the seed guide's flow with every statement of
// lessor's admin role logged by PostgreSQL, then looks for each secret it
// saw — issued passwords, tokens, the admin password, the unseal key — in
// the PostgreSQL log, the audit log, everything lessor wrote to stderr, and
// the bytes of the store file. None may be there.
func TestSecretsHygiene(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	logFile := e.srv.LogFile
	var logStart int64
	if logFile == "" {
		t.Log("no PostgreSQL log known (set LESSOR_TEST_PG_LOG with LESSOR_TEST_DATABASE_URL): the server log is not searched")
	} else if fi, err := os.Stat(logFile); err != nil {
		t.Fatalf("PostgreSQL log: %v", err)
	} else {
		logStart = fi.Size()
	}
	// Scoped to the admin role: only lessor's own sessions are logged.
	e.sql("ALTER ROLE " + pgx.Identifier{e.admin}.Sanitize() + " SET log_statement = 'all'")
	e.sql("CREATE TABLE products (id int, name text)")

	var stderr strings.Builder
	run := func(args ...string) string {
		t.Helper()
		r := e.run(args...)
		stderr.WriteString(r.stderr)
		if r.code != 0 {
			t.Fatalf("lessor %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	secrets := map[string]string{"root token": e.env["LESSOR_TOKEN"], "admin password": e.adminPW}
	key, err := os.ReadFile(filepath.Join(e.env["HOME"], ".config", "lessor", "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets["unseal key"] = strings.TrimSpace(string(key))

	auditLog := filepath.Join(e.env["HOME"], "audit.log")
	run("audit", "enable", "file", "file_path="+auditLog)
	// Step 2 as the guide has it: the password inside the URL.
	run("write", "database/config/postgresql", "plugin_name=postgresql-database-plugin", "allowed_roles=readonly",
		"connection_url=postgresql://"+e.admin+":"+e.adminPW+"@"+e.serverAddr()+"/"+e.db.Name+"?sslmode=disable")
	run("read", "database/config/postgresql")
	run("write", "database/roles/readonly", "db_name=postgresql", "default_ttl=1h", "max_ttl=24h",
		"creation_statements="+`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`)
	run("policy", "write", "apps", e.writeFile("apps.hcl", "path \"database/creds/readonly\" {\n  capabilities = [\"read\"]\n}\n"))
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		}
	}
	if err := json.Unmarshal([]byte(run("token", "create", "-policy=apps", "-format=json")), &tok); err != nil {
		t.Fatal(err)
	}
	secrets["apps token"] = tok.Auth.ClientToken
	table := run("token", "create", "-policy=apps")
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "token" {
			secrets["apps token (table)"] = f[1]
		}
	}
	root := e.env["LESSOR_TOKEN"]
	e.env["LESSOR_TOKEN"] = tok.Auth.ClientToken
	var leases []string
	for i := range 3 {
		lease, user, pw := e.issue("readonly")
		if pw == "" || user == "" {
			t.Fatalf("issue %d: no credentials", i)
		}
		if err := e.srv.CanLogin(t.Context(), user, pw, e.db.Name); err != nil {
			t.Fatalf("issued user %s cannot log in: %v", user, err)
		}
		secrets["password of "+user] = pw
		leases = append(leases, lease)
	}
	field := strings.TrimSpace(run("read", "-field=password", "database/creds/readonly"))
	secrets["password from -field"] = field
	run("renew", leases[0])
	e.env["LESSOR_TOKEN"] = root
	run("lease", "revoke", leases[1])
	run("lease", "revoke", "-prefix=true", "database/creds/readonly")
	run("token", "revoke", secrets["apps token (table)"])

	sources := map[string][]byte{"lessor's stderr": []byte(stderr.String())}
	if sources["audit log"], err = os.ReadFile(auditLog); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(e.env["HOME"], ".local", "share", "lessor", "lessor.db")
	if sources["store file"], err = os.ReadFile(store); err != nil {
		t.Fatal(err)
	}
	if logFile != "" {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		pglog := b[min(logStart, int64(len(b))):]
		// The search proves nothing unless lessor's statements are there.
		for _, lease := range leases {
			if !bytes.Contains(pglog, []byte(lease)) {
				t.Fatalf("PostgreSQL log does not show lessor's statements for %s: is log_statement honoured?", lease)
			}
		}
		sources["PostgreSQL log"] = pglog
	}
	if len(sources["audit log"]) == 0 || len(sources["store file"]) == 0 {
		t.Fatal("nothing to search")
	}
	for what, secret := range secrets {
		if len(secret) < 16 {
			t.Fatalf("%s %q is too short to be the secret", what, secret)
		}
		for where, b := range sources {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s found in the %s", what, where)
			}
		}
	}
	t.Logf("searched %d secrets in %d sources (%d bytes of PostgreSQL log)", len(secrets), len(sources), len(sources["PostgreSQL log"]))
}

// hostilePayloads try to end a quote, a statement or a dollar quote, or
// are simply what PostgreSQL or a terminal would choke on.
var hostilePayloads = []string{
	`x"; CREATE ROLE pwned_dq SUPERUSER; --`,
	`x'; CREATE ROLE pwned_sq; --`,
	`x\'; CREATE ROLE pwned_bs; --`,
	`$$; CREATE ROLE pwned_dollar; $$`,
	`$a$ CREATE ROLE pwned_tag $a$`,
	`x*/ CREATE ROLE pwned_comment /*`,
	"x\n; CREATE ROLE pwned_nl; --",
	`x");CREATE TABLE pwned_table(a int);--`,
	"nul\x00byte",
	"bad\xff\xfeutf8",
	strings.Repeat("L", 5000),
	"",
}

// pwned lists anything a payload could have created.
func (e *faultEnv) pwned() string {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	defer conn.Close(e.t.Context())
	var s string
	err := conn.QueryRow(e.t.Context(), `SELECT concat_ws(',',
		(SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolname ILIKE '%pwned%'
			AND coalesce(shobj_description(oid, 'pg_authid'), '') NOT LIKE 'lessor:%'),
		(SELECT string_agg(datname, ',') FROM pg_database WHERE datname ILIKE '%pwned%'),
		(SELECT string_agg(relname, ',') FROM pg_class WHERE relname ILIKE '%pwned%'))`).Scan(&s)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// checkIssued asserts that an issue either failed and left no role or
// lease behind, or made exactly the role it printed: not a superuser,
// with lessor's comment, able to log in with the printed password.
func (e *faultEnv) checkIssued(what string, r cliResult, leasesBefore int, countLeases func() int) bool {
	e.t.Helper()
	if r.code != 0 {
		if strings.Contains(r.stderr, "panic") || r.code != 2 && r.code != 1 {
			e.t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
		// A creation that ran but failed lessor's own name check leaves
		// its lease pending for reap: the statements might have committed.
		n := countLeases()
		if n == leasesBefore+1 && strings.Contains(r.stderr, "did not create role") {
			return false
		}
		if n != leasesBefore {
			e.t.Fatalf("%s failed (%s) but left %d leases, want %d", what, strings.TrimSpace(r.stderr), n, leasesBefore)
		}
		return false
	}
	var out struct {
		Data struct{ Username, Password string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
	n := e.count(`SELECT count(*) FROM pg_roles WHERE rolname = $1 AND NOT rolsuper AND NOT rolcreaterole AND shobj_description(oid, 'pg_authid') LIKE 'lessor:%'`, out.Data.Username)
	if n != 1 {
		e.t.Fatalf("%s: issued %q, but pg_roles holds %d such roles", what, out.Data.Username, n)
	}
	if err := e.srv.CanLogin(e.t.Context(), out.Data.Username, out.Data.Password, e.db.Name); err != nil {
		e.t.Fatalf("%s: issued %q cannot log in: %v", what, out.Data.Username, err)
	}
	return true
}

// TestHostileInput feeds names, paths and display names built to break
// quoting through every field that can reach SQL or the store: each is
// refused with an error or stored and quoted safely, and the database holds
// nothing that a payload tried to create.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	e.configure(e.serverAddr(), plainCreation)
	if p := e.pwned(); p != "" {
		t.Fatalf("before: %s", p)
	}
	create := "creation_statements=@" + filepath.Join(e.env["HOME"], "create.sql")
	issuedRoles := 0

	// Role and connection names are path segments checked against a
	// strict pattern: every payload is refused, nothing is stored.
	validName := regexp.MustCompile(`^[A-Za-z0-9_.-]*$`)
	for _, p := range hostilePayloads {
		if validName.MatchString(p) {
			continue // the long and the empty payload: harmless names
		}
		// "invalid path": the core refuses a path with an empty segment or
		// a segment with white space around it before any backend.
		e.fails(2, `invalid name|invalid path|unsupported path|no handler`, "write", "database/roles/"+p+"x", "db_name=pg", create)
		e.fails(2, `invalid name|invalid path|unsupported path|no handler`, "write", "database/config/"+p+"x",
			"plugin_name=postgresql-database-plugin", "connection_url=postgres://x@127.0.0.1/x", "verify_connection=false")
		e.fails(2, `invalid name|invalid path|unsupported path|no handler|unknown role`, "read", "database/creds/"+p+"x")
	}
	if got := e.must("list", "-format=json", "database/roles"); got != "[\n  \"r\"\n]\n" {
		t.Fatalf("roles after hostile names:\n%s", got)
	}
	if got := e.must("list", "-format=json", "database/config"); got != "[\n  \"pg\"\n]\n" {
		t.Fatalf("connections after hostile names:\n%s", got)
	}

	// Policy names never reach SQL; one that is stored reads back exactly.
	const policy = "path \"database/creds/r\" {\n  capabilities = [\"read\"]\n}\n"
	body := e.writeFile("p.hcl", policy)
	for _, p := range hostilePayloads {
		if r := e.run("policy", "write", p, body); r.code == 0 {
			if got := e.must("policy", "read", p); got != policy {
				t.Fatalf("policy %q reads back as %q", p, got)
			}
			e.must("policy", "delete", p)
		} else if r.code != 1 && r.code != 2 {
			t.Fatalf("policy write %q: exit %d: %s", p, r.code, r.stderr)
		}
	}

	// Creation statements that place {{name}} as an identifier, in
	// literals and E'' strings, in a dollar-quoted body, in comments, and
	// bare.
	templates := map[string]string{
		"identifier": plainCreation,
		"unquoted":   `CREATE ROLE {{name}} WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		"literal":    plainCreation + ` SELECT '{{name}}', E'{{name}}';`,
		"dollar":     `DO $$ BEGIN EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L VALID UNTIL %L', '{{name}}', '{{password}}', '{{expiration}}'); END $$;`,
		"comment":    plainCreation + ` /* {{name}} */ -- {{name}}`,
	}
	e.must("write", "database/config/pg", `username_template={{ printf "%s-%s" (.DisplayName | truncate 40) (random 8) }}`)
	// Display names go into usernames.
	e.must("policy", "write", "issue", body)
	leases := 0
	root := e.env["LESSOR_TOKEN"]
	defer func() { e.env["LESSOR_TOKEN"] = root }()
	for _, tname := range []string{"identifier", "unquoted"} {
		e.must("write", "database/roles/r", "db_name=pg", "creation_statements="+templates[tname])
		for i, p := range hostilePayloads {
			e.env["LESSOR_TOKEN"] = root
			r := e.run("token", "create", "-display-name="+p, "-policy=issue", "-field=token")
			if r.code != 0 {
				t.Logf("display name %q refused: %s", p, strings.TrimSpace(r.stderr))
				continue
			}
			e.env["LESSOR_TOKEN"] = strings.TrimSpace(r.stdout)
			r = e.run("read", "-format=json", "database/creds/r")
			what := fmt.Sprintf("template %s, payload %d", tname, i)
			e.env["LESSOR_TOKEN"] = root
			if e.checkIssued(what, r, leases, e.leaseCount) {
				issuedRoles++
			}
			leases = e.leaseCount()
		}
	}

	// Token display names are reduced to letters, digits and "-" before
	// they reach a username, so the payloads above arrive defanged (two
	// placements suffice to show it). A username template is where raw
	// text reaches {{name}}: each payload as the template itself, under
	// every creation template.
	for tname, tmpl := range templates {
		e.must("write", "database/roles/r", "db_name=pg", "creation_statements="+tmpl)
		for i, p := range hostilePayloads {
			if r := e.run("write", "database/config/pg", "username_template="+p+"{{random 4}}"); r.code != 0 {
				continue // refused at config time (too long, NUL)
			}
			r := e.run("read", "-format=json", "database/creds/r")
			if e.checkIssued(fmt.Sprintf("username template %d, creation %s", i, tname), r, leases, e.leaseCount) {
				issuedRoles++
			}
			leases = e.leaseCount()
		}
	}

	// Mount paths end up in lease ids, which lessor writes into each
	// role's COMMENT.
	for i, p := range hostilePayloads {
		if p == "" {
			continue
		}
		if r := e.run("secrets", "enable", "-path="+p, "database"); r.code != 0 {
			continue
		}
		mount := strings.TrimSuffix(p, "/")
		e.must("write", mount+"/config/pg", "plugin_name=postgresql-database-plugin", "allowed_roles=*",
			"connection_url=postgres://{{username}}:{{password}}@"+e.serverAddr()+"/"+e.db.Name+"?sslmode=disable",
			"username="+e.admin, "password=@"+e.adminFile)
		e.must("write", mount+"/roles/r", "db_name=pg", "creation_statements="+plainCreation)
		r := e.run("read", "-format=json", mount+"/creds/r")
		if e.checkIssued(fmt.Sprintf("mount %d", i), r, 0, func() int { return 0 }) {
			issuedRoles++
		}
	}
	t.Logf("%d hostile issues made a role, the rest were refused", issuedRoles)
	if p := e.pwned(); p != "" {
		t.Fatalf("hostile input created: %s", p)
	}
}
