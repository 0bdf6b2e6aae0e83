package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/kvargs"
	"github.com/lessorhq/lessor/pkg/logical"
)

func newReadCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "read PATH [KEY=VALUE ...]",
		Short: "Read data, or issue a credential, at a path",
		Long: `Reads the data at PATH. Reading a database engine's creds/<role> path issues
a new PostgreSQL credential with a lease.

KEY=VALUE pairs are passed as request data, parsed like write's.

Every read of a creds/<role> path issues a new credential: two calls with
-field=username and -field=password give a username and a password that do
not belong together. Take both from one call: ` + "`lessor exec PATH -- COMMAND`" + `
runs a command with them in its environment, and -format=env (or dotenv,
pgpass, dsn) prints them together.`,
		Example: `  lessor read database/creds/readonly
  lessor read -format=json database/creds/readonly
  eval "$(lessor read -format=env database/creds/readonly)" && psql -c 'SELECT 1'
  lessor exec database/creds/readonly -- psql -c 'SELECT 1'
  lessor read database/config/postgresql`,
		Args: minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0])
			data, err := parseData(f, args[1:])
			if err != nil {
				return err
			}
			req := &logical.Request{Operation: logical.ReadOperation, Path: path, Data: data}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("read", path, err)
			}
			if resp == nil {
				return fmt.Errorf("no value found at %s", path)
			}
			if err := render(f, g, req, resp); err != nil {
				return err
			}
			if resp.Secret != nil {
				failpoint.Hit(failpoint.IssueAfterPrint)
			}
			return nil
		},
		ValidArgsFunction: completePaths(f),
	}
}

func cleanPath(p string) string { return strings.Trim(strings.TrimSpace(p), "/") }

// parseData parses KEY=VALUE arguments; any mistake is a local error.
func parseData(f *Factory, args []string) (map[string]any, error) {
	data, err := kvargs.ParseFiles(args, f.IO.In, f.readArgFile)
	if err != nil {
		return nil, usageErrorf("failed to parse K=V data: %v", err)
	}
	return data, nil
}

func newWriteCmd(f *Factory, g *globalOptions) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "write PATH [KEY=VALUE ...]",
		Short: "Write data, configuration or secrets at a path",
		Long: `Writes data to PATH. Data is given as KEY=VALUE pairs:

  key=value     a string (repeat a key to make a list)
  key=@file     the raw contents of a file
  key=-         all of standard input
  @file.json    merge a JSON object from a file
  -             merge a JSON object from standard input

Keep secrets out of argv: pass passwords as key=@file or key=-.`,
		Example: `  lessor write database/config/postgresql plugin_name=postgresql-database-plugin \
      allowed_roles=readonly username=lessor_admin password=@admin-password.txt \
      connection_url='postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp'
  lessor write database/roles/readonly db_name=postgresql creation_statements=@readonly.sql default_ttl=1h max_ttl=24h
  lessor write -force database/rotate-root/postgresql`,
		Args: minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0])
			data, err := parseData(f, args[1:])
			if err != nil {
				return err
			}
			if len(data) == 0 && !force {
				return usageErrorf("must supply data or use -force")
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("write", path, err)
			}
			empty := resp == nil || (resp.Data == nil && resp.Secret == nil && resp.Auth == nil)
			if o := g.formatOptions(f); empty && resp != nil && len(resp.Warnings) > 0 && o.Format.Encoded() && o.Field == "" {
				// Vault prints the envelope, its warnings array holding
				// them, so that a script parsing stdout sees them.
				return render(f, g, req, resp)
			}
			if empty {
				if resp != nil {
					warn(f, resp.Warnings)
				}
				if resp == nil || len(resp.Warnings) == 0 {
					success(f, g, false, "Data written to: %s", path)
				}
				return nil
			}
			if err := render(f, g, req, resp); err != nil {
				return err
			}
			if resp.Secret != nil {
				failpoint.Hit(failpoint.IssueAfterPrint)
			}
			return nil
		},
		ValidArgsFunction: completePaths(f),
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "allow a write with no data (e.g. rotate-root)")
	return c
}

func newListCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list PATH",
		Short: "List the keys at a path",
		Example: `  lessor list database/roles
  lessor list database/config
  lessor list -format=json sys/leases/lookup/database/creds/readonly`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0])
			req := &logical.Request{Operation: logical.ListOperation, Path: path + "/"}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("list", path, err)
			}
			var keys []string
			if resp != nil {
				keys, _ = logical.ParseCommaStrings(resp.Data["keys"])
				warn(f, resp.Warnings)
			}
			if len(keys) == 0 {
				// As Vault's CLI: a script asking for JSON or YAML gets
				// an empty object to parse, and exit 2 says that nothing
				// was there; the table says so on stderr.
				if n, err := format.Parse(string(g.formatOptions(f).Format)); err == nil && n.Encoded() {
					if err := format.Encode(f.IO.Out, map[string]any{}, n); err != nil {
						return err
					}
					return &exitCodeError{code: exitFailed}
				}
				return fmt.Errorf("no value found at %s", path)
			}
			return listOut(f, g, keys, path)
		},
		ValidArgsFunction: completePaths(f),
	}
}

func newDeleteCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete the data at a path",
		Example: `  lessor delete database/roles/readonly
  lessor delete database/config/postgresql`,
		Args: minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0])
			data, err := parseData(f, args[1:])
			if err != nil {
				return err
			}
			req := &logical.Request{Operation: logical.DeleteOperation, Path: path, Data: data}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("delete", path, err)
			}
			if resp != nil {
				warn(f, resp.Warnings)
			}
			success(f, g, false, "Data deleted (if it existed) at: %s", path)
			return nil
		},
		ValidArgsFunction: completePaths(f),
	}
}
