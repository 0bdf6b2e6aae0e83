package barrier

import (
	"errors"
	"testing"

	"github.com/lessorhq/lessor/pkg/storage"
)

// get reads key through s in a read transaction.
func getErr(s storage.Store, key string) error {
	return s.View(ctx, func(tx storage.Tx) error { _, err := tx.Get(key); return err })
}

func isTokenTamper(err error) bool {
	var te *TamperedError
	return errors.As(err, &te) && te.Token && !te.Core && errors.Is(err, ErrCorrupt)
}

// TestTokenEntriesGuarded: a token entry put back or replaced behind the
// barrier's back (plain bbolt, or SQL on the PostgreSQL schema) is refused
// by the read that would use it, in a barrier that is already open (a
// server) as in one opened afterwards (a command), and not only by Verify.
func TestTokenEntriesGuarded(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) { testTokenEntriesGuarded(t, newRaw) })
	}
}

func testTokenEntriesGuarded(t *testing.T, newRaw func(t *testing.T) rawStore) {
	const (
		tok      = "sys/token/id/ab17"
		neighbor = "sys/token/id/ab99" // same bucket
		other    = "sys/token/id/cd00" // another bucket
	)
	setup := func(t *testing.T) (rawStore, *Barrier) {
		raw := newRaw(t)
		b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, tok, "token", neighbor, "neighbor", other, "other", "sys/token/accessor/x", "ab17")
		for _, k := range []string{tok, neighbor, other} {
			if err := getErr(b, k); err != nil {
				t.Fatalf("read %s: %v", k, err)
			}
		}
		return raw, b
	}
	reopen := func(t *testing.T, raw rawStore) *Barrier {
		b, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err) // token entries are not summed at unseal
		}
		return b
	}

	t.Run("revoked entry put back", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get(tok)
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete(tok) }); err != nil {
			t.Fatal(err)
		}
		raw.put(tok, old)
		for name, s := range map[string]*Barrier{"open barrier": b, "reopened": reopen(t, raw)} {
			if err := getErr(s, tok); !isTokenTamper(err) {
				t.Fatalf("%s: read of the entry put back: %v", name, err)
			}
			// Its whole bucket is refused, so that no read of it trusts
			// a sum the entry put back makes wrong; other buckets read.
			if err := getErr(s, neighbor); !isTokenTamper(err) {
				t.Fatalf("%s: read of its neighbour: %v", name, err)
			}
			err := s.View(ctx, func(tx storage.Tx) error { _, err := storage.GetMany(tx, []string{other, tok}); return err })
			if !isTokenTamper(err) {
				t.Fatalf("%s: GetMany with the entry put back: %v", name, err)
			}
			if err := getErr(s, other); err != nil {
				t.Fatalf("%s: read in another bucket: %v", name, err)
			}
			// A write transaction reads the same way, and refuses.
			err = s.Update(ctx, func(tx storage.Tx) error {
				if _, err := tx.Get(tok); err != nil {
					return err
				}
				return tx.Put(tok, []byte("renewed"))
			})
			if !isTokenTamper(err) {
				t.Fatalf("%s: update that reads the entry put back: %v", name, err)
			}
		}
	})

	t.Run("entry replaced by its older version", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get(tok)
		put(t, b, tok, "token, one use left")
		raw.put(tok, old)
		if err := getErr(b, tok); !isTokenTamper(err) {
			t.Fatalf("read of the older version: %v", err)
		}
		if err := getErr(reopen(t, raw), tok); !isTokenTamper(err) {
			t.Fatalf("reopened: read of the older version: %v", err)
		}
	})

	t.Run("entry added", func(t *testing.T) {
		raw, b := setup(t)
		raw.put("sys/token/id/ab00", raw.get(tok)) // fails to open there anyway
		if err := getErr(b, tok); !isTokenTamper(err) {
			t.Fatalf("read with an entry added to the bucket: %v", err)
		}
	})

	t.Run("state record put back with the entry", func(t *testing.T) {
		raw, b := setup(t)
		oldState, old := raw.get(stateKey), raw.get(tok)
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete(tok) }); err != nil {
			t.Fatal(err)
		}
		raw.put(tok, old)
		raw.put(stateKey, oldState)
		// The bucket matches the old state, but this barrier has seen a
		// newer generation committed.
		if err := getErr(b, tok); !errors.Is(err, ErrRolledBack) {
			t.Fatalf("read with the state record put back: %v", err)
		}
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.Is(err, ErrRolledBack) {
			t.Fatalf("write with the state record put back: %v", err)
		}
	})

	t.Run("own writes in the bucket", func(t *testing.T) {
		_, b := setup(t)
		err := b.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Put("sys/token/id/ab55", []byte("new")); err != nil {
				return err
			}
			if err := tx.Delete(neighbor); err != nil {
				return err
			}
			if _, err := tx.Get(tok); err != nil {
				return err
			}
			if err := tx.Put(tok, []byte("renewed")); err != nil {
				return err
			}
			_, err := tx.Get("sys/token/id/ab55")
			return err
		})
		if err != nil {
			t.Fatalf("update reading its own writes in a bucket: %v", err)
		}
		for _, k := range []string{tok, "sys/token/id/ab55", other} {
			if err := getErr(b, k); err != nil {
				t.Fatalf("read %s after the update: %v", k, err)
			}
		}
		if _, err := b.Verify(ctx, true); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStateV1GetsBuckets: a state record written before the token buckets
// is read, token entries read without them, and the first write gives it
// the buckets, after a pass that refuses a store already tampered with.
func TestStateV1GetsBuckets(t *testing.T) {
	setupV1 := func(t *testing.T) (*storage.Bolt, *Barrier) {
		phys := newBolt(t, t.TempDir())
		b, err := Init(ctx, phys, testKey(t), InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, "sys/token/id/ab17", "token", "core/mounts", "m")
		// Write the state record as an older lessor did.
		st, err := parseState(physGet(t, phys, stateKey), b.root, b.storeID)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte{stateV1}
		body = be.AppendUint64(body, st.gen)
		body = append(body, st.sums.all[:]...)
		body = append(body, st.sums.core[:]...)
		physPut(t, phys, stateKey, append(body, stateMAC(b.root, b.storeID, body)...))
		b, err = Open(ctx, phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return phys, b
	}

	phys, b := setupV1(t)
	if got := mustReadAll(t, b)["sys/token/id/ab17"]; got != "token" {
		t.Fatalf("token entry under a version 1 state record: %q", got)
	}
	put(t, b, "sys/token/id/cd00", "other")
	if n := len(physGet(t, phys, stateKey)); n != stateV2Len {
		t.Fatalf("state record after the first write: %d bytes, want %d", n, stateV2Len)
	}
	old := physGet(t, phys, "sys/token/id/cd00")
	put(t, b, "sys/token/id/cd00", "renewed")
	physPut(t, phys, "sys/token/id/cd00", old)
	if err := getErr(b, "sys/token/id/cd00"); !isTokenTamper(err) {
		t.Fatalf("read of an older entry after the upgrade: %v", err)
	}

	// A version 1 state record over a store already tampered with is
	// not given buckets computed from the tampered records.
	phys, b = setupV1(t)
	if err := phys.Update(ctx, func(tx storage.Tx) error { return tx.Delete("sys/token/id/ab17") }); err != nil {
		t.Fatal(err)
	}
	err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) })
	var te *TamperedError
	if !errors.As(err, &te) {
		t.Fatalf("first write over a tampered store: %v", err)
	}
	if n := len(physGet(t, phys, stateKey)); n != stateV1Len {
		t.Fatalf("state record after the refused write: %d bytes", n)
	}
}
