package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// group makes a group role that may read table ledger (one row), which
// the admin may hand out, and returns its name quoted.
func (f *lpFixture) group(t *testing.T) string {
	t.Helper()
	group := newName(t, "app-group")
	f.s.DropRolesAtCleanup(t, group)
	g := pgx.Identifier{group}.Sanitize()
	f.d.Exec(t, fmt.Sprintf(`CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (7); CREATE ROLE %s NOLOGIN; GRANT SELECT ON ledger TO %s`, g, g))
	if f.adminUser != f.s.User {
		// The least-privilege recipe: the admin may hand out the group.
		f.d.Exec(t, fmt.Sprintf(`GRANT %s TO %s WITH ADMIN OPTION`, g, pgx.Identifier{f.adminUser}.Sanitize()))
	}
	return g
}

// TestLeastPrivilegeStuckRoleKeepsNothing: a credential that may create
// in a schema writes a SECURITY DEFINER function (EXECUTE is PUBLIC's by
// default) that reads what its grants (on a table, on a column) and its
// group let it read, and any other login holds a temporary view on it
// open, so that DROP OWNED meets a dependent and the revocation leaves
// the role in place. The role left behind must hold nothing: neither its
// grants nor its memberships may go on serving whoever calls its function
// after its lease ended, and, expired, it must not keep LOGIN either.
func TestLeastPrivilegeStuckRoleKeepsNothing(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		g := f.group(t)
		f.d.Exec(t, `CREATE TABLE people (id int, ssn text); INSERT INTO people VALUES (1, 'x')`)
		f.d.GrantToAdmin(t, f.adminUser)
		name, pw := f.issue(t, "v-stuck", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}';
GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON accounts TO "{{name}}"; GRANT `+g+` TO "{{name}}";
GRANT SELECT (ssn) ON people TO "{{name}}"`)
		keeper, kpw := f.issue(t, "v-keeper", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`)
		c := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := c.Exec(f.ctx, `CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM accounts';
CREATE FUNCTION public.leak_group() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM ledger';
CREATE FUNCTION public.leak_column() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(ssn) FROM people'`); err != nil {
			t.Fatal(err)
		}
		c.Close(f.ctx)
		k := f.s.Connect(t, keeper, kpw, f.d.Name)
		defer k.Close(f.ctx)
		if _, err := k.Exec(f.ctx, `CREATE TEMP VIEW hold AS SELECT public.leak(), public.leak_group(), public.leak_column()`); err != nil {
			t.Fatal(err)
		}
		// Its lease ran out: the revocation skips ALTER ROLE … NOLOGIN, as
		// its password no longer works.
		f.d.Exec(t, `ALTER ROLE `+pgx.Identifier{name}.Sanitize()+` VALID UNTIL '2000-01-01 00:00:00+00'`)
		if f.adminUser != f.s.User {
			// A membership a CREATEROLE admin may not take back (in a
			// superuser role) must not keep it from taking the rest.
			super := newName(t, "super")
			f.s.DropRolesAtCleanup(t, super)
			f.d.Exec(t, `CREATE ROLE `+pgx.Identifier{super}.Sanitize()+` SUPERUSER NOLOGIN; GRANT `+pgx.Identifier{super}.Sanitize()+` TO `+pgx.Identifier{name}.Sanitize())
		}
		if err := f.revokeErr(name); err == nil {
			t.Fatal("revocation succeeded although a view depends on the role's function")
		}
		if !f.roleExists(t, name) {
			t.Fatal("the role is gone")
		}
		for _, fn := range []string{"leak", "leak_group", "leak_column"} {
			var n int64
			if err := k.QueryRow(f.ctx, `SELECT public.`+fn+`()`).Scan(&n); err == nil {
				t.Errorf("after its revocation failed, the role's %s() still reads through it (%d rows)", fn, n)
			}
		}
		// A login that VALID UNTIL does not bind (trust, peer,
		// certificates) would still let it in.
		var canLogin bool
		if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, name).Scan(&canLogin); err != nil || canLogin {
			t.Errorf("the role left in place keeps LOGIN (%v, %v)", canLogin, err)
		}
		// The fix the error names finishes the job.
		k.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name)
	})
}

// TestLeastPrivilegeBlockedRevocationKeepsNothing: another login holds a
// lock on a table the credential owns (it granted SELECT on it to
// PUBLIC), in a transaction it leaves open, so that DROP OWNED waits
// until the statement timeout and the revocation fails. Until it goes
// through, the role must hold nothing its SECURITY DEFINER function
// could use for whoever calls it, here or in the other database where
// it was granted something.
func TestLeastPrivilegeBlockedRevocationKeepsNothing(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		f.cfg.StatementTimeout = time.Second
		f.db = connect(t, f.cfg)
		d2 := f.s.NewDatabase(t)
		d2.Exec(t, `CREATE TABLE other (id int)`)
		d2.GrantToAdmin(t, f.adminUser)
		g := f.group(t)
		name, pw := f.issue(t, "v-locked", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}';
GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON accounts TO "{{name}}"; GRANT `+g+` TO "{{name}}"`)
		id := pgx.Identifier{name}.Sanitize()
		d2.ExecAs(t, f.adminUser, `GRANT SELECT ON other TO `+id+`; GRANT CREATE, USAGE ON SCHEMA public TO `+id)
		keeper, kpw := f.issue(t, "v-locker", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`)
		for _, d := range []*pgtest.Database{f.d, d2} {
			c := f.s.Connect(t, name, pw, d.Name)
			if _, err := c.Exec(f.ctx, `CREATE TABLE mine (id int); GRANT SELECT ON mine TO PUBLIC;
CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM `+map[bool]string{true: "accounts", false: "other"}[d == f.d]+`'`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(f.ctx, `CREATE FUNCTION public.leak_group() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM `+map[bool]string{true: "ledger", false: "other"}[d == f.d]+`'`); err != nil {
				t.Fatal(err)
			}
			c.Close(f.ctx)
		}
		k := f.s.Connect(t, keeper, kpw, f.d.Name)
		defer k.Close(f.ctx)
		if _, err := k.Exec(f.ctx, `BEGIN; SELECT FROM mine`); err != nil {
			t.Fatal(err)
		}
		if err := f.revokeErr(name); err == nil {
			t.Fatal("revocation succeeded although another session holds a lock on the role's table")
		}
		k2 := f.s.Connect(t, keeper, kpw, d2.Name)
		defer k2.Close(f.ctx)
		for db, c := range map[string]*pgx.Conn{f.d.Name: k, d2.Name: k2} {
			for _, fn := range []string{"leak", "leak_group"} {
				var n int64
				if err := c.QueryRow(f.ctx, `SELECT public.`+fn+`()`).Scan(&n); err == nil {
					t.Errorf("in database %s, the role's %s() still reads through it (%d rows) after its revocation failed", db, fn, n)
				}
			}
		}
		if _, err := k.Exec(f.ctx, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
		f.revoke(t, name)
		f.gone(t, name, d2)
	})
}

// TestLeastPrivilegeMembershipPassedOn: a credential given its group WITH
// ADMIN OPTION hands the group on to another role (a login of the
// credential holder's, say), with ADMIN OPTION, which hands it on again.
// When the credential goes, so must what it passed on: on PostgreSQL 15
// and older the grant outlived its grantor (DROP ROLE leaves it, with a
// dangling grantor), and on 16+ DROP OWNED takes the first grant but not
// the one made from it in turn.
func TestLeastPrivilegeMembershipPassedOn(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		g := f.group(t)
		friend, friend2 := newName(t, "v-friend"), newName(t, "v-friend2")
		f.s.DropRolesAtCleanup(t, friend, friend2)
		fr, fr2 := pgx.Identifier{friend}.Sanitize(), pgx.Identifier{friend2}.Sanitize()
		f.d.Exec(t, `CREATE ROLE `+fr+` NOLOGIN; CREATE ROLE `+fr2+` NOLOGIN`)
		name, pw := f.issue(t, "v-passer", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT `+g+` TO "{{name}}" WITH ADMIN OPTION`)
		c := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := c.Exec(f.ctx, `GRANT `+g+` TO `+fr+` WITH ADMIN OPTION`); err != nil {
			t.Fatal(err)
		}
		c.Close(f.ctx)
		f.d.Exec(t, `SET ROLE `+fr+`; GRANT `+g+` TO `+fr2+`; RESET ROLE`)
		f.revoke(t, name)
		f.gone(t, name)
		conn := f.d.Conn(t)
		for _, member := range []string{friend, friend2} {
			var n int
			if err := conn.QueryRow(f.ctx, `SELECT count(*) FROM pg_auth_members WHERE roleid = $1::regrole AND member = $2::regrole`, g, pgx.Identifier{member}.Sanitize()).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s is still a member of %s (%d grants, %v) after the credential that passed it on was revoked", member, g, n, err)
			}
		}
	})
}

// TestLeastPrivilegeStuckRoleKeepsNoDefaultPrivileges: a role left in
// place (a view of another login's depends on its function) must not go
// on receiving privileges on tables created later, by default privileges
// another role (the app's owner) set for it, nor keep the default
// privileges it set itself, which hand what its SECURITY DEFINER
// functions create to a role of its holder's. Where the admin may not act
// for the app's owner (a CREATEROLE admin that is not its member), the
// error names the statement to run.
func TestLeastPrivilegeStuckRoleKeepsNoDefaultPrivileges(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		owner, friend := newName(t, "app-owner"), newName(t, "v-friend")
		f.s.DropRolesAtCleanup(t, owner, friend)
		o, fr := pgx.Identifier{owner}.Sanitize(), pgx.Identifier{friend}.Sanitize()
		f.d.Exec(t, `CREATE ROLE `+o+` NOLOGIN; GRANT CREATE, USAGE ON SCHEMA public TO `+o+`; CREATE ROLE `+fr+` NOLOGIN`)
		name, pw := f.issue(t, "v-defacl", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"`)
		id := pgx.Identifier{name}.Sanitize()
		f.d.Exec(t, `ALTER DEFAULT PRIVILEGES FOR ROLE `+o+` IN SCHEMA public GRANT SELECT ON TABLES TO `+id+`;
ALTER DEFAULT PRIVILEGES FOR ROLE `+o+` GRANT SELECT ON SEQUENCES TO `+id)
		c := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := c.Exec(f.ctx, `ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO `+fr+`;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO `+fr+`;
CREATE FUNCTION public.leak() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`); err != nil {
			t.Fatal(err)
		}
		c.Close(f.ctx)
		keeper, kpw := f.issue(t, "v-keeper", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`)
		k := f.s.Connect(t, keeper, kpw, f.d.Name)
		defer k.Close(f.ctx)
		if _, err := k.Exec(f.ctx, `CREATE TEMP VIEW hold AS SELECT public.leak()`); err != nil {
			t.Fatal(err)
		}
		err := f.revokeErr(name)
		if err == nil {
			t.Fatal("revocation succeeded although a view depends on the role's function")
		}
		conn := f.d.Conn(t)
		var own int
		if err := conn.QueryRow(f.ctx, `SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a
WHERE d.defaclrole = $1::regrole AND a.grantee <> d.defaclrole`, id).Scan(&own); err != nil || own != 0 {
			t.Errorf("the role left in place keeps %d default privileges of its own for others (%v)", own, err)
		}
		f.d.Exec(t, `SET ROLE `+o+`; CREATE TABLE public.later (id int); CREATE SEQUENCE public.later_seq; RESET ROLE`)
		var table, seq bool
		if err := conn.QueryRow(f.ctx, `SELECT has_table_privilege($1, 'public.later', 'SELECT'), has_sequence_privilege($1, 'public.later_seq', 'SELECT')`, name).Scan(&table, &seq); err != nil {
			t.Fatal(err)
		}
		if f.adminUser == f.s.User {
			if table || seq {
				t.Errorf("the role left in place receives privileges on what its app's owner creates later: table %v, sequence %v", table, seq)
			}
		} else {
			// The admin may not act for the app's owner; the error says
			// what to run.
			for _, fix := range []string{
				`ALTER DEFAULT PRIVILEGES FOR ROLE ` + o + ` IN SCHEMA public REVOKE ALL ON TABLES FROM ` + id,
				`ALTER DEFAULT PRIVILEGES FOR ROLE ` + o + ` REVOKE ALL ON SEQUENCES FROM ` + id,
			} {
				if !strings.Contains(err.Error(), fix) {
					t.Errorf("error %q does not name %q", err, fix)
				}
				f.d.Exec(t, fix)
			}
			// And what the default privileges gave meanwhile, granted by
			// the owner, which a superuser's REVOKE acts as.
			f.d.Exec(t, `REVOKE ALL ON TABLE public.later FROM `+id+`; REVOKE ALL ON SEQUENCE public.later_seq FROM `+id)
		}
		k.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name)
	})
}
