package barrier

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Tests here run the test binary again as child processes (TestHelperProcess
// with LESSOR_TEST_HELPER set), because locking and crashes are about
// processes, not goroutines.

const (
	helperEnv  = "LESSOR_TEST_HELPER"
	storeEnv   = "LESSOR_TEST_STORE"
	childEnv   = "LESSOR_TEST_CHILD"
	writesEach = 200
	children   = 8
	batchKeys  = 100
)

func helper(t *testing.T, role, store string, child int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, storeEnv+"="+store, childEnv+"="+strconv.Itoa(child))
	return cmd
}

func helperCmd(role, store string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+role, storeEnv+"="+store)
	return cmd
}

// TestHelperProcess is not a test: it is the child side of the tests below.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		t.Skip("child process only")
	}
	child, _ := strconv.Atoi(os.Getenv(childEnv))
	phys, err := openLocation(os.Getenv(storeEnv))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	switch role {
	case "writer":
		for i := range writesEach {
			k := fmt.Sprintf("child/%d/%03d", child, i)
			if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put(k, []byte(k)) }); err != nil {
				t.Fatal(err)
			}
		}
	case "die-mid-update":
		// Killed by its own hand half way through writing a batch, inside
		// the transaction.
		b.Update(ctx, func(tx storage.Tx) error {
			for i := range batchKeys {
				if i == batchKeys/2 {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					time.Sleep(time.Minute)
				}
				if err := tx.Put(fmt.Sprintf("batch/000000/%03d", i), []byte("x")); err != nil {
					return err
				}
			}
			return nil
		})
		t.Fatal("still alive")
	case "batches":
		// Writes batches until killed; says which it has committed.
		for n := 0; ; n++ {
			err := b.Update(ctx, func(tx storage.Tx) error {
				for i := range batchKeys {
					if err := tx.Put(fmt.Sprintf("batch/%06d/%03d", n, i), []byte(strconv.Itoa(n))); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("committed %d\n", n)
		}
	default:
		t.Fatalf("unknown role %q", role)
	}
}

func initStore(t *testing.T) (string, storage.Store) {
	t.Helper()
	path := filepath.Join(fastDir(t), "lessor.db")
	phys, err := storage.CreateBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, phys, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return path, phys
}

// reopen opens the store as a new process would, and checks the whole file.
func reopen(t *testing.T, path string) *Barrier {
	t.Helper()
	if storage.IsPostgresURL(path) {
		b, err := Open(ctx, openPG(t, path), testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	phys, err := storage.OpenBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := phys.Check(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConcurrentProcesses(t *testing.T)         { testConcurrentProcesses(t, initStore) }
func TestConcurrentProcessesPostgres(t *testing.T) { testConcurrentProcesses(t, initPostgresStore) }

func testConcurrentProcesses(t *testing.T, initStore func(*testing.T) (string, storage.Store)) {
	path, _ := initStore(t)
	start := time.Now()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for c := range children {
		cmd := helper(t, "writer", path, c)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	elapsed := time.Since(start)

	b := reopen(t, path)
	got := mustReadAll(t, b)
	if len(got) != children*writesEach {
		t.Fatalf("%d records, want %d", len(got), children*writesEach)
	}
	for c := range children {
		for i := range writesEach {
			k := fmt.Sprintf("child/%d/%03d", c, i)
			if got[k] != k {
				t.Fatalf("%s = %q", k, got[k])
			}
		}
	}
	t.Logf("%d processes committed %d updates in %v (%.0f commits/s)", children, children*writesEach,
		elapsed.Round(time.Millisecond), float64(children*writesEach)/elapsed.Seconds())
}

func TestCrashInsideUpdate(t *testing.T)         { testCrashInsideUpdate(t, initStore) }
func TestCrashInsideUpdatePostgres(t *testing.T) { testCrashInsideUpdate(t, initPostgresStore) }

func testCrashInsideUpdate(t *testing.T, initStore func(*testing.T) (string, storage.Store)) {
	path, _ := initStore(t)
	put(t, reopen(t, path), "before", "kept")
	cmd := helper(t, "die-mid-update", path, 0)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	got := mustReadAll(t, reopen(t, path))
	if len(got) != 1 || got["before"] != "kept" {
		t.Fatalf("after the crash the store holds %d records: %v", len(got), keysOf(got))
	}
	// And it takes writes again at once: the lock died with the process.
	put(t, reopen(t, path), "after", "x")
}

func TestKilledBetweenAndDuringCommits(t *testing.T) { testKilledBetweenAndDuringCommits(t, initStore) }
func TestKilledBetweenAndDuringCommitsPostgres(t *testing.T) {
	testKilledBetweenAndDuringCommits(t, initPostgresStore)
}

func testKilledBetweenAndDuringCommits(t *testing.T, initStore func(*testing.T) (string, storage.Store)) {
	rounds := 6
	if raceEnabled {
		rounds = 2
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range rounds {
		path, _ := initStore(t)
		cmd := helper(t, "batches", path, 0)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it at a random moment once it has committed a few batches,
		// which lands anywhere: inside fn, in bbolt's commit or fsync, or
		// between transactions.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "committed 2\n") && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(20000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
		if !strings.Contains(out.String(), "committed 2\n") {
			t.Fatalf("child never committed:\n%s", out)
		}
		acked := strings.Count(out.String(), "committed ")

		got := mustReadAll(t, reopen(t, path))
		per := map[string]int{}
		for k := range got {
			per[strings.Split(k, "/")[1]]++
		}
		for batch, n := range per {
			if n != batchKeys {
				t.Fatalf("round %d: batch %s has %d of %d keys", round, batch, n, batchKeys)
			}
		}
		// Every batch the child reported is there; at most one more (killed
		// after its commit, before its report).
		if len(per) < acked || len(per) > acked+1 {
			t.Fatalf("round %d: %d whole batches, child reported %d", round, len(per), acked)
		}
		for n := range len(per) {
			if per[fmt.Sprintf("%06d", n)] != batchKeys {
				t.Fatalf("round %d: batches are not a prefix: %d missing", round, n)
			}
		}
	}
}

// lockedBuffer is written by the child's output copier while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
