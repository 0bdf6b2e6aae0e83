package cmd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// openPTY opens a pseudo-terminal pair, neither end of it this process's
// controlling terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// signalChild is the command TestExecTerminalInterrupt runs under lessor
// exec: it takes each SIGINT as it comes, with the kernel's word on who
// sent it (Go's runtime tells neither, and merges a second signal into a
// first it has not handed over yet), and prints "int <si_code> <si_pid>"
// for each, until the file named by its argument exists.
const signalChild = `
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    info = signal.sigtimedwait([signal.SIGINT], 0.05)
    if info is not None:
        print("int %d %d" % (info.si_code, info.si_pid), flush=True)
print("done", flush=True)
`

// TestExecTerminalInterrupt: a ^C at the terminal where lessor exec runs
// in the foreground reaches the command once. The terminal sends SIGINT
// to the whole foreground process group, the command included; lessor,
// which gets it too, passed it on as well, so that a command that counts
// interrupts (psql cancels the query on the first, a shell script's trap
// runs twice) saw two.
func TestExecTerminalInterrupt(t *testing.T) {
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	c, ini := storeWithConnection(t, srv, db, "r")
	c.must("write", "database/roles/r", "db_name=postgresql", "default_ttl=1h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)
	t.Cleanup(func() { dropStoreRoles(t, srv, db, ini.StoreID) })
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to count the signals the command gets")
	}
	bin := buildLessor(t)
	master, slave := openPTY(t)

	stop := filepath.Join(t.TempDir(), "stop")
	// lessor starts with INT and QUIT at their defaults, as from a
	// shell's prompt, whatever this test inherited (a background job of
	// a script starts with them ignored, and so would lessor).
	cmd := exec.Command(python, "-c", `import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])`, bin, "exec", "database/creds/r", "--", python, "-c", signalChild, stop)
	cmd.Env = append(os.Environ(), "HOME="+c.env["HOME"], "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "XDG_STATE_HOME=",
		"LESSOR_STORE=", "LESSOR_KEY_FILE=", "LESSOR_TOKEN="+ini.Root)
	// lessor (the same process, once the wrapper has exec'd it) leads
	// a session of its own whose controlling terminal is the pty, so that it and the command are the terminal's foreground
	// process group, as when a shell runs lessor exec at a prompt.
	cmd.Stdin = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait()
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("lessor exec ended early: %v\n%s", <-done, errb.String())
			}
			return l
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("no output from the command in 90 s; stderr:\n%s", errb.String())
		}
		return ""
	}
	if l := next(); l != "ready" {
		t.Fatalf("the command printed %q, not ready; stderr:\n%s", l, errb.String())
	}
	// ^C, as typed at the terminal, three times: lessor passed each on,
	// and a signal that comes while one is pending is merged into it.
	for range 3 {
		if _, err := master.Write([]byte{3}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The last one passed on arrives within milliseconds of the
	// terminal's; a second is plenty even on a loaded machine.
	time.Sleep(time.Second)
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	for l := next(); l != "done"; l = next() {
		got = append(got, l)
	}
	if err := <-done; err != nil {
		t.Fatalf("lessor exec: %v\n%s", err, errb.String())
	}
	t.Logf("lessor %d; the command got:\n%s", cmd.Process.Pid, strings.Join(got, "\n"))
	if len(got) == 0 {
		t.Fatal("the command got no SIGINT from the terminal")
	}
	for _, l := range got {
		// si_code 0 is SI_USER, kill(2); the terminal's is the kernel's.
		if f := strings.Fields(l); len(f) == 3 && f[1] == "0" && f[2] == fmt.Sprint(cmd.Process.Pid) {
			t.Fatalf("lessor passed the terminal's ^C on to the command, which got it twice; the command got:\n%s", strings.Join(got, "\n"))
		}
	}
	if roles := storeRoles(t, srv, db, ini.StoreID); len(roles) != 0 {
		t.Fatalf("the credential's role outlived the command: %v", roles)
	}
}
