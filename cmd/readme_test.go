package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// readmeCommands returns the first two command lines of README.md's first
// code block: the README promises that these are all a newcomer types.
func readmeCommands(t *testing.T) (run, test string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(lines) < 2 {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			if in {
				t.Fatalf("README.md's first code block has %d command lines, want 2: %q", len(lines), lines)
			}
			in = true
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			lines = append(lines, line)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("README.md has no first code block with 2 command lines (got %q)", lines)
	}
	return lines[0], lines[1]
}

// README's second command is the test command that CI runs.
func TestReadmeTestCommandIsCIs(t *testing.T) {
	_, test := readmeCommands(t)
	cmd := strings.TrimSpace(strings.SplitN(test, "#", 2)[0])
	ci, err := os.ReadFile(filepath.Join("..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ci), "\n") {
		if strings.TrimSpace(line) == cmd {
			return
		}
	}
	t.Errorf("README's test command %q is not a line of .ci/run", cmd)
}

// README's first command, run literally by sh in a fresh HOME with no
// lessor on PATH, issues a credential that logs in; `dev -stop` then
// leaves no directory and no server behind. Only Go's own caches are kept
// from this machine, so the run neither downloads modules nor rebuilds the
// standard library.
func TestReadmeFirstCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lessor with go run")
	}
	requireBinaries(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go on PATH: %v", err)
	}
	first, _ := readmeCommands(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	home, tmp := t.TempDir(), t.TempDir()
	env := []string{"HOME=" + home, "TMPDIR=" + tmp, "PATH=" + pathWithoutLessor(filepath.Dir(goBin))}
	goEnv, err := exec.Command(goBin, "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOFLAGS", "GOSUMDB", "GOTOOLCHAIN").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ge map[string]string
	if err := json.Unmarshal(goEnv, &ge); err != nil {
		t.Fatal(err)
	}
	for k, v := range ge {
		env = append(env, k+"="+v)
	}
	sh := func(script string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", script)
		c.Dir, c.Env = root, env
		var o, e strings.Builder
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		return o.String(), e.String(), err
	}
	devDir := filepath.Join(tmp, "lessor-dev-"+strconv.Itoa(os.Getuid()))
	t.Cleanup(func() {
		// Whatever happened above, leave no cluster running.
		if st, err := readDevState(devDir); err == nil && st.ClusterDir != "" {
			c := exec.Command(goBin, "run", ".", "dev", "-stop", "-dir="+devDir)
			c.Dir, c.Env = root, env
			c.Run()
		}
	})

	start := time.Now()
	out, errOut, err := sh(first)
	t.Logf("README's first command took %v", time.Since(start))
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", first, err, out, errOut)
	}
	user := regexp.MustCompile(`(?m)^username +(v-\S+)$`).FindStringSubmatch(out)
	pass := regexp.MustCompile(`(?m)^password +(\S{20})$`).FindStringSubmatch(out)
	if user == nil || pass == nil || !regexp.MustCompile(`(?m)^lease_duration +1h$`).MatchString(out) {
		t.Fatalf("no credential table in stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	st, err := readDevState(devDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	url := "postgres://" + user[1] + ":" + pass[1] + "@127.0.0.1:" + strconv.Itoa(st.Port) + "/postgres?sslmode=disable"
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("the README's credential does not log in: %v", err)
	}
	conn.Close(ctx)

	// What README says undoes it, does.
	if out, errOut, err := sh(`eval "$(go run . dev -stop)" && echo "[$LESSOR_STORE]"`); err != nil || out != "[]\n" {
		t.Fatalf("dev -stop: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	for _, d := range []string{devDir, st.ClusterDir} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", d, err)
		}
	}
	if pids := processesNaming(t, st.ClusterDir); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", st.ClusterDir, pids)
	}
}

// pathWithoutLessor is $PATH without directories that hold a lessor
// executable (testscript puts one there), plus goDir.
func pathWithoutLessor(goDir string) string {
	keep := []string{goDir}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "lessor")); err == nil || d == "" {
			continue
		}
		keep = append(keep, d)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

// The README's least-privilege recipe is the SQL that
// least_privilege_recipe.txtar runs: the same statements, in the same
// order, so that what the README tells a DBA to run is what is tested.
func TestReadmeLeastPrivilegeRecipeIsTested(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Least-privilege admin\n")
	if !ok {
		t.Fatal("README.md has no section \"## Least-privilege admin\"")
	}
	_, block, ok := strings.Cut(section, "```sql\n")
	if !ok {
		t.Fatal("README.md's least-privilege section has no ```sql block")
	}
	block, _, _ = strings.Cut(block, "```")

	script, err := os.ReadFile(filepath.Join("..", "testdata", "script", "least_privilege_recipe.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	_, tested, ok := strings.Cut(string(script), "\n-- as-master.sql --\n")
	if !ok {
		t.Fatal("least_privilege_recipe.txtar has no as-master.sql")
	}
	if loc := regexp.MustCompile(`(?m)^-- \S+ --$`).FindStringIndex(tested); loc != nil {
		tested = tested[:loc[0]] // the next file of the archive
	}

	statements := func(sql string, skipSetRole bool) []string {
		var out []string
		for _, line := range strings.Split(sql, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "--") || skipSetRole && strings.HasPrefix(line, "SET ROLE ") {
				continue
			}
			out = append(out, line)
		}
		return out
	}
	want, got := statements(block, false), statements(tested, true)
	if len(want) == 0 || strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("the README's recipe is not what least_privilege_recipe.txtar runs:\nREADME:\n%s\n\ntested:\n%s",
			strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}
