package postgres

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestLeastPrivilegeStuckRoleKeepsNothing: a credential that may create
// in a schema writes a SECURITY DEFINER function (EXECUTE is PUBLIC's by
// default) that reads what its grants and its group let it read, and any
// other login holds a temporary view on it open, so that DROP OWNED
// meets a dependent and the revocation leaves the role in place. The
// role left behind must hold nothing: neither its grants nor its
// memberships may go on serving whoever calls its function after its
// lease ended.
func TestLeastPrivilegeStuckRoleKeepsNothing(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		group := newName(t, "app-group")
		f.s.DropRolesAtCleanup(t, group)
		g := pgx.Identifier{group}.Sanitize()
		f.d.Exec(t, fmt.Sprintf(`CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (7); CREATE ROLE %s NOLOGIN; GRANT SELECT ON ledger TO %s`, g, g))
		if f.adminUser != f.s.User {
			// The least-privilege recipe: the admin may hand out the group.
			f.d.Exec(t, fmt.Sprintf(`GRANT %s TO %s WITH ADMIN OPTION`, g, pgx.Identifier{f.adminUser}.Sanitize()))
		}
		name, pw := f.issue(t, "v-stuck", fmt.Sprintf(`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}';
GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON accounts TO "{{name}}"; GRANT %s TO "{{name}}"`, g))
		keeper, kpw := f.issue(t, "v-keeper", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`)
		c := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := c.Exec(f.ctx, `CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM accounts';
CREATE FUNCTION public.leak_group() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM ledger'`); err != nil {
			t.Fatal(err)
		}
		c.Close(f.ctx)
		k := f.s.Connect(t, keeper, kpw, f.d.Name)
		defer k.Close(f.ctx)
		if _, err := k.Exec(f.ctx, `CREATE TEMP VIEW hold AS SELECT public.leak(), public.leak_group()`); err != nil {
			t.Fatal(err)
		}
		if err := f.revokeErr(name); err == nil {
			t.Fatal("revocation succeeded although a view depends on the role's function")
		}
		if !f.roleExists(t, name) {
			t.Fatal("the role is gone")
		}
		for _, fn := range []string{"leak", "leak_group"} {
			var n int64
			if err := k.QueryRow(f.ctx, `SELECT public.`+fn+`()`).Scan(&n); err == nil {
				t.Errorf("after its revocation failed, the role's %s() still reads through it (%d rows)", fn, n)
			}
		}
		if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err == nil {
			t.Error("the role left in place can still log in")
		}
		// The fix the error names finishes the job.
		k.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name)
	})
}
