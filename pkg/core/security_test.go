package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
)

func newEchoCore(t *testing.T) (*Core, string) {
	t.Helper()
	c := echoCoreOn(storage.NewMemory())
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c, root
}

func tokenWith(t *testing.T, c *Core, root, name, text string) string {
	t.Helper()
	must(t, c, root, logical.UpdateOperation, "sys/policy/"+name, map[string]any{"policy": text})
	resp := must(t, c, root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": name})
	return resp.Auth.ClientToken
}

// TestHandleRefusesNonCanonicalPaths: finding 3 of issue 12. Handle
// refuses a path a backend could read as another, for every caller and
// before the backend runs, so the echo backend (which would answer with
// the path it got) never sees one; and what it does get is the path the
// ACL allowed.
func TestHandleRefusesNonCanonicalPaths(t *testing.T) {
	c, root := newEchoCore(t)
	must(t, c, root, logical.UpdateOperation, "sys/mounts/kv", map[string]any{"type": "echo"})
	for _, p := range []string{
		"kv/a//b", "kv//a", "kv/ a", "kv/a /b", "kv/\ta", "kv/a\x00b", "kv/a\nb", "kv/./a", "kv/a/..",
		"kv/\xff", "sys/audit/ file", "sys/mounts/ prod", "sys//mounts/prod", "sys/policy/ ops",
		"sys/leases/revoke/ database/creds/x/y",
	} {
		for _, op := range []logical.Operation{logical.ReadOperation, logical.UpdateOperation, logical.DeleteOperation, logical.ListOperation} {
			resp, err := do(t, c, root, op, p, nil)
			var ce *logical.CodedError
			if !errors.As(err, &ce) || ce.Status != 400 || !strings.HasPrefix(err.Error(), "invalid path ") {
				t.Errorf("%s %q: %v, %v; want an invalid path error", op, p, resp, err)
			}
		}
	}
	// The surrounding slashes are trimmed (a list keeps its trailing
	// one), and the backend gets what the ACL saw.
	for p, want := range map[string]string{"/kv/a/": "a", "kv/a/b": "a/b"} {
		if resp := must(t, c, root, logical.ReadOperation, p, nil); resp.Data["path"] != want {
			t.Errorf("read %q: the backend got %v, want %q", p, resp.Data["path"], want)
		}
	}
	if resp := must(t, c, root, logical.ListOperation, "kv/a/", nil); resp.Data["path"] != "a/" {
		t.Errorf("list kv/a/: the backend got %v", resp.Data["path"])
	}
}

// TestCapabilitiesOfPathsNoRequestCanTake: sys/capabilities-self answered
// with what a glob would grant a path that Handle refuses as invalid
// (kv/../sys/policy/x under kv/*: read), so a caller, or lessor exec
// asking before it issues, was told of access no request could use. Such
// a path now reports deny, as it allows nothing.
func TestCapabilitiesOfPathsNoRequestCanTake(t *testing.T) {
	c, root := newEchoCore(t)
	tok := tokenWith(t, c, root, "kv", `path "kv/*" { capabilities = ["read", "list"] }`)
	resp := must(t, c, tok, logical.UpdateOperation, "sys/capabilities-self", map[string]any{
		"paths": []any{"kv/../sys/policy/x", "kv/a//b", "kv/./a", "kv/a", "/kv/a/"},
	})
	for p, want := range map[string]string{
		"kv/../sys/policy/x": "[deny]", "kv/a//b": "[deny]", "kv/./a": "[deny]",
		"kv/a": "[list read]", "/kv/a/": "[list read]",
	} {
		if got := fmt.Sprint(resp.Data[p]); got != want {
			t.Errorf("capabilities of %q: %s, want %s", p, got, want)
		}
	}
}

// TestCapabilitiesKeepTheTrailingSlash: sys/capabilities-self cut the
// trailing slash off every path, so a token that may list kv/a/ (by
// kv/a/* or an exact kv/a/ rule) was told deny for kv/a/, and one asking
// before it acts was turned away from what the request itself is allowed.
func TestCapabilitiesKeepTheTrailingSlash(t *testing.T) {
	c, root := newEchoCore(t)
	tok := tokenWith(t, c, root, "kvlist", `path "kv/a/*" { capabilities = ["list"] }
path "kv/b/" { capabilities = ["list"] }`)
	must(t, c, root, logical.UpdateOperation, "sys/mounts/kv", map[string]any{"type": "echo"})
	for _, p := range []string{"kv/a/", "kv/b/"} {
		must(t, c, tok, logical.ListOperation, p, nil)
	}
	resp := must(t, c, tok, logical.UpdateOperation, "sys/capabilities-self", map[string]any{
		"paths": []any{"kv/a/", "kv/b/", "kv/a", "/kv/b/"},
	})
	for p, want := range map[string]string{"kv/a/": "[list]", "kv/b/": "[list]", "kv/a": "[deny]", "/kv/b/": "[list]"} {
		if got := fmt.Sprint(resp.Data[p]); got != want {
			t.Errorf("capabilities of %q: %s, want %s", p, got, want)
		}
	}
}

// TestHandleRefusesCaseCollidingKeys: finding 4 of issue 12.
func TestHandleRefusesCaseCollidingKeys(t *testing.T) {
	c, root := newEchoCore(t)
	must(t, c, root, logical.UpdateOperation, "sys/mounts/kv", map[string]any{"type": "echo"})
	_, err := do(t, c, root, logical.UpdateOperation, "kv/x", map[string]any{"policies": "ops", "POLICIES": "apps", "ttl": "1h"})
	if err == nil || err.Error() != `keys "POLICIES" and "policies" differ only in case; send one` {
		t.Errorf("write with colliding keys: %v", err)
	}
	must(t, c, root, logical.UpdateOperation, "kv/x", map[string]any{"policies": "ops", "ttl": "1h", "TTL2": "x"})
}

// TestPolicyNamesMustBeCanonical: finding 3 of issue 12. A deny on
// sys/policy/ops held only for that spelling; a name that is not
// canonical is now refused, naming the canonical one.
func TestPolicyNamesMustBeCanonical(t *testing.T) {
	c, root := newEchoCore(t)
	must(t, c, root, logical.UpdateOperation, "sys/policy/ops", map[string]any{"policy": `path "x" { capabilities = ["read"] }`})
	tok := tokenWith(t, c, root, "admin", `
path "sys/policy/*" { capabilities = ["create", "read", "update", "delete"] }
path "sys/policy/ops" { capabilities = ["deny"] }
`)
	evil := map[string]any{"policy": `path "*" { capabilities = ["sudo", "update"] }`}
	for _, name := range []string{"OPS", "Ops", "ops\u00a0"} {
		for _, op := range []logical.Operation{logical.UpdateOperation, logical.DeleteOperation, logical.ReadOperation} {
			_, err := do(t, c, tok, op, "sys/policy/"+name, evil)
			if err == nil || !strings.Contains(err.Error(), "is not canonical") && !strings.HasPrefix(err.Error(), "invalid path") {
				t.Errorf("%s sys/policy/%q: %v", op, name, err)
			}
		}
	}
	resp := must(t, c, root, logical.ReadOperation, "sys/policy/ops", nil)
	if resp.Data["policy"] != `path "x" { capabilities = ["read"] }` {
		t.Errorf("policy ops was changed: %v", resp.Data["policy"])
	}
}

// TestUnmountedPathNeedsTheACL: finding 14 of issue 12.
func TestUnmountedPathNeedsTheACL(t *testing.T) {
	c, root := newEchoCore(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	must(t, c, root, logical.UpdateOperation, "sys/audit/file", map[string]any{"type": "file", "file_path": log})
	tok := tokenWith(t, c, root, "apps", `path "granted/*" { capabilities = ["read"] }`)
	lister := tokenWith(t, c, root, "lister", `path "sys/mounts" { capabilities = ["read"] }`)
	notMounted := func(p string) string {
		return fmt.Sprintf("no secrets engine is mounted at %q (see `lessor secrets list`)", p)
	}
	for _, tc := range []struct{ tok, path, want string }{
		{tok, "secret/x", "permission denied"},
		{tok, "granted/x", notMounted("granted/x")},
		{lister, "secret/x", notMounted("secret/x")},
		{root, "secret/x", notMounted("secret/x")},
	} {
		_, err := do(t, c, tc.tok, logical.ReadOperation, tc.path, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("read %s: %v, want %s", tc.path, err, tc.want)
		}
	}
	// The denial is audited, like any other.
	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"secret/x"`) || !strings.Contains(string(raw), "permission denied") {
		t.Errorf("audit log has no denied read of secret/x:\n%s", raw)
	}
}

// bigPolicy returns a valid policy text of at least n bytes.
func bigPolicy(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "path \"secret/p%d\" {\n  capabilities = [\"read\"]\n}\n", i)
	}
	return b.String()
}

// TestPolicySizeLimit: part of finding 13 of issue 12. A policy over
// 1 MiB is refused when written, and one already stored (by an older
// lessor) fails each request of a token holding it at once, rather than
// costing seconds and hundreds of megabytes to parse every time.
func TestPolicySizeLimit(t *testing.T) {
	c, root := newEchoCore(t)
	must(t, c, root, logical.UpdateOperation, "sys/mounts/secret", map[string]any{"type": "echo"})
	tok := tokenWith(t, c, root, "big", bigPolicy(1))
	must(t, c, tok, logical.ReadOperation, "secret/p0", nil)

	over := bigPolicy(policy.MaxSize + 1)
	_, err := do(t, c, root, logical.UpdateOperation, "sys/policy/big", map[string]any{"policy": over})
	if want := fmt.Sprintf("policy big is %d bytes, larger than the limit of 1048576 bytes (1 MiB)", len(over)); err == nil || err.Error() != want {
		t.Errorf("write of an oversized policy: %v, want %s", err, want)
	}
	must(t, c, tok, logical.ReadOperation, "secret/p0", nil)

	// As an older lessor would have stored it.
	raw, err := json.Marshal(storedPolicy{Name: "big", Raw: over})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.store.Update(ctx, func(tx storage.Tx) error { return tx.Put(policyPrefix+"big", raw) }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = do(t, c, tok, logical.ReadOperation, "secret/p1", nil)
	if err == nil || err.Error() != "stored policy big: policy is larger than the limit of 1048576 bytes (1 MiB); delete it and write a smaller one" {
		t.Errorf("read by a token holding an oversized policy: %v", err)
	}
	t.Logf("refusing a token holding a %d-byte stored policy took %v", len(over), time.Since(start))
	// Root may still delete it, and then the token works again (its
	// policy grants nothing).
	must(t, c, root, logical.DeleteOperation, "sys/policy/big", nil)
	if _, err := do(t, c, tok, logical.ReadOperation, "secret/p1", nil); err == nil || err.Error() != "permission denied" {
		t.Errorf("read after the policy was deleted: %v", err)
	}
}

// storedKeys counts the records under prefix, to prove that a refused
// request wrote nothing.
func storedKeys(t *testing.T, c *Core, prefix string) int {
	t.Helper()
	var n int
	err := c.store.View(ctx, func(tx storage.Tx) error {
		keys, err := tx.List(prefix)
		n = len(keys)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTokenPoliciesCheckedAsTheBackendReadsThem: the hole left after
// finding 4 of issue 12. auth/token/create split "policies" on commas and
// lower-cased and trimmed each name after the ACL check, so a deny on
// "ops" did not stop policies=OPS or policies=apps,ops, and an allow
// pattern "apps*" matched the string "apps,ops". The token backend now
// puts the value in the shape it reads before the check, and refuses a
// name that is not canonical.
func TestTokenPoliciesCheckedAsTheBackendReadsThem(t *testing.T) {
	c, root := newEchoCore(t)
	for _, name := range []string{"apps", "ops"} {
		must(t, c, root, logical.UpdateOperation, "sys/policy/"+name, map[string]any{"policy": `path "x" { capabilities = ["read"] }`})
	}
	// Both minters have sudo, so the subset rule does not stop them.
	denier := tokenWith(t, c, root, "denier", `
path "auth/token/create" {
  capabilities = ["update", "sudo"]
  denied_parameters = { "policies" = ["ops"] }
}`)
	allower := tokenWith(t, c, root, "allower", `
path "auth/token/create" {
  capabilities = ["update", "sudo"]
  allowed_parameters = { "policies" = ["apps*"] }
}`)
	const notCanonical = "is not canonical: policy names are lower case without surrounding white space"
	for _, tc := range []struct {
		name, tok string
		policies  any
		want      string // a substring of the error
	}{
		{"upper case", denier, "OPS", `policy name "OPS" ` + notCanonical + `; use "ops"`},
		{"comma list", denier, "apps,ops", "permission denied"},
		{"comma list with a space", denier, "apps, ops", `policy name " ops" ` + notCanonical + `; use "apps,ops"`},
		{"trailing space", denier, "ops ", `policy name "ops " ` + notCanonical + `; use "ops"`},
		{"empty element", denier, "apps,,ops", `"apps,,ops" holds an empty policy name; use "apps,ops"`},
		{"repeated key", denier, []any{"apps", "ops"}, "permission denied"},
		{"comma inside a repeated key", denier, []any{"apps", "x,ops"}, "permission denied"},
		{"allow pattern and a comma list", allower, "apps,ops", "permission denied"},
		{"allow pattern and a list", allower, []any{"apps", "ops"}, "permission denied"},
	} {
		before := storedKeys(t, c, tokenStoragePrefix)
		resp, err := do(t, c, tc.tok, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": tc.policies})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: policies=%q: %v, %v; want an error with %q", tc.name, tc.policies, resp, err, tc.want)
		}
		if after := storedKeys(t, c, tokenStoragePrefix); after != before {
			t.Errorf("%s: a refused create stored %d token records", tc.name, after-before)
		}
	}
	for _, tok := range []string{denier, allower} {
		resp := must(t, c, tok, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps"})
		if got := resp.Auth.Policies; len(got) != 2 || got[0] != "apps" || got[1] != "default" {
			t.Errorf("policies=apps gave %v", got)
		}
	}
}

// TestTokenMetaAndBoolsCheckedAsTheBackendReadsThem: meta is split on
// commas like policies, and the booleans accept "1" for true; the check
// now sees the pairs and the parsed booleans.
func TestTokenMetaAndBoolsCheckedAsTheBackendReadsThem(t *testing.T) {
	c, root := newEchoCore(t)
	tok := tokenWith(t, c, root, "minter", `
path "auth/token/create" {
  capabilities = ["update", "sudo"]
  denied_parameters = { "meta" = ["admin=*"], "renewable" = [false] }
}`)
	for _, data := range []map[string]any{
		{"meta": "team=a,admin=yes"},
		{"meta": []any{"team=a", " admin=yes"}},
		{"renewable": "0"},
		{"renewable": "F"},
	} {
		if _, err := do(t, c, tok, logical.UpdateOperation, "auth/token/create", data); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("create with %v: %v, want permission denied", data, err)
		}
	}
	must(t, c, tok, logical.UpdateOperation, "auth/token/create", map[string]any{"meta": "team=a", "renewable": "1"})
}

// TestMountTypeNotTrimmedAfterTheCheck: sys/mounts trimmed the type after
// the ACL check, so a deny on type "echo" did not stop " echo".
func TestMountTypeNotTrimmedAfterTheCheck(t *testing.T) {
	c, root := newEchoCore(t)
	tok := tokenWith(t, c, root, "mounter", `
path "sys/mounts/*" {
  capabilities = ["create", "update", "sudo"]
  denied_parameters = { "type" = ["echo"] }
}`)
	for _, typ := range []string{" echo", "echo ", "\techo"} {
		_, err := do(t, c, tok, logical.UpdateOperation, "sys/mounts/x", map[string]any{"type": typ})
		if err == nil || !strings.Contains(err.Error(), "surrounding white space") {
			t.Errorf("mount type %q: %v", typ, err)
		}
	}
	if m, err := c.mountAt(ctx, "x/"); err != nil || m != nil {
		t.Errorf("mount x/: %v, %v; want none", m, err)
	}
}

// A deny on a mount setting holds however the setting is sent: Vault's API
// nests it in a config map, which the backend read beside the top-level
// key after the ACL had judged only the top level.
func TestMountConfigCheckedAsTheBackendReadsIt(t *testing.T) {
	c, root := newEchoCore(t)
	must(t, c, root, logical.UpdateOperation, "sys/mounts/x", map[string]any{"type": "echo"})
	tok := tokenWith(t, c, root, "tuner", `
path "sys/mounts/*" {
  capabilities = ["create", "update", "sudo"]
  denied_parameters = { "max_lease_ttl" = [] }
}`)
	for _, p := range []string{"sys/mounts/y", "sys/mounts/x/tune"} {
		_, err := do(t, c, tok, logical.UpdateOperation, p, map[string]any{"type": "echo", "config": map[string]any{"max_lease_ttl": "9999h"}})
		if !errors.Is(err, logical.ErrPermissionDenied) {
			t.Errorf("%s with config.max_lease_ttl: %v, want permission denied", p, err)
		}
	}
	if m, err := c.mountAt(ctx, "y/"); err != nil || m != nil {
		t.Errorf("mount y/: %v, %v; want none", m, err)
	}
	if m, err := c.mountAt(ctx, "x/"); err != nil || m == nil || m.Config.MaxLeaseTTL != 0 {
		t.Errorf("mount x/ after the denied tune: %+v, %v; want max_lease_ttl unset", m, err)
	}
	// The nested form still works where it is allowed, and one key given
	// twice is refused rather than resolved in either's favour.
	must(t, c, root, logical.UpdateOperation, "sys/mounts/x/tune", map[string]any{"config": map[string]any{"max_lease_ttl": "2h"}})
	if m, _ := c.mountAt(ctx, "x/"); m == nil || m.Config.MaxLeaseTTL != 2*time.Hour {
		t.Errorf("mount x/ after tune: %+v, want max_lease_ttl 2h", m)
	}
	_, err := do(t, c, root, logical.UpdateOperation, "sys/mounts/x/tune", map[string]any{"max_lease_ttl": "1h", "config": map[string]any{"max_lease_ttl": "3h"}})
	if err == nil || !strings.Contains(err.Error(), "given both at the top level and in config") {
		t.Errorf("max_lease_ttl given twice: %v", err)
	}
}

// TestUnmountForceNeedsSudo: disabling a mount with force forgets the
// leases whose revocation failed (their roles may live on), as
// revoke-force does; it needs sudo as that does, since a policy cannot
// restrict a delete's parameters. Without force, delete is enough.
func TestUnmountForceNeedsSudo(t *testing.T) {
	c, root := newEchoCore(t)
	for _, m := range []string{"a", "b", "c"} {
		must(t, c, root, logical.UpdateOperation, "sys/mounts/"+m, map[string]any{"type": "echo"})
	}
	plain := tokenWith(t, c, root, "unmount", `
path "sys/mounts/*" { capabilities = ["delete"] }
path "sys/leases/revoke-force/*" { capabilities = ["update", "sudo"] }
`)
	_, err := do(t, c, plain, logical.DeleteOperation, "sys/mounts/a", map[string]any{"force": true})
	if !errors.Is(err, logical.ErrPermissionDenied) || !strings.Contains(err.Error(), "force also needs the sudo capability") {
		t.Fatalf("force without sudo: %v", err)
	}
	if _, err := do(t, c, plain, logical.DeleteOperation, "sys/mounts/a", map[string]any{"force": "false"}); err != nil {
		t.Fatalf("delete without force: %v", err)
	}
	// Sudo on the mount is not enough: force forgets leases as
	// revoke-force does, and a policy that denies that is not bypassed.
	sudo := tokenWith(t, c, root, "unmount-sudo", `path "sys/mounts/*" { capabilities = ["delete", "sudo"] }`)
	_, err = do(t, c, sudo, logical.DeleteOperation, "sys/mounts/b", map[string]any{"force": true})
	var pe *PermissionError
	if !errors.As(err, &pe) || pe.Path != "sys/leases/revoke-force/b/" || !strings.Contains(err.Error(), "needs update and sudo on sys/leases/revoke-force/<mount>") {
		t.Fatalf("force with sudo on the mount only: %v", err)
	}
	noSudo := tokenWith(t, c, root, "unmount-force-no-sudo", `
path "sys/mounts/*" { capabilities = ["delete", "sudo"] }
path "sys/leases/revoke-force/*" { capabilities = ["update"] }
`)
	if _, err := do(t, c, noSudo, logical.DeleteOperation, "sys/mounts/b", map[string]any{"force": "true"}); !errors.Is(err, logical.ErrPermissionDenied) {
		t.Fatalf("force without sudo on revoke-force: %v", err)
	}
	both := tokenWith(t, c, root, "unmount-force", `
path "sys/mounts/*" { capabilities = ["delete", "sudo"] }
path "sys/leases/revoke-force/b/*" { capabilities = ["update", "sudo"] }
`)
	if _, err := do(t, c, both, logical.DeleteOperation, "sys/mounts/b", map[string]any{"force": true}); err != nil {
		t.Fatalf("force with sudo and revoke-force: %v", err)
	}
	if _, err := do(t, c, root, logical.DeleteOperation, "sys/mounts/c", map[string]any{"force": true}); err != nil {
		t.Fatalf("force as root: %v", err)
	}
}

// TestRevokePrefixForceNeedsRevokeForce: revoke-prefix with force=true
// forgets leases whose revocation fails, which is what revoke-force does;
// a policy that grants revoke-prefix and denies revoke-force let a token
// do it anyway through that one body field. The ACL now judges it on
// sys/leases/revoke-force/<prefix>, sudo included.
func TestRevokePrefixForceNeedsRevokeForce(t *testing.T) {
	c, root := newEchoCore(t)
	prefixOnly := tokenWith(t, c, root, "prefix-only", `
path "sys/leases/revoke-prefix/*" { capabilities = ["update", "sudo"] }
path "sys/leases/revoke-force/*" { capabilities = ["deny"] }
`)
	for _, force := range []any{true, "true", "1"} {
		_, err := do(t, c, prefixOnly, logical.UpdateOperation, "sys/leases/revoke-prefix/kv/creds", map[string]any{"force": force})
		var pe *PermissionError
		if !errors.As(err, &pe) || pe.Path != "sys/leases/revoke-force/kv/creds" || !strings.Contains(err.Error(), "needs update and sudo on sys/leases/revoke-force/<prefix>") {
			t.Errorf("revoke-prefix force=%v without revoke-force: %v", force, err)
		}
	}
	for _, data := range []map[string]any{nil, {"force": false}, {"force": "false"}} {
		if _, err := do(t, c, prefixOnly, logical.UpdateOperation, "sys/leases/revoke-prefix/kv/creds", data); err != nil {
			t.Errorf("revoke-prefix %v: %v", data, err)
		}
	}
	// Without sudo on revoke-force, force is refused too; with it, and
	// for root, it is what it was.
	noSudo := tokenWith(t, c, root, "force-no-sudo", `
path "sys/leases/revoke-prefix/*" { capabilities = ["update", "sudo"] }
path "sys/leases/revoke-force/*" { capabilities = ["update"] }
`)
	if _, err := do(t, c, noSudo, logical.UpdateOperation, "sys/leases/revoke-prefix/kv", map[string]any{"force": true}); !errors.Is(err, logical.ErrPermissionDenied) {
		t.Errorf("revoke-prefix force without sudo on revoke-force: %v", err)
	}
	both := tokenWith(t, c, root, "force", `
path "sys/leases/revoke-prefix/kv/*" { capabilities = ["update", "sudo"] }
path "sys/leases/revoke-force/kv/*" { capabilities = ["update", "sudo"] }
`)
	if _, err := do(t, c, both, logical.UpdateOperation, "sys/leases/revoke-prefix/kv/creds", map[string]any{"force": true}); err != nil {
		t.Errorf("revoke-prefix force with revoke-force granted: %v", err)
	}
	if _, err := do(t, c, root, logical.UpdateOperation, "sys/leases/revoke-prefix/kv", map[string]any{"force": true}); err != nil {
		t.Errorf("revoke-prefix force as root: %v", err)
	}
}
