package storage_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// TestBarrierChecksReadAhead: on a PostgreSQL store, what the barrier's
// set checks read (a token entry's bucket, the core records, the state
// records) comes in the same query as the records they check, not one
// query each, and the checks hold as before: a row deleted outside lessor
// is found, and a transaction's own writes in a checked set pass.
func TestBarrierChecksReadAhead(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Require(t).NewDatabase(t)
	u := db.URL + "&schema=ahead"
	p, err := storage.CreatePostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	key, err := barrier.KeyFromBase64(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.Init(ctx, p, key, barrier.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	records := []string{"core/mounts", "sys/policy/root", "sys/policy/p", "sys/token/id/ab01", "sys/token/id/ab02", "sys/token/id/cd01", "logical/x"}
	err = b.Update(ctx, func(tx storage.Tx) error {
		for _, k := range records {
			if err := tx.Put(k, []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := storage.TraceStatements(p)
	if b, err = barrier.Open(ctx, p, key); err != nil {
		t.Fatal(err)
	}
	// The open: the version, then BEGIN, one read, ROLLBACK.
	if got := n.Swap(0); got > 4 {
		t.Errorf("opening the barrier: %d statements, want 4", got)
	}
	get := func(tx storage.Tx, keys ...string) error {
		for _, k := range keys {
			if v, err := tx.Get(k); err != nil || string(v) != "v" {
				return fmt.Errorf("%s: %q, %w", k, v, err)
			}
		}
		return nil
	}
	// A record transaction: the records, their checks and the barrier's
	// own records in one query (BEGIN, the writers' lock, that query,
	// INSERT, COMMIT).
	err = b.Update(ctx, func(tx storage.Tx) error {
		if err := storage.Prefetch(tx, []string{"sys/policy/root", "core/mounts", "sys/token/id/ab01", "logical/y"}); err != nil {
			return err
		}
		if err := get(tx, "sys/policy/root", "core/mounts", "sys/token/id/ab01"); err != nil {
			return err
		}
		return tx.Put("logical/y", []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Swap(0); got > 5 {
		t.Errorf("a record transaction: %d statements, want 5", got)
	}
	// The same after another process committed, which the first write
	// learns from the state record and then checks the keyring against
	// the core records: read with the rest.
	other, err := barrier.Open(ctx, p, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Update(ctx, func(tx storage.Tx) error { return tx.Put("logical/other", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	n.Swap(0)
	if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("logical/y", []byte("w")) }); err != nil {
		t.Fatal(err)
	}
	if got := n.Swap(0); got > 5 {
		t.Errorf("a write after another process's: %d statements, want 5", got)
	}
	// A read of a token entry and of a core record, each with its check:
	// BEGIN, two reads, ROLLBACK.
	if err := b.View(ctx, func(tx storage.Tx) error { return get(tx, "sys/token/id/cd01", "core/mounts") }); err != nil {
		t.Fatal(err)
	}
	if got := n.Swap(0); got > 4 {
		t.Errorf("reading a token entry and a core record: %d statements, want 4", got)
	}
	// The checks answered from what was read ahead see the transaction's
	// own writes and deletes in the sets they check.
	err = b.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Put("sys/token/id/ab03", []byte("v")); err != nil {
			return err
		}
		if err := tx.Delete("sys/policy/p"); err != nil {
			return err
		}
		if err := storage.Prefetch(tx, []string{"sys/token/id/ab01", "core/mounts"}); err != nil {
			return err
		}
		return get(tx, "sys/token/id/ab01", "sys/token/id/ab03", "core/mounts")
	})
	if err != nil {
		t.Fatal(err)
	}
	// A row deleted outside lessor is found by the check read ahead.
	for _, c := range []struct{ gone, read string }{
		{"sys/token/id/ab02", "sys/token/id/ab01"},
		{"sys/policy/root", "core/mounts"},
	} {
		db.Exec(t, `DELETE FROM ahead.kv WHERE key = convert_to('`+c.gone+`', 'UTF8')`)
		b, err := barrier.Open(ctx, p, key)
		if c.read == "core/mounts" {
			// The unseal checks the core records itself.
			if !errors.Is(err, barrier.ErrCorrupt) {
				t.Fatalf("open after deleting %s: %v, want ErrCorrupt", c.gone, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, fn := range []func(storage.Tx) error{
			func(tx storage.Tx) error { return get(tx, c.read) },
			func(tx storage.Tx) error {
				if err := storage.Prefetch(tx, []string{c.read}); err != nil {
					return err
				}
				return get(tx, c.read)
			},
		} {
			if err := b.View(ctx, fn); !errors.Is(err, barrier.ErrCorrupt) {
				t.Errorf("reading %s after deleting %s: %v, want ErrCorrupt", c.read, c.gone, err)
			}
		}
	}
}
