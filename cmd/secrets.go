package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

func newSecretsCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "secrets <subcommand>",
		Short: "Enable, list, tune, move and disable secrets engines",
		Example: `  lessor secrets enable database
  lessor secrets enable -path=db/prod database
  lessor secrets list -detailed`,
	}
	c.AddCommand(newSecretsEnableCmd(f, g), newSecretsDisableCmd(f, g), newSecretsListCmd(f, g),
		newSecretsTuneCmd(f, g), newSecretsMoveCmd(f, g))
	return c
}

type mountTTLFlags struct {
	defaultTTL, maxTTL string
}

func (m *mountTTLFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&m.defaultTTL, "default-lease-ttl", "", "default lease TTL for this engine (e.g. 1h; \"system\" to inherit)")
	c.Flags().StringVar(&m.maxTTL, "max-lease-ttl", "", "maximum lease TTL for this engine (e.g. 24h; \"system\" to inherit)")
}

func (m *mountTTLFlags) into(c *cobra.Command, data map[string]any) error {
	cfg := map[string]any{}
	for name, v := range map[string]string{"default-lease-ttl": m.defaultTTL, "max-lease-ttl": m.maxTTL} {
		if !c.Flags().Changed(name) {
			continue
		}
		if v != "system" {
			if _, err := logical.ParseDuration(v); err != nil {
				return usageErrorf("-%s: %v", name, err)
			}
		}
		cfg[strings.ReplaceAll(name, "-", "_")] = v
	}
	if len(cfg) > 0 {
		data["config"] = cfg
	}
	return nil
}

func newSecretsEnableCmd(f *Factory, g *globalOptions) *cobra.Command {
	var path, desc string
	var ttl mountTTLFlags
	c := &cobra.Command{
		Use:   "enable [flags] TYPE",
		Short: "Enable a secrets engine at a path",
		Long: `Enables a secrets engine of TYPE at -path (default: the type's name).
lessor knows one type: database.`,
		Example: `  lessor secrets enable database
  lessor secrets enable -path=db/prod -description="production" -max-lease-ttl=24h database`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			typ := args[0]
			if path == "" {
				path = typ
			}
			path = cleanPath(path) + "/"
			data := map[string]any{"type": typ}
			if desc != "" {
				data["description"] = desc
			}
			if err := ttl.into(c, data); err != nil {
				return err
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/mounts/" + path, Data: data}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("enable", path, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Enabled the %s secrets engine at: %s\n", typ, path)
			return nil
		},
	}
	c.Flags().StringVar(&path, "path", "", "where to mount the engine (default: TYPE)")
	c.Flags().StringVar(&desc, "description", "", "a human-friendly description")
	ttl.add(c)
	return c
}

func newSecretsDisableCmd(f *Factory, g *globalOptions) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "disable [flags] PATH",
		Short: "Disable a secrets engine, revoking its leases first",
		Long: `Revokes every lease issued under PATH (dropping their PostgreSQL roles), then
removes the engine and all of its configuration. If any revocation fails,
nothing is disabled, unless -force is given: then the failed leases are
forgotten, and their roles may remain (find them with reap -orphans);
-force needs the sudo capability on sys/mounts/PATH, and update and sudo on
sys/leases/revoke-force/PATH/, as revoke-force does. A credential being
issued meanwhile keeps its lease for the issue's 5-minute grace; disable
refuses until then, or forgets it with -force.`,
		Example: `  lessor secrets disable database
  lessor secrets disable -force db/old`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0]) + "/"
			req := &logical.Request{Operation: logical.DeleteOperation, Path: "sys/mounts/" + path, Data: map[string]any{}}
			if force {
				req.Data["force"] = true
			}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("disable", path, err)
			}
			if resp == nil {
				fmt.Fprintf(f.IO.Out, "Success! Disabled the secrets engine (if it existed) at: %s\n", path)
				return nil
			}
			warn(f, resp.Warnings)
			// An int here, a JSON number from a server.
			n, _ := logical.ParseInt(resp.Data["revoked_leases"])
			if n == 0 {
				fmt.Fprintf(f.IO.Out, "Success! Disabled the secrets engine at: %s\n", path)
				return nil
			}
			fmt.Fprintf(f.IO.Out, "Success! Disabled the secrets engine at: %s (revoked %s)\n", path, count(n, "lease", "leases"))
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "disable even if some leases cannot be revoked (forgets them)")
	return c
}

func newSecretsListCmd(f *Factory, g *globalOptions) *cobra.Command {
	var detailed bool
	c := &cobra.Command{
		Use:   "list [flags]",
		Short: "List the enabled secrets engines",
		Example: `  lessor secrets list
  lessor secrets list -detailed
  lessor secrets list -format=json`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "sys/mounts"}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("list", "sys/mounts", err)
			}
			if err := requireData(resp, "list", "sys/mounts"); err != nil {
				return err
			}
			o := g.formatOptions(f)
			if o.Format != format.NameTable || o.Field != "" {
				// Vault prints the mount table bare, keyed by path, which
				// is what scripts test a mount's presence against.
				return flatOut(f, g, resp.Data)
			}
			paths := make([]string, 0, len(resp.Data))
			for p := range resp.Data {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			header := []string{"Path", "Type", "Accessor", "Description"}
			if detailed {
				header = append(header, "Default TTL", "Max TTL")
			}
			var rows [][]string
			for _, p := range paths {
				m, _ := resp.Data[p].(map[string]any)
				row := []string{p, logical.String(m["type"]), logical.String(m["accessor"]), logical.String(m["description"])}
				if detailed {
					cfg, _ := m["config"].(map[string]any)
					row = append(row, ttlOrSystem(cfg["default_lease_ttl"]), ttlOrSystem(cfg["max_lease_ttl"]))
				}
				rows = append(rows, row)
			}
			format.Table(f.IO.Out, header, rows)
			return nil
		},
	}
	c.Flags().BoolVar(&detailed, "detailed", false, "show TTLs too")
	return c
}

func ttlOrSystem(v any) string {
	d, err := logical.ParseDuration(v)
	if err != nil || d == 0 {
		return "system"
	}
	return logical.HumanDuration(d)
}

func newSecretsTuneCmd(f *Factory, g *globalOptions) *cobra.Command {
	var desc string
	var ttl mountTTLFlags
	c := &cobra.Command{
		Use:   "tune [flags] PATH",
		Short: "Change a secrets engine's TTLs or description",
		Example: `  lessor secrets tune -default-lease-ttl=30m -max-lease-ttl=12h database
  lessor secrets tune -max-lease-ttl=system database`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := cleanPath(args[0]) + "/"
			data := map[string]any{}
			if err := ttl.into(c, data); err != nil {
				return err
			}
			if cfg, ok := data["config"].(map[string]any); ok {
				delete(data, "config")
				for k, v := range cfg {
					data[k] = v
				}
			}
			if c.Flags().Changed("description") {
				data["description"] = desc
			}
			if len(data) == 0 {
				return usageErrorf("nothing to tune: give -default-lease-ttl, -max-lease-ttl or -description")
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/mounts/" + path + "tune", Data: data}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("tune", path, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Tuned the secrets engine at: %s\n", path)
			return nil
		},
	}
	c.Flags().StringVar(&desc, "description", "", "a new description")
	ttl.add(c)
	return c
}

func newSecretsMoveCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "move SOURCE DESTINATION",
		Short: "Move a secrets engine to a new path, revoking its leases",
		Long: `Moves the engine at SOURCE to DESTINATION, keeping its configuration and
roles. Like Vault, it first revokes every lease issued under SOURCE, since
their ids name the old path.`,
		Example: `  lessor secrets move database db/prod`,
		Args:    exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			from, to := cleanPath(args[0])+"/", cleanPath(args[1])+"/"
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/remount", Data: map[string]any{"from": from, "to": to}}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("move", from, err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Finished moving secrets engine %s to %s\n", from, to)
			return nil
		},
	}
}
