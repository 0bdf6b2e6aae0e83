package core

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

var ctx = context.Background()

// countingStore counts the transactions run on a store: each one opens and
// locks the store file again in a real command.
type countingStore struct {
	storage.Store
	views, updates atomic.Int32
}

func (s *countingStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	s.views.Add(1)
	return s.Store.View(ctx, fn)
}

func (s *countingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

func (s *countingStore) reset() { s.views.Store(0); s.updates.Store(0) }

// echoBackend answers every request with its path, touching no storage.
type echoBackend struct{}

func (echoBackend) HandleRequest(_ context.Context, req *logical.Request) (*logical.Response, error) {
	return &logical.Response{Data: map[string]any{"path": req.Path}}, nil
}

func (echoBackend) ExistenceCheck(context.Context, *logical.Request) (bool, bool, error) {
	return false, false, nil
}

// echoCoreOn is a core over st, with the echo backend as mount type "echo":
// each call is another process on the same store.
func echoCoreOn(st storage.Store) *Core {
	return New(Config{Store: st, StoreID: "test", Factories: map[string]Factory{"echo": func() logical.Backend { return echoBackend{} }}})
}

func do(t *testing.T, c *Core, tok string, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	t.Helper()
	return c.Handle(ctx, &logical.Request{Operation: op, Path: path, Data: data, ClientToken: tok})
}

func must(t *testing.T, c *Core, tok string, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := do(t, c, tok, op, path, data)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// TestHandleReadsInOneTransaction: before the backend runs, Handle reads
// the token, its policies, the mount table and the audit configuration in
// one read transaction, and still enforces and audits as before.
func TestHandleReadsInOneTransaction(t *testing.T) {
	st := &countingStore{Store: storage.NewMemory()}
	newCore := func() *Core { return echoCoreOn(st) }
	c := newCore()
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "audit.log")
	must(t, c, root, logical.UpdateOperation, "sys/mounts/kv", map[string]any{"type": "echo"})
	must(t, c, root, logical.UpdateOperation, "sys/audit/file", map[string]any{"type": "file", "file_path": log})
	must(t, c, root, logical.UpdateOperation, "sys/policy/reader", map[string]any{"policy": `path "kv/ok" { capabilities = ["read"] }`})
	resp := must(t, c, root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "reader"})
	tok := resp.Auth.ClientToken

	// A fresh core, as in a new process: nothing cached but the token salt.
	for _, tc := range []struct {
		tok, path string
		denied    bool
	}{
		{root, "kv/any", false},
		{tok, "kv/ok", false},
		{tok, "kv/other", true},
	} {
		c := newCore()
		st.reset()
		resp, err := do(t, c, tc.tok, logical.ReadOperation, tc.path, nil)
		if tc.denied {
			if err == nil || err.Error() != "permission denied" {
				t.Errorf("read %s: %v, want permission denied", tc.path, err)
			}
		} else if err != nil {
			t.Errorf("read %s: %v", tc.path, err)
		} else if want := map[string]any{"path": strings.TrimPrefix(tc.path, "kv/")}; !reflect.DeepEqual(resp.Data, want) {
			t.Errorf("read %s: data %v, want %v", tc.path, resp.Data, want)
		}
		if v, u := st.views.Load(), st.updates.Load(); v != 1 || u != 0 {
			t.Errorf("read %s ran %d views and %d updates, want 1 and 0", tc.path, v, u)
		}
	}

	if _, err := do(t, newCore(), strings.Repeat("x", len(root)), logical.ReadOperation, "kv/any", nil); err == nil ||
		err.Error() != "permission denied: missing, invalid or expired token" {
		t.Errorf("read with a bad token: %v", err)
	}
	if _, err := do(t, newCore(), root, logical.ReadOperation, "nothing/here", nil); err == nil ||
		err.Error() != `no secrets engine is mounted at "nothing/here" (see `+"`lessor secrets list`"+`)` {
		t.Errorf("read of an unmounted path: %v", err)
	}

	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// Each of the requests is audited: a request and a response entry
	// when allowed, one response entry when denied, by the ACL or for a
	// bad token (kv/any: root's two, and the bad token's one, which
	// carries the token's HMAC, never the token).
	for path, want := range map[string]int{`"kv/any"`: 3, `"kv/ok"`: 2, `"kv/other"`: 1} {
		if got := strings.Count(string(raw), path); got != want {
			t.Errorf("audit log names %s %d times, want %d:\n%s", path, got, want, raw)
		}
	}
	if strings.Contains(string(raw), strings.Repeat("x", len(root))) || !strings.Contains(string(raw), "missing, invalid or expired token") {
		t.Errorf("the bad token's entry:\n%s", raw)
	}
}

// holdingBackend is echoBackend that holds the reads of paths under
// "hold/" (logical.ReadsHolder) and records what the pipeline did.
type holdingBackend struct {
	ended      *int
	endedEarly bool // the hold had ended when the backend was called
	hadEndFunc bool
}

func (b *holdingBackend) HandleRequest(_ context.Context, req *logical.Request) (*logical.Response, error) {
	b.endedEarly, b.hadEndFunc = *b.ended > 0, req.EndReads != nil
	return &logical.Response{Data: map[string]any{"path": req.Path}}, nil
}

func (b *holdingBackend) ExistenceCheck(context.Context, *logical.Request) (bool, bool, error) {
	return false, false, nil
}

func (b *holdingBackend) HoldsReads(req *logical.Request) bool {
	return strings.HasPrefix(req.Path, "hold/")
}

// TestHandleEndsReads: the pipeline ends the hold on the store's reads
// (Config.EndReads) before a backend acts, unless the backend holds them
// for the request, when it gets the function to end them itself; either
// way they are ended when the backend returns.
func TestHandleEndsReads(t *testing.T) {
	ended := 0
	be := &holdingBackend{ended: &ended}
	c := New(Config{Store: storage.NewMemory(), StoreID: "test", EndReads: func() { ended++ },
		Factories: map[string]Factory{"h": func() logical.Backend { return be }}})
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, c, root, logical.UpdateOperation, "sys/mounts/h", map[string]any{"type": "h"})
	for _, tc := range []struct {
		path string
		held bool
	}{{"h/other", false}, {"h/hold/x", true}} {
		ended = 0
		must(t, c, root, logical.ReadOperation, tc.path, nil)
		if be.endedEarly == tc.held || be.hadEndFunc != tc.held {
			t.Errorf("read %s: hold ended before the backend: %v, backend got EndReads: %v; want %v, %v",
				tc.path, be.endedEarly, be.hadEndFunc, !tc.held, tc.held)
		}
		if ended == 0 {
			t.Errorf("read %s: the hold was never ended", tc.path)
		}
	}
}

// TestAuditDevicesChangedByAnotherProcess: a long-running core (lessor
// serve, one replica of several) audits to the devices the store has now,
// not to those it had when it first audited: a device enabled by the CLI
// or another replica receives this core's requests from the next one on,
// and a disabled one no longer does.
func TestAuditDevicesChangedByAnotherProcess(t *testing.T) {
	st := storage.NewMemory()
	newCore := func() *Core { return echoCoreOn(st) }
	server := newCore()
	root, err := server.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, server, root, logical.UpdateOperation, "sys/mounts/kv", map[string]any{"type": "echo"})
	must(t, server, root, logical.ReadOperation, "kv/before", nil)

	log := filepath.Join(t.TempDir(), "audit.log")
	must(t, newCore(), root, logical.UpdateOperation, "sys/audit/file", map[string]any{"type": "file", "file_path": log})
	must(t, server, root, logical.ReadOperation, "kv/enabled", nil)
	// A refusal for a bad token is audited as well.
	do(t, server, strings.Repeat("x", len(root)), logical.ReadOperation, "kv/badtoken", nil)

	must(t, newCore(), root, logical.DeleteOperation, "sys/audit/file", nil)
	must(t, server, root, logical.ReadOperation, "kv/disabled", nil)

	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the device enabled by another process got nothing from the server: %v", err)
	}
	for path, want := range map[string]int{`"kv/enabled"`: 2, `"kv/badtoken"`: 1, `"kv/disabled"`: 0} {
		if got := strings.Count(string(raw), path); got != want {
			t.Errorf("audit log names %s %d times, want %d:\n%s", path, got, want, raw)
		}
	}
}

// TestFailedRequestsAreAudited: a request that fails after its token was
// found, before the ACL judged it (no mount at its path, data the backend
// refuses to read), is audited with its error like a denied one: the log
// shows who tried what, whatever went wrong.
func TestFailedRequestsAreAudited(t *testing.T) {
	c, root := newEchoCore(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	must(t, c, root, logical.UpdateOperation, "sys/audit/file", map[string]any{"type": "file", "file_path": log})
	for _, tc := range []struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		{logical.ReadOperation, "nosuch/x", nil},
		{logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "a,,b"}},
	} {
		_, err := do(t, c, root, tc.op, tc.path, tc.data)
		if err == nil {
			t.Fatalf("%s %s: no error", tc.op, tc.path)
		}
		raw, rerr := os.ReadFile(log)
		if rerr != nil {
			t.Fatal(rerr)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		var last struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
			Error string `json:"error"`
		}
		if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &last); jerr != nil {
			t.Fatalf("%s %s failed with %q, and the audit log holds no line for it: %q", tc.op, tc.path, err, raw)
		}
		if last.Type != "response" || last.Request.Path != tc.path || last.Error != err.Error() {
			t.Errorf("%s %s failed with %q; the audit log's last line is %s", tc.op, tc.path, err, lines[len(lines)-1])
		}
	}
}

// hookStore runs onUpdate after every write transaction while it is set.
type hookStore struct {
	storage.Store
	onUpdate func()
}

func (s *hookStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	err := s.Store.Update(ctx, fn)
	if s.onUpdate != nil {
		s.onUpdate()
	}
	return err
}

// TestUnauditedTokenIsRevoked: the audit log goes away after a token
// create was audited and before its response was. The token is not handed
// out, so nobody holds it: it must not stay valid.
func TestUnauditedTokenIsRevoked(t *testing.T) {
	st := &hookStore{Store: storage.NewMemory()}
	c := echoCoreOn(st)
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	must(t, c, root, logical.UpdateOperation, "sys/audit/file", map[string]any{"type": "file", "file_path": filepath.Join(logs, "audit.log")})
	before, err := c.tokens.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"auth/token/create", "auth/token/create-orphan"} {
		if err := os.MkdirAll(logs, 0o700); err != nil {
			t.Fatal(err)
		}
		// Only the token's creation writes the store once the request
		// is audited.
		st.onUpdate = func() { os.RemoveAll(logs) }
		_, err = do(t, c, root, logical.UpdateOperation, p, nil)
		st.onUpdate = nil
		if err == nil || !strings.Contains(err.Error(), "audit") {
			t.Fatalf("%s with its response unaudited: err = %v", p, err)
		}
		if after, err := c.tokens.Count(ctx); err != nil || after != before {
			t.Errorf("%s: %d tokens before, %d after (%v): the unaudited token stays", p, before, after, err)
		}
	}
}
