package cmd

import (
	"strings"
	"testing"
)

// A mistyped subcommand is a usage error (exit 1, nothing on stdout), not
// the group's help with exit 0: a cleanup script that says `lease revok`
// must fail, not "succeed" having revoked nothing. Part of issue 14.
func TestUnknownSubcommandFails(t *testing.T) {
	c := newCompCLI(t)
	for _, tc := range []struct {
		args      []string
		err, hint string
	}{
		{[]string{"lease", "revok", "database/creds/x/1"}, `unknown command "revok" for "lessor lease"`, "did you mean `lessor lease revoke`?"},
		{[]string{"secrets", "lst"}, `unknown command "lst" for "lessor secrets"`, "did you mean `lessor secrets list`?"},
		{[]string{"token", "lokup"}, `unknown command "lokup" for "lessor token"`, "did you mean `lessor token lookup`?"},
		{[]string{"operator", "foo"}, `unknown command "foo" for "lessor operator"`, "see `lessor operator -h` for its commands"},
		{[]string{"rea", "database/creds/x"}, `unknown command "rea" for "lessor"`, "did you mean `lessor dev` or `lessor read` or `lessor reap`?"},
		{[]string{"nosuch"}, `unknown command "nosuch" for "lessor"`, "see `lessor -h` for its commands"},
		{[]string{"status"}, `unknown command "status" for "lessor"`, "did you mean `lessor operator status`?"},
		{[]string{"help", "nosuch"}, `unknown command "nosuch" for "lessor"`, "see `lessor -h` for its commands"},
		{[]string{"help", "lease", "revok"}, `unknown command "revok" for "lessor lease"`, "did you mean `lessor lease revoke`?"},
		{[]string{"-format=json", "lease", "revok"}, `unknown command "revok" for "lessor lease"`, "did you mean `lessor lease revoke`?"},
	} {
		out, errs, code := c.run(tc.args...)
		want := "lessor: error: " + tc.err + "\nlessor: hint: " + tc.hint + "\n"
		if code != 1 || out != "" || errs != want {
			t.Errorf("lessor %s: exit %d\nstdout: %q\nstderr: %q\nwant exit 1, no stdout, stderr %q",
				strings.Join(tc.args, " "), code, out, errs, want)
		}
	}

	// A group alone, or asked for help, still shows its help.
	for _, args := range [][]string{{"lease"}, {"help", "lease"}, {"help", "lease", "revoke"}, {"lease", "-h"}, {"lease", "revoke", "-h"}} {
		out, errs, code := c.run(args...)
		if code != 0 || !strings.Contains(out, "lessor lease") || errs != "" {
			t.Errorf("lessor %s: exit %d, stderr %q, stdout %.80q", strings.Join(args, " "), code, errs, out)
		}
	}
}
