// Package apiclient sends lessor's requests to a server that speaks
// Vault's HTTP API (`lessor serve`), so that the CLI with LESSOR_ADDR set
// is a client: a host then holds a token and never the store or its key.
//
// A logical.Request becomes the call Vault's own client would make: GET
// (read), PUT (create, update), DELETE, GET with ?list=true (list) and
// GET with ?help=1 (help) on /v1/<path>, the token in X-Vault-Token, the
// data of a PUT as a JSON body and of the other methods as query
// parameters. Vault's response envelope becomes a logical.Response, and
// its error envelope the same typed errors the local pipeline returns (a
// *logical.CodedError whose chain holds logical.ErrPermissionDenied,
// token.ErrBadToken, logical.ErrUnsupportedPath…), so that the CLI prints
// and exits the same way whether the request went to the local store or
// to a server.
//
// What the client promises:
//   - it fails fast: one attempt per request, no retries, a bounded dial,
//     TLS handshake and whole-request time;
//   - it never follows a redirect (it would carry the token to another
//     address) and never sends the token over plain HTTP to a host that is
//     not loopback unless told to (Config.AllowHTTP);
//   - the token appears only in the request header: never in a URL, an
//     error or anything the client returns.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/token"
	"github.com/lessorhq/lessor/pkg/vaultwire"
)

// Defaults, as Vault's CLI has them where it has one.
const (
	// DefaultTimeout bounds a whole request (Vault's VAULT_CLIENT_TIMEOUT
	// default): issuing a credential waits on PostgreSQL at the server.
	DefaultTimeout = 60 * time.Second
	// dialTimeout and handshakeTimeout make a host that drops packets fail
	// well before the request's own timeout.
	dialTimeout      = 10 * time.Second
	handshakeTimeout = 10 * time.Second
	// maxResponse bounds what is read of a response (Vault's own request
	// limit is 32 MiB).
	maxResponse = 32 << 20
)

// Config says where the server is and how to trust it.
type Config struct {
	// Address is the server's address: https://host[:port],
	// http://host[:port], or unix:///path/to/socket.
	Address string
	// AddressName names the setting Address came from in error messages
	// (the CLI says "LESSOR_ADDR"); default "the server address".
	AddressName string
	// CACert is a PEM file of CA certificates to trust instead of the
	// system's; CAPath a directory of them. Both may be set.
	CACert, CAPath string
	// Timeout bounds each request; zero is DefaultTimeout.
	Timeout time.Duration
	// AllowHTTP lets an http:// address name a host that is not
	// loopback: the token then crosses the network in clear.
	AllowHTTP bool
	// Header is added to every request.
	Header http.Header
	// Causes maps the names a lessor server gives in its X-Lessor-Cause
	// header to the errors they stand for; the one named is put in the
	// returned error's chain (as its Cause), so that errors.Is finds it as
	// it does for a local request. "invalid_token" is always known: it is
	// token.ErrBadToken.
	Causes map[string]error
}

// Client sends requests to one server. It is safe for concurrent use.
type Client struct {
	base   *url.URL // scheme and host of the requests; path empty
	addr   string   // the address as configured, for messages
	name   string
	http   *http.Client
	header http.Header
	causes map[string]error
}

// ConfigError is a setting the client cannot work with: an address it
// cannot parse, a CA file it cannot read. Setting is "address", "ca_cert"
// or "ca_path".
type ConfigError struct {
	Setting string
	Err     error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConnError is a request that got no answer from the server: it could
// not be reached, the TLS handshake failed, or it did not answer in time.
type ConnError struct {
	// Addr is the server's address, AddrName the setting it came from.
	Addr, AddrName string
	// Reason says what went wrong, in lower case; Err is the cause.
	Reason string
	Err    error
	// Certificate is set when the server's certificate was not trusted.
	Certificate bool
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("no answer from the server at %s (%s): %s", e.AddrName, e.Addr, e.Reason)
}
func (e *ConnError) Unwrap() error { return e.Err }

// New checks the configuration and returns a client. It reads the CA
// files, and contacts nothing.
func New(cfg Config) (*Client, error) {
	name := cfg.AddressName
	if name == "" {
		name = "the server address"
	}
	raw := strings.TrimSpace(cfg.Address)
	base, socket, err := parseAddress(raw, cfg.AllowHTTP)
	if err != nil {
		return nil, &ConfigError{Setting: "address", Err: fmt.Errorf("%s %q: %w", name, redact(raw), err)}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   handshakeTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if IsLoopback(base.Hostname()) {
		// A server on this host is never reached through a proxy: the
		// environment's proxy settings exempt only the exact name
		// "localhost", and a plain-http request would hand the proxy the
		// token in clear.
		tr.Proxy = nil
		if base.Scheme == "http" {
			// Plain HTTP is allowed for "localhost" as a name of this
			// host; a resolver that says otherwise (no localhost in
			// /etc/hosts, then DNS) gets no token in clear.
			tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: LoopbackOnly}).DialContext
		}
	}
	if socket != "" {
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			if err := CheckSocketDir(socket); err != nil {
				return nil, err
			}
			var d net.Dialer
			d.Timeout = dialTimeout
			return d.DialContext(ctx, "unix", socket)
		}
	}
	if base.Scheme == "https" {
		tc, err := tlsConfig(cfg.CACert, cfg.CAPath)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hc := &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect would take the token to whatever address it names.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{base: base, addr: raw, name: name, http: hc, header: cfg.Header.Clone(), causes: cfg.Causes}, nil
}

// CheckSocketDir refuses a Unix socket whose directory users other than
// its owner can write to (/tmp, a group-writable directory): any of them
// could remove the server's socket or take the path before the server
// binds it, and collect the token of every client that connects. The
// directories above it may be writable by others only if sticky (as /tmp
// is): otherwise one of those users could rename the socket's directory
// and put one of their own in its place. In a sticky directory, the
// directory below it must be root's or the caller's: another user may
// have made it first, with a socket of theirs in it. The owner of the
// socket's own directory is not checked: the server's user is often not
// the client's. A path through a link is judged as named and as the
// kernel follows it. The server refuses to listen there and the client
// to send a token there.
func CheckSocketDir(socket string) error {
	names := []string{socket}
	if real, err := filepath.EvalSymlinks(filepath.Dir(socket)); err == nil {
		if real = filepath.Join(real, filepath.Base(socket)); real != filepath.Clean(socket) {
			names = append(names, real)
		}
	}
	for _, p := range names {
		r, err := othersCanReplace(p, false)
		if err != nil {
			return fmt.Errorf("unix socket %s: %w", socket, err)
		}
		if r != nil {
			return &SocketDirError{fmt.Sprintf("unix socket %s: %s, who could put a socket of their own at this path; use a directory only its owner can write, such as /run/lessor", socket, r)}
		}
	}
	return nil
}

// replaceable is how users other than a directory's owner could put
// another file at a path: Dir is a directory they may write to (Holds:
// the one that holds the path), or, with MadeIn set, a directory one of
// them made in MadeIn, a sticky directory they may write to. Mode is the
// mode of the directory they may write to.
type replaceable struct {
	Dir, MadeIn string
	Mode        uint32
	Holds       bool
}

func (r *replaceable) String() string {
	if r.MadeIn != "" {
		return fmt.Sprintf("%s was made by another user in %s (mode %04o)", r.Dir, r.MadeIn, r.Mode)
	}
	role := "the directory above it,"
	if r.Holds {
		role = "its directory"
	}
	return fmt.Sprintf("%s %s can be written by other users (mode %04o)", role, r.Dir, r.Mode)
}

// othersCanReplace returns how users other than its owner could put
// another file at path, or nil if they cannot: through the directory that
// holds it, if group or others may write to it (sticky or not, unless
// stickyHolds: an entry that exists and that none of them owns cannot be
// replaced in a sticky directory); through one above it that they may
// write to and is not sticky (they could rename the directory below it);
// or, in one that is sticky, through the directory below it if one of
// them owns it (they made it, and what is in it).
func othersCanReplace(path string, stickyHolds bool) (*replaceable, error) {
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	child := ""
	for d, first := abs, true; ; d, first = filepath.Dir(d), false {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, err
		}
		if m := fi.Mode(); m.Perm()&0o022 != 0 {
			mode := uint32(m.Perm())
			if m&fs.ModeSticky != 0 {
				mode |= 0o1000
			}
			switch {
			case (first && !stickyHolds) || m&fs.ModeSticky == 0:
				return &replaceable{Dir: d, Mode: mode, Holds: first}, nil
			case !first && !ownEntry(child):
				return &replaceable{Dir: child, MadeIn: d, Mode: mode}, nil
			}
		}
		if filepath.Dir(d) == d {
			return nil, nil
		}
		child = d
	}
}

// SocketDirError is CheckSocketDir's refusal.
type SocketDirError struct{ msg string }

func (e *SocketDirError) Error() string { return e.msg }

// Address returns the server's address as configured.
func (c *Client) Address() string { return c.addr }

// parseAddress reads an address: the URL requests go to (scheme and
// host only) and, for unix://, the socket's path.
func parseAddress(raw string, allowHTTP bool) (*url.URL, string, error) {
	if raw == "" {
		return nil, "", errors.New("is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", errors.New("is not a URL")
	}
	if u.User != nil {
		// A password here would be printed in every message that names
		// the address.
		return nil, "", errors.New("must not hold a user name or password (the token is the credential)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, "", errors.New("must not hold a query or fragment")
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if u.Host != "" || !filepath.IsAbs(p) {
			return nil, "", errors.New("a unix socket address is unix:///absolute/path")
		}
		return &url.URL{Scheme: "http", Host: "localhost"}, p, nil
	case "http", "https":
	default:
		return nil, "", errors.New("must start with https://, http:// or unix://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, "", errors.New("names no host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("port %q is not a port number", port)
		}
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" {
		return nil, "", errors.New("must be the server's address only, with no path (requests go to /v1/…)")
	}
	if u.Scheme == "http" && !allowHTTP && !IsLoopback(u.Hostname()) {
		return nil, "", errors.New("is plain http to a host that is not loopback: the token would cross the network in clear; use https://")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, "", nil
}

// redact hides a password in an address that holds one, for messages.
// It works on the text, not on what a URL parser makes of it: a password
// with a '#', '?' or '/' ends the host early, so the parser either fails
// or finds no user at all, and shows the password as a host, a port or a
// fragment. Everything up to the last '@' (after the scheme) is hidden.
func redact(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	scheme, _, ok := strings.Cut(raw[:at], "://")
	if !ok {
		return "xxxxx" + raw[at:]
	}
	return scheme + "://xxxxx" + raw[at:]
}

// IsLoopback reports whether host is "localhost" or a loopback address.
// Other names are not looked up: what a name resolves to can change.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackOnly is a net.Dialer or net.ListenConfig Control that refuses
// an address, as resolved, that is not a loopback one: "localhost" is
// resolved by /etc/hosts, or by DNS where that file lacks it.
func LoopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s resolved to %s, not a loopback address, and plain HTTP goes only to one", "localhost", host)
	}
	return nil
}

// tlsConfig trusts the CA certificates in caCert and caPath, or the
// system's when neither is set.
func tlsConfig(caCert, caPath string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caCert == "" && caPath == "" {
		return tc, nil
	}
	pool := x509.NewCertPool()
	if caCert != "" {
		if err := addPEMFile(pool, caCert); err != nil {
			return nil, &ConfigError{Setting: "ca_cert", Err: err}
		}
	}
	if caPath != "" {
		entries, err := os.ReadDir(caPath)
		if err != nil {
			return nil, &ConfigError{Setting: "ca_path", Err: fmt.Errorf("CA directory %s: %w", caPath, unwrapPath(err))}
		}
		n := 0
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			p := filepath.Join(caPath, e.Name())
			if err := addPEMFile(pool, p); err != nil {
				return nil, &ConfigError{Setting: "ca_path", Err: err}
			}
			n++
		}
		if n == 0 {
			return nil, &ConfigError{Setting: "ca_path", Err: fmt.Errorf("CA directory %s holds no certificate file", caPath)}
		}
	}
	tc.RootCAs = pool
	return tc, nil
}

func addPEMFile(pool *x509.CertPool, path string) error {
	// O_NONBLOCK: a FIFO at the path fails the check below instead of
	// hanging the command; /dev/zero is not a file either.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("CA certificate %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("CA certificate %s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("CA certificate %s: not a regular file", path)
	}
	if err := checkCAFile(path, fi); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return fmt.Errorf("CA certificate %s: %w", path, unwrapPath(err))
	}
	if len(b) > maxPEMFile {
		return fmt.Errorf("CA certificate %s: larger than %d MiB", path, maxPEMFile>>20)
	}
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("CA certificate %s: no PEM certificate in it", path)
	}
	return nil
}

// checkCAFile refuses, as a config file is refused, a CA file (fi, of
// the file opened) that users other than its owner could change or put
// another in the place of: one of them could add a CA of their own and
// answer for the server (on a local port it is not bound to for the
// moment, say) with a certificate lessor would trust, and receive the
// token. The owner is not checked: the file is often the server account's.
// In a sticky directory (a Kubernetes secret or config map is mounted as
// one, mode 1777, its files links to a directory of their own) a name
// that belongs to root or to the caller is one no other user can replace.
func checkCAFile(path string, fi fs.FileInfo) error {
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("CA certificate %s: is writable by group or others (mode %04o), who could make lessor trust a server of theirs; run: chmod go-w %s", path, uint32(m), path)
	}
	names := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		names = append(names, real)
	}
	for _, p := range names {
		r, err := othersCanReplace(p, ownEntry(p))
		if err != nil {
			return fmt.Errorf("CA certificate %s: %w", path, unwrapPath(err))
		}
		if r != nil {
			return fmt.Errorf("CA certificate %s: %s, who could put a CA file of their own in its place", path, r)
		}
	}
	return nil
}

// ownEntry reports whether the name path (a link itself, not what it
// leads to) belongs to root or to the user running lessor.
func ownEntry(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid == 0 || int(st.Uid) == os.Geteuid())
}

// maxPEMFile bounds a CA file (the system's bundle is about 200 KiB).
const maxPEMFile = 16 << 20

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Do sends one request and returns the server's response the way
// core.Handle returns one: nil for nothing found (a read or list the
// server answered with an empty 404) or nothing to show (204), and the
// request's ID set from the response.
func (c *Client) Do(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	hreq, err := c.newRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponse+1))
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("the server at %s (%s) sent more than %d MiB", c.name, c.addr, maxResponse>>20)
	}
	return c.decode(req, hresp, body)
}

// Get reads a path that answers with a bare JSON object rather than an
// envelope (sys/seal-status, sys/health), with no token.
func (c *Client) Get(ctx context.Context, path string) (map[string]any, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path, nil).String(), nil)
	if err != nil {
		return nil, err
	}
	c.setHeaders(hreq)
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponse))
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	if hresp.StatusCode >= 300 {
		return nil, c.statusError(&logical.Request{Operation: logical.ReadOperation, Path: path}, hresp, body)
	}
	var m map[string]any
	if err := unmarshal(body, &m); err != nil || m == nil {
		return nil, c.unexpected(hresp, "a JSON object")
	}
	return m, nil
}

func (c *Client) setHeaders(h *http.Request) {
	for k, vs := range c.header {
		for _, v := range vs {
			h.Header.Add(k, v)
		}
	}
	// As Vault's client: a server behind Vault Agent's SSRF guard wants it.
	h.Header.Set("X-Vault-Request", "true")
}

// url builds /v1/<path> with each segment escaped, so that a name holding
// "?", "#" or "%" stays part of the path.
func (c *Client) url(path string, q url.Values) *url.URL {
	path = strings.Trim(path, "/")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u := *c.base
	u.Path = "/v1/" + path
	u.RawPath = "/v1/" + strings.Join(segs, "/")
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return &u
}

func (c *Client) newRequest(ctx context.Context, req *logical.Request) (*http.Request, error) {
	if !validToken(req.ClientToken) {
		// Never quoted: it may be a secret pasted in the wrong place.
		return nil, logical.Errorf("the token holds characters a token cannot (a space, a control character)")
	}
	// A path the server refuses as not canonical ("a/../b", "a//b") is
	// refused here, with the server's error: a proxy in between that
	// normalises paths would send it on as another one.
	if _, err := logical.CanonicalPath(req.Path, req.Operation == logical.ListOperation); err != nil {
		return nil, err
	}
	var method string
	var body io.Reader
	q := url.Values{}
	switch req.Operation {
	case logical.ReadOperation:
		method = http.MethodGet
		addQuery(q, req.Data)
	case logical.ListOperation:
		method = http.MethodGet
		addQuery(q, req.Data)
		q.Set("list", "true")
	case logical.HelpOperation:
		method = http.MethodGet
		q.Set("help", "1")
	case logical.DeleteOperation:
		method = http.MethodDelete
		addQuery(q, req.Data)
	case logical.CreateOperation, logical.UpdateOperation:
		method = http.MethodPut
		if req.Data != nil {
			b, err := json.Marshal(req.Data)
			if err != nil {
				return nil, logical.Errorf("encode the request data: %v", err)
			}
			body = bytes.NewReader(b)
		}
	default:
		return nil, fmt.Errorf("operation %q cannot be sent to a server", req.Operation)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, c.url(req.Path, q).String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.Path, err)
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	c.setHeaders(hreq)
	if req.ClientToken != "" {
		hreq.Header.Set("X-Vault-Token", req.ClientToken)
	}
	return hreq, nil
}

// validToken refuses what cannot be a token: anything but printable
// ASCII without spaces would either be refused by the HTTP library (with
// an error of its own) or change the header.
func validToken(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// addQuery puts request data into query parameters as Vault's CLI does
// for a read: one value per key, a list as the key repeated.
func addQuery(q url.Values, data map[string]any) {
	for k, v := range data {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				q.Add(k, queryValue(e))
			}
		case []string:
			for _, e := range x {
				q.Add(k, e)
			}
		default:
			q.Add(k, queryValue(v))
		}
	}
}

func queryValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// connError explains a request that got no answer.
func (c *Client) connError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return ctxErr
	}
	e := &ConnError{Addr: c.addr, AddrName: c.name, Err: err, Reason: "the connection failed"}
	var (
		uae  x509.UnknownAuthorityError
		hne  x509.HostnameError
		cie  x509.CertificateInvalidError
		cve  *tls.CertificateVerificationError
		rhe  tls.RecordHeaderError
		dnse *net.DNSError
		ope  *net.OpError
		ne   net.Error
	)
	var sde *SocketDirError
	switch {
	case errors.As(err, &sde):
		e.Reason = "no token is sent there: " + sde.Error()
	case errors.As(err, &uae):
		e.Certificate = true
		e.Reason = "its certificate is signed by an authority lessor does not trust (x509: unknown authority)"
	case errors.As(err, &hne):
		// Not a question of trust: another CA file would not help.
		e.Reason = fmt.Sprintf("its certificate is not valid for %s (name the server in the address as its certificate does)", hne.Host)
	case errors.Is(err, http.ErrSchemeMismatch):
		e.Reason = "it answered in plain HTTP, not TLS (then the address is http://)"
	case errors.As(err, &cie):
		e.Certificate = true
		e.Reason = "its certificate is not valid: " + cie.Error()
	case errors.As(err, &cve):
		e.Certificate = true
		e.Reason = "its certificate did not verify: " + cve.Err.Error()
	case errors.As(err, &rhe):
		e.Reason = "it did not answer in TLS (is it plain http? then the address is http://)"
	case errors.As(err, &dnse):
		e.Reason = "cannot resolve the host name " + dnse.Name
		if dnse.IsNotFound {
			e.Reason = "no such host: " + dnse.Name
		}
	case errors.As(err, &ne) && ne.Timeout():
		e.Reason = fmt.Sprintf("it did not answer within %s", c.http.Timeout)
		if errors.As(err, &ope) && ope.Op == "dial" {
			e.Reason = fmt.Sprintf("no connection within %s", dialTimeout)
		}
	case errors.As(err, &ope):
		e.Reason = ope.Err.Error()
		var se *os.SyscallError
		if errors.As(ope.Err, &se) {
			e.Reason = se.Err.Error() // "connection refused", not "connect: connection refused"
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.Reason = "it closed the connection without an answer"
	}
	return e
}

// unmarshal decodes JSON keeping numbers as json.Number, as the local
// pipeline keeps integers exact.
func unmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

func (c *Client) decode(req *logical.Request, hresp *http.Response, body []byte) (*logical.Response, error) {
	status := hresp.StatusCode
	if status >= 300 {
		return nil, c.statusError(req, hresp, body)
	}
	if status == http.StatusNoContent || status == http.StatusAccepted || len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if req.Operation == logical.HelpOperation {
		return c.decodeHelp(hresp, body)
	}
	var env vaultwire.Response
	if err := unmarshal(body, &env); err != nil {
		return nil, c.unexpected(hresp, "Vault's JSON response")
	}
	if env.RequestID != "" {
		req.ID = env.RequestID
	}
	resp := env.Logical()
	return resp, nil
}

// decodeHelp reads a help answer: lessor's help data under "data", or at
// the top level of Vault's bare help object beside its "help" text.
func (c *Client) decodeHelp(hresp *http.Response, body []byte) (*logical.Response, error) {
	var m map[string]any
	if err := unmarshal(body, &m); err != nil || m == nil {
		return nil, c.unexpected(hresp, "a JSON help object")
	}
	if d, ok := m["data"].(map[string]any); ok {
		return &logical.Response{Data: d}, nil
	}
	delete(m, "help")
	delete(m, "openapi")
	return &logical.Response{Data: m}, nil
}

// statusError turns an error status into the error the local pipeline
// returns for the same failure.
func (c *Client) statusError(req *logical.Request, hresp *http.Response, body []byte) error {
	status := hresp.StatusCode
	if status < 400 {
		loc := hresp.Header.Get("Location")
		return fmt.Errorf("the server at %s (%s) answered %d with a redirect to %q, which lessor does not follow; set %s to the address it names",
			c.name, c.addr, status, loc, c.name)
	}
	var ee struct {
		Errors *[]string `json:"errors"`
	}
	if err := unmarshal(body, &ee); err != nil || ee.Errors == nil {
		return c.unexpected(hresp, "Vault's JSON error")
	}
	var msgs []string
	for _, e := range *ee.Errors {
		msgs = append(msgs, splitMultiError(e)...)
	}
	if len(msgs) == 0 {
		switch {
		case status == http.StatusNotFound && (req.Operation == logical.ReadOperation || req.Operation == logical.ListOperation || req.Operation == logical.HelpOperation):
			return nil // nothing at the path, as a local read returns
		case status == http.StatusForbidden:
			msgs = []string{"permission denied"}
		default:
			msgs = []string{strings.ToLower(http.StatusText(status))}
		}
	}
	ce := &logical.CodedError{Status: status, Msg: strings.Join(msgs, "; ")}
	causes := strings.Split(hresp.Header.Get("X-Lessor-Cause"), ",")
	for i := range causes {
		causes[i] = strings.TrimSpace(causes[i])
	}
	badToken := slices.Contains(causes, "invalid_token") ||
		slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, "invalid token") })
	switch {
	case status == http.StatusForbidden && badToken:
		// A lessor server's message is the core's, as a local request
		// prints it (which may be about a token the request names, not
		// the caller's); Vault's words (1.17 says "permission denied" and
		// "invalid token") become the core's for the caller's token.
		if !slices.Contains(causes, "invalid_token") {
			ce.Msg = "permission denied: missing, invalid or expired token"
		}
		ce.Cause = token.ErrBadToken
		if strings.HasPrefix(ce.Msg, "permission denied") {
			// The caller's own token, as the core's PermissionError
			// says locally.
			ce.Cause = errors.Join(token.ErrBadToken, token.ErrCallerToken)
		}
	case status == http.StatusForbidden:
		ce.Cause = logical.ErrPermissionDenied
	case status == http.StatusMethodNotAllowed:
		ce.Cause = logical.ErrUnsupportedOperation
	case status == http.StatusNotFound && strings.HasPrefix(ce.Msg, "unsupported path"):
		ce.Cause = logical.ErrUnsupportedPath
	default:
		for _, name := range causes {
			if e, ok := c.causes[name]; ok {
				ce.Cause = e
				break
			}
		}
	}
	return ce
}

// splitMultiError undoes the wrapper Vault puts around a Go error
// ("1 error occurred:\n\t* msg\n\n") and returns its messages.
func splitMultiError(s string) []string {
	head, rest, ok := strings.Cut(s, "\n")
	if !ok || !strings.HasSuffix(head, " occurred:") || !strings.HasPrefix(rest, "\t* ") {
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		return []string{s}
	}
	var out []string
	for _, m := range strings.Split(strings.TrimPrefix(rest, "\t* "), "\n\t* ") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// unexpected is an answer that is not Vault's: another server at the
// address, or a proxy's error page.
func (c *Client) unexpected(hresp *http.Response, want string) error {
	return fmt.Errorf("the server at %s (%s) answered %s without %s: is it a lessor or Vault server?", c.name, c.addr, hresp.Status, want)
}
