package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

func newTokenCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "token <subcommand>",
		Short: "Create, look up, renew and revoke tokens",
		Example: `  lessor token create -policy=apps
  lessor token lookup
  lessor token capabilities database/creds/readonly`,
	}
	c.AddCommand(newTokenCreateCmd(f, g), newTokenLookupCmd(f, g), newTokenRenewCmd(f, g),
		newTokenRevokeCmd(f, g), newTokenCapabilitiesCmd(f, g))
	return c
}

func newTokenCreateCmd(f *Factory, g *globalOptions) *cobra.Command {
	var (
		policies                 []string
		ttl, explicitMax, period string
		displayName              string
		orphan, noDefault        bool
		useLimit                 int
		renewable                bool
		meta                     []string
	)
	c := &cobra.Command{
		Use:   "create [flags]",
		Short: "Create a token",
		Long: `Creates a token that is a child of the caller's token (unless -orphan). A
caller without root or sudo can only give the child a subset of its own
policies. Tokens look like lsr_…, so secret scanners can recognise them.`,
		Example: `  lessor token create -policy=apps
  lessor token create -policy=apps -ttl=8h -display-name=billing -field=token
  lessor token create -policy=admin -orphan -explicit-max-ttl=720h`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			data := map[string]any{}
			if len(policies) > 0 {
				var ps []any
				for _, p := range policies {
					for _, x := range strings.Split(p, ",") {
						if x = strings.TrimSpace(x); x != "" {
							ps = append(ps, x)
						}
					}
				}
				data["policies"] = ps
			}
			for name, v := range map[string]string{"ttl": ttl, "explicit-max-ttl": explicitMax, "period": period} {
				if c.Flags().Changed(name) {
					if _, err := logical.ParseDuration(v); err != nil {
						return usageErrorf("-%s: %v", name, err)
					}
					data[strings.ReplaceAll(name, "-", "_")] = v
				}
			}
			if displayName != "" {
				data["display_name"] = displayName
			}
			if noDefault {
				data["no_default_policy"] = true
			}
			if useLimit != 0 {
				data["num_uses"] = useLimit
			}
			if c.Flags().Changed("renewable") {
				data["renewable"] = renewable
			}
			if len(meta) > 0 {
				m := map[string]any{}
				for _, kv := range meta {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return usageErrorf("-metadata %q: expected key=value", kv)
					}
					m[k] = v
				}
				data["meta"] = m
			}
			path := "auth/token/create"
			if orphan {
				path = "auth/token/create-orphan"
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("create token", path, err)
			}
			return render(f, g, req, resp)
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&policies, "policy", nil, "policy to attach (repeat, or comma-separate)")
	fl.StringVar(&ttl, "ttl", "", "initial TTL (e.g. 1h)")
	fl.StringVar(&explicitMax, "explicit-max-ttl", "", "hard cap on the token's life, renewals included")
	fl.StringVar(&period, "period", "", "make a periodic token that every renewal resets to this TTL")
	fl.StringVar(&displayName, "display-name", "", "name shown in the audit log and in issued usernames")
	fl.BoolVar(&orphan, "orphan", false, "create a token with no parent (it survives its creator's revocation)")
	fl.BoolVar(&noDefault, "no-default-policy", false, "do not attach the default policy")
	fl.IntVar(&useLimit, "use-limit", 0, "number of uses before the token is revoked (0 = unlimited)")
	fl.BoolVar(&renewable, "renewable", true, "allow the token to be renewed")
	fl.StringArrayVar(&meta, "metadata", nil, "key=value metadata (repeat)")
	return c
}

func newTokenLookupCmd(f *Factory, g *globalOptions) *cobra.Command {
	var accessor bool
	c := &cobra.Command{
		Use:   "lookup [flags] [TOKEN]",
		Short: "Show a token's properties (your own by default)",
		Example: `  lessor token lookup
  lessor token lookup -accessor 4nLeqlfn2cDkLuMcUnbZmJCF`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "auth/token/lookup-self", Data: map[string]any{}}
			switch {
			case accessor && len(args) == 0:
				return usageErrorf("-accessor needs an accessor argument")
			case accessor:
				req.Operation = logical.UpdateOperation
				req.Path, req.Data["accessor"] = "auth/token/lookup-accessor", args[0]
			case len(args) == 1:
				tok, err := tokenArg(f, args[0])
				if err != nil {
					return err
				}
				req.Operation = logical.UpdateOperation
				req.Path, req.Data["token"] = "auth/token/lookup", tok
			}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("look up token", req.Path, err)
			}
			return render(f, g, req, resp)
		},
	}
	c.Flags().BoolVar(&accessor, "accessor", false, "treat the argument as an accessor")
	return c
}

func newTokenRenewCmd(f *Factory, g *globalOptions) *cobra.Command {
	var increment string
	c := &cobra.Command{
		Use:   "renew [flags] [TOKEN]",
		Short: "Renew a token (your own by default)",
		Example: `  lessor token renew
  lessor token renew -increment=2h`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "auth/token/renew-self", Data: map[string]any{}}
			if len(args) == 1 {
				tok, err := tokenArg(f, args[0])
				if err != nil {
					return err
				}
				req.Path, req.Data["token"] = "auth/token/renew", tok
			}
			if increment != "" {
				d, err := logical.ParseDuration(increment)
				if err != nil {
					return usageErrorf("-increment: %v", err)
				}
				req.Data["increment"] = int64(d.Seconds())
			}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("renew token", req.Path, err)
			}
			return render(f, g, req, resp)
		},
	}
	c.Flags().StringVar(&increment, "increment", "", "requested TTL from now (e.g. 1h)")
	return c
}

func newTokenRevokeCmd(f *Factory, g *globalOptions) *cobra.Command {
	var accessor, self bool
	var mode string
	c := &cobra.Command{
		Use:   "revoke [flags] [TOKEN]",
		Short: "Revoke a token, its children and their leases",
		Example: `  lessor token revoke -accessor 4nLeqlfn2cDkLuMcUnbZmJCF
  lessor token revoke - < leaked-token.txt
  lessor token revoke -self
  lessor token revoke -mode=orphan - < token.txt`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.UpdateOperation, Data: map[string]any{}}
			switch {
			case self && len(args) > 0:
				return usageErrorf("-self takes no argument")
			case self:
				req.Path = "auth/token/revoke-self"
			case len(args) == 0:
				return usageErrorf("not enough arguments (expected 1, got 0); use -self to revoke your own token")
			case accessor:
				req.Path, req.Data["accessor"] = "auth/token/revoke-accessor", args[0]
			default:
				tok, err := tokenArg(f, args[0])
				if err != nil {
					return err
				}
				req.Path, req.Data["token"] = "auth/token/revoke", tok
			}
			switch mode {
			case "", "path":
			case "orphan":
				if accessor || self {
					return usageErrorf("-mode=orphan works with a token argument only")
				}
				req.Path = "auth/token/revoke-orphan"
			default:
				return usageErrorf("-mode must be orphan or path, not %q", mode)
			}
			if _, err := f.Request(c.Context(), req); err != nil {
				return requestError("revoke token", req.Path, err)
			}
			fmt.Fprintln(f.IO.Out, "Success! Revoked token (if it existed)")
			return nil
		},
	}
	c.Flags().BoolVar(&accessor, "accessor", false, "treat the argument as an accessor")
	c.Flags().BoolVar(&self, "self", false, "revoke the token in use")
	c.Flags().StringVar(&mode, "mode", "", "orphan: revoke only this token, its children become orphans")
	return c
}

func newTokenCapabilitiesCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "capabilities [TOKEN] PATH",
		Short: "Show what a token may do on a path",
		Example: `  lessor token capabilities database/creds/readonly
  lessor token capabilities - sys/mounts/database < token.txt`,
		Args: rangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/capabilities-self", Data: map[string]any{}}
			path := args[len(args)-1]
			if len(args) == 2 {
				tok, err := tokenArg(f, args[0])
				if err != nil {
					return err
				}
				req.Path, req.Data["token"] = "sys/capabilities", tok
			}
			req.Data["path"] = path
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("capabilities", path, err)
			}
			if err := requireData(resp, "capabilities", path); err != nil {
				return err
			}
			caps, _ := logical.ParseCommaStrings(resp.Data["capabilities"])
			if o := g.formatOptions(f); o.Format.Encoded() && o.Field == "" {
				// Vault prints the list alone, not a response.
				return format.Encode(f.IO.Out, caps, o.Format)
			} else if o.Format != format.NameTable || o.Field != "" {
				return render(f, g, req, &logical.Response{Data: map[string]any{"capabilities": caps}})
			}
			sort.Strings(caps)
			// A server's text: a terminal must not obey it.
			fmt.Fprintln(f.IO.Out, format.EscapeControls(strings.Join(caps, ", ")))
			return nil
		},
	}
}

// tokenArg returns a token given as an argument; "-" reads it from
// standard input, which keeps it out of argv and shell history.
func tokenArg(f *Factory, arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	data, err := parseData(f, []string{"token=-"})
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(logical.String(data["token"]))
	if tok == "" {
		return "", usageErrorf("no token on standard input")
	}
	return tok, nil
}
