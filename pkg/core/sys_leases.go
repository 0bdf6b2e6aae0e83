package core

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/token"
)

func (c *Core) handleLeases(ctx context.Context, req *logical.Request, rest string) (*logical.Response, error) {
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	// Handle has checked the ACL on the id this returns (checkLeaseTarget).
	leaseID := func(suffix string) (string, error) {
		_, _, bodyID, err := leaseTarget("sys/"+req.Path, req.Data)
		if err != nil {
			return "", err
		}
		if bodyID != "" {
			return bodyID, nil
		}
		return suffix, nil
	}
	cut := func(prefix string) (string, bool) {
		if rest == prefix {
			return "", true
		}
		if strings.HasPrefix(rest, prefix+"/") {
			return strings.TrimPrefix(rest, prefix+"/"), true
		}
		return "", false
	}
	if sub, ok := cut("lookup"); ok {
		if op == logical.ListOperation {
			keys, err := c.leases.List(ctx, sub)
			if err != nil || len(keys) == 0 {
				return nil, err
			}
			return &logical.Response{Data: map[string]any{"keys": keys}}, nil
		}
		if write {
			id, err := leaseID(sub)
			if err != nil {
				return nil, err
			}
			e, err := c.leases.Lookup(ctx, id)
			if err != nil {
				return nil, err
			}
			return &logical.Response{Data: c.leases.LookupData(e)}, nil
		}
	}
	if sub, ok := cut("entries"); ok && op == logical.ReadOperation {
		es, err := c.leases.Entries(ctx, sub)
		if err != nil || len(es) == 0 {
			return nil, err
		}
		// Leases left pending by their issuer are shown as what they are
		// once adopted; if that cannot be checked now, as pending.
		var warnings []string
		if err := c.leases.Adopt(ctx, es); err != nil {
			warnings = append(warnings, "pending leases stay pending: "+err.Error())
		}
		out := make([]map[string]any, 0, len(es))
		for _, e := range es {
			out = append(out, c.leases.LookupData(e))
		}
		return &logical.Response{Data: map[string]any{"leases": out}, Warnings: warnings}, nil
	}
	if sub, ok := cut("renew"); ok && write {
		inc, err := logical.ParseDuration(req.Data["increment"])
		if err != nil {
			return nil, logical.Errorf("increment: %v", err)
		}
		id, err := leaseID(sub)
		if err != nil {
			return nil, err
		}
		return c.leases.Renew(ctx, id, inc)
	}
	if sub, ok := cut("revoke"); ok && write {
		id, err := leaseID(sub)
		if err != nil {
			return nil, err
		}
		return nil, c.leases.Revoke(ctx, id)
	}
	if sub, ok := cut("revoke-prefix"); ok && write {
		force, err := logical.ParseBool(req.Data["force"])
		if err != nil {
			return nil, logical.Errorf("force: %v", err)
		}
		return c.revokePrefix(ctx, sub, force)
	}
	if sub, ok := cut("revoke-force"); ok && write {
		return c.revokePrefix(ctx, sub, true)
	}
	return nil, logical.UnsupportedOperation(req)
}

// maxIrrevocableLeases is how many leases sys/leases lists unless its
// limit says otherwise, as in Vault.
const maxIrrevocableLeases = 10000

// irrevocableLeases serves Vault's sys/leases/count and sys/leases (sudo)
// with type=irrevocable: the leases whose revocation failed. Vault gives
// up on a lease after six attempts and calls it irrevocable; lessor never
// gives up (reap retries it until it succeeds, or an operator forces it),
// so its irrevocable leases are those waiting for that retry, the ones a
// monitoring script that asks Vault's question wants to hear of. counts
// is keyed by mount accessor, as in Vault. Another type (or none) finds
// nothing, as in Vault.
func (c *Core) irrevocableLeases(ctx context.Context, req *logical.Request, count bool) (*logical.Response, error) {
	if !strings.EqualFold(logical.String(req.Data["type"]), "irrevocable") {
		return nil, nil
	}
	if _, err := logical.ParseBool(req.Data["include_child_namespaces"]); err != nil {
		return nil, logical.Errorf("include_child_namespaces: %v", err)
	}
	limit := maxIrrevocableLeases
	if !count {
		switch l := strings.TrimSpace(logical.String(req.Data["limit"])); {
		case l == "":
		case strings.EqualFold(l, "none"):
			limit = -1
		default:
			n, err := strconv.Atoi(l)
			if err != nil {
				return nil, logical.Errorf("invalid 'limit' provided: %v", err)
			}
			if n < 1 {
				return nil, logical.Errorf("limit must be 'none' or a positive integer")
			}
			limit = n
		}
	}
	failed, err := c.leases.Failed(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	accessors := make(map[string]string, len(ms))
	for _, m := range ms {
		accessors[m.UUID] = m.Accessor
	}
	accessor := func(e *lease.Entry) string {
		if a, ok := accessors[e.MountUUID]; ok {
			return a
		}
		return "mount-accessor-not-found"
	}
	if count {
		counts := map[string]any{}
		for _, e := range failed {
			n, _ := counts[accessor(e)].(int)
			counts[accessor(e)] = n + 1
		}
		return &logical.Response{Data: map[string]any{"lease_count": len(failed), "counts": counts}}, nil
	}
	var warnings []string
	if limit >= 0 && len(failed) > limit {
		failed = failed[:limit]
		warnings = append(warnings, "Command halted because many irrevocable leases were found. To emit the entire list, re-run the command with limit=none.")
	}
	leases := make([]any, 0, len(failed))
	for _, e := range failed {
		leases = append(leases, map[string]any{"lease_id": e.ID, "mount_id": accessor(e), "error": e.LastError})
	}
	return &logical.Response{Data: map[string]any{"lease_count": len(leases), "leases": leases}, Warnings: warnings}, nil
}

// leaseTarget reads a request on one of the sys/leases endpoints that act
// on a single lease (renew, revoke and lookup), from the full path: which
// endpoint, the lease id in the path after it, and the lease id in the
// body. The two ids may not differ, and a body id must be canonical (as a
// path is), so that the id the ACL is checked on is the one acted on.
func leaseTarget(fullPath string, data map[string]any) (endpoint, pathID, bodyID string, err error) {
	rest, ok := strings.CutPrefix(fullPath, "sys/leases/")
	if !ok {
		return "", "", "", nil
	}
	for _, ep := range []string{"renew", "revoke", "lookup"} {
		if id, ok := strings.CutPrefix(rest, ep); ok && (id == "" || id[0] == '/') {
			endpoint, pathID = ep, strings.TrimPrefix(id, "/")
			break
		}
	}
	v, ok := data["lease_id"]
	if endpoint == "" || !ok {
		return endpoint, pathID, "", nil
	}
	id, isString := v.(string)
	if !isString {
		return "", "", "", logical.Errorf("lease_id must be one string")
	}
	if canon, err := logical.CanonicalPath(id, false); err != nil || canon != id {
		return "", "", "", logical.Errorf("invalid lease_id %q: give it as `lessor lease lookup` shows it, without surrounding slashes or white space", id)
	}
	if pathID != "" && id != "" && id != pathID {
		return "", "", "", logical.Errorf("lease_id %q in the body differs from %q in the path", id, pathID)
	}
	return endpoint, pathID, id, nil
}

// checkLeaseTarget checks the ACL on the lease a write to sys/leases/renew,
// revoke or lookup names only in its body, as if it were in the path: a
// grant on sys/leases/revoke does not let a token revoke any lease it can
// name. Lease ids are not secret (any database user reads them in role
// comments), so for renew and lookup the token that created the lease may
// act on it too, as in Vault; that is what the default policy relies on.
// A revoke-prefix that sends force is checked as the revoke-force it is
// (checkForcedPrefix).
func (c *Core) checkLeaseTarget(ctx context.Context, acl *policy.ACL, te *token.Entry, op logical.Operation, fullPath string, data map[string]any) error {
	if mount, ok := strings.CutPrefix(fullPath, "sys/mounts/"); ok && op == logical.DeleteOperation {
		return checkForcedUnmount(acl, mount, data)
	}
	if op != logical.CreateOperation && op != logical.UpdateOperation {
		return nil
	}
	if prefix, ok := strings.CutPrefix(fullPath, "sys/leases/revoke-prefix/"); ok {
		return checkForcedPrefix(acl, op, prefix, data)
	}
	ep, pathID, bodyID, err := leaseTarget(fullPath, data)
	if err != nil || ep == "" || pathID != "" || bodyID == "" {
		return err
	}
	target := "sys/leases/" + ep + "/" + bodyID
	if acl.Allow(op, target, data).Allowed {
		return nil
	}
	if ep != "revoke" {
		// From the record alone: asking the lease's backend (a pending
		// lease is adopted only if its secret exists) would tell a caller
		// who may not see the lease that it exists, with its backend's
		// errors, before the refusal. The endpoint adopts it once allowed.
		mine, err := c.leases.CreatedBy(ctx, bodyID, te.Accessor)
		if err != nil {
			return err
		}
		if mine {
			return nil
		}
	}
	reason := fmt.Sprintf("only the token that created a lease, or a policy granting %s on sys/leases/%s/<lease id>, may %s it", op, ep, ep)
	if ep == "revoke" {
		reason = fmt.Sprintf("revoking a lease named in the body needs %s on sys/leases/revoke/<lease id>", op)
	}
	return &PermissionError{Operation: op, Path: target, Reason: reason}
}

// checkForcedPrefix checks a revoke-prefix that sends force=true as the
// revoke-force it amounts to: forgetting leases whose revocation fails
// (their database roles live on) needs update and sudo on
// sys/leases/revoke-force/<prefix>. Otherwise a policy that grants
// revoke-prefix and denies revoke-force, as an operator who never wants
// leases forgotten writes it, was bypassed by one body field that Vault's
// revoke-prefix does not even take.
func checkForcedPrefix(acl *policy.ACL, op logical.Operation, prefix string, data map[string]any) error {
	force, err := logical.ParseBool(data["force"])
	if err != nil || !force {
		// The endpoint refuses a force it cannot read.
		return nil
	}
	target := "sys/leases/revoke-force/" + prefix
	if res := acl.Allow(op, target, nil); res.Allowed && res.Sudo {
		return nil
	}
	return &PermissionError{Operation: op, Path: target, Reason: fmt.Sprintf("force forgets leases as revoke-force does, and needs %s and sudo on sys/leases/revoke-force/<prefix>", op)}
}

// checkForcedUnmount checks a disable that sends force=true as the
// revoke-force of the mount's leases it amounts to (the leases whose
// revocation fails are forgotten, their roles live on): it needs update
// and sudo on sys/leases/revoke-force/<mount>, besides the sudo on the
// mount the handler asks. A policy that denies revoke-force is then not
// bypassed by disabling the mount, as checkForcedPrefix keeps it from
// being bypassed by revoke-prefix.
func checkForcedUnmount(acl *policy.ACL, mount string, data map[string]any) error {
	force, err := logical.ParseBool(data["force"])
	if err != nil || !force {
		return nil
	}
	path, err := canonicalMountPath(mount)
	if err != nil || path == "" {
		// The handler refuses the path.
		return nil
	}
	target := "sys/leases/revoke-force/" + path
	if res := acl.Allow(logical.UpdateOperation, target, nil); res.Allowed && res.Sudo {
		return nil
	}
	return &PermissionError{Operation: logical.DeleteOperation, Path: target, Reason: "force forgets leases as revoke-force does, and needs update and sudo on sys/leases/revoke-force/<mount>"}
}

func (c *Core) revokePrefix(ctx context.Context, prefix string, force bool) (*logical.Response, error) {
	if strings.Trim(prefix, "/") == "" {
		return nil, logical.Errorf("a prefix is required")
	}
	failed, err := c.leases.RevokePrefix(ctx, prefix, force)
	if err != nil {
		return nil, err
	}
	if force && len(failed) > 0 {
		resp := &logical.Response{Data: map[string]any{"forgotten": failed}}
		resp.AddWarning("%s forgotten although %s: %s (first error: %s)",
			plural(len(failed), "lease was", "leases were"),
			plural1(len(failed), "its revocation failed; its database role may still exist", "their revocation failed; their database roles may still exist"),
			failed[0].LeaseID, failed[0].Error)
		return resp, nil
	}
	return nil, nil
}

// plural is "1 <one>" or "n <many>", for counts in messages.
func plural(n int, one, many string) string {
	return fmt.Sprintf("%d %s", n, plural1(n, one, many))
}

// plural1 is one when n is 1, else many.
func plural1(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
