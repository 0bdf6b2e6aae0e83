package devcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func startOrSkip(t *testing.T, o Options) *Cluster {
	t.Helper()
	if _, err := FindBinDir(); errors.Is(err, ErrNoBinaries) {
		if os.Getenv("LESSOR_TEST_REQUIRE_PG") == "1" {
			t.Fatal(err)
		}
		t.Skipf("devcluster: NO POSTGRESQL BINARIES, not run: %v", err)
	}
	start := time.Now()
	c, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster started in %v", time.Since(start))
	t.Cleanup(func() { c.Stop() })
	return c
}

// The cluster takes the superuser's password over TCP and refuses a wrong
// one; Stop leaves no server process and no directory.
func TestStartLoginStop(t *testing.T) {
	c := startOrSkip(t, Options{Superuser: "dev_admin"})
	ctx := context.Background()

	if c.Host != "127.0.0.1" || c.Port == 0 || c.User != "dev_admin" || len(c.Password) != 32 {
		t.Fatalf("cluster = %+v", c)
	}
	if !strings.HasPrefix(filepath.Base(c.Dir), "lessor-pg-") || c.DataDir != filepath.Join(c.Dir, "data") {
		t.Errorf("Dir = %s, DataDir = %s", c.Dir, c.DataDir)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("superuser login: %v", err)
	}
	var hba, listen, enc string
	if err := conn.QueryRow(ctx, `SELECT current_setting('listen_addresses'), current_setting('password_encryption'),
		(SELECT string_agg(type || ' ' || address || ' ' || auth_method, ',') FROM pg_hba_file_rules)`).Scan(&listen, &enc, &hba); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if listen != "127.0.0.1" || enc != "scram-sha-256" || hba != "host 127.0.0.1 scram-sha-256" {
		t.Errorf("listen_addresses=%q password_encryption=%q hba=%q", listen, enc, hba)
	}
	wrong := strings.Replace(c.URL("postgres"), c.Password, "not-"+c.Password, 1)
	_, err = pgx.Connect(ctx, wrong)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "pwfile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the password file is still there: %v", err)
	}
	if pids := serverPIDs(t, c.DataDir); len(pids) == 0 {
		t.Fatal("no process found running with the data directory")
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := serverPIDs(t, c.DataDir); len(pids) != 0 {
		t.Errorf("processes left running on %s: %v", c.DataDir, pids)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", c.Dir, err)
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Error("the server still accepts connections after Stop")
	}
	// Stopping again is a no-op.
	if err := Stop(c.Dir); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A dead server's stale postmaster.pid does not stop Stop from cleaning up.
func TestStopStalePID(t *testing.T) {
	dir := t.TempDir()
	// A cluster's directory is private, as Start makes it; Stop refuses
	// one that others may write to.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// PID 2^22+1 is above Linux's pid_max ceiling, so no process has it.
	if err := os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte("4194305\n"+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	if err := Stop(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists", dir)
	}
}

// Stop acts only on what it verifies: not a directory others may write to,
// not a data directory that is a symlink (its target keeps its files).
func TestStopRefuses(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(open, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Stop(open); err == nil || err.Error() != "stop cluster: "+open+" is open to other users (mode 0777)" {
		t.Errorf("Stop(0777 dir) = %v", err)
	}

	dir, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	if err := Stop(dir); err == nil || err.Error() != "stop cluster: "+filepath.Join(dir, "data")+" is a symlink; not following it" {
		t.Errorf("Stop(symlinked data) = %v", err)
	}
	for _, p := range []string{filepath.Join(open, "data"), filepath.Join(dir, "data"), filepath.Join(elsewhere, "postmaster.pid")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestReachable(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	open := filepath.Join(dir, "open")
	for p, mode := range map[string]os.FileMode{private: 0o700, open: 0o711} {
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const stranger = 4242
	if reachable(private, stranger, stranger) {
		t.Error("a 0700 directory is reachable by a stranger")
	}
	if !reachable(open, stranger, stranger) && reachable(filepath.Dir(dir), stranger, stranger) {
		t.Error("a 0711 directory under a reachable one is not reachable")
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if !reachable(private, uid, gid) {
		t.Error("the owner cannot reach its own 0700 directory")
	}
}

// serverPIDs lists processes whose command line names the data directory.
func serverPIDs(t *testing.T, data string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(b), data) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
