package cmd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// The hidden __generate command writes every generated file from the real
// command tree: the completion scripts committed under completions/ (a
// test regenerates and diffs them), and the man pages and systemd units
// the release build packages. One source for each, so help, packages and
// pages cannot drift apart.

// completionFiles are the committed scripts, by shell.
var completionFiles = map[string]string{
	"bash": "lessor.bash",
	"zsh":  "lessor.zsh",
	"fish": "lessor.fish",
}

func newGenerateCmd(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:    "__generate <completions|man|systemd> DIR",
		Short:  "Write the generated files of a release (for the build, not for users)",
		Hidden: true,
		Example: `  lessor __generate completions completions
  lessor __generate man -gzip man
  lessor __generate systemd build/systemd`,
	}
	var gz bool
	man := &cobra.Command{
		Use:     "man [flags] DIR",
		Short:   "Write one man page per command, and one per help topic",
		Example: "  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) lessor __generate man -gzip man",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return generateMan(c.Root(), args[0], gz)
		},
	}
	man.Flags().BoolVar(&gz, "gzip", false, "compress each page (name.1.gz), as Debian packages want")
	c.AddCommand(
		&cobra.Command{
			Use:     "completions DIR",
			Short:   "Write the bash, zsh and fish completion scripts",
			Example: "  lessor __generate completions completions",
			Args:    exactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return generateCompletions(c.Root(), args[0])
			},
		},
		man,
		&cobra.Command{
			Use:     "systemd DIR",
			Short:   "Write lessor-reap.service and lessor-reap.timer, as `lessor reap -h` shows them",
			Example: "  lessor __generate systemd build/systemd",
			Args:    exactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return generateSystemd(c.Root(), args[0])
			},
		},
	)
	return c
}

// generateCompletions writes the bash, zsh and fish scripts into dir.
func generateCompletions(root *cobra.Command, dir string) error {
	for _, shell := range completionShells {
		name, ok := completionFiles[shell]
		if !ok {
			continue
		}
		var b bytes.Buffer
		if err := writeCompletion(root, shell, &b); err != nil {
			return genError(shell+" completion", err)
		}
		if err := writeGenerated(dir, name, b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// generateMan writes a page per available command and per help topic
// (cobra's tree walk skips topics, yet `help environment` and `help
// exit-codes` are what an administrator looks for). The page date comes
// from SOURCE_DATE_EPOCH when it is a real time, so release builds are
// reproducible; goreleaser passes 0 before the year 1 when it has no git
// state, and a page dated 0001 helps nobody.
func generateMan(root *cobra.Command, dir string, gz bool) error {
	v, _, _ := buildVersion()
	date := time.Now()
	if epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil && epoch > 0 {
		date = time.Unix(epoch, 0)
	}
	header := func() *doc.GenManHeader {
		return &doc.GenManHeader{Section: "1", Source: "lessor " + v, Manual: "lessor manual", Date: &date}
	}
	root.DisableAutoGenTag = true
	var toMarkdown func(c *cobra.Command)
	toMarkdown = func(c *cobra.Command) {
		c.Long = manMarkdown(c.Long)
		for _, sub := range c.Commands() {
			toMarkdown(sub)
		}
	}
	toMarkdown(root)
	tmp, err := os.MkdirTemp("", "lessor-man-")
	if err != nil {
		return genError("man pages", err)
	}
	defer os.RemoveAll(tmp)
	if err := doc.GenManTree(root, header(), tmp); err != nil {
		return genError("man pages", err)
	}
	for _, t := range root.Commands() {
		if !t.IsAdditionalHelpTopicCommand() {
			continue
		}
		var b bytes.Buffer
		if err := doc.GenMan(t, header(), &b); err != nil {
			return genError("man page "+t.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "lessor-"+t.Name()+".1"), b.Bytes(), 0o644); err != nil {
			return genError("man page "+t.Name(), err)
		}
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return genError("man pages", err)
	}
	for _, p := range pages {
		text, err := os.ReadFile(p)
		if err != nil {
			return genError("man page "+p, err)
		}
		name := filepath.Base(p)
		if gz {
			// No name or time in the gzip header: the same page gives the
			// same bytes, release after release.
			var b bytes.Buffer
			w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			if _, err := w.Write(text); err != nil {
				return genError("man page "+name, err)
			}
			if err := w.Close(); err != nil {
				return genError("man page "+name, err)
			}
			text, name = b.Bytes(), name+".gz"
		}
		if err := writeGenerated(dir, name, text); err != nil {
			return err
		}
	}
	return nil
}

// manMarkdown turns help text, written for a terminal, into the markdown
// that cobra's man page writer expects: indented lines (tables, unit files,
// command lines) become literal blocks instead of reflowed paragraphs, and
// <, > and * stay literal instead of becoming tags and bullets.
func manMarkdown(text string) string {
	var b strings.Builder
	inBlock, prevBlank := false, true
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "  "):
			if !inBlock && !prevBlank {
				b.WriteString("\n")
			}
			inBlock = true
			b.WriteString("  " + line)
		case line == "":
		default:
			if inBlock {
				b.WriteString("\n")
			}
			inBlock = false
			b.WriteString(strings.NewReplacer("<", `\<`, ">", `\>`, "*", `\*`).Replace(line))
		}
		b.WriteString("\n")
		prevBlank = line == ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// generateSystemd writes the reap service and timer exactly as `lessor
// reap -h` documents them, so the packaged units and the help cannot
// disagree.
func generateSystemd(root *cobra.Command, dir string) error {
	reap, _, err := root.Find([]string{"reap"})
	if err != nil || reap.Name() != "reap" {
		return genError("systemd units", fmt.Errorf("no reap command"))
	}
	for _, name := range []string{"lessor-reap.service", "lessor-reap.timer"} {
		unit, err := indentedBlockAfter(reap.Long, "/"+name+":")
		if err != nil {
			return genError(name, err)
		}
		if err := writeGenerated(dir, name, []byte(unit)); err != nil {
			return err
		}
	}
	return nil
}

// indentedBlockAfter returns the indented lines that follow the line
// ending in marker, with the indentation removed: the unit files shown in
// a help text.
func indentedBlockAfter(text, marker string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	found := false
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		if !found {
			found = strings.HasSuffix(line, marker)
			continue
		}
		if line != "" && !strings.HasPrefix(line, "  ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(line, "  "))
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("no block after %q in the help text", marker)
	}
	return strings.Join(lines, "\n") + "\n", nil
}

func writeGenerated(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return genError(name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		return genError(name, err)
	}
	return nil
}
