package policy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

func mustACL(t testing.TB, texts ...string) *ACL {
	t.Helper()
	var ps []*Policy
	for i, text := range texts {
		ps = append(ps, mustParse(t, fmt.Sprintf("p%d", i), text))
	}
	a, err := NewACL(ps...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// caps renders Capabilities for compact tables.
func caps(a *ACL, path string) string { return strings.Join(a.Capabilities(path), ",") }

// TestPriority walks the lookup rules of Vault's acl.go: each case is a
// set of policies, a path, and the capabilities of the one rule that must
// win.
func TestPriority(t *testing.T) {
	tests := []struct {
		name     string
		policies []string
		path     string
		want     string
	}{
		// No match is deny.
		{"no rules", nil, "secret/foo", "deny"},
		{"no match", []string{`path "secret/foo" { capabilities = ["read"] }`}, "secret/bar", "deny"},
		{"empty capabilities", []string{`path "secret/foo" { capabilities = [] }`}, "secret/foo", "deny"},

		// `*` is a prefix match, and special only at the end.
		{"star prefix", []string{`path "secret/zip-*" { capabilities = ["read"] }`}, "secret/zip-zap/zong", "read"},
		{"star matches the bare prefix", []string{`path "secret/*" { capabilities = ["read"] }`}, "secret/", "read"},
		{"star not the parent", []string{`path "secret/*" { capabilities = ["read"] }`}, "secret", "deny"},
		{"star in the middle is literal", []string{`path "secret/*/x" { capabilities = ["read"] }`}, "secret/a/x", "deny"},
		{"literal star matches itself", []string{`path "secret/*/x" { capabilities = ["read"] }`}, "secret/*/x", "read"},
		{"lone star", []string{`path "*" { capabilities = ["list"] }`}, "anything/at/all", "list"},

		// `+` is exactly one segment.
		{"plus one segment", []string{`path "secret/+/teamb" { capabilities = ["read"] }`}, "secret/a/teamb", "read"},
		{"plus not two segments", []string{`path "secret/+/teamb" { capabilities = ["read"] }`}, "secret/a/b/teamb", "deny"},
		{"plus not zero segments", []string{`path "secret/+/teamb" { capabilities = ["read"] }`}, "secret/teamb", "deny"},
		{"plus no trailing segment", []string{`path "secret/+/teamb" { capabilities = ["read"] }`}, "secret/a/teamb/x", "deny"},
		{"plus first", []string{`path "+/config" { capabilities = ["read"] }`}, "kv/config", "read"},
		{"bare plus", []string{`path "+" { capabilities = ["read"] }`}, "kv", "read"},
		{"bare plus one segment only", []string{`path "+" { capabilities = ["read"] }`}, "kv/a", "deny"},
		{"plus with prefix end", []string{`path "secret/+/foo*" { capabilities = ["read"] }`}, "secret/a/foobar/baz", "read"},
		{"plus with prefix end needs the segments", []string{`path "secret/+/foo*" { capabilities = ["read"] }`}, "secret/a", "deny"},
		{"plus inside a word is literal", []string{`path "secret/a+b" { capabilities = ["read"] }`}, "secret/axb", "deny"},

		// An exact rule beats every glob, even a deny (docs: "Policy
		// syntax"; checklist 62).
		{"exact beats glob deny", []string{
			`path "secret/*" { capabilities = ["deny"] }`,
			`path "secret/foo" { capabilities = ["read"] }`,
		}, "secret/foo", "read"},
		{"glob deny elsewhere", []string{
			`path "secret/*" { capabilities = ["deny"] }`,
			`path "secret/foo" { capabilities = ["read"] }`,
		}, "secret/bar", "deny"},
		{"exact beats plus", []string{
			`path "secret/+" { capabilities = ["update"] }`,
			`path "secret/foo" { capabilities = ["read"] }`,
		}, "secret/foo", "read"},
		// Only the winning rule counts: a broader grant does not add to it.
		{"no union across patterns", []string{
			`path "secret/*" { capabilities = ["update"] }`,
			`path "secret/foo" { capabilities = ["read"] }`,
		}, "secret/foo", "read"},

		// Among prefix rules only the longest counts.
		{"longest prefix", []string{
			`path "secret/*" { capabilities = ["read"] }`,
			`path "secret/a*" { capabilities = ["update"] }`,
		}, "secret/abc", "update"},
		{"shorter prefix when the longer misses", []string{
			`path "secret/*" { capabilities = ["read"] }`,
			`path "secret/a*" { capabilities = ["update"] }`,
		}, "secret/bcd", "read"},

		// Rule 1: the later first wildcard wins. secret/+/baz has its
		// `+` at 7, secret/foo/* its `*` at 11.
		{"rule 1 later wildcard wins", []string{
			`path "secret/+/baz" { capabilities = ["read"] }`,
			`path "secret/foo/*" { capabilities = ["update"] }`,
		}, "secret/foo/baz", "update"},
		{"rule 1 plus after prefix", []string{
			`path "secret/*" { capabilities = ["read"] }`,
			`path "secret/foo/+" { capabilities = ["update"] }`,
		}, "secret/foo/bar", "update"},
		// Rule 2: at the same position, a pattern ending in `*` loses.
		{"rule 2 prefix loses", []string{
			`path "secret/foo/+" { capabilities = ["read"] }`,
			`path "secret/foo/*" { capabilities = ["update"] }`,
		}, "secret/foo/bar", "read"},
		// Rule 3: more `+` segments lose. Between secret/* and
		// secret/+/+/foo/* (the docs' example) the latter is lower.
		{"rule 3 docs example", []string{
			`path "secret/*" { capabilities = ["read"] }`,
			`path "secret/+/+/foo/*" { capabilities = ["update"] }`,
		}, "secret/a/b/foo/c", "read"},
		{"rule 3 fewer plus wins", []string{
			`path "secret/+/+/*" { capabilities = ["read"] }`,
			`path "secret/+/foo/*" { capabilities = ["update"] }`,
		}, "secret/a/foo/x", "update"},
		// Rule 4: the shorter loses.
		{"rule 4 longer wins", []string{
			`path "secret/+/fo*" { capabilities = ["read"] }`,
			`path "secret/+/foo*" { capabilities = ["update"] }`,
		}, "secret/a/foox", "update"},
		// Rule 5: the lexicographically smaller loses ('+' < 'b').
		{"rule 5 lexicographic", []string{
			`path "secret/+/+/c" { capabilities = ["read"] }`,
			`path "secret/+/b/+" { capabilities = ["update"] }`,
		}, "secret/x/b/c", "update"},
		{"rule 5 independent of order", []string{
			`path "secret/+/b/+" { capabilities = ["update"] }`,
			`path "secret/+/+/c" { capabilities = ["read"] }`,
		}, "secret/x/b/c", "update"},

		// Identical patterns merge: union, deny wins, across and within
		// policies (checklist 63).
		{"union across policies", []string{
			`path "secret/foo" { capabilities = ["read"] }`,
			`path "secret/foo" { capabilities = ["update", "list"] }`,
		}, "secret/foo", "list,read,update"},
		{"union within a policy", []string{
			"path \"secret/*\" { capabilities = [\"read\"] }\npath \"secret/*\" { capabilities = [\"create\"] }",
		}, "secret/x", "create,read"},
		{"deny wins among identical", []string{
			`path "secret/foo" { capabilities = ["read", "sudo"] }`,
			`path "secret/foo" { capabilities = ["deny"] }`,
			`path "secret/foo" { capabilities = ["update"] }`,
		}, "secret/foo", "deny"},
		{"leading slash is the same pattern", []string{
			`path "/secret/foo" { capabilities = ["read"] }`,
			`path "secret/foo" { capabilities = ["deny"] }`,
		}, "secret/foo", "deny"},
		{"deny on a glob pattern", []string{
			`path "secret/*" { capabilities = ["read"] }`,
			`path "secret/*" { capabilities = ["deny"] }`,
		}, "secret/foo", "deny"},

		// Capabilities looks up as a list: an exact rule on the path
		// without its trailing slash counts.
		{"trailing slash finds exact", []string{`path "secret/foo" { capabilities = ["list"] }`}, "secret/foo/", "list"},
		{"trailing slash finds glob without it", []string{`path "secret/+" { capabilities = ["list"] }`}, "secret/a/", "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustACL(t, tt.policies...)
			if got := caps(a, tt.path); got != tt.want {
				t.Errorf("Capabilities(%q) = %s, want %s", tt.path, got, tt.want)
			}
			// The order the policies come in never matters.
			rev := append([]string(nil), tt.policies...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if got := caps(mustACL(t, rev...), tt.path); got != tt.want {
				t.Errorf("reversed: Capabilities(%q) = %s, want %s", tt.path, got, tt.want)
			}
		})
	}
}

// TestAllowOperations checks that each operation needs the capability of
// its name, and how list treats a trailing slash.
func TestAllowOperations(t *testing.T) {
	a := mustACL(t, `
path "secret/foo" { capabilities = ["list"] }
path "secret/rw" { capabilities = ["read", "update"] }
path "secret/+" { capabilities = ["create"] }
path "kv/+" { capabilities = ["list", "read"] }
`)
	tests := []struct {
		op   logical.Operation
		path string
		want bool
	}{
		{logical.ListOperation, "secret/foo", true},
		{logical.ListOperation, "secret/foo/", true},
		{logical.ReadOperation, "secret/foo/", false},
		{logical.ReadOperation, "secret/foo", false},
		{logical.ReadOperation, "secret/rw", true},
		{logical.UpdateOperation, "secret/rw", true},
		{logical.CreateOperation, "secret/rw", false}, // exact rule wins over secret/+
		{logical.DeleteOperation, "secret/rw", false},
		{logical.CreateOperation, "secret/other", true},
		{logical.ReadOperation, "secret/other", false},
		// The glob is retried without the slash only for a list.
		{logical.ListOperation, "kv/a/", true},
		{logical.ReadOperation, "kv/a/", false},
		{logical.ReadOperation, "kv/a", true},
		{logical.Operation("patch"), "secret/rw", false},
		{logical.Operation("sudo"), "secret/rw", false},
		{logical.Operation("bogus"), "secret/rw", false},
	}
	for _, tt := range tests {
		if got := a.Allow(tt.op, tt.path, nil).Allowed; got != tt.want {
			t.Errorf("Allow(%s, %q) = %v, want %v", tt.op, tt.path, got, tt.want)
		}
	}
	res := a.Allow(logical.ReadOperation, "secret/rw", nil)
	want := Result{Allowed: true, Capabilities: []string{"read", "update"}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}
	res = a.Allow(logical.ReadOperation, "nothing/here", nil)
	want = Result{Capabilities: []string{"deny"}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestSudo(t *testing.T) {
	a := mustACL(t, seedAdmin, `
path "sys/leases/revoke-prefix/*" { capabilities = ["update", "sudo"] }
path "sys/leases/lookup/*" { capabilities = ["sudo"] }
path "sys/leases/revoke-force/*" { capabilities = ["sudo", "deny"] }
`)
	tests := []struct {
		op   logical.Operation
		path string
		want Result
	}{
		{logical.UpdateOperation, "auth/token/create", Result{Allowed: true, Sudo: true, Capabilities: []string{"create", "delete", "list", "read", "sudo", "update"}}},
		{logical.UpdateOperation, "database/creds/readonly", Result{Allowed: true, Capabilities: []string{"create", "delete", "list", "read", "update"}}},
		{logical.UpdateOperation, "sys/leases/revoke-prefix/database/creds", Result{Allowed: true, Sudo: true, Capabilities: []string{"sudo", "update"}}},
		// sudo alone grants no operation.
		{logical.ListOperation, "sys/leases/lookup/database/", Result{Sudo: true, Capabilities: []string{"sudo"}}},
		// deny takes sudo away too.
		{logical.UpdateOperation, "sys/leases/revoke-force/database", Result{Capabilities: []string{"deny"}}},
		{logical.UpdateOperation, "sys/audit/file", Result{Capabilities: []string{"deny"}}},
	}
	for _, tt := range tests {
		if got := a.Allow(tt.op, tt.path, nil); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Allow(%s, %q) = %+v, want %+v", tt.op, tt.path, got, tt.want)
		}
	}
}

func TestRoot(t *testing.T) {
	apps := mustParse(t, "apps", seedApps)
	for _, ps := range [][]*Policy{
		{{Name: RootPolicyName}},
		{apps, {Name: RootPolicyName}, nil},
	} {
		a, err := NewACL(ps...)
		if err != nil {
			t.Fatal(err)
		}
		if !a.IsRoot() {
			t.Error("not root")
		}
		want := Result{Allowed: true, Sudo: true, Capabilities: []string{"root"}}
		for _, op := range []logical.Operation{logical.ReadOperation, logical.DeleteOperation} {
			if got := a.Allow(op, "sys/raw/anything", map[string]any{"x": 1}); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %+v", op, got)
			}
		}
		if got := caps(a, "database/creds/readonly"); got != "root" {
			t.Errorf("capabilities %s", got)
		}
	}
	a, err := NewACL(apps, nil)
	if err != nil || a.IsRoot() {
		t.Fatalf("apps ACL: root %v, %v", a.IsRoot(), err)
	}
}

// TestSeedPolicies checks the seed guide's two policies grant exactly what
// they list, over every operation on a set of paths around them.
func TestSeedPolicies(t *testing.T) {
	ops := []logical.Operation{logical.CreateOperation, logical.ReadOperation, logical.UpdateOperation, logical.DeleteOperation, logical.ListOperation}
	paths := []string{
		"sys/mounts/database", "sys/mounts", "sys/mounts/", "sys/mounts/a/b",
		"database/config/postgresql", "database/roles/readonly", "database/creds/readonly", "database/creds/other", "database",
		"sys/policy/apps", "sys/policy", "sys/policies/acl/apps",
		"auth/token/create", "auth/token/create/role", "auth/token/create-orphan", "auth/token/lookup-self",
		"sys/leases/renew", "sys/leases/revoke-prefix/database", "secret/foo", "",
	}
	crudl := map[logical.Operation]bool{logical.CreateOperation: true, logical.ReadOperation: true,
		logical.UpdateOperation: true, logical.DeleteOperation: true, logical.ListOperation: true}
	admin := func(op logical.Operation, path string) bool {
		switch {
		case strings.HasPrefix(path, "sys/mounts/"), strings.HasPrefix(path, "database/"),
			strings.HasPrefix(path, "sys/policy/"), path == "auth/token/create":
			return crudl[op]
		}
		return false
	}
	apps := func(op logical.Operation, path string) bool {
		return op == logical.ReadOperation && path == "database/creds/readonly"
	}
	for _, c := range []struct {
		name string
		text string
		want func(logical.Operation, string) bool
	}{{"admin", seedAdmin, admin}, {"apps", seedApps, apps}} {
		a := mustACL(t, c.text)
		allowed := 0
		for _, path := range paths {
			for _, op := range ops {
				got := a.Allow(op, path, nil)
				if got.Allowed != c.want(op, path) {
					t.Errorf("%s: Allow(%s, %q) = %v", c.name, op, path, got.Allowed)
				}
				if got.Allowed {
					allowed++
				}
				if got.Sudo != (c.name == "admin" && path == "auth/token/create") {
					t.Errorf("%s: sudo on %q = %v", c.name, path, got.Sudo)
				}
			}
		}
		t.Logf("%s: %d of %d (path, op) pairs allowed", c.name, allowed, len(paths)*len(ops))
	}
}

func TestParameters(t *testing.T) {
	a := mustACL(t, `
path "req" {
  capabilities = ["create", "update", "read", "list", "delete"]
  required_parameters = ["Name", "db"]
}
path "allow" {
  capabilities = ["update"]
  allowed_parameters = {
    "name"  = []
    "role"  = ["readonly", "app-*", "*-ro", "*mid*"]
    "ttl"   = [3600, "1h"]
    "debug" = [true]
  }
}
path "allow-star" {
  capabilities = ["update"]
  allowed_parameters = {
    "*"    = []
    "role" = ["readonly"]
  }
}
path "deny" {
  capabilities = ["update"]
  denied_parameters = {
    "password" = []
    "role"     = ["admin", "super*"]
    "meta"     = ["team=ops", "tier=*"]
  }
  allowed_parameters = {
    "*" = []
  }
}
path "meta-allow" {
  capabilities = ["update"]
  allowed_parameters = {
    "meta" = ["team=apps", "env=*"]
  }
}
path "deny-all" {
  capabilities = ["update"]
  denied_parameters = {
    "*" = []
  }
}
`)
	type data = map[string]any
	tests := []struct {
		op   logical.Operation
		path string
		data data
		want bool
	}{
		// required_parameters: every one present, under the exact name
		// the backends read ("NAME" is not "name" to them).
		{"update", "req", data{"name": "x", "db": "y", "extra": 1}, true},
		{"update", "req", data{"NAME": "x", "DB": "y"}, false},
		{"update", "req", data{"name": "x"}, false},
		{"update", "req", nil, false},
		{"read", "req", data{"name": "x"}, false},
		// list and delete carry no parameters that count.
		{"list", "req", nil, true},
		{"delete", "req", nil, true},

		// allowed_parameters: unlisted names are refused; listed values
		// match exactly or by a leading or trailing `*`.
		{"update", "allow", nil, true},
		{"update", "allow", data{"name": "anything"}, true},
		{"update", "allow", data{"other": "x"}, false},
		{"update", "allow", data{"role": "readonly"}, true},
		{"update", "allow", data{"role": "app-billing"}, true},
		{"update", "allow", data{"role": "billing-ro"}, true},
		{"update", "allow", data{"role": "xmidx"}, true},
		{"update", "allow", data{"role": "admin"}, false},
		{"update", "allow", data{"Role": "readonly"}, true},
		// Values compare as strings: the CLI sends "3600".
		{"update", "allow", data{"ttl": "3600"}, true},
		{"update", "allow", data{"ttl": 3600}, true},
		{"update", "allow", data{"ttl": 3600.0}, true},
		{"update", "allow", data{"ttl": json.Number("3600")}, true},
		{"update", "allow", data{"ttl": "1h"}, true},
		{"update", "allow", data{"ttl": "2h"}, false},
		{"update", "allow", data{"debug": true}, true},
		{"update", "allow", data{"debug": "true"}, true},
		{"update", "allow", data{"debug": false}, false},
		// A repeated key arrives as a list: every element must be allowed.
		{"update", "allow", data{"role": []any{"readonly", "app-x"}}, true},
		{"update", "allow", data{"role": []any{"readonly", "admin"}}, false},
		{"update", "allow", data{"role": []string{"readonly", "admin"}}, false},
		{"update", "allow", data{"role": map[string]any{"x": 1}}, false},
		{"update", "allow", data{"name": "x", "other": "y"}, false},
		// Keys that differ only in case are each checked: one cannot hide
		// the other's value.
		{"update", "allow", data{"role": "admin", "ROLE": "readonly"}, false},
		{"update", "allow", data{"Role": "admin", "role": "readonly"}, false},

		// "*" = [] admits unlisted names; listed names keep their values.
		{"update", "allow-star", data{"anything": "x"}, true},
		{"update", "allow-star", data{"role": "readonly"}, true},
		{"update", "allow-star", data{"role": "admin"}, false},

		// denied_parameters wins over allowed_parameters.
		{"update", "deny", data{"username": "x"}, true},
		{"update", "deny", data{"password": "x"}, false},
		// Key/value parameters are judged as the "k=v" strings the
		// command line sends, whether they arrive as strings or as a JSON
		// object: an object is no way around a denied value.
		{"update", "deny", data{"meta": "team=apps"}, true},
		{"update", "deny", data{"meta": []any{"team=apps", "team=ops"}}, false},
		{"update", "deny", data{"meta": map[string]any{"team": "apps"}}, true},
		{"update", "deny", data{"meta": map[string]any{"team": "ops"}}, false},
		{"update", "deny", data{"meta": map[string]any{"x": "y", "tier": "gold"}}, false},
		{"update", "deny", data{"meta": map[string]string{"team": "ops"}}, false},
		// A value the policy cannot read is denied, not let through.
		{"update", "deny", data{"meta": map[string]any{"team": map[string]any{"ops": true}}}, false},
		{"update", "deny", data{"role": []any{map[string]any{"x": "admin"}}}, false},
		{"update", "meta-allow", data{"meta": map[string]any{"team": "apps", "env": "prod"}}, true},
		{"update", "meta-allow", data{"meta": map[string]any{"team": "ops"}}, false},
		{"update", "meta-allow", data{"meta": []any{"team=apps", "env=dev"}}, true},
		{"update", "deny", data{"PASSWORD": ""}, false},
		{"update", "deny", data{"role": "readonly", "ROLE": "admin"}, false},
		{"update", "deny", data{"role": "readonly"}, true},
		{"update", "deny", data{"role": "admin"}, false},
		{"update", "deny", data{"role": "superuser"}, false},
		// Any denied element of a list denies it.
		{"update", "deny", data{"role": []any{"readonly", "admin"}}, false},
		{"update", "deny-all", data{"x": 1}, false},
		{"update", "deny-all", nil, true},
	}
	for _, tt := range tests {
		// Map order varies from call to call; a check that depends on it
		// must not pass by luck.
		for range 20 {
			if got := a.Allow(tt.op, tt.path, tt.data).Allowed; got != tt.want {
				t.Errorf("Allow(%s, %q, %v) = %v, want %v", tt.op, tt.path, tt.data, got, tt.want)
				break
			}
		}
	}
}

// TestParameterMerge follows Vault: identical patterns join their
// parameter lists, an empty list absorbing values, and deny clears them.
func TestParameterMerge(t *testing.T) {
	a := mustACL(t,
		`path "p" {
  capabilities = ["update"]
  allowed_parameters = { "role" = ["a"], "db" = ["x"] }
  required_parameters = ["role"]
}`,
		`path "p" {
  capabilities = ["create"]
  allowed_parameters = { "role" = ["b"], "db" = [], "ttl" = [] }
  denied_parameters = { "ttl" = ["0"] }
  required_parameters = ["db"]
}`)
	r := a.exact["p"]
	wantAllowed := map[string][]string{"role": {"a", "b"}, "db": {}, "ttl": {}}
	if !reflect.DeepEqual(r.allowed, wantAllowed) || !reflect.DeepEqual(r.denied, map[string][]string{"ttl": {"0"}}) ||
		!reflect.DeepEqual(r.required, []string{"role", "db"}) {
		t.Errorf("merged: allowed %v denied %v required %v", r.allowed, r.denied, r.required)
	}
	if !a.Allow("create", "p", map[string]any{"role": "b", "db": "anything", "ttl": "1"}).Allowed {
		t.Error("merged values refused")
	}
	if a.Allow("create", "p", map[string]any{"role": "b", "db": "x", "ttl": "0"}).Allowed {
		t.Error("denied value allowed")
	}
	d := mustACL(t, `path "p" {
  capabilities = ["update"]
  required_parameters = ["role"]
}`, `path "p" { capabilities = ["deny"] }`)
	if r := d.exact["p"]; r.required != nil || r.bits != capBits[CapDeny] {
		t.Errorf("deny kept %+v", r)
	}
}

func TestNewACLRejectsBadRules(t *testing.T) {
	for _, p := range []*Policy{
		{Name: "x", Paths: []PathRules{{Path: ""}}},
		{Name: "x", Paths: []PathRules{{Path: "a/+*"}}},
		{Name: "x", Paths: []PathRules{{Path: "a", Capabilities: []string{"raed"}}}},
	} {
		if _, err := NewACL(p); err == nil {
			t.Errorf("NewACL accepted %+v", p.Paths)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	var sb strings.Builder
	for i := range 200 {
		fmt.Fprintf(&sb, "path \"secret/team%d/*\" { capabilities = [\"read\"] }\n", i)
		fmt.Fprintf(&sb, "path \"secret/+/app%d\" { capabilities = [\"update\"] }\n", i)
		fmt.Fprintf(&sb, "path \"database/creds/role%d\" { capabilities = [\"read\"] }\n", i)
	}
	a := mustACL(b, sb.String(), seedAdmin)
	b.ResetTimer()
	for range b.N {
		a.Allow(logical.ReadOperation, "secret/team150/app150", nil)
	}
}

// BenchmarkParse parses (and formats) a policy of 1,000 blocks in each
// syntax, to keep both linear in the policy's size.
func BenchmarkParse(b *testing.B) {
	var hcl, js strings.Builder
	js.WriteString(`{"path": {`)
	for i := range 1000 {
		fmt.Fprintf(&hcl, "# block %d\npath \"secret/team%d/*\" {\n  capabilities = [\"read\", \"list\"]\n  allowed_parameters = {\n    \"role\" = [\"app-*\"]\n  }\n}\n\n", i, i)
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, "\n  \"secret/team%d/*\": {\"capabilities\": [\"read\", \"list\"], \"allowed_parameters\": {\"role\": [\"app-*\"]}}", i)
	}
	js.WriteString("}}")
	for name, text := range map[string]string{"hcl": hcl.String(), "json": js.String()} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for range b.N {
				if _, err := Parse("big", text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("format", func(b *testing.B) {
		text := hcl.String()
		b.SetBytes(int64(len(text)))
		for range b.N {
			if _, err := Format(text); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWrappingTTLsAllowNothing: Vault allows a request that a block with
// min_wrapping_ttl or max_wrapping_ttl governs only when its response is
// wrapped; lessor never wraps one, so such a block allows no request,
// even merged with a block of the same pattern that sets neither. The
// same for an MFA check or a control group's approval, which lessor
// cannot obtain. Other patterns are unaffected; the capabilities on such
// a pattern are ["deny"], as its rule grants nothing.
func TestWrappingTTLsAllowNothing(t *testing.T) {
	for _, text := range []string{
		`path "database/creds/readonly" { capabilities = ["read"]  min_wrapping_ttl = "1s" }`,
		`path "database/creds/readonly" { capabilities = ["read"]  max_wrapping_ttl = "5m" }`,
		`path "database/creds/*" { capabilities = ["read", "update"]  min_wrapping_ttl = "1m" }`,
		`path "database/creds/readonly" { capabilities = ["read"]  mfa_methods = ["duo"] }`,
		`path "database/creds/readonly" { capabilities = ["read"]  control_group = { factor "ops" { identity { group_names = ["ops"] approvals = 1 } } } }`,
	} {
		a := mustACL(t, text, `path "database/creds/readonly" { capabilities = ["read"] }
path "database/creds/readonly" { capabilities = ["read"] }
path "secret/data" { capabilities = ["read"] }`)
		if strings.Contains(text, "*") {
			a = mustACL(t, text, `path "secret/data" { capabilities = ["read"] }`)
		}
		if r := a.Allow(logical.ReadOperation, "database/creds/readonly", nil); r.Allowed {
			t.Errorf("%s: an unwrapped read was allowed", text)
		}
		if r := a.Allow(logical.ReadOperation, "secret/data", nil); !r.Allowed {
			t.Errorf("%s: a read another pattern grants was refused", text)
		}
		// Capabilities say so: nothing is granted there.
		if got := caps(a, "database/creds/readonly"); got != CapDeny {
			t.Errorf("%s: capabilities %s, want deny", text, got)
		}
	}
	// Merged into the wrapping block's pattern, a plain block does not
	// lift the requirement, as in Vault.
	a := mustACL(t, `path "db/creds/x" { capabilities = ["read"]  min_wrapping_ttl = "1s" }`, `path "db/creds/x" { capabilities = ["read", "update"] }`)
	if r := a.Allow(logical.UpdateOperation, "db/creds/x", nil); r.Allowed {
		t.Error("a plain block lifted the wrapping requirement of its pattern")
	}
}
