package barrier

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Byte classes of a store file, for the flip test.
const (
	classOther = iota // page headers, element headers, free pages, slack
	classMeta         // the two meta pages
	classKey          // the bytes of a live key
	classValue        // the bytes of a live value: a record, the header or the keyring
)

var className = []string{"other", "meta", "key", "value"}

// liveBytes classifies every byte of a bbolt file. Live keys and values are
// found by reading the file with bbolt itself, read-only: the slices bbolt
// returns for a read-only transaction point into its map of the file, so a
// slice's address minus the map's base is its offset in the file. Whatever
// is not reachable that way (page and element headers, free pages, the
// unused end of pages) is "other".
func liveBytes(t *testing.T, path string, size int) (classes []byte, pageSize, used int, values map[string][2]int) {
	t.Helper()
	classes = make([]byte, size)
	values = map[string][2]int{}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	base := db.Info().Data
	pageSize = db.Info().PageSize
	for i := range 2 * pageSize {
		classes[i] = classMeta
	}
	mark := func(b []byte, class byte) (off int) {
		if len(b) == 0 {
			return -1
		}
		off = int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - base)
		if off < 0 || off+len(b) > size {
			t.Fatalf("slice at offset %d is outside the file", off)
		}
		for i := off; i < off+len(b); i++ {
			classes[i] = class
		}
		return off
	}
	err = db.View(func(tx *bolt.Tx) error {
		used = int(tx.Size())
		return tx.ForEach(func(name []byte, bkt *bolt.Bucket) error {
			return bkt.ForEach(func(k, v []byte) error {
				mark(k, classKey)
				off := mark(v, classValue)
				values[string(k)] = [2]int{off, off + len(v)}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return classes, pageSize, used, values
}

type flipOutcome int

const (
	flipDetected  flipOutcome = iota // an error from open, read or write
	flipClean                        // everything read back exactly as written
	flipOnlyCheck                    // read back differently without an error; Check finds it
	flipSilent                       // read back differently, and Check finds nothing
)

// TestFlippedBytes damages a small Bolt+barrier store one byte at a time and
// checks that nothing panics or hangs, that damage to the header, the
// keyring or any live key or value is always reported, and that anything
// else that changes what the store shows is at least found by
// storage.Bolt.Check. (Run over every byte, not every 7th, no flip has
// needed Check: all were reported by the transactions themselves.)
//
// For each flip the store is opened, read entirely, written (one Put, which
// loads bbolt's freelist and allocates pages) and read again. A flip in a
// meta page may make bbolt fall back to the previous commit, which is what
// it does after a torn write, so there both the last and the previous state
// are "clean".
func TestFlippedBytes(t *testing.T) {
	dir := fastDir(t)
	path := filepath.Join(dir, "lessor.db")
	phys, err := storage.CreateBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Enough records for branch pages, an overflow page, and free pages left
	// by rewrites and deletes.
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{}
	for round := range 2 {
		kv := []string{}
		for i := range 40 {
			k := fmt.Sprintf("sys/expire/id/database/creds/ro/%03d", i)
			v := strings.Repeat(fmt.Sprintf("%d-%d;", round, i), 2+rng.IntN(20))
			kv = append(kv, k, v)
			want[k] = v
		}
		put(t, b, kv...)
	}
	big := strings.Repeat("mount table ", 400)
	put(t, b, "core/mounts", big)
	want["core/mounts"] = big
	err = b.Update(ctx, func(tx storage.Tx) error {
		for i := 0; i < 40; i += 4 {
			k := fmt.Sprintf("sys/expire/id/database/creds/ro/%03d", i)
			delete(want, k)
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	previous := maps.Clone(want)
	put(t, b, "last/commit", "x")
	want["last/commit"] = "x"
	if got := mustReadAll(t, b); !maps.Equal(got, want) {
		t.Fatal("store does not read back as written")
	}

	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	classes, pageSize, used, values := liveBytes(t, path, len(pristine))
	hdr, ring := values["barrier/header"], values["barrier/keyring"]

	// Every byte of the two meta pages, of the header and of the keyring;
	// every 7th byte elsewhere below the high-water mark; every 509th above
	// it, where bbolt has grown the file but reads nothing.
	stride, metaStride := 7, 1
	if raceEnabled {
		stride, metaStride = 61, 5
	}
	var offsets []int
	for off := range pristine {
		inHeader := off >= hdr[0] && off < hdr[1]
		inRing := off >= ring[0] && off < ring[1]
		switch {
		case off < 2*pageSize && off%metaStride == 0,
			inHeader || inRing,
			off < used && off%stride == 0,
			off%509 == 0:
			offsets = append(offsets, off)
		}
	}
	masks := []byte{0x01, 0x80, 0xFF, 0x10, 0x04, 0x40}

	type result struct {
		off     int
		outcome flipOutcome
		detail  string
	}
	results := make([]result, len(offsets))
	jobs := make(chan int)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wdir := filepath.Join(dir, fmt.Sprint("w", w))
		os.Mkdir(wdir, 0o700)
		wpath := filepath.Join(wdir, "lessor.db")
		if err := os.WriteFile(wpath, pristine, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(wpath, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				off := offsets[i]
				// bbolt never reads a meta page past its 80-byte meta
				// struct, so the rest of those pages gets the short trial,
				// which does not write.
				full := classes[off] != classMeta || off%pageSize < 80
				if _, err := f.WriteAt([]byte{pristine[off] ^ masks[off%len(masks)]}, int64(off)); err != nil {
					panic(err)
				}
				done := make(chan result, 1)
				go func() {
					defer func() {
						if p := recover(); p != nil {
							done <- result{off, flipSilent, fmt.Sprintf("PANIC: %v\n%s", p, debug.Stack())}
						}
					}()
					o, d := flipTrial(wpath, want, previous, classes[off] == classMeta, full)
					done <- result{off, o, d}
				}()
				select {
				case r := <-done:
					results[i] = r
				case <-time.After(20 * time.Second):
					panic(fmt.Sprintf("flip at offset %d (class %s) hung", off, className[classes[off]]))
				}
				restore, at := pristine[off:off+1], off
				if full {
					restore, at = pristine, 0
				}
				if _, err := f.WriteAt(restore, int64(at)); err != nil {
					panic(err)
				}
				if full {
					if err := f.Truncate(int64(len(pristine))); err != nil {
						panic(err)
					}
				}
			}
		}()
	}
	for i := range offsets {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	counts := map[string]int{}
	var silent []string
	for _, r := range results {
		c := className[classes[r.off]]
		switch {
		case r.off >= hdr[0] && r.off < hdr[1]:
			c = "value(header)"
		case r.off >= ring[0] && r.off < ring[1]:
			c = "value(keyring)"
		}
		outcome := []string{"detected", "clean", "only-check", "silent"}[r.outcome]
		if r.outcome == flipClean && r.detail == "previous commit" {
			outcome = "previous-commit"
		}
		counts[c+"/"+outcome]++
		if strings.HasPrefix(r.detail, "PANIC") {
			t.Errorf("offset %d: %s", r.off, r.detail)
		}
		if r.outcome != flipDetected && (classes[r.off] == classValue || classes[r.off] == classKey) {
			t.Errorf("offset %d inside a live %s: flip not detected (%s)", r.off, c, r.detail)
		}
		if r.outcome == flipSilent {
			silent = append(silent, fmt.Sprintf("%d(%s): %s", r.off, c, r.detail))
		}
	}
	keys := slicesSorted(counts)
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	t.Logf("%d flips over a %d-byte file (%d-byte pages, %d in use): %s", len(offsets), len(pristine), pageSize, used/pageSize, strings.Join(summary, " "))
	for _, s := range silent {
		t.Errorf("flip changed the store's contents and Check found nothing: %s", s)
	}
}

func slicesSorted(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// flipTrial opens the damaged store and reads everything, then, if full,
// writes one record and reads everything again.
func flipTrial(path string, want, previous map[string]string, meta, full bool) (flipOutcome, string) {
	ctx := context.Background()
	phys, err := storage.OpenBolt(path, storage.BoltOptions{LockTimeout: 5 * time.Second})
	if err != nil {
		return flipDetected, err.Error()
	}
	b, err := Open(ctx, phys, testKeyMust())
	if err != nil {
		return flipDetected, err.Error()
	}
	got, err := readAll(ctx, b)
	if err != nil {
		return flipDetected, err.Error()
	}
	base := want
	if meta && maps.Equal(got, previous) {
		base = previous
	}
	if !maps.Equal(got, base) {
		return missed(phys, "first read: "+diff(got, base))
	}
	note := ""
	if meta && maps.Equal(base, previous) {
		note = "previous commit"
	}
	if !full {
		return flipClean, note
	}
	err = b.Update(ctx, func(tx storage.Tx) error { return tx.Put("flip/probe", []byte("p")) })
	if err != nil {
		return flipDetected, err.Error()
	}
	got, err = readAll(ctx, b)
	if err != nil {
		return flipDetected, err.Error()
	}
	after := maps.Clone(base)
	after["flip/probe"] = "p"
	if !maps.Equal(got, after) {
		return missed(phys, "after a write: "+diff(got, after))
	}
	return flipClean, note
}

// missed classifies damage that transactions did not notice: the full
// check (storage.Bolt.Check, for a doctor command) must find it.
func missed(phys *storage.Bolt, detail string) (flipOutcome, string) {
	if err := phys.Check(context.Background()); errors.Is(err, ErrCorrupt) {
		return flipOnlyCheck, detail
	}
	return flipSilent, detail
}

func testKeyMust() UnsealKey {
	k, err := KeyFromBase64(testKeyB64)
	if err != nil {
		panic(err)
	}
	return k
}

func diff(got, want map[string]string) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, "missing "+k)
		} else if g != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, "extra "+k)
		}
	}
	sort.Strings(d)
	if len(d) > 3 {
		d = append(d[:3], fmt.Sprintf("and %d more", len(d)-3))
	}
	return strings.Join(d, ", ")
}
