package httpapi_test

// Requests in flight while what authorised them changes: the token is
// revoked, or the mount moved, between the core's check and the lease's
// record.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// hookedDB (used as a pointer: the lease manager keeps backends in a map)
// is the real database backend; before it handles a read of
// creds/<role> it calls before: the time a real request spends between
// the core's token check and the lease record (audit write, role and
// connection reads, the dial to PostgreSQL), made deterministic.
type hookedDB struct {
	*database.Backend
	before func()
	// beforeRecord, if set, is called when the backend, having read the
	// role, asks for its lease to be recorded.
	beforeRecord func()
}

func (h hookedDB) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.Operation == logical.ReadOperation && strings.HasPrefix(req.Path, "creds/") {
		if h.before != nil {
			h.before()
		}
		if h.beforeRecord != nil {
			req.Leases = hookedRecorder{req.Leases, h.beforeRecord}
		}
	}
	return h.Backend.HandleRequest(ctx, req)
}

// hookedRecorder calls before ahead of each Prepare.
type hookedRecorder struct {
	logical.LeaseRecorder
	before func()
}

func (h hookedRecorder) Prepare(ctx context.Context, lr *logical.LeaseRequest) (*logical.PreparedLease, error) {
	h.before()
	return h.LeaseRecorder.Prepare(ctx, lr)
}

type inflightEnv struct {
	c    *core.Core
	root string
	srv  *pgtest.Server
	db   *pgtest.Database
	hook *func()
	// recordHook, like hook, runs once, when the issue's lease is about
	// to be recorded.
	recordHook *func()
}

func newInflightEnv(t *testing.T) *inflightEnv {
	t.Helper()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	pool := postgres.NewPool(2, 0)
	t.Cleanup(pool.Close)
	var hook, recordHook func()
	once := func(h *func()) func() {
		return func() {
			if *h != nil {
				f := *h
				*h = nil
				f()
			}
		}
	}
	c := core.New(core.Config{Store: storage.NewMemory(), StoreID: "inflight-" + randHex(4), Factories: map[string]core.Factory{
		"database": func() logical.Backend {
			return &hookedDB{Backend: database.New(database.Options{Pool: pool}), before: once(&hook), beforeRecord: once(&recordHook)}
		},
	}})
	root, err := c.Initialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &inflightEnv{c: c, root: root, srv: srv, db: db, hook: &hook, recordHook: &recordHook}
	e.must(t, root, logical.UpdateOperation, "sys/mounts/database", map[string]any{"type": "database"})
	e.must(t, root, logical.UpdateOperation, "database/config/postgresql", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"allowed_roles":  "readonly",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/%s?sslmode=disable", srv.Host, srv.Port, db.Name),
		"username":       srv.User,
		"password":       srv.Password,
	})
	e.must(t, root, logical.UpdateOperation, "database/roles/readonly", map[string]any{
		"db_name": "postgresql", "creation_statements": readonlySQL, "default_ttl": "1h", "max_ttl": "24h",
	})
	e.must(t, root, logical.UpdateOperation, "sys/policy/apps", map[string]any{
		"policy": `path "database/creds/readonly" { capabilities = ["read"] }`,
	})
	t.Cleanup(func() {
		var names []string
		for name := range storeRoles(t, db, c.StoreID()) {
			names = append(names, name)
		}
		srv.DropRolesAtCleanup(t, names...)
	})
	return e
}

func (e *inflightEnv) do(tok string, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.c.Handle(ctx, &logical.Request{Operation: op, Path: path, Data: data, ClientToken: tok})
}

// logsIn tells whether the credential resp hands out logs in to the
// test's database, and names its user.
func (e *inflightEnv) logsIn(resp *logical.Response) (string, bool) {
	user := logical.String(resp.Data["username"])
	return user, e.srv.CanLogin(ctx, user, logical.String(resp.Data["password"]), e.db.Name) == nil
}

func (e *inflightEnv) must(t *testing.T, tok string, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := e.do(tok, op, path, data)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// TestRevokedTokenIssuesNothingInFlight: An admin
// revokes a leaked token (auth/token/revoke-accessor) while a request of
// that token is issuing a credential. The request passed its token check
// before the revocation; the revocation marks the token and revokes the
// leases recorded under its accessor; the issuer records its lease after
// that, under the accessor of a token that no longer exists, and hands
// the credential out. Nothing ever revokes it before its own TTL (1h
// here, up to the role's max with renewals by anyone granted
// sys/leases/renew/*): "a token's leases never outlive it" does not hold.
func TestRevokedTokenIssuesNothingInFlight(t *testing.T) {
	e := newInflightEnv(t)
	apps := e.must(t, e.root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps"}).Auth
	*e.hook = func() {
		// The admin's revocation, from another command or request.
		e.must(t, e.root, logical.UpdateOperation, "auth/token/revoke-accessor", map[string]any{"accessor": apps.Accessor})
	}
	resp, err := e.do(apps.ClientToken, logical.ReadOperation, "database/creds/readonly", nil)
	if _, lerr := e.do(apps.ClientToken, logical.ReadOperation, "auth/token/lookup-self", nil); lerr == nil {
		t.Fatal("the token still works after its revocation")
	}
	if err != nil {
		if !errors.Is(err, logical.ErrPermissionDenied) {
			t.Errorf("the issue of a token revoked meanwhile: %v, want permission denied", err)
		}
	} else {
		if user, ok := e.logsIn(resp); ok {
			t.Errorf("a credential issued to token %s, which was revoked before the credential was handed out, logs in to PostgreSQL: %s", apps.Accessor, user)
		}
	}
	// Reap now (the token is gone, nothing is due) leaves the lease alone.
	if _, err := e.c.Reap(ctx, lease.ReapOptions{}); err != nil {
		t.Fatal(err)
	}
	es, err := e.c.Leases().Entries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range es {
		if le.TokenAccessor == apps.Accessor && (le.State == lease.StateActive || le.State == lease.StatePending) {
			t.Errorf("lease %s of the revoked token is %s, expiring %s", le.ID, le.State, le.ExpireTime.Sub(time.Now()).Round(time.Minute))
		}
	}
	if roles := storeRoles(t, e.db, e.c.StoreID()); len(roles) != 0 && err == nil {
		t.Logf("roles left in PostgreSQL: %v", roles)
	}
}

// TestNarrowedPolicyIssuesNothingInFlight: an operator takes
// database/creds/readonly out of the "apps" policy and then runs `lease
// revoke -prefix database/creds/readonly` to end what it issued, while a
// request of an "apps" token is issuing. The request passed the ACL under
// the old policy; the revocation selects the leases recorded so far; the
// request records its lease after that and hands out a credential that
// the policy no longer grants and that nothing revokes before its TTL.
func TestNarrowedPolicyIssuesNothingInFlight(t *testing.T) {
	e := newInflightEnv(t)
	apps := e.must(t, e.root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps"}).Auth
	// A policy rewritten meanwhile that still grants the request is no
	// reason to refuse it.
	*e.hook = func() {
		e.must(t, e.root, logical.UpdateOperation, "sys/policy/apps", map[string]any{
			"policy": `path "database/creds/readonly" { capabilities = ["read"] }
path "database/creds/other" { capabilities = ["read"] }`,
		})
	}
	if _, err := e.do(apps.ClientToken, logical.ReadOperation, "database/creds/readonly", nil); err != nil {
		t.Fatalf("the issue under a policy widened meanwhile: %v", err)
	}
	*e.hook = func() {
		e.must(t, e.root, logical.UpdateOperation, "sys/policy/apps", map[string]any{
			"policy": `path "database/creds/other" { capabilities = ["read"] }`,
		})
		e.must(t, e.root, logical.UpdateOperation, "sys/leases/revoke-prefix/database/creds/readonly", nil)
	}
	resp, err := e.do(apps.ClientToken, logical.ReadOperation, "database/creds/readonly", nil)
	if err != nil {
		if !errors.Is(err, logical.ErrPermissionDenied) {
			t.Errorf("the issue under a policy narrowed meanwhile: %v, want permission denied", err)
		}
	} else {
		if user, ok := e.logsIn(resp); ok {
			t.Errorf("lease %s, issued under a policy narrowed meanwhile, survives the revoke-prefix that followed; its credential %s logs in", resp.Secret.LeaseID, user)
		}
	}
	// The policy as it is now still rules the next request.
	if _, err := e.do(apps.ClientToken, logical.ReadOperation, "database/creds/readonly", nil); !errors.Is(err, logical.ErrPermissionDenied) {
		t.Errorf("an issue after the policy was narrowed: %v, want permission denied", err)
	}
}

// TestChangedRoleIssuesNothingInFlight: an operator deletes the role
// readonly (or takes it out of its connection's allowed_roles, or rewrites
// its creation statements) and then runs `lease revoke -prefix
// database/creds/readonly`, while a request is issuing under the role as
// the backend read it before. The request records its lease after the
// revocation's selection and creates a role by statements no longer
// configured, which nothing revokes before its TTL.
func TestChangedRoleIssuesNothingInFlight(t *testing.T) {
	for name, change := range map[string]struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		"deleted":     {logical.DeleteOperation, "database/roles/readonly", nil},
		"not allowed": {logical.UpdateOperation, "database/config/postgresql", map[string]any{"allowed_roles": "other"}},
		"rewritten": {logical.UpdateOperation, "database/roles/readonly", map[string]any{
			"db_name": "postgresql", "creation_statements": `CREATE ROLE "{{name}}" WITH NOLOGIN`,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newInflightEnv(t)
			apps := e.must(t, e.root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps"}).Auth
			*e.recordHook = func() {
				e.must(t, e.root, change.op, change.path, change.data)
				e.must(t, e.root, logical.UpdateOperation, "sys/leases/revoke-prefix/database/creds/readonly", nil)
			}
			resp, err := e.do(apps.ClientToken, logical.ReadOperation, "database/creds/readonly", nil)
			if err != nil {
				if !strings.Contains(err.Error(), "changed while the request ran") {
					t.Errorf("the issue under a role changed meanwhile: %v", err)
				}
				return
			}
			if user, ok := e.logsIn(resp); ok {
				t.Errorf("lease %s, issued under a role %s meanwhile, survives the revoke-prefix that followed; its credential %s logs in", resp.Secret.LeaseID, name, user)
			}
		})
	}
}

// TestRemountIssuesNothingInFlight: `secrets move database db2` revokes the leases under database/
// and moves the mount; a credential being issued meanwhile records its
// lease after that revocation, under database/creds/…, for the mount now
// at db2/. The lease id names a path where nothing is mounted (or, once
// someone mounts database/ again, another mount, whose
// sys/leases/*/database/* grants then apply to it), and revoking the
// prefix of the moved mount does not reach it.
func TestRemountIssuesNothingInFlight(t *testing.T) {
	e := newInflightEnv(t)
	*e.hook = func() {
		e.must(t, e.root, logical.UpdateOperation, "sys/remount", map[string]any{"from": "database", "to": "db2"})
	}
	resp, err := e.do(e.root, logical.ReadOperation, "database/creds/readonly", nil)
	if err != nil {
		if !strings.Contains(err.Error(), "the mount at database/ was moved or disabled while the request ran") {
			t.Errorf("the issue under a mount moved meanwhile: %v", err)
		}
		return
	}
	e.must(t, e.root, logical.UpdateOperation, "sys/leases/revoke-prefix/db2", nil)
	if user, ok := e.logsIn(resp); ok {
		t.Errorf("lease %s (issued while database/ moved to db2/) survives `lease revoke -prefix db2`; its credential %s logs in", resp.Secret.LeaseID, user)
	}
}

// TestLastUseRevokedByReapMeanwhile: a token's last use is a credential
// request; while it runs, reap (the token is due, its revocation pending)
// revokes the token's leases and then deletes it, and the request records
// its lease between the two. The request's own revocation, once it is
// done, finds the token gone: it still revokes the leases recorded under
// its accessor, so the credential does not outlive its token.
func TestLastUseRevokedByReapMeanwhile(t *testing.T) {
	e := newInflightEnv(t)
	one := e.must(t, e.root, logical.UpdateOperation, "auth/token/create", map[string]any{"policies": "apps", "num_uses": 1}).Auth
	afterLeases, release, reaped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	failpoint.Arm(failpoint.TokenRevokeAfterLeases+","+failpoint.IssueAfterPending, func(step string) {
		switch step {
		case failpoint.TokenRevokeAfterLeases:
			// Reap has revoked the token's leases (none yet).
			close(afterLeases)
			<-release
		case failpoint.IssueAfterPending:
			// The lease is recorded: reap deletes the token now.
			close(release)
			<-reaped
		}
	})
	t.Cleanup(func() { failpoint.Arm("", nil) })
	*e.hook = func() {
		go func() {
			defer close(reaped)
			if _, err := e.c.Reap(ctx, lease.ReapOptions{}); err != nil {
				t.Errorf("reap: %v", err)
			}
		}()
		<-afterLeases
	}
	resp, err := e.do(one.ClientToken, logical.ReadOperation, "database/creds/readonly", nil)
	failpoint.Arm("", nil)
	if err == nil {
		if user, ok := e.logsIn(resp); ok {
			t.Errorf("the credential of a token's last use, revoked by reap meanwhile, logs in: %s", user)
		}
	}
	es, err := e.c.Leases().Entries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range es {
		if le.TokenAccessor == one.Accessor && (le.State == lease.StateActive || le.State == lease.StatePending) {
			t.Errorf("lease %s of the used-up token is %s", le.ID, le.State)
		}
	}
}
