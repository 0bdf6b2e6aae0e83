package token

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is a token store over a memory store with a fake clock, a set of
// existing policies and a recording OnRevoke hook.
type harness struct {
	t     *testing.T
	mem   *storage.Memory
	clock *clock
	s     *Store
	root  string

	mu        sync.Mutex
	revoked   [][]string // accessors per OnRevoke call
	revokeErr error
	// onRevoke, when set, runs inside the hook (to observe the state at
	// that moment).
	onRevoke func(accessors []string)
	// onPolicyExists, when set, runs once, the next time a creation asks
	// whether a policy exists: after the caller's lookup, before the
	// token is stored.
	onPolicyExists func()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, mem: storage.NewMemory(), clock: &clock{t: t0}}
	existing := map[string]bool{"default": true, "apps": true, "db": true}
	h.s = New(storage.Prefixed(h.mem, "sys/token/"), Options{
		Now: h.clock.Now,
		PolicyExists: func(_ context.Context, name string) (bool, error) {
			if f := h.onPolicyExists; f != nil {
				h.onPolicyExists = nil
				f()
			}
			return existing[name], nil
		},
		OnRevoke: func(_ context.Context, accessors []string) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.revoked = append(h.revoked, append([]string(nil), accessors...))
			if h.onRevoke != nil {
				h.onRevoke(accessors)
			}
			return h.revokeErr
		},
	})
	tok, _, err := h.s.CreateRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.root = tok
	return h
}

// do sends a request the way the core does: the caller's entry sets the
// identity fields; sudo adds the sudo capability for the path.
func (h *harness) do(tok string, op logical.Operation, path string, data map[string]any, sudo bool) (*logical.Response, error) {
	req := &logical.Request{Operation: op, Path: path, Data: data, ClientToken: tok, MountPoint: "auth/token/"}
	if e, err := h.s.lookup(context.Background(), tok, true); err == nil {
		req.DisplayName, req.TokenAccessor, req.TokenPolicies = e.DisplayName, e.Accessor, e.Policies
		req.IsRoot = e.hasPolicy("root")
		req.HasSudo = sudo || req.IsRoot
	}
	return h.s.Backend().HandleRequest(context.Background(), req)
}

// create creates a token as tok through auth/token/create and fails the
// test on error.
func (h *harness) create(tok string, data map[string]any, sudo bool) *logical.Response {
	h.t.Helper()
	resp, err := h.do(tok, logical.UpdateOperation, "create", data, sudo)
	if err != nil {
		h.t.Fatalf("create %v: %v", data, err)
	}
	if resp == nil || resp.Auth == nil {
		h.t.Fatalf("create %v: no auth in %#v", data, resp)
	}
	return resp
}

func (h *harness) entry(tok string) *Entry {
	h.t.Helper()
	e, err := h.s.Lookup(context.Background(), tok)
	if err != nil {
		h.t.Fatalf("lookup: %v", err)
	}
	return e
}

func (h *harness) gone(tok string) bool {
	_, err := h.s.Lookup(context.Background(), tok)
	return errors.Is(err, ErrBadToken)
}

func (h *harness) count() int {
	h.t.Helper()
	n, err := h.s.Count(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) revokeCalls() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([][]string, len(h.revoked))
	for i, c := range h.revoked {
		out[i] = append([]string(nil), c...)
		sort.Strings(out[i])
	}
	return out
}

// dump returns every key and value in the memory store.
func (h *harness) dump() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	err := h.mem.View(context.Background(), func(tx storage.Tx) error {
		return tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			out[k] = string(v)
			return err
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

var (
	tokenRE    = regexp.MustCompile(`^lsr_[0-9A-Za-z]{32}$`)
	accessorRE = regexp.MustCompile(`^[0-9A-Za-z]{24}$`)
	idRE       = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func wantCoded(t *testing.T, err error, msg string) {
	t.Helper()
	var ce *logical.CodedError
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Msg != msg {
		t.Fatalf("error = %v, want 400 %q", err, msg)
	}
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}
