package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/logical"
)

// errorsOf decodes an error body and checks that it is Vault's envelope
// with at most one message, on one line.
func errorsOf(t *testing.T, body string) []string {
	t.Helper()
	var e struct {
		Errors []string `json:"errors"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Errors == nil {
		t.Fatalf("error body %q is not {\"errors\":[...]}: %v", body, err)
	}
	if len(e.Errors) > 1 || len(e.Errors) == 1 && strings.ContainsAny(e.Errors[0], "\r\n") {
		t.Fatalf("error body %q is not one one-line error", body)
	}
	return e.Errors
}

// apps creates the seed's apps policy and a token holding it.
func (e *env) apps(t *testing.T) string {
	t.Helper()
	e.must(t, logical.UpdateOperation, "sys/policy/apps", map[string]any{"policy": appsPolicy})
	resp := e.must(t, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps"})
	return resp.Auth.ClientToken
}

func (e *env) must(t *testing.T, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := e.core.Handle(ctx, &logical.Request{Operation: op, Path: path, Data: data, ClientToken: e.root})
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// TestStatusCodes runs the reference's checklist of statuses and bodies
// that need no database.
func TestStatusCodes(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	apps := e.apps(t)
	e.must(t, logical.UpdateOperation, "sys/mounts/database", map[string]any{"type": "database"})
	bad := "lsr_" + strings.Repeat("A", 32)
	tests := []struct {
		name, method, path, token, body string
		hdr                             []string
		status                          int
		msg                             string // regexp on the one error, "" for {"errors":[]}; "-" for a success body
		cause                           string
	}{
		{"health", "GET", "/v1/sys/health", "", "", nil, 200, "-", ""},
		{"health activecode", "GET", "/v1/sys/health?activecode=299", "", "", nil, 299, "-", ""},
		{"health bad code", "GET", "/v1/sys/health?sealedcode=abc", "", "", nil, 400, "sealedcode", ""},
		{"health POST", "POST", "/v1/sys/health", "", "", nil, 405, "unsupported method", ""},
		{"seal-status", "GET", "/v1/sys/seal-status", "", "", nil, 200, "-", ""},
		{"no token", "GET", "/v1/sys/mounts", "", "", nil, 403, "^permission denied", "invalid_token"},
		{"made-up token", "GET", "/v1/database/creds/readonly", bad, "", nil, 403, "^permission denied", "invalid_token"},
		{"garbage token", "GET", "/v1/database/creds/readonly", "garbage token; DROP", "", nil, 403, "^permission denied", "invalid_token"},
		{"basic auth is no token", "GET", "/v1/sys/mounts", "", "", []string{"Authorization", "Basic eDp5"}, 403, "^permission denied", "invalid_token"},
		// The token comes before the body: a body is never parsed for a
		// caller without one.
		{"no token, malformed JSON", "PUT", "/v1/sys/policy/x", "", `{"policy":`, nil, 403, "^permission denied: missing, invalid or expired token$", "invalid_token"},
		{"made-up token, array body", "POST", "/v1/sys/policy/x", bad, `[1]`, nil, 403, "^permission denied: missing, invalid or expired token$", "invalid_token"},
		{"garbage token, too deep", "PUT", "/v1/sys/policy/x", "garbage", deep(40), nil, 403, "^permission denied: missing, invalid or expired token$", "invalid_token"},
		{"bearer", "GET", "/v1/sys/mounts", "", "", []string{"Authorization", "Bearer " + e.root}, 200, "-", ""},
		{"policy says no", "GET", "/v1/database/config/postgresql", apps, "", nil, 403, "^permission denied$", ""},
		{"policy says no to a path that is not there", "GET", "/v1/nosuch/x", apps, "", nil, 403, "^permission denied$", ""},
		{"no mount", "GET", "/v1/nosuch/x", e.root, "", nil, 404, "no secrets engine is mounted", ""},
		{"unsupported operation", "DELETE", "/v1/database/creds/r", e.root, "", nil, 405, "unsupported operation", ""},
		{"unsupported path", "GET", "/v1/database/nosuch/x", e.root, "", nil, 404, "unsupported path", ""},
		{"missing role", "GET", "/v1/database/roles/nosuch", e.root, "", nil, 404, "", ""},
		{"empty list", "LIST", "/v1/database/roles", e.root, "", nil, 404, "", ""},
		{"empty list by query", "GET", "/v1/database/roles?list=true", e.root, "", nil, 404, "", ""},
		{"bad list value", "GET", "/v1/database/roles?list=maybe", e.root, "", nil, 400, "list", ""},
		{"write to a directory", "PUT", "/v1/database/roles/", e.root, `{}`, nil, 400, "cannot write to a path ending in '/'", ""},
		{"array body", "PUT", "/v1/sys/policy/x", e.root, `[1]`, nil, 400, "error parsing JSON", ""},
		{"malformed JSON", "PUT", "/v1/sys/policy/x", e.root, `{"policy":`, nil, 400, "error parsing JSON", ""},
		{"trailing JSON", "PUT", "/v1/sys/policy/x", e.root, `{"policy":"x"} {}`, nil, 400, "error parsing JSON", ""},
		{"nested too deep", "PUT", "/v1/sys/policy/x", e.root, deep(32), nil, 400, "^error parsing JSON: nested deeper than 32 levels$", ""},
		{"too many values", "PUT", "/v1/sys/policy/x", e.root, `{"policy":"x","y":[` + strings.Repeat("0,", 10000) + `0]}`, nil, 400, "^error parsing JSON: more than 10000 values$", ""},
		{"too many form parameters", "PUT", "/v1/sys/policy/x", e.root, strings.Repeat("a=1&", 10001), []string{"Content-Type", "application/x-www-form-urlencoded"}, 400, "^error parsing form body: more than 10000 parameters$", ""},
		{"too many query parameters", "GET", "/v1/sys/mounts?" + strings.Repeat("a&", 10000), e.root, "", nil, 400, "^invalid query string: more than 10000 parameters$", ""},
		{"wrong type", "PUT", "/v1/sys/mounts/kv2", e.root, `{"type":["database"]}`, nil, 400, ".", ""},
		{"dot-dot", "GET", "/v1/sys/../sys/mounts", e.root, "", nil, 400, `invalid path .*"\.\."`, ""},
		{"encoded dot-dot", "GET", "/v1/sys/%2e%2e/sys/mounts", e.root, "", nil, 400, `invalid path .*"\.\."`, ""},
		{"encoded dot-dot as apps", "GET", "/v1/database/creds/%2E%2E/%2E%2E/sys/mounts", apps, "", nil, 400, `invalid path`, ""},
		{"double slash", "GET", "/v1/sys//mounts", e.root, "", nil, 400, `empty segment`, ""},
		{"dot", "GET", "/v1/sys/./mounts", e.root, "", nil, 400, `"\." segment`, ""},
		{"encoded slash", "GET", "/v1/database%2Fcreds%2F..%2Fconfig%2Fpostgresql", apps, "", nil, 400, `invalid path`, ""},
		{"control character", "GET", "/v1/sys/mo%0Aunts", e.root, "", nil, 400, "non-printable", ""},
		{"trailing space", "GET", "/v1/database/roles/x%20", e.root, "", nil, 400, "white space", ""},
		{"no /v1/", "GET", "/v2/sys/mounts", e.root, "", nil, 404, "", ""},
		{"root", "GET", "/", "", "", nil, 404, "", ""},
		{"PATCH", "PATCH", "/v1/database/roles/x", e.root, `{}`, nil, 405, "unsupported method", ""},
		{"TRACE", "TRACE", "/v1/sys/mounts", e.root, "", nil, 405, "unsupported method", ""},
		{"wrapping", "GET", "/v1/sys/mounts", e.root, "", []string{"X-Vault-Wrap-TTL", "5m"}, 400, "wrapping", ""},
		{"bad wrap ttl", "GET", "/v1/sys/mounts", e.root, "", []string{"X-Vault-Wrap-TTL", "soon"}, 400, "X-Vault-Wrap-TTL", ""},
		{"namespace", "GET", "/v1/sys/mounts", e.root, "", []string{"X-Vault-Namespace", "other"}, 404, "namespace not found", ""},
		{"root namespace", "GET", "/v1/sys/mounts", e.root, "", []string{"X-Vault-Namespace", "root/"}, 200, "-", ""},
		{"revoke unknown lease", "PUT", "/v1/sys/leases/lookup", e.root, `{"lease_id":"database/creds/r/x"}`, nil, 400, "invalid lease", ""},
		{"renew without id", "PUT", "/v1/sys/leases/renew", e.root, `{}`, nil, 400, ".", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := e.do(t, tc.method, tc.path, tc.token, tc.body, tc.hdr...)
			if status != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", tc.method, tc.path, status, tc.status, body)
			}
			if got := hdr.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if got := hdr.Get("X-Lessor-Cause"); got != tc.cause {
				t.Errorf("X-Lessor-Cause = %q, want %q", got, tc.cause)
			}
			if tc.msg == "-" {
				if !json.Valid([]byte(body)) {
					t.Fatalf("body %q is not JSON", body)
				}
				return
			}
			errs := errorsOf(t, body)
			if tc.msg == "" {
				if len(errs) != 0 {
					t.Fatalf("errors %q, want []", errs)
				}
				return
			}
			if len(errs) != 1 || !regexp.MustCompile(tc.msg).MatchString(errs[0]) {
				t.Fatalf("errors %q, want one matching %q", errs, tc.msg)
			}
		})
	}
}

// deep is a body whose "policy" nests n arrays below the top-level
// object.
func deep(n int) string {
	return `{"policy":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
}

// bodyCounter is a request body that counts the bytes read from it.
type bodyCounter struct {
	r io.Reader
	n atomic.Int64
}

func (b *bodyCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *bodyCounter) Close() error { return nil }

// TestTokenBeforeBody: a write from a caller without a usable token is
// refused before one byte of its body is read, whatever the body, with
// the 403 any request without a token gets; with a token the same body
// is read and judged.
func TestTokenBeforeBody(t *testing.T) {
	e := newEnv(t, httpapi.Config{MaxRequestSize: 1 << 20})
	h := httpapi.New(httpapi.Config{Core: e.core, MaxRequestSize: 1 << 20}).Handler()
	revoked := e.must(t, logical.UpdateOperation, "auth/token/create", nil).Auth.ClientToken
	e.must(t, logical.UpdateOperation, "auth/token/revoke", map[string]any{"token": revoked})
	tokens := map[string]string{
		"none":    "",
		"garbage": "garbage token",
		"unknown": "lsr_" + strings.Repeat("A", 32),
		"revoked": revoked,
	}
	bodies := map[string]struct {
		body   string
		length int64 // -1: chunked
	}{
		"malformed JSON":          {`{"policy":`, 10},
		"undeclared length":       {`{"policy":"path \"x\" {}"}`, -1},
		"declared over the limit": {strings.Repeat("x", 100), 2 << 20},
	}
	serve := func(tok, body string, length int64) (*httptest.ResponseRecorder, int64) {
		cnt := &bodyCounter{r: strings.NewReader(body)}
		req := httptest.NewRequest("PUT", "/v1/sys/policy/x", nil)
		req.Body, req.ContentLength = cnt, length
		if tok != "" {
			req.Header.Set("X-Vault-Token", tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec, cnt.n.Load()
	}
	for tname, tok := range tokens {
		for bname, b := range bodies {
			t.Run(tname+"/"+bname, func(t *testing.T) {
				rec, read := serve(tok, b.body, b.length)
				if rec.Code != 403 || rec.Body.String() != `{"errors":["permission denied: missing, invalid or expired token"]}`+"\n" ||
					rec.Header().Get("X-Lessor-Cause") != "invalid_token" {
					t.Fatalf("status %d, body %q, cause %q; want the 403 of a bad token", rec.Code, rec.Body, rec.Header().Get("X-Lessor-Cause"))
				}
				if read != 0 {
					t.Fatalf("%d bytes of the body read before the token was refused", read)
				}
			})
		}
	}
	// The counter counts: with the root token the body is read.
	if rec, read := serve(e.root, `{"policy":`, 10); rec.Code != 400 || read != 10 {
		t.Fatalf("root token, malformed body: status %d, %d bytes read; want 400 after reading 10", rec.Code, read)
	}
	if rec, read := serve(e.root, `{"policy":"path \"x\" { capabilities = [\"read\"] }"}`, -1); rec.Code != 200 || read == 0 {
		t.Fatalf("root token, chunked policy: status %d %s, %d bytes read", rec.Code, rec.Body, read)
	}
}

// TestEnvelope: a 200 has all of Vault's keys, a write that returns
// nothing is 204 with no body, the sys routes copy their data to the top
// level, and a list by LIST and by ?list=true agree.
func TestEnvelope(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	e.must(t, logical.UpdateOperation, "sys/mounts/database", map[string]any{"type": "database"})
	status, body, _ := e.do(t, "PUT", "/v1/sys/policy/apps", e.root, "")
	if status != 400 {
		t.Fatalf("write of no policy: %d %s", status, body)
	}
	if status, body, _ := e.do(t, "POST", "/v1/sys/policy/apps", e.root, `{"policy":`+jsonString(appsPolicy)+`}`); status != 200 {
		t.Fatalf("policy write: %d %s", status, body)
	}
	status, body, hdr := e.do(t, "POST", "/v1/database/roles/quiet", e.root, `{"db_name":"postgresql"}`)
	if status != 204 || body != "" || hdr.Get("Content-Type") != "" {
		t.Fatalf("role write: %d %q %v, want 204 and no body", status, body, hdr)
	}
	status, body, hdr = e.do(t, "GET", "/v1/sys/policy/apps", e.root, "")
	if status != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("policy read: %d %s %v", status, body, hdr)
	}
	var env map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth", "mount_type"} {
		if _, ok := env[k]; !ok {
			t.Errorf("envelope lacks %q: %s", k, body)
		}
	}
	if env["lease_id"] != "" || env["lease_duration"] != float64(0) || env["rules"] != appsPolicy || env["name"] != "apps" {
		t.Errorf("policy envelope: %s", body)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(env["request_id"].(string)) {
		t.Errorf("request_id %v is not a UUID", env["request_id"])
	}

	_, byList, _ := e.do(t, "LIST", "/v1/sys/policy", e.root, "")
	_, byQuery, _ := e.do(t, "GET", "/v1/sys/policy?list=true", e.root, "")
	keys := func(s string) string {
		var v struct {
			Data struct {
				Keys []string `json:"keys"`
			} `json:"data"`
		}
		json.Unmarshal([]byte(s), &v)
		return fmt.Sprint(v.Data.Keys)
	}
	if keys(byList) != keys(byQuery) || !strings.Contains(keys(byList), "apps") {
		t.Errorf("LIST keys %s, ?list=true keys %s", keys(byList), keys(byQuery))
	}

	// A form body, and unknown fields warn (200 with warnings).
	status, body, _ = e.do(t, "PUT", "/v1/database/roles/r", e.root, "db_name=postgresql&default_ttl=60&bogus=1", "Content-Type", "application/x-www-form-urlencoded")
	if status != 200 || !strings.Contains(body, `"warnings":["Endpoint ignored these unrecognized parameters: [bogus]"]`) {
		t.Fatalf("form write with an unknown field: %d %s", status, body)
	}
	status, body, _ = e.do(t, "GET", "/v1/database/roles/r", e.root, "")
	if status != 200 || !strings.Contains(body, `"default_ttl":60`) {
		t.Fatalf("role written by form: %d %s", status, body)
	}
	// DELETE is 204.
	if status, body, _ = e.do(t, "DELETE", "/v1/database/roles/r", e.root, ""); status != 204 || body != "" {
		t.Fatalf("delete: %d %q", status, body)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAuditRemoteAddress: the audit log says where a request came from.
func TestAuditRemoteAddress(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	if status, body, _ := e.do(t, "GET", "/v1/sys/mounts", e.root, ""); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	e.do(t, "GET", "/v1/sys/mounts", "", "")
	raw, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var entry struct {
			Request struct {
				Path          string `json:"path"`
				RemoteAddress string `json:"remote_address"`
			} `json:"request"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatal(err)
		}
		if entry.Request.Path == "sys/mounts" {
			n++
			if entry.Request.RemoteAddress != "127.0.0.1" {
				t.Errorf("audit remote_address %q, want 127.0.0.1: %s", entry.Request.RemoteAddress, line)
			}
		}
	}
	if n < 2 {
		t.Fatalf("%d audit lines for sys/mounts, want the request and the response:\n%s", n, raw)
	}
	if strings.Contains(string(raw), e.root) {
		t.Fatal("the audit log holds the root token in clear")
	}
}

// TestHostileHTTP: oversized bodies, slow headers and garbage get their
// status, and the server stays up and serves the next request; its log
// holds no token.
func TestHostileHTTP(t *testing.T) {
	e := newEnv(t, httpapi.Config{MaxRequestSize: 1 << 20})
	// A body over the limit, declared and undeclared.
	big := `{"policy":"` + strings.Repeat("x", 2<<20) + `"}`
	if status, body, _ := e.do(t, "PUT", "/v1/sys/policy/big", e.root, big); status != 413 || errorsOf(t, body)[0] != "http: request body too large" {
		t.Fatalf("oversized body: %d %s", status, body)
	}
	chunked, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(chunked, "PUT /v1/sys/policy/big HTTP/1.1\r\nHost: x\r\nX-Vault-Token: %s\r\nTransfer-Encoding: chunked\r\n\r\n", e.root)
	chunk := strings.Repeat("y", 64<<10)
	go func() {
		for range 40 {
			if _, err := fmt.Fprintf(chunked, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(chunked), nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %v %v", resp, err)
	}
	chunked.Close()

	// Garbage instead of HTTP.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "\x00\x01\x02 garbage\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("garbage request line: %v %v", resp, err)
	}
	conn.Close()

	if status, body, _ := e.do(t, "GET", "/v1/sys/mounts", e.root, ""); status != 200 {
		t.Fatalf("the server did not survive: %d %s", status, body)
	}
	// A token put into the path (Vault's old auth/token/lookup/<token>)
	// is quoted in neither the answer nor the log.
	if status, body, _ := e.do(t, "GET", "/v1/auth/token/lookup/"+e.root, e.root, ""); status != 404 || strings.Contains(body, e.root) || !strings.Contains(body, "[token]") {
		t.Fatalf("a token in the path: %d %s", status, body)
	}
	if strings.Contains(e.logs.String(), e.root) {
		t.Fatal("the server's log holds the root token")
	}
	if !strings.Contains(e.logs.String(), "path=sys/mounts status=200") {
		t.Fatalf("no request line in the log:\n%s", e.logs)
	}
}

// TestRequestTimeout: a request that outlives its deadline is cut off;
// the server answers it and stays up.
func TestSlowHeadersTimeOut(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	srv := &http.Server{Handler: httpapi.New(httpapi.Config{Core: e.core}).Handler(), ReadHeaderTimeout: 200 * time.Millisecond}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	buf := make([]byte, 512)
	_, err = conn.Read(buf)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("a slow header was not cut off: %v after %v", err, time.Since(start))
	}
}

// TestRequestDeadline: a request whose database never answers is cut off
// at the server's per-request deadline with a 504, leaves no lease, and
// the server goes on serving.
func TestRequestDeadline(t *testing.T) {
	e := newEnv(t, httpapi.Config{RequestTimeout: 300 * time.Millisecond})
	// A "database" that accepts connections and never says a word.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	e.must(t, logical.UpdateOperation, "sys/mounts/database", map[string]any{"type": "database"})
	e.must(t, logical.UpdateOperation, "database/config/mute", map[string]any{
		"plugin_name": "postgresql-database-plugin", "allowed_roles": "r", "verify_connection": false,
		"connection_url": "postgresql://u:p@" + l.Addr().String() + "/db?sslmode=disable",
	})
	e.must(t, logical.UpdateOperation, "database/roles/r", map[string]any{"db_name": "mute", "creation_statements": readonlySQL})
	start := time.Now()
	status, body, _ := e.do(t, "GET", "/v1/database/creds/r", e.root, "")
	if took := time.Since(start); status != http.StatusGatewayTimeout || took > 5*time.Second {
		t.Fatalf("creds from a mute database: %d %s after %v, want 504 at the 300 ms deadline", status, body, took)
	}
	errorsOf(t, body)
	if status, body, _ := e.do(t, "LIST", "/v1/sys/leases/lookup/database/creds/r", e.root, ""); status != 404 {
		t.Fatalf("a lease is left: %d %s", status, body)
	}
	if status, _, _ := e.do(t, "GET", "/v1/sys/mounts", e.root, ""); status != 200 {
		t.Fatalf("the server did not survive: %d", status)
	}
}

// TestTokenInRefusedPathMasked: a path the server refuses as not
// canonical, or as under no mount, is quoted in the error without a token
// it holds (Vault's old auth/token/lookup/<token>, with a stray "..",
// "//" or space), as other errors quote it: a client logs the answer, and
// the CLI prints it.
func TestTokenInRefusedPathMasked(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	for _, p := range []string{
		"/v1/auth/token/lookup/" + e.root + "/..",
		"/v1/auth/token/lookup/" + e.root + "//x",
		"/v1/auth/token/lookup/" + e.root + "%20/x",
		"/v1/auth/token/lookup/" + e.root + "/%C0",
	} {
		for _, tok := range []string{e.root, ""} {
			status, body, _ := e.do(t, "GET", p, tok, "")
			if status != 400 || strings.Contains(body, e.root) || !strings.Contains(body, "[token]") {
				t.Errorf("GET %s: %d %s; want 400 with the token masked", strings.ReplaceAll(p, e.root, "<root>"), status, strings.ReplaceAll(body, e.root, "<root>"))
			}
		}
	}
	if status, body, _ := e.do(t, "GET", "/v1/nomount/"+e.root, e.root, ""); status != 404 || strings.Contains(body, e.root) || !strings.Contains(body, "[token]") {
		t.Errorf("a token in a path under no mount: %d %s; want 404 with the token masked", status, strings.ReplaceAll(body, e.root, "<root>"))
	}
}

// TestAuditFailureHidesTheLog: a request that cannot be audited fails, and
// its client is told only that: where the server keeps its log, and what
// the host said of it, go to the server's log, for the operator.
func TestAuditFailureHidesTheLog(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	// Loosened by someone: lessor refuses to write it.
	if err := os.Chmod(e.audit, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{e.root, "lsr_" + strings.Repeat("x", 32)} {
		status, body, _ := e.do(t, "GET", "/v1/sys/mounts", tok, "")
		if status != http.StatusInternalServerError || strings.Contains(body, filepath.Dir(e.audit)) || !strings.Contains(body, "audited") {
			t.Errorf("a request that could not be audited: %d %s", status, body)
		}
	}
	if !strings.Contains(e.logs.String(), e.audit) {
		t.Errorf("the server's log does not say why the requests were not audited:\n%s", e.logs.String())
	}
}
