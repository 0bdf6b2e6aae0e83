package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkOpenLarge times one read-only transaction (open, lock, quick
// layout check, bbolt open, close) on a large store file named by
// LESSOR_BENCH_STORE, such as the 100,000-lease store that cmd's
// TestProfileIssue leaves with LESSOR_BENCH_KEEP_STORE: "first" is the
// first transaction of a process (a new Bolt), "again" a later one on a
// file that has not changed since, "update" a write of one key followed
// by a read, as issuing a lease does (the file changed, so the read checks
// it again). "update" writes to the file: give it a copy.
func BenchmarkOpenLarge(b *testing.B) {
	path := os.Getenv("LESSOR_BENCH_STORE")
	if path == "" {
		b.Skip("set LESSOR_BENCH_STORE to a store file")
	}
	ctx := context.Background()
	view := func(b *testing.B, s *Bolt) {
		if err := s.View(ctx, func(tx Tx) error {
			_, err := tx.Get("core/mounts")
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			s, err := OpenBolt(path, BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			view(b, s)
		}
	})
	b.Run("again", func(b *testing.B) {
		s, err := OpenBolt(path, BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		view(b, s)
		for b.Loop() {
			view(b, s)
		}
	})
	b.Run("update", func(b *testing.B) {
		s, err := OpenBolt(path, BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		view(b, s)
		for b.Loop() {
			if err := s.Update(ctx, func(tx Tx) error { return tx.Put("bench/key", []byte("value")) }); err != nil {
				b.Fatal(err)
			}
			view(b, s)
		}
	})
}

// TestLayoutCacheSeesChanges guards the reuse of the quick check that
// makes later transactions cheap (layoutCache): a write through another
// handle (another process) and damage written after the check must both
// be noticed by the next transaction of a handle that has a check cached.
func TestLayoutCacheSeesChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	if _, err := CreateBolt(path, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("v"), 200)
	put := func(from, to int) {
		t.Helper()
		if err := other.Update(ctx, func(tx Tx) error {
			for i := from; i < to; i++ {
				if err := tx.Put(fmt.Sprintf("k/%06d", i), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 3000)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	getAll := func(n int) error {
		return s.View(ctx, func(tx Tx) error {
			for i := 0; i < n; i += 7 {
				v, err := tx.Get(fmt.Sprintf("k/%06d", i))
				if err != nil {
					return err
				}
				if !bytes.Equal(v, value) {
					return fmt.Errorf("k/%06d: got %d bytes", i, len(v))
				}
			}
			return nil
		})
	}
	if err := getAll(3000); err != nil {
		t.Fatal(err)
	}
	// Another handle reshapes the tree: s must check the new one, not
	// descend the cached (now freed) pages.
	put(3000, 9000)
	if err := getAll(9000); err != nil {
		t.Fatalf("after another handle wrote: %v", err)
	}
	// Damage a branch page of the data tree behind s's back.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := mapLayout(f, false)
	if err != nil {
		t.Fatal(err)
	}
	flags, _, _, err := l.header(l.tree)
	if err != nil || flags != flagBranch {
		t.Fatalf("data tree root %d: flags %#x, %v; want a branch page", l.tree, flags, err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, int64(l.tree*l.ps)); err != nil {
		t.Fatal(err)
	}
	if err := getAll(9000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("after damage: %v, want ErrCorrupt", err)
	}
}

// TestLayoutAdoptedAfterCommit guards the other half of the reuse: after a
// handle's own commit, the layout it adopts without walking the branch
// pages (layoutCache.adopt) must be exactly the one a fresh quick check of
// the file finds, through commits that split pages, grow the tree a level,
// move its root, and shrink it again; and the next transaction must use
// it rather than check again.
func TestLayoutAdoptedAfterCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	s, err := CreateBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("v"), 300)
	levels := map[int]bool{}
	compare := func(step string) {
		t.Helper()
		s.mu.Lock()
		got, key := s.layout.l, s.layout.key
		s.mu.Unlock()
		if got == nil {
			t.Fatalf("%s: nothing adopted after the commit", step)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		now, ok := layoutKeyOf(f)
		if !ok || now != key {
			t.Fatalf("%s: adopted key does not match the file", step)
		}
		want, err := mapLayout(f, false)
		if err != nil {
			t.Fatalf("%s: fresh check: %v", step, err)
		}
		if got.size != want.size || got.ps != want.ps || got.hwm != want.hwm || got.tree != want.tree || got.leafLevel != want.leafLevel {
			t.Fatalf("%s: adopted size %d ps %d hwm %d tree %d leafLevel %d; fresh check finds %d %d %d %d %d",
				step, got.size, got.ps, got.hwm, got.tree, got.leafLevel, want.size, want.ps, want.hwm, want.tree, want.leafLevel)
		}
		levels[want.leafLevel] = true
	}
	update := func(step string, fn func(tx Tx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		compare(step)
	}
	for round := range 12 {
		update(fmt.Sprintf("insert round %d", round), func(tx Tx) error {
			for i := range 1500 {
				if err := tx.Put(fmt.Sprintf("k/%03d/%05d", (i*7919)%997, round*1500+i), value); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for round := range 12 {
		update(fmt.Sprintf("delete round %d", round), func(tx Tx) error {
			var keys []string
			if err := tx.Walk("k/", func(k string) error {
				keys = append(keys, k)
				return nil
			}); err != nil {
				return err
			}
			for i, k := range keys {
				if i%12 <= round || round == 11 {
					if err := tx.Delete(k); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if len(levels) < 2 {
		t.Fatalf("the tree's depth never changed (leaf levels %v): the test proves too little", levels)
	}
	// The next transaction reuses the adopted layout rather than checking
	// the file again, which would replace it.
	update("one more write", func(tx Tx) error { return tx.Put("k/last", value) })
	s.mu.Lock()
	before := s.layout.l
	s.mu.Unlock()
	if err := s.View(ctx, func(tx Tx) error { _, err := tx.Get("k/last"); return err }); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	after := s.layout.l
	s.mu.Unlock()
	if before != after {
		t.Fatal("the read after a commit checked the file again instead of reusing the adopted layout")
	}
}
