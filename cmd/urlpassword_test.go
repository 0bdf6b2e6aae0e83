package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInlinePasswordWithAtShowsNoPiece writes a connection_url whose
// inline password holds an unencoded '@': lessor used to dial the rest of
// the password as a host and print it in the error, on stderr and in the
// audit log's error field. It is now refused, and no 4 characters of the
// password appear in either.
func TestInlinePasswordWithAtShowsNoPiece(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	c.must("secrets", "enable", "database")
	auditLog := filepath.Join(c.env["HOME"], "audit.log")
	c.must("audit", "enable", "file", "file_path="+auditLog)

	const password = "Xq9@Zk2Lm"
	r := c.fails(2, `unable to parse connection url \(a postgresql:// URL\): an '@' in the user name or password must be percent-encoded as %40`,
		"write", "database/config/postgresql", "plugin_name=postgresql-database-plugin", "allowed_roles=*",
		"connection_url=postgresql://root:"+password+"@127.0.0.1:5432/postgres?sslmode=disable")
	raw, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"error":`) {
		t.Fatalf("no error recorded in the audit log:\n%s", raw)
	}
	for i := 0; i+4 <= len(password); i++ {
		w := password[i : i+4]
		if strings.Contains(r.stderr, w) {
			t.Errorf("stderr shows %q: %s", w, r.stderr)
		}
		if strings.Contains(string(raw), w) {
			t.Errorf("the audit log shows %q", w)
		}
	}
}
