package database

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// staticLogin creates a login for a static role to manage, dropped at
// cleanup.
func (e *env) staticLogin(password string) string {
	e.t.Helper()
	name := "s_" + e.display
	conn := e.db.Conn(e.t)
	if _, err := conn.Exec(context.Background(), `CREATE ROLE "`+name+`" WITH LOGIN PASSWORD '`+password+`'`); err != nil {
		e.t.Fatal(err)
	}
	e.srv.DropRolesAtCleanup(e.t, name)
	return name
}

// staticLogins creates n logins without a password, dropped at cleanup.
func (e *env) staticLogins(n int) []string {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("s_%s_%d", e.display, i)
		if _, err := conn.Exec(context.Background(), `CREATE ROLE "`+users[i]+`" LOGIN`); err != nil {
			e.t.Fatal(err)
		}
		e.srv.DropRolesAtCleanup(e.t, users[i])
	}
	return users
}

func (e *env) login(user, password string) postgres.LoginResult {
	e.t.Helper()
	res, err := postgres.TryLogin(context.Background(), e.storedConfig("pg").pluginConfig(), user, password)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return res
}

func (e *env) storedStatic(name string) *staticRole {
	e.t.Helper()
	r, _, err := loadStatic(context.Background(), e.st, name)
	if err != nil || r == nil {
		e.t.Fatalf("static role %s: %v", name, err)
	}
	return r
}

func (e *env) setNow(t time.Time) {
	e.sys.mu.Lock()
	e.sys.now = t
	e.sys.mu.Unlock()
}

// TestStaticScheduleWindow: a schedule rotates at its time, within its
// window; a role whose window passed (reap did not run) waits for the
// next scheduled time instead, as in Vault.
func TestStaticScheduleWindow(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	fri := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	e.setNow(fri)
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{
		"db_name": "pg", "username": user, "rotation_schedule": "0 0 * * SAT", "rotation_window": "1h",
	})
	r := e.storedStatic("app")
	if want := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC); !r.NextRotation.Equal(want) {
		t.Fatalf("next rotation %v, want %v", r.NextRotation, want)
	}
	first := r.Password
	if e.login(user, first) != postgres.LoginAccepted {
		t.Fatal("the imported password does not log in")
	}

	// Saturday 00:30: within the window, reap rotates.
	e.setNow(time.Date(2026, 12, 5, 0, 30, 0, 0, time.UTC))
	rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Rotated) != 1 || len(rep.Failed) != 0 {
		t.Fatalf("rotate: %+v, %v", rep, err)
	}
	r = e.storedStatic("app")
	if r.Password == first || e.login(user, r.Password) != postgres.LoginAccepted || e.login(user, first) != postgres.LoginRefused {
		t.Fatal("the scheduled rotation did not change the password")
	}
	if want := time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC); !r.NextRotation.Equal(want) {
		t.Fatalf("next rotation %v, want %v", r.NextRotation, want)
	}
	second := r.Password

	// The next Saturday at 02:00, past the one-hour window: no rotation;
	// the role waits for the Saturday after.
	e.setNow(time.Date(2026, 12, 12, 2, 0, 0, 0, time.UTC))
	rep, err = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Rotated) != 0 || len(rep.Failed) != 0 {
		t.Fatalf("rotate past the window: %+v, %v", rep, err)
	}
	r = e.storedStatic("app")
	if r.Password != second || e.login(user, second) != postgres.LoginAccepted {
		t.Fatal("a rotation ran past its window")
	}
	if want := time.Date(2026, 12, 19, 0, 0, 0, 0, time.UTC); !r.NextRotation.Equal(want) {
		t.Fatalf("next rotation %v, want %v", r.NextRotation, want)
	}
}

// TestStaticFailureRetries: a rotation that cannot reach PostgreSQL is
// recorded and retried 10 s later (doubling); the stored password stays.
func TestStaticFailureRetries(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	before := e.storedStatic("app").Password

	// The connection now points at a port nothing listens on.
	cfg := e.storedConfig("pg")
	good := cfg.Connection.ConnectionURL
	cfg.Connection.ConnectionURL = fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/%s?sslmode=disable", freePort(t), e.db.Name)
	if err := e.st.Update(context.Background(), func(tx storage.Tx) error { return putJSON(tx, configPrefix+"pg", cfg) }); err != nil {
		t.Fatal(err)
	}
	now := e.sys.Now().Add(2 * time.Hour)
	e.setNow(now)
	rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Failed) != 1 || len(rep.Rotated) != 0 {
		t.Fatalf("rotate with the database gone: %+v, %v", rep, err)
	}
	r := e.storedStatic("app")
	if r.Attempts != 1 || r.Password != before || r.Pending != nil || !r.RetryAt.Equal(now.UTC().Add(10*time.Second)) {
		t.Fatalf("after one failure: attempts %d, retry at %v, pending %v", r.Attempts, r.RetryAt, r.Pending)
	}
	rep, err = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{DryRun: true})
	if err != nil || len(rep.Due) != 0 {
		t.Fatalf("due before the retry time: %+v, %v", rep, err)
	}
	e.setNow(now.Add(11 * time.Second))
	rep, err = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{DryRun: true})
	if err != nil || len(rep.Due) != 1 || rep.Due[0].Reason != ReasonRetry || rep.Due[0].Attempts != 1 {
		t.Fatalf("dry run at the retry time: %+v, %v", rep, err)
	}
	rep, _ = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if r := e.storedStatic("app"); len(rep.Failed) != 1 || r.Attempts != 2 || !r.RetryAt.Equal(now.UTC().Add(11*time.Second+20*time.Second)) {
		t.Fatalf("second failure: %+v, attempts %d, retry at %v", rep, r.Attempts, r.RetryAt)
	}
	if !strings.Contains(r.LastError, "connection refused") {
		t.Fatalf("last error %q", r.LastError)
	}

	// The database is back: the next retry rotates, and the failure
	// count is cleared.
	cfg.Connection.ConnectionURL = good
	if err := e.st.Update(context.Background(), func(tx storage.Tx) error { return putJSON(tx, configPrefix+"pg", cfg) }); err != nil {
		t.Fatal(err)
	}
	if e.login(user, before) != postgres.LoginAccepted {
		t.Fatal("the stored password stopped working during the outage")
	}
	e.setNow(now.Add(time.Minute))
	rep, err = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	r = e.storedStatic("app")
	if err != nil || len(rep.Rotated) != 1 || r.Attempts != 0 || r.LastError != "" || e.login(user, r.Password) != postgres.LoginAccepted || e.login(user, before) != postgres.LoginRefused {
		t.Fatalf("after recovery: %+v, %v, %+v", rep, err, r)
	}
}

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// TestStaticSettle: a rotation whose process died is settled by the next
// static-creds: a pending password PostgreSQL accepts is promoted at
// once; one it does not know is set (rolled forward) once the claim ran
// out. Either way static-creds returns the password that logs in.
func TestStaticSettle(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	ctx := context.Background()
	setPending := func(pw string, claim time.Time) {
		t.Helper()
		if err := e.st.Update(ctx, func(tx storage.Tx) error {
			r, err := getStatic(tx, "app")
			if err != nil {
				return err
			}
			r.Pending = &staticPending{Password: pw, Created: e.sys.Now(), ClaimUntil: claim}
			return putStatic(tx, "app", r)
		}); err != nil {
			t.Fatal(err)
		}
	}
	creds := func() string {
		t.Helper()
		return e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)
	}

	// Died after ALTER ROLE, claim still running: the login with the
	// pending password succeeds, so it is promoted.
	if _, err := e.db.Conn(t).Exec(ctx, `ALTER ROLE "`+user+`" PASSWORD 'after-alter-password-1'`); err != nil {
		t.Fatal(err)
	}
	setPending("after-alter-password-1", e.sys.Now().Add(time.Minute))
	if got := creds(); got != "after-alter-password-1" {
		t.Fatalf("static-creds = %q, want the pending password PostgreSQL holds", got)
	}
	if r := e.storedStatic("app"); r.Pending != nil || r.Password != "after-alter-password-1" {
		t.Fatalf("not promoted: %+v", r)
	}

	// Died before ALTER ROLE, claim running: the current password is
	// still right, and the pending one is left to its rotator.
	setPending("never-set-password-2", e.sys.Now().Add(time.Minute))
	if got := creds(); got != "after-alter-password-1" {
		t.Fatalf("static-creds = %q during a live claim", got)
	}
	if _, err := e.b.rotateStatic(ctx, e.st, e.sys, "app", false); err != errRotationBusy {
		t.Fatalf("rotate during a live claim: %v", err)
	}
	// Claim over: static-creds rolls the rotation forward.
	e.setNow(e.sys.Now().Add(2 * time.Minute))
	if got := creds(); got != "never-set-password-2" {
		t.Fatalf("static-creds = %q after the claim, want the rolled-forward password", got)
	}
	if e.login(user, "never-set-password-2") != postgres.LoginAccepted || e.login(user, "after-alter-password-1") != postgres.LoginRefused {
		t.Fatal("PostgreSQL does not hold the password static-creds returned")
	}
}

// countingStore counts what a transaction reads, to check that reap's
// due walk reads nothing that is not due.
type countingStore struct {
	storage.Store
	walked, gets atomic.Int64
}

type countingTx struct {
	storage.Tx
	s *countingStore
}

func (c *countingStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	return c.Store.View(ctx, func(tx storage.Tx) error { return fn(&countingTx{tx, c}) })
}

func (c *countingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return c.Store.Update(ctx, func(tx storage.Tx) error { return fn(&countingTx{tx, c}) })
}

func (t *countingTx) Get(key string) ([]byte, error) {
	t.s.gets.Add(1)
	return t.Tx.Get(key)
}

func (t *countingTx) Walk(prefix string, fn func(string) error) error {
	return t.Tx.Walk(prefix, func(k string) error {
		t.s.walked.Add(1)
		return fn(k)
	})
}

// TestRotateDueCostsNothingWhenNothingIsDue: 1,000 static roles that are
// not due cost a reap one key of the due index, and no record read.
func TestRotateDueCostsNothingWhenNothingIsDue(t *testing.T) {
	st := &countingStore{Store: storage.NewMemory()}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	sys := &fakeSystem{now: now, storeID: "s"}
	ctx := context.Background()
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range 1000 {
			r := &staticRole{DBName: "pg", Username: "u" + fmtInt(i), RotationPeriod: 3600, Password: "x",
				LastRotation: now, NextRotation: now.Add(time.Duration(i+1) * time.Minute)}
			if err := putStatic(tx, "r"+fmtInt(i), r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := New(Options{})
	for _, dry := range []bool{false, true} {
		st.walked.Store(0)
		st.gets.Store(0)
		rep, err := b.RotateDue(ctx, st, sys, logical.RotateOptions{DryRun: dry})
		if err != nil || len(rep.Due)+len(rep.Rotated)+len(rep.Failed) != 0 {
			t.Fatalf("nothing due: %+v, %v", rep, err)
		}
		if w, g := st.walked.Load(), st.gets.Load(); w > 1 || g != 0 {
			t.Fatalf("dry run %v: walked %d keys and read %d records with nothing due", dry, w, g)
		}
	}
	// Three minutes on, a dry run reads exactly the three due roles.
	sys.now = now.Add(3 * time.Minute)
	st.walked.Store(0)
	st.gets.Store(0)
	rep, err := b.RotateDue(ctx, st, sys, logical.RotateOptions{DryRun: true})
	if err != nil || len(rep.Due) != 3 {
		t.Fatalf("three due: %+v, %v", rep, err)
	}
	if w, g := st.walked.Load(), st.gets.Load(); w != 4 || g != 3 {
		t.Fatalf("walked %d keys and read %d records for three due roles", w, g)
	}
}

// TestRotateDueBatch: reap rotates many due roles with one connection and
// three store transactions per batch; every new password logs in and
// every old one fails.
func TestRotateDueBatch(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "b*"})
	conn := e.db.Conn(t)
	const n = 30
	users := e.staticLogins(n)
	for i, u := range users {
		e.must(logical.UpdateOperation, fmt.Sprintf("static-roles/b%d", i), map[string]any{"db_name": "pg", "username": u, "rotation_period": "1h"})
	}
	old := make([]string, n)
	for i := range old {
		old[i] = e.storedStatic(fmt.Sprintf("b%d", i)).Password
	}
	// b7's statements fail in PostgreSQL: in the batch's transaction it
	// is rolled back alone (its savepoint) and retried later.
	e.must(logical.UpdateOperation, "static-roles/b7", map[string]any{
		"rotation_statements": `ALTER ROLE "{{name}}_missing" WITH PASSWORD '{{password}}'`,
	})
	// b3's statements end in a line comment and hold two statements.
	e.must(logical.UpdateOperation, "static-roles/b3", map[string]any{
		"rotation_statements": `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'; ALTER ROLE "{{name}}" CONNECTION LIMIT 5 -- and a comment`,
	})
	e.setNow(e.sys.Now().Add(61 * time.Minute))
	dry, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{DryRun: true})
	if err != nil || len(dry.Due) != n {
		t.Fatalf("dry run: %d due, %v", len(dry.Due), err)
	}
	rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Rotated) != n-1 || len(rep.Failed) != 1 || rep.Failed[0].Role != "b7" || !strings.Contains(rep.Failed[0].Error, "does not exist") {
		t.Fatalf("rotate %d due: %d rotated, %+v, %v", n, len(rep.Rotated), rep.Failed, err)
	}
	for i, u := range users {
		r := e.storedStatic(fmt.Sprintf("b%d", i))
		if i == 7 {
			if r.Pending != nil || r.Password != old[i] || r.Attempts != 1 || e.login(u, old[i]) != postgres.LoginAccepted {
				t.Fatalf("failed role: pending %v, attempts %d", r.Pending, r.Attempts)
			}
			continue
		}
		if r.Pending != nil || r.Password == old[i] || e.login(u, r.Password) != postgres.LoginAccepted || e.login(u, old[i]) != postgres.LoginRefused {
			t.Fatalf("role %d: pending %v, rotated %v", i, r.Pending, r.Password != old[i])
		}
	}
	var limit int
	if err := conn.QueryRow(context.Background(), `SELECT rolconnlimit FROM pg_roles WHERE rolname = $1`, users[3]).Scan(&limit); err != nil || limit != 5 {
		t.Fatalf("b3's second statement: connection limit %d, %v", limit, err)
	}
	e.must(logical.UpdateOperation, "static-roles/b7", map[string]any{"rotation_statements": ""})
	e.setNow(e.sys.Now().Add(time.Minute))
	if rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{}); err != nil || len(rep.Rotated) != 1 {
		t.Fatalf("retry of b7: %+v, %v", rep, err)
	}
	rep, err = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Rotated) != 0 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
}

// TestRotateDueTwoReapers: two reapers at once rotate each due role
// exactly once between them, and every stored password logs in.
func TestRotateDueTwoReapers(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "c*"})
	conn := e.db.Conn(t)
	const n = 12
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("c_%s_%d", e.display, i)
		if _, err := conn.Exec(context.Background(), `CREATE ROLE "`+users[i]+`" LOGIN`); err != nil {
			t.Fatal(err)
		}
		e.srv.DropRolesAtCleanup(t, users[i])
		e.must(logical.UpdateOperation, fmt.Sprintf("static-roles/c%d", i), map[string]any{"db_name": "pg", "username": users[i], "rotation_period": "1h"})
	}
	e.setNow(e.sys.Now().Add(2 * time.Hour))
	reps := make([]*logical.RotationReport, 2)
	errs := make([]error, 2)
	done := make(chan int)
	for k := range reps {
		go func() {
			reps[k], errs[k] = e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
			done <- k
		}()
	}
	<-done
	<-done
	seen := map[string]int{}
	for k, rep := range reps {
		if errs[k] != nil || len(rep.Failed) != 0 {
			t.Fatalf("reaper %d: %+v, %v", k, rep.Failed, errs[k])
		}
		for _, name := range rep.Rotated {
			seen[name]++
		}
	}
	if len(seen) != n {
		t.Fatalf("%d roles rotated, want %d", len(seen), n)
	}
	for name, c := range seen {
		if c != 1 {
			t.Fatalf("%s rotated %d times", name, c)
		}
	}
	for i, u := range users {
		r := e.storedStatic(fmt.Sprintf("c%d", i))
		if r.Pending != nil || e.login(u, r.Password) != postgres.LoginAccepted {
			t.Fatalf("c%d: pending %v or its password does not log in", i, r.Pending)
		}
	}
}

// BenchmarkRotateDueNothingDue is reap's part for static roles when none
// is due, on a bbolt file holding 0 or 1,000 static roles (the target: no
// difference). Run both with -count and compare.
func BenchmarkRotateDueNothingDue(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("roles=%d", n), func(b *testing.B) {
			st, err := storage.CreateBolt(b.TempDir()+"/s.db", storage.BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
			ctx := context.Background()
			if err := st.Update(ctx, func(tx storage.Tx) error {
				for i := range n {
					r := &staticRole{DBName: "pg", Username: "u" + fmt.Sprint(i), RotationPeriod: 3600, Password: "x",
						LastRotation: now, NextRotation: now.Add(time.Duration(i+1) * time.Minute)}
					if err := putStatic(tx, "r"+fmt.Sprint(i), r); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			be, sys := New(Options{}), &fakeSystem{now: now, storeID: "s"}
			b.ResetTimer()
			for b.Loop() {
				if rep, err := be.RotateDue(ctx, st, sys, logical.RotateOptions{}); err != nil || len(rep.Rotated) != 0 {
					b.Fatal(rep, err)
				}
			}
		})
	}
}

// TestStaticRotationEndsBeforeItsClaim: an ALTER ROLE that waits (here on
// a lock another session holds) is given up on before the rotation's
// claim runs out, so that it cannot land after another command has
// settled the role; the password shown before still logs in, and the
// next rotation works.
func TestStaticRotationEndsBeforeItsClaim(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	shown := e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)

	defer func(d time.Duration) { staticAlterTimeout = d }(staticAlterTimeout)
	full := staticAlterTimeout
	staticAlterTimeout = 300 * time.Millisecond
	ctx := context.Background()
	tx := e.lockRole(user)
	start := time.Now()
	_, err := e.do(logical.UpdateOperation, "rotate-role/app", nil)
	waited := time.Since(start)
	tx.Rollback(ctx)
	// The next rotation has the full deadline: 300 ms from its start
	// must also cover settling the pending password and connecting,
	// which a loaded machine may take longer than.
	staticAlterTimeout = full
	if err == nil || waited > 5*time.Second {
		t.Fatalf("rotation behind a lock: %v after %v, want an error well before the claim ends", err, waited)
	}
	if got := e.login(user, shown); got != postgres.LoginAccepted {
		t.Fatalf("the password shown before the failed rotation: login %v", got)
	}
	// Whether the cancelled ALTER landed is not certain: its password
	// stays pending until the claim runs out, then the next command
	// settles it (PostgreSQL refuses it) and rotates.
	e.setNow(e.sys.Now().Add(staticClaim + time.Second))
	e.must(logical.UpdateOperation, "rotate-role/app", nil)
	now := e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)
	if now == shown || e.login(user, now) != postgres.LoginAccepted {
		t.Fatal("the next rotation did not take")
	}
}

// TestStaticRoleNeverTheAdmin: the login a connection's admin uses is not
// a static role's to rotate, whether the admin is named in username or
// only in connection_url; nor can a config take as its admin a login a
// static role manages. Either way the next rotation would lock the
// connection out.
func TestStaticRoleNeverTheAdmin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := "adm_" + e.display
	if _, err := e.db.Conn(t).Exec(ctx, `CREATE ROLE "`+admin+`" WITH LOGIN CREATEROLE PASSWORD 'inline-pw-123456'`); err != nil {
		t.Fatal(err)
	}
	e.srv.DropRolesAtCleanup(t, admin)
	hostAndDB := strings.TrimPrefix(e.templatedURL(), "postgresql://{{username}}:{{password}}@")
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"plugin_name": PluginName, "allowed_roles": "*",
		"connection_url": "postgresql://" + admin + ":inline-pw-123456@" + hostAndDB})
	_, err := e.do(logical.UpdateOperation, "static-roles/self", map[string]any{"db_name": "pg", "username": admin, "rotation_period": "1h"})
	if err == nil || !strings.Contains(err.Error(), `username "`+admin+`" is the admin of connection "pg"`) {
		t.Fatalf("a static role on the admin named only in the URL: %v", err)
	}

	// A login a static role manages, then written as a config's admin.
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	if _, err := e.db.Conn(t).Exec(ctx, `ALTER ROLE "`+user+`" CREATEROLE`); err != nil {
		t.Fatal(err)
	}
	pw := e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)
	_, err = e.do(logical.UpdateOperation, "config/pg", map[string]any{"connection_url": e.templatedURL(), "username": user, "password": pw})
	if err == nil || !strings.Contains(err.Error(), `username "`+user+`" is managed by static role "app"`) {
		t.Fatalf("a config whose admin a static role manages: %v", err)
	}
}

// TestStaticRoleNeverTheAdminLogin: a connection that logs in as one role
// and acts as another (role= in its options, a keyword connection string
// naming the login only inside) keeps its login from static roles, as
// the first rotation would lock it out.
func TestStaticRoleNeverTheAdminLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	login, group := "login_"+e.display, "grp_"+e.display
	for _, q := range []string{
		`CREATE ROLE "` + group + `" NOLOGIN SUPERUSER`,
		`CREATE ROLE "` + login + `" LOGIN PASSWORD 'login-pw-123456' IN ROLE "` + group + `"`,
	} {
		if _, err := e.db.Conn(t).Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.DropRolesAtCleanup(t, login, group)
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s sslmode=disable user=%s password=login-pw-123456 options='-c role=%s'", e.srv.Host, e.srv.Port, e.db.Name, login, group)
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"plugin_name": PluginName, "allowed_roles": "*", "connection_url": dsn})
	_, err := e.do(logical.UpdateOperation, "static-roles/steal", map[string]any{"db_name": "pg", "username": login, "rotation_period": "1h"})
	if err == nil || !strings.Contains(err.Error(), `username "`+login+`" is the admin of connection "pg"`) {
		t.Fatalf("a static role on the login of an admin acting as another role: %v", err)
	}
	if res := e.login(login, "login-pw-123456"); res != postgres.LoginAccepted {
		t.Fatalf("the admin's login lost its password: %v", res)
	}
}

// deadRotation makes static role app (login user) look as if a rotation
// to p1 had died: its pending record holds p1 with a claim that ran out,
// and, when altered, p1 is already the login's password. It returns the
// role as stored.
func (e *env) deadRotation(user, p1 string, altered bool) *staticRole {
	e.t.Helper()
	ctx := context.Background()
	if altered {
		if _, err := e.db.Conn(e.t).Exec(ctx, `ALTER ROLE "`+user+`" PASSWORD '`+p1+`'`); err != nil {
			e.t.Fatal(err)
		}
	}
	r := e.storedStatic("app")
	r.Pending = &staticPending{Password: p1, Created: e.sys.Now(), ClaimUntil: e.sys.Now().Add(-time.Second)}
	if err := e.st.Update(ctx, func(tx storage.Tx) error { return putStatic(tx, "app", r) }); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// TestStaticDeleteUndoesUnfinishedRotation: deleting a static role whose
// rotation died neither finishes that rotation nor starts another: the
// login keeps the password static-creds last showed, whether or not the
// dead rotation's ALTER ROLE had landed.
func TestStaticDeleteUndoesUnfinishedRotation(t *testing.T) {
	for _, altered := range []bool{false, true} {
		t.Run(fmt.Sprintf("altered=%v", altered), func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(map[string]any{"allowed_roles": "app"})
			user := e.staticLogin("start-password-1234")
			e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
			shown := e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)
			p1 := "pending-Password-xyz1"
			e.deadRotation(user, p1, altered)
			e.must(logical.DeleteOperation, "static-roles/app", nil)
			if got := e.login(user, shown); got != postgres.LoginAccepted {
				t.Fatalf("the password static-creds showed: login %v after the delete", got)
			}
			if got := e.login(user, p1); got != postgres.LoginRefused {
				t.Fatalf("the dead rotation's password: login %v after the delete", got)
			}
		})
	}
}

// TestStaticDeleteAfterDeadCreate: a static role whose first rotation died
// after its ALTER landed has shown no password; deleting it undoes
// nothing and succeeds.
func TestStaticDeleteAfterDeadCreate(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	failpoint.Arm(failpoint.StaticRotateAfterAlter, func(string) { runtime.Goexit() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.do(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	}()
	<-done
	failpoint.Arm("", nil)
	r := e.storedStatic("app")
	if r.Password != "" || r.Pending == nil || e.login(user, r.Pending.Password) != postgres.LoginAccepted {
		t.Fatalf("set-up: stored %q, pending %+v", r.Password, r.Pending)
	}
	e.setNow(e.sys.Now().Add(staticClaim + time.Second))
	e.must(logical.DeleteOperation, "static-roles/app", nil)
	if _, err := e.do(logical.ReadOperation, "static-creds/app", nil); err == nil {
		t.Fatal("the role is still there")
	}
}

// TestStaticDeleteUndoRaces: while a delete undoes a dead rotation,
// static-creds does not hand out the password about to be undone; an
// undo that fails leaves no claim behind, so a retry need not wait.
func TestStaticDeleteUndoRaces(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app"})
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	ctx := context.Background()
	shown := e.must(logical.ReadOperation, "static-creds/app", nil).Data["password"].(string)
	r := e.deadRotation(user, "pending-Password-xyz1", true)

	// The delete has claimed the role and is about to set shown back.
	claimed, err := e.b.claimUndo(ctx, e.st, "app", r, e.sys.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.do(logical.ReadOperation, "static-creds/app", nil); err == nil || !strings.Contains(err.Error(), "is being deleted") {
		t.Fatalf("static-creds during the undo: %v", err)
	}
	if e.storedStatic("app").Password != shown {
		t.Fatal("static-creds promoted the password being undone")
	}
	releaseUndo(ctx, e.st, "app", claimed.Pending.Password, e.sys.Now())

	// An undo that fails (the login cannot be tried: NOLOGIN) releases
	// its claim: the retry fails for the same reason, not "being rotated".
	if _, err := e.db.Conn(t).Exec(ctx, `ALTER ROLE "`+user+`" NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := e.do(logical.DeleteOperation, "static-roles/app", nil)
		if err == nil || strings.Contains(err.Error(), "being rotated") {
			t.Fatalf("delete of a role whose undo cannot be decided: %v", err)
		}
	}
	if _, err := e.db.Conn(t).Exec(ctx, `ALTER ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	e.must(logical.DeleteOperation, "static-roles/app", nil)
	if got := e.login(user, shown); got != postgres.LoginAccepted {
		t.Fatalf("the password static-creds showed: login %v after the delete", got)
	}
}

// TestStaticRotationErrorHidesPassword: rotation statements that quote no
// {{password}} (allowed with password_authentication=password) fail with
// a syntax error at a token of the new password, which PostgreSQL's
// lexer cuts at characters no URL parser splits on ('-', say); neither
// the error nor the failure recorded on the role shows any of it, as
// for a creation statement.
func TestStaticRotationErrorHidesPassword(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app", "password_authentication": "password"})
	user := e.staticLogin("start-password-1234")
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"rotation_statements": []any{
		`ALTER ROLE "{{name}}" WITH PASSWORD {{password}}`,
	}})
	bareFailures(t, 5, func() error {
		_, err := e.do(logical.UpdateOperation, "rotate-role/app", nil)
		return err
	}, func(err error) {
		quotesNoPassword(t, "error", err.Error())
		quotesNoPassword(t, "last error", e.storedStatic("app").LastError)
	})
	// reap's rotation, several roles a round trip, says the same.
	bareFailures(t, 1, func() error {
		e.setNow(e.sys.Now().Add(2 * time.Hour))
		rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
		if err != nil || len(rep.Failed) != 1 {
			t.Fatalf("reap's rotation: %+v, %v", rep, err)
		}
		return errors.New(rep.Failed[0].Error)
	}, func(err error) { quotesNoPassword(t, "reap's error", err.Error()) })
	if e.login(user, e.storedStatic("app").Password) != postgres.LoginAccepted {
		t.Fatal("the stored password stopped working")
	}
}

// TestStaticRotationStatementsThatCommit: rotation statements that end
// lessor's transaction (a COMMIT, as in statements wrapped in BEGIN and
// COMMIT, or a COMMIT AND CHAIN, which starts another at once) have set
// the new password whatever fails after, and so have those of the roles
// before them in reap's batch: the new passwords stay pending, and
// static-creds, settling them, returns passwords that log in, not the old
// ones PostgreSQL no longer takes.
func TestStaticRotationStatementsThatCommit(t *testing.T) {
	for _, end := range []string{"COMMIT", "COMMIT AND CHAIN"} {
		t.Run(end, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(map[string]any{"allowed_roles": "c*"})
			users := e.staticLogins(3)
			for i, u := range users {
				e.must(logical.UpdateOperation, fmt.Sprintf("static-roles/c%d", i), map[string]any{"db_name": "pg", "username": u, "rotation_period": "1h"})
			}
			e.must(logical.UpdateOperation, "static-roles/c1", map[string]any{
				"rotation_statements": `BEGIN; ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'; ` + end + `;`,
			})
			e.must(logical.UpdateOperation, "static-roles/c2", map[string]any{
				"rotation_statements": []any{`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`, end, `GRANT "{{name}}_missing" TO "{{name}}"`},
			})
			works := func(name, user string) {
				t.Helper()
				resp := e.must(logical.ReadOperation, "static-creds/"+name, nil)
				if e.login(user, resp.Data["password"].(string)) != postgres.LoginAccepted {
					t.Fatalf("static-creds/%s returns a password PostgreSQL refuses", name)
				}
			}

			// rotate-role: the rotation fails, yet PostgreSQL took the password.
			if _, err := e.do(logical.UpdateOperation, "rotate-role/c2", nil); !errors.Is(err, postgres.ErrRotationTxEnded) {
				t.Fatalf("rotate-role: %v", err)
			}
			works("c2", users[2])

			// reap: c0 and c1 share a transaction, which c1's statements end.
			e.setNow(e.sys.Now().Add(61 * time.Minute))
			rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
			if err != nil || len(rep.Failed) == 0 {
				t.Fatalf("rotate: %+v, %v", rep, err)
			}
			for i, u := range users {
				works(fmt.Sprintf("c%d", i), u)
			}
		})
	}
}

// TestStaticRotationNeverTheStoreLogin: a login that became the one the
// store connects as after its static role was made (the store moved to
// PostgreSQL as that login) is not rotated: neither reap nor rotate-role
// changes its password, which would be kept only in the store it locks
// lessor out of.
func TestStaticRotationNeverTheStoreLogin(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"allowed_roles": "app,other"})
	users := e.staticLogins(2)
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": users[0], "rotation_period": "1h"})
	e.must(logical.UpdateOperation, "static-roles/other", map[string]any{"db_name": "pg", "username": users[1], "rotation_period": "1h"})
	before := e.storedStatic("app").Password
	e.sys.mu.Lock()
	e.sys.storeLogin = users[0]
	e.sys.mu.Unlock()

	if _, err := e.do(logical.UpdateOperation, "rotate-role/app", nil); err == nil || !strings.Contains(err.Error(), "the login lessor's store connects as") {
		t.Fatalf("rotate-role of the store's login: %v", err)
	}
	e.setNow(e.sys.Now().Add(61 * time.Minute))
	rep, err := e.b.RotateDue(context.Background(), e.st, e.sys, logical.RotateOptions{})
	if err != nil || len(rep.Failed) != 1 || rep.Failed[0].Role != "app" || len(rep.Rotated) != 1 {
		t.Fatalf("rotate: %+v, %v", rep, err)
	}
	if r := e.storedStatic("app"); r.Password != before || r.Pending != nil || e.login(users[0], before) != postgres.LoginAccepted {
		t.Fatal("the store's login was given a new password")
	}
}
