package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Rotating a static role's password, in the same three steps as
// rotate-root, so that a crash at any instant leaves a state the next
// command settles:
//
//  1. store: the new password is recorded as pending, with a claim (the
//     role is due again when the claim runs out);
//  2. PostgreSQL: the rotation statements set it, in one transaction;
//  3. store: the pending password becomes the current one, and the role
//     is due at its next scheduled rotation.
//
// A role found with a pending password whose claim ran out is settled by
// logging in as the role with the pending password: accepted, it is
// promoted; otherwise the rotation is rolled forward (step 2 again with
// the same password, then 3), which is right whichever password
// PostgreSQL holds. static-creds, rotate-role, delete and reap all settle
// this way, so the password static-creds returns is always the one
// PostgreSQL accepts.

// errRotationBusy: another process holds the role's rotation claim.
var errRotationBusy = logical.Errorf("a rotation of this static role is in progress; retry in a moment")

// Retry backoff of failed rotations: 10 s doubling to 1 h.
const (
	staticRetryBase = 10 * time.Second
	staticRetryMax  = time.Hour
)

func staticBackoff(attempts int) time.Duration {
	d := staticRetryBase
	for i := 1; i < attempts && d < staticRetryMax; i++ {
		d *= 2
	}
	return min(d, staticRetryMax)
}

// scheduleParser reads Vault's rotation_schedule: five fields (minute,
// hour, day of month, month, day of week), names allowed, no seconds and
// no @descriptors, evaluated in UTC.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

func parseSchedule(s string) (cron.Schedule, error) {
	if s == "" {
		return nil, errors.New("empty schedule")
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return nil, errors.New("time zones are not supported: schedules are in UTC")
	}
	sched, err := scheduleParser.Parse(s)
	if err != nil {
		return nil, err
	}
	// "0 0 30 2 *" parses but never fires (the parser gives up after five
	// years and answers the zero time, which would be due at every reap).
	if sched.Next(time.Now().UTC()).IsZero() {
		return nil, errors.New("it never fires: no date matches it")
	}
	return sched, nil
}

// rotateStatic rotates one static role now, or settles the rotation a
// dead process left. With onlyIfDue (reap), a role that is no longer due
// (another reaper was first) is left alone and rotated is false.
func (b *Backend) rotateStatic(ctx context.Context, st storage.Store, sys logical.SystemView, name string, onlyIfDue bool) (rotated bool, err error) {
	now, started := sys.Now().UTC(), time.Now()
	r, cfg, err := loadStatic(ctx, st, name)
	switch {
	case err != nil:
		return false, err
	case r == nil:
		return false, noStaticRole(name)
	case onlyIfDue && r.dueAt().After(now):
		return false, nil
	case r.Pending != nil && r.Pending.ClaimUntil.After(now):
		return false, errRotationBusy
	case cfg == nil:
		return false, recordStaticFailure(ctx, st, name, r, now, missingConfig(r.DBName))
	case !cfg.roleAllowed(name):
		return false, recordStaticFailure(ctx, st, name, r, now, fmt.Errorf("%q is not an allowed role", name))
	case isStoreLogin(sys, r.Username):
		// Refused when the role was made, but the store may have moved
		// to PostgreSQL as this login since.
		return false, recordStaticFailure(ctx, st, name, r, now, storeLoginError(r.Username))
	}
	if onlyIfDue && r.Pending == nil && r.Attempts == 0 && r.RotationSchedule != "" && r.RotationWindow > 0 &&
		now.After(r.NextRotation.Add(r.window())) {
		// Past its window: as in Vault, wait for the next scheduled time.
		return false, st.Update(ctx, func(tx storage.Tx) error {
			cur, err := getStatic(tx, name)
			if err != nil || cur == nil || cur.DueKey != r.DueKey {
				return err
			}
			cur.NextRotation = cur.nextAfter(now)
			return putStatic(tx, name, cur)
		})
	}

	db, err := b.open(ctx, st, r.DBName, cfg)
	if err != nil {
		return false, recordStaticFailure(ctx, st, name, r, now, err)
	}
	defer db.Close(context.WithoutCancel(ctx))

	var password string
	if p := r.Pending; p != nil {
		// A rotation that its process left unfinished.
		res, _ := postgres.TryLogin(ctx, cfg.pluginConfig(), r.Username, p.Password)
		if res == postgres.LoginAccepted {
			if err := promoteStatic(ctx, st, name, p.Password, now, now); err != nil || onlyIfDue {
				return err == nil, err
			}
			// rotate-role asked for a new password, not the settled one.
			db.Close(context.WithoutCancel(ctx))
			return b.rotateStatic(ctx, st, sys, name, false)
		}
		password = p.Password
	} else {
		if password, err = b.staticPassword(ctx, sys, cfg, r); err != nil {
			return false, recordStaticFailure(ctx, st, name, r, now, fmt.Errorf("generate password: %w", err))
		}
	}
	seen := r.DueKey
	err = st.Update(ctx, func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil {
			return err
		}
		if cur == nil {
			return noStaticRole(name)
		}
		if cur.DueKey != seen {
			// Another process rotated or claimed it since we read it.
			return errRotationBusy
		}
		cur.Pending = &staticPending{Password: password, Created: now, ClaimUntil: now.Add(staticClaim)}
		r = cur
		return putStatic(tx, name, cur)
	})
	if err != nil {
		if errors.Is(err, errRotationBusy) && onlyIfDue {
			return false, nil
		}
		return false, err
	}
	if err := b.finishRotation(ctx, st, name, db, cfg, r, password, now, started, false); err != nil {
		return false, err
	}
	return true, nil
}

// finishRotation runs steps 2 and 3 for a password already recorded as
// pending. When PostgreSQL certainly did not take it, the pending
// password is dropped (creating: the role is not kept) and the failure
// recorded for a retry; when it is uncertain, the pending password stays
// for the next command to settle.
func (b *Backend) finishRotation(ctx context.Context, st storage.Store, name string, db *postgres.DB, cfg *dbConfig, r *staticRole, password string, now, started time.Time, creating bool) error {
	failpoint.Hit(failpoint.StaticRotateAfterPending)
	// started is when now was read, by this process's clock: the claim
	// runs out staticClaim after it.
	actx, cancel := context.WithDeadline(ctx, started.Add(staticAlterTimeout))
	err := db.SetPassword(actx, r.Username, password, r.RotationStatements)
	cancel()
	if err != nil {
		err = cfg.redactStatements(err, password)
		if !isDefiniteFailure(err) {
			return fmt.Errorf("rotate %q: %w (the new password stays pending and is settled by the next command or reap)", r.Username, err)
		}
		werr := st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
			cur, gerr := getStatic(tx, name)
			if gerr != nil || cur == nil || cur.Pending == nil || cur.Pending.Password != password {
				return gerr
			}
			if creating {
				return deleteStatic(tx, name, cur)
			}
			cur.Pending = nil
			failStatic(cur, now, err)
			return putStatic(tx, name, cur)
		})
		return errors.Join(fmt.Errorf("rotate %q: %w", r.Username, err), werr)
	}
	failpoint.Hit(failpoint.StaticRotateAfterAlter)
	if err := promoteStatic(ctx, st, name, password, now, now); err != nil {
		return fmt.Errorf("store the new password of %q (it stays pending and is settled by the next command or reap): %w", r.Username, err)
	}
	return nil
}

// promoteStatic makes a pending password that PostgreSQL holds the
// current one, if it is still the pending one.
func promoteStatic(ctx context.Context, st storage.Store, name, password string, at, now time.Time) error {
	return st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil || cur == nil || cur.Pending == nil || cur.Pending.Password != password {
			return err
		}
		if cur.Pending.Undo && cur.Pending.ClaimUntil.After(now) {
			// A delete is setting the password static-creds showed
			// back: this one is about to stop working.
			return logical.Errorf("static role %q is being deleted; retry in a moment", name)
		}
		cur.Password = password
		cur.Pending = nil
		cur.LastRotation = at.UTC()
		cur.NextRotation = cur.nextAfter(cur.LastRotation)
		cur.Attempts, cur.LastError, cur.RetryAt = 0, "", time.Time{}
		return putStatic(tx, name, cur)
	})
}

func failStatic(r *staticRole, now time.Time, err error) {
	r.Attempts++
	r.LastError = err.Error()
	r.RetryAt = now.Add(staticBackoff(r.Attempts))
}

// recordStaticFailure records a rotation that failed before anything
// reached PostgreSQL, and returns err.
func recordStaticFailure(ctx context.Context, st storage.Store, name string, r *staticRole, now time.Time, err error) error {
	werr := st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		cur, gerr := getStatic(tx, name)
		if gerr != nil || cur == nil || cur.DueKey != r.DueKey {
			return gerr
		}
		failStatic(cur, now, err)
		return putStatic(tx, name, cur)
	})
	return errors.Join(err, werr)
}

// Reasons a static role is due, as reap -dry-run shows them.
const (
	ReasonRotation   = "scheduled rotation"
	ReasonRetry      = "retry after failed rotation"
	ReasonUnfinished = "rotation left unfinished"
)

// RotateDue rotates every static role that is due; it walks the due
// index only up to now.
func (b *Backend) RotateDue(ctx context.Context, st storage.Store, sys logical.SystemView, o logical.RotateOptions) (*logical.RotationReport, error) {
	now := sys.Now().UTC()
	rep := &logical.RotationReport{}
	var names, keys []string
	var stale []string
	err := st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(staticDuePrefix, func(key string) error {
			at, name, ok := staticDueTime(key)
			if !ok {
				stale = append(stale, key)
				return nil
			}
			if at.After(now) {
				return storage.ErrStop
			}
			if !o.DryRun {
				names, keys = append(names, name), append(keys, key)
				return nil
			}
			r, err := getStatic(tx, name)
			if err != nil {
				return err
			}
			if r == nil || r.DueKey != key {
				return nil
			}
			d := logical.DueRotation{Role: name, Reason: ReasonRotation, DueSince: at, Attempts: r.Attempts}
			switch {
			case r.Pending != nil:
				d.Reason = ReasonUnfinished
			case r.Attempts > 0:
				d.Reason = ReasonRetry
			}
			rep.Due = append(rep.Due, d)
			return nil
		})
	})
	if err != nil || o.DryRun {
		return rep, err
	}
	if len(stale) > 0 {
		if err := st.Update(ctx, func(tx storage.Tx) error {
			for _, k := range stale {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return rep, err
		}
	}
	conns := map[string]*postgres.DB{}
	defer func() {
		for _, db := range conns {
			db.Close(context.WithoutCancel(ctx))
		}
	}()
	for start := 0; start < len(names); start += staticBatch {
		if ctx.Err() != nil || closed(o.Stop) {
			break
		}
		end := min(start+staticBatch, len(names))
		if err := b.rotateBatch(ctx, st, sys, names[start:end], keys[start:end], conns, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func staticDueTime(key string) (time.Time, string, bool) {
	rest := strings.TrimPrefix(key, staticDuePrefix)
	secs, name, ok := strings.Cut(rest, "/")
	if !ok || len(secs) != 12 || name == "" {
		return time.Time{}, "", false
	}
	var n int64
	for _, c := range secs {
		if c < '0' || c > '9' {
			return time.Time{}, "", false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(n, 0).UTC(), name, true
}

// closed reports whether c is closed; a nil channel never is.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// staticBatch is how many due roles reap claims in one store transaction.
const staticBatch = 250

// rotateBatch rotates due roles the way rotateStatic rotates one, with
// the store work batched: one transaction records every new password as
// pending, the statements run one role at a time on one connection per
// database connection config, and one transaction promotes what
// PostgreSQL took. Roles that need more than a plain rotation (a rotation
// left unfinished, a window that passed) go through rotateStatic.
func (b *Backend) rotateBatch(ctx context.Context, st storage.Store, sys logical.SystemView, names, keys []string, conns map[string]*postgres.DB, rep *logical.RotationReport) error {
	now, started := sys.Now().UTC(), time.Now()
	type item struct {
		name     string
		r        *staticRole
		cfg      *dbConfig
		password string
		err      error
	}
	var items []*item
	var stale []string
	err := st.View(ctx, func(tx storage.Tx) error {
		cfgs := map[string]*dbConfig{}
		for i, name := range names {
			r, err := getStatic(tx, name)
			if err != nil {
				return err
			}
			if r == nil {
				stale = append(stale, keys[i])
				continue
			}
			if r.DueKey != keys[i] || r.dueAt().After(now) {
				continue // moved on since the walk
			}
			cfg, seen := cfgs[r.DBName]
			if !seen {
				var c dbConfig
				found, err := getJSON(tx, configPrefix+r.DBName, &c)
				if err != nil {
					return err
				}
				if found {
					cfg = &c
				}
				cfgs[r.DBName] = cfg
			}
			items = append(items, &item{name: name, r: r, cfg: cfg})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		// Keys of roles deleted meanwhile.
		if err := st.Update(ctx, func(tx storage.Tx) error {
			for _, k := range stale {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}

	fail := func(name string, err error) {
		rep.Failed = append(rep.Failed, logical.RotationFailure{Role: name, Error: err.Error()})
	}
	var batch []*item
	for _, it := range items {
		r := it.r
		pastWindow := r.RotationSchedule != "" && r.RotationWindow > 0 && r.Attempts == 0 && now.After(r.NextRotation.Add(r.window()))
		if r.Pending != nil || pastWindow || it.cfg == nil || !it.cfg.roleAllowed(it.name) || isStoreLogin(sys, r.Username) {
			// The single-role path settles, skips or records these.
			rotated, err := b.rotateStatic(ctx, st, sys, it.name, true)
			switch {
			case errors.Is(err, errRotationBusy):
			case err != nil:
				fail(it.name, err)
			case rotated:
				rep.Rotated = append(rep.Rotated, it.name)
			}
			continue
		}
		if _, ok := conns[r.DBName]; !ok {
			db, err := b.open(ctx, st, r.DBName, it.cfg)
			if err != nil {
				fail(it.name, recordStaticFailure(ctx, st, it.name, r, now, err))
				continue
			}
			conns[r.DBName] = db
		}
		pw, err := b.staticPassword(ctx, sys, it.cfg, r)
		if err != nil {
			fail(it.name, recordStaticFailure(ctx, st, it.name, r, now, fmt.Errorf("generate password: %w", err)))
			continue
		}
		it.password = pw
		batch = append(batch, it)
	}
	if len(batch) == 0 {
		return nil
	}

	// 1. Record every new password as pending, with a claim.
	var claimed []*item
	if err := st.Update(ctx, func(tx storage.Tx) error {
		claimed = claimed[:0]
		for _, it := range batch {
			cur, err := getStatic(tx, it.name)
			if err != nil {
				return err
			}
			if cur == nil || cur.DueKey != it.r.DueKey {
				continue // another reaper got there first
			}
			cur.Pending = &staticPending{Password: it.password, Created: now, ClaimUntil: now.Add(staticClaim)}
			if err := putStatic(tx, it.name, cur); err != nil {
				return err
			}
			it.r = cur
			claimed = append(claimed, it)
		}
		return nil
	}); err != nil {
		return err
	}
	failpoint.Hit(failpoint.StaticRotateAfterPending)

	// 2. PostgreSQL: one transaction per database connection config, a
	// savepoint per role, so that one commit covers the batch.
	byDB := map[string][]*item{}
	var order []string
	for _, it := range claimed {
		if _, ok := byDB[it.r.DBName]; !ok {
			order = append(order, it.r.DBName)
		}
		byDB[it.r.DBName] = append(byDB[it.r.DBName], it)
	}
	// The claims run out staticClaim after now; started is that moment by
	// this process's clock.
	actx, cancel := context.WithDeadline(ctx, started.Add(staticAlterTimeout))
	defer cancel()
	for _, dbName := range order {
		its := byDB[dbName]
		changes := make([]postgres.PasswordChange, len(its))
		for i, it := range its {
			changes[i] = postgres.PasswordChange{Username: it.r.Username, Password: it.password, Statements: it.r.RotationStatements}
		}
		for i, err := range conns[dbName].SetPasswords(actx, changes) {
			if err != nil {
				its[i].err = its[i].cfg.redactStatements(err, its[i].password)
			}
		}
	}
	failpoint.Hit(failpoint.StaticRotateAfterAlter)

	// 3. Promote what PostgreSQL took; drop what it certainly refused;
	// leave an uncertain one pending, for the next command to settle.
	var rotated []string
	var failed []logical.RotationFailure
	err = st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		rotated, failed = rotated[:0], failed[:0]
		for _, it := range claimed {
			cur, err := getStatic(tx, it.name)
			if err != nil {
				return err
			}
			if cur == nil || cur.Pending == nil || cur.Pending.Password != it.password {
				continue
			}
			switch {
			case it.err == nil:
				cur.Password, cur.Pending = it.password, nil
				cur.LastRotation = now
				cur.NextRotation = cur.nextAfter(now)
				cur.Attempts, cur.LastError, cur.RetryAt = 0, "", time.Time{}
				rotated = append(rotated, it.name)
			case isDefiniteFailure(it.err):
				cur.Pending = nil
				failStatic(cur, now, it.err)
				failed = append(failed, logical.RotationFailure{Role: it.name, Error: it.err.Error()})
			default:
				failed = append(failed, logical.RotationFailure{Role: it.name, Error: it.err.Error() + " (the new password stays pending and is settled by the next command or reap)"})
				continue
			}
			if err := putStatic(tx, it.name, cur); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store rotated passwords (they stay pending and are settled by the next command or reap): %w", err)
	}
	rep.Rotated = append(rep.Rotated, rotated...)
	rep.Failed = append(rep.Failed, failed...)
	return nil
}
