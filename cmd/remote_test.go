package cmd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/httpapi"
)

// serveStore serves the store of c's HOME (as `lessor serve` would) on
// the listener ln, or on a new loopback port, and returns the server.
func serveStore(t *testing.T, c *cli, ln net.Listener, tls bool) *httptest.Server {
	t.Helper()
	env := maps.Clone(c.env)
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return env[k] })
	core, err := f.Core(context.Background())
	if err != nil {
		t.Fatalf("open the store to serve it: %v", err)
	}
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{Core: core}).Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the TLS test fails on purpose
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		f.close()
	})
	return srv
}

// remoteCLI is a client of srv: its own HOME (no store, no key), a token.
func remoteCLI(t *testing.T, addr, token string) *cli {
	r := newCLI(t)
	r.env["LESSOR_ADDR"] = addr
	r.env["LESSOR_TOKEN"] = token
	return r
}

// With LESSOR_ADDR set, the CLI prints and exits exactly as it does on
// the local store: successes, refusals (a wrong token, a policy's no, a
// missing sudo), nothing found, bad input and unknown paths alike. The
// same commands run locally and through the server over the same store.
func TestClientPrintsAndExitsAsLocal(t *testing.T) {
	local := newCLI(t)
	local.initStore()
	root := local.env["LESSOR_TOKEN"]
	local.must("secrets", "enable", "database")
	local.must("secrets", "enable", "-path=other", "-description=a second mount", "database")
	policy := local.writeFile("apps.hcl", `path "database/creds/readonly" { capabilities = ["read"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/leases/revoke-prefix/other/*" { capabilities = ["update"] }
`)
	local.must("policy", "write", "apps", policy)
	local.must("write", "database/roles/readonly", "db_name=postgresql", "creation_statements=SELECT 1", "default_ttl=1h", "max_ttl=24h")
	appsToken := strings.TrimSpace(local.must("token", "create", "-policy=apps", "-field=token"))

	srv := serveStore(t, local, nil, false)
	remote := remoteCLI(t, srv.URL, root)

	requestID := regexp.MustCompile(`(?m)("request_id": "|^request_id: )[0-9a-f-]+`)
	for _, tc := range []struct {
		token string // "" is root
		args  []string
	}{
		{"", []string{"read", "sys/mounts"}},
		{"", []string{"read", "-format=json", "sys/mounts"}},
		{"", []string{"read", "-format=yaml", "database/roles/readonly"}},
		{"", []string{"read", "database/roles/readonly"}},
		{"", []string{"read", "-field=max_ttl", "database/roles/readonly"}},
		{"", []string{"read", "-field=nope", "database/roles/readonly"}},
		{"", []string{"read", "database/roles/none"}},
		{"", []string{"read", "nosuch/path"}},
		{"", []string{"list", "database/roles"}},
		{"", []string{"list", "-format=json", "database/roles"}},
		{"", []string{"list", "database/config"}},
		{"", []string{"secrets", "list"}},
		{"", []string{"secrets", "list", "-detailed"}},
		{"", []string{"secrets", "enable", "database"}},
		{"", []string{"policy", "list"}},
		{"", []string{"policy", "read", "apps"}},
		{"", []string{"policy", "read", "nope"}},
		{"", []string{"write", "database/roles/bad", "db_name=postgresql", "default_ttl=soon"}},
		{"", []string{"write", "database/roles/readonly", "nosuchfield=1", "db_name=postgresql", "creation_statements=SELECT 1"}},
		{"", []string{"delete", "database/creds/readonly"}},
		{"", []string{"read", "database/creds/readonly"}},
		{"", []string{"path-help", "database/roles/readonly"}},
		{"", []string{"path-help", "-format=json", "sys/mounts"}},
		{"", []string{"path-help", "database/nope/x"}},
		{"", []string{"token", "capabilities", "database/creds/readonly"}},
		{"", []string{"lease", "lookup", "database/creds/readonly/nope"}},
		{"", []string{"lease", "renew", "database/creds/readonly/nope"}},
		{appsToken, []string{"token", "capabilities", "database/creds/readonly"}},
		{appsToken, []string{"read", "database/roles/readonly"}},
		{appsToken, []string{"read", "nosuch/path"}},
		{appsToken, []string{"secrets", "list"}},
		{appsToken, []string{"lease", "revoke", "-prefix", "database/creds/readonly"}},
		{appsToken, []string{"lease", "revoke", "-prefix", "other/creds/x"}},
		{appsToken, []string{"policy", "write", "evil", policy}},
		{"lsr_00000000000000000000000000000000", []string{"read", "sys/mounts"}},
		{"lsr_00000000000000000000000000000000", []string{"token", "lookup"}},
	} {
		name := strings.Join(tc.args, " ")
		tok := tc.token
		if tok == "" {
			tok = root
		}
		local.env["LESSOR_TOKEN"], remote.env["LESSOR_TOKEN"] = tok, tok
		want := local.run(tc.args...)
		got := remote.run(tc.args...)
		want.stdout = requestID.ReplaceAllString(want.stdout, "${1}X")
		got.stdout = requestID.ReplaceAllString(got.stdout, "${1}X")
		if got.code != want.code || got.stdout != want.stdout || got.stderr != want.stderr {
			t.Errorf("lessor %s:\nlocally:  exit %d\n%s%s\nremotely: exit %d\n%s%s", name, want.code, want.stdout, want.stderr, got.code, got.stdout, got.stderr)
		}
		if strings.Contains(got.stderr, tok) || (tc.token != "" && strings.Contains(got.stdout, tok)) {
			t.Errorf("lessor %s: the token is in the output", name)
		}
	}
}

// The commands that work on the store with its unseal key refuse with one
// line when LESSOR_ADDR is set, and touch nothing local: not even where a
// local store exists.
func TestClientRefusesLocalOnlyCommands(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	srv := serveStore(t, c, nil, false)
	c.env["LESSOR_ADDR"] = srv.URL
	tokenFile := filepath.Join(c.env["HOME"], ".lessor-token")
	before, _ := os.ReadFile(tokenFile)
	for _, args := range [][]string{
		{"operator", "init"},
		{"operator", "rotate"},
		{"operator", "rekey"},
		{"operator", "verify"},
		{"operator", "migrate", "-to=/tmp/x.db"},
		{"operator", "upgrade-schema"},
		{"reap"},
		{"dev"},
	} {
		name := strings.Join(args, " ")
		if strings.HasPrefix(args[len(args)-1], "-") {
			name = strings.Join(args[:len(args)-1], " ")
		}
		r := c.run(args...)
		want := "lessor: error: " + name + " " + localOnlyCommands[name] + ", on the store's host, and is not sent to the server at LESSOR_ADDR (" + srv.URL + "); run it with LESSOR_ADDR unset\n"
		if r.code != exitLocal || r.stderr != want || r.stdout != "" {
			t.Errorf("lessor %s: exit %d\nstdout %q\nstderr %q\nwant exit 1 and %q", name, r.code, r.stdout, r.stderr, want)
		}
	}
	if after, _ := os.ReadFile(tokenFile); string(after) != string(before) {
		t.Errorf("operator init with LESSOR_ADDR changed the token file")
	}

	// A -store flag names a local store: refused, not quietly ignored.
	want := "lessor: error: -store names a local store, but LESSOR_ADDR (" + srv.URL + ") sends requests to a server; unset LESSOR_ADDR to use the local store\n"
	if r := c.run("read", "-store="+filepath.Join(c.env["HOME"], "x.db"), "sys/mounts"); r.code != exitLocal || r.stderr != want {
		t.Errorf("-store with LESSOR_ADDR: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}

	// operator status asks the server, as `vault status` does.
	out := c.must("operator", "status", "-format=json")
	for _, want := range []string{`"address": "` + srv.URL + `"`, `"initialized": true`, `"sealed": false`} {
		if !strings.Contains(out, want) {
			t.Errorf("operator status with LESSOR_ADDR: %s lacks %s", out, want)
		}
	}
	// The local commands still work with LESSOR_ADDR unset.
	c.env["LESSOR_ADDR"] = ""
	c.must("operator", "verify")
}

// A server that does not answer: exit 2 and one line that names
// LESSOR_ADDR, at once (no retries).
func TestClientDeadServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	c := remoteCLI(t, addr, "lsr_secrettokenvalue0000000000000")
	r := c.run("read", "database/creds/readonly")
	want := "lessor: error: read database/creds/readonly: no answer from the server at LESSOR_ADDR (" + addr + "): connection refused\n"
	if r.code != exitFailed || r.stderr != want || r.stdout != "" {
		t.Fatalf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, want)
	}

	// A server that accepts and never answers: the client's timeout.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c.env["LESSOR_ADDR"] = "http://" + ln.Addr().String()
	c.env["LESSOR_CLIENT_TIMEOUT"] = "300ms"
	r = c.run("read", "database/creds/readonly")
	if r.code != exitFailed || !strings.HasSuffix(r.stderr, "(http://"+ln.Addr().String()+"): it did not answer within 300ms\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("silent server: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "secrettokenvalue") {
		t.Fatal("the token is in the error")
	}
}

// TLS: a certificate lessor does not trust is a clear error (exit 2) with
// a hint; LESSOR_CACERT and LESSOR_CAPATH trust the CA; a CA file that is
// missing or holds no certificate is a local error (exit 1).
func TestClientTLS(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	root := c.env["LESSOR_TOKEN"]
	srv := serveStore(t, c, nil, true)
	remote := remoteCLI(t, srv.URL, root)

	r := remote.run("secrets", "list")
	if r.code != exitFailed || !strings.Contains(r.stderr, "(x509: unknown authority)") ||
		!strings.Contains(r.stderr, "lessor: hint: set LESSOR_CACERT to the certificate of the CA that signed the server's certificate\n") {
		t.Fatalf("untrusted certificate: exit %d, stderr %q", r.code, r.stderr)
	}

	// Another CA's certificate does not help.
	remote.env["LESSOR_CACERT"] = remote.writeFile("other-ca.pem", selfSignedCA(t))
	if r := remote.run("secrets", "list"); r.code != exitFailed || !strings.Contains(r.stderr, "unknown authority") {
		t.Fatalf("another CA: exit %d, stderr %q", r.code, r.stderr)
	}

	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	remote.env["LESSOR_CACERT"] = remote.writeFile("ca.pem", caPEM)
	if out := remote.must("secrets", "list"); !strings.Contains(out, "sys/") {
		t.Fatalf("secrets list over TLS: %q", out)
	}
	remote.env["LESSOR_CACERT"] = ""
	dir := filepath.Join(remote.env["HOME"], "cas")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(caPEM), 0o600)
	remote.env["LESSOR_CAPATH"] = dir
	remote.must("secrets", "list")
	remote.env["LESSOR_CAPATH"] = ""

	for file, want := range map[string]string{
		filepath.Join(remote.env["HOME"], "missing.pem"):       "lessor: error: LESSOR_CACERT: CA certificate " + filepath.Join(remote.env["HOME"], "missing.pem") + ": no such file or directory\n",
		remote.writeFile("garbage.pem", "not a certificate\n"): "lessor: error: LESSOR_CACERT: CA certificate " + filepath.Join(remote.env["HOME"], "garbage.pem") + ": no PEM certificate in it\n",
	} {
		remote.env["LESSOR_CACERT"] = file
		if r := remote.run("secrets", "list"); r.code != exitLocal || r.stderr != want {
			t.Errorf("LESSOR_CACERT=%s: exit %d, stderr %q; want exit 1 and %q", file, r.code, r.stderr, want)
		}
	}
}

// Plain http to a host that is not loopback is refused before anything
// is sent, unless LESSOR_ALLOW_HTTP says the network is protected
// otherwise; an address lessor cannot use is a local error.
func TestClientAddressChecks(t *testing.T) {
	c := remoteCLI(t, "http://192.0.2.1:8200", "lsr_x")
	r := c.run("read", "sys/mounts")
	if r.code != exitLocal || !strings.Contains(r.stderr, `lessor: error: LESSOR_ADDR "http://192.0.2.1:8200": is plain http to a host that is not loopback`) ||
		!strings.Contains(r.stderr, "lessor: hint: if the network is protected otherwise (a VPN, a service mesh), set LESSOR_ALLOW_HTTP=true\n") {
		t.Fatalf("plain http: exit %d, stderr %q", r.code, r.stderr)
	}
	c.env["LESSOR_ALLOW_HTTP"] = "true"
	c.env["LESSOR_CLIENT_TIMEOUT"] = "200ms"
	if r := c.run("read", "sys/mounts"); r.code != exitFailed || !strings.Contains(r.stderr, "no answer from the server at LESSOR_ADDR") {
		t.Fatalf("plain http allowed: exit %d, stderr %q", r.code, r.stderr)
	}
	for addr, want := range map[string]string{
		"ftp://host":                  "must start with https://, http:// or unix://",
		"https://user:pw@host":        "must not hold a user name or password",
		"https://host:8200/v1/secret": "must be the server's address only",
		"unix://relative/sock":        "unix:///absolute/path",
	} {
		c.env["LESSOR_ADDR"] = addr
		r := c.run("read", "sys/mounts")
		if r.code != exitLocal || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "pw@") {
			t.Errorf("LESSOR_ADDR=%s: exit %d, stderr %q; want exit 1 and %q", addr, r.code, r.stderr, want)
		}
	}
	c.env["LESSOR_ADDR"] = "http://127.0.0.1:8200"
	c.env["LESSOR_CLIENT_TIMEOUT"] = "soon"
	if r := c.run("read", "sys/mounts"); r.code != exitLocal || !strings.Contains(r.stderr, `LESSOR_CLIENT_TIMEOUT "soon"`) {
		t.Errorf("bad timeout: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A unix:// address reaches a server on a Unix socket.
func TestClientUnixSocket(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	sock := filepath.Join(t.TempDir(), "lessor.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveStore(t, c, ln, false)
	// The address from the config file, the token from `lessor login`.
	remote := remoteCLI(t, "", "")
	remote.env["LESSOR_CONFIG"] = remote.writeFile("config.yaml", "address: unix://"+sock+"\nclient_timeout: 5s\n")
	remote.fails(exitFailed, "^lessor: error: list sys/mounts: no token\nlessor: hint: set LESSOR_TOKEN or run `lessor login` with a token of the server at LESSOR_ADDR\n$", "secrets", "list")
	remote.must("login", "-no-print", c.env["LESSOR_TOKEN"])
	if out := remote.must("secrets", "list"); !strings.Contains(out, "sys/") {
		t.Fatalf("secrets list over a unix socket: %q", out)
	}
}

// A redirect is not followed: it would carry the token to the address it
// names.
func TestClientRefusesRedirects(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "" {
			leaked.Store(true)
		}
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/v1/sys/mounts", http.StatusTemporaryRedirect))
	defer redirector.Close()
	c := remoteCLI(t, redirector.URL, "lsr_secrettoken")
	r := c.run("read", "sys/mounts")
	if r.code != exitFailed || !strings.Contains(r.stderr, "which lessor does not follow") {
		t.Fatalf("redirect: exit %d, stderr %q", r.code, r.stderr)
	}
	if leaked.Load() {
		t.Fatal("the token was sent to the redirect's target")
	}
}

// selfSignedCA returns a new self-signed CA certificate, PEM: one no
// test server uses (httptest's servers share one certificate).
func selfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestClientEmptyAnswers: a server that answers success with nothing in
// it (204, or an empty help page) gets a one-line error from the commands
// that show what an answer holds, never a crash.
func TestClientEmptyAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := remoteCLI(t, srv.URL, "lsr_secrettoken")
	for _, args := range [][]string{
		{"secrets", "list"}, {"policy", "list"}, {"token", "capabilities", "database/creds/x"},
		{"audit", "hash", "x"}, {"path-help", "sys/mounts"},
	} {
		r := c.run(args...)
		if r.code != exitFailed || !strings.Contains(r.stderr, "the answer holds no data") || strings.Contains(r.stderr, "panic") {
			t.Errorf("%v against an empty answer: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

// TestClientEscapesServerText: a server's error text and warnings reach
// the terminal with their control characters written as escapes, so a
// hostile server cannot retitle the window or recolour what follows.
func TestClientEscapesServerText(t *testing.T) {
	const evil = "\x1b]0;PWNED\x07\x1b[31m"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"errors": []string{"bad " + evil}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"a": "b"}, "warnings": []string{"careful " + evil}})
	}))
	defer srv.Close()
	c := remoteCLI(t, srv.URL, "lsr_secrettoken")
	for _, args := range [][]string{{"read", "x/y"}, {"write", "x/y", "a=b"}} {
		r := c.run(args...)
		if strings.ContainsAny(r.stderr, "\x1b\x07") || !strings.Contains(r.stderr, `\x1b]0;PWNED\a`) {
			t.Errorf("%v: stderr %q", args, r.stderr)
		}
	}
}

// TestClientEscapesServerTextOutsideTables: the commands that print a
// server's text as lines of their own rather than through a table (policy
// read and list, path-help, audit hash, token capabilities) write its control characters as
// escapes on a terminal too. A policy's comment may hide the rules after
// it from whoever reads it ("\x1b[8m" conceals the rest of the screen), and
// any writer of policies, or a hostile server, chooses that text. Piped,
// policy read prints the exact text, to be edited and written back.
func TestClientEscapesServerTextOutsideTables(t *testing.T) {
	const evil = "\x1b]0;PWNED\x07\x1b[8m"
	const rules = "path \"a/*\" { capabilities = [\"read\"] }\n# " + evil + "\npath \"*\" { capabilities = [\"sudo\"] }\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var data map[string]any
		switch {
		case r.URL.Query().Get("help") != "":
			data = map[string]any{"path": "x" + evil, "pattern": "p" + evil, "description": "d" + evil, "operations": []string{"read" + evil}}
		case r.URL.Path == "/v1/sys/audit-hash":
			data = map[string]any{"hash": "hmac-sha256:" + evil}
		case r.URL.Path == "/v1/sys/capabilities-self":
			data = map[string]any{"capabilities": []string{"read" + evil}}
		case r.URL.Query().Get("list") != "":
			data = map[string]any{"keys": []string{"apps" + evil}}
		default:
			data = map[string]any{"name": "apps", "policy": rules}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	defer srv.Close()
	c := remoteCLI(t, srv.URL, "lsr_secrettoken")
	runTTY := func(tty bool, args ...string) (string, int) {
		var out, errb strings.Builder
		f := newFactory(strings.NewReader(""), &out, &errb, func(k string) string { return c.env[k] })
		f.IO.OutTTY = tty
		code := run(context.Background(), f, args)
		return out.String() + errb.String(), code
	}
	for _, args := range [][]string{{"policy", "read", "apps"}, {"policy", "list"}, {"path-help", "x"}, {"audit", "hash", "v"}, {"token", "capabilities", "x"}} {
		for _, tty := range []bool{true, false} {
			if tty == false && args[1] == "read" {
				continue
			}
			out, code := runTTY(tty, args...)
			if code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `\x1b]0;PWNED\a\x1b[8m`) {
				t.Errorf("%v (terminal %v): exit %d, output %q", args, tty, code, out)
			}
		}
	}
	if out, code := runTTY(false, "policy", "read", "apps"); code != 0 || out != rules {
		t.Errorf("policy read into a pipe: exit %d, output %q; want the exact text", code, out)
	}
}
