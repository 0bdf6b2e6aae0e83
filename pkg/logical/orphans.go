package logical

import (
	"context"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

// OrphanReaper is a backend whose secrets can outlive their lease records
// and be found again without them (the database engine finds its roles by
// their comment). The core sweeps every mount whose backend is one,
// without knowing what kind of backend it is.
type OrphanReaper interface {
	ReapOrphans(ctx context.Context, st storage.Store, o OrphanOptions) (*OrphanReport, error)
}

// Orphan is a secret that this store's lessor created (a database role
// whose comment names the store) but of which the store holds no lease
// record: the record was lost to a restored backup or a deleted file.
type Orphan struct {
	Connection string `json:"connection"`
	Username   string `json:"username"`
	LeaseID    string `json:"lease_id"`
	// Expires is when the secret's lease ran out, as the backend can tell
	// from the secret itself.
	Expires time.Time `json:"expires"`
	// Expired orphans are revoked; the others are reported and left alone.
	Expired bool   `json:"expired"`
	Revoked bool   `json:"revoked"`
	Error   string `json:"error,omitempty"`
}

// ConnectionError is a connection whose secrets could not be listed.
type ConnectionError struct {
	Connection string `json:"connection"`
	Error      string `json:"error"`
}

// OrphanOptions configure one orphan sweep.
type OrphanOptions struct {
	// StoreID is the store whose secrets are swept; a secret that names
	// another store is never touched.
	StoreID string
	// Now decides which orphans have expired.
	Now time.Time
	// HasLease reports whether the store holds a record of the lease, in
	// any state: a pending or failed record makes its secret no orphan, as
	// reap's own path deals with it.
	HasLease func(ctx context.Context, leaseID string) (bool, error)
	// DryRun finds orphans and revokes none.
	DryRun bool
}

// OrphanReport is what one sweep found and did, connection by
// connection, secrets by name.
type OrphanReport struct {
	Orphans []Orphan          `json:"orphans"`
	Errors  []ConnectionError `json:"errors"`
}
