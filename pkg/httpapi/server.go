// Package httpapi is Vault's HTTP API in front of lessor's request
// pipeline: every /v1/<path> request becomes one logical.Request through
// core.Handle, exactly as a command of the CLI does, so the ACL, the audit
// log and the leases behave the same whichever way a request arrives.
//
// What it promises (the wire format is Vault's, so Vault's clients work):
//
//   - Methods: GET reads (GET with ?list=true lists), LIST lists, PUT and
//     POST write (the core tells create from update), DELETE deletes.
//     sys/health also answers HEAD. Anything else is 405.
//   - The token is X-Vault-Token, else "Authorization: Bearer <token>".
//     A missing, unknown or expired token is 403, as a policy's no is,
//     and the request's body is then never read: that 403 comes before a
//     400 for a body that is not JSON, and before a 413.
//   - Success: 200 with the envelope {request_id, lease_id, renewable,
//     lease_duration, data, wrap_info, warnings, auth, mount_type}, every
//     key present; 204 with an empty body when there is nothing to return.
//     A read of nothing, and a list of no keys, are 404 {"errors":[]}.
//   - Errors: {"errors":["<message>"]} with Vault's status codes: 400 a bad
//     request, 403 denied, 404 no such path or mount, 405 an operation the
//     path lacks, 413 a body over the limit, 500 a backend failure, 503 a
//     store that cannot be reached. The message is the core's, on one
//     line, exactly what the CLI prints after "lessor: error: <verb> <path>: ".
//   - sys/health and sys/seal-status need no token and always say
//     initialized and unsealed: a running server has unsealed its store.
//   - Bodies are JSON objects (numbers kept exact) or, with Content-Type
//     application/x-www-form-urlencoded, forms; at most Config.MaxRequestSize
//     bytes. GET, DELETE and LIST take their data from the query string.
//     JSON nests at most 32 levels deep and holds at most 10000 values
//     (members and elements, all levels together); a form or a query
//     string at most 10000 parameters. Beyond is 400.
//   - What lessor lacks answers as Vault does for a path it lacks:
//     response wrapping (X-Vault-Wrap-TTL) is 400 and never returns the
//     secret unwrapped, a namespace other than the root is 404.
//   - Nothing secret is logged: the log has the method, the canonical path,
//     the status, the duration, the remote address and the request id, never
//     a token, a query string or a body.
//
// Lessor-only additions, for the CLI as a client of this server (LESSOR_ADDR),
// which must print exactly what the local CLI prints; Vault's clients ignore
// them:
//
//   - "lessor_connection": {"host", "port", "database"} in the envelope of
//     a database credential: where it logs in (the CLI's -format=env,
//     pgpass and dsn need it). Left out when unknown.
//   - The response header X-Lessor-Cause on an error names a cause the CLI
//     answers with its own hint: "invalid_token" (the token is missing,
//     unknown or expired, not refused by a policy) and
//     "password_ends_in_newline" (the admin password of a connection ends in
//     a newline).
package httpapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/logical"
)

// Defaults of Config's limits, Vault's own where Vault has one.
const (
	DefaultMaxRequestSize = 32 << 20 // Vault's max_request_size
	DefaultRequestTimeout = 90 * time.Second
)

// Config wires a Server.
type Config struct {
	// Core is the pipeline over the store, opened (and unsealed) once.
	Core *core.Core
	// Logger receives one line per request and the server's events; nil
	// discards them.
	Logger *slog.Logger
	Now    func() time.Time
	// Version is reported by sys/health and sys/seal-status.
	Version string
	// StorageType is sys/seal-status's storage_type ("file", "postgresql").
	StorageType string
	// MaxRequestSize bounds a request body (0: DefaultMaxRequestSize).
	MaxRequestSize int64
	// RequestTimeout bounds the work of one request in the pipeline (0:
	// DefaultRequestTimeout). A request cut short leaves, like a killed
	// command, at most a pending lease that reap settles.
	RequestTimeout time.Duration
}

// Server serves the API.
type Server struct {
	core    *core.Core
	log     *slog.Logger
	now     func() time.Time
	version string
	storage string
	maxBody int64
	timeout time.Duration
}

// New returns a Server over cfg.Core.
func New(cfg Config) *Server {
	s := &Server{
		core: cfg.Core, log: cfg.Logger, now: cfg.Now, version: cfg.Version,
		storage: cfg.StorageType, maxBody: cfg.MaxRequestSize, timeout: cfg.RequestTimeout,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxRequestSize
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.storage == "" {
		s.storage = "file"
	}
	return s
}

// Handler returns the API's http.Handler. It does its own path handling:
// no mux cleans or redirects a path before the core refuses a path that
// is not canonical.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// statusWriter remembers the status, for the log line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) serve(rw http.ResponseWriter, r *http.Request) {
	start := s.now()
	w := &statusWriter{ResponseWriter: rw}
	w.Header().Set("Cache-Control", "no-store")
	var rec logRecord
	defer func() {
		if p := recover(); p != nil {
			// A bug must cost one request, not the server: answer 500,
			// log it (without the request's data) and go on.
			s.log.Error("panic serving request", "method", r.Method, "path", rec.path, "panic", p)
			if w.status == 0 {
				writeErrors(w, http.StatusInternalServerError, "internal error")
			}
		}
		s.log.Info("request", "method", r.Method, "path", rec.path, "status", w.status,
			"duration_ms", float64(s.now().Sub(start).Microseconds())/1000,
			"remote", remoteHost(r.RemoteAddr), "request_id", rec.requestID)
	}()
	// A client that goes away does not cut its request short: an issue
	// that reached PostgreSQL still activates its lease.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
	defer cancel()
	s.handle(ctx, w, r, &rec)
}

// logRecord is what the log line says about a request besides its
// method and status; the path is the canonical one, once it is known.
type logRecord struct {
	path, requestID string
}

func (s *Server) handle(ctx context.Context, w http.ResponseWriter, r *http.Request, rec *logRecord) {
	rel, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeErrors(w, http.StatusNotFound)
		return
	}
	rec.path = printable(logical.MaskTokens(rel))
	if err := checkHeaders(r); err != nil {
		s.writeError(w, err)
		return
	}
	switch rel {
	case "sys/health":
		s.health(w, r)
		return
	case "sys/seal-status":
		s.sealStatus(w, r)
		return
	}
	// A body is read only for a caller with a usable token: one without
	// must not make the server read and parse what it sends. The ACL is
	// still the core's, once the data is known.
	checkToken := func(req *logical.Request) error {
		req.RemoteAddress = remoteHost(r.RemoteAddr)
		err := s.core.CheckToken(ctx, req)
		rec.requestID = req.ID
		return err
	}
	req, err := decodeRequest(w, r, s.maxBody, checkToken)
	if err != nil {
		s.writeError(w, err)
		return
	}
	rec.path = printable(logical.MaskTokens(req.Path))
	req.RemoteAddress = remoteHost(r.RemoteAddr)
	op := req.Operation
	resp, err := s.core.Handle(ctx, req)
	rec.requestID = req.ID
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.respond(w, req, op, resp)
}

// remoteHost is the host part of a remote address ("" stays "", a Unix
// socket's peer "@" stays itself).
func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// printable keeps a path fit for a log line: control characters become
// '?', and a very long path is cut.
func printable(p string) string {
	const max = 256
	if len(p) > max {
		p = p[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, p)
}

// checkHeaders refuses what lessor cannot honour: a namespace other than
// the root (Vault Community forces the root; serving another namespace's
// request from the root would hand out what the caller did not ask for)
// and response wrapping (answering unwrapped would put the secret where
// the caller meant only a wrapping token to be).
func checkHeaders(r *http.Request) error {
	if ns := strings.Trim(strings.TrimSpace(r.Header.Get("X-Vault-Namespace")), "/"); ns != "" && ns != "root" {
		return &httpError{status: http.StatusNotFound, msg: "namespace not found"}
	}
	if v := strings.TrimSpace(r.Header.Get("X-Vault-Wrap-TTL")); v != "" {
		d, err := logical.ParseDuration(v)
		if err != nil {
			return &httpError{status: http.StatusBadRequest, msg: "error parsing X-Vault-Wrap-TTL header: " + err.Error()}
		}
		if d > 0 {
			return &httpError{status: http.StatusBadRequest, msg: "response wrapping is not supported by lessor (X-Vault-Wrap-TTL)"}
		}
	}
	return nil
}

// httpError is a refusal decided here, before the core: a status and a
// message.
type httpError struct {
	status int
	msg    string
	err    error
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.err }
