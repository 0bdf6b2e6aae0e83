package cmd

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

func newAuditCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit <subcommand>",
		Short: "Enable, list and disable audit devices, and hash values to search for",
		Long: `Every request and response is written as one JSON line to each enabled audit
device. Secret values (passwords, tokens) appear only as HMAC-SHA256 under a
key of this store: use ` + "`lessor audit hash VALUE`" + ` to find them. Usernames and lease
ids stay in clear, so "who held role X" can be answered. If a device cannot
be written, the request fails rather than going unaudited.`,
		Example: `  lessor audit enable file file_path=/var/log/lessor/audit.log
  lessor audit list
  lessor audit hash - < leaked-password.txt`,
	}
	c.AddCommand(newAuditEnableCmd(f, g), newAuditDisableCmd(f, g), newAuditListCmd(f, g), newAuditHashCmd(f, g))
	return c
}

func newAuditEnableCmd(f *Factory, g *globalOptions) *cobra.Command {
	var path, desc string
	c := &cobra.Command{
		Use:     "enable [flags] TYPE [KEY=VALUE ...]",
		Short:   "Enable an audit device (type: file)",
		Example: `  lessor audit enable file file_path=/var/log/lessor/audit.log`,
		Args:    minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			typ := args[0]
			data, err := parseData(f, args[1:])
			if err != nil {
				return err
			}
			if path == "" {
				path = typ
			}
			path = cleanPath(path) + "/"
			data["type"] = typ
			if desc != "" {
				data["description"] = desc
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/audit/" + path, Data: data}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("enable audit device", path, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Enabled the %s audit device at: %s\n", typ, path)
			return nil
		},
	}
	c.Flags().StringVar(&path, "path", "", "name of the device (default: TYPE)")
	c.Flags().StringVar(&desc, "description", "", "a human-friendly description")
	return c
}

func newAuditDisableCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "disable PATH",
		Short:   "Disable an audit device",
		Example: `  lessor audit disable file`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0]) + "/"
			req := &logical.Request{Operation: logical.DeleteOperation, Path: "sys/audit/" + path}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("disable audit device", path, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Disabled audit device (if it was enabled) at: %s\n", path)
			return nil
		},
	}
}

func newAuditListCmd(f *Factory, g *globalOptions) *cobra.Command {
	var detailed bool
	c := &cobra.Command{
		Use:     "list [flags]",
		Short:   "List the enabled audit devices",
		Example: `  lessor audit list -detailed`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "sys/audit"}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("list audit devices", "sys/audit", err)
			}
			if o := g.formatOptions(f); o.Format != format.NameTable || o.Field != "" {
				// Vault prints the devices bare, keyed by path ({} for none).
				devices := map[string]any{}
				if resp != nil && resp.Data != nil {
					devices = resp.Data
				}
				return flatOut(f, g, devices)
			}
			if resp == nil || len(resp.Data) == 0 {
				fmt.Fprintln(f.IO.Out, "No audit devices are enabled.")
				return nil
			}
			paths := make([]string, 0, len(resp.Data))
			for p := range resp.Data {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			header := []string{"Path", "Type", "Description"}
			if detailed {
				header = append(header, "Options")
			}
			var rows [][]string
			for _, p := range paths {
				d, _ := resp.Data[p].(map[string]any)
				row := []string{p, logical.String(d["type"]), logical.String(d["description"])}
				if detailed {
					row = append(row, format.Value(d["options"]))
				}
				rows = append(rows, row)
			}
			format.Table(f.IO.Out, header, rows)
			return nil
		},
	}
	c.Flags().BoolVar(&detailed, "detailed", false, "show the devices' options")
	return c
}

func newAuditHashCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "hash VALUE|-",
		Short: "Print the HMAC of a value as it appears in the audit log",
		Long: `Prints the HMAC-SHA256 of VALUE under this store's audit key: grep the audit
log for it to find where a password or token was issued or used. Pass "-"
to read the value from standard input and keep it out of argv.`,
		Example: `  lessor audit hash - < leaked-password.txt
  grep "$(lessor audit hash - < leaked-password.txt)" /var/log/lessor/audit.log`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			val := args[0]
			if val == "-" {
				data, err := parseData(f, []string{"input=-"})
				if err != nil {
					return err
				}
				val = trimOneNewline(logical.String(data["input"]))
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/audit-hash", Data: map[string]any{"input": val}}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("hash", "sys/audit-hash", err)
			}
			if err := requireData(resp, "hash", "sys/audit-hash"); err != nil {
				return err
			}
			if o := g.formatOptions(f); o.Format != format.NameTable || o.Field != "" {
				return render(f, g, req, resp)
			}
			// A server's text: a terminal must not obey it.
			fmt.Fprintln(f.IO.Out, format.EscapeControls(logical.String(resp.Data["hash"])))
			return nil
		},
	}
}

func trimOneNewline(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
		if n := len(s); n > 0 && s[n-1] == '\r' {
			s = s[:n-1]
		}
	}
	return s
}
