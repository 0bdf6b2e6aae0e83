package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// RevokeRequest is one role to revoke. Without Statements the default
// revocation runs; with them, they run in one transaction with {{name}} and
// {{username}} set.
type RevokeRequest struct {
	Username   string
	Statements []string
}

// revokeBatchSize bounds the roles handled by one set of statements: large
// enough that round trips stop mattering, small enough that one failing
// role costs a bounded per-role fallback.
const revokeBatchSize = 1000

// terminateWait is how long PostgreSQL waits for each terminated backend to
// exit before the role is dropped.
const terminateWait = 2 * time.Second

// RevokeUsers revokes every role in rs and returns one error per request,
// nil on success. A role that does not exist is revoked already.
//
// The default revocation, for many roles at once, in this order and each
// step committed on its own so that no new session can slip in:
//
//  1. ALTER ROLE … NOLOGIN for each role that exists;
//  2. pg_terminate_backend for every session logged in as one of them;
//  3. in every database where pg_shdepend shows one of them owning or
//     holding anything (and in the admin's database for shared objects):
//     REASSIGN OWNED BY … TO CURRENT_USER; DROP OWNED BY …;
//  4. DROP ROLE IF EXISTS ….
//
// When a batch fails with a PostgreSQL error, its roles are revoked one at a
// time so that each error belongs to the role that caused it.
//
// Custom statements also run after steps 1 and 2, so an open session never
// outlives its revoked credential.
func (db *DB) RevokeUsers(ctx context.Context, rs []RevokeRequest) []error {
	errs := make([]error, len(rs))
	db.mu.Lock()
	defer db.mu.Unlock()

	byName := map[string][]int{} // default requests, by role name
	var names []string
	for i, r := range rs {
		if err := checkRoleName(r.Username); err != nil {
			errs[i] = fmt.Errorf("revoke user %q: %w", r.Username, err)
			continue
		}
		if len(r.Statements) > 0 {
			if err := db.revokeCustom(ctx, r); err != nil {
				errs[i] = db.redact(fmt.Errorf("revoke user %s: %w", r.Username, err))
			}
			continue
		}
		if _, dup := byName[r.Username]; !dup {
			names = append(names, r.Username)
		}
		byName[r.Username] = append(byName[r.Username], i)
	}
	for len(names) > 0 {
		n := min(len(names), revokeBatchSize)
		for name, err := range db.revokeBatch(ctx, names[:n]) {
			for _, i := range byName[name] {
				errs[i] = db.redact(fmt.Errorf("revoke user %s: %w", name, err))
			}
		}
		names = names[n:]
	}
	return errs
}

// revokeBatch revokes names and returns the errors by name.
func (db *DB) revokeBatch(ctx context.Context, names []string) map[string]error {
	errs, err := db.revokeDefault(ctx, names)
	if err == nil {
		return errs
	}
	// Only a PostgreSQL error can be pinned on a role; a lost connection
	// or a cancelled context would just fail again for each of them.
	if len(names) == 1 || sqlState(err) == "" || ctx.Err() != nil {
		for _, name := range names {
			if errs[name] == nil {
				errs[name] = err
			}
		}
		return errs
	}
	for _, name := range names {
		if errs[name] != nil {
			continue
		}
		one, err := db.revokeDefault(ctx, []string{name})
		if err == nil {
			err = one[name]
		}
		if err != nil {
			errs[name] = err
		}
	}
	return errs
}

// revokeDefault runs the default revocation for names. Errors that belong
// to one role come back in the map; err is a failure of the batch.
func (db *DB) revokeDefault(ctx context.Context, names []string) (map[string]error, error) {
	errs := map[string]error{}
	conn, err := db.admin(ctx)
	if err != nil {
		return errs, err
	}
	var present []string
	var self string
	rctx, cancel := db.roundTrip(ctx)
	err = conn.QueryRow(rctx, `
SELECT coalesce(array_agg(rolname ORDER BY rolname) FILTER (WHERE rolname <> current_user), '{}'),
       current_user
FROM pg_roles WHERE rolname = ANY($1)`, names).Scan(&present, &self)
	cancel()
	if err != nil {
		return errs, pgError(err)
	}
	for _, name := range names {
		if name == self {
			errs[name] = errors.New("refusing to revoke the role lessor itself connects as")
		}
	}
	if len(present) == 0 {
		return errs, nil
	}
	// 1. No new logins, committed before anything else happens.
	var b strings.Builder
	for _, name := range present {
		b.WriteString("ALTER ROLE " + pgx.Identifier{name}.Sanitize() + " NOLOGIN;")
	}
	if err := db.retry(ctx, func() error { return db.exec(ctx, conn, b.String()) }); err != nil {
		return errs, fmt.Errorf("disable login: %w", err)
	}

	// 2. End the sessions already open.
	if err := db.terminate(ctx, conn, present); err != nil {
		return errs, err
	}

	// 3. Ownership and privileges, database by database.
	if err := db.dropOwned(ctx, conn, present); err != nil {
		return errs, err
	}

	// 4. The roles themselves; memberships go with them.
	if err := db.retry(ctx, func() error { return db.exec(ctx, conn, "DROP ROLE IF EXISTS "+identList(present)) }); err != nil {
		return errs, fmt.Errorf("drop role: %w", err)
	}
	return errs, nil
}

// terminate ends every session logged in as one of names and waits for it
// to exit (PostgreSQL 14+), so DROP ROLE does not leave a session running
// as a role that no longer exists.
func (db *DB) terminate(ctx context.Context, conn *pgx.Conn, names []string) error {
	q := `SELECT count(pg_terminate_backend(pid, $2)) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()`
	args := []any{names, terminateWait.Milliseconds()}
	if db.version < 140000 {
		q = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()`
		args = args[:1]
	}
	var n int64
	if err := db.queryRow(ctx, conn, q, args, &n); err != nil {
		return fmt.Errorf("terminate sessions: %w", err)
	}
	return nil
}

// dropOwned finds, through pg_shdepend, the databases where names own or
// hold anything, and there reassigns what they own to the admin and drops
// their privileges. Shared objects (databases, tablespaces, privileges on
// them) are handled from the admin's own database.
func (db *DB) dropOwned(ctx context.Context, conn *pgx.Conn, names []string) error {
	type target struct {
		db      string
		current bool
		conn    bool
		roles   []string
	}
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, `
SELECT coalesce(d.datname, current_database()),
       s.dbid = 0 OR d.datname = current_database(),
       coalesce(d.datallowconn, true),
       array_agg(DISTINCT r.rolname ORDER BY r.rolname)
FROM pg_shdepend s
JOIN pg_roles r ON r.oid = s.refobjid
LEFT JOIN pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype <> 'p' AND r.rolname = ANY($1)
GROUP BY 1, 2, 3`, names)
	if err != nil {
		cancel()
		return fmt.Errorf("find dependencies: %w", pgError(err))
	}
	var targets []target
	for rows.Next() {
		var t target
		if err := rows.Scan(&t.db, &t.current, &t.conn, &t.roles); err != nil {
			rows.Close()
			cancel()
			return fmt.Errorf("find dependencies: %w", err)
		}
		targets = append(targets, t)
	}
	err = rows.Err()
	cancel()
	if err != nil {
		return fmt.Errorf("find dependencies: %w", pgError(err))
	}
	// Shared and current-database entries can give two rows for one
	// database; one pass per database with the union of roles suffices.
	merged := map[string]*target{}
	var order []string
	for i := range targets {
		t := &targets[i]
		key := t.db
		if t.current {
			key = ""
		}
		if m, ok := merged[key]; ok {
			m.roles = union(m.roles, t.roles)
			continue
		}
		merged[key] = t
		order = append(order, key)
	}
	for _, key := range order {
		t := merged[key]
		if t.current {
			if err := db.teardown(ctx, conn, t.roles); err != nil {
				return fmt.Errorf("drop owned in database %s: %w", t.db, err)
			}
			continue
		}
		if !t.conn {
			return fmt.Errorf("roles own or hold objects in database %s, which allows no connections", t.db)
		}
		other, err := db.dial(ctx, db.cfg.Password, t.db)
		if err != nil {
			return fmt.Errorf("drop owned in database %s: %w", t.db, err)
		}
		err = db.teardown(ctx, other, t.roles)
		other.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("drop owned in database %s: %w", t.db, err)
		}
	}
	return nil
}

// sharedGrants lists, in the connection's database, the tables, sequences
// and schemas on which more than one of the roles holds privileges: the
// kind of object as a REVOKE names it, the object, and its holders.
const sharedGrants = `
SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text,
       array_agg(DISTINCT r.rolname ORDER BY r.rolname)
FROM pg_shdepend s
JOIN pg_roles r ON r.oid = s.refobjid
JOIN pg_class c ON c.oid = s.objid
WHERE s.refclassid = 'pg_authid'::regclass AND s.classid = 'pg_class'::regclass AND s.deptype = 'a'
  AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND r.rolname = ANY($1)
GROUP BY c.oid, c.relkind HAVING count(DISTINCT r.rolname) > 1
UNION ALL
SELECT 'SCHEMA', quote_ident(n.nspname), array_agg(DISTINCT r.rolname ORDER BY r.rolname)
FROM pg_shdepend s
JOIN pg_roles r ON r.oid = s.refobjid
JOIN pg_namespace n ON n.oid = s.objid
WHERE s.refclassid = 'pg_authid'::regclass AND s.classid = 'pg_namespace'::regclass AND s.deptype = 'a'
  AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND r.rolname = ANY($1)
GROUP BY n.oid, n.nspname HAVING count(DISTINCT r.rolname) > 1`

// teardown reassigns what roles own in conn's database to the admin and
// drops their privileges there, in one transaction.
//
// DROP OWNED removes a role's privileges one role at a time, rewriting an
// object's ACL once per role: 1,000 roles holding SELECT on one table cost
// about 0.6 s. One REVOKE naming all of them rewrites it once (about 0.07 s),
// so shared grants on tables, sequences and schemas, the common case, go
// first; DROP OWNED then removes whatever else they hold, including grants
// made by other grantors, which a superuser's REVOKE does not touch.
// Objects of one kind with the same holders share one REVOKE: each
// statement looks up every grantee by name again, and six statements of
// 1,000 grantees cost about 1.4x one statement naming the six tables.
func (db *DB) teardown(ctx context.Context, conn *pgx.Conn, roles []string) error {
	type group struct {
		kind    string
		objects []string
		holders []string
	}
	var groups []*group
	byKey := map[string]*group{}
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, sharedGrants, roles)
	if err != nil {
		cancel()
		return fmt.Errorf("find shared grants: %w", pgError(err))
	}
	for rows.Next() {
		var (
			kind, object string
			holders      []string
		)
		if err := rows.Scan(&kind, &object, &holders); err != nil {
			rows.Close()
			cancel()
			return fmt.Errorf("find shared grants: %w", err)
		}
		// Holders come sorted, and names hold no NUL.
		key := kind + "\x00" + strings.Join(holders, "\x00")
		g := byKey[key]
		if g == nil {
			g = &group{kind: kind, holders: holders}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.objects = append(g.objects, object)
	}
	err = rows.Err()
	cancel()
	if err != nil {
		return fmt.Errorf("find shared grants: %w", pgError(err))
	}
	var b strings.Builder
	for _, g := range groups {
		b.WriteString("REVOKE ALL ON " + g.kind + " " + strings.Join(g.objects, ", ") + " FROM " + identList(g.holders) + ";")
	}
	list := identList(roles)
	b.WriteString("REASSIGN OWNED BY " + list + " TO CURRENT_USER; DROP OWNED BY " + list)
	// The statements form one implicit transaction: all of them or none.
	return db.retry(ctx, func() error { return db.exec(ctx, conn, b.String()) })
}

func identList(names []string) string {
	idents := make([]string, len(names))
	for i, name := range names {
		idents[i] = pgx.Identifier{name}.Sanitize()
	}
	return strings.Join(idents, ", ")
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// retry runs fn again while it fails with a transient error: concurrent
// catalog updates (GRANTs and DROP OWNED on the same table) are routine
// when issuing and revoking overlap.
func (db *DB) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; attempt <= transientAttempts; attempt++ {
		if err = fn(); err == nil || !IsTransient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff(attempt)):
		}
	}
	return err
}

// revokeCustom runs the role's own revocation statements in a transaction,
// after disabling its login and ending its sessions. A role already gone is
// success: statements written for an existing role would only fail.
func (db *DB) revokeCustom(ctx context.Context, r RevokeRequest) error {
	stmts, err := prepare(r.Statements, map[string]string{"name": r.Username, "username": r.Username})
	if err != nil {
		return err
	}
	conn, err := db.admin(ctx)
	if err != nil {
		return err
	}
	var exists bool
	if err := db.queryRow(ctx, conn, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, []any{r.Username}, &exists); err != nil {
		return err
	}
	if !exists {
		return nil
	}
	if err := db.exec(ctx, conn, "ALTER ROLE "+pgx.Identifier{r.Username}.Sanitize()+" NOLOGIN"); err != nil {
		return fmt.Errorf("disable login: %w", err)
	}
	if err := db.terminate(ctx, conn, []string{r.Username}); err != nil {
		return err
	}
	return db.retry(ctx, func() error {
		return db.inTx(ctx, conn, func(tx pgx.Tx) error {
			return db.execEach(ctx, tx, "revocation", stmts)
		})
	})
}

var _ querier = (*pgx.Conn)(nil)
