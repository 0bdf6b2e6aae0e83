package barrier

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestGenerationSeveralHosts: two hosts share one PostgreSQL store, each
// with its own generation file. Writes by one move the store's generation
// past what the other last saw, which is not a rollback; the database's
// rows put back from an older copy are one, on both hosts.
func TestGenerationSeveralHosts(t *testing.T) {
	db := pgtest.Require(t).NewDatabase(t)
	u := db.URL + "&schema=shared"
	created, err := storage.CreatePostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Close()
	if _, err := Init(ctx, openPG(t, u), testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	host := func(name string) (*Barrier, error) {
		b, err := Open(ctx, openPG(t, u), testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return b, b.TrackGeneration(ctx, filepath.Join(dir, name, "generation"), false)
	}
	a, err := host("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := host("b")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		put(t, a, "sys/token/id/a", string(rune('0'+i)))
	}
	put(t, b, "sys/token/id/b", "1")
	// Host a comes back after b wrote: the store moved forward.
	if a, err = host("a"); err != nil {
		t.Fatalf("host a after host b wrote: %v", err)
	}
	conn := db.Conn(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE public.kv_copy AS SELECT * FROM shared.kv`); err != nil {
		t.Fatal(err)
	}
	put(t, b, "sys/token/id/b", "revoked")
	if _, err := host("a"); err != nil {
		t.Fatal(err)
	}
	// The database administrator puts the old rows back.
	if _, err := conn.Exec(ctx, `BEGIN; DELETE FROM shared.kv; INSERT INTO shared.kv SELECT * FROM public.kv_copy; COMMIT`); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b"} {
		if _, err := host(h); !errors.Is(err, ErrRolledBack) {
			t.Fatalf("host %s after the rows were put back: %v", h, err)
		}
	}
}

func openPG(t *testing.T, u string) *storage.Postgres {
	t.Helper()
	p, err := storage.OpenPostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// initPostgresStore is initStore for a store in a PostgreSQL database of
// the test's own.
func initPostgresStore(t *testing.T) (string, storage.Store) {
	t.Helper()
	u := pgtest.Require(t).NewDatabase(t).URL
	p, err := storage.CreatePostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if _, err := Init(ctx, p, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return u, p
}

// openLocation opens a store file or a store URL, in a child process.
func openLocation(loc string) (storage.Store, error) {
	if storage.IsPostgresURL(loc) {
		return storage.OpenPostgres(ctx, loc, storage.PostgresOptions{})
	}
	return storage.OpenBolt(loc, storage.BoltOptions{})
}

// TestReadsHeldToTheCheckedScan: the state database's administrator can
// make a lookup by key and a scan of a range answer differently, with a
// row security policy that tests the query's text (or by changing a row
// between two statements of a transaction at READ COMMITTED). A revoked
// token entry put back where only lookups see it, and a deny policy that
// only lookups do not see, left the sums of the scans right: each read is
// held to what the scan that checked its set saw (refused, or, where the
// read-ahead brings the record and its set in one statement, answered as
// the scan was).
func TestReadsHeldToTheCheckedScan(t *testing.T) {
	const (
		tok  = "sys/token/id/ab17"
		deny = "sys/policy/deny"
	)
	b, p, db, u := rowSecurityStore(t)
	// The entry is alone in its bucket, whose sum is then that of none.
	put(t, b, tok, "revoked", "sys/token/id/cd99", "live", deny, `path "*" { capabilities = ["deny"] }`)
	revoked := physGet(t, p, tok)
	if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete(tok) }); err != nil {
		t.Fatal(err)
	}

	if _, err := db.Conn(t).Exec(ctx, `INSERT INTO lessor.kv (key, value) VALUES ($1, $2)`, []byte(tok), revoked); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `ALTER TABLE lessor.kv ENABLE ROW LEVEL SECURITY;
CREATE POLICY lookups ON lessor.kv USING (CASE key
	WHEN '`+tok+`'::bytea THEN pg_catalog.strpos(pg_catalog.current_query(), 'key >=') = 0
	WHEN '`+deny+`'::bytea THEN pg_catalog.strpos(pg_catalog.current_query(), 'key >=') > 0
	ELSE true END)`)

	b, err := Open(ctx, openPG(t, u), testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	// Either the read is refused as tampered, or it finds what the scan
	// found, when both came in one statement: never the revoked entry,
	// always the deny policy.
	var te *TamperedError
	read := func(keys ...string) ([][]byte, error) {
		var vs [][]byte
		err := b.View(ctx, func(tx storage.Tx) error {
			var err error
			vs, err = storage.GetMany(tx, keys)
			return err
		})
		return vs, err
	}
	if vs, err := read(tok); !errors.As(err, &te) && (err != nil || vs[0] != nil) {
		t.Errorf("read of the revoked entry only lookups see: %q, %v", vs, err)
	}
	if vs, err := read(deny); !errors.As(err, &te) && (err != nil || !strings.Contains(string(vs[0]), "deny")) {
		t.Errorf("read of the policy only lookups miss: %q, %v", vs, err)
	}
	if vs, err := read(deny, tok); !errors.As(err, &te) && (err != nil || vs[1] != nil || !strings.Contains(string(vs[0]), "deny")) {
		t.Errorf("GetMany of both: %q, %v", vs, err)
	}
	if err := getErr(b, tok); err != nil && !errors.As(err, &te) {
		t.Errorf("Get of the revoked entry: %v", err)
	}
}

// rowSecurityStore makes a store in a PostgreSQL database of its own and
// a login for it that row security binds (a superuser bypasses it), as
// lessor's own store role is, and returns the store (as its creator
// opened it), the database, and the database's URL with that login.
func rowSecurityStore(t *testing.T) (*Barrier, *storage.Postgres, *pgtest.Database, string) {
	t.Helper()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	p, err := storage.CreatePostgres(ctx, db.URL, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	b, err := Init(ctx, p, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role, password := "lessor_store_"+strings.ToLower(rand.Text()[:8]), rand.Text()
	srv.DropRolesAtCleanup(t, role)
	db.Exec(t, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN PASSWORD '%[2]s';
GRANT USAGE ON SCHEMA lessor TO %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lessor TO %[1]s`, role, password))
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return b, p, db, u.String()
}

// TestMissedTokenEntryInAWrite: the state database's administrator hides
// a live token's entry from lessor's read-write transactions only (row
// security on transaction_read_only), where a revocation looks it up and,
// finding nothing, revokes nothing and reports success, while the reads
// that authenticate the token, in read-only transactions, go on finding
// it behind sums that add up. A write that finds no entry is held to its
// bucket's sum, which counts the entry.
func TestMissedTokenEntryInAWrite(t *testing.T) {
	const tok = "sys/token/id/ab17"
	b := hiddenFromWrites(t, tok, "live")
	if err := getErr(b, tok); err != nil {
		t.Fatalf("read-only read of the entry: %v", err)
	}
	err := b.Update(ctx, func(tx storage.Tx) error {
		v, err := tx.Get(tok)
		if err == nil && v == nil {
			// What a revocation then does: nothing.
			return errors.New("the live entry was not found")
		}
		return err
	})
	if !isTokenTamper(err) {
		t.Errorf("write that looks the entry up: %v", err)
	}
}

// TestMissedDeleteInAWrite: a policy, or a token entry, that the state
// database hides from read-write transactions only was "deleted" by a
// delete that found nothing to delete, and went on granting what it
// granted to the reads that authenticate requests. A delete that finds
// nothing is held to the set's sum.
func TestMissedDeleteInAWrite(t *testing.T) {
	const (
		pol = "sys/policy/breakglass"
		tok = "sys/token/id/ab17"
	)
	b := hiddenFromWrites(t, pol, `path "*" { capabilities = ["sudo"] }`, tok, "live")
	var te *TamperedError
	for _, k := range []string{pol, tok} {
		err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete(k) })
		if !errors.As(err, &te) || te.Core != isCore(k) {
			t.Errorf("delete of %s: %v", k, err)
		}
	}
}

// hiddenFromWrites puts kv (key, value, …) into a new store in
// PostgreSQL, has row security hide them from read-write transactions, as
// the state database's administrator can, and opens the store as a login
// row security binds.
func hiddenFromWrites(t *testing.T, kv ...string) *Barrier {
	t.Helper()
	b, _, db, u := rowSecurityStore(t)
	put(t, b, kv...)
	var hidden []string
	for i := 0; i < len(kv); i += 2 {
		hidden = append(hidden, "'"+kv[i]+"'::bytea")
	}
	db.Exec(t, `ALTER TABLE lessor.kv ENABLE ROW LEVEL SECURITY;
CREATE POLICY writers_miss ON lessor.kv USING (key NOT IN (`+strings.Join(hidden, ", ")+`)
	OR pg_catalog.current_setting('transaction_read_only')::bool)`)
	b, err := Open(ctx, openPG(t, u), testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestListHeldToTheCheckedScan: the state database's administrator hid a
// policy from the query of a walk alone (row security on its text), and
// the listing of the policies left it out though the set check, whose
// scan counted it, passed. A walk of the core records lists what that
// scan found.
func TestListHeldToTheCheckedScan(t *testing.T) {
	const deny = "sys/policy/deny"
	b, _, db, u := rowSecurityStore(t)
	put(t, b, deny, `path "*" { capabilities = ["deny"] }`, "sys/policy/apps", "apps", "core/mounts", "m", "logical/x", "x")
	db.Exec(t, `ALTER TABLE lessor.kv ENABLE ROW LEVEL SECURITY;
CREATE POLICY walks ON lessor.kv USING (key <> '`+deny+`'::bytea OR pg_catalog.strpos(pg_catalog.current_query(), 'LIMIT') = 0)`)
	b, err := Open(ctx, openPG(t, u), testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string][]string{
		"sys/policy/":  {"sys/policy/apps", deny},
		"sys/policy/d": {deny},
		"":             {"core/mounts", "logical/x", "sys/policy/apps", deny},
	} {
		var keys []string
		if err := b.View(ctx, func(tx storage.Tx) (err error) { keys, err = tx.List(prefix); return err }); err != nil || !slices.Equal(keys, want) {
			t.Errorf("list %q: %q, %v; want %q", prefix, keys, err, want)
		}
	}
}

// TestListOfACheckedSetHeldToItsScan: the state database's administrator
// hid a static role and a connection from the query of a walk alone (row
// security on its text), and the listings that a connection's write
// consults (no static role may manage its admin) and that a password
// policy's rewrite consults (which connections name it) left them out,
// though every read of one checks its set. A walk within a checked set
// lists what the scan that checks it found.
func TestListOfACheckedSetHeldToItsScan(t *testing.T) {
	const (
		static = "logical/u1/static-role/hidden"
		conn   = "logical/u1/config/hidden"
	)
	b, _, db, u := rowSecurityStore(t)
	put(t, b, static, "s", "logical/u1/static-role/app", "a", conn, "c", "logical/u1/config/main", "m", "logical/u1/creds/x", "x")
	db.Exec(t, `ALTER TABLE lessor.kv ENABLE ROW LEVEL SECURITY;
CREATE POLICY walks ON lessor.kv USING (key NOT IN ('`+static+`'::bytea, '`+conn+`'::bytea) OR pg_catalog.strpos(pg_catalog.current_query(), 'LIMIT') = 0)`)
	b, err := Open(ctx, openPG(t, u), testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string][]string{
		"logical/u1/static-role/":  {"logical/u1/static-role/app", static},
		"logical/u1/static-role/h": {static},
		"logical/u1/config/":       {conn, "logical/u1/config/main"},
	} {
		for _, write := range []bool{false, true} {
			var keys []string
			list := func(tx storage.Tx) (err error) { keys, err = tx.List(prefix); return err }
			if write {
				err = b.Update(ctx, list)
			} else {
				err = b.View(ctx, list)
			}
			if err != nil || !slices.Equal(keys, want) {
				t.Errorf("list %q (write %v): %q, %v; want %q", prefix, write, keys, err, want)
			}
		}
	}
}
