package cmd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/devcluster"
)

// nobodyCred is the second local user of the tests that play an attacker.
var nobodyCred = &syscall.Credential{Uid: 65534, Gid: 65534}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another local user")
	}
}

// asUser runs a shell script as cred (nil: as the test's own user).
func asUser(t *testing.T, cred *syscall.Credential, script string) {
	t.Helper()
	c := exec.Command("/bin/sh", "-ec", script)
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sh as %v: %v\n%s\nscript:\n%s", cred, err, out, script)
	}
}

// exists reports whether p exists, without following a symlink.
func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// An executable pg_ctl that leaves a marker when run, as a trap would.
func plantPgCtl(t *testing.T, binDir, marker string, cred *syscall.Credential) {
	t.Helper()
	asUser(t, cred, `mkdir -p '`+binDir+`'
printf '#!/bin/sh\ntouch %s\nexit 0\n' '`+marker+`' > '`+binDir+`/pg_ctl'
cp '`+binDir+`/pg_ctl' '`+binDir+`/initdb'
chmod 755 '`+binDir+`/pg_ctl' '`+binDir+`/initdb'`)
}

// Another local user who creates the default dev directory in a shared
// $TMPDIR first, with a dev.json naming their own pg_ctl and a directory
// to delete, gets nothing: dev and dev -stop refuse the directory, run no
// binary of theirs and delete nothing outside it.
func TestDevRefusesAnotherUsersDevDir(t *testing.T) {
	requireRoot(t)
	s := newDevSandbox(t, devUser{name: "caller", uid: 0})
	// $TMPDIR is shared, like /tmp.
	if err := os.Chmod(s.tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	trap := filepath.Join(s.root, "trap")
	if err := os.Mkdir(trap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(trap, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(trap, "pg_ctl-ran")
	plantPgCtl(t, filepath.Join(trap, "bin"), marker, nobodyCred)
	// A directory of root's the trap names for deletion.
	victim := filepath.Join(s.root, "victim")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "keep"), []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	devDir := filepath.Join(s.tmp, "lessor-dev-0")

	// plant makes devDir nobody's dev setup whose cluster is clusterDir;
	// a cluster directory of nobody's names the trap's pg_ctl and a live
	// looking postmaster.pid.
	plant := func(t *testing.T, clusterDir string, symlink bool) {
		t.Helper()
		state := `{"store": "` + victim + `/lessor.db", "key_file": "` + victim + `/unseal.key", "token_file": "` + victim + `/token", "cluster_dir": "` + clusterDir + `", "port": 5}`
		target := devDir
		if symlink {
			target = filepath.Join(trap, "devdir")
		}
		asUser(t, nobodyCred, `rm -rf '`+devDir+`' '`+target+`' '`+trap+`/cluster' '`+marker+`'
mkdir -p '`+target+`' '`+trap+`/cluster/data'
chmod 700 '`+target+`'
echo '`+trap+`/bin' > '`+trap+`/cluster/bindir'
printf '4194305\n' > '`+trap+`/cluster/data/postmaster.pid'
echo 'secret' > '`+target+`/root-token'
cat > '`+target+`/dev.json' <<'EOF'
`+state+`
EOF
chmod 600 '`+target+`/dev.json'`)
		if symlink {
			asUser(t, nobodyCred, `ln -s '`+target+`' '`+devDir+`'`)
		}
	}
	untouched := func(t *testing.T) {
		t.Helper()
		if exists(marker) {
			t.Fatal("lessor ran the pg_ctl named in another user's files")
		}
		if !exists(filepath.Join(victim, "keep")) {
			t.Fatal("lessor deleted a directory named in another user's files")
		}
	}

	for _, tc := range []struct {
		name       string
		clusterDir string
		symlink    bool
		wantErr    string
	}{
		{"their cluster", filepath.Join(trap, "cluster"), false, devDir + " is owned by uid 65534, not by you"},
		{"root's directory", victim, false, devDir + " is owned by uid 65534, not by you"},
		{"symlink", victim, true, devDir + " is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"dev"}, {"dev", "-postgres"}, {"dev", "-stop"}} {
				plant(t, tc.clusterDir, tc.symlink)
				out, errOut, err := s.run(t, nil, args...)
				if err == nil {
					t.Errorf("lessor %s succeeded in another user's directory:\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
				}
				if out != "" {
					t.Errorf("lessor %s: stdout %q, want nothing (an eval must not act on it)", strings.Join(args, " "), out)
				}
				if want := "lessor: error: " + tc.wantErr; !strings.HasPrefix(errOut, want) {
					t.Errorf("lessor %s: stderr:\n%s\nwant it to start with %q", strings.Join(args, " "), errOut, want)
				}
				untouched(t)
				if !exists(filepath.Join(devDir, "dev.json")) {
					t.Errorf("lessor %s removed another user's dev directory", strings.Join(args, " "))
				}
			}
		})
	}
}

// pgCtlPath is the real pg_ctl that dev uses.
func pgCtlPath(t *testing.T) string {
	t.Helper()
	bin, err := devcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(bin, "pg_ctl")
}

// postmasterPID reads the server's pid from its data directory.
func postmasterPID(t *testing.T, dataDir string) int {
	t.Helper()
	first, _, _ := strings.Cut(string(mustRead(t, filepath.Join(dataDir, "postmaster.pid"))), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// killAndWait ends a leftover server (SIGQUIT: immediate shutdown).
func killAndWait(pid int) {
	if syscall.Kill(pid, syscall.SIGQUIT) != nil {
		return
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// dev -stop acts only on what it verifies: a cluster data directory
// swapped for a symlink to a directory elsewhere (with a postmaster.pid, so
// it looks like a cluster) and a note naming another pg_ctl are refused,
// not followed. Before, the postgres OS user, which owned the cluster
// directory, could do this and have root run its pg_ctl.
func TestDevStopFollowsNoSymlink(t *testing.T) {
	requireRoot(t)
	requireBinaries(t)
	s := newDevSandbox(t, devUser{name: "caller", uid: 0})
	devDir := filepath.Join(s.tmp, "lessor-dev-0")
	s.mustRun(t, nil, "dev", "-postgres")
	st, err := readDevState(devDir)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(st.ClusterDir, "data")
	moved := filepath.Join(st.ClusterDir, "data.moved")
	pid := postmasterPID(t, data)
	t.Cleanup(func() {
		killAndWait(pid)
		os.RemoveAll(st.ClusterDir)
	})

	markers := filepath.Join(s.root, "markers")
	if err := os.Mkdir(markers, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(markers, 0o1777)
	marker := filepath.Join(markers, "pg_ctl-ran")
	plantPgCtl(t, filepath.Join(s.root, "evil"), marker, nil)
	victim := filepath.Join(s.root, "victim")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"postmaster.pid": "4194305\n", "keep": "root's\n"} {
		if err := os.WriteFile(filepath.Join(victim, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// As root, standing for whoever could write there (before this fix, the
	// postgres OS user owned the cluster directory).
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.ClusterDir, "bindir"), []byte(filepath.Join(s.root, "evil")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, err := s.run(t, nil, "dev", "-stop")
	if err == nil || out != "" {
		t.Errorf("dev -stop with a symlinked data directory: err %v, stdout %q, stderr:\n%s", err, out, errOut)
	}
	if want := "lessor: error: stop cluster: " + data + " is a symlink; not following it\n"; !strings.HasPrefix(errOut, want) {
		t.Errorf("stderr:\n%s\nwant it to start with %q", errOut, want)
	}
	if exists(marker) {
		t.Error("dev -stop ran a pg_ctl named in the cluster directory")
	}
	for _, f := range []string{"keep", "postmaster.pid"} {
		if !exists(filepath.Join(victim, f)) {
			t.Errorf("dev -stop removed %s through the symlink", filepath.Join(victim, f))
		}
	}
	if !exists(filepath.Join(devDir, devStateFile)) {
		t.Error("dev -stop removed the dev directory though it refused to stop the cluster")
	}
}

// The throwaway server's environment holds nothing of lessor's: no LESSOR_*
// variable and no PGPASSWORD, which anyone who can read
// /proc/<postmaster>/environ (the postgres OS user) could read.
func TestDevClusterEnvironment(t *testing.T) {
	requireBinaries(t)
	s := newDevSandbox(t, devUser{name: "caller", uid: os.Getuid()})
	devDir := filepath.Join(s.tmp, "lessor-dev-"+strconv.Itoa(os.Getuid()))
	const canary = "canary-7f3a9c"
	s.mustRun(t, []string{"LESSOR_DEV_CANARY=" + canary, "PGPASSWORD=" + canary}, "dev", "-postgres")
	st, err := readDevState(devDir)
	if err != nil {
		t.Fatal(err)
	}
	pid := postmasterPID(t, filepath.Join(st.ClusterDir, "data"))
	t.Cleanup(func() { s.run(t, nil, "dev", "-stop") })

	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("no /proc: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	if len(env) == 0 {
		t.Fatal("empty environ: not the postmaster?")
	}
	for _, v := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(v, []byte("LESSOR_")) || bytes.HasPrefix(v, []byte("PGPASSWORD=")) || bytes.Contains(v, []byte(canary)) {
			t.Errorf("the postmaster's environment holds %q", v)
		}
	}
	s.mustRun(t, nil, "dev", "-stop")
}
