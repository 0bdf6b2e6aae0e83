package barrier

import (
	"errors"
	"testing"

	"github.com/lessorhq/lessor/pkg/storage"
)

func isConfigTamper(err error) bool {
	var te *TamperedError
	return errors.As(err, &te) && te.Config && !te.Core && !te.Token && errors.Is(err, ErrCorrupt)
}

// checkedRecordKinds are a record of each kind that is checked with its set on
// read, beside a record of the same kind in the same set.
var checkedRecordKinds = []struct{ kind, key, neighbor string }{
	{"connection config", "logical/7f1c/config/pg", "logical/7f1c/config/other"},
	{"role", "logical/7f1c/role/readonly", "logical/7f1c/role/writer"},
	{"static role", "logical/7f1c/static-role/app", "logical/7f1c/static-role/batch"},
	{"password policy", "sys/password-policy/strict", "sys/password-policy/loose"},
}

// TestConfigRecordsCheckedOnRead: a connection config, role, static role
// or password policy put back from an older copy of its row behind the
// barrier's back (plain bbolt on the file, SQL on the PostgreSQL schema) —
// the creation statements before an admin tightened them, the connection
// URL and password before a rotation, a deleted role — is refused by the
// read that would use it, in a barrier that is already open (a server) as
// in one opened afterwards (a command), and not only by Verify.
func TestConfigRecordsCheckedOnRead(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			for _, k := range checkedRecordKinds {
				t.Run(k.kind, func(t *testing.T) { testConfigRecordsCheckedOnRead(t, newRaw, k.key, k.neighbor) })
			}
		})
	}
}

func testConfigRecordsCheckedOnRead(t *testing.T, newRaw func(t *testing.T) rawStore, key, neighbor string) {
	const other = "logical/99aa/role/readonly" // another mount's set
	setup := func(t *testing.T) (rawStore, *Barrier) {
		raw := newRaw(t)
		b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, key, "v1: wide", neighbor, "neighbor", other, "other", "core/mounts", "m")
		for _, k := range []string{key, neighbor, other} {
			if err := getErr(b, k); err != nil {
				t.Fatalf("read %s: %v", k, err)
			}
		}
		return raw, b
	}
	reopen := func(t *testing.T, raw rawStore) *Barrier {
		b, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	refused := func(t *testing.T, raw rawStore, b *Barrier) {
		t.Helper()
		for name, s := range map[string]*Barrier{"open barrier": b, "reopened": reopen(t, raw)} {
			err := s.View(ctx, func(tx storage.Tx) error {
				v, err := tx.Get(key)
				if err == nil {
					t.Logf("%s: read %s: %q", name, key, v)
				}
				return err
			})
			if !isConfigTamper(err) {
				t.Fatalf("%s: read of the record put back: %v", name, err)
			}
			if err := getErr(s, neighbor); !isConfigTamper(err) {
				t.Fatalf("%s: read of its neighbour: %v", name, err)
			}
			err = s.View(ctx, func(tx storage.Tx) error { _, err := storage.GetMany(tx, []string{other, key}); return err })
			if !isConfigTamper(err) {
				t.Fatalf("%s: GetMany with the record put back: %v", name, err)
			}
			err = s.View(ctx, func(tx storage.Tx) error { _, _, err := storage.GetPrefix(tx, neighbor[:len(neighbor)-5]); return err })
			if !isConfigTamper(err) {
				t.Fatalf("%s: GetPrefix of its set: %v", name, err)
			}
			if err := getErr(s, other); err != nil {
				t.Fatalf("%s: read in another set: %v", name, err)
			}
			err = s.Update(ctx, func(tx storage.Tx) error {
				if _, err := tx.Get(key); err != nil {
					return err
				}
				return tx.Put(key, []byte("v3"))
			})
			if !isConfigTamper(err) {
				t.Fatalf("%s: update that reads the record put back: %v", name, err)
			}
			if _, err := s.Verify(ctx, false); err == nil {
				t.Fatalf("%s: verify passed", name)
			}
		}
	}

	t.Run("replaced by its older version", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get(key)
		put(t, b, key, "v2: tightened")
		raw.put(key, old)
		refused(t, raw, b)
	})
	t.Run("deleted record put back", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get(key)
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Delete(key) }); err != nil {
			t.Fatal(err)
		}
		raw.put(key, old)
		refused(t, raw, b)
	})
	t.Run("record deleted", func(t *testing.T) {
		raw, b := setup(t)
		raw.del(key)
		refused(t, raw, b)
	})
	t.Run("whole set deleted", func(t *testing.T) {
		raw, b := setup(t)
		raw.del(key)
		raw.del(neighbor)
		for name, s := range map[string]*Barrier{"open barrier": b, "reopened": reopen(t, raw)} {
			if err := getErr(s, key); !isConfigTamper(err) {
				t.Fatalf("%s: read of a record of a deleted set: %v", name, err)
			}
		}
	})
	t.Run("own writes", func(t *testing.T) {
		_, b := setup(t)
		err := b.Update(ctx, func(tx storage.Tx) error {
			if _, err := tx.Get(key); err != nil {
				return err
			}
			if err := tx.Put(key, []byte("v2")); err != nil {
				return err
			}
			if err := tx.Delete(neighbor); err != nil {
				return err
			}
			if _, err := tx.Get(neighbor); err != nil {
				return err
			}
			if err := tx.Put(neighbor+"2", []byte("new")); err != nil {
				return err
			}
			_, _, err := storage.GetPrefix(tx, key[:len(key)-3])
			return err
		})
		if err != nil {
			t.Fatalf("update reading its own writes in a set: %v", err)
		}
		for _, k := range []string{key, neighbor + "2", neighbor, other} {
			if err := getErr(b, k); err != nil {
				t.Fatalf("read %s after the update: %v", k, err)
			}
		}
		// The last record of a set deleted: the set is empty, not missing.
		if err := b.Update(ctx, func(tx storage.Tx) error {
			for _, k := range []string{key, neighbor + "2"} {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := getErr(b, key); err != nil {
			t.Fatalf("read in an emptied set: %v", err)
		}
		if _, err := b.Verify(ctx, true); err != nil {
			t.Fatal(err)
		}
	})
}

// guardOnlyWrite writes key as the lessor before the sets record did: the
// record, the state record and the guard record, and no sets record.
func guardOnlyWrite(t *testing.T, b *Barrier, phys storage.Store, key, value string) {
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
		st, _, err := loadState(tx, root, b.storeID)
		if err != nil {
			return err
		}
		if !st.guarded {
			t.Fatal("guard record not current")
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
		if err := tx.Put(stateKey, st.marshal(root, b.storeID)); err != nil {
			return err
		}
		return tx.Put(guardKey, st.marshalGuard(root, b.storeID))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func loadPhysState(t *testing.T, b *Barrier, phys storage.Store) *state {
	t.Helper()
	var st *state
	err := phys.View(ctx, func(tx storage.Tx) (err error) {
		st, _, err = loadState(tx, b.root, b.storeID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStaleSetsRecord: a store without a sets record (written by the
// lessor before it) or with a stale one (another host runs that lessor
// and wrote since) opens and reads as before, still refuses a role put
// back (a pass checked against the state record stands in for the
// sets), and gets a current sets record from Upgrade or its next write;
// Verify passes on it throughout.
func TestStaleSetsRecord(t *testing.T) {
	const role = "logical/7f1c/role/readonly"
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, role, "v1", "sys/token/id/ab17", "token", "core/mounts", "m")
	// The store as the lessor before the sets record left it.
	if err := phys.Update(ctx, func(tx storage.Tx) error { return tx.Delete(setsKey) }); err != nil {
		t.Fatal(err)
	}
	guardOnlyWrite(t, b, phys, "logical/7f1c/config/pg", "written by an older lessor")

	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{role, "logical/7f1c/config/pg", "sys/token/id/ab17"} {
		if err := getErr(b2, k); err != nil {
			t.Fatalf("read %s without a sets record: %v", k, err)
		}
	}
	if _, err := b2.Verify(ctx, true); err != nil { // upgrades it, too
		t.Fatalf("verify without a sets record: %v", err)
	}
	if st := loadPhysState(t, b2, phys); !st.current() || len(st.sums.sets) != 2 {
		t.Fatalf("after Verify's upgrade: %+v", st)
	}

	// An older lessor writes again: the sets record is stale; a role put
	// back then is found by the pass.
	old := physGet(t, phys, role)
	guardOnlyWrite(t, b, phys, role, "v2, tightened by an older lessor")
	if st := loadPhysState(t, b2, phys); st.setsKnown {
		t.Fatal("sets record current after an older lessor's write")
	}
	current := physGet(t, phys, role)
	physPut(t, phys, role, old)
	b3, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	var te *TamperedError
	for name, s := range map[string]*Barrier{"open barrier": b2, "reopened": b3} {
		if err := getErr(s, role); !errors.As(err, &te) {
			t.Fatalf("%s: read under a stale sets record, a role put back: %v", name, err)
		}
		if err := s.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.As(err, &te) {
			t.Fatalf("%s: write under a stale sets record, a role put back: %v", name, err)
		}
	}

	// Undone: the next write gives it a current sets record, which then
	// refuses the older role on its own.
	physPut(t, phys, role, current)
	put(t, b3, "x", "y")
	if st := loadPhysState(t, b3, phys); !st.current() {
		t.Fatalf("after a write: %+v", st)
	}
	physPut(t, phys, role, old)
	if err := getErr(b3, role); !isConfigTamper(err) {
		t.Fatalf("read of an older role with a current sets record: %v", err)
	}
	physPut(t, phys, role, current)
	if _, err := b3.Verify(ctx, true); err != nil {
		t.Fatal(err)
	}
}

// TestSetsRecordDamaged: a sets record that does not authenticate is
// damage, never a reason to rebuild it from the records as they are.
func TestSetsRecordDamaged(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "logical/7f1c/role/readonly", "v1")
	n := len(physGet(t, phys, setsKey))
	for _, off := range []int{0, 5, 12, 20, n - 1} {
		g := physGet(t, phys, setsKey)
		g[off] ^= 0x40
		physPut(t, phys, setsKey, g)
		if err := getErr(b, "logical/7f1c/role/readonly"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: read of a role: %v", off, err)
		}
		if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: write: %v", off, err)
		}
		g[off] ^= 0x40
		physPut(t, phys, setsKey, g)
	}
	put(t, b, "x", "y")
}

// TestCheckedSet: which keys belong to a checked set, and which set.
func TestCheckedSet(t *testing.T) {
	for key, want := range map[string]string{
		"logical/7f1c/config/pg":           "logical/7f1c/config/",
		"logical/7f1c/config/":             "logical/7f1c/config/",
		"logical/7f1c/role/a/b":            "logical/7f1c/role/",
		"logical/7f1c/static-role/app":     "logical/7f1c/static-role/",
		"sys/password-policy/strict":       "sys/password-policy/",
		"sys/password-policy/":             "sys/password-policy/",
		"logical/7f1c/static-due/0001/app": "",
		"logical/7f1c/static-user/app":     "",
		"logical/7f1c/rolex/a":             "",
		"logical//role/a":                  "",
		"logical/7f1c":                     "",
		"sys/policy/apps":                  "",
		"sys/token/id/ab17":                "",
		"sys/expire/id/database/creds/r/1": "",
	} {
		got, ok := checkedSet(key)
		if got != want || ok != (want != "") {
			t.Errorf("checkedSet(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}

// TestKeyringBoundToSets: the keyring from before a rotation, put back,
// is refused by the next unseal and by Verify even in a store whose core
// records do not give it away (none yet, so the rotation moved none to
// the new term): the sets record names the keyring it was written with,
// under the state key. Without that, every later write would be sealed
// with the retired data key.
func TestKeyringBoundToSets(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			raw := newRaw(t)
			b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			put(t, b, "logical/m/config/db", "root password")
			oldRing := raw.get(keyringKey)
			if term, err := b.Rotate(ctx); err != nil || term != 2 {
				t.Fatalf("rotate: %d, %v", term, err)
			}
			raw.put(keyringKey, oldRing)
			if b2, err := Open(ctx, raw.phys, testKey(t)); !errors.Is(err, ErrCorrupt) {
				if err == nil {
					put(t, b2, "logical/m/config/db", "new root password")
					t.Errorf("open after the keyring was put back: no error; a write was sealed with term %d", be.Uint32(raw.get("logical/m/config/db")[1:]))
				} else {
					t.Errorf("open after the keyring was put back: %v", err)
				}
			}
			if _, err := b.Verify(ctx, false); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrRolledBack) {
				t.Errorf("verify after the keyring was put back: %v", err)
			}
		})
	}
}
