package cmd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// The hidden __generate command writes generated files from the real
// command tree: the completion scripts committed under completions/ (a
// test regenerates and diffs them), and the systemd units the release
// build packages. One source for each, so help, packages and units cannot
// drift apart. The man pages come from the same tree through cmd/gen, a
// separate program, because the man page writer (cobra/doc and its
// markdown parser) would otherwise be linked into, and initialised by,
// every lessor process.

// completionFiles are the committed scripts, by shell.
var completionFiles = map[string]string{
	"bash": "lessor.bash",
	"zsh":  "lessor.zsh",
	"fish": "lessor.fish",
}

func newGenerateCmd(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:    "__generate <completions|systemd> DIR",
		Short:  "Write the generated files of a release (for the build, not for users)",
		Hidden: true,
		Example: `  lessor __generate completions completions
  lessor __generate systemd build/systemd`,
	}
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
