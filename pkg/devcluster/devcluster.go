// Package devcluster starts and stops throwaway PostgreSQL clusters from the
// local initdb and pg_ctl, for `lessor dev -postgres` and for tests.
//
// A cluster promises:
//   - it listens on 127.0.0.1 only, on a free port, with no Unix socket;
//   - pg_hba.conf accepts scram-sha-256 over TCP from 127.0.0.1 and nothing
//     else, so a successful login proves the password;
//   - its superuser has a random password, known to the caller only (it is
//     handed to initdb in a 0600 file that is removed at once, never in
//     argv);
//   - everything it owns (data directory, log) lives in one directory, and
//     Stop leaves neither a server process nor that directory behind;
//   - initdb, pg_ctl and the server get an environment of their own (PATH,
//     TZ), none of the caller's: no LESSOR_* or PG* variable reaches them,
//     nor /proc/<postmaster>/environ.
//
// initdb and postgres refuse to run as root, so a root caller runs them as
// another OS user (default "postgres"). That user is not trusted with
// root's power: the cluster's directory stays the caller's (0711, so the
// server can pass through it), and only the data directory and the log
// inside it are handed over. Root never writes through a path that user
// can redirect, never runs a binary named in a file, and Stop runs pg_ctl
// as the data directory's owner, never as root.
//
// The cluster is tuned for speed, not durability (fsync off): it exists to
// be thrown away.
package devcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries means initdb and pg_ctl were found neither on $PATH nor
// under /usr/lib/postgresql/*/bin.
var ErrNoBinaries = errors.New("initdb and pg_ctl not found on $PATH or under /usr/lib/postgresql/*/bin")

// Options tune Start. The zero value is usable.
type Options struct {
	// Parent is the directory in which the cluster's own directory is
	// created. Default: os.TempDir(), or /tmp when the server's OS user
	// cannot reach os.TempDir().
	Parent string
	// Prefix starts the name of the cluster's directory. Default
	// "lessor-pg-".
	Prefix string
	// Superuser is the name of the cluster's superuser. Default "postgres".
	Superuser string
	// RunAs is the OS user that runs the server when the caller is root.
	// Default "postgres". Ignored for other callers, who run it themselves.
	RunAs string
	// MaxConnections sets max_connections; 0 keeps PostgreSQL's default.
	MaxConnections int
	// Rand is the source of the superuser password. Default crypto/rand.
	Rand io.Reader
	// Replication lets replicas (StartReplica) stream from the cluster:
	// pg_hba.conf also accepts replication connections, with a password,
	// from 127.0.0.1.
	Replication bool
	// SynchronousStandby names a replica (its StartReplica name) that
	// every commit waits for (synchronous_standby_names, with
	// synchronous_commit on): an acknowledged commit survives the
	// primary's loss. Commits hang until that replica is attached.
	SynchronousStandby string
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	Dir     string // the one directory holding everything below; the caller's
	DataDir string
	LogFile string
	BinDir  string // where initdb and pg_ctl were found
	Host    string // always 127.0.0.1
	Port    int
	User    string // the superuser
	// Password is the superuser's password. It is not stored anywhere on
	// disk by this package.
	Password string
	// OSUser names the OS user the server runs as.
	OSUser string

	cred *syscall.Credential // non-nil when the server runs as another OS user
	opts Options
}

// FindBinDir returns a directory holding initdb and pg_ctl: the one on
// $PATH when both are there together (the one their links lead to, if
// both lead to one), else the newest
// /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if q, err := exec.LookPath("pg_ctl"); err == nil && filepath.Dir(p) == filepath.Dir(q) {
			// Links on $PATH (/usr/local/bin/initdb -> …/15/bin/initdb):
			// the directory they lead to holds the other tools
			// (pg_basebackup) of the same version.
			rp, err1 := filepath.EvalSymlinks(p)
			rq, err2 := filepath.EvalSymlinks(q)
			if err1 == nil && err2 == nil && filepath.Dir(rp) == filepath.Dir(rq) {
				return filepath.Dir(rp), nil
			}
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// serverCredential returns the credential to run the server with: nil when
// the caller is not root, else runAs's.
func serverCredential(runAs string) (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return nil, name, nil
	}
	if runAs == "" {
		runAs = "postgres"
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return nil, "", fmt.Errorf("running as root, and PostgreSQL refuses to; no OS user %q to run it as: %w", runAs, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, "", fmt.Errorf("OS user %q (uid %s) cannot run PostgreSQL", runAs, u.Uid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, runAs, nil
}

// reachable reports whether uid/gid may traverse every directory from the
// root down to dir, so that a server running as that user finds its data.
func reachable(dir string, uid, gid uint32) bool {
	dir = filepath.Clean(dir)
	for {
		st, err := os.Stat(dir)
		if err != nil {
			return false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		perm := st.Mode().Perm()
		switch {
		case sys.Uid == uid:
			if perm&0o100 == 0 {
				return false
			}
		case sys.Gid == gid:
			if perm&0o010 == 0 {
				return false
			}
		case perm&0o001 == 0:
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// Start creates and starts a cluster. On failure nothing is left behind.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, osUser, err := serverCredential(o.RunAs)
	if err != nil {
		return nil, err
	}
	parent := o.Parent
	if parent == "" {
		parent = os.TempDir()
		if cred != nil && !reachable(parent, cred.Uid, cred.Gid) {
			// A private $TMPDIR (0700, root's) would hide the data
			// directory from the server.
			parent = "/tmp"
		}
	}
	if cred != nil && !reachable(parent, cred.Uid, cred.Gid) {
		return nil, fmt.Errorf("start cluster: OS user %s cannot reach %s", osUser, parent)
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = "lessor-pg-"
	}
	// MkdirTemp: a fresh name, made here, 0700; nobody else's.
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c := &Cluster{
		Dir:     dir,
		DataDir: filepath.Join(dir, "data"),
		LogFile: filepath.Join(dir, "server.log"),
		BinDir:  bin,
		Host:    "127.0.0.1",
		User:    o.Superuser,
		OSUser:  osUser,
		cred:    cred,
		opts:    o,
	}
	if c.User == "" {
		c.User = "postgres"
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		// The server's user may pass through dir, not list or change it.
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
	}
	// initdb fills an empty data directory owned by the user it runs as.
	if err := os.Mkdir(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	if cred != nil {
		if err := os.Chown(c.DataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("start cluster: hand %s to %s: %w", c.DataDir, osUser, err)
		}
	}
	if err := c.createFile(c.LogFile, ""); err != nil {
		return nil, err
	}
	if c.Password, err = randomPassword(o.Rand); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx, ""); err != nil {
		return nil, err
	}
	return c, nil
}

func randomPassword(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("generate superuser password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	// The password reaches initdb in a file, never in argv.
	pwFile := filepath.Join(c.Dir, "pwfile")
	if err := c.createFile(pwFile, c.Password+"\n"); err != nil {
		return err
	}
	defer os.Remove(pwFile)
	return run(ctx, c.Dir, c.cred, filepath.Join(c.BinDir, "initdb"), "-D", c.DataDir, "-U", c.User,
		"--pwfile="+pwFile, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
}

// start configures and starts the server on a free port; extra is more
// configuration (a replica's primary_conninfo).
func (c *Cluster) start(ctx context.Context, extra string) error {
	// No trust, no socket: only a password over TCP from 127.0.0.1.
	hba := "host all all 127.0.0.1/32 scram-sha-256\n"
	if c.opts.Replication {
		hba += "host replication all 127.0.0.1/32 scram-sha-256\n"
	}
	if err := c.rewriteDataFile("pg_hba.conf", hba); err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
		conf := fmt.Sprintf(`listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%%m [%%p] %%q%%u@%%d '
`, port)
		if c.opts.MaxConnections > 0 {
			conf += fmt.Sprintf("max_connections = %d\n", c.opts.MaxConnections)
		}
		if c.opts.Replication {
			conf += "wal_level = replica\nmax_wal_senders = 10\n"
		}
		if c.opts.SynchronousStandby != "" {
			conf += fmt.Sprintf("synchronous_commit = on\nsynchronous_standby_names = '%s'\n", c.opts.SynchronousStandby)
		}
		conf += extra
		if err := c.rewriteDataFile("postgresql.auto.conf", conf); err != nil {
			return err
		}
		lastErr = run(ctx, c.Dir, c.cred, filepath.Join(c.BinDir, "pg_ctl"), "start", "-w", "-t", "60", "-D", c.DataDir, "-l", c.LogFile)
		if lastErr == nil {
			c.Port = port
			return nil
		}
		// Most likely another process took the port between freePort and
		// the server's bind; try another.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if b, err := readFileNoFollow(c.LogFile, 64<<10); err == nil {
		lastErr = fmt.Errorf("%w\nserver log:\n%s", lastErr, b)
	}
	return lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// createFile creates a new 0600 file in Dir, owned by the server's OS user.
// Dir is the caller's, so nothing there can be a planted symlink; O_EXCL
// and O_NOFOLLOW say so anyway.
func (c *Cluster) createFile(name, content string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	if c.cred != nil {
		if err := f.Chown(int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			f.Close()
			return fmt.Errorf("start cluster: %w", err)
		}
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	return nil
}

// rewriteDataFile replaces the content of a file initdb made in the data
// directory. The server's OS user owns that directory and may have swapped
// the file for a symlink or a link to a file of root's, so the file is
// opened without following a symlink and written only if it is a regular
// file of that user's.
func (c *Cluster) rewriteDataFile(name, content string) error {
	p := filepath.Join(c.DataDir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); !ok || !fi.Mode().IsRegular() || sys.Uid != c.serverUID() {
		return fmt.Errorf("start cluster: %s is not a regular file of the server's OS user %s", p, c.OSUser)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	return f.Close()
}

func (c *Cluster) serverUID() uint32 {
	if c.cred != nil {
		return c.cred.Uid
	}
	return uint32(os.Geteuid())
}

// readFileNoFollow reads up to max bytes of a regular file, refusing a
// symlink, and without blocking on a FIFO.
func readFileNoFollow(name string, max int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// serverEnv is the whole environment of initdb, pg_ctl and the server. The
// caller's may hold secrets (LESSOR_*, PGPASSWORD) that the server's OS user
// could read in /proc/<pid>/environ, and PG* variables that would change
// what the tools do.
func serverEnv() []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// run runs a PostgreSQL tool as cred (nil: as the caller) and returns its
// output in the error when it fails.
func run(ctx context.Context, dir string, cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A server started by pg_ctl must not share the caller's process group,
	// so a Ctrl-C in the caller's terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// URL returns the superuser's URL into database db, with sslmode=disable.
func (c *Cluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.User, c.Password),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop stops the cluster and removes its directory.
func (c *Cluster) Stop() error { return Stop(c.Dir) }

// Stop stops the cluster whose directory (Cluster.Dir) is dir, waiting
// until the server has exited, and removes dir. A dir that does not exist
// is already stopped. Another process (`lessor dev -stop`) may call it with
// a dir it read from a file, so Stop acts only on what it verifies: dir is
// a directory of the caller's that others cannot write to, its data
// directory is a directory (neither is a symlink) owned by the caller or,
// for root, by the server's OS user; pg_ctl is the one FindBinDir finds,
// run as the data directory's owner, never as root.
func Stop(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	if err := checkClusterDir(dir, fi); err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	data := filepath.Join(dir, "data")
	switch fi, err := os.Lstat(data); {
	case errors.Is(err, os.ErrNotExist):
		// initdb never ran: no server.
	case err != nil:
		return fmt.Errorf("stop cluster: %w", err)
	default:
		cred, err := dataOwner(data, fi)
		if err != nil {
			return fmt.Errorf("stop cluster: %w", err)
		}
		if _, err := os.Lstat(filepath.Join(data, "postmaster.pid")); err == nil {
			if err := stopServer(dir, data, cred); err != nil {
				return fmt.Errorf("stop cluster in %s: %w", dir, err)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	return nil
}

// checkClusterDir verifies that dir is a directory of the caller's that
// no one else may list or write to (0711 lets the server's user through).
func checkClusterDir(dir string, fi os.FileInfo) error {
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; not following it", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", dir)
	}
	if int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by you", dir, sys.Uid)
	}
	if fi.Mode().Perm()&0o066 != 0 {
		return fmt.Errorf("%s is open to other users (mode %04o)", dir, fi.Mode().Perm())
	}
	return nil
}

// dataOwner returns the credential to run pg_ctl on data with: nil for
// the caller itself, else the data directory's owner when the caller is
// root. A root-owned data directory never held a running server (the
// server refuses root), so it gets nil too, and stopServer runs nothing.
func dataOwner(data string, fi os.FileInfo) (*syscall.Credential, error) {
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symlink; not following it", data)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", data)
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no owner", data)
	}
	euid := os.Geteuid()
	switch {
	case int(sys.Uid) == euid:
		return nil, nil
	case euid == 0:
		return &syscall.Credential{Uid: sys.Uid, Gid: sys.Gid}, nil
	}
	return nil, fmt.Errorf("%s is owned by uid %d, not by you", data, sys.Uid)
}

func stopServer(dir, data string, cred *syscall.Credential) error {
	if cred == nil && os.Geteuid() == 0 {
		if serverRunning(data) {
			return fmt.Errorf("a server runs on %s, which root owns; not stopping it", data)
		}
		return nil
	}
	// The pg_ctl found as Start found it, never one named in a file that
	// the server's OS user could write.
	bin, err := FindBinDir()
	if err != nil {
		return err
	}
	// immediate: the data is about to be deleted, so there is nothing to
	// checkpoint; -w waits until postmaster.pid is gone, which the
	// postmaster removes only after every backend has exited.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = run(ctx, dir, cred, filepath.Join(bin, "pg_ctl"), "stop", "-m", "immediate", "-w", "-t", "30", "-D", data)
	if err != nil && !serverRunning(data) {
		// A stale postmaster.pid (the machine rebooted): nothing to stop.
		return nil
	}
	return err
}

// serverRunning reports whether the postmaster named in data's
// postmaster.pid is alive.
func serverRunning(data string) bool {
	b, err := readFileNoFollow(filepath.Join(data, "postmaster.pid"), 64)
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
