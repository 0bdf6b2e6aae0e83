package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/devcluster"
)

// requireBinaries skips (fails under LESSOR_TEST_REQUIRE_PG=1) when there
// is no local initdb/pg_ctl for a throwaway cluster.
func requireBinaries(t *testing.T) {
	t.Helper()
	if _, err := devcluster.FindBinDir(); err != nil {
		if os.Getenv("LESSOR_TEST_REQUIRE_PG") == "1" {
			t.Fatal(err)
		}
		t.Skipf("NO POSTGRESQL BINARIES, lessor dev -postgres not tested: %v", err)
	}
}

// devUser is an OS user the dev tests run lessor as.
type devUser struct {
	name string
	cred *syscall.Credential // nil: the test's own user
	uid  int
}

// devSandbox is a fresh HOME and TMPDIR owned by u, and a copy of the test
// binary named lessor that u can run (testscript.Main makes it run cmd.Main).
type devSandbox struct {
	u               devUser
	root, home, tmp string
	bin             string
}

func newDevSandbox(t *testing.T, u devUser) *devSandbox {
	t.Helper()
	// Not t.TempDir: its parents are 0700 and another OS user could not
	// reach into it.
	root, err := os.MkdirTemp("", "lessor-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &devSandbox{u: u, root: root, home: filepath.Join(root, "home"), tmp: filepath.Join(root, "tmp"), bin: filepath.Join(root, "bin", "lessor")}
	for _, d := range []string{s.home, s.tmp, filepath.Dir(s.bin)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, s.bin, 0o755)
	if u.cred != nil {
		for _, d := range []string{s.home, s.tmp} {
			if err := os.Chown(d, int(u.cred.Uid), int(u.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// run runs lessor as the sandbox's user with only the given environment
// on top of HOME, TMPDIR and PATH.
func (s *devSandbox) run(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	// The binary was just copied into place; a child forked at that moment
	// by a parallel test may still hold the write descriptor until it
	// execs, and exec then fails with ETXTBSY. That is a race of the test,
	// not of lessor, so retry it briefly.
	for attempt := 0; ; attempt++ {
		cmd := exec.CommandContext(ctx, s.bin, args...)
		cmd.Dir = s.home
		cmd.Env = append([]string{"HOME=" + s.home, "TMPDIR=" + s.tmp, "PATH=" + os.Getenv("PATH")}, env...)
		o.Reset()
		e.Reset()
		cmd.Stdout, cmd.Stderr = &o, &e
		if s.u.cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.u.cred}
		}
		err = cmd.Run()
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return o.String(), e.String(), err
}

func (s *devSandbox) mustRun(t *testing.T, env []string, args ...string) (string, string) {
	t.Helper()
	o, e, err := s.run(t, env, args...)
	if err != nil {
		t.Fatalf("lessor %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o, e)
	}
	return o, e
}

// `lessor dev -postgres` then `lessor read database/creds/readonly` issues
// a credential that logs in to a throwaway cluster, as root (the server
// then runs as the postgres OS user) and as an ordinary user; `dev -stop`
// leaves no server process, no directory, no role.
func TestDevPostgres(t *testing.T) {
	requireBinaries(t)
	users := []devUser{{name: "caller", uid: os.Getuid()}}
	if os.Geteuid() == 0 {
		users = append(users, devUser{name: "nobody", uid: 65534, cred: &syscall.Credential{Uid: 65534, Gid: 65534}})
	} else {
		t.Log("not root: the run as another OS user is not tested")
	}
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			t.Parallel()
			testDevPostgres(t, newDevSandbox(t, u))
		})
	}
}

func testDevPostgres(t *testing.T, s *devSandbox) {
	ctx := context.Background()
	devDir := filepath.Join(s.tmp, "lessor-dev-"+strconv.Itoa(s.u.uid))
	wantExports := "export LESSOR_STORE=" + devDir + "/lessor.db LESSOR_KEY_FILE=" + devDir + "/unseal.key LESSOR_TOKEN_FILE=" + devDir + "/token\n"

	start := time.Now()
	out, errOut := s.mustRun(t, nil, "dev", "-postgres")
	t.Logf("lessor dev -postgres took %v", time.Since(start))
	if out != wantExports {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, wantExports)
	}
	// Read as the test's user: readDevState trusts only the caller's own.
	var st devState
	if err := json.Unmarshal(mustRead(t, filepath.Join(devDir, devStateFile)), &st); err != nil {
		t.Fatal(err)
	}
	// Should dev -stop fail below, still leave no server running.
	t.Cleanup(func() { s.run(t, nil, "dev", "-stop") })
	dataDir := filepath.Join(st.ClusterDir, "data")
	for _, want := range []string{
		"lessor dev: a throwaway setup in " + devDir + "\n",
		"  PostgreSQL  127.0.0.1:" + strconv.Itoa(st.Port) + ", superuser lessor_admin, data in " + dataDir,
		"  lessor read database/creds/readonly\n",
		"Undo it all: eval \"$(lessor dev -stop)\"\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// The server runs as the postgres OS user for root, else as the caller.
	wantOwner := uint32(s.u.uid)
	if s.u.uid == 0 {
		wantOwner = pgOSUID(t)
	}
	if fi, err := os.Stat(dataDir); err != nil {
		t.Fatal(err)
	} else if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != wantOwner {
		t.Errorf("data directory owned by uid %d, want %d", owner, wantOwner)
	}
	if strings.Contains(out+errOut, "password=") || strings.Contains(string(mustRead(t, filepath.Join(devDir, devStateFile))), "assword") {
		t.Error("a password appears in the output or the state file")
	}

	env := strings.Fields(strings.TrimPrefix(strings.TrimSpace(out), "export "))
	credJSON, _ := s.mustRun(t, env, "read", "-format=json", "database/creds/readonly")
	var cred struct {
		LeaseDuration int `json:"lease_duration"`
		Data          struct{ Username, Password string }
	}
	if err := json.Unmarshal([]byte(credJSON), &cred); err != nil {
		t.Fatalf("%v: %s", err, credJSON)
	}
	if cred.LeaseDuration != 3600 || !strings.HasPrefix(cred.Data.Username, "v-") {
		t.Fatalf("credential: %s", credJSON)
	}
	url := func(user, password string) string {
		return "postgres://" + user + ":" + password + "@127.0.0.1:" + strconv.Itoa(st.Port) + "/postgres?sslmode=disable"
	}
	conn, err := pgx.Connect(ctx, url(cred.Data.Username, cred.Data.Password))
	if err != nil {
		t.Fatalf("the issued credential does not log in: %v", err)
	}
	var validUntil bool
	if err := conn.QueryRow(ctx, "SELECT rolvaliduntil IS NOT NULL FROM pg_roles WHERE rolname = current_user").Scan(&validUntil); err != nil || !validUntil {
		t.Errorf("role has VALID UNTIL: %v, %v", validUntil, err)
	}
	conn.Close(ctx)
	_, err = pgx.Connect(ctx, url(cred.Data.Username, "wrong"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}

	// A second dev says so and prints the same exports.
	out2, errOut2 := s.mustRun(t, nil, "dev", "-postgres")
	if out2 != wantExports || errOut2 != "lessor dev is already set up in "+devDir+"; its exports are below.\n" {
		t.Errorf("second dev: stdout %q stderr %q", out2, errOut2)
	}

	out, errOut = s.mustRun(t, nil, "dev", "-stop")
	if out != "unset LESSOR_STORE LESSOR_KEY_FILE LESSOR_TOKEN_FILE\n" {
		t.Errorf("dev -stop stdout = %q", out)
	}
	wantErr := "Stopped PostgreSQL on 127.0.0.1:" + strconv.Itoa(st.Port) + " and removed " + st.ClusterDir + "\n" +
		"Removed " + devDir + " (store, key file, tokens)\n"
	if errOut != wantErr {
		t.Errorf("dev -stop stderr:\n%s\nwant:\n%s", errOut, wantErr)
	}
	if pids := processesNaming(t, dataDir); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", dataDir, pids)
	}
	for _, d := range []string{devDir, st.ClusterDir} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", d, err)
		}
	}
	if _, err := pgx.Connect(ctx, url(cred.Data.Username, cred.Data.Password)); err == nil {
		t.Error("the credential still logs in after dev -stop")
	}
	// Stopping twice is harmless.
	out, errOut = s.mustRun(t, nil, "dev", "-stop")
	if errOut != "lessor dev: nothing to stop (no "+devDir+")\n" {
		t.Errorf("second dev -stop: stdout %q stderr %q", out, errOut)
	}
}

func pgOSUID(t *testing.T) uint32 {
	t.Helper()
	b := mustRead(t, "/etc/passwd")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[0] == "postgres" {
			n, _ := strconv.Atoi(f[2])
			return uint32(n)
		}
	}
	t.Fatal("no postgres OS user")
	return 0
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// processesNaming lists the pids whose command line contains s.
func processesNaming(t *testing.T, s string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
