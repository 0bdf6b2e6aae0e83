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

// oldWrite writes key as a lessor from before the token buckets did: the
// record and the state record, and no guard record.
func oldWrite(t *testing.T, b *Barrier, phys storage.Store, key, value string) {
	t.Helper()
	err := phys.Update(ctx, func(tx storage.Tx) error {
		ring, root := b.current()
		sealed, err := sealRecord(ring, b.storeID, key, []byte(value), b.rand)
		if err != nil {
			return err
		}
		old, err := tx.Get(key)
		if err != nil {
			return err
		}
		st, err := parseState(physGetTx(tx), root, b.storeID)
		if err != nil {
			return err
		}
		e := root.hasher()
		if old != nil {
			st.sums.sub(e, key, old)
		}
		st.sums.add(e, key, sealed)
		st.gen++
		if err := tx.Put(key, sealed); err != nil {
			return err
		}
		return tx.Put(stateKey, st.marshal(root, b.storeID))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func physGetTx(tx storage.Tx) []byte {
	v, _ := tx.Get(stateKey)
	return v
}

// TestStaleGuardRecord: a store whose guard record is missing (written
// before the token buckets) or stale (another host runs such a lessor and
// wrote since) is read as before, still refuses a token entry put back
// (a pass checked against the state record stands in for the buckets),
// and gets a current guard record at its next write; the older lessor
// can go on reading the state record.
func TestStaleGuardRecord(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "sys/token/id/ab17", "token", "core/mounts", "m")
	if n := len(physGet(t, phys, stateKey)); n != stateLen {
		t.Fatalf("state record: %d bytes, want %d as older lessors read it", n, stateLen)
	}
	oldWrite(t, b, phys, "sys/token/id/cd00", "written by an older lessor")

	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sys/token/id/ab17", "sys/token/id/cd00"} {
		if err := getErr(b2, k); err != nil {
			t.Fatalf("read %s under a stale guard record: %v", k, err)
		}
	}
	// An entry put back while the guard record is stale: the pass finds it.
	old := physGet(t, phys, "sys/token/id/cd00")
	oldWrite(t, b, phys, "sys/token/id/cd00", "renewed by an older lessor")
	current := physGet(t, phys, "sys/token/id/cd00")
	physPut(t, phys, "sys/token/id/cd00", old)
	var te *TamperedError
	if err := getErr(b2, "sys/token/id/ab17"); !errors.As(err, &te) {
		t.Fatalf("read under a stale guard record, an entry put back: %v", err)
	}
	if err := b2.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.As(err, &te) {
		t.Fatalf("write under a stale guard record, an entry put back: %v", err)
	}
	if n := len(physGet(t, phys, guardKey)); n != guardLen {
		t.Fatalf("guard record after the refused write: %d bytes", n)
	}

	// Undo the tampering, delete the guard record as a store from before
	// the buckets lacks it: the next write gives it a current one.
	physPut(t, phys, "sys/token/id/cd00", current)
	if err := phys.Update(ctx, func(tx storage.Tx) error { return tx.Delete(guardKey) }); err != nil {
		t.Fatal(err)
	}
	put(t, b2, "sys/token/id/ef00", "new")
	st, _, err := func() (st *state, raw []byte, err error) {
		err = phys.View(ctx, func(tx storage.Tx) error {
			st, raw, err = loadState(tx, b2.root, b2.storeID)
			return err
		})
		return
	}()
	if err != nil || !st.guarded {
		t.Fatalf("guard record after a write: %+v, %v", st, err)
	}
	old = physGet(t, phys, "sys/token/id/ef00")
	put(t, b2, "sys/token/id/ef00", "renewed")
	physPut(t, phys, "sys/token/id/ef00", old)
	if err := getErr(b2, "sys/token/id/ef00"); !isTokenTamper(err) {
		t.Fatalf("read of an older entry with a current guard record: %v", err)
	}
}

// TestCoreRecordsCheckedOnRead: a barrier opened before a policy was
// deleted or put back behind its back (a server) refuses the transaction
// that reads or lists the policies or the mount table, as a new command
// refuses to open the store.
func TestCoreRecordsCheckedOnRead(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) { testCoreRecordsCheckedOnRead(t, newRaw) })
	}
}

func testCoreRecordsCheckedOnRead(t *testing.T, newRaw func(t *testing.T) rawStore) {
	setup := func(t *testing.T) (rawStore, *Barrier) {
		raw := newRaw(t)
		b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, "core/mounts", "m", "sys/policy/ops", "deny", "sys/policy/apps", "read", "database/roles/r", "role")
		return raw, b
	}
	isCoreTamper := func(err error) bool {
		var te *TamperedError
		return errors.As(err, &te) && te.Core
	}
	refused := func(t *testing.T, b *Barrier) {
		t.Helper()
		for _, k := range []string{"sys/policy/ops", "sys/policy/apps", "core/mounts", "sys/policy/absent"} {
			if err := getErr(b, k); !isCoreTamper(err) {
				t.Fatalf("read %s: %v", k, err)
			}
		}
		err := b.View(ctx, func(tx storage.Tx) error { _, err := tx.List("sys/policy/"); return err })
		if !isCoreTamper(err) {
			t.Fatalf("list of the policies: %v", err)
		}
		err = b.View(ctx, func(tx storage.Tx) error {
			_, err := storage.GetMany(tx, []string{"database/roles/r", "core/mounts"})
			return err
		})
		if !isCoreTamper(err) {
			t.Fatalf("GetMany with the mount table: %v", err)
		}
		if err := getErr(b, "database/roles/r"); err != nil {
			t.Fatalf("read of a role: %v", err)
		}
	}
	t.Run("policy deleted", func(t *testing.T) {
		raw, b := setup(t)
		raw.del("sys/policy/ops")
		refused(t, b)
	})
	t.Run("policy put back after its deletion", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get("sys/policy/ops")
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete("sys/policy/ops") }); err != nil {
			t.Fatal(err)
		}
		raw.put("sys/policy/ops", old)
		refused(t, b)
	})
	t.Run("policy replaced by its older version", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get("sys/policy/apps")
		put(t, b, "sys/policy/apps", "read, narrower")
		raw.put("sys/policy/apps", old)
		refused(t, b)
	})
	t.Run("own writes", func(t *testing.T) {
		_, b := setup(t)
		err := b.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Put("sys/policy/new", []byte("x")); err != nil {
				return err
			}
			if err := tx.Delete("sys/policy/apps"); err != nil {
				return err
			}
			if _, err := tx.Get("sys/policy/ops"); err != nil {
				return err
			}
			_, err := tx.List("sys/policy/")
			return err
		})
		if err != nil {
			t.Fatalf("update that reads the policies after writing some: %v", err)
		}
		if err := getErr(b, "sys/policy/new"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGuardRecordDamaged: a guard record that does not authenticate is
// damage, never a reason to rebuild it from the records as they are.
func TestGuardRecordDamaged(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "sys/token/id/ab17", "token")
	for _, off := range []int{0, 5, 100, guardLen - 1} {
		g := physGet(t, phys, guardKey)
		g[off] ^= 0x40
		physPut(t, phys, guardKey, g)
		if err := getErr(b, "sys/token/id/ab17"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: read of a token entry: %v", off, err)
		}
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: write: %v", off, err)
		}
		g[off] ^= 0x40
		physPut(t, phys, guardKey, g)
	}
	put(t, b, "x", "y")
}

// TestRollbackSeenByAReader: a process that only reads (a server) learns
// the generation another process committed from the state record it
// reads, so rows put back from before that commit are refused there too,
// and a later write of its own does not build a second history on top of
// them; a record of the same generation that differs from the one it saw
// is refused as well.
func TestRollbackSeenByAReader(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			raw := newRaw(t)
			writer, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const tok = "sys/token/id/ab17"
			put(t, writer, tok, "token", "sys/policy/p", "x")
			reader, err := Open(ctx, raw.phys, testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			snap := map[string][]byte{}
			for _, k := range []string{stateKey, guardKey, tok} {
				snap[k] = raw.get(k)
			}
			if err := writer.Update(ctx, func(tx storage.Tx) error { return tx.Delete(tok) }); err != nil {
				t.Fatal(err)
			}
			// The reader reads after the revocation: it now knows its
			// generation.
			if err := getErr(reader, "sys/policy/p"); err != nil {
				t.Fatal(err)
			}
			for k, v := range snap {
				raw.put(k, v)
			}
			if err := getErr(reader, tok); !errors.Is(err, ErrRolledBack) {
				t.Fatalf("reader, rows from before the revocation put back: %v", err)
			}
			if err := reader.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.Is(err, ErrRolledBack) {
				t.Fatalf("reader's write over them: %v", err)
			}

			// Same generation, another record: a third barrier that saw
			// the state before the put-back refuses it after a fresh
			// write by someone who did not.
			for k, v := range snap {
				raw.put(k, v)
			}
			third, err := Open(ctx, raw.phys, testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			put(t, third, "y", "z")
			if err := writer.Update(ctx, func(tx storage.Tx) error { return tx.Put("w", []byte("v")) }); !errors.Is(err, ErrRolledBack) {
				t.Fatalf("writer after another history reached its generation: %v", err)
			}
		})
	}
}

// TestRekeyedElsewhereNotTampered: after another process rekeys, a
// running barrier's reads say so instead of reporting damage.
func TestRekeyedElsewhereNotTampered(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "sys/token/id/ab17", "token", "sys/policy/p", "x")
	running, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Rekey(ctx, otherKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sys/token/id/ab17", "sys/policy/p"} {
		if err := getErr(running, k); !errors.Is(err, errRekeyed) {
			t.Fatalf("read %s after a rekey elsewhere: %v", k, err)
		}
	}
}

// TestVersion1HeaderPutBack: a version 1 header and keyring kept from
// before a store's upgrade, put back, would turn every set check off; the
// state record the upgrade wrote gives them away.
func TestVersion1HeaderPutBack(t *testing.T) {
	b, phys := openFixture(t, 1)
	hdr1, ring1 := physGet(t, phys, headerKey), physGet(t, phys, keyringKey)
	put(t, b, "sys/token/id/ab17", "token") // upgrades to version 2
	physPut(t, phys, headerKey, hdr1)
	physPut(t, phys, keyringKey, ring1)
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a version 1 header put back: %v", err)
	}
}

// TestRotateUpgradesVersion1: a rotation is the first write to a store
// still in format version 1 (no record checksum), and it upgrades it, so
// that the keyring from before, put back, no longer opens the store there
// either.
func TestRotateUpgradesVersion1(t *testing.T) {
	b, phys := openFixture(t, 1)
	ring := physGet(t, phys, keyringKey)
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	physPut(t, phys, keyringKey, ring)
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with the keyring from before the rotation put back: %v", err)
	}
}

// TestKeyringPutBackAfterRotate: the keyring from before a rotation opens
// under the same root key, so someone who may write the store (the file,
// the kv table) can put it back. Later writes would then be sealed again
// with the retired data key, which an old copy of the keyring and an old
// unseal key open. The process that saw the rotation refuses to write
// with it, and a process started since refuses to open the store.
func TestKeyringPutBackAfterRotate(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			raw := newRaw(t)
			b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			put(t, b, "core/audit-hmac-key", "k", "sys/policy/apps", "read", "logical/m/config/db", "old root password")
			oldRing := raw.get(keyringKey)
			if term, err := b.Rotate(ctx); err != nil || term != 2 {
				t.Fatalf("rotate: %d, %v", term, err)
			}
			raw.put(keyringKey, oldRing)

			err = b.Update(ctx, func(tx storage.Tx) error { return tx.Put("logical/m/config/db", []byte("new root password")) })
			if !errors.Is(err, ErrRolledBack) {
				t.Errorf("write after the keyring was put back: %v; sealed with term %d", err, be.Uint32(raw.get("logical/m/config/db")[1:]))
			}
			if _, err := Open(ctx, raw.phys, testKey(t)); !errors.Is(err, ErrCorrupt) ||
				err.Error() != `open barrier: the store's keyring is not the one its record checksum names: an older keyring was put back (tampered)` {
				t.Errorf("open after the keyring was put back: %v", err)
			}
		})
	}
}

// TestKeyringPutBackAfterRotateElsewhere: a process that opened the store
// before another process rotated (a server, beside the command that
// rotated) never saw the new term: the keyring from before the rotation,
// put back, is the very one it holds, and its writes were sealed with the
// retired data key. The core records, which the rotation sealed with the
// new term and whose set the state record authenticates, tell it.
func TestKeyringPutBackAfterRotateElsewhere(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			raw := newRaw(t)
			b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			put(t, b, "core/audit-hmac-key", "k", "sys/policy/apps", "read", "logical/m/config/db", "old root password")
			server, err := Open(ctx, raw.phys, testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			put(t, server, "logical/before", "x")
			oldRing := raw.get(keyringKey)
			if term, err := b.Rotate(ctx); err != nil || term != 2 {
				t.Fatalf("rotate: %d, %v", term, err)
			}
			raw.put(keyringKey, oldRing)
			for name, write := range map[string]func(storage.Tx) error{
				"put first": func(tx storage.Tx) error { return tx.Put("logical/m/config/db", []byte("new root password")) },
				"read first": func(tx storage.Tx) error {
					if _, err := tx.Get("logical/before"); err != nil {
						return err
					}
					return tx.Put("logical/m/config/db", []byte("new root password"))
				},
			} {
				err = server.Update(ctx, write)
				if !errors.Is(err, ErrRolledBack) {
					t.Errorf("%s: write after the keyring was put back: %v; sealed with term %d", name, err, be.Uint32(raw.get("logical/m/config/db")[1:]))
				}
			}
		})
	}
}
