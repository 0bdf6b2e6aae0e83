package httpapi_test

import (
	"testing"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/logical"
)

// TestPasswordPolicyNamedWhileRewritten: a token that may write password
// policies without sudo rewrites one (four of "a") while an operator names
// it in a connection, between the naming's check of who wrote it last and
// its commit, or between its own check that nothing names it and its
// commit. Whichever commits second must be refused: a connection never
// names a policy a token without sudo wrote last, as rotate-root would
// make the admin's next password by it.
func TestPasswordPolicyNamedWhileRewritten(t *testing.T) {
	const (
		strong = "length = 24\nrule \"charset\" {\n  charset = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n}\n"
		weak   = "length = 4\nrule \"charset\" {\n  charset = \"a\"\n}\n"
	)
	for _, step := range []string{failpoint.ConfigBeforeCommit, failpoint.PasswordPolicyBeforeCommit} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t, httpapi.Config{})
			e.must(t, logical.UpdateOperation, "sys/mounts/database", map[string]any{"type": "database"})
			e.must(t, logical.UpdateOperation, "sys/policy/pw", map[string]any{"policy": `path "sys/policies/password/*" { capabilities = ["create", "update", "read"] }`})
			writer := e.must(t, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "pw"}).Auth.ClientToken
			e.must(t, logical.UpdateOperation, "sys/policies/password/p", map[string]any{"policy": strong})
			name := func() error {
				_, err := e.core.Handle(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "database/config/c", ClientToken: e.root, Data: map[string]any{
					"plugin_name": "postgresql-database-plugin", "verify_connection": false, "password_policy": "p",
					"connection_url": "postgresql://admin@127.0.0.1:1/db?sslmode=disable", "password": "s3cret",
				}})
				return err
			}
			rewrite := func() error {
				_, err := e.core.Handle(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "sys/policies/password/p", ClientToken: writer, Data: map[string]any{"policy": weak}})
				return err
			}
			var inner error
			fired := false
			failpoint.Arm(step, func(string) {
				if fired {
					return
				}
				fired = true
				if step == failpoint.ConfigBeforeCommit {
					inner = rewrite()
				} else {
					inner = name()
				}
			})
			t.Cleanup(func() { failpoint.Arm("", nil) })
			var outer error
			if step == failpoint.ConfigBeforeCommit {
				outer = name()
			} else {
				outer = rewrite()
			}
			failpoint.Arm("", nil)
			if !fired {
				t.Fatal("the failpoint was not hit")
			}
			cfg, err := e.core.Handle(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "database/config/c", ClientToken: e.root})
			if err != nil {
				t.Fatal(err)
			}
			pol := e.must(t, logical.ReadOperation, "sys/policies/password/p", nil)
			// The request that commits second is the one refused.
			if inner != nil || outer == nil {
				t.Errorf("the first to commit: %v; the second: %v; want the second refused", inner, outer)
			}
			named := cfg != nil && cfg.Data["password_policy"] == "p"
			if named && pol.Data["policy"] != strong {
				t.Errorf("the connection names policy p, which the token without sudo rewrote (outer: %v, inner: %v)", outer, inner)
			}
		})
	}
}
