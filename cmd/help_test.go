package cmd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// helpRoot is the real command tree with the commands cobra adds only when
// it executes (help, and completion if lessor had none of its own).
func helpRoot() *cobra.Command {
	var out bytes.Buffer
	root := newRootCmd(newFactory(strings.NewReader(""), &out, &out, func(string) string { return "" }))
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

func walkCommands(c *cobra.Command, visit func(*cobra.Command)) {
	visit(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, visit)
	}
}

// exampleLines returns each command line of an Example block, with the
// continuation lines joined.
func exampleLines(example string) []string {
	var out []string
	cur := ""
	for _, line := range strings.Split(example, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, `\`) {
			cur += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		if cur+line != "" {
			out = append(out, cur+line)
		}
		cur = ""
	}
	return out
}

// shellWords splits the lessor part of an example line into words, as a
// shell would for the quoting examples use, and stops at a redirection,
// pipe or the end of a command substitution.
func shellWords(line string) ([]string, bool) {
	i := strings.Index(line, "lessor ")
	if i < 0 {
		return nil, false
	}
	var words []string
	var w strings.Builder
	inWord := false
	quote := byte(0)
	for j := i; j < len(line); j++ {
		ch := line[j]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				w.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case ch == '<' || ch == '>' || ch == '|' || ch == ')':
			j = len(line)
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words[1:], true
}

func isUnder(c, ancestor *cobra.Command) bool {
	for ; c != nil; c = c.Parent() {
		if c == ancestor {
			return true
		}
	}
	return false
}

// Every command has a summary, a usage line and examples, and every
// example is a real command line: its flags and argument count pass the
// checks of the command it names, and at least one line runs the command
// itself (or one of its subcommands).
func TestEveryCommandHasExamples(t *testing.T) {
	root := helpRoot()
	n := 0
	walkCommands(root, func(c *cobra.Command) {
		if c.IsAdditionalHelpTopicCommand() {
			if c.Short == "" || c.Long == "" {
				t.Errorf("help topic %q has no summary or text", c.Name())
			}
			return
		}
		path := c.CommandPath()
		n++
		if c.Short == "" || strings.Contains(c.Short, "\n") {
			t.Errorf("%s: want a one-line summary, got %q", path, c.Short)
		}
		if !strings.HasPrefix(c.UseLine(), path) {
			t.Errorf("%s: usage line %q", path, c.UseLine())
		}
		lines := exampleLines(c.Example)
		if len(lines) == 0 {
			t.Errorf("%s has no Example", path)
		}
		ownLines := 0
		for _, line := range lines {
			own, err := checkExample(path, line)
			if err != nil {
				t.Errorf("%s: example %q: %v", path, line, err)
			}
			if own {
				ownLines++
			}
		}
		if len(lines) > 0 && ownLines == 0 {
			t.Errorf("%s: no example runs it:\n%s", path, c.Example)
		}
	})
	if n < 40 {
		t.Errorf("walked only %d commands", n)
	}
}

// checkExample parses one example line against a fresh command tree, the
// way lessor would, and says whether it runs the command at path (or one
// of its subcommands).
func checkExample(path, line string) (own bool, err error) {
	words, ok := shellWords(line)
	if !ok {
		return false, fmt.Errorf("does not run lessor")
	}
	root := helpRoot()
	target, rest, err := root.Find(normalizeFlags(root, words))
	if err != nil {
		return false, err
	}
	self, _, err := root.Find(strings.Fields(path)[1:])
	if err != nil {
		return false, err
	}
	own = isUnder(target, self)
	if err := target.ParseFlags(rest); err != nil {
		return own, err
	}
	if target.Args != nil && target.Runnable() {
		return own, target.ValidateArgs(target.Flags().Args())
	}
	return own, nil
}

// The example check rejects what a user could not run.
func TestCheckExampleRejectsBadLines(t *testing.T) {
	for _, line := range []string{
		"lessor reap -no-such-flag",
		"lessor read",
		"lessor policy write apps",
		"lessor nosuch database/creds/readonly",
		"lessor lease revoke -prefix=maybe database/creds/readonly",
		"vault read database/creds/readonly",
	} {
		if _, err := checkExample("lessor", line); err == nil {
			t.Errorf("checkExample accepted %q", line)
		}
	}
	if own, err := checkExample("lessor lease", `lessor lease revoke -prefix database/creds/readonly`); err != nil || !own {
		t.Errorf("checkExample(lease revoke -prefix) = %v, %v; want true, nil", own, err)
	}
	if own, err := checkExample("lessor dev", `eval "$(lessor read -format=json database/creds/readonly)"`); err != nil || own {
		t.Errorf("checkExample(read under dev) = %v, %v; want false, nil", own, err)
	}
}

// Each flag that has an environment variable names it in its help, and
// `lessor help environment` lists every variable.
func TestFlagsNameTheirEnvVars(t *testing.T) {
	root := helpRoot()
	envOf := map[string]string{"config": "LESSOR_CONFIG"}
	for _, s := range settings {
		if s.flag != "" {
			envOf[s.flag] = s.env
		}
	}
	walkCommands(root, func(c *cobra.Command) {
		visit := func(fl *pflag.Flag) {
			if env, ok := envOf[fl.Name]; ok && !strings.Contains(fl.Usage, "env "+env) {
				t.Errorf("%s -%s: usage %q does not name %s", c.CommandPath(), fl.Name, fl.Usage, env)
			}
		}
		c.LocalFlags().VisitAll(visit)
	})

	c := newCompCLI(t)
	env := c.must("help", "environment")
	for _, s := range settings {
		if !strings.Contains(env, "  "+s.env+" ") {
			t.Errorf("help environment does not list %s:\n%s", s.env, env)
		}
	}
	codes := c.must("help", "exit-codes")
	for _, want := range []string{"  0  success", "  1  usage or local error", "  2  the operation was refused or failed", "  3  (reap only)"} {
		if !strings.Contains(codes, want) {
			t.Errorf("help exit-codes lacks %q:\n%s", want, codes)
		}
	}
}

// The systemd units are the ones `lessor reap -h` shows. (The man pages
// are cmd/gen's, tested there.)
func TestGenerateSystemd(t *testing.T) {
	c := newCompCLI(t)
	dir := t.TempDir()
	c.must("__generate", "systemd", dir)
	for name, want := range map[string]string{
		"lessor-reap.service": `[Unit]
Description=Revoke expired lessor leases
[Service]
Type=oneshot
User=lessor
Environment=LESSOR_STORE=/var/lib/lessor/lessor.db LESSOR_KEY_FILE=/etc/lessor/unseal.key XDG_STATE_HOME=/var/lib/lessor/state
ExecStart=/usr/bin/lessor reap
`,
		"lessor-reap.timer": `[Unit]
Description=Run lessor reap every minute
[Timer]
OnCalendar=minutely
Persistent=true
[Install]
WantedBy=timers.target
`,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s:\n got %q\nwant %q", name, b, want)
		}
	}
}

// lessor itself leaves out cobra's man page writer, whose markdown parser
// every process would initialise at start (cmd/gen writes the pages). The
// generator's own dependencies show that the check can see the writer.
func TestBinaryLeavesOutManWriter(t *testing.T) {
	deps := func(pkg string) map[string]bool {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	writer := []string{"github.com/spf13/cobra/doc", "github.com/russross/blackfriday/v2", "github.com/cpuguy83/go-md2man/v2/md2man"}
	lessor, gen := deps(".."), deps("./gen")
	if !lessor["github.com/lessorhq/lessor/cmd"] {
		t.Fatalf("go list -deps .. does not list the cmd package:\n%v", lessor)
	}
	for _, p := range writer {
		if lessor[p] {
			t.Errorf("the lessor binary links %s", p)
		}
		if !gen[p] {
			t.Errorf("cmd/gen does not link %s: is the list of the man page writer's packages stale?", p)
		}
	}
}
