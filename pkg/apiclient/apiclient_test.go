package apiclient

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/token"
)

// vaultServer answers every request with status and body, and records
// the last request.
type vaultServer struct {
	*httptest.Server
	status  int
	body    string
	header  http.Header
	calls   atomic.Int32
	method  string
	path    string
	query   string
	token   string
	payload string
}

func newVaultServer(t *testing.T, status int, body string) *vaultServer {
	v := &vaultServer{status: status, body: body, header: http.Header{}}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.calls.Add(1)
		v.method, v.path, v.query, v.token = r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("X-Vault-Token")
		b, _ := io.ReadAll(r.Body)
		v.payload = string(b)
		for k, vs := range v.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(v.status)
		io.WriteString(w, v.body)
	}))
	t.Cleanup(v.Close)
	return v
}

func newClient(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := New(Config{Address: addr, AddressName: "LESSOR_ADDR"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Each operation becomes the call Vault's client makes.
func TestRequestShape(t *testing.T) {
	v := newVaultServer(t, 204, "")
	c := newClient(t, v.URL)
	for _, tc := range []struct {
		req                          logical.Request
		method, path, query, payload string
	}{
		{logical.Request{Operation: logical.ReadOperation, Path: "database/creds/readonly"}, "GET", "/v1/database/creds/readonly", "", ""},
		{logical.Request{Operation: logical.ReadOperation, Path: "sys/x", Data: map[string]any{"a": "1", "l": []any{"x", "y"}}}, "GET", "/v1/sys/x", "a=1&l=x&l=y", ""},
		{logical.Request{Operation: logical.ListOperation, Path: "database/roles/"}, "GET", "/v1/database/roles", "list=true", ""},
		{logical.Request{Operation: logical.HelpOperation, Path: "database/roles/x"}, "GET", "/v1/database/roles/x", "help=1", ""},
		{logical.Request{Operation: logical.DeleteOperation, Path: "database/roles/x"}, "DELETE", "/v1/database/roles/x", "", ""},
		{logical.Request{Operation: logical.UpdateOperation, Path: "database/roles/x", Data: map[string]any{"ttl": "1h", "n": json.Number("5")}}, "PUT", "/v1/database/roles/x", "", `{"n":5,"ttl":"1h"}`},
		{logical.Request{Operation: logical.UpdateOperation, Path: "a b/c?d#e%f"}, "PUT", "/v1/a%20b/c%3Fd%23e%25f", "", ""},
	} {
		req := tc.req
		req.ClientToken = "lsr_tok"
		if _, err := c.Do(context.Background(), &req); err != nil {
			t.Fatalf("%s %s: %v", req.Operation, req.Path, err)
		}
		if v.method != tc.method || v.path != tc.path || v.query != tc.query || v.payload != tc.payload || v.token != "lsr_tok" {
			t.Errorf("%s %s: sent %s %s ?%s %q token %q; want %s %s ?%s %q", req.Operation, req.Path,
				v.method, v.path, v.query, v.payload, v.token, tc.method, tc.path, tc.query, tc.payload)
		}
	}
	// No token: no header at all.
	if _, err := c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "sys/x"}); err != nil || v.token != "" {
		t.Errorf("without a token: err %v, header %q", err, v.token)
	}
	// A token that would change the header is refused, and not echoed.
	_, err := c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "sys/x", ClientToken: "lsr_a\r\nX-Evil: 1"})
	if err == nil || strings.Contains(err.Error(), "lsr_a") {
		t.Errorf("a token with CR LF: %v", err)
	}
}

// Vault's envelope becomes the logical.Response the local pipeline
// returns: lease, auth, warnings, data with exact numbers, the request id
// and lessor's connection key.
func TestDecodeEnvelope(t *testing.T) {
	v := newVaultServer(t, 200, `{"request_id":"r-1","lease_id":"database/creds/r/abc","renewable":true,"lease_duration":3600,
		"data":{"username":"v-u","password":"p","n":9007199254740993,"l":["a","b"]},"wrap_info":null,"warnings":["w1"],
		"auth":{"client_token":"lsr_x","accessor":"acc","policies":["apps","default"],"token_policies":["apps","default"],
		"identity_policies":null,"metadata":{"k":"v"},"lease_duration":2764800,"renewable":true,"entity_id":"","orphan":false},
		"mount_type":"database","lessor_connection":{"host":"db.internal","port":5433,"database":"app"}}`)
	c := newClient(t, v.URL)
	req := &logical.Request{Operation: logical.ReadOperation, Path: "database/creds/r"}
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := &logical.Response{
		Data:     map[string]any{"username": "v-u", "password": "p", "n": json.Number("9007199254740993"), "l": []any{"a", "b"}},
		Secret:   &logical.Secret{LeaseID: "database/creds/r/abc", TTL: time.Hour, Renewable: true},
		Warnings: []string{"w1"},
		Auth: &logical.Auth{ClientToken: "lsr_x", Accessor: "acc", Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
			Metadata: map[string]string{"k": "v"}, LeaseDuration: 768 * time.Hour, Renewable: true},
		Connection: &logical.Connection{Host: "db.internal", Port: 5433, Database: "app"},
	}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("decoded\n%#v\nwant\n%#v", resp, want)
	}
	if req.ID != "r-1" {
		t.Errorf("request id %q, want r-1", req.ID)
	}

	// Nothing to show: 204, 202 and an empty 404 on a read are nil.
	for _, tc := range []struct {
		status int
		body   string
		op     logical.Operation
	}{{204, "", logical.UpdateOperation}, {202, "", logical.UpdateOperation}, {404, `{"errors":[]}`, logical.ReadOperation}, {404, `{"errors":[]}`, logical.ListOperation}} {
		v.status, v.body = tc.status, tc.body
		resp, err := c.Do(context.Background(), &logical.Request{Operation: tc.op, Path: "x/y"})
		if resp != nil || err != nil {
			t.Errorf("%d on %s: %v, %v; want nil, nil", tc.status, tc.op, resp, err)
		}
	}

	// Help: lessor's help data, bare beside Vault's "help" text.
	v.status, v.body = 200, `{"help":"text","openapi":null,"path":"sys/mounts","operations":["read"]}`
	resp, err = c.Do(context.Background(), &logical.Request{Operation: logical.HelpOperation, Path: "sys/mounts"})
	if err != nil || !reflect.DeepEqual(resp.Data, map[string]any{"path": "sys/mounts", "operations": []any{"read"}}) {
		t.Errorf("help: %v, %v", resp, err)
	}
}

// Error envelopes become the typed errors of the local pipeline, with
// the local text.
func TestDecodeErrors(t *testing.T) {
	v := newVaultServer(t, 0, "")
	c, err := New(Config{Address: v.URL, Causes: map[string]error{"some_cause": io.ErrShortBuffer}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status int
		cause  string
		body   string
		op     logical.Operation
		msg    string
		is     error
	}{
		{403, "", `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, logical.ReadOperation, "permission denied", logical.ErrPermissionDenied},
		{403, "", `{"errors":["permission denied: this path also needs the sudo capability"]}`, logical.UpdateOperation, "permission denied: this path also needs the sudo capability", logical.ErrPermissionDenied},
		{403, "invalid_token", `{"errors":["permission denied: missing, invalid or expired token"]}`, logical.ReadOperation, "permission denied: missing, invalid or expired token", token.ErrBadToken},
		{403, "", `{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`, logical.ReadOperation, "permission denied: missing, invalid or expired token", token.ErrBadToken},
		{403, "", `{"errors":[]}`, logical.ReadOperation, "permission denied", logical.ErrPermissionDenied},
		{404, "", `{"errors":["unsupported path \"database/x\""]}`, logical.ReadOperation, `unsupported path "database/x"`, logical.ErrUnsupportedPath},
		{404, "", `{"errors":[]}`, logical.UpdateOperation, "not found", nil},
		{405, "", `{"errors":["1 error occurred:\n\t* unsupported operation\n\n"]}`, logical.DeleteOperation, "unsupported operation", logical.ErrUnsupportedOperation},
		{400, "", `{"errors":["unknown role: x"]}`, logical.ReadOperation, "unknown role: x", nil},
		{500, "some_cause", `{"errors":["1 error occurred:\n\t* connect: refused\nsecond line\n\n"]}`, logical.ReadOperation, "connect: refused\nsecond line", io.ErrShortBuffer},
		{503, "", `{"errors":["Vault is sealed"]}`, logical.ReadOperation, "Vault is sealed", nil},
	} {
		v.status, v.body = tc.status, tc.body
		v.header = http.Header{}
		if tc.cause != "" {
			v.header.Set("X-Lessor-Cause", tc.cause)
		}
		_, err := c.Do(context.Background(), &logical.Request{Operation: tc.op, Path: "x/y", ClientToken: "t"})
		var ce *logical.CodedError
		if !errors.As(err, &ce) || ce.Status != tc.status || err.Error() != tc.msg {
			t.Errorf("%d %s: %#v; want status %d and %q", tc.status, tc.body, err, tc.status, tc.msg)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%d %s: %v is not %v", tc.status, tc.body, err, tc.is)
		}
	}

	// Not Vault's answer: a proxy's page, a redirect.
	v.status, v.body = 502, "<html>bad gateway</html>"
	_, err = c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "x"})
	if err == nil || !strings.Contains(err.Error(), "answered 502 Bad Gateway without Vault's JSON error") {
		t.Errorf("proxy page: %v", err)
	}
}

// One attempt per request, whatever the answer: a 500 on an issuing read
// must not issue a second credential.
func TestNoRetries(t *testing.T) {
	v := newVaultServer(t, 500, `{"errors":["boom"]}`)
	c := newClient(t, v.URL)
	c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "database/creds/r"})
	v.status = 429
	c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "database/creds/r"})
	if n := v.calls.Load(); n != 2 {
		t.Errorf("%d calls for 2 requests", n)
	}
}

// A server slower than the timeout is a ConnError that says so.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c, err := New(Config{Address: srv.URL, AddressName: "LESSOR_ADDR", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "x"})
	var ce *ConnError
	if !errors.As(err, &ce) || !strings.HasSuffix(err.Error(), ": it did not answer within 100ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("slow server: %v after %v", err, time.Since(start))
	}
}

func TestSplitMultiError(t *testing.T) {
	for in, want := range map[string][]string{
		"plain":                                  {"plain"},
		"1 error occurred:\n\t* one\n\n":         {"one"},
		"2 errors occurred:\n\t* a\n\t* b\n\n":   {"a", "b"},
		"  ":                                     nil,
		"3 errors occurred: not the wrapper\n x": {"3 errors occurred: not the wrapper\n x"},
	} {
		if got := splitMultiError(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitMultiError(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"https://lessor.internal:8200": true,
		"https://lessor.internal":      true,
		"http://127.0.0.1:8200":        true,
		"http://[::1]:8200/":           true,
		"http://localhost:8200":        true,
		"unix:///run/lessor.sock":      true,
		"http://10.0.0.5:8200":         false,
		"http://lessor.internal:8200":  false,
		"https://host:99999":           false,
		"https://":                     false,
		"lessor.internal:8200":         false,
		"https://host/?x=1":            false,
	} {
		_, _, err := parseAddress(addr, false)
		if (err == nil) != ok {
			t.Errorf("parseAddress(%q): %v", addr, err)
		}
	}
	if _, _, err := parseAddress("http://10.0.0.5:8200", true); err != nil {
		t.Errorf("with AllowHTTP: %v", err)
	}
}

// An address refused for any reason never shows a password it holds,
// whether or not it parses as a URL, and wherever a parser would cut it.
func TestBadAddressHidesPassword(t *testing.T) {
	for _, addr := range []string{
		"https://admin:s3cr%zzet@vault.internal:8200", // bad escape
		"https://admin:s3cr[et@vault.internal",        // bad host
		"https://admin:12#s3cret@vault.internal",      // '#' ends the host early
		"https://admin:12?s3cret@vault.internal",      // so does '?'
		"https://admin:s3cr/et@vault.internal",        // and '/'
		"https://admin:s3cret@vault.internal:8200",    // parses: user refused
		"admin:s3cret@vault.internal:8200",            // no scheme
	} {
		_, err := New(Config{Address: addr, AddressName: "LESSOR_ADDR"})
		if err == nil {
			t.Errorf("New(%q): no error", addr)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr") || strings.Contains(msg, "et@") || !strings.Contains(msg, "vault.internal") {
			t.Errorf("New(%q): %q; want the host without the password", addr, msg)
		}
	}
}

// The decoder takes any answer without panicking.
func FuzzDecode(f *testing.F) {
	f.Add(200, `{"data":{"a":1},"lease_id":"x","auth":{"policies":["a"]}}`)
	f.Add(403, `{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`)
	f.Add(404, `{"errors":[]}`)
	f.Add(302, ``)
	f.Fuzz(func(t *testing.T, status int, body string) {
		if status < 100 || status > 999 {
			return
		}
		c := &Client{addr: "http://x", name: "LESSOR_ADDR"}
		for _, op := range []logical.Operation{logical.ReadOperation, logical.HelpOperation, logical.UpdateOperation} {
			hresp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{}}
			resp, err := c.decode(&logical.Request{Operation: op, Path: "x"}, hresp, []byte(body))
			if resp != nil && err != nil {
				t.Fatalf("both a response and an error")
			}
		}
	})
}

// serveSocket serves a Vault-like answer on a Unix socket at sock and
// counts the requests that carried a token.
func serveSocket(t *testing.T, sock string) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var tokens atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "" {
			tokens.Add(1)
		}
		io.WriteString(w, `{"data":{"ok":true}}`)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &tokens
}

// TestSocketInSharedDirectory: no token goes to a Unix socket in a
// directory other users can write to, where any of them could have put
// their own server; in a directory only its owner writes, it does.
func TestSocketInSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	tokens := serveSocket(t, sock)

	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Address: "unix://" + sock, Header: http.Header{"X-Vault-Token": {"lsr_x"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "sys/mounts")
	if err == nil || !strings.Contains(err.Error(), "can be written by other users (mode 1777)") || tokens.Load() != 0 {
		t.Fatalf("socket in a shared directory: %v, %d tokens sent", err, tokens.Load())
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "sys/mounts"); err != nil || tokens.Load() != 1 {
		t.Fatalf("socket in a private directory: %v, %d tokens sent", err, tokens.Load())
	}
	// A private directory under one that others can write, not sticky:
	// they could rename it away and put their own in its place.
	parent := filepath.Dir(dir)
	fi, err := os.Stat(parent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(parent, fi.Mode())
	// (A new client: the first one's open connection was checked when it
	// was dialled.)
	c, err = New(Config{Address: "unix://" + sock, Header: http.Header{"X-Vault-Token": {"lsr_x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = c.Get(context.Background(), "sys/mounts"); err == nil || !strings.Contains(err.Error(), "the directory above it, "+parent+" can be written by other users (mode 0777)") || tokens.Load() != 1 {
		t.Fatalf("socket under a world-writable directory: %v, %d tokens sent", err, tokens.Load())
	}
}

// TestCACertNotAFile: a CA "file" that is a device or a pipe is refused
// at once, never read without end or waited on.
func TestCACertNotAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{"/dev/zero", fifo} {
		_, err := New(Config{Address: "https://127.0.0.1:8200", CACert: ca})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("CA certificate %s: %v", ca, err)
		}
	}
}

// TestNonCanonicalPathNotSent: "..", "." and empty segments never leave
// the client; the error is the one the server (and local mode) gives.
func TestNonCanonicalPathNotSent(t *testing.T) {
	v := newVaultServer(t, 200, `{"data":{}}`)
	c := newClient(t, v.URL)
	for _, p := range []string{"database/roles/../../sys/policy/root", "database//creds/x", "database/./creds/x"} {
		_, err := c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: p})
		_, want := logical.CanonicalPath(p, false)
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("%s: %v, want %v", p, err, want)
		}
	}
	if n := v.calls.Load(); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}

// TestTLSFailureReasons: https:// to a plain HTTP server, and a
// certificate for another name, each say what is wrong; neither is a
// question of which CA to trust.
func TestTLSFailureReasons(t *testing.T) {
	plain := newVaultServer(t, 200, `{"data":{}}`)
	c := newClient(t, strings.Replace(plain.URL, "http://", "https://", 1))
	_, err := c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "sys/mounts"})
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Certificate || !strings.Contains(err.Error(), "it answered in plain HTTP, not TLS") {
		t.Errorf("https to plain HTTP: %v", err)
	}

	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	c, err = New(Config{Address: "https://localhost:" + port, CACert: ca})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "sys/mounts"})
	if !errors.As(err, &ce) || ce.Certificate || !strings.Contains(err.Error(), "its certificate is not valid for localhost") {
		t.Errorf("certificate for another name: %v", err)
	}
}

// TestCACertOthersCanChange: a CA file that users other than its owner
// could change is refused, as a config file is: one of them could add a
// CA of their own, answer for the server (on a local port it is not bound
// to for the moment, say) with a certificate lessor would trust, and
// receive the token.
func TestCACertOthersCanChange(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	write := func(dir string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(p, caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	write(open, 0o644)
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"world-writable file":  {Config{CACert: write(t.TempDir(), 0o666)}, "is writable by group or others (mode 0666)"},
		"group-writable file":  {Config{CACert: write(t.TempDir(), 0o664)}, "is writable by group or others (mode 0664)"},
		"world-writable dir":   {Config{CACert: write(open, 0o644)}, open + " can be written by other users (mode 0777)"},
		"file in a CA dir":     {Config{CAPath: filepath.Dir(write(t.TempDir(), 0o646))}, "is writable by group or others (mode 0646)"},
		"world-writable CAdir": {Config{CAPath: open}, open + " can be written by other users (mode 0777)"},
	} {
		c.cfg.Address = "https://127.0.0.1:8200"
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if _, err := New(Config{Address: "https://127.0.0.1:8200", CACert: write(t.TempDir(), 0o644)}); err != nil {
		t.Errorf("a CA file only its owner can change: %v", err)
	}
}

// TestCACertInStickyMount: a Kubernetes secret or config map is mounted
// as a sticky directory anyone may write to (mode 1777), each file a link
// through ..data to a directory of its own: a CA file there, whose names
// belong to root, is one no other user can replace, and is taken. A name
// there that another user owns is refused.
func TestCACertInStickyMount(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	mount := t.TempDir()
	if err := os.Chmod(mount, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	version := filepath.Join(mount, "..2026_12_07_16_00_00.1")
	if err := os.Mkdir(version, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(version, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(version), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(mount, "ca.crt")
	if err := os.Symlink("..data/ca.crt", ca); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Address: srv.URL, CACert: ca}); err != nil {
		t.Fatalf("a CA file mounted from a secret: %v", err)
	}

	if os.Geteuid() != 0 {
		return
	}
	// Another user's name in the sticky directory: theirs to replace.
	if err := os.Lchown(ca, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Address: srv.URL, CACert: ca}); err == nil || !strings.Contains(err.Error(), "can be written by other users") {
		t.Errorf("a CA name another user owns in a sticky directory: %v", err)
	}
}

// TestSocketDirMadeInStickyByAnother: in a sticky directory anyone may
// write to (/tmp), a directory is its maker's: one another user made,
// before the server made its own, holds whatever socket or CA file that
// user put there, however private its mode. No token goes to a socket
// there, directly or through a link, and no CA file there is trusted; the
// same directory made by root or by the caller is taken.
func TestSocketDirMadeInStickyByAnother(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory another user owns")
	}
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(shared, "lessor")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(theirs, "s.sock")
	tokens := serveSocket(t, sock)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()
	ca := filepath.Join(theirs, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link of the caller's own, in a private directory, that leads
	// into it.
	link := filepath.Join(t.TempDir(), "run")
	if err := os.Symlink(theirs, link); err != nil {
		t.Fatal(err)
	}
	try := func() (sockErrs []error, caErr error) {
		for _, p := range []string{sock, filepath.Join(link, "s.sock")} {
			c, err := New(Config{Address: "unix://" + p, Header: http.Header{"X-Vault-Token": {"lsr_x"}}})
			if err == nil {
				_, err = c.Get(context.Background(), "sys/mounts")
			}
			sockErrs = append(sockErrs, err)
		}
		_, caErr = New(Config{Address: tlsSrv.URL, CACert: ca})
		return sockErrs, caErr
	}

	if err := os.Lchown(theirs, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	sockErrs, caErr := try()
	for _, err := range sockErrs {
		if err == nil || !strings.Contains(err.Error(), theirs+" was made by another user in "+shared) {
			t.Errorf("socket in a directory another user made in a sticky one: %v", err)
		}
	}
	if tokens.Load() != 0 {
		t.Errorf("%d tokens sent there", tokens.Load())
	}
	if caErr == nil || !strings.Contains(caErr.Error(), theirs+" was made by another user in "+shared) {
		t.Errorf("CA file in a directory another user made in a sticky one: %v", caErr)
	}

	if err := os.Lchown(theirs, 0, 0); err != nil {
		t.Fatal(err)
	}
	sockErrs, caErr = try()
	for _, err := range sockErrs {
		if err != nil {
			t.Errorf("socket in a directory root made in a sticky one: %v", err)
		}
	}
	if caErr != nil {
		t.Errorf("CA file in a directory root made in a sticky one: %v", caErr)
	}
}

// TestLoopbackOnly: plain HTTP is allowed to "localhost" as a name of this
// host, and served there; where the resolver says it is another address
// (no localhost in /etc/hosts, then DNS), the dial and the listen are
// refused before a token crosses the network in clear.
func TestLoopbackOnly(t *testing.T) {
	for _, a := range []string{"127.0.0.1:8200", "127.0.0.53:1", "[::1]:8200"} {
		if err := LoopbackOnly("tcp", a, nil); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"10.1.2.3:8200", "[2001:db8::1]:8200", "0.0.0.0:8200"} {
		if err := LoopbackOnly("tcp", a, nil); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: %v", a, err)
		}
	}
	// The client still reaches a server on localhost.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":{"keys":["a"]}}`)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	c, err := New(Config{Address: "http://localhost:" + port})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "sys/policy"); err != nil {
		t.Fatalf("plain HTTP to localhost: %v", err)
	}
}
