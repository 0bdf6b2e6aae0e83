package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// lpFixture is a database with an app table "accounts" and a DB connected
// as an admin of one kind, whatever LESSOR_TEST_ADMIN_KIND says: these
// tests run both kinds in every run.
type lpFixture struct {
	*fixture
	adminUser string
}

func setupKind(t *testing.T, kind string) *lpFixture {
	t.Helper()
	s := pgtest.Require(t)
	d := s.NewDatabase(t)
	d.Exec(t, `CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (1)`)
	user, pw := s.User, s.Password
	if kind == pgtest.KindCreateRole {
		user, pw = d.NewCreateRoleAdmin(t)
	}
	f := &fixture{s: s, d: d, ctx: context.Background(), cfg: configFor(s, d.Name, user, pw)}
	f.db = connect(t, f.cfg)
	return &lpFixture{fixture: f, adminUser: user}
}

func bothKinds(t *testing.T, fn func(t *testing.T, f *lpFixture)) {
	for _, kind := range []string{pgtest.KindSuperuser, pgtest.KindCreateRole} {
		t.Run(kind, func(t *testing.T) { fn(t, setupKind(t, kind)) })
	}
}

// gone checks that name has no pg_roles row and that no ACL in the
// databases given names a role that no longer exists.
func (f *lpFixture) gone(t *testing.T, name string, dbs ...*pgtest.Database) {
	t.Helper()
	if f.roleExists(t, name) {
		t.Errorf("role %s still in pg_roles", name)
	}
	for _, d := range append([]*pgtest.Database{f.d}, dbs...) {
		var n int
		err := d.Conn(t).QueryRow(f.ctx, `
SELECT count(*) FROM (
  SELECT (aclexplode(relacl)).grantee FROM pg_class
  UNION ALL SELECT (aclexplode(attacl)).grantee FROM pg_attribute
  UNION ALL SELECT (aclexplode(nspacl)).grantee FROM pg_namespace
  UNION ALL SELECT (aclexplode(datacl)).grantee FROM pg_database) a
WHERE grantee <> 0 AND grantee NOT IN (SELECT oid FROM pg_roles)`).Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("%d ACL entries of dropped roles left in %s, %v", n, d.Name, err)
		}
	}
}

func (f *lpFixture) issue(t *testing.T, prefix string, stmts ...string) (string, string) {
	t.Helper()
	name := newName(t, prefix)
	if len(stmts) == 0 {
		stmts = seedStatements
	}
	pw := f.create(t, name, stmts)
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err != nil {
		t.Fatalf("issued credential cannot log in: %v", err)
	}
	return name, pw
}

func (f *lpFixture) revokeErr(name string) error {
	return f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0]
}

func TestLeastPrivilegeIssueAndRevoke(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		name, pw := f.issue(t, "v-basic")
		var n int
		if err := f.s.Connect(t, name, pw, f.d.Name).QueryRow(f.ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("issued role reads %d rows, %v", n, err)
		}
		f.revoke(t, name)
		f.gone(t, name)
	})
}

// What an issued role created is dropped with it, never handed to the
// admin: a SECURITY DEFINER function it wrote, or a trigger on its table,
// would then run with the admin's privileges for whoever calls it.
func TestLeastPrivilegeRevokeOwner(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		name, pw := f.issue(t, "v-owner", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON accounts TO "{{name}}"`)
		conn := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := conn.Exec(f.ctx, `CREATE TABLE migrated (id serial); GRANT SELECT ON migrated TO PUBLIC;
CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text';
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER stamp BEFORE INSERT ON migrated FOR EACH ROW EXECUTE FUNCTION stamp()`); err != nil {
			t.Fatal(err)
		}
		conn.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name)
		rows, err := f.d.Conn(t).Query(f.ctx, `
SELECT 'function ' || proname || ' owned by ' || pg_get_userbyid(proowner) FROM pg_proc WHERE proname IN ('whoami', 'stamp')
UNION ALL SELECT 'relation ' || relname || ' owned by ' || pg_get_userbyid(relowner) FROM pg_class WHERE relname IN ('migrated', 'migrated_id_seq')
UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname = 'stamp'
ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		left, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("objects the revoked role created are left: %q", left)
		}
	})
}

// Objects of the role that another role's objects depend on are dropped
// by neither DROP OWNED nor CASCADE: the role stays, unable to log in and
// still owning them, and the error says what blocks and how to go on.
// The other roles of the batch are revoked.
func TestLeastPrivilegeRevokeOwnedWithDependents(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		stmts := `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"`
		name, pw := f.issue(t, "v-depended", stmts)
		other, opw := f.issue(t, "v-free", stmts)
		for _, c := range []*pgx.Conn{f.s.Connect(t, name, pw, f.d.Name), f.s.Connect(t, other, opw, f.d.Name)} {
			if _, err := c.Exec(f.ctx, `CREATE TABLE `+pgx.Identifier{"t-" + c.Config().User}.Sanitize()+` (id int)`); err != nil {
				t.Fatal(err)
			}
			c.Close(f.ctx)
		}
		table := pgx.Identifier{"t-" + name}.Sanitize()
		f.d.Exec(t, `CREATE VIEW app_view AS SELECT id FROM `+table)
		errs := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}, {Username: other}})
		want := fmt.Sprintf(`revoke user %s: drop owned in database %s: objects owned by %s have dependents that other roles own (view public.app_view depends on table public.%s), and lessor neither drops those nor gives the role's objects to its admin; fix: drop the dependents, or ALTER the objects they depend on OWNER TO a role of your choice, then revoke again`,
			name, f.d.Name, pgx.Identifier{name}.Sanitize(), table)
		if errs[0] == nil || errs[0].Error() != want {
			t.Fatalf("err = %v\nwant %s", errs[0], want)
		}
		if errs[1] != nil {
			t.Errorf("revoke %s beside it: %v", other, errs[1])
		}
		f.gone(t, other)
		if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err == nil {
			t.Error("a role whose revocation failed can still log in")
		}
		var owner string
		if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT tableowner FROM pg_tables WHERE tablename = $1`, "t-"+name).Scan(&owner); err != nil || owner != name {
			t.Errorf("blocked table's owner = %q, %v; want the role %s", owner, err, name)
		}
		// Following the fix finishes the job.
		f.d.Exec(t, `DROP VIEW app_view`)
		f.revoke(t, name)
		f.gone(t, name)
	})
}

// A database the role owns is neither dropped (DROP OWNED leaves it) nor
// given to the admin: the role is left in place with an error that says
// so, before anything in that database is touched.
func TestLeastPrivilegeRevokeDatabaseOwner(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		name, pw := f.issue(t, "v-dbowner")
		d2 := f.s.NewDatabase(t)
		id, d2id := pgx.Identifier{name}.Sanitize(), pgx.Identifier{d2.Name}.Sanitize()
		// As the database's owner the role may create in its public schema
		// (owned by pg_database_owner from PostgreSQL 15, open to PUBLIC
		// before).
		d2.Exec(t, `ALTER DATABASE `+d2id+` OWNER TO `+id)
		c2 := f.s.Connect(t, name, pw, d2.Name)
		if _, err := c2.Exec(f.ctx, `CREATE TABLE kept (id int)`); err != nil {
			t.Fatal(err)
		}
		c2.Close(f.ctx)
		err := f.revokeErr(name)
		// The database's name needs no quotes, so quote_ident adds none.
		want := fmt.Sprintf(`revoke user %s: %s owns database %s, which DROP OWNED does not drop and lessor does not give to its admin; fix: DROP DATABASE %s, or ALTER DATABASE %s OWNER TO a role of your choice, then revoke again`,
			name, id, d2.Name, d2.Name, d2.Name)
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
		if !f.roleExists(t, name) {
			t.Fatal("role dropped although it owns a database")
		}
		var n int
		if err := d2.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'kept'`).Scan(&n); err != nil || n != 1 {
			t.Errorf("the table in the role's database: %d, %v; want it left for the owner's decision", n, err)
		}
		d2.Exec(t, `ALTER DATABASE `+d2id+` OWNER TO `+pgx.Identifier{f.s.User}.Sanitize())
		f.revoke(t, name)
		f.gone(t, name, d2)
		if err := d2.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'kept'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("the role's table in the other database: %d left, %v", n, err)
		}
	})
}

// A grant made by another role than the admin: the admin acts as that
// grantor (a CREATEROLE admin through its membership in it).
func TestLeastPrivilegeRevokeOtherGrantor(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		grantor := newName(t, "app-reader")
		f.s.DropRolesAtCleanup(t, grantor)
		g := pgx.Identifier{grantor}.Sanitize()
		f.d.Exec(t, fmt.Sprintf(`CREATE ROLE %s NOLOGIN; GRANT SELECT ON accounts TO %s WITH GRANT OPTION; GRANT USAGE ON SCHEMA public TO %s WITH GRANT OPTION`, g, g, g))
		if f.adminUser != f.s.User {
			f.d.Exec(t, fmt.Sprintf(`GRANT %s TO %s`, g, pgx.Identifier{f.adminUser}.Sanitize()))
		}
		name, _ := f.issue(t, "v-grantor")
		f.d.ExecAs(t, grantor, fmt.Sprintf(`GRANT SELECT ON accounts TO %[1]s; GRANT SELECT (id) ON accounts TO %[1]s; GRANT USAGE ON SCHEMA public TO %[1]s`, pgx.Identifier{name}.Sanitize()))
		f.revoke(t, name)
		f.gone(t, name)
	})
}

func TestLeastPrivilegeRevokeSecondDatabase(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		d2 := f.s.NewDatabase(t)
		d2.Exec(t, `CREATE TABLE other (id int)`)
		d2.GrantToAdmin(t, f.adminUser)
		name, pw := f.issue(t, "v-twodb")
		id := pgx.Identifier{name}.Sanitize()
		d2.ExecAs(t, f.adminUser, fmt.Sprintf(`GRANT SELECT ON other TO %s; GRANT CREATE, USAGE ON SCHEMA public TO %s; GRANT CONNECT, TEMP ON DATABASE %s TO %s`,
			id, id, pgx.Identifier{d2.Name}.Sanitize(), id))
		c2 := f.s.Connect(t, name, pw, d2.Name)
		if _, err := c2.Exec(f.ctx, `CREATE TABLE made_in_d2 (id int); CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`); err != nil {
			t.Fatal(err)
		}
		c2.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name, d2)
		var n int
		if err := d2.Conn(t).QueryRow(f.ctx, `SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'made_in_d2') + (SELECT count(*) FROM pg_proc WHERE proname = 'whoami')`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d objects the role created in the second database left, %v", n, err)
		}
	})
}

func TestLeastPrivilegeRevokeOpenSession(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		name, pw := f.issue(t, "v-session")
		conn := f.s.Connect(t, name, pw, f.d.Name)
		f.revoke(t, name)
		f.gone(t, name)
		if err := conn.Ping(f.ctx); err == nil {
			t.Error("session of a revoked role still runs queries")
		}
	})
}

// Issued by a CREATEROLE admin, revoked after it was made superuser: its
// own grants are not the owner's, so a superuser's REVOKE and DROP OWNED
// would leave them; revocation acts as the admin through a proxy role.
func TestLeastPrivilegeAdminPromoted(t *testing.T) {
	f := setupKind(t, pgtest.KindCreateRole)
	name, _ := f.issue(t, "v-promoted")
	f.d.Exec(t, "ALTER ROLE "+pgx.Identifier{f.adminUser}.Sanitize()+" SUPERUSER")
	f.revoke(t, name)
	f.gone(t, name)
	var proxies int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE 'lessor-revoke-%'`).Scan(&proxies); err != nil || proxies != 0 {
		t.Errorf("%d proxy roles left, %v", proxies, err)
	}
}

// newOwnAdmin makes a superuser admin that owns the app table "owned".
func newOwnAdmin(t *testing.T) *lpFixture {
	t.Helper()
	f := setupKind(t, pgtest.KindSuperuser)
	user, pw := "lessor_admin_"+strings.ToLower(newName(t, "s")[2:10]), "Admin-pw-"+newName(t, "p")[2:14]
	f.s.DropRolesAtCleanup(t, user)
	f.d.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'`, pgx.Identifier{user}.Sanitize(), pw))
	f.d.ExecAs(t, user, `CREATE TABLE owned (id int)`)
	f.cfg = configFor(f.s, f.d.Name, user, pw)
	f.db = connect(t, f.cfg)
	f.adminUser = user
	return f
}

// Issued by a superuser admin that then became CREATEROLE only: the grants
// on the tables it owns carry it as grantor and go; on PostgreSQL 16+ it
// no longer has the ADMIN OPTION that DROP ROLE needs (a superuser's
// CREATE ROLE gives it none), and the error says how to give it.
func TestLeastPrivilegeAdminDemoted(t *testing.T) {
	f := newOwnAdmin(t)
	name, _ := f.issue(t, "v-demoted", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON owned TO "{{name}}"`)
	f.d.Exec(t, "ALTER ROLE "+pgx.Identifier{f.adminUser}.Sanitize()+" NOSUPERUSER CREATEROLE")
	err := f.revokeErr(name)
	if f.db.version < 160000 {
		if err != nil {
			t.Fatal(err)
		}
		f.gone(t, name)
		return
	}
	wantAdminOption(t, err, name, f.adminUser)
	// Following the fix finishes the job.
	f.d.Exec(t, fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION", pgx.Identifier{name}.Sanitize(), pgx.Identifier{f.adminUser}.Sanitize()))
	f.revoke(t, name)
	f.gone(t, name)
}

// Granted by a superuser admin on a table the bootstrap superuser owns:
// the entry's grantor is the owner, whose privileges a demoted admin cannot
// use. The revocation names the grantor and the statement to run, leaves
// the role unable to log in, and succeeds once that is done.
func TestLeastPrivilegeGrantorOutOfReach(t *testing.T) {
	f := newOwnAdmin(t)
	name, pw := f.issue(t, "v-stuck")
	f.d.Exec(t, "ALTER ROLE "+pgx.Identifier{f.adminUser}.Sanitize()+" NOSUPERUSER CREATEROLE")
	err := f.revokeErr(name)
	id, owner := pgx.Identifier{name}.Sanitize(), pgx.Identifier{f.s.User}.Sanitize()
	if f.db.version >= 160000 {
		// First it may not even disable the login: see AdminDemoted.
		wantAdminOption(t, err, name, f.adminUser)
		f.d.Exec(t, fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION", id, pgx.Identifier{f.adminUser}.Sanitize()))
		err = f.revokeErr(name)
	}
	want := fmt.Sprintf(`revoke user %s: privileges on table public.accounts were granted by %s, as whom admin %s cannot act (a REVOKE removes only its own grantor's entry); fix: run as %s: REVOKE ALL ON TABLE public.accounts FROM %s`,
		name, owner, pgx.Identifier{f.adminUser}.Sanitize(), owner, id)
	var pe *PrivilegeError
	if err == nil || err.Error() != want || !errors.As(err, &pe) {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if !f.roleExists(t, name) {
		t.Fatal("role dropped although its grant is still there")
	}
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err == nil {
		t.Error("a role whose revocation failed can still log in")
	}
	f.d.Exec(t, "REVOKE ALL ON TABLE accounts FROM "+id)
	f.revoke(t, name)
	f.gone(t, name)
}

// wantAdminOption checks the error of a PostgreSQL 16+ admin that lacks
// ADMIN OPTION on the role it revokes.
func wantAdminOption(t *testing.T, err error, name, admin string) {
	t.Helper()
	id, adm := pgx.Identifier{name}.Sanitize(), pgx.Identifier{admin}.Sanitize()
	want := fmt.Sprintf(`revoke user %s: disable login: admin %s lacks CREATEROLE and ADMIN OPTION on %s, which disabling and dropping a role need; fix: as a superuser, GRANT %s TO %s WITH ADMIN OPTION`,
		name, adm, id, id, adm)
	var pe *PrivilegeError
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.As(err, &pe) {
		t.Fatalf("err = %v\nwant prefix %s", err, want)
	}
}

// The server version is known whatever the server reports at login (only
// 18+ sends server_version_num): the revocation's 14+ and 16+ paths
// depend on it.
func TestServerVersionKnown(t *testing.T) {
	f := setup(t)
	var want int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT current_setting('server_version_num')::int`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if f.db.version != want {
		t.Errorf("version = %d, want %d", f.db.version, want)
	}
}

// A static role's password is set by the admin with ALTER ROLE, which
// PostgreSQL allows a CREATEROLE admin on any ordinary role up to 15, and
// from 16 only on roles it holds ADMIN OPTION on. LookupRole says so
// before lessor manages the role, with the fix; a refused rotation says
// the same; once the fix is applied the password changes and logs in.
func TestLeastPrivilegeStaticPassword(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		login, super, repl := newName(t, "s-app"), newName(t, "s-super"), newName(t, "s-repl")
		f.s.DropRolesAtCleanup(t, login, super, repl)
		id, adm := pgx.Identifier{login}.Sanitize(), pgx.Identifier{f.adminUser}.Sanitize()
		f.d.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN SUPERUSER; CREATE ROLE %s LOGIN REPLICATION`,
			id, pgx.Identifier{super}.Sanitize(), pgx.Identifier{repl}.Sanitize()))
		createRole := f.adminUser != f.s.User
		needsGrant := createRole && f.db.version >= 160000

		ri, err := f.db.LookupRole(f.ctx, login)
		if err != nil || !ri.Exists || !ri.CanLogin {
			t.Fatalf("LookupRole(%s) = %+v, %v", login, ri, err)
		}
		wantDenied := ""
		if needsGrant {
			wantDenied = fmt.Sprintf("admin %s lacks ADMIN OPTION on %s, which setting its password needs on PostgreSQL 16 and later; fix: as a superuser, GRANT %s TO %s WITH ADMIN OPTION", adm, id, id, adm)
		}
		if ri.AlterDenied != wantDenied {
			t.Fatalf("AlterDenied = %q\nwant %q", ri.AlterDenied, wantDenied)
		}
		pw := "Static-pw-" + newName(t, "x")[2:14]
		err = f.db.SetPassword(f.ctx, login, pw, nil)
		if needsGrant {
			var pe *PrivilegeError
			if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), "fix: as a superuser, GRANT "+id+" TO "+adm+" WITH ADMIN OPTION") {
				t.Fatalf("SetPassword without ADMIN OPTION: %v", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatal("the error holds the password")
			}
			f.d.Exec(t, fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION", id, adm))
			if ri, err := f.db.LookupRole(f.ctx, login); err != nil || ri.AlterDenied != "" {
				t.Fatalf("after the fix: %+v, %v", ri, err)
			}
			err = f.db.SetPassword(f.ctx, login, pw, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := f.s.CanLogin(f.ctx, login, pw, f.d.Name); err != nil {
			t.Fatalf("the new password does not log in: %v", err)
		}

		// A superuser's password is out of a CREATEROLE admin's reach on
		// every version; a REPLICATION role's up to 15.
		ri, err = f.db.LookupRole(f.ctx, super)
		if err != nil || (ri.AlterDenied != "") != createRole {
			t.Fatalf("LookupRole(superuser) = %+v, %v", ri, err)
		}
		if needsGrant {
			f.d.Exec(t, fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION", pgx.Identifier{repl}.Sanitize(), adm))
		}
		ri, err = f.db.LookupRole(f.ctx, repl)
		if err != nil || (ri.AlterDenied != "") != (createRole && f.db.version < 160000) {
			t.Fatalf("LookupRole(replication) = %+v, %v", ri, err)
		}
		err = f.db.SetPassword(f.ctx, repl, pw, nil)
		if (err != nil) != (ri.AlterDenied != "") {
			t.Fatalf("SetPassword(replication role) = %v, though LookupRole said %q", err, ri.AlterDenied)
		}
	})
}

// A login that lands between the revocation's catalog query and its
// ALTER ROLE … NOLOGIN is not among the sessions that query saw; it still
// ends with the revocation, and is not left running as a dropped role.
func TestLeastPrivilegeRevokeLoginDuringRevocation(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		name, pw := f.issue(t, "v-late-login")
		var oid uint32
		if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT oid FROM pg_roles WHERE rolname = $1`, name).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		var late *pgx.Conn
		f.db.testOnlyAfterCatalog = func() {
			if late == nil {
				late = f.s.Connect(t, name, pw, f.d.Name)
			}
		}
		defer func() { f.db.testOnlyAfterCatalog = nil }()
		f.revoke(t, name)
		f.gone(t, name)
		if late == nil {
			t.Fatal("the revocation never reached its catalog query")
		}
		if err := late.Ping(f.ctx); err == nil {
			t.Error("a session opened during the revocation survived it")
		}
		var n int
		if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1`, oid).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d sessions of the revoked role left, %v", n, err)
		}
	})
}

// adminHoldsPrivilegesOf reports whether the fixture's admin has role's
// privileges (USAGE: a member that inherits them; on PostgreSQL 16+ a
// CREATEROLE admin is a member of the roles it creates from the start,
// with ADMIN OPTION but without inheriting).
func (f *lpFixture) adminHoldsPrivilegesOf(t *testing.T, role string) bool {
	t.Helper()
	var holds bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT coalesce((SELECT pg_has_role($1, oid, 'USAGE') FROM pg_roles WHERE rolname = $2), false)`, f.adminUser, role).Scan(&holds); err != nil {
		t.Fatal(err)
	}
	return holds
}

// TestLeastPrivilegeNoMembershipLeft: a CREATEROLE admin grants itself
// membership in a role to end its sessions or tear it down. A role the
// admin then cannot drop (a grant by a role out of its reach), and a
// role custom revocation statements leave in place, must not leave the
// admin holding what the role holds.
func TestLeastPrivilegeNoMembershipLeft(t *testing.T) {
	f := setupKind(t, pgtest.KindCreateRole)
	f.d.Exec(t, `CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('top')`)
	grantor := newName(t, "other-grantor")
	f.s.DropRolesAtCleanup(t, grantor)
	g := pgx.Identifier{grantor}.Sanitize()
	f.d.Exec(t, fmt.Sprintf(`CREATE ROLE %s NOLOGIN; GRANT SELECT ON secrets TO %s WITH GRANT OPTION`, g, g))

	// A role stuck behind a grant it got from the out-of-reach role, with
	// a session open (which needs the admin's membership to end).
	name, pw := f.issue(t, "v-stuckmem", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON accounts TO "{{name}}"`)
	f.s.DropRolesAtCleanup(t, name)
	f.d.ExecAs(t, grantor, `GRANT SELECT ON secrets TO `+pgx.Identifier{name}.Sanitize())
	f.d.Exec(t, `RESET ROLE`)
	f.s.Connect(t, name, pw, f.d.Name)
	if err := f.revokeErr(name); err == nil {
		t.Fatal("the role behind an out-of-reach grant was revoked")
	}
	if f.adminHoldsPrivilegesOf(t, name) {
		t.Fatalf("the admin is left holding the privileges of %s, which it could not drop", name)
	}
	// Once the grantor takes its grant back, the revocation goes through.
	f.d.ExecAs(t, grantor, `REVOKE ALL ON secrets FROM `+pgx.Identifier{name}.Sanitize())
	f.d.Exec(t, `RESET ROLE`)
	f.revoke(t, name)
	f.gone(t, name)

	// Custom statements that do not drop the role.
	name2, pw2 := f.issue(t, "v-custmem", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON accounts TO "{{name}}"`)
	f.s.DropRolesAtCleanup(t, name2)
	f.s.Connect(t, name2, pw2, f.d.Name)
	errs := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name2, Statements: []string{`REVOKE ALL ON accounts FROM "{{name}}"`}}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if f.adminHoldsPrivilegesOf(t, name2) {
		t.Fatalf("the admin is left holding the privileges of %s after custom revocation statements", name2)
	}
}
