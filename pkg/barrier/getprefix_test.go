package barrier

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/storage"
)

// TestGetPrefixChecksAsListAndGetMany: a GetPrefix through the barrier
// returns the opened records a List and a GetMany return (never the
// barrier's own), and checks the sets it reads as they do: a token entry
// deleted behind the barrier's back from the bucket of another it returns,
// a policy deleted behind its back when the prefix covers the core records,
// on every backend, read ahead or not.
func TestGetPrefixChecksAsListAndGetMany(t *testing.T) {
	onRawBackends(t, func(t *testing.T, raw rawStore, b *Barrier) {
		put(t, b, "sys/token/id/ab01", "1", "sys/token/id/ab02", "2", "sys/policy/p", "p", "core/mounts", "m", "logical/x", "x")
		both := func(tx storage.Tx, prefix string) (string, error) {
			keys, vs, err := storage.GetPrefix(tx, prefix)
			if err != nil {
				return "", err
			}
			lkeys, err := tx.List(prefix)
			if err != nil {
				return "", err
			}
			lvs, err := storage.GetMany(tx, lkeys)
			if err != nil {
				return "", err
			}
			if !slices.Equal(keys, lkeys) || len(vs) != len(lvs) {
				t.Fatalf("GetPrefix(%q): %q, List: %q", prefix, keys, lkeys)
			}
			out := ""
			for i := range vs {
				if string(vs[i]) != string(lvs[i]) {
					t.Fatalf("GetPrefix(%q): %s=%q, GetMany: %q", prefix, keys[i], vs[i], lvs[i])
				}
				out += keys[i] + "=" + string(vs[i]) + " "
			}
			return out, nil
		}
		for prefix, want := range map[string]string{
			"":              "core/mounts=m logical/x=x sys/policy/p=p sys/token/id/ab01=1 sys/token/id/ab02=2 ",
			"sys/token/id/": "sys/token/id/ab01=1 sys/token/id/ab02=2 ",
			"logical/":      "logical/x=x ",
		} {
			err := b.View(ctx, func(tx storage.Tx) error {
				got, err := both(tx, prefix)
				if err == nil && got != want {
					t.Errorf("GetPrefix(%q): %s, want %s", prefix, got, want)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		tamper := func(gone, prefix string, core bool) {
			t.Helper()
			raw.del(gone)
			for _, ahead := range []bool{false, true} {
				err := b.View(ctx, func(tx storage.Tx) error {
					if ahead {
						if err := storage.PrefetchPrefixes(tx, nil, []string{prefix}); err != nil {
							return err
						}
					}
					_, _, err := storage.GetPrefix(tx, prefix)
					return err
				})
				var te *TamperedError
				if !errors.As(err, &te) || te.Core != core {
					t.Errorf("GetPrefix(%q) after deleting %s (read ahead: %v): %v", prefix, gone, ahead, err)
				}
			}
		}
		tamper("sys/token/id/ab02", "sys/token/id/ab", false)
		tamper("sys/policy/p", "", true)
	})
}

// TestUpdateChecksHeaderAtFirstOperation: an Update checks the store's
// header at whatever its function does first (read, read ahead, list,
// write, delete), before that sees or seals a record, though it reads the
// header with that operation's records: after a rekey elsewhere, each
// says so, and nothing is written.
func TestUpdateChecksHeaderAtFirstOperation(t *testing.T) {
	onRawBackends(t, func(t *testing.T, raw rawStore, b *Barrier) {
		put(t, b, "sys/token/id/ab17", "token", "logical/x", "x")
		running, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Rekey(ctx, otherKey(t), InitOptions{}); err != nil {
			t.Fatal(err)
		}
		for name, first := range map[string]func(storage.Tx) error{
			"get":       func(tx storage.Tx) error { _, err := tx.Get("logical/x"); return err },
			"get token": func(tx storage.Tx) error { _, err := tx.Get("sys/token/id/ab17"); return err },
			"get many":  func(tx storage.Tx) error { _, err := storage.GetMany(tx, []string{"logical/x"}); return err },
			"prefetch":  func(tx storage.Tx) error { return storage.Prefetch(tx, []string{"logical/x"}) },
			"prefix":    func(tx storage.Tx) error { _, _, err := storage.GetPrefix(tx, "logical/"); return err },
			"list":      func(tx storage.Tx) error { _, err := tx.List("logical/"); return err },
			"put":       func(tx storage.Tx) error { return tx.Put("logical/y", []byte("y")) },
			"delete":    func(tx storage.Tx) error { return tx.Delete("logical/x") },
		} {
			err := running.Update(ctx, func(tx storage.Tx) error {
				if err := first(tx); err != nil {
					return err
				}
				return tx.Put("logical/z", []byte("z"))
			})
			if !errors.Is(err, errRekeyed) {
				t.Errorf("%s first after a rekey elsewhere: %v", name, err)
			}
		}
		err = b.View(ctx, func(tx storage.Tx) error {
			keys, err := tx.List("logical/")
			if err == nil && len(keys) != 1 {
				err = fmt.Errorf("writes after a rekey elsewhere were committed: %q", keys)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// onRawBackends runs fn on a new barrier of each backend, with its raw
// access.
func onRawBackends(t *testing.T, fn func(t *testing.T, raw rawStore, b *Barrier)) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) {
			raw := newRaw(t)
			b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			fn(t, raw, b)
		})
	}
}

// TestUpdateFirstOperationRefusesSwappedRecords: whatever an Update does
// first, the barrier's own records it reads with that operation are held
// to what the barrier knows: the header of another store (opened by the
// same key), the state records of an older generation, and the keyring
// from before a rotation are each refused, and nothing is written.
func TestUpdateFirstOperationRefusesSwappedRecords(t *testing.T) {
	firsts := map[string]func(storage.Tx) error{
		"get":       func(tx storage.Tx) error { _, err := tx.Get("logical/x"); return err },
		"get token": func(tx storage.Tx) error { _, err := tx.Get("sys/token/id/ab17"); return err },
		"get core":  func(tx storage.Tx) error { _, err := tx.Get("sys/policy/p"); return err },
		"prefetch":  func(tx storage.Tx) error { return storage.Prefetch(tx, []string{"logical/x"}) },
		"prefix":    func(tx storage.Tx) error { _, _, err := storage.GetPrefix(tx, "logical/"); return err },
		"list":      func(tx storage.Tx) error { _, err := tx.List("logical/"); return err },
		"put":       func(tx storage.Tx) error { return tx.Put("logical/y", []byte("y")) },
		"delete":    func(tx storage.Tx) error { return tx.Delete("logical/x") },
	}
	other, err := Init(ctx, storage.NewMemory(), testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherHeader := physGet(t, other.phys, headerKey)
	for _, swap := range []struct {
		name string
		do   func(raw rawStore, b *Barrier) // on a store b has seen written
		want error
	}{
		{"another store's header", func(raw rawStore, _ *Barrier) { raw.put(headerKey, otherHeader) }, ErrCorrupt},
		{"older state records", func(raw rawStore, b *Barrier) {
			st, guard := raw.get(stateKey), raw.get(guardKey)
			put(t, b, "logical/w", "w")
			raw.put(stateKey, st)
			raw.put(guardKey, guard)
		}, ErrRolledBack},
		{"keyring from before a rotation", func(raw rawStore, b *Barrier) {
			ring := raw.get(keyringKey)
			if _, err := b.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			raw.put(keyringKey, ring)
		}, ErrRolledBack},
	} {
		t.Run(swap.name, func(t *testing.T) {
			onRawBackends(t, func(t *testing.T, raw rawStore, b *Barrier) {
				put(t, b, "sys/token/id/ab17", "token", "sys/policy/p", "p", "logical/x", "x")
				swap.do(raw, b)
				for name, first := range firsts {
					before := raw.get(stateKey)
					err := b.Update(ctx, func(tx storage.Tx) error {
						if err := first(tx); err != nil {
							return err
						}
						return tx.Put("logical/z", []byte("z"))
					})
					if !errors.Is(err, swap.want) {
						t.Errorf("%s first: %v, want %v", name, err, swap.want)
					}
					if !bytes.Equal(raw.get(stateKey), before) {
						t.Errorf("%s first: the store was written", name)
					}
				}
			})
		})
	}
}

// TestWalkMergesCheckedCoreRecords: a walk whose prefix covers core
// records (answered from the scan that checked them) and others lists
// them all in key order, stops where its function says, and skips a core
// record its function deleted ahead of it.
func TestWalkMergesCheckedCoreRecords(t *testing.T) {
	b, err := Init(ctx, storage.NewMemory(), testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"a", "core/audit", "core/mounts", "d", "sys/lease/x", "sys/policy/a", "sys/policy/b", "sys/q", "z"}
	var kv []string
	for _, k := range all {
		kv = append(kv, k, "v")
	}
	put(t, b, kv...)
	for _, prefix := range []string{"", "c", "core/", "s", "sys/", "sys/policy/", "sys/policy/b", "z"} {
		var want []string
		for _, k := range all {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		for stop := 1; stop <= len(want)+1; stop++ {
			var got []string
			err := b.View(ctx, func(tx storage.Tx) error {
				return tx.Walk(prefix, func(k string) error {
					got = append(got, k)
					if len(got) == stop {
						return storage.ErrStop
					}
					return nil
				})
			})
			if w := want[:min(stop, len(want))]; err != nil || !slices.Equal(got, w) {
				t.Errorf("walk %q, stop after %d: %q, %v; want %q", prefix, stop, got, err, w)
			}
		}
	}
	var got []string
	err = b.Update(ctx, func(tx storage.Tx) error {
		return tx.Walk("", func(k string) error {
			got = append(got, k)
			if k == "a" {
				return tx.Delete("sys/policy/b")
			}
			return nil
		})
	})
	if want := slices.DeleteFunc(slices.Clone(all), func(k string) bool { return k == "sys/policy/b" }); err != nil || !slices.Equal(got, want) {
		t.Errorf("walk deleting ahead: %q, %v; want %q", got, err, want)
	}
}
