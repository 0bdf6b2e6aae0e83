package postgres

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// plantedLookalikes are functions, aggregates and operators a role that may create
// objects in public could plant there, each a closer match than
// pg_catalog's for a call lessor's own SQL makes without the pg_catalog.
// prefix (the CVE-2018-1058 pattern): shobj_description(oid, 'pg_authid')
// prefers text to name, quote_ident(<name column>) an exact name, and the
// aggregates an exact argument type to pg_catalog's polymorphic or "any"
// ones. Each, if called, records its name in public.lessor_hijacked,
// which the admin would be doing.
var plantedLookalikes = []string{
	`CREATE FUNCTION public.shobj_description(oid, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('shobj_description', current_user); RETURN pg_catalog.shobj_description($1, $2::name); END $f$`,
	`CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('quote_ident', current_user); RETURN pg_catalog.quote_ident($1::text); END $f$`,
	`CREATE FUNCTION public.pg_has_role(text, text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('pg_has_role', current_user); RETURN pg_catalog.pg_has_role($1::name, $2); END $f$`,
	`CREATE FUNCTION public.hijack_name_sfunc(name[], name) RETURNS name[] LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('array_agg', current_user); RETURN $1 || $2; END $f$`,
	`CREATE AGGREGATE public.array_agg(name) (sfunc = public.hijack_name_sfunc, stype = name[], initcond = '{}')`,
	`CREATE FUNCTION public.hijack_bool_sfunc(bigint, boolean) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('count', current_user); RETURN $1 + 1; END $f$`,
	`CREATE AGGREGATE public.count(boolean) (sfunc = public.hijack_bool_sfunc, stype = bigint, initcond = '0')`,
	// Operators too: pg_catalog has only =(oid, oid), so a comparison of
	// an oid with a regclass, an integer or a bigint would take an exact
	// match from public over it.
	`CREATE FUNCTION public.hijack_oid_regclass(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('=(oid,regclass)', current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $f$`,
	`CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.hijack_oid_regclass)`,
	`CREATE FUNCTION public.hijack_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('=(oid,integer)', current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $f$`,
	`CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.hijack_oid_int)`,
	`CREATE FUNCTION public.hijack_oid_bigint(oid, bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('=(oid,bigint)', current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $f$`,
	`CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = bigint, FUNCTION = public.hijack_oid_bigint)`,
	// And every comparison between two of the types catalog columns,
	// casts and parameters have that pg_catalog does not define exactly.
	`DO $d$
DECLARE
  types text[] := ARRAY['oid', 'regclass', 'regrole', 'regprocedure', 'regnamespace', 'name', 'text', '"char"', 'smallint',
                        'integer', 'bigint', 'boolean', 'timestamptz', 'timestamp', 'double precision', 'oid[]', 'name[]', 'text[]'];
  a text; b text; op text; n int := 0;
BEGIN
  FOREACH a IN ARRAY types LOOP FOREACH b IN ARRAY types LOOP
    n := n + 1;
    EXECUTE format('CREATE FUNCTION public.hijack_cmp_%s(%s, %s) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES (%L, current_user); RETURN false; END $f$', n, a, b, 'comparison(' || a || ', ' || b || ')');
    FOREACH op IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>=', '~~'] LOOP
      IF NOT EXISTS (SELECT FROM pg_operator WHERE oprname = op AND oprleft = a::regtype AND oprright = b::regtype) THEN
        EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.hijack_cmp_%s)', op, a, b, n);
      END IF;
    END LOOP;
  END LOOP; END LOOP;
END $d$`,
}

// TestPlantedFunctionsNeverRunAsAdmin: a credential allowed to create
// objects in schema public (of this database and of another one where it
// holds a privilege) plants look-alikes of the functions lessor's catalog
// queries call; creating, looking up, checking and revoking credentials
// (with objects to tear down in both databases, and a session to end)
// never calls one of them as the admin.
func TestPlantedFunctionsNeverRunAsAdmin(t *testing.T) {
	f := setup(t)
	d2 := f.s.NewDatabase(t)
	name := newName(t, "v-plant")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON items TO "{{name}}";`})
	ident := pgx.Identifier{name}.Sanitize()
	admin(t, d2, `GRANT CREATE, USAGE ON SCHEMA public TO `+ident)
	for _, d := range []*pgtest.Database{f.d, d2} {
		// The record outlives the credential's objects, which its
		// revocation drops.
		admin(t, d, `CREATE TABLE public.lessor_hijacked (fn text, by_role text); GRANT INSERT ON public.lessor_hijacked TO PUBLIC`)
		c := f.s.Connect(t, name, pw, d.Name)
		for _, sql := range plantedLookalikes {
			if _, err := c.Exec(f.ctx, sql); err != nil {
				t.Fatalf("plant in %s: %v\n%s", d.Name, err, sql)
			}
		}
		c.Close(f.ctx)
	}
	// A session of the credential stays open, for revocation to end.
	session := f.s.Connect(t, name, pw, f.d.Name)
	defer session.Close(f.ctx)

	other := newName(t, "v-other")
	f.create(t, other, seedStatements)
	// Every role lessor issues has its comment, which its catalog queries
	// read: a comparison there runs only for roles that have one.
	for _, r := range []string{name, other} {
		admin(t, f.d, `COMMENT ON ROLE `+pgx.Identifier{r}.Sanitize()+` IS 'lessor:{}'`)
	}
	if _, err := f.db.LookupRole(f.ctx, other); err != nil {
		t.Fatalf("LookupRole: %v", err)
	}
	if _, err := f.db.RoleComments(f.ctx, []string{name, other}); err != nil {
		t.Fatalf("RoleComments: %v", err)
	}
	if _, err := f.db.ListRolesWithCommentPrefix(f.ctx, "lessor"); err != nil {
		t.Fatalf("ListRolesWithCommentPrefix: %v", err)
	}
	if err := f.db.RenewUser(f.ctx, other, time.Now().Add(2*time.Hour), nil, func(string) bool { return true }); err != nil {
		t.Fatalf("RenewUser: %v", err)
	}
	errs := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}, {Username: other}})
	for i, err := range errs {
		if err != nil {
			t.Errorf("revoke %d: %v", i, err)
		}
	}
	if f.roleExists(t, name) {
		t.Errorf("role %s still exists", name)
	}
	for _, d := range []*pgtest.Database{f.d, d2} {
		if ran := hijacked(t, f, d); len(ran) > 0 {
			t.Errorf("in database %s, lessor's SQL called the planted %s", d.Name, strings.Join(ran, ", "))
		}
	}
}

// TestDatabaseSearchPathNeverRunsCredentialCode: a credential that is a
// member of its database's owner role may give the database a default
// search_path that puts a schema of its own before pg_catalog, where it
// plants an operator that lessor's SQL uses (exact matches this time, so
// qualifying the near-misses does not help). Every admin connection that
// lessor opens afterwards to that database starts with that search_path:
// neither a lookup nor revoking the credential may call the operator as
// the admin.
func TestDatabaseSearchPathNeverRunsCredentialCode(t *testing.T) {
	f := setup(t)
	name := plantSearchPath(t, f)

	// A fresh admin connection, as every lessor command opens.
	db := connect(t, f.cfg)
	if _, err := db.LookupRole(f.ctx, name); err != nil {
		t.Fatalf("LookupRole: %v", err)
	}
	// Issuing, on a fresh connection each time, whose set-up rides with
	// BEGIN: a credential created, and statements that create no role,
	// whose rollback undoes that set-up before lessor checks, outside the
	// transaction, that the role does not exist.
	issued := newName(t, "v-issued")
	f.s.DropRolesAtCleanup(t, issued)
	if err := connect(t, f.cfg).CreateUser(f.ctx, CreateUserRequest{
		Username: issued, Password: "pw-" + issued, Expiration: time.Now().Add(time.Hour), Statements: seedStatements,
	}); err != nil {
		t.Fatalf("CreateUser on a fresh connection: %v", err)
	}
	if err := connect(t, f.cfg).CreateUser(f.ctx, CreateUserRequest{
		Username: newName(t, "v-none"), Password: "pw", Expiration: time.Now().Add(time.Hour), Statements: []string{"SELECT 1"},
	}); err == nil {
		t.Fatal("CreateUser with statements that create no role succeeded")
	}
	// lessor serve's pooled connection, used twice: its session reset
	// between requests brings the database's search_path back.
	f.lookUpPooledTwice(t, name)
	if err := db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0]; err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if f.roleExists(t, name) {
		t.Errorf("role %s still exists", name)
	}
	if ran := hijacked(t, f, f.d); len(ran) > 0 {
		t.Errorf("lessor's SQL called the planted %s", strings.Join(ran, ", "))
	}
}

// TestCreationStatementsLeaveNoSessionSetUp: creation statements run in
// the admin's session and may undo its set-up (RESET search_path, RESET
// ALL, RESET ROLE after a SET ROLE bring back the database's defaults).
// A revocation on the same connection after the issue, as the issue's
// own when the lease it was for was revoked meanwhile (dropUnconfirmed),
// must set the session up again before lessor's catalog queries run.
func TestCreationStatementsLeaveNoSessionSetUp(t *testing.T) {
	f := setup(t)
	plantSearchPath(t, f)
	for _, fresh := range []bool{true, false} {
		db := connect(t, f.cfg)
		if !fresh {
			// Set up by a use before the issue.
			mustConn(t, db)
		}
		issued := newName(t, "v-issued")
		f.s.DropRolesAtCleanup(t, issued)
		if err := db.CreateUser(f.ctx, CreateUserRequest{
			Username: issued, Password: "pw-" + issued, Expiration: time.Now().Add(time.Hour),
			Statements: append(slices.Clone(seedStatements), "RESET search_path"),
		}); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		if err := db.RevokeUsers(f.ctx, []RevokeRequest{{Username: issued}})[0]; err != nil {
			t.Fatalf("revoke: %v", err)
		}
		if ran := hijacked(t, f, f.d); len(ran) > 0 {
			t.Fatalf("fresh connection %v: lessor's SQL called the planted %s", fresh, strings.Join(ran, ", "))
		}
	}
}

// plantSearchPath makes a credential that is a member of f's database's
// owner role, and as it plants the operators <> and = on names in a
// schema of its own, which the database's default search_path puts
// before pg_catalog. Each call of one records it in
// public.lessor_hijacked (see hijacked). It returns the credential's name.
func plantSearchPath(t *testing.T, f *fixture) string {
	t.Helper()
	owner := newName(t, "v-owner")
	f.s.DropRolesAtCleanup(t, owner)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{owner}.Sanitize()+` NOLOGIN`)
	admin(t, f.d, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO `+pgx.Identifier{owner}.Sanitize())
	// Before the owner role is dropped, the database goes back.
	t.Cleanup(func() { f.d.Exec(t, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO CURRENT_USER`) })
	admin(t, f.d, `CREATE TABLE public.lessor_hijacked (fn text, by_role text); GRANT INSERT ON public.lessor_hijacked TO PUBLIC`)
	name := newName(t, "v-path")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE ` + pgx.Identifier{owner}.Sanitize()})
	c := f.s.Connect(t, name, pw, f.d.Name)
	for _, sql := range []string{
		`CREATE SCHEMA planted`,
		`CREATE FUNCTION planted.ne_name(name, name) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('<>(name,name)', current_user); RETURN $1 OPERATOR(pg_catalog.<>) $2; END $f$`,
		`CREATE OPERATOR planted.<> (LEFTARG = name, RIGHTARG = name, FUNCTION = planted.ne_name)`,
		`CREATE FUNCTION planted.eq_name(name, name) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.lessor_hijacked VALUES ('=(name,name)', current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $f$`,
		`CREATE OPERATOR planted.= (LEFTARG = name, RIGHTARG = name, FUNCTION = planted.eq_name)`,
		`ALTER DATABASE ` + pgx.Identifier{f.d.Name}.Sanitize() + ` SET search_path = planted, pg_catalog, public`,
	} {
		if _, err := c.Exec(f.ctx, sql); err != nil {
			t.Fatalf("as the credential: %v\n%s", err, sql)
		}
	}
	c.Close(f.ctx)
	return name
}

// hijacked says which of the functions planted in d lessor's SQL called,
// and as whom.
func hijacked(t *testing.T, f *fixture, d *pgtest.Database) []string {
	t.Helper()
	rows, err := d.Conn(t).Query(f.ctx, `SELECT fn, by_role, pg_catalog.count(*) FROM public.lessor_hijacked GROUP BY 1, 2 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ran []string
	for rows.Next() {
		var fn, by string
		var n int64
		if err := rows.Scan(&fn, &by, &n); err != nil {
			t.Fatal(err)
		}
		ran = append(ran, fmt.Sprintf("%s as %s (%d times)", fn, by, n))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ran
}

// TestDatabaseDefaultsNeverBindTheAdmin: a credential that is a member of
// its database's owner role may also give the database defaults that
// bind every session there: a role to act as (here the owner role, which
// may not revoke anything) and read-only transactions. Neither may keep
// the admin from revoking the credential, whose open session must end
// with it; a role= of the admin's own connection string stays in force.
func TestDatabaseDefaultsNeverBindTheAdmin(t *testing.T) {
	f := setup(t)
	owner := newName(t, "v-owner")
	f.s.DropRolesAtCleanup(t, owner)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{owner}.Sanitize()+` NOLOGIN`)
	admin(t, f.d, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO `+pgx.Identifier{owner}.Sanitize())
	t.Cleanup(func() {
		f.d.Exec(t, `SET ROLE NONE; SET default_transaction_read_only = off; BEGIN READ WRITE; ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` RESET ALL; ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO CURRENT_USER; COMMIT`)
	})
	group := newName(t, "v-acting")
	f.s.DropRolesAtCleanup(t, group)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{group}.Sanitize()+` NOLOGIN`)
	name := newName(t, "v-bind")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE ` + pgx.Identifier{owner}.Sanitize()})
	session := f.s.Connect(t, name, pw, f.d.Name)
	defer session.Close(f.ctx)
	for _, sql := range []string{
		`ALTER DATABASE ` + pgx.Identifier{f.d.Name}.Sanitize() + ` SET role = ` + pgx.Identifier{owner}.Sanitize(),
		`ALTER DATABASE ` + pgx.Identifier{f.d.Name}.Sanitize() + ` SET default_transaction_read_only = on`,
	} {
		if _, err := session.Exec(f.ctx, sql); err != nil {
			t.Fatalf("as the credential: %v\n%s", err, sql)
		}
	}

	// Issuing on a fresh connection, whose set-up rides with BEGIN, and
	// on a pooled one used twice (its reset brings the defaults back):
	// acting as the owner role, which may not create roles, each fails.
	// They are revoked below, by lessor: the database's defaults would
	// keep the test's own clean-up from dropping them.
	revoke := []RevokeRequest{{Username: name}}
	issue := func(db *DB) {
		t.Helper()
		user := newName(t, "v-issued")
		f.s.DropRolesAtCleanup(t, user)
		if err := db.CreateUser(f.ctx, CreateUserRequest{
			Username: user, Password: "pw-" + user, Expiration: time.Now().Add(time.Hour), Statements: seedStatements,
		}); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		revoke = append(revoke, RevokeRequest{Username: user})
	}
	issue(connect(t, f.cfg))
	f.pooledTwice(t, issue)

	db := connect(t, f.cfg)
	for i, err := range db.RevokeUsers(f.ctx, revoke) {
		if err != nil {
			t.Fatalf("revoke %s: %v", revoke[i].Username, err)
		}
	}
	if f.roleExists(t, name) {
		t.Errorf("role %s still exists", name)
	}
	if err := session.Ping(f.ctx); err == nil {
		t.Error("the credential's session outlived its revocation")
	}

	// The admin's own role= still holds: the database's role is not it.
	// Options that only mention a role set none.
	for options, want := range map[string]string{
		"-c role=" + group:                       group,
		"--role=" + group:                        group,
		"-c application_name=" + group:           f.s.User,
		"-c search_path=roles,public -c geqo=on": f.s.User,
	} {
		cfg := f.cfg
		cfg.ConnectionURL += "&options=" + strings.ReplaceAll(url.QueryEscape(options), "+", "%20")
		acting := connect(t, cfg)
		var cur string
		if err := acting.queryRow(f.ctx, mustConn(t, acting), `SELECT current_user`, nil, &cur); err != nil || cur != want {
			t.Errorf("options %q: current_user = %q, %v; want %s", options, cur, err, want)
		}
	}
}

func mustConn(t *testing.T, db *DB) *pgx.Conn {
	t.Helper()
	conn, err := db.admin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestOperatorStatementsLeaveNoSessionSetUp: revocation statements, like
// creation statements, run in the admin's session and may undo its
// set-up. The revocations that follow on the same connection (reap
// revokes a batch on one) must set it up again first.
func TestOperatorStatementsLeaveNoSessionSetUp(t *testing.T) {
	f := setup(t)
	plantSearchPath(t, f)
	custom, plain := newName(t, "v-custom"), newName(t, "v-plain")
	f.create(t, custom, seedStatements)
	f.create(t, plain, seedStatements)
	db := connect(t, f.cfg)
	for i, err := range db.RevokeUsers(f.ctx, []RevokeRequest{
		{Username: custom, Statements: []string{`DROP OWNED BY "{{name}}"; RESET search_path; DROP ROLE "{{name}}"`}},
		{Username: plain},
	}) {
		if err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
	}
	if ran := hijacked(t, f, f.d); len(ran) > 0 {
		t.Fatalf("lessor's SQL called the planted %s", strings.Join(ran, ", "))
	}
}

// TestConnectionStringRoleCostsTheIssueNothing: an admin connection string
// may ask to act as a group role (role= in its options). An issue on a
// fresh connection then sets the session up in BEGIN's round trip, as one
// acting as its login does, instead of rolling that transaction back to
// set the session up on its own and begin again: the database counts no
// transaction of the issue's session rolled back.
func TestConnectionStringRoleCostsTheIssueNothing(t *testing.T) {
	f := setup(t)
	group := newName(t, "v-acting")
	f.s.DropRolesAtCleanup(t, group)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{group}.Sanitize()+` NOLOGIN CREATEROLE`)
	cfg := f.cfg
	cfg.ConnectionURL += "&options=-c%20role%3D" + url.QueryEscape(group)
	// Counted from another database, so that no session of this test's
	// adds to them.
	stats := f.s.Connect(t, f.s.User, f.s.Password, "postgres")
	defer stats.Close(f.ctx)
	rollbacks := func() int64 {
		t.Helper()
		var n int64
		if err := stats.QueryRow(f.ctx, `SELECT xact_rollback FROM pg_catalog.pg_stat_database WHERE datname = $1`, f.d.Name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rollbacks()

	db := connect(t, cfg)
	pid := db.conn.PgConn().PID()
	issued := newName(t, "v-issued")
	f.s.DropRolesAtCleanup(t, issued)
	if err := db.CreateUser(f.ctx, CreateUserRequest{
		Username: issued, Password: "pw-" + issued, Expiration: time.Now().Add(time.Hour),
		Statements: []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`},
	}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	var acting string
	if err := db.queryRow(f.ctx, mustConn(t, db), `SELECT current_user`, nil, &acting); err != nil || acting != group {
		t.Fatalf("current_user = %q, %v; want the connection string's role %s", acting, err, group)
	}
	db.Close(f.ctx)
	// A session's counts reach pg_stat_database by the time it leaves
	// pg_stat_activity.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var left bool
		if err := stats.QueryRow(f.ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE pid = $1)`, int32(pid)).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admin session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := rollbacks() - before; n != 0 {
		t.Errorf("the issue rolled back %d transaction(s); want none", n)
	}
}

// TestDatabaseTimeoutsNeverEndTheAdminsTransactions: a member of a
// database's owner role may set any of its user-settable defaults, the
// timeouts among them. Set to a millisecond, idle_in_transaction_session_
// timeout ended every issue there (the creation's transaction waits,
// open, while the lease record commits), and from PostgreSQL 17 on
// transaction_timeout ends every transaction of the admin's that takes
// longer, its revocations among them: for ever, as the default stays.
// From PostgreSQL 14 on, idle_session_timeout ends a session waiting
// between statements: a pooled one between requests, a new one before
// its first statement.
func TestDatabaseTimeoutsNeverEndTheAdminsTransactions(t *testing.T) {
	for _, setting := range []string{"idle_in_transaction_session_timeout", "transaction_timeout", "idle_session_timeout"} {
		t.Run(setting, func(t *testing.T) {
			f := setup(t)
			if setting == "transaction_timeout" && f.db.version < 170000 || setting == "idle_session_timeout" && f.db.version < 140000 {
				t.Skipf("PostgreSQL %d has no %s", f.db.version, setting)
			}
			owner := newName(t, "v-owner")
			f.s.DropRolesAtCleanup(t, owner)
			admin(t, f.d, `CREATE ROLE `+pgx.Identifier{owner}.Sanitize()+` NOLOGIN`)
			admin(t, f.d, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO `+pgx.Identifier{owner}.Sanitize())
			// The test's own sessions in that database would time out
			// too: its checks and clean-up go through another one.
			elsewhere := f.s.Connect(t, f.s.User, f.s.Password, "postgres")
			t.Cleanup(func() {
				if _, err := elsewhere.Exec(f.ctx, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` RESET ALL`); err != nil {
					t.Error(err)
				}
				f.d.Exec(t, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` OWNER TO CURRENT_USER`)
			})
			exists := func(role string) bool {
				var n int
				if err := elsewhere.QueryRow(f.ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, role).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n > 0
			}
			name := newName(t, "v-timeout")
			pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE ` + pgx.Identifier{owner}.Sanitize()})
			c := f.s.Connect(t, name, pw, f.d.Name)
			if _, err := c.Exec(f.ctx, `ALTER DATABASE `+pgx.Identifier{f.d.Name}.Sanitize()+` SET `+setting+` = '1ms'`); err != nil {
				t.Fatalf("as the credential: %v", err)
			}
			c.Close(f.ctx)

			issued := newName(t, "v-issued")
			f.s.DropRolesAtCleanup(t, issued)
			creation := connect(t, f.cfg).StartCreate(f.ctx, CreateUserRequest{
				Username: issued, Password: "pw-" + issued, Expiration: time.Now().Add(time.Hour), Statements: seedStatements, Comment: "lessor test",
			})
			time.Sleep(20 * time.Millisecond) // the lease record's commit
			if err := creation.Commit(f.ctx); err != nil {
				t.Fatalf("issue: %v", err)
			}
			if !exists(issued) {
				t.Errorf("role %s was not created", issued)
			}
			// A lookup on a pooled session used twice (its reset brings
			// the defaults back), then the credential's revocation.
			f.lookUpPooledTwice(t, name)
			for i, err := range connect(t, f.cfg).RevokeUsers(f.ctx, []RevokeRequest{{Username: name}, {Username: issued}}) {
				if err != nil {
					t.Fatalf("revoke %d: %v", i, err)
				}
			}
			if exists(name) || exists(issued) {
				t.Error("a revoked role still exists")
			}
		})
	}
}

// lookUpPooledTwice looks name up on one pooled session (lessor serve's),
// used twice (see pooledTwice).
func (f *fixture) lookUpPooledTwice(t *testing.T, name string) {
	t.Helper()
	f.pooledTwice(t, func(db *DB) {
		if _, err := db.LookupRole(f.ctx, name); err != nil {
			t.Fatalf("LookupRole on a pooled connection: %v", err)
		}
	})
}

// pooledTwice runs use twice on one pooled session, as lessor serve's
// requests do: the reset between the two brings the database's defaults
// back, which the session's set-up must undo again.
func (f *fixture) pooledTwice(t *testing.T, use func(*DB)) {
	t.Helper()
	pool := NewPool(1, 0)
	defer pool.Close()
	for range 2 {
		pdb, err := pool.Connect(f.ctx, f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		use(pdb)
		pdb.Close(f.ctx)
		// As a server's pooled session waits between requests.
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUnknownStartupSettingDropped: a server that does not know a timeout
// the admin's startup packet lifts (PostgreSQL 13 has no
// idle_session_timeout) refuses the connection; lessor connects again
// without it.
func TestUnknownStartupSettingDropped(t *testing.T) {
	defer func(old []string) { newerStartupSettings = old }(newerStartupSettings)
	newerStartupSettings = append(slices.Clone(newerStartupSettings), "lessor_no_such_setting")
	f := setup(t)
	if _, err := f.db.LookupRole(f.ctx, f.s.User); err != nil {
		t.Fatal(err)
	}
	f.pooledTwice(t, func(db *DB) {
		if _, err := db.LookupRole(f.ctx, f.s.User); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPlantedLookalikesOnEveryRevocationPath: with the look-alikes of
// plantedLookalikes in schema public, a revocation that goes down every
// path the default revocation has (a session to end; default privileges
// another role set for the credential and those it set for others, in a
// schema whose name holds a dot and a quote; memberships it passed on
// with its ADMIN OPTION, and passed on again; a table privilege granted
// by a role other than the owner, acted as by SET ROLE, and by a
// superuser that is not the owner, acted as through a proxy role; column
// privileges it passed on from a grant option on the table; another role
// of the batch dropped by another session after the catalog query, which
// has the batch done again) never calls one of them as the admin, and
// leaves nothing of the credential behind. The roles it meets have names
// full of quotes and dots.
func TestPlantedLookalikesOnEveryRevocationPath(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		super := f.adminUser == f.s.User
		g := f.group(t)
		sfx := newName(t, "x")
		friend, friend2, grantor, sgrantor := `v-97"fr'.`+sfx, `v-97.fr2"`+sfx, `v-97"gr.`+sfx, `v-97"su.`+sfx
		f.s.DropRolesAtCleanup(t, friend, friend2, grantor, sgrantor)
		fr, fr2, gr, sg := pgx.Identifier{friend}.Sanitize(), pgx.Identifier{friend2}.Sanitize(), pgx.Identifier{grantor}.Sanitize(), pgx.Identifier{sgrantor}.Sanitize()
		schema := pgx.Identifier{`s.97"x`}.Sanitize()
		table := `public."t.97""x"`
		f.d.Exec(t, `CREATE ROLE `+fr+` NOLOGIN; CREATE ROLE `+fr2+` NOLOGIN; CREATE ROLE `+gr+` NOLOGIN; CREATE ROLE `+sg+` NOLOGIN;
CREATE SCHEMA `+schema+`; GRANT USAGE, CREATE ON SCHEMA `+schema+` TO `+gr+`;
CREATE TABLE `+table+` (id int, "se""cret" text); INSERT INTO `+table+` VALUES (1, 's');
GRANT SELECT ON accounts TO `+gr+` WITH GRANT OPTION; GRANT SELECT ON accounts TO `+sg+` WITH GRANT OPTION`)
		if !super {
			// The admin may hand out the table and act as the grantor.
			f.d.Exec(t, `GRANT ALL ON `+table+` TO `+pgx.Identifier{f.adminUser}.Sanitize()+` WITH GRANT OPTION; GRANT `+gr+` TO `+pgx.Identifier{f.adminUser}.Sanitize())
		}
		name, pw := f.issue(t, "v-paths", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT `+g+` TO "{{name}}" WITH ADMIN OPTION;
GRANT SELECT, UPDATE ON `+table+` TO "{{name}}" WITH GRANT OPTION`)
		id := pgx.Identifier{name}.Sanitize()
		other, _ := f.issue(t, "v-other", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`)

		// Object privileges from grantors other than the owner.
		f.d.ExecAs(t, grantor, `GRANT SELECT ON accounts TO `+id+`; ALTER DEFAULT PRIVILEGES FOR ROLE `+gr+` IN SCHEMA `+schema+` GRANT SELECT ON TABLES TO `+id)
		if super {
			f.d.ExecAs(t, sgrantor, `GRANT SELECT ON accounts TO `+id)
			f.d.Exec(t, `ALTER ROLE `+sg+` SUPERUSER`)
			// Privileges on the other kinds of objects, named with
			// quotes and dots (only a superuser admin may take back
			// what a superuser owner granted).
			fdw, srv := pgx.Identifier{`fdw."97` + sfx}.Sanitize(), pgx.Identifier{`srv."97` + sfx}.Sanitize()
			f.d.Exec(t, `CREATE DOMAIN `+schema+`."sc""ore" AS int; CREATE TYPE `+schema+`."m.ood" AS ENUM ('a');
CREATE FOREIGN DATA WRAPPER `+fdw+`; CREATE SERVER `+srv+` FOREIGN DATA WRAPPER `+fdw+`;
GRANT USAGE ON DOMAIN `+schema+`."sc""ore" TO `+id+`; GRANT USAGE ON TYPE `+schema+`."m.ood" TO `+id+`;
GRANT USAGE ON FOREIGN DATA WRAPPER `+fdw+` TO `+id+`; GRANT USAGE ON FOREIGN SERVER `+srv+` TO `+id+`;
GRANT USAGE ON LANGUAGE plpgsql TO `+id+`; GRANT CREATE ON TABLESPACE pg_default TO `+id+`;
SELECT pg_catalog.lo_from_bytea(0, 'secret'); DO $d$ BEGIN EXECUTE pg_catalog.format('GRANT SELECT ON LARGE OBJECT %s TO %I',
  (SELECT pg_catalog.max(oid) FROM pg_catalog.pg_largeobject_metadata), `+pgtestQuote(name)+`); END $d$`)
			t.Cleanup(func() {
				f.d.Exec(t, `DROP SERVER IF EXISTS `+srv+`; DROP FOREIGN DATA WRAPPER IF EXISTS `+fdw)
			})
		}
		c := f.s.Connect(t, name, pw, f.d.Name)
		for _, sql := range []string{
			`GRANT ` + g + ` TO ` + fr + ` WITH ADMIN OPTION`,
			`GRANT SELECT ("se""cret"), UPDATE (id) ON ` + table + ` TO ` + fr + `, PUBLIC`,
			`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ` + fr,
			`ALTER DEFAULT PRIVILEGES GRANT USAGE ON SEQUENCES TO ` + fr2,
		} {
			if _, err := c.Exec(f.ctx, sql); err != nil {
				t.Fatalf("as the credential: %v\n%s", err, sql)
			}
		}
		// The membership passed on again; the credential's session c
		// stays open, for the revocation to end.
		f.d.ExecAs(t, friend, `GRANT `+g+` TO `+fr2)

		f.d.Exec(t, `CREATE TABLE public.lessor_hijacked (fn text, by_role text); GRANT INSERT ON public.lessor_hijacked TO PUBLIC`)
		for _, sql := range plantedLookalikes {
			f.d.Exec(t, sql)
		}
		dropped := false
		f.db.testOnlyAfterCatalog = func() {
			if !dropped {
				dropped = true
				f.d.Exec(t, `DROP ROLE `+pgx.Identifier{other}.Sanitize())
			}
		}
		defer func() { f.db.testOnlyAfterCatalog = nil }()
		for i, err := range f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}, {Username: other}}) {
			if err != nil {
				t.Errorf("revoke %d: %v", i, err)
			}
		}
		if !dropped {
			t.Error("the revocation never reached its catalog query")
		}
		if ran := hijacked(t, f.fixture, f.d); len(ran) > 0 {
			t.Errorf("lessor's SQL called the planted %s", strings.Join(ran, ", "))
		}
		if err := c.Ping(f.ctx); err == nil {
			t.Error("the credential's session outlived its revocation")
		}
		// Read back with pg_catalog's operators alone: public's would
		// answer anything.
		conn := f.d.Conn(t)
		if _, err := conn.Exec(f.ctx, `SET search_path = pg_catalog, pg_temp`); err != nil {
			t.Fatal(err)
		}
		var left []string
		if err := conn.QueryRow(f.ctx, `SELECT coalesce(array_agg(k), '{}') FROM (
  SELECT 'role' AS k FROM pg_roles WHERE rolname IN ($1, $2)
  UNION ALL SELECT 'membership of ' || m.rolname FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member
    WHERE am.roleid = $3::regrole AND m.rolname IN ($4, $5)
  UNION ALL SELECT 'column privilege' FROM pg_attribute, aclexplode(attacl) a WHERE attrelid = $6::regclass
  UNION ALL SELECT 'default privilege of ' || d.defaclrole::regrole::text FROM pg_default_acl d, aclexplode(d.defaclacl) a
    WHERE a.grantee <> d.defaclrole AND (a.grantee NOT IN (SELECT oid FROM pg_roles) OR d.defaclrole NOT IN (SELECT oid FROM pg_roles))
  UNION ALL SELECT 'dangling acl entry' FROM pg_class, aclexplode(relacl) a WHERE a.grantee <> 0 AND a.grantee NOT IN (SELECT oid FROM pg_roles)
  UNION ALL SELECT 'dangling type, language, server, wrapper, large object or tablespace acl entry' FROM (
    SELECT typacl AS acl FROM pg_type UNION ALL SELECT lanacl FROM pg_language UNION ALL SELECT srvacl FROM pg_foreign_server
    UNION ALL SELECT fdwacl FROM pg_foreign_data_wrapper UNION ALL SELECT lomacl FROM pg_largeobject_metadata
    UNION ALL SELECT spcacl FROM pg_tablespace) o, aclexplode(o.acl) a WHERE a.grantee <> 0 AND a.grantee NOT IN (SELECT oid FROM pg_roles)) x`,
			name, other, g, friend, friend2, table).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// pgtestQuote quotes s as an SQL string literal.
func pgtestQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestDatabaseDefaultRoleNotBackAfterActingAsGrantor: a database's owner
// (or a member of its owner role, which creation statements may make a
// credential) may give the database a default role, which lessor's
// session set-up leaves with SET ROLE NONE. A revocation that acts as a
// grantor (SET ROLE, or a proxy role for a superuser grantor) must come
// back to the admin, not to that default, which a RESET ROLE restores:
// the rest of the revocation, and the next one on the connection, would
// run as the owner's role, which may not revoke anything. So must one
// that acts as the credential, to take the column privileges it passed on.
func TestDatabaseDefaultRoleNotBackAfterActingAsGrantor(t *testing.T) {
	f := setup(t)
	owner, grantor, sgrantor := newName(t, "v-owner"), newName(t, "v-grantor"), newName(t, "v-sgrantor")
	f.s.DropRolesAtCleanup(t, owner, grantor, sgrantor)
	o, gr, sg := pgx.Identifier{owner}.Sanitize(), pgx.Identifier{grantor}.Sanitize(), pgx.Identifier{sgrantor}.Sanitize()
	dbName := pgx.Identifier{f.d.Name}.Sanitize()
	admin(t, f.d, `CREATE ROLE `+o+` NOLOGIN; CREATE ROLE `+gr+` NOLOGIN; CREATE ROLE `+sg+` NOLOGIN;
GRANT SELECT ON items TO `+gr+` WITH GRANT OPTION; GRANT SELECT ON items TO `+sg+` WITH GRANT OPTION`)
	t.Cleanup(func() {
		f.d.Exec(t, `SET ROLE NONE; ALTER DATABASE `+dbName+` RESET ALL; ALTER DATABASE `+dbName+` OWNER TO CURRENT_USER`)
	})
	admin(t, f.d, `ALTER DATABASE `+dbName+` OWNER TO `+o)
	set, proxy, plain := newName(t, "v-set"), newName(t, "v-proxy"), newName(t, "v-plain")
	f.create(t, set, seedStatements)
	f.create(t, proxy, seedStatements)
	f.create(t, plain, seedStatements)
	// And one that passed a column on from its grant option on the table,
	// which it is acted as to take back.
	col := newName(t, "v-col")
	pw := f.create(t, col, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON items TO "{{name}}" WITH GRANT OPTION`})
	c := f.s.Connect(t, col, pw, f.d.Name)
	if _, err := c.Exec(f.ctx, `GRANT SELECT (id) ON items TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	c.Close(f.ctx)
	admin(t, f.d, `SET ROLE `+gr+`; GRANT SELECT ON items TO `+pgx.Identifier{set}.Sanitize()+`; RESET ROLE;
SET ROLE `+sg+`; GRANT SELECT ON items TO `+pgx.Identifier{proxy}.Sanitize()+`; RESET ROLE; ALTER ROLE `+sg+` SUPERUSER`)
	admin(t, f.d, `ALTER DATABASE `+dbName+` SET role = `+o)

	db := connect(t, f.cfg)
	for _, name := range []string{col, set, proxy, plain} {
		if err := db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0]; err != nil {
			t.Errorf("revoke %s: %v", name, err)
		}
		if f.roleExists(t, name) {
			t.Errorf("role %s still exists", name)
		}
		var cur string
		if err := db.queryRow(f.ctx, mustConn(t, db), `SELECT current_user`, nil, &cur); err != nil || cur != f.s.User {
			t.Errorf("after revoking %s the admin session acts as %q (%v), not as %s", name, cur, err, f.s.User)
		}
	}
}
