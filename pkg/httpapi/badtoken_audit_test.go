package httpapi_test

import (
	"os"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/httpapi"
)

// TestBadTokenAuditedWithOrWithoutBody: a request with a made-up token is
// refused with 403 and audited, with its remote address, whether or not
// it carries a body: the check that spares the server reading a body for
// such a caller audits as the core does.
func TestBadTokenAuditedWithOrWithoutBody(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	bad := "lsr_" + strings.Repeat("B", 32)
	entries := func() []string {
		raw, err := os.ReadFile(e.audit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for line := range strings.Lines(string(raw)) {
			if strings.Contains(line, `"path":"sys/policies/acl/x"`) {
				out = append(out, line)
			}
		}
		return out
	}
	for _, c := range []struct{ method, body string }{
		{"GET", ""},
		{"PUT", ""},
		{"PUT", `{"policy":"path \"*\" {capabilities=[\"sudo\"]}"}`},
		{"POST", `{"policy":"x"}`},
	} {
		before := len(entries())
		status, body, _ := e.do(t, c.method, "/v1/sys/policies/acl/x", bad, c.body)
		if status != 403 {
			t.Fatalf("%s with body %q: %d %s", c.method, c.body, status, body)
		}
		after := entries()
		if len(after) != before+1 {
			t.Errorf("%s with body %q and a made-up token: %d audit entries, want 1", c.method, c.body, len(after)-before)
			continue
		}
		last := after[len(after)-1]
		if !strings.Contains(last, `"remote_address":"127.0.0.1"`) || strings.Contains(last, bad) || strings.Contains(last, "sudo") {
			t.Errorf("%s with body %q: audit entry %s", c.method, c.body, last)
		}
	}
}
