package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

// Shell completion: the `completion` command, and dynamic completion of
// mount paths, database roles, lease ids and policy names.
//
// Dynamic completion runs on every TAB, so it must never prompt, never
// hang and never fail loudly: it opens the store only when the unseal key
// comes from a key file or LESSOR_UNSEAL_KEY, uses the token the caller
// already has, sends ordinary list requests through the pipeline (so the
// ACL and the audit log apply as to any request), and offers nothing on
// any error.

// completionShells are the shells `lessor completion` writes scripts for;
// the first three are also committed under completions/.
var completionShells = []string{"bash", "zsh", "fish", "powershell"}

// completionTimeout bounds a TAB press: a store held locked by a long
// transaction of another process yields no candidates rather than a
// frozen shell.
const completionTimeout = 2 * time.Second

var errNoPrompt = errors.New("completion never prompts")

// addToolingCmds adds what shells and packagers use: the completion
// command, the hidden __generate command, an example for cobra's help
// command, and the policy-name completions of commands defined elsewhere.
func addToolingCmds(f *Factory, root *cobra.Command) {
	comp := newCompletionCmd(f)
	comp.GroupID = "ops"
	root.AddCommand(comp, newGenerateCmd(f))
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" && c.Example == "" {
			c.Example = "  lessor help read\n  lessor help environment\n  lessor help exit-codes"
		}
		if c.Name() == "help" {
			c.ValidArgsFunction = completeHelp(c.ValidArgsFunction)
		}
	}
	_ = root.RegisterFlagCompletionFunc("format", completeFormats)
	find := func(path ...string) *cobra.Command {
		c, _, err := root.Find(path)
		if err != nil || c.Name() != path[len(path)-1] {
			return nil
		}
		return c
	}
	for _, name := range []string{"read", "delete", "write"} {
		if c := find("policy", name); c != nil && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = completePolicies(f)
		}
	}
	if c := find("token", "create"); c != nil {
		_ = c.RegisterFlagCompletionFunc("policy", completePolicies(f))
	}
	if c := find("lease", "list"); c != nil && c.ValidArgsFunction == nil {
		c.ValidArgsFunction = completeLeases(f)
	}
	if c := find("secrets", "enable"); c != nil && c.ValidArgsFunction == nil {
		c.ValidArgsFunction = completeEngineTypes
	}
	for _, name := range []string{"disable", "tune", "move"} {
		if c := find("secrets", name); c != nil && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = completeMounts(f)
		}
	}
}

// completeFormats offers the format registry's names, without aliases
// (`yml` for `yaml`), so a format added there is offered here too.
func completeFormats(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, name := range format.Names() {
		if n, err := format.Parse(name); err == nil && string(n) == name && strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeEngineTypes offers the secrets engine types lessor knows.
func completeEngineTypes(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, typ := range engineTypes() {
		if strings.HasPrefix(typ, toComplete) {
			out = append(out, typ)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeHelp adds the help topics (environment, exit-codes: commands
// with nothing to run, which cobra leaves out) to what `lessor help`
// completes.
func completeHelp(next cobra.CompletionFunc) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		dir := cobra.ShellCompDirectiveNoFileComp
		if next != nil {
			out, dir = next(c, args, toComplete)
		}
		if len(args) > 0 {
			return out, dir
		}
		for _, t := range c.Root().Commands() {
			if t.IsAdditionalHelpTopicCommand() && !t.Hidden && strings.HasPrefix(t.Name(), toComplete) {
				out = append(out, cobra.CompletionWithDesc(t.Name(), t.Short))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out, dir
	}
}

func newCompletionCmd(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "completion <shell>",
		Short: "Print a shell completion script (bash, zsh, fish, powershell)",
		Long: `Prints the completion script for a shell. Besides commands and flags, it
completes mount paths, database/roles/ and database/creds/<role>, lease ids and
policy names by asking the store, but only when that costs no prompt: the
unseal key must come from the key file or LESSOR_UNSEAL_KEY (never a
passphrase) and the token from LESSOR_TOKEN or the token file. Otherwise it
offers nothing.

The bash script needs the bash-completion package (2.x: bash-completion on
Debian, Ubuntu, Fedora and Homebrew), which most distributions install by
default but minimal images and containers often lack.

Packages install the scripts for you; to load them by hand:

  bash:        source <(lessor completion bash)
  zsh:         lessor completion zsh > "${fpath[1]}/_lessor"
  fish:        lessor completion fish > ~/.config/fish/completions/lessor.fish
  powershell:  lessor completion powershell | Out-String | Invoke-Expression`,
		Example: `  source <(lessor completion bash)
  lessor completion zsh > "${fpath[1]}/_lessor"
  lessor completion fish > ~/.config/fish/completions/lessor.fish`,
	}
	for _, shell := range completionShells {
		c.AddCommand(&cobra.Command{
			Use:               shell,
			Short:             "Print the " + shell + " completion script",
			Example:           "  lessor completion " + shell,
			Args:              exactArgs(0),
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(c *cobra.Command, args []string) error {
				return writeCompletion(c.Root(), shell, f.IO.Out)
			},
		})
	}
	return c
}

// writeCompletion writes one shell's script, with descriptions.
func writeCompletion(root *cobra.Command, shell string, w io.Writer) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	case "powershell":
		return root.GenPowerShellCompletionWithDesc(w)
	}
	return usageErrorf("no completion for shell %q (known: %s)", shell, strings.Join(completionShells, ", "))
}

// completer sends the list requests of one TAB press.
type completer struct {
	f   *Factory
	ctx context.Context
	// refused is set when the line gives -store a password, which the
	// command itself would refuse: a TAB press does not log in with it.
	refused bool
}

// off tells whether to offer nothing: with no home directory there is no
// default store or token file, and the command itself would refuse.
func (x *completer) off() bool { return x.f.homeErr != nil || x.refused }

// newCompleter prepares f for completion: the store and key file named on
// the line being completed count, and every way to a passphrase is shut,
// since the terminal belongs to the shell and an Argon2id stretch costs a
// noticeable pause per TAB.
func newCompleter(f *Factory, c *cobra.Command) (*completer, context.CancelFunc) {
	for flag, key := range map[string]string{"store": "store", "key-file": "key_file"} {
		if fl := c.Flags().Lookup(flag); fl != nil && fl.Changed {
			f.setFlag(key, fl.Value.String())
		}
	}
	f.setFlag("passphrase_file", "")
	f.ReadPassword = func(string) ([]byte, error) { return nil, errNoPrompt }
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	return &completer{f: f, ctx: ctx, refused: storeArgError(c, "store") != nil}, cancel
}

// list returns the keys at path, or nothing on any error.
func (x *completer) list(path string) []string {
	if x.off() {
		return nil
	}
	resp, err := x.f.Request(x.ctx, &logical.Request{Operation: logical.ListOperation, Path: path})
	if err != nil || resp == nil {
		return nil
	}
	keys, _ := logical.ParseCommaStrings(resp.Data["keys"])
	return keys
}

// mounts returns the mount table as path (with its trailing slash) → type.
func (x *completer) mounts() map[string]string {
	if x.off() {
		return nil
	}
	resp, err := x.f.Request(x.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "sys/mounts"})
	if err != nil || resp == nil {
		return nil
	}
	out := map[string]string{}
	for p, v := range resp.Data {
		if m, ok := v.(map[string]any); ok {
			out[p] = logical.String(m["type"])
		}
	}
	return out
}

// paths completes a request path: mount paths, the fixed part of each
// path the mount's backend declares (mountPathSpecs), and whatever listing
// the directory being completed returns. A directory whose names cannot be
// listed there (creds/) offers the names listed where its backend says
// they come from (roles/).
func (x *completer) paths(toComplete string) []string {
	toComplete = strings.TrimLeft(toComplete, "/")
	dir := toComplete[:strings.LastIndex(toComplete, "/")+1]
	mounts := x.mounts()
	var out []string
	for p := range mounts {
		out = append(out, p)
	}
	mount := ""
	for p := range mounts {
		if strings.HasPrefix(dir, p) && len(p) > len(mount) {
			mount = p
		}
	}
	if mount != "" {
		specs, rest := mountPathSpecs(mounts[mount]), strings.TrimPrefix(dir, mount)
		listed := map[string]string{}
		for _, s := range specs {
			if s.NamesFrom != "" {
				listed[s.Fixed()] = s.NamesFrom
			}
		}
		switch from, ok := listed[rest]; {
		case rest == "":
			for _, s := range specs {
				if fixed := s.Fixed(); fixed != "" {
					out = append(out, mount+fixed)
				}
			}
		case ok:
			for _, k := range x.list(mount + from) {
				if !strings.HasSuffix(k, "/") {
					out = append(out, dir+k)
				}
			}
		default:
			for _, k := range x.list(dir) {
				out = append(out, dir+k)
			}
		}
	}
	return candidates(out, toComplete)
}

// candidates keeps the words that extend toComplete, sorted and unique; a
// directory already typed in full is not offered again beside its
// contents.
func candidates(words []string, toComplete string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range words {
		if w == toComplete && strings.HasSuffix(w, "/") {
			continue
		}
		if strings.HasPrefix(w, toComplete) && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}

// directive lets the shell add a space after a finished word, but not
// after a directory the user will keep typing into.
func directive(words []string) cobra.ShellCompDirective {
	d := cobra.ShellCompDirectiveNoFileComp
	for _, w := range words {
		if strings.HasSuffix(w, "/") {
			return d | cobra.ShellCompDirectiveNoSpace
		}
	}
	return d
}

// completePaths completes the PATH argument of read, write, list and
// delete; the KEY=VALUE arguments after it get nothing.
func completePaths(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		x, cancel := newCompleter(f, c)
		defer cancel()
		out := x.paths(toComplete)
		return out, directive(out)
	}
}

// completeLeases completes lease ids and prefixes one path segment at a
// time, as `list sys/leases/lookup/<prefix>` returns them.
func completeLeases(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		x, cancel := newCompleter(f, c)
		defer cancel()
		toComplete = strings.TrimLeft(toComplete, "/")
		dir := toComplete[:strings.LastIndex(toComplete, "/")+1]
		var words []string
		for _, k := range x.list("sys/leases/lookup/" + dir) {
			words = append(words, dir+k)
		}
		out := candidates(words, toComplete)
		return out, directive(out)
	}
}

// completeMounts completes the mount PATH of secrets disable, tune and
// move (the SOURCE of move only): user mounts, without sys/.
func completeMounts(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		x, cancel := newCompleter(f, c)
		defer cancel()
		var words []string
		for p, typ := range x.mounts() {
			if typ != "system" {
				words = append(words, strings.TrimSuffix(p, "/"))
			}
		}
		return candidates(words, strings.Trim(toComplete, "/")), cobra.ShellCompDirectiveNoFileComp
	}
}

// completePolicies completes a policy name: the NAME of policy read,
// delete and write, and token create -policy. Policy write's FILE falls
// back to the shell's file completion.
func completePolicies(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			if c.Name() == "write" && len(args) == 1 {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		x, cancel := newCompleter(f, c)
		defer cancel()
		// -policy takes a comma-separated list: complete its last name.
		done := ""
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 && c.Name() == "create" {
			done, toComplete = toComplete[:i+1], toComplete[i+1:]
		}
		var words []string
		for _, k := range x.list("sys/policy/") {
			if k != "root" {
				words = append(words, done+k)
			}
		}
		return candidates(words, done+toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// genError names the file or shell that generation failed on.
func genError(what string, err error) error {
	return &localError{fmt.Errorf("generate %s: %w", what, err)}
}
