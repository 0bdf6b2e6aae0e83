package logical

import (
	"context"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Rotator is a backend with credentials it rotates on a schedule (the
// database engine's static roles). reap calls RotateDue on every mount
// whose backend is one, without knowing what kind of backend it is.
// RotateDue must cost in proportion to what is due, not to how many
// credentials the mount manages.
type Rotator interface {
	RotateDue(ctx context.Context, st storage.Store, sys SystemView, o RotateOptions) (*RotationReport, error)
}

// RotateOptions configure one pass of RotateDue.
type RotateOptions struct {
	// DryRun lists what is due and rotates nothing.
	DryRun bool
	// Stop, when closed, makes the pass start no further rotation.
	Stop <-chan struct{}
}

// DueRotation is a credential that is due for rotation, and why.
type DueRotation struct {
	Role     string    `json:"role"`
	Reason   string    `json:"reason"`
	DueSince time.Time `json:"due_since"`
	Attempts int       `json:"attempts,omitempty"`
}

// RotationFailure is a rotation that failed; it is retried later.
type RotationFailure struct {
	Role  string `json:"role"`
	Error string `json:"error"`
}

// RotationReport is what one pass found due and did.
type RotationReport struct {
	Due     []DueRotation
	Rotated []string
	Failed  []RotationFailure
}
