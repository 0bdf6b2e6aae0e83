package lease

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkReap reaps LESSOR_REAP_BENCH_N (default 10,000) due leases
// through the barrier, on a store file and on a PostgreSQL store, with a
// backend that revokes instantly: what is left is the store's cost of a
// reap, which the whole-process benchmark (cmd, TestBenchReap) adds to
// PostgreSQL's.
func BenchmarkReap(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_REAP_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	workers, _ := strconv.Atoi(os.Getenv("LESSOR_REAP_BENCH_WORKERS"))
	key, err := barrier.KeyFromBase64(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"memory", "bolt", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			var phys storage.Store
			switch kind {
			case "memory":
				phys = storage.NewMemory()
			case "bolt":
				p, err := storage.CreateBolt(filepath.Join(b.TempDir(), "lessor.db"), storage.BoltOptions{})
				if err != nil {
					b.Fatal(err)
				}
				phys = p
			default:
				u := pgtest.Require(b).NewDatabase(b).URL
				p, err := storage.CreatePostgres(context.Background(), u, storage.PostgresOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(p.Close)
				phys = p
			}
			ts := &timedStore{Store: phys}
			phys = ts
			bar, err := barrier.Init(context.Background(), phys, key, barrier.InitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				b.StopTimer()
				m, be := seedDue(b, bar, n)
				ts.n, ts.total, ts.inner = 0, 0, 0
				b.StartTimer()
				sum, err := m.Reap(context.Background(), ReapOptions{Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
				if sum.Revoked != n || len(be.revoked) != n {
					b.Fatalf("revoked %d (backend: %d) of %d", sum.Revoked, len(be.revoked), n)
				}
			}
			b.Logf("last reap: %d updates, %v in all, %v in fn", ts.n, ts.total, ts.inner)
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "leases/s")
		})
	}
}

// seedDue writes n active leases that expired an hour ago, shaped like
// the database plugin's, in chunks of 2,000 per transaction.
func seedDue(b *testing.B, st storage.Store, n int) (*Manager, *fakeBackend) {
	b.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	be := &fakeBackend{live: map[string]bool{}, renewed: map[string]time.Time{}, ttl: time.Hour, max: 24 * time.Hour}
	m := New(st, func(ctx context.Context, uuid string) (*Mount, error) {
		return &Mount{Backend: be, MountPoint: "database/", Storage: st, System: sysView{time.Now}}, nil
	}, Options{})
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36)
	for done := 0; done < n; {
		k := min(2000, n-done)
		err := st.Update(context.Background(), func(tx storage.Tx) error {
			for i := done; i < done+k; i++ {
				exp := now.Add(-time.Hour + time.Duration(i/1000)*time.Second)
				e := &Entry{
					ID: fmt.Sprintf("database/creds/group/%s%06d", prefix, i), Path: "database/creds/group",
					MountUUID: "m1", MountPoint: "database/", State: StateActive,
					IssueTime: exp.Add(-time.Hour), ExpireTime: exp, Renewable: true,
					TokenAccessor: "accessor0123456789abcdef",
					InternalData: map[string]any{
						"username": fmt.Sprintf("v-root-group-%s%06d", prefix, i), "role": "group",
						"secret_type": "dynamic", "plugin": "postgresql-database-plugin",
					},
				}
				if err := put(tx, e, exp); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += k
	}
	return m, be
}

// timedStore measures, for profiling, how long Updates take in all and
// how long their fn takes.
type timedStore struct {
	storage.Store
	n            int
	total, inner time.Duration
}

func (s *timedStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	start := time.Now()
	var in time.Duration
	err := s.Store.Update(ctx, func(tx storage.Tx) error {
		t := time.Now()
		err := fn(tx)
		in += time.Since(t)
		return err
	})
	s.n++
	s.total += time.Since(start)
	s.inner += in
	return err
}
