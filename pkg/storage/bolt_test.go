package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCreateBolt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "lessor.db")
	if _, err := CreateBolt(path, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		path:                         0o600,
		filepath.Join(dir, "a"):      0o700 | os.ModeDir,
		filepath.Join(dir, "a", "b"): 0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	// Nothing but the store is left in its directory.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the store", len(ents))
	}

	_, err := CreateBolt(path, BoltOptions{})
	if !errors.Is(err, ErrStoreExists) || err.Error() != "store "+path+" already exists" {
		t.Fatalf("second create: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateBolt(filepath.Join(dir, "other"), BoltOptions{}); !errors.Is(err, ErrStoreExists) {
		t.Fatalf("create over a plain file: %v", err)
	}
}

func TestOpenBolt(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "lessor.db")
	_, err := OpenBolt(missing, BoltOptions{})
	if !errors.Is(err, ErrNoStore) || err.Error() != "no store at "+missing {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := OpenBolt(dir, BoltOptions{}); err == nil || err.Error() != "open store: "+dir+" is not a regular file" {
		t.Fatalf("open directory: %v", err)
	}

	b, err := CreateBolt(missing, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(missing, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	// A store removed after OpenBolt is reported, not silently recreated.
	os.Remove(missing)
	err = b.Update(context.Background(), func(tx Tx) error { return tx.Put("k", []byte("v")) })
	if !errors.Is(err, ErrNoStore) {
		t.Fatalf("update of a removed store: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("update recreated the store: %v", err)
	}

	// A file that is not a bbolt file is damaged, not a store.
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte(strings.Repeat("not a store ", 1000)), 0o600)
	j, err := OpenBolt(junk, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = j.View(context.Background(), func(Tx) error { return nil })
	if !errors.Is(err, ErrCorrupt) || err.Error() != "store "+junk+" is damaged: both meta pages are invalid" {
		t.Fatalf("view of junk: %v", err)
	}
	os.WriteFile(junk, []byte("short"), 0o600)
	err = j.View(context.Background(), func(Tx) error { return nil })
	if !errors.Is(err, ErrCorrupt) || err.Error() != "store "+junk+" is damaged: file is too short to be a store (5 bytes)" {
		t.Fatalf("view of short file: %v", err)
	}
}

// otherLock takes flock on the store through a second descriptor, which
// conflicts with the backend's as another process's lock would.
func otherLock(t *testing.T, path string, how int) (release func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		t.Fatalf("flock: %v", err)
	}
	return func() { f.Close() }
}

func canLock(path string, how int) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), how|unix.LOCK_NB) == nil
}

func TestBoltLocking(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{LockTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	// The lock is held during a transaction (shared for View, exclusive
	// for Update) and released as soon as it ends.
	err = b.View(ctx, func(Tx) error {
		if canLock(path, unix.LOCK_EX) {
			return errors.New("exclusive lock available during view")
		}
		if !canLock(path, unix.LOCK_SH) {
			return errors.New("shared lock unavailable during view")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(Tx) error {
		if canLock(path, unix.LOCK_SH) {
			return errors.New("shared lock available during update")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("lock still held after the transactions")
	}

	// Another holder of an exclusive lock makes both wait, then fail with
	// the busy error.
	release := otherLock(t, path, unix.LOCK_EX)
	start := time.Now()
	err = b.View(ctx, func(Tx) error { return nil })
	wantBusy := "store " + path + " is busy (locked by another lessor process)"
	if !errors.Is(err, ErrBusy) || err.Error() != wantBusy {
		t.Fatalf("view while locked: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 10*time.Second {
		t.Fatalf("gave up after %v, want about 150ms", d)
	}
	err = b.Update(ctx, func(Tx) error { return nil })
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("update while locked: %v", err)
	}

	// The context ends the wait before the timeout does.
	slow, err := OpenBolt(path, BoltOptions{LockTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = slow.Update(cctx, func(Tx) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("update with a deadline: %v after %v", err, time.Since(start))
	}

	// A waiting transaction proceeds as soon as the lock is released.
	releaseWriter := release
	go func() { time.Sleep(50 * time.Millisecond); releaseWriter() }()
	if err := slow.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}

	// Readers share. (The waits given up above have had the lock for a
	// moment, and given it back.)
	b.flocks.Wait()
	slow.flocks.Wait()
	releaseReader := otherLock(t, path, unix.LOCK_SH)
	defer releaseReader()
	if err := b.View(ctx, func(Tx) error { return nil }); err != nil {
		t.Fatalf("view beside another reader: %v", err)
	}
	if err := b.Update(ctx, func(Tx) error { return nil }); !errors.Is(err, ErrBusy) {
		t.Fatalf("update beside another reader: %v", err)
	}
}

// While a store is held, its Views share one opening of the file: the
// shared lock stays between them (no other process can commit), each sees
// what the last commit left, and the hold ends at release or at the next
// Update, which must lock the file for itself.
func TestBoltHold(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{LockTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	get := func() string {
		t.Helper()
		var v []byte
		if err := b.View(ctx, func(tx Tx) error {
			var err error
			v, err = tx.Get("k")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return string(v)
	}

	release := b.Hold()
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("held before the first View")
	}
	if got := get(); got != "1" {
		t.Fatalf("k = %q, want 1", got)
	}
	if canLock(path, unix.LOCK_EX) {
		t.Fatal("exclusive lock available between Views of a held store")
	}
	// A View nested in another opens the file for itself.
	if err := b.View(ctx, func(Tx) error {
		if got := get(); got != "1" {
			return fmt.Errorf("nested: k = %q", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Another process cannot commit meanwhile.
	other, err := OpenBolt(path, BoltOptions{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("x")) }); !errors.Is(err, ErrBusy) {
		t.Fatalf("other update while held: %v", err)
	}
	// An Update ends the hold and sees, and leaves, the latest commit.
	if err := b.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("2")) }); err != nil {
		t.Fatal(err)
	}
	// The other's wait, given up, ends once it has had the lock, and
	// given it back, for a moment.
	other.flocks.Wait()
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("lock kept after the Update that ended the hold")
	}
	if got := get(); got != "2" {
		t.Fatalf("k = %q after the update, want 2", got)
	}
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("a View after the hold ended kept the lock")
	}

	release = b.Hold()
	get()
	release()
	release()
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("lock kept after release")
	}
	if err := other.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("3")) }); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "3" {
		t.Fatalf("k = %q, want 3", got)
	}
}

func TestBoltCancelledBeforeCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = b.Update(ctx, func(tx Tx) error {
		cancel()
		return tx.Put("k", []byte("v"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("update: %v", err)
	}
	err = b.View(context.Background(), func(tx Tx) error {
		if v, _ := tx.Get("k"); v != nil {
			return errors.New("cancelled update was committed")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A panic in the caller's function is the caller's bug, not damage.
func TestBoltCallerPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if p := recover(); p != "caller bug" {
				t.Fatalf("recovered %v", p)
			}
		}()
		b.Update(context.Background(), func(tx Tx) error {
			tx.Put("k", []byte("v"))
			panic("caller bug")
		})
	}()
	if !canLock(path, unix.LOCK_EX) {
		t.Fatal("lock held after a panic")
	}
	err = b.View(context.Background(), func(tx Tx) error {
		if v, _ := tx.Get("k"); v != nil {
			return errors.New("write of a panicked update was committed")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storeWith creates a store holding n keys with values of size bytes.
func storeWith(t *testing.T, n, size int) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lessor.db")
	b, err := CreateBolt(path, BoltOptions{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(context.Background(), func(tx Tx) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("sys/expire/id/%05d", i), []byte(strings.Repeat("v", size))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, path
}

// pages returns the store's page size, its chosen meta and the file bytes.
func pages(t *testing.T, path string) (uint64, boltMeta, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := uint64(readMeta(data).pageSize)
	m0, m1 := readMeta(data), readMeta(data[ps:])
	if m1.txid > m0.txid {
		m0 = m1
	}
	return ps, m0, data
}

// findPage returns the id of the first page below the high-water mark whose
// header has the given flags and says it is that page.
func findPage(t *testing.T, path string, flags uint16) uint64 {
	t.Helper()
	ps, m, data := pages(t, path)
	for id := uint64(2); id < m.pgid; id++ {
		p := data[id*ps:]
		if ne.Uint64(p) == id && ne.Uint16(p[8:]) == flags {
			return id
		}
	}
	t.Fatalf("no page with flags %#x", flags)
	return 0
}

func patch(t *testing.T, path string, off uint64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func u64(v uint64) []byte { return ne.AppendUint64(nil, v) }

// Damage that bbolt cannot survive by itself is reported as ErrCorrupt,
// both by View and by Update, within a bounded time.
func TestBoltStructuralDamage(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string)
		message string
	}{{
		name: "branch points at itself",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			id := findPage(t, path, flagBranch)
			patch(t, path, id*ps+pageHeaderSize+elementSize+8, u64(id))
		},
		message: "is reached twice",
	}, {
		name: "branch points past the end",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			id := findPage(t, path, flagBranch)
			patch(t, path, id*ps+pageHeaderSize+8, u64(1<<40))
		},
		message: "is out of range",
	}, {
		name: "freelist claims a huge count",
		damage: func(t *testing.T, path string) {
			ps, m, _ := pages(t, path)
			patch(t, path, m.freelist*ps+10, []byte{0xff, 0xff})
			patch(t, path, m.freelist*ps+16, u64(1<<60))
		},
		message: "claims 1152921504606846976 entries",
	}, {
		name: "freelist lists a live page",
		damage: func(t *testing.T, path string) {
			ps, m, _ := pages(t, path)
			patch(t, path, m.freelist*ps+10, []byte{1, 0})
			patch(t, path, m.freelist*ps+16, u64(findPage(t, path, flagLeaf)))
		},
		message: "is both in use and on the freelist",
	}, {
		name: "branch key raised past its child's first key",
		damage: func(t *testing.T, path string) {
			ps, _, data := pages(t, path)
			id := findPage(t, path, flagBranch)
			e := id*ps + pageHeaderSize + elementSize
			end := e + uint64(ne.Uint32(data[e:])) + uint64(ne.Uint32(data[e+4:]))
			patch(t, path, end-1, []byte{'9' + 1})
		},
		message: "outside the range its parent gives it",
	}, {
		name: "leaf page count lowered",
		damage: func(t *testing.T, path string) {
			ps, _, data := pages(t, path)
			id := findPage(t, path, flagLeaf)
			patch(t, path, id*ps+10, []byte{data[id*ps+10] - 1})
		},
		message: "is not where its data starts",
	}, {
		// bbolt would copy a gigabyte from beyond the page, and on commit
		// write it into the file.
		name: "leaf element claims a huge value",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			id := findPage(t, path, flagLeaf)
			patch(t, path, id*ps+pageHeaderSize+3*elementSize+15, []byte{0x40})
		},
		message: "runs past the page",
	}, {
		name: "leaf page has a wrong id",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			id := findPage(t, path, flagLeaf)
			patch(t, path, id*ps, u64(id+1000))
		},
		message: "says it is page",
	}, {
		name: "both meta pages damaged",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			patch(t, path, 16, []byte{0})
			patch(t, path, ps+16, []byte{0})
		},
		message: "both meta pages are invalid",
	}, {
		name: "truncated",
		damage: func(t *testing.T, path string) {
			ps, _, _ := pages(t, path)
			os.Truncate(path, int64(5*ps))
		},
		message: "is outside the file",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, path := storeWith(t, 300, 100)
			c.damage(t, path)
			for _, op := range []func(context.Context, func(Tx) error) error{b.View, b.Update} {
				done := make(chan error, 1)
				go func() {
					done <- op(context.Background(), func(tx Tx) error {
						// A lookup descends the tree; a walk steps along it.
						for i := range 300 {
							if _, err := tx.Get(fmt.Sprintf("sys/expire/id/%05d", i)); err != nil {
								return err
							}
						}
						_, err := tx.List("")
						return err
					})
				}()
				select {
				case err := <-done:
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.message) ||
						!strings.HasPrefix(err.Error(), "store "+path+" is damaged: ") {
						t.Fatalf("got %v, want damage containing %q", err, c.message)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("hung")
				}
			}
			if err := b.Check(context.Background()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("check: got %v, want damage containing %q", err, c.message)
			}
			if !canLock(path, unix.LOCK_EX) {
				t.Fatal("lock held after the damage was found")
			}
		})
	}
}

// A leaf element flagged as a nested bucket would make bbolt answer "absent"
// for a key that is there; the backend reports it instead.
func TestBoltKeyMarkedAsBucket(t *testing.T) {
	b, path := storeWith(t, 300, 100)
	ps, _, data := pages(t, path)
	id := findPage(t, path, flagLeaf)
	e := id*ps + pageHeaderSize
	key := string(data[e+uint64(ne.Uint32(data[e+4:])):][:ne.Uint32(data[e+8:])])
	patch(t, path, e, []byte{leafFlagBucket})

	err := b.View(context.Background(), func(tx Tx) error {
		_, err := tx.Get(key)
		return err
	})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("key %q is marked as a bucket", key)) {
		t.Fatalf("get: %v", err)
	}
	err = b.View(context.Background(), func(tx Tx) error {
		_, err := tx.List("")
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("list: %v", err)
	}
}

func TestBoltCheck(t *testing.T) {
	ctx := context.Background()
	b, path := storeWith(t, 300, 100)
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// A damaged meta page costs at most the last commit, which View and
	// Update accept, as bbolt does after a torn write; Check reports it.
	ps, m, _ := pages(t, path)
	patch(t, path, (m.txid%2)*ps+16+60, []byte{0x55})
	err := b.Check(ctx)
	if !errors.Is(err, ErrCorrupt) || !strings.HasSuffix(err.Error(), fmt.Sprintf("meta page %d is invalid", m.txid%2)) {
		t.Fatalf("check: %v", err)
	}
	err = b.View(ctx, func(tx Tx) error {
		keys, err := tx.List("")
		if len(keys) != 0 {
			return fmt.Errorf("previous commit has %d keys", len(keys))
		}
		return err
	})
	if err != nil {
		t.Fatalf("view falls back to the previous commit: %v", err)
	}
}

// A store of some megabytes, with a tree three levels deep.
func TestBoltLargeFile(t *testing.T) {
	b, path := storeWith(t, 5000, 300)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 1<<20 {
		t.Fatalf("file is only %d bytes", fi.Size())
	}
	err = b.View(context.Background(), func(tx Tx) error {
		keys, err := tx.List("sys/expire/id/")
		if err != nil || len(keys) != 5000 || keys[4999] != "sys/expire/id/04999" {
			return fmt.Errorf("list: %d keys, %v", len(keys), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ps, _, _ := pages(t, path)
	id := findPage(t, path, flagBranch)
	patch(t, path, id*ps+pageHeaderSize+8, u64(id))
	err = b.View(context.Background(), func(tx Tx) error { _, err := tx.Get("sys/expire/id/00000"); return err })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "is reached twice") {
		t.Fatalf("damaged large file: %v", err)
	}
}

// BenchmarkQuickCheck measures the structural check every transaction pays,
// on stores of two sizes (values of 190 bytes, as sealed lease records).
func BenchmarkQuickCheck(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "lessor.db")
			s, err := CreateBolt(path, BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			v := []byte(strings.Repeat("v", 190))
			for start := 0; start < n; start += 10000 {
				err := s.Update(context.Background(), func(tx Tx) error {
					for i := start; i < min(n, start+10000); i++ {
						if err := tx.Put(fmt.Sprintf("sys/expire/id/%08d", i), v); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			for b.Loop() {
				l, err := mapLayout(f, false)
				if err != nil {
					b.Fatal(err)
				}
				l.close()
			}
		})
	}
}

// A write into a damaged leaf is refused before bbolt copies the leaf, and
// leaves the file as it was.
func TestBoltDamagedLeafNotWritten(t *testing.T) {
	b, path := storeWith(t, 300, 100)
	ps, _, data := pages(t, path)
	id := findPage(t, path, flagLeaf)
	e := id*ps + pageHeaderSize
	key := string(data[e+uint64(ne.Uint32(data[e+4:])):][:ne.Uint32(data[e+8:])])
	patch(t, path, id*ps+pageHeaderSize+3*elementSize+15, []byte{0x40})
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, write := range []func(Tx) error{
		func(tx Tx) error { return tx.Put(key+"x", []byte("new")) },
		func(tx Tx) error { return tx.Delete(key) },
	} {
		err := b.Update(context.Background(), func(tx Tx) error {
			err := write(tx)
			if err == nil {
				t.Error("write into a damaged leaf succeeded")
			}
			return nil // the backend must refuse to commit all the same
		})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "runs past the page") {
			t.Fatalf("update: %v", err)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the refused updates changed the file")
	}
}

// TestOpenBoltWritableByOthers: a store file others can write is refused
// with the command that fixes it; lessor creates it 0600.
func TestOpenBoltWritableByOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lessor.db")
	s, err := CreateBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path, BoltOptions{}); err == nil || err.Error() != "open store: "+path+" is writable by group or others (mode 0666); run: chmod 600 "+path {
		t.Fatalf("a store others can write: %v", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path, BoltOptions{}); err != nil {
		t.Fatalf("a store others can only read: %v", err)
	}
}

// TestBoltRewriteThroughLink: a store reached through a symbolic link
// (its file on another disk) is rewritten where the link leads. Renamed
// over the link instead, the new file would sit beside it and the old
// one, with what the rewrite was meant to erase (the old header of a
// rekey, the old ciphertexts of a re-encryption), would stay behind.
func TestBoltRewriteThroughLink(t *testing.T) {
	ctx := context.Background()
	real := filepath.Join(t.TempDir(), "lessor.db")
	if _, err := CreateBolt(real, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "lessor.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	s, err := OpenBolt(link, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := "erase-me-" + strings.Repeat("x", 40)
	if err := s.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte(old)) }); err != nil {
		t.Fatal(err)
	}
	err = s.Rewrite(ctx, func(src, dst Tx) error { return dst.Put("k", []byte("new")) })
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v", err)
	}
	raw, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(old)) {
		t.Error("the file the link leads to still holds the old value")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(link), ".lessor.db.*")); len(left) != 0 {
		t.Errorf("left beside the link: %q", left)
	}
	if got := snapshot(t, s); len(got) != 1 || got["k"] != "new" {
		t.Errorf("after the rewrite: %q", got)
	}
}
