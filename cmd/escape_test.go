package cmd

import (
	"strings"
	"testing"
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
