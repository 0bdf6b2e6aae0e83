package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Reasons a lease is due, as reap reports them.
const (
	ReasonExpired = "expired"
	ReasonRetry   = "retry after failed revocation"
	// ReasonPending: a pending lease past its grace and not expired (its
	// issuer died, or handed the secret out and left the lease to be
	// adopted); reap adopts it if its secret exists and drops it if not.
	ReasonPending        = "pending past its grace (adopted if its role exists, else dropped)"
	ReasonAbandonedClaim = "revoker died mid-revocation"
)

// DueLease is a lease reap would revoke, and why.
type DueLease struct {
	LeaseID  string    `json:"lease_id"`
	Reason   string    `json:"reason"`
	DueSince time.Time `json:"due_since"`
	Attempts int       `json:"attempts,omitempty"`
}

// ReapSummary is what one reap run did.
type ReapSummary struct {
	Revoked int `json:"revoked"`
	// Adopted counts pending leases whose secret existed (their issuer
	// handed the credential out and left activation to a later command),
	// now active until their expiry.
	Adopted int `json:"adopted,omitempty"`
	// Failed counts revocations that failed in this run.
	Failed int `json:"failed"`
	// WaitingRetry counts leases whose revocation failed (in this or an
	// earlier run) and that wait for their next attempt. (Not "pending":
	// that is the state of a lease whose issuer has not finished.)
	WaitingRetry int `json:"waiting_retry"`
	// Skipped counts due leases another live reaper had claimed.
	Skipped int        `json:"skipped"`
	Errors  []Failure  `json:"errors"`
	Due     []DueLease `json:"due,omitempty"`
}

// ReapOptions tune one reap run.
type ReapOptions struct {
	DryRun bool
	// Progress, when set, is called after every batch.
	Progress func(done int)
	// Workers is how many batches are revoked at once, each on database
	// connections of its own (0: DefaultReapWorkers).
	Workers int
	// Stop, when closed, makes the run claim no further batch; the
	// batches already claimed are revoked and settled (with ctx, which a
	// caller that stops on a signal therefore keeps alive).
	Stop <-chan struct{}
}

// Reap revokes every lease that is due: expired, waiting for a retry, left
// pending by a dead issuer, or claimed by a dead revoker. Each batch is
// claimed in one store transaction, revoked with one backend call per
// mount, and settled in another transaction, so two reapers running at
// once never revoke the same lease twice.
func (m *Manager) Reap(ctx context.Context, o ReapOptions) (*ReapSummary, error) {
	sum := &ReapSummary{Errors: []Failure{}}
	now := m.now()
	if o.DryRun {
		err := m.store.View(ctx, func(tx storage.Tx) error {
			return walkDue(tx, now, func(key string, e *Entry, reason string) error {
				if e != nil && reason != "" {
					sum.Due = append(sum.Due, DueLease{LeaseID: e.ID, Reason: reason, DueSince: dueSince(e, reason), Attempts: e.Attempts})
				}
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
		return sum, m.countPending(ctx, sum)
	}
	// Workers claim and revoke batches side by side, each exactly as a
	// separate reaper would (claims are transactional, so no lease is
	// revoked twice). PostgreSQL then works on two batches with two
	// backends: 1.3x the leases/s for group-role grants, 1.6x for
	// per-table grants, whose concurrent REVOKEs on one table PostgreSQL
	// sometimes fails as "tuple concurrently updated" and the plugin
	// retries.
	// A worker that fails stops the others from claiming more, but a batch
	// already claimed runs to its end and is settled: cut off in the
	// middle, it would leave roles half torn down and leases claimed
	// until the claim expires.
	defer m.closeIdle(ctx)
	var (
		mu       sync.Mutex
		firstErr error
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	workers := o.Workers
	if workers <= 0 {
		workers = DefaultReapWorkers
	}
	for range workers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil && !closed(o.Stop) {
				claimed, pending, skipped, err := m.claimDue(ctx, now)
				var res Result
				var adopted int
				if err == nil && len(pending) > 0 {
					adopted, res, err = m.settlePending(ctx, pending)
				}
				if len(claimed) > 0 {
					// Claimed leases are revoked and settled even if
					// settling the pending ones failed.
					r, rerr := m.revokeClaimed(ctx, claimed, false)
					res.Revoked = append(res.Revoked, r.Revoked...)
					res.Failed = append(res.Failed, r.Failed...)
					err = errors.Join(err, rerr)
				}
				claimed = append(claimed, pending...)
				mu.Lock()
				sum.Skipped += skipped
				sum.Adopted += adopted
				sum.Revoked += len(res.Revoked)
				sum.Failed += len(res.Failed)
				sum.Errors = append(sum.Errors, res.Failed...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if o.Progress != nil && len(claimed) > 0 {
					o.Progress(sum.Revoked + sum.Failed)
				}
				mu.Unlock()
				if err != nil {
					stop.Store(true)
					return
				}
				if len(claimed) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return sum, firstErr
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	return sum, m.countPending(ctx, sum)
}

func (m *Manager) countPending(ctx context.Context, sum *ReapSummary) error {
	return m.store.View(ctx, func(tx storage.Tx) error {
		n := 0
		err := tx.Walk(failedPrefix, func(string) error { n++; return nil })
		sum.WaitingRetry = n
		return err
	})
}

func dueSince(e *Entry, reason string) time.Time {
	switch reason {
	case ReasonRetry:
		return e.NextAttempt
	case ReasonAbandonedClaim:
		return e.ClaimUntil
	case ReasonPending:
		return e.IssueTime
	}
	return e.ExpireTime
}

// walkDue calls fn for every due-index key up to now with its record and
// the reason it is due ("" when the key is stale or the lease not due).
func walkDue(tx storage.Tx, now time.Time, fn func(key string, e *Entry, reason string) error) error {
	return tx.Walk(duePrefix, func(key string) error {
		at, id, ok := dueTime(key)
		if !ok {
			return fn(key, nil, "")
		}
		if at.After(now) {
			return storage.ErrStop
		}
		e, err := get(tx, id)
		if err != nil {
			return err
		}
		if e == nil || e.DueKey != key {
			return fn(key, nil, "")
		}
		reason := ""
		switch e.State {
		case StateActive:
			if !e.ExpireTime.After(now) {
				reason = ReasonExpired
			}
		case StateFailed:
			reason = ReasonRetry
		case StatePending:
			reason = ReasonExpired
			if e.ExpireTime.After(now) {
				reason = ReasonPending
			}
		case StateRevoking:
			if !e.ClaimUntil.After(now) {
				reason = ReasonAbandonedClaim
			}
		}
		return fn(key, e, reason)
	})
}

// claimDue claims up to one batch of due leases: to revoke (claimed), or,
// for pending leases not yet expired, to adopt or drop (pending). A
// pending lease is claimed without leaving the pending state: were this
// reaper to die, the next one must again ask whether its secret exists,
// never revoke it because a claim ran out.
func (m *Manager) claimDue(ctx context.Context, now time.Time) (claimed, pending []*Entry, skipped int, err error) {
	err = m.store.Update(ctx, func(tx storage.Tx) error {
		claimed, pending, skipped = claimed[:0], pending[:0], 0
		var stale []string
		err := walkDue(tx, now, func(key string, e *Entry, reason string) error {
			if e == nil {
				stale = append(stale, key)
				return nil
			}
			if reason == "" {
				skipped++
				return nil
			}
			e.ClaimUntil = now.Add(m.o.ClaimTimeout)
			if reason == ReasonPending {
				pending = append(pending, e)
			} else {
				e.State = StateRevoking
				claimed = append(claimed, e)
			}
			if len(claimed)+len(pending) >= m.o.BatchSize {
				return storage.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		for _, e := range append(claimed, pending...) {
			if err := put(tx, e, e.ClaimUntil); err != nil {
				return err
			}
		}
		return nil
	})
	return claimed, pending, skipped, err
}

// settlePending decides the pending leases reap claimed: those whose
// secret the backend confirms are activated (adopted); those whose secret
// certainly does not exist are deleted (their issuer died before creating
// it, or its creation rolled back), which counts as revoked, without a
// word to the database: a role of that name that does not carry this
// lease's comment is not this lease's. When the backend cannot tell, the
// lease stays pending and is asked about again after a backoff, as a
// failed revocation would be retried; it is never revoked on a guess, for
// its credential may have been handed out.
func (m *Manager) settlePending(ctx context.Context, pending []*Entry) (adopted int, res Result, err error) {
	created, cerr := m.created(ctx, pending)
	if cerr == nil {
		cerr = errors.New("the backend gave no answer")
	}
	some := false
	for _, ok := range created {
		some = some || ok
	}
	if some {
		failpoint.Hit(failpoint.IssueBeforeActivate)
	}
	now := m.now()
	err = m.store.Update(ctx, func(tx storage.Tx) error {
		adopted, res = 0, Result{}
		for _, p := range pending {
			e, err := get(tx, p.ID)
			if err != nil {
				return err
			}
			if e == nil || e.State != StatePending {
				continue
			}
			exists, known := created[e.ID]
			switch {
			case known && exists:
				activate(e)
				if err := put(tx, e, e.ExpireTime); err != nil {
					return err
				}
				adopted++
			case known:
				if err := remove(tx, e); err != nil {
					return err
				}
				res.Revoked = append(res.Revoked, e.ID)
			default:
				e.Attempts++
				e.LastError = truncate(cerr.Error(), 500)
				e.NextAttempt = now.Add(m.backoff(e.Attempts))
				e.ClaimUntil = time.Time{}
				if err := put(tx, e, e.NextAttempt); err != nil {
					return err
				}
				res.Failed = append(res.Failed, Failure{LeaseID: e.ID, Error: e.LastError})
			}
		}
		return nil
	})
	if err == nil && some {
		failpoint.Hit(failpoint.IssueAfterActivate)
	}
	return adopted, res, err
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
