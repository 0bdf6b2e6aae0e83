package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// seedStatements are the seed guide's creation statements, verbatim.
var seedStatements = []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`}

type fixture struct {
	s   *pgtest.Server
	d   *pgtest.Database
	db  *DB
	cfg Config
	ctx context.Context
}

func configFor(s *pgtest.Server, dbName, user, password string) Config {
	return Config{
		ConnectionURL: fmt.Sprintf("postgres://{{username}}:{{password}}@%s/%s?sslmode=disable", net.JoinHostPort(s.Host, fmt.Sprint(s.Port)), dbName),
		Username:      user,
		Password:      password,
	}
}

// setup gives a fresh database with a table "items" holding 3 rows, and a
// DB connected to it as the server's superuser.
func setup(t *testing.T) *fixture {
	t.Helper()
	s := pgtest.Require(t)
	d := s.NewDatabase(t)
	f := &fixture{s: s, d: d, ctx: context.Background(), cfg: configFor(s, d.Name, s.User, s.Password)}
	admin(t, d, `CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2), (3)`)
	f.db = connect(t, f.cfg)
	return f
}

func connect(t *testing.T, cfg Config) *DB {
	t.Helper()
	db, err := Connect(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}

// admin runs SQL as the superuser in database d.
func admin(t *testing.T, d *pgtest.Database, sql string, args ...any) {
	t.Helper()
	if _, err := d.Conn(t).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func newName(t *testing.T, prefix string) string {
	t.Helper()
	name, err := RenderUsername(`{{ printf "%s-%s" "`+prefix+`" (random 12) }}`, UsernameMetadata{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func (f *fixture) create(t *testing.T, name string, statements []string) string {
	t.Helper()
	f.s.DropRolesAtCleanup(t, name)
	pw, err := GeneratePassword(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	err = f.db.CreateUser(f.ctx, CreateUserRequest{
		Username: name, Password: pw, Expiration: time.Now().Add(time.Hour), Statements: statements,
	})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return pw
}

func (f *fixture) roleExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func (f *fixture) revoke(t *testing.T, names ...string) {
	t.Helper()
	rs := make([]RevokeRequest, len(names))
	for i, n := range names {
		rs[i] = RevokeRequest{Username: n}
	}
	for i, err := range f.db.RevokeUsers(f.ctx, rs) {
		if err != nil {
			t.Errorf("revoke %s: %v", names[i], err)
		}
	}
	for _, n := range names {
		if f.roleExists(t, n) {
			t.Errorf("role %s still in pg_roles after revocation", n)
		}
	}
}

func validUntil(t *testing.T, conn *pgx.Conn, name string) time.Time {
	t.Helper()
	var until time.Time
	if err := conn.QueryRow(context.Background(), `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, name).Scan(&until); err != nil {
		t.Fatalf("rolvaliduntil of %s: %v", name, err)
	}
	return until
}

func within(a, b time.Time, d time.Duration) bool {
	return absDuration(a.Sub(b)) <= d
}

func TestCreateUserSeedGuide(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-root-readonly")
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	exp := time.Now().Add(768 * time.Hour).Add(5 * time.Second)
	comment := "lessor:v1 store=st-1 lease=database/creds/readonly/abc"
	err := f.db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: pw, Expiration: exp, Statements: seedStatements, Comment: comment})
	if err != nil {
		t.Fatal(err)
	}

	// The issued credential logs in over TCP and reads the table.
	conn := f.s.Connect(t, name, pw, f.d.Name)
	var n int
	if err := conn.QueryRow(f.ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil {
		t.Fatalf("issued user cannot read items: %v", err)
	}
	if n != 3 {
		t.Errorf("issued user sees %d rows, want 3", n)
	}
	if err := f.s.CanLogin(f.ctx, name, pw+"x", f.d.Name); err == nil {
		t.Error("issued user logs in with a wrong password")
	}

	adminConn := f.d.Conn(t)
	if got := validUntil(t, adminConn, name); !within(got, exp, time.Second) {
		t.Errorf("rolvaliduntil = %s, want %s ±1s", got, exp)
	}
	var stored string
	if err := adminConn.QueryRow(f.ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, name).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Errorf("stored password %q is not a SCRAM verifier", stored)
	}

	roles, err := f.db.ListRolesWithCommentPrefix(f.ctx, "lessor:v1 store=st-1 ")
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != 1 || roles[0].Name != name || roles[0].Comment != comment || roles[0].ValidUntil == nil || !within(*roles[0].ValidUntil, exp, time.Second) {
		t.Errorf("ListRolesWithCommentPrefix = %+v, want one role %s with comment %q", roles, name, comment)
	}
}

// A verifier computed beforehand (while the issuer waited for the
// connection) is the one PostgreSQL stores, byte for byte, and the
// password logs in; a config that asks for plaintext ignores it.
func TestCreateUserPrecomputedVerifier(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-pre")
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	verifier, err := ScramVerifier(pw, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: pw, Verifier: verifier,
		Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, name).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != verifier {
		t.Errorf("stored verifier %q, want the precomputed %q", stored, verifier)
	}
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err != nil {
		t.Errorf("login: %v", err)
	}

	cfg := f.cfg
	cfg.PasswordAuthentication = AuthPassword
	db := connect(t, cfg)
	plain := newName(t, "v-pre-plain")
	f.s.DropRolesAtCleanup(t, plain)
	if err := db.CreateUser(f.ctx, CreateUserRequest{Username: plain, Password: pw, Verifier: verifier,
		Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, plain).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == verifier {
		t.Error("a plaintext config stored the precomputed verifier")
	}
	if err := f.s.CanLogin(f.ctx, plain, pw, f.d.Name); err != nil {
		t.Errorf("login (plaintext config): %v", err)
	}
}

func TestCreateUserPlaintextPassword(t *testing.T) {
	f := setup(t)
	cfg := f.cfg
	cfg.PasswordAuthentication = AuthPassword
	db := connect(t, cfg)
	name := newName(t, "v-plain")
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	if err := db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: pw, Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL hashes the plaintext itself (password_encryption).
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err != nil {
		t.Errorf("login: %v", err)
	}
}

func TestCreateUserDoBlock(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-do")
	pw := f.create(t, name, []string{`
DO $$
BEGIN
  CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'app') THEN
    CREATE SCHEMA app;
  END IF;
  EXECUTE format('GRANT SELECT ON items TO %I', '{{name}}');
END
$$;`, `GRANT USAGE ON SCHEMA app TO "{{name}}";`})
	conn := f.s.Connect(t, name, pw, f.d.Name)
	var n int
	if err := conn.QueryRow(f.ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil || n != 3 {
		t.Errorf("issued user reads %d rows, err %v", n, err)
	}
	var usage bool
	if err := conn.QueryRow(f.ctx, `SELECT has_schema_privilege('app', 'USAGE')`).Scan(&usage); err != nil || !usage {
		t.Errorf("USAGE on app: %v, err %v", usage, err)
	}
}

func TestCreateUserBeginAtomic(t *testing.T) {
	f := setup(t)
	if f.db.version < 140000 {
		t.Skip("BEGIN ATOMIC bodies are PostgreSQL 14+")
	}
	name := newName(t, "v-atomic")
	f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN;
CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM items; END;
GRANT EXECUTE ON FUNCTION item_count() TO "{{name}}";`})
	var n int64
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT item_count()`).Scan(&n); err != nil || n != 3 {
		t.Errorf("item_count() = %d, %v", n, err)
	}
}

func TestCreateUserFailureLeavesNoRole(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-fail")
	f.s.DropRolesAtCleanup(t, name, strings.ToLower(name))
	req := CreateUserRequest{Username: name, Password: "Pw-1-abcdefghijklmnop", Expiration: time.Now().Add(time.Hour),
		Statements: []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';`, `GRANT SELECT ON no_such_table TO "{{name}}";`},
		Comment:    "lessor:fail"}
	err := f.db.CreateUser(f.ctx, req)
	want := `create user ` + name + `: creation statement 2: relation "no_such_table" does not exist (SQLSTATE 42P01)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Errorf("SQLSTATE not reachable through errors.As: %v", err)
	}
	if f.roleExists(t, name) {
		t.Error("role left behind after a failed creation")
	}

	// An unquoted {{name}} makes PostgreSQL fold it to lower case: a role
	// that revocation would never find. Refuse it, and leave nothing.
	req.Statements = []string{`CREATE ROLE {{name}}`}
	req.Username = "V_Mixed_" + strings.ReplaceAll(name[len(name)-12:], "-", "_")
	f.s.DropRolesAtCleanup(t, req.Username, strings.ToLower(req.Username))
	err = f.db.CreateUser(f.ctx, req)
	if err == nil || !strings.Contains(err.Error(), `creation statements did not create role "`+req.Username+`": write "{{name}}" in double quotes`) {
		t.Errorf("unquoted name: err = %v", err)
	}
	if f.roleExists(t, req.Username) || f.roleExists(t, strings.ToLower(req.Username)) {
		t.Error("unquoted name left a role")
	}
	// With a comment, the COMMENT ON ROLE of the exact name is the check.
	req.Comment = "lessor-test"
	err = f.db.CreateUser(f.ctx, req)
	if err == nil || !strings.Contains(err.Error(), `creation statements did not create role "`+req.Username+`": write "{{name}}" in double quotes`) {
		t.Errorf("unquoted name, with a comment: err = %v", err)
	}
	if f.roleExists(t, req.Username) || f.roleExists(t, strings.ToLower(req.Username)) {
		t.Error("unquoted name, with a comment, left a role")
	}
	if !errors.Is(err, ErrNotCreated) {
		t.Errorf("unquoted name: %v is not ErrNotCreated, so its lease would wait for reap", err)
	}
	// A DO block that quotes the name but creates nothing: no quoting
	// hint, and certainly nothing created.
	req.Statements = []string{`DO $$ BEGIN IF false THEN CREATE ROLE "{{name}}"; END IF; END $$`}
	err = f.db.CreateUser(f.ctx, req)
	if err == nil || !strings.HasSuffix(err.Error(), `creation statements ran but did not create role "`+req.Username+`"`) || !errors.Is(err, ErrNotCreated) {
		t.Errorf("DO block creating nothing: err = %v", err)
	}
	// A COMMIT among the statements ends lessor's transaction: not a
	// definite failure, whatever follows.
	req.Statements = []string{`COMMIT; CREATE ROLE "{{name}}"`}
	err = f.db.CreateUser(f.ctx, req)
	if err == nil || !strings.Contains(err.Error(), "creation statements ended lessor's transaction") || errors.Is(err, ErrNotCreated) {
		t.Errorf("COMMIT in statements: err = %v", err)
	}
	req.Comment = ""

	req.Statements = []string{" ; "}
	if err := f.db.CreateUser(f.ctx, req); err == nil || err.Error() != "create user "+req.Username+": empty creation statements" {
		t.Errorf("empty statements: err = %v", err)
	}
	req.Statements = nil
	if err := f.db.CreateUser(f.ctx, req); err == nil || !strings.HasSuffix(err.Error(), ": empty creation statements") {
		t.Errorf("no statements: err = %v", err)
	}
	req.Username = strings.Repeat("x", 64)
	req.Statements = seedStatements
	if err := f.db.CreateUser(f.ctx, req); err == nil || !strings.Contains(err.Error(), "is 64 bytes, over PostgreSQL's limit of 63") {
		t.Errorf("64-byte name: err = %v", err)
	}
}

func TestHostileNamesAndComments(t *testing.T) {
	f := setup(t)
	name := `v-a"b'c;d\e$$f ` + newName(t, "x")[2:]
	comment := `lessor:it's; "quoted" \back\slash $$ -- /* */`
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	exp := time.Now().Add(time.Hour)
	err := f.db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: pw, Expiration: exp, Statements: seedStatements, Comment: comment})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err != nil {
		t.Errorf("hostile name cannot log in: %v", err)
	}
	roles, err := f.db.ListRolesWithCommentPrefix(f.ctx, `lessor:it's; "quoted" \back`)
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != 1 || roles[0].Name != name || roles[0].Comment != comment {
		t.Errorf("roles = %+v", roles)
	}
	exp2 := exp.Add(time.Hour)
	if err := f.db.RenewUser(f.ctx, name, exp2, nil, nil); err != nil {
		t.Errorf("renew: %v", err)
	}
	if got := validUntil(t, f.d.Conn(t), name); !within(got, exp2, time.Second) {
		t.Errorf("rolvaliduntil = %s, want %s", got, exp2)
	}
	// The items table survives the revocation of a role named to attack it.
	f.revoke(t, name)
	var n int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil || n != 3 {
		t.Errorf("items: %d rows, %v", n, err)
	}
}

func TestRenewUser(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-renew")
	pw := f.create(t, name, seedStatements)
	conn := f.d.Conn(t)
	exp := time.Now().Add(48 * time.Hour)
	if err := f.db.RenewUser(f.ctx, name, exp, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := validUntil(t, conn, name); !within(got, exp, time.Second) {
		t.Errorf("rolvaliduntil = %s, want %s", got, exp)
	}
	// Custom statements, and an expiry in the past: login must stop.
	past := time.Now().Add(-time.Minute)
	if err := f.db.RenewUser(f.ctx, name, past, []string{`ALTER ROLE "{{username}}" VALID UNTIL '{{expiration}}'; COMMENT ON ROLE "{{name}}" IS 'renewed'`}, nil); err != nil {
		t.Fatal(err)
	}
	if got := validUntil(t, conn, name); !within(got, past, time.Second) {
		t.Errorf("rolvaliduntil = %s, want %s", got, past)
	}
	if err := f.s.CanLogin(f.ctx, name, pw, f.d.Name); err == nil {
		t.Error("expired role can still log in")
	}
	if err := f.db.RenewUser(f.ctx, "v-no-such-role", exp, nil, nil); err == nil || !strings.Contains(err.Error(), `role "v-no-such-role" does not exist (SQLSTATE 42704)`) {
		t.Errorf("renew of a missing role: err = %v", err)
	}
}

// TestRenewUserUnderAnyDateStyle: renewal reads rolvaliduntil back to
// check it, and read it as text, which the session's DateStyle formats. A
// DateStyle other than ISO, set on the database (by its owner) or on the
// admin role, or in postgresql.conf, made every renewal fail ("invalid
// PostgreSQL date/time value"), so no lease could be renewed there.
func TestRenewUserUnderAnyDateStyle(t *testing.T) {
	for _, ds := range []string{"SQL, DMY", "Postgres, MDY", "German"} {
		for _, on := range []string{"database", "role"} {
			f := setup(t)
			cfg := newAdmin(t, f)
			// A keyword/value string: lessor sets no TimeZone for it, so
			// the one set below is the session's.
			cfg.ConnectionURL = fmt.Sprintf("host=%s port=%d dbname=%s user={{username}} password={{password}} sslmode=disable", f.s.Host, f.s.Port, f.d.Name)
			target := pgx.Identifier{f.d.Name}.Sanitize()
			if on == "role" {
				target = pgx.Identifier{cfg.Username}.Sanitize()
			}
			admin(t, f.d, fmt.Sprintf(`ALTER %s %s SET DateStyle = '%s'`, strings.ToUpper(on), target, ds))
			admin(t, f.d, fmt.Sprintf(`ALTER %s %s SET TimeZone = 'Asia/Kathmandu'`, strings.ToUpper(on), target))
			f.db = connect(t, cfg)
			name := newName(t, "v-datestyle")
			f.create(t, name, seedStatements)
			// The creation's '{{expiration}}' (ISO, with its offset) is
			// read the same whatever the DateStyle and TimeZone.
			if got := validUntil(t, f.d.Conn(t), name); !within(got, time.Now().Add(time.Hour), 5*time.Second) {
				t.Errorf("DateStyle %q on the %s: rolvaliduntil after creation = %s, want an hour from now", ds, on, got.UTC())
			}
			exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
			if err := f.db.RenewUser(f.ctx, name, exp, nil, nil); err != nil {
				t.Errorf("DateStyle %q on the %s: renew: %v", ds, on, err)
				continue
			}
			if got := validUntil(t, f.d.Conn(t), name); !got.Equal(exp) {
				t.Errorf("DateStyle %q on the %s: rolvaliduntil = %s, want %s", ds, on, got.UTC(), exp.UTC())
			}
		}
	}
}

func TestRevokeGrantsInTwoSchemas(t *testing.T) {
	f := setup(t)
	admin(t, f.d, `CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE TABLE s1.a (id int); CREATE TABLE s2.b (id int); CREATE SEQUENCE s2.seq`)
	name := newName(t, "v-schemas")
	f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}';
GRANT USAGE ON SCHEMA s1, s2 TO "{{name}}";
GRANT SELECT ON ALL TABLES IN SCHEMA s1 TO "{{name}}";
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA s2 TO "{{name}}";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA s2 TO "{{name}}";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "{{name}}";
ALTER DEFAULT PRIVILEGES IN SCHEMA s1 GRANT SELECT ON TABLES TO "{{name}}";`})
	f.revoke(t, name)
	var n int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_tables WHERE schemaname IN ('s1', 's2')`).Scan(&n); err != nil || n != 2 {
		t.Errorf("tables left: %d, %v", n, err)
	}
}

func TestRevokeOwnerOfObjects(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-owner")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT CREATE ON SCHEMA public TO "{{name}}"`})
	conn := f.s.Connect(t, name, pw, f.d.Name)
	for _, q := range []string{`CREATE TABLE migrated (id serial)`, `CREATE SEQUENCE counter`, `INSERT INTO migrated DEFAULT VALUES`} {
		if _, err := conn.Exec(f.ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(f.ctx)
	f.revoke(t, name)
	rows, err := f.d.Conn(t).Query(f.ctx, `SELECT c.relname || ':' || pg_get_userbyid(c.relowner) FROM pg_class c
		WHERE c.relname IN ('migrated', 'migrated_id_seq', 'counter') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != 0 {
		t.Errorf("objects left after revoke: %v, want none (dropped, not given to the admin)", owners)
	}
}

func TestRevokeGrantInSecondDatabase(t *testing.T) {
	f := setup(t)
	d2 := f.s.NewDatabase(t)
	admin(t, d2, `CREATE TABLE other (id int)`)
	name := newName(t, "v-twodb")
	pw := f.create(t, name, seedStatements)
	admin(t, d2, fmt.Sprintf(`GRANT SELECT ON other TO %s; GRANT CREATE ON SCHEMA public TO %s; GRANT CONNECT, TEMP ON DATABASE %s TO %s`,
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{name}.Sanitize(), pgx.Identifier{d2.Name}.Sanitize(), pgx.Identifier{name}.Sanitize()))
	c2 := f.s.Connect(t, name, pw, d2.Name)
	if _, err := c2.Exec(f.ctx, `CREATE TABLE made_in_d2 (id int)`); err != nil {
		t.Fatal(err)
	}
	c2.Close(f.ctx)
	f.revoke(t, name)
	var n int
	if err := d2.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'made_in_d2'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("made_in_d2 left after revoke (%d, %v), want it dropped", n, err)
	}
}

func TestRevokeTerminatesOpenSession(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-session")
	pw := f.create(t, name, seedStatements)
	conn := f.s.Connect(t, name, pw, f.d.Name)
	var n int
	if err := conn.QueryRow(f.ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	f.revoke(t, name)
	err := conn.QueryRow(f.ctx, `SELECT count(*) FROM items`).Scan(&n)
	if err == nil {
		t.Fatal("session of a revoked role still runs queries")
	}
	var sessions int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, name).Scan(&sessions); err != nil || sessions != 0 {
		t.Errorf("%d sessions left, %v", sessions, err)
	}
}

func TestRevokeIsIdempotent(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-twice")
	f.create(t, name, seedStatements)
	f.revoke(t, name)
	f.revoke(t, name)
	f.revoke(t, "v-never-existed", "v-never-existed")
	// Custom statements are not run for a role that is already gone.
	errs := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name, Statements: []string{`DROP ROLE "{{name}}"`}}})
	if errs[0] != nil {
		t.Errorf("custom revoke of an absent role: %v", errs[0])
	}
}

func TestRevokeCustomStatements(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-custom")
	pw := f.create(t, name, seedStatements)
	conn := f.s.Connect(t, name, pw, f.d.Name)
	errs := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name, Statements: []string{
		`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"; DROP ROLE "{{username}}";`}}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if f.roleExists(t, name) {
		t.Error("role left")
	}
	if err := conn.Ping(f.ctx); err == nil {
		t.Error("session survived a custom revocation")
	}
	// A failing custom statement rolls back and reports.
	name2 := newName(t, "v-custom")
	f.create(t, name2, seedStatements)
	errs = f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name2, Statements: []string{`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"; DROP ROLE "{{name}}"; SELECT 1/0`}}})
	if want := "revoke user " + name2 + ": revocation statement 3: division by zero (SQLSTATE 22012)"; errs[0] == nil || errs[0].Error() != want {
		t.Errorf("err = %v, want %s", errs[0], want)
	}
	if !f.roleExists(t, name2) {
		t.Error("failed custom revocation was not rolled back")
	}
}

// TestRevokeBatch revokes 1,000 roles issued as the seed guide does, in a
// database of five tables, with ten of them logged in, and reports the rate.
func TestRevokeBatch(t *testing.T) {
	f := setup(t)
	admin(t, f.d, `CREATE TABLE a (id int); CREATE TABLE b (id int); CREATE TABLE c (id int); CREATE TABLE d (id serial); CREATE SCHEMA bs1; CREATE SCHEMA bs2`)
	const n = 1000
	names := make([]string, n)
	var b strings.Builder
	for i := range names {
		names[i] = fmt.Sprintf("v-batch-%s-%04d", newName(t, "b")[2:8], i)
		id := pgx.Identifier{names[i]}.Sanitize()
		fmt.Fprintf(&b, "CREATE ROLE %s LOGIN PASSWORD 'Batch-pw-1' VALID UNTIL 'infinity'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s; GRANT USAGE ON SCHEMA bs1, bs2 TO %s; COMMENT ON ROLE %s IS 'lessor:batch';", id, id, id, id, id)
	}
	f.s.DropRolesAtCleanup(t, names...)
	admin(t, f.d, b.String())
	var sessions []*pgx.Conn
	for _, name := range names[:10] {
		sessions = append(sessions, f.s.Connect(t, name, "Batch-pw-1", f.d.Name))
	}
	rs := make([]RevokeRequest, n)
	for i, name := range names {
		rs[i] = RevokeRequest{Username: name}
	}
	start := time.Now()
	errs := f.db.RevokeUsers(f.ctx, rs)
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("revoke %s: %v", names[i], err)
		}
	}
	t.Logf("revoked %d roles (each holding 6 grants, 10 logged in) in %s: %.0f roles/s", n, elapsed.Round(time.Millisecond), n/elapsed.Seconds())
	for _, c := range sessions {
		if err := c.Ping(f.ctx); err == nil {
			t.Error("a session of a revoked role survived")
		}
	}
	left, err := f.db.ListRolesWithCommentPrefix(f.ctx, "lessor:batch")
	if err != nil || len(left) != 0 {
		t.Errorf("%d roles left, %v", len(left), err)
	}
	var acl int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT cardinality(relacl) FROM pg_class WHERE relname = 'items'`).Scan(&acl); err != nil || acl != 1 {
		t.Errorf("items ACL has %d entries after revoking every grantee, want 1 (the owner), %v", acl, err)
	}
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT max(cardinality(nspacl)) FROM pg_namespace WHERE nspname IN ('bs1', 'bs2')`).Scan(&acl); err != nil || acl != 1 {
		t.Errorf("schema ACLs have up to %d entries after revoking every grantee, want 1 (the owner), %v", acl, err)
	}
}

// A role that fails in a batch gets its own error; the others are revoked.
func TestRevokeBatchAttributesErrors(t *testing.T) {
	f := setup(t)
	var names []string
	for range 5 {
		name := newName(t, "v-mixed")
		f.create(t, name, seedStatements)
		names = append(names, name)
	}
	rs := []RevokeRequest{{Username: names[0]}, {Username: names[1]}, {Username: "pg_signal_backend"},
		{Username: names[2]}, {Username: "v-absent"}, {Username: f.s.User}, {Username: names[3]}, {Username: names[4]}, {Username: names[0]}}
	errs := f.db.RevokeUsers(f.ctx, rs)
	for i, r := range rs {
		switch r.Username {
		case "pg_signal_backend":
			if errs[i] == nil || !strings.Contains(errs[i].Error(), `revoke user pg_signal_backend: drop role: cannot drop role pg_signal_backend because it is required by the database system (SQLSTATE 2BP01)`) {
				t.Errorf("reserved role: err = %v", errs[i])
			}
		case f.s.User:
			if want := "revoke user " + f.s.User + ": refusing to revoke the role lessor itself connects as"; errs[i] == nil || errs[i].Error() != want {
				t.Errorf("own role: err = %v, want %s", errs[i], want)
			}
		default:
			if errs[i] != nil {
				t.Errorf("revoke %s: %v", r.Username, errs[i])
			}
		}
	}
	for _, name := range names {
		if f.roleExists(t, name) {
			t.Errorf("role %s left", name)
		}
	}
}

// newAdmin makes a superuser of our own, so tests can change its password
// and logging without touching the server's.
func newAdmin(t *testing.T, f *fixture) Config {
	t.Helper()
	name := newName(t, "lessor-admin")
	pw, _ := GeneratePassword(rand.Reader)
	f.s.DropRolesAtCleanup(t, name)
	admin(t, f.d, fmt.Sprintf(`CREATE ROLE %s SUPERUSER LOGIN PASSWORD '%s'`, pgx.Identifier{name}.Sanitize(), pw))
	return configFor(f.s, f.d.Name, name, pw)
}

func TestRotateRootPassword(t *testing.T) {
	f := setup(t)
	cfg := newAdmin(t, f)
	db := connect(t, cfg)
	newPW, _ := GeneratePassword(rand.Reader)
	if err := db.RotateRootPassword(f.ctx, newPW, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.s.CanLogin(f.ctx, cfg.Username, cfg.Password, f.d.Name); err == nil {
		t.Error("old root password still works")
	}
	if err := f.s.CanLogin(f.ctx, cfg.Username, newPW, f.d.Name); err != nil {
		t.Errorf("new root password refused: %v", err)
	}
	// The DB goes on working, including new connections to other databases.
	d2 := f.s.NewDatabase(t)
	name := newName(t, "v-after-rotate")
	f.s.DropRolesAtCleanup(t, name)
	if err := db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: newPW, Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}
	admin(t, d2, `CREATE TABLE t (id int); GRANT SELECT ON t TO `+pgx.Identifier{name}.Sanitize())
	if errs := db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}}); errs[0] != nil {
		t.Errorf("revoke after rotation: %v", errs[0])
	}

	// Statements that set some other password: the login check fails and
	// the password in force is put back.
	bad := []string{`ALTER ROLE "{{username}}" WITH PASSWORD 'Not-The-New-1'`}
	other, _ := GeneratePassword(rand.Reader)
	err := db.RotateRootPassword(f.ctx, other, bad)
	if err == nil || !strings.Contains(err.Error(), "login with the new password failed, old password restored: connect to") {
		t.Errorf("err = %v", err)
	}
	if strings.Contains(err.Error(), other) || strings.Contains(err.Error(), newPW) {
		t.Errorf("error shows a password: %v", err)
	}
	if err := f.s.CanLogin(f.ctx, cfg.Username, newPW, f.d.Name); err != nil {
		t.Errorf("password in force was not restored: %v", err)
	}
}

func TestNoPasswordInServerLog(t *testing.T) {
	f := setup(t)
	if f.s.LogFile == "" {
		msg := "server log path unknown (set LESSOR_TEST_PG_LOG)"
		if pgtestRequired() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cfg := newAdmin(t, f)
	admin(t, f.d, fmt.Sprintf(`ALTER ROLE %s SET log_statement = 'all'`, pgx.Identifier{cfg.Username}.Sanitize()))
	db := connect(t, cfg)
	name := newName(t, "v-logged")
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	if err := db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: pw, Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}
	rootPW, _ := GeneratePassword(rand.Reader)
	if err := db.RotateRootPassword(f.ctx, rootPW, nil); err != nil {
		t.Fatal(err)
	}
	// The same with plaintext passwords proves that the log would show them.
	plain := cfg
	plain.Password = rootPW
	plain.PasswordAuthentication = AuthPassword
	pdb := connect(t, plain)
	name2 := newName(t, "v-plain-logged")
	f.s.DropRolesAtCleanup(t, name2)
	pw2, _ := GeneratePassword(rand.Reader)
	if err := pdb.CreateUser(f.ctx, CreateUserRequest{Username: name2, Password: pw2, Expiration: time.Now().Add(time.Hour), Statements: seedStatements}); err != nil {
		t.Fatal(err)
	}

	log := waitForLog(t, f.s.LogFile, name2)
	if !strings.Contains(log, `CREATE ROLE "`+name+`" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:`) {
		t.Errorf("log has no CREATE ROLE statement for %s with a verifier: is log_statement in effect?", name)
	}
	if !strings.Contains(log, pw2) {
		t.Errorf("control: the plaintext password of %s is not in the log, so this test proves nothing", name2)
	}
	for what, secret := range map[string]string{"issued password": pw, "new root password": rootPW} {
		if strings.Contains(log, secret) {
			t.Errorf("%s appears in the server log", what)
		}
	}
}

func pgtestRequired() bool { return strings.TrimSpace(os.Getenv(pgtest.EnvRequirePG)) == "1" }

// waitForLog reads the server log until it mentions marker: the server
// writes it asynchronously (its logging collector, on a loaded machine,
// seconds later).
func waitForLog(t *testing.T, path, marker string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read server log: %v", err)
		}
		if strings.Contains(string(b), marker) || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConnectErrors(t *testing.T) {
	s := pgtest.Require(t)
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Connect(ctx, Config{ConnectionURL: fmt.Sprintf("postgres://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", port), Username: "u", Password: "secret-pw"})
	if want := fmt.Sprintf("connect to 127.0.0.1:%d: connection refused", port); err == nil || err.Error() != want {
		t.Errorf("closed port: err = %v, want %s", err, want)
	}

	wrong := "Wrong/pw?#%-" + s.Password
	cfg := configFor(s, "postgres", s.User, wrong)
	_, err = Connect(ctx, cfg)
	want := fmt.Sprintf(`connect to %s:%d: password authentication failed for user "%s" (SQLSTATE 28P01)`, s.Host, s.Port, s.User)
	if err == nil || err.Error() != want {
		t.Errorf("wrong password: err = %v, want %s", err, want)
	}

	// A server that accepts TCP and never answers: a clear error, in time.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = Connect(ctx, Config{ConnectionURL: "postgres://u:p@" + hung.Addr().String() + "/db?sslmode=disable", ConnectTimeout: time.Second})
	if want := "connect to " + hung.Addr().String() + ": timed out after 1s"; err == nil || err.Error() != want {
		t.Errorf("hung server: err = %v, want %s", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("hung server: gave up after %s", d)
	}
}

// TestPasswordNotSentInClear: the admin's password, and a static role's
// that TryLogin checks, go to no server that asks for them in clear text
// over a connection whose server nobody verified (plain TCP, or the TLS
// of sslmode prefer or allow that someone in between refuses): it would
// keep the login. Allowed when the connection string asks for it.
func TestPasswordNotSentInClear(t *testing.T) {
	ctx := context.Background()
	addr, got := pgtest.CatchPasswords(t)
	caught := func(what string) {
		t.Helper()
		select {
		case p := <-got:
			t.Fatalf("%s: the server was sent the password %q", what, p)
		default:
		}
	}
	for _, q := range []string{"", "?sslmode=disable", "?sslmode=prefer", "?sslmode=allow"} {
		cfg := Config{ConnectionURL: "postgres://{{username}}:{{password}}@" + addr + "/db" + q, Username: "admin", Password: "admin-secret"}
		if _, err := Connect(ctx, cfg); err == nil || !strings.Contains(err.Error(), "sslmode=verify-full") {
			t.Fatalf("connect %q: %v", q, err)
		}
		caught("connect " + q)
		if res, err := TryLogin(ctx, cfg, "app", "static-secret"); res != LoginUnknown || err == nil || !strings.Contains(err.Error(), "require_auth=password") {
			t.Fatalf("try login %q: %v, %v", q, res, err)
		}
		caught("try login " + q)
	}
	cfg := Config{ConnectionURL: "postgres://{{username}}:{{password}}@" + addr + "/db?sslmode=disable&require_auth=password", Username: "admin", Password: "admin-secret"}
	if _, err := Connect(ctx, cfg); err == nil {
		t.Fatal("connected")
	}
	if p := <-got; p != "admin-secret" {
		t.Fatalf("with require_auth=password the server was sent %q", p)
	}
}

func TestStatementTimeout(t *testing.T) {
	f := setup(t)
	cfg := f.cfg
	cfg.StatementTimeout = 500 * time.Millisecond
	db := connect(t, cfg)
	name := newName(t, "v-slow")
	f.s.DropRolesAtCleanup(t, name)
	start := time.Now()
	err := db.CreateUser(f.ctx, CreateUserRequest{Username: name, Password: "Aa-1", Expiration: time.Now(), Statements: []string{`CREATE ROLE "{{name}}"; SELECT pg_sleep(30)`}})
	if err == nil || !strings.Contains(err.Error(), "creation statement 2: canceling statement due to statement timeout (SQLSTATE 57014)") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if f.roleExists(t, name) {
		t.Error("role left after a timed-out creation")
	}
	// The connection is usable afterwards.
	if _, err := db.ListRolesWithCommentPrefix(f.ctx, "x"); err != nil {
		t.Errorf("after timeout: %v", err)
	}
}

func TestErrorsNeverShowThePassword(t *testing.T) {
	f := setup(t)
	cfg := newAdmin(t, f)
	db := connect(t, cfg)
	// PostgreSQL echoes bad input in its message: here, the password.
	err := db.CreateUser(f.ctx, CreateUserRequest{Username: "v-echo", Password: "x", Expiration: time.Now(),
		Statements: []string{`SELECT '` + cfg.Password + `'::int`}})
	if err == nil {
		t.Fatal("no error")
	}
	want := `create user v-echo: creation statement 1: invalid input syntax for type integer: "[password]" (SQLSTATE 22P02)`
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"empty url":        {Config{}, "connection_url cannot be empty"},
		"template in user": {Config{ConnectionURL: "postgres://h/db", Username: "{{username}}"}, "username and/or password cannot contain the template variables"},
		"template in pw":   {Config{ConnectionURL: "postgres://h/db", Password: "a{{password}}"}, "username and/or password cannot contain the template variables"},
		"auth type":        {Config{ConnectionURL: "postgres://h/db", PasswordAuthentication: "md5"}, "'md5' is not a valid password authentication type"},
		"bad url":          {Config{ConnectionURL: "postgres://{{username}}:{{password}}@h:notaport/db", Username: "u", Password: "s3cret"}, "unable to parse connection url (a postgres:// URL): it is neither"},
		"ok":               {Config{ConnectionURL: "postgres://{{username}}:{{password}}@h/db", Username: "u", Password: "p@ss/w:rd"}, ""},
		"ok kv":            {Config{ConnectionURL: "host=h user={{username}} password={{password}}", Username: "u", Password: "p", DisableEscaping: true, PasswordAuthentication: "password"}, ""},
	}
	for name, c := range cases {
		err := c.cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
		if c.cfg.Password != "" && err != nil && strings.Contains(err.Error(), c.cfg.Password) {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
}

func TestConnConfig(t *testing.T) {
	cfg := Config{ConnectionURL: "postgres://{{username}}:{{password}}@h:5433/db?sslmode=disable", Username: "u", Password: "p@ss/w:rd"}
	cc, err := cfg.connConfig(cfg.Password)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %d %s %s %s %s %s %s %s", cc.Host, cc.Port, cc.Database, cc.User, cc.Password,
		cc.RuntimeParams["application_name"], cc.RuntimeParams["timezone"], cc.RuntimeParams["statement_timeout"], cc.ConnectTimeout)
	if want := "h 5433 db u p@ss/w:rd lessor UTC 10000 10s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	kv := Config{ConnectionURL: "host=h dbname=db application_name=mine user={{username}} password={{password}}", Username: "u", Password: "pw", DisableEscaping: true, StatementTimeout: 3 * time.Second}
	cc, err = kv.connConfig(kv.Password)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cc.RuntimeParams["timezone"]; ok || cc.RuntimeParams["application_name"] != "mine" || cc.RuntimeParams["statement_timeout"] != "3000" || cc.Password != "pw" {
		t.Errorf("keyword/value DSN: params %v, password %q", cc.RuntimeParams, cc.Password)
	}
}

func TestIsTransient(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "40P01"}), true},
		{&pgconn.PgError{Code: "XX000", Message: "tuple concurrently updated"}, true},
		{&pgconn.PgError{Code: "XX000", Message: "cache lookup failed"}, false},
		{&pgconn.PgError{Code: "42P01"}, false},
		{errors.New("40001"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v", c.err, got)
		}
	}
}

// Concurrent issuers granting on the same table collide in the catalog
// ("tuple concurrently updated"); the transaction is retried, not failed.
func TestCreateUserConcurrentGrants(t *testing.T) {
	f := setup(t)
	const workers, each = 3, 15
	dbs := []*DB{f.db, connect(t, f.cfg), connect(t, f.cfg)}
	var names []string
	for range workers * each {
		names = append(names, newName(t, "v-conc"))
	}
	f.s.DropRolesAtCleanup(t, names...)
	errc := make(chan error, workers*each)
	for w := range workers {
		go func() {
			for i := range each {
				errc <- dbs[w].CreateUser(f.ctx, CreateUserRequest{Username: names[w*each+i], Password: "Aa-1xxxxxxxxxxxxxxxx",
					Expiration: time.Now().Add(time.Hour), Statements: seedStatements})
			}
		}()
	}
	for range workers * each {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	var n int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT cardinality(relacl) FROM pg_class WHERE relname = 'items'`).Scan(&n); err != nil || n != workers*each+1 {
		t.Errorf("items ACL has %d entries, want %d, %v", n, workers*each+1, err)
	}
}

// A connection lost under the DB (server restart, network) is replaced on
// next use; a closed DB stays closed.
func TestReconnectAndClose(t *testing.T) {
	f := setup(t)
	var pid uint32
	f.db.mu.Lock()
	pid = f.db.conn.PgConn().PID()
	f.db.mu.Unlock()
	admin(t, f.d, `SELECT pg_terminate_backend($1)`, pid)
	// The first use finds the connection dead…
	_, _ = f.db.ListRolesWithCommentPrefix(f.ctx, "x")
	// …and the next one reconnects.
	if _, err := f.db.ListRolesWithCommentPrefix(f.ctx, "x"); err != nil {
		t.Fatalf("after the connection was killed: %v", err)
	}
	if err := f.db.Close(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.ListRolesWithCommentPrefix(f.ctx, "x"); err == nil || !strings.Contains(err.Error(), "database connection is closed") {
		t.Errorf("after Close: err = %v", err)
	}
}

// Expired roles skip ALTER ROLE NOLOGIN (their password is refused
// already), but the catalog query still sees their sessions: an expired
// role with a session open goes the careful way and its session ends,
// and one without is dropped all the same.
func TestRevokeExpiredRoles(t *testing.T) {
	f := setup(t)
	quiet, busy := newName(t, "v-quiet"), newName(t, "v-busy")
	f.create(t, quiet, seedStatements)
	pw := f.create(t, busy, seedStatements)
	conn := f.s.Connect(t, busy, pw, f.d.Name)
	admin(t, f.d, `ALTER ROLE `+pgx.Identifier{quiet}.Sanitize()+` VALID UNTIL '2000-01-01'; ALTER ROLE `+pgx.Identifier{busy}.Sanitize()+` VALID UNTIL '2000-01-01'`)
	for i, err := range f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: quiet}, {Username: busy}}) {
		if err != nil {
			t.Errorf("revoke %d: %v", i, err)
		}
	}
	if f.roleExists(t, quiet) || f.roleExists(t, busy) {
		t.Error("an expired role survived its revocation")
	}
	if err := conn.Ping(f.ctx); err == nil {
		t.Error("the session of an expired role survived its revocation")
	}
}

// terminateDropped ends a session that outlived its role's DROP, found by
// the role's oid: the one a login not bound by VALID UNTIL could open
// between the catalog query and DROP ROLE.
func TestTerminateDroppedRoleSessions(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-late")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`})
	conn := f.s.Connect(t, name, pw, f.d.Name)
	var oid uint32
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT oid FROM pg_roles WHERE rolname = $1`, name).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	admin(t, f.d, `DROP ROLE `+pgx.Identifier{name}.Sanitize())
	if err := conn.Ping(f.ctx); err != nil {
		t.Fatalf("the session should outlive DROP ROLE until ended: %v", err)
	}
	adm, err := f.db.admin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.terminateDropped(f.ctx, adm, []uint32{oid}); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(f.ctx); err == nil {
		t.Error("the session of a dropped role survived terminateDropped")
	}
}

// TestRevokeGrantOptionPassedOn: a credential given a privilege WITH
// GRANT OPTION passes it on, to another role and to PUBLIC. Its
// revocation takes the privilege from it and from everyone it passed it
// to (they had it only through the credential), and drops the role,
// where a plain REVOKE failed on the dependent grants for ever.
func TestRevokeGrantOptionPassedOn(t *testing.T) {
	f := setup(t)
	other := newName(t, "v-other")
	f.s.DropRolesAtCleanup(t, other)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{other}.Sanitize()+` NOLOGIN`)
	name := newName(t, "v-grantopt")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON items TO "{{name}}" WITH GRANT OPTION;`})
	conn := f.s.Connect(t, name, pw, f.d.Name)
	if _, err := conn.Exec(f.ctx, `GRANT SELECT ON items TO `+pgx.Identifier{other}.Sanitize()+`, PUBLIC`); err != nil {
		t.Fatal(err)
	}
	conn.Close(f.ctx)
	f.revoke(t, name)
	if f.roleExists(t, name) {
		t.Fatalf("role %s still exists", name)
	}
	var others, public bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT has_table_privilege($1, 'items', 'SELECT'),
		EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a WHERE c.relname = 'items' AND a.grantee = 0)`, other).Scan(&others, &public); err != nil {
		t.Fatal(err)
	}
	if others || public {
		t.Errorf("what the credential passed on outlived it: to %s %v, to PUBLIC %v", other, others, public)
	}
}

// TestRenewOnlyTheLeasesRole: renewal changes a role only if its comment
// names the lease (belongs claims it): a role of the same name made by
// someone else after the lease's role was dropped keeps its VALID UNTIL.
func TestRenewOnlyTheLeasesRole(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-renew")
	f.s.DropRolesAtCleanup(t, name)
	admin(t, f.d, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` LOGIN; COMMENT ON ROLE `+pgx.Identifier{name}.Sanitize()+` IS 'a DBA''s login'`)
	mine := func(c string) bool { return c == "lease-1" }
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	err := f.db.RenewUser(f.ctx, name, exp, nil, mine)
	if !errors.Is(err, ErrNotMine) {
		t.Fatalf("renew of a role that is not the lease's: %v", err)
	}
	var unset bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT rolvaliduntil IS NULL FROM pg_roles WHERE rolname = $1`, name).Scan(&unset); err != nil || !unset {
		t.Fatalf("the DBA's login got a VALID UNTIL (%v)", err)
	}
	admin(t, f.d, `COMMENT ON ROLE `+pgx.Identifier{name}.Sanitize()+` IS 'lease-1'`)
	if err := f.db.RenewUser(f.ctx, name, exp, nil, mine); err != nil {
		t.Fatalf("renew of the lease's role: %v", err)
	}
	if err := f.db.RenewUser(f.ctx, "v-no-such-role", exp, nil, mine); err == nil || !strings.Contains(err.Error(), `role "v-no-such-role" does not exist`) {
		t.Fatalf("renew of a role that does not exist: %v", err)
	}
}

// TestMissingServiceIsNamed: the driver reads libpq's environment, and a
// PGSERVICE in lessor's that no service file holds fails every connection
// string; the error says so, not only that the string did not parse.
func TestMissingServiceIsNamed(t *testing.T) {
	t.Setenv("PGSERVICEFILE", filepath.Join(t.TempDir(), "none.conf"))
	t.Setenv("PGSERVICE", "no-such-service")
	cfg := Config{ConnectionURL: "postgresql://{{username}}:{{password}}@127.0.0.1:5432/db", Username: "u"}
	_, err := cfg.connConfig("pw")
	if err == nil || !strings.Contains(err.Error(), "PGSERVICE=no-such-service in lessor's environment names a service no service file holds") {
		t.Fatalf("connConfig with a missing service: %v", err)
	}
}

// A revocation that meets another session dropping the same role (an
// issuer dropping the role of a lease a reaper claimed meanwhile, two
// operators) waits for it, and then finds the role "concurrently
// deleted": the role is gone, which is what the revocation wanted, so the
// retry finds nothing to drop and succeeds, where the revocation failed
// and the lease waited for a retry minutes later.
func TestRevokeMeetsConcurrentDrop(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-twice")
	f.create(t, name, []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`})
	other := f.d.Conn(t)
	tx, err := other.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(f.ctx))
	if _, err := tx.Exec(f.ctx, `DROP ROLE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0] }()
	// The revocation waits on the other session's lock before that
	// session commits.
	watch := f.d.Conn(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := watch.QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, f.d.Name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("the revocation ended before the other drop committed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation never waited on the other drop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("revoke a role another session dropped meanwhile: %v", err)
	}
	if f.roleExists(t, name) {
		t.Fatal("the role survived")
	}
}
