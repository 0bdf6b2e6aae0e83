package database

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
)

func TestCredsIssue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(map[string]any{"allowed_roles": "readonly,capped"})
	e.writeRole("readonly", nil)

	resp := e.issue("readonly")
	user, _ := resp.Data["username"].(string)
	pass, _ := resp.Data["password"].(string)
	if len(resp.Data) != 2 {
		t.Fatalf("data = %v, want only username and password", resp.Data)
	}
	userRE := regexp.MustCompile(fmt.Sprintf(`^v-%s-readonly-[A-Za-z0-9]{20}-%d$`, e.display, e.sys.now.Unix()))
	if !userRE.MatchString(user) {
		t.Fatalf("username %q does not match %s", user, userRE)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9-]{20}$`).MatchString(pass) {
		t.Fatalf("password %q is not 20 characters of [A-Za-z0-9-]", pass)
	}
	wantSecret := logical.Secret{LeaseID: "database/creds/readonly/lease001", TTL: time.Hour, Renewable: true}
	if resp.Secret == nil || *resp.Secret != wantSecret || resp.Warnings != nil {
		t.Fatalf("secret = %+v, warnings %v; want %+v", resp.Secret, resp.Warnings, wantSecret)
	}

	// PostgreSQL: the credential works, a wrong password does not.
	if err := e.srv.CanLogin(ctx, user, pass, e.db.Name); err != nil {
		t.Fatalf("issued credential cannot log in: %v", err)
	}
	if err := e.srv.CanLogin(ctx, user, pass+"x", e.db.Name); err == nil {
		t.Fatal("issued role accepts a wrong password")
	}

	le := e.leases.get(t, wantSecret.LeaseID)
	role := e.pgRole(user)
	if role == nil || role.validUntil == nil {
		t.Fatalf("role %s: %+v, want one with VALID UNTIL", user, role)
	}
	wantUntil := le.expire.Add(5 * time.Second)
	if d := role.validUntil.Sub(wantUntil); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("rolvaliduntil = %s, want %s ±2s", role.validUntil.UTC(), wantUntil)
	}
	if role.comment == nil {
		t.Fatalf("role %s has no comment", user)
	}
	meta, err := ParseRoleComment(*role.comment)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := RoleMetadata{StoreID: e.sys.storeID, LeaseID: wantSecret.LeaseID, Expires: le.expire.UTC()}
	if meta != wantMeta {
		t.Fatalf("comment %q parses to %+v, want %+v", *role.comment, meta, wantMeta)
	}
	wantInternal := fmt.Sprintf(`{"db_name":"pg","renew_statements":[],"revocation_statements":[],"role":"readonly","username":%q}`, user)
	if g := jsonOf(t, le.internalData); g != wantInternal {
		t.Fatalf("internal data = %s, want %s", g, wantInternal)
	}

	// A second read is a second, different credential under a new lease.
	resp2 := e.issue("readonly")
	if resp2.Data["username"] == user || resp2.Data["password"] == pass {
		t.Fatalf("second read reused a credential: %v", resp2.Data)
	}
	if resp2.Secret.LeaseID != "database/creds/readonly/lease002" {
		t.Fatalf("second lease id = %s", resp2.Secret.LeaseID)
	}
	if n := len(e.pgRoles()); n != 2 {
		t.Fatalf("%d roles in PostgreSQL after two reads, want 2", n)
	}

	// A default_ttl above max_ttl is capped, with Vault's warning.
	e.writeRole("capped", map[string]any{"default_ttl": "48h", "max_ttl": 86400})
	resp3 := e.issue("capped")
	wantWarn := `["TTL of \"48h\" exceeded the effective max_ttl of \"24h\"; TTL value is capped accordingly"]`
	if resp3.Secret.TTL != 24*time.Hour || jsonOf(t, resp3.Warnings) != wantWarn {
		t.Fatalf("capped: ttl %s, warnings %v", resp3.Secret.TTL, resp3.Warnings)
	}
}

func TestCredsRefusedLeaveNothing(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": []any{"readonly", "dev-*", "badsql", "empty", "nodb"}})
	e.must(logical.UpdateOperation, "config/closed", map[string]any{
		"plugin_name": PluginName, "connection_url": e.templatedURL(),
		"username": e.srv.User, "password": e.srv.Password,
	})
	e.must(logical.UpdateOperation, "config/down", map[string]any{
		"plugin_name": PluginName, "verify_connection": false, "allowed_roles": "*",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/x?sslmode=disable", freePort(t)),
		"username":       e.srv.User, "password": e.srv.Password,
	})
	e.writeRole("other", nil)
	e.writeRole("dev-x", nil)
	e.writeRole("closedrole", map[string]any{"db_name": "closed"})
	e.writeRole("downrole", map[string]any{"db_name": "down"})
	e.writeRole("nodb", map[string]any{"db_name": "missing"})
	e.writeRole("empty", map[string]any{"creation_statements": []any{}})
	e.writeRole("badsql", map[string]any{"creation_statements": []any{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
		`GRANT SELECT ON no_such_table TO "{{name}}"`,
	}})

	for _, tc := range []struct {
		role, want string
		status     int // 400 for a bad request, 0 for a server-side failure
	}{
		{"other", `"other" is not an allowed role`, 0},
		{"closedrole", `"closedrole" is not an allowed role`, 0},
		{"nope", "unknown role: nope", 400},
		{"nodb", `failed to find entry for connection with name: "missing"`, 0},
		{"empty", "empty creation statements", 0},
		{"downrole", `connection "down": connect to 127.0.0.1:`, 0},
		{`a"b`, `invalid name "a\"b"`, 400},
		{"a;b", `invalid name "a;b"`, 400},
	} {
		t.Run(tc.role, func(t *testing.T) {
			_, err := e.do(logical.ReadOperation, "creds/"+tc.role, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant prefix %s", err, tc.want)
			}
			ce, coded := err.(*logical.CodedError)
			if (tc.status == 400) != (coded && ce.Status == 400) {
				t.Fatalf("error %v: coded=%v, want status %d", err, coded, tc.status)
			}
			if strings.Contains(err.Error(), e.srv.Password) {
				t.Fatalf("error shows the admin password: %v", err)
			}
		})
	}
	// Only the unreachable database got as far as a pending lease (the
	// connection is made while it is recorded), and it was discarded.
	if got := jsonOf(t, e.leases.discarded); e.leases.n != 1 || len(e.leases.pending) != 0 || got != `["database/creds/downrole/lease001"]` {
		t.Fatalf("refused requests prepared %d leases, left %v pending, discarded %s", e.leases.n, e.leases.pending, got)
	}

	// A glob in allowed_roles admits the role.
	e.issue("dev-x")

	// An SQL error rolls the creation back: no role, and the pending lease
	// is discarded.
	_, err := e.do(logical.ReadOperation, "creds/badsql", nil)
	want := `role "badsql": create user v-` + e.display + `-badsql-`
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), `relation "no_such_table" does not exist (SQLSTATE 42P01)`) {
		t.Fatalf("badsql error = %v", err)
	}
	if got := jsonOf(t, e.leases.discarded); got != `["database/creds/downrole/lease001","database/creds/badsql/lease003"]` {
		t.Fatalf("discarded = %s", got)
	}
	if len(e.leases.pending) != 1 {
		t.Fatalf("pending leases = %v, want only dev-x's", e.leases.pending)
	}
	roles := e.pgRoles()
	if len(roles) != 1 || !strings.HasPrefix(roles[0].name, "v-"+e.display+"-dev-x-") {
		t.Fatalf("roles in PostgreSQL = %+v, want only dev-x's", roles)
	}
}

func TestRevokeSecrets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(map[string]any{"allowed_roles": "*"})
	e.writeRole("readonly", nil)
	e.writeRole("soft", map[string]any{"revocation_statements": `ALTER ROLE "{{name}}" NOLOGIN;`})
	e.writeRole("changed", map[string]any{"revocation_statements": `ALTER ROLE "{{name}}" NOLOGIN;`})
	e.writeRole("failing", map[string]any{"revocation_statements": `DROP TABLE no_such_table`})

	r1, r2 := e.issue("readonly"), e.issue("readonly")
	soft, changed, failing := e.issue("soft"), e.issue("changed"), e.issue("failing")
	u1, u2 := r1.Data["username"].(string), r2.Data["username"].(string)

	// The issued user owns something, so a plain DROP ROLE would fail.
	owner := e.srv.Connect(t, u1, r1.Data["password"].(string), e.db.Name)
	conn := e.db.Conn(t)
	if _, err := conn.Exec(ctx, `GRANT CREATE ON SCHEMA public TO "`+u1+`"`); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `CREATE TABLE owned_by_lease (x int)`); err != nil {
		t.Fatal(err)
	}

	// soft's role is deleted, so its lease's own statements apply (the
	// role survives, unable to log in); changed's role now says DROP, and
	// the live role wins.
	e.must(logical.DeleteOperation, "roles/soft", nil)
	e.must(logical.UpdateOperation, "roles/changed", map[string]any{"revocation_statements": `DROP ROLE "{{name}}"`})

	secrets := []*logical.SecretRequest{
		e.secret(r1.Secret.LeaseID), e.secret(r2.Secret.LeaseID),
		e.secret(soft.Secret.LeaseID), e.secret(failing.Secret.LeaseID), e.secret(changed.Secret.LeaseID),
		{LeaseID: "database/creds/x/broken", InternalData: map[string]any{"role": "x"}, Storage: e.st, System: e.sys},
	}
	errs := e.b.RevokeSecrets(ctx, secrets)
	want := fmt.Sprintf(`["","","",%q,"","lease database/creds/x/broken: internal data names no username or db_name"]`,
		"revoke user "+failing.Data["username"].(string)+`: revocation statement 1: table "no_such_table" does not exist (SQLSTATE 42P01)`)
	if g := jsonOf(t, errStrings(errs)); g != want {
		t.Fatalf("errors = %s\nwant %s", g, want)
	}
	for _, u := range []string{u1, u2, changed.Data["username"].(string)} {
		if r := e.pgRole(u); r != nil {
			t.Fatalf("role %s survived revocation: %+v", u, r)
		}
	}
	if r := e.pgRole(soft.Data["username"].(string)); r == nil || r.canLogin {
		t.Fatalf("soft role after revocation = %+v, want present with NOLOGIN", r)
	}
	// What the credential created goes with it; it is never handed to
	// the admin, who could then run a credential's code with its rights.
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'owned_by_lease'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("the revoked role's table is left (%d, %v)", tables, err)
	}

	// Revoking again succeeds: the roles are already gone.
	if errs := e.b.RevokeSecrets(ctx, secrets[:2]); errs[0] != nil || errs[1] != nil {
		t.Fatalf("second revocation: %v", errs)
	}

	// Without its connection config, a lease cannot be revoked.
	r3 := e.issue("readonly")
	e.must(logical.DeleteOperation, "config/pg", nil)
	errs = e.b.RevokeSecrets(ctx, []*logical.SecretRequest{e.secret(r3.Secret.LeaseID)})
	if len(errs) != 1 || errs[0] == nil || errs[0].Error() != `failed to find entry for connection with name: "pg"` {
		t.Fatalf("revoke without config: %v", errs)
	}
}

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, err := range errs {
		if err != nil {
			out[i] = err.Error()
		}
	}
	return out
}

func TestRenewSecret(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(nil)
	e.writeRole("readonly", nil)
	resp := e.issue("readonly")
	user := resp.Data["username"].(string)
	s := e.secret(resp.Secret.LeaseID)

	ttl, maxTTL, err := e.b.SecretLimits(ctx, s)
	if err != nil || ttl != time.Hour || maxTTL != 24*time.Hour {
		t.Fatalf("SecretLimits = %s, %s, %v; want 1h, 24h", ttl, maxTTL, err)
	}

	before := *e.pgRole(user).validUntil
	expiration := e.sys.now.Add(3 * time.Hour).Truncate(time.Second)
	if err := e.b.RenewSecret(ctx, s, expiration); err != nil {
		t.Fatal(err)
	}
	after := *e.pgRole(user).validUntil
	if want := expiration.Add(5 * time.Second); !after.Equal(want) {
		t.Fatalf("rolvaliduntil after renew = %s (was %s), want %s", after.UTC(), before.UTC(), want)
	}
	if err := e.srv.CanLogin(ctx, user, resp.Data["password"].(string), e.db.Name); err != nil {
		t.Fatalf("login after renew: %v", err)
	}

	e.must(logical.DeleteOperation, "roles/readonly", nil)
	if _, _, err := e.b.SecretLimits(ctx, s); err == nil || err.Error() != `could not find role with name "readonly"` {
		t.Fatalf("SecretLimits after role delete: %v", err)
	}
	if err := e.b.RenewSecret(ctx, s, expiration); err == nil || err.Error() != `could not find role with name "readonly"` {
		t.Fatalf("RenewSecret after role delete: %v", err)
	}
}

func TestRoleComment(t *testing.T) {
	exp := time.Date(2026, 11, 26, 18, 0, 0, 0, time.FixedZone("x", 3600))
	m := RoleMetadata{StoreID: "8c1f", LeaseID: "database/creds/readonly/AbC", Expires: exp}
	c := m.Comment()
	want := `lessor:{"store":"8c1f","lease":"database/creds/readonly/AbC","expires":"2026-11-26T17:00:00Z"}`
	if c != want {
		t.Fatalf("Comment() = %s\nwant %s", c, want)
	}
	got, err := ParseRoleComment(c)
	if err != nil || got.StoreID != m.StoreID || got.LeaseID != m.LeaseID || !got.Expires.Equal(exp) || got.Expires.Location() != time.UTC {
		t.Fatalf("ParseRoleComment = %+v, %v", got, err)
	}
	for _, bad := range []struct{ in, want string }{
		{"made by hand", ErrNotLessorComment.Error()},
		{`lessor:{"store":"s"}`, "parse role comment: store or lease missing"},
		{`lessor:{"store":"s","lease":"l","expires":"soon"}`, `parse role comment: parsing time "soon" as "2006-01-02T15:04:05Z07:00": cannot parse "soon" as "2006"`},
		{`lessor:{"store":"s","lease":"l","expires":"2026-11-26T17:00:00Z","x":1}`, `parse role comment: json: unknown field "x"`},
	} {
		if _, err := ParseRoleComment(bad.in); err == nil || err.Error() != bad.want {
			t.Errorf("ParseRoleComment(%q) error = %v, want %s", bad.in, err, bad.want)
		}
	}
}

// SecretsCreated confirms a lease's role only by its comment: the role of
// this lease in this store; not a role of that name that another lease or
// store commented, nor one that does not exist.
func TestSecretsCreated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(nil)
	e.writeRole("readonly", nil)
	r1, r2, r3 := e.issue("readonly"), e.issue("readonly"), e.issue("readonly")
	s1, s2, s3 := e.secret(r1.Secret.LeaseID), e.secret(r2.Secret.LeaseID), e.secret(r3.Secret.LeaseID)
	// r2's role now names another lease; r3's role is gone.
	conn := e.db.Conn(t)
	if _, err := conn.Exec(ctx, `COMMENT ON ROLE "`+r2.Data["username"].(string)+`" IS '`+
		RoleMetadata{StoreID: e.sys.storeID, LeaseID: r1.Secret.LeaseID, Expires: time.Now()}.Comment()+`'`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DROP ROLE "`+r3.Data["username"].(string)+`"`); err != nil {
		t.Fatal(err)
	}
	// Another store's view of r1's lease: same lease id, other store.
	other := *s1
	other.System = &fakeSystem{now: time.Now(), storeID: "store-other"}
	got, err := e.b.SecretsCreated(ctx, []*logical.SecretRequest{s1, s2, s3, &other})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("SecretsCreated = %v, want %v", got, want)
	}
}

// TestCredsCreateWhileRecording: the creation runs up to its COMMIT while
// the lease is being recorded, so the two waits overlap, and nothing of
// it is committed, or seen by anyone, before the record is.
func TestCredsCreateWhileRecording(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.writeRole("readonly", nil)
	ctx := context.Background()
	watch := e.db.Conn(t)
	var inTx, committed int
	var watchErr error
	e.leases.whileRecording = func(p logical.PreparedLease) {
		// The admin connection sits in the creation's transaction, its
		// statements run, waiting for the record.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if watchErr = watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND state = 'idle in transaction'`, e.db.Name).Scan(&inTx); watchErr != nil || inTx > 0 {
				break
			}
		}
		if watchErr == nil {
			watchErr = watch.QueryRow(ctx, `SELECT count(*) FROM pg_roles
WHERE rolname LIKE 'v-' || $1 || '-%' OR shobj_description(oid, 'pg_authid') LIKE '%' || $2 || '%'`, e.display, p.ID).Scan(&committed)
		}
	}
	resp := e.issue("readonly")
	if watchErr != nil {
		t.Fatal(watchErr)
	}
	if inTx != 1 {
		t.Errorf("while the lease was recorded, %d admin connections were in the creation's transaction, want 1", inTx)
	}
	if committed != 0 {
		t.Errorf("%d roles were visible before the lease was recorded, want 0", committed)
	}
	user := resp.Data["username"].(string)
	r := e.pgRole(user)
	if r == nil || r.comment == nil || !strings.Contains(*r.comment, resp.Secret.LeaseID) {
		t.Fatalf("after the issue, role %s: %+v, want it with its lease's comment", user, r)
	}
}

// TestCredsRevokedWhileIssuing: the lease was revoked while the role was
// being created (Confirm refuses it once the role exists). The role the
// issue committed is dropped, with the role's revocation statements when
// it has some, and no credential is handed out.
func TestCredsRevokedWhileIssuing(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra map[string]any
	}{
		{"default revocation", nil},
		{"revocation statements", map[string]any{"revocation_statements": `DROP ROLE IF EXISTS "{{name}}";`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(nil)
			e.writeRole("readonly", c.extra)
			e.leases.revoked = map[string]bool{}
			e.leases.whileRecording = func(p logical.PreparedLease) {
				e.leases.mu.Lock()
				e.leases.revoked[p.ID] = true
				e.leases.mu.Unlock()
			}
			t.Cleanup(func() {
				for _, r := range e.pgRoles() {
					e.srv.DropRolesAtCleanup(t, r.name)
				}
			})
			resp, err := e.do(logical.ReadOperation, "creds/readonly", nil)
			if err == nil {
				t.Fatalf("issued a credential whose lease was revoked: %v", resp.Data)
			}
			if !errors.Is(err, logical.ErrLeaseRevoked) || !strings.HasPrefix(err.Error(), `role "readonly": lease database/creds/readonly/lease001: `) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line naming the role and the revoked lease", err)
			}
			if roles := e.pgRoles(); len(roles) != 0 {
				t.Errorf("roles left: %+v", roles)
			}
			if len(e.leases.discarded) != 0 || len(e.leases.abandoned) != 0 {
				t.Errorf("discarded %v, abandoned %v: the revoked record is its revoker's", e.leases.discarded, e.leases.abandoned)
			}
		})
	}
}

// roleWaitingOnLock defines role readonly so that its creation waits on
// advisory lock key, and holds that lock in a transaction of another
// session until the returned transaction ends (at the latest when the
// test does). Roles the test leaves are dropped.
func (e *env) roleWaitingOnLock(key int) pgx.Tx {
	t := e.t
	t.Helper()
	ctx := context.Background()
	k := strconv.Itoa(key)
	e.writeRole("readonly", map[string]any{"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; SELECT pg_catalog.pg_advisory_xact_lock(` + k + `);`})
	tx, err := e.db.Conn(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+k+`)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range e.pgRoles() {
			e.srv.DropRolesAtCleanup(t, r.name)
		}
	})
	return tx
}

// TestCredsCreatedByTheGrace: a creation statement that waits (here on a
// lock another session holds) past the time the lease manager gives the
// issuer (PreparedLease.CreateBy, a fifth of the pending grace before reap
// may take the issuer for dead) used to commit whenever it got through: a
// role reap could by then have settled as never created, with no record.
// The creation now gives up at CreateBy, commits nothing, and says why.
func TestCredsCreatedByTheGrace(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	ctx := context.Background()
	tx := e.roleWaitingOnLock(424242)
	e.leases.createWithin = 1500 * time.Millisecond
	start := time.Now()
	resp, err := e.do(logical.ReadOperation, "creds/readonly", nil)
	if err == nil {
		t.Fatalf("issued a credential past the issuer's deadline: %v", resp.Data)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the issue gave up after %v, not at its deadline", took)
	}
	if !strings.HasPrefix(err.Error(), `role "readonly": not created by `) || !strings.Contains(err.Error(), "after which reap may take this issue for dead") {
		t.Errorf("error %q, want one saying the role was not created in time", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Once the lock is gone nothing of the issue commits later.
	time.Sleep(200 * time.Millisecond)
	if roles := e.pgRoles(); len(roles) != 0 {
		t.Errorf("roles left: %+v", roles)
	}
	if len(e.leases.discarded)+len(e.leases.abandoned) != 1 {
		t.Errorf("discarded %v, abandoned %v: the pending record must be settled once", e.leases.discarded, e.leases.abandoned)
	}
}

// TestCredsErrorHidesPassword: a creation statement that quotes no
// {{password}} (allowed with password_authentication=password) fails
// with a syntax error at the password's first token; the error shows
// none of it.
func TestCredsErrorHidesPassword(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "bare", "password_authentication": "password"})
	e.writeRole("bare", map[string]any{"creation_statements": []any{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD {{password}} VALID UNTIL '{{expiration}}'`,
	}})
	bareFailures(t, 5, func() error {
		_, err := e.do(logical.ReadOperation, "creds/bare", nil)
		return err
	}, func(err error) { quotesNoPassword(t, "error", err.Error()) })
	if roles := e.pgRoles(); len(roles) != 0 {
		t.Fatalf("roles left in PostgreSQL: %+v", roles)
	}
}

// bareFailures calls try, whose statements put a generated password
// outside quotes, until PostgreSQL has refused them n times, and hands each
// of those errors to check. A password that lessor refuses to substitute
// there (see substitute.go) never reaches PostgreSQL: it is tried again.
func bareFailures(t *testing.T, n int, try func() error, check func(error)) {
	t.Helper()
	seen := 0
	for range 40 {
		err := try()
		if err == nil {
			t.Fatal("statements with a bare password succeeded")
		}
		if strings.Contains(err.Error(), "is not safe outside quotes") {
			continue
		}
		check(err)
		if seen++; seen == n {
			return
		}
	}
	if seen == 0 {
		t.Fatal("no statement reached PostgreSQL")
	}
}

// quotesNoPassword fails unless text, the error of a statement that put a
// password outside quotes, is PostgreSQL's syntax error quoting no piece
// of the password (none 4 characters or longer).
func quotesNoPassword(t *testing.T, what, text string) {
	t.Helper()
	_, near, ok := strings.Cut(text, `at or near "`)
	if !ok {
		t.Fatalf("%s = %q, want a syntax error", what, text)
	}
	if token, _, _ := strings.Cut(near, `"`); len(token) >= 4 && token != "[password]" {
		t.Fatalf("%s quotes %q, a piece of the password: %s", what, token, text)
	}
}

func TestSQLTokens(t *testing.T) {
	got := sqlTokens("ab-9AaC8-xyz_w$")
	want := []string{"ab-9AaC8-xyz_w$", "9AaC", "9AaC8", "AaC8", "xyz_", "xyz_w", "xyz_w$", "yz_w", "yz_w$", "z_w$"}
	if !slices.Equal(got, want) {
		t.Fatalf("sqlTokens = %q, want %q", got, want)
	}
	// PostgreSQL quotes "2E-x…" whole as a numeric literal's trailing
	// junk: the sign after the exponent's E does not end the piece.
	if got := sqlTokens("a-2E-xy9k-b"); !slices.Contains(got, "2E-xy9k") || !slices.Contains(got, "2E-x") {
		t.Fatalf("sqlTokens = %q, want the pieces across the exponent's sign", got)
	}
	// As PostgreSQL words it for a password "2E-5xyzAbc-q" put in bare.
	err := errors.New(`trailing junk after numeric literal at or near "2E-5xyzAbc" (SQLSTATE 42601)`)
	if got := (&dbConfig{}).redactStatements(err, "2E-5xyzAbc-q").Error(); strings.Contains(got, "2E") || strings.Contains(got, "xyz") {
		t.Fatalf("redacted: %s", got)
	}
}

// TestCredsCreatedByTheGracePooled: on a pooled connection (lessor serve)
// the creation statements after the first, COMMENT ON ROLE and COMMIT go
// to the server in one pipeline. A deadline that fires while a statement
// of it waits used to only close lessor's side of the connection: the
// server, which already held the COMMIT, committed the role once the wait
// ended, after lessor had said it created nothing and abandoned the lease
// (whose revocation, finding no role yet, deleted the record).
func TestCredsCreatedByTheGracePooled(t *testing.T) {
	e := newPooledEnv(t)
	ctx := context.Background()
	tx := e.roleWaitingOnLock(424243)
	e.leases.createWithin = 1500 * time.Millisecond
	if resp, err := e.do(logical.ReadOperation, "creds/readonly", nil); err == nil {
		t.Fatalf("issued a credential past the issuer's deadline: %v", resp.Data)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if roles := e.pgRoles(); len(roles) != 0 {
		t.Errorf("a role committed after the issue gave up at its deadline: %+v", roles)
	}
}

// TestCredsPooledResetAll: on a pooled connection the creation's deadline
// is checked on the server just before COMMENT ON ROLE. It was kept in a
// setting of the transaction, which a RESET ALL among the creation
// statements cleared: every issue of such a role from lessor serve then
// failed ("invalid input syntax for type double precision"). It is now
// counted from the transaction's start, which no statement changes.
func TestCredsPooledResetAll(t *testing.T) {
	e := newPooledEnv(t)
	e.writeRole("readonly", map[string]any{"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; RESET ALL; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`})
	// As the lease manager gives every issue (PreparedLease.CreateBy).
	e.leases.createWithin = 4 * time.Minute
	t.Cleanup(func() {
		for _, r := range e.pgRoles() {
			e.srv.DropRolesAtCleanup(t, r.name)
		}
	})
	resp, err := e.do(logical.ReadOperation, "creds/readonly", nil)
	if err != nil {
		t.Fatal(err)
	}
	user, pw := resp.Data["username"].(string), resp.Data["password"].(string)
	if r := e.pgRole(user); r == nil || !r.canLogin || r.comment == nil || !strings.Contains(*r.comment, resp.Secret.LeaseID) {
		t.Fatalf("role after the issue: %+v", r)
	}
	if res := e.login(user, pw); res != postgres.LoginAccepted {
		t.Fatalf("log in with the issued credential: %v, want accepted", res)
	}
}
