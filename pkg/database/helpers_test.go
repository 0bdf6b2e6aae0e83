package database

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeSystem is the mount's system view with a settable clock.
type fakeSystem struct {
	mu      sync.Mutex
	now     time.Time
	storeID string
	// storeLogin is the login of a store in PostgreSQL, "" for a file.
	storeLogin string
}

func (s *fakeSystem) StoreLogin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeLogin
}

func (s *fakeSystem) DefaultLeaseTTL() time.Duration { return 768 * time.Hour }
func (s *fakeSystem) MaxLeaseTTL() time.Duration     { return 768 * time.Hour }
func (s *fakeSystem) StoreID() string                { return s.storeID }
func (s *fakeSystem) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// fakeLeases records leases the way the lease manager does, closely
// enough for the backend: Vault's TTL math, a pending record per Prepare,
// and the record removed by Discard. Internal data makes a JSON round trip,
// as it does through the real store.
type fakeLeases struct {
	sys       *fakeSystem
	mu        sync.Mutex
	n         int
	pending   map[string]*fakeLease
	discarded []string
	abandoned []string
	revoked   map[string]bool // leases Confirm refuses
	// whileRecording, if set, runs in Prepare after the lease is planned
	// and before it is recorded.
	whileRecording func(logical.PreparedLease)
	// createWithin, if set, makes CreateBy that long after Prepare.
	createWithin time.Duration
}

type fakeLease struct {
	id           string
	issue        time.Time
	expire       time.Time
	ttl          time.Duration
	internalData map[string]any
}

func (l *fakeLeases) Prepare(ctx context.Context, lr *logical.LeaseRequest) (*logical.PreparedLease, error) {
	now := l.sys.Now().Truncate(time.Second)
	ttl, warning, err := logical.CalculateTTL(logical.TTLInputs{
		BackendTTL: lr.TTL, BackendMax: lr.MaxTTL,
		SystemDefault: l.sys.DefaultLeaseTTL(), SystemMax: l.sys.MaxLeaseTTL(),
		Start: now, Now: now,
	})
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(lr.InternalData)
	if err != nil {
		return nil, err
	}
	var internal map[string]any
	if err := json.Unmarshal(raw, &internal); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	id := fmt.Sprintf("%s/lease%03d", lr.Path, l.n)
	le := &fakeLease{id: id, issue: now, expire: now.Add(ttl), ttl: ttl, internalData: internal}
	l.pending[id] = le
	p := &logical.PreparedLease{ID: id, IssueTime: now, ExpireTime: le.expire, TTL: ttl}
	if l.createWithin > 0 {
		p.CreateBy = time.Now().Add(l.createWithin)
	}
	if warning != "" {
		p.Warnings = []string{warning}
	}
	if lr.Planned != nil {
		lr.Planned(*p)
	}
	if l.whileRecording != nil {
		l.mu.Unlock()
		l.whileRecording(*p)
		l.mu.Lock()
	}
	return p, nil
}

func (l *fakeLeases) Discard(ctx context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, id)
	l.discarded = append(l.discarded, id)
	return nil
}

func (l *fakeLeases) Abandon(ctx context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.abandoned = append(l.abandoned, id)
	return nil
}

// Confirm refuses the leases named in revoked, as if a revocation had
// claimed them while they were being issued.
func (l *fakeLeases) Confirm(ctx context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revoked[id] {
		return fmt.Errorf("lease %s: %w", id, logical.ErrLeaseRevoked)
	}
	return nil
}

func (l *fakeLeases) get(t *testing.T, id string) *fakeLease {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.pending[id]
	if le == nil {
		t.Fatalf("no lease %s recorded", id)
	}
	return le
}

// env is one mounted backend over a memory store, with a fresh database.
type env struct {
	t      *testing.T
	srv    *pgtest.Server
	db     *pgtest.Database
	b      *Backend
	st     *storage.Memory
	sys    *fakeSystem
	leases *fakeLeases
	// display is the caller's display name, unique per test so that
	// usernames can be searched for in pg_roles.
	display string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := pgtest.Require(t)
	sys := &fakeSystem{now: time.Now().UTC(), storeID: "store-" + randHex(t, 6)}
	return &env{
		t: t, srv: srv, db: srv.NewDatabase(t), b: New(Options{}), st: storage.NewMemory(),
		sys: sys, leases: &fakeLeases{sys: sys, pending: map[string]*fakeLease{}},
		display: "t" + randHex(t, 3),
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf)
}

func (e *env) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data,
		MountPoint: "database/", MountType: "database",
		Storage: e.st, DisplayName: e.display, Leases: e.leases, System: e.sys,
	})
}

// must runs a request that has to succeed.
func (e *env) must(op logical.Operation, path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.do(op, path, data)
	if err != nil {
		e.t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// templatedURL is the seed guide's connection_url, pointed at the test
// database.
func (e *env) templatedURL() string {
	return fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/%s?sslmode=disable",
		net.JoinHostPort(e.srv.Host, strconv.Itoa(e.srv.Port)), e.db.Name)
}

// writeConfig configures connection "pg" as the superuser.
func (e *env) writeConfig(extra map[string]any) {
	e.t.Helper()
	data := map[string]any{
		"plugin_name":    PluginName,
		"connection_url": e.templatedURL(),
		"username":       e.srv.User,
		"password":       e.srv.Password,
		"allowed_roles":  "readonly",
	}
	for k, v := range extra {
		data[k] = v
	}
	e.must(logical.UpdateOperation, "config/pg", data)
}

const readonlySQL = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`

func (e *env) writeRole(name string, extra map[string]any) {
	e.t.Helper()
	data := map[string]any{
		"db_name":             "pg",
		"creation_statements": readonlySQL,
		"default_ttl":         "1h",
		"max_ttl":             "24h",
	}
	for k, v := range extra {
		data[k] = v
	}
	e.must(logical.UpdateOperation, "roles/"+name, data)
}

// issue reads creds/<role> and registers the role for cleanup.
func (e *env) issue(role string) *logical.Response {
	e.t.Helper()
	resp := e.must(logical.ReadOperation, "creds/"+role, nil)
	e.srv.DropRolesAtCleanup(e.t, resp.Data["username"].(string))
	return resp
}

// secret builds the lease manager's view of an issued lease.
func (e *env) secret(leaseID string) *logical.SecretRequest {
	le := e.leases.get(e.t, leaseID)
	return &logical.SecretRequest{
		LeaseID: le.id, InternalData: le.internalData, IssueTime: le.issue,
		MountPoint: "database/", Storage: e.st, System: e.sys,
	}
}

// storedKeys lists every key in the store.
func (e *env) storedKeys() []string {
	e.t.Helper()
	var keys []string
	if err := e.st.View(context.Background(), func(tx storage.Tx) error {
		var err error
		keys, err = tx.List("")
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return keys
}

func (e *env) storedConfig(name string) *dbConfig {
	e.t.Helper()
	cfg, err := e.b.loadConfig(context.Background(), e.st, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

type pgRole struct {
	name       string
	canLogin   bool
	validUntil *time.Time
	comment    *string
}

// pgRoles returns the roles named like this test's usernames, or
// commented with this test's store id.
func (e *env) pgRoles() []pgRole {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	rows, err := conn.Query(context.Background(), `
SELECT rolname, rolcanlogin, rolvaliduntil, shobj_description(oid, 'pg_authid')
FROM pg_roles
WHERE rolname LIKE 'v-' || $1 || '-%' OR shobj_description(oid, 'pg_authid') LIKE '%' || $2 || '%'
ORDER BY rolname`, e.display, e.sys.storeID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []pgRole
	for rows.Next() {
		var r pgRole
		if err := rows.Scan(&r.name, &r.canLogin, &r.validUntil, &r.comment); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) pgRole(name string) *pgRole {
	e.t.Helper()
	for _, r := range e.pgRoles() {
		if r.name == name {
			return &r
		}
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// nameRule is the explanation that follows every "invalid name" error.
const nameRule = `: use letters, digits, "_", "-" and ".", starting and ending with a letter, digit or "_"`

// newPooledEnv is newEnv with a server's backend (one with a pool of
// connections, as lessor serve has) and the connection configured.
func newPooledEnv(t *testing.T) *env {
	e := newEnv(t)
	pool := postgres.NewPool(2, time.Minute)
	t.Cleanup(pool.Close)
	e.b = New(Options{Pool: pool})
	e.writeConfig(nil)
	return e
}
