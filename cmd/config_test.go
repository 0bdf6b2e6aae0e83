package cmd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigErrorsNeverQuoteTheFile points LESSOR_CONFIG at files that are
// not config files — a token file, a key file, YAML that quotes its own
// values in errors — and checks that the error names the file (and the
// line, where there is one) and shows nothing of what is in it.
func TestConfigErrorsNeverQuoteTheFile(t *testing.T) {
	const secret = "Qz7xWv3KpN9d"
	cases := []struct {
		name, content, want string
	}{
		{"token file", "lsr_" + secret + "\n", `: line 1: not a mapping of settings \(key: value\)$`},
		{"key file", "\n" + secret + "==\n", `: line 2: not a mapping of settings \(key: value\)$`},
		{"list", "- " + secret + "\n", `: line 1: not a mapping of settings \(key: value\)$`},
		{"unknown key", "store: /x\n" + secret + ": 1\n", `: line 2: unknown key \(known: store, key_file, format, .*\)$`},
		{"key with colon", secret + ":" + secret + ": x\n", `: line 1: unknown key \(known: .*\)$`},
		{"nested value", "format: json\nstore: {" + secret + ": b}\n", `: line 2: store must be a single value$`},
		{"list value", "store: [" + secret + "]\n", `: line 1: store must be a single value$`},
		{"twice", "store: " + secret + "\nSTORE: x\n", `: line 2: store is set twice$`},
		{"unknown anchor", "store: *" + secret + "\n", `: line 1: not valid YAML$|: not valid YAML$`},
		{"unterminated", "format: json\nstore: \"" + secret + "\n", `: line \d+: not valid YAML$`},
		{"binary tag", "store: !!int " + secret + "\n", `: not a valid config file$`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			path := filepath.Join(c.env["HOME"], "not-a-config")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			c.env["LESSOR_CONFIG"] = path
			r := c.run("operator", "status")
			msg := strings.TrimSpace(strings.SplitN(r.stderr, "\n", 2)[0])
			prefix := "lessor: error: config file " + path
			if r.code == 0 || !strings.HasPrefix(msg, prefix) {
				t.Fatalf("exit %d, stderr %q: want an error starting %q", r.code, r.stderr, prefix)
			}
			if !regexp.MustCompile(tc.want).MatchString(msg) {
				t.Errorf("stderr %q does not match %q", msg, tc.want)
			}
			rest := strings.ReplaceAll(r.stderr, path, "")
			for i := 0; i+4 <= len(secret); i++ {
				if strings.Contains(rest, secret[i:i+4]) {
					t.Errorf("stderr %q shows %q from the file", r.stderr, secret[i:i+4])
				}
			}
		})
	}

	// A good file still works, case-folded keys included.
	c := newCLI(t)
	path := filepath.Join(c.env["HOME"], "config.yaml")
	if err := os.WriteFile(path, []byte("# comment\nFormat: json\nstore: "+filepath.Join(c.env["HOME"], "s.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.env["LESSOR_CONFIG"] = path
	// Exit 2: the store is not initialised; the output is JSON as asked.
	if r := c.run("operator", "status"); r.stderr != "" || !strings.Contains(r.stdout, `"initialized": false`) {
		t.Errorf("good config: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}
