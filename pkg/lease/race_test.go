package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// rerunStore runs every Update's function twice, as a store may (a group
// commit that failed, a PostgreSQL serialization failure): the first run's
// writes are rolled back, the second run's are committed.
type rerunStore struct{ storage.Store }

var errRerun = errors.New("run again")

func (s rerunStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	err := s.Store.Update(ctx, func(tx storage.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRerun
	})
	if !errors.Is(err, errRerun) {
		return err
	}
	return s.Store.Update(ctx, fn)
}

// TestPrepareRunTwice: a lease recorded by a function its store ran twice
// has its token index entry, so that revoking the token revokes it.
func TestPrepareRunTwice(t *testing.T) {
	m, be, clk, st := setup(t)
	m.store = rerunStore{st}
	id := issue(t, m, be, clk, "ro", time.Hour, "acc1")
	if err := m.RevokeByToken(context.Background(), []string{"acc1"}); err != nil {
		t.Fatal(err)
	}
	if len(be.revoked) != 1 || be.revoked[0] != id {
		t.Fatalf("revoking the token revoked %v, want [%s]", be.revoked, id)
	}
	if _, err := m.Lookup(context.Background(), id); !errors.Is(err, ErrInvalidLease) {
		t.Fatalf("lease still recorded: %v", err)
	}
}

// hookBackend runs a hook inside RenewSecret and RevokeSecrets: what
// happens elsewhere while a backend call is on the network.
type hookBackend struct {
	*fakeBackend
	onRenew  func()
	onRevoke func()
}

func (h *hookBackend) RenewSecret(ctx context.Context, s *logical.SecretRequest, exp time.Time) error {
	if f := h.onRenew; f != nil {
		h.onRenew = nil
		f()
	}
	return h.fakeBackend.RenewSecret(ctx, s, exp)
}

func (h *hookBackend) RevokeSecrets(ctx context.Context, ss []*logical.SecretRequest) []error {
	if h.onRevoke != nil {
		h.onRevoke()
	}
	return h.fakeBackend.RevokeSecrets(ctx, ss)
}

// useBackend has m's leases revoked and renewed through b, on a mount of
// st at database/ with the test clock.
func useBackend(m *Manager, b logical.SecretBackend, clk *clock, st storage.Store) {
	m.resolve = func(context.Context, string) (*Mount, error) {
		return &Mount{Backend: b, MountPoint: "database/", Storage: st, System: sysView{clk.now}}, nil
	}
}

func setupHooks(t *testing.T) (*Manager, *hookBackend, *clock) {
	m, be, clk, st := setup(t)
	hb := &hookBackend{fakeBackend: be}
	useBackend(m, hb, clk, st)
	return m, hb, clk
}

// TestRenewUnderBatchClaim: a reaper claims the lease while its renewal
// is on the network. The renewal must not report success: the reaper
// revokes the credential.
func TestRenewUnderBatchClaim(t *testing.T) {
	m, hb, clk := setupHooks(t)
	ctx := context.Background()
	id := issue(t, m, hb.fakeBackend, clk, "ro", time.Minute, "")
	clk.advance(59 * time.Second)
	var claimed []*Entry
	var claimKey string
	hb.onRenew = func() {
		clk.advance(2 * time.Second) // due now
		b, err := m.claimDue(ctx, m.now())
		claimed, claimKey = b.claimed, b.key
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v, %d claimed", err, len(claimed))
		}
	}
	if resp, err := m.Renew(ctx, id, time.Hour); err == nil {
		t.Fatalf("renewal of a lease a reaper claimed succeeded: %+v", resp.Secret)
	}
	if _, err := m.revokeClaimed(ctx, claimed, false, claimKey); err != nil {
		t.Fatal(err)
	}
	if len(hb.revoked) != 1 {
		t.Fatalf("revoked %v", hb.revoked)
	}
}

// TestRevokeUnderBatchClaim: `lease revoke` of a lease a live reaper
// holds waits for that reaper instead of revoking it a second time.
func TestRevokeUnderBatchClaim(t *testing.T) {
	m, hb, clk := setupHooks(t)
	ctx := context.Background()
	id := issue(t, m, hb.fakeBackend, clk, "ro", time.Minute, "")
	other := issue(t, m, hb.fakeBackend, clk, "rw", time.Hour, "")
	clk.advance(2 * time.Minute)
	b, err := m.claimDue(ctx, m.now())
	claimed, claimKey := b.claimed, b.key
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d claimed", err, len(claimed))
	}
	done := make(chan error, 1)
	go func() {
		// Both: the one the reaper holds, and one it does not.
		_, _, err := m.RevokePrefixCount(ctx, "database/creds/", false)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("revoke returned while the reaper held the lease: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := m.revokeClaimed(ctx, claimed, false, claimKey); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	n := map[string]int{}
	for _, r := range hb.revoked {
		n[r]++
	}
	if n[id] != 1 || n[other] != 1 || len(hb.revoked) != 2 {
		t.Fatalf("revoked %v, want %s and %s once each", hb.revoked, id, other)
	}
}

// TestLongReapFreshClaims: a reap that runs longer than ClaimTimeout
// claims each batch until its own time plus ClaimTimeout, so that a second
// reaper started meanwhile takes none of its leases.
func TestLongReapFreshClaims(t *testing.T) {
	m, hb, clk := setupHooks(t)
	ctx := context.Background()
	for range 20 {
		issue(t, m, hb.fakeBackend, clk, "ro", time.Minute, "")
	}
	clk.advance(2 * time.Minute)
	m.o.BatchSize = 5
	batches, nested := 0, false
	hb.onRevoke = func() {
		if nested {
			return
		}
		batches++
		clk.advance(2 * time.Minute) // a slow database: 8 minutes for 4 batches
		if batches == 4 {
			nested = true
			if _, err := m.Reap(ctx, ReapOptions{Workers: 1}); err != nil {
				t.Error(err)
			}
			nested = false
		}
	}
	if _, err := m.Reap(ctx, ReapOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range hb.revoked {
		if n[r]++; n[r] > 1 {
			t.Errorf("%s revoked twice", r)
		}
	}
	if len(n) != 20 {
		t.Fatalf("%d of 20 revoked", len(n))
	}
}

// ctxBackend waits in RevokeSecrets until its context ends, as a backend
// stuck on a database that does not answer would, and says when that was.
type ctxBackend struct {
	*fakeBackend
	deadline chan time.Time
}

func (b *ctxBackend) RevokeSecrets(ctx context.Context, ss []*logical.SecretRequest) []error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	b.deadline <- dl
	<-ctx.Done()
	errs := make([]error, len(ss))
	for i := range errs {
		errs[i] = ctx.Err()
	}
	return errs
}

// TestReapStopsBeforeItsClaimEnds: a backend that never answers is given
// up on before the batch's claim runs out, so that a reaper taking the
// leases after the claim never overlaps with this one; the leases fail
// and wait for a retry.
func TestReapStopsBeforeItsClaimEnds(t *testing.T) {
	m, be, clk, st := setup(t)
	cb := &ctxBackend{fakeBackend: be, deadline: make(chan time.Time, 1)}
	useBackend(m, cb, clk, st)
	m.o.ClaimTimeout = time.Second
	issue(t, m, be, clk, "ro", time.Minute, "")
	clk.advance(2 * time.Minute)
	start := time.Now()
	sum, err := m.Reap(context.Background(), ReapOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	dl := <-cb.deadline
	if dl.IsZero() || dl.Sub(start) > time.Second-claimMargin(time.Second)+100*time.Millisecond {
		t.Fatalf("the backend was given until %v, %v after the claim (1s) began", dl, dl.Sub(start))
	}
	if sum.Revoked != 0 || sum.Failed != 1 || sum.WaitingRetry != 1 {
		t.Fatalf("summary %+v, want the lease failed and waiting for a retry", sum)
	}
}

// afterRenewBackend runs a hook once, after RenewSecret moved the
// secret's expiry: what happens elsewhere between the backend call and
// the renewal's commit.
type afterRenewBackend struct {
	*fakeBackend
	after func()
}

func (h *afterRenewBackend) RenewSecret(ctx context.Context, s *logical.SecretRequest, exp time.Time) error {
	err := h.fakeBackend.RenewSecret(ctx, s, exp)
	if f := h.after; f != nil {
		h.after = nil
		f()
	}
	return err
}

// TestConcurrentRenewalsAgree: two renewals of one lease overlap. Both
// may succeed, one after the other, but what the record says at the end
// is what the backend (VALID UNTIL) was last told: otherwise reap revokes
// a credential early that a renewal promised, or the credential stops
// logging in while its lease says it is valid.
func TestConcurrentRenewalsAgree(t *testing.T) {
	m, be, clk, st := setup(t)
	ab := &afterRenewBackend{fakeBackend: be}
	useBackend(m, ab, clk, st)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	done := make(chan error, 1)
	ab.after = func() {
		// The first renewal told the backend +10m; a second asks +1h
		// before the first commits.
		go func() {
			_, err := m.Renew(ctx, id, time.Hour)
			done <- err
		}()
		select {
		case err := <-done:
			done <- err
		case <-time.After(300 * time.Millisecond):
		}
	}
	if _, err := m.Renew(ctx, id, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e, err := m.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	got := be.renewed[id]
	be.mu.Unlock()
	if !got.Equal(e.ExpireTime) {
		t.Fatalf("the record expires at %v, the backend's secret at %v", e.ExpireTime, got)
	}
}

// TestRenewAfterKilledRenewal: a renewal killed after it took the lease
// holds it only until its hold runs out; the next renewal then works.
func TestRenewAfterKilledRenewal(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	if _, err := m.takeRenewal(ctx, id); err != nil { // then killed
		t.Fatal(err)
	}
	clk.advance(renewHold)
	if _, err := m.Renew(ctx, id, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	e, err := m.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !be.renewed[id].Equal(e.ExpireTime) || !e.ExpireTime.Equal(clk.now().Add(2*time.Hour)) || !e.RenewUntil.IsZero() {
		t.Fatalf("record expires %v (hold %v), backend %v", e.ExpireTime, e.RenewUntil, be.renewed[id])
	}
}

// countingStore counts read-write transactions: each is a durable commit
// (two fdatasyncs and the file's exclusive lock on bbolt, whether or not
// its function wrote anything).
type countingStore struct {
	storage.Store
	updates atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

// TestRenewWaitsWithoutCommitting: a renewal waiting for another's hold
// on the lease (here one left by a killed renewal) looks every 50 ms
// whether it is free. Each look used to be a read-write transaction, a
// durable commit on bbolt even when it found the lease still held: 300
// of them in the 15 s a killed renewal holds its lease, each taking the
// store's exclusive lock from every other command and request. Looking
// is a read; only taking the lease commits.
func TestRenewWaitsWithoutCommitting(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	fastClock(m, clk)
	if _, err := m.takeRenewal(ctx, id); err != nil { // then killed
		t.Fatal(err)
	}
	cs := &countingStore{Store: m.store}
	m.store = cs
	if _, err := m.Renew(ctx, id, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	// Taking the lease and committing the renewal; one more at most
	// for a look that raced the hold's end.
	if n := cs.updates.Load(); n > 3 {
		t.Errorf("the renewal made %d read-write transactions while it waited, want at most 3", n)
	}
}

// cancelRenewBackend: the caller goes away (an HTTP client of lessor
// serve that disconnects, a command interrupted) while RenewSecret is on
// the network; the backend call fails with the context's error.
type cancelRenewBackend struct {
	*fakeBackend
	cancel context.CancelFunc
}

func (h *cancelRenewBackend) RenewSecret(ctx context.Context, s *logical.SecretRequest, exp time.Time) error {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
		<-ctx.Done()
		return ctx.Err()
	}
	return h.fakeBackend.RenewSecret(ctx, s, exp)
}

// TestRenewCanceledLetsGo: a renewal whose caller went away during its
// backend call fails, and lets go of the lease: releasing the hold with
// the caller's (ended) context failed, so the next renewal of the lease
// waited out the whole hold, 15 s, for a renewal that had already ended.
func TestRenewCanceledLetsGo(t *testing.T) {
	m, be, clk, st := setup(t)
	cb := &cancelRenewBackend{fakeBackend: be}
	useBackend(m, cb, clk, st)
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	ctx, cancel := context.WithCancel(context.Background())
	cb.cancel = cancel
	if _, err := m.Renew(ctx, id, 2*time.Hour); err == nil || ctx.Err() == nil {
		t.Fatalf("renewal whose caller went away: %v", err)
	}
	next, cancelNext := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelNext()
	if _, err := m.Renew(next, id, 2*time.Hour); err != nil {
		t.Fatalf("the next renewal: %v", err)
	}
}

// ctxRenewBackend fails a renewal whose context is already done, as a
// PostgreSQL backend does before it sends anything.
type ctxRenewBackend struct{ *fakeBackend }

func (h *ctxRenewBackend) RenewSecret(ctx context.Context, s *logical.SecretRequest, exp time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.fakeBackend.RenewSecret(ctx, s, exp)
}

// TestRenewDeadlineOnTheWallClock: the renewal's backend call must end a
// tenth of the hold before the hold does; the hold is on the manager's
// clock (Options.Now), a context's deadline on the wall clock. The
// deadline used to be the hold's end read as a wall-clock time: with a
// manager clock behind the wall clock (here the tests' fixed date) every
// backend call started past its deadline and every renewal failed; with
// one ahead, the call was not bounded at all.
func TestRenewDeadlineOnTheWallClock(t *testing.T) {
	m, be, clk, st := setup(t)
	cb := &ctxRenewBackend{fakeBackend: be}
	useBackend(m, cb, clk, st)
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	if _, err := m.Renew(context.Background(), id, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
}

// TestRenewCountsFromWhenItHoldsTheLease: a renewal that waited for
// another's hold on the lease (here a killed renewal's, 15 s) counts its
// increment from when it took the lease, not from when it began: it
// used to hand out a lease, and a VALID UNTIL, ending as much earlier
// than "increment from now" as it had waited.
func TestRenewCountsFromWhenItHoldsTheLease(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	fastClock(m, clk)
	held, err := m.takeRenewal(ctx, id) // then killed
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.Renew(ctx, id, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// Truncated to the second, as every expiry is.
	if want := held.Add(2 * time.Hour).Add(-time.Second); e.ExpireTime.Before(want) {
		t.Fatalf("the renewal waited until %v and then gave the lease until %v, want from %v", held, e.ExpireTime, want)
	}
	be.mu.Lock()
	got := be.renewed[id]
	be.mu.Unlock()
	if !got.Equal(e.ExpireTime) {
		t.Fatalf("the record expires at %v, the backend's secret at %v", e.ExpireTime, got)
	}
	if resp.Secret.TTL != 2*time.Hour {
		t.Fatalf("TTL %v, want 2h", resp.Secret.TTL)
	}
}

// fastClock makes the manager's clock run 30 times as fast as the wall
// clock from clk's time on: a renewal's hold on a lease (renewHold, 15 s)
// runs out after half a second.
func fastClock(m *Manager, clk *clock) {
	base, start := clk.now(), time.Now()
	m.o.Now = func() time.Time { return base.Add(30 * time.Since(start)) }
}
