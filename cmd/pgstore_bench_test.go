package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/storage"
)

// newPGStore is newStore with the store in a PostgreSQL schema of the
// bench database (LESSOR_STORE), reached as the bench's superuser.
func (r *benchRig) newPGStore() *benchStore {
	t := r.t
	home := t.TempDir()
	s := &benchStore{rig: r, admin: r.lessorAdm, home: home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LESSOR_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			s.env = append(s.env, kv)
		}
	}
	u := *r.adminURL
	u.Path = "/" + r.dbName
	q := u.Query()
	q.Set("schema", "bench_"+strings.ToLower(randID()[:10]))
	u.RawQuery = q.Encode()
	s.env = append(s.env, "HOME="+home, "LESSOR_STORE="+u.String())
	var init struct {
		RootToken string `json:"root_token"`
		StoreID   string `json:"store_id"`
	}
	out := s.lessor("operator", "init", "-format=json")
	if err := json.Unmarshal([]byte(out), &init); err != nil || init.RootToken == "" {
		t.Fatalf("operator init: %v\n%s", err, out)
	}
	s.env = append(s.env, "LESSOR_TOKEN="+init.RootToken)
	s.storeID = init.StoreID
	r.storeIDs = append(r.storeIDs, s.storeID)
	s.lessor("secrets", "enable", "database")
	writeFile(t, filepath.Join(home, "pw"), "bench-admin-pw")
	host, port := r.adminURL.Hostname(), r.adminURL.Port()
	if port == "" {
		port = "5432"
	}
	s.lessor("write", "database/config/pg", "plugin_name=postgresql-database-plugin",
		"allowed_roles=group", "username="+s.admin, "password=@"+filepath.Join(home, "pw"),
		fmt.Sprintf("connection_url=postgresql://{{username}}:{{password}}@%s:%s/%s?sslmode=disable", host, port, r.dbName))
	writeFile(t, filepath.Join(home, "group.sql"),
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT `+ident(r.group)+` TO "{{name}}";`)
	s.lessor("write", "database/roles/group", "db_name=pg", "creation_statements=@"+filepath.Join(home, "group.sql"),
		"default_ttl=1h", "max_ttl=24h")
	return s
}

// openAny unseals s's store, a file or a PostgreSQL schema, in this
// process.
func (s *benchStore) openAny() *barrier.Barrier {
	t := s.rig.t
	u := s.getenv("LESSOR_STORE")
	if u == "" {
		return s.open()
	}
	ctx := context.Background()
	p, err := storage.OpenPostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	key, err := barrier.KeyFromFile(filepath.Join(s.home, ".config", "lessor", "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.Open(ctx, p, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seed adds n leases to s's store (file or PostgreSQL) through the store
// API, copies of a lease lessor issues first.
func (s *benchStore) seed(n int, expireAt func(int) time.Time, user func(int) string) []string {
	t := s.rig.t
	s.lessor("read", "database/creds/group")
	b := s.openAny()
	es, err := lease.New(b, nil, lease.Options{}).Entries(context.Background(), "database/creds/group/")
	if err != nil || len(es) == 0 {
		t.Fatalf("template lease: %v (%d leases)", err, len(es))
	}
	return seedLeases(t, b, es[0], n, expireAt, user)
}

// durSpread is "median (min–max)" of ds.
func durSpread(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s–%s)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

// TestBenchPGStore: the PostgreSQL store against the file store and the
// floor, in one run, interleaved:
//   - issue latency, PostgreSQL store vs file store vs floor;
//   - issue at 100,000 leases vs 0 on the PostgreSQL store (target 1.2x;
//     the 100,000 are written through the store API);
//   - reap of 10,000 due leases with 1, 2 and 3 reapers side by side on
//     the PostgreSQL store vs 1 on the file store (target: no slower).
//
// .ci/bench PGStore runs it alone.
func TestBenchPGStore(t *testing.T) {
	r := requireBench(t)
	n := max(benchRuns(), 3)
	big := 100000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_PG_LEASES")); err == nil && v > 0 {
		big = v
	}
	report(t, "pg store: load at start", loadavg(), "")
	// LESSOR_BENCH_PG_PART=reap runs only the reap part (=issue only the
	// issue part).
	part := os.Getenv("LESSOR_BENCH_PG_PART")
	if part != "reap" {
		benchPGIssue(t, r, n, big)
	}
	if part != "issue" {
		benchPGReap(t, r)
	}
	report(t, "pg store: load at end", loadavg(), "")
}

func benchPGIssue(t *testing.T, r *benchRig, n, big int) {
	file, pg, pgBig := r.newStore(""), r.newPGStore(), r.newPGStore()
	later := time.Now().Add(12 * time.Hour)
	pgBig.seed(big, func(int) time.Time { return later }, func(i int) string { return "bench-none-" + strconv.Itoa(i) })
	var fl, fi, pi, bi []time.Duration
	for i := -2; i < n; i++ {
		runs := []procRun{r.floor(), file.run("read", "-format=json", "database/creds/group"),
			pg.run("read", "-format=json", "database/creds/group"), pgBig.run("read", "-format=json", "database/creds/group")}
		for _, x := range runs {
			if x.err != nil {
				t.Fatal(x.err)
			}
		}
		if i >= 0 {
			fl, fi, pi, bi = append(fl, runs[0].wall), append(fi, runs[1].wall), append(pi, runs[2].wall), append(bi, runs[3].wall)
		}
	}
	report(t, fmt.Sprintf("pg store: issue, floor / file / pg (median (min–max) of %d)", n),
		durSpread(fl)+" / "+durSpread(fi)+" / "+durSpread(pi), "")
	report(t, "pg store: issue, pg / file, pg / floor", fmt.Sprintf("%.2fx, %.2fx", ratio(pi, fi), ratio(pi, fl)), "pg / floor <= 1.5x")
	report(t, fmt.Sprintf("pg store: issue at %d leases vs 0", big),
		fmt.Sprintf("%s vs %s = %.2fx", durSpread(bi), durSpread(pi), ratio(bi, pi)), "<= 1.2x")
}

func benchPGReap(t *testing.T, r *benchRig) {
	reapN := 10000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_REAP")); err == nil && v > 0 {
		reapN = v
	}
	reps := 3
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_PG_REAP_REPS")); err == nil && v > 0 {
		reps = v
	}
	type reapCase struct {
		label   string
		pg      bool
		reapers int
	}
	cases := []reapCase{{"file, 1 reaper", false, 1}, {"pg, 1 reaper", true, 1}, {"pg, 2 reapers", true, 2}, {"pg, 3 reapers", true, 3}}
	walls, cpus := map[string][]time.Duration{}, map[string][]time.Duration{}
	for range reps {
		for _, c := range cases {
			var s *benchStore
			if c.pg {
				s = r.newPGStore()
			} else {
				s = r.newStore("")
			}
			prefix := "bench-group-" + s.storeID[:8] + "-"
			names := r.benchRoles(r.admConn, prefix, reapN, "group")
			now := time.Now()
			expireAt := func(i int) time.Time { return now.Add(-time.Hour + time.Duration(i/1000)*time.Second) }
			ids := s.seed(reapN, expireAt, func(i int) string { return names[i] })
			r.markRoles(r.admConn, s.storeID, names, ids, expireAt)
			var mu sync.Mutex
			revoked := 0
			var errs []error
			var wg sync.WaitGroup
			start, cpu0 := time.Now(), busyCPU()
			for range c.reapers {
				wg.Go(func() {
					res := s.run("reap", "-format=json")
					mu.Lock()
					defer mu.Unlock()
					if res.err != nil {
						errs = append(errs, res.err)
						return
					}
					var sum struct{ Revoked int }
					if err := json.Unmarshal([]byte(res.out), &sum); err != nil {
						errs = append(errs, fmt.Errorf("reap output: %v\n%s", err, res.out))
					}
					revoked += sum.Revoked
				})
			}
			wg.Wait()
			wall, cpu := time.Since(start), busyCPU()-cpu0
			for _, err := range errs {
				t.Fatal(err)
			}
			var left int
			if err := r.admConn.QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1`, prefix+"%").Scan(&left); err != nil {
				t.Fatal(err)
			}
			// The template lease is not due: every one of the n due
			// leases was revoked once between the reapers.
			if revoked != reapN || left != 0 {
				t.Fatalf("%s: revoked %d of %d, %d roles left", c.label, revoked, reapN, left)
			}
			walls[c.label] = append(walls[c.label], wall)
			cpus[c.label] = append(cpus[c.label], cpu)
		}
	}
	base := walls[cases[0].label]
	for _, c := range cases {
		w := walls[c.label]
		report(t, fmt.Sprintf("pg store: reap %d due (%s), median (min–max) of %d", reapN, c.label, reps),
			fmt.Sprintf("%s, %.0f leases/s, %.2fx file", durSpread(w), float64(reapN)/median(w).Seconds(), ratio(w, base)), "<= 1x file (pg)")
		// The machine's busy CPU time during the run (lessor and both
		// PostgreSQL roles of the one server: store and target), and the
		// least wall time it allows on this machine's CPUs.
		cw := cpus[c.label]
		report(t, fmt.Sprintf("pg store: reap %d due (%s), machine CPU busy, median (min–max)", reapN, c.label),
			fmt.Sprintf("%s, %.2fx file's; at least %s of wall on %d CPUs", durSpread(cw), ratio(cw, cpus[cases[0].label]),
				ms(median(cw)/time.Duration(runtime.NumCPU())), runtime.NumCPU()), "")
	}
}

func ratio(a, b []time.Duration) float64 { return float64(median(a)) / float64(median(b)) }
