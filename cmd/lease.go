package cmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

func newLeaseCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "lease <subcommand>",
		Short: "Renew, revoke, look up and list leases",
		Example: `  lessor lease renew database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
  lessor lease revoke -prefix database/creds/readonly
  lessor lease list database/creds/readonly`,
	}
	c.AddCommand(newLeaseRenewCmd(f, g, "renew"), newLeaseRevokeCmd(f, g), newLeaseLookupCmd(f, g), newLeaseListCmd(f, g))
	return c
}

// newRenewCmd is the legacy top-level `renew` the seed guide uses.
func newRenewCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := newLeaseRenewCmd(f, g, "renew")
	c.Short = "Renew a lease (same as `lease renew`)"
	c.Example = `  lessor renew database/creds/readonly/2AbWopfdHwscMcejEJroqLfq`
	return c
}

func newLeaseRenewCmd(f *Factory, g *globalOptions, use string) *cobra.Command {
	var increment string
	c := &cobra.Command{
		Use:   use + " [flags] LEASE_ID",
		Short: "Extend a lease and its credential's VALID UNTIL",
		Long: `Renews a lease: the new TTL (-increment, else the role's default) counts from
now and never passes the issue time plus the effective max TTL. The
PostgreSQL role's VALID UNTIL moves with it.`,
		Example: `  lessor lease renew database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
  lessor lease renew -increment=2h -format=json database/creds/readonly/2AbWopfdHwscMcejEJroqLfq`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			id := cleanPath(args[0])
			data := map[string]any{"lease_id": id}
			if increment != "" {
				d, err := logical.ParseDuration(increment)
				if err != nil {
					return usageErrorf("-increment: %v", err)
				}
				data["increment"] = int64(d / time.Second)
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/leases/renew", Data: data}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("renew", id, err)
			}
			return render(f, g, req, resp)
		},
		ValidArgsFunction: completeLeases(f),
	}
	c.Flags().StringVar(&increment, "increment", "", "requested TTL from now (e.g. 1h or 3600)")
	return c
}

func newLeaseRevokeCmd(f *Factory, g *globalOptions) *cobra.Command {
	var prefix, force, sync bool
	c := &cobra.Command{
		Use:   "revoke [flags] ID|PREFIX",
		Short: "Revoke a lease, or every lease under a prefix, now",
		Long: `Revokes the lease and drops its PostgreSQL role before returning: lessor is
always synchronous (-sync is accepted for Vault compatibility and changes
nothing). A revocation that fails is recorded on the lease and retried by
` + "`lessor reap`" + `, and the command exits 2.

With -prefix, every lease under the prefix (whole path segments only:
database/creds/read does not match database/creds/readonly/…). With -force
(which needs -prefix), leases whose revocation fails are forgotten anyway:
their roles may remain in PostgreSQL; reap -orphans can still find them.
An unknown lease id succeeds silently, as in Vault.`,
		Example: `  lessor lease revoke database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
  lessor lease revoke -prefix database/creds/readonly
  lessor lease revoke -force -prefix database/creds/readonly`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			id := cleanPath(args[0])
			if force && !prefix {
				return usageErrorf("specifying -force requires also specifying -prefix")
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Data: map[string]any{}}
			switch {
			case force:
				req.Path = "sys/leases/revoke-force/" + id
			case prefix:
				req.Path = "sys/leases/revoke-prefix/" + id
			default:
				req.Path = "sys/leases/revoke"
				req.Data["lease_id"] = id
			}
			if force {
				fmt.Fprintln(f.IO.Err, "Warning! Force-removing leases can leave their roles alive in PostgreSQL; `lessor reap -orphans -dry-run` lists what remains.")
			}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("revoke", id, err)
			}
			if resp != nil {
				warn(f, resp.Warnings)
			}
			switch {
			case force:
				fmt.Fprintf(f.IO.Out, "Success! Force revoked any leases with prefix: %s\n", id)
			case prefix:
				fmt.Fprintf(f.IO.Out, "Success! Revoked any leases with prefix: %s\n", id)
			default:
				fmt.Fprintf(f.IO.Out, "Success! Revoked lease: %s\n", id)
			}
			return nil
		},
		ValidArgsFunction: completeLeases(f),
	}
	c.Flags().BoolVar(&prefix, "prefix", false, "treat the argument as a prefix (needs sudo)")
	c.Flags().BoolVar(&force, "force", false, "with -prefix: forget leases even if their revocation fails (needs sudo)")
	c.Flags().BoolVar(&sync, "sync", false, "accepted for Vault compatibility; lessor always revokes synchronously")
	return c
}

func newLeaseLookupCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "lookup LEASE_ID",
		Short:   "Show a lease's times, state and last revocation error",
		Example: `  lessor lease lookup database/creds/readonly/2AbWopfdHwscMcejEJroqLfq`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			id := cleanPath(args[0])
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/leases/lookup", Data: map[string]any{"lease_id": id}}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("look up lease", id, err)
			}
			return render(f, g, req, resp)
		},
		ValidArgsFunction: completeLeases(f),
	}
}

func newLeaseListCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List leases with their state, expiry and last error",
		Long: `Lists every lease under PREFIX (all leases by default) with its state
(pending, active, expired, revoking, failed), expiry, revocation attempts
and last error. An expired lease is one past its expiry that reap has not
revoked yet. Needs sudo on sys/leases/entries.`,
		Example: `  lessor lease list
  lessor lease list database/creds/readonly
  lessor lease list -format=json`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = cleanPath(args[0])
			}
			req := &logical.Request{Operation: logical.ReadOperation, Path: strings.TrimSuffix("sys/leases/entries/"+prefix, "/")}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("list leases", prefix, err)
			}
			if resp == nil {
				// No leases is an answer, not a failure: the same shape
				// as a list, with none in it.
				resp = &logical.Response{Data: map[string]any{"leases": []map[string]any{}}}
			}
			if o := g.formatOptions(f); o.Format != format.NameTable || o.Field != "" {
				return render(f, g, req, resp)
			}
			rows := [][]string{}
			for _, l := range leaseRows(resp.Data["leases"]) {
				rows = append(rows, []string{logical.String(l["id"]), logical.String(l["state"]),
					logical.String(l["expire_time"]), logical.String(l["revoke_attempts"]), logical.String(l["revoke_error"])})
			}
			format.Table(f.IO.Out, []string{"Lease ID", "State", "Expires", "Attempts", "Last Error"}, rows)
			return nil
		},
	}
}

// leaseRows reads a lease list's entries: maps from the local backend,
// JSON objects (decoded as []any) from a server.
func leaseRows(v any) []map[string]any {
	switch x := v.(type) {
	case []map[string]any:
		return x
	case []any:
		rows := make([]map[string]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				rows = append(rows, m)
			}
		}
		return rows
	}
	return nil
}
