package cmd

// Fault tests: what lessor does when PostgreSQL or the store file misbehaves.
// Faults are made only on loopback (a proxy or a silent listener on
// 127.0.0.1 between lessor and the shared test server), on roles a test
// creates itself, and on files and tmpfs mounts under the test's temp dir;
// the shared server's own settings are never touched.
//
// Each database fault must give a clear error within its timeout (10 s by
// default, measured and logged), leave no work unrecorded, and stop
// mattering once the fault is gone.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// cli runs lessor in-process with its own HOME and environment.
type cli struct {
	t   *testing.T
	env map[string]string
}

type cliResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, env: map[string]string{"HOME": t.TempDir()}}
}

func (c *cli) run(args ...string) cliResult {
	var out, errb bytes.Buffer
	f := newFactory(strings.NewReader(""), &out, &errb, func(k string) string { return c.env[k] })
	start := time.Now()
	code := run(context.Background(), f, args)
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code, took: time.Since(start)}
}

// must runs lessor and fails the test unless it exits 0.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("lessor %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs lessor, expects exit code want and stderr matching pattern, and
// returns the result.
func (c *cli) fails(want int, pattern string, args ...string) cliResult {
	c.t.Helper()
	r := c.run(args...)
	if r.code != want {
		c.t.Fatalf("lessor %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(pattern).MatchString(r.stderr) {
		c.t.Fatalf("lessor %s: stderr %q does not match %q", strings.Join(args, " "), r.stderr, pattern)
	}
	return r
}

// initStore creates the store and sets LESSOR_TOKEN to the root token.
func (c *cli) initStore() {
	c.t.Helper()
	var init struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(c.must("operator", "init", "-format=json")), &init); err != nil || init.RootToken == "" {
		c.t.Fatalf("operator init: %v", err)
	}
	c.env["LESSOR_TOKEN"] = init.RootToken
}

func (c *cli) writeFile(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.env["HOME"], name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// issue reads credentials and returns the lease id and username.
func (c *cli) issue(role string) (leaseID, username, password string) {
	c.t.Helper()
	var out struct {
		LeaseID string `json:"lease_id"`
		Data    struct{ Username, Password string }
	}
	if err := json.Unmarshal([]byte(c.must("read", "-format=json", "database/creds/"+role)), &out); err != nil {
		c.t.Fatal(err)
	}
	return out.LeaseID, out.Data.Username, out.Data.Password
}

// faultEnv is a store with the database engine mounted, and an admin role
// of the test's own, with a password kept in a file.
type faultEnv struct {
	*cli
	srv       *pgtest.Server
	db        *pgtest.Database
	admin     string
	adminPW   string
	adminFile string
}

// newFaultEnv creates the admin role with the given attributes (e.g.
// "SUPERUSER", or "CREATEROLE" for a role that CONNECTION LIMIT binds).
func newFaultEnv(t *testing.T, attrs string) *faultEnv {
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	e := &faultEnv{cli: newCLI(t), srv: srv, db: db, admin: "adm_" + db.Name, adminPW: "adm-pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	e.sql("CREATE ROLE " + pgx.Identifier{e.admin}.Sanitize() + " LOGIN " + attrs + " PASSWORD '" + e.adminPW + "'")
	// The admin goes as an extra name: passed as the store's id, it
	// matched no role and was left behind by every run.
	t.Cleanup(func() { dropScriptRoles(srv, db.Name, scriptStoreID(e.env["HOME"]), e.admin) })
	e.adminFile = e.writeFile("admin-password", e.adminPW)
	e.initStore()
	e.must("secrets", "enable", "database")
	return e
}

// sql runs one statement as the test server's superuser in the test's
// database.
func (e *faultEnv) sql(q string, args ...any) {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), q, args...); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// count runs a query returning one number.
func (e *faultEnv) count(q string, args ...any) int {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// lessorRoles counts the roles lessor created for this store.
func (e *faultEnv) lessorRoles(prefix string) int {
	return e.count(`SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 AND shobj_description(oid, 'pg_authid') LIKE 'lessor:%'`, prefix+"%")
}

// configure points the engine at addr (host:port) without verifying it,
// and writes role "r" with the given creation statements.
func (e *faultEnv) configure(addr, creation string) {
	e.t.Helper()
	e.must("write", "database/config/pg", "plugin_name=postgresql-database-plugin", "allowed_roles=*",
		"connection_url=postgres://{{username}}:{{password}}@"+addr+"/"+e.db.Name+"?sslmode=disable",
		"username="+e.admin, "password=@"+e.adminFile, "verify_connection=false",
		"username_template="+e.rolePrefix()+"{{random 20}}")
	e.must("write", "database/roles/r", "db_name=pg", "creation_statements=@"+e.writeFile("create.sql", creation),
		"default_ttl=1h", "max_ttl=24h")
}

const plainCreation = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`

// rolePrefix starts the names of the roles this test's store issues:
// roles are cluster-wide, and other tests issue at the same time.
func (e *faultEnv) rolePrefix() string { return "f" + e.db.Name[len(e.db.Name)-8:] + "-" }

func (e *faultEnv) serverAddr() string { return net.JoinHostPort(e.srv.Host, strconv.Itoa(e.srv.Port)) }

// within fails the test when a fault took longer than limit to report, and
// logs the measurement for the report.
func within(t *testing.T, what string, r cliResult, limit time.Duration) {
	t.Helper()
	t.Logf("measured: %s: error after %s", what, r.took.Round(10*time.Millisecond))
	if r.took > limit {
		t.Fatalf("%s: error after %s, over %s", what, r.took, limit)
	}
}

// noLeases asserts that no lease is recorded under role r.
func (e *faultEnv) noLeases() {
	e.t.Helper()
	e.fails(2, "no value found", "list", "sys/leases/lookup/database/creds/r")
}

// leaseCount returns how many leases are recorded under role r.
func (e *faultEnv) leaseCount() int {
	e.t.Helper()
	r := e.run("list", "-format=json", "sys/leases/lookup/database/creds/r")
	if r.code != 0 {
		// Nothing listed: exit 2 and an empty object, as in Vault.
		if r.code == 2 && r.stdout == "{}\n" && r.stderr == "" {
			return 0
		}
		e.t.Fatalf("list leases: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	var ids []string
	if err := json.Unmarshal([]byte(r.stdout), &ids); err != nil {
		e.t.Fatalf("list leases: %v: %s", err, r.stdout)
	}
	return len(ids)
}

// faultProxy sits between lessor and the test server on loopback. It
// forwards, or accepts and never answers (a hung server or a black-holed
// network), or is down (connection refused), and can cut every connection
// after a number of bytes from the client (a restart in mid-conversation).
type faultProxy struct {
	t        *testing.T
	target   string
	addr     string
	hang     atomic.Bool
	cutAfter atomic.Int64 // 0: never
	// loseReplyTo, when set, is a statement prefix (lower case): the first
	// statement starting with it reaches the server, its reply never
	// reaches the client, and the connection then drops — the server did
	// the work, the client cannot know.
	loseReplyTo atomic.Pointer[string]
	lost        atomic.Int64 // statements whose reply was lost

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	p := &faultProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.ln = ln
	go p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *faultProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		if p.hang.Load() {
			continue // accepted, never answered, closed only by down
		}
		go p.forward(c)
	}
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		c.Close()
		return
	}
	if prefix := p.loseReplyTo.Load(); prefix != nil {
		p.forwardLosingReply(c, up, *prefix)
		return
	}
	go func() { io.Copy(c, up); c.Close() }()
	limit := p.cutAfter.Load()
	if limit > 0 {
		io.CopyN(up, c, limit)
		c.Close()
		up.Close()
		return
	}
	io.Copy(up, c)
	up.Close()
}

// forwardLosingReply forwards message by message, and drops the reply to
// the first simple query or Parse whose text starts with prefix.
func (p *faultProxy) forwardLosingReply(c, up net.Conn, prefix string) {
	var mute atomic.Bool
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 && !mute.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.Close()
				return
			}
		}
	}()
	defer c.Close()
	defer up.Close()
	// The startup message has no type byte; every later one does.
	var lenBuf [4]byte
	if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint32(lenBuf[:]))
	if n < 4 {
		return
	}
	start := make([]byte, n)
	copy(start, lenBuf[:])
	if _, err := io.ReadFull(c, start[4:]); err != nil {
		return
	}
	if _, err := up.Write(start); err != nil {
		return
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		if n < 4 {
			return
		}
		msg := make([]byte, 5+n-4)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[5:]); err != nil {
			return
		}
		var text []byte
		switch hdr[0] {
		case 'Q':
			text = msg[5:]
		case 'P': // statement name, then the query
			if i := bytes.IndexByte(msg[5:], 0); i >= 0 {
				text = msg[5+i+1:]
			}
		}
		hit := text != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(string(text))), prefix)
		if hit {
			mute.Store(true)
		}
		if _, err := up.Write(msg); err != nil {
			return
		}
		if hit {
			p.lost.Add(1)
			// A Parse runs only once its Bind and Execute reach the
			// server, which a pipeline sends behind it: pass them on, up
			// to the Sync that ends the pipeline.
			for hdr[0] == 'P' {
				var h [5]byte
				if _, err := io.ReadFull(c, h[:]); err != nil {
					break
				}
				n := int(binary.BigEndian.Uint32(h[1:]))
				if n < 4 {
					break
				}
				msg := make([]byte, 5+n-4)
				copy(msg, h[:])
				if _, err := io.ReadFull(c, msg[5:]); err != nil {
					break
				}
				if _, err := up.Write(msg); err != nil || h[0] == 'S' {
					break
				}
			}
			// Let the server finish the statement, then drop both sides.
			time.Sleep(300 * time.Millisecond)
			return
		}
	}
}

// down closes the listener and every connection: the server is gone.
func (p *faultProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// up listens again on the same address: the server is back.
func (p *faultProxy) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy up: %v", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// A server that accepts connections and never answers: issuing and
// verifying a config both give a timeout error within the 10 s default,
// and no lease is recorded for credentials that were never made.
func TestFaultHangingServer(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	p := newFaultProxy(t, e.serverAddr())
	p.hang.Store(true)
	e.configure(p.addr, plainCreation)

	r := e.fails(2, `^lessor: error: read database/creds/r: connection "pg": connect to `+regexp.QuoteMeta(p.addr)+`: timed out after 10s\n$`, "read", "database/creds/r")
	within(t, "issue against a hung server", r, 12*time.Second)
	e.noLeases()

	r = e.fails(2, `connect to `+regexp.QuoteMeta(p.addr)+`: timed out after 10s`,
		"write", "database/config/pg", "verify_connection=true")
	within(t, "verify a config against a hung server", r, 12*time.Second)
	if strings.Contains(r.stderr, e.adminPW) {
		t.Fatalf("error shows the admin password: %s", r.stderr)
	}

	// The fault ends: the same config works, with nothing left over.
	p.hang.Store(false)
	_, user, _ := e.issue("r")
	if n := e.lessorRoles(user); n != 1 {
		t.Fatalf("issued role %s: %d in pg_roles", user, n)
	}
}

// The server stops (connection refused) and comes back: issuing fails at
// once and records nothing; a revocation that fails is recorded and done
// by the next reap once the server is back, with no operator action.
func TestFaultServerStopped(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	p := newFaultProxy(t, e.serverAddr())
	e.configure(p.addr, plainCreation)
	lease, user, _ := e.issue("r")

	p.down()
	r := e.fails(2, `^lessor: error: read database/creds/r: connection "pg": connect to `+regexp.QuoteMeta(p.addr)+`: connection refused\n$`, "read", "database/creds/r")
	within(t, "issue against a stopped server", r, 2*time.Second)
	if n := e.leaseCount(); n != 1 {
		t.Fatalf("%d leases recorded after a failed issue, want the 1 issued before", n)
	}

	r = e.fails(2, `connection refused`, "lease", "revoke", lease)
	within(t, "revoke against a stopped server", r, 2*time.Second)
	if n := e.lessorRoles(user); n != 1 {
		t.Fatalf("role %s: %d in pg_roles, want it still there", user, n)
	}
	if n := e.leaseCount(); n != 1 {
		t.Fatalf("failed revocation: %d leases recorded, want 1 to retry", n)
	}

	p.up()
	// The retry is due after the backoff (10 s and jitter); move lessor's
	// clock past it rather than sleep.
	e.env[testOnlyClockSkewEnv] = "1m"
	e.must("reap")
	if n := e.lessorRoles(user); n != 0 {
		t.Fatalf("role %s still in pg_roles after the server came back and reap ran", user)
	}
	e.noLeases()
}

// The connection is cut in the middle of a reap, at several points: reap
// reports it and exits 3, no role ever outlives its record, and the next
// reap after the fault finishes the work.
func TestFaultRestartMidReap(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	p := newFaultProxy(t, e.serverAddr())
	e.configure(p.addr, plainCreation)
	const n = 12
	for range n {
		e.issue("r")
	}
	prefix := e.rolePrefix()
	if got := e.lessorRoles(prefix); got != n {
		t.Fatalf("%d roles issued, want %d", got, n)
	}
	skew := 2 * time.Hour
	for _, cut := range []int64{200, 1200, 2500, 3000, 3500, 4000, 4500, 5000} {
		p.cutAfter.Store(cut)
		e.env[testOnlyClockSkewEnv] = skew.String()
		r := e.run("reap")
		if r.code != 0 && r.code != 3 {
			t.Fatalf("reap cut after %d bytes: exit %d: %s", cut, r.code, r.stderr)
		}
		if r.code == 3 && !strings.Contains(r.stderr, "will be retried") && !strings.Contains(r.stderr, "waiting for retry") {
			t.Fatalf("reap cut after %d bytes: stderr %q", cut, r.stderr)
		}
		roles, leases := e.lessorRoles(prefix), e.leaseCount()
		t.Logf("cut after %d client bytes: exit %d in %s, %d roles and %d leases left", cut, r.code, r.took.Round(time.Millisecond), roles, leases)
		if roles > leases {
			t.Fatalf("cut after %d bytes: %d roles but only %d leases: a role lost its record", cut, roles, leases)
		}
		skew += 2 * time.Hour // past any backoff the failures set
	}
	p.cutAfter.Store(0)
	e.env[testOnlyClockSkewEnv] = skew.String()
	e.must("reap")
	if roles := e.lessorRoles(prefix); roles != 0 {
		t.Fatalf("%d roles left after the fault ended", roles)
	}
	e.noLeases()
}

// A statement that runs past statement_timeout (10 s) is cancelled by the
// server; the creation transaction is rolled back and the lease discarded.
func TestFaultStatementTimeout(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	e.configure(e.serverAddr(), plainCreation+"\nSELECT pg_sleep(30);")
	r := e.fails(2, `canceling statement due to statement timeout`, "read", "database/creds/r")
	within(t, "statement past statement_timeout", r, 13*time.Second)
	if r.took < 9*time.Second {
		t.Fatalf("statement cancelled after %s, before the 10 s timeout", r.took)
	}
	if n := e.lessorRoles(e.rolePrefix()); n != 0 {
		t.Fatalf("%d roles left by a cancelled creation", n)
	}
	e.noLeases()
}

// The admin password changed outside lessor, and the admin role's
// connections exhausted: each a clear error at once, nothing recorded,
// and issuing works again when the fault is undone.
func TestFaultAdminRole(t *testing.T) {
	t.Parallel()
	// Not a superuser: CONNECTION LIMIT does not bind superusers.
	e := newFaultEnv(t, "CREATEROLE")
	e.configure(e.serverAddr(), plainCreation)
	e.issue("r")
	adm := pgx.Identifier{e.admin}.Sanitize()

	// The password is rotated outside lessor, then put back.
	e.sql("ALTER ROLE " + adm + " PASSWORD 'rotated-elsewhere-pw'")
	r := e.fails(2, `^lessor: error: read database/creds/r: connection "pg": connect to `+regexp.QuoteMeta(e.serverAddr())+`: password authentication failed for user "`+e.admin+`" \(SQLSTATE 28P01\)\n`, "read", "database/creds/r")
	within(t, "issue with a rotated admin password", r, 2*time.Second)
	if strings.Contains(r.stderr, e.adminPW) || strings.Contains(r.stderr, "rotated-elsewhere-pw") {
		t.Fatalf("error shows a password: %s", r.stderr)
	}
	if n := e.leaseCount(); n != 1 {
		t.Fatalf("%d leases, want the 1 issued before", n)
	}
	e.sql("ALTER ROLE " + adm + " PASSWORD '" + e.adminPW + "'")
	e.issue("r")

	// The admin role's connections are exhausted, then freed.
	e.sql("ALTER ROLE " + adm + " CONNECTION LIMIT 0")
	r = e.fails(2, `^lessor: error: read database/creds/r: connection "pg": connect to `+regexp.QuoteMeta(e.serverAddr())+`: too many connections for role "`+e.admin+`" \(SQLSTATE 53300\)\n`, "read", "database/creds/r")
	within(t, "issue with the admin's connections exhausted", r, 2*time.Second)
	if n := e.leaseCount(); n != 2 {
		t.Fatalf("%d leases, want the 2 issued before", n)
	}
	e.sql("ALTER ROLE " + adm + " CONNECTION LIMIT -1")
	e.issue("r")
}

// mountTmpfs mounts a small tmpfs under the test's temp dir, as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "lessor-test", dir).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

// policyBody is a valid policy of about n bytes.
func policyBody(name string, n int) string {
	return "# " + strings.Repeat("x", n) + "\npath \"secret/" + name + "\" {\n  capabilities = [\"read\"]\n}\n"
}

// fillWithPolicies writes policies p00, p01… from the file body until a
// write fails (the store's disk is full), and returns the names written
// and the failed write.
func (c *cli) fillWithPolicies(body string) ([]string, cliResult) {
	c.t.Helper()
	var written []string
	for i := range 40 {
		name := fmt.Sprintf("p%02d", i)
		r := c.run("policy", "write", name, body)
		if r.code != 0 {
			return written, r
		}
		written = append(written, name)
	}
	c.t.Fatal("40 policies of 60 kB fitted in the store's tmpfs")
	return nil, cliResult{}
}

// The disk fills while committing: the write fails with the system's
// reason, the store still opens with every earlier write and none of the
// failed one, and writing works again once there is room.
func TestFaultStoreDiskFull(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "512k")
	c := newCLI(t)
	c.env["LESSOR_STORE"] = filepath.Join(dir, "lessor.db")
	c.initStore()
	body := c.writeFile("p.hcl", policyBody("p", 60000))
	written, full := c.fillWithPolicies(body)
	t.Logf("disk full after %d policies: exit %d in %s: %s", len(written), full.code, full.took.Round(time.Millisecond), strings.TrimSpace(full.stderr))
	if full.code != 1 && full.code != 2 || !strings.Contains(full.stderr, "no space left on device") {
		t.Fatalf("disk full: exit %d, stderr %q", full.code, full.stderr)
	}
	want := strings.Join(append([]string{"default"}, written...), "\n") + "\nroot\n"
	if got := c.must("policy", "list"); got != want {
		t.Fatalf("after disk full, policy list:\n%s\nwant:\n%s", got, want)
	}
	remount(t, dir, "size=8m")
	c.must("policy", "write", "after", body)
	if got := c.must("policy", "read", "after"); got != policyBody("p", 60000) {
		t.Fatalf("policy written after the disk was grown reads back as %d bytes", len(got))
	}
}

// A store on a file system that turned read-only: writes fail with the
// reason and the store's name; the file is unchanged.
func TestFaultStoreReadOnly(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "4m")
	c := newCLI(t)
	store := filepath.Join(dir, "lessor.db")
	c.env["LESSOR_STORE"] = store
	c.initStore()
	c.must("policy", "write", "before", c.writeFile("p.hcl", policyBody("b", 10)))
	before, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	remount(t, dir, "ro")
	r := c.run("policy", "write", "after", filepath.Join(c.env["HOME"], "p.hcl"))
	t.Logf("read-only: write exit %d in %s: %s", r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	if r.code != 1 && r.code != 2 || !strings.Contains(r.stderr, store) || !strings.Contains(r.stderr, "read-only file system") || strings.Contains(r.stderr, "damaged") {
		t.Fatalf("write to a read-only store: exit %d, stderr %q", r.code, r.stderr)
	}
	after, err := os.ReadFile(store)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("read-only store changed (%v)", err)
	}
	remount(t, dir, "rw")
	if got := c.must("policy", "list"); got != "before\ndefault\nroot\n" {
		t.Fatalf("policy list after the file system is writable again:\n%s", got)
	}
}

// A store file cut short at many lengths: each command either gives the
// same output as on the whole file (the cut fell in unused space at the
// end) or fails naming the store; never a different answer.
func TestFaultStoreTruncated(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	store := filepath.Join(c.env["HOME"], "lessor.db")
	c.env["LESSOR_STORE"] = store
	c.initStore()
	for i := range 20 {
		c.must("policy", "write", fmt.Sprintf("p%02d", i), c.writeFile("p.hcl", policyBody(strconv.Itoa(i), 3000)))
	}
	whole, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	wantList := c.must("policy", "list")
	wantRead := c.must("policy", "read", "p19")
	wantToken := withoutRequestID(c.must("token", "lookup", "-format=json"))
	failed, same := 0, 0
	for _, size := range truncationSizes(len(whole), storePageSize(t, whole)) {
		if err := os.WriteFile(store, whole[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []struct {
			args []string
			want string
		}{
			{[]string{"policy", "list"}, wantList},
			{[]string{"policy", "read", "p19"}, wantRead},
			{[]string{"token", "lookup", "-format=json"}, wantToken},
		} {
			r := c.run(cmd.args...)
			r.stdout = withoutRequestID(r.stdout)
			switch {
			case r.code == 0 && r.stdout == cmd.want:
				same++
			case r.code == 0:
				t.Fatalf("store cut to %d of %d bytes: %v gave a different answer:\n%s", size, len(whole), cmd.args, r.stdout)
			case r.code != 1 || !strings.Contains(r.stderr, store):
				t.Fatalf("store cut to %d bytes: %v: exit %d, stderr %q", size, cmd.args, r.code, r.stderr)
			default:
				failed++
			}
		}
	}
	t.Logf("truncated store (%d bytes) at %d lengths: %d commands refused, %d answered as before", len(whole), len(truncationSizes(len(whole), storePageSize(t, whole))), failed, same)
	if failed == 0 {
		t.Fatal("no truncation was noticed")
	}
	// Writing to a cut store must not "repair" it into a different one.
	if err := os.WriteFile(store, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.run("policy", "write", "new", filepath.Join(c.env["HOME"], "p.hcl")); r.code == 0 {
		t.Fatalf("a write to a store cut in half succeeded: %s", r.stdout)
	}
}

var requestIDLine = regexp.MustCompile(`(?m)^  "request_id": .*\n`)

// withoutRequestID drops the one field that differs between two runs.
func withoutRequestID(s string) string { return requestIDLine.ReplaceAllString(s, "") }

// storePageSize reads the page size from a store file's first meta page
// (bbolt writes it in the machine's byte order, little-endian here).
func storePageSize(t *testing.T, whole []byte) int {
	t.Helper()
	if len(whole) < 28 {
		t.Fatalf("store file is %d bytes", len(whole))
	}
	ps := int(binary.LittleEndian.Uint32(whole[24:]))
	if ps < 1024 || ps&(ps-1) != 0 {
		t.Fatalf("store file gives page size %d", ps)
	}
	return ps
}

// truncationSizes: empty, inside the first page, each page boundary and
// the middle of each page, and one byte short.
func truncationSizes(n, ps int) []int {
	sizes := []int{0, 1, 100, ps - 1}
	for off := ps; off < n; off += ps {
		sizes = append(sizes, off, off+ps/2)
	}
	sizes = append(sizes, n-1)
	out := sizes[:0]
	for _, s := range sizes {
		if s < n {
			out = append(out, s)
		}
	}
	return out
}

// One byte flipped in each page of a small store in turn (in the page
// header, the middle, and the last byte): each command either answers
// exactly as before or fails naming the store or saying it is damaged;
// never a different answer.
// (pkg/barrier's TestFlippedBytes flips every byte at the library level.)
func TestFaultStoreFlippedByte(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	store := filepath.Join(c.env["HOME"], "lessor.db")
	c.env["LESSOR_STORE"] = store
	c.initStore()
	for i := range 8 {
		c.must("policy", "write", fmt.Sprintf("p%02d", i), c.writeFile("p.hcl", policyBody(strconv.Itoa(i), 1500)))
	}
	whole, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	cmds := [][]string{{"policy", "list"}, {"policy", "read", "p07"}, {"token", "lookup", "-format=json"}}
	want := make([]string, len(cmds))
	for i, args := range cmds {
		want[i] = withoutRequestID(c.must(args...))
	}
	failed, same := 0, 0
	ps := storePageSize(t, whole)
	for page := 0; page*ps < len(whole); page++ {
		for _, off := range []int{page*ps + 10, page*ps + ps/2, page*ps + ps - 1} {
			damaged := bytes.Clone(whole)
			damaged[off] ^= 0x20
			if err := os.WriteFile(store, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			for i, args := range cmds {
				r := c.run(args...)
				switch {
				case r.code == 0 && withoutRequestID(r.stdout) == want[i]:
					same++
				case r.code == 0:
					t.Errorf("byte %d flipped: %v gave a different answer:\n%s", off, args, r.stdout)
				case r.code != 1 && r.code != 2 || strings.Contains(r.stderr, "panic") ||
					!strings.Contains(r.stderr, store) && !strings.Contains(r.stderr, "damaged"):
					t.Errorf("byte %d flipped: %v: exit %d, stderr %q", off, args, r.code, r.stderr)
				default:
					failed++
				}
			}
		}
	}
	t.Logf("flipped bytes in %d pages: %d commands refused, %d answered as before", len(whole)/ps, failed, same)
	if failed == 0 {
		t.Fatal("no flipped byte was noticed")
	}
}

// An older copy of the store restored over the current one: it opens (it
// is a valid store; nothing local can tell it is old), and the roles issued
// after the copy was taken, of which it has no record, are found by
// `reap -orphans` and revoked once their recorded expiry has passed.
func TestFaultStoreOlderCopyRestored(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	e.configure(e.serverAddr(), plainCreation)
	store := filepath.Join(e.env["HOME"], ".local", "share", "lessor", "lessor.db")
	_, kept, _ := e.issue("r")
	old, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	_, lost, _ := e.issue("r")
	if err := os.WriteFile(store, old, 0o600); err != nil {
		t.Fatal(err)
	}
	// The store refuses an older copy of itself until the operator says
	// the restore was on purpose.
	if r := e.run("reap", "-orphans", "-dry-run"); r.code != 1 || !strings.Contains(r.stderr, "store was rolled back") {
		t.Fatalf("reap on a restored older copy: exit %d: %s", r.code, r.stderr)
	}
	e.must("operator", "verify", "-accept-rollback")

	out := e.must("reap", "-orphans", "-dry-run")
	if !regexp.MustCompile(`(?m)^.*`+regexp.QuoteMeta(lost)+`.*orphan, not yet expired`).MatchString(out) || strings.Contains(out, kept) {
		t.Fatalf("reap -orphans -dry-run after restoring an older copy:\n%s", out)
	}
	t.Logf("reap -orphans -dry-run after the restore:\n%s", out)
	if e.lessorRoles(lost) != 1 {
		t.Fatal("a dry run revoked the orphan")
	}

	e.env[testOnlyClockSkewEnv] = "2h"
	e.must("reap", "-orphans")
	if n := e.lessorRoles(e.rolePrefix()); n != 0 {
		t.Fatalf("%d roles left after reap -orphans past their expiry", n)
	}
	e.noLeases()
}

// The reply to the statement that does the work is lost: the server
// committed, lessor cannot know. Issuing: the role exists with its lease's
// mark, but nobody holds its password, so the issuer gives the lease up
// (due now) and the next reap revokes it rather than adopting it. Revoking: the roles
// are gone, their leases stay and are retried, and DROP ROLE IF EXISTS
// makes the retry succeed. In neither case does a role outlive its record.
func TestFaultLostCommitReply(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "SUPERUSER")
	p := newFaultProxy(t, e.serverAddr())
	e.configure(p.addr, plainCreation)
	prefix := e.rolePrefix()

	commit := "commit"
	p.loseReplyTo.Store(&commit)
	r := e.run("read", "database/creds/r")
	p.loseReplyTo.Store(nil)
	if r.code != 2 || p.lost.Load() != 1 {
		t.Fatalf("issue with the COMMIT reply lost: exit %d, %d replies lost: %s", r.code, p.lost.Load(), r.stderr)
	}
	within(t, "issue with the COMMIT reply lost", r, 12*time.Second)
	t.Logf("issue with the COMMIT reply lost: %s", strings.TrimSpace(r.stderr))
	if roles, leases := e.lessorRoles(prefix), e.leaseCount(); roles != 1 || leases != 1 {
		t.Fatalf("after a lost COMMIT reply: %d roles, %d leases; want the role and its pending lease", roles, leases)
	}
	e.must("reap") // at once: not after the pending grace, and not adopted
	if roles, leases := e.lessorRoles(prefix), e.leaseCount(); roles != 0 || leases != 0 {
		t.Fatalf("reap after a lost COMMIT reply: %d roles, %d leases left", roles, leases)
	}

	delete(e.env, testOnlyClockSkewEnv)
	for range 5 {
		e.issue("r")
	}
	drop := "drop role"
	p.loseReplyTo.Store(&drop)
	e.env[testOnlyClockSkewEnv] = "2h"
	r = e.run("reap")
	p.loseReplyTo.Store(nil)
	if r.code != 3 || p.lost.Load() != 2 {
		t.Fatalf("reap with the DROP ROLE reply lost: exit %d, %d replies lost: %s", r.code, p.lost.Load(), r.stderr)
	}
	t.Logf("reap with the DROP ROLE reply lost: %s", strings.TrimSpace(r.stderr))
	if roles, leases := e.lessorRoles(prefix), e.leaseCount(); roles != 0 || leases != 5 {
		t.Fatalf("after a lost DROP ROLE reply: %d roles, %d leases; want 0 roles and 5 leases to retry", roles, leases)
	}
	e.env[testOnlyClockSkewEnv] = "4h"
	e.must("reap")
	e.noLeases()
}

// rekey and rotate -reencrypt write a whole new copy of the store before
// renaming it over the old one. When the disk has no room for that copy,
// each fails with the system's reason, leaves no partial copy behind, and
// the store still opens with the same key and holds everything it held.
func TestFaultStoreRewriteDiskFull(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "1m")
	c := newCLI(t)
	c.env["LESSOR_STORE"] = filepath.Join(dir, "lessor.db")
	c.initStore()
	body := c.writeFile("p.hcl", policyBody("p", 60000))
	written, _ := c.fillWithPolicies(body)
	if len(written) < 2 {
		t.Fatalf("only %d policies fitted in a 1 MiB tmpfs", len(written))
	}
	t.Logf("disk full after %d policies", len(written))
	// Leave room for small writes but not for a second copy of the store.
	c.must("policy", "delete", written[len(written)-1])
	written = written[:len(written)-1]
	key, err := os.ReadFile(c.env["HOME"] + "/.config/lessor/unseal.key")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(append([]string{"default"}, written...), "\n") + "\nroot\n"
	for _, args := range [][]string{{"operator", "rekey"}, {"operator", "rotate", "-reencrypt"}} {
		r := c.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") {
			t.Fatalf("lessor %s on a full disk: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "lessor.db" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("after a failed %s the store's directory holds %q, want only lessor.db", strings.Join(args, " "), names)
		}
		if got, _ := os.ReadFile(c.env["HOME"] + "/.config/lessor/unseal.key"); !bytes.Equal(got, key) {
			t.Errorf("a failed %s changed the key file", strings.Join(args, " "))
		}
		if m, _ := filepath.Glob(c.env["HOME"] + "/.config/lessor/unseal.key?*"); len(m) > 0 {
			t.Errorf("a failed %s left %q beside the key file", strings.Join(args, " "), m)
		}
		if got := c.must("policy", "list"); got != want {
			t.Fatalf("after a failed %s, policy list:\n%s\nwant:\n%s", strings.Join(args, " "), got, want)
		}
	}
	c.must("operator", "verify")
	remount(t, dir, "size=16m")
	c.must("operator", "rotate", "-reencrypt")
	c.must("operator", "rekey")
	if got := c.must("policy", "list"); got != want {
		t.Fatalf("after rekey with room, policy list:\n%s\nwant:\n%s", got, want)
	}
}
