package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// reapBatch bounds how many due tokens one revocation round takes on, so
// that a long-neglected store is reaped in transactions of bounded size.
const reapBatch = 500

// Revoke revokes e's token and its whole child tree (orphans survive).
// Revoking a token that is already gone succeeds.
func (s *Store) Revoke(ctx context.Context, e *Entry) error {
	_, err := s.revokeTrees(ctx, []string{e.ID}, nil)
	return err
}

// RevokeExpired revokes every token that is due (expired, used up, or left
// half-revoked by an earlier failure) together with its child tree, and
// returns how many tokens it deleted. It visits only the due part of the
// expiry index. A failure in one batch does not stop the others; the
// errors are joined.
func (s *Store) RevokeExpired(ctx context.Context) (int, error) {
	now := s.now()
	var due []string
	seen := map[string]bool{}
	err := s.st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(expirePrefix, func(k string) error {
			at, id, err := parseExpireKey(k)
			if err != nil {
				return err
			}
			if at > now.Unix() {
				return storage.ErrStop
			}
			if !seen[id] {
				seen[id] = true
				due = append(due, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("scan expired tokens: %w", err)
	}
	isDue := func(e *Entry) bool { return e.NumUses < 0 || e.expired(now) }
	total := 0
	var errs []error
	for start := 0; start < len(due); start += reapBatch {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		n, err := s.revokeTrees(ctx, due[start:min(start+reapBatch, len(due))], isDue)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// revokeToken revokes the tree of a token given in clear; an unknown token
// is a success.
func (s *Store) revokeToken(ctx context.Context, token string) error {
	salt, err := s.loadSalt(ctx, false)
	if err != nil || salt == nil {
		return err
	}
	_, err = s.revokeTrees(ctx, []string{hashToken(salt, token)}, nil)
	return err
}

// revokeTrees revokes the trees rooted at roots (those that still exist
// and, when filter is set, pass it) in three steps:
//
//  1. one transaction collects every tree and marks each token pending
//     revocation, so none of them can be used or gain a child from then on,
//     and each is due in the expiry index should the rest not happen;
//  2. OnRevoke hears all their accessors, outside any transaction;
//  3. one transaction deletes them.
//
// It returns how many tokens step 3 deleted.
func (s *Store) revokeTrees(ctx context.Context, roots []string, filter func(*Entry) bool) (int, error) {
	now := s.now()
	var tree []*Entry
	err := s.st.Update(ctx, func(tx storage.Tx) error {
		tree = tree[:0]
		seen := map[string]bool{}
		var queue []string
		for _, id := range roots {
			if seen[id] {
				continue
			}
			if filter != nil {
				e, err := getEntry(tx, id)
				if err != nil {
					return err
				}
				if e == nil || !filter(e) {
					continue
				}
			}
			seen[id] = true
			queue = append(queue, id)
		}
		parentOf := map[string]string{} // of the tokens queued as children
		for i := 0; i < len(queue); i++ {
			e, err := getEntry(tx, queue[i])
			if err != nil {
				return err
			}
			if p, child := parentOf[queue[i]]; e == nil || child && e.Parent != p {
				// The parent index is not sealed to its meaning: an entry
				// under another parent's name is not that parent's child.
				continue
			}
			tree = append(tree, e)
			kids, err := children(tx, e.ID)
			if err != nil {
				return err
			}
			for _, k := range kids {
				if !seen[k] {
					seen[k] = true
					parentOf[k] = e.ID
					queue = append(queue, k)
				}
			}
			if e.NumUses != revocationPending {
				if err := markPending(tx, e, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mark tokens revoked: %w", err)
	}
	return s.finishRevoke(ctx, tree)
}

// finishRevoke runs steps 2 and 3 of revokeTrees for tokens already marked
// pending.
func (s *Store) finishRevoke(ctx context.Context, tree []*Entry) (int, error) {
	if len(tree) == 0 {
		return 0, nil
	}
	failpoint.Hit(failpoint.TokenRevokeAfterMark)
	if s.o.OnRevoke != nil {
		accessors := make([]string, len(tree))
		for i, e := range tree {
			accessors[i] = e.Accessor
		}
		if err := s.o.OnRevoke(ctx, accessors); err != nil {
			return 0, fmt.Errorf("revoke leases of %d tokens: %w", len(tree), err)
		}
	}
	failpoint.Hit(failpoint.TokenRevokeAfterLeases)
	n := 0
	err := s.st.Update(ctx, func(tx storage.Tx) error {
		n = 0
		for _, e := range tree {
			cur, err := getEntry(tx, e.ID)
			if err != nil {
				return err
			}
			if cur == nil {
				continue
			}
			if err := deleteEntry(tx, cur); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete revoked tokens: %w", err)
	}
	return n, nil
}

// revokeOrphan revokes e's token alone: its children become orphans in
// the same transaction that marks it pending, so a revocation finished
// later by RevokeExpired cannot take them along.
func (s *Store) revokeOrphan(ctx context.Context, e *Entry) error {
	now := s.now()
	var tree []*Entry
	err := s.st.Update(ctx, func(tx storage.Tx) error {
		tree = tree[:0]
		cur, err := getEntry(tx, e.ID)
		if err != nil || cur == nil {
			return err
		}
		kids, err := children(tx, cur.ID)
		if err != nil {
			return err
		}
		for _, k := range kids {
			c, err := getEntry(tx, k)
			if err != nil {
				return err
			}
			if c != nil && c.Parent == cur.ID {
				c.Parent, c.Orphan = "", true
				if err := putEntry(tx, c); err != nil {
					return err
				}
			}
			if err := tx.Delete(parentKey(cur.ID, k)); err != nil {
				return err
			}
		}
		tree = append(tree, cur)
		if cur.NumUses == revocationPending {
			return nil
		}
		return markPending(tx, cur, now)
	})
	if err != nil {
		return logical.AccessorErrorf(e.Accessor, "orphan children of token %s: %w", e.Accessor, err)
	}
	_, err = s.finishRevoke(ctx, tree)
	return err
}
