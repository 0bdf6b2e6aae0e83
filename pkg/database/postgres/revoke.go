package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RevokeRequest is one role to revoke. Without Statements the default
// revocation runs; with them, they run in one transaction with {{name}} and
// {{username}} set.
type RevokeRequest struct {
	Username   string
	Statements []string
	// Belongs, when set, tells from the role's COMMENT ON ROLE ("" for
	// none) whether the role is the one the request means. A role it does
	// not claim is left alone and the request succeeds: the role it meant
	// is gone, and this one has the same name but belongs to another lease
	// (a username template without a random part) or was never lessor's.
	Belongs func(comment string) bool
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
//  1. ALTER ROLE … NOLOGIN for each role that could still log in (its
//     VALID UNTIL has not passed) or has a session open, as one catalog
//     query tells;
//  2. pg_terminate_backend for every session logged in as one of them,
//     as pg_stat_activity shows them after step 1 committed (a login
//     since the catalog query is among them);
//  3. in every database where pg_shdepend shows one of them owning or
//     holding anything (and in the admin's database for shared objects):
//     each ACL entry revoked as its grantor, and, only for roles that own
//     or hold anything else, DROP OWNED BY … (see teardown): what a
//     credential created goes with it, never to the admin, where a
//     SECURITY DEFINER function or a trigger it planted would run with the
//     admin's privileges. Works for a superuser and a CREATEROLE admin;
//  4. DROP ROLE IF EXISTS …;
//  5. any session still running as one of the dropped roles, found by
//     oid, is ended: one a login not bound by VALID UNTIL opened for a
//     role that skipped step 1 (expired, no session), or one that started
//     too late to show in step 2.
//
// A role whose grants the admin cannot revoke (granted by a role whose
// privileges it cannot use) is left in place, unable to log in, with a
// *PrivilegeError naming the grantor and the statement that would fix it;
// so is a role that owns a database or tablespace, or whose objects other
// roles' objects depend on, with an error saying what to drop or re-own.
// Such a role keeps only what the admin could not take: its other grants,
// the default privileges that grant to it or that it set (see teardown),
// and its memberships go (see disarm), or a SECURITY DEFINER function of
// its would go on using them for whoever calls it, and so does the LOGIN
// of an expired one, which step 1 skipped.
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
	// mine: does a default request for name claim the role, as its
	// comment shows? Requests for one name share one revocation.
	mine := func(name, comment string) bool {
		for _, i := range byName[name] {
			if rs[i].Belongs == nil || rs[i].Belongs(comment) {
				return true
			}
		}
		return false
	}
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
		for name, err := range db.revokeBatch(ctx, names[:n], mine) {
			for _, i := range byName[name] {
				errs[i] = db.redact(fmt.Errorf("revoke user %s: %w", name, err))
			}
		}
		names = names[n:]
	}
	return errs
}

// revokeBatch revokes names and returns the errors by name.
func (db *DB) revokeBatch(ctx context.Context, names []string, mine func(name, comment string) bool) map[string]error {
	errs, err := db.revokeDefault(ctx, names, mine)
	// A role that another session dropped after the catalog query saw it
	// (an issuer dropping the role of a lease this revocation claimed, an
	// operator) fails the step that touched it; the revocation is done
	// again from the catalog query, which no longer sees the role.
	for attempt := 1; err != nil && roleVanished(err) && attempt < transientAttempts && ctx.Err() == nil; attempt++ {
		errs, err = db.revokeDefault(ctx, names, mine)
	}
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
		one, err := db.revokeDefault(ctx, []string{name}, mine)
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
func (db *DB) revokeDefault(ctx context.Context, names []string, mine func(name, comment string) bool) (map[string]error, error) {
	errs := map[string]error{}
	conn, err := db.admin(ctx)
	if err != nil {
		return errs, err
	}
	// One catalog query tells which roles exist, which of them could still
	// log in (LOGIN and a VALID UNTIL not yet passed: the password lessor
	// issued still works), and which have sessions open; per-role work is
	// spent only where it tells that it is needed.
	var present, comments, canLogin, inSession []string
	var oids []uint32 // of present, in the same order
	var adm adminRole
	rctx, cancel := db.roundTrip(ctx)
	err = conn.QueryRow(rctx, revokeCatalog, names).Scan(&adm.name, &adm.super, &present, &oids, &comments, &canLogin, &inSession)
	cancel()
	if err != nil {
		return errs, pgError(err)
	}
	if len(oids) != len(present) || len(comments) != len(present) {
		return errs, fmt.Errorf("revocation catalog query: %d oids and %d comments for %d roles", len(oids), len(comments), len(present))
	}
	// A role of the same name that no request claims is not touched.
	var notMine []string
	for i := 0; i < len(present); i++ {
		if !mine(present[i], comments[i]) {
			notMine = append(notMine, present[i])
			present, oids, comments = slices.Delete(present, i, i+1), slices.Delete(oids, i, i+1), slices.Delete(comments, i, i+1)
			i--
		}
	}
	if len(notMine) > 0 {
		drop := func(s string) bool { return slices.Contains(notMine, s) }
		canLogin, inSession = slices.DeleteFunc(canLogin, drop), slices.DeleteFunc(inSession, drop)
	}
	if db.testOnlyAfterCatalog != nil {
		db.testOnlyAfterCatalog()
	}
	for _, name := range names {
		if name == adm.name {
			errs[name] = errors.New("refusing to revoke the role lessor itself connects as")
		}
	}
	if len(present) == 0 {
		return errs, nil
	}
	// 1. No new logins, committed before anything else happens, for the
	// roles that could still log in or have a session open. The others
	// (an expired credential's role: its VALID UNTIL passed) already
	// refuse the password lessor issued; ALTER ROLE on each of them would
	// cost as much as dropping them all.
	live := union(canLogin, inSession)
	if len(live) > 0 {
		var b strings.Builder
		for _, name := range live {
			b.WriteString("ALTER ROLE " + pgx.Identifier{name}.Sanitize() + " NOLOGIN;")
		}
		if err := db.retry(ctx, func() error { return db.exec(ctx, conn, b.String()) }); err != nil {
			return errs, fmt.Errorf("disable login: %w", roleAdminHint(err, present, adm.name, db.version))
		}
	}

	// 2. End every session of the roles that step 1 disabled, as
	// pg_stat_activity shows them now that NOLOGIN is committed: not only
	// those the catalog query saw, since a role that could log in may have
	// done so since. One query for the batch, whoever has a session.
	var granted []string
	if len(live) > 0 {
		granted, err = db.terminate(ctx, conn, live, adm)
		if err != nil {
			db.giveBack(ctx, conn, granted)
			return errs, err
		}
	}

	// 3. Ownership and privileges, database by database. Roles the admin
	// cannot tear down keep their error and are not dropped.
	// What they passed on of their memberships goes with them, whether
	// they are dropped or stay: its holders are other roles, which no
	// later step looks at. On PostgreSQL 16+ before DROP OWNED, which
	// takes the first grant of a chain and leaves the rest; before 16
	// after it, which has dropped their SECURITY DEFINER functions, with
	// which whoever calls them could pass a membership on again.
	var passed map[string]error
	if db.version >= 160000 {
		var more []string
		passed, more = db.takePassedOn(ctx, conn, present, oids, adm)
		granted = union(granted, more)
	}
	stuck, more, err := db.dropOwned(ctx, conn, oids, adm)
	granted = union(granted, more)
	if db.version < 160000 && !conn.IsClosed() && ctx.Err() == nil {
		passed, _ = db.takePassedOn(ctx, conn, present, oids, adm)
	}
	for name, perr := range passed {
		if stuck[name] == nil {
			stuck[name] = perr
		} else {
			stuck[name] = fmt.Errorf("%w; %v", stuck[name], perr)
		}
	}
	if err != nil {
		db.giveBack(ctx, conn, granted)
		return errs, db.disarmAll(ctx, conn, present, err)
	}
	var drop, kept []string
	var dropOids []uint32
	for i, name := range present {
		if stuck[name] != nil {
			errs[name] = stuck[name]
			kept = append(kept, name)
			continue
		}
		drop = append(drop, name)
		dropOids = append(dropOids, oids[i])
	}
	// A role left in place (the admin could not tear it down) keeps what
	// the admin could not revoke: the admin must not stay a member of it.
	if len(kept) > 0 {
		db.giveBack(ctx, conn, slices.DeleteFunc(slices.Clone(granted), func(g string) bool { return !slices.Contains(kept, g) }))
		for name, derr := range db.disarm(ctx, conn, kept) {
			errs[name] = fmt.Errorf("%w; %v", errs[name], derr)
		}
	}
	if len(drop) == 0 {
		return errs, nil
	}

	// 4. The roles themselves; memberships go with them.
	if err := db.retry(ctx, func() error { return db.exec(ctx, conn, "DROP ROLE IF EXISTS "+identList(drop)) }); err != nil {
		db.giveBack(ctx, conn, granted)
		return errs, db.disarmAll(ctx, conn, drop, fmt.Errorf("drop role: %w", roleAdminHint(err, drop, adm.name, db.version)))
	}

	// 5. A session that step 2 could not see is ended now, found by its
	// role's oid: one a login not bound by VALID UNTIL (trust, peer,
	// certificates) opened for a role that skipped step 1, or one whose
	// login passed its role's check before NOLOGIN committed but which
	// showed in pg_stat_activity only after step 2 looked (a new backend
	// reports itself there after it checks rolcanlogin).
	if err := db.terminateDropped(ctx, conn, dropOids); err != nil {
		for _, name := range drop {
			errs[name] = err
		}
	}
	return errs, nil
}

// revokeCatalog is what revokeDefault learns about the roles $1 before it
// touches them: the admin's name and whether it is a superuser; the roles
// that exist (but the admin), their oids and comments, in the same order;
// those that could still log in (LOGIN, and a VALID UNTIL that has not
// passed); and those with a session open. The sessions are read once, not
// once per role.
//
// One aggregation over the rows lines the arrays up, without a sort of
// their own for each; each comment is one index lookup in pg_shdescription
// (not a join, which would read every role's comment in the cluster), not
// a call of shobj_description, a SQL function that planned and ran a query
// per role. For a batch of 1,000 among 14,700 roles, PostgreSQL 15: 3.4 ms
// instead of 7.8 ms, and 3.9 ms instead of 24 ms on a connection's first.
const revokeCatalog = `
SELECT current_user, (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.rolname = current_user),
       coalesce(pg_catalog.array_agg(r.rolname), '{}'),
       coalesce(pg_catalog.array_agg(r.oid), '{}'),
       coalesce(pg_catalog.array_agg(r.comment), '{}'),
       coalesce(pg_catalog.array_agg(r.rolname) FILTER (WHERE r.can_login), '{}'),
       coalesce(pg_catalog.array_agg(r.rolname) FILTER (WHERE r.in_session), '{}')
FROM (
  SELECT a.rolname, a.oid,
         coalesce((SELECT d.description FROM pg_catalog.pg_shdescription d
                   WHERE d.objoid = a.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid), '') AS comment,
         a.rolcanlogin AND coalesce(a.rolvaliduntil > pg_catalog.now(), true) AS can_login,
         a.oid IN (SELECT s.usesysid FROM pg_catalog.pg_stat_activity s WHERE s.usesysid IS NOT NULL AND s.pid <> pg_catalog.pg_backend_pid()) AS in_session
  FROM pg_catalog.pg_roles a
  WHERE a.rolname = ANY($1::pg_catalog.name[]) AND a.rolname <> current_user
  ORDER BY a.rolname
) r`

// terminateDropped ends the sessions, if any, of roles that are dropped
// already, by their oids (a dropped role's sessions have no user name).
// It reads the sessions from pg_stat_get_activity, which the view
// pg_stat_activity wraps in joins with pg_database and pg_authid: this
// statement is parsed anew each batch (it goes in one round trip, not
// prepared), and expanding the view, then planning away its joins, was
// most of the server's work for it.
func (db *DB) terminateDropped(ctx context.Context, conn *pgx.Conn, oids []uint32) error {
	q := `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(s.pid, $2)) FROM pg_catalog.pg_stat_get_activity(NULL) s WHERE s.usesysid = ANY($1::pg_catalog.oid[]) AND s.pid <> pg_catalog.pg_backend_pid()`
	args := []any{oids, terminateWait.Milliseconds()}
	if db.version < 140000 {
		q = `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(s.pid)) FROM pg_catalog.pg_stat_get_activity(NULL) s WHERE s.usesysid = ANY($1::pg_catalog.oid[]) AND s.pid <> pg_catalog.pg_backend_pid()`
		args = args[:1]
	}
	var n int64
	if err := db.queryRow(ctx, conn, q, args, &n); err != nil {
		return fmt.Errorf("end the sessions of dropped roles: %w", err)
	}
	return nil
}

// passedOn lists the memberships that roles of oids $1 passed on with
// their ADMIN OPTION, to roles not among them: the role passing it on,
// the group, the member and the grantor of the grant, by name, and
// whether the admin has the passing role's privileges. With $2
// (PostgreSQL 15 and older) the grants made in turn from those follow,
// for as long as a chain goes: each such grant names its member's
// grantor, one per group and member. pg_shdepend records none of them
// before 16, so DROP OWNED does not see them, and DROP ROLE leaves them
// with a dangling grantor. The roles are a set to join, not an array to
// compare each membership with, as pg_auth_members has no index on its
// grantor.
const passedOn = `
WITH RECURSIVE dying AS (SELECT pg_catalog.unnest($1::pg_catalog.oid[]) AS oid),
passed AS (
  SELECT am.roleid, am.member, am.grantor, am.grantor AS origin
  FROM pg_catalog.pg_auth_members am
  WHERE am.grantor IN (SELECT oid FROM dying) AND am.member NOT IN (SELECT oid FROM dying)
  UNION
  SELECT am.roleid, am.member, am.grantor, p.origin
  FROM passed p
  JOIN pg_catalog.pg_auth_members am ON am.roleid = p.roleid AND am.grantor = p.member
  WHERE $2 AND am.member NOT IN (SELECT oid FROM dying)
)
SELECT o.rolname, g.rolname, m.rolname, gr.rolname, pg_catalog.pg_has_role(p.origin, 'USAGE')
FROM passed p
JOIN pg_catalog.pg_roles o ON o.oid = p.origin
JOIN pg_catalog.pg_roles g ON g.oid = p.roleid
JOIN pg_catalog.pg_roles m ON m.oid = p.member
JOIN pg_catalog.pg_roles gr ON gr.oid = p.grantor
ORDER BY 1, 2, 3`

// takePassedOn revokes the memberships that roles (of oids, in the same
// order) granted to others through an ADMIN OPTION they held: a
// credential given its group WITH ADMIN OPTION that handed the group to
// a role of its holder's would otherwise have it outlive the lease. On
// PostgreSQL 16+ DROP OWNED would take such a grant but not the grants
// made from it in turn; REVOKE … GRANTED BY … CASCADE takes the whole
// chain, acting with the role's privileges, which a non-superuser admin
// first grants itself (and returns, as teardown does). On 15 and older
// nothing records or cascades them: each grant of the chain is revoked,
// which the admin's CREATEROLE or ADMIN OPTION on the group allows. It
// returns, by role, the grants it could not take back: such a role must
// stay, or nothing would ever find them again.
func (db *DB) takePassedOn(ctx context.Context, conn *pgx.Conn, roles []string, oids []uint32, adm adminRole) (map[string]error, []string) {
	failed := map[string]error{}
	chain := db.version < 160000
	type grant struct{ origin, group, member, grantor string }
	var grants []grant
	var need []string // origins whose privileges the admin lacks
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, passedOn, oids, chain)
	if err == nil {
		for rows.Next() {
			var g grant
			var privileged bool
			if err = rows.Scan(&g.origin, &g.group, &g.member, &g.grantor, &privileged); err != nil {
				break
			}
			grants = append(grants, g)
			if !chain && !adm.super && !privileged && !slices.Contains(need, g.origin) {
				need = append(need, g.origin)
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	cancel()
	if err != nil {
		for _, name := range roles {
			failed[name] = fmt.Errorf("finding the memberships it passed on failed: %w", pgError(err))
		}
		return failed, nil
	}
	if len(need) > 0 {
		if err := db.exec(ctx, conn, db.grantSelf(need)); err != nil {
			if sqlState(err) == "42501" {
				err = membershipHint(err, need, adm.name, db.version, "to take back the memberships they passed on")
			}
			for _, name := range need {
				failed[name] = err
			}
			grants = slices.DeleteFunc(grants, func(g grant) bool { return slices.Contains(need, g.origin) })
			need = nil
		}
	}
	for _, g := range grants {
		stmt := "REVOKE " + pgx.Identifier{g.group}.Sanitize() + " FROM " + pgx.Identifier{g.member}.Sanitize()
		if !chain {
			stmt += " GRANTED BY " + pgx.Identifier{g.grantor}.Sanitize() + " CASCADE"
		}
		if err := db.retry(ctx, func() error { return db.exec(ctx, conn, stmt) }); err != nil && failed[g.origin] == nil {
			failed[g.origin] = fmt.Errorf("%s passed on its membership in %s to %s, which must go with it, and taking it back failed; fix: as a superuser, %s, then revoke again: %w",
				pgx.Identifier{g.origin}.Sanitize(), pgx.Identifier{g.group}.Sanitize(), pgx.Identifier{g.member}.Sanitize(), stmt, err)
		}
	}
	return failed, need
}

// disarmAll disarms roles that a revocation failed to drop, for the
// failure err, and returns err with what disarm could not do added.
func (db *DB) disarmAll(ctx context.Context, conn *pgx.Conn, roles []string, err error) error {
	if conn.IsClosed() || ctx.Err() != nil {
		return err
	}
	failed := db.disarm(ctx, conn, roles)
	for _, name := range roles {
		if derr := failed[name]; derr != nil {
			// One is enough: the others would say the same.
			return fmt.Errorf("%w; %s: %v", err, pgx.Identifier{name}.Sanitize(), derr)
		}
	}
	return err
}

// disarm takes from roles that a revocation leaves in place (with an
// error) what would still let them, or others through them, use their
// privileges: LOGIN, which an expired role skipped losing in step 1 (its
// password no longer works, but a login that VALID UNTIL does not bind
// would), their memberships in other roles, with whose privileges a
// SECURITY DEFINER function of theirs runs for any caller, and other
// roles' memberships in them, which let those SET ROLE to them. Their
// grants on objects went in teardown. The admin's own memberships are
// not its to take: giveBack took those it granted itself, and on
// PostgreSQL 16+ a CREATEROLE admin's ADMIN OPTION on the role is what a
// later DROP ROLE needs. It returns, by role, why it could not.
func (db *DB) disarm(ctx context.Context, conn *pgx.Conn, kept []string) map[string]error {
	failed := map[string]error{}
	var grants [][3]string // role, member, grantor
	login := map[string]bool{}
	// A row with no member is a role that may still log in.
	q := `SELECT g.rolname, m.rolname, coalesce(pg_catalog.array_agg(DISTINCT gr.rolname) FILTER (WHERE gr.rolname IS NOT NULL), '{}')
FROM pg_catalog.pg_auth_members am
JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
JOIN pg_catalog.pg_roles m ON m.oid = am.member
LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = am.grantor
WHERE (g.rolname = ANY($1::pg_catalog.name[]) OR m.rolname = ANY($1::pg_catalog.name[]))
  AND g.rolname <> current_user AND m.rolname <> current_user
GROUP BY g.rolname, m.rolname
UNION ALL
SELECT r.rolname, ''::pg_catalog.name, '{}'::pg_catalog.name[] FROM pg_catalog.pg_roles r WHERE r.rolname = ANY($1::pg_catalog.name[]) AND r.rolcanlogin`
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, q, kept)
	if err == nil {
		for rows.Next() {
			var role, member string
			var grantors []string
			if err = rows.Scan(&role, &member, &grantors); err != nil {
				break
			}
			if member == "" {
				login[role] = true
				continue
			}
			if db.version < 160000 || len(grantors) == 0 {
				// One membership per pair, whoever granted it.
				grantors = []string{""}
			}
			for _, gr := range grantors {
				grants = append(grants, [3]string{role, member, gr})
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	cancel()
	if err != nil {
		for _, name := range kept {
			failed[name] = fmt.Errorf("reading its login and memberships, which keep its privileges in use, failed: %w", pgError(err))
		}
		return failed
	}
	for _, name := range kept {
		var stmts []string
		if login[name] {
			stmts = append(stmts, "ALTER ROLE "+pgx.Identifier{name}.Sanitize()+" NOLOGIN")
		}
		for _, g := range grants {
			if g[0] != name && g[1] != name {
				continue
			}
			stmt := "REVOKE " + pgx.Identifier{g[0]}.Sanitize() + " FROM " + pgx.Identifier{g[1]}.Sanitize()
			if g[2] != "" {
				// From PostgreSQL 16 a REVOKE takes back only its
				// grantor's grant, the current user's by default.
				stmt += " GRANTED BY " + pgx.Identifier{g[2]}.Sanitize()
			}
			stmts = append(stmts, stmt+" CASCADE")
		}
		// One at a time: a membership the admin may not take back (its
		// grantor is out of reach) must not keep it from taking the rest.
		for _, stmt := range stmts {
			if err := db.retry(ctx, func() error { return db.exec(ctx, conn, stmt) }); err != nil && failed[name] == nil {
				failed[name] = fmt.Errorf("taking its login and memberships, which keep its privileges in use, failed: %w", err)
			}
		}
	}
	return failed
}

// giveBack revokes the memberships that teardown granted the admin in
// roles that are still there after a failed revocation, so that a role
// left behind does not leave the admin holding its privileges. A retry
// grants them again. Best effort: the revocation has failed already.
func (db *DB) giveBack(ctx context.Context, conn *pgx.Conn, granted []string) {
	for _, name := range granted {
		// A role already gone fails here, and needs nothing back.
		_ = db.exec(context.WithoutCancel(ctx), conn, "REVOKE "+pgx.Identifier{name}.Sanitize()+" FROM CURRENT_USER")
	}
}

// terminate ends every session logged in as one of names and waits for it
// to exit (PostgreSQL 14+), so DROP ROLE does not leave a session running
// as a role that no longer exists. Ending another role's session takes its
// privileges or pg_signal_backend; an admin with neither (a CREATEROLE
// admin) first grants itself membership in the roles that have sessions,
// and returns them.
func (db *DB) terminate(ctx context.Context, conn *pgx.Conn, names []string, adm adminRole) ([]string, error) {
	var granted []string
	if !adm.super {
		var need []string
		q := `SELECT coalesce(pg_catalog.array_agg(DISTINCT usename::text), '{}') FROM pg_stat_activity
WHERE usename = ANY($1::name[]) AND NOT pg_catalog.pg_has_role('pg_signal_backend', 'USAGE') AND NOT pg_catalog.pg_has_role(usename, 'USAGE')`
		if err := db.queryRow(ctx, conn, q, []any{names}, &need); err != nil {
			return nil, fmt.Errorf("terminate sessions: %w", err)
		}
		if len(need) > 0 {
			if err := db.exec(ctx, conn, db.grantSelf(need)); err != nil {
				if sqlState(err) == "42501" {
					err = membershipHint(err, need, adm.name, db.version, "to end their sessions")
				}
				return nil, fmt.Errorf("terminate sessions: %w", err)
			}
			granted = need
		}
	}
	q := `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid, $2)) FROM pg_stat_activity WHERE usename = ANY($1::name[]) AND pid <> pg_catalog.pg_backend_pid()`
	args := []any{names, terminateWait.Milliseconds()}
	if db.version < 140000 {
		q = `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = ANY($1::name[]) AND pid <> pg_catalog.pg_backend_pid()`
		args = args[:1]
	}
	var n int64
	if err := db.queryRow(ctx, conn, q, args, &n); err != nil {
		return granted, fmt.Errorf("terminate sessions: %w", err)
	}
	return granted, nil
}

// grantSelf is the statement that makes the admin a member of roles, with
// their privileges and SET ROLE on PostgreSQL 16+, where that is no longer
// what a GRANT gives by default.
func (db *DB) grantSelf(roles []string) string {
	grant := "GRANT " + identList(roles) + " TO CURRENT_USER"
	if db.version >= 160000 {
		grant += " WITH INHERIT TRUE, SET TRUE"
	}
	return grant
}

// adminRole is who the admin connection acts as.
type adminRole struct {
	name  string
	super bool
}

// dropOwned finds, through pg_shdepend, the databases where the roles of
// oids own or hold anything, and tears them down there (see teardown). The
// lookup is by oid, which pg_shdepend indexes, not by name through
// pg_roles. Shared objects
// (databases, tablespaces, privileges on them) are handled from the admin's
// own database. It returns the errors of roles that the admin cannot tear
// down, which must then not be dropped, and the roles whose membership the
// admin granted itself on the way.
func (db *DB) dropOwned(ctx context.Context, conn *pgx.Conn, oids []uint32, adm adminRole) (stuck map[string]error, granted []string, err error) {
	type target struct {
		db      string
		current bool
		conn    bool
		roles   []string
	}
	stuck = map[string]error{}
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, `
SELECT coalesce(d.datname, pg_catalog.current_database()),
       s.dbid = 0::pg_catalog.oid OR d.datname = pg_catalog.current_database(),
       coalesce(d.datallowconn, true),
       pg_catalog.array_agg(DISTINCT r.rolname ORDER BY r.rolname)
FROM pg_catalog.pg_shdepend s
JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid AND s.deptype <> 'p' AND s.refobjid = ANY($1::pg_catalog.oid[])
GROUP BY 1, 2, 3`, oids)
	if err != nil {
		cancel()
		return stuck, nil, fmt.Errorf("find dependencies: %w", pgError(err))
	}
	var targets []target
	for rows.Next() {
		var t target
		if err := rows.Scan(&t.db, &t.current, &t.conn, &t.roles); err != nil {
			rows.Close()
			cancel()
			return stuck, nil, fmt.Errorf("find dependencies: %w", err)
		}
		targets = append(targets, t)
	}
	err = rows.Err()
	cancel()
	if err != nil {
		return stuck, nil, fmt.Errorf("find dependencies: %w", pgError(err))
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
	// The current database goes first: what it finds a role stuck on (a
	// database it owns, say) spares that role's objects (not its grants)
	// everywhere else.
	if i := slices.Index(order, ""); i > 0 {
		order = append(append([]string{""}, order[:i]...), order[i+1:]...)
	}
	var firstErr error
	for _, key := range order {
		t := merged[key]
		// A role stuck already is still taken what it was granted here
		// (teardown drops nothing of a stuck role's): left in place, its
		// grants would go on serving whoever calls a SECURITY DEFINER
		// function of its.
		var g []string
		var err error
		switch {
		case t.current:
			g, err = db.teardown(ctx, conn, t.db, t.roles, true, adm, stuck)
		case !t.conn:
			if slices.ContainsFunc(t.roles, func(r string) bool { return stuck[r] == nil }) {
				err = errors.New("roles own or hold objects there, and it allows no connections")
			}
		default:
			var other *pgx.Conn
			if other, err = db.dial(ctx, db.cfg.Password, t.db); err == nil {
				g, err = db.teardown(ctx, other, t.db, t.roles, false, adm, stuck)
				other.Close(context.WithoutCancel(ctx))
			}
		}
		granted = union(granted, g)
		if err == nil {
			continue
		}
		err = fmt.Errorf("drop owned in database %s: %w", t.db, err)
		if ctx.Err() != nil || conn.IsClosed() {
			return stuck, granted, err
		}
		// The other databases are still gone through: the roles lose
		// what they hold there, whatever stops them here.
		if firstErr == nil {
			firstErr = err
		}
	}
	return stuck, granted, firstErr
}

// holdings lists what the roles $1 hold or own in the connection's
// database, and in shared catalogs when $2. Rows of kind 'acl' are ACL
// entries granted to them on tables (and their columns: a REVOKE on the
// table takes them too), sequences, schemas, routines, databases, types
// and domains, languages, foreign data wrappers and servers, large
// objects and tablespaces, one
// row per object and grantor: the object as REVOKE names it,
// its kind, the grantor, whether the grantor is a superuser or the
// object's owner, whether the admin may act as the grantor, and the
// holders. Rows of kind 'shared' (only when $2) are one per database or
// tablespace that one of them owns: its kind, its name and the owner, as
// the single holder. Rows of kind 'rest' are one per role that owns
// anything or holds anything else (default privileges, types,
// policies…), which only DROP OWNED removes: the role, and whether
// the admin already has its privileges. Rows of kind 'colacl' are one
// per table and role of them that granted others privileges on its
// columns: the columns, the table, the role, whether it is a superuser,
// whether the admin may act as it, and the grantees (an empty name for
// PUBLIC). Rows of kind 'defacl' are one per
// default ACL (of one role, kind of object and schema, or none) that
// grants to one of them, or that one of them set for others: the kind as
// ALTER DEFAULT PRIVILEGES names it, the schema (empty for all), the role
// it is for, whether the admin may act for that role, and the grantees to
// take it from, one of them or, for their own, all but themselves (an
// empty name for PUBLIC). $3 is the pg_has_role privilege
// that lets the admin SET ROLE: 'SET' on PostgreSQL 16+, 'MEMBER' before.
const holdings = `
WITH dying AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY($1::name[])),
dep AS (
  SELECT s.classid, s.objid, s.objsubid, s.deptype, s.refobjid
  FROM pg_shdepend s
  WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid AND s.deptype <> 'p'
    AND s.refobjid IN (SELECT oid FROM dying)
    AND (s.dbid = (SELECT oid FROM pg_database WHERE datname = pg_catalog.current_database()) OR (s.dbid = 0::pg_catalog.oid AND $2))
),
handled AS (
  SELECT * FROM dep WHERE deptype = 'a' AND (objsubid = 0 OR classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid) AND classid IN
    ('pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid,
     'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_language'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass::pg_catalog.oid,
     'pg_catalog.pg_foreign_server'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_largeobject'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_tablespace'::pg_catalog.regclass::pg_catalog.oid)
),
obj AS (
  SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS name, c.relowner AS owner, c.relacl AS acl
  FROM pg_class c WHERE c.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid AND objsubid = 0)
  UNION ALL
  SELECT 'TABLE', c.oid::regclass::text, c.relowner, at.attacl
  FROM handled h
  JOIN pg_attribute at ON at.attrelid = h.objid AND at.attnum = h.objsubid
  JOIN pg_class c ON c.oid = h.objid
  WHERE h.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid AND h.objsubid <> 0
  UNION ALL
  SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspowner, n.nspacl
  FROM pg_namespace n WHERE n.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'ROUTINE', p.oid::regprocedure::text, p.proowner, p.proacl
  FROM pg_proc p WHERE p.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'DATABASE', pg_catalog.quote_ident(d.datname), d.datdba, d.datacl
  FROM pg_database d WHERE d.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, t.typowner, t.typacl
  FROM pg_type t WHERE t.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'LANGUAGE', pg_catalog.quote_ident(l.lanname), l.lanowner, l.lanacl
  FROM pg_language l WHERE l.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_language'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'FOREIGN DATA WRAPPER', pg_catalog.quote_ident(w.fdwname), w.fdwowner, w.fdwacl
  FROM pg_foreign_data_wrapper w WHERE w.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'FOREIGN SERVER', pg_catalog.quote_ident(v.srvname), v.srvowner, v.srvacl
  FROM pg_foreign_server v WHERE v.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_foreign_server'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'LARGE OBJECT', m.oid::pg_catalog.text, m.lomowner, m.lomacl
  FROM pg_largeobject_metadata m WHERE m.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass::pg_catalog.oid)
  UNION ALL
  SELECT 'TABLESPACE', pg_catalog.quote_ident(s.spcname), s.spcowner, s.spcacl
  FROM pg_tablespace s WHERE s.oid IN (SELECT objid FROM handled WHERE classid = 'pg_catalog.pg_tablespace'::pg_catalog.regclass::pg_catalog.oid)
)
SELECT 'acl', o.kind, o.name, g.rolname, g.rolsuper, a.grantor = o.owner,
       pg_catalog.pg_has_role(a.grantor, $3), pg_catalog.array_agg(DISTINCT r.rolname ORDER BY r.rolname)
FROM obj o
CROSS JOIN LATERAL pg_catalog.aclexplode(o.acl) a
JOIN dying r ON r.oid = a.grantee
JOIN pg_roles g ON g.oid = a.grantor
GROUP BY o.kind, o.name, g.rolname, g.rolsuper, a.grantor, o.owner
UNION ALL
SELECT 'shared', CASE WHEN dep.classid = 'pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid THEN 'DATABASE' ELSE 'TABLESPACE' END,
       coalesce(pg_catalog.quote_ident(d.datname), pg_catalog.quote_ident(t.spcname)), '', false, false, false, ARRAY[r.rolname]
FROM dep
JOIN dying r ON r.oid = dep.refobjid
LEFT JOIN pg_database d ON dep.classid = 'pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid AND d.oid = dep.objid
LEFT JOIN pg_tablespace t ON dep.classid = 'pg_catalog.pg_tablespace'::pg_catalog.regclass::pg_catalog.oid AND t.oid = dep.objid
WHERE dep.deptype = 'o' AND dep.classid IN ('pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid, 'pg_catalog.pg_tablespace'::pg_catalog.regclass::pg_catalog.oid)
UNION ALL
SELECT 'colacl', pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(at.attname::pg_catalog.text), ', '), c.oid::regclass::text,
       g.rolname, g.rolsuper, false, pg_catalog.pg_has_role(a.grantor, $3),
       pg_catalog.array_agg(DISTINCT coalesce(h.rolname, ''))
FROM handled x
JOIN pg_attribute at ON at.attrelid = x.objid AND at.attnum = x.objsubid
JOIN pg_class c ON c.oid = x.objid
CROSS JOIN LATERAL pg_catalog.aclexplode(at.attacl) a
JOIN pg_roles g ON g.oid = a.grantor
LEFT JOIN pg_roles h ON h.oid = a.grantee
WHERE x.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid AND x.objsubid <> 0
  AND a.grantor IN (SELECT oid FROM dying) AND a.grantee NOT IN (SELECT oid FROM dying)
GROUP BY c.oid, g.rolname, g.rolsuper, a.grantor
UNION ALL
SELECT 'defacl', CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' ELSE 'LARGE OBJECTS' END,
       coalesce(pg_catalog.quote_ident(n.nspname), ''), o.rolname, false, false, pg_catalog.pg_has_role(d.defaclrole, $3),
       pg_catalog.array_agg(DISTINCT coalesce(g.rolname, '') ORDER BY coalesce(g.rolname, ''))
FROM pg_default_acl d
CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a
JOIN pg_roles o ON o.oid = d.defaclrole
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
LEFT JOIN pg_roles g ON g.oid = a.grantee
WHERE d.oid IN (SELECT objid FROM dep WHERE classid = 'pg_catalog.pg_default_acl'::pg_catalog.regclass::pg_catalog.oid)
  AND (a.grantee IN (SELECT oid FROM dying) OR (d.defaclrole IN (SELECT oid FROM dying) AND a.grantee <> d.defaclrole))
GROUP BY d.defaclobjtype, n.nspname, o.rolname, d.defaclrole
UNION ALL
SELECT 'rest', '', r.rolname, '', false, false, pg_catalog.pg_has_role(r.oid, 'USAGE'), '{}'
FROM dying r
WHERE EXISTS (SELECT 1 FROM dep WHERE dep.refobjid = r.oid AND NOT EXISTS (SELECT 1 FROM handled h
  WHERE h.classid = dep.classid AND h.objid = dep.objid AND h.objsubid = dep.objsubid AND h.deptype = dep.deptype AND h.refobjid = dep.refobjid))`

// revokeGroup is one REVOKE: privileges that holders got from grantor on
// objects of one kind.
type revokeGroup struct {
	kind    string
	grantor string
	// how the admin acts as the grantor: "" (it already does), "set"
	// (SET ROLE grantor) or "proxy" (SET ROLE to a temporary role that is a
	// member of the grantor).
	how     string
	objects []string
	holders []string
}

// teardown removes what roles hold and own in conn's database, taking the
// least privileged path, in two steps, each one transaction:
//
//  1. every ACL entry granted to them is revoked as its grantor. A plain
//     REVOKE acts as the object's owner for a superuser, and as the admin
//     itself otherwise; another grantor's entry needs the admin to act as
//     that grantor, by SET ROLE when it may, and, for a superuser admin, a
//     superuser grantor (whose own SET ROLE would act as the owner again),
//     through a temporary NOLOGIN role that is a member of the grantor.
//     Roles holding entries the admin cannot revoke are reported in stuck,
//     and lose the entries it can revoke;
//  2. only roles that own anything or hold anything else go through
//     DROP OWNED (never REASSIGN OWNED to the admin), after the admin,
//     when not a superuser, grants itself membership in them (which those
//     commands need, and which a CREATEROLE admin lacks: on PostgreSQL 16+
//     it has only ADMIN OPTION on the roles it created). The roles granted
//     are returned, also with an error once step 1 is committed, so a
//     failed drop can take the membership back. Roles stuck already (in
//     stuck on entry) do not go through it; a lone role whose objects
//     others' objects depend on is added to stuck (dbName names the
//     database in its error).
//
// Objects of one kind with the same grantor and holders share one REVOKE:
// DROP OWNED rewrites an object's ACL once per role (1,000 roles holding
// SELECT on one table cost about 0.6 s) where one REVOKE naming all of them
// rewrites it once (about 0.07 s), and each statement looks up every
// grantee by name again, so six statements of 1,000 grantees cost about
// 1.4x one statement naming the six tables.
func (db *DB) teardown(ctx context.Context, conn *pgx.Conn, dbName string, roles []string, shared bool, adm adminRole, stuck map[string]error) ([]string, error) {
	setPriv := "MEMBER"
	if db.version >= 160000 {
		setPriv = "SET"
	}
	// The names holdings prints (regclass, regprocedure) leave out a
	// schema the search_path finds, and a REVOKE made as another role
	// (SET ROLE) reads them with "$user" now that role: a grantor with a
	// schema of its own name would have them find its objects, not those
	// meant. With pg_catalog alone they name their schema, whoever reads
	// them. The session's own comes back after, for the operator's
	// statements.
	var searchPath string
	if err := db.queryRow(ctx, conn, `SELECT pg_catalog.current_setting('search_path'), pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)`, nil, &searchPath, new(string)); err != nil {
		return nil, fmt.Errorf("find holdings: %w", err)
	}
	defer func() {
		if err := db.exec(context.WithoutCancel(ctx), conn, `SELECT pg_catalog.set_config('search_path', $1, false)`, searchPath); err != nil {
			// A session left so would not find the operator's tables.
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	var groups []*revokeGroup
	byKey := map[string]*revokeGroup{}
	var rest, needMembership []string
	var defacls []defaultACL
	var colacls []columnACL
	rctx, cancel := db.roundTrip(ctx)
	rows, err := conn.Query(rctx, holdings, roles, shared, setPriv)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("find holdings: %w", pgError(err))
	}
	for rows.Next() {
		var (
			what, kind, object, grantor       string
			grantorSuper, byOwner, privileged bool
			holders                           []string
		)
		if err := rows.Scan(&what, &kind, &object, &grantor, &grantorSuper, &byOwner, &privileged, &holders); err != nil {
			rows.Close()
			cancel()
			return nil, fmt.Errorf("find holdings: %w", err)
		}
		switch what {
		case "rest":
			rest = append(rest, object)
			if !privileged && !adm.super {
				needMembership = append(needMembership, object)
			}
			continue
		case "defacl":
			defacls = append(defacls, defaultACL{kind: kind, schema: object, role: grantor, privileged: privileged, grantees: holders})
			continue
		case "colacl":
			if !grantorSuper {
				colacls = append(colacls, columnACL{columns: kind, table: object, grantor: grantor, privileged: privileged, grantees: holders})
			}
			continue
		case "shared":
			for _, h := range holders {
				if stuck[h] == nil {
					stuck[h] = fmt.Errorf("%s owns %s %s, which DROP OWNED does not drop and lessor does not give to its admin; fix: DROP %s %s, or ALTER %s %s OWNER TO a role of your choice, then revoke again",
						pgx.Identifier{h}.Sanitize(), strings.ToLower(kind), object, kind, object, kind, object)
				}
			}
			continue
		}
		how, cannot := actAs(adm, grantor, grantorSuper, byOwner, privileged)
		if cannot != nil {
			for _, h := range holders {
				if stuck[h] == nil {
					stuck[h] = cannot(kind, object, h)
				}
			}
			continue
		}
		// Holders come sorted, and names hold no NUL.
		key := how + "\x00" + grantor + "\x00" + kind + "\x00" + strings.Join(holders, "\x00")
		g := byKey[key]
		if g == nil {
			g = &revokeGroup{kind: kind, grantor: grantor, how: how, holders: holders}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.objects = append(g.objects, object)
	}
	err = rows.Err()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("find holdings: %w", pgError(err))
	}
	keep := func(names []string) []string {
		var out []string
		for _, n := range names {
			if stuck[n] == nil {
				out = append(out, n)
			}
		}
		return out
	}
	// Acting as a grantor ends with SET ROLE back to the admin's role,
	// never RESET ROLE: that restores the session's default, which may be
	// the role a database's owner made every session there act as, which
	// the session's set-up left (see unbindSession), and the rest of the
	// revocation, and the next one on the connection, would run as it.
	back := "SET ROLE " + pgx.Identifier{adm.name}.Sanitize() + ";"
	// revokesOf writes the REVOKEs of the groups, but for the holders
	// that skip, when given, keeps on an object.
	revokesOf := func(skip func(object, holder string) bool) string {
		var revokes strings.Builder
		for _, g := range groups {
			// Objects that keep the same holders share one REVOKE.
			type part struct{ objects, holders []string }
			var parts []*part
			byHolders := map[string]*part{}
			for _, object := range g.objects {
				holders := g.holders
				if skip != nil {
					holders = slices.DeleteFunc(slices.Clone(holders), func(h string) bool { return skip(object, h) })
				}
				if len(holders) == 0 {
					continue
				}
				key := strings.Join(holders, "\x00")
				p := byHolders[key]
				if p == nil {
					p = &part{holders: holders}
					byHolders[key] = p
					parts = append(parts, p)
				}
				p.objects = append(p.objects, object)
			}
			for _, p := range parts {
				// Stuck holders too: what they cannot be rid of is no
				// reason to leave them what they can.
				revoke := "REVOKE ALL ON " + g.kind + " " + strings.Join(p.objects, ", ") + " FROM " + identList(p.holders) + " CASCADE;"
				grantor := pgx.Identifier{g.grantor}.Sanitize()
				switch g.how {
				case "":
					revokes.WriteString(revoke)
				case "set":
					revokes.WriteString("SET ROLE " + grantor + ";" + revoke + back)
				case "proxy":
					proxy := pgx.Identifier{"lessor-revoke-" + rand.Text()[:12]}.Sanitize()
					revokes.WriteString("CREATE ROLE " + proxy + " NOLOGIN; GRANT " + grantor + " TO " + proxy + "; SET ROLE " + proxy + ";" +
						revoke + back + "DROP ROLE " + proxy + ";")
				}
			}
		}
		return revokes.String()
	}
	rest, needMembership = keep(rest), keep(needMembership)
	// Default privileges go with the grants, for every role: DROP OWNED
	// would take them, but a role it then leaves in place (or that is
	// stuck already and never goes through it) would otherwise receive
	// privileges on what others create later, and hand what its
	// SECURITY DEFINER functions create to whom it chose. For a role's
	// own, the admin acts with its privileges, as DROP OWNED needs; for
	// another role's, only if it has them already: lessor does not take
	// an app owner's privileges for that.
	var defaclStmts []string
	cannotDefacl := map[string][]string{} // role: the statements it needs
	for _, d := range defacls {
		stmt := d.revoke()
		dying := slices.Contains(roles, d.role)
		switch {
		case adm.super || d.privileged || slices.Contains(needMembership, d.role):
		case dying && !slices.Contains(needMembership, d.role):
			needMembership = append(needMembership, d.role)
		default:
			for _, h := range d.grantees {
				if slices.Contains(roles, h) {
					cannotDefacl[h] = append(cannotDefacl[h], stmt)
				}
			}
			continue
		}
		defaclStmts = append(defaclStmts, stmt)
	}
	// Column privileges a role passed on from a grant option it holds on
	// the table are not among those a REVOKE … CASCADE of the table's
	// follows, and they keep it from being dropped: they are revoked
	// first, as the role, while it still holds the option.
	var colStmts []string
	for _, c := range colacls {
		if !adm.super && !c.privileged && !slices.Contains(needMembership, c.grantor) {
			needMembership = append(needMembership, c.grantor)
		}
		colStmts = append(colStmts, "SET ROLE "+pgx.Identifier{c.grantor}.Sanitize()+";"+c.revoke()+";"+back)
	}
	// build writes the statements, with the column privileges the
	// roles passed on, or without them and without what those roles
	// hold on the tables, whose grant option they need to take them.
	build := func(withColumns bool) string {
		var b strings.Builder
		if len(needMembership) > 0 {
			b.WriteString(db.grantSelf(needMembership) + ";")
		}
		if withColumns {
			for _, stmt := range colStmts {
				b.WriteString(stmt)
			}
			b.WriteString(revokesOf(nil))
		} else {
			b.WriteString(revokesOf(func(object, holder string) bool {
				return slices.ContainsFunc(colacls, func(c columnACL) bool { return c.table == object && c.grantor == holder })
			}))
		}
		for _, stmt := range defaclStmts {
			b.WriteString(stmt + ";")
		}
		return b.String()
	}
	stmts := build(true)
	// Said in the error of a role left in place, on every path out.
	explain := func(err error) error {
		for _, name := range roles {
			if fixes := cannotDefacl[name]; len(fixes) > 0 && stuck[name] != nil {
				stuck[name] = fmt.Errorf("%w; %s", stuck[name], defaultACLError(pgx.Identifier{name}.Sanitize(), adm.name, fixes))
			}
		}
		if err == nil {
			return nil
		}
		var fixes []string
		for _, name := range rest {
			fixes = append(fixes, cannotDefacl[name]...)
		}
		if len(fixes) == 0 {
			return err
		}
		return fmt.Errorf("%w; %s", err, defaultACLError(identList(rest), adm.name, fixes))
	}
	if stmts == "" && len(rest) == 0 {
		return nil, explain(nil)
	}
	// The REVOKEs (and the admin's membership) commit first, on their
	// own, as one implicit transaction: whatever then stops DROP OWNED
	// (objects of others' that depend on the roles', or a lock on their
	// objects that another session holds past the statement timeout)
	// leaves the roles nothing their SECURITY DEFINER functions could go
	// on using for whoever calls them.
	if stmts != "" {
		err := db.retry(ctx, func() error { return db.exec(ctx, conn, stmts) })
		if err != nil && len(colStmts) > 0 && sqlState(err) == "42501" {
			// Only the role can take back what it passed on of a
			// column, and may no longer reach the table (its USAGE on
			// the schema was taken): the rest must not stay with it.
			// Such a role cannot be dropped and stays, with the error.
			cerr := err
			if err = db.retry(ctx, func() error { return db.exec(ctx, conn, build(false)) }); err == nil {
				for _, c := range colacls {
					if stuck[c.grantor] == nil {
						stuck[c.grantor] = fmt.Errorf("%s passed on privileges on columns %s of table %s, which only it can take back, and acting as it failed; fix: give it back what it needs to reach the table (USAGE on its schema), then revoke again: %w",
							pgx.Identifier{c.grantor}.Sanitize(), c.columns, c.table, cerr)
					}
				}
				rest = keep(rest)
			}
		}
		if err != nil {
			if len(needMembership) > 0 && sqlState(err) == "42501" {
				err = membershipHint(err, needMembership, adm.name, db.version, "to drop what they own")
			}
			return nil, explain(err)
		}
	}
	if len(rest) == 0 {
		return needMembership, explain(nil)
	}
	err = db.retry(ctx, func() error { return db.exec(ctx, conn, "DROP OWNED BY "+identList(rest)) })
	switch {
	case err == nil:
	case sqlState(err) == "2BP01" && len(rest) == 1:
		// The one role whose objects others' depend on stays.
		stuck[rest[0]] = fmt.Errorf("drop owned in database %s: %w", dbName, dependentsError(err, rest))
	case sqlState(err) == "2BP01":
		return needMembership, explain(dependentsError(err, rest))
	case sqlState(err) == "42501" && len(needMembership) > 0:
		return needMembership, explain(membershipHint(err, needMembership, adm.name, db.version, "to drop what they own"))
	default:
		return needMembership, explain(err)
	}
	return needMembership, explain(nil)
}

// columnACL is the column privileges that grantor, one of the roles a
// revocation takes, granted to others on a table: what
// REVOKE ALL (columns) ON TABLE table FROM grantees ("" for PUBLIC)
// CASCADE, made as grantor, takes.
type columnACL struct {
	columns, table, grantor string
	privileged              bool
	grantees                []string
}

func (c columnACL) revoke() string {
	from := make([]string, len(c.grantees))
	for i, g := range c.grantees {
		from[i] = "PUBLIC"
		if g != "" {
			from[i] = pgx.Identifier{g}.Sanitize()
		}
	}
	return "REVOKE ALL (" + c.columns + ") ON TABLE " + c.table + " FROM " + strings.Join(from, ", ") + " CASCADE"
}

// defaultACL is a default ACL that a revocation takes from: what
// ALTER DEFAULT PRIVILEGES FOR ROLE role IN SCHEMA schema (none when "")
// REVOKE ALL ON kind FROM grantees ("" for PUBLIC) takes.
type defaultACL struct {
	kind, schema, role string
	privileged         bool
	grantees           []string
}

func (d defaultACL) revoke() string {
	in := ""
	if d.schema != "" {
		in = " IN SCHEMA " + d.schema
	}
	from := make([]string, len(d.grantees))
	for i, g := range d.grantees {
		from[i] = "PUBLIC"
		if g != "" {
			from[i] = pgx.Identifier{g}.Sanitize()
		}
	}
	return "ALTER DEFAULT PRIVILEGES FOR ROLE " + pgx.Identifier{d.role}.Sanitize() + in + " REVOKE ALL ON " + d.kind + " FROM " + strings.Join(from, ", ")
}

// defaultACLError says that default privileges another role set still
// grant to role, which the admin may not act for, and what fixes it.
func defaultACLError(role, admin string, fixes []string) error {
	return &PrivilegeError{msg: fmt.Sprintf("default privileges still grant %s privileges on what other roles create later, and admin %s may not act for those roles; fix: as a superuser or a member of those roles, %s",
		role, pgx.Identifier{admin}.Sanitize(), strings.Join(fixes, "; "))}
}

// dependentsError explains a DROP OWNED BY roles that failed because
// objects of other roles depend on what roles own. CASCADE would drop
// those other objects, and handing the roles' objects to the admin (as
// REASSIGN OWNED would) lets a credential plant a SECURITY DEFINER
// function or a trigger that then runs with the admin's privileges; lessor
// does neither and leaves the decision to a person.
func dependentsError(err error, roles []string) error {
	var pgErr *pgconn.PgError
	detail := ""
	if errors.As(err, &pgErr) && pgErr.Detail != "" {
		detail = " (" + strings.ReplaceAll(pgErr.Detail, "\n", "; ") + ")"
	}
	return &detailedError{msg: fmt.Sprintf("objects owned by %s have dependents that other roles own%s, and lessor neither drops those nor gives the role's objects to its admin; fix: drop the dependents, or ALTER the objects they depend on OWNER TO a role of your choice, then revoke again",
		identList(roles), detail), err: err}
}

// actAs decides how the admin revokes an ACL entry granted by grantor: ""
// when its plain REVOKE acts as the grantor, "set" or "proxy" (see
// revokeGroup), or, when it cannot act as the grantor at all, a function
// making the error for one holder.
func actAs(adm adminRole, grantor string, grantorSuper, byOwner, canSet bool) (string, func(kind, object, holder string) error) {
	switch {
	case adm.super && byOwner, !adm.super && grantor == adm.name:
		return "", nil
	case adm.super && grantorSuper:
		return "proxy", nil
	case adm.super, canSet && !grantorSuper:
		return "set", nil
	}
	return "", func(kind, object, holder string) error {
		fix := fmt.Sprintf("run as %s: REVOKE ALL ON %s %s FROM %s", pgx.Identifier{grantor}.Sanitize(), kind, object, pgx.Identifier{holder}.Sanitize())
		if !grantorSuper {
			fix = fmt.Sprintf("GRANT %s TO %s, or %s", pgx.Identifier{grantor}.Sanitize(), pgx.Identifier{adm.name}.Sanitize(), fix)
		}
		return &PrivilegeError{msg: fmt.Sprintf("privileges on %s %s were granted by %s, as whom admin %s cannot act (a REVOKE removes only its own grantor's entry); fix: %s",
			strings.ToLower(kind), object, pgx.Identifier{grantor}.Sanitize(), pgx.Identifier{adm.name}.Sanitize(), fix)}
	}
}

// PrivilegeError says that the admin lacks a privilege that a revocation
// needs, and the statement that would give it.
type PrivilegeError struct {
	msg string
	err error
}

func (e *PrivilegeError) Error() string { return e.msg }
func (e *PrivilegeError) Unwrap() error { return e.err }

// membershipHint explains a refused GRANT "role" TO CURRENT_USER, which a
// non-superuser admin makes for why.
func membershipHint(err error, roles []string, admin string, version int, why string) error {
	what := "CREATEROLE"
	fix := "ALTER ROLE " + pgx.Identifier{admin}.Sanitize() + " CREATEROLE"
	if version >= 160000 {
		what = "ADMIN OPTION on " + identList(roles)
		fix = "as a superuser, GRANT " + identList(roles) + " TO " + pgx.Identifier{admin}.Sanitize() + " WITH ADMIN OPTION"
	}
	return &PrivilegeError{msg: fmt.Sprintf("admin %s needs the privileges of %s %s, and lacks %s to take them; fix: %s: %v",
		pgx.Identifier{admin}.Sanitize(), identList(roles), why, what, fix, err), err: err}
}

// roleAdminHint explains a refused ALTER ROLE or DROP ROLE of roles.
func roleAdminHint(err error, roles []string, admin string, version int) error {
	if sqlState(err) != "42501" {
		return err
	}
	what := "CREATEROLE"
	fix := "ALTER ROLE " + pgx.Identifier{admin}.Sanitize() + " CREATEROLE"
	if version >= 160000 {
		// On 16+ CREATE ROLE gives the creator ADMIN OPTION only when it
		// is not a superuser: roles made by another admin, or by this one
		// while it was a superuser, lack it.
		what = "CREATEROLE and ADMIN OPTION on " + identList(roles)
		fix = "as a superuser, GRANT " + identList(roles) + " TO " + pgx.Identifier{admin}.Sanitize() + " WITH ADMIN OPTION (and ALTER ROLE " + pgx.Identifier{admin}.Sanitize() + " CREATEROLE if it lacks it)"
	}
	return &PrivilegeError{msg: fmt.Sprintf("admin %s lacks %s, which disabling and dropping a role need; fix: %s: %v", pgx.Identifier{admin}.Sanitize(), what, fix, err), err: err}
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

// roleVanished reports whether err says that a role (or another catalog
// row) the revocation read was dropped by another session since: a
// statement that waited on that session's lock finds the row "concurrently
// deleted", one that came after finds the role missing.
func roleVanished(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "42704" || pgErr.Code == "XX000" && strings.Contains(pgErr.Message, "tuple concurrently deleted")
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
	var comment string
	var adm adminRole
	if err := db.queryRow(ctx, conn, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
		coalesce((SELECT d.description FROM pg_catalog.pg_shdescription d, pg_roles a WHERE a.rolname = $1 AND d.objoid = a.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid), ''),
		current_user, rolsuper FROM pg_roles WHERE rolname = current_user`,
		[]any{r.Username}, &exists, &comment, &adm.name, &adm.super); err != nil {
		return err
	}
	if !exists || r.Belongs != nil && !r.Belongs(comment) {
		return nil
	}
	if err := db.exec(ctx, conn, "ALTER ROLE "+pgx.Identifier{r.Username}.Sanitize()+" NOLOGIN"); err != nil {
		return fmt.Errorf("disable login: %w", err)
	}
	granted, err := db.terminate(ctx, conn, []string{r.Username}, adm)
	if err == nil {
		err = db.retry(ctx, func() error {
			return db.inTx(ctx, conn, func(tx pgx.Tx) error {
				return db.execEach(ctx, tx, "revocation", stmts)
			})
		})
	}
	// Whatever the statements did: a role they did not drop must not
	// leave the admin holding its privileges (for a dropped one, giving
	// back fails harmlessly).
	db.giveBack(ctx, conn, granted)
	return err
}

var _ querier = (*pgx.Conn)(nil)
