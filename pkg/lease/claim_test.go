package lease

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// costStore counts what a store that pays a round trip per read (the
// PostgreSQL backend) would be asked for: a Get costs a round trip unless
// a GetMany or Prefetch of the same transaction read the key already; a
// GetMany or Prefetch costs one unless it read them all already, as the
// PostgreSQL backend then asks nothing; a list or a read of a prefix
// costs one unless a PrefetchPrefixes or GetPrefix read all of it. It
// also counts Puts.
type costStore struct {
	storage.Store
	mu         sync.Mutex
	roundTrips int
	puts       int
}

func (s *costStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Store.View(ctx, func(tx storage.Tx) error { return fn(&costTx{Tx: tx, s: s, read: map[string]bool{}}) })
}

func (s *costStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Store.Update(ctx, func(tx storage.Tx) error { return fn(&costTx{Tx: tx, s: s, read: map[string]bool{}}) })
}

type costTx struct {
	storage.Tx
	s    *costStore
	read map[string]bool
}

func (t *costTx) count(rt, puts int) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.roundTrips += rt
	t.s.puts += puts
}

func (t *costTx) Get(key string) ([]byte, error) {
	if !t.read[key] {
		t.count(1, 0)
		t.read[key] = true
	}
	return t.Tx.Get(key)
}

func (t *costTx) GetMany(keys []string) ([][]byte, error) {
	for _, k := range keys {
		if !t.read[k] {
			t.count(1, 0)
			break
		}
	}
	for _, k := range keys {
		t.read[k] = true
	}
	return storage.GetMany(t.Tx, keys)
}

func (t *costTx) Prefetch(keys []string) error {
	_, err := t.GetMany(keys)
	return err
}

// Walk costs a round trip unless a PrefetchPrefixes or GetPrefix of the
// transaction read all of prefix already.
func (t *costTx) Walk(prefix string, fn func(string) error) error {
	t.prefixTrip(prefix)
	return t.Tx.Walk(prefix, fn)
}

func (t *costTx) List(prefix string) ([]string, error) {
	t.prefixTrip(prefix)
	return t.Tx.List(prefix)
}

func (t *costTx) GetPrefix(prefix string) ([]string, [][]byte, error) {
	t.prefixTrip(prefix)
	keys, vs, err := storage.GetPrefix(t.Tx, prefix)
	for _, k := range keys {
		t.read[k] = true
	}
	return keys, vs, err
}

func (t *costTx) PrefetchPrefixes(keys, prefixes []string) error {
	trip := false
	for _, k := range keys {
		trip = trip || !t.read[k]
		t.read[k] = true
	}
	for _, p := range prefixes {
		trip = trip || !t.whole(p)
		t.read["\x00"+p] = true
	}
	if trip {
		t.count(1, 0)
	}
	return nil
}

// whole reports whether all of prefix was read in the transaction.
func (t *costTx) whole(prefix string) bool {
	for k := range t.read {
		if p, ok := strings.CutPrefix(k, "\x00"); ok && strings.HasPrefix(prefix, p) {
			return true
		}
	}
	return false
}

func (t *costTx) prefixTrip(prefix string) {
	if !t.whole(prefix) {
		t.count(1, 0)
		t.read["\x00"+prefix] = true
	}
}

func (t *costTx) Put(key string, value []byte) error {
	t.count(0, 1)
	t.read[key] = true
	return t.Tx.Put(key, value)
}

// setupSealedCost is setup with the manager's store sealed by a barrier
// over a costStore, which counts what a PostgreSQL store would be asked.
func setupSealedCost(t *testing.T) (*Manager, *fakeBackend, *clock, *costStore) {
	t.Helper()
	m, be, clk, _ := setup(t)
	cs := &costStore{Store: storage.NewMemory()}
	key, err := barrier.KeyFromBase64(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	bar, err := barrier.Init(context.Background(), cs, key, barrier.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.store = bar
	return m, be, clk, cs
}

// TestReapBatchCostDoesNotGrowWithLeases: reaping a batch reads its
// records in a few batched reads, not one round trip per lease, and
// claims it with one record, not by rewriting each lease's record and due
// key (which was most of a reap's time on either store).
func TestReapBatchCostDoesNotGrowWithLeases(t *testing.T) {
	m, be, clk, cs := setupSealedCost(t)
	ctx := context.Background()
	const n = 300
	for range n {
		issue(t, m, be, clk, "ro", time.Minute, "accessor")
	}
	clk.advance(2 * time.Minute)
	m.o.BatchSize = 100
	cs.roundTrips, cs.puts = 0, 0
	sum, err := m.Reap(ctx, ReapOptions{Workers: 1})
	if err != nil || sum.Revoked != n || len(be.revoked) != n {
		t.Fatalf("reap: %+v %v (%d revoked by the backend)", sum, err, len(be.revoked))
	}
	// 3 claims, 3 settles and a last empty claim, each a handful of
	// round trips (the barrier's header, keyring and state; the due walk;
	// the batched reads) and, when it writes, a claim and the state.
	t.Logf("reaping %d leases in batches of 100: %d round trips, %d puts", n, cs.roundTrips, cs.puts)
	if cs.roundTrips > 60 || cs.puts > 15 {
		t.Fatalf("reaping %d leases in batches of 100: %d round trips, %d puts", n, cs.roundTrips, cs.puts)
	}
	if c, _ := m.Count(ctx); c != 0 {
		t.Fatalf("%d leases left", c)
	}
}

// TestBatchClaimShowsRevokingAndRunsOut: a lease in a live batch claim
// reads as revoking (as when the claim rewrote its record) and is left to
// its reaper; once the claim runs out (the reaper died), the next reap
// reports the lease as an abandoned claim, revokes it, and removes the
// stale claim.
func TestBatchClaimShowsRevokingAndRunsOut(t *testing.T) {
	m, be, clk, st := setup(t)
	ctx := context.Background()
	id := issue(t, m, be, clk, "ro", time.Minute, "")
	clk.advance(2 * time.Minute)
	b, err := m.claimDue(ctx, m.now())
	claimed := b.claimed
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	// The reaper dies here.
	e, err := m.Lookup(ctx, id)
	if err != nil || e.State != StateRevoking || !e.ClaimUntil.Equal(m.now().Add(m.o.ClaimTimeout)) {
		t.Fatalf("lookup during the claim: %+v %v", e, err)
	}
	if es, err := m.Entries(ctx, ""); err != nil || len(es) != 1 || es[0].State != StateRevoking {
		t.Fatalf("entries during the claim: %v %v", es, err)
	}
	if _, err := m.Renew(ctx, id, time.Hour); err != ErrFailedExpired {
		t.Fatalf("renew during the claim: %v", err)
	}
	sum, err := m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 0 || len(be.revoked) != 0 {
		t.Fatalf("reap during the claim: %+v %v", sum, err)
	}
	clk.advance(6 * time.Minute)
	dry, err := m.Reap(ctx, ReapOptions{DryRun: true})
	if err != nil || len(dry.Due) != 1 || dry.Due[0].Reason != ReasonAbandonedClaim {
		t.Fatalf("dry run after the claim: %+v %v", dry, err)
	}
	sum, err = m.Reap(ctx, ReapOptions{})
	if err != nil || sum.Revoked != 1 || len(be.revoked) != 1 {
		t.Fatalf("reap after the claim: %+v %v", sum, err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		keys, err := tx.List("sys/lease/")
		if len(keys) != 0 {
			t.Errorf("left in the store: %v", keys)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// commitStore counts the write transactions that commit.
type commitStore struct {
	storage.Store
	mu      sync.Mutex
	commits int
}

func (s *commitStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	err := s.Store.Update(ctx, fn)
	if err == nil {
		s.mu.Lock()
		s.commits++
		s.mu.Unlock()
	}
	return err
}

// TestReapClaimsNextBatchWhileSettling: a reap settles each batch and
// claims the next in one commit (three batches: four commits, not seven),
// and a next claim that fails does not undo the settling: the batch is
// settled on its own, and the run reports the failure.
func TestReapClaimsNextBatchWhileSettling(t *testing.T) {
	m, be, clk, _ := setup(t)
	ctx := context.Background()
	for range 25 {
		issue(t, m, be, clk, "ro", time.Minute, "")
	}
	cs := &commitStore{Store: m.store}
	m.store = cs
	m.o.BatchSize = 10
	clk.advance(2 * time.Minute)
	sum, err := m.Reap(ctx, ReapOptions{Workers: 1})
	if err != nil || sum.Revoked != 25 || len(be.revoked) != 25 {
		t.Fatalf("reap: %+v, %v; backend revoked %d", sum, err, len(be.revoked))
	}
	if cs.commits != 4 {
		t.Fatalf("%d commits for 3 batches, want 4 (claim; settle and claim, three times)", cs.commits)
	}

	// Ten due leases, then a record that cannot be decoded, due later.
	for range 10 {
		issue(t, m, be, clk, "ro", time.Minute, "")
	}
	clk.advance(2 * time.Minute)
	bad := "database/creds/ro/broken"
	err = cs.Store.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Put(idPrefix+bad, []byte("{not json")); err != nil {
			return err
		}
		return tx.Put(dueKey(clk.t.Add(-time.Second), bad), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	be.revoked = nil
	sum, err = m.Reap(ctx, ReapOptions{Workers: 1})
	if err == nil || sum.Revoked != 10 || len(be.revoked) != 10 {
		t.Fatalf("reap: %+v, %v, backend revoked %d; want the decode error and the 10 revoked", sum, err, len(be.revoked))
	}
	var records, claims []string
	if err := cs.Store.View(ctx, func(tx storage.Tx) error {
		if records, err = tx.List(idPrefix); err != nil {
			return err
		}
		claims, err = tx.List(claimPrefix)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(records) != 1 || records[0] != idPrefix+bad || len(claims) != 0 {
		t.Fatalf("after reap: records %q, claims %q; want only the broken record: the batch was settled", records, claims)
	}
}

// TestRecordReadsInOneRoundTrip: the transaction that records a lease
// reads what the core's check and the backend's check read (the token,
// its policies, the mounts; the role and its connection) and the record's
// own keys in one round trip, where each used to be one of its own: four
// on every issue, on a store that pays one per read.
func TestRecordReadsInOneRoundTrip(t *testing.T) {
	m, _, clk, _ := setup(t)
	cs := &costStore{Store: storage.NewMemory()}
	m.store = cs
	ctx := context.Background()
	core := []string{"sys/policy/p", "sys/mounts", "sys/token/id/t"}
	rec := m.Recorder("m1", "database/", "accessor", sysView{clk.now}).WithMountStorage("logical/m1/").WithCheck(core, func(tx storage.Tx) error {
		for _, k := range core {
			if _, err := tx.Get(k); err != nil {
				return err
			}
		}
		return nil
	})
	backend := []string{"role/ro", "config/pg"}
	_, err := rec.Prepare(ctx, &logical.LeaseRequest{
		Path: "database/creds/ro", TTL: time.Minute, MaxTTL: time.Hour,
		CheckKeys: backend,
		Check: func(tx storage.Tx) error {
			for _, k := range backend {
				if _, err := tx.Get(k); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cs.roundTrips != 1 || cs.puts == 0 {
		t.Fatalf("recording a lease: %d round trips, %d puts; want 1 round trip", cs.roundTrips, cs.puts)
	}
}

// TestRenewReadsIndexKeysInOneRoundTrip: a renewal's writes of a record
// already written (its hold, then its new expiry) read the index keys they
// replace or delete (the old and new due keys, the failed entry) in one
// round trip each, not one per key, on a store that pays one per read.
func TestRenewReadsIndexKeysInOneRoundTrip(t *testing.T) {
	m, be, clk, cs := setupSealedCost(t)
	id := issue(t, m, be, clk, "ro", time.Minute, "accessor")
	clk.advance(10 * time.Second)
	cs.roundTrips = 0
	if _, err := m.Renew(context.Background(), id, time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Logf("a renewal: %d round trips", cs.roundTrips)
	if cs.roundTrips > 7 {
		t.Fatalf("a renewal: %d round trips, want 7", cs.roundTrips)
	}
}
