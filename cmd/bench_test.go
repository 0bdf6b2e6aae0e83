package cmd

// Whole-process benchmarks: the lessor binary, built into a temporary
// directory, is timed against a real PostgreSQL, and compared with the
// floor (testdata/bench/floor), a minimal program that opens a fresh pgx
// connection and runs the same CREATE ROLE/GRANT/COMMENT transaction.
// Ratios are taken within one run, with lessor and the floor interleaved so
// that both see the same machine noise.
//
// They are slow and create thousands of roles, so they run only with
// LESSOR_BENCH=1 (see .ci/bench), never in `go test ./...`. Every figure is
// printed as a line starting with "BENCH|" for .ci/bench to tabulate.

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/storage"
)

// benchRig is one benchmark's world: the built binaries, a database with
// six tables and a group role that may read them, an admin role for lessor
// (a superuser, and on demand a CREATEROLE one), and any number of lessor
// stores.
type benchRig struct {
	t         *testing.T
	bin       string // directory of the built binaries
	adminURL  *url.URL
	dbName    string
	group     string // the group role issued roles are granted
	lessorAdm string // the PostgreSQL role lessor connects as: a superuser
	crAdm     string // a CREATEROLE admin, once createRoleAdmin made it
	admConn   *pgx.Conn
	storeIDs  []string // of every store made, to find their roles
	// floorPrefix starts the names of the floor's roles: this run's own,
	// so that clean-up leaves other runs' roles alone.
	floorPrefix string
}

// benchStore is one initialised lessor store with the database engine
// mounted, configured to connect as admin, and two roles: "group" (GRANT
// of the group role) and "tables6" (six per-table grants).
type benchStore struct {
	rig     *benchRig
	admin   string
	home    string
	env     []string
	storeID string
}

func requireBench(t *testing.T) *benchRig {
	t.Helper()
	if testing.Short() || os.Getenv("LESSOR_BENCH") != "1" {
		t.Skip("whole-process benchmarks run only with LESSOR_BENCH=1 (see .ci/bench)")
	}
	raw := os.Getenv("LESSOR_BENCH_DATABASE_URL")
	if raw == "" {
		raw = os.Getenv("LESSOR_TEST_DATABASE_URL")
	}
	if raw == "" {
		t.Fatal("LESSOR_BENCH needs LESSOR_BENCH_DATABASE_URL or LESSOR_TEST_DATABASE_URL (a superuser URL)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("database url: %v", err)
	}
	r := &benchRig{t: t, adminURL: u, bin: benchBinaries(t), floorPrefix: "floor-" + randID()[:8] + "-"}
	ctx := context.Background()
	sfx := fmt.Sprintf("%08x", rand.Uint32())
	r.dbName = "lessor_bench_" + sfx
	r.group = "lessor_bench_readers_" + sfx
	r.lessorAdm = "lessor_bench_admin_" + sfx
	root, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer root.Close(ctx)
	t.Cleanup(r.cleanup)
	mustExec(t, root, "CREATE DATABASE "+ident(r.dbName))
	mustExec(t, root, "CREATE ROLE "+ident(r.group)+" NOLOGIN")
	mustExec(t, root, "CREATE ROLE "+ident(r.lessorAdm)+" LOGIN SUPERUSER PASSWORD 'bench-admin-pw'")
	r.admConn, err = pgx.Connect(ctx, r.url(u.User.Username(), "", r.dbName))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	// Sixty tables: PostgreSQL keeps a table's ACL in one row, which holds
	// about 2,000 grantees, so 10,000 roles with six per-table grants each
	// are spread over ten sets of six, 1,000 roles a set.
	for i := 1; i <= 60; i++ {
		tbl := ident(fmt.Sprintf("t%d", i))
		mustExec(t, r.admConn, "CREATE TABLE "+tbl+" (id int)")
		if i <= 6 {
			mustExec(t, r.admConn, "GRANT SELECT ON "+tbl+" TO "+ident(r.group))
		}
	}
	return r
}

// benchBinaries builds lessor and the floor once per test process, both
// with the release's flags.
var benchBinaries = func() func(t *testing.T) string {
	var once sync.Once
	var dir string
	var err error
	return func(t *testing.T) string {
		once.Do(func() {
			dir, err = os.MkdirTemp("", "lessor-bench-bin")
			if err != nil {
				return
			}
			benchBinDir = dir
			for _, b := range [][2]string{{"lessor", ".."}, {"floor", "../testdata/bench/floor"}, {"slowfsync", "../testdata/bench/slowfsync"}} {
				// Built as the release builds them (.goreleaser.yaml):
				// static, so start-up is what users' start-up is.
				c := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, b[0]), b[1])
				c.Env = append(os.Environ(), "CGO_ENABLED=0")
				out, e := c.CombinedOutput()
				if e != nil {
					err = fmt.Errorf("go build %s: %v\n%s", b[1], e, out)
					return
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
}()

// benchBinDir is where benchBinaries built them, for fsyncWrapper.
var benchBinDir string

// lessorBin is the binary under test: the one built from this tree, or
// LESSOR_BENCH_LESSOR_BIN, to compare two builds (before and after a
// change) against the same floor.
func (r *benchRig) lessorBin() string {
	if b := os.Getenv("LESSOR_BENCH_LESSOR_BIN"); b != "" {
		return b
	}
	return filepath.Join(r.bin, "lessor")
}

func (r *benchRig) url(user, password, db string) string {
	u := *r.adminURL
	if password == "" {
		u.User = r.adminURL.User
	} else {
		u.User = url.UserPassword(user, password)
	}
	u.Path = "/" + db
	return u.String()
}

// cleanup drops the database first (which drops the per-table grants that
// would block DROP ROLE), then every role the run created.
func (r *benchRig) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if r.admConn != nil {
		r.admConn.Close(ctx)
	}
	root, err := pgx.Connect(ctx, r.adminURL.String())
	if err != nil {
		r.t.Logf("cleanup: %v", err)
		return
	}
	defer root.Close(ctx)
	if _, err := root.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(r.dbName)+" WITH (FORCE)"); err != nil {
		r.t.Logf("cleanup: %v", err)
	}
	// Only this run's roles: other tests may be issuing roles on the same
	// server right now.
	patterns := []string{r.floorPrefix + "%"}
	for _, id := range r.storeIDs {
		patterns = append(patterns, database.CommentPrefix+`{"store":"`+id+`"%`, "bench-%-"+id[:8]+"-%")
	}
	rows, err := root.Query(ctx, `SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE ANY($1) OR rolname LIKE ANY($1)`, patterns)
	if err != nil {
		r.t.Logf("cleanup: %v", err)
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	names = append(names, r.group, r.lessorAdm)
	if r.crAdm != "" {
		names = append(names, r.crAdm)
	}
	for len(names) > 0 {
		n := min(len(names), 1000)
		var b strings.Builder
		b.WriteString("DROP ROLE IF EXISTS ")
		for i, nm := range names[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(ident(nm))
		}
		if _, err := root.Exec(ctx, b.String()); err != nil {
			r.t.Logf("cleanup: %v", err)
		}
		names = names[n:]
	}
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func mustExec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%.200s: %v", sql, err)
	}
}

// newStore initialises a store (key file, or passphrase when pass is not
// empty) and configures the database engine through the binary, as an
// operator would, with the superuser admin.
func (r *benchRig) newStore(pass string) *benchStore { return r.newStoreAs(pass, r.lessorAdm) }

// newStoreAs is newStore with lessor connecting as admin, whose password
// is the superuser admin's.
func (r *benchRig) newStoreAs(pass, admin string) *benchStore {
	t := r.t
	home := t.TempDir()
	s := &benchStore{rig: r, admin: admin, home: home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LESSOR_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "HOME="+home)
	initArgs := []string{"operator", "init", "-format=json"}
	if pass != "" {
		pf := filepath.Join(home, "pass")
		writeFile(t, pf, pass)
		s.env = append(s.env, "LESSOR_PASSPHRASE_FILE="+pf)
		initArgs = append(initArgs, "-passphrase")
	}
	out := s.lessor(initArgs...)
	var init struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &init); err != nil || init.RootToken == "" {
		t.Fatalf("operator init: %v\n%s", err, out)
	}
	s.env = append(s.env, "LESSOR_TOKEN="+init.RootToken)
	s.lessor("secrets", "enable", "database")
	writeFile(t, filepath.Join(home, "pw"), "bench-admin-pw")
	host, port := r.adminURL.Hostname(), r.adminURL.Port()
	if port == "" {
		port = "5432"
	}
	s.lessor("write", "database/config/pg", "plugin_name=postgresql-database-plugin",
		"allowed_roles=group,tables6", "username="+admin, "password=@"+filepath.Join(home, "pw"),
		fmt.Sprintf("connection_url=postgresql://{{username}}:{{password}}@%s:%s/%s?sslmode=disable", host, port, r.dbName))
	writeFile(t, filepath.Join(home, "group.sql"),
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT `+ident(r.group)+` TO "{{name}}";`)
	var six strings.Builder
	six.WriteString(`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&six, ` GRANT SELECT ON t%d TO "{{name}}";`, i)
	}
	writeFile(t, filepath.Join(home, "tables6.sql"), six.String())
	for _, role := range []string{"group", "tables6"} {
		s.lessor("write", "database/roles/"+role, "db_name=pg", "creation_statements=@"+filepath.Join(home, role+".sql"),
			"default_ttl=1h", "max_ttl=24h")
	}
	b := s.open()
	s.storeID = b.StoreID()
	r.storeIDs = append(r.storeIDs, s.storeID)
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *benchStore) storePath() string {
	return filepath.Join(s.home, ".local", "share", "lessor", "lessor.db")
}

// open unseals the store in this process; the Bolt backend holds no file
// handle between transactions, so the binaries can run meanwhile.
func (s *benchStore) open() *barrier.Barrier {
	t := s.rig.t
	ctx := context.Background()
	phys, err := storage.OpenBolt(s.storePath(), storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var key barrier.UnsealKey
	if pf := s.getenv("LESSOR_PASSPHRASE_FILE"); pf != "" {
		b, _ := os.ReadFile(pf)
		key = barrier.KeyFromPassphrase(b)
	} else if key, err = barrier.KeyFromFile(filepath.Join(s.home, ".config", "lessor", "unseal.key")); err != nil {
		t.Fatal(err)
	}
	b, err := barrier.Open(ctx, phys, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *benchStore) getenv(k string) string {
	for _, kv := range slices.Backward(s.env) {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

// procRun is one finished process: its output, wall time and peak RSS.
type procRun struct {
	out  string
	wall time.Duration
	rss  int64 // bytes; 0 when not measured
	// faults counts the process's minor page faults (with slowfsync or
	// GNU time, theirs too): every page it touches first, of its heap,
	// stacks and binary, costs one, and on some virtual machines a
	// fault is as dear as a round trip (TestBenchMachine).
	faults int64
	// cpu is the process's own CPU time, user and system (with
	// slowfsync or GNU time, theirs too), apart from the database's.
	cpu time.Duration
	err error
}

// timeBin is GNU time, which measures peak RSS. The process's own rusage
// cannot: Go starts children with vfork, and Linux counts the parent's
// resident memory (here, a test holding 100,000 leases) in the child's
// ru_maxrss. A grandchild of the test, started by time, is clean.
const timeBin = "/usr/bin/time"

func timed(env []string, name string, args ...string) procRun {
	return timedRSS(false, env, name, args...)
}

// timedRSS runs name, through GNU time when rss is set (which then adds
// a fork and an exec to the wall time). With LESSOR_BENCH_FSYNC_DELAY set,
// name runs under slowfsync, which reports name's own wall time, without
// its own start-up, through a pipe (the child's file descriptor 3).
func timedRSS(rss bool, env []string, name string, args ...string) procRun {
	bin, argv := name, args
	var report, reportW *os.File
	if w := fsyncWrapper(); w != nil {
		var err error
		if report, reportW, err = os.Pipe(); err != nil {
			return procRun{err: err}
		}
		defer report.Close()
		defer reportW.Close()
		bin, argv = w[0], append(append(append([]string{"-report-fd", "3"}, w[1:]...), name), args...)
	}
	if rss {
		bin, argv = timeBin, append([]string{"-f", "%M", bin}, argv...)
	}
	c := exec.Command(bin, argv...)
	c.Env = env
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if reportW != nil {
		c.ExtraFiles = []*os.File{reportW}
	}
	start := time.Now()
	err := c.Run()
	r := procRun{out: out.String(), wall: time.Since(start)}
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.faults = ru.Minflt
			r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	stderr := errb.String()
	if reportW != nil {
		reportW.Close()
		b, _ := io.ReadAll(report)
		ns, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("slowfsync reported no time (%q)", b)
		}
		r.wall = time.Duration(ns)
	}
	if rss {
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		kb, perr := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if perr == nil {
			r.rss = kb * 1024
			stderr = strings.Join(lines[:len(lines)-1], "\n")
		}
	}
	if err != nil {
		r.err = fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, stderr)
	}
	return r
}

// fsyncWrapper is the command that runs every timed process (lessor and
// the floor alike) when LESSOR_BENCH_FSYNC_DELAY is set, e.g. "5ms":
// testdata/bench/slowfsync holds each fdatasync and fsync of the process
// that much longer through a seccomp filter, a slow-fsync disk as far as
// the process can tell, and slows nothing else. (strace's delay injection,
// used before, stopped the traced process at each thread it made and each
// signal it got: 30 ms per run for lessor and 20 ms for the floor, with
// no delay at all.)
func fsyncWrapper() []string {
	raw := os.Getenv("LESSOR_BENCH_FSYNC_DELAY")
	if raw == "" {
		return nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		panic("LESSOR_BENCH_FSYNC_DELAY: want a duration such as 5ms, got " + raw)
	}
	return []string{filepath.Join(benchBinDir, "slowfsync"), d.String()}
}

func haveTime() bool {
	_, err := os.Stat(timeBin)
	return err == nil
}

func (s *benchStore) run(args ...string) procRun {
	return timed(s.env, s.rig.lessorBin(), args...)
}

// runRSS runs lessor through GNU time, for its peak RSS.
func (s *benchStore) runRSS(args ...string) procRun {
	return timedRSS(haveTime(), s.env, s.rig.lessorBin(), args...)
}

func (s *benchStore) lessor(args ...string) string {
	s.rig.t.Helper()
	r := s.run(args...)
	if r.err != nil {
		s.rig.t.Fatal(r.err)
	}
	return r.out
}

func (r *benchRig) floor() procRun {
	return timed(os.Environ(), filepath.Join(r.bin, "floor"), r.url(r.lessorAdm, "bench-admin-pw", r.dbName),
		"GRANT "+ident(r.group)+" TO {{name}}", r.floorPrefix)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchReps is how many repetitions each ratio is taken over
// (LESSOR_BENCH_REPS, at least 3): each repetition interleaves lessor and
// its floor, and the spread of the repetitions' ratios says how far one
// figure can be trusted on this machine at this load.
func benchReps() int {
	if n, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_REPS")); err == nil && n >= 3 {
		return n
	}
	return 3
}

// spread is a set of per-repetition ratios.
type spread []float64

func (sp spread) String() string {
	s := slices.Clone(sp)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f over %d reps)", m, s[0], s[len(s)-1], len(s))
}

func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 21
}

func report(t *testing.T, metric, value, target string) {
	t.Helper()
	fmt.Printf("BENCH|%s|%s|%s\n", metric, value, target)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(b int64) string {
	if b == 0 {
		return "n/a (no " + timeBin + ")"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// issueRound is what issueVsFloor measures: the median times of lessor on
// the store under test, on the baseline store and of the floor, the median
// minor page faults of lessor and the floor, and lessor's peak RSS.
type issueRound struct {
	lessor, base, floor       time.Duration
	lessorFaults, floorFaults int64
	rss                       int64
}

// issueVsFloor times n `lessor read database/creds/group` processes on s,
// n on zero (a store kept without bulk leases, the baseline of the scale
// target) and n floor processes, interleaved, after a warm-up, so that the
// machine's load weighs on all three alike; the peak RSS is of one more
// on s, measured.
func (s *benchStore) issueVsFloor(zero *benchStore, n int) issueRound {
	t := s.rig.t
	var ls, zs, fs []time.Duration
	var lf, ff []int64
	for i := -1; i < n; i++ {
		f := s.rig.floor()
		l := s.run("read", "-format=json", "database/creds/group")
		z := zero.run("read", "-format=json", "database/creds/group")
		for _, r := range []procRun{f, l, z} {
			if r.err != nil {
				t.Fatal(r.err)
			}
		}
		if i >= 0 {
			ls, zs, fs = append(ls, l.wall), append(zs, z.wall), append(fs, f.wall)
			lf, ff = append(lf, l.faults), append(ff, f.faults)
		}
	}
	res := s.runRSS("read", "-format=json", "database/creds/group")
	if res.err != nil {
		t.Fatal(res.err)
	}
	return issueRound{
		lessor: median(ls), base: median(zs), floor: median(fs),
		lessorFaults: medianInt(lf), floorFaults: medianInt(ff), rss: res.rss,
	}
}

func medianInt(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// addLeases writes n active lease records straight into the store, in
// large transactions, copying the mount, token and role of a lease lessor
// itself issued. The key layout mirrors pkg/lease's (record, due index,
// token index); if that layout changes, lessor will not see these leases
// and TestBenchScale's lease count check fails.
func (s *benchStore) addLeases(n int, expireAt func(i int) time.Time, usernames func(i int) string) []string {
	t := s.rig.t
	ctx := context.Background()
	b := s.open()
	es, err := lease.New(b, nil, lease.Options{}).Entries(ctx, "database/creds/group/")
	if err != nil || len(es) == 0 {
		t.Fatalf("template lease: %v (%d leases)", err, len(es))
	}
	tmpl := es[0]
	ids := make([]string, 0, n)
	const chunk = 5000
	for done := 0; done < n; {
		m := min(chunk, n-done)
		err := b.Update(ctx, func(tx storage.Tx) error {
			for i := done; i < done+m; i++ {
				e := *tmpl
				expire := expireAt(i).UTC().Truncate(time.Second)
				e.State = lease.StateActive
				e.IssueTime = expire.Add(-time.Hour)
				e.ID = leaseID(t, tmpl.Path, e.IssueTime)
				e.ExpireTime = expire
				e.InternalData = map[string]any{}
				for k, v := range tmpl.InternalData {
					e.InternalData[k] = v
				}
				e.InternalData["username"] = usernames(i)
				e.DueKey = fmt.Sprintf("sys/lease/due/%012d/%s", expire.Unix(), e.ID)
				raw, err := json.Marshal(&e)
				if err != nil {
					return err
				}
				for k, v := range map[string][]byte{"sys/lease/id/" + e.ID: raw, e.DueKey: nil, "sys/lease/token/" + e.TokenAccessor + "/" + e.ID: nil} {
					if err := tx.Put(k, v); err != nil {
						return err
					}
				}
				ids = append(ids, e.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("add leases: %v", err)
		}
		done += m
	}
	return ids
}

// at gives every lease the same expiry.
func at(t time.Time) func(int) time.Time { return func(int) time.Time { return t } }

// leaseID is the id lessor gives a lease of path issued at issued (see
// lease.IDSuffix).
func leaseID(t testing.TB, path string, issued time.Time) string {
	suffix, err := lease.IDSuffix(crand.Reader, issued)
	if err != nil {
		t.Fatal(err)
	}
	return path + "/" + suffix
}

const base62Bench = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randID() string {
	b := make([]byte, 24)
	for i := range b {
		b[i] = base62Bench[rand.IntN(len(base62Bench))]
	}
	return string(b)
}

func (s *benchStore) leaseCount() int {
	n, err := lease.New(s.open(), nil, lease.Options{}).Count(context.Background())
	if err != nil {
		s.rig.t.Fatal(err)
	}
	return n
}

// rolesOfStore counts the roles in PostgreSQL whose comment names this
// store.
func (s *benchStore) rolesOfStore() int {
	var n int
	err := s.rig.admConn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1`,
		database.CommentPrefix+`{"store":"`+s.storeID+`"%`).Scan(&n)
	if err != nil {
		s.rig.t.Fatal(err)
	}
	return n
}

// TestBenchMachine prints what the other figures depend on, so that runs
// on two machines can be compared: the time of a fresh PostgreSQL
// connection (TCP and SCRAM, which the floor pays too) and the latency of
// fdatasync where the stores live (with LESSOR_BENCH_FSYNC_DELAY, as the
// timed processes see it), each the median of 21 with its quartiles.
func TestBenchMachine(t *testing.T) {
	r := requireBench(t)
	ctx := context.Background()
	var conns []time.Duration
	for range 21 {
		start := time.Now()
		c, err := pgx.Connect(ctx, r.url(r.lessorAdm, "bench-admin-pw", r.dbName))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, time.Since(start))
		c.Close(ctx)
	}
	report(t, "machine: fresh PostgreSQL connection", quartiles(conns), "")
	// dd writes 4 KiB, with and without fdatasync at the end; the
	// difference of each pair is one fdatasync, whatever exec and tracing
	// cost.
	f := filepath.Join(t.TempDir(), "probe")
	writeFile(t, f, strings.Repeat("x", 1<<16))
	var syncs []time.Duration
	for range 21 {
		var pair [2]time.Duration
		for i, conv := range []string{"conv=notrunc", "conv=notrunc,fdatasync"} {
			res := timed(os.Environ(), "/bin/dd", "if=/dev/zero", "of="+f, "bs=4k", "count=1", "status=none", conv)
			if res.err != nil {
				t.Fatal(res.err)
			}
			pair[i] = res.wall
		}
		syncs = append(syncs, max(0, pair[1]-pair[0]))
	}
	setting := "normal"
	if d := os.Getenv("LESSOR_BENCH_FSYNC_DELAY"); d != "" {
		setting = "slowed by " + d + " (slowfsync)"
	}
	report(t, "machine: fdatasync of 4 KiB, "+setting, quartiles(syncs), "")

	// A page of memory touched for the first time, then unmapped: what
	// each page of heap, stack or binary a process touches costs it, start
	// to exit. Under a hypervisor that shadows page tables this is some
	// 17 µs, not the 0.2-0.5 µs of bare metal, and the page faults rows
	// of the issue figures then weigh as much as its round trips.
	const pages = 1024
	var touches []time.Duration
	for range 21 {
		start := time.Now()
		b, err := syscall.Mmap(-1, 0, pages*4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		if err := syscall.Munmap(b); err != nil {
			t.Fatal(err)
		}
		touches = append(touches, time.Since(start)/pages)
	}
	slices.Sort(touches)
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Nanoseconds())/1000) }
	report(t, "machine: first touch of a 4 KiB page, fault and unmap",
		fmt.Sprintf("%s µs (%s-%s)", us(median(touches)), us(touches[len(touches)/4]), us(touches[3*len(touches)/4])), "")
}

// quartiles is "median (q1-q3)".
func quartiles(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%s (%s-%s)", ms(median(s)), ms(s[len(s)/4]), ms(s[(3*len(s))/4]))
}

// TestBenchIssueScale is targets 1 and 2: issue latency against the floor
// at 0, 1,000, 10,000 and 100,000 active leases, each level timed against
// a store without bulk leases in the same loop. The bulk leases have no
// PostgreSQL roles: issuing a credential never reads other leases' roles,
// so only the store's size matters here.
func TestBenchIssueScale(t *testing.T) {
	r := requireBench(t)
	s, zero := r.newStore(""), r.newStore("")
	n := benchRuns()
	total := 0
	for _, level := range []int{0, 1000, 10000, 100000} {
		if level > total {
			s.addLeases(level-total, at(time.Now().Add(24*time.Hour)), func(i int) string { return fmt.Sprintf("bench-%d", i) })
			total = level
		}
		// Repetitions of n/reps interleaved rounds each: a ratio per
		// repetition; the times shown are the median of the repetitions' medians.
		var vsFloor, vsZero spread
		var ls, zs, fs []time.Duration
		var lf, ff []int64
		var rss int64
		reps := benchReps()
		per := max(3, n/reps)
		for range reps {
			r := s.issueVsFloor(zero, per)
			vsFloor, vsZero = append(vsFloor, float64(r.lessor)/float64(r.floor)), append(vsZero, float64(r.lessor)/float64(r.base))
			ls, zs, fs, rss = append(ls, r.lessor), append(zs, r.base), append(fs, r.floor), max(rss, r.rss)
			lf, ff = append(lf, r.lessorFaults), append(ff, r.floorFaults)
			total += per + 2
		}
		l, z, f := median(ls), median(zs), median(fs)
		report(t, fmt.Sprintf("issue @%d leases: lessor / floor", level), fmt.Sprintf("%s / %s: %s", ms(l), ms(f), vsFloor), "<= 1.25x @0, <= 1.3x")
		if level > 0 {
			report(t, fmt.Sprintf("issue @%d leases vs @0 (same run)", level), fmt.Sprintf("%s / %s: %s", ms(l), ms(z), vsZero), "<= 1.1x")
		}
		report(t, fmt.Sprintf("issue @%d leases: minor page faults, lessor / floor", level), fmt.Sprintf("%d / %d", medianInt(lf), medianInt(ff)), "")
		report(t, fmt.Sprintf("issue @%d leases: peak RSS", level), mib(rss), "< 64 MiB")
	}
	if got, want := s.leaseCount(), total; got != want {
		t.Errorf("store holds %d leases, want %d", got, want)
	}
	st, err := os.Stat(s.storePath())
	if err != nil {
		t.Fatal(err)
	}
	report(t, "store file @100000 leases", mib(st.Size()), "")
}

// TestBenchConcurrency is target 3: 8 processes issuing 100 credentials
// each, against one process issuing 100, on fresh stores; no error, no
// lost lease, one role per lease.
func TestBenchConcurrency(t *testing.T) {
	r := requireBench(t)
	const per = 100
	for _, workers := range []int{1, 8} {
		s := r.newStore("")
		var wg sync.WaitGroup
		errs := make(chan error, workers*per)
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for range per {
					if res := s.run("read", "-format=json", "database/creds/group"); res.err != nil {
						errs <- res.err
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		close(errs)
		nerr := 0
		for err := range errs {
			if nerr < 3 {
				t.Error(err)
			}
			nerr++
		}
		leases, roles := s.leaseCount(), s.rolesOfStore()
		report(t, fmt.Sprintf("concurrency %dx%d: throughput", workers, per), fmt.Sprintf("%.1f issues/s (%s)", float64(workers*per)/el.Seconds(), el.Round(time.Millisecond)), "")
		report(t, fmt.Sprintf("concurrency %dx%d: errors, leases, roles", workers, per), fmt.Sprintf("%d, %d, %d", nerr, leases, roles), fmt.Sprintf("0, %d, %d", workers*per, workers*per))
		if leases != workers*per || roles != workers*per {
			t.Errorf("%d workers: %d leases and %d roles, want %d of each", workers, leases, roles, workers*per)
		}
	}
}

// TestBenchReap is target 4: one `lessor reap` revoking 10,000 due leases
// whose roles really exist, once with roles that are members of a group
// role and once with roles holding six per-table grants; and, right after
// the group case, the group case again with lessor connecting as a
// CREATEROLE admin instead of a superuser (issue 13), for the ratio of the
// two rates in one run.
func TestBenchReap(t *testing.T) {
	r := requireBench(t)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_REAP")); err == nil && v > 0 {
		n = v
	}
	cases := []struct {
		kind, admin, label string
	}{
		{"group", r.lessorAdm, "group"},
		{"group", r.createRoleAdmin(), "group, CREATEROLE admin"},
		{"tables6", r.lessorAdm, "tables6"},
	}
	// Each repetition reaps every case once, so that drift in the machine
	// falls on all of them; the figures are medians and ranges over the
	// repetitions.
	rate := map[string]spread{}    // leases/s
	vsFloor := map[string]spread{} // lessor's time / the SQL floor's
	floorRate := map[string]spread{}
	peakConns := map[string]int{}
	peakRSS := map[string]int64{}
	outcome := map[string][]string{}
	// The machine's busy CPU time (lessor and PostgreSQL) during lessor's
	// reap and during the floor's: on 2 CPUs, a reap can take no less
	// than half its busy time, whatever its own overlap.
	busy, floorBusy := map[string]spread{}, map[string]spread{}
	own := map[string]spread{} // lessor's own CPU, out of busy
	for range benchReps() {
		for _, c := range cases {
			s := r.newStoreAs("", c.admin)
			s.dueLeases(n, c.kind)
			ctx := context.Background()
			prefix := "bench-" + c.kind + "-" + s.storeID[:8] + "-%"
			var before int
			if err := r.admConn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1`, prefix).Scan(&before); err != nil {
				t.Fatal(err)
			}
			if before != n {
				t.Fatalf("%s: %d roles before reaping, want %d", c.label, before, n)
			}
			// The template lease is not due; everything added is.
			peak := 0
			stop := make(chan struct{})
			var mon sync.WaitGroup
			mc, err := pgx.Connect(ctx, r.adminURL.String())
			if err != nil {
				t.Fatal(err)
			}
			mon.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					var conns int
					if err := mc.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, c.admin).Scan(&conns); err == nil {
						peak = max(peak, conns)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
			cpu0 := busyCPU()
			res := s.runRSS("reap", "-format=json")
			cpu := busyCPU() - cpu0
			close(stop)
			mon.Wait()
			mc.Close(ctx)
			if res.err != nil {
				t.Fatal(res.err)
			}
			var sum struct {
				Revoked, Failed int
			}
			if err := json.Unmarshal([]byte(res.out), &sum); err != nil {
				t.Fatalf("reap output: %v\n%s", err, res.out)
			}
			var left int
			if err := r.admConn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1`, prefix).Scan(&left); err != nil {
				t.Fatal(err)
			}
			leases := s.leaseCount()
			rate[c.label] = append(rate[c.label], float64(sum.Revoked)/res.wall.Seconds())
			busy[c.label] = append(busy[c.label], float64(cpu)/float64(time.Millisecond))
			own[c.label] = append(own[c.label], float64(res.cpu)/float64(time.Millisecond))
			if c.admin == r.lessorAdm {
				floor, fcpu := r.reapFloor(n, c.kind)
				floorBusy[c.label] = append(floorBusy[c.label], float64(fcpu)/float64(time.Millisecond))
				vsFloor[c.label] = append(vsFloor[c.label], float64(res.wall)/float64(floor))
				floorRate[c.label] = append(floorRate[c.label], float64(n)/floor.Seconds())
			}
			peakConns[c.label] = max(peakConns[c.label], peak)
			peakRSS[c.label] = max(peakRSS[c.label], res.rss)
			// n roles existed and none is left; n revocations succeeded and
			// only the template lease remains, so each due lease was revoked
			// exactly once.
			outcome[c.label] = append(outcome[c.label], fmt.Sprintf("%d, %d, %d, %d", sum.Revoked, sum.Failed, left, leases))
			if sum.Revoked != n || sum.Failed != 0 || left != 0 || leases != 1 {
				t.Errorf("%s: revoked %d of %d, %d failed, %d roles left, %d leases left (want 1)", c.label, sum.Revoked, n, sum.Failed, left, leases)
			}
		}
	}
	for _, c := range cases {
		report(t, fmt.Sprintf("reap %d (%s): rate", n, c.label), rate[c.label].rate(), ">= 2000/s")
		if f := floorRate[c.label]; len(f) > 0 {
			report(t, fmt.Sprintf("reap %d (%s): SQL floor rate", n, c.label), f.rate(), "")
			target := "<= 1.15x"
			if c.kind == "group" {
				target = "<= 2x (rate >= 0.5x the floor's)"
			}
			report(t, fmt.Sprintf("reap %d (%s): lessor / SQL floor, time", n, c.label), vsFloor[c.label].String(), target)
			report(t, fmt.Sprintf("reap %d (%s): machine CPU busy (ms), lessor / SQL floor", n, c.label),
				busy[c.label].millis()+" / "+floorBusy[c.label].millis(), fmt.Sprintf("wall >= busy / %d CPUs", runtime.NumCPU()))
			report(t, fmt.Sprintf("reap %d (%s): lessor's own CPU (ms), of its machine CPU", n, c.label), own[c.label].millis(), "the rest is PostgreSQL's")
		}
		report(t, fmt.Sprintf("reap %d (%s): peak PG connections, peak RSS", n, c.label), fmt.Sprintf("%d, %s", peakConns[c.label], mib(peakRSS[c.label])), "< 64 MiB")
		report(t, fmt.Sprintf("reap %d (%s): revoked, failed, roles left, leases left", n, c.label), strings.Join(outcome[c.label], "; "), fmt.Sprintf("%d, 0, 0, 1 each rep", n))
	}
	var crsu spread
	for i := range rate["group"] {
		crsu = append(crsu, rate["group, CREATEROLE admin"][i]/rate["group"][i])
	}
	report(t, fmt.Sprintf("reap %d (group): CREATEROLE / superuser admin, rate", n), crsu.String(), "")
}

// millis is "median (min-max over N reps)" of milliseconds.
func (sp spread) millis() string {
	s := slices.Clone(sp)
	slices.Sort(s)
	return fmt.Sprintf("%.0f (%.0f-%.0f over %d reps)", s[len(s)/2], s[0], s[len(s)-1], len(s))
}

// rate is "median/s (min-max over N reps)" of rates.
func (sp spread) rate() string {
	s := slices.Clone(sp)
	slices.Sort(s)
	return fmt.Sprintf("%.0f/s (%.0f-%.0f over %d reps)", s[len(s)/2], s[0], s[len(s)-1], len(s))
}

// createRoleAdmin makes, once, a least-privilege admin for lessor (the
// recipe of issue 13): LOGIN and CREATEROLE and no other attribute, the
// superuser admin's password, and the group role WITH ADMIN OPTION, so
// that it may grant the group (PostgreSQL 16+ asks for that; 15 lets
// CREATEROLE grant any role but a superuser).
func (r *benchRig) createRoleAdmin() string {
	if r.crAdm == "" {
		name := strings.Replace(r.lessorAdm, "_admin_", "_cradmin_", 1)
		mustExec(r.t, r.admConn, "CREATE ROLE "+ident(name)+" LOGIN CREATEROLE PASSWORD 'bench-admin-pw'")
		r.crAdm = name
		mustExec(r.t, r.admConn, "GRANT "+ident(r.group)+" TO "+ident(name)+" WITH ADMIN OPTION")
	}
	return r.crAdm
}

// dueLeases creates n roles in PostgreSQL, members of the group role
// (kind "group") or holding six per-table grants ("tables6"), and a due
// lease for each, plus one lease lessor issues itself, which is not due.
// A store with the superuser admin gets roles made by the bench's
// superuser, as before; one with another admin gets roles that admin
// made, as lessor would have (on PostgreSQL 16+ their creator holds ADMIN
// OPTION on them, which revocation relies on).
func (s *benchStore) dueLeases(n int, kind string) {
	r := s.rig
	s.lessor("read", "database/creds/group") // the template lease
	c := r.admConn
	if s.admin != r.lessorAdm {
		ctx := context.Background()
		var err error
		if c, err = pgx.Connect(ctx, r.url(s.admin, "bench-admin-pw", r.dbName)); err != nil {
			r.t.Fatal(err)
		}
		defer c.Close(ctx)
	}
	names := r.benchRoles(c, fmt.Sprintf("bench-%s-%s-", kind, s.storeID[:8]), n, kind)
	// The roles of one set of 1,000 expire in the same second, so that
	// reap's batches (due order, 1,000 at a time) fall within a set, as
	// when the credentials of one role definition are due together.
	now := time.Now()
	expireAt := func(i int) time.Time { return now.Add(-time.Hour + time.Duration(i/1000)*time.Second) }
	ids := s.addLeases(n, expireAt, func(i int) string { return names[i] })
	r.markRoles(c, s.storeID, names, ids, expireAt)
}

// markRoles gives each role names[i] the comment lessor writes on a role
// it creates for lease ids[i] of store storeID: revocation drops only a
// role whose comment names its lease.
func (r *benchRig) markRoles(c *pgx.Conn, storeID string, names, ids []string, expireAt func(int) time.Time) {
	var b strings.Builder
	for i, name := range names {
		comment := database.RoleMetadata{StoreID: storeID, LeaseID: ids[i], Expires: expireAt(i)}.Comment()
		fmt.Fprintf(&b, "COMMENT ON ROLE %s IS '%s';", ident(name), strings.ReplaceAll(comment, "'", "''"))
		if i%1000 == 999 || i == len(names)-1 {
			mustExec(r.t, c, b.String())
			b.Reset()
		}
	}
}

// benchRoles creates n roles named prefix+i over c, members of the group
// role (kind "group") or holding six per-table grants ("tables6": the
// tables of set i/1000), and returns their names. Like the roles of the
// due leases they stand for, they are LOGIN roles whose VALID UNTIL (the
// lease's expiry plus lessor's buffer) has passed.
func (r *benchRig) benchRoles(c *pgx.Conn, prefix string, n int, kind string) []string {
	names := make([]string, n)
	var b strings.Builder
	until := time.Now().Add(-time.Hour + time.Minute).UTC().Format("2006-01-02 15:04:05Z")
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
		id := ident(names[i])
		fmt.Fprintf(&b, "CREATE ROLE %s LOGIN VALID UNTIL '%s'; COMMENT ON ROLE %s IS 'lessor-bench';", id, until, id)
		if kind == "group" {
			fmt.Fprintf(&b, "GRANT %s TO %s;", ident(r.group), id)
		} else {
			for _, tbl := range setTables(i) {
				fmt.Fprintf(&b, "GRANT SELECT ON %s TO %s;", tbl, id)
			}
		}
		if i%1000 == 999 || i == n-1 {
			mustExec(r.t, c, b.String())
			b.Reset()
		}
	}
	return names
}

// setTables names the six tables a "tables6" role i holds grants on.
func setTables(i int) []string {
	tables := make([]string, 6)
	for k := range tables {
		tables[k] = fmt.Sprintf("t%d", 6*(i/1000%10)+k+1)
	}
	return tables
}

// reapFloor creates n roles as benchRoles does, without leases, and times
// the least SQL that removes them, on one fresh connection: per set of
// 1,000, one REVOKE naming the set on the tables it holds grants on (kind
// "tables6") and one DROP ROLE naming the set. Whatever revokes these
// roles pays PostgreSQL at least this much.
func (r *benchRig) reapFloor(n int, kind string) (wall, busy time.Duration) {
	t := r.t
	ctx := context.Background()
	names := r.benchRoles(r.admConn, "floor-reap-"+kind+"-"+randID()[:8]+"-", n, kind)
	cpu0 := busyCPU()
	start := time.Now()
	c, err := pgx.Connect(ctx, r.url(r.lessorAdm, "bench-admin-pw", r.dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for from := 0; from < n; from += 1000 {
		set := names[from:min(from+1000, n)]
		ids := make([]string, len(set))
		for i, nm := range set {
			ids[i] = ident(nm)
		}
		list := strings.Join(ids, ", ")
		sql := "DROP ROLE " + list
		if kind != "group" {
			sql = "REVOKE ALL ON " + strings.Join(setTables(from), ", ") + " FROM " + list + "; " + sql
		}
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("floor reap: %v", err)
		}
	}
	return time.Since(start), busyCPU() - cpu0
}

// TestBenchUnseal is target 5: the cost of unsealing per command, key file
// against passphrase (Argon2id), measured on `lessor secrets list`, which
// does nothing but unseal and read the mount table.
func TestBenchUnseal(t *testing.T) {
	r := requireBench(t)
	n := benchRuns()
	for _, pass := range []string{"", "correct horse battery staple"} {
		s := r.newStore(pass)
		var ds []time.Duration
		var rss int64
		for i := -2; i < n; i++ {
			res := s.run("secrets", "list")
			if res.err != nil {
				t.Fatal(res.err)
			}
			if i >= 0 {
				ds = append(ds, res.wall)
			}
		}
		res := s.runRSS("secrets", "list")
		if res.err != nil {
			t.Fatal(res.err)
		}
		rss = res.rss
		kind := "key file"
		if pass != "" {
			kind = "passphrase"
		}
		report(t, "unseal ("+kind+"): `secrets list`", ms(median(ds))+", peak RSS "+mib(rss), "peak RSS < 64 MiB")
	}
}

// TestProfileIssue runs `read database/creds/group` in this process, with
// LESSOR_BENCH_LEASES (default 100,000) leases in the store, and writes a
// CPU profile to LESSOR_BENCH_CPUPROFILE when set: the whole-process
// benchmarks show what is slow, this shows why.
func TestProfileIssue(t *testing.T) {
	r := requireBench(t)
	s := r.newStore("")
	s.lessor("read", "database/creds/group")
	leases := 100000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_LEASES")); err == nil && v >= 0 {
		leases = v
	}
	if leases > 0 {
		s.addLeases(leases, at(time.Now().Add(24*time.Hour)), func(i int) string { return fmt.Sprintf("bench-%d", i) })
	}
	if p := os.Getenv("LESSOR_BENCH_KEEP_STORE"); p != "" {
		// A copy for package-level benchmarks (pkg/storage).
		b, err := os.ReadFile(s.storePath())
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, string(b))
	}
	if p := os.Getenv("LESSOR_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	n := benchRuns()
	var ds []time.Duration
	for range n {
		var out, errb bytes.Buffer
		f := newFactory(strings.NewReader(""), &out, &errb, s.getenv)
		start := time.Now()
		if code := run(context.Background(), f, []string{"read", "database/creds/group"}); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		ds = append(ds, time.Since(start))
	}
	report(t, fmt.Sprintf("in-process issue @%d leases", leases), ms(median(ds)), "")
}

// TestProfileReap runs `reap` in this process over LESSOR_BENCH_REAP
// (default 10,000) due leases of LESSOR_BENCH_KIND ("group" or "tables6";
// with LESSOR_BENCH_PG_STORE set, group leases in a PostgreSQL store),
// writing a CPU profile to LESSOR_BENCH_CPUPROFILE when set, and reports
// the reap's allocations per lease.
func TestProfileReap(t *testing.T) {
	r := requireBench(t)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_REAP")); err == nil && v > 0 {
		n = v
	}
	kind := cmp.Or(os.Getenv("LESSOR_BENCH_KIND"), "group")
	var s *benchStore
	if os.Getenv("LESSOR_BENCH_PG_STORE") != "" {
		// The store in a PostgreSQL schema (group grants only).
		s = r.newPGStore()
		prefix := "bench-group-" + s.storeID[:8] + "-"
		names := r.benchRoles(r.admConn, prefix, n, "group")
		now := time.Now()
		expireAt := func(i int) time.Time { return now.Add(-time.Hour + time.Duration(i/1000)*time.Second) }
		ids := s.seed(n, expireAt, func(i int) string { return names[i] })
		r.markRoles(r.admConn, s.storeID, names, ids, expireAt)
	} else {
		s = r.newStore("")
		s.dueLeases(n, kind)
	}
	if p := os.Getenv("LESSOR_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var out, errb bytes.Buffer
	f := newFactory(strings.NewReader(""), &out, &errb, s.getenv)
	// Allocations, unlike times, do not depend on how busy the machine is:
	// on a shared one they tell a change's effect on the reap's own work.
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	if code := run(context.Background(), f, []string{"reap", "-format=json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	report(t, fmt.Sprintf("in-process reap %d (%s)", n, kind), fmt.Sprintf("%.0f leases/s (%s)", float64(n)/el.Seconds(), el.Round(time.Millisecond)), "")
	report(t, fmt.Sprintf("in-process reap %d (%s): allocations per lease", n, kind),
		fmt.Sprintf("%.0f (%.1f KiB)", float64(ms1.Mallocs-ms0.Mallocs)/float64(n), float64(ms1.TotalAlloc-ms0.TotalAlloc)/1024/float64(n)), "")
}
