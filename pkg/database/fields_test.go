package database

import (
	"encoding/base64"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// TestUnknownFieldsWarn: as in Vault, a field a path does not know is
// ignored with "Endpoint ignored these unrecognized parameters: [...]",
// on config/ as on roles/; it used to be refused.
func TestUnknownFieldsWarn(t *testing.T) {
	e := roleEnv(t)
	resp := e.must(logical.UpdateOperation, "roles/r", map[string]any{"db_name": "pg", "default_tll": "1h", "creation_statement": "x"})
	want := []string{"Endpoint ignored these unrecognized parameters: [creation_statement default_tll]"}
	if resp == nil || !reflect.DeepEqual(resp.Warnings, want) {
		t.Fatalf("resp = %#v, want warnings %q", resp, want)
	}
	if r, _ := e.b.loadRole(t.Context(), e.st, "r"); r == nil || r.DefaultTTL != 0 {
		t.Fatalf("stored role %#v", r)
	}
	resp = e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "connection_url": "postgres://{{username}}:{{password}}@h/db",
		"verify_connection": false, "conection_url": "x", "zzz": 1,
	})
	want = []string{"Endpoint ignored these unrecognized parameters: [conection_url zzz]"}
	if resp == nil || !reflect.DeepEqual(resp.Warnings, want) {
		t.Fatalf("resp = %#v, want warnings %q", resp, want)
	}
}

// TestStatementEncodingsDecodedAtWrite: a role's statements, given in base64
// or as a JSON array, are stored (and read back) as the SQL that runs.
func TestStatementEncodingsDecodedAtWrite(t *testing.T) {
	e := roleEnv(t)
	const create = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`
	const grant = `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`
	list := `["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"]`
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for name, in := range map[string]any{"json": list, "base64": b64(create + " " + grant), "base64 json": b64(list)} {
		e.must(logical.UpdateOperation, "roles/r", map[string]any{"db_name": "pg", "creation_statements": in, "revocation_statements": in})
		got := e.must(logical.ReadOperation, "roles/r", nil).Data["creation_statements"].([]string)
		want := []string{create, grant}
		if name == "base64" {
			want = []string{create + " " + grant}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: stored %q, want %q", name, got, want)
		}
	}
}

// TestUnverifiedUnparsableURLIsStored: with verify_connection=false, a
// connection_url that does not parse is stored, with a warning that quotes
// none of it (its password least of all); verified, it is refused, still
// quoting none of it.
func TestUnverifiedUnparsableURLIsStored(t *testing.T) {
	e := roleEnv(t)
	const url = "postgresql://admin:Sup3rSecretPw@db.example:notaport/app"
	data := map[string]any{"plugin_name": PluginName, "connection_url": url, "allowed_roles": "*"}
	_, err := e.do(logical.UpdateOperation, "config/pg", data)
	if err == nil || err.Error() != "error creating database object: unable to parse connection url (a postgresql:// URL): it is neither a postgres:// URL nor a keyword/value connection string that PostgreSQL's libpq rules accept" {
		t.Fatalf("verified write: %v", err)
	}
	data["verify_connection"] = "false"
	resp := e.must(logical.UpdateOperation, "config/pg", data)
	if resp == nil || len(resp.Warnings) != 2 || !strings.HasPrefix(resp.Warnings[1], "connection_url was stored unverified (verify_connection=false), but unable to parse connection url (a postgresql:// URL)") {
		t.Fatalf("resp = %#v", resp)
	}
	for _, w := range resp.Warnings {
		for _, piece := range []string{"Sup3r", "Secret", "db.example", "notaport"} {
			if strings.Contains(w, piece) {
				t.Errorf("warning quotes %q: %s", piece, w)
			}
		}
	}
	if cfg := e.storedConfig("pg"); cfg == nil || cfg.Connection.ConnectionURL != url {
		t.Fatalf("stored %#v", cfg)
	}
}

// TestValidName holds the hand-written check to the regular expression it
// replaced, Vault's ^\w(([\w.-]+)?\w)?$, over every string of up to three
// bytes from an alphabet with each class in it, and some longer ones.
func TestValidName(t *testing.T) {
	re := regexp.MustCompile(`^\w(([\w.-]+)?\w)?$`)
	alphabet := []string{"a", "Z", "0", "_", "-", ".", " ", "'", "\"", ";", "/", "é", "\x00"}
	names := []string{"", "readonly", "my-role.v2", "a..b", "-a", "a-", ".a", "a.", "x'y", "a b", "réle", strings.Repeat("a", 300)}
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		names = append(names, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			grow(prefix+c, n-1)
		}
	}
	grow("", 3)
	for _, name := range names {
		if got, want := validName(name), re.MatchString(name); got != want {
			t.Errorf("validName(%q) = %v, the regular expression says %v", name, got, want)
		}
	}
}
