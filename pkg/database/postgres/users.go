package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// DefaultRenewStatement and DefaultRotateRootStatement are Vault's defaults.
const (
	DefaultRenewStatement      = `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`
	DefaultRotateRootStatement = `ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}';`
)

// transientAttempts is how many times a transaction is tried when
// PostgreSQL reports a transient conflict (concurrent CREATE ROLE/GRANT on
// the same catalog rows).
const transientAttempts = 6

// backoff is the pause before retry number attempt: growing, and jittered
// so that two issuers that collided do not collide again in step.
func backoff(attempt int) time.Duration {
	base := time.Duration(attempt*attempt) * 10 * time.Millisecond
	return base + mrand.N(base)
}

// CreateUserRequest is one role to create.
type CreateUserRequest struct {
	Username   string
	Password   string
	Expiration time.Time
	// Statements are the role's creation_statements elements, unsplit.
	Statements []string
	// Comment is written with COMMENT ON ROLE in the same transaction;
	// "" writes none.
	Comment string
	// Verifier, if set, is Password's SCRAM-SHA-256 verifier, computed
	// beforehand with ScramVerifier: its 4,096 rounds of PBKDF2 take a
	// millisecond or two, which an issuer can spend while it waits for
	// the connection rather than after. It is used only where the
	// connection's config asks for SCRAM; otherwise CreateUser computes
	// what it needs.
	Verifier string

	// nameUnquoted: the statements hold {{name}} or {{username}} outside
	// double quotes (set by checkCreate, for the hint).
	nameUnquoted bool
	// lockKey identifies the creation statements as written, before
	// substitution (set by checkCreate).
	lockKey int64
}

func checkRoleName(name string) error {
	switch {
	case name == "":
		return errors.New("empty username")
	case len(name) > MaxIdentifierLength:
		return fmt.Errorf("username %q is %d bytes, over PostgreSQL's limit of %d", name, len(name), MaxIdentifierLength)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("username %q contains a NUL byte", name)
	}
	return nil
}

// prepare splits each element into statements and substitutes vals.
func prepare(elements []string, vals map[string]string) ([]string, error) {
	var out []string
	for _, e := range elements {
		for _, stmt := range SplitStatements(e) {
			s, err := substitute(stmt, vals)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// passwordValue is what {{password}} becomes: a SCRAM verifier (the one
// the request brings, if any) unless the config asks for plaintext.
func (db *DB) passwordValue(password, verifier string) (string, error) {
	if !db.cfg.scram() {
		return password, nil
	}
	if verifier != "" {
		return verifier, nil
	}
	return ScramVerifier(password, rand.Reader)
}

// CreateUser creates the role in one transaction: the creation statements,
// a check that a role named exactly r.Username now exists (an unquoted
// {{name}} would have been folded to lower case), and COMMENT ON ROLE. Any
// failure rolls it all back. Transient conflicts are retried.
func (db *DB) CreateUser(ctx context.Context, r CreateUserRequest) error {
	return db.StartCreate(ctx, r).Commit(ctx)
}

// ErrNotCreated marks a creation that certainly created nothing: it was
// refused before anything reached the server (an unsafe placeholder value,
// a bad username), so its lease need not wait for reap.
var ErrNotCreated = errors.New("no role was created")

type notCreatedError struct{ err error }

func (e *notCreatedError) Error() string   { return e.err.Error() }
func (e *notCreatedError) Unwrap() []error { return []error{e.err, ErrNotCreated} }

// Creation is a role being created by StartCreate: its transaction is
// open on the admin connection, and nothing in it is committed, or seen
// by anyone else, until Commit.
type Creation struct {
	db *DB
	r  CreateUserRequest
	// err is what StartCreate met, returned by Commit; nil with retry
	// set when it was a transient conflict, which Commit retries.
	err   error
	retry bool
	// open: BEGIN was sent and the transaction has not ended.
	open bool
	// locked: the advisory lock was taken with BEGIN.
	locked bool
	// ran is how many creation statements StartCreate ran.
	ran  int
	done bool
	// begun is when BEGIN was sent: the server's transaction_timestamp()
	// is this moment on its own clock, give or take the trip there.
	begun time.Time
}

// errTxEnded: a COMMIT or ROLLBACK among the creation statements ended
// lessor's transaction, so what ran after it is committed whatever fails
// next. It is not a definite failure: the lease stays for reap.
var errTxEnded = errors.New("creation statements ended lessor's transaction: remove COMMIT, ROLLBACK or END from creation_statements")

// StartCreate begins what CreateUser does and stops short of the commit:
// it computes the password's verifier, opens the transaction, checks
// that the name is free and runs the first creation statement. For
// Vault-style statements that is CREATE ROLE, most of the server's work
// (PostgreSQL derives a SCRAM key from the verifier to check it against
// the empty password). None of it is visible or lasting until Commit;
// Rollback, or the connection's end, undoes it.
//
// The caller makes the role's lease durable meanwhile, and calls Commit
// only once it is: so a role is never committed before its lease record,
// and the two waits overlap. Every StartCreate must be followed by Commit
// or Rollback; the DB is busy until then.
func (db *DB) StartCreate(ctx context.Context, r CreateUserRequest) *Creation {
	db.mu.Lock()
	c := &Creation{db: db, r: r}
	if err := db.checkCreate(&c.r); err != nil {
		c.err = &notCreatedError{err}
		return c
	}
	c.err = c.start(ctx, false)
	if c.err != nil && IsTransient(c.err) {
		c.err, c.retry = nil, true
		c.rollback(ctx)
	}
	return c
}

// Commit runs the rest of the creation and commits it, and returns what
// CreateUser would. A transient conflict (concurrent GRANTs on one
// object) runs the whole transaction again, waiting its turn from the
// start.
func (c *Creation) Commit(ctx context.Context) error {
	if c.done {
		return errors.New("create user: creation already ended")
	}
	defer c.end()
	err := c.err
	if err == nil && !c.retry {
		err = c.finish(ctx)
	}
	for attempt := 1; (c.retry || IsTransient(err)) && attempt < transientAttempts; attempt++ {
		c.retry = false
		c.rollback(ctx)
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return c.db.redact(fmt.Errorf("create user %s: %w", c.r.Username, err))
		case <-time.After(backoff(attempt)):
		}
		// This time creations from the same statements take turns from
		// the start: the lock is taken before the first statement.
		if err = c.start(ctx, true); err == nil {
			err = c.finish(ctx)
		}
	}
	if err == nil {
		return nil
	}
	c.rollback(ctx)
	if err == errNoRole {
		err = c.checkGone(ctx)
	}
	return c.db.redact(fmt.Errorf("create user %s: %w", c.r.Username, err))
}

// Rollback abandons the creation: nothing of it is left in PostgreSQL.
func (c *Creation) Rollback(ctx context.Context) {
	if c.done {
		return
	}
	c.rollback(ctx)
	c.end()
}

func (c *Creation) end() {
	// The creation statements ran in the session, and whether their
	// transaction committed or not, they may have undone its set-up
	// (RESET search_path, RESET ALL, or RESET ROLE after a SET ROLE of
	// theirs, brings back the database's defaults): the next use sets it
	// up again, as a pooled session's reset does anyway.
	c.db.unbound = true
	c.done = true
	c.db.mu.Unlock()
}

// rollback ends the transaction if it is still open.
func (c *Creation) rollback(ctx context.Context) {
	if !c.open {
		return
	}
	c.open = false
	conn := c.db.conn
	if conn == nil || conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return
	}
	rctx, cancel := c.db.roundTrip(context.WithoutCancel(ctx))
	defer cancel()
	_ = conn.PgConn().Exec(rctx, "ROLLBACK").Close()
}

// start opens the transaction and runs the statements that come before
// the turn on the advisory lock: the first one, on a pooled connection
// that takes its turn after it (see finish); none, if lock takes the turn
// with BEGIN; all of them without a pool, which takes no turn.
func (c *Creation) start(ctx context.Context, lock bool) error {
	c.ran = 0
	if err := c.begin(ctx, lock); err != nil {
		return err
	}
	n := len(c.r.Statements)
	switch {
	case c.db.pool == nil:
	case c.locked:
		n = 0
	default:
		n = 1
	}
	conn := c.db.conn
	for i, s := range c.r.Statements[:n] {
		if err := c.db.exec(ctx, conn, s); err != nil {
			return fmt.Errorf("creation statement %d: %w", i+1, err)
		}
		if conn.PgConn().TxStatus() != 'T' {
			return errTxEnded
		}
		c.ran = i + 1
	}
	return nil
}

// begin sends BEGIN, the advisory lock when lock is set, and the check
// that no role has the name yet, in one round trip. A role of this name
// that exists already (a template whose random part is cut off at 63
// bytes can repeat a name) would pass the check after the statements
// although they made nothing, or made a folded name: it is refused before
// they run.
func (c *Creation) begin(ctx context.Context, lock bool) error {
	// A session Connect just opened is set up in this round trip (see
	// DB.unboundBatch), not in one of its own.
	conn := c.db.conn
	if conn == nil || conn.IsClosed() || !c.db.unbound {
		var err error
		if conn, err = c.db.admin(ctx); err != nil {
			return err
		}
	}
	b := &pgconn.Batch{}
	setup := c.db.unboundBatch(b)
	b.ExecParams("BEGIN", nil, nil, nil, nil)
	c.locked = lock && c.db.pool != nil
	if c.locked {
		b.ExecParams("SELECT pg_catalog.pg_advisory_xact_lock($1::int8)", [][]byte{[]byte(strconv.FormatInt(c.r.lockKey, 10))}, nil, nil, nil)
	}
	b.ExecParams("SELECT pg_catalog.to_regrole(pg_catalog.quote_ident($1)) IS NOT NULL", [][]byte{[]byte(c.r.Username)}, nil, nil, nil)
	c.open = true
	rctx, cancel := c.db.roundTrip(ctx)
	defer cancel()
	c.begun = time.Now()
	res, err := conn.PgConn().ExecBatch(rctx, b).ReadAll()
	if err != nil {
		return pgError(err)
	}
	res, again, err := finishUnbound(conn, res, setup)
	if err != nil {
		return err
	}
	if again {
		// The session acts as another role than its login: admin
		// finishes its set-up, and the transaction starts over.
		c.rollback(ctx)
		if _, err := c.db.admin(ctx); err != nil {
			return err
		}
		return c.begin(ctx, lock)
	}
	last := res[len(res)-1]
	if len(last.Rows) != 1 || len(last.Rows[0]) != 1 {
		return errors.New("check role name: unexpected reply")
	}
	if string(last.Rows[0][0]) == "t" {
		return &notCreatedError{fmt.Errorf("role %q already exists: the username template repeated a name", c.r.Username)}
	}
	return nil
}

// finish sends the rest in one round trip: the turn on the advisory lock
// (pooled connections), the statements start did not run, COMMENT ON
// ROLE and COMMIT. Each statement is still parsed on its own; an error
// stops the server at that statement, and the transaction stays aborted
// until rolled back.
func (c *Creation) finish(ctx context.Context) error {
	conn := c.db.conn
	if conn == nil || conn.IsClosed() {
		return errors.New("the connection closed during the creation")
	}
	rest := c.r.Statements[c.ran:]
	if c.r.Comment == "" {
		// Without a comment, the role's existence is checked by a query
		// whose answer decides between COMMIT and ROLLBACK: no pipeline.
		return c.finishUncommented(ctx, rest)
	}
	b := &pgconn.Batch{}
	// The pipeline carries COMMIT: once sent, the server runs it whenever
	// the statements before it end, even after lessor gave up at ctx's
	// deadline and closed the connection (pgx does not cancel the query).
	// So the server gets the deadline too, a little before lessor's, as
	// seconds after its transaction began: past it, the statement before
	// COMMENT fails and the transaction rolls back instead of committing.
	// It is counted from transaction_timestamp(), which no creation
	// statement can change (a setting noted in the transaction, as
	// before, was lost to a RESET ALL among them, and then every issue
	// failed), on the server's clock, which need not agree with lessor's.
	// Without a pool, StartCreate ran and awaited every creation
	// statement, and no turn is taken: nothing in this pipeline waits
	// before COMMIT, and a command's issue is spared the check.
	var createBy []byte
	if dl, ok := ctx.Deadline(); ok && (len(rest) > 0 || c.db.pool != nil) {
		left := time.Until(dl)
		left -= min(time.Second, left/4)
		createBy = []byte(strconv.FormatFloat(max(time.Since(c.begun)+left, 0).Seconds(), 'f', 6, 64))
	}
	bounded := createBy != nil
	// A server issues for one role many times at once, and PostgreSQL
	// answers concurrent GRANTs on one table with "tuple concurrently
	// updated" rather than a wait: on a pooled connection, creations from
	// the same statements take turns on an advisory lock, held until the
	// transaction ends, so they queue instead of failing and retrying. (A
	// command issues once, and retries.) The turn is taken after the first
	// statement, CREATE ROLE for Vault's statements, which only adds rows
	// and is the costly one, so concurrent creations run it side by side;
	// and it is held for the server's own work and the commit, never
	// across a round trip to lessor.
	locked := c.db.pool != nil && !c.locked
	if locked {
		b.ExecParams("SELECT pg_catalog.pg_advisory_xact_lock($1::int8)", [][]byte{[]byte(strconv.FormatInt(c.r.lockKey, 10))}, nil, nil, nil)
	}
	for _, s := range rest {
		b.ExecParams(s, nil, nil, nil, nil)
	}
	// The role must exist under exactly its name: an unquoted {{name}}
	// folds it to lower case. COMMENT ON ROLE names it quoted, so it
	// fails on a folded name and is the check. (pg_roles would do too,
	// but planning that view just after CREATE ROLE invalidated the
	// catalog caches took 1.5-2.5 ms of a 20 ms issue.)
	if bounded {
		// Division by zero past the deadline. Seconds since the epoch:
		// no DateStyle, TimeZone or IntervalStyle a creation statement
		// sets changes the arithmetic.
		b.ExecParams("SELECT pg_catalog.int4div(1, pg_catalog.int4(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.<) (pg_catalog.date_part('epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.+) $1::pg_catalog.float8)))",
			[][]byte{createBy}, nil, nil, nil)
	}
	b.ExecParams("COMMENT ON ROLE "+pgx.Identifier{c.r.Username}.Sanitize()+" IS "+quoteLiteral(c.r.Comment), nil, nil, nil, nil)
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	// Each statement of the pipeline has the server's statement_timeout;
	// the client's bound covers them all.
	rctx, cancel := context.WithTimeout(ctx, time.Duration(len(rest)+2)*c.db.cfg.statementTimeout()+2*time.Second)
	defer cancel()
	res, err := conn.PgConn().ExecBatch(rctx, b).ReadAll()
	if locked {
		if len(res) == 0 {
			return pgError(err) // the turn itself failed
		}
		res = res[1:]
	}
	for i := range min(len(res), len(rest)) {
		if endsTx(res[i].CommandTag) {
			// What ran after it ran outside lessor's transaction.
			return errTxEnded
		}
	}
	if err == nil {
		c.open = false
		if conn.PgConn().TxStatus() != 'I' {
			return errors.New("the creation's transaction did not end at its COMMIT")
		}
		return nil
	}
	var pe *pgconn.PgError
	n := len(res)
	if bounded && n > len(rest) {
		n-- // the deadline's check went through
	}
	switch {
	case !errors.As(err, &pe):
		// The connection broke: whether COMMIT reached the server is
		// unknown.
		return pgError(err)
	case n < len(rest):
		return fmt.Errorf("creation statement %d: %w", c.ran+n+1, pgError(err))
	case bounded && len(res) == len(rest):
		// Rolled back: nothing of it was committed.
		return fmt.Errorf("the creation's deadline passed before its commit: %w", pgError(err))
	case n == len(rest):
		if pe.Code == "42704" { // undefined_object
			return errNoRole
		}
		return fmt.Errorf("comment on role: %w", pgError(err))
	default:
		return pgError(err)
	}
}

// endsTx tells whether a statement's command tag says it ended the
// transaction (END answers COMMIT, ABORT answers ROLLBACK).
func endsTx(tag pgconn.CommandTag) bool {
	return tag.String() == "COMMIT" || tag.String() == "ROLLBACK" || tag.String() == "PREPARE TRANSACTION"
}

// finishUncommented runs the rest one statement at a time, checks that
// the role exists under its exact name, and commits only if it does.
func (c *Creation) finishUncommented(ctx context.Context, rest []string) error {
	conn := c.db.conn
	if c.db.pool != nil && !c.locked {
		if err := c.db.exec(ctx, conn, "SELECT pg_catalog.pg_advisory_xact_lock("+strconv.FormatInt(c.r.lockKey, 10)+")"); err != nil {
			return err
		}
	}
	for i, s := range rest {
		if err := c.db.exec(ctx, conn, s); err != nil {
			return fmt.Errorf("creation statement %d: %w", c.ran+i+1, err)
		}
		if conn.PgConn().TxStatus() != 'T' {
			return errTxEnded
		}
	}
	var exists bool
	if err := c.db.queryRow(ctx, conn, `SELECT pg_catalog.to_regrole(pg_catalog.quote_ident($1)) IS NOT NULL`, []any{c.r.Username}, &exists); err != nil {
		return err
	}
	if !exists {
		return errNoRole
	}
	rctx, cancel := c.db.roundTrip(ctx)
	defer cancel()
	c.open = false
	if err := conn.PgConn().Exec(rctx, "COMMIT").Close(); err != nil {
		return pgError(err)
	}
	return nil
}

// checkGone runs after the statements ran without error but made no role
// of this name, and the transaction was rolled back. It checks outside
// the transaction that no such role exists before calling the failure
// definite (which discards the pending lease): if the check cannot run,
// the lease stays.
func (c *Creation) checkGone(ctx context.Context) error {
	conn := c.db.conn
	if conn == nil || conn.IsClosed() {
		return fmt.Errorf("creation statements did not create role %q; check after rollback: the connection closed", c.r.Username)
	}
	// The rollback undid a set-up begin made (see DB.unboundBatch).
	conn, err := c.db.admin(ctx)
	if err != nil {
		return fmt.Errorf("creation statements did not create role %q; check after rollback: %w", c.r.Username, err)
	}
	var n int
	if qerr := c.db.queryRow(ctx, conn, `SELECT pg_catalog.count(*) FROM pg_roles WHERE rolname = $1`, []any{c.r.Username}, &n); qerr != nil {
		return fmt.Errorf("creation statements did not create role %q; check after rollback: %w", c.r.Username, qerr)
	}
	if n != 0 {
		return fmt.Errorf("creation statements did not create role %q in lessor's transaction, yet it exists", c.r.Username)
	}
	return &notCreatedError{notCreated(c.r)}
}

// checkCreate refuses a request before any round trip and substitutes the
// statements into r.Statements.
func (db *DB) checkCreate(r *CreateUserRequest) error {
	if err := checkRoleName(r.Username); err != nil {
		return err
	}
	if len(r.Statements) == 0 {
		return errors.New("empty creation statements")
	}
	pw, err := db.passwordValue(r.Password, r.Verifier)
	if err != nil {
		return err
	}
	vals := map[string]string{
		"name":       r.Username,
		"username":   r.Username,
		"password":   pw,
		"expiration": FormatExpiration(r.Expiration),
	}
	r.nameUnquoted = nameOutsideQuotes(r.Statements)
	h := fnv.New64a()
	h.Write([]byte("lessor create\x00" + strings.Join(r.Statements, "\x00")))
	r.lockKey = int64(h.Sum64())
	stmts, err := prepare(r.Statements, vals)
	if err != nil {
		return err
	}
	if len(stmts) == 0 {
		return errors.New("empty creation statements")
	}
	if strings.IndexByte(r.Comment, 0) >= 0 {
		return errors.New("comment contains a NUL byte")
	}
	r.Statements = stmts
	return nil
}

// errNoRole is finish's signal, inside the transaction, that the
// statements made no role of the name they were given.
var errNoRole = errors.New("no role of that name")

// notCreated says that creation statements ran but made no role of the
// name they were given, with the hint about quoting only when an
// unquoted name explains it: PostgreSQL folded it to lower case.
func notCreated(r CreateUserRequest) error {
	if r.nameUnquoted && strings.ToLower(r.Username) != r.Username {
		return fmt.Errorf("creation statements did not create role %q: write \"{{name}}\" in double quotes", r.Username)
	}
	return fmt.Errorf("creation statements ran but did not create role %q", r.Username)
}

// nameOutsideQuotes reports whether {{name}} or {{username}} stands in
// plain SQL (not inside "…", '…' or a comment) in any statement, looking
// into dollar-quoted bodies too, since a DO block's body is SQL again.
func nameOutsideQuotes(elements []string) bool {
	var inPlain func(stmt string) bool
	inPlain = func(stmt string) bool {
		for _, t := range lex(stmt) {
			switch t.kind {
			case tokPlain:
				if strings.Contains(t.text, "{{name}}") || strings.Contains(t.text, "{{username}}") {
					return true
				}
			case tokDollar:
				body := strings.TrimSuffix(t.text[len(t.tag):], t.tag)
				if inPlain(body) {
					return true
				}
			}
		}
		return false
	}
	for _, e := range elements {
		for _, stmt := range SplitStatements(e) {
			if inPlain(stmt) {
				return true
			}
		}
	}
	return false
}

// quoteLiteral writes s as an E'…' literal, which means the same whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// inTx runs fn in a transaction on conn, committing when fn succeeds.
func (db *DB) inTx(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	rctx, cancel := db.roundTrip(ctx)
	tx, err := conn.Begin(rctx)
	cancel()
	if err != nil {
		return pgError(err)
	}
	if err := fn(tx); err != nil {
		rctx, cancel := db.roundTrip(context.WithoutCancel(ctx))
		_ = tx.Rollback(rctx)
		cancel()
		return err
	}
	rctx, cancel = db.roundTrip(ctx)
	defer cancel()
	if err := tx.Commit(rctx); err != nil {
		return pgError(err)
	}
	return nil
}

// querier is what a connection and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// exec runs one statement with the client-side round-trip bound.
func (db *DB) exec(ctx context.Context, q querier, sql string, args ...any) error {
	rctx, cancel := db.roundTrip(ctx)
	defer cancel()
	_, err := q.Exec(rctx, sql, args...)
	return pgError(err)
}

// execEach runs statements in order, naming the one that fails by its
// kind and number ("creation statement 2: …"). They are the operator's,
// and may undo the session's set-up (RESET search_path, RESET ALL, or
// RESET ROLE after a SET ROLE of theirs, brings back the database's
// defaults): the next use of the connection sets it up again. Call with
// db.mu held.
func (db *DB) execEach(ctx context.Context, q querier, kind string, stmts []string) error {
	db.unbound = true
	for i, s := range stmts {
		if err := db.exec(ctx, q, s); err != nil {
			return fmt.Errorf("%s statement %d: %w", kind, i+1, err)
		}
	}
	return nil
}

func (db *DB) queryRow(ctx context.Context, q querier, sql string, args []any, dest ...any) error {
	rctx, cancel := db.roundTrip(ctx)
	defer cancel()
	// Exec mode sends parse, bind and execute in one round trip; the
	// default would first prepare and describe the statement, a second
	// round trip that a one-command connection never gets back.
	args = append([]any{pgx.QueryExecModeExec}, args...)
	return pgError(q.QueryRow(rctx, sql, args...).Scan(dest...))
}

// ErrNotMine: a role of the lease's name exists, but its COMMENT ON ROLE
// does not name the lease, so it is not the lease's role to change.
var ErrNotMine = errors.New("the role of that name is not this lease's")

// RenewUser moves the role's expiry, in one transaction. belongs, when set,
// must claim the role's COMMENT ON ROLE first (see RevokeRequest.Belongs):
// a role of the same name that is not the lease's (its role was dropped,
// and someone made another) is never changed. With the default statement
// it reads rolvaliduntil back and checks it within a second.
func (db *DB) RenewUser(ctx context.Context, username string, expiration time.Time, statements []string, belongs func(comment string) bool) error {
	if err := db.renewUser(ctx, username, expiration, statements, belongs); err != nil {
		return db.redact(fmt.Errorf("renew user %s: %w", username, err))
	}
	return nil
}

func (db *DB) renewUser(ctx context.Context, username string, expiration time.Time, statements []string, belongs func(comment string) bool) error {
	if err := checkRoleName(username); err != nil {
		return err
	}
	isDefault := len(statements) == 0
	if isDefault {
		statements = []string{DefaultRenewStatement}
	}
	stmts, err := prepare(statements, map[string]string{
		"name":       username,
		"username":   username,
		"expiration": FormatExpiration(expiration),
	})
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	conn, err := db.admin(ctx)
	if err != nil {
		return err
	}
	return db.inTx(ctx, conn, func(tx pgx.Tx) error {
		if belongs != nil {
			var comment string
			err := db.queryRow(ctx, tx, `SELECT coalesce((SELECT d.description FROM pg_catalog.pg_shdescription d WHERE d.objoid = a.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid), '') FROM pg_roles a WHERE a.rolname = $1`, []any{username}, &comment)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("role %q does not exist", username)
			case err != nil:
				return err
			case !belongs(comment):
				return ErrNotMine
			}
		}
		if err := db.execEach(ctx, tx, "renew", stmts); err != nil {
			return err
		}
		if !isDefault {
			return nil
		}
		// Read as whole seconds since 1970: queryRow's results come as
		// text, and the text of a timestamptz is in the session's
		// DateStyle, which the database, the admin role or the server may
		// set to one ("09/12/2026 16:00:00 UTC") no parser reads back.
		var until pgtype.Int8
		if err := db.queryRow(ctx, tx, `SELECT CASE WHEN pg_catalog.isfinite(rolvaliduntil) THEN pg_catalog.floor(pg_catalog.date_part('epoch', rolvaliduntil))::pg_catalog.int8 END FROM pg_roles WHERE rolname = $1`, []any{username}, &until); err != nil {
			return err
		}
		if !until.Valid {
			return fmt.Errorf("rolvaliduntil reads back as none or infinity, not %s", FormatExpiration(expiration))
		}
		if got := time.Unix(until.Int64, 0); absDuration(got.Sub(expiration)) > time.Second {
			return fmt.Errorf("rolvaliduntil reads back as %s, not %s", FormatExpiration(got), FormatExpiration(expiration))
		}
		return nil
	})
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// RotateRootPassword sets the admin role's password to newPassword (by
// default with ALTER ROLE, as a SCRAM verifier under scram-sha-256), then
// proves that a fresh login with it works. If that login fails, the old
// password is put back so the tool is not locked out, and the error says so.
// On success the DB uses the new password for every later connection.
func (db *DB) RotateRootPassword(ctx context.Context, newPassword string, statements []string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.addSecret(newPassword)
	if err := db.rotateRoot(ctx, newPassword, statements); err != nil {
		return db.redact(fmt.Errorf("rotate root password of %s: %w", db.cfg.Username, err))
	}
	return nil
}

func (db *DB) rotateRoot(ctx context.Context, newPassword string, statements []string) error {
	if db.cfg.Username == "" {
		return errors.New("no username in configuration")
	}
	if db.cfg.Password == "" {
		return errors.New("no password in configuration")
	}
	if newPassword == "" {
		return errors.New("empty new password")
	}
	if len(statements) == 0 {
		statements = []string{DefaultRotateRootStatement}
	}
	setPassword := func(password string, statements []string) error {
		pw, err := db.passwordValue(password, "")
		if err != nil {
			return err
		}
		stmts, err := prepare(statements, map[string]string{
			"name":     db.cfg.Username,
			"username": db.cfg.Username,
			"password": pw,
		})
		if err != nil {
			return err
		}
		conn, err := db.admin(ctx)
		if err != nil {
			return err
		}
		return db.inTx(ctx, conn, func(tx pgx.Tx) error {
			return db.execEach(ctx, tx, "rotation", stmts)
		})
	}
	if err := setPassword(newPassword, statements); err != nil {
		return err
	}
	fresh, err := db.dial(ctx, newPassword, "")
	if err != nil {
		// The admin connection is still logged in with the old password:
		// use it to undo the change, with the default statement, as the
		// custom ones may be what went wrong.
		if rerr := setPassword(db.cfg.Password, []string{DefaultRotateRootStatement}); rerr != nil {
			return fmt.Errorf("login with the new password failed (%w) and restoring the old password failed too: %v", err, rerr)
		}
		return fmt.Errorf("login with the new password failed, old password restored: %w", err)
	}
	old := db.conn
	db.conn, db.unbound = fresh, false
	db.cfg.Password = newPassword
	if old != nil {
		old.Close(context.WithoutCancel(ctx))
	}
	return nil
}

// ManagedRole is a role found by its comment.
type ManagedRole struct {
	Name    string
	Comment string
	// ValidUntil is the role's rolvaliduntil; nil when it has none (or it
	// is infinity).
	ValidUntil *time.Time
}

// ListRolesWithCommentPrefix returns the roles whose COMMENT ON ROLE starts
// with prefix, ordered by name: the roles lessor made, even when its own
// records of them are lost.
func (db *DB) ListRolesWithCommentPrefix(ctx context.Context, prefix string) ([]ManagedRole, error) {
	roles, err := db.listRoles(ctx, prefix)
	if err != nil {
		return nil, db.redact(fmt.Errorf("list roles with comment prefix %q: %w", prefix, err))
	}
	return roles, nil
}

func (db *DB) listRoles(ctx context.Context, prefix string) ([]ManagedRole, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	conn, err := db.admin(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := db.roundTrip(ctx)
	defer cancel()
	rows, err := conn.Query(rctx, `
SELECT r.rolname, d.description, r.rolvaliduntil
FROM pg_roles r
JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE pg_catalog.left(d.description, pg_catalog.length($1)) = $1
ORDER BY r.rolname`, prefix)
	if err != nil {
		return nil, pgError(err)
	}
	var out []ManagedRole
	for rows.Next() {
		var (
			m     ManagedRole
			until pgtype.Timestamptz
		)
		if err := rows.Scan(&m.Name, &m.Comment, &until); err != nil {
			rows.Close()
			return nil, err
		}
		if until.Valid && until.InfinityModifier == pgtype.Finite {
			t := until.Time.UTC()
			m.ValidUntil = &t
		}
		out = append(out, m)
	}
	return out, pgError(rows.Err())
}

// AdminCheck is what the admin may do on the server, as seen when a
// connection is configured.
type AdminCheck struct {
	// ServerVersion is the server's server_version, e.g. "17.10".
	ServerVersion string
	// User is the role the admin connection logs in as.
	User       string
	Superuser  bool
	CreateRole bool
	// Verdict is "superuser", "createrole" (on PostgreSQL 16+ "createrole
	// (revokes the roles it created)") or "cannot create roles".
	Verdict string
	// Warnings say what the admin lacks and the statement that gives it.
	Warnings []string
}

// CheckAdmin reads the admin's attributes and says whether it can create
// and revoke roles on this server version.
func (db *DB) CheckAdmin(ctx context.Context) (AdminCheck, error) {
	c, err := db.checkAdmin(ctx)
	if err != nil {
		return c, db.redact(fmt.Errorf("check admin privileges: %w", err))
	}
	return c, nil
}

func (db *DB) checkAdmin(ctx context.Context) (AdminCheck, error) {
	var c AdminCheck
	db.mu.Lock()
	defer db.mu.Unlock()
	conn, err := db.admin(ctx)
	if err != nil {
		return c, err
	}
	// The privileges are those of the role the connection acts as, which
	// role= in its options may make another than the login, session_user.
	var acting string
	err = db.queryRow(ctx, conn, `SELECT pg_catalog.current_setting('server_version'), session_user, current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user`,
		nil, &c.ServerVersion, &c.User, &acting, &c.Superuser, &c.CreateRole)
	if err != nil {
		return c, err
	}
	admin := pgx.Identifier{acting}.Sanitize()
	switch {
	case c.Superuser:
		c.Verdict = "superuser"
	case c.CreateRole:
		c.Verdict = "createrole"
		if db.version >= 160000 {
			// Its CREATE ROLE gives it ADMIN OPTION, which DROP ROLE needs.
			c.Verdict = "createrole (revokes the roles it created)"
		}
	default:
		c.Verdict = "cannot create roles"
		c.Warnings = append(c.Warnings, fmt.Sprintf("admin %s has neither SUPERUSER nor CREATEROLE, so it can neither create nor revoke roles; fix: ALTER ROLE %s CREATEROLE", admin, admin))
	}
	return c, nil
}

// RoleComments returns, for each of names that exists as a role, its
// COMMENT ON ROLE ("" when it has none); names that are not roles are
// absent from the map. One query, whatever the number of names.
func (db *DB) RoleComments(ctx context.Context, names []string) (map[string]string, error) {
	out, err := db.roleComments(ctx, names)
	if err != nil {
		return nil, db.redact(fmt.Errorf("read role comments: %w", err))
	}
	return out, nil
}

// roleComments reads the comments of the roles names, by name. Each is one
// index lookup in pg_shdescription, as in revokeCatalog.
func (db *DB) roleComments(ctx context.Context, names []string) (map[string]string, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	conn, err := db.admin(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := db.roundTrip(ctx)
	defer cancel()
	rows, err := conn.Query(rctx, `
SELECT r.rolname, coalesce((SELECT d.description FROM pg_catalog.pg_shdescription d
        WHERE d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid), '')
FROM pg_catalog.pg_roles r WHERE r.rolname = ANY($1::pg_catalog.name[])`, names)
	if err != nil {
		return nil, pgError(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			rows.Close()
			return nil, err
		}
		out[name] = comment
	}
	return out, pgError(rows.Err())
}
