package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func backendPID(t *testing.T, db *DB) uint32 {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.conn.PgConn().PID()
}

// TestPoolReusesAndResets: a pooled connection is used again by the next
// request, with none of the session state (SET ROLE, search_path) that
// the previous request's creation statements left; the pool opens at
// most Size connections per config and makes the next caller wait.
func TestPoolReusesAndResets(t *testing.T) {
	f := setup(t)
	admin(t, f.d, `CREATE SCHEMA other; CREATE ROLE pool_target_`+f.d.Name+` NOLOGIN`)
	f.s.DropRolesAtCleanup(t, "pool_target_"+f.d.Name)
	p := NewPool(2, time.Minute)
	defer p.Close()
	ctx := context.Background()

	db, err := p.Connect(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(t, db)
	name := newName(t, "pool")
	f.s.DropRolesAtCleanup(t, name)
	pw, _ := GeneratePassword(rand.Reader)
	if err := db.CreateUser(ctx, CreateUserRequest{
		Username: name, Password: pw, Expiration: time.Now().Add(time.Hour),
		Statements: []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; SET search_path TO other; SET statement_timeout TO 1;`},
	}); err != nil {
		t.Fatal(err)
	}
	db.conn.Exec(ctx, `SET ROLE pool_target_`+f.d.Name)
	db.Close(ctx)

	// The reset runs after Close returns; the next Connect gets the same
	// backend once it is idle again.
	var again *DB
	for deadline := time.Now().Add(5 * time.Second); ; {
		again, err = p.Connect(ctx, f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if backendPID(t, again) == pid || time.Now().After(deadline) {
			break
		}
		again.Close(ctx)
		time.Sleep(20 * time.Millisecond)
	}
	if backendPID(t, again) != pid {
		t.Fatal("the pooled connection was not reused")
	}
	var searchPath, user, timeout string
	if err := again.conn.QueryRow(ctx, `SELECT current_setting('search_path'), current_user, current_setting('statement_timeout')`).Scan(&searchPath, &user, &timeout); err != nil {
		t.Fatal(err)
	}
	if searchPath != `"$user", public` || user != f.s.User || timeout != "10s" {
		t.Fatalf("session state leaked into the pooled connection: search_path %q, current_user %q, statement_timeout %q", searchPath, user, timeout)
	}

	// Two open: a third caller waits, and gets one when it comes back.
	second, err := p.Connect(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if open, _ := p.Stats(); open != 2 {
		t.Fatalf("%d open, want 2", open)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := p.Connect(short, f.cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third Connect with two in use: %v, want to wait until the deadline", err)
	}
	got := make(chan *DB, 1)
	go func() {
		db, err := p.Connect(ctx, f.cfg)
		if err != nil {
			t.Error(err)
		}
		got <- db
	}()
	time.Sleep(50 * time.Millisecond)
	second.Close(ctx)
	select {
	case third := <-got:
		third.Close(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting Connect never got the returned connection")
	}

	// A connection left inside a transaction is not kept.
	again.conn.Exec(ctx, "BEGIN")
	again.Close(ctx)
	time.Sleep(100 * time.Millisecond)
	for range 3 {
		db, err := p.Connect(ctx, f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if backendPID(t, db) == pid {
			t.Fatal("a connection returned inside a transaction was used again")
		}
		db.Close(ctx)
	}
}
