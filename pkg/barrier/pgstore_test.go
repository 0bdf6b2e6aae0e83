package barrier

import (
	"errors"
	"path/filepath"
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
