package database

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// roleEnv is a backend without PostgreSQL: roles never touch the database.
func roleEnv(t *testing.T) *env {
	sys := &fakeSystem{now: time.Now(), storeID: "s"}
	return &env{t: t, b: New(Options{}), st: storage.NewMemory(), sys: sys,
		leases: &fakeLeases{sys: sys, pending: map[string]*fakeLease{}}}
}

func TestRoleWriteReadListDelete(t *testing.T) {
	e := roleEnv(t)
	e.must(logical.CreateOperation, "roles/readonly", map[string]any{
		"db_name":             "postgresql",
		"creation_statements": ` CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"; `,
		"default_ttl":         "1h",
		"max_ttl":             "24h",
	})
	got := e.must(logical.ReadOperation, "roles/readonly", nil)
	want := `{"creation_statements":["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"],` +
		`"credential_type":"password","db_name":"postgresql","default_ttl":3600,"max_ttl":86400,` +
		`"renew_statements":[],"revocation_statements":[],"rollback_statements":[]}`
	if g := jsonOf(t, got.Data); g != want {
		t.Fatalf("read:\n got %s\nwant %s", g, want)
	}

	// An update keeps what it does not send; lists stay lists.
	e.must(logical.UpdateOperation, "roles/readonly", map[string]any{
		"revocation_statements": []any{`DROP ROLE "{{name}}"`, "  ", "SELECT 1"},
		"renew_statements":      "",
		"max_ttl":               json.Number("7200"),
	})
	got = e.must(logical.ReadOperation, "roles/readonly", nil)
	want = `{"creation_statements":["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"],` +
		`"credential_type":"password","db_name":"postgresql","default_ttl":3600,"max_ttl":7200,` +
		`"renew_statements":[],"revocation_statements":["DROP ROLE \"{{name}}\"","SELECT 1"],"rollback_statements":[]}`
	if g := jsonOf(t, got.Data); g != want {
		t.Fatalf("read after update:\n got %s\nwant %s", g, want)
	}

	e.must(logical.UpdateOperation, "roles/dev-a.b_c", map[string]any{"db_name": "pg"})
	if g := jsonOf(t, e.must(logical.ListOperation, "roles", nil).Data); g != `{"keys":["dev-a.b_c","readonly"]}` {
		t.Fatalf("list = %s", g)
	}
	e.must(logical.DeleteOperation, "roles/readonly", nil)
	if r := e.must(logical.ReadOperation, "roles/readonly", nil); r != nil {
		t.Fatalf("read after delete = %+v", r)
	}
	if g := jsonOf(t, e.must(logical.ListOperation, "roles/", nil).Data); g != `{"keys":["dev-a.b_c"]}` {
		t.Fatalf("list after delete = %s", g)
	}
}

func TestRoleBadInputStoresNothing(t *testing.T) {
	e := roleEnv(t)
	for _, tc := range []struct {
		name, path string
		data       map[string]any
		want       string
	}{
		{"no db_name", "roles/broken", map[string]any{"creation_statements": "SELECT 1"}, "database name is required"},
		{"hostile db_name", "roles/r", map[string]any{"db_name": `pg";--`}, `invalid name "pg\";--"` + nameRule},
		{"quote", `roles/r"`, map[string]any{"db_name": "pg"}, `invalid name "r\""` + nameRule},
		{"semicolon", "roles/r;x", map[string]any{"db_name": "pg"}, `invalid name "r;x"` + nameRule},
		{"negative ttl", "roles/r", map[string]any{"db_name": "pg", "default_ttl": -5}, "default_ttl: duration cannot be negative"},
		{"bad ttl", "roles/r", map[string]any{"db_name": "pg", "max_ttl": "soon"}, `max_ttl: "soon" is not a duration (use seconds, "1h" or "1d")`},
		{"credential type", "roles/r", map[string]any{"db_name": "pg", "credential_type": "rsa_private_key"}, `unsupported credential_type "rsa_private_key": only "password" is supported`},
		{"statements object", "roles/r", map[string]any{"db_name": "pg", "creation_statements": map[string]any{}}, "creation_statements: expected a string or a list of strings, got an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.do(logical.UpdateOperation, tc.path, tc.data)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v\nwant    %s", err, tc.want)
			}
			if keys := e.storedKeys(); len(keys) != 0 {
				t.Fatalf("store holds %v", keys)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"readonly", "readonly", true},
		{"readonly", "readonly2", false},
		{"dev-*", "dev-ro", true},
		{"dev-*", "prod-ro", false},
		{"*-ro", "dev-ro", true},
		{"*-ro", "dev-rw", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "acb", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"", "", true},
		{"", "x", false},
	} {
		if got := postgres.Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestUnsupportedPaths(t *testing.T) {
	e := roleEnv(t)
	for _, tc := range []struct {
		op   logical.Operation
		path string
		want string
	}{
		{logical.ReadOperation, "nope/x", `unsupported path "database/nope/x"`},
		{logical.ReadOperation, "creds", `unsupported path "database/creds"`},
		{logical.UpdateOperation, "creds/x", `unsupported operation update on "database/creds/x"`},
		{logical.ReadOperation, "rotate-root/x", `unsupported operation read on "database/rotate-root/x"`},
		{logical.ReadOperation, "roles", `unsupported operation read on "database/roles"`},
		{logical.ReadOperation, `creds/x'; DROP ROLE postgres; --`, `invalid name "x'; DROP ROLE postgres; --"` + nameRule},
	} {
		_, err := e.do(tc.op, tc.path, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s %s: %v, want %s", tc.op, tc.path, err, tc.want)
		}
	}
}

// TestRoleWriteWarnsOfEscapingAttributes: creation statements that make
// each credential a SUPERUSER or give it CREATEROLE are stored, with a
// warning: such a credential can make roles, or rewrite its own role's
// comment, beyond what its revocation undoes.
func TestRoleWriteWarnsOfEscapingAttributes(t *testing.T) {
	for stmts, want := range map[string][]string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`:           nil,
		`CREATE ROLE "{{name}}" WITH LOGIN NOSUPERUSER NOCREATEROLE PASSWORD '{{password}}';`:               nil,
		`CREATE ROLE "{{name}}" WITH LOGIN SUPERUSER PASSWORD '{{password}}';`:                              {"SUPERUSER"},
		`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; ALTER ROLE "{{name}}" createrole superuser;`: {"CREATEROLE", "SUPERUSER"},
	} {
		if got := escapingAttributes([]string{stmts}); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", stmts, got, want)
		}
	}
	e := roleEnv(t)
	resp := e.must(logical.UpdateOperation, "roles/boss", map[string]any{"db_name": "pg",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN SUPERUSER PASSWORD '{{password}}';`})
	if resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "creation_statements give each credential SUPERUSER") {
		t.Fatalf("role write with SUPERUSER: %+v", resp)
	}
	if resp := e.must(logical.UpdateOperation, "roles/plain", map[string]any{"db_name": "pg",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';`}); resp != nil && len(resp.Warnings) > 0 {
		t.Fatalf("role write without: %+v", resp.Warnings)
	}
}

// TestRoleWriteWarnsOfSignalBackend: creation statements that grant each
// credential pg_signal_backend are stored, with a warning: a credential
// with a session open could end a non-superuser admin's sessions as fast
// as lessor opens them, and no revocation of its own would go through.
func TestRoleWriteWarnsOfSignalBackend(t *testing.T) {
	e := roleEnv(t)
	resp := e.must(logical.UpdateOperation, "roles/signaller", map[string]any{"db_name": "pg",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'; GRANT Pg_Signal_Backend TO "{{name}}";`})
	want := "creation_statements give each credential pg_signal_backend: with a session open it can end the sessions of every role but a superuser, an admin's that is not one included, and so keep lessor from issuing or revoking any credential, its own too; use a superuser admin, or grant the application what it needs without it"
	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Fatalf("role write with pg_signal_backend: %+v", resp)
	}
	if resp := e.must(logical.UpdateOperation, "roles/plain", map[string]any{"db_name": "pg",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'; GRANT pg_signal_backend_helper TO "{{name}}";`}); resp != nil && len(resp.Warnings) > 0 {
		t.Fatalf("role write without: %+v", resp.Warnings)
	}
}
