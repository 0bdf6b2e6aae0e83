package cmd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lessorhq/lessor/pkg/failpoint"
)

// TestFaultAuditFailsAfterIssue: the audit device fails between the role's
// creation and the response's line. The credential is not handed out, and
// nobody holds it, so it is dropped at once rather than left to live until
// its TTL: a pending lease whose role exists would be adopted as active.
func TestFaultAuditFailsAfterIssue(t *testing.T) {
	e := newFaultEnv(t, "SUPERUSER")
	e.configure(e.serverAddr(), plainCreation)
	logs := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	e.must("audit", "enable", "file", "file_path="+filepath.Join(logs, "audit.log"))

	failpoint.Arm(failpoint.IssueAfterCreate, func(string) {
		if err := os.RemoveAll(logs); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() { failpoint.Arm("", nil) })
	e.fails(2, `audit device file/ .*no such file or directory`, "read", "database/creds/r")
	failpoint.Arm("", nil)

	if n := e.lessorRoles(e.rolePrefix()); n != 0 {
		t.Errorf("%d roles left in PostgreSQL for a credential that was never handed out", n)
	}
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	e.noLeases()
}
