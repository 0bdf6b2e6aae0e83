package httpapi_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/lessorhq/lessor/pkg/httpapi"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// nodeVaultScript reads credentials as the apps token, renews them, sees
// a denied path fail, and revokes them as the admin, all through
// node-vault.
const nodeVaultScript = `
const nv = require(process.env.NODE_VAULT);
const app = nv({ apiVersion: 'v1', endpoint: process.env.ADDR, token: process.env.APP_TOKEN });
const admin = nv({ apiVersion: 'v1', endpoint: process.env.ADDR, token: process.env.ROOT_TOKEN });
(async () => {
  const c = await app.read('database/creds/readonly');
  const r = await app.renew({ lease_id: c.lease_id, increment: 600 });
  let denied = 0;
  try { await app.read('database/config/postgresql'); } catch (e) { denied = e.response ? e.response.statusCode : -1; }
  await admin.revoke({ lease_id: c.lease_id });
  console.log(JSON.stringify({ username: c.data.username, password: c.data.password, lease: c.lease_id,
    renewed_id: r.lease_id, renewed: r.lease_duration, denied }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
`

// nodeVaultModule finds node-vault: $LESSOR_TEST_NODE_MODULES (set by
// .ci/run, which installs it before the tests), else the cache .ci/run
// uses. Tests never download it.
func nodeVaultModule(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("NO NODE ON THIS MACHINE: the node-vault test did not run")
	}
	dir := os.Getenv("LESSOR_TEST_NODE_MODULES")
	explicit := dir != ""
	if !explicit {
		cache, _ := os.UserCacheDir()
		dir = filepath.Join(cache, "lessor", "node-vault", "node_modules")
	}
	mod := filepath.Join(dir, "node-vault")
	if _, err := os.Stat(filepath.Join(mod, "package.json")); err != nil {
		if explicit {
			t.Fatalf("LESSOR_TEST_NODE_MODULES=%s has no node-vault: %v", dir, err)
		}
		t.Skipf("NODE-VAULT NOT INSTALLED in %s (.ci/run installs it): the node-vault test did not run", dir)
	}
	return mod
}

// TestNodeVault: node-vault, from the npm registry, reads credentials
// that log in, renews them and revokes them against lessor's API, and a
// denied path is its 403.
func TestNodeVault(t *testing.T) {
	mod := nodeVaultModule(t)
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	e := newEnv(t, httpapi.Config{})
	admin := vaultClient(t, e.url, e.root)
	seedDatabase(t, admin, srv, db.Name)
	if err := admin.Sys().PutPolicy("apps", appsPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"apps"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "-e", nodeVaultScript)
	cmd.Env = append(os.Environ(), "NODE_VAULT="+mod, "ADDR="+e.url, "APP_TOKEN="+tok.Auth.ClientToken, "ROOT_TOKEN="+e.root)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v\n%s", err, stderr)
	}
	var res struct {
		Username, Password, Lease string
		RenewedID                 string `json:"renewed_id"`
		Renewed, Denied           int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	srv.DropRolesAtCleanup(t, res.Username)
	if res.Username == "" || res.Password == "" || res.RenewedID != res.Lease || res.Renewed != 600 || res.Denied != 403 {
		t.Fatalf("node-vault saw %+v", res)
	}
	if err := srv.CanLogin(ctx, res.Username, res.Password, db.Name); err == nil {
		t.Fatal("the credential node-vault revoked still logs in")
	}
	if n := countRoles(t, srv, db, e.core.StoreID()); n != 0 {
		t.Fatalf("%d roles left after node-vault's revoke", n)
	}
}
