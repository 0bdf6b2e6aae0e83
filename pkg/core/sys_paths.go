package core

import (
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/token"
)

// sysPaths declares the system backend's paths, from the same field
// schemas that sysFields gives the handlers, for path-help and completion.
func sysPaths() []logical.PathSpec {
	type ops = map[logical.Operation]logical.FieldSchema
	var (
		r, l, d, c, u = logical.ReadOperation, logical.ListOperation, logical.DeleteOperation, logical.CreateOperation, logical.UpdateOperation
	)
	w := func(f logical.FieldSchema, more ops) ops {
		m := ops{c: f, u: f}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	return []logical.PathSpec{
		{Pattern: "mounts", Description: "list the mounted secrets engines", Operations: ops{r: nil, l: nil}},
		{Pattern: "mounts/*path/tune", Description: "read or tune a mount's lease TTLs and description", Operations: w(mountTuneFields, ops{r: nil})},
		{Pattern: "mounts/*path", Description: "enable (write), disable (delete; force needs sudo) or read a secrets engine mounted at path", Operations: w(mountFields, ops{r: nil, d: forceField})},
		{Pattern: "remount", Description: "move a mount and its leases", Operations: w(remountFields, nil)},
		{Pattern: "policy/", Description: "list the policies", Operations: ops{l: nil}},
		{Pattern: "policy/:name", Description: "write, read or delete an ACL policy", Operations: w(policyFields, ops{r: nil, d: nil})},
		{Pattern: "policies/acl/", Description: "list the policies", Operations: ops{l: nil}},
		{Pattern: "policies/acl/:name", Description: "write, read or delete an ACL policy", Operations: w(policyFields, ops{r: nil, d: nil})},
		{Pattern: "policies/password/", Description: "list the password policies", Operations: ops{l: nil}},
		{Pattern: "policies/password/:name", Description: "write, read or delete a password policy (length and charset rules for generated passwords)", Operations: w(passwordPolicyFields, ops{r: nil, d: nil})},
		{Pattern: "policies/password/:name/generate", Description: "generate a password from a password policy", Operations: ops{r: nil}},
		{Pattern: "audit", Description: "list the audit devices", Operations: ops{r: nil, l: nil}},
		{Pattern: "audit/*path", Description: "enable (write; options as fields) or disable an audit device", Operations: w(nil, ops{d: nil})},
		{Pattern: "audit-hash/*path", Description: "hash a value as the audit device at path does", Operations: w(auditHashFields, nil)},
		{Pattern: "leases", Description: "list the leases whose revocation failed, which reap retries (type=irrevocable; needs sudo)", Operations: ops{r: irrevocableListFields}},
		{Pattern: "leases/count", Description: "count the leases whose revocation failed, by mount (type=irrevocable)", Operations: ops{r: irrevocableCountFields}},
		{Pattern: "leases/lookup/", Description: "list lease ids by prefix (needs sudo)", Operations: ops{l: nil}},
		{Pattern: "leases/lookup", Description: "look up a lease", Operations: w(leaseIDField, nil)},
		{Pattern: "leases/entries", Description: "read the leases (needs sudo)", Operations: ops{r: nil}},
		{Pattern: "leases/renew", Description: "renew a lease", Operations: w(leaseRenewFields, nil)},
		{Pattern: "leases/revoke", Description: "revoke a lease", Operations: w(leaseIDField, nil)},
		{Pattern: "leases/revoke-prefix/*prefix", Description: "revoke every lease under a prefix (needs sudo)", Operations: w(forceField, nil)},
		{Pattern: "leases/revoke-force/*prefix", Description: "revoke every lease under a prefix, forgetting those that fail (needs sudo)", Operations: w(nil, nil)},
		{Pattern: "capabilities-self", Description: "the calling token's capabilities on paths", Operations: w(capabilitiesSelfFields, nil)},
		{Pattern: "capabilities", Description: "a token's capabilities on paths", Operations: w(capabilitiesFields, nil)},
	}
}

// PathSpecs declares the system backend's paths.
func (s *systemBackend) PathSpecs() []logical.PathSpec { return sysPaths() }

// BuiltinPathSpecs returns the paths of a built-in mount by its type in
// the mount table ("system", "token"), or nil for any other type.
func BuiltinPathSpecs(typ string) []logical.PathSpec {
	switch typ {
	case sysMount.Type:
		return sysPaths()
	case tokenMount.Type:
		return token.PathSpecs()
	}
	return nil
}
