package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// bigEntry makes a response line of well over a page, so that a line
// written in pieces would show.
func bigEntry(writer, i int) *Entry {
	return &Entry{
		Operation: "read",
		Path:      "database/creds/readonly",
		Response: &logical.Response{
			Data: map[string]any{
				"username": fmt.Sprintf("v-w%d-i%d", writer, i),
				"filler":   strings.Repeat(strconv.Itoa(writer%10), 32<<10),
			},
		},
	}
}

// checkLines asserts that the log holds exactly one whole, valid line for
// each (writer, i) pair.
func checkLines(t *testing.T, path string, writers, each int) {
	t.Helper()
	lines := readLines(t, path)
	if len(lines) != writers*each {
		t.Fatalf("got %d lines, want %d", len(lines), writers*each)
	}
	seen := map[string]bool{}
	for n, l := range lines {
		var v struct {
			Response struct {
				Data struct{ Username, Filler string }
			}
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d is not one JSON entry (%v): %.120s…", n+1, err, l)
		}
		var w, i int
		if _, err := fmt.Sscanf(v.Response.Data.Username, "v-w%d-i%d", &w, &i); err != nil {
			t.Fatalf("line %d: username %q", n+1, v.Response.Data.Username)
		}
		if v.Response.Data.Filler != strings.Repeat(strconv.Itoa(w%10), 32<<10) {
			t.Fatalf("line %d: filler of writer %d mixed with another line", n+1, w)
		}
		seen[v.Response.Data.Username] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct lines, want %d", len(seen), writers*each)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	const writers, each = 16, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := b.LogResponse(context.Background(), bigEntry(w, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	checkLines(t, path, writers, each)
}

// TestConcurrentProcesses runs several processes, each with its own
// broker, as concurrent lessor commands do: nothing but O_APPEND and one
// write per line keeps their lines apart.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	const writers, each = 6, 10
	cmds := make([]*exec.Cmd, writers)
	for w := range writers {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(),
			"LESSOR_AUDIT_HELPER_LOG="+path,
			"LESSOR_AUDIT_HELPER_WRITER="+strconv.Itoa(w),
			"LESSOR_AUDIT_HELPER_EACH="+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[w] = cmd
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	checkLines(t, path, writers, each)
}

// TestHelperWriter is a writer process for TestConcurrentProcesses; run
// directly it does nothing.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("LESSOR_AUDIT_HELPER_LOG")
	if path == "" {
		t.Skip("helper process only")
	}
	w, _ := strconv.Atoi(os.Getenv("LESSOR_AUDIT_HELPER_WRITER"))
	each, _ := strconv.Atoi(os.Getenv("LESSOR_AUDIT_HELPER_EACH"))
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	for i := range each {
		if err := b.LogResponse(context.Background(), bigEntry(w, i)); err != nil {
			t.Fatal(err)
		}
	}
}
