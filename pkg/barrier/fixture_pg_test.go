package barrier

import (
	"errors"
	"reflect"
	"testing"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// fixtureOnPostgres copies the records of the fixture of format version
// version into a new PostgreSQL store, as a store moved there would hold
// them, and returns the store.
func fixtureOnPostgres(t *testing.T, version int) *storage.Postgres {
	t.Helper()
	_, bolt := openFixture(t, version)
	recs := map[string][]byte{}
	err := bolt.View(ctx, func(tx storage.Tx) error {
		return tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			recs[k] = v
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.Require(t).NewDatabase(t)
	p, err := storage.CreatePostgres(ctx, db.URL, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	err = p.Update(ctx, func(tx storage.Tx) error {
		for k, v := range recs {
			if err := tx.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFormatFixturesOnPostgres: the stores of format versions 1 and 2 open
// on PostgreSQL, where an Update reads the header with its first
// operation's records; a version 1 store is upgraded by its first write,
// and its version 1 header put back afterwards is refused.
func TestFormatFixturesOnPostgres(t *testing.T) {
	for _, version := range []int{1, 2} {
		p := fixtureOnPostgres(t, version)
		b, err := Open(ctx, p, testKey(t))
		if err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		if got := mustReadAll(t, b); !reflect.DeepEqual(got, fixtureWant) {
			t.Fatalf("version %d fixture reads %v", version, got)
		}
		v1Header := physGet(t, p, headerKey)
		put(t, b, "sys/token/id/ab01", "token", "after", "x")
		if v := b.Info().FormatVersion; v != 2 {
			t.Fatalf("version %d, after the first write: format version %d", version, v)
		}
		if _, err := b.Verify(ctx, true); err != nil {
			t.Fatalf("version %d: verify: %v", version, err)
		}
		if _, err := Open(ctx, p, testKey(t)); err != nil {
			t.Fatalf("version %d: open after the write: %v", version, err)
		}
		if version == 1 {
			physPut(t, p, headerKey, v1Header)
			if _, err := Open(ctx, p, testKey(t)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("upgraded store with its version 1 header put back: %v", err)
			}
		}
	}
}

// TestReaderOpenedBeforeTheUpgrade: a process that opened a version 1
// store (a server) and only reads goes on checking nothing once another
// process's write upgraded the store: a revoked token entry put back is
// refused by its reads as by those of a process opened after the upgrade.
func TestReaderOpenedBeforeTheUpgrade(t *testing.T) {
	const tok = "sys/token/id/ab01"
	p := fixtureOnPostgres(t, 1)
	server, err := Open(ctx, p, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := getErr(server, "core/mounts"); err != nil {
		t.Fatal(err)
	}
	cli, err := Open(ctx, p, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, tok, "token")
	revoked := physGet(t, p, tok)
	if err := cli.Update(ctx, func(tx storage.Tx) error { return tx.Delete(tok) }); err != nil {
		t.Fatal(err)
	}
	physPut(t, p, tok, revoked)
	if err := getErr(cli, tok); !isTokenTamper(err) {
		t.Fatalf("the upgrading process reads the entry put back: %v", err)
	}
	if err := getErr(server, tok); !isTokenTamper(err) {
		t.Errorf("the process opened before the upgrade reads the entry put back: %v", err)
	}
}
