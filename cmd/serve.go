package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/apiclient"
	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/lease"
)

// serveSettings are `lessor serve`'s settings: each has a flag, an
// environment variable and a config file key, like the global ones.
var serveSettings = []setting{
	{"listen", "listen", "LESSOR_LISTEN", "lessor serve: TCP address to listen on (\"\" for none; default 127.0.0.1:8200)"},
	{"unix", "unix", "LESSOR_UNIX", "lessor serve: Unix socket path to listen on"},
	{"unix_mode", "unix-mode", "LESSOR_UNIX_MODE", "lessor serve: mode of the Unix socket (octal, default 0660)"},
	{"tls_cert", "tls-cert", "LESSOR_TLS_CERT", "lessor serve: TLS certificate file (PEM, chain included); reloaded on SIGHUP"},
	{"tls_key", "tls-key", "LESSOR_TLS_KEY", "lessor serve: TLS private key file (PEM); reloaded on SIGHUP"},
	{"tls_disable", "tls-disable", "LESSOR_TLS_DISABLE", "lessor serve: allow plain HTTP on a non-loopback address (true/false)"},
	{"reap_interval", "reap-interval", "LESSOR_REAP_INTERVAL", "lessor serve: how often the server reaps (default 30s; 0 turns it off)"},
	{"max_request_size", "max-request-size", "LESSOR_MAX_REQUEST_SIZE", "lessor serve: largest request body in bytes (default 33554432)"},
	{"request_timeout", "request-timeout", "LESSOR_REQUEST_TIMEOUT", "lessor serve: deadline of one request (default 90s)"},
	{"shutdown_timeout", "shutdown-timeout", "LESSOR_SHUTDOWN_TIMEOUT", "lessor serve: how long SIGTERM waits for requests in flight (default 30s)"},
	{"log_format", "log-format", "LESSOR_LOG_FORMAT", "lessor serve: log format on stderr, text or json (default text)"},
	{"db_pool_size", "db-pool-size", "LESSOR_DB_POOL_SIZE", "lessor serve: admin connections kept open per database connection config (default 4)"},
}

// The listener timeouts, as Vault's: the headers must arrive within 10 s,
// the whole request within 30 s; an idle keep-alive connection is closed
// after 5 minutes.
const (
	serveReadHeaderTimeout = 10 * time.Second
	serveReadTimeout       = 30 * time.Second
	serveIdleTimeout       = 5 * time.Minute
	serveMaxHeaderBytes    = 1 << 20
)

// testOnlyReadHeaderTimeout is a test seam, set only by tests in the test
// binary: a shorter read-header timeout, so that the slow-client test does
// not wait 10 s. A shipped binary leaves it zero.
var testOnlyReadHeaderTimeout time.Duration

// serveOptions are serve's settings, parsed.
type serveOptions struct {
	listen          string
	unix            string
	unixMode        os.FileMode
	tlsCert, tlsKey string
	tlsDisable      bool
	reapInterval    time.Duration
	maxRequestSize  int64
	requestTimeout  time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	poolSize        int
	// readHeaderTimeout is serveReadHeaderTimeout; tests shorten it.
	readHeaderTimeout time.Duration
}

func newServeCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Serve Vault's HTTP API, so that apps need only a token",
		Long: `Serves Vault's HTTP API (/v1/...) over the same request pipeline as the
command line: Vault's clients (the Go api package, hvac, node-vault,
vault-agent, consul-template, ...) and lessor itself (LESSOR_ADDR) send
requests with a token and never see the store or its unseal key.

The store is opened and unsealed once, at start (the key comes from the
key file, LESSOR_UNSEAL_KEY or the passphrase file, as for every command).
It listens on -listen (default 127.0.0.1:8200) and/or a Unix socket
(-unix PATH, mode -unix-mode, default 0660). Plain HTTP is served only on a
loopback address or a Unix socket: elsewhere give -tls-cert and -tls-key
(reloaded on SIGHUP), or say -tls-disable.

Every -reap-interval (default 30s) the server reaps as ` + "`lessor reap`" + ` does;
a cron or systemd reap beside it stays safe (claims keep reapers off each
other's leases). SIGTERM or SIGINT stops it gracefully: it stops
accepting, finishes the requests in flight (for up to -shutdown-timeout),
settles the reap batch in hand, and exits 0.

Every flag has a config file key (the flag's name with _ for -) and an
environment variable; see ` + "`lessor help environment`" + `. Logs go to stderr
(log/slog, -log-format text or json) and never hold a token, a password
or a request body.`,
		Example: `  lessor serve
  lessor serve -listen=0.0.0.0:8200 -tls-cert=/etc/lessor/cert.pem -tls-key=/etc/lessor/key.pem
  lessor serve -listen= -unix=/run/lessor/lessor.sock -unix-mode=0660
  lessor serve -reap-interval=1m -db-pool-size=8 -log-format=json`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			for _, s := range serveSettings {
				if fl := c.Flags().Lookup(s.flag); fl != nil && fl.Changed {
					f.setFlag(s.key, fl.Value.String())
				}
			}
			o, err := parseServeOptions(f)
			if err != nil {
				return err
			}
			return runServe(c.Context(), f, o)
		},
	}
	fl := c.Flags()
	fl.String("listen", "127.0.0.1:8200", "TCP `address` to listen on; empty for none (env LESSOR_LISTEN)")
	fl.String("unix", "", "Unix socket `path` to listen on (env LESSOR_UNIX)")
	fl.String("unix-mode", "0660", "mode of the Unix socket, octal (env LESSOR_UNIX_MODE)")
	fl.String("tls-cert", "", "TLS certificate `file`, PEM; reloaded on SIGHUP (env LESSOR_TLS_CERT)")
	fl.String("tls-key", "", "TLS private key `file`, PEM; reloaded on SIGHUP (env LESSOR_TLS_KEY)")
	fl.Bool("tls-disable", false, "allow plain HTTP on a non-loopback address (env LESSOR_TLS_DISABLE)")
	fl.Duration("reap-interval", 30*time.Second, "reap every `INTERVAL`; 0 turns the server's reaper off (env LESSOR_REAP_INTERVAL)")
	fl.Int64("max-request-size", httpapi.DefaultMaxRequestSize, "largest request body in `bytes` (env LESSOR_MAX_REQUEST_SIZE)")
	fl.Duration("request-timeout", httpapi.DefaultRequestTimeout, "deadline of one request (env LESSOR_REQUEST_TIMEOUT)")
	fl.Duration("shutdown-timeout", 30*time.Second, "how long SIGTERM waits for requests in flight (env LESSOR_SHUTDOWN_TIMEOUT)")
	fl.String("log-format", "text", "log format on stderr: text or json (env LESSOR_LOG_FORMAT)")
	fl.Int("db-pool-size", defaultDBPoolSize, "admin connections kept open per database connection config (env LESSOR_DB_POOL_SIZE)")
	return c
}

// defaultDBPoolSize is how many admin connections serve keeps open per
// database connection config: enough for requests in parallel on a small
// host, few enough for a managed server's connection limit.
const defaultDBPoolSize = 4

// parseServeOptions reads serve's settings: flag > env > config > default.
func parseServeOptions(f *Factory) (*serveOptions, error) {
	get := func(key, def string) (string, bool) {
		if v, ok := f.flags[key]; ok {
			return v, true
		}
		for _, s := range serveSettings {
			if s.key == key {
				if v := f.Getenv(s.env); v != "" {
					return v, true
				}
			}
		}
		if f.v.IsSet(key) {
			return f.v.GetString(key), true
		}
		return def, false
	}
	o := &serveOptions{readHeaderTimeout: serveReadHeaderTimeout}
	if testOnlyReadHeaderTimeout > 0 {
		o.readHeaderTimeout = testOnlyReadHeaderTimeout
	}
	o.listen, _ = get("listen", "127.0.0.1:8200")
	o.unix, _ = get("unix", "")
	o.tlsCert, _ = get("tls_cert", "")
	o.tlsKey, _ = get("tls_key", "")
	o.logFormat, _ = get("log_format", "text")
	var err error
	mode, _ := get("unix_mode", "0660")
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || m > 0o777 {
		return nil, usageErrorf("unix_mode: %q is not an octal file mode such as 0660", mode)
	}
	o.unixMode = os.FileMode(m)
	tlsOff, _ := get("tls_disable", "false")
	if o.tlsDisable, err = strconv.ParseBool(tlsOff); err != nil {
		return nil, usageErrorf("tls_disable: %q is not true or false", tlsOff)
	}
	dur := func(key, def string, min time.Duration) (time.Duration, error) {
		v, _ := get(key, def)
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d > 0 && d < min) {
			return 0, usageErrorf("%s: %q is not a duration of at least %s (like 30s)", key, v, min)
		}
		return d, nil
	}
	if o.reapInterval, err = dur("reap_interval", "30s", 100*time.Millisecond); err != nil {
		return nil, err
	}
	if o.requestTimeout, err = dur("request_timeout", "90s", 100*time.Millisecond); err != nil {
		return nil, err
	}
	if o.shutdownTimeout, err = dur("shutdown_timeout", "30s", 0); err != nil {
		return nil, err
	}
	size, _ := get("max_request_size", strconv.Itoa(httpapi.DefaultMaxRequestSize))
	if o.maxRequestSize, err = strconv.ParseInt(size, 10, 64); err != nil || o.maxRequestSize < 1024 {
		return nil, usageErrorf("max_request_size: %q is not a number of bytes of at least 1024", size)
	}
	pool, _ := get("db_pool_size", strconv.Itoa(defaultDBPoolSize))
	if o.poolSize, err = strconv.Atoi(pool); err != nil || o.poolSize < 1 || o.poolSize > 64 {
		return nil, usageErrorf("db_pool_size: %q is not a number from 1 to 64", pool)
	}
	switch o.logFormat {
	case "text", "json":
	default:
		return nil, usageErrorf("log_format: %q is not text or json", o.logFormat)
	}
	if o.listen == "" && o.unix == "" {
		return nil, usageErrorf("nothing to listen on: set -listen or -unix")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, usageErrorf("-tls-cert and -tls-key go together: give both or neither")
	}
	if o.listen != "" && o.tlsCert == "" && !o.tlsDisable {
		if err := checkLoopback(o.listen); err != nil {
			return nil, withHint(usageErrorf("%v", err),
				"give -tls-cert and -tls-key, or -tls-disable if a proxy in front of it terminates TLS")
		}
	}
	return o, nil
}

// checkLoopback refuses, for plain HTTP, an address that is not a
// loopback one: tokens and credentials would cross the network in clear.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-listen %q: plain HTTP is served only on a loopback address", addr)
}

// certReloader holds the TLS certificate, which SIGHUP reloads.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func (r *certReloader) load() error {
	// The private key is the server's identity: one that other users may
	// read, or its group rewrite, is refused, as lessor refuses such an
	// unseal key (a group may read it: the ssl-cert convention).
	if fi, err := os.Stat(r.keyFile); err == nil && fi.Mode().Perm()&0o027 != 0 {
		return fmt.Errorf("TLS key %s has mode %04o, which lets other users read it or its group change it; fix: chmod o-rwx,g-w %s", r.keyFile, fi.Mode().Perm(), r.keyFile)
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, unwrapPathError(err))
	}
	r.cert.Store(&c)
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil }

// listenUnix listens on a Unix socket with the given mode. A socket left
// by an earlier run (nobody accepts on it) is removed; a socket a live
// server listens on, and any other file, is refused. The socket is bound
// inside a fresh directory of mode 0700 beside path, so that nobody else
// can connect before its mode is set, then linked into place: the process
// umask, which every goroutine shares, stays as it is.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := apiclient.CheckSocketDir(path); err != nil {
		return nil, fmt.Errorf("-unix: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("-unix %s: a file that is not a socket is in the way", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("-unix %s: another server is listening on this socket", path)
		case !errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("-unix %s: a socket is in the way and cannot be checked: %w", path, unwrapPathError(err))
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("-unix %s: remove the old socket: %w", path, unwrapPathError(err))
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".lessor-sock-")
	if err != nil {
		return nil, fmt.Errorf("-unix %s: %w", path, unwrapPathError(err))
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("-unix %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("-unix %s: %w", path, unwrapPathError(err))
	}
	bound, err := os.Lstat(tmp)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("-unix %s: %w", path, unwrapPathError(err))
	}
	// A link, not a rename: a socket another server placed at path since
	// the check above stays where it is, and this one gives up.
	if err := os.Link(tmp, path); err != nil {
		l.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("-unix %s: another socket appeared at the path while this one was being set up", path)
		}
		return nil, fmt.Errorf("-unix %s: %w", path, unwrapPathError(err))
	}
	return &unlinkingListener{UnixListener: ul, path: path, bound: bound}, nil
}

// unlinkingListener removes its socket's path when closed, as a
// listener bound at that path would, unless the path no longer names its
// socket: a server started after this one removed it as stale, or an
// operator moved it, and the socket there now belongs to someone else.
type unlinkingListener struct {
	*net.UnixListener
	path  string
	bound os.FileInfo
	once  sync.Once
}

func (l *unlinkingListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.bound) {
			os.Remove(l.path)
		}
	})
	return err
}

// runServe opens the store, listens, serves and reaps until ctx ends (the
// signal), then shuts down gracefully.
func runServe(ctx context.Context, f *Factory, o *serveOptions) error {
	var h slog.Handler = slog.NewTextHandler(f.IO.Err, nil)
	if o.logFormat == "json" {
		h = slog.NewJSONHandler(f.IO.Err, nil)
	}
	log := slog.New(h)

	// SIGHUP is caught from the start, not only once the server listens:
	// opening the store may wait on its lock or on PostgreSQL, and a
	// reload (systemctl reload, a certificate renewal hook) sent then
	// must not kill the process. One that arrives before the server
	// serves is acted on (a reload) once it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var reload *certReloader
	if o.tlsCert != "" {
		reload = &certReloader{certFile: o.tlsCert, keyFile: o.tlsKey}
		if err := reload.load(); err != nil {
			return &localError{err}
		}
	}

	// Thousands of transactions: a file store keeps its opening of the
	// file (not its lock) between them.
	f.keepOpen = true
	b, err := f.Barrier(ctx)
	if err != nil {
		return err
	}
	// The core is built here rather than by the factory: requests come
	// from the network, so the audit log's remote_user (the OS user of a
	// local command) stays empty and remote_address says who asked.
	// Admin connections stay open between requests, a few per connection
	// config (the command line opens one per command).
	pool := postgres.NewPool(o.poolSize, 0)
	defer pool.Close()
	cr := core.New(core.Config{
		Store: b, StoreID: b.StoreID(), StoreLogin: f.storeLogin(), Now: f.Now,
		Factories: backendFactoriesWith(database.Options{Pool: pool, ForeignCallers: true}), Served: true,
	})
	storageType := "file"
	if u, _ := f.storeURL(); u != "" {
		storageType = "postgresql"
	}
	version, _, _ := buildVersion()
	api := httpapi.New(httpapi.Config{
		Core: cr, Logger: log, Now: f.Now, Version: version, StorageType: storageType,
		MaxRequestSize: o.maxRequestSize, RequestTimeout: o.requestTimeout,
	})

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	if o.listen != "" {
		var lc net.ListenConfig
		if o.tlsCert == "" && !o.tlsDisable {
			// checkLoopback let plain HTTP through for "localhost" as a
			// name of this host; what it resolves to decides.
			lc.Control = apiclient.LoopbackOnly
		}
		l, err := lc.Listen(ctx, "tcp", o.listen)
		if err != nil {
			return &localError{fmt.Errorf("-listen %s: %w", o.listen, err)}
		}
		listeners = append(listeners, l)
	}
	if o.unix != "" {
		l, err := listenUnix(o.unix, o.unixMode)
		if err != nil {
			closeAll()
			return &localError{err}
		}
		listeners = append(listeners, l)
	}

	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       serveReadTimeout,
		IdleTimeout:       serveIdleTimeout,
		MaxHeaderBytes:    serveMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(h, slog.LevelWarn),
		// In-flight requests must finish when the signal arrives: their
		// context is not the signal's.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if reload != nil {
		// ServeTLS serves HTTP/2 next to HTTP/1.1. h2 is named here as
		// well: the server sets HTTP/2 up once, for whichever listener
		// starts first, and for a plain Serve (the Unix socket) it does
		// so only when the TLS config already offers h2.
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: reload.get, NextProtos: []string{"h2", "http/1.1"}}
	}

	serveErr := make(chan error, len(listeners))
	for _, l := range listeners {
		addr := l.Addr().String()
		if l.Addr().Network() == "unix" {
			// The socket was bound in a private directory and linked to
			// its path: name the path clients use.
			addr = o.unix
		}
		log.Info("listening", "address", addr, "network", l.Addr().Network(), "tls", reload != nil && l.Addr().Network() == "tcp")
		go func(l net.Listener) {
			var err error
			if reload != nil && l.Addr().Network() == "tcp" {
				err = srv.ServeTLS(l, "", "")
			} else {
				err = srv.Serve(l)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		}(l)
	}

	// The reaper: one pass every interval, on a context the signal does
	// not cancel; the signal only stops it claiming further batches.
	stopReap := make(chan struct{})
	var reapWG sync.WaitGroup
	if o.reapInterval > 0 {
		reapWG.Add(1)
		go func() {
			defer reapWG.Done()
			serveReaper(context.WithoutCancel(ctx), f, cr, log, o.reapInterval, stopReap)
		}()
	}

	// The clock: serve may run for months, and the reaper (if on) may
	// pass only rarely. Lessor's clock on a PostgreSQL store is the
	// server's as last read, moved on by the host's; read it again now
	// and then, reaper or not, so that a host whose clock runs fast or
	// slow does not judge tokens and leases on its own for long.
	if f.clockFrom != nil {
		reapWG.Add(1)
		go func() {
			defer reapWG.Done()
			serveClock(context.WithoutCancel(ctx), f, serveClockInterval, stopReap)
		}()
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: no new connections; finishing requests in flight")
			break loop
		case err := <-serveErr:
			runErr = fmt.Errorf("serve: %w", err)
			log.Error("listener failed; shutting down", "error", err)
			break loop
		case <-hup:
			if reload == nil {
				log.Info("SIGHUP: no TLS certificate to reload")
				continue
			}
			if err := reload.load(); err != nil {
				log.Error("SIGHUP: TLS certificate not reloaded; keeping the old one", "error", err)
				continue
			}
			log.Info("SIGHUP: TLS certificate reloaded", "cert", o.tlsCert)
		}
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the shutdown timeout were cut off; reap settles what they left pending", "error", err)
		srv.Close()
	}
	close(stopReap)
	reapWG.Wait()
	// The Unix listener, closed by Shutdown, removed its socket if the path
	// still names it; whatever is there now belongs to someone else.
	log.Info("stopped")
	return runErr
}

// serveClockInterval is how often serve reads the store server's clock
// again (see resyncClock).
var serveClockInterval = time.Minute

// serveClock reads the store server's clock every interval until stop is
// closed.
func serveClock(ctx context.Context, f *Factory, interval time.Duration, stop <-chan struct{}) {
	everyUntil(interval, stop, func() { f.resyncClock(ctx) })
}

// everyUntil runs pass every interval until stop is closed.
func everyUntil(interval time.Duration, stop <-chan struct{}, pass func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		pass()
	}
}

// serveReaper reaps every interval until stop is closed. A pass that is
// running when stop closes claims no further batch and settles the ones
// in hand.
func serveReaper(ctx context.Context, f *Factory, cr *core.Core, log *slog.Logger, interval time.Duration, stop <-chan struct{}) {
	everyUntil(interval, stop, func() {
		f.resyncClock(ctx)
		start := time.Now()
		res, err := cr.Reap(ctx, lease.ReapOptions{Stop: stop})
		if err != nil {
			log.Error("reap failed", "error", oneLine(err.Error()))
			return
		}
		if res.Revoked+res.Failed+res.TokensRevoked > 0 || res.WaitingRetry > 0 {
			log.Info("reaped", "revoked", res.Revoked, "tokens_revoked", res.TokensRevoked, "failed", res.Failed,
				"waiting_retry", res.WaitingRetry, "skipped", res.Skipped, "duration_ms", time.Since(start).Milliseconds())
		}
		for _, e := range res.Errors {
			log.Warn("revocation failed; retried later", "lease_id", e.LeaseID, "error", oneLine(e.Error))
		}
	})
}
