package httpapi_test

import (
	"testing"

	"github.com/lessorhq/lessor/pkg/httpapi"
)

// TestHealthCodes: a caller's ?activecode= becomes the status only when it
// is one a response can carry (200-599); anything else is a 400, never a
// panic in net/http or a 1xx that leaves the client waiting; 204 comes
// without a body, as HTTP requires.
func TestHealthCodes(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	for _, tc := range []struct {
		query  string
		status int
		body   bool
	}{
		{"activecode=503", 503, true},
		{"activecode=204", 204, false},
		{"activecode=0", 400, true},
		{"activecode=101", 400, true},
		{"activecode=199", 400, true},
		{"activecode=600", 400, true},
		{"activecode=1000", 400, true},
		{"activecode=99999999999999999999", 400, true},
		{"standbycode=-1", 400, true},
	} {
		status, body, _ := e.do(t, "GET", "/v1/sys/health?"+tc.query, "", "")
		if status != tc.status || (body != "") != tc.body {
			t.Errorf("%s: status %d, body %q; want %d, body %v", tc.query, status, body, tc.status, tc.body)
		}
	}
	// The server is still up.
	if status, _, _ := e.do(t, "GET", "/v1/sys/health", "", ""); status != 200 {
		t.Fatalf("health after the bad codes: %d", status)
	}
}
