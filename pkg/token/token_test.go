package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

var ctx = context.Background()

func TestCreateRootAndLookup(t *testing.T) {
	h := newHarness(t)
	if !tokenRE.MatchString(h.root) {
		t.Fatalf("root token %q does not look like lsr_<32 base62>", h.root)
	}
	e := h.entry(h.root)
	if !idRE.MatchString(e.ID) || !accessorRE.MatchString(e.Accessor) {
		t.Fatalf("id %q / accessor %q malformed", e.ID, e.Accessor)
	}
	wantEqual(t, "root entry", e, &Entry{
		ID: e.ID, Accessor: e.Accessor, Policies: []string{"root"}, DisplayName: "root",
		Path: "auth/token/root", CreationTime: t0, Orphan: true,
	})
	// Never expires.
	h.clock.advance(100000 * time.Hour)
	h.entry(h.root)

	for _, bad := range []string{"", "lsr_", h.root[:len(h.root)-1] + "!", "lsr_" + strings.Repeat("A", 32), h.root + "x", strings.ToUpper(h.root)} {
		_, err := h.s.Lookup(ctx, bad)
		if !errors.Is(err, ErrBadToken) || !errors.Is(err, logical.ErrPermissionDenied) || err.Error() != "bad token" {
			t.Fatalf("Lookup(%q) = %v, want bad token / permission denied", bad, err)
		}
	}
}

func TestLookupOnEmptyStoreIsBadToken(t *testing.T) {
	s := New(storage.NewMemory(), Options{})
	if _, err := s.Lookup(ctx, "lsr_"+strings.Repeat("a", 32)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("err = %v", err)
	}
	if n, err := s.Count(ctx); n != 0 || err != nil {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// Tokens are kept only as salted hashes: no key or value in the store
// holds a token, nor its random part, whatever was done with them.
func TestTokensNeverInStorage(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "ttl": "1h", "meta": map[string]any{"user": "alice"}, "display_name": "ci"}, false).Auth
	b := h.create(a.ClientToken, map[string]any{"num_uses": "3"}, false).Auth
	o := h.create(h.root, map[string]any{"no_parent": true, "period": "1h"}, false).Auth
	if _, err := h.do(a.ClientToken, logical.UpdateOperation, "renew-self", map[string]any{"increment": "30m"}, false); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Use(ctx, h.entry(b.ClientToken)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": o.ClientToken}, false); err != nil {
		t.Fatal(err)
	}
	dump := h.dump()
	if len(dump) < 10 {
		t.Fatalf("suspiciously small store: %v", dump)
	}
	for _, tok := range []string{h.root, a.ClientToken, b.ClientToken, o.ClientToken} {
		for k, v := range dump {
			if strings.Contains(k, tok[len(Prefix):]) || strings.Contains(v, tok[len(Prefix):]) {
				t.Fatalf("token %s found in storage at %q = %q", tok, k, v)
			}
		}
	}
	// The same holds after revocation.
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": a.ClientToken}, false); err != nil {
		t.Fatal(err)
	}
	for k, v := range h.dump() {
		if strings.Contains(k+v, a.ClientToken[len(Prefix):]) {
			t.Fatalf("token found in storage at %q", k)
		}
	}
}

func TestStorageLayout(t *testing.T) {
	h := newHarness(t)
	root := h.entry(h.root)
	a := h.create(h.root, map[string]any{"ttl": "1h", "policies": "apps"}, false).Auth
	ae := h.entry(a.ClientToken)
	var keys []string
	for k := range h.dump() {
		keys = append(keys, k)
	}
	want := map[string]bool{
		"sys/token/salt":                            true,
		"sys/token/id/" + root.ID:                   true,
		"sys/token/id/" + ae.ID:                     true,
		"sys/token/accessor/" + root.Accessor:       true,
		"sys/token/accessor/" + ae.Accessor:         true,
		"sys/token/parent/" + root.ID + "/" + ae.ID: true,
		fmt.Sprintf("sys/token/expire/%020d/%s", t0.Add(time.Hour).Unix(), ae.ID): true,
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %v", keys)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %q in %v", k, keys)
		}
	}
}

func TestCreateByRootWithoutFieldsGivesNonExpiringRoot(t *testing.T) {
	h := newHarness(t)
	resp := h.create(h.root, nil, false)
	a := resp.Auth
	if !tokenRE.MatchString(a.ClientToken) || !accessorRE.MatchString(a.Accessor) {
		t.Fatalf("auth %#v", a)
	}
	wantEqual(t, "auth", a, &logical.Auth{
		ClientToken: a.ClientToken, Accessor: a.Accessor,
		Policies: []string{"root"}, TokenPolicies: []string{"root"},
		Orphan: false, LeaseDuration: 0, Renewable: false,
	})
	wantEqual(t, "warnings", resp.Warnings, []string(nil))
	root := h.entry(h.root)
	wantEqual(t, "entry", h.entry(a.ClientToken), &Entry{
		ID: h.entry(a.ClientToken).ID, Accessor: a.Accessor, Parent: root.ID,
		Policies: []string{"root"}, DisplayName: "token", Path: "auth/token/create", CreationTime: t0,
	})
}

func TestCreatePolicies(t *testing.T) {
	h := newHarness(t)
	appsDefault := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth.ClientToken
	appsOnly := h.create(h.root, map[string]any{"policies": []any{"apps"}, "no_default_policy": "true"}, false).Auth.ClientToken
	sudoer := h.create(h.root, map[string]any{"policies": "apps,db"}, false).Auth.ClientToken

	cases := []struct {
		name    string
		caller  string
		sudo    bool
		data    map[string]any
		want    []string
		warns   []string
		wantErr string
	}{
		{"root asks apps: default added", h.root, false, map[string]any{"policies": "apps"}, []string{"apps", "default"}, nil, ""},
		{"root, no_default_policy", h.root, false, map[string]any{"policies": "apps", "no_default_policy": true}, []string{"apps"}, nil, ""},
		// Issue 12: names used to be lower-cased and trimmed after the ACL
		// check, which let policies=OPS past a deny on "ops"; now a name
		// not in canonical form is refused, naming that form.
		{"upper-case name refused", h.root, false, map[string]any{"policies": "apps,DB"}, nil, nil, `policies: policy name "DB" is not canonical: policy names are lower case without surrounding white space; use "apps,db"`},
		{"name with white space refused", h.root, false, map[string]any{"policies": "apps, db"}, nil, nil, `policies: policy name " db" is not canonical: policy names are lower case without surrounding white space; use "apps,db"`},
		{"name in a list refused", h.root, false, map[string]any{"policies": []any{"apps", "Db"}}, nil, nil, `policies: policy name "Db" is not canonical: policy names are lower case without surrounding white space; use "apps,db"`},
		{"empty name refused", h.root, false, map[string]any{"policies": "apps,,db"}, nil, nil, `policies: "apps,,db" holds an empty policy name; use "apps,db"`},
		{"names deduplicated", h.root, false, map[string]any{"policies": "apps,db,apps"}, []string{"apps", "db", "default"}, nil, ""},
		{"list given by repeated key", h.root, false, map[string]any{"policies": []string{"db", "apps"}}, []string{"apps", "db", "default"}, nil, ""},
		{"missing policy warns", h.root, false, map[string]any{"policies": "nope,apps"}, []string{"apps", "default", "nope"}, []string{`Policy "nope" does not exist`}, ""},
		{"root in a list eclipses the rest", h.root, false, map[string]any{"policies": "apps,root"}, []string{"root"}, nil, ""},
		{"no policies inherits the parent's", appsDefault, false, nil, []string{"apps", "default"}, nil, ""},
		{"no policies, parent without default", appsOnly, false, nil, []string{"apps"}, nil, ""},
		{"no policies, no_default_policy", appsDefault, false, map[string]any{"no_default_policy": true}, []string{"apps"}, nil, ""},
		{"subset keeps default when the parent has it", appsDefault, false, map[string]any{"policies": "apps"}, []string{"apps", "default"}, nil, ""},
		{"subset without default when the parent lacks it", appsOnly, false, map[string]any{"policies": "apps"}, []string{"apps"}, nil, ""},
		{"not a subset", appsDefault, false, map[string]any{"policies": "db"}, nil, nil, "child policies must be subset of parent"},
		{"default is not in the parent", appsOnly, false, map[string]any{"policies": "apps,default"}, nil, nil, "child policies must be subset of parent"},
		{"sudo may ask for more", appsDefault, true, map[string]any{"policies": "db"}, []string{"db", "default"}, nil, ""},
		{"sudo without no_default_policy", sudoer, true, map[string]any{"policies": "db", "no_default_policy": true}, []string{"db"}, nil, ""},
		{"sudo may not make root", sudoer, true, map[string]any{"policies": "root"}, nil, nil, "root tokens may not be created without parent token being root"},
		{"subset may not make root", appsDefault, false, map[string]any{"policies": "root"}, nil, nil, "child policies must be subset of parent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.count()
			resp, err := h.do(c.caller, logical.UpdateOperation, "create", c.data, c.sudo)
			if c.wantErr != "" {
				wantCoded(t, err, c.wantErr)
				if h.count() != before {
					t.Fatal("a refused create stored a token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "policies", resp.Auth.Policies, c.want)
			wantEqual(t, "token_policies", resp.Auth.TokenPolicies, c.want)
			wantEqual(t, "stored policies", h.entry(resp.Auth.ClientToken).Policies, c.want)
			wantEqual(t, "warnings", resp.Warnings, c.warns)
		})
	}
}

func TestDisplayNames(t *testing.T) {
	h := newHarness(t)
	for in, want := range map[string]string{
		"":          "token",
		"ci":        "token-ci",
		"my app!":   "token-my-app",
		"a.b_c":     "token-a-b-c",
		"x--":       "token-x-",
		"Deploy-42": "token-Deploy-42",
		"été":       "token--t",
	} {
		a := h.create(h.root, map[string]any{"display_name": in, "policies": "apps"}, false).Auth
		if got := h.entry(a.ClientToken).DisplayName; got != want {
			t.Errorf("display_name %q: got %q, want %q", in, got, want)
		}
	}
}

func TestTTLExpiry(t *testing.T) {
	h := newHarness(t)
	resp := h.create(h.root, map[string]any{"policies": "apps", "ttl": "1h"}, false)
	a := resp.Auth
	if a.LeaseDuration != time.Hour || !a.Renewable {
		t.Fatalf("auth %#v", a)
	}
	wantEqual(t, "expire", h.entry(a.ClientToken).ExpireTime, t0.Add(time.Hour))
	def := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth
	if def.LeaseDuration != 768*time.Hour {
		t.Fatalf("default TTL = %v", def.LeaseDuration)
	}

	h.clock.advance(time.Hour - time.Second)
	h.entry(a.ClientToken)
	h.clock.advance(time.Second)
	if !h.gone(a.ClientToken) {
		t.Fatal("token still valid at its expiry time")
	}
	// Expired, but not yet reaped: still stored, and not renewable.
	_, err := h.do(h.root, logical.UpdateOperation, "renew", map[string]any{"token": a.ClientToken}, false)
	wantCoded(t, err, "token not found")
	_, err = h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": a.ClientToken}, false)
	if !errors.Is(err, ErrBadToken) {
		t.Fatalf("lookup of expired token: %v", err)
	}
	if h.count() != 3 {
		t.Fatalf("count = %d", h.count())
	}
	n, err := h.s.RevokeExpired(ctx)
	if n != 1 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	if h.count() != 2 {
		t.Fatalf("count = %d", h.count())
	}
	wantEqual(t, "OnRevoke calls", h.revokeCalls(), [][]string{{a.Accessor}})
}

func TestTTLRules(t *testing.T) {
	h := newHarness(t)
	check := func(name string, caller string, sudo bool, data map[string]any, ttl time.Duration, renewable bool, warns []string) string {
		t.Helper()
		resp, err := h.do(caller, logical.UpdateOperation, "create", data, sudo)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.Auth.LeaseDuration != ttl || resp.Auth.Renewable != renewable {
			t.Fatalf("%s: ttl %v renewable %v, want %v %v", name, resp.Auth.LeaseDuration, resp.Auth.Renewable, ttl, renewable)
		}
		wantEqual(t, name+" warnings", resp.Warnings, warns)
		e := h.entry(resp.Auth.ClientToken)
		if e.TTL != ttl {
			t.Fatalf("%s: stored TTL %v", name, e.TTL)
		}
		return resp.Auth.ClientToken
	}
	check("ttl above the max", h.root, false, map[string]any{"policies": "apps", "ttl": "1000h"}, 768*time.Hour, true,
		[]string{`TTL of "1000h" exceeded the effective max_ttl of "768h"; TTL value is capped accordingly`})
	check("explicit max caps", h.root, false, map[string]any{"policies": "apps", "ttl": "2h", "explicit_max_ttl": "1h"}, time.Hour, true,
		[]string{`TTL of "2h" exceeded the effective max_ttl of "1h"; TTL value is capped accordingly`})
	check("explicit max alone", h.root, false, map[string]any{"policies": "apps", "explicit_max_ttl": 3600}, time.Hour, true,
		[]string{`TTL of "768h" exceeded the effective max_ttl of "1h"; TTL value is capped accordingly`})
	check("seconds as a number", h.root, false, map[string]any{"policies": "apps", "ttl": float64(90)}, 90*time.Second, true, nil)
	check("days", h.root, false, map[string]any{"policies": "apps", "ttl": "2d"}, 48*time.Hour, true, nil)
	check("not renewable", h.root, false, map[string]any{"policies": "apps", "ttl": "1h", "renewable": "false"}, time.Hour, false, nil)
	check("period", h.root, false, map[string]any{"policies": "apps", "period": "2h", "ttl": "5h"}, 2*time.Hour, true, nil)
	check("period above the max", h.root, false, map[string]any{"policies": "apps", "period": "800h"}, 768*time.Hour, true,
		[]string{`period of "800h" exceeded the effective max_ttl of "768h"; period value is capped accordingly`})
	check("root with ttl expires", h.root, false, map[string]any{"ttl": "1h"}, time.Hour, true, nil)
	check("root with explicit max only", h.root, false, map[string]any{"explicit_max_ttl": "2h"}, 2*time.Hour, true, nil)
	check("root, renewable asked, never expires", h.root, false, map[string]any{"renewable": true}, 0, false, nil)

	expiringRoot := h.create(h.root, map[string]any{"ttl": "1h"}, false).Auth.ClientToken
	_, err := h.do(expiringRoot, logical.UpdateOperation, "create", nil, false)
	wantCoded(t, err, "expiring root tokens cannot create non-expiring root tokens")
	check("expiring root makes an expiring child", expiringRoot, false, map[string]any{"ttl": "10m"}, 10*time.Minute, true, nil)

	apps := h.create(h.root, map[string]any{"policies": "apps"}, false).Auth.ClientToken
	_, err = h.do(apps, logical.UpdateOperation, "create", map[string]any{"period": "1h"}, false)
	wantCoded(t, err, "root or sudo privileges required to create periodic token")
	check("sudo periodic", apps, true, map[string]any{"period": "1h"}, time.Hour, true, nil)

	for field, val := range map[string]any{"ttl": "abc", "explicit_max_ttl": "-5", "period": true, "num_uses": "x", "renewable": "maybe"} {
		_, err := h.do(h.root, logical.UpdateOperation, "create", map[string]any{field: val}, false)
		var ce *logical.CodedError
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Msg, field+": ") {
			t.Errorf("%s=%v: err %v", field, val, err)
		}
	}
	_, err = h.do(h.root, logical.UpdateOperation, "create", map[string]any{"num_uses": -1}, false)
	wantCoded(t, err, "number of uses cannot be negative")
}

func TestUseLimits(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "num_uses": 2, "ttl": "1h"}, false).Auth

	// A use-limited token may not create children (it would escape its limit).
	_, err := h.do(a.ClientToken, logical.UpdateOperation, "create", nil, false)
	wantCoded(t, err, "restricted use token cannot generate child tokens")

	e := h.entry(a.ClientToken)
	if e.NumUses != 2 {
		t.Fatalf("num_uses = %d", e.NumUses)
	}
	if err := h.s.Use(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.NumUses != 1 || h.entry(a.ClientToken).NumUses != 1 {
		t.Fatalf("after one use: %d / %d", e.NumUses, h.entry(a.ClientToken).NumUses)
	}
	if err := h.s.Use(ctx, e); err != nil {
		t.Fatal(err)
	}
	// The last use: the caller's copy says so, Lookup fails from now on…
	if e.NumUses != -1 || !h.gone(a.ClientToken) {
		t.Fatalf("after the last use: num_uses %d, gone %v", e.NumUses, h.gone(a.ClientToken))
	}
	// …but the request in flight may still look itself up.
	resp, err := h.do(a.ClientToken, logical.ReadOperation, "lookup-self", nil, false)
	if err != nil || resp.Data["num_uses"] != -1 || resp.Data["accessor"] != a.Accessor {
		t.Fatalf("lookup-self on the last use: %v %v", resp, err)
	}
	if err := h.s.Use(ctx, h.entryOrNil(a.ClientToken, e)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("third use: %v", err)
	}
	if h.count() != 2 {
		t.Fatalf("count = %d", h.count())
	}
	if err := h.s.Revoke(ctx, e); err != nil {
		t.Fatal(err)
	}
	if h.count() != 1 {
		t.Fatalf("count after Revoke = %d", h.count())
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{{a.Accessor}})

	// Unlimited tokens are never written by Use.
	before := h.dump()
	if err := h.s.Use(ctx, h.entry(h.root)); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "store after unlimited use", h.dump(), before)
}

// entryOrNil returns the stored entry even when it is no longer usable,
// falling back to e.
func (h *harness) entryOrNil(tok string, e *Entry) *Entry {
	if got, err := h.s.lookup(ctx, tok, true); err == nil {
		return got
	}
	return e
}

// A used-up token that the caller never revoked is reaped.
func TestUsedUpTokenIsReaped(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "num_uses": 1}, false).Auth
	e := h.entry(a.ClientToken)
	if err := h.s.Use(ctx, e); err != nil {
		t.Fatal(err)
	}
	n, err := h.s.RevokeExpired(ctx)
	if n != 1 || err != nil {
		t.Fatalf("RevokeExpired = %d, %v", n, err)
	}
	wantEqual(t, "OnRevoke", h.revokeCalls(), [][]string{{a.Accessor}})
}

// Concurrent uses never exceed the limit.
func TestUseIsAtomic(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "apps", "num_uses": 5}, false).Auth
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := h.s.Lookup(ctx, a.ClientToken)
			if err != nil {
				return
			}
			if h.s.Use(ctx, e) == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 {
		t.Fatalf("%d uses succeeded, want 5", ok.Load())
	}
}

// A token is no longer usable once its parent has expired, as in Vault,
// where the parent's expiry revokes its children: not only after reap
// comes round. A child orphaned by revoke-orphan no longer depends on it.
func TestParentExpiryEndsChildren(t *testing.T) {
	h := newHarness(t)
	parent := h.create(h.root, map[string]any{"policies": "apps", "ttl": "1h"}, false).Auth.ClientToken
	childAuth := h.create(parent, map[string]any{"policies": "apps", "ttl": "5h"}, false).Auth
	child, childAcc := childAuth.ClientToken, childAuth.Accessor
	grandchild := h.create(child, map[string]any{"policies": "apps", "ttl": "5h"}, false).Auth.ClientToken
	orphaned := h.create(parent, map[string]any{"policies": "apps", "ttl": "5h"}, false).Auth.ClientToken
	kept := h.create(orphaned, map[string]any{"policies": "apps", "ttl": "5h"}, false).Auth.ClientToken
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": orphaned}, true); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(time.Hour - time.Second)
	for _, tok := range []string{parent, child, grandchild, kept} {
		h.entry(tok)
	}
	h.clock.advance(time.Second)
	for name, tok := range map[string]string{"parent": parent, "child": child, "grandchild": grandchild} {
		if !h.gone(tok) {
			t.Errorf("%s still usable after the parent expired", name)
		}
	}
	if _, err := h.do(child, logical.UpdateOperation, "create", map[string]any{"policies": "apps"}, false); err == nil {
		t.Error("a child of an expired parent created a token")
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "lookup-accessor", map[string]any{"accessor": childAcc}, true); err == nil {
		t.Error("lookup-accessor shows a child of an expired parent as valid")
	}
	// kept's parent was orphaned, then its own parent (orphaned) revoked.
	if !h.gone(orphaned) {
		t.Error("revoke-orphan left the token usable")
	}
	h.entry(kept)
}
