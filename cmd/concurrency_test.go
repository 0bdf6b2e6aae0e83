package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// buildLessor builds the real binary (without the race detector, whatever
// this test binary was built with: the point is many real processes, and
// race-instrumented start-up would make the test crawl).
func buildLessor(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LESSOR_BENCH_LESSOR_BIN"); bin != "" && os.Getenv("LESSOR_BENCH") == "1" {
		// A binary built beforehand, to compare two versions in
		// alternating runs of the same benchmark.
		return bin
	}
	bin := filepath.Join(t.TempDir(), "lessor")
	cmd := exec.Command("go", "build", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestConcurrentProcesses runs 8 lessor processes that each commit 200
// writes to one store at the same time: exactly 1,600 records must land,
// and the store must open cleanly afterwards.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts 1,600 processes")
	}
	bin := buildLessor(t)
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "LESSOR_TOKEN=", "LESSOR_STORE=", "LESSOR_KEY_FILE=")
	run := func(args ...string) (string, error) {
		c := exec.Command(bin, args...)
		c.Env = env
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		if err != nil {
			return out.String(), fmt.Errorf("lessor %s: %v: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), nil
	}
	if _, err := run("operator", "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("secrets", "enable", "database"); err != nil {
		t.Fatal(err)
	}
	const procs, writes = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, procs*writes)
	for p := 1; p <= procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= writes; i++ {
				if _, err := run("write", fmt.Sprintf("database/roles/p%d-%d", p, i), "db_name=x", "creation_statements=x"); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	out, err := run("list", "-format=json", "database/roles")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("list output: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	for p := 1; p <= procs; p++ {
		for i := 1; i <= writes; i++ {
			if !seen[fmt.Sprintf("p%d-%d", p, i)] {
				t.Errorf("write p%d-%d was lost", p, i)
			}
		}
	}
	if len(keys) != procs*writes {
		t.Errorf("%d roles, want %d", len(keys), procs*writes)
	}
	if out, err := run("operator", "status"); err != nil || !strings.Contains(out, "initialized") {
		t.Fatalf("status after the run: %v\n%s", err, out)
	}
}
