package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pool keeps admin connections open between requests, for a long-running
// server: at most Size per connection config (URL, user, password and the
// rest, so a rotated password or an edited config gets connections of its
// own and the old ones age out), or the config's MaxOpenConnections when
// set, each closed after MaxIdle unused.
//
// A DB from Pool.Connect is used exactly as one from Connect; its Close
// hands the connection back instead of closing it. A connection goes back
// only if it is healthy and idle (no transaction open), after its session
// state is reset (SET SESSION AUTHORIZATION DEFAULT, RESET ALL, DISCARD
// TEMP, advisory locks released), so that a creation statement's SET ROLE
// or SET search_path never leaks into the next request. The command line
// never uses a Pool: each command still opens one connection and closes it.
type Pool struct {
	size    int
	maxIdle time.Duration

	mu     sync.Mutex
	sets   map[string]*connSet
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// connSet is one connection config's connections: sem counts the open
// ones, idle holds those ready for use.
type connSet struct {
	sem  chan struct{}
	idle chan *pooledConn
}

type pooledConn struct {
	conn    *pgx.Conn
	version int
	used    time.Time
}

// DefaultPoolMaxIdle is how long an unused pooled connection stays open.
const DefaultPoolMaxIdle = 2 * time.Minute

// NewPool returns a pool of at most size connections per connection
// config, closed after maxIdle unused (0: DefaultPoolMaxIdle).
func NewPool(size int, maxIdle time.Duration) *Pool {
	if size < 1 {
		size = 1
	}
	if maxIdle <= 0 {
		maxIdle = DefaultPoolMaxIdle
	}
	p := &Pool{size: size, maxIdle: maxIdle, sets: map[string]*connSet{}, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.janitor()
	return p
}

// poolKey identifies a connection config; it is a hash, so the password
// is not kept in the map's keys.
func poolKey(cfg Config) string {
	raw, _ := json.Marshal(cfg)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func (p *Pool) set(key string, size int) (*connSet, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	s := p.sets[key]
	if s == nil {
		if size <= 0 {
			size = p.size
		}
		size = min(size, MaxOpenConnectionsLimit)
		s = &connSet{sem: make(chan struct{}, size), idle: make(chan *pooledConn, size)}
		p.sets[key] = s
	}
	return s, true
}

// Connect returns a DB on a pooled connection for cfg, opening one when
// none is idle and fewer than Size are open, else waiting for one (until
// ctx ends).
func (p *Pool) Connect(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key := poolKey(cfg)
	s, ok := p.set(key, cfg.MaxOpenConnections)
	if !ok {
		return Connect(ctx, cfg)
	}
	db := &DB{cfg: cfg, pool: p, set: s}
	db.addSecret(cfg.Password)
	for {
		select {
		case pc := <-s.idle:
			if pc.conn.IsClosed() {
				<-s.sem
				continue
			}
			db.conn, db.version = pc.conn, pc.version
			return db, nil
		default:
		}
		select {
		case pc := <-s.idle:
			if pc.conn.IsClosed() {
				<-s.sem
				continue
			}
			db.conn, db.version = pc.conn, pc.version
			return db, nil
		case s.sem <- struct{}{}:
			conn, err := db.dial(ctx, cfg.Password, "")
			if err != nil {
				<-s.sem
				return nil, err
			}
			db.conn = conn
			return db, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// resetSession undoes what a request may have changed in its session.
// statement_timeout goes first: a request that set it to a millisecond
// would otherwise have the rest of the reset cancelled on a busy host.
// RESET ALL brings back what the database's defaults impose, its
// search_path and a role to act as, so the session is set up against them
// again (see unbindSession): setUpSession ends it. A transaction_timeout
// the database's defaults set comes back with RESET ALL too, and is
// lifted right after it (see liftTimeout).
func resetSession(version int) string {
	q := "RESET statement_timeout; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; "
	if lift := liftTimeout(version); lift != "" {
		q += lift + "; "
	}
	return q + "DISCARD TEMP; SELECT pg_catalog.pg_advisory_unlock_all(); " + setUpSession
}

// resetConn runs resetSession, once more if the server cancelled it
// (SQLSTATE 57014, a statement timeout the request left): the first
// statement of a failed try may already have lifted the timeout.
func resetConn(ctx context.Context, conn *pgx.Conn, version int) bool {
	for try := 0; try < 3; try++ {
		res, err := conn.PgConn().Exec(ctx, resetSession(version)).ReadAll()
		if err == nil {
			other, err := actsAsAnother(res[len(res)-1])
			return err == nil && (!other || unbindRole(ctx, conn) == nil)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" || conn.PgConn().TxStatus() != 'I' {
			return false
		}
	}
	return false
}

// put takes back a DB's connection: reset and kept when it is healthy
// and idle, closed otherwise. It runs after the request's response, so
// the reset costs the request nothing.
func (p *Pool) put(s *connSet, conn *pgx.Conn, version int, timeout time.Duration) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(conn)
		<-s.sem
		return
	}
	// Added under the lock, so never after Close's Wait began.
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		ok := !conn.IsClosed() && conn.PgConn().TxStatus() == 'I'
		if ok {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			ok = resetConn(ctx, conn, version)
			cancel()
		}
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if !ok || closed {
			closeConn(conn)
			<-s.sem
			return
		}
		select {
		case s.idle <- &pooledConn{conn: conn, version: version, used: time.Now()}:
		default: // cannot happen: at most Size are open
			closeConn(conn)
			<-s.sem
		}
	}()
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// janitor closes connections idle for longer than maxIdle.
func (p *Pool) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(p.maxIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		sets := make([]*connSet, 0, len(p.sets))
		for _, s := range p.sets {
			sets = append(sets, s)
		}
		p.mu.Unlock()
		for _, s := range sets {
			p.sweep(s, time.Now().Add(-p.maxIdle))
		}
	}
}

// sweep closes the idle connections of s last used before cutoff.
func (p *Pool) sweep(s *connSet, cutoff time.Time) {
	var keep []*pooledConn
	for {
		select {
		case pc := <-s.idle:
			if pc.used.Before(cutoff) || pc.conn.IsClosed() {
				closeConn(pc.conn)
				<-s.sem
				continue
			}
			keep = append(keep, pc)
			continue
		default:
		}
		break
	}
	for _, pc := range keep {
		s.idle <- pc
	}
}

// Close closes the idle connections and, as they come back, the ones in
// use; it waits for the resets in progress. A DB connected afterwards is
// not pooled.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	sets := p.sets
	p.mu.Unlock()
	p.wg.Wait()
	for _, s := range sets {
		p.sweep(s, time.Now().Add(time.Hour))
	}
}

// Stats counts the open and idle connections, for tests and logs.
func (p *Pool) Stats() (open, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sets {
		open += len(s.sem)
		idle += len(s.idle)
	}
	return open, idle
}
