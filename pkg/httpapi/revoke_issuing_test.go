package httpapi_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// testClock is a clock a test moves by hand, safe for the server's
// goroutines.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// storeRoles returns this store's roles in PostgreSQL, by name, with the
// lease id their comment names.
func storeRoles(t *testing.T, db *pgtest.Database, storeID string) map[string]string {
	t.Helper()
	conn := db.Conn(t)
	rows, err := conn.Query(ctx, `SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
WHERE shobj_description(oid, 'pg_authid') LIKE $1`, database.CommentPrefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			t.Fatal(err)
		}
		if m, err := database.ParseRoleComment(comment); err == nil && m.StoreID == storeID {
			out[name] = m.LeaseID
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// seededEnv is a server on a store with the seed guide's database mount,
// on a clock the test moves; whatever roles of the store are left at the
// end are dropped.
func seededEnv(t *testing.T) (*env, *pgtest.Database, *testClock, string) {
	t.Helper()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	clk := &testClock{t: time.Now().UTC()}
	e := newEnvAt(t, httpapi.Config{}, clk.Now)
	seedDatabase(t, vaultClient(t, e.url, e.root), srv, db.Name)
	storeID := e.core.StoreID()
	t.Cleanup(func() {
		var names []string
		for name := range storeRoles(t, db, storeID) {
			names = append(names, name)
		}
		srv.DropRolesAtCleanup(t, names...)
	})
	return e, db, clk, storeID
}

// checkRolesRecorded fails the test for any role of the store in
// PostgreSQL whose lease has no record.
func checkRolesRecorded(t *testing.T, e *env, db *pgtest.Database, storeID string) {
	t.Helper()
	entries, err := e.core.Leases().Entries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, le := range entries {
		recorded[le.ID] = true
	}
	for name, id := range storeRoles(t, db, storeID) {
		if !recorded[id] {
			t.Errorf("role %s exists without its lease %s", name, id)
		}
	}
}

// stepAnswer is the answer to a request a failpoint sent.
type stepAnswer struct {
	status int
	body   string
}

// atStep arms step to send one request as root (method, path, body) the
// first time the step is reached, in the goroutine that reaches it: what
// a concurrent request of lessor serve does, at the worst moment. The
// answer is in the result once the step has run.
func atStep(t *testing.T, e *env, step, method, path, body string) *stepAnswer {
	t.Helper()
	a := &stepAnswer{}
	var once sync.Once
	failpoint.Arm(step, func(string) {
		once.Do(func() { a.status, a.body, _ = e.do(t, method, path, e.root, body) })
	})
	t.Cleanup(func() { failpoint.Arm("", nil) })
	return a
}

// TestRevokeWhileIssuing: `lease revoke -prefix` runs while a credential
// under that prefix is being issued, once before PostgreSQL committed the
// role (the revocation finds no role to drop) and once after. No role may
// be left without its lease record at any point, the issuer must not hand
// out a credential its lease no longer covers, and once the issuer's grace
// is over reap leaves neither a role nor a record.
func TestRevokeWhileIssuing(t *testing.T) {
	for _, step := range []string{failpoint.IssueAfterPending, failpoint.IssueAfterCreate} {
		t.Run(strings.ReplaceAll(step, "/", "-"), func(t *testing.T) {
			e, db, clk, storeID := seededEnv(t)

			// The revocation runs in the issuing request's goroutine,
			// at the step: what a concurrent request of lessor serve
			// does, at the worst moment.
			var revokeStatus int
			var revokeBody string
			var once sync.Once
			failpoint.Arm(step, func(string) {
				once.Do(func() {
					req, err := http.NewRequest("PUT", e.url+"/v1/sys/leases/revoke-prefix/database/creds/readonly", nil)
					if err != nil {
						revokeBody = err.Error()
						return
					}
					req.Header.Set("X-Vault-Token", e.root)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						revokeBody = err.Error()
						return
					}
					resp.Body.Close()
					revokeStatus = resp.StatusCode
				})
			})
			t.Cleanup(func() { failpoint.Arm("", nil) })

			status, body, _ := e.do(t, "GET", "/v1/database/creds/readonly", e.root, "")
			failpoint.Arm("", nil)
			if revokeStatus != http.StatusNoContent {
				t.Fatalf("revoke-prefix during the issue: %d %s", revokeStatus, revokeBody)
			}
			if status == http.StatusOK {
				t.Errorf("the issue handed out a credential whose lease was revoked: %s", body)
			} else if errs := errorsOf(t, body); len(errs) != 1 || !strings.Contains(errs[0], "revoked while it was being issued") {
				t.Errorf("the issue failed with %d %s, want the lease revoked while it was being issued", status, body)
			}

			// No role without its record, and no lease left live.
			checkRolesRecorded(t, e, db, storeID)
			entries, err := e.core.Leases().Entries(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, le := range entries {
				if le.State == lease.StatePending || le.State == lease.StateActive {
					t.Errorf("lease %s is %s after its revocation", le.ID, le.State)
				}
			}

			// Past the issuer's grace, reap settles what the revocation
			// left: nothing remains.
			clk.advance(6 * time.Minute)
			if _, err := e.core.Leases().Reap(ctx, lease.ReapOptions{}); err != nil {
				t.Fatalf("reap: %v", err)
			}
			if n, err := e.core.Leases().Count(ctx); err != nil || n != 0 {
				t.Errorf("%d lease records left after reap (%v)", n, err)
			}
			if roles := storeRoles(t, db, storeID); len(roles) != 0 {
				t.Errorf("roles left after reap: %v", roles)
			}
		})
	}
}

// TestDisableWhileIssuing: `secrets disable` that meets a credential being
// issued refuses to remove the mount while the lease's record must stay
// (the issue's grace), rather than leave a record reap could never settle;
// once reap has settled it, disable succeeds and nothing is left.
func TestDisableWhileIssuing(t *testing.T) {
	e, db, clk, storeID := seededEnv(t)

	disable := atStep(t, e, failpoint.IssueAfterPending, "DELETE", "/v1/sys/mounts/database", "")
	status, body, _ := e.do(t, "GET", "/v1/database/creds/readonly", e.root, "")
	failpoint.Arm("", nil)
	if status == http.StatusOK {
		t.Errorf("the issue handed out a credential whose lease was revoked: %s", body)
	}
	if disable.status != http.StatusBadRequest || !strings.Contains(disable.body, "being issued while its leases were revoked") {
		t.Fatalf("disable during the issue: %d %s", disable.status, disable.body)
	}
	if status, body, _ := e.do(t, "GET", "/v1/sys/mounts", e.root, ""); status != 200 || !strings.Contains(body, `"database/"`) {
		t.Fatalf("the mount is gone after a refused disable: %d %s", status, body)
	}
	checkRolesRecorded(t, e, db, storeID)

	clk.advance(6 * time.Minute)
	if _, err := e.core.Leases().Reap(ctx, lease.ReapOptions{}); err != nil {
		t.Fatalf("reap: %v", err)
	}
	if status, body, _ := e.do(t, "DELETE", "/v1/sys/mounts/database", e.root, ""); status != http.StatusNoContent && status != http.StatusOK {
		t.Fatalf("disable after reap: %d %s", status, body)
	}
	if n, err := e.core.Leases().Count(ctx); err != nil || n != 0 {
		t.Errorf("%d lease records left (%v)", n, err)
	}
	if roles := storeRoles(t, db, storeID); len(roles) != 0 {
		t.Errorf("roles left: %v", roles)
	}
}

// TestRemountWhileIssuing: `secrets move` that meets a credential being
// issued, at each step of the issue, never leaves a credential handed out
// under the old path, nor a role without its record; reap, once the
// issuer's grace is over, leaves neither a role nor a record, and the
// mount works at its new path.
func TestRemountWhileIssuing(t *testing.T) {
	for _, step := range []string{failpoint.IssueAfterPending, failpoint.IssueAfterCreate} {
		t.Run(strings.ReplaceAll(step, "/", "-"), func(t *testing.T) {
			e, db, clk, storeID := seededEnv(t)
			move := atStep(t, e, step, "PUT", "/v1/sys/remount", `{"from":"database","to":"db2"}`)
			status, body, _ := e.do(t, "GET", "/v1/database/creds/readonly", e.root, "")
			failpoint.Arm("", nil)
			t.Logf("move during the issue: %d %s; issue: %d %s", move.status, move.body, status, body)
			if status == http.StatusOK && move.status < 300 {
				t.Errorf("the issue handed out a credential under the old path of a mount that moved: %s", body)
			}
			checkRolesRecorded(t, e, db, storeID)
			clk.advance(6 * time.Minute)
			if _, err := e.core.Leases().Reap(ctx, lease.ReapOptions{}); err != nil {
				t.Fatalf("reap: %v", err)
			}
			if move.status >= 300 {
				if s, b, _ := e.do(t, "PUT", "/v1/sys/remount", e.root, `{"from":"database","to":"db2"}`); s >= 300 {
					t.Fatalf("move after reap: %d %s", s, b)
				}
			}
			if n, err := e.core.Leases().Count(ctx); err != nil || n != 0 {
				t.Errorf("%d lease records left (%v)", n, err)
			}
			if roles := storeRoles(t, db, storeID); len(roles) != 0 {
				t.Errorf("roles left: %v", roles)
			}
			if s, b, _ := e.do(t, "GET", "/v1/db2/creds/readonly", e.root, ""); s != http.StatusOK {
				t.Fatalf("issue at the new path: %d %s", s, b)
			}
		})
	}
}

// TestRemountRefusesIssuedSinceRevoke: a credential issued under the old
// path after `secrets move` revoked its leases, and before the mount
// moved, makes the move refuse instead of leaving that credential alive
// under a path that no longer exists; the next move revokes it and moves.
func TestRemountRefusesIssuedSinceRevoke(t *testing.T) {
	e, db, _, storeID := seededEnv(t)
	issue := atStep(t, e, failpoint.RemountAfterRevoke, "GET", "/v1/database/creds/readonly", "")
	status, body, _ := e.do(t, "PUT", "/v1/sys/remount", e.root, `{"from":"database","to":"db2"}`)
	failpoint.Arm("", nil)
	if issue.status != http.StatusOK {
		t.Fatalf("issue between the move's revocation and the move: %d %s", issue.status, issue.body)
	}
	if status != http.StatusBadRequest || !strings.Contains(body, "issued under it while its leases were revoked") {
		t.Fatalf("move with a credential issued since its revocation: %d %s", status, body)
	}
	if len(storeRoles(t, db, storeID)) != 1 {
		t.Fatal("the credential issued before the refused move has no role")
	}
	if s, b, _ := e.do(t, "PUT", "/v1/sys/remount", e.root, `{"from":"database","to":"db2"}`); s >= 300 {
		t.Fatalf("the move again: %d %s", s, b)
	}
	if roles := storeRoles(t, db, storeID); len(roles) != 0 {
		t.Errorf("roles left after the move: %v", roles)
	}
	if n, err := e.core.Leases().Count(ctx); err != nil || n != 0 {
		t.Errorf("%d lease records left after the move (%v)", n, err)
	}
}
