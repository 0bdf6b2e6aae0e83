package cmd

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/logical"
)

// fixedPaths is what completion should offer right below mount: the fixed
// part of every path the backend declares, sorted and unique, as
// `__complete` prints it.
func fixedPaths(mount string, specs []logical.PathSpec) string {
	seen := map[string]bool{}
	var out []string
	for _, s := range specs {
		if f := s.Fixed(); f != "" && !seen[f] {
			seen[f] = true
			out = append(out, mount+f)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

// Issue 14: completion asks each backend for its paths (the declarations
// path-help prints) instead of keeping its own list, so that sys offers
// every path it serves, not the four a hard-coded list knew.
func TestCompletePathsComeFromBackends(t *testing.T) {
	c := storeWithRoles(t)
	got := c.complete("read", "sys/")
	if want := fixedPaths("sys/", core.BuiltinPathSpecs("system")); got != want+":6\n" {
		t.Errorf("complete read sys/:\n got %q\nwant %q", got, want+":6\n")
	}
	for _, p := range []string{"sys/remount\n", "sys/capabilities-self\n", "sys/leases/renew\n", "sys/policy/\n"} {
		if !strings.Contains(got, p) {
			t.Errorf("complete read sys/ lacks %q (declared by the system backend):\n%s", p, got)
		}
	}
	got = c.complete("read", "database/")
	if want := fixedPaths("database/", database.New(database.Options{}).PathSpecs()); got != want+":6\n" {
		t.Errorf("complete read database/:\n got %q\nwant %q", got, want+":6\n")
	}
	// creds/ names come from where the backend says: its roles/ listing.
	if got, want := c.complete("read", "database/creds/w"), "database/creds/writer\n:4\n"; got != want {
		t.Errorf("complete read database/creds/w:\n got %q\nwant %q", got, want)
	}
	// path-help completes paths the same way.
	if got, want := c.complete("path-help", "database/ro"), "database/roles/\ndatabase/rotate-role/\ndatabase/rotate-root/\n:6\n"; got != want {
		t.Errorf("complete path-help database/ro:\n got %q\nwant %q", got, want)
	}
}

// The completion code names no backend's paths itself.
func TestCompletionHardCodesNoBackendPaths(t *testing.T) {
	src, err := os.ReadFile("completion.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`"creds/"`, `"roles/"`, `"config/"`, `"rotate-root/"`, `"leases/lookup/"`} {
		if strings.Contains(string(src), p) {
			t.Errorf("cmd/completion.go hard-codes %s: completion must take paths from the backends (logical.PathSpec)", p)
		}
	}
}
