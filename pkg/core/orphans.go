package core

import (
	"context"
	"fmt"

	"github.com/lessorhq/lessor/pkg/logical"
)

// MountOrphan is an orphan found through one mount.
type MountOrphan struct {
	Mount string `json:"mount"`
	logical.Orphan
}

// OrphanSummary is what one orphan sweep found and did.
type OrphanSummary struct {
	Revoked int `json:"revoked"`
	Failed  int `json:"failed"`
	// NotExpired counts orphans left alone until their recorded expiry.
	NotExpired int `json:"not_expired"`
	// Orphans lists every orphan found, by mount, connection and name; a
	// role reachable through several connections is listed once.
	Orphans []MountOrphan `json:"orphans"`
	// Errors are connections whose roles could not be listed.
	Errors []MountConnectionError `json:"errors"`
}

// MountConnectionError is a connection of a mount that could not be swept.
type MountConnectionError struct {
	Mount string `json:"mount"`
	logical.ConnectionError
}

// ReapOrphans sweeps every database mount for roles that this store
// created but holds no lease record of (a restored backup, a deleted
// record), and revokes those whose recorded expiry has passed, unless
// dryRun. A pending, failed or revoking record counts as live: reap's own
// path revokes those. Roles of other stores, and roles lessor did not
// create, are never touched.
func (c *Core) ReapOrphans(ctx context.Context, dryRun bool) (*OrphanSummary, error) {
	ms, err := c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	sum := &OrphanSummary{Orphans: []MountOrphan{}, Errors: []MountConnectionError{}}
	hasLease := func(ctx context.Context, id string) (bool, error) {
		es, err := c.leases.Entries(ctx, id)
		for _, e := range es {
			if e.ID == id {
				return true, err
			}
		}
		return false, err
	}
	seen := map[string]bool{}
	// The core's clock set each role's recorded expiry, so it judges it.
	now := c.now()
	err = eachBackend(c, ms, func(m *MountEntry, or logical.OrphanReaper) error {
		rep, err := or.ReapOrphans(ctx, c.mountStorage(m), logical.OrphanOptions{
			StoreID: c.storeID, Now: now, HasLease: hasLease, DryRun: dryRun,
		})
		if err != nil {
			return fmt.Errorf("reap orphans of %s: %w", m.Path, err)
		}
		for _, ce := range rep.Errors {
			sum.Errors = append(sum.Errors, MountConnectionError{Mount: m.Path, ConnectionError: ce})
		}
		for _, o := range rep.Orphans {
			// Two connections to one server list the same roles.
			if seen[o.LeaseID] {
				continue
			}
			seen[o.LeaseID] = true
			sum.Orphans = append(sum.Orphans, MountOrphan{Mount: m.Path, Orphan: o})
			switch {
			case !o.Expired:
				sum.NotExpired++
			case o.Revoked:
				sum.Revoked++
			case o.Error != "":
				sum.Failed++
			}
		}
		return nil
	})
	return sum, err
}
