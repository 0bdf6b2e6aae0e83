package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
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
	if searchPath != `pg_catalog, "$user", public` || user != f.s.User || timeout != "10s" {
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

// TestPoolCreationsOverlap: on pooled connections, creations from the
// same statements run their CREATE ROLE side by side and take turns only
// for what follows it (the GRANT on one table, which PostgreSQL cannot
// run concurrently), and a creation is invisible until its Commit: one
// rolled back leaves nothing, and concurrent commits all succeed.
func TestPoolCreationsOverlap(t *testing.T) {
	f := setup(t)
	p := NewPool(4, time.Minute)
	defer p.Close()
	ctx := context.Background()
	stmts := []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON items TO "{{name}}";`}
	watch := f.d.Conn(t)
	count := func(names ...string) int {
		t.Helper()
		var n int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)`, names).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	start := func(name string) *Creation {
		t.Helper()
		f.s.DropRolesAtCleanup(t, name)
		db, err := p.Connect(ctx, f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close(ctx) })
		pw, _ := GeneratePassword(rand.Reader)
		return db.StartCreate(ctx, CreateUserRequest{
			Username: name, Password: pw, Expiration: time.Now().Add(time.Hour),
			Statements: stmts, Comment: "lessor-test " + name,
		})
	}

	// Both start while neither has committed: the second's CREATE ROLE
	// does not wait for the first's transaction.
	names := []string{newName(t, "overlap"), newName(t, "overlap"), newName(t, "overlap")}
	first := start(names[0])
	started := make(chan *Creation, 1)
	go func() { started <- start(names[1]) }()
	var second *Creation
	select {
	case second = <-started:
	case <-time.After(10 * time.Second):
		first.Rollback(ctx)
		(<-started).Rollback(ctx)
		t.Fatal("a second creation waited for the first one's transaction before its CREATE ROLE")
	}
	if n := count(names[:2]...); n != 0 {
		t.Fatalf("%d roles visible before Commit, want 0", n)
	}
	first.Rollback(ctx)
	third := start(names[2])

	// The two left commit at once: one waits for the other's turn at the
	// GRANT instead of failing with "tuple concurrently updated".
	errs := make(chan error, 2)
	for _, c := range []*Creation{second, third} {
		go func() { errs <- c.Commit(ctx) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := count(names[0]); n != 0 {
		t.Errorf("the rolled-back creation left its role")
	}
	if n := count(names[1:]...); n != 2 {
		t.Errorf("%d of the 2 committed roles exist", n)
	}
	var acl string
	if err := watch.QueryRow(ctx, `SELECT relacl::text FROM pg_class WHERE relname = 'items'`).Scan(&acl); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if !strings.Contains(acl, n) {
			t.Errorf("items' ACL %s lacks %s", acl, n)
		}
	}
}

// TestPoolMaxOpenConnections: a config's MaxOpenConnections (Vault's
// max_open_connections) bounds its connections instead of the pool's
// size, in either direction.
func TestPoolMaxOpenConnections(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, c := range []struct{ poolSize, maxOpen, want int }{
		{4, 1, 1},
		{1, 3, 3},
		{2, 0, 2},
	} {
		p := NewPool(c.poolSize, time.Minute)
		cfg := f.cfg
		cfg.MaxOpenConnections = c.maxOpen
		var open []*DB
		for range c.want {
			db, err := p.Connect(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, db)
		}
		short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		if _, err := p.Connect(short, cfg); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("pool of %d, max_open_connections %d: connection %d: %v, want to wait", c.poolSize, c.maxOpen, c.want+1, err)
		}
		cancel()
		if n, _ := p.Stats(); n != c.want {
			t.Errorf("pool of %d, max_open_connections %d: %d open, want %d", c.poolSize, c.maxOpen, n, c.want)
		}
		for _, db := range open {
			db.Close(ctx)
		}
		p.Close()
	}
}

// TestPoolBoundsAnAbsurdSize: a config stored before max_open_connections
// was bounded gets a pool of MaxOpenConnectionsLimit, not a process that
// aborts setting aside room for 2^40 connections.
func TestPoolBoundsAnAbsurdSize(t *testing.T) {
	f := setup(t)
	p := NewPool(2, time.Minute)
	defer p.Close()
	cfg := f.cfg
	cfg.MaxOpenConnections = 1 << 40
	db, err := p.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	db.Close(context.Background())
	if s := p.sets[poolKey(cfg)]; cap(s.sem) != MaxOpenConnectionsLimit {
		t.Fatalf("pool for max_open_connections 2^40 holds %d connections, want %d", cap(s.sem), MaxOpenConnectionsLimit)
	}
}
