package httpapi_test

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/logical"
)

// TestRefusedRequestLineIsCapped: a request refused before anything is
// done (no token, or one whose policy says no) writes a line of a few
// kilobytes to the audit log, however long its path, query string or
// body, and the line says what it cut. Before, a tokenless client wrote
// its 1 MiB path (twice: the path and the error naming it) and its query
// string in every line, and filled the log's disk at the network's speed.
func TestRefusedRequestLineIsCapped(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	// A token whose only policy (default) grants nothing under secret/.
	resp, err := e.core.Handle(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "auth/token/create", ClientToken: e.root,
		Data: map[string]any{"policies": []any{"default"}}})
	if err != nil {
		t.Fatal(err)
	}
	weak := resp.Auth.ClientToken

	long := strings.Repeat("a", 400<<10)
	query := url.Values{}
	for i := range 2000 {
		query.Set("k"+strings.Repeat("x", 50)+string(rune('a'+i%26))+strings.Repeat("y", i%97), strings.Repeat("v", 100))
	}
	bigBody := `{"policy":"` + strings.Repeat("p", 1<<20) + `"}`
	const maxLine = 32 << 10
	for _, c := range []struct {
		name, method, path, token, body string
	}{
		{"tokenless long path", "GET", "/v1/sys/policies/acl/" + long, "", ""},
		{"tokenless long query", "GET", "/v1/sys/policies/acl/x?" + query.Encode(), "", ""},
		{"made-up token, long path", "DELETE", "/v1/secret/" + long, "lsr_" + strings.Repeat("B", 32), ""},
		{"denied long path", "GET", "/v1/sys/policies/acl/" + long, weak, ""},
		{"denied long body", "PUT", "/v1/sys/policies/acl/x", weak, bigBody},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := os.Stat(e.audit)
			if err != nil {
				t.Fatal(err)
			}
			status, body, _ := e.do(t, c.method, c.path, c.token, c.body)
			if status != 403 {
				t.Fatalf("status %d, want 403: %.200s", status, body)
			}
			raw, err := os.ReadFile(e.audit)
			if err != nil {
				t.Fatal(err)
			}
			added := string(raw[before.Size():])
			lines := strings.Split(strings.TrimSuffix(added, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines added, want 1", len(lines))
			}
			line := lines[0]
			if len(line) > maxLine {
				t.Fatalf("the refused request wrote a line of %d bytes, want at most %d", len(line), maxLine)
			}
			var entry struct {
				Error   string `json:"error"`
				Request struct {
					Path string         `json:"path"`
					Data map[string]any `json:"data"`
				} `json:"request"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("line is not JSON: %v", err)
			}
			if entry.Error == "" {
				t.Errorf("the line has no error: %.300s", line)
			}
			if !strings.Contains(line, "lessor_cut") {
				t.Errorf("the line does not say what it cut: %.300s", line)
			}
			if p, _, _ := strings.Cut(c.path, "?"); len(p) > 100<<10 && !strings.Contains(entry.Request.Path, "[cut:") {
				t.Errorf("the path was not marked as cut: %.300s", entry.Request.Path)
			}
		})
	}
}
