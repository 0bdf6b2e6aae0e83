// Command gen writes lessor's man pages, one per command and one per help
// topic, from the command tree of the lessor binary built from the same
// tree, for the release build:
//
//	go run ./cmd/gen man [-gzip] DIR
//
// It is a program of its own, not a hidden lessor command like
// `lessor __generate`, because cobra's man page writer brings a markdown
// parser whose package initialisation every lessor process would pay for.
// The version on the pages is lessor's: set it as for lessor, with
// -ldflags "-X github.com/lessorhq/lessor/cmd.version=…".
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/lessorhq/lessor/cmd"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

const usage = "usage: gen man [-gzip] DIR"

// run returns the exit code: 0, 1 when writing fails, 2 for a usage
// mistake.
func run(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "man" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("gen man", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	gz := fs.Bool("gzip", false, "compress each page (name.1.gz), as Debian packages want")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	root, version := cmd.CommandTree()
	if err := generateMan(root, version, fs.Arg(0), *gz); err != nil {
		fmt.Fprintf(stderr, "gen: error: %v\n", err)
		return 1
	}
	return 0
}

// generateMan writes a page per available command and per help topic
// (cobra's tree walk skips topics, yet `help environment` and `help
// exit-codes` are what an administrator looks for). The page date comes
// from SOURCE_DATE_EPOCH when it is a real time, so release builds are
// reproducible; goreleaser passes 0 before the year 1 when it has no git
// state, and a page dated 0001 helps nobody.
func generateMan(root *cobra.Command, version, dir string, gz bool) error {
	date := time.Now()
	if epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil && epoch > 0 {
		date = time.Unix(epoch, 0)
	}
	header := func() *doc.GenManHeader {
		return &doc.GenManHeader{Section: "1", Source: "lessor " + version, Manual: "lessor manual", Date: &date}
	}
	// The tree as lessor runs it: cobra adds its help command, and its
	// completion command unless lessor has its own, only when executing.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
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
		return fmt.Errorf("man pages: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := doc.GenManTree(root, header(), tmp); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for _, t := range root.Commands() {
		if !t.IsAdditionalHelpTopicCommand() {
			continue
		}
		var b bytes.Buffer
		if err := doc.GenMan(t, header(), &b); err != nil {
			return fmt.Errorf("man page %s: %w", t.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "lessor-"+t.Name()+".1"), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("man page %s: %w", t.Name(), err)
		}
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for _, p := range pages {
		text, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("man page %s: %w", p, err)
		}
		name := filepath.Base(p)
		if gz {
			// No name or time in the gzip header: the same page gives the
			// same bytes, release after release.
			var b bytes.Buffer
			w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			if _, err := w.Write(text); err != nil {
				return fmt.Errorf("man page %s: %w", name, err)
			}
			if err := w.Close(); err != nil {
				return fmt.Errorf("man page %s: %w", name, err)
			}
			text, name = b.Bytes(), name+".gz"
		}
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			return fmt.Errorf("man page %s: %w", name, err)
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
