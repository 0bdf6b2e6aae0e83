// Package cmd is lessor's command line: cobra commands built by
// constructors over a Factory of lazy dependencies. Main runs the root
// command, and is the one place that prints errors and picks exit codes.
package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lessorhq/lessor/pkg/format"
)

// Main runs lessor with the process's arguments and streams and returns the
// exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if testOnlyArmFailpoints != nil {
		testOnlyArmFailpoints()
	}
	f := newFactory(os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	return run(ctx, f, os.Args[1:])
}

// testOnlyArmFailpoints is a test seam, set only by the test binary's
// TestMain: it arms pkg/failpoint's steps, so that crash tests can stop a
// real lessor process at one of them. A shipped binary leaves it nil, and
// no failpoint can be armed from its environment or flags.
var testOnlyArmFailpoints func()

// run executes one command line and returns its exit code.
func run(ctx context.Context, f *Factory, args []string) int {
	root := newRootCmd(f)
	root.SetArgs(normalizeFlags(root, args))
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.Err)
	unknown := refuseUnknownSubcommands(root)
	err := root.ExecuteContext(ctx)
	f.close()
	if err == nil {
		err = *unknown
	}
	if err != nil {
		printError(f.IO.Err, err)
	}
	return exitCode(err)
}

// refuseUnknownSubcommands makes a word that names no subcommand of a
// command group (`lessor lease revok`, `lessor nosuch`) a usage error
// instead of the group's help and exit 0, so that a script with a typo
// fails rather than "succeeds" without doing anything. Cobra shows a
// group's help through its help function whether or not words follow, so
// the check sits there: the returned error is set, and no help printed,
// when the group was given a word it does not know.
func refuseUnknownSubcommands(root *cobra.Command) *error {
	var unknown error
	// The root gets an Args of its own, so that cobra sends an unknown
	// top-level word here too instead of failing with its own multi-line
	// message and exit code.
	root.Args = cobra.ArbitraryArgs
	help := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c.HasSubCommands() && !c.Runnable() && c.Flags().Parsed() {
			if rest := c.Flags().Args(); len(rest) > 0 {
				unknown = unknownSubcommand(c, rest[0])
				return
			}
		}
		help(c, args)
	})
	// `lessor help lease revok` and `lessor help nosuch` likewise.
	root.InitDefaultHelpCmd()
	for _, h := range root.Commands() {
		if h.Name() != "help" || h.Run == nil {
			continue
		}
		show := h.Run
		h.Run = nil
		h.RunE = func(c *cobra.Command, args []string) error {
			if target, rest, err := root.Find(args); err == nil && target.HasSubCommands() && len(rest) > 0 {
				return unknownSubcommand(target, rest[0])
			}
			show(c, args)
			return nil
		}
	}
	return &unknown
}

// vaultOnlyCommands are Vault's top-level commands that lessor has under
// another name.
var vaultOnlyCommands = map[string]string{
	"status": "operator status",
	"unseal": "operator status",
	"revoke": "lease revoke",
}

func unknownSubcommand(c *cobra.Command, word string) error {
	err := usageErrorf("unknown command %q for %q", word, c.CommandPath())
	if !c.HasParent() {
		if alt, ok := vaultOnlyCommands[word]; ok {
			return withHint(err, "did you mean `lessor %s`?", alt)
		}
	}
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := c.SuggestionsFor(word); len(s) > 0 {
		return withHint(err, "did you mean `%s %s`?", c.CommandPath(), strings.Join(s, "` or `"+c.CommandPath()+" "))
	}
	return withHint(err, "see `%s -h` for its commands", c.CommandPath())
}

// CommandTree returns lessor's command tree and version for programs that
// write files from them at build time: cmd/gen writes the man pages, so
// that the man page writer is not linked into lessor itself. The commands
// are for reading; their factory has no streams and an empty environment.
func CommandTree() (root *cobra.Command, version string) {
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(string) string { return "" })
	version, _, _ = buildVersion()
	return newRootCmd(f), version
}

type globalOptions struct {
	name    format.Name // the parsed format, set by apply
	format  string
	field   string
	store   string
	keyFile string
	config  string
}

func newRootCmd(f *Factory) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "lessor <command> [args]",
		Short: "Short-lived PostgreSQL credentials from a local encrypted store",
		Long: `lessor hands out short-lived PostgreSQL credentials the way Vault's database
secrets engine does, with no server: every command opens one local state
file encrypted with AES-256-GCM, does its work and exits, and ` + "`lessor reap`" + `,
run from cron or a systemd timer, revokes what has expired.

Flags take one dash or two: -format=json and --format=json are the same.`,
		Example: `  lessor operator init
  lessor secrets enable database
  lessor write database/config/postgresql plugin_name=postgresql-database-plugin \
      allowed_roles=readonly connection_url='postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp' \
      username=lessor_admin password=@admin-password.txt
  lessor write database/roles/readonly db_name=postgresql creation_statements=@readonly.sql default_ttl=1h max_ttl=24h
  lessor read database/creds/readonly`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{},
		PersistentPreRunE: func(c *cobra.Command, args []string) error {
			return g.apply(f, c)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.format, "format", "", "output format: "+strings.Join(format.Names(), ", ")+" (env LESSOR_FORMAT)")
	pf.StringVar(&g.field, "field", "", "print only this field of the response, with no trailing newline when piped")
	pf.Var(newStoreArgValue("-store", &g.store), "store", "path of the encrypted state file (env LESSOR_STORE; default $XDG_DATA_HOME/lessor/lessor.db)")
	pf.StringVar(&g.keyFile, "key-file", "", "path of the unseal key file (env LESSOR_KEY_FILE; default $XDG_CONFIG_HOME/lessor/unseal.key)")
	pf.StringVar(&g.config, "config", "", "config file, yours or root's and writable only by its owner (env LESSOR_CONFIG; default $XDG_CONFIG_HOME/lessor/config.yaml)")
	// -v and --version, as most tools (and vault) have them, print what
	// `lessor version` prints, without opening anything.
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
	root.InitDefaultVersionFlag()
	root.Flags().Lookup("version").Usage = "print lessor's version, as the version command does"
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see `%s -h`)", err, c.CommandPath())}
	})

	root.AddGroup(
		&cobra.Group{ID: "secrets", Title: "Secrets:"},
		&cobra.Group{ID: "access", Title: "Access:"},
		&cobra.Group{ID: "ops", Title: "Operations:"},
	)
	add := func(group string, cs ...*cobra.Command) {
		for _, c := range cs {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("secrets", newReadCmd(f, g), newWriteCmd(f, g), newListCmd(f, g), newDeleteCmd(f, g), newSecretsCmd(f, g))
	add("secrets", newLeaseCmd(f, g), newRenewCmd(f, g), newExecCmd(f, g), newPathHelpCmd(f, g))
	add("access", newPolicyCmd(f, g), newTokenCmd(f, g), newLoginCmd(f, g), newAuditCmd(f, g))
	add("ops", newOperatorCmd(f, g), newReapCmd(f, g), newVersionCmd(f))
	add("ops", newDevCmd(f, g))
	add("ops", newServeCmd(f, g))
	root.AddCommand(newEnvironmentTopic(), newExitCodesTopic())
	root.SetHelpCommandGroupID("ops")
	root.SetCompletionCommandGroupID("ops")
	addToolingCmds(f, root)
	return root
}

// apply records the global flags the user set and validates the format.
func (g *globalOptions) apply(f *Factory, c *cobra.Command) error {
	flags := c.Flags()
	set := func(name, key string) {
		if fl := flags.Lookup(name); fl != nil && fl.Changed {
			f.setFlag(key, fl.Value.String())
		}
	}
	set("format", "format")
	set("store", "store")
	if err := storeArgError(c, "store"); err != nil {
		return err
	}
	set("key-file", "key_file")
	// Every command finds a default (the config file, the token file, the
	// generation record) under the home directory.
	if f.homeErr != nil {
		return &localError{f.homeErr}
	}
	cfg, explicit := g.config, g.config != ""
	if !explicit {
		if e := f.Getenv("LESSOR_CONFIG"); e != "" {
			cfg, explicit = e, true
		}
	}
	if err := f.loadConfigFile(cfg, explicit); err != nil {
		return err
	}
	name, err := format.Parse(f.get("format"))
	if err != nil {
		return &usageError{err}
	}
	g.name = name
	if err := checkFormat(c, name); err != nil {
		return err
	}
	if err := refuseUnderSudo(f, c); err != nil {
		return err
	}
	return refuseLocalOnly(f, c)
}

// storeArgValue is the value of -store or -to. The last one given counts,
// as for every flag, but each is checked: an earlier one is in the
// process's arguments all the same.
type storeArgValue struct {
	flag  string // as the user knows it: "-store", "-to"
	value *string
	err   error // checkStoreArg's, for the first value it refused
}

func newStoreArgValue(flag string, p *string) *storeArgValue {
	return &storeArgValue{flag: flag, value: p}
}

// Set keeps v and remembers a refusal for the command to return: an error
// from here would be wrapped in pflag's message, which quotes v.
func (s *storeArgValue) Set(v string) error {
	if s.err == nil {
		s.err = checkStoreArg(s.flag, v)
	}
	*s.value = v
	return nil
}

func (s *storeArgValue) String() string { return *s.value }
func (s *storeArgValue) Type() string   { return "string" }

// storeArgError is the refusal of any value given to the named flag of c.
func storeArgError(c *cobra.Command, name string) error {
	if fl := c.Flags().Lookup(name); fl != nil {
		if v, ok := fl.Value.(*storeArgValue); ok {
			return v.err
		}
	}
	return nil
}

// formatOptions are the output options of this run; apply has parsed the
// format from the flag, LESSOR_FORMAT or the config file.
func (g *globalOptions) formatOptions(f *Factory) format.Options {
	name := g.name
	if name == "" {
		name = format.NameTable
	}
	return format.Options{Format: name, Field: g.field, TTY: f.IO.OutTTY}
}

// normalizeFlags lets Vault-style single-dash long flags through:
// -format=json becomes --format=json when "format" is a long flag of some
// command. Arguments after "--" are left alone.
func normalizeFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		visit := func(fl *pflag.Flag) { long[fl.Name] = true }
		c.Flags().VisitAll(visit)
		c.PersistentFlags().VisitAll(visit)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			// Every word-like single-dash flag is a long flag (lessor's
			// only shorthands are -f and -h), so an unknown one is
			// reported as "unknown flag: --nope".
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && (long[name] || isLetter(name[0])) {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// exactArgs is cobra.ExactArgs with Vault's wording and exit code 1.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usageErrorf("not enough arguments (expected %d, got %d); see `%s -h`", n, len(args), c.CommandPath())
		case len(args) > n:
			return usageErrorf("too many arguments (expected %d, got %d); see `%s -h`", n, len(args), c.CommandPath())
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("not enough arguments (expected at least %d, got %d); see `%s -h`", n, len(args), c.CommandPath())
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageErrorf("expected %d to %d arguments, got %d; see `%s -h`", lo, hi, len(args), c.CommandPath())
		}
		return nil
	}
}
