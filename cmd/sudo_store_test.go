package cmd

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// TestSudoCallerCannotPointTheStoreAtItsServer: run through sudo as the
// service account, lessor took a PostgreSQL store URL from the caller's
// -store and looked its password up in the service account's passfile,
// then sent it to whatever server the URL named. A caller whose token may
// do nothing got the store's database password from a server of its own
// that asked for it in clear text. Through sudo, a PostgreSQL store other
// than the account's configured one is now refused before any connection.
func TestSudoCallerCannotPointTheStoreAtItsServer(t *testing.T) {
	addr, got := pgtest.CatchPasswords(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}

	c := newCLI(t)
	c.initStore()
	// The service account's passfile, with a line for any host.
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:lessor:svc-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", passfile)

	c.sudoCaller()
	// The caller writes the URL, so it allows the clear-text password
	// that lessor refuses by default over an unverified connection.
	evil := "postgres://lessor@" + addr + "/ops?sslmode=disable&require_auth=password"
	for _, args := range [][]string{
		{"read", "-store=" + evil, "database/creds/x"},
		{"operator", "status", "-store=" + evil},
		{"operator", "migrate", "-to=" + evil},
		{"read", "-store=host=" + host + " port=" + port + " user=lessor dbname=ops sslmode=disable require_auth=password", "database/creds/x"},
	} {
		r := c.run(args...)
		if r.code == 0 {
			t.Errorf("lessor %v through sudo: exit 0", args)
		}
	}
	c.fails(1, `through sudo by another user \(uid \d+\), and would send this account's database password`, "read", "-store="+evil, "database/creds/x")
	c.env["LESSOR_STORE"] = evil
	if r := c.run("read", "database/creds/x"); r.code == 0 {
		t.Errorf("LESSOR_STORE through sudo: exit 0")
	}
	select {
	case p := <-got:
		t.Fatalf("the caller's server received the service account's password %q", p)
	default:
	}
}
