package token

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// tree builds root → a → (b → c), and a → o by create-orphan.
type tree struct{ a, b, c, o *logical.Auth }

func buildTree(h *harness) tree {
	var tr tree
	tr.a = h.create(h.root, map[string]any{"policies": "apps,db"}, false).Auth
	tr.b = h.create(tr.a.ClientToken, map[string]any{"policies": "apps"}, false).Auth
	tr.c = h.create(tr.b.ClientToken, nil, false).Auth
	resp, err := h.do(tr.a.ClientToken, logical.UpdateOperation, "create-orphan", map[string]any{"policies": "db"}, false)
	if err != nil {
		h.t.Fatal(err)
	}
	tr.o = resp.Auth
	return tr
}

func sorted(s ...string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestRevokeTakesTheTreeButNotOrphans(t *testing.T) {
	h := newHarness(t)
	tr := buildTree(h)
	if !tr.o.Orphan || h.entry(tr.o.ClientToken).Parent != "" || h.entry(tr.o.ClientToken).Path != "auth/token/create-orphan" {
		t.Fatalf("create-orphan made %#v", h.entry(tr.o.ClientToken))
	}
	// While OnRevoke runs, the tree is unusable but still stored: the
	// leases go before the tokens.
	var duringCount int
	var duringGone []bool
	h.onRevoke = func([]string) {
		duringCount, _ = h.s.Count(context.Background())
		for _, a := range []*logical.Auth{tr.a, tr.b, tr.c, tr.o} {
			_, err := h.s.Lookup(context.Background(), a.ClientToken)
			duringGone = append(duringGone, errors.Is(err, ErrBadToken))
		}
	}
	resp, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": tr.a.ClientToken}, false)
	if resp != nil || err != nil {
		t.Fatalf("revoke = %v, %v", resp, err)
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{sorted(tr.a.Accessor, tr.b.Accessor, tr.c.Accessor)})
	wantEqual(t, "count during OnRevoke", duringCount, 5)
	wantEqual(t, "gone during OnRevoke", duringGone, []bool{true, true, true, false})
	for _, a := range []*logical.Auth{tr.a, tr.b, tr.c} {
		if !h.gone(a.ClientToken) {
			t.Fatalf("%s survived", a.Accessor)
		}
	}
	h.entry(tr.o.ClientToken)
	if h.count() != 2 {
		t.Fatalf("count = %d", h.count())
	}
	// No index key of a revoked token is left behind.
	for k := range h.dump() {
		for _, a := range []*logical.Auth{tr.a, tr.b, tr.c} {
			if k == "sys/token/accessor/"+a.Accessor {
				t.Fatalf("accessor index %q left", k)
			}
		}
	}
	wantKeys(t, h, 2)
}

// wantKeys checks that the store holds the salt, n tokens, and exactly the
// index keys those tokens need: nothing left behind by revocations.
func wantKeys(t *testing.T, h *harness, n int) {
	t.Helper()
	counts := map[string]int{}
	for k := range h.dump() {
		kind, _, _ := strings.Cut(strings.TrimPrefix(k, "sys/token/"), "/")
		counts[kind]++
	}
	want := map[string]int{"salt": 1, "id": n, "accessor": n}
	err := h.s.st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(idPrefix, func(k string) error {
			e, err := getEntry(tx, strings.TrimPrefix(k, idPrefix))
			if err != nil {
				return err
			}
			if e.Parent != "" {
				want["parent"]++
			}
			if !e.ExpireTime.IsZero() {
				want["expire"]++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "keys by kind", counts, want)
}

func TestRevokeSelfAndAccessor(t *testing.T) {
	h := newHarness(t)
	tr := buildTree(h)
	if _, err := h.do(tr.b.ClientToken, logical.UpdateOperation, "revoke-self", nil, false); err != nil {
		t.Fatal(err)
	}
	if !h.gone(tr.b.ClientToken) || !h.gone(tr.c.ClientToken) {
		t.Fatal("revoke-self left the tree")
	}
	h.entry(tr.a.ClientToken)
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke-accessor", map[string]any{"accessor": tr.a.Accessor}, false); err != nil {
		t.Fatal(err)
	}
	if !h.gone(tr.a.ClientToken) {
		t.Fatal("revoke-accessor left the token")
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{sorted(tr.b.Accessor, tr.c.Accessor), {tr.a.Accessor}})
	h.entry(tr.o.ClientToken)
}

func TestRevokeUnknownSucceeds(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		path string
		data map[string]any
	}{
		{"revoke", map[string]any{"token": "lsr_00000000000000000000000000000000"}},
		{"revoke", map[string]any{"token": "not-even-a-token"}},
		{"revoke-accessor", map[string]any{"accessor": "000000000000000000000000"}},
	} {
		resp, err := h.do(h.root, logical.UpdateOperation, c.path, c.data, false)
		if resp != nil || err != nil {
			t.Fatalf("%s %v = %v, %v", c.path, c.data, resp, err)
		}
	}
	// Revoking twice is fine too.
	a := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth
	for range 2 {
		if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": a.ClientToken}, false); err != nil {
			t.Fatal(err)
		}
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{{a.Accessor}})
	_, err := h.do(h.root, logical.UpdateOperation, "revoke", nil, false)
	wantCoded(t, err, "missing token ID")
	_, err = h.do(h.root, logical.UpdateOperation, "revoke-accessor", nil, false)
	wantCoded(t, err, "missing accessor")
}

func TestRevokeOrphan(t *testing.T) {
	h := newHarness(t)
	tr := buildTree(h)
	_, err := h.do(tr.a.ClientToken, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": tr.b.ClientToken}, false)
	wantCoded(t, err, "root or sudo privileges required to revoke and orphan")
	if h.gone(tr.b.ClientToken) {
		t.Fatal("refused revoke-orphan revoked")
	}
	if _, err := h.do(tr.a.ClientToken, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": tr.b.ClientToken}, true); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{{tr.b.Accessor}})
	if !h.gone(tr.b.ClientToken) {
		t.Fatal("b survived")
	}
	c := h.entry(tr.c.ClientToken)
	if c.Parent != "" || !c.Orphan {
		t.Fatalf("c not orphaned: %#v", c)
	}
	resp, err := h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": tr.c.ClientToken}, false)
	if err != nil || resp.Data["orphan"] != true {
		t.Fatalf("lookup c: %v %v", resp, err)
	}
	// Revoking a no longer takes c.
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": tr.a.ClientToken}, false); err != nil {
		t.Fatal(err)
	}
	h.entry(tr.c.ClientToken)
	if h.count() != 3 { // root, c, o
		t.Fatalf("count = %d", h.count())
	}
	_, err = h.do(h.root, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": tr.b.ClientToken}, false)
	wantCoded(t, err, "token to revoke not found")
}

// When OnRevoke fails the tree stays unusable and due, and a later
// RevokeExpired finishes it.
func TestFailedRevocationIsFinishedByReap(t *testing.T) {
	h := newHarness(t)
	tr := buildTree(h)
	boom := errors.New("database unreachable")
	h.revokeErr = boom
	_, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": tr.a.ClientToken}, false)
	if !errors.Is(err, boom) {
		t.Fatalf("revoke = %v", err)
	}
	for _, a := range []*logical.Auth{tr.a, tr.b, tr.c} {
		if !h.gone(a.ClientToken) {
			t.Fatal("a half-revoked token is usable")
		}
	}
	if h.count() != 5 {
		t.Fatalf("count = %d", h.count())
	}
	// A half-revoked token cannot grow the tree either.
	_, err = h.do(tr.b.ClientToken, logical.UpdateOperation, "create", nil, false)
	if err == nil {
		t.Fatal("a half-revoked token created a child")
	}
	n, err := h.s.RevokeExpired(ctx)
	if n != 0 || !errors.Is(err, boom) {
		t.Fatalf("RevokeExpired while failing = %d, %v", n, err)
	}
	h.revokeErr = nil
	n, err = h.s.RevokeExpired(ctx)
	if n != 3 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	all := sorted(tr.a.Accessor, tr.b.Accessor, tr.c.Accessor)
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{all, all, all})
	if h.count() != 2 {
		t.Fatalf("count = %d", h.count())
	}
}

func TestRevokeExpiredOnlyDue(t *testing.T) {
	h := newHarness(t)
	short := h.create(h.root, map[string]any{"policies": "apps", "ttl": "1h"}, false).Auth
	// A child that outlives its parent's TTL still goes with it.
	shortKid := h.create(short.ClientToken, map[string]any{"ttl": "5h"}, false).Auth
	mid := h.create(h.root, map[string]any{"policies": "apps", "ttl": "2h"}, false).Auth
	long := h.create(h.root, map[string]any{"policies": "apps", "ttl": "3h"}, false).Auth
	forever := h.create(h.root, nil, false).Auth

	h.clock.advance(90 * time.Minute)
	n, err := h.s.RevokeExpired(ctx)
	if n != 2 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{sorted(short.Accessor, shortKid.Accessor)})
	for _, a := range []*logical.Auth{mid, long, forever} {
		h.entry(a.ClientToken)
	}
	// Nothing more is due yet.
	if n, err := h.s.RevokeExpired(ctx); n != 0 || err != nil {
		t.Fatalf("second RevokeExpired = %d, %v", n, err)
	}
	h.clock.advance(time.Hour) // +2h30m
	if n, err := h.s.RevokeExpired(ctx); n != 1 || err != nil {
		t.Fatalf("third RevokeExpired = %d, %v", n, err)
	}
	if !h.gone(mid.ClientToken) {
		t.Fatal("mid not reaped")
	}
	h.entry(long.ClientToken)
	h.entry(forever.ClientToken)
	if len(h.revokeCalls()) != 2 {
		t.Fatalf("OnRevoke calls %v", h.revokeCalls())
	}
}

// countingStore counts the keys a store's transactions touch.
type countingStore struct {
	storage.Store
	touched int
}

func (c *countingStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	return c.Store.View(ctx, func(tx storage.Tx) error { return fn(&countingTx{tx, c}) })
}

func (c *countingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return c.Store.Update(ctx, func(tx storage.Tx) error { return fn(&countingTx{tx, c}) })
}

type countingTx struct {
	storage.Tx
	c *countingStore
}

func (t *countingTx) Get(k string) ([]byte, error) { t.c.touched++; return t.Tx.Get(k) }
func (t *countingTx) List(p string) ([]string, error) {
	keys, err := t.Tx.List(p)
	t.c.touched += len(keys)
	return keys, err
}
func (t *countingTx) Walk(p string, fn func(string) error) error {
	return t.Tx.Walk(p, func(k string) error { t.c.touched++; return fn(k) })
}

// RevokeExpired reads in proportion to what is due, not to what exists.
func TestRevokeExpiredCostIsProportionalToDue(t *testing.T) {
	clk := &clock{t: t0}
	cs := &countingStore{Store: storage.NewMemory()}
	s := New(cs, Options{Now: clk.Now})
	root, _, err := s.CreateRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rootReq := func(data map[string]any) *logical.Auth {
		resp, err := s.Backend().HandleRequest(ctx, &logical.Request{
			Operation: logical.UpdateOperation, Path: "create", ClientToken: root, IsRoot: true, HasSudo: true, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Auth
	}
	for range 500 {
		rootReq(map[string]any{"policies": "apps", "ttl": "10h"})
	}
	var due []*logical.Auth
	for range 3 {
		due = append(due, rootReq(map[string]any{"policies": "apps", "ttl": "1h"}))
	}
	clk.advance(2 * time.Hour)
	cs.touched = 0
	n, err := s.RevokeExpired(ctx)
	if n != 3 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	// 3 due keys + the first key not due, then per token: a few Gets and
	// a child listing in each of two transactions.
	t.Logf("RevokeExpired touched %d keys", cs.touched)
	if cs.touched > 40 {
		t.Fatalf("RevokeExpired touched %d keys for 3 due tokens among 504", cs.touched)
	}
	for _, a := range due {
		if _, err := s.Lookup(ctx, a.ClientToken); !errors.Is(err, ErrBadToken) {
			t.Fatal("due token survived")
		}
	}
	if c, _ := s.Count(ctx); c != 501 {
		t.Fatalf("count = %d", c)
	}
}

// TestForgedParentIndexIgnored: an entry in the parent index is only a
// key name (whoever can write the store can add one). Revoking a token
// does not take a token the index wrongly files under it, and revoke-orphan
// does not cut such a token loose from its real parent.
func TestForgedParentIndexIgnored(t *testing.T) {
	h := newHarness(t)
	tr := buildTree(h)
	other := h.create(h.root, map[string]any{"policies": "db"}, false).Auth
	a, victim := h.entry(tr.a.ClientToken), h.entry(other.ClientToken)
	if err := h.mem.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put("sys/token/"+parentKey(a.ID, victim.ID), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": tr.a.ClientToken}, false); err != nil {
		t.Fatal(err)
	}
	if e := h.entry(other.ClientToken); e.Parent != victim.Parent || e.Orphan {
		t.Fatalf("revoke-orphan of another token orphaned this one: %#v", e)
	}
	b := h.entry(tr.b.ClientToken)
	if err := h.mem.Update(context.Background(), func(tx storage.Tx) error {
		return tx.Put("sys/token/"+parentKey(b.ID, victim.ID), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": tr.b.ClientToken}, false); err != nil {
		t.Fatal(err)
	}
	if h.gone(other.ClientToken) {
		t.Fatal("revoking a token took one the parent index wrongly filed under it")
	}
	if !h.gone(tr.c.ClientToken) {
		t.Fatal("revoking a token left its real child")
	}
}
