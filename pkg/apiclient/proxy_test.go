package apiclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// TestLoopbackNeverProxied: with HTTP_PROXY set, a request to a server
// on this host, however its name is spelt, goes to that server, never to
// the proxy, which would see the token in clear over plain http.
func TestLoopbackNeverProxied(t *testing.T) {
	var seen atomic.Value
	seen.Store("")
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.String())
		w.WriteHeader(http.StatusNoContent)
	}))
	defer proxy.Close()
	for _, v := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		t.Setenv(v, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	for _, addr := range []string{"http://LOCALHOST:1", "http://Localhost:1", "http://localhost:1", "http://127.0.0.1:1", "http://[::1]:1"} {
		seen.Store("")
		c, err := New(Config{Address: addr})
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		c.Do(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "database/creds/app", ClientToken: "lsr_SECRETSECRETSECRETSECRETSECRET12"})
		if s := seen.Load().(string); s != "" {
			t.Errorf("LESSOR_ADDR=%s: the proxy got the request for %s", addr, s)
		}
	}
}
