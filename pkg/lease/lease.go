// Package lease keeps lessor's lease records and does everything that
// happens to a lease after its secret is issued: activation, renewal,
// revocation (one, by prefix, by token, by mount) and reaping what is due.
//
// Records live in the sealed store under sys/lease/:
//
//	sys/lease/id/<lease id>            the record (JSON)
//	sys/lease/due/<unix secs>/<id>     when the record next needs work
//	sys/lease/token/<accessor>/<id>    which token created it
//	sys/lease/claim/<claim id>         a reaper's claim on a batch (reap.go)
//
// The due index is the only thing reap scans, so its cost is proportional to
// what is due, not to how many leases exist. A record is due at its expiry
// when active, at its next attempt when a revocation failed, at the end of a
// grace period (or its expiry, if sooner) when pending, and when a revoker's
// claim runs out (that revoker died). A reaper's claim on a batch is one
// record naming its leases, which stay due where they are and which other
// reapers skip while the claim runs.
//
// Invariants: a record is written (pending) before the secret exists, and is
// deleted only after the backend confirmed the secret is gone, so no secret
// ever exists without a record. The issuer hands the secret out as soon as
// it exists and leaves the record pending (one durable commit per issue,
// not two); a pending record whose secret exists is adopted as active by
// the next command that meets it, or by reap at the end of the grace
// period, and is never revoked before its expiry. A revocation that
// claims a pending lease whose secret it does not see may have come before
// the issuer's CREATE committed: it revokes what exists and keeps the
// record (revoking, RevokedPending) until the issuer's grace is over, and
// the issuer, which reads its record back once the secret exists
// (Recorder.Confirm), destroys the secret instead of handing it out.
// Nothing here gives up on a failed
// revocation: it is retried with exponential backoff for ever, unless an
// operator forces it away.
package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/randstr"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Lease states.
const (
	StatePending  = "pending"
	StateActive   = "active"
	StateRevoking = "revoking"
	StateFailed   = "failed"
	// StateExpired is never stored: it is how LookupData shows an active
	// lease whose expiry has passed and that reap has not revoked yet.
	StateExpired = "expired"
)

const (
	idPrefix    = "sys/lease/id/"
	duePrefix   = "sys/lease/due/"
	tokenPrefix = "sys/lease/token/"
	// failedPrefix indexes the leases whose revocation failed, so that
	// reap can say how many are waiting without scanning every lease.
	failedPrefix = "sys/lease/failed/"
)

// Errors of renew and lookup, in Vault's words.
var (
	ErrNotFound      = logical.Errorf("lease not found")
	ErrInvalidLease  = logical.Errorf("invalid lease")
	ErrNotRenewable  = logical.Errorf("lease is not renewable")
	ErrExpired       = logical.Errorf("lease expired")
	ErrFailedExpired = logical.Errorf("lease is expired and has failed previous revocation attempts")
)

// Entry is one lease record.
type Entry struct {
	ID            string         `json:"id"`
	Path          string         `json:"path"`
	MountUUID     string         `json:"mount_uuid"`
	MountPoint    string         `json:"mount_point"`
	State         string         `json:"state"`
	IssueTime     time.Time      `json:"issue_time"`
	ExpireTime    time.Time      `json:"expire_time"`
	LastRenewal   *time.Time     `json:"last_renewal,omitempty"`
	Renewable     bool           `json:"renewable"`
	TokenAccessor string         `json:"token_accessor,omitempty"`
	InternalData  map[string]any `json:"internal_data,omitempty"`
	Attempts      int            `json:"attempts,omitempty"`
	LastError     string         `json:"last_error,omitempty"`
	NextAttempt   time.Time      `json:"next_attempt,omitzero"`
	ClaimUntil    time.Time      `json:"claim_until,omitzero"`
	// RenewUntil: a renewal is moving the secret's expiry in the backend
	// until then; another renewal waits for it, so that the record ends
	// with the expiry the backend was told last.
	RenewUntil time.Time `json:"renew_until,omitzero"`
	DueKey     string    `json:"due_key"`
	// RevokedPending: a revocation claimed the lease while it was
	// pending. Until IssueTime plus the pending grace its issuer may
	// still create the secret, after the revocation found nothing to
	// drop; so the record is not deleted before then unless the secret
	// was seen to exist (its issuer is done), and the issuer that finds
	// it revoking destroys what it created.
	RevokedPending bool `json:"revoked_pending,omitempty"`

	raw []byte // the record's bytes as last read or written (see reread)
}

// Mount is what the manager needs to renew or revoke a lease of one mount.
type Mount struct {
	Backend    logical.SecretBackend
	MountPoint string
	Storage    storage.Store
	System     logical.SystemView
}

// Resolver finds the mount a lease belongs to, by the mount's UUID.
type Resolver func(ctx context.Context, mountUUID string) (*Mount, error)

// Options configure a Manager.
type Options struct {
	Now  func() time.Time
	Rand io.Reader
	// PendingGrace is how long a pending record is left alone before reap
	// treats its issuer as dead and revokes whatever it may have created.
	PendingGrace time.Duration
	// ClaimTimeout is how long a revoker owns the leases it claimed.
	ClaimTimeout time.Duration
	// RetryBase and RetryMax bound the exponential backoff of failed
	// revocations.
	RetryBase, RetryMax time.Duration
	// BatchSize is how many due leases one reap round claims.
	BatchSize int
}

// DefaultReapWorkers is how many batches Reap revokes at once unless
// ReapOptions says otherwise.
const DefaultReapWorkers = 2

// Manager records, renews and revokes leases.
type Manager struct {
	store   storage.Store
	resolve Resolver
	o       Options

	mu   sync.Mutex
	idle map[logical.IdleCloser]bool // backends that may keep connections between batches
}

// New returns a Manager over the sealed root store.
func New(s storage.Store, resolve Resolver, o Options) *Manager {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.PendingGrace == 0 {
		o.PendingGrace = 5 * time.Minute
	}
	if o.ClaimTimeout == 0 {
		o.ClaimTimeout = 5 * time.Minute
	}
	if o.RetryBase == 0 {
		o.RetryBase = 10 * time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = time.Hour
	}
	if o.BatchSize == 0 {
		// One batch is one claim, one backend call (one catalog query
		// and one DROP ROLE for up to 1,000 roles in PostgreSQL) and one
		// settling commit: fewer, larger batches pay those once per
		// 1,000. Since lease ids sort by issue time a batch's records
		// share pages, and two batches of 1,000 in flight hold less
		// memory than two of 500 did with random ids.
		o.BatchSize = 1000
	}
	return &Manager{store: s, resolve: resolve, o: o}
}

func (m *Manager) now() time.Time { return m.o.Now().UTC() }

func dueKey(t time.Time, id string) string {
	secs := t.Unix()
	if secs < 0 {
		secs = 0
	}
	return fmt.Sprintf("%s%012d/%s", duePrefix, secs, id)
}

func dueTime(key string) (time.Time, string, bool) {
	rest := strings.TrimPrefix(key, duePrefix)
	secs, id, ok := strings.Cut(rest, "/")
	if !ok || len(secs) != 12 {
		return time.Time{}, "", false
	}
	var n int64
	for _, c := range secs {
		if c < '0' || c > '9' {
			return time.Time{}, "", false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(n, 0).UTC(), id, true
}

func get(tx storage.Tx, id string) (*Entry, error) {
	raw, err := tx.Get(idPrefix + id)
	if err != nil || raw == nil {
		return nil, err
	}
	return decode(id, raw)
}

// decode parses the record of lease id, and keeps its bytes so that reread
// can tell it unchanged without parsing it again.
func decode(id string, raw []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("decode lease %s: %w", id, err)
	}
	e.raw = raw
	return &e, nil
}

// reread reads the current records of es in one batch (nil where one is
// gone). A record whose bytes are those es[i] was read or written with is
// es[i] itself, not parsed again: settling a reap batch reads 500 records
// it read when claiming them.
func reread(tx storage.Tx, es []*Entry) ([]*Entry, error) {
	keys := make([]string, len(es))
	for i, e := range es {
		keys[i] = idPrefix + e.ID
	}
	raws, err := storage.GetMany(tx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, len(es))
	for i, raw := range raws {
		switch {
		case raw == nil:
		case es[i].raw != nil && bytes.Equal(raw, es[i].raw):
			// A copy: the caller changes it, and may run again (a
			// transaction PostgreSQL aborted) from the record as it was.
			e := *es[i]
			out[i] = &e
		default:
			if out[i], err = decode(es[i].ID, raw); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// getShown is get for a reader: a lease under a live batch claim of a
// reaper shows as revoking (see claimPrefix).
func (m *Manager) getShown(tx storage.Tx, id string) (*Entry, error) {
	if err := withClaims(tx, idPrefix+id); err != nil {
		return nil, err
	}
	e, err := get(tx, id)
	if err != nil || e == nil {
		return e, err
	}
	now := m.now()
	claims, err := loadClaims(tx, now)
	if err != nil {
		return nil, err
	}
	claims.show(e, now)
	return e, nil
}

// withClaims reads keys and the reapers' claims ahead, in one round trip
// where a read is one, for a transaction that reads a lease's record and
// then checks whether a reaper claimed it.
func withClaims(tx storage.Tx, keys ...string) error {
	return storage.PrefetchPrefixes(tx, keys, []string{claimPrefix})
}

// put writes e and moves its due key to due.
// newRecordKeys are the keys put reads and writes for a new record.
func newRecordKeys(e *Entry, due time.Time) []string {
	keys := []string{idPrefix + e.ID, dueKey(due, e.ID), failedPrefix + e.ID}
	if e.TokenAccessor != "" {
		keys = append(keys, tokenPrefix+e.TokenAccessor+"/"+e.ID)
	}
	return keys
}

func put(tx storage.Tx, e *Entry, due time.Time) error {
	// A record that has a due key was written before, with its token
	// index entry, and a lease never changes token: writing that entry
	// again would rewrite its page (one of the token index's pages for
	// every lease a reap batch claims) for nothing.
	isNew := e.DueKey == ""
	nk := dueKey(due, e.ID)
	// The barrier reads each key's old value before it writes or deletes
	// it: one round trip for them all, on a store that pays one per read,
	// and none where the caller read them already (a new record's keys
	// with its checks', by Prepare; a batch's, by prefetch).
	keys := newRecordKeys(e, due)
	if !isNew {
		keys = []string{idPrefix + e.ID, nk, failedPrefix + e.ID, e.DueKey}
	}
	if err := storage.Prefetch(tx, keys); err != nil {
		return err
	}
	if e.DueKey != "" && e.DueKey != nk {
		if err := tx.Delete(e.DueKey); err != nil {
			return err
		}
	}
	e.DueKey = nk
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := tx.Put(idPrefix+e.ID, raw); err != nil {
		return err
	}
	e.raw = raw
	if err := tx.Put(nk, nil); err != nil {
		return err
	}
	if e.State == StateFailed {
		err = tx.Put(failedPrefix+e.ID, nil)
	} else {
		err = tx.Delete(failedPrefix + e.ID)
	}
	if err != nil {
		return err
	}
	if e.TokenAccessor != "" && isNew {
		return tx.Put(tokenPrefix+e.TokenAccessor+"/"+e.ID, nil)
	}
	return nil
}

// prefetch reads, in one batch, the index keys that remove or put will
// delete or replace for es: the barrier reads a key's old value before it
// deletes or replaces it, which on a store that pays a round trip per
// read would cost two or three round trips per lease; read together, the
// backend keeps them for those reads (see storage.Prefetcher). A store
// whose reads are local ignores it.
func prefetch(tx storage.Tx, es []*Entry) error {
	var keys []string
	for _, e := range es {
		if e == nil {
			continue
		}
		if e.DueKey != "" {
			keys = append(keys, e.DueKey)
		}
		if e.TokenAccessor != "" {
			keys = append(keys, tokenPrefix+e.TokenAccessor+"/"+e.ID)
		}
		if e.State == StateFailed {
			keys = append(keys, failedPrefix+e.ID)
		}
	}
	return storage.Prefetch(tx, keys)
}

func remove(tx storage.Tx, e *Entry) error {
	if err := tx.Delete(idPrefix + e.ID); err != nil {
		return err
	}
	if e.DueKey != "" {
		if err := tx.Delete(e.DueKey); err != nil {
			return err
		}
	}
	// Only a failed record has a failed index entry (put keeps them
	// together): asking to delete an absent one would cost a lookup.
	if e.State == StateFailed {
		if err := tx.Delete(failedPrefix + e.ID); err != nil {
			return err
		}
	}
	if e.TokenAccessor != "" {
		return tx.Delete(tokenPrefix + e.TokenAccessor + "/" + e.ID)
	}
	return nil
}

// IDSuffix returns the 24 base62 characters that end the id of a lease
// issued at t: the time in milliseconds since 1970 as 8 digits, which sort
// as the times do, then 16 random ones (95 bits: no id is guessed or drawn
// twice). Records are kept in the order of their ids, so with random ids
// the leases one reap batch settles (due together, hence mostly issued
// together) were spread over nearly every page of lease records, and
// deleting 500 of them rewrote most of those pages in one commit; with the
// time first they sit side by side, and a batch rewrites a few. The time
// an id shows is the lease's issue time, which anyone allowed to look the
// lease up sees anyway.
func IDSuffix(r io.Reader, t time.Time) (string, error) {
	rest, err := randomID(r, idRandomLen)
	if err != nil {
		return "", err
	}
	ms := max(t.UnixMilli(), 0)
	var b [idTimeLen]byte
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = randstr.Base62[ms%62]
		ms /= 62
	}
	return string(b[:]) + rest, nil
}

// The parts of a lease id's last 24 characters (see IDSuffix): 62^8 ms
// reach past the year 8000.
const (
	idTimeLen   = 8
	idRandomLen = 16
)

func randomID(r io.Reader, n int) (string, error) {
	id, err := randstr.String(r, randstr.Base62, n)
	if err != nil {
		return "", fmt.Errorf("generate lease id: %w", err)
	}
	return id, nil
}

// Recorder returns the LeaseRecorder a backend uses during one request.
func (m *Manager) Recorder(mountUUID, mountPoint, tokenAccessor string, sys logical.SystemView) *Recorder {
	return &Recorder{m: m, mountUUID: mountUUID, mountPoint: mountPoint, accessor: tokenAccessor, sys: sys}
}

// Recorder records the leases of one request, so that the core can
// activate them once the backend has answered.
type Recorder struct {
	m          *Manager
	mountUUID  string
	mountPoint string
	accessor   string
	sys        logical.SystemView
	prepared   []string
	// check, when set, runs in the transaction that records each lease,
	// which records nothing if it fails; it reads checkKeys.
	check     func(storage.Tx) error
	checkKeys []string
	// mountStorage is the prefix of the mount's own storage, on which a
	// LeaseRequest's Check runs.
	mountStorage string
}

// WithCheck makes Prepare run check in the transaction that records a
// lease, and record nothing if it fails: what authorised the request
// (its token, its mount's path) must still hold when the lease that
// outlives the request is written. keys are the keys check reads, which
// Prepare reads ahead with the rest.
func (r *Recorder) WithCheck(keys []string, check func(storage.Tx) error) *Recorder {
	r.check, r.checkKeys = check, keys
	return r
}

// WithMountStorage names the prefix of the store under which the mount
// keeps its storage, on which each LeaseRequest's Check runs.
func (r *Recorder) WithMountStorage(prefix string) *Recorder {
	r.mountStorage = prefix
	return r
}

// Prepare implements logical.LeaseRecorder.
func (r *Recorder) Prepare(ctx context.Context, lr *logical.LeaseRequest) (*logical.PreparedLease, error) {
	now := r.m.now().Truncate(time.Second)
	ttl, warning, err := logical.CalculateTTL(logical.TTLInputs{
		BackendTTL: lr.TTL, BackendMax: lr.MaxTTL,
		MountDefault: r.sys.DefaultLeaseTTL(), MountMax: r.sys.MaxLeaseTTL(),
		Start: now, Now: now,
	})
	if err != nil {
		return nil, err
	}
	suffix, err := IDSuffix(r.m.o.Rand, r.m.now())
	if err != nil {
		return nil, err
	}
	e := &Entry{
		ID:            strings.TrimSuffix(lr.Path, "/") + "/" + suffix,
		Path:          strings.TrimSuffix(lr.Path, "/"),
		MountUUID:     r.mountUUID,
		MountPoint:    r.mountPoint,
		State:         StatePending,
		IssueTime:     now,
		ExpireTime:    now.Add(ttl),
		Renewable:     lr.Renewable,
		TokenAccessor: r.accessor,
		InternalData:  lr.InternalData,
	}
	// Due when the grace runs out, or at expiry if that comes first: reap
	// then adopts the lease if its secret exists, and revokes it if not.
	due := now.Add(r.m.o.PendingGrace)
	if e.ExpireTime.Before(due) {
		due = e.ExpireTime
	}
	// The issuer must be done a fifth of the grace before reap may take
	// it for dead, so that a COMMIT sent just in time is in before then.
	grace := r.m.o.PendingGrace
	p := &logical.PreparedLease{ID: e.ID, IssueTime: now, ExpireTime: e.ExpireTime, TTL: ttl,
		CreateBy: time.Now().Add(grace - grace/5)}
	if warning != "" {
		p.Warnings = []string{warning}
	}
	if lr.Planned != nil {
		lr.Planned(*p)
	}
	if err := r.m.store.Update(ctx, func(tx storage.Tx) error {
		// put marks what it wrote in the entry (its due key, which also
		// tells it the record is new): a store may run this function
		// more than once (a group commit that failed, a PostgreSQL
		// serialization failure), and each run must start from the
		// entry as it was, or a second run would skip the token index.
		// What the checks and the record read comes in one round trip.
		keys := append(slices.Clone(r.checkKeys), newRecordKeys(e, due)...)
		for _, k := range lr.CheckKeys {
			keys = append(keys, r.mountStorage+k)
		}
		if err := storage.Prefetch(tx, keys); err != nil {
			return err
		}
		if r.check != nil {
			if err := r.check(tx); err != nil {
				return err
			}
		}
		if lr.Check != nil {
			if err := lr.Check(storage.PrefixedTx(tx, r.mountStorage)); err != nil {
				return err
			}
		}
		fresh := *e
		return put(tx, &fresh, due)
	}); err != nil {
		return nil, fmt.Errorf("record lease %s: %w", e.ID, err)
	}
	r.prepared = append(r.prepared, e.ID)
	return p, nil
}

// Discard implements logical.LeaseRecorder.
func (r *Recorder) Discard(ctx context.Context, leaseID string) error {
	for i, id := range r.prepared {
		if id == leaseID {
			r.prepared = append(r.prepared[:i], r.prepared[i+1:]...)
			break
		}
	}
	return r.m.store.Update(ctx, func(tx storage.Tx) error {
		e, err := get(tx, leaseID)
		if err != nil || e == nil {
			return err
		}
		if e.State != StatePending {
			return fmt.Errorf("discard lease %s: it is %s, not pending", leaseID, e.State)
		}
		return remove(tx, e)
	})
}

// Abandon implements logical.LeaseRecorder. The issuer failed without
// knowing whether the secret exists and handed nothing out: a pending
// record would be adopted (its secret may well exist, with this lease's
// mark), leaving a credential nobody holds alive until its TTL. Instead
// the lease expires now, so that the next reap revokes it; revocation is
// idempotent, so a secret that does not exist is no obstacle.
func (r *Recorder) Abandon(ctx context.Context, leaseID string) error {
	for i, id := range r.prepared {
		if id == leaseID {
			r.prepared = append(r.prepared[:i], r.prepared[i+1:]...)
			break
		}
	}
	now := r.m.now()
	return r.m.store.Update(ctx, func(tx storage.Tx) error {
		e, err := get(tx, leaseID)
		if err != nil || e == nil {
			return err
		}
		if e.State != StatePending {
			return fmt.Errorf("abandon lease %s: it is %s, not pending", leaseID, e.State)
		}
		activate(e)
		e.ExpireTime = now
		return put(tx, e, now)
	})
}

// Confirm implements logical.LeaseRecorder: the issuer reads its record
// back once the secret exists. A revocation that claimed the lease before
// then may have found nothing to drop (the secret's creation had not
// committed) and keeps the record revoking until the issuer's grace is
// over; one that came after found the secret and dropped it, and deleted
// the record. Either way the secret must not be handed out, and the
// issuer destroys it (again, if need be). A record still pending (or
// adopted already) means no revocation claimed it before the secret
// existed: one that claims it later sees the secret and drops it. A
// reaper's batch claim leaves the record as it was, so the record is read
// as the claims show it.
func (r *Recorder) Confirm(ctx context.Context, leaseID string) error {
	var e *Entry
	if err := r.m.store.View(ctx, func(tx storage.Tx) error {
		var err error
		e, err = r.m.getShown(tx, leaseID)
		return err
	}); err != nil {
		return fmt.Errorf("confirm lease %s: %w", leaseID, err)
	}
	if e == nil || e.State != StatePending && e.State != StateActive {
		return fmt.Errorf("lease %s: %w", leaseID, logical.ErrLeaseRevoked)
	}
	return nil
}

// Prepared returns the ids of the leases recorded and not discarded.
func (r *Recorder) Prepared() []string { return append([]string(nil), r.prepared...) }

// Activate marks pending leases active without asking the backend; from
// now on they are due at their expiry. Only a caller that knows the
// secrets exist may use it (the issuer itself, after creating them).
func (m *Manager) Activate(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return m.store.Update(ctx, func(tx storage.Tx) error {
		for _, id := range ids {
			// As the claims show it: a reaper's batch claim does not
			// change the record.
			e, err := m.getShown(tx, id)
			if err != nil {
				return err
			}
			if e == nil {
				return fmt.Errorf("activate lease %s: record vanished", id)
			}
			if e.State == StateActive {
				continue
			}
			if e.State != StatePending {
				// Claimed by a revocation, which may have come before
				// the secret existed: the caller destroys it.
				return fmt.Errorf("activate lease %s: %w", id, logical.ErrLeaseRevoked)
			}
			activate(e)
			if err := put(tx, e, e.ExpireTime); err != nil {
				return err
			}
		}
		return nil
	})
}

func activate(e *Entry) {
	e.State = StateActive
	e.Attempts, e.LastError = 0, ""
	e.NextAttempt, e.ClaimUntil = time.Time{}, time.Time{}
}

// Adopt settles pending leases the way their issuer left them: the issuer
// hands the credential out once its secret exists and does not come back
// to activate the lease (that would cost a second durable commit on every
// issue). Whoever next meets a pending lease asks its backend, in one call
// per mount, whether the secret was created for it; those that were are
// activated here (es is updated in place), the others stay pending. A
// pending lease whose secret exists is as safe as an active one: its
// issuer committed it, and it is revoked at its expiry.
func (m *Manager) Adopt(ctx context.Context, es []*Entry) error {
	var pending []*Entry
	for _, e := range es {
		if e.State == StatePending {
			pending = append(pending, e)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	created, err := m.created(ctx, pending)
	var ids []string
	for _, e := range es {
		if created[e.ID] {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return err
	}
	failpoint.Hit(failpoint.IssueBeforeActivate)
	var done map[string]*Entry
	uerr := m.store.Update(ctx, func(tx storage.Tx) error {
		done = map[string]*Entry{}
		for _, id := range ids {
			e, err := get(tx, id)
			if err != nil {
				return err
			}
			if e != nil && e.State == StateActive {
				// Another command adopted it since it was read: the
				// caller sees it active, as it is.
				done[id] = e
				continue
			}
			if e == nil || e.State != StatePending {
				continue
			}
			activate(e)
			if err := put(tx, e, e.ExpireTime); err != nil {
				return err
			}
			done[id] = e
		}
		return nil
	})
	if uerr != nil {
		return errors.Join(err, fmt.Errorf("activate leases: %w", uerr))
	}
	failpoint.Hit(failpoint.IssueAfterActivate)
	for i, e := range es {
		if d := done[e.ID]; d != nil {
			es[i] = d
		}
	}
	return err
}

// created asks the backends which leases among es (pending, or revoked
// while pending) have their secret: one SecretsCreated call per mount.
// Leases of a mount whose backend cannot tell are left out, and the error
// says why.
func (m *Manager) created(ctx context.Context, es []*Entry) (map[string]bool, error) {
	byMount := map[string][]*Entry{}
	var order []string
	for _, e := range es {
		if _, ok := byMount[e.MountUUID]; !ok {
			order = append(order, e.MountUUID)
		}
		byMount[e.MountUUID] = append(byMount[e.MountUUID], e)
	}
	out := map[string]bool{}
	var errs []error
	for _, uuid := range order {
		entries := byMount[uuid]
		mnt, err := m.resolve(ctx, uuid)
		if err != nil {
			errs = append(errs, fmt.Errorf("mount of lease %s: %w", entries[0].ID, err))
			continue
		}
		ad, ok := mnt.Backend.(logical.SecretAdopter)
		if !ok {
			errs = append(errs, fmt.Errorf("mount %s cannot tell whether the secret of a pending lease exists", mnt.MountPoint))
			continue
		}
		reqs := make([]*logical.SecretRequest, len(entries))
		for i, e := range entries {
			reqs[i] = secretRequest(e, mnt)
		}
		ok2, err := ad.SecretsCreated(ctx, reqs)
		if err == nil && len(ok2) != len(reqs) {
			err = errors.New("backend returned no result")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("check pending leases of %s: %w", mnt.MountPoint, err))
			continue
		}
		for i, e := range entries {
			out[e.ID] = ok2[i]
		}
	}
	return out, errors.Join(errs...)
}

// Lookup returns a lease record, or ErrInvalidLease.
func (m *Manager) Lookup(ctx context.Context, id string) (*Entry, error) {
	var e *Entry
	err := m.store.View(ctx, func(tx storage.Tx) error {
		var err error
		e, err = m.getShown(tx, strings.Trim(id, "/"))
		return err
	})
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, ErrInvalidLease
	}
	if e.State == StatePending {
		es := []*Entry{e}
		if err := m.Adopt(ctx, es); err != nil {
			return nil, fmt.Errorf("lease %s is pending: %w", e.ID, err)
		}
		if e = es[0]; e.State == StatePending {
			// Its issuer has not created the secret (yet, or ever).
			return nil, ErrInvalidLease
		}
	}
	return e, nil
}

// CreatedBy reports whether the token with accessor created lease id,
// from its record alone: no backend is asked and nothing is adopted, so
// that a caller who may not see the lease learns nothing of it (whether
// it exists, or its backend's errors) from the answer.
func (m *Manager) CreatedBy(ctx context.Context, id, accessor string) (bool, error) {
	if accessor == "" {
		return false, nil
	}
	var mine bool
	err := m.store.View(ctx, func(tx storage.Tx) error {
		e, err := get(tx, strings.Trim(id, "/"))
		mine = err == nil && e != nil && e.TokenAccessor == accessor
		return err
	})
	return mine, err
}

// LookupData renders a record the way Vault's sys/leases/lookup does, plus
// lessor's state and retry fields.
func (m *Manager) LookupData(e *Entry) map[string]any {
	now := m.now()
	ttl := e.ExpireTime.Sub(now).Round(time.Second)
	if ttl < 0 {
		ttl = 0
	}
	d := map[string]any{
		"id":           e.ID,
		"path":         e.Path,
		"issue_time":   e.IssueTime.Format(time.RFC3339Nano),
		"expire_time":  e.ExpireTime.Format(time.RFC3339Nano),
		"last_renewal": nil,
		"renewable":    e.Renewable,
		"ttl":          int64(ttl / time.Second),
		"state":        e.State,
	}
	if e.State == StateActive && !e.ExpireTime.After(now) {
		// Due but not yet reaped: PostgreSQL already refuses its logins
		// (VALID UNTIL), so "active" would mislead.
		d["state"] = StateExpired
	}
	if e.LastRenewal != nil {
		d["last_renewal"] = e.LastRenewal.Format(time.RFC3339Nano)
	}
	if e.Attempts > 0 {
		d["revoke_attempts"] = e.Attempts
		d["revoke_error"] = e.LastError
		d["next_attempt"] = e.NextAttempt.Format(time.RFC3339)
	}
	return d
}

// List returns the next path segments below prefix, like Vault's
// LIST sys/leases/lookup/<prefix>: lease suffixes and sub-paths (ending
// in "/").
func (m *Manager) List(ctx context.Context, prefix string) ([]string, error) {
	p := strings.Trim(prefix, "/")
	if p != "" {
		p += "/"
	}
	seen := map[string]bool{}
	err := m.store.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(idPrefix+p, func(k string) error {
			rest := strings.TrimPrefix(k, idPrefix+p)
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i+1]
			}
			seen[rest] = true
			return nil
		})
	})
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, err
}

// Entries returns every record under prefix (whole path segments), for
// `lease list` and tests.
func (m *Manager) Entries(ctx context.Context, prefix string) ([]*Entry, error) {
	var out []*Entry
	now := m.now()
	err := m.store.View(ctx, func(tx storage.Tx) error {
		out = out[:0]
		ids, err := idsUnder(tx, prefix)
		if err != nil {
			return err
		}
		claims, err := loadClaims(tx, now)
		if err != nil {
			return err
		}
		for _, id := range ids {
			e, err := get(tx, id)
			if err != nil {
				return err
			}
			if e != nil {
				claims.show(e, now)
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// Failed returns the leases whose revocation failed, which reap retries
// until it succeeds (what Vault calls irrevocable leases, which it gives
// up on after six attempts): the earliest expiry first, then by id.
func (m *Manager) Failed(ctx context.Context) ([]*Entry, error) {
	var out []*Entry
	err := m.store.View(ctx, func(tx storage.Tx) error {
		out = out[:0]
		var ids []string
		if err := tx.Walk(failedPrefix, func(k string) error {
			ids = append(ids, strings.TrimPrefix(k, failedPrefix))
			return nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			e, err := get(tx, id)
			if err != nil {
				return err
			}
			if e != nil {
				out = append(out, e)
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b *Entry) int {
		if c := a.ExpireTime.Compare(b.ExpireTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// Count returns the number of lease records.
func (m *Manager) Count(ctx context.Context) (int, error) {
	n := 0
	err := m.store.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(idPrefix, func(string) error { n++; return nil })
	})
	return n, err
}

// PendingGrace is how long a pending lease's issuer has to create its
// secret before reap settles the lease.
func (m *Manager) PendingGrace() time.Duration { return m.o.PendingGrace }

// LeftUnder returns, in tx, the leases recorded under prefix: after a
// revocation of the prefix, those it met while they were being issued
// (kept, revoking, until their issuer's grace is over) and any an issue
// recorded since.
func LeftUnder(tx storage.Tx, prefix string) ([]string, error) { return idsUnder(tx, prefix) }

// IssuedUnder returns, in tx, the leases recorded under prefix that no
// revocation has reached: pending or active, so issued (or being issued)
// since the prefix was last revoked. A lease kept as revoking, whose
// record must outlive its issue, is not one of them.
func IssuedUnder(tx storage.Tx, prefix string) ([]string, error) {
	ids, err := idsUnder(tx, prefix)
	if err != nil {
		return nil, err
	}
	var live []string
	for _, id := range ids {
		e, err := get(tx, id)
		if err != nil {
			return nil, err
		}
		if e != nil && (e.State == StatePending || e.State == StateActive) {
			live = append(live, id)
		}
	}
	return live, nil
}

// Forget deletes the records of ids in tx, revoking nothing: what
// `secrets disable -force` does with the leases it could not settle.
func Forget(tx storage.Tx, ids []string) error {
	for _, id := range ids {
		e, err := get(tx, id)
		if err != nil {
			return err
		}
		if e == nil {
			continue
		}
		if err := remove(tx, e); err != nil {
			return err
		}
	}
	return nil
}

// idsUnder lists lease ids under prefix aligned on whole path segments:
// "database/creds/read" does not match "database/creds/readonly/…", but an
// exact lease id matches itself.
func idsUnder(tx storage.Tx, prefix string) ([]string, error) {
	p := strings.Trim(prefix, "/")
	var ids []string
	if p != "" {
		raw, err := tx.Get(idPrefix + p)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			ids = append(ids, p)
		}
		p += "/"
	}
	err := tx.Walk(idPrefix+p, func(k string) error {
		ids = append(ids, strings.TrimPrefix(k, idPrefix))
		return nil
	})
	return ids, err
}

// Renew extends a lease: the increment counts from now, never past the
// issue time plus the effective max TTL (Vault's rules), and the backend
// moves the secret's own expiry (VALID UNTIL) first.
func (m *Manager) Renew(ctx context.Context, id string, increment time.Duration) (*logical.Response, error) {
	id = strings.Trim(id, "/")
	var e *Entry
	if err := m.store.View(ctx, func(tx storage.Tx) error {
		var err error
		e, err = m.getShown(tx, id)
		return err
	}); err != nil {
		return nil, err
	}
	if e != nil && e.State == StatePending {
		es := []*Entry{e}
		if err := m.Adopt(ctx, es); err != nil {
			return nil, fmt.Errorf("lease %s is pending: %w", e.ID, err)
		}
		e = es[0]
	}
	now := m.now().Truncate(time.Second)
	switch {
	case e == nil || e.State == StatePending:
		return nil, ErrNotFound
	case e.State == StateFailed || e.State == StateRevoking:
		return nil, ErrFailedExpired
	case !e.Renewable:
		return nil, ErrNotRenewable
	case !now.Before(e.ExpireTime):
		return nil, ErrExpired
	}
	mnt, err := m.resolve(ctx, e.MountUUID)
	if err != nil {
		return nil, err
	}
	sreq := secretRequest(e, mnt)
	roleTTL, roleMax, err := mnt.Backend.SecretLimits(ctx, sreq)
	if err != nil {
		return nil, fmt.Errorf("error during renew: %w", err)
	}
	ttlAt := func(now time.Time) (time.Duration, string, error) {
		ttl, warning, err := logical.CalculateTTL(logical.TTLInputs{
			Increment: increment, BackendTTL: roleTTL, BackendMax: roleMax,
			MountDefault: mnt.System.DefaultLeaseTTL(), MountMax: mnt.System.MaxLeaseTTL(),
			Start: e.IssueTime, Now: now,
		})
		if err != nil {
			return 0, "", logical.Errorf("%v", err)
		}
		return ttl, warning, nil
	}
	// A request that cannot be granted is refused before the lease is
	// taken (a durable commit).
	if _, _, err := ttlAt(now); err != nil {
		return nil, err
	}
	// Take the lease for this renewal, so that no other renewal moves
	// VALID UNTIL between this one's backend call and its commit.
	until, err := m.takeRenewal(ctx, id)
	if err != nil {
		return nil, err
	}
	// The increment counts from now, when the lease is this renewal's:
	// it may have waited up to renewWait for another renewal to let go.
	now = m.now().Truncate(time.Second)
	ttl, warning, err := ttlAt(now)
	if err != nil {
		m.releaseRenewal(ctx, id, until)
		return nil, err
	}
	expire := now.Add(ttl)
	// The hold is on the manager's clock, a context's deadline on the
	// wall clock: what is left of the hold is measured on the first.
	bctx, cancel := context.WithTimeout(ctx, until.Sub(m.now())-claimMargin(renewHold))
	err = mnt.Backend.RenewSecret(bctx, sreq, expire)
	cancel()
	if err != nil {
		m.releaseRenewal(ctx, id, until)
		return nil, fmt.Errorf("renew %s: %w", id, err)
	}
	failpoint.Hit(failpoint.RenewAfterBackend)
	if err := m.store.Update(ctx, func(tx storage.Tx) error {
		if err := withClaims(tx, idPrefix+id); err != nil {
			return err
		}
		cur, err := get(tx, id)
		if err != nil {
			return err
		}
		if cur == nil || cur.State != StateActive {
			return ErrNotFound
		}
		if !cur.RenewUntil.Equal(until) {
			// Our hold ran out and another renewal took the lease: the
			// backend holds what that one said, or will.
			return fmt.Errorf("renew %s: took too long; another renewal took over", id)
		}
		// A reaper that claimed it since it was read revokes it:
		// reporting the renewal as a success would promise a credential
		// that is about to go.
		t := m.now()
		claims, err := loadClaims(tx, t)
		if err != nil {
			return err
		}
		if claims.live(id, t) {
			return ErrFailedExpired
		}
		cur.ExpireTime = expire
		cur.LastRenewal = &now
		cur.RenewUntil = time.Time{}
		return put(tx, cur, expire)
	}); err != nil {
		return nil, err
	}
	resp := &logical.Response{Secret: &logical.Secret{LeaseID: id, TTL: ttl, Renewable: true}}
	if warning != "" {
		resp.Warnings = append(resp.Warnings, warning)
	}
	return resp, nil
}

// ErrRenewing: another renewal of the lease held it past renewWait.
var ErrRenewing = logical.Errorf("lease is being renewed by another request; try again")

// renewHold is how long a renewal holds its lease: its backend call (one
// short ALTER ROLE) must end a tenth of it before then, and a renewal
// killed meanwhile delays the next one of that lease at most this long.
// renewWait bounds how long a renewal waits for another to let go.
const (
	renewHold = 15 * time.Second
	renewWait = renewHold + 5*time.Second
)

// takeRenewal marks the active, unexpired lease id as being renewed until
// the returned time, waiting for another renewal that holds it.
func (m *Manager) takeRenewal(ctx context.Context, id string) (time.Time, error) {
	deadline := time.Now().Add(renewWait)
	for waited := false; ; waited = true {
		// A renewal that waits looks every 50 ms whether the other one
		// still holds the lease: a read. A read-write transaction is a
		// durable commit (on bbolt, two fdatasyncs under the file's
		// exclusive lock) even when it writes nothing.
		held := false
		if waited {
			if err := m.store.View(ctx, func(tx storage.Tx) error {
				cur, err := get(tx, id)
				held = err == nil && cur != nil && cur.RenewUntil.After(m.now())
				return err
			}); err != nil {
				return time.Time{}, err
			}
		}
		var until time.Time
		busy := held
		var err error
		if !held {
			err = m.store.Update(ctx, func(tx storage.Tx) error {
				busy = false
				if err := withClaims(tx, idPrefix+id); err != nil {
					return err
				}
				cur, err := get(tx, id)
				if err != nil {
					return err
				}
				if cur == nil || cur.State == StatePending {
					return ErrNotFound
				}
				t := m.now()
				claims, err := loadClaims(tx, t)
				if err != nil {
					return err
				}
				switch {
				case cur.State != StateActive || claims.live(id, t):
					return ErrFailedExpired
				case !t.Before(cur.ExpireTime):
					return ErrExpired
				case cur.RenewUntil.After(t):
					busy = true
					return nil
				}
				until = t.Add(renewHold)
				cur.RenewUntil = until
				return put(tx, cur, cur.ExpireTime)
			})
		}
		if err != nil || !busy {
			return until, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, ErrRenewing
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// releaseRenewal lets another renewal take the lease after this one's
// backend call failed. A failure here only leaves the hold to run out.
// The backend call often failed because ctx ended (the caller went
// away): the release does not depend on it.
func (m *Manager) releaseRenewal(ctx context.Context, id string, until time.Time) {
	_ = m.store.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		cur, err := get(tx, id)
		if err != nil || cur == nil || !cur.RenewUntil.Equal(until) {
			return err
		}
		cur.RenewUntil = time.Time{}
		return put(tx, cur, cur.ExpireTime)
	})
}

func secretRequest(e *Entry, mnt *Mount) *logical.SecretRequest {
	return &logical.SecretRequest{
		LeaseID: e.ID, InternalData: e.InternalData, IssueTime: e.IssueTime,
		MountPoint: mnt.MountPoint, Storage: mnt.Storage, System: mnt.System,
	}
}

// RevokeError reports the leases whose revocation failed. They stay
// recorded and are retried by reap.
type RevokeError struct {
	Failed []Failure
}

// Failure is one lease that could not be revoked.
type Failure struct {
	LeaseID string `json:"lease_id"`
	Error   string `json:"error"`
}

func (e *RevokeError) Error() string {
	if len(e.Failed) == 1 {
		return fmt.Sprintf("revoke %s: %s (recorded; `lessor reap` will retry it)", e.Failed[0].LeaseID, e.Failed[0].Error)
	}
	return fmt.Sprintf("%d leases could not be revoked, first %s: %s (recorded; `lessor reap` will retry them)",
		len(e.Failed), e.Failed[0].LeaseID, e.Failed[0].Error)
}

// Revoke revokes one lease now. An unknown id succeeds, as in Vault.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	id = strings.Trim(id, "/")
	_, _, err := m.revokeSelected(ctx, false, func(tx storage.Tx) ([]string, error) {
		raw, err := tx.Get(idPrefix + id)
		if err != nil || raw == nil {
			return nil, err
		}
		return []string{id}, nil
	})
	return err
}

// RevokePrefix revokes every lease under prefix (whole path segments).
// With force, leases whose revocation fails are forgotten anyway; the
// returned list names them so that the caller can warn and audit.
func (m *Manager) RevokePrefix(ctx context.Context, prefix string, force bool) ([]Failure, error) {
	_, failed, err := m.RevokePrefixCount(ctx, prefix, force)
	return failed, err
}

// RevokePrefixCount is RevokePrefix that also says how many leases it
// revoked, for callers that tell the user (secrets disable).
func (m *Manager) RevokePrefixCount(ctx context.Context, prefix string, force bool) (revoked int, failed []Failure, err error) {
	return m.revokeSelected(ctx, force, func(tx storage.Tx) ([]string, error) {
		return idsUnder(tx, prefix)
	})
}

// RevokeByToken revokes every lease created by the tokens with these
// accessors. Failures stay recorded for reap and are reported.
func (m *Manager) RevokeByToken(ctx context.Context, accessors []string) error {
	_, _, err := m.revokeSelected(ctx, false, func(tx storage.Tx) ([]string, error) {
		var ids []string
		for _, acc := range accessors {
			err := tx.Walk(tokenPrefix+acc+"/", func(k string) error {
				ids = append(ids, strings.TrimPrefix(k, tokenPrefix+acc+"/"))
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		return ids, nil
	})
	return err
}

// revokeSelected claims the selected leases in one transaction, revokes
// them through their backends outside any transaction, and settles the
// outcome in another. It works in batches so that memory stays bounded.
func (m *Manager) revokeSelected(ctx context.Context, force bool, sel func(storage.Tx) ([]string, error)) (revoked int, failed []Failure, err error) {
	defer m.closeIdle(ctx)
	var ids []string
	if err := m.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ids, err = sel(tx)
		return err
	}); err != nil {
		return 0, nil, err
	}
	var held []string
	for start := 0; start < len(ids) || len(held) > 0; start += m.o.BatchSize {
		batch := ids[min(start, len(ids)):min(start+m.o.BatchSize, len(ids))]
		if len(batch) == 0 {
			// What is left is what a running reap holds: wait for it
			// to settle them, then take over what it left recorded.
			var gone int
			if batch, gone, err = m.awaitHeld(ctx, held); err != nil {
				return revoked, failed, err
			}
			revoked += gone
			held = nil
		}
		claimed, busy, err := m.claim(ctx, batch, true)
		if err != nil {
			return revoked, failed, err
		}
		held = append(held, busy...)
		res, err := m.revokeClaimed(ctx, claimed, force, "")
		revoked += len(res.Revoked)
		failed = append(failed, res.Failed...)
		if err != nil {
			return revoked, failed, err
		}
	}
	if len(failed) > 0 && !force {
		return revoked, failed, &RevokeError{Failed: failed}
	}
	return revoked, failed, nil
}

// claim marks the given leases as being revoked by this process. Without
// steal, leases already claimed by a live revoker are skipped. Leases a
// live reaper holds under a batch claim (see claimPrefix) are never
// taken, steal or not: that reaper revokes them, and taking them would
// revoke them twice. They are returned in held.
func (m *Manager) claim(ctx context.Context, ids []string, steal bool) (claimed []*Entry, held []string, err error) {
	now := m.now()
	err = m.store.Update(ctx, func(tx storage.Tx) error {
		claimed, held = claimed[:0], held[:0]
		if err := withClaims(tx, prefixed(idPrefix, ids)...); err != nil {
			return err
		}
		claims, err := loadClaims(tx, now)
		if err != nil {
			return err
		}
		for _, id := range ids {
			e, err := get(tx, id)
			if err != nil {
				return err
			}
			if e == nil {
				continue
			}
			if claims.live(id, now) {
				held = append(held, id)
				continue
			}
			if e.State == StateRevoking && now.Before(e.ClaimUntil) && !steal {
				continue
			}
			if e.State == StatePending {
				e.RevokedPending = true
			}
			e.State = StateRevoking
			e.ClaimUntil = now.Add(m.o.ClaimTimeout)
			if err := put(tx, e, e.ClaimUntil); err != nil {
				return err
			}
			claimed = append(claimed, e)
		}
		return nil
	})
	return claimed, held, err
}

// heldWait bounds how long a revocation waits for a running reap to
// settle the leases it holds: a batch takes well under a second, and a
// reaper that died leaves its claim to run out (ClaimTimeout) later.
const heldWait = 30 * time.Second

// ErrHeldByReap: a running reap still holds leases this revocation
// selected, past heldWait.
var ErrHeldByReap = errors.New("a running `lessor reap` is revoking them; run the command again to confirm")

// awaitHeld waits until no live reaper's batch claim holds any of ids. It
// returns the ids still recorded then (their reaper failed to revoke them,
// or died: the caller revokes them itself) and how many the reaper
// revoked.
func (m *Manager) awaitHeld(ctx context.Context, ids []string) (left []string, gone int, err error) {
	deadline := time.Now().Add(heldWait)
	for {
		var holding bool
		err := m.store.View(ctx, func(tx storage.Tx) error {
			left, gone, holding = left[:0], 0, false
			now := m.now()
			if err := withClaims(tx, prefixed(idPrefix, ids)...); err != nil {
				return err
			}
			claims, err := loadClaims(tx, now)
			if err != nil {
				return err
			}
			raws, err := storage.GetMany(tx, prefixed(idPrefix, ids))
			if err != nil {
				return err
			}
			for i, id := range ids {
				switch {
				case raws[i] == nil:
					gone++
				case claims.live(id, now):
					holding = true
				default:
					left = append(left, id)
				}
			}
			return nil
		})
		if err != nil || !holding {
			return left, gone, err
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%d of the leases: %w", len(ids)-gone-len(left), ErrHeldByReap)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, 0, ctx.Err()
		case <-t.C:
		}
	}
}

func prefixed(prefix string, ids []string) []string {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = prefix + id
	}
	return keys
}

// Result is what one revocation round did.
type Result struct {
	Revoked []string
	Failed  []Failure
}

// revokeClaimed asks each mount's backend to revoke its claimed leases in
// one batch, then deletes the revoked records and schedules retries for
// the failures (or, with force, deletes them too).
//
// A lease claimed while pending, within its issuer's grace, may be one
// whose issuer has not yet committed its secret: revoking finds nothing,
// and the secret could appear after the record was deleted, a credential
// nothing would ever revoke. The backend is asked first (after the claim
// committed) whether the secret exists; if it does, its issuer is done and
// the lease goes as any other. If not (or the backend cannot tell), the
// record stays, revoking, until the grace is over, when reap revokes it
// again and deletes it; meanwhile its issuer finds it revoking and
// destroys the secret itself (Recorder.Confirm).
func (m *Manager) revokeClaimed(ctx context.Context, claimed []*Entry, force bool, claimKey string) (Result, error) {
	// Claimed record by record: the claim that ends first bounds the
	// backend's work.
	var until time.Time
	for _, e := range claimed {
		if !e.ClaimUntil.IsZero() && (until.IsZero() || e.ClaimUntil.Before(until)) {
			until = e.ClaimUntil
		}
	}
	res, _, err := m.revokeClaimedThen(ctx, claimed, force, claimKey, until, nil)
	return res, err
}

// claimMargin is how long before its claim runs out a revoker stops
// waiting on the backend: a tenth of the claim.
func claimMargin(claim time.Duration) time.Duration { return claim / 10 }

// revokeClaimedThen is revokeClaimed whose settling transaction, when then
// is set, also runs then (reap claims its next batch there: one commit
// fewer per batch); thenDone reports whether it committed. If that
// transaction fails, the leases are settled again without then, so that a
// failure of the next claim never undoes this batch's settling.
func (m *Manager) revokeClaimedThen(ctx context.Context, claimed []*Entry, force bool, claimKey string, until time.Time, then func(storage.Tx) error) (res Result, thenDone bool, err error) {
	failpoint.Hit(failpoint.RevokeAfterClaim)
	// The backend's work ends before the claim (until, when known) runs
	// out: past it another reaper takes these leases for its own, and both
	// would revoke them. What is cut off fails and is retried.
	bctx := ctx
	if !until.IsZero() {
		var cancel context.CancelFunc
		bctx, cancel = context.WithTimeout(ctx, until.Sub(m.now())-claimMargin(m.o.ClaimTimeout))
		defer cancel()
	}
	issuing := m.mayBeIssuing(bctx, claimed, m.now())
	byMount := map[string][]*Entry{}
	var order []string
	for _, e := range claimed {
		if _, ok := byMount[e.MountUUID]; !ok {
			order = append(order, e.MountUUID)
		}
		byMount[e.MountUUID] = append(byMount[e.MountUUID], e)
	}
	errs := map[string]error{}
	for _, uuid := range order {
		entries := byMount[uuid]
		mnt, err := m.resolve(bctx, uuid)
		if err != nil {
			for _, e := range entries {
				errs[e.ID] = fmt.Errorf("mount of lease: %w", err)
			}
			continue
		}
		reqs := make([]*logical.SecretRequest, len(entries))
		for i, e := range entries {
			reqs[i] = secretRequest(e, mnt)
		}
		if ic, ok := mnt.Backend.(logical.IdleCloser); ok {
			m.mu.Lock()
			if m.idle == nil {
				m.idle = map[logical.IdleCloser]bool{}
			}
			m.idle[ic] = true
			m.mu.Unlock()
		}
		out := mnt.Backend.RevokeSecrets(bctx, reqs)
		for i, e := range entries {
			if i < len(out) && out[i] != nil {
				errs[e.ID] = out[i]
			} else if i >= len(out) {
				errs[e.ID] = errors.New("backend returned no result")
			}
		}
	}
	failpoint.Hit(failpoint.RevokeAfterBackend)
	now := m.now()
	settle := func(tx storage.Tx) error {
		res = Result{}
		current, err := reread(tx, claimed)
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
			if e == nil {
				continue
			}
			rerr, failed := errs[e.ID]
			keep, pendingAtClaim := issuing[e.ID]
			if pendingAtClaim {
				e.RevokedPending = true
			}
			if !failed && keep {
				e.State = StateRevoking
				e.ClaimUntil = e.IssueTime.Add(m.o.PendingGrace)
				if err := put(tx, e, e.ClaimUntil); err != nil {
					return err
				}
				res.Revoked = append(res.Revoked, e.ID)
				continue
			}
			if !failed || force {
				if err := remove(tx, e); err != nil {
					return err
				}
				if failed {
					res.Failed = append(res.Failed, Failure{LeaseID: e.ID, Error: rerr.Error()})
				} else {
					res.Revoked = append(res.Revoked, e.ID)
				}
				continue
			}
			e.State = StateFailed
			e.Attempts++
			e.LastError = truncate(rerr.Error(), 500)
			e.NextAttempt = now.Add(m.backoff(e.Attempts))
			e.ClaimUntil = time.Time{}
			if err := put(tx, e, e.NextAttempt); err != nil {
				return err
			}
			res.Failed = append(res.Failed, Failure{LeaseID: e.ID, Error: e.LastError})
		}
		return nil
	}
	if then != nil {
		err = m.store.Update(ctx, func(tx storage.Tx) error {
			if err := settle(tx); err != nil {
				return err
			}
			return then(tx)
		})
		if err == nil {
			return res, true, nil
		}
		if ctx.Err() != nil {
			return res, false, err
		}
	}
	err = m.store.Update(ctx, settle)
	return res, false, err
}

// mayBeIssuing returns, for each lease among claimed that was pending when
// claimed (or revoked while pending before) and whose issuer's grace has
// not run out at now, whether its record must outlive its revocation: true
// unless the backend confirms that its secret exists.
func (m *Manager) mayBeIssuing(ctx context.Context, claimed []*Entry, now time.Time) map[string]bool {
	var es []*Entry
	for _, e := range claimed {
		if (e.State == StatePending || e.RevokedPending) && now.Before(e.IssueTime.Add(m.o.PendingGrace)) {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return nil
	}
	// A backend that cannot tell leaves its leases out: they are kept,
	// which costs a second revocation at the end of the grace, never a
	// role without a record.
	created, _ := m.created(ctx, es)
	keep := make(map[string]bool, len(es))
	for _, e := range es {
		keep[e.ID] = !created[e.ID]
	}
	return keep
}

// backoff is RetryBase·2^(n-1) with ±50% jitter, capped at RetryMax: about
// 10 s, 20 s, 40 s … then hourly, for ever.
func (m *Manager) backoff(attempts int) time.Duration {
	d := m.o.RetryBase
	for i := 1; i < attempts && d < m.o.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.o.RetryMax)
	j, err := rand.Int(m.o.Rand, big.NewInt(int64(d)))
	if err != nil {
		return d
	}
	return d/2 + time.Duration(j.Int64())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// closeIdle closes the connections backends kept between the batches of
// one revocation run.
func (m *Manager) closeIdle(ctx context.Context) {
	m.mu.Lock()
	var idle []logical.IdleCloser
	for ic := range m.idle {
		idle = append(idle, ic)
	}
	m.mu.Unlock()
	for _, ic := range idle {
		ic.CloseIdle(ctx)
	}
}
