package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvAdminKind says which admin the tests give lessor: "superuser" (the
// default: the server's own superuser) or "createrole" (a role with LOGIN
// and CREATEROLE only, holding grant options on the app's objects: the
// least-privilege recipe).
const EnvAdminKind = "LESSOR_TEST_ADMIN_KIND"

// Admin kinds.
const (
	KindSuperuser  = "superuser"
	KindCreateRole = "createrole"
)

// AdminKind returns the admin kind the tests run with.
func AdminKind() string {
	if os.Getenv(EnvAdminKind) == KindCreateRole {
		return KindCreateRole
	}
	return KindSuperuser
}

// Admin returns the role lessor connects as in tests of database d, of the
// kind AdminKind says. Call it after creating the app's objects in d, and
// GrantToAdmin after creating more.
func (d *Database) Admin(t testing.TB) (user, password string) {
	t.Helper()
	if AdminKind() == KindSuperuser {
		return d.server.User, d.server.Password
	}
	return d.NewCreateRoleAdmin(t)
}

// NewCreateRoleAdmin makes a role with LOGIN and CREATEROLE and no other
// attribute, dropped when the test ends, and grants it in d what the
// least-privilege recipe grants (GrantToAdmin).
func (d *Database) NewCreateRoleAdmin(t testing.TB) (user, password string) {
	t.Helper()
	user, password = "lessor_admin_"+randomHex(4), "Admin-"+randomHex(12)
	d.server.DropRolesAtCleanup(t, user)
	d.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'`, pgx.Identifier{user}.Sanitize(), password))
	d.GrantToAdmin(t, user)
	return user, password
}

// GrantToAdmin grants admin, unless it is a superuser, every privilege on
// d's public schema and on all tables, sequences and functions in it, and
// CONNECT and TEMP on d, all WITH GRANT OPTION: what a CREATEROLE admin
// needs to hand out and take back grants on the app's objects.
func (d *Database) GrantToAdmin(t testing.TB, admin string) {
	t.Helper()
	if admin == d.server.User {
		return
	}
	id := pgx.Identifier{admin}.Sanitize()
	d.Exec(t, fmt.Sprintf(`GRANT ALL ON SCHEMA public TO %[1]s WITH GRANT OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA public TO %[1]s WITH GRANT OPTION;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO %[1]s WITH GRANT OPTION;
GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO %[1]s WITH GRANT OPTION;
GRANT CONNECT, TEMP ON DATABASE %[2]s TO %[1]s WITH GRANT OPTION`, id, pgx.Identifier{d.Name}.Sanitize()))
}

// Exec runs sql as the superuser in d, failing the test on error.
func (d *Database) Exec(t testing.TB, sql string) {
	t.Helper()
	conn, err := d.server.adminConn(context.Background(), d.Name)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", d.Name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// ExecAs runs sql in d as role (through SET ROLE from the superuser), as
// if role had run it: its grants carry role as their grantor and roles it
// creates count as created by it.
func (d *Database) ExecAs(t testing.TB, role, sql string) {
	t.Helper()
	d.Exec(t, "SET ROLE "+pgx.Identifier{role}.Sanitize()+"; "+sql)
}
