package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testStore runs the behaviour every Store promises.
func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	put := func(kv ...string) {
		t.Helper()
		err := s.Update(ctx, func(tx Tx) error {
			for i := 0; i < len(kv); i += 2 {
				if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	dump := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		err := s.View(ctx, func(tx Tx) error {
			return tx.Walk("", func(k string) error {
				v, err := tx.Get(k)
				if v == nil {
					return fmt.Errorf("walk listed %q but get found nothing", k)
				}
				got[k] = string(v)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	put("core/mounts", "m1", "sys/policy/apps", "p", "sys/policy/admin", "a", "sys/token/x", "")
	want := map[string]string{"core/mounts": "m1", "sys/policy/apps": "p", "sys/policy/admin": "a", "sys/token/x": ""}
	if got := dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after put: got %v, want %v", got, want)
	}

	err := s.View(ctx, func(tx Tx) error {
		v, err := tx.Get("sys/token/x")
		if err != nil || v == nil || len(v) != 0 {
			return fmt.Errorf("empty value: got %q, %v; want empty, non-nil", v, err)
		}
		if v, err := tx.Get("absent"); v != nil || err != nil {
			return fmt.Errorf("absent key: got %q, %v", v, err)
		}
		keys, err := tx.List("sys/policy/")
		if want := []string{"sys/policy/admin", "sys/policy/apps"}; err != nil || !reflect.DeepEqual(keys, want) {
			return fmt.Errorf("list: got %q, %v; want %q", keys, err, want)
		}
		if keys, err := tx.List("nothing/"); err != nil || len(keys) != 0 {
			return fmt.Errorf("list of absent prefix: got %q, %v", keys, err)
		}
		var first []string
		err = tx.Walk("sys/", func(k string) error {
			first = append(first, k)
			if len(first) == 2 {
				return ErrStop
			}
			return nil
		})
		if want := []string{"sys/policy/admin", "sys/policy/apps"}; err != nil || !reflect.DeepEqual(first, want) {
			return fmt.Errorf("walk with stop: got %q, %v; want %q", first, err, want)
		}
		boom := errors.New("boom")
		if err := tx.Walk("", func(string) error { return boom }); !errors.Is(err, boom) {
			return fmt.Errorf("walk error: got %v", err)
		}
		if err := tx.Put("x", []byte("y")); err == nil {
			return errors.New("put inside view succeeded")
		}
		if err := tx.Delete("core/mounts"); err == nil {
			return errors.New("delete inside view succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A failing Update leaves nothing behind, and its own reads saw its
	// writes.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx Tx) error {
		if err := tx.Put("core/mounts", []byte("m2")); err != nil {
			return err
		}
		if err := tx.Delete("sys/policy/apps"); err != nil {
			return err
		}
		if v, _ := tx.Get("core/mounts"); string(v) != "m2" {
			return fmt.Errorf("read own write: got %q", v)
		}
		if v, _ := tx.Get("sys/policy/apps"); v != nil {
			return fmt.Errorf("read own delete: got %q", v)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update returned %v, want boom", err)
	}
	if got := dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after failed update: got %v, want %v", got, want)
	}

	// Values handed to Put and returned by Get are not shared.
	buf := []byte("original")
	err = s.Update(ctx, func(tx Tx) error { return tx.Put("alias", buf) })
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "CHANGED!")
	err = s.View(ctx, func(tx Tx) error {
		v, _ := tx.Get("alias")
		if string(v) != "original" {
			return fmt.Errorf("stored value follows the caller's buffer: %q", v)
		}
		v[0] = 'X'
		v, _ = tx.Get("alias")
		if string(v) != "original" {
			return fmt.Errorf("stored value follows a returned buffer: %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Deleting while walking visits every key once.
	err = s.Update(ctx, func(tx Tx) error {
		var seen []string
		err := tx.Walk("", func(k string) error {
			seen = append(seen, k)
			return tx.Delete(k)
		})
		want := []string{"alias", "core/mounts", "sys/policy/admin", "sys/policy/apps", "sys/token/x"}
		if err != nil || !reflect.DeepEqual(seen, want) {
			return fmt.Errorf("walk while deleting: got %q, %v; want %q", seen, err, want)
		}
		return tx.Delete("never-there")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := dump(); len(got) != 0 {
		t.Fatalf("after deleting everything: %v", got)
	}

	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err = s.Update(ctxDone, func(Tx) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("update with a cancelled context: ran=%v, err=%v", ran, err)
	}
}

func TestMemoryStore(t *testing.T) { testStore(t, NewMemory()) }

func TestBoltStore(t *testing.T) {
	b, err := CreateBolt(filepath.Join(t.TempDir(), "lessor.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, b)
}

func TestPrefixedStore(t *testing.T) {
	m := NewMemory()
	testStore(t, Prefixed(m, "logical/abc/"))
	// The prefixed view wrote only under its prefix.
	err := m.Update(context.Background(), func(tx Tx) error {
		if err := tx.Put("outside", []byte("o")); err != nil {
			return err
		}
		return tx.Put("logical/abc/inside", []byte("i"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = Prefixed(m, "logical/abc/").View(context.Background(), func(tx Tx) error {
		keys, err := tx.List("")
		if err != nil || strings.Join(keys, ",") != "inside" {
			return fmt.Errorf("prefixed list: %q, %v", keys, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltMatchesMemory runs random transactions against a Bolt store and a
// Memory store and compares them after each, so that the checks the Bolt
// backend makes on every transaction are exercised on healthy trees of
// every shape bbolt produces (splits, merges, overflow pages, a tree that
// grows and shrinks): a false alarm fails here. Check must pass at the end.
func TestBoltMatchesMemory(t *testing.T) {
	b, err := CreateBolt(filepath.Join(t.TempDir(), "lessor.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testMatchesMemory(t, b)
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// testMatchesMemory runs random transactions against b and a Memory store
// and compares the two after each.
func testMatchesMemory(t *testing.T, b Store) {
	ctx := context.Background()
	m := NewMemory()
	rng := rand.New(rand.NewPCG(5, 6))
	value := func() []byte {
		n := rng.IntN(400)
		if rng.IntN(50) == 0 {
			n = 5000 + rng.IntN(10000) // overflow pages
		}
		return []byte(strings.Repeat(string(rune('a'+rng.IntN(26))), n))
	}
	txs := 120
	if testing.Short() {
		txs = 30
	}
	for i := range txs {
		// Grow for a while, then mostly delete, so trees also shrink.
		deleteOdds := 4
		if i > txs*2/3 {
			deleteOdds = 1
		}
		var ops []func(Tx) error
		for range 1 + rng.IntN(60) {
			k := fmt.Sprintf("sys/expire/id/%04d", rng.IntN(3000))
			if rng.IntN(deleteOdds+1) == 0 {
				ops = append(ops, func(tx Tx) error { return tx.Delete(k) })
			} else {
				v := value()
				ops = append(ops, func(tx Tx) error { return tx.Put(k, v) })
			}
		}
		// Reads inside the write transaction, too.
		probe := fmt.Sprintf("sys/expire/id/%04d", rng.IntN(3000))
		for _, s := range []Store{b, m} {
			err := s.Update(ctx, func(tx Tx) error {
				for _, op := range ops {
					if err := op(tx); err != nil {
						return err
					}
				}
				_, err := tx.Get(probe)
				return err
			})
			if err != nil {
				t.Fatalf("transaction %d: %v", i, err)
			}
		}
		if gb, gm := snapshot(t, b), snapshot(t, m); !reflect.DeepEqual(gb, gm) {
			t.Fatalf("after transaction %d the stores differ (%d and %d keys)", i, len(gb), len(gm))
		}
	}
}

func snapshot(t *testing.T, s Store) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := s.View(context.Background(), func(tx Tx) error {
		return tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			got[k] = string(v)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
