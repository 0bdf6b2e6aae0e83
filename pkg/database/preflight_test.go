package database

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/lessorhq/lessor/pkg/logical"
)

func serverVersion(t *testing.T, e *env) string {
	t.Helper()
	var v string
	if err := e.db.Conn(t).QueryRow(context.Background(), `SHOW server_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// An admin that can log in but has neither SUPERUSER nor CREATEROLE is
// stored (it connects), with a warning naming the fix, and read shows the
// verdict; a CREATEROLE admin gets no warning.
func TestPreflightAdminPrivileges(t *testing.T) {
	e := newEnv(t)
	var num int
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attrs, verdict, warning string
	}{
		{"", "cannot create roles", `admin %[1]s has neither SUPERUSER nor CREATEROLE, so it can neither create nor revoke roles; fix: ALTER ROLE %[1]s CREATEROLE`},
		{"CREATEROLE", "createrole", ""},
	} {
		user, pw := "lessor_pre_"+randHex(t, 4), "Pre-"+randHex(t, 8)
		e.srv.DropRolesAtCleanup(t, user)
		e.db.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN %s PASSWORD '%s'`, pgx.Identifier{user}.Sanitize(), tc.attrs, pw))
		resp := e.must(logical.UpdateOperation, "config/pg", map[string]any{
			"plugin_name": PluginName, "connection_url": e.templatedURL(),
			"username": user, "password": pw, "allowed_roles": "*",
		})
		var warnings []string
		if resp != nil {
			warnings = resp.Warnings
		}
		var want []string
		if tc.warning != "" {
			want = []string{fmt.Sprintf(tc.warning, pgx.Identifier{user}.Sanitize())}
		}
		if fmt.Sprint(warnings) != fmt.Sprint(want) {
			t.Errorf("%q admin: warnings = %q, want %q", tc.attrs, warnings, want)
		}
		verdict := tc.verdict
		if verdict == "createrole" && num >= 160000 {
			verdict = "createrole (revokes the roles it created)"
		}
		got := e.must(logical.ReadOperation, "config/pg", nil).Data
		if got["admin_privileges"] != verdict || got["server_version"] != serverVersion(t, e) {
			t.Errorf("%q admin: read shows admin_privileges %v, server_version %v; want %q, %q", tc.attrs, got["admin_privileges"], got["server_version"], verdict, serverVersion(t, e))
		}
	}
	// Unverified, the verdict is unknown rather than stale.
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"verify_connection": "false"})
	if got := e.must(logical.ReadOperation, "config/pg", nil).Data; got["admin_privileges"] != nil {
		t.Errorf("unverified write kept admin_privileges %v", got["admin_privileges"])
	}
}
