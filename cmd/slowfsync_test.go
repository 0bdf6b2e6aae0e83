package cmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlowFsync checks the benchmarks' slow-disk wrapper
// (testdata/bench/slowfsync): an fdatasync under it waits the delay,
// the time it reports covers the program, and the program's exit status
// passes through.
func TestSlowFsync(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("slowfsync filters x86-64 Linux system calls only")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "slowfsync")
	if out, err := exec.Command("go", "build", "-o", bin, "../testdata/bench/slowfsync").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const delay = 200 * time.Millisecond
	run := func(args ...string) (time.Duration, time.Duration) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		c := exec.Command(bin, append([]string{"-report-fd", "3", delay.String()}, args...)...)
		c.ExtraFiles = []*os.File{w}
		start := time.Now()
		out, err := c.CombinedOutput()
		wall := time.Since(start)
		w.Close()
		if err != nil {
			t.Fatalf("slowfsync %v: %v\n%s", args, err, out)
		}
		b := make([]byte, 64)
		n, _ := r.Read(b)
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b[:n])), 10, 64)
		if err != nil {
			t.Fatalf("report %q: %v", b[:n], err)
		}
		return wall, time.Duration(ns)
	}
	f := filepath.Join(dir, "probe")
	wall, reported := run("dd", "if=/dev/zero", "of="+f, "bs=4k", "count=1", "status=none", "conv=fdatasync")
	if reported < delay || wall < reported {
		t.Errorf("dd with fdatasync: reported %v, wall %v; want at least the delay, %v, and wall >= reported", reported, wall, delay)
	}
	if _, reported := run("dd", "if=/dev/zero", "of="+f, "bs=4k", "count=1", "status=none"); reported >= delay {
		t.Errorf("dd without fdatasync took %v: something else was slowed", reported)
	}
	err := exec.Command(bin, "1ms", "sh", "-c", "exit 7").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exit status: %v, want 7", err)
	}
}
