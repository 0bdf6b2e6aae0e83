package cmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

// maxTokenLine bounds the line login reads a token from.
const maxTokenLine = 4096

func newLoginCmd(f *Factory, g *globalOptions) *cobra.Command {
	var noStore, noPrint, tokenOnly bool
	c := &cobra.Command{
		Use:   "login [flags] [TOKEN|-]",
		Short: "Verify a token and store it in the token file",
		Long: `Verifies TOKEN and writes it to the token file (~/.lessor-token, mode 0600),
which later commands use when LESSOR_TOKEN is not set. With no argument the
token is read from a prompt without echo; with "-" from standard input.
Prefer those to typing the token into argv, where other users can see it.

With LESSOR_ADDR set, the server verifies the token (auth/token/lookup-self)
and the token file is written on this host as usual: a client host needs
nothing else.`,
		Example: `  lessor login
  lessor login - < token.txt
  lessor login -token-only - < token.txt`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			var tok string
			switch {
			case len(args) == 1 && args[0] == "-":
				// A token is under 100 bytes: a first line longer than
				// maxTokenLine (/dev/zero, a binary file) is no token, and
				// is not read to its end.
				line, err := bufio.NewReader(io.LimitReader(f.IO.In, maxTokenLine+1)).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return usageErrorf("read token from stdin: %v", err)
				}
				if len(line) > maxTokenLine {
					return usageErrorf("read token from stdin: its first line is longer than %d bytes, which no token is", maxTokenLine)
				}
				tok = line
			case len(args) == 1:
				tok = args[0]
			default:
				b, err := f.ReadPassword("Token (will be hidden): ")
				if errors.Is(err, errNoTerminal) {
					return withHint(usageErrorf("read token: %w", err), "pass the token on standard input: `lessor login - < FILE`")
				}
				if err != nil {
					return usageErrorf("read token: %v", err)
				}
				tok = string(b)
			}
			tok = strings.TrimSpace(tok)
			if tok == "" {
				return usageErrorf("empty token")
			}
			if uid, _, sudo := f.sudoInvoker(); sudo && !noStore && !tokenOnly {
				// The account's token file is not the caller's: the
				// account's own jobs would act with this token, and it
				// would replace what the account keeps there.
				return withHint(usageErrorf("lessor was run through sudo by another user (uid %d): login would store your token in this account's token file %s", uid, f.tokenFile()),
					"verify it with -no-store, and give it to each command in LESSOR_TOKEN")
			}
			req := &logical.Request{Operation: logical.ReadOperation, Path: "auth/token/lookup-self", ClientToken: tok}
			resp, err := f.Request(c.Context(), req)
			if err != nil {
				return requestError("login", "auth/token/lookup-self", err)
			}
			if tokenOnly {
				noStore = true
				g.field = "token"
			}
			if !noStore {
				if err := storeToken(f.tokenFile(), tok); err != nil {
					return &localError{fmt.Errorf("store token in %s: %w", f.tokenFile(), err)}
				}
				if f.Getenv("LESSOR_TOKEN") != "" {
					warn(f, []string{"The LESSOR_TOKEN environment variable is set! It takes precedence over the token file, so this login will not be used until it is unset."})
				}
			}
			if noPrint {
				return nil
			}
			auth := authFromLookup(tok, resp)
			if g.formatOptions(f).Format == format.NameTable && g.field == "" {
				if noStore {
					fmt.Fprintln(f.IO.Out, "Success! You are now authenticated. The token was not stored (-no-store).")
				} else {
					fmt.Fprintln(f.IO.Out, "Success! You are now authenticated. The token information displayed below is already stored in the token file. You do NOT need to run \"lessor login\" again. Future lessor requests will automatically use this token.")
				}
				fmt.Fprintln(f.IO.Out)
			}
			return render(f, g, req, &logical.Response{Auth: auth})
		},
	}
	c.Flags().BoolVar(&noStore, "no-store", false, "verify the token but do not store it")
	c.Flags().BoolVar(&noPrint, "no-print", false, "print nothing on success")
	c.Flags().BoolVar(&tokenOnly, "token-only", false, "print only the token and do not store it")
	return c
}

func authFromLookup(tok string, resp *logical.Response) *logical.Auth {
	a := &logical.Auth{ClientToken: tok}
	if resp == nil {
		return a
	}
	a.Accessor = logical.String(resp.Data["accessor"])
	a.Policies, _ = logical.ParseCommaStrings(resp.Data["policies"])
	a.TokenPolicies = a.Policies
	if ttl, err := logical.ParseDuration(resp.Data["ttl"]); err == nil {
		a.LeaseDuration = ttl
	}
	a.Renewable, _ = logical.ParseBool(resp.Data["renewable"])
	a.Orphan, _ = logical.ParseBool(resp.Data["orphan"])
	return a
}

// storeToken writes the token file with mode 0600 through a temp file and
// a rename, so a reader never sees half a token.
func storeToken(path, tok string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(tok), 0o600)
}
