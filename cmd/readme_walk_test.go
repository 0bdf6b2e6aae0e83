package cmd

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// readmeStep is one `$ ` command of a README console block (with its
// continuation lines and here-documents) and the output the README shows
// for it.
type readmeStep struct {
	cmd    string
	output []string
}

var heredoc = regexp.MustCompile(`<<-?'?([A-Za-z_]+)'?`)

// readmeSteps returns the steps of the first ```console block of the
// README section with the given heading: what a reader would type, in
// order.
func readmeSteps(readme, heading string) ([]readmeStep, error) {
	_, sec, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		return nil, fmt.Errorf("README.md has no section %q", heading)
	}
	_, block, ok := strings.Cut(sec, "```console\n")
	if !ok {
		return nil, fmt.Errorf("README.md's section %q has no ```console block", heading)
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		return nil, fmt.Errorf("README.md's section %q: unterminated console block", heading)
	}
	var steps []readmeStep
	lines := strings.Split(block, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, "$ ") {
			if len(steps) == 0 {
				if strings.TrimSpace(line) != "" {
					return nil, fmt.Errorf("README.md's section %q: output %q before any command", heading, line)
				}
				continue
			}
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, line)
			continue
		}
		cmd := strings.TrimPrefix(line, "$ ")
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd += "\n" + lines[i]
		}
		if m := heredoc.FindStringSubmatch(cmd); m != nil {
			for i+1 < len(lines) {
				i++
				cmd += "\n" + lines[i]
				if lines[i] == m[1] {
					break
				}
			}
		}
		steps = append(steps, readmeStep{cmd: cmd})
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("README.md's section %q has no commands", heading)
	}
	return steps, nil
}

// randomRun stands for the random parts of output (tokens, ids, names):
// the README shows one run's, the test gets others.
var randomRun = regexp.MustCompile(`[0-9A-Za-z]{20,}`)

// cmdReadmeWalk is the testscript command `readmewalk HEADING`: it runs
// the commands of that README section's console block with sh, in the
// script's work directory and HOME, with psql connecting as the test
// server's superuser. The only changes to the text are the database's
// address and the names of the admin and the role (roles are
// cluster-wide, and scripts run side by side); README_ROLE is set to the
// role's name. Every command must succeed, and each "Success!" line
// the README shows (random parts aside) must be in that command's output.
// The whole transcript goes to stdout.
func cmdReadmeWalk(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: readmewalk HEADING")
	}
	p := pgOf(ts)
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	ts.Check(err)
	steps, err := readmeSteps(string(readme), args[0])
	ts.Check(err)
	// The role "readonly" gets a name of the same length that is this
	// script's own, so that the role names it issues (v-token-<role>-…)
	// and the README's count of them see no other script's.
	role := fmt.Sprintf("r%08x", crc32.ChecksumIEEE([]byte(p.db.Name)))[:len("readonly")]
	ts.Setenv("README_ROLE", role)
	subst := strings.NewReplacer(
		"localhost:5432/myapp", fmt.Sprintf("%s:%d/%s", p.srv.Host, p.srv.Port, p.db.Name),
		"lessor_admin", ts.Getenv("ROOTUSER"),
		"readonly", role)
	var script strings.Builder
	script.WriteString("set -e\n")
	for i, s := range steps {
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n%s\n", i, subst.Replace(s.cmd))
	}
	sh := exec.Command("sh", "-c", script.String())
	sh.Dir = ts.MkAbs(".")
	sh.Env = []string{
		"PATH=" + ts.Getenv("PATH"), "HOME=" + ts.Getenv("HOME"), "TMPDIR=" + ts.Getenv("TMPDIR"),
		"PGHOST=" + p.srv.Host, fmt.Sprintf("PGPORT=%d", p.srv.Port), "PGUSER=" + p.srv.User,
		"PGPASSWORD=" + p.srv.Password, "PGDATABASE=" + p.db.Name, "PGSSLMODE=disable",
	}
	out, runErr := sh.CombinedOutput()
	ts.Stdout().Write(out)

	got := map[int][]string{}
	step := -1
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "@@step %d", &n); err == nil {
			step = n
			continue
		}
		got[step] = append(got[step], sc.Text())
	}
	if runErr != nil {
		ts.Fatalf("the walk-through stopped at step %d (%q): %v", step, steps[max(step, 0)].cmd, runErr)
	}
	for i, s := range steps {
		for _, want := range s.output {
			if !strings.HasPrefix(want, "Success!") {
				continue
			}
			w := randomRun.ReplaceAllString(subst.Replace(want), "…")
			found := false
			for _, g := range got[i] {
				if randomRun.ReplaceAllString(g, "…") == w {
					found = true
				}
			}
			if !found {
				ts.Fatalf("step %d (%q): README shows %q, the run printed %q", i, s.cmd, want, got[i])
			}
		}
	}
	last := steps[len(steps)-1]
	if strings.Join(got[len(steps)-1], "\n") != strings.TrimSpace(strings.Join(last.output, "\n")) {
		ts.Fatalf("last step (%q): README shows %q, the run printed %q", last.cmd, last.output, got[len(steps)-1])
	}
}
