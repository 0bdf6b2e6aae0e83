package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	// ReasonRevokedPending: revoked while its issuer may still have been
	// creating its role; revoked again once the issuer's grace is over.
	ReasonRevokedPending = "revoked while being issued (revoked again after its grace)"
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
			sum.Due = sum.Due[:0]
			claims, err := loadClaims(tx, now)
			if err != nil {
				return err
			}
			return walkDue(tx, now, claims, dueChunk, func(key string, e *Entry, reason string, since time.Time) error {
				if e != nil && reason != "" {
					sum.Due = append(sum.Due, DueLease{LeaseID: e.ID, Reason: reason, DueSince: since, Attempts: e.Attempts})
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
			// next is the batch the previous settling transaction claimed.
			var next *claimedBatch
			for {
				var b claimedBatch
				var err error
				if next != nil {
					// Claimed already: it runs to its end even if the
					// run is stopping now.
					b, next = *next, nil
				} else {
					if stop.Load() || ctx.Err() != nil || closed(o.Stop) {
						return
					}
					// The time of this claim, not of the run's start: a
					// claim written with the start's time by a run that
					// has lasted longer than ClaimTimeout would have run
					// out already, and another reaper would revoke its
					// leases again.
					b, err = m.claimDue(ctx, m.now())
				}
				var res Result
				var adopted int
				if err == nil && len(b.pending) > 0 {
					// The claim goes with the last settling transaction.
					last := ""
					if len(b.claimed) == 0 {
						last = b.key
					}
					adopted, res, err = m.settlePending(ctx, b.pending, last)
				}
				if len(b.claimed) > 0 {
					// Claimed leases are revoked and settled even if
					// settling the pending ones failed. Unless the run is
					// stopping, the settling transaction also claims the
					// next batch, with the time it runs at.
					var then func(storage.Tx) error
					var nb claimedBatch
					if err == nil {
						if key, kerr := m.newClaimKey(); kerr == nil {
							then = func(tx storage.Tx) (err error) {
								nb = claimedBatch{}
								// Asked as late as can be, as a claim
								// of its own would be.
								if stop.Load() || ctx.Err() != nil || closed(o.Stop) {
									return nil
								}
								nb, err = m.claimIn(tx, m.now(), key)
								return err
							}
						}
					}
					r, claimedNext, rerr := m.revokeClaimedThen(ctx, b.claimed, false, b.key, b.until, then)
					if claimedNext {
						next = &nb
					}
					res.Revoked = append(res.Revoked, r.Revoked...)
					res.Failed = append(res.Failed, r.Failed...)
					err = errors.Join(err, rerr)
				}
				mu.Lock()
				sum.Skipped += b.skipped
				sum.Adopted += adopted
				sum.Revoked += len(res.Revoked)
				sum.Failed += len(res.Failed)
				sum.Errors = append(sum.Errors, res.Failed...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if o.Progress != nil && !b.empty() {
					o.Progress(sum.Revoked + sum.Failed)
				}
				mu.Unlock()
				if err != nil {
					stop.Store(true)
					if next != nil {
						// Claimed by the transaction that settled this
						// batch: leave nothing claimed that no one revokes
						// before its claim runs out.
						continue
					}
					return
				}
				if b.empty() {
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
	case ReasonAbandonedClaim, ReasonRevokedPending:
		return e.ClaimUntil
	case ReasonPending:
		return e.IssueTime
	}
	return e.ExpireTime
}

// A reaper claims a batch with one record, not by rewriting the record of
// every lease in it: sys/lease/claim/<random id> lists the leases it took
// (to revoke, and pending ones to adopt or drop) and until when. Another
// reaper skips the leases of a live claim; those of a claim that ran out
// (its reaper died) are due again as their own records say, and the next
// reaper deletes the stale claim. Writing a batch's claim is then one
// record, where rewriting each lease's record and moving its due key
// sealed, hashed and wrote four keys per lease, which was most of what a
// reap spent in the store. `lease revoke` still claims per record (state
// revoking), as it did.
const claimPrefix = "sys/lease/claim/"

// batchClaim is one reaper's claim on a batch of due leases.
type batchClaim struct {
	Until   time.Time `json:"until"`
	Revoke  []string  `json:"revoke,omitempty"`
	Pending []string  `json:"pending,omitempty"`
}

// claimRef is what the claims say of one lease.
type claimRef struct {
	until   time.Time
	pending bool // claimed to adopt or drop, not to revoke
}

// claimSet is every batch claim in the store, by lease id, and the keys
// of the claims that ran out.
type claimSet struct {
	leases  map[string]claimRef
	expired []string
}

// loadClaims reads the batch claims. There are as many as batches in
// flight (a few per running reaper), each read once per transaction.
func loadClaims(tx storage.Tx, now time.Time) (*claimSet, error) {
	// In one query where a read is a round trip, not a list and a read.
	cs := &claimSet{}
	keys, raws, err := storage.GetPrefix(tx, claimPrefix)
	if err != nil || len(keys) == 0 {
		return cs, err
	}
	cs.leases = map[string]claimRef{}
	for i, raw := range raws {
		if raw == nil {
			continue
		}
		var c batchClaim
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode lease claim %s: %w", strings.TrimPrefix(keys[i], claimPrefix), err)
		}
		if !c.Until.After(now) {
			cs.expired = append(cs.expired, keys[i])
		}
		add := func(id string, pending bool) {
			// A live claim wins over one that ran out.
			if old, ok := cs.leases[id]; !ok || old.until.Before(c.Until) {
				cs.leases[id] = claimRef{until: c.Until, pending: pending}
			}
		}
		for _, id := range c.Revoke {
			add(id, false)
		}
		for _, id := range c.Pending {
			add(id, true)
		}
	}
	return cs, nil
}

// live reports whether a reaper's claim on id still runs at now.
func (cs *claimSet) live(id string, now time.Time) bool {
	c, ok := cs.leases[id]
	return ok && c.until.After(now)
}

// show makes e look as a lease a live batch claim holds to revoke looked
// when its record was claimed: revoking, until the claim runs out. (A
// pending lease claimed to be adopted or dropped stays pending.)
func (cs *claimSet) show(e *Entry, now time.Time) {
	if e == nil {
		return
	}
	if c, ok := cs.leases[e.ID]; ok && !c.pending && c.until.After(now) {
		e.State = StateRevoking
		e.ClaimUntil = c.until
		e.raw = nil // no longer what the record says
	}
}

// dueChunk is how many due records walkDue reads at once.
const dueChunk = 500

// walkDue calls fn for every due-index key up to now that no live batch
// claim holds, with its record (read in chunks, so that a store that pays
// a round trip per read pays one per chunk) and the reason it is due (""
// when the key is stale or the lease not due) and since when.
func walkDue(tx storage.Tx, now time.Time, claims *claimSet, chunk int, fn func(key string, e *Entry, reason string, since time.Time) error) error {
	var keys, ids []string
	stopped := false
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		defer func() { keys, ids = keys[:0], ids[:0] }()
		var recKeys []string
		for _, id := range ids {
			if id != "" {
				recKeys = append(recKeys, idPrefix+id)
			}
		}
		raws, err := storage.GetMany(tx, recKeys)
		if err != nil {
			return err
		}
		j := 0
		for i, key := range keys {
			if ids[i] == "" {
				if err := fn(key, nil, "", time.Time{}); err != nil {
					return err
				}
				continue
			}
			raw := raws[j]
			j++
			var e *Entry
			if raw != nil {
				if e, err = decode(ids[i], raw); err != nil {
					return err
				}
			}
			if e == nil || e.DueKey != key {
				if err := fn(key, nil, "", time.Time{}); err != nil {
					return err
				}
				continue
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
					if e.RevokedPending {
						reason = ReasonRevokedPending
					}
				}
			}
			since := dueSince(e, reason)
			if c, ok := claims.leases[e.ID]; ok && !c.pending && (reason == ReasonExpired || reason == ReasonRetry) {
				// Its reaper died: the claim ran out (a live one was
				// skipped before reading the record).
				reason, since = ReasonAbandonedClaim, c.until
			}
			if err := fn(key, e, reason, since); err != nil {
				return err
			}
		}
		return nil
	}
	err := tx.Walk(duePrefix, func(key string) error {
		at, id, ok := dueTime(key)
		if ok && at.After(now) {
			return storage.ErrStop
		}
		if ok && claims.live(id, now) {
			return nil
		}
		keys, ids = append(keys, key), append(ids, id)
		if len(keys) < chunk {
			return nil
		}
		err := flush()
		if errors.Is(err, storage.ErrStop) {
			stopped = true
		}
		return err
	})
	if err != nil || stopped {
		return err
	}
	if err := flush(); !errors.Is(err, storage.ErrStop) {
		return err
	}
	return nil
}

// claimDue claims up to one batch of due leases in one record (see
// claimPrefix): to revoke (claimed), or, for pending leases not yet
// expired, to adopt or drop (pending). A pending lease stays pending while
// claimed: were this reaper to die, the next one must again ask whether
// its secret exists, never revoke it because a claim ran out. It returns
// the claim's key, for the settling transaction to delete.
func (m *Manager) claimDue(ctx context.Context, now time.Time) (b claimedBatch, err error) {
	key, err := m.newClaimKey()
	if err != nil {
		return claimedBatch{}, err
	}
	err = m.store.Update(ctx, func(tx storage.Tx) error {
		b, err = m.claimIn(tx, now, key)
		return err
	})
	return b, err
}

// claimedBatch is what one claim took: leases to revoke (claimed), pending
// ones to adopt or drop, the claim record's key, and how many due leases
// another live reaper's claim held.
type claimedBatch struct {
	claimed, pending []*Entry
	key              string
	until            time.Time // when the claim runs out
	skipped          int
}

func (b claimedBatch) empty() bool { return len(b.claimed)+len(b.pending) == 0 }

func (m *Manager) newClaimKey() (string, error) {
	id, err := randomID(m.o.Rand, 24)
	if err != nil {
		return "", err
	}
	return claimPrefix + id, nil
}

// claimIn claims, in tx, up to one batch of due leases under the claim
// record key (see claimDue).
func (m *Manager) claimIn(tx storage.Tx, now time.Time, key string) (claimedBatch, error) {
	b := claimedBatch{key: key}
	claims, err := loadClaims(tx, now)
	if err != nil {
		return claimedBatch{}, err
	}
	var stale []string
	err = walkDue(tx, now, claims, m.o.BatchSize, func(key string, e *Entry, reason string, _ time.Time) error {
		if e == nil {
			stale = append(stale, key)
			return nil
		}
		if reason == "" {
			b.skipped++
			return nil
		}
		if reason == ReasonPending {
			b.pending = append(b.pending, e)
		} else {
			b.claimed = append(b.claimed, e)
		}
		if len(b.claimed)+len(b.pending) >= m.o.BatchSize {
			return storage.ErrStop
		}
		return nil
	})
	if err != nil {
		return claimedBatch{}, err
	}
	for _, k := range append(stale, claims.expired...) {
		if err := tx.Delete(k); err != nil {
			return claimedBatch{}, err
		}
	}
	if b.empty() {
		return b, nil
	}
	c := batchClaim{Until: now.Add(m.o.ClaimTimeout)}
	b.until = c.Until
	for _, e := range b.claimed {
		c.Revoke = append(c.Revoke, e.ID)
	}
	for _, e := range b.pending {
		c.Pending = append(c.Pending, e.ID)
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return claimedBatch{}, err
	}
	return b, tx.Put(key, raw)
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
func (m *Manager) settlePending(ctx context.Context, pending []*Entry, claimKey string) (adopted int, res Result, err error) {
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
		current, err := reread(tx, pending)
		if err != nil {
			return err
		}
		if err := prefetch(tx, current); err != nil {
			return err
		}
		if claimKey != "" {
			if err := tx.Delete(claimKey); err != nil {
				return err
			}
		}
		for _, e := range current {
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
