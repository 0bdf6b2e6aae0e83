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
	return scheduleParser.Parse(s)
}

// rotateStatic rotates one static role now, or settles the rotation a
// dead process left. With onlyIfDue (reap), a role that is no longer due
// (another reaper was first) is left alone and rotated is false.
func (b *Backend) rotateStatic(ctx context.Context, st storage.Store, sys logical.SystemView, name string, onlyIfDue bool) (rotated bool, err error) {
	now := sys.Now().UTC()
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
			return true, promoteStatic(ctx, st, name, p.Password, now)
		}
		password = p.Password
	} else {
		if password, err = b.newPassword(ctx, sys, cfg); err != nil {
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
	if err := b.finishRotation(ctx, st, name, db, cfg, r, password, now, false); err != nil {
		return false, err
	}
	return true, nil
}

// finishRotation runs steps 2 and 3 for a password already recorded as
// pending. When PostgreSQL certainly did not take it, the pending
// password is dropped (creating: the role is not kept) and the failure
// recorded for a retry; when it is uncertain, the pending password stays
// for the next command to settle.
func (b *Backend) finishRotation(ctx context.Context, st storage.Store, name string, db *postgres.DB, cfg *dbConfig, r *staticRole, password string, now time.Time, creating bool) error {
	failpoint.Hit(failpoint.StaticRotateAfterPending)
	err := db.SetPassword(ctx, r.Username, password, r.RotationStatements)
	if err != nil {
		err = cfg.redact(err, password)
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
	if err := promoteStatic(ctx, st, name, password, now); err != nil {
		return fmt.Errorf("store the new password of %q (it stays pending and is settled by the next command or reap): %w", r.Username, err)
	}
	return nil
}

// promoteStatic makes a pending password that PostgreSQL holds the
// current one, if it is still the pending one.
func promoteStatic(ctx context.Context, st storage.Store, name, password string, at time.Time) error {
	return st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil || cur == nil || cur.Pending == nil || cur.Pending.Password != password {
			return err
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
	for i, name := range names {
		if ctx.Err() != nil || closed(o.Stop) {
			break
		}
		rotated, err := b.rotateStatic(ctx, st, sys, name, true)
		switch {
		case errors.Is(err, errRotationBusy):
		case err != nil:
			var ce *logical.CodedError
			if errors.As(err, &ce) && strings.HasPrefix(ce.Msg, "no static role found") {
				// A key left by a role deleted meanwhile.
				if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Delete(keys[i]) }); err != nil {
					return rep, err
				}
				continue
			}
			rep.Failed = append(rep.Failed, logical.RotationFailure{Role: name, Error: err.Error()})
		case rotated:
			rep.Rotated = append(rep.Rotated, name)
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
