package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultStaticRotationStatement sets a static role's password, Vault's
// default.
const DefaultStaticRotationStatement = `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`

// RoleInfo is what SetPassword's callers need to know about an existing
// role before they manage it.
type RoleInfo struct {
	Exists   bool
	CanLogin bool
	// Comment is the role's COMMENT ON ROLE, "" when it has none.
	Comment string
	// AlterDenied, when not "", says why the admin may not set the role's
	// password with ALTER ROLE, and how to fix it.
	AlterDenied string
	// IsAdmin: the role is the one the admin connection logs in as, or
	// the one it acts as.
	IsAdmin bool
	// Cluster identifies the server the role lives on (its system
	// identifier): two connection configs that reach one server see the
	// same roles. "" when the admin may not read it.
	Cluster string
}

// LookupRole reads whether a role exists, whether it may log in, and its
// comment.
func (db *DB) LookupRole(ctx context.Context, username string) (RoleInfo, error) {
	var ri RoleInfo
	if err := checkRoleName(username); err != nil {
		return ri, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	conn, err := db.admin(ctx)
	if err != nil {
		return ri, db.redact(err)
	}
	var p alterPrivileges
	var controlData bool
	var login string
	err = db.queryRow(ctx, conn, `
SELECT r.rolcanlogin, coalesce((SELECT d.description FROM pg_catalog.pg_shdescription d WHERE d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid), ''),
       r.rolsuper, r.rolreplication, session_user, a.rolname, a.rolsuper, a.rolcreaterole,
       pg_catalog.pg_has_role(r.oid, 'USAGE WITH ADMIN OPTION'), pg_catalog.current_setting('server_version_num')::int,
       pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
FROM pg_roles r, pg_roles a WHERE r.rolname = $1 AND a.rolname = current_user`,
		[]any{username}, &ri.CanLogin, &ri.Comment,
		&p.targetSuper, &p.targetReplication, &login, &p.admin, &p.adminSuper, &p.adminCreateRole, &p.adminOption, &p.version, &controlData)
	if errors.Is(err, pgx.ErrNoRows) {
		return RoleInfo{}, nil
	}
	if err != nil {
		return ri, db.redact(fmt.Errorf("look up role %s: %w", username, err))
	}
	p.target = username
	// The login counts as the admin too when role= in the connection's
	// options makes it act as another role: a new password for it would
	// lock the connection out all the same.
	ri.Exists, ri.AlterDenied, ri.IsAdmin = true, p.denied(), p.admin == username || login == username
	if controlData {
		// A query of its own: PostgreSQL checks the privilege on every
		// function a statement names before it runs any of it.
		if err := db.queryRow(ctx, conn, `SELECT system_identifier::text FROM pg_catalog.pg_control_system()`, nil, &ri.Cluster); err != nil {
			return ri, db.redact(fmt.Errorf("look up role %s: %w", username, err))
		}
	}
	return ri, nil
}

// alterPrivileges is what decides whether the admin may set a role's
// password: PostgreSQL's rules for ALTER ROLE … PASSWORD differ by version.
type alterPrivileges struct {
	target, admin                  string
	targetSuper, targetReplication bool
	adminSuper, adminCreateRole    bool
	adminOption                    bool // ADMIN OPTION on the target, direct or inherited
	version                        int
}

// denied says why the admin may not set the target's password, with the
// statement that fixes it, or "" when it may.
func (p alterPrivileges) denied() string {
	admin, target := pgx.Identifier{p.admin}.Sanitize(), pgx.Identifier{p.target}.Sanitize()
	switch {
	case p.adminSuper:
		return ""
	case p.targetSuper:
		return fmt.Sprintf("role %s is a superuser, whose password only a superuser admin may set", target)
	case !p.adminCreateRole:
		return fmt.Sprintf("admin %s lacks CREATEROLE, which setting another role's password needs; fix: ALTER ROLE %s CREATEROLE", admin, admin)
	case p.version < 160000 && p.targetReplication:
		return fmt.Sprintf("role %s has REPLICATION, whose password only a superuser admin may set before PostgreSQL 16", target)
	case p.version >= 160000 && !p.adminOption:
		return fmt.Sprintf("admin %s lacks ADMIN OPTION on %s, which setting its password needs on PostgreSQL 16 and later; fix: as a superuser, GRANT %s TO %s WITH ADMIN OPTION", admin, target, target, admin)
	}
	return ""
}

// SetPassword gives an existing role a new password with statements
// (default DefaultStaticRotationStatement), in one transaction; under
// scram-sha-256 {{password}} becomes a SCRAM verifier, so the password
// itself never reaches the server.
func (db *DB) SetPassword(ctx context.Context, username, password string, statements []string) error {
	if err := checkRoleName(username); err != nil {
		return err
	}
	if password == "" {
		return errors.New("empty password")
	}
	if len(statements) == 0 {
		statements = []string{DefaultStaticRotationStatement}
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.addSecret(password)
	pw, err := db.passwordValue(password, "")
	if err != nil {
		return err
	}
	stmts, err := prepare(statements, map[string]string{"name": username, "username": username, "password": pw})
	if err != nil {
		return &notCreatedError{err}
	}
	conn, err := db.admin(ctx)
	if err != nil {
		return db.redact(err)
	}
	err = db.inTx(ctx, conn, func(tx pgx.Tx) error { return db.execRotation(ctx, tx, stmts) })
	if err != nil {
		return db.redact(fmt.Errorf("set password of %s: %w", username, passwordAdminHint(err, username, db.cfg.Username, db.version)))
	}
	return nil
}

// ErrRotationTxEnded: a COMMIT, ROLLBACK or END among the rotation
// statements ended lessor's transaction, so what ran before it may be
// committed whatever failed after it. It is no PostgreSQL error, so its
// callers do not take it for a rotation that certainly rolled back: the
// new password stays pending, and a login with it tells which one
// PostgreSQL holds.
var ErrRotationTxEnded = errors.New("rotation statements ended lessor's transaction: remove COMMIT, ROLLBACK or END from rotation_statements")

// rotationSavepoint is set, in a round trip of its own, before a role's
// rotation statements. Statements that end the transaction and begin
// another (COMMIT AND CHAIN) leave the connection in a transaction, as if
// they had not, but without it: its release, or a rollback to it, then
// fails with "savepoint does not exist". (Set in the statements' own
// round trip, it would be missing too when they failed to parse, as
// PostgreSQL parses the whole text before it runs any of it.)
const rotationSavepoint = "lessor_rotation"

// savepointGone reports whether err is PostgreSQL's "savepoint does not
// exist" (invalid_savepoint_specification).
func savepointGone(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3B001"
}

// execRotation is execEach for rotation statements, stopping with
// ErrRotationTxEnded as soon as one of them ends the transaction, failed
// or not (a statement failing after a COMMIT fails outside it), or when
// they ended it and began another (rotationSavepoint).
func (db *DB) execRotation(ctx context.Context, tx pgx.Tx, stmts []string) error {
	db.unbound = true
	if err := db.exec(ctx, tx, "SAVEPOINT "+rotationSavepoint); err != nil {
		return err
	}
	for i, s := range stmts {
		if i == len(stmts)-1 {
			// With the last statement, in its round trip; on a line of
			// its own, so that a trailing -- comment cannot swallow it.
			s += "\n;\nRELEASE SAVEPOINT " + rotationSavepoint
		}
		err := db.exec(ctx, tx, s)
		if tx.Conn().PgConn().TxStatus() == 'I' {
			return ErrRotationTxEnded
		}
		if err != nil {
			if savepointGone(db.exec(ctx, tx, "ROLLBACK TO SAVEPOINT "+rotationSavepoint)) {
				return ErrRotationTxEnded
			}
			return fmt.Errorf("rotation statement %d: %w", i+1, err)
		}
	}
	return nil
}

// passwordAdminHint adds to a refused password change what the admin
// needs, and the statement that gives it.
func passwordAdminHint(err error, role, admin string, version int) error {
	if sqlState(err) != "42501" {
		return err
	}
	r, a := pgx.Identifier{role}.Sanitize(), pgx.Identifier{admin}.Sanitize()
	if version >= 160000 {
		return &PrivilegeError{msg: fmt.Sprintf("%v; setting another role's password needs CREATEROLE and ADMIN OPTION on it from PostgreSQL 16; fix: as a superuser, GRANT %s TO %s WITH ADMIN OPTION", err, r, a), err: err}
	}
	return &PrivilegeError{msg: fmt.Sprintf("%v; setting another role's password needs CREATEROLE (and a superuser for a SUPERUSER or REPLICATION role); fix: ALTER ROLE %s CREATEROLE", err, a), err: err}
}

// LoginResult says what PostgreSQL made of a password.
type LoginResult int

const (
	// LoginUnknown: the attempt failed for a reason that says nothing
	// about the password (network, pg_hba, a role that may not log in).
	LoginUnknown LoginResult = iota
	// LoginAccepted: the password authenticated.
	LoginAccepted
	// LoginRefused: PostgreSQL refused the password (28P01).
	LoginRefused
)

// TryLogin logs in as username with password, where the admin
// connection of cfg logs in, and reports whether PostgreSQL accepted the
// password. A login refused only for lack of CONNECT on the database
// (42501) got past authentication, so it counts as accepted. err says why
// when the result is LoginUnknown; it never holds the password.
func TryLogin(ctx context.Context, cfg Config, username, password string) (LoginResult, error) {
	cc, err := cfg.connConfig(cfg.Password)
	if err != nil {
		return LoginUnknown, err
	}
	cc.User, cc.Password = username, password
	ctx, cancel := context.WithTimeout(ctx, cfg.connectTimeout())
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		conn.Close(context.WithoutCancel(ctx))
		return LoginAccepted, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01":
			return LoginRefused, nil
		case "42501":
			return LoginAccepted, nil
		}
	}
	return LoginUnknown, Redact(connectError(cc, err), password, cfg.Password)
}

// PasswordChange is one role's new password, for SetPasswords.
type PasswordChange struct {
	Username, Password string
	// Statements are the role's rotation statements; empty means
	// DefaultStaticRotationStatement.
	Statements []string
}

// SetPasswords sets many roles' passwords in one transaction, each
// role's statements in a savepoint of their own: a role whose statements
// fail is rolled back alone, and the rest commit together, with one
// commit (one WAL flush) for all. It returns one error per change (nil:
// committed). An error from the server about a role's own statements
// means that role's change certainly rolled back; the commit's own
// failure is given to every change that had none.
func (db *DB) SetPasswords(ctx context.Context, changes []PasswordChange) []error {
	errs := make([]error, len(changes))
	stmts := make([][]string, len(changes))
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, c := range changes {
		db.addSecret(c.Password)
	}
	// The verifiers (4,096 PBKDF2 rounds each) are computed on every CPU.
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(runtime.GOMAXPROCS(0), len(changes)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(changes); i = int(next.Add(1) - 1) {
				c := changes[i]
				if err := checkRoleName(c.Username); err != nil {
					errs[i] = &notCreatedError{err}
					continue
				}
				if c.Password == "" {
					errs[i] = &notCreatedError{errors.New("empty password")}
					continue
				}
				pw, err := db.passwordValue(c.Password, "")
				if err != nil {
					errs[i] = &notCreatedError{err}
					continue
				}
				elems := c.Statements
				if len(elems) == 0 {
					elems = []string{DefaultStaticRotationStatement}
				}
				if stmts[i], err = prepare(elems, map[string]string{"name": c.Username, "username": c.Username, "password": pw}); err != nil {
					errs[i] = &notCreatedError{err}
				}
			}
		})
	}
	wg.Wait()
	pending := 0
	for _, err := range errs {
		if err == nil {
			pending++
		}
	}
	if pending == 0 {
		return errs
	}
	fail := func(err error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	conn, err := db.admin(ctx)
	if err != nil {
		fail(db.redact(err))
		return errs
	}
	// The rotation statements may undo the session's set-up (see execEach).
	db.unbound = true
	err = db.inTx(ctx, conn, func(tx pgx.Tx) error {
		if err := db.exec(ctx, tx, "SAVEPOINT "+rotationSavepoint); err != nil {
			return err
		}
		for i, c := range changes {
			if errs[i] != nil {
				continue
			}
			// One round trip per role: without arguments, pgx sends the
			// statements as one simple query, which stops at the first
			// error, leaving the savepoint to roll back to (which keeps
			// it for the next role); else it is released and set again
			// for the next role, in the same round trip.
			// Each statement ends on a line of its own, so that a
			// trailing -- comment cannot swallow the separator.
			q := strings.Join(stmts[i], "\n;\n") + "\n;\nRELEASE SAVEPOINT " + rotationSavepoint + ";\nSAVEPOINT " + rotationSavepoint
			err := db.exec(ctx, tx, q)
			// This role's statements ended the transaction (and maybe
			// began another, which took the savepoint with it): the
			// changes before theirs, and maybe theirs, are committed,
			// whatever failed after. None of them is known to have
			// rolled back.
			ended := tx.Conn().PgConn().TxStatus() == 'I'
			var rerr error
			if err != nil && !ended {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) {
					return err
				}
				rerr = db.exec(ctx, tx, "ROLLBACK TO SAVEPOINT "+rotationSavepoint)
				ended = savepointGone(rerr)
			}
			if ended {
				errs[i] = fmt.Errorf("set password of %s: %w", c.Username, ErrRotationTxEnded)
				return ErrRotationTxEnded
			}
			if err != nil {
				errs[i] = db.redact(fmt.Errorf("set password of %s: rotation statements: %w", c.Username, passwordAdminHint(err, c.Username, db.cfg.Username, db.version)))
				if rerr != nil {
					return rerr
				}
			}
		}
		return nil
	})
	if err != nil {
		fail(db.redact(fmt.Errorf("set passwords: %w", err)))
	}
	return errs
}
