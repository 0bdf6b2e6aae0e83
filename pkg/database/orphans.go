package database

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// The orphan report's types live in pkg/logical, so that the core sweeps
// any backend that finds orphans without importing this package; these
// names keep reading naturally here.
type (
	// Orphan is a role that this store's lessor created (its comment
	// names the store) but of which the store holds no lease record. Its
	// Expires is the later of the expiry written into its comment and its
	// VALID UNTIL less the issue buffer (a renewal moves VALID UNTIL, not
	// the comment).
	Orphan = logical.Orphan
	// ConnectionError is a connection whose roles could not be listed.
	ConnectionError = logical.ConnectionError
	// OrphanOptions configure one orphan sweep.
	OrphanOptions = logical.OrphanOptions
	// OrphanReport is what one sweep found and did.
	OrphanReport = logical.OrphanReport
)

var _ logical.OrphanReaper = (*Backend)(nil)

// ReapOrphans finds, through every connection of the mount whose storage
// is st, the roles whose lessor comment names o.StoreID and whose lease
// o.HasLease does not know, and revokes those that have expired with the
// default full teardown (their revocation statements were in the lost
// record). Roles without a lessor comment, with a damaged one, or of
// another store are never touched.
//
// A connection that cannot be listed, or a revocation that fails, is
// reported and does not stop the sweep; the error return is for the store.
//
// The lease is looked up after its role was listed: a role being issued
// now already has its pending record, and a role being revoked now loses
// its record only after it is gone, so no live role is taken for an orphan.
func (b *Backend) ReapOrphans(ctx context.Context, st storage.Store, o OrphanOptions) (*OrphanReport, error) {
	if o.StoreID == "" || o.HasLease == nil {
		return nil, errors.New("reap orphans: store id and lease lookup are required")
	}
	var names []string
	if err := st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(configPrefix, func(k string) error {
			names = append(names, strings.TrimPrefix(k, configPrefix))
			return nil
		})
	}); err != nil {
		return nil, err
	}
	rep := &OrphanReport{Orphans: []Orphan{}, Errors: []ConnectionError{}}
	for _, name := range names {
		found, err := b.connectionOrphans(ctx, st, name, o)
		rep.Orphans = append(rep.Orphans, found...)
		if err == nil {
			continue
		}
		var ce *connError
		if !errors.As(err, &ce) {
			return rep, err
		}
		rep.Errors = append(rep.Errors, ConnectionError{Connection: name, Error: ce.err.Error()})
	}
	return rep, nil
}

// connError marks a failure of PostgreSQL, as opposed to one of the store.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func (b *Backend) connectionOrphans(ctx context.Context, st storage.Store, name string, o OrphanOptions) ([]Orphan, error) {
	cfg, err := b.loadConfig(ctx, st, name)
	if err != nil || cfg == nil {
		// Deleted since it was listed: nothing to sweep.
		return nil, err
	}
	db, err := b.open(ctx, st, name, cfg)
	if err != nil {
		return nil, &connError{err}
	}
	defer db.Close(context.WithoutCancel(ctx))
	roles, err := db.ListRolesWithCommentPrefix(ctx, CommentPrefix)
	if err != nil {
		return nil, &connError{cfg.redact(err)}
	}
	var orphans []Orphan
	var revoke []postgres.RevokeRequest
	for _, r := range roles {
		meta, err := ParseRoleComment(r.Comment)
		if err != nil || meta.StoreID != o.StoreID {
			continue
		}
		live, err := o.HasLease(ctx, meta.LeaseID)
		if err != nil {
			return orphans, fmt.Errorf("look up lease %s of role %s: %w", meta.LeaseID, r.Name, err)
		}
		if live {
			continue
		}
		expires := meta.Expires
		if r.ValidUntil != nil {
			if v := r.ValidUntil.Add(-expirationBuffer); v.After(expires) {
				expires = v
			}
		}
		or := Orphan{
			Connection: name, Username: r.Name, LeaseID: meta.LeaseID,
			Expires: expires, Expired: !o.Now.Before(expires),
		}
		if or.Expired && !o.DryRun {
			revoke = append(revoke, postgres.RevokeRequest{Username: r.Name, Belongs: belongsTo(o.StoreID, meta.LeaseID)})
		}
		orphans = append(orphans, or)
	}
	if len(revoke) == 0 {
		return orphans, nil
	}
	errs := db.RevokeUsers(ctx, revoke)
	i := 0
	for k := range orphans {
		if !orphans[k].Expired {
			continue
		}
		switch {
		case i >= len(errs):
			orphans[k].Error = "plugin returned no result"
		case errs[i] != nil:
			orphans[k].Error = cfg.redact(errs[i]).Error()
		default:
			orphans[k].Revoked = true
		}
		i++
	}
	return orphans, nil
}
