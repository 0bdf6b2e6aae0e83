package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestBoltGetAllocations: a Get costs the copy of its value and nothing
// besides, in a write transaction after writes as in a read one, and still
// finds what the transaction itself wrote and deleted: a reap's settling
// transaction reads several keys per lease, and a cursor made and grown
// for each (two allocations more per Get) was a seventh of what its store
// work allocated.
func TestBoltGetAllocations(t *testing.T) {
	b, err := CreateBolt(filepath.Join(t.TempDir(), "lessor.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	err = b.Update(ctx, func(tx Tx) error {
		for i := range 5000 {
			if err := tx.Put(fmt.Sprintf("sys/lease/id/%06d", i), make([]byte, 600)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("sys/lease/id/%06d", i)
	}
	measure := func(tx Tx) float64 {
		i := 0
		return testing.AllocsPerRun(200, func() {
			i = (i + 997) % 5000
			v, err := tx.Get(keys[i])
			if err != nil || len(v) != 600 {
				t.Fatalf("get %d: %d bytes, %v", i, len(v), err)
			}
		})
	}
	err = b.View(ctx, func(tx Tx) error {
		if n := measure(tx); n > 1 {
			t.Errorf("read transaction: %v allocations per Get, want 1 (the value's copy)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(tx Tx) error {
		if err := tx.Put("sys/lease/id/002500x", []byte("new")); err != nil {
			return err
		}
		if err := tx.Delete("sys/lease/id/002501"); err != nil {
			return err
		}
		if v, err := tx.Get("sys/lease/id/002500x"); err != nil || string(v) != "new" {
			t.Errorf("a key put in the transaction reads back %q, %v", v, err)
		}
		if v, err := tx.Get("sys/lease/id/002501"); err != nil || v != nil {
			t.Errorf("a key deleted in the transaction reads back %q, %v", v, err)
		}
		if n := measure(tx); n > 1 {
			t.Errorf("write transaction: %v allocations per Get, want 1 (the value's copy)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltTake: Take deletes a key and returns what it held, leaves the
// keys around it alone, deletes nothing for an absent key, refuses in a
// read transaction, and costs the value's copy and nothing besides, where
// Get and Delete (which seeks a cursor of bbolt's own) cost three
// allocations more.
func TestBoltTake(t *testing.T) {
	b, err := CreateBolt(filepath.Join(t.TempDir(), "lessor.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("sys/lease/id/%06d", i)
	}
	err = b.Update(ctx, func(tx Tx) error {
		for i, k := range keys {
			if err := tx.Put(k, []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(tx Tx) error {
		if err := tx.Put("sys/lease/id/new", []byte("new")); err != nil {
			return err
		}
		for k, want := range map[string]string{keys[10]: "10", "sys/lease/id/new": "new"} {
			if v, err := Take(tx, k); err != nil || string(v) != want {
				t.Errorf("take %s = %q, %v; want %q", k, v, err, want)
			}
			if v, err := tx.Get(k); err != nil || v != nil {
				t.Errorf("%s after take: %q, %v", k, v, err)
			}
		}
		if v, err := Take(tx, "sys/lease/id/000010x"); err != nil || v != nil {
			t.Errorf("take of an absent key = %q, %v", v, err)
		}
		for _, k := range []string{keys[9], keys[11]} {
			if v, err := tx.Get(k); err != nil || v == nil {
				t.Errorf("%s, next to the key taken: %q, %v", k, v, err)
			}
		}
		i := 100
		if n := testing.AllocsPerRun(200, func() {
			i++
			if v, err := Take(tx, keys[i]); err != nil || v == nil {
				t.Fatalf("take %s: %q, %v", keys[i], v, err)
			}
		}); n > 1 {
			t.Errorf("%v allocations per Take, want 1 (the value's copy)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.View(ctx, func(tx Tx) error {
		if v, err := tx.Get(keys[150]); err != nil || v != nil {
			t.Errorf("a key taken is back after commit: %q, %v", v, err)
		}
		if v, err := tx.Get(keys[10]); err != nil || v != nil {
			t.Errorf("a key taken is back after commit: %q, %v", v, err)
		}
		if v, err := tx.Get(keys[500]); err != nil || string(v) != "500" {
			t.Errorf("a key not taken: %q, %v", v, err)
		}
		if _, err := Take(tx, keys[500]); err == nil {
			t.Error("take in a read transaction succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
