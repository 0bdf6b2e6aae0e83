package token

import (
	"errors"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

func TestLookupData(t *testing.T) {
	h := newHarness(t)
	resp := h.create(h.root, map[string]any{
		"policies": "apps", "ttl": "1h", "explicit_max_ttl": "10h", "display_name": "ci job",
		"meta": []any{"team=payments", "env=prod"}, "num_uses": "0",
	}, false)
	a := resp.Auth
	wantEqual(t, "auth", a, &logical.Auth{
		ClientToken: a.ClientToken, Accessor: a.Accessor,
		Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
		Metadata:      map[string]string{"team": "payments", "env": "prod"},
		LeaseDuration: time.Hour, Renewable: true,
	})
	h.clock.advance(10 * time.Minute)

	want := map[string]any{
		"accessor":         a.Accessor,
		"creation_time":    t0.Unix(),
		"creation_ttl":     int64(3600),
		"display_name":     "token-ci-job",
		"entity_id":        "",
		"expire_time":      "2026-01-02T04:04:05Z",
		"explicit_max_ttl": int64(36000),
		"id":               a.ClientToken,
		"issue_time":       "2026-01-02T03:04:05Z",
		"meta":             map[string]string{"team": "payments", "env": "prod"},
		"num_uses":         0,
		"orphan":           false,
		"path":             "auth/token/create",
		"policies":         []string{"apps", "default"},
		"renewable":        true,
		"ttl":              int64(3000),
		"type":             "service",
	}
	self, err := h.do(a.ClientToken, logical.ReadOperation, "lookup-self", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "lookup-self", self.Data, want)
	byToken, err := h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": a.ClientToken}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "lookup", byToken.Data, want)
	byAcc, err := h.do(h.root, logical.UpdateOperation, "lookup-accessor", map[string]any{"accessor": a.Accessor}, false)
	if err != nil {
		t.Fatal(err)
	}
	want["id"] = ""
	wantEqual(t, "lookup-accessor", byAcc.Data, want)

	// The root token: no expiry, not renewable, no meta, orphan.
	root, err := h.do(h.root, logical.ReadOperation, "lookup-self", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "root lookup", root.Data, map[string]any{
		"accessor": h.entry(h.root).Accessor, "creation_time": t0.Unix(), "creation_ttl": int64(0),
		"display_name": "root", "entity_id": "", "expire_time": nil, "explicit_max_ttl": int64(0),
		"id": h.root, "issue_time": "2026-01-02T03:04:05Z", "meta": map[string]string(nil), "num_uses": 0,
		"orphan": true, "path": "auth/token/root", "policies": []string{"root"}, "renewable": false,
		"ttl": int64(0), "type": "service",
	})

	_, err = h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": "lsr_00000000000000000000000000000000"}, false)
	if !errors.Is(err, ErrBadToken) || !errors.Is(err, logical.ErrPermissionDenied) {
		t.Fatalf("lookup unknown: %v", err)
	}
	_, err = h.do(h.root, logical.UpdateOperation, "lookup-accessor", map[string]any{"accessor": "nope"}, false)
	wantCoded(t, err, "invalid accessor")
	// lookup with no token is lookup-self.
	me, err := h.do(a.ClientToken, logical.UpdateOperation, "lookup", nil, false)
	if err != nil || me.Data["accessor"] != a.Accessor || me.Data["id"] != a.ClientToken {
		t.Fatalf("lookup without token: %v %v", me, err)
	}
}

func TestRenew(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "ttl": "1h", "explicit_max_ttl": "3h"}, false).Auth

	h.clock.advance(30 * time.Minute)
	resp, err := h.do(a.ClientToken, logical.UpdateOperation, "renew-self", map[string]any{"increment": "2h"}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "renew auth", resp.Auth, &logical.Auth{
		ClientToken: a.ClientToken, Accessor: a.Accessor,
		Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
		LeaseDuration: 2 * time.Hour, Renewable: true,
	})
	wantEqual(t, "warnings", resp.Warnings, []string(nil))
	e := h.entry(a.ClientToken)
	wantEqual(t, "expire", e.ExpireTime, t0.Add(150*time.Minute))
	wantEqual(t, "last renewal", e.LastRenewal, t0.Add(30*time.Minute))
	look, _ := h.do(a.ClientToken, logical.ReadOperation, "lookup-self", nil, false)
	if look.Data["last_renewal"] != "2026-01-02T03:34:05Z" || look.Data["last_renewal_time"] != t0.Add(30*time.Minute).Unix() || look.Data["ttl"] != int64(7200) {
		t.Fatalf("lookup after renew: %v", look.Data)
	}

	// The renewal moved the expiry index: the old expiry reaps nothing.
	h.clock.advance(time.Hour) // +1h30m, past the creation TTL
	if n, err := h.s.RevokeExpired(ctx); n != 0 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	h.entry(a.ClientToken)

	// Capped by the explicit max, counted from creation; no increment
	// means the creation TTL.
	h.clock.advance(50 * time.Minute) // +2h20m
	resp, err = h.do(h.root, logical.UpdateOperation, "renew", map[string]any{"token": a.ClientToken}, false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Auth.LeaseDuration != 40*time.Minute {
		t.Fatalf("capped renew = %v", resp.Auth.LeaseDuration)
	}
	wantEqual(t, "capped warnings", resp.Warnings, []string{`TTL of "1h" exceeded the effective max_ttl of "40m"; TTL value is capped accordingly`})

	// A renewal may also shorten.
	resp, err = h.do(h.root, logical.UpdateOperation, "renew", map[string]any{"token": a.ClientToken, "increment": 60}, false)
	if err != nil || resp.Auth.LeaseDuration != time.Minute {
		t.Fatalf("shortening renew = %v, %v", resp, err)
	}
	h.clock.advance(time.Minute)
	_, err = h.do(h.root, logical.UpdateOperation, "renew", map[string]any{"token": a.ClientToken}, false)
	wantCoded(t, err, "token not found")

	noRenew := h.create(h.root, map[string]any{"policies": "apps", "renewable": false}, false).Auth
	_, err = h.do(noRenew.ClientToken, logical.UpdateOperation, "renew-self", nil, false)
	wantCoded(t, err, "token is not renewable")
	_, err = h.do(h.root, logical.UpdateOperation, "renew-self", nil, false)
	wantCoded(t, err, "lease is not renewable")
	_, err = h.do(h.root, logical.UpdateOperation, "renew", nil, false)
	wantCoded(t, err, "missing token ID")
	// Every renewal replaced the expiry index key rather than adding one.
	wantKeys(t, h, 3)
}

func TestPeriodicRenew(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "period": "1h"}, false).Auth
	for i := range 30 { // 30 × 50m = 25h: far past any TTL but the period's
		h.clock.advance(50 * time.Minute)
		resp, err := h.do(a.ClientToken, logical.UpdateOperation, "renew-self", map[string]any{"increment": "5h"}, false)
		if err != nil || resp.Auth.LeaseDuration != time.Hour {
			t.Fatalf("renewal %d: %v, %v", i, resp, err)
		}
	}
	look, _ := h.do(a.ClientToken, logical.ReadOperation, "lookup-self", nil, false)
	if look.Data["period"] != int64(3600) {
		t.Fatalf("lookup period: %v", look.Data["period"])
	}
}

func TestCreateOrphanAndNoParent(t *testing.T) {
	h := newHarness(t)
	apps := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth.ClientToken
	_, err := h.do(apps, logical.UpdateOperation, "create", map[string]any{"no_parent": true}, false)
	wantCoded(t, err, "root or sudo privileges required to create orphan token")
	resp, err := h.do(apps, logical.UpdateOperation, "create", map[string]any{"no_parent": "true"}, true)
	if err != nil || !resp.Auth.Orphan || h.entry(resp.Auth.ClientToken).Parent != "" {
		t.Fatalf("sudo no_parent: %v %v", resp, err)
	}
	// create-orphan needs no sudo: its own ACL path guards it.
	resp, err = h.do(apps, logical.CreateOperation, "create-orphan", nil, false)
	if err != nil || !resp.Auth.Orphan {
		t.Fatalf("create-orphan: %v %v", resp, err)
	}
	wantEqual(t, "inherited", resp.Auth.Policies, []string{"apps", "default"})
}

func TestBackendRouting(t *testing.T) {
	h := newHarness(t)
	_, err := h.do(h.root, logical.UpdateOperation, "create/role", nil, false)
	if !errors.Is(err, logical.ErrUnsupportedPath) {
		t.Fatalf("unknown path: %v", err)
	}
	_, err = h.do(h.root, logical.ReadOperation, "revoke-self", nil, false)
	if !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Fatalf("wrong operation: %v", err)
	}
	_, err = h.do(h.root, logical.DeleteOperation, "create", nil, false)
	if !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Fatalf("wrong operation: %v", err)
	}
	resp, err := h.do(h.root, logical.UpdateOperation, "create", map[string]any{"policies": "apps", "colour": "blue", "lease": "1h"}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "warnings", resp.Warnings, []string{"Endpoint ignored these unrecognized parameters: [colour lease]"})
	_, err = h.do(h.root, logical.UpdateOperation, "create", map[string]any{"type": "batch"}, false)
	wantCoded(t, err, `unsupported token type "batch": only service tokens exist`)
	_, err = h.do(h.root, logical.UpdateOperation, "create", map[string]any{"id": "my-token"}, false)
	wantCoded(t, err, "custom token IDs are not supported: lessor always generates the token")
	_, err = h.do(h.root, logical.UpdateOperation, "create", map[string]any{"meta": "novalue"}, false)
	wantCoded(t, err, `meta: "novalue" is not key=value`)

	ok, exists, err := h.s.Backend().ExistenceCheck(ctx, &logical.Request{Path: "create"})
	if ok || exists || err != nil {
		t.Fatalf("ExistenceCheck = %v %v %v", ok, exists, err)
	}
}

// A token revoked while it creates an orphan creates nothing: the orphan
// is outside its tree, so its revocation (which selected the tree before
// the orphan was stored) would not reach it, and a leaked token being
// revoked could mint itself a successor that survives it.
func TestOrphanFromRevokedTokenFails(t *testing.T) {
	for _, path := range []string{"create-orphan", "create"} {
		h := newHarness(t)
		a := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth
		h.onPolicyExists = func() {
			if _, err := h.do(h.root, logical.UpdateOperation, "revoke-accessor", map[string]any{"accessor": a.Accessor}, false); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := h.do(a.ClientToken, logical.UpdateOperation, path, map[string]any{"policies": "apps", "no_parent": true}, true)
		if err == nil {
			t.Errorf("%s by a token revoked meanwhile made token %s", path, resp.Auth.Accessor)
		} else if !errors.Is(err, ErrBadToken) {
			t.Errorf("%s by a token revoked meanwhile: %v, want a bad token", path, err)
		}
		if h.count() != 1 {
			t.Errorf("%s: %d tokens, want only root", path, h.count())
		}
	}
}

// A creation racing with the revocation of its parent never leaves a
// child behind: the parent is re-checked inside the creating transaction.
func TestCreateUnderRevokedParentFails(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth
	parent := h.entry(a.ClientToken)
	if err := h.s.Revoke(ctx, parent); err != nil {
		t.Fatal(err)
	}
	child := &Entry{Policies: []string{"apps"}, DisplayName: "token", Path: "auth/token/create", CreationTime: t0, Parent: parent.ID}
	if _, err := h.s.create(ctx, child, parent); !errors.Is(err, ErrBadToken) {
		t.Fatalf("create under revoked parent: %v", err)
	}
	if h.count() != 1 {
		t.Fatalf("count = %d", h.count())
	}
}
