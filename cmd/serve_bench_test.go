package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// serveRig is a real `lessor serve` over a file store, with the seed
// guide's readonly role, for the benchmarks.
type serveRig struct {
	t       *testing.T
	srv     *pgtest.Server
	db      *pgtest.Database
	cli     *compCLI
	root    string
	storeID string
	base    string
	cmd     *exec.Cmd
	client  *http.Client
}

// newServeRig starts the server. With viaGroup, the role's credentials
// get SELECT through membership in a group role rather than a GRANT on
// the table: PostgreSQL keeps a table's grants in its pg_class row, which
// holds about 2,400 grantees ("row is too big" after that), so 10,000
// live credentials of one role need the group.
func newServeRig(t *testing.T, viaGroup ...bool) *serveRig {
	if testing.Short() || os.Getenv("LESSOR_BENCH") != "1" {
		t.Skip("serve benchmarks run only with LESSOR_BENCH=1 (see .ci/bench)")
	}
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	conn := db.Conn(t)
	if _, err := conn.Exec(context.Background(), `CREATE TABLE products (id serial PRIMARY KEY, name text)`); err != nil {
		t.Fatal(err)
	}
	bin := buildLessor(t)
	// As many admin connections as the floor's and the clients (the
	// default is 4, as Vault's).
	c, ini := storeWithConnection(t, srv, db, "readonly", "max_open_connections=8")
	grant := `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`
	if len(viaGroup) > 0 && viaGroup[0] {
		group := "readers_" + db.Name
		if _, err := conn.Exec(context.Background(), `CREATE ROLE `+group+` NOLOGIN; GRANT SELECT ON products TO `+group); err != nil {
			t.Fatal(err)
		}
		srv.DropRolesAtCleanup(t, group)
		grant = `GRANT ` + group + ` TO "{{name}}";`
	}
	c.must("write", "database/roles/readonly", "db_name=postgresql", "default_ttl=1h", "max_ttl=24h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
`+grant)
	r := &serveRig{t: t, srv: srv, db: db, cli: c, root: ini.Root, storeID: ini.StoreID}
	addr := freeAddr(t)
	r.base = "http://" + addr
	r.cmd = exec.Command(bin, "serve", "-listen="+addr, "-reap-interval=30s")
	r.cmd.Env = append(os.Environ(), "HOME="+c.env["HOME"], "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "XDG_STATE_HOME=",
		"LESSOR_TOKEN=", "LESSOR_STORE=", "LESSOR_KEY_FILE=", "LESSOR_CONFIG=", "LESSOR_UNSEAL_KEY=")
	r.cmd.Stderr = io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		dropStoreRoles(t, srv, db, ini.StoreID)
	})
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 2 * time.Minute}
	waitHealthy(t, r.client, r.base)
	return r
}

// issue reads one credential over HTTP.
func (r *serveRig) issue(client *http.Client) (lease string, err error) {
	req, _ := http.NewRequest("GET", r.base+"/v1/database/creds/readonly", nil)
	req.Header.Set("X-Vault-Token", r.root)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var env struct {
		LeaseID string `json:"lease_id"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &env); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return env.LeaseID, nil
}

func (r *serveRig) call(method, path string) (int, []byte) {
	req, _ := http.NewRequest(method, r.base+path, nil)
	req.Header.Set("X-Vault-Token", r.root)
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// warmFloor runs, on one connection kept open, what an issue runs in
// PostgreSQL: a SCRAM verifier computed here, then CREATE ROLE, GRANT and
// COMMENT in one transaction, one statement per round trip.
type warmFloor struct {
	conn  *pgx.Conn
	names []string
	// turn: several floors run at once, and PostgreSQL answers
	// concurrent GRANTs on one table with "tuple concurrently updated":
	// after CREATE ROLE, each takes its turn on an advisory lock held to
	// the end of its transaction, as lessor serve does.
	turn bool
}

func (f *warmFloor) issue(ctx context.Context) error {
	raw := make([]byte, 10)
	rand.Read(raw)
	name := "floor-" + hex.EncodeToString(raw)
	pw, err := postgres.GeneratePassword(rand.Reader)
	if err != nil {
		return err
	}
	verifier, err := postgres.ScramVerifier(pw, rand.Reader)
	if err != nil {
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	until := time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05-07")
	tx, err := f.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	qs := []string{fmt.Sprintf("CREATE ROLE %s WITH LOGIN PASSWORD '%s' VALID UNTIL '%s'", ident, verifier, until)}
	if f.turn {
		qs = append(qs, "SELECT pg_advisory_xact_lock(2417)")
	}
	qs = append(qs,
		fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", ident),
		fmt.Sprintf("COMMENT ON ROLE %s IS 'lessor-serve-bench-floor'", ident))
	for _, q := range qs {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	f.names = append(f.names, name)
	return tx.Commit(ctx)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// busyCPU is the CPU time the whole machine has spent busy since boot
// (every process, PostgreSQL's included; /proc/stat's first line less its
// idle and iowait columns), or 0 where /proc/stat cannot be read. Two
// readings bound a run: no run finishes faster than the busy time it
// needs divided by the CPUs.
func busyCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		busy += n
	}
	// USER_HZ is 100 on every Linux ABI Go runs on.
	return time.Duration(busy) * 10 * time.Millisecond
}

// TestBenchServeIssueLatency: warm issuance over HTTP (keep-alive, the
// server's pool warm) against a warm floor (a pooled connection running
// the same CREATE ROLE/GRANT transaction), interleaved one for one.
func TestBenchServeIssueLatency(t *testing.T) {
	r := newServeRig(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	floor := &warmFloor{conn: conn}
	defer func() {
		conn.Close(ctx)
		r.srv.DropRolesAtCleanup(t, floor.names...)
	}()
	for range 20 { // warm-up: the server's pool, the floor's connection
		if _, err := r.issue(r.client); err != nil {
			t.Fatal(err)
		}
		if err := floor.issue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const reps, n = 3, 100
	var ratios []float64
	for rep := 1; rep <= reps; rep++ {
		var lessor, base []time.Duration
		for range n {
			start := time.Now()
			if _, err := r.issue(r.client); err != nil {
				t.Fatal(err)
			}
			lessor = append(lessor, time.Since(start))
			start = time.Now()
			if err := floor.issue(ctx); err != nil {
				t.Fatal(err)
			}
			base = append(base, time.Since(start))
		}
		l, f := median(lessor), median(base)
		ratios = append(ratios, float64(l)/float64(f))
		report(t, fmt.Sprintf("serve issue, rep %d: HTTP / warm floor (median of %d)", rep, n),
			fmt.Sprintf("%s / %s = %.2fx", ms(l), ms(f), float64(l)/float64(f)), "<= 1.3x")
	}
	slices.Sort(ratios)
	report(t, "serve issue: median ratio (min-max)", fmt.Sprintf("%.2fx (%.2f-%.2f), load %s", ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], loadavg()), "<= 1.3x")
}

// TestBenchServeThroughput: 8 clients issuing at once for 5 s, 3 times;
// every credential must have its lease and its role, none lost. Each
// repetition is followed by one of the floor: 8 connections of its own
// running the same transaction at once for 5 s, no lessor.
func TestBenchServeThroughput(t *testing.T) {
	r := newServeRig(t)
	for range 10 {
		if _, err := r.issue(r.client); err != nil {
			t.Fatal(err)
		}
	}
	var rates, floorRates, ratios []float64
	total, lostTotal := 10, 0
	for rep := 1; rep <= 3; rep++ {
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		stop := time.Now().Add(5 * time.Second)
		start := time.Now()
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if _, err := r.issue(r.client); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		rate := float64(ok.Load()) / time.Since(start).Seconds()
		rates = append(rates, rate)
		total += int(ok.Load())
		report(t, fmt.Sprintf("serve throughput, rep %d: 8 clients", rep), fmt.Sprintf("%.0f creds/s, %d errors, load %s", rate, failed.Load(), loadavg()), ">= 226/s, 0 errors")
		if failed.Load() > 0 {
			t.Errorf("rep %d: %d errors, the first: %v", rep, failed.Load(), firstErr.Load())
		}
		lostTotal += r.checkLeases(t, total)
		// The table's grants live in its pg_class row, which holds about
		// 2,400 grantees: each repetition starts from none.
		if status, body := r.call("PUT", "/v1/sys/leases/revoke-prefix/database/creds/readonly"); status != 204 {
			t.Fatalf("revoke-prefix: %d %s", status, body)
		}
		total = 0

		frate := floorThroughput(t, r.srv, 8, 5*time.Second)
		floorRates = append(floorRates, frate)
		ratios = append(ratios, rate/frate)
		report(t, fmt.Sprintf("serve throughput, rep %d: floor, 8 connections", rep), fmt.Sprintf("%.0f creds/s; lessor / floor %.2f, load %s", frate, rate/frate, loadavg()), "")
	}
	slices.Sort(rates)
	slices.Sort(floorRates)
	slices.Sort(ratios)
	report(t, "serve throughput: median (min-max)", fmt.Sprintf("%.0f creds/s (%.0f-%.0f)", rates[1], rates[0], rates[2]), ">= 226/s")
	report(t, "serve throughput: floor, median (min-max)", fmt.Sprintf("%.0f creds/s (%.0f-%.0f)", floorRates[1], floorRates[0], floorRates[2]), "")
	report(t, "serve throughput: lessor / floor, median (min-max)", fmt.Sprintf("%.2f (%.2f-%.2f)", ratios[1], ratios[0], ratios[2]), "")
	report(t, "serve throughput: lost leases", fmt.Sprintf("%d", lostTotal), "0")
}

// checkLeases checks that every role of the store has its lease and every
// lease its role, and that there are want of each; it returns how many
// roles lack a lease.
func (r *serveRig) checkLeases(t *testing.T, want int) int {
	status, body := r.call("LIST", "/v1/sys/leases/lookup/database/creds/readonly")
	var env struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if status != 200 || json.Unmarshal(body, &env) != nil {
		t.Fatalf("list leases: %d %s", status, body)
	}
	roles := storeRoles(t, r.srv, r.db, r.storeID)
	leases := map[string]bool{}
	for _, k := range env.Data.Keys {
		leases["database/creds/readonly/"+k] = true
	}
	lost := 0
	for _, l := range roles {
		if !leases[l] {
			lost++
		}
	}
	if len(leases) != want || len(roles) != want || lost != 0 {
		t.Errorf("%d credentials issued, %d leases, %d roles, %d roles without a lease", want, len(leases), len(roles), lost)
	}
	return lost
}

// floorThroughput runs the floor on n connections of its own at once for
// d, in a database of its own with the rig's table, and returns the
// credentials per second.
func floorThroughput(t *testing.T, srv *pgtest.Server, n int, d time.Duration) float64 {
	ctx := context.Background()
	db := srv.NewDatabase(t)
	if _, err := db.Conn(t).Exec(ctx, `CREATE TABLE products (id serial PRIMARY KEY, name text)`); err != nil {
		t.Fatal(err)
	}
	floors := make([]*warmFloor, n)
	for i := range floors {
		conn, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			t.Fatal(err)
		}
		floors[i] = &warmFloor{conn: conn, turn: true}
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for _, f := range floors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := f.issue(ctx); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	rate := float64(ok.Load()) / time.Since(start).Seconds()
	for _, f := range floors {
		f.conn.Close(ctx)
		srv.DropRolesAtCleanup(t, f.names...)
	}
	if failed.Load() > 0 {
		t.Errorf("floor: %d errors, the first: %v", failed.Load(), firstErr.Load())
	}
	return rate
}

// TestBenchServeRSS: the server's peak RSS while 8 clients issue 10,000
// credentials and one revoke-prefix revokes them.
func TestBenchServeRSS(t *testing.T) {
	r := newServeRig(t, true)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_SERVE_N")); err == nil && v > 0 {
		n = v
	}
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := r.issue(r.client); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	issued := time.Since(start)
	afterIssue := rssOf(t, r.cmd.Process.Pid, "VmHWM")
	start = time.Now()
	status, body := r.call("PUT", "/v1/sys/leases/revoke-prefix/database/creds/readonly")
	revoked := time.Since(start)
	if status != 204 {
		t.Fatalf("revoke-prefix: %d %s", status, body)
	}
	peak := rssOf(t, r.cmd.Process.Pid, "VmHWM")
	if left := len(storeRoles(t, r.srv, r.db, r.storeID)); left != 0 {
		t.Errorf("%d roles left after revoke-prefix", left)
	}
	report(t, fmt.Sprintf("serve: issue %d (8 clients), then revoke-prefix", n),
		fmt.Sprintf("%s (%.0f/s, %d errors), %s (%.0f/s)", issued.Round(time.Millisecond), float64(n)/issued.Seconds(), failed.Load(),
			revoked.Round(time.Millisecond), float64(n)/revoked.Seconds()), "")
	report(t, "serve: peak RSS after issuing / after revoking", fmt.Sprintf("%.1f MiB / %.1f MiB, load %s", float64(afterIssue)/(1<<20), float64(peak)/(1<<20), loadavg()), "< 100 MiB")
	if failed.Load() > 0 {
		t.Errorf("%d errors issuing, the first: %v", failed.Load(), firstErr.Load())
	}
	if peak >= 100<<20 {
		t.Errorf("peak RSS %d MiB", peak>>20)
	}
}

// rssOf reads a size field (VmHWM: peak RSS) of /proc/PID/status.
func rssOf(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
