package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// adminEnv is an env whose connection "pg" logs in as a dedicated
// CREATEROLE admin (never the test superuser, whose password must survive).
func adminEnv(t *testing.T) (e *env, admin, initial string) {
	e = newEnv(t)
	admin = "lessor_adm_" + randHex(t, 4)
	initial = "initial-" + randHex(t, 8)
	conn := e.db.Conn(t)
	if _, err := conn.Exec(context.Background(), fmt.Sprintf(
		`CREATE ROLE %s WITH LOGIN CREATEROLE PASSWORD '%s'`, pgx.Identifier{admin}.Sanitize(), initial)); err != nil {
		t.Fatal(err)
	}
	e.srv.DropRolesAtCleanup(t, admin)
	e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "connection_url": e.templatedURL(),
		"username": admin, "password": initial, "allowed_roles": "*",
	})
	e.writeRole("plain", map[string]any{
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
	})
	return e, admin, initial
}

func (e *env) pending(name string) *pendingRoot {
	e.t.Helper()
	var p pendingRoot
	var found bool
	if err := e.st.View(context.Background(), func(tx storage.Tx) error {
		var err error
		found, err = getJSON(tx, pendingPrefix+name, &p)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	if !found {
		return nil
	}
	return &p
}

func TestRotateRoot(t *testing.T) {
	e, admin, initial := adminEnv(t)
	ctx := context.Background()

	if resp := e.must(logical.UpdateOperation, "rotate-root/pg", nil); resp != nil {
		t.Fatalf("rotate-root returned %+v, want nothing", resp)
	}
	if err := e.srv.CanLogin(ctx, admin, initial, e.db.Name); err == nil || !isAuthFailure(err) {
		t.Fatalf("old admin password after rotation: %v, want refused", err)
	}
	stored := e.storedConfig("pg").Connection.Password
	if stored == initial || len(stored) != 20 {
		t.Fatalf("stored password %q: not a new 20-character password", stored)
	}
	if err := e.srv.CanLogin(ctx, admin, stored, e.db.Name); err != nil {
		t.Fatalf("new admin password: %v", err)
	}
	if p := e.pending("pg"); p != nil {
		t.Fatalf("pending record left after a successful rotation: %+v", p)
	}
	read := jsonOf(t, e.must(logical.ReadOperation, "config/pg", nil))
	if strings.Contains(read, stored) || strings.Contains(read, initial) || strings.Contains(read, `"password"`) {
		t.Fatalf("config read shows a password: %s", read)
	}

	// lessor keeps working with the password nobody else knows.
	resp := e.issue("plain")
	if err := e.srv.CanLogin(ctx, resp.Data["username"].(string), resp.Data["password"].(string), e.db.Name); err != nil {
		t.Fatalf("credential issued after rotation: %v", err)
	}
	e.must(logical.UpdateOperation, "rotate-root/pg", nil)
	if again := e.storedConfig("pg").Connection.Password; again == stored {
		t.Fatal("second rotation kept the password")
	}
}

func TestRotateRootRefusals(t *testing.T) {
	e := roleEnv(t)
	e.must(logical.UpdateOperation, "config/nouser", map[string]any{
		"plugin_name": PluginName, "verify_connection": false,
		"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/x", "password": "p",
	})
	e.must(logical.UpdateOperation, "config/nopw", map[string]any{
		"plugin_name": PluginName, "verify_connection": false,
		"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/x", "username": "u",
	})
	for path, want := range map[string]string{
		"rotate-root/nouser":  "unable to rotate root credentials: no username in configuration",
		"rotate-root/nopw":    "unable to rotate root credentials: no password in configuration",
		"rotate-root/missing": `failed to find entry for connection with name: "missing"`,
		`rotate-root/a'b`:     `invalid name "a'b"` + nameRule,
	} {
		if _, err := e.do(logical.UpdateOperation, path, nil); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", path, err, want)
		}
	}
	if e.pending("nouser") != nil || e.pending("nopw") != nil {
		t.Fatal("a refused rotation left a pending record")
	}
}

// TestRotateRootCrashRecovery stops a rotation after PostgreSQL took the
// new password and before lessor stored it, as a crash would, and checks
// that the next request that connects, whatever it is, adopts the pending
// password.
func TestRotateRootCrashRecovery(t *testing.T) {
	for _, next := range []struct {
		name string
		run  func(e *env)
	}{
		{"creds", func(e *env) {
			resp := e.issue("plain")
			if err := e.srv.CanLogin(context.Background(), resp.Data["username"].(string), resp.Data["password"].(string), e.db.Name); err != nil {
				e.t.Fatalf("credential issued during recovery: %v", err)
			}
		}},
		{"config merge", func(e *env) {
			e.must(logical.UpdateOperation, "config/pg", map[string]any{"allowed_roles": "plain"})
		}},
		{"rotate again", func(e *env) {
			e.must(logical.UpdateOperation, "rotate-root/pg", nil)
		}},
	} {
		t.Run(next.name, func(t *testing.T) {
			e, admin, initial := adminEnv(t)
			ctx := context.Background()
			errCrash := errors.New("crash")
			e.b.testOnlyAfterRotate = func() error { return errCrash }

			if _, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil); !errors.Is(err, errCrash) {
				t.Fatalf("rotate-root: %v, want the simulated crash", err)
			}
			e.b.testOnlyAfterRotate = nil
			if got := e.storedConfig("pg").Connection.Password; got != initial {
				t.Fatalf("stored password changed before verification")
			}
			p := e.pending("pg")
			if p == nil || p.Username != admin || p.Password == initial {
				t.Fatalf("pending record = %+v", p)
			}
			if err := e.srv.CanLogin(ctx, admin, initial, e.db.Name); err == nil {
				t.Fatal("old password still works: the simulated crash came too early")
			}
			if err := e.srv.CanLogin(ctx, admin, p.Password, e.db.Name); err != nil {
				t.Fatalf("pending password: %v", err)
			}

			next.run(e)

			stored := e.storedConfig("pg").Connection.Password
			if stored == initial || (next.name != "rotate again" && stored != p.Password) {
				t.Fatal("pending password not adopted")
			}
			if err := e.srv.CanLogin(ctx, admin, stored, e.db.Name); err != nil {
				t.Fatalf("stored password after recovery: %v", err)
			}
			if e.pending("pg") != nil {
				t.Fatal("pending record left after recovery")
			}
		})
	}
}

// TestRotateRootRejectedByPostgres: when PostgreSQL refuses the rotation
// statement, the old password stays in force and in the store, and the
// pending password is dropped.
func TestRotateRootRejectedByPostgres(t *testing.T) {
	e, admin, initial := adminEnv(t)
	ctx := context.Background()
	e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"root_rotation_statements": `ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}' VALID UNTIL 'not a date'`,
		"password":                 initial,
	})
	_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
	want := "unable to rotate root credentials: rotate root password of " + admin + ": rotation statement 1: "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "SQLSTATE 22007") {
		t.Fatalf("error = %v\nwant prefix %s", err, want)
	}
	if err := e.srv.CanLogin(ctx, admin, initial, e.db.Name); err != nil {
		t.Fatalf("old password after a rejected rotation: %v", err)
	}
	if got := e.storedConfig("pg").Connection.Password; got != initial {
		t.Fatal("stored password changed by a rejected rotation")
	}
	if p := e.pending("pg"); p != nil {
		t.Fatalf("pending record left after a rejected rotation: %+v", p)
	}
}

// TestRotateRootEndsBeforeItsClaim: a rotation whose ALTER ROLE waits (on
// a lock another session holds) is given up on before its claim runs out,
// so that it cannot land after another rotation began; the admin keeps
// its old password, in PostgreSQL and in the store, and the next rotation
// works.
func TestRotateRootEndsBeforeItsClaim(t *testing.T) {
	e, admin, initial := adminEnv(t)
	defer func(d time.Duration) { rootAlterTimeout = d }(rootAlterTimeout)
	full := rootAlterTimeout
	rootAlterTimeout = 300 * time.Millisecond
	ctx := context.Background()
	tx := e.lockRole(admin)
	// The lock is let go after 5 s whatever happens, so that a rotation
	// that waits it out fails the test instead of hanging it.
	release, released := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		tx.Rollback(ctx)
		close(released)
	}()
	start := time.Now()
	_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
	waited := time.Since(start)
	close(release)
	<-released
	if err == nil || waited > 5*time.Second {
		t.Fatalf("rotation behind a lock: %v after %v, want an error well before the claim ends", err, waited)
	}
	if err := e.srv.CanLogin(ctx, admin, initial, e.db.Name); err != nil {
		t.Fatalf("the old password after the rotation gave up: %v", err)
	}
	if got := e.storedConfig("pg").Connection.Password; got != initial {
		t.Fatal("the stored password changed though the rotation gave up")
	}
	if p := e.pending("pg"); p != nil {
		t.Fatalf("pending record left by a rotation PostgreSQL refused: %+v", p)
	}
	// The next rotation has the full deadline, which counts from before
	// its claim is written: 300 ms would also have to cover that write
	// and the ALTER's connection on a loaded machine.
	rootAlterTimeout = full
	e.must(logical.UpdateOperation, "rotate-root/pg", nil)
	stored := e.storedConfig("pg").Connection.Password
	if stored == initial {
		t.Fatal("the next rotation did not take")
	}
	if err := e.srv.CanLogin(ctx, admin, stored, e.db.Name); err != nil {
		t.Fatalf("the next rotation's password: %v", err)
	}
}

// TestRotateRootDeadlineCountsFromClaim: the ALTER's deadline counts from
// the moment the rotation's claim was timed, not from the ALTER: a
// rotation held up between the two (its claim's commit waited on the
// store) must not go on altering the role past its claim, when another
// rotation may have begun.
func TestRotateRootDeadlineCountsFromClaim(t *testing.T) {
	e, admin, initial := adminEnv(t)
	defer func(d time.Duration) { rootAlterTimeout = d }(rootAlterTimeout)
	rootAlterTimeout = 4 * time.Second
	ctx := context.Background()
	tx := e.lockRole(admin)
	release, released := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		tx.Rollback(ctx)
		close(released)
	}()
	// Held up past the ALTER's deadline between the claim and the ALTER.
	var resumed time.Time
	failpoint.Arm(failpoint.RotateRootAfterPending, func(string) {
		time.Sleep(rootAlterTimeout + 500*time.Millisecond)
		resumed = time.Now()
	})
	t.Cleanup(func() { failpoint.Arm("", nil) })
	_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
	after := time.Since(resumed)
	close(release)
	<-released
	// Counted from the ALTER, the deadline let it wait on the lock for
	// the whole rootAlterTimeout after the hold-up.
	if err == nil || after >= rootAlterTimeout {
		t.Fatalf("rotation held up past its deadline: %v, %v after the hold-up; want an error at once", err, after)
	}
	if err := e.srv.CanLogin(ctx, admin, initial, e.db.Name); err != nil {
		t.Fatalf("the old password after the rotation gave up: %v", err)
	}
	if got := e.storedConfig("pg").Connection.Password; got != initial {
		t.Fatal("the stored password changed though the rotation gave up")
	}
	if p := e.pending("pg"); p != nil {
		t.Fatalf("pending record left by a rotation that never altered the role: %+v", p)
	}
}

// lockRole holds the row lock of role name in a transaction of its own,
// which the caller rolls back: an ALTER ROLE of name waits for it.
func (e *env) lockRole(name string) pgx.Tx {
	e.t.Helper()
	tx, err := e.db.Conn(e.t).Begin(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `ALTER ROLE `+pgx.Identifier{name}.Sanitize()+` VALID UNTIL 'infinity'`); err != nil {
		e.t.Fatal(err)
	}
	return tx
}

// TestRotateRootConcurrent: a rotation that starts while another one is
// between recording its password and storing it is refused, instead of
// both altering the role and the store keeping the password PostgreSQL
// did not (which locked lessor out of the database for good). A rotation
// that died leaves a claim that lapses.
func TestRotateRootConcurrent(t *testing.T) {
	e, admin, _ := adminEnv(t)
	first := true
	paused, resume := make(chan struct{}), make(chan struct{})
	failpoint.Arm(failpoint.RotateRootAfterPending, func(string) {
		if first {
			first = false
			close(paused)
			<-resume
		}
	})
	t.Cleanup(func() { failpoint.Arm("", nil) })
	done := make(chan error, 1)
	go func() {
		_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
		done <- err
	}()
	<-paused
	_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
	if err == nil || !strings.Contains(err.Error(), "another rotation of these root credentials began at") {
		t.Fatalf("rotation during another one: %v", err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("the first rotation: %v", err)
	}
	stored := e.storedConfig("pg").Connection.Password
	if err := e.srv.CanLogin(context.Background(), admin, stored, e.db.Name); err != nil {
		t.Fatalf("the stored admin password does not log in: %v", err)
	}
	if p := e.pending("pg"); p != nil {
		t.Fatalf("pending record left: %+v", p)
	}
	e.must(logical.UpdateOperation, "rotate-root/pg", nil)

	// A claim left by a rotation that died before its ALTER ROLE keeps
	// others out until it lapses, and changes nothing meanwhile.
	failpoint.Arm(failpoint.RotateRootAfterPending, func(string) { panic("crash") })
	func() {
		defer func() { recover() }()
		e.do(logical.UpdateOperation, "rotate-root/pg", nil)
	}()
	failpoint.Arm("", nil)
	if _, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil); err == nil {
		t.Fatal("rotation during a dead one's claim succeeded")
	}
	e.sys.mu.Lock()
	e.sys.now = e.sys.now.Add(rotationClaim + time.Second)
	e.sys.mu.Unlock()
	e.must(logical.UpdateOperation, "rotate-root/pg", nil)
	stored = e.storedConfig("pg").Connection.Password
	if err := e.srv.CanLogin(context.Background(), admin, stored, e.db.Name); err != nil {
		t.Fatalf("after the claim lapsed, the stored admin password does not log in: %v", err)
	}
}

// TestRotateRootStaleRotator: a rotation that stalls after claiming
// (suspended, cut off) until its claim runs out, while another rotation
// begins and finishes, then sets its own password in PostgreSQL last.
// The store holds the other password, but this one stays pending, so
// the next request logs in with it and stores it: the admin is never
// locked out.
func TestRotateRootStaleRotator(t *testing.T) {
	e, admin, _ := adminEnv(t)
	ctx := context.Background()
	var hits atomic.Int32
	stalled, release := make(chan struct{}), make(chan struct{})
	failpoint.Arm(failpoint.RotateRootAfterPending, func(string) {
		if hits.Add(1) == 1 {
			close(stalled)
			<-release
		}
	})
	defer failpoint.Arm("", nil)
	doneA := make(chan error, 1)
	go func() {
		_, err := e.do(logical.UpdateOperation, "rotate-root/pg", nil)
		doneA <- err
	}()
	<-stalled
	p1 := e.pending("pg").Password
	e.setNow(e.sys.Now().Add(rotationClaim + time.Minute))
	e.must(logical.UpdateOperation, "rotate-root/pg", nil)
	p2 := e.storedConfig("pg").Connection.Password
	close(release)
	if err := <-doneA; err != nil {
		t.Logf("the stale rotation: %v", err)
	}
	if e.storedConfig("pg").Connection.Password != p2 || e.srv.CanLogin(ctx, admin, p1, e.db.Name) != nil {
		t.Skip("the stale rotation's ALTER did not land last; nothing to recover")
	}
	if p := e.pending("pg"); p == nil || p.Password != p1 {
		t.Fatalf("PostgreSQL holds the stale rotation's password, but it is not pending: %+v", p)
	}
	// The next request logs in with it and stores it.
	e.writeRole("plain", map[string]any{"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`})
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"allowed_roles": "*"})
	e.issue("plain")
	if got := e.storedConfig("pg").Connection.Password; got != p1 {
		t.Fatal("the password PostgreSQL holds was not adopted")
	}
}

// policySystem generates every policy's password as the same digits.
type policySystem struct{ *fakeSystem }

func (policySystem) GeneratePasswordFromPolicy(context.Context, string) (string, error) {
	return "11111111112222222222333333333344", nil
}

// TestRotateRootUsesPasswordPolicy: the new root password follows the
// connection's password_policy, as in Vault. So a new policy comes with
// the password: without it, whoever may update the config but was never
// told the password would name a policy that makes one they know, and
// have it at the next rotation.
func TestRotateRootUsesPasswordPolicy(t *testing.T) {
	e, admin, initial := adminEnv(t)
	do := func(op logical.Operation, path string, data map[string]any) error {
		_, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, MountPoint: "database/",
			MountType: "database", Storage: e.st, DisplayName: e.display, Leases: e.leases, System: policySystem{e.sys}})
		return err
	}
	err := do(logical.UpdateOperation, "config/pg", map[string]any{"password_policy": "digits"})
	if err == nil || !strings.Contains(err.Error(), "password_policy changed: send the password with it") {
		t.Fatalf("new password_policy without the password: %v", err)
	}
	if got := e.storedConfig("pg").PasswordPolicy; got != "" {
		t.Fatalf("the refused password_policy %q was stored", got)
	}
	if err := do(logical.UpdateOperation, "config/pg", map[string]any{"password_policy": "digits", "password": initial}); err != nil {
		t.Fatal(err)
	}
	if err := do(logical.UpdateOperation, "rotate-root/pg", nil); err != nil {
		t.Fatal(err)
	}
	if got := e.storedConfig("pg").Connection.Password; got != "11111111112222222222333333333344" {
		t.Fatalf("root password after rotate-root = %q, not the policy's", got)
	}
	if err := e.srv.CanLogin(context.Background(), admin, "11111111112222222222333333333344", e.db.Name); err != nil {
		t.Fatalf("the policy's password does not log in: %v", err)
	}
}
