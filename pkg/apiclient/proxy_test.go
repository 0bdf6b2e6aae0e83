package apiclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/token"
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

// TestServerBadTokenMessageKept: a lessor server's refusal for a token
// the request names (a lookup of an unknown token) keeps its message, as
// the local CLI prints it, and is not taken for the caller's own token;
// Vault's wording for the caller's token becomes the core's.
func TestServerBadTokenMessageKept(t *testing.T) {
	for _, c := range []struct {
		cause, body, want string
		caller            bool
	}{
		{"invalid_token", `{"errors":["bad token"]}`, "bad token", false},
		{"invalid_token", `{"errors":["permission denied: missing, invalid or expired token"]}`, "permission denied: missing, invalid or expired token", true},
		{"", `{"errors":["permission denied","invalid token"]}`, "permission denied: missing, invalid or expired token", true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.cause != "" {
				w.Header().Set("X-Lessor-Cause", c.cause)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(c.body + "\n"))
		}))
		cl, err := New(Config{Address: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Do(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "auth/token/lookup",
			ClientToken: "lsr_ABCDEFGHIJKLMNOPQRSTUVWXYZ123456", Data: map[string]any{"token": "lsr_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"}})
		srv.Close()
		if err == nil || err.Error() != c.want || !errors.Is(err, token.ErrBadToken) || errors.Is(err, token.ErrCallerToken) != c.caller {
			t.Errorf("%s %s: %v (caller's token: %v)", c.cause, c.body, err, errors.Is(err, token.ErrCallerToken))
		}
	}
}
