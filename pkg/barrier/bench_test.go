package barrier

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

// The benchmarks use a store on the test's temporary directory, normally a
// real disk, so that commits pay for fsync as they will in use.

func benchStore(b *testing.B, key UnsealKey, opts InitOptions) (*storage.Bolt, *Barrier) {
	b.Helper()
	phys := newBolt(b, b.TempDir())
	bar, err := Init(ctx, phys, key, opts)
	if err != nil {
		b.Fatal(err)
	}
	put(b, bar, "core/mounts", strings.Repeat("m", 200))
	return phys, bar
}

func BenchmarkOpenKeyFile(b *testing.B) {
	phys, _ := benchStore(b, testKey(b), InitOptions{})
	for b.Loop() {
		if _, err := Open(ctx, phys, testKey(b)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenPassphrase(b *testing.B) {
	key := passphrase(b, "correct horse battery staple")
	phys, _ := benchStore(b, key, InitOptions{})
	for b.Loop() {
		if _, err := Open(ctx, phys, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitSmallWrite is one Update through Bolt and the barrier:
// open the file, lock, check, seal, put, commit with fsync, close.
func BenchmarkCommitSmallWrite(b *testing.B) {
	_, bar := benchStore(b, testKey(b), InitOptions{})
	smallWrites(b, bar)
}

// smallWrites times one 100-byte Put per transaction over 1,000 keys.
func smallWrites(b *testing.B, bar *Barrier) {
	v := []byte(strings.Repeat("v", 100))
	i := 0
	for b.Loop() {
		i++
		k := fmt.Sprintf("sys/expire/id/%d", i%1000)
		if err := bar.Update(ctx, func(tx storage.Tx) error { return tx.Put(k, v) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitSmallWriteTracked is BenchmarkCommitSmallWrite with the
// generation file kept, as every lessor command keeps it.
func BenchmarkCommitSmallWriteTracked(b *testing.B) {
	_, bar := benchStore(b, testKey(b), InitOptions{})
	if err := bar.TrackGeneration(ctx, filepath.Join(b.TempDir(), "generation"), false); err != nil {
		b.Fatal(err)
	}
	smallWrites(b, bar)
}

// BenchmarkCommitSmallWriteLarge is BenchmarkCommitSmallWrite in a store
// of 100,000 records: a write's cost must not grow with the store.
func BenchmarkCommitSmallWriteLarge(b *testing.B) {
	bar := largeStore(b, 100000)
	v := []byte(strings.Repeat("v", 100))
	i := 0
	for b.Loop() {
		i++
		k := fmt.Sprintf("sys/expire/id/%08d", (i*7919)%100000)
		if err := bar.Update(ctx, func(tx storage.Tx) error { return tx.Put(k, v) }); err != nil {
			b.Fatal(err)
		}
	}
}

// largeStore is a store of n records of 150 bytes.
func largeStore(b *testing.B, n int) *Barrier {
	_, bar := benchStore(b, testKey(b), InitOptions{})
	v := []byte(strings.Repeat("v", 150))
	for start := 0; start < n; start += 10000 {
		err := bar.Update(ctx, func(tx storage.Tx) error {
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
	return bar
}

// BenchmarkVerify checks the record set of 100,000 records, with and
// without opening each one.
func BenchmarkVerify(b *testing.B) {
	bar := largeStore(b, 100000)
	for _, open := range []bool{false, true} {
		b.Run(fmt.Sprintf("open=%v", open), func(b *testing.B) {
			for b.Loop() {
				if _, err := bar.Verify(ctx, open); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRotateReencrypt rewrites a store of 100,000 records.
func BenchmarkRotateReencrypt(b *testing.B) {
	bar := largeStore(b, 100000)
	for b.Loop() {
		if _, err := bar.RotateReencrypt(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkViewGet reads one record in one View, at two store sizes: the
// difference is what the structural check costs as a store grows.
func BenchmarkViewGet(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			_, bar := benchStore(b, testKey(b), InitOptions{})
			v := []byte(strings.Repeat("v", 150))
			for start := 0; start < n; start += 10000 {
				err := bar.Update(ctx, func(tx storage.Tx) error {
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
			b.ResetTimer()
			for b.Loop() {
				err := bar.View(ctx, func(tx storage.Tx) error {
					_, err := tx.Get("sys/expire/id/00000500")
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFreshProcessOpen runs a new process per iteration that opens the
// store with the key file and reads one record, as every lessor command
// will, and reports the median wall time. Run it with -benchtime=20x.
func BenchmarkFreshProcessOpen(b *testing.B) {
	for _, kind := range []string{"keyfile", "passphrase"} {
		b.Run(kind, func(b *testing.B) {
			key := testKey(b)
			if kind == "passphrase" {
				key = passphrase(b, "correct horse battery staple")
			}
			dir := b.TempDir()
			phys := newBolt(b, dir)
			bar, err := Init(ctx, phys, key, InitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			put(b, bar, "core/mounts", "m")
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				out, err := helperCmd("open-"+kind, filepath.Join(dir, "lessor.db")).CombinedOutput()
				if err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
				times = append(times, time.Since(start))
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
		})
	}
}

func init() {
	// The child side of BenchmarkFreshProcessOpen, run before any test so
	// that the measured time is the open, not the test framework.
	role := os.Getenv(helperEnv)
	if !strings.HasPrefix(role, "open-") {
		return
	}
	phys, err := storage.OpenBolt(os.Getenv(storeEnv), storage.BoltOptions{})
	if err != nil {
		fail(err)
	}
	key := testKeyMust()
	if role == "open-passphrase" {
		key = KeyFromPassphrase([]byte("correct horse battery staple"))
	}
	bar, err := Open(ctx, phys, key)
	if err != nil {
		fail(err)
	}
	err = bar.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("core/mounts"); return err })
	if err != nil {
		fail(err)
	}
	os.Exit(0)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
