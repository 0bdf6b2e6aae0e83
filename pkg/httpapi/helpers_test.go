package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

// env is a server over a real, sealed file store, as `lessor serve`
// runs one.
type env struct {
	core  *core.Core
	root  string
	srv   *httptest.Server
	url   string
	audit string // the audit log file
	logs  *strings.Builder
}

// lockedBuilder is a strings.Builder safe for the server's goroutines.
type lockedWriter struct {
	mu chan struct{}
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu <- struct{}{}
	defer func() { <-w.mu }()
	return w.b.Write(p)
}

func newEnv(t *testing.T, cfg httpapi.Config) *env {
	t.Helper()
	return newEnvAt(t, cfg, nil)
}

// newEnvAt is newEnv with the core's clock (nil: the real one).
func newEnvAt(t *testing.T, cfg httpapi.Config, now func() time.Time) *env {
	t.Helper()
	dir := t.TempDir()
	phys, err := storage.CreateBolt(filepath.Join(dir, "lessor.db"), storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "unseal.key")
	if err := barrier.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := barrier.KeyFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.Init(ctx, phys, key, barrier.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As lessor serve runs it: admin connections pooled.
	pool := postgres.NewPool(4, 0)
	t.Cleanup(pool.Close)
	c := core.New(core.Config{Store: b, StoreID: b.StoreID(), Now: now, Factories: map[string]core.Factory{
		"database": func() logical.Backend { return database.New(database.Options{Pool: pool}) },
	}})
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{core: c, root: root, logs: &strings.Builder{}, audit: filepath.Join(dir, "audit.log")}
	cfg.Core = c
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{make(chan struct{}, 1), e.logs}, nil))
	}
	e.srv = httptest.NewServer(httpapi.New(cfg).Handler())
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL
	if _, err := c.Handle(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "sys/audit/file", ClientToken: root,
		Data: map[string]any{"type": "file", "file_path": e.audit}}); err != nil {
		t.Fatal(err)
	}
	return e
}

// do sends one raw request and returns the status, the body and the
// response's headers.
func (e *env) do(t *testing.T, method, path, token, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
