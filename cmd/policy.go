package cmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/kvargs"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
)

func newPolicyCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy <subcommand>",
		Short: "Write, read, list, delete and format ACL policies",
		Example: `  lessor policy write apps apps-policy.hcl
  lessor policy read apps
  lessor policy list`,
	}
	c.AddCommand(newPolicyWriteCmd(f, g), newPolicyReadCmd(f, g), newPolicyListCmd(f, g),
		newPolicyDeleteCmd(f, g), newPolicyFmtCmd(f))
	return c
}

func newPolicyWriteCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "write NAME FILE|-",
		Short: "Upload a policy from a file or standard input",
		Example: `  lessor policy write apps apps-policy.hcl
  lessor policy write admin - < admin.hcl`,
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			name, src := args[0], args[1]
			var text []byte
			var err error
			if src == "-" {
				text, err = kvargs.ReadAll(f.IO.In, "standard input")
			} else {
				text, err = f.readArgFile(src)
			}
			if err != nil {
				return usageErrorf("read policy %s: %v", src, unwrapPathError(err))
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/policy/" + name, Data: map[string]any{"policy": string(text)}}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("write policy", name, err)
			}
			if resp != nil {
				warn(f, resp.Warnings)
				if n := logical.String(resp.Data["name"]); n != "" {
					name = n
				}
			}
			fmt.Fprintf(f.IO.Out, "Success! Uploaded policy: %s\n", name)
			return nil
		},
	}
}

func newPolicyReadCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "read NAME",
		Short:   "Print a policy's text",
		Example: `  lessor policy read apps`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			req := &logical.Request{Operation: logical.ReadOperation, Path: "sys/policy/" + name}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("read policy", name, err)
			}
			if resp == nil {
				return fmt.Errorf("no policy named: %s", name)
			}
			text := logical.String(resp.Data["policy"])
			if o := g.formatOptions(f); o.Format != format.NameTable || o.Field != "" {
				// Vault prints {"policy": …} bare, not a response.
				return flatOut(f, g, map[string]any{"policy": text})
			}
			if f.IO.OutTTY {
				// A comment may hold escape sequences that hide the
				// rules after it from whoever reads them here; its
				// writer (any holder of a policy write, or a hostile
				// server) chose them. Piped, the text stays exact, to
				// be edited and written back.
				text = format.EscapeControls(text)
			}
			fmt.Fprintln(f.IO.Out, strings.TrimSpace(text))
			return nil
		},
	}
}

func newPolicyListCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List policy names",
		Example: `  lessor policy list`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.ListOperation, Path: "sys/policy/"}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("list", "sys/policy", err)
			}
			if err := requireData(resp, "list", "sys/policy"); err != nil {
				return err
			}
			keys, _ := logical.ParseCommaStrings(resp.Data["keys"])
			if o := g.formatOptions(f); o.Format != format.NameTable {
				return listOut(f, g, keys, "sys/policy")
			}
			for _, k := range keys {
				// A server's text: a terminal must not obey it.
				fmt.Fprintln(f.IO.Out, format.EscapeControls(k))
			}
			return nil
		},
	}
}

func newPolicyDeleteCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a policy",
		Example: `  lessor policy delete apps`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			req := &logical.Request{Operation: logical.DeleteOperation, Path: "sys/policy/" + name}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("delete policy", name, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Deleted policy: %s\n", name)
			return nil
		},
	}
}

func newPolicyFmtCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "fmt FILE",
		Short:   "Rewrite a policy file in canonical form",
		Long:    "Parses FILE (it must be a valid policy) and rewrites it in place in canonical HCL.",
		Example: `  lessor policy fmt apps-policy.hcl`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			text, err := f.readArgFile(path)
			if err != nil {
				return usageErrorf("read policy %s: %v", path, unwrapPathError(err))
			}
			out, err := policy.Format(string(text))
			if err != nil {
				return usageErrorf("%s: %v", path, err)
			}
			st, err := os.Stat(path)
			if err != nil {
				return usageErrorf("%s: %v", path, unwrapPathError(err))
			}
			if err := writeFileAtomic(path, []byte(out), st.Mode().Perm()); err != nil {
				return &localError{fmt.Errorf("write %s: %w", path, err)}
			}
			fmt.Fprintf(f.IO.Out, "Success! Formatted policy: %s\n", path)
			return nil
		},
	}
}
