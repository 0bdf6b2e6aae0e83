package core

import (
	"context"

	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
)

// DueRotation is a credential due for rotation, with its mount.
type DueRotation struct {
	Mount string `json:"mount"`
	logical.DueRotation
}

// RotationFailure is a rotation that failed in this reap, with its mount.
type RotationFailure struct {
	Mount string `json:"mount"`
	logical.RotationFailure
}

// rotateDue runs every mount's scheduled rotations (the database engine's
// static roles) that are due, or lists them in a dry run. Each mount's
// backend walks its due index only up to now, so a mount whose static
// roles are not due costs one short read.
func (c *Core) rotateDue(ctx context.Context, o lease.ReapOptions, res *ReapResult) error {
	ms, err := c.mounts(ctx)
	if err != nil {
		return err
	}
	return eachBackend(c, ms, func(m *MountEntry, rot logical.Rotator) error {
		rep, err := rot.RotateDue(ctx, c.mountStorage(m), c.systemView(m), logical.RotateOptions{DryRun: o.DryRun, Stop: o.Stop})
		if rep != nil {
			for _, d := range rep.Due {
				res.RotationsDue = append(res.RotationsDue, DueRotation{Mount: m.Path, DueRotation: d})
			}
			res.Rotated += len(rep.Rotated)
			res.RotationsFailed += len(rep.Failed)
			for _, f := range rep.Failed {
				res.RotationErrors = append(res.RotationErrors, RotationFailure{Mount: m.Path, RotationFailure: f})
			}
		}
		return err
	})
}
