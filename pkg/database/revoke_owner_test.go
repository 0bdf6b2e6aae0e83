package database

import (
	"context"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// TestRevokeDropsOnlyItsOwnRole: revocation drops a role only when its
// comment names this store and the lease being revoked. A second
// revocation of a lease whose username a later lease reused (a template
// without a random part) leaves the later lease's live role alone, and so
// does a revocation whose username names a role lessor never made, with
// the default statements and with custom ones.
func TestRevokeDropsOnlyItsOwnRole(t *testing.T) {
	ctx := context.Background()
	for _, custom := range []bool{false, true} {
		name := map[bool]string{false: "default statements", true: "custom statements"}[custom]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(map[string]any{"username_template": "{{.RoleName}}-{{.DisplayName}}", "allowed_roles": "fixed"})
			extra := map[string]any(nil)
			if custom {
				extra = map[string]any{"revocation_statements": `DROP ROLE IF EXISTS "{{name}}";`}
			}
			e.writeRole("fixed", extra)

			r1 := e.issue("fixed")
			l1 := e.secret(r1.Secret.LeaseID)
			if errs := e.b.RevokeSecrets(ctx, []*logical.SecretRequest{l1}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			r2 := e.issue("fixed")
			user, pass := r2.Data["username"].(string), r2.Data["password"].(string)
			if user != r1.Data["username"] {
				t.Fatalf("usernames %q and %q: the template should repeat", r1.Data["username"], user)
			}
			// L1 revoked again (a retry, or reap's second pass over a
			// lease revoked while pending): L2's role is not L1's.
			if errs := e.b.RevokeSecrets(ctx, []*logical.SecretRequest{l1}); errs[0] != nil {
				t.Fatalf("second revocation of the first lease: %v", errs[0])
			}
			if err := e.srv.CanLogin(ctx, user, pass, e.db.Name); err != nil {
				t.Fatalf("the second lease's credential after the first lease's second revocation: %v", err)
			}
			// Its own revocation drops it.
			if errs := e.b.RevokeSecrets(ctx, []*logical.SecretRequest{e.secret(r2.Secret.LeaseID)}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			if e.roleExists(user) {
				t.Fatalf("role %s left after its own lease's revocation", user)
			}

			// A role lessor never made, named by a lease's record.
			victim := "victim_" + randHex(t, 4)
			conn := e.db.Conn(t)
			for _, q := range []string{
				`CREATE ROLE ` + victim + ` LOGIN PASSWORD 'not-lessors'`,
				`CREATE TABLE precious_` + victim + ` (v int)`,
				`ALTER TABLE precious_` + victim + ` OWNER TO ` + victim,
			} {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			e.srv.DropRolesAtCleanup(t, victim)
			forged := &logical.SecretRequest{
				LeaseID:      "database/creds/fixed/forged",
				InternalData: map[string]any{"username": victim, "db_name": "pg", "role": "fixed"},
				MountPoint:   "database/", Storage: e.st, System: e.sys,
			}
			if errs := e.b.RevokeSecrets(ctx, []*logical.SecretRequest{forged}); errs[0] != nil {
				t.Fatalf("revocation of a lease naming someone else's role: %v", errs[0])
			}
			if !e.roleExists(victim) {
				t.Fatal("a role lessor never made was dropped")
			}
			if err := e.srv.CanLogin(ctx, victim, "not-lessors", e.db.Name); err != nil {
				t.Fatalf("a role lessor never made lost its login: %v", err)
			}
		})
	}
}

func (e *env) roleExists(name string) bool {
	e.t.Helper()
	var n int
	if err := e.db.Conn(e.t).QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, name).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n == 1
}
