package cmd

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// go.mod says which dependencies are direct: `go mod tidy` would change
// nothing. Part of issue 14 (12 direct dependencies were marked
// indirect).
func TestGoModTidy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go on PATH: %v", err)
	}
	cmd := exec.Command(goBin, "mod", "tidy", "-diff")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "module lookup disabled by GOPROXY=off") && os.Getenv("CI") == "" {
		// A cold module cache, not an untidy go.mod: tidy consults
		// modules (tests of dependencies) that go test never fetches.
		// .ci/run fetches them first; elsewhere say how.
		t.Skipf("module cache lacks what go mod tidy consults; run `go mod tidy -diff` once with the module proxy on:\n%s", out)
	}
	if err != nil {
		t.Errorf("go mod tidy -diff: %v\n%s", err, out)
	}
}

// Comments in the code explain themselves: none points a reader at a
// design file or note that is not in the repository.
func TestCommentsCiteNothingOutside(t *testing.T) {
	outside := regexp.MustCompile(`DESIGN\.md|STYLE\.md|shared/reference|pain-points|storage-crypto|\.\./shared`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if outside.MatchString(line) && !strings.Contains(line, "outside := regexp") {
				t.Errorf("%s:%d cites a file outside the repository: %s", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
