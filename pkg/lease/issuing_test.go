package lease

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// record reads a lease record as stored, whatever its state.
func record(t *testing.T, m *Manager, id string) *Entry {
	t.Helper()
	var e *Entry
	if err := m.store.View(context.Background(), func(tx storage.Tx) error {
		var err error
		e, err = get(tx, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRevokeMeetsIssuing: a revocation that claims a pending lease keeps
// its record when the backend does not see the secret (or cannot tell),
// until the issuer's grace is over, and deletes it at once when the secret
// exists. The issuer's Confirm and Activate refuse a kept record.
func TestRevokeMeetsIssuing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		created  bool  // the issuer's CREATE committed before the revocation
		checkErr error // the backend cannot tell
		kept     bool
	}{
		{"secret not there yet", false, nil, true},
		{"secret there", true, nil, false},
		{"backend cannot tell", false, errors.New("database down"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, be, clk, _ := setup(t)
			rec := m.Recorder("m1", "database/", "", sysView{clk.now})
			p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour, MaxTTL: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			be.live[p.ID] = tc.created
			be.checkErr = tc.checkErr
			if n, failed, err := m.RevokePrefixCount(ctx, "database/", false); err != nil || len(failed) != 0 || n != 1 {
				t.Fatalf("revoke-prefix: %d revoked, %v, %v", n, failed, err)
			}
			be.checkErr = nil
			e := record(t, m, p.ID)
			if (e != nil) != tc.kept {
				t.Fatalf("record kept = %v, want %v", e != nil, tc.kept)
			}
			if tc.kept && (e.State != StateRevoking || !e.RevokedPending) {
				t.Fatalf("kept record: state %s, revoked_pending %v", e.State, e.RevokedPending)
			}
			// The issuer, whichever way it went, must not hand the
			// credential out.
			if err := rec.Confirm(ctx, p.ID); !errors.Is(err, logical.ErrLeaseRevoked) {
				t.Fatalf("Confirm: %v", err)
			}
			if err := m.Activate(ctx, p.ID); err == nil {
				t.Fatal("Activate took a revoked lease")
			}
			if !tc.kept {
				return
			}
			// The issuer commits its secret late; within the grace reap
			// leaves the record alone, after it revokes again and
			// deletes the record.
			be.live[p.ID] = true
			before := len(be.revoked)
			if _, err := m.Reap(ctx, ReapOptions{}); err != nil {
				t.Fatal(err)
			}
			if record(t, m, p.ID) == nil || len(be.revoked) != before {
				t.Fatal("reap took the record within the issuer's grace")
			}
			clk.advance(m.o.PendingGrace + time.Second)
			if _, err := m.Reap(ctx, ReapOptions{}); err != nil {
				t.Fatal(err)
			}
			if e := record(t, m, p.ID); e != nil {
				t.Fatalf("record left after the grace: %+v", e)
			}
			if be.live[p.ID] || !slices.Contains(be.revoked[before:], p.ID) {
				t.Fatalf("the late secret was not revoked: revoked %v", be.revoked[before:])
			}
		})
	}
}

// TestConfirmPending: an issuer whose lease nobody claimed confirms it.
func TestConfirmPending(t *testing.T) {
	ctx := context.Background()
	m, be, clk, _ := setup(t)
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Hour, MaxTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	be.live[p.ID] = true
	if err := rec.Confirm(ctx, p.ID); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if err := m.Activate(ctx, p.ID); err != nil {
		t.Fatalf("Activate: %v", err)
	}
	if err := rec.Confirm(ctx, p.ID); err != nil {
		t.Fatalf("Confirm after activation: %v", err)
	}
}

// TestConfirmSeesReapClaim: a lease that expires while its issuer is
// still creating the secret (a short TTL, an issue at the end of a
// second) is claimed by a reaper's batch, which leaves the record as it
// was; the issuer's Confirm and Activate must see the claim, as they see
// a per-record one, and not hand out a credential whose revocation is
// under way (it may drop the role after the issuer returned it, or have
// found nothing to drop before the CREATE committed).
func TestConfirmSeesReapClaim(t *testing.T) {
	ctx := context.Background()
	m, be, clk, _ := setup(t)
	rec := m.Recorder("m1", "database/", "", sysView{clk.now})
	p, err := rec.Prepare(ctx, &logical.LeaseRequest{Path: "database/creds/ro", TTL: time.Second, MaxTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Second)
	b, err := m.claimDue(ctx, clk.now())
	if err != nil || len(b.claimed) != 1 || b.claimed[0].ID != p.ID {
		t.Fatalf("claim: %+v, %v", b, err)
	}
	// The issuer's CREATE commits now, after the claim.
	be.live[p.ID] = true
	if err := rec.Confirm(ctx, p.ID); !errors.Is(err, logical.ErrLeaseRevoked) {
		t.Fatalf("Confirm of a lease a reaper claimed: %v", err)
	}
	if err := m.Activate(ctx, p.ID); !errors.Is(err, logical.ErrLeaseRevoked) {
		t.Fatalf("Activate of a lease a reaper claimed: %v", err)
	}
	if e := record(t, m, p.ID); e == nil || e.State != StatePending {
		t.Fatalf("the record changed under the claim: %+v", e)
	}
}
