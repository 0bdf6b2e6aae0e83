package cmd

import (
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
)

// TestTablesEscapeTerminalControls: a mount description and token metadata
// holding escape sequences print escaped in tables (and as JSON escapes in
// JSON), never as raw bytes a terminal would obey.
func TestTablesEscapeTerminalControls(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	const evil = "\x1b]0;owned\x07\x1b[2J\u009b31m"
	c.must("secrets", "enable", "-description=ops"+evil, "database")
	c.must("token", "create", "-metadata=team=a"+evil, "-policy=default")
	for _, args := range [][]string{
		{"secrets", "list"},
		{"secrets", "list", "-detailed"},
		{"token", "create", "-metadata=team=b" + evil, "-policy=default"},
		{"read", "sys/mounts/database"},
		{"secrets", "list", "-format=json"},
	} {
		out := c.must(args...)
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("lessor %s printed raw control characters:\n%q", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `\x1b]0;owned\a\x1b[2J\u009b31m`) && !strings.Contains(out, `\u001b]0;owned\u0007\u001b[2J\u009b31m`) {
			t.Errorf("lessor %s does not show the escaped text:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestReapEscapesOrphanNames: the name of an orphaned role comes from the
// database's catalog, where any login with CREATEROLE may name a role
// with escape sequences and give it a comment that reads as this store's
// (role comments are readable by every login). A revocation of it that
// fails is reported on stderr by its name, escaped, as its row in the
// table is.
func TestReapEscapesOrphanNames(t *testing.T) {
	const evil = "v\x1b]0;owned\x07\x1b[2J\u009b31m"
	var out, errb strings.Builder
	f := newFactory(strings.NewReader(""), &out, &errb, func(string) string { return "" })
	f.IO.OutTTY = true
	res := &core.ReapResult{ReapSummary: &lease.ReapSummary{}}
	orphans := &core.OrphanSummary{Failed: 1, Orphans: []core.MountOrphan{{Mount: "database/", Orphan: logical.Orphan{
		Connection: "pg", Username: evil, LeaseID: "database/creds/r/x", Expired: true, Error: "role " + evil + " owns objects",
	}}}}
	if err := printReap(f, &globalOptions{}, &reapOutput{ReapResult: res, Orphans: orphans}, false, false); err != nil {
		t.Fatal(err)
	}
	all := out.String() + errb.String()
	if strings.ContainsAny(all, "\x1b\x07\u009b") || !strings.Contains(errb.String(), `revoke orphaned role v\x1b]0;owned\a\x1b[2J\u009b31m failed`) {
		t.Errorf("reap printed raw control characters or no escaped name:\n%q", all)
	}
}

// TestTokenInPathMaskedInErrors: a token a caller put in a path (Vault's
// old auth/token/lookup/<token>, a stray ".." after it, a path under no
// mount) is masked in what the CLI prints of the refusal, as the server
// masks it in its own message: the CLI's error quotes the path it sent,
// and stderr ends up in CI logs and terminals' scrollback.
func TestTokenInPathMaskedInErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	tok := c.env["LESSOR_TOKEN"]
	for _, args := range [][]string{
		{"read", "auth/token/lookup/" + tok},
		{"read", "auth/token/lookup/" + tok + "/.."},
		{"list", "auth/token/lookup/" + tok},
		{"write", "auth/token/lookup/" + tok, "a=b"},
		{"delete", "auth/token/lookup/" + tok},
		{"read", "nomount/" + tok},
		{"path-help", "auth/token/lookup/" + tok},
	} {
		r := c.run(args...)
		if r.code == 0 || strings.Contains(r.stdout+r.stderr, tok) || !strings.Contains(r.stderr, "[token]") {
			t.Errorf("lessor %s %s: exit %d, stderr %q; want a refusal with the token masked", args[0], strings.ReplaceAll(args[1], tok, "<root>"), r.code, strings.ReplaceAll(r.stderr, tok, "<root>"))
		}
	}
}
