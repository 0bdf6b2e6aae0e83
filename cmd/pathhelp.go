package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

// newPathHelpCmd is Vault's `path-help`: what a path does and the fields
// each operation reads, as the backend declares them. It is a request like
// any other (a help operation): the token must be allowed some operation
// on the path, so a token that may not list the mounts learns nothing
// about a path it has no grant on, not even whether it is mounted.
func newPathHelpCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "path-help PATH",
		Short: "Show the operations and fields of a path",
		Long: `Shows what PATH does: the operations it accepts and the fields each one
reads (name, type, description), as the backend serving it declares them.
Works for sys/..., auth/token/... and the paths of a mounted secrets engine
(database/config/NAME, database/roles/NAME, database/creds/NAME, ...).

Like any request, it needs a token allowed some operation on PATH (any
capability but deny); a path no backend serves is an "unsupported path"
error (exit 2).`,
		Example: `  lessor path-help database/roles/readonly
  lessor path-help -format=json auth/token/create
  lessor path-help sys/mounts/database`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0])
			req := &logical.Request{Operation: logical.HelpOperation, Path: path}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("path-help", path, err)
			}
			if err := requireData(resp, "path-help", path); err != nil {
				return err
			}
			o := g.formatOptions(f)
			if o.Format != format.NameTable {
				return format.Encode(f.IO.Out, resp.Data, o.Format)
			}
			printPathHelp(f, resp.Data)
			return nil
		},
		ValidArgsFunction: completePaths(f),
	}
}

// printPathHelp prints a help response as text: the path, what it does,
// its operations, then a table of its fields.
func printPathHelp(f *Factory, data map[string]any) {
	w := f.IO.Out
	// A server's text, as the table's below: a terminal must not obey it.
	text := func(v any) string { return format.EscapeControls(logical.String(v)) }
	fmt.Fprintf(w, "Path:        %s\n", text(data["path"]))
	if p := text(data["pattern"]); p != text(data["path"]) {
		fmt.Fprintf(w, "Pattern:     %s\n", p)
	}
	fmt.Fprintf(w, "Description: %s\n", text(data["description"]))
	fmt.Fprintf(w, "Operations:  %s\n", format.EscapeControls(strings.Join(logical.StringList(data["operations"]), ", ")))
	fields, _ := data["fields"].(map[string]any)
	if len(fields) == 0 {
		fmt.Fprintln(w, "\nThis path takes no fields.")
		return
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	rows := make([][]string, 0, len(names))
	for _, name := range names {
		e, _ := fields[name].(map[string]any)
		rows = append(rows, []string{name, logical.String(e["type"]), strings.Join(logical.StringList(e["operations"]), ","), logical.String(e["description"])})
	}
	fmt.Fprintln(w)
	format.Table(w, []string{"Field", "Type", "Operations", "Description"}, rows)
}
