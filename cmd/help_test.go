package cmd

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
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

// The man pages cover every command and both help topics, and carry the
// examples; the systemd units are the ones `lessor reap -h` shows.
func TestGenerateManAndSystemd(t *testing.T) {
	c := newCompCLI(t)
	dir := t.TempDir()
	c.must("__generate", "man", "-gzip", dir)
	root := helpRoot()
	want := map[string]bool{}
	walkCommands(root, func(cmd *cobra.Command) {
		for p := cmd; p != nil; p = p.Parent() {
			if p.Hidden {
				return
			}
		}
		if cmd.IsAvailableCommand() || cmd.IsAdditionalHelpTopicCommand() || cmd == root {
			want[strings.ReplaceAll(cmd.CommandPath(), " ", "-")+".1.gz"] = true
		}
	})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		got[e.Name()] = true
	}
	for name := range want {
		if !got[name] {
			t.Errorf("no man page %s", name)
		}
	}
	for name := range got {
		if !want[name] {
			t.Errorf("unexpected man page %s", name)
		}
	}
	page := gunzip(t, filepath.Join(dir, "lessor-read.1.gz"))
	for _, s := range []string{".TH \"LESSOR-READ\" \"1\"", "lessor read database/creds/readonly", ".SH EXAMPLE", "LESSOR_FORMAT",
		"creds/<role> path"} {
		if !strings.Contains(page, s) {
			t.Errorf("lessor-read.1 lacks %q:\n%s", s, page)
		}
	}
	// Indented help text stays one line per line (a literal block), not a
	// reflowed paragraph.
	if reap := gunzip(t, filepath.Join(dir, "lessor-reap.1.gz")); !strings.Contains(reap, "\n[Timer]\nOnCalendar=minutely\n") {
		t.Errorf("lessor-reap.1 reflowed the timer unit:\n%s", reap)
	}
	if env := gunzip(t, filepath.Join(dir, "lessor-environment.1.gz")); !strings.Contains(env, "LESSOR_UNSEAL_KEY") {
		t.Errorf("lessor-environment.1 lacks the variables:\n%s", env)
	}

	c.must("__generate", "systemd", dir)
	for name, want := range map[string]string{
		"lessor-reap.service": `[Unit]
Description=Revoke expired lessor leases
[Service]
Type=oneshot
User=lessor
Environment=LESSOR_STORE=/var/lib/lessor/lessor.db LESSOR_KEY_FILE=/etc/lessor/unseal.key
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

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
