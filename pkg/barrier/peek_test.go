package barrier

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/lessorhq/lessor/pkg/storage"
)

// countingStore counts the transactions run on a store.
type countingStore struct {
	storage.Store
	views, updates atomic.Int32
}

func (s *countingStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	s.views.Add(1)
	return s.Store.View(ctx, fn)
}

func (s *countingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

func TestPeekThenUnsealReadsOnce(t *testing.T) {
	mem := storage.NewMemory()
	if _, err := Init(ctx, mem, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	first, err := Open(ctx, mem, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	put(t, first, "core/mounts", "m1")

	phys := &countingStore{Store: mem}
	s, err := Peek(ctx, phys)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.UnsealKind(); got != KindKeyFile {
		t.Errorf("UnsealKind = %q, want %q", got, KindKeyFile)
	}
	if _, err := s.Unseal(otherKey(t)); !errors.Is(err, ErrWrongKey) || err.Error() != "open barrier: wrong unseal key" {
		t.Errorf("Unseal with another key: %v", err)
	}
	if _, err := s.Unseal(UnsealKey{}); err == nil {
		t.Error("Unseal with no key succeeded")
	}
	b, err := s.Unseal(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, u := phys.views.Load(), phys.updates.Load(); v != 1 || u != 0 {
		t.Errorf("Peek and Unseal ran %d views and %d updates, want 1 and 0", v, u)
	}
	if b.StoreID() != first.StoreID() {
		t.Errorf("store id %s, want %s", b.StoreID(), first.StoreID())
	}

	// A rotation by another process between Peek and Unseal: records
	// sealed with the new term still open, and writes use it.
	if _, err := first.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, first, "core/mounts", "m2")
	if got := get(t, b, "core/mounts"); got != "m2" {
		t.Errorf("core/mounts = %q after a rotation, want m2", got)
	}
	put(t, b, "core/audit", "a")
	if got := b.Info().Term; got != 2 {
		t.Errorf("active term %d after writing, want 2", got)
	}
	if got := get(t, first, "core/audit"); got != "a" {
		t.Errorf("core/audit = %q, want a", got)
	}
}

func TestPeekErrors(t *testing.T) {
	mem := storage.NewMemory()
	if _, err := Peek(ctx, mem); !errors.Is(err, ErrNotInitialized) || err.Error() != "store is not initialized" {
		t.Errorf("Peek of an empty store: %v", err)
	}
	if _, err := Open(ctx, mem, testKey(t)); err == nil || err.Error() != "open barrier: store is not initialized" {
		t.Errorf("Open of an empty store: %v", err)
	}
	put(t, mem, "core/mounts", "x")
	if _, err := Peek(ctx, mem); !errors.Is(err, ErrCorrupt) || err.Error() != "store has records but no barrier header" {
		t.Errorf("Peek of a store without header: %v", err)
	}

	pp := storage.NewMemory()
	if _, err := Init(ctx, pp, passphrase(t, "correct horse"), fastKDF); err != nil {
		t.Fatal(err)
	}
	s, err := Peek(ctx, pp)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.UnsealKind(); got != KindPassphrase {
		t.Errorf("UnsealKind = %q, want %q", got, KindPassphrase)
	}
	if _, err := s.Unseal(passphrase(t, "wrong horse")); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Unseal with a wrong passphrase: %v", err)
	}
	if _, err := s.Unseal(passphrase(t, "correct horse")); err != nil {
		t.Errorf("Unseal with the passphrase: %v", err)
	}
}

func get(t testing.TB, s storage.Store, key string) string {
	t.Helper()
	var v []byte
	err := s.View(ctx, func(tx storage.Tx) error {
		var err error
		v, err = tx.Get(key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}
