package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// queued waits until n Updates of b are queued behind a commit.
func queued(t *testing.T, b *Bolt, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.gmu.Lock()
		q := len(b.gqueue)
		b.gmu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d updates queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockWrites takes the store's exclusive lock as another process would,
// and returns the function that gives it back.
func blockWrites(t *testing.T, path string) func() {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

func txid(t *testing.T, path string) uint64 {
	t.Helper()
	_, m, _ := pages(t, path)
	return m.txid
}

// TestBoltGroupCommit: Updates that queue while another process holds the
// lock are committed in one transaction, each seeing the writes of those
// before it; one that fails, ends its context or panics gets its own
// outcome, with nothing of it committed, and the others still commit.
func TestBoltGroupCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{LockTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	counter := func(tx Tx) error {
		v, err := tx.Get("counter")
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Put("counter", []byte(strconv.Itoa(n+1)))
	}
	errBad := errors.New("bad request")
	cancelled, cancel := context.WithCancel(ctx)

	const good = 20
	before := txid(t, path)
	release := blockWrites(t, path)
	var wg sync.WaitGroup
	errs := make([]error, good)
	// The first Update leads, waiting for the lock; the others queue.
	for i := range good {
		wg.Go(func() {
			errs[i] = b.Update(ctx, func(tx Tx) error {
				if err := tx.Put(fmt.Sprintf("good/%02d", i), []byte("v")); err != nil {
					return err
				}
				return counter(tx)
			})
		})
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var badErr, cancelErr error
	var panicked any
	wg.Go(func() {
		badErr = b.Update(ctx, func(tx Tx) error {
			tx.Put("bad", []byte("v"))
			counter(tx)
			return errBad
		})
	})
	wg.Go(func() {
		cancelErr = b.Update(cancelled, func(tx Tx) error {
			tx.Put("cancelled", []byte("v"))
			cancel()
			return counter(tx)
		})
	})
	wg.Go(func() {
		defer func() { panicked = recover() }()
		b.Update(ctx, func(tx Tx) error {
			tx.Put("panicked", []byte("v"))
			panic("caller bug")
		})
	})
	queued(t, b, good+3-1)
	release()
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	if !errors.Is(badErr, errBad) {
		t.Errorf("failing update returned %v", badErr)
	}
	if !errors.Is(cancelErr, context.Canceled) {
		t.Errorf("cancelled update returned %v", cancelErr)
	}
	if panicked != "caller bug" {
		t.Errorf("panicking update recovered %v", panicked)
	}
	err = b.View(ctx, func(tx Tx) error {
		for i := range good {
			if v, _ := tx.Get(fmt.Sprintf("good/%02d", i)); v == nil {
				t.Errorf("update %d not committed", i)
			}
		}
		for _, k := range []string{"bad", "cancelled", "panicked"} {
			if v, _ := tx.Get(k); v != nil {
				t.Errorf("%s update committed", k)
			}
		}
		if v, _ := tx.Get("counter"); string(v) != strconv.Itoa(good) {
			t.Errorf("counter = %s, want %d", v, good)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The leader alone, then the queued ones: a group failed, so they ran
	// again alone, each a commit; without the failures, one.
	commits := txid(t, path) - before
	if commits > good {
		t.Errorf("%d commits for %d updates", commits, good)
	}

	// A clean group: the leader's own commit, then one for all queued.
	before = txid(t, path)
	release = blockWrites(t, path)
	for i := range good {
		wg.Go(func() {
			if err := b.Update(ctx, counter); err != nil {
				t.Error(err)
			}
		})
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	queued(t, b, good-1)
	release()
	wg.Wait()
	if commits := txid(t, path) - before; commits != 2 {
		t.Errorf("%d commits for %d updates queued behind one, want 2", commits, good)
	}
	b.View(ctx, func(tx Tx) error {
		if v, _ := tx.Get("counter"); string(v) != strconv.Itoa(2*good) {
			t.Errorf("counter = %s, want %d", v, 2*good)
		}
		return nil
	})
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("lock held after the groups")
	}
}

// TestBoltGroupLeave: a call still queued leaves when its context ends or
// the lock timeout passes, without its function ever running, and the
// queue goes on; an Update nested in another's function gets ErrBusy
// after the timeout instead of waiting for ever behind its own group.
func TestBoltGroupLeave(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(tx Tx) error {
		inner := b.Update(ctx, func(tx Tx) error {
			t.Error("the nested update ran")
			return nil
		})
		if !errors.Is(inner, ErrBusy) {
			t.Errorf("nested update: %v, want ErrBusy", inner)
		}
		return tx.Put("outer", []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}

	// A leader waits for the lock another process holds; one queued
	// behind it is cancelled, the next stays.
	b2, err := OpenBolt(path, BoltOptions{LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	release := blockWrites(t, path)
	var wg sync.WaitGroup
	var leadErr, stayErr, leftErr error
	wg.Go(func() { leadErr = b2.Update(ctx, func(tx Tx) error { return tx.Put("lead", []byte("v")) }) })
	time.Sleep(20 * time.Millisecond)
	cctx, cancel := context.WithCancel(ctx)
	wg.Go(func() {
		leftErr = b2.Update(cctx, func(tx Tx) error {
			t.Error("the cancelled update ran")
			return tx.Put("left", []byte("v"))
		})
	})
	queued(t, b2, 1)
	wg.Go(func() { stayErr = b2.Update(ctx, func(tx Tx) error { return tx.Put("stay", []byte("v")) }) })
	queued(t, b2, 2)
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b2.gmu.Lock()
		q := len(b2.gqueue)
		b2.gmu.Unlock()
		if q == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	if leadErr != nil || stayErr != nil {
		t.Fatalf("lead: %v, stay: %v", leadErr, stayErr)
	}
	if !errors.Is(leftErr, context.Canceled) {
		t.Errorf("cancelled update: %v", leftErr)
	}
	b2.View(ctx, func(tx Tx) error {
		for k, want := range map[string]bool{"outer": true, "lead": true, "stay": true, "left": false} {
			if v, _ := tx.Get(k); (v != nil) != want {
				t.Errorf("%s committed: %v, want %v", k, v != nil, want)
			}
		}
		return nil
	})
}
