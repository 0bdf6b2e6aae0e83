package cmd

import (
	"strings"
	"testing"
)

// Completion of -format values, help topics and secrets engine types,
// none of which needs the store (newCompCLI fails on any prompt). Part of
// issue 14.
func TestCompleteFormatsTopicsEngineTypes(t *testing.T) {
	c := newCompCLI(t)
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"read", "-format="}, "table\njson\nyaml\n"},
		{[]string{"-format", "j"}, "json\n"},
		{[]string{"lease", "list", "--format=y"}, "yaml\n"},
		{[]string{"help", "en"}, "environment\tEnvironment variables and the config file\n"},
		{[]string{"help", "exi"}, "exit-codes\tWhat lessor's exit codes mean\n"},
		{[]string{"secrets", "enable", ""}, "database\n"},
		{[]string{"secrets", "enable", "-path=db", "d"}, "database\n"},
		{[]string{"secrets", "enable", "database", ""}, ""},
	} {
		got := c.complete(tc.words...)
		// Formats a later lessor adds (env, dotenv…) may follow; the three
		// of every version come first, in this order.
		if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, ":4\n") {
			t.Errorf("complete %q:\n got %q\nwant %q then more formats at most, then :4", tc.words, got, tc.want)
		}
		if !strings.Contains(strings.Join(tc.words, " "), "format") && got != tc.want+":4\n" {
			t.Errorf("complete %q:\n got %q\nwant %q", tc.words, got, tc.want+":4\n")
		}
	}
	// The full help still lists the commands as before.
	if got := c.complete("help", ""); !strings.Contains(got, "read\tRead data") || !strings.Contains(got, "environment\t") {
		t.Errorf("complete help: %q", got)
	}
}

// `completion -h` says what the bash script needs.
func TestCompletionHelpNamesBashCompletion(t *testing.T) {
	out := newCompCLI(t).must("completion", "-h")
	if !strings.Contains(out, "bash-completion package") {
		t.Errorf("completion -h does not name the bash-completion package:\n%s", out)
	}
}
