package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/randstr"
	"github.com/lessorhq/lessor/pkg/storage"
)

// fakeBackend records what the manager asks of it; PostgreSQL is not
// involved at this level (the database package's tests use the real one).
type fakeBackend struct {
	mu       sync.Mutex
	live     map[string]bool // secrets that exist
	fail     error           // when set, revocations fail
	checkErr error           // when set, SecretsCreated fails
	revoked  []string
	renewed  map[string]time.Time
	ttl, max time.Duration
}

func (b *fakeBackend) HandleRequest(context.Context, *logical.Request) (*logical.Response, error) {
	return nil, nil
}
func (b *fakeBackend) ExistenceCheck(context.Context, *logical.Request) (bool, bool, error) {
	return false, false, nil
}
func (b *fakeBackend) SecretLimits(context.Context, *logical.SecretRequest) (time.Duration, time.Duration, error) {
	return b.ttl, b.max, nil
}
func (b *fakeBackend) RenewSecret(_ context.Context, s *logical.SecretRequest, exp time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.renewed[s.LeaseID] = exp
	return nil
}
func (b *fakeBackend) RevokeSecrets(_ context.Context, ss []*logical.SecretRequest) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, len(ss))
	for i, s := range ss {
		if b.fail != nil {
			errs[i] = b.fail
			continue
		}
		delete(b.live, s.LeaseID)
		b.revoked = append(b.revoked, s.LeaseID)
	}
	return errs
}

// SecretsCreated makes fakeBackend a logical.SecretAdopter: a secret
// exists while live says so.
func (b *fakeBackend) SecretsCreated(_ context.Context, ss []*logical.SecretRequest) ([]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.checkErr != nil {
		return nil, b.checkErr
	}
	out := make([]bool, len(ss))
	for i, s := range ss {
		out[i] = b.live[s.LeaseID]
	}
	return out, nil
}

type sysView struct{ now func() time.Time }

func (s sysView) DefaultLeaseTTL() time.Duration { return 768 * time.Hour }
func (s sysView) MaxLeaseTTL() time.Duration     { return 768 * time.Hour }
func (s sysView) StoreID() string                { return "store" }
func (s sysView) Now() time.Time                 { return s.now() }

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func setup(t *testing.T) (*Manager, *fakeBackend, *clock, storage.Store) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	be := &fakeBackend{live: map[string]bool{}, renewed: map[string]time.Time{}, ttl: time.Hour, max: 24 * time.Hour}
	st := storage.NewMemory()
	m := New(st, func(ctx context.Context, uuid string) (*Mount, error) {
		if uuid != "m1" {
			return nil, fmt.Errorf("no mount %s", uuid)
		}
		return &Mount{Backend: be, MountPoint: "database/", Storage: st, System: sysView{clk.now}}, nil
	}, Options{Now: clk.now})
	return m, be, clk, st
}

// issue records and activates a lease the way the core does.
func issue(t *testing.T, m *Manager, be *fakeBackend, clk *clock, role string, ttl time.Duration, accessor string) string {
	t.Helper()
	rec := m.Recorder("m1", "database/", accessor, sysView{clk.now})
	p, err := rec.Prepare(context.Background(), &logical.LeaseRequest{Path: "database/creds/" + role, TTL: ttl, MaxTTL: 24 * time.Hour, Renewable: true})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	if err := m.Activate(context.Background(), rec.Prepared()...); err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func TestPrepareComputesTTLAndWarns(t *testing.T) {
	m, _, clk, _ := setup(t)
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(context.Background(), &logical.LeaseRequest{Path: "database/creds/ro", TTL: 48 * time.Hour, MaxTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if p.TTL != 24*time.Hour || !p.ExpireTime.Equal(clk.t.Add(24*time.Hour)) {
		t.Fatalf("ttl %v expire %v", p.TTL, p.ExpireTime)
	}
	want := `TTL of "48h" exceeded the effective max_ttl of "24h"; TTL value is capped accordingly`
	if len(p.Warnings) != 1 || p.Warnings[0] != want {
		t.Fatalf("warnings %q", p.Warnings)
	}
	if !strings.HasPrefix(p.ID, "database/creds/ro/") || len(p.ID) != len("database/creds/ro/")+24 {
		t.Fatalf("id %q", p.ID)
	}
	// A pending lease is invisible to lookup and renew.
	if _, err := m.Lookup(context.Background(), p.ID); !errors.Is(err, ErrInvalidLease) {
		t.Fatalf("lookup pending: %v", err)
	}
}

func TestRenewCountsFromNowAndCapsAtMax(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Hour, "")
	clk.advance(30 * time.Minute)
	resp, err := m.Renew(ctx, id, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Secret.TTL != 2*time.Hour || !be.renewed[id].Equal(clk.t.Add(2*time.Hour)) {
		t.Fatalf("ttl %v renewed to %v", resp.Secret.TTL, be.renewed[id])
	}
	resp, err = m.Renew(ctx, id, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Secret.TTL != 23*time.Hour+30*time.Minute || len(resp.Warnings) != 1 {
		t.Fatalf("capped ttl %v warnings %q", resp.Secret.TTL, resp.Warnings)
	}
	e, err := m.Lookup(ctx, id)
	if err != nil || e.LastRenewal == nil || !e.ExpireTime.Equal(clk.t.Add(resp.Secret.TTL)) {
		t.Fatalf("lookup after renew: %+v %v", e, err)
	}
	clk.advance(23*time.Hour + 30*time.Minute)
	if _, err := m.Renew(ctx, id, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("renew at max: %v", err)
	}
	if _, err := m.Renew(ctx, "database/creds/ro/nope", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("renew unknown: %v", err)
	}
}

func TestRevokeAndPrefixAreSegmentAligned(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	a := issue(t, m, be, clk, "read", time.Hour, "")
	b := issue(t, m, be, clk, "readonly", time.Hour, "")
	c := issue(t, m, be, clk, "readonly", time.Hour, "")
	if err := m.Revoke(ctx, "database/creds/readonly/unknown"); err != nil {
		t.Fatalf("unknown id must succeed: %v", err)
	}
	if _, err := m.RevokePrefix(ctx, "database/creds/read", false); err != nil {
		t.Fatal(err)
	}
	if be.live[a] || !be.live[b] || !be.live[c] {
		t.Fatalf("prefix read revoked %v", be.revoked)
	}
	if err := m.Revoke(ctx, b); err != nil {
		t.Fatal(err)
	}
	if be.live[b] || !be.live[c] {
		t.Fatalf("revoked %v", be.revoked)
	}
	if n, _ := m.Count(ctx); n != 1 {
		t.Fatalf("count %d", n)
	}
}

func TestReapRevokesOnlyWhatIsDue(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	var short, long []string
	for i := 0; i < 3; i++ {
		short = append(short, issue(t, m, be, clk, "ro", time.Minute, ""))
	}
	for i := 0; i < 2; i++ {
		long = append(long, issue(t, m, be, clk, "ro", time.Hour, ""))
	}
	clk.advance(2 * time.Minute)
	dry, err := m.Reap(ctx, ReapOptions{DryRun: true})
	if err != nil || len(dry.Due) != 3 || dry.Due[0].Reason != ReasonExpired || len(be.revoked) != 0 {
		t.Fatalf("dry run: %+v %v revoked %v", dry, err, be.revoked)
	}
	sum, err := m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 3 || sum.Failed != 0 || sum.WaitingRetry != 0 {
		t.Fatalf("reap: %+v %v", sum, err)
	}
	for _, id := range short {
		if be.live[id] {
			t.Fatalf("%s still live", id)
		}
	}
	for _, id := range long {
		if !be.live[id] {
			t.Fatalf("%s revoked early", id)
		}
	}
	sum, err = m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 0 {
		t.Fatalf("second reap: %+v %v", sum, err)
	}
}

func TestReapRetriesFailuresForEver(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 50; i++ {
		ids = append(ids, issue(t, m, be, clk, "ro", time.Minute, ""))
	}
	clk.advance(2 * time.Minute)
	be.fail = errors.New("connect to 127.0.0.1:5432: connection refused")
	var lastNext time.Time
	for run := 1; run <= 10; run++ {
		sum, err := m.Reap(ctx, ReapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Failed != 50 || sum.WaitingRetry != 50 || sum.Revoked != 0 {
			t.Fatalf("run %d: %+v", run, sum)
		}
		e, err := m.Lookup(ctx, ids[0])
		if err != nil || e.State != StateFailed || e.Attempts != run || !strings.Contains(e.LastError, "connection refused") {
			t.Fatalf("run %d: %+v %v", run, e, err)
		}
		if !e.NextAttempt.After(lastNext) {
			t.Fatalf("run %d: next attempt %v not after %v", run, e.NextAttempt, lastNext)
		}
		lastNext = e.NextAttempt
		// Not due yet: an immediate reap has nothing to try, but still
		// reports the backlog.
		sum, _ = m.Reap(ctx, ReapOptions{})
		if sum.Failed != 0 || sum.WaitingRetry != 50 {
			t.Fatalf("run %d immediate: %+v", run, sum)
		}
		clk.t = e.NextAttempt.Add(2 * time.Hour)
	}
	be.fail = nil
	sum, err := m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 50 || sum.WaitingRetry != 0 {
		t.Fatalf("after recovery: %+v %v", sum, err)
	}
	if n, _ := m.Count(ctx); n != 0 {
		t.Fatalf("%d leases left", n)
	}
}

func TestReapCleansStalePendingAndDeadClaims(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The issuer died here. Within the grace period reap leaves it alone.
	sum, _ := m.Reap(ctx, ReapOptions{})
	if sum.Revoked != 0 {
		t.Fatalf("pending revoked too early: %+v", sum)
	}
	clk.advance(6 * time.Minute)
	// Past the grace, its secret does not exist: the record goes, and the
	// backend is not asked to revoke what it says it never created.
	sum, _ = m.Reap(ctx, ReapOptions{})
	if sum.Revoked != 1 || sum.Adopted != 0 || len(be.revoked) != 0 {
		t.Fatalf("stale pending: %+v %v", sum, be.revoked)
	}
	if _, err := m.Lookup(ctx, p.ID); !errors.Is(err, ErrInvalidLease) {
		t.Fatalf("stale pending still there: %v", err)
	}
	// A revoker that claimed a lease and died: the claim runs out.
	id := issue(t, m, be, clk, "ro", time.Minute, "")
	clk.advance(2 * time.Minute)
	if _, _, err := m.claim(ctx, []string{id}, false); err != nil {
		t.Fatal(err)
	}
	sum, _ = m.Reap(ctx, ReapOptions{})
	if sum.Revoked != 0 {
		t.Fatalf("live claim stolen: %+v", sum)
	}
	clk.advance(6 * time.Minute)
	sum, _ = m.Reap(ctx, ReapOptions{})
	if sum.Revoked != 1 {
		t.Fatalf("dead claim: %+v", sum)
	}
}

func TestConcurrentReapsNeverRevokeTwice(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		issue(t, m, be, clk, "ro", time.Minute, "")
	}
	clk.advance(2 * time.Minute)
	m.o.BatchSize = 7
	var wg sync.WaitGroup
	total := make([]int, 4)
	for w := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := m.Reap(ctx, ReapOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			total[w] = sum.Revoked
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range be.revoked {
		if seen[id] {
			t.Fatalf("%s revoked twice", id)
		}
		seen[id] = true
	}
	if n := total[0] + total[1] + total[2] + total[3]; n != 300 || len(seen) != 300 {
		t.Fatalf("revoked %d (%d distinct)", n, len(seen))
	}
}

// One reap's workers share the work and the summary: every lease revoked
// once, counted once, and progress reported up to the total.
func TestReapWorkersShareOneSummary(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		issue(t, m, be, clk, "ro", time.Minute, "")
	}
	clk.advance(2 * time.Minute)
	m.o.BatchSize = 7
	var mu sync.Mutex
	var progress []int
	sum, err := m.Reap(ctx, ReapOptions{Workers: 3, Progress: func(done int) {
		mu.Lock()
		progress = append(progress, done)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, id := range be.revoked {
		if seen[id] {
			t.Fatalf("%s revoked twice", id)
		}
		seen[id] = true
	}
	if sum.Revoked != 100 || sum.Failed != 0 || len(seen) != 100 {
		t.Fatalf("summary %+v, %d distinct revocations", sum, len(seen))
	}
	if len(progress) != 15 || progress[len(progress)-1] != 100 || !slices.IsSorted(progress) {
		t.Fatalf("progress %v, want 15 calls rising to 100", progress)
	}
	if n, _ := m.Count(ctx); n != 0 {
		t.Fatalf("%d leases left", n)
	}
}

// failingStore fails the Update whose number (from 1) is failAt, and
// closes failed when it has.
type failingStore struct {
	storage.Store
	mu     sync.Mutex
	n      int
	failAt int
	failed chan struct{}
}

func (s *failingStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	s.mu.Lock()
	s.n++
	fail := s.n == s.failAt
	s.mu.Unlock()
	if fail {
		close(s.failed)
		return errors.New("injected store failure")
	}
	return s.Store.Update(ctx, fn)
}

// blockingBackend holds the first RevokeSecrets call until release is
// closed.
type blockingBackend struct {
	*fakeBackend
	once    sync.Once
	release chan struct{}
}

func (b *blockingBackend) RevokeSecrets(ctx context.Context, ss []*logical.SecretRequest) []error {
	b.once.Do(func() { <-b.release })
	return b.fakeBackend.RevokeSecrets(ctx, ss)
}

// When one worker fails, the batch another worker has in flight still
// runs to its end and is settled: its leases are revoked, removed and
// counted, none left claimed.
func TestReapWorkerFailureLetsOtherBatchFinish(t *testing.T) {
	_, be, clk, st := setup(t)
	fs := &failingStore{Store: st, failed: make(chan struct{})}
	bb := &blockingBackend{fakeBackend: be, release: make(chan struct{})}
	m := New(fs, func(ctx context.Context, uuid string) (*Mount, error) {
		return &Mount{Backend: bb, MountPoint: "database/", Storage: st, System: sysView{clk.now}}, nil
	}, Options{Now: clk.now, BatchSize: 10})
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		issue(t, m, be, clk, "ro", time.Minute, "")
	}
	clk.advance(2 * time.Minute)
	// Updates so far: 20 issues x (prepare + activate). Next: the first
	// worker's claim, then the second worker's claim, which fails.
	fs.mu.Lock()
	fs.failAt = fs.n + 2
	fs.mu.Unlock()
	go func() {
		<-fs.failed
		close(bb.release)
	}()
	sum, err := m.Reap(ctx, ReapOptions{Workers: 2})
	if err == nil || err.Error() != "injected store failure" {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if sum.Revoked != 10 || len(be.revoked) != 10 {
		t.Fatalf("summary %+v, backend revoked %d; want the claimed batch of 10 finished", sum, len(be.revoked))
	}
	if n, _ := m.Count(ctx); n != 10 {
		t.Fatalf("%d leases left, want the 10 never claimed", n)
	}
	// Nothing is left claimed: a second reap revokes the other 10 at once.
	sum, err = m.Reap(ctx, ReapOptions{Workers: 2})
	if err != nil || sum.Revoked != 10 {
		t.Fatalf("second reap: %+v, %v", sum, err)
	}
}

func TestRevokeByToken(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	a := issue(t, m, be, clk, "ro", time.Hour, "acc1")
	b := issue(t, m, be, clk, "ro", time.Hour, "acc2")
	if err := m.RevokeByToken(ctx, []string{"acc1"}); err != nil {
		t.Fatal(err)
	}
	if be.live[a] || !be.live[b] {
		t.Fatalf("revoked %v", be.revoked)
	}
}

func TestForceForgetsFailures(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	issue(t, m, be, clk, "ro", time.Hour, "")
	be.fail = errors.New("boom")
	if _, err := m.RevokePrefix(ctx, "database/creds/ro", false); err == nil {
		t.Fatal("want error")
	}
	if n, _ := m.Count(ctx); n != 1 {
		t.Fatalf("failed lease must stay, count %d", n)
	}
	failed, err := m.RevokePrefix(ctx, "database/creds/ro", true)
	if err != nil || len(failed) != 1 {
		t.Fatalf("force: %v %v", failed, err)
	}
	if n, _ := m.Count(ctx); n != 0 {
		t.Fatalf("count %d", n)
	}
}

// A pending lease whose secret exists (its issuer handed the credential out
// and exited without activating it) is adopted by reap after the grace,
// never revoked before its expiry; and revoked at its expiry.
func TestReapAdoptsPendingWhoseSecretExists(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	clk.advance(6 * time.Minute)
	sum, err := m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 0 || sum.Adopted != 1 || len(be.revoked) != 0 {
		t.Fatalf("reap after grace: %+v %v %v", sum, err, be.revoked)
	}
	e, err := m.Lookup(ctx, p.ID)
	if err != nil || e.State != StateActive || e.DueKey != dueKey(p.ExpireTime, p.ID) {
		t.Fatalf("adopted lease: %+v %v", e, err)
	}
	clk.advance(50 * time.Minute)
	if sum, _ := m.Reap(ctx, ReapOptions{}); sum.Revoked != 0 || sum.Adopted != 0 {
		t.Fatalf("revoked before expiry: %+v", sum)
	}
	clk.advance(5 * time.Minute)
	if sum, _ := m.Reap(ctx, ReapOptions{}); sum.Revoked != 1 || be.revoked[0] != p.ID {
		t.Fatalf("at expiry: %+v %v", sum, be.revoked)
	}
}

// An issuer that failed without knowing whether its secret exists
// abandons the pending lease: the next reap revokes it at once, even though
// the secret exists with its mark, instead of adopting it.
func TestReapRevokesAbandonedPending(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	if err := rec.Abandon(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if len(rec.Prepared()) != 0 {
		t.Fatalf("still prepared: %v", rec.Prepared())
	}
	sum, err := m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 1 || sum.Adopted != 0 || len(be.revoked) != 1 || be.revoked[0] != p.ID {
		t.Fatalf("reap after abandon: %+v %v %v", sum, err, be.revoked)
	}
	if err := rec.Abandon(ctx, p.ID); err != nil {
		t.Fatalf("abandon a lease already gone: %v", err)
	}
}

// When the backend cannot tell whether a pending lease's secret exists,
// reap neither revokes nor adopts it: it asks again after a backoff, for
// ever, and once the backend answers, adopts it.
func TestReapNeverRevokesPendingOnAGuess(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	be.checkErr = errors.New("connection refused")
	clk.advance(6 * time.Minute)
	for range 3 {
		sum, err := m.Reap(ctx, ReapOptions{})
		if err != nil || sum.Revoked != 0 || sum.Adopted != 0 || sum.Failed != 1 || len(be.revoked) != 0 {
			t.Fatalf("reap while the backend cannot tell: %+v %v", sum, err)
		}
		clk.advance(3 * time.Minute)
	}
	be.checkErr = nil
	if sum, err := m.Reap(ctx, ReapOptions{}); err != nil || sum.Adopted != 1 || sum.Revoked != 0 {
		t.Fatalf("reap once the backend answers: %+v %v", sum, err)
	}
}

// A pending lease due before its grace ends (TTL shorter than the grace)
// is due at its expiry, and revoked then.
func TestPendingDueAtExpiryWhenSooner(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	clk.advance(61 * time.Second)
	if sum, _ := m.Reap(ctx, ReapOptions{}); sum.Revoked != 1 || len(be.revoked) != 1 {
		t.Fatalf("expired pending: %+v %v", sum, be.revoked)
	}
}

// Lookup and renew adopt a pending lease whose secret exists, and say
// "invalid lease" / "not found" for one whose secret does not (yet).
func TestLookupAndRenewAdoptPending(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	var ids []string
	for range 2 {
		p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour, Renewable: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	if _, err := m.Lookup(ctx, ids[0]); !errors.Is(err, ErrInvalidLease) {
		t.Fatalf("lookup before creation: %v", err)
	}
	if _, err := m.Renew(ctx, ids[1], 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("renew before creation: %v", err)
	}
	be.live[ids[0]], be.live[ids[1]] = true, true
	if e, err := m.Lookup(ctx, ids[0]); err != nil || e.State != StateActive {
		t.Fatalf("lookup: %+v %v", e, err)
	}
	clk.advance(time.Minute)
	if _, err := m.Renew(ctx, ids[1], 0); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if _, ok := be.renewed[ids[1]]; !ok {
		t.Fatal("renew did not reach the backend")
	}
	es, err := m.Entries(ctx, "")
	if err != nil || len(es) != 2 || es[0].State != StateActive || es[1].State != StateActive {
		t.Fatalf("entries: %v", err)
	}
}

// Lease ids sort as their issue times do (so that the records reap settles
// together are stored together), keep Vault's 24 base62 characters, and
// differ when issued in the same millisecond.
func TestIDSuffixSortsByIssueTime(t *testing.T) {
	m, be, clk, _ := setup(t)
	var ids []string
	for _, step := range []time.Duration{0, time.Millisecond, 0, 999 * time.Millisecond, time.Second, 40 * 24 * time.Hour} {
		clk.advance(step)
		ids = append(ids, strings.TrimPrefix(issue(t, m, be, clk, "ro", time.Hour, ""), "database/creds/ro/"))
	}
	for i, id := range ids {
		if len(id) != 24 || strings.Trim(id, randstr.Base62) != "" {
			t.Fatalf("id %q: want 24 base62 characters", id)
		}
		// Ids of one millisecond (the third) sort among themselves at
		// random.
		if i > 0 && i != 2 && id <= ids[i-1] {
			t.Fatalf("id %q issued after %q sorts before it", id, ids[i-1])
		}
	}
	if ids[1][:8] != ids[2][:8] || ids[1][8:] == ids[2][8:] {
		t.Fatalf("same millisecond: %q and %q, want one time part and two random parts", ids[1], ids[2])
	}
	// The time part of the first is clk's start, read back.
	var ms int64
	for _, c := range ids[0][:8] {
		ms = ms*62 + int64(strings.IndexRune(randstr.Base62, c))
	}
	if want := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixMilli(); ms != want {
		t.Fatalf("time part %q is %d ms, want %d", ids[0][:8], ms, want)
	}
	// Before 1970 (a broken clock) and far ahead still give 8 digits.
	for _, at := range []time.Time{time.Unix(-5, 0), time.Date(8000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		id, err := IDSuffix(strings.NewReader(strings.Repeat("x", 64)), at)
		if err != nil || len(id) != 24 {
			t.Fatalf("IDSuffix(%v) = %q, %v", at, id, err)
		}
	}
}
