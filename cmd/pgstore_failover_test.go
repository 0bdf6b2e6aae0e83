package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/devcluster"
	"github.com/lessorhq/lessor/pkg/pgtest"
)

// lessorRun is one lessor process's outcome.
type lessorRun struct {
	args           []string
	stdout, stderr string
	code           int
	at             time.Time // when it ended
}

// runLessor runs the lessor on $PATH (this test binary, see TestMain) with
// exactly env.
func runLessor(env []string, args ...string) lessorRun {
	c := exec.Command("lessor", args...)
	c.Env = env
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := lessorRun{args: args, stdout: out.String(), stderr: errb.String(), at: time.Now()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

func (r lessorRun) String() string {
	return fmt.Sprintf("lessor %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// mustLessor is runLessor that fails the test unless lessor exits 0.
func mustLessor(t *testing.T, env []string, args ...string) lessorRun {
	t.Helper()
	r := runLessor(env, args...)
	if r.code != 0 {
		t.Fatal(r)
	}
	return r
}

// startReplicated starts a primary (started with o plus Replication) and
// a streaming replica of it named standby, both stopped when the test
// ends; the test is skipped in -short mode and without PostgreSQL's
// binaries (fails if they are required).
func startReplicated(t *testing.T, ctx context.Context, o devcluster.Options) (primary, replica *devcluster.Cluster) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a primary and a replica")
	}
	if _, err := devcluster.FindBinDir(); err != nil {
		if os.Getenv(pgtest.EnvRequirePG) == "1" {
			t.Fatal(err)
		}
		t.Skipf("NO POSTGRESQL BINARIES, replication test not run: %v", err)
	}
	o.Replication = true
	primary, err := devcluster.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Stop() })
	replica, err = primary.StartReplica(ctx, "standby")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Stop() })
	return primary, replica
}

// lessorEnv is a clean environment for lessor processes with HOME home
// and the given settings.
func lessorEnv(home string, kv ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TZ=UTC"}
	return append(env, kv...)
}

// TestPostgresStoreFailover: the store and the target database live on a
// primary with a synchronous streaming replica, and lessor is given both
// hosts (a multi-host URL with target_session_attrs=read-write). Three
// workers issue credentials while the primary is killed (pg_ctl stop -m
// immediate) and, a moment later, the replica promoted. Every command
// either succeeds or fails cleanly (exit 2, one line, no password);
// commands work again after the promotion; every credential handed out
// before the crash still logs in; and after one reap the store and the
// roles agree (no lease without its role, no role without its lease).
func TestPostgresStoreFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary, replica := startReplicated(t, ctx, devcluster.Options{
		Prefix: "lessor-failover-", Superuser: "failover_admin", SynchronousStandby: "standby",
	})
	admin, err := pgx.Connect(ctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	waitSync(t, ctx, admin, "standby")
	if _, err := admin.Exec(ctx, `CREATE DATABASE app`); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)

	hosts := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", primary.Port, replica.Port)
	password := primary.Password
	storeURL := fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable&target_session_attrs=read-write&connect_timeout=3&schema=lessor",
		primary.User, password, hosts)
	home := t.TempDir()
	env := lessorEnv(home, "LESSOR_STORE="+storeURL)
	must := func(args ...string) lessorRun {
		t.Helper()
		return mustLessor(t, env, args...)
	}
	var initOut struct {
		RootToken string `json:"root_token"`
		StoreID   string `json:"store_id"`
	}
	if err := json.Unmarshal([]byte(must("operator", "init", "-format=json").stdout), &initOut); err != nil {
		t.Fatal(err)
	}
	env = append(env, "LESSOR_TOKEN="+initOut.RootToken)
	pwFile := filepath.Join(home, "admin-password")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	must("secrets", "enable", "database")
	must("write", "database/config/pg", "plugin_name=postgresql-database-plugin", "allowed_roles=app",
		"connection_url=postgresql://{{username}}:{{password}}@"+hosts+"/app?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
		"username="+primary.User, "password=@"+pwFile)
	must("write", "database/roles/app", "db_name=pg", "default_ttl=1h", "max_ttl=2h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)

	// Three workers issue until told to stop; the primary dies under
	// them, and the replica takes over a moment later.
	var (
		mu      sync.Mutex
		runs    []lessorRun
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		crashed time.Time
		started time.Time
	)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := runLessor(env, "read", "-format=json", "database/creds/app")
				mu.Lock()
				runs = append(runs, r)
				mu.Unlock()
			}
		})
	}
	// Wait for a few successes (a loaded machine may take seconds per
	// command), for the outage to have something to interrupt.
	successes := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range runs {
			if r.code == 0 && r.at.After(after) {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(time.Minute); successes(time.Time{}) < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	crashed = time.Now()
	if err := primary.Crash(ctx); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := replica.Promote(ctx); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	started = time.Now()
	for deadline := time.Now().Add(time.Minute); successes(started) < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	type cred struct{ lease, user, password string }
	var before []cred
	var okBefore, okAfter, failed int
	msgs := map[string]int{}
	for _, r := range runs {
		if strings.Contains(r.stdout+r.stderr, password) {
			t.Errorf("the store password leaked: %v", r)
		}
		switch r.code {
		case 0:
			var out struct {
				LeaseID string `json:"lease_id"`
				Data    struct{ Username, Password string }
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.LeaseID == "" {
				t.Errorf("success without a credential: %v", r)
				continue
			}
			switch {
			case r.at.Before(crashed):
				okBefore++
				before = append(before, cred{out.LeaseID, out.Data.Username, out.Data.Password})
			case r.at.After(started):
				okAfter++
			}
		case 2:
			failed++
			msg := strings.TrimSuffix(r.stderr, "\n")
			msgs[msg]++
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "lessor: error: ") {
				t.Errorf("a failure is not one error line: %v", r)
			}
		default:
			t.Errorf("neither success nor a clean failure: %v", r)
		}
	}
	for m, n := range msgs {
		t.Logf("%d× %s", n, m)
	}
	t.Logf("%d commands: %d issued before the crash, %d after the promotion, %d failed cleanly", len(runs), okBefore, okAfter, failed)
	if okBefore == 0 || okAfter == 0 || failed == 0 {
		t.Fatalf("the run did not cover the failover: %d issued before the crash, %d after the promotion, %d failed", okBefore, okAfter, failed)
	}

	// What was handed out before the crash was committed on the
	// replica too: each credential logs in on the new primary.
	srv := &pgtest.Server{Host: replica.Host, Port: replica.Port, User: replica.User, Password: replica.Password}
	for _, c := range before {
		if err := srv.CanLogin(ctx, c.user, c.password, "app"); err != nil {
			t.Errorf("credential %s (lease %s) issued before the crash: %v", c.user, c.lease, err)
		}
	}

	// One reap, with the clock past the pending records' grace but not
	// the leases' TTL, converges: what failed half way is revoked, and
	// store and roles agree.
	skewed := append(append([]string{}, env...), testOnlyClockSkewEnv+"=6m")
	if r := runLessor(skewed, "reap", "-format=json"); r.code != 0 {
		t.Fatal(r)
	}
	db, err := pgx.Connect(ctx, replica.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if problems := storeRoleProblems(t, ctx, env, db, initOut.StoreID); len(problems) > 0 {
		t.Fatalf("after failover and one reap:\n%s", strings.Join(problems, "\n"))
	}
	// New commands work, and everything is revoked once due.
	must("read", "-format=json", "database/creds/app")
	skewed[len(skewed)-1] = testOnlyClockSkewEnv + "=3h"
	if r := runLessor(skewed, "reap", "-format=json"); r.code != 0 {
		t.Fatal(r)
	}
	if problems := storeRoleProblems(t, ctx, env, db, initOut.StoreID); len(problems) > 0 {
		t.Fatalf("after the last reap:\n%s", strings.Join(problems, "\n"))
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1`, database.CommentPrefix+"%").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d roles left after everything was due (%v)", left, err)
	}
	must("operator", "verify")
}

// waitSync waits until the primary behind conn counts the replica name as
// a synchronous standby.
func waitSync(t *testing.T, ctx context.Context, conn *pgx.Conn, name string) {
	t.Helper()
	var mode string
	for range 200 {
		err := conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`, name).Scan(&mode)
		if err == nil && mode == "sync" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("replica %s is %q, not a streaming synchronous standby", name, mode)
}

// storeRoleProblems compares the store's lease records with the roles
// that carry the store's comment in db's cluster: every lease must have
// its role and every role its lease.
func storeRoleProblems(t *testing.T, ctx context.Context, env []string, db *pgx.Conn, storeID string) []string {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return vars[k] })
	defer f.close()
	cr, err := f.Core(ctx)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	entries, err := cr.Leases().Entries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1`, database.CommentPrefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{} // name -> lease id
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			t.Fatal(err)
		}
		if m, err := database.ParseRoleComment(comment); err == nil && m.StoreID == storeID {
			roles[name] = m.LeaseID
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var problems []string
	users := map[string]string{} // lease id -> username
	for _, e := range entries {
		u, _ := e.InternalData["username"].(string)
		users[e.ID] = u
		if _, ok := roles[u]; !ok {
			problems = append(problems, fmt.Sprintf("lease %s (%s) has no role %q", e.ID, e.State, u))
		}
	}
	for name, id := range roles {
		if users[id] != name {
			problems = append(problems, fmt.Sprintf("role %s has no lease (its comment names %s)", name, id))
		}
	}
	return problems
}

// TestPostgresStoreHostsSkipLaggingStandby: a store URL that names a
// standby first and the primary second, without target_session_attrs,
// must not read the store from the standby. There an asynchronous
// standby whose replay lags (paused here) still holds a token that a host
// on the primary revoked, and another host (with no generation of its own
// to compare) would accept it.
func TestPostgresStoreHostsSkipLaggingStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, replica := startReplicated(t, ctx, devcluster.Options{Prefix: "lessor-lag-", Superuser: "lag_admin"})

	storeURL := func(hosts ...*devcluster.Cluster) string {
		var hp []string
		for _, h := range hosts {
			hp = append(hp, fmt.Sprintf("%s:%d", h.Host, h.Port))
		}
		return fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable&connect_timeout=3&schema=lessor",
			primary.User, primary.Password, strings.Join(hp, ","))
	}
	homeA := t.TempDir()
	hostA := lessorEnv(homeA, "LESSOR_STORE="+storeURL(primary))
	mustLessor(t, hostA, "operator", "init")
	tok := strings.TrimSpace(mustLessor(t, hostA, "token", "create", "-field=token").stdout)

	// The standby has everything so far, then stops replaying.
	standby, err := pgx.Connect(ctx, replica.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(ctx)
	for i := 0; ; i++ {
		var n int
		err := standby.QueryRow(ctx, `SELECT count(*) FROM lessor.kv`).Scan(&n)
		var lsnOK bool
		if err == nil {
			err = standby.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, primaryLSN(t, ctx, primary)).Scan(&lsnOK)
		}
		if err == nil && lsnOK {
			break
		}
		if i == 200 {
			t.Fatalf("the standby did not catch up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := standby.Exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatal(err)
	}
	mustLessor(t, hostA, "token", "revoke", tok)

	// Host B, with the same key and both servers, standby first.
	hostB := lessorEnv(t.TempDir(), "LESSOR_STORE="+storeURL(replica, primary),
		"LESSOR_KEY_FILE="+filepath.Join(homeA, ".config", "lessor", "unseal.key"), "LESSOR_TOKEN="+tok)
	r := runLessor(hostB, "token", "lookup")
	if r.code == 0 || !strings.Contains(r.stderr, "missing, invalid or expired token") {
		t.Fatalf("a token revoked on the primary, looked up through a URL that names a lagging standby first: %v", r)
	}

	// Host C names one host, which is the standby (a replica's address,
	// a name that resolved to it, a virtual IP not yet moved): it reads
	// nothing there, and says why.
	hostC := lessorEnv(t.TempDir(), "LESSOR_STORE="+storeURL(replica),
		"LESSOR_KEY_FILE="+filepath.Join(homeA, ".config", "lessor", "unseal.key"), "LESSOR_TOKEN="+tok)
	r = runLessor(hostC, "token", "lookup")
	if r.code == 0 || !strings.Contains(r.stderr, "name the primary") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
		t.Fatalf("a token revoked on the primary, looked up through a URL that names only a lagging standby: %v", r)
	}
}

// primaryLSN is the primary's current WAL position.
func primaryLSN(t *testing.T, ctx context.Context, c *devcluster.Cluster) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var lsn string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}
