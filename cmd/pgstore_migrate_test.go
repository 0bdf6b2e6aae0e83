package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// seedLeases writes n active lease records through the storage API in a
// few large transactions, each a copy of the template lease tmpl (a lease
// lessor issued, so mount, token and role are real), lease i expiring at
// expireAt(i) with username user(i) (a role that may or may not exist). Issuing them through PostgreSQL would
// take minutes; what is measured or copied here is the store. The key
// layout is pkg/lease's (record, due index, token index), as in
// bench_test.go's addLeases: if it changes, the lease counts the callers
// check stop matching.
func seedLeases(t testing.TB, b *barrier.Barrier, tmpl *lease.Entry, n int, expireAt func(int) time.Time, user func(int) string) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, n)
	const chunk = 2000
	for done := 0; done < n; {
		m := min(chunk, n-done)
		err := b.Update(ctx, func(tx storage.Tx) error {
			for i := done; i < done+m; i++ {
				e := *tmpl
				expire := expireAt(i).UTC().Truncate(time.Second)
				e.State = lease.StateActive
				e.IssueTime = expire.Add(-time.Hour)
				e.ID = leaseID(t, tmpl.Path, e.IssueTime)
				e.ExpireTime = expire
				e.InternalData = map[string]any{}
				for k, v := range tmpl.InternalData {
					e.InternalData[k] = v
				}
				e.InternalData["username"] = user(i)
				e.DueKey = fmt.Sprintf("sys/lease/due/%012d/%s", expire.Unix(), e.ID)
				raw, err := json.Marshal(&e)
				if err != nil {
					return err
				}
				for k, v := range map[string][]byte{"sys/lease/id/" + e.ID: raw, e.DueKey: nil, "sys/lease/token/" + e.TokenAccessor + "/" + e.ID: nil} {
					if err := tx.Put(k, v); err != nil {
						return err
					}
				}
				ids = append(ids, e.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed leases: %v", err)
		}
		done += m
	}
	return ids
}

// physicalSnapshot is every record of a store as stored (sealed), with a
// digest of each value.
func physicalSnapshot(t testing.TB, s storage.Store) map[string][32]byte {
	t.Helper()
	got := map[string][32]byte{}
	err := s.View(context.Background(), func(tx storage.Tx) error {
		clear(got)
		return tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			got[k] = sha256.Sum256(v)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameRecords(t testing.TB, what string, a, b map[string][32]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d records, the source %d", what, len(b), len(a))
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			t.Fatalf("%s: record %q differs or is missing", what, k)
		}
	}
}

// TestMigrateRoundTrip: a store with mounts, policies, tokens, live
// credentials and 10,000 leases goes file -> PostgreSQL -> file with
// operator migrate. Every record arrives byte for byte, the source is left
// untouched, a destination that is not empty is refused and left alone,
// and the everyday commands work against each of the three copies.
func TestMigrateRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 leases through three stores")
	}
	ctx := context.Background()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	home := t.TempDir()
	env := lessorEnv(home)
	var initOut struct {
		RootToken string `json:"root_token"`
		StoreID   string `json:"store_id"`
	}
	if err := json.Unmarshal([]byte(mustLessor(t, env, "operator", "init", "-format=json").stdout), &initOut); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropScriptRoles(srv, db.Name, initOut.StoreID) })
	env = append(env, "LESSOR_TOKEN="+initOut.RootToken)
	pw := filepath.Join(home, "admin-password")
	if err := os.WriteFile(pw, []byte(srv.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(home, "apps.hcl")
	if err := os.WriteFile(policy, []byte(`path "database/creds/app" { capabilities = ["read"] }`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustLessor(t, env, "secrets", "enable", "database")
	mustLessor(t, env, "secrets", "enable", "-path=reports", "database")
	mustLessor(t, env, "write", "database/config/pg", "plugin_name=postgresql-database-plugin", "allowed_roles=app",
		fmt.Sprintf("connection_url=postgresql://{{username}}:{{password}}@%s:%d/%s?sslmode=disable", srv.Host, srv.Port, db.Name),
		"username="+srv.User, "password=@"+pw)
	mustLessor(t, env, "write", "database/roles/app", "db_name=pg", "default_ttl=1h", "max_ttl=2h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)
	mustLessor(t, env, "policy", "write", "apps", policy)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		}
	}
	if err := json.Unmarshal([]byte(mustLessor(t, env, "token", "create", "-policy=apps", "-format=json").stdout), &tok); err != nil || tok.Auth.ClientToken == "" {
		t.Fatalf("token create: %v", err)
	}
	appEnv := append(append([]string{}, env[:len(env)-1]...), "LESSOR_TOKEN="+tok.Auth.ClientToken)
	mustLessor(t, appEnv, "read", "-format=json", "database/creds/app")

	// 10,000 more leases, straight into the store.
	src := filepath.Join(home, ".local", "share", "lessor", "lessor.db")
	key, err := barrier.KeyFromFile(filepath.Join(home, ".config", "lessor", "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	phys, err := storage.OpenBolt(src, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.Open(ctx, phys, key)
	if err != nil {
		t.Fatal(err)
	}
	es, err := lease.New(b, nil, lease.Options{}).Entries(ctx, "database/creds/app/")
	if err != nil || len(es) != 1 {
		t.Fatalf("template lease: %v (%d)", err, len(es))
	}
	const n = 10000
	expire := time.Now().Add(time.Hour)
	seeded := seedLeases(t, b, es[0], n, func(int) time.Time { return expire }, func(i int) string { return fmt.Sprintf("v-seed-%06d", i) })
	if c, err := lease.New(b, nil, lease.Options{}).Count(ctx); err != nil || c != n+1 {
		t.Fatalf("%d leases (%v), want %d", c, err, n+1)
	}
	srcRecords := physicalSnapshot(t, phys)
	srcSum := fileSum(t, src)

	// File -> PostgreSQL. lessor takes no password in -to (every local
	// user could read it in the process list): it comes from a passfile.
	pgURL := db.URL + "&schema=moved"
	toURL, passEnv := passfileURL(t, home, srv, db.URL)
	env = append(env, passEnv)
	start := time.Now()
	r := mustLessor(t, env, "operator", "migrate", "-to="+toURL+"&schema=moved")
	t.Logf("file -> PostgreSQL, %d records: %v", len(srcRecords), time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stdout, fmt.Sprintf("Copied %d records", len(srcRecords))) || strings.Contains(r.stdout, srv.Password) {
		t.Fatalf("migrate says: %s", r.stdout)
	}
	pg, err := storage.OpenPostgres(ctx, pgURL, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	sameRecords(t, "PostgreSQL copy", srcRecords, physicalSnapshot(t, pg))
	if fileSum(t, src) != srcSum {
		t.Fatal("migrate changed its source")
	}

	// PostgreSQL -> file.
	back := filepath.Join(home, "back.db")
	pgEnv := append(append([]string{}, env...), "LESSOR_STORE="+pgURL)
	start = time.Now()
	mustLessor(t, pgEnv, "operator", "migrate", "-to="+back)
	t.Logf("PostgreSQL -> file, %d records: %v", len(srcRecords), time.Since(start).Round(time.Millisecond))
	backPhys, err := storage.OpenBolt(back, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "file copy", srcRecords, physicalSnapshot(t, backPhys))

	// Destinations that hold anything are refused and left as they are.
	conn := db.Conn(t)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA busy; CREATE TABLE busy.unrelated (x int); INSERT INTO busy.unrelated VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{toURL + "&schema=moved", toURL + "&schema=busy", back} {
		r := runLessor(env, "operator", "migrate", "-to="+to)
		if r.code != 1 || !strings.Contains(r.stderr, "already exists") || strings.Contains(r.stderr, srv.Password) {
			t.Errorf("migrate to %s: %v", storage.RedactURL(to), r)
		}
	}
	var x int
	if err := conn.QueryRow(ctx, `SELECT x FROM busy.unrelated`).Scan(&x); err != nil || x != 42 {
		t.Fatalf("the refused destination changed: %v", err)
	}
	if _, err := conn.Exec(ctx, `SELECT to_regclass('busy.kv') IS NULL`); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "PostgreSQL copy after refused migrations", srcRecords, physicalSnapshot(t, pg))
	if fileSum(t, src) != srcSum {
		t.Fatal("a refused migrate changed its source")
	}

	// The everyday commands, against each copy, each from a host of its
	// own with a copy of the key: the copies share the store's id, and a
	// user who goes on writing to one and then opens another (older) is
	// told that the store was rolled back, which is what happened to it.
	keyBytes, err := os.ReadFile(filepath.Join(home, ".config", "lessor", "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	for i, store := range []string{src, pgURL, back} {
		t.Run([]string{"file", "postgres", "file again"}[i], func(t *testing.T) {
			h := t.TempDir()
			if err := os.MkdirAll(filepath.Join(h, ".config", "lessor"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h, ".config", "lessor", "unseal.key"), keyBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			hostEnv := func(base []string) []string {
				out := []string{}
				for _, kv := range base {
					if !strings.HasPrefix(kv, "HOME=") {
						out = append(out, kv)
					}
				}
				return append(out, "HOME="+h, "LESSOR_STORE="+store)
			}
			root, app := hostEnv(env), hostEnv(appEnv)
			var cred struct {
				LeaseID string `json:"lease_id"`
				Data    struct{ Username, Password string }
			}
			if err := json.Unmarshal([]byte(mustLessor(t, app, "read", "-format=json", "database/creds/app").stdout), &cred); err != nil {
				t.Fatal(err)
			}
			if err := srv.CanLogin(ctx, cred.Data.Username, cred.Data.Password, db.Name); err != nil {
				t.Fatalf("issued credential: %v", err)
			}
			if r := mustLessor(t, root, "lease", "lookup", "-format=json", seeded[i]); !strings.Contains(r.stdout, seeded[i]) {
				t.Fatalf("lease lookup: %s", r.stdout)
			}
			var list struct {
				Data struct {
					Leases []struct{ ID string }
				}
			}
			if err := json.Unmarshal([]byte(mustLessor(t, root, "lease", "list", "-format=json", "database/creds/app/").stdout), &list); err != nil {
				t.Fatal(err)
			}
			ids := list.Data.Leases
			// Each copy has the source's leases, plus what was issued
			// through it (one) and less what was revoked through the
			// copies made before it (none: they are copies of the source).
			if len(ids) != n+2 {
				t.Fatalf("lease list: %d leases, want %d", len(ids), n+2)
			}
			mustLessor(t, root, "lease", "revoke", seeded[i])
			if r := runLessor(root, "lease", "lookup", seeded[i]); r.code != 2 {
				t.Fatalf("lookup of a revoked lease: %v", r)
			}
			if r := mustLessor(t, app, "token", "lookup", "-format=json"); !strings.Contains(r.stdout, `"apps"`) {
				t.Fatalf("token lookup: %s", r.stdout)
			}
			if r := mustLessor(t, root, "policy", "read", "apps"); !strings.Contains(r.stdout, "database/creds/app") {
				t.Fatalf("policy read: %s", r.stdout)
			}
			if r := mustLessor(t, root, "secrets", "list"); !strings.Contains(r.stdout, "reports/") {
				t.Fatalf("secrets list: %s", r.stdout)
			}
			if r := mustLessor(t, root, "reap", "-format=json"); !strings.Contains(r.stdout, `"revoked": 0,`) {
				t.Fatalf("reap: %s", r.stdout)
			}
			mustLessor(t, root, "operator", "verify")
		})
	}
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// passfileURL returns raw without its password, and the PGPASSFILE
// setting of a passfile in dir that gives srv's password for it: how a
// store URL goes in -store or -to, which refuse a password.
func passfileURL(t *testing.T, dir string, srv *pgtest.Server, raw string) (string, string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(u.User.Username())
	passfile := filepath.Join(dir, "pgpass")
	line := fmt.Sprintf("*:*:*:%s:%s\n", u.User.Username(), srv.Password)
	if err := os.WriteFile(passfile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return u.String(), "PGPASSFILE=" + passfile
}
