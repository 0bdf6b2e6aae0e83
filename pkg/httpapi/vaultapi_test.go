package httpapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// The seed guide's apps policy, verbatim.
const appsPolicy = `# Get credentials from the database secret engine
path "database/creds/readonly" {
  capabilities = [ "read" ]
}
`

const readonlySQL = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`

func vaultClient(t *testing.T, addr, tok string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tok)
	return c
}

// seedDatabase mounts and configures the database engine through the
// Go client, as the seed guide's steps 1-3 do.
func seedDatabase(t *testing.T, admin *vault.Client, srv *pgtest.Server, dbName string) {
	t.Helper()
	if err := admin.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatalf("mount: %v", err)
	}
	if _, err := admin.Logical().Write("database/config/postgresql", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"allowed_roles":  "readonly,short",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/%s?sslmode=disable", srv.Host, srv.Port, dbName),
		"username":       srv.User,
		"password":       srv.Password,
	}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if _, err := admin.Logical().Write("database/roles/readonly", map[string]any{
		"db_name": "postgresql", "creation_statements": readonlySQL, "default_ttl": "1h", "max_ttl": "24h",
	}); err != nil {
		t.Fatalf("role: %v", err)
	}
}

// countRoles counts this store's roles in PostgreSQL, by their comment.
func countRoles(t *testing.T, srv *pgtest.Server, db *pgtest.Database, storeID string) int {
	t.Helper()
	conn := db.Conn(t)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1`,
		`lessor:{"store":"`+storeID+`"%`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestVaultGoClientSeedGuide: HashiCorp's own Go client drives the seed
// guide against lessor's API: mount, configure, role, the apps policy and
// token, credentials read as the apps token that log in to PostgreSQL,
// renewal (also by a LifetimeWatcher), revocation, revoke-prefix, and the
// 403 ResponseError of a denied path.
func TestVaultGoClientSeedGuide(t *testing.T) {
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	conn := db.Conn(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE products (id serial PRIMARY KEY, name text); INSERT INTO products (name) VALUES ('widget')`); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, httpapi.Config{})
	admin := vaultClient(t, e.url, e.root)

	health, err := admin.Sys().Health()
	if err != nil || !health.Initialized || health.Sealed || health.Standby {
		t.Fatalf("health = %+v, %v", health, err)
	}
	seal, err := admin.Sys().SealStatus()
	if err != nil || seal.Sealed || !seal.Initialized || seal.Type != "shamir" {
		t.Fatalf("seal-status = %+v, %v", seal, err)
	}

	seedDatabase(t, admin, srv, db.Name)
	mounts, err := admin.Sys().ListMounts()
	if err != nil || mounts["database/"] == nil || mounts["database/"].Type != "database" {
		t.Fatalf("mounts = %v, %v", mounts, err)
	}
	if err := admin.Sys().PutPolicy("apps", appsPolicy); err != nil {
		t.Fatalf("policy: %v", err)
	}
	if got, err := admin.Sys().GetPolicy("apps"); err != nil || got != appsPolicy {
		t.Fatalf("policy read back = %q, %v", got, err)
	}
	tokSecret, err := admin.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"apps"}})
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	if p := tokSecret.Auth.Policies; !slices.Equal(p, []string{"apps", "default"}) {
		t.Fatalf("token policies = %v", p)
	}
	app := vaultClient(t, e.url, tokSecret.Auth.ClientToken)

	// The app reads credentials and logs in with them.
	creds, err := app.Logical().Read("database/creds/readonly")
	if err != nil {
		t.Fatalf("read creds as the apps token: %v", err)
	}
	if !strings.HasPrefix(creds.LeaseID, "database/creds/readonly/") || creds.LeaseDuration != 3600 || !creds.Renewable {
		t.Fatalf("creds lease = %q %d %v", creds.LeaseID, creds.LeaseDuration, creds.Renewable)
	}
	user, _ := creds.Data["username"].(string)
	pass, _ := creds.Data["password"].(string)
	srv.DropRolesAtCleanup(t, user)
	uconn := srv.Connect(t, user, pass, db.Name)
	var name string
	if err := uconn.QueryRow(ctx, "SELECT name FROM products").Scan(&name); err != nil || name != "widget" {
		t.Fatalf("select as the issued user: %q, %v", name, err)
	}
	uconn.Close(ctx)
	if err := srv.CanLogin(ctx, user, pass+"x", db.Name); err == nil {
		t.Fatal("a wrong password logged in: the server does not enforce passwords")
	}

	// A denied path is a 403 ResponseError, also for a path that does not
	// exist (the ACL comes first).
	for _, p := range []string{"database/config/postgresql", "database/nosuch", "nosuch/x"} {
		_, err = app.Logical().Read(p)
		var re *vault.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || !strings.Contains(strings.Join(re.Errors, " "), "permission denied") {
			t.Fatalf("read %s as the apps token: %v, want a 403 ResponseError", p, err)
		}
	}
	caps, err := app.Sys().CapabilitiesSelf("database/creds/readonly")
	if err != nil || !slices.Equal(caps, []string{"read"}) {
		t.Fatalf("capabilities-self = %v, %v", caps, err)
	}
	self, err := app.Auth().Token().LookupSelf()
	if err != nil || self.Data["id"] != tokSecret.Auth.ClientToken {
		t.Fatalf("lookup-self = %v, %v", self, err)
	}

	// Renew, as the app (the default policy allows it).
	renewed, err := app.Sys().Renew(creds.LeaseID, 600)
	if err != nil || renewed.LeaseID != creds.LeaseID || renewed.LeaseDuration != 600 || !renewed.Renewable {
		t.Fatalf("renew = %+v, %v", renewed, err)
	}
	var validUntilMin float64
	if err := conn.QueryRow(ctx, `SELECT extract(epoch FROM rolvaliduntil - now()) / 60 FROM pg_roles WHERE rolname = $1`, user).Scan(&validUntilMin); err != nil {
		t.Fatal(err)
	}
	if validUntilMin < 9 || validUntilMin > 11 {
		t.Fatalf("after a 600 s renewal the role is valid for %.1f more minutes", validUntilMin)
	}

	// Revoke, as the admin: the role is gone.
	if err := admin.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := srv.CanLogin(ctx, user, pass, db.Name); err == nil {
		t.Fatal("the revoked credential still logs in")
	}
	if _, err := admin.Sys().Renew(creds.LeaseID, 60); err == nil || !strings.Contains(err.Error(), "lease not found") {
		t.Fatalf("renew of a revoked lease: %v", err)
	}

	// revoke-prefix takes every lease under the role.
	for range 2 {
		s, err := app.Logical().Read("database/creds/readonly")
		if err != nil {
			t.Fatal(err)
		}
		srv.DropRolesAtCleanup(t, s.Data["username"].(string))
	}
	if n := countRoles(t, srv, db, e.core.StoreID()); n != 2 {
		t.Fatalf("%d roles before revoke-prefix, want 2", n)
	}
	if err := app.Sys().RevokePrefix("database/creds/readonly"); err == nil {
		t.Fatal("the apps token revoked a prefix")
	}
	if err := admin.Sys().RevokePrefix("database/creds/readonly"); err != nil {
		t.Fatalf("revoke-prefix: %v", err)
	}
	if n := countRoles(t, srv, db, e.core.StoreID()); n != 0 {
		t.Fatalf("%d roles after revoke-prefix, want 0", n)
	}
	if keys, err := admin.Logical().List("sys/leases/lookup/database/creds/readonly"); err != nil || keys != nil {
		t.Fatalf("leases after revoke-prefix: %v, %v", keys, err)
	}

	// The token renews and revokes itself; then it is refused.
	if _, err := app.Auth().Token().RenewSelf(0); err != nil {
		t.Fatalf("renew-self: %v", err)
	}
	if err := app.Auth().Token().RevokeSelf(""); err != nil {
		t.Fatalf("revoke-self: %v", err)
	}
	_, err = app.Logical().Read("database/creds/readonly")
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Fatalf("read with a revoked token: %v, want 403", err)
	}
}

// TestVaultGoClientLifetimeWatcher: the client's LifetimeWatcher renews a
// lessor lease through sys/leases/renew until the role's max_ttl caps it,
// then reports done with no error.
func TestVaultGoClientLifetimeWatcher(t *testing.T) {
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	e := newEnv(t, httpapi.Config{})
	admin := vaultClient(t, e.url, e.root)
	seedDatabase(t, admin, srv, db.Name)
	if _, err := admin.Logical().Write("database/roles/short", map[string]any{
		"db_name": "postgresql", "creation_statements": readonlySQL, "default_ttl": "2s", "max_ttl": "6s",
	}); err != nil {
		t.Fatal(err)
	}
	s, err := admin.Logical().Read("database/creds/short")
	if err != nil {
		t.Fatal(err)
	}
	srv.DropRolesAtCleanup(t, s.Data["username"].(string))
	w, err := admin.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: s, Increment: 2})
	if err != nil {
		t.Fatal(err)
	}
	go w.Start()
	defer w.Stop()
	renewals := 0
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-w.RenewCh():
			if r.Secret.LeaseID != s.LeaseID {
				t.Fatalf("renewed %q, want %q", r.Secret.LeaseID, s.LeaseID)
			}
			renewals++
		case err := <-w.DoneCh():
			if err != nil {
				t.Fatalf("watcher done with %v after %d renewals", err, renewals)
			}
			if renewals == 0 {
				t.Fatal("watcher done without renewing")
			}
			return
		case <-deadline:
			t.Fatalf("watcher not done after 20 s (%d renewals)", renewals)
		}
	}
}
