// Package failpoint names the steps of lessor's multi-step operations
// (issuing, renewing, revoking, rotating keys and passwords, disabling
// mounts, revoking tokens) so that a test can stop a real process at exactly
// one of them and check what is left behind.
//
// failpoint.Hit(step) does nothing unless that step was armed with Arm,
// and only tests arm steps: the package never reads the environment, and
// lessor's cmd package arms steps only from its test binary (from the
// LESSOR_FAILPOINT variable a crash script sets), so a shipped binary has
// no failpoint anyone can trigger. Packages under pkg/ never exit, so the
// action is the caller's business: the test binary installs one that kills
// its own process with SIGKILL, the crash no deferred cleanup can soften.
//
// The cost of an unarmed Hit is one load of an atomic pointer.
package failpoint

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Steps lessor hits, in the order they happen.
const (
	// IssueAfterPending: the pending lease record is committed, nothing
	// exists in PostgreSQL yet.
	IssueAfterPending = "issue/after-pending"
	// IssueAfterCreate: PostgreSQL committed the new role; the lease is
	// still pending.
	IssueAfterCreate = "issue/after-create"
	// IssueAfterPrint: the credentials are printed; the lease is still
	// pending, as the issuer leaves it: the next command that meets it, or
	// reap, adopts it.
	IssueAfterPrint = "issue/after-print"
	// IssueBeforeActivate: a later command (reap, lease lookup or renew)
	// found the role of a pending lease and is about to mark the lease
	// active.
	IssueBeforeActivate = "issue/before-activate"
	// IssueAfterActivate: that command committed the lease as active.
	IssueAfterActivate = "issue/after-activate"
	// RevokeAfterClaim: leases are claimed (state revoking), nothing was
	// asked of PostgreSQL yet.
	RevokeAfterClaim = "revoke/after-claim"
	// RevokeAfterBackend: the backend revoked the roles; the records are
	// not yet deleted.
	RevokeAfterBackend = "revoke/after-backend"
	// RenewAfterBackend: PostgreSQL moved the role's VALID UNTIL; the
	// lease record still holds the old expiry.
	RenewAfterBackend = "renew/after-backend"
	// RotateRootAfterPending: the new admin password is recorded as
	// pending; PostgreSQL still has the old one.
	RotateRootAfterPending = "rotate-root/after-pending"
	// RotateRootAfterAlter: PostgreSQL accepted the new admin password;
	// the config still holds the old one.
	RotateRootAfterAlter = "rotate-root/after-alter"
	// StaticRotateAfterPending: a static role's new password is recorded
	// as pending; PostgreSQL still has the old one.
	StaticRotateAfterPending = "static-rotate/after-pending"
	// StaticRotateAfterAlter: PostgreSQL took the static role's new
	// password; the store still holds it as pending.
	StaticRotateAfterAlter = "static-rotate/after-alter"
	// BarrierRotateBeforeCommit: the new keyring is written in the
	// transaction, which has not committed.
	BarrierRotateBeforeCommit = "operator-rotate/before-commit"
	// BarrierRotateAfterCommit: the new keyring is committed.
	BarrierRotateAfterCommit = "operator-rotate/after-commit"
	// BarrierRekeyBeforeCommit: the header wrapped for the new key is
	// written in the transaction, which has not committed.
	BarrierRekeyBeforeCommit = "operator-rekey/before-commit"
	// BarrierRekeyAfterCommit: the new header is committed; an in-place
	// rekey has not yet renamed <key file>.new over the key file.
	BarrierRekeyAfterCommit = "operator-rekey/after-commit"
	// BarrierReencryptBeforeRename: operator rotate -reencrypt has
	// written the re-encrypted copy of the store, not yet renamed into
	// place.
	BarrierReencryptBeforeRename = "operator-rotate/reencrypt-before-rename"
	// DisableAfterRevoke: every lease of the mount is revoked; the mount
	// and its data are still there.
	DisableAfterRevoke = "disable/after-revoke"
	// RemountAfterRevoke: every lease of the mount is revoked; the mount
	// has not moved yet.
	RemountAfterRevoke = "remount/after-revoke"
	// TokenRevokeAfterMark: the token tree is marked pending revocation;
	// its leases were not touched.
	TokenRevokeAfterMark = "token-revoke/after-mark"
	// TokenRevokeAfterLeases: the tree's leases are revoked; the tokens
	// are not yet deleted.
	TokenRevokeAfterLeases = "token-revoke/after-leases"
	// The steps below are not crash steps (All leaves them out): a test
	// arms them to run another request between a check and the write it
	// guards.

	// ConfigBeforeCommit: a database connection's write checked what it
	// names (its password policy's last writer) and has not yet begun
	// the transaction that stores it.
	ConfigBeforeCommit = "config/before-commit"
	// PasswordPolicyBeforeCommit: a password policy's write or delete
	// was checked and has not yet begun the transaction that stores it.
	PasswordPolicyBeforeCommit = "password-policy/before-commit"
)

// All lists every step, for tests that walk the whole matrix.
var All = []string{
	IssueAfterPending, IssueAfterCreate, IssueAfterPrint, IssueBeforeActivate, IssueAfterActivate,
	RevokeAfterClaim, RevokeAfterBackend,
	RenewAfterBackend,
	RotateRootAfterPending, RotateRootAfterAlter,
	StaticRotateAfterPending, StaticRotateAfterAlter,
	BarrierRotateBeforeCommit, BarrierRotateAfterCommit,
	BarrierRekeyBeforeCommit, BarrierRekeyAfterCommit,
	BarrierReencryptBeforeRename,
	DisableAfterRevoke, RemountAfterRevoke,
	TokenRevokeAfterMark, TokenRevokeAfterLeases,
}

type armed struct {
	steps  []string
	action func(step string)
}

var current atomic.Pointer[armed]

// Arm arms the comma-separated steps in spec with action, replacing what
// was armed before; an empty spec or a nil action disarms everything.
func Arm(spec string, action func(step string)) []string {
	var steps []string
	for s := range strings.SplitSeq(spec, ",") {
		if s = strings.TrimSpace(s); s != "" {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 || action == nil {
		current.Store(nil)
		return nil
	}
	current.Store(&armed{steps: steps, action: action})
	return steps
}

// Hit runs the installed action if step is armed.
func Hit(step string) {
	a := current.Load()
	if a == nil || !slices.Contains(a.steps, step) {
		return
	}
	a.action(step)
}
