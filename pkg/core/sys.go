package core

import (
	"context"
	"maps"
	"strings"

	"github.com/lessorhq/lessor/pkg/logical"
)

// systemBackend serves sys/: mounts, policies, audit devices, leases and
// capabilities.
type systemBackend struct{ c *Core }

func (s *systemBackend) ExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	p := req.Path
	switch {
	case strings.HasPrefix(p, "policies/password/") && !strings.Contains(strings.TrimPrefix(p, "policies/password/"), "/"):
		ok, err := s.c.passwordPolicyExists(ctx, strings.TrimPrefix(p, "policies/password/"))
		return true, ok, err
	case strings.HasPrefix(p, "policy/"), strings.HasPrefix(p, "policies/acl/"):
		name := p[strings.LastIndex(p, "/")+1:]
		if err := checkPolicyName(name); err != nil {
			return false, false, err
		}
		ok, err := s.c.policyExists(ctx, name)
		return true, ok, err
	case strings.HasPrefix(p, "mounts/") && !strings.HasSuffix(p, "/tune"):
		path, err := canonicalMountPath(strings.TrimPrefix(p, "mounts/"))
		if err != nil {
			return false, false, err
		}
		ms, err := s.c.mounts(ctx)
		if err != nil {
			return false, false, err
		}
		for _, m := range ms {
			if m.Path == path {
				return true, true, nil
			}
		}
		return true, false, nil
	}
	return false, false, nil
}

// CanonicalData lifts a mount's nested config map ({"config":
// {"max_lease_ttl": …}}, as Vault's API sends it) to the top-level keys
// parseMountConfig reads, so that allowed_parameters and
// denied_parameters on "max_lease_ttl" judge the value that takes effect
// whichever way it was sent.
func (s *systemBackend) CanonicalData(req *logical.Request) error {
	if req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil
	}
	if !strings.HasPrefix(req.Path, "mounts/") {
		return nil
	}
	raw, ok := req.Data["config"]
	if !ok {
		return nil
	}
	cfg, ok := raw.(map[string]any)
	if !ok {
		return logical.Errorf("config: want a map of mount settings, got %T", raw)
	}
	for k, v := range cfg {
		if v == nil {
			// JSON null is a value not given: Vault's Go client sends
			// every field of its struct, "options": null among them.
			continue
		}
		if cur, dup := req.Data[k]; dup && cur != nil {
			return logical.Errorf("%s is given both at the top level and in config; give it once", k)
		}
		req.Data[k] = v
	}
	delete(req.Data, "config")
	return nil
}

// sysFields returns the fields a sys path knows for an operation, and
// whether the path takes any field (audit devices take their options as
// top-level fields, as Vault's do). Every other field is ignored, with
// Vault's warning.
func sysFields(p string, op logical.Operation) (fields logical.FieldSchema, arbitrary bool) {
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	switch {
	case strings.HasPrefix(p, "mounts/") && strings.HasSuffix(p, "/tune") && write:
		return mountTuneFields, false
	case strings.HasPrefix(p, "mounts/") && write:
		return mountFields, false
	case strings.HasPrefix(p, "mounts/") && op == logical.DeleteOperation:
		return forceField, false
	case p == "remount":
		return remountFields, false
	case strings.HasPrefix(p, "policy/"), strings.HasPrefix(p, "policies/acl/"):
		if write {
			return policyFields, false
		}
	case strings.HasPrefix(p, "policies/password/") && write:
		return passwordPolicyFields, false
	case strings.HasPrefix(p, "audit/") && write:
		return nil, true
	case p == "audit-hash" || strings.HasPrefix(p, "audit-hash/"):
		return auditHashFields, false
	case p == "leases/count" && op == logical.ReadOperation:
		return irrevocableCountFields, false
	case p == "leases" && op == logical.ReadOperation:
		return irrevocableListFields, false
	case strings.HasPrefix(p, "leases/revoke-prefix/"):
		return forceField, false
	case strings.HasPrefix(p, "leases/renew"):
		return leaseRenewFields, false
	case strings.HasPrefix(p, "leases/lookup"), strings.HasPrefix(p, "leases/revoke"):
		if write {
			return leaseIDField, false
		}
	case p == "capabilities-self":
		return capabilitiesSelfFields, false
	case p == "capabilities":
		return capabilitiesFields, false
	}
	return nil, false
}

var (
	mountTTLFields = logical.FieldSchema{
		"default_lease_ttl": {Type: logical.TypeString, Description: "default lease TTL: a duration, or \"system\""},
		"max_lease_ttl":     {Type: logical.TypeString, Description: "max lease TTL: a duration, or \"system\""},
		"description":       {Type: logical.TypeString, Description: "what the mount is for"},
	}
	mountTuneFields = mountTTLFields
	mountFields     = withFields(mountTTLFields, logical.FieldSchema{
		"type":   {Type: logical.TypeString, Description: "the secrets engine type"},
		"config": {Type: logical.TypeMap, Description: "default_lease_ttl and max_lease_ttl, nested as Vault's API sends them"},
	})
	forceField    = logical.FieldSchema{"force": {Type: logical.TypeBool, Description: "forget leases whose revocation fails"}}
	remountFields = logical.FieldSchema{
		"from": {Type: logical.TypeString, Description: "the mount's path now"},
		"to":   {Type: logical.TypeString, Description: "its new path"},
	}
	policyFields = logical.FieldSchema{
		"policy": {Type: logical.TypeString, Description: "the policy's HCL or JSON text"},
		"rules":  {Type: logical.TypeString, Description: "the same, under its older name"},
	}
	auditHashFields  = logical.FieldSchema{"input": {Type: logical.TypeString, Description: "the value to hash"}}
	leaseIDField     = logical.FieldSchema{"lease_id": {Type: logical.TypeString, Description: "the lease"}}
	leaseRenewFields = withFields(leaseIDField, logical.FieldSchema{
		"increment": {Type: logical.TypeDurationSecond, Description: "requested TTL from now"},
	})
	irrevocableCountFields = logical.FieldSchema{
		"type":                     {Type: logical.TypeString, Description: "irrevocable: the leases whose revocation failed (reap retries them)"},
		"include_child_namespaces": {Type: logical.TypeBool, Description: "accepted for Vault's clients; lessor has no namespaces"},
	}
	irrevocableListFields = withFields(irrevocableCountFields, logical.FieldSchema{
		"limit": {Type: logical.TypeString, Description: "the most leases to list (default 10000), or \"none\""},
	})
	capabilitiesSelfFields = logical.FieldSchema{
		"paths": {Type: logical.TypeCommaStringSlice, Description: "the paths to report on"},
		"path":  {Type: logical.TypeString, Description: "one path (older name)"},
	}
	capabilitiesFields = withFields(capabilitiesSelfFields, logical.FieldSchema{
		"token": {Type: logical.TypeString, Description: "the token to report on"},
	})
)

func withFields(a, b logical.FieldSchema) logical.FieldSchema {
	out := make(logical.FieldSchema, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

func (s *systemBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := strings.TrimSuffix(req.Path, "/")
	schema, arbitrary := sysFields(p, req.Operation)
	fd, err := logical.ParseFields(schema, req.Data)
	if err != nil {
		return nil, err
	}
	resp, err := s.route(ctx, req)
	if err != nil || arbitrary {
		return resp, err
	}
	return logical.WarnIgnored(resp, fd.Unknown), nil
}

func (s *systemBackend) route(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	c := s.c
	p := strings.TrimSuffix(req.Path, "/")
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	switch {
	case p == "mounts":
		if op != logical.ReadOperation && op != logical.ListOperation {
			break
		}
		return c.listMounts(ctx)
	case strings.HasPrefix(p, "mounts/") && strings.HasSuffix(p, "/tune"):
		path, err := canonicalMountPath(strings.TrimSuffix(strings.TrimPrefix(p, "mounts/"), "/tune"))
		if err != nil {
			return nil, err
		}
		if op == logical.ReadOperation {
			return c.readTune(ctx, path)
		}
		if write {
			return nil, c.tuneMount(ctx, path, req.Data)
		}
	case strings.HasPrefix(p, "mounts/"):
		path, err := canonicalMountPath(strings.TrimPrefix(p, "mounts/"))
		if err != nil {
			return nil, err
		}
		switch {
		case write:
			return nil, c.enableMount(ctx, path, req.Data)
		case op == logical.DeleteOperation:
			force, err := logical.ParseBool(req.Data["force"])
			if err != nil {
				return nil, logical.Errorf("force: %v", err)
			}
			if force && !req.HasSudo {
				// Forgetting leases whose roles may live on is what
				// revoke-force does, and it needs sudo there too; a
				// policy cannot restrict a delete's parameters.
				return nil, &PermissionError{Operation: op, Path: "sys/" + p, Reason: "force also needs the sudo capability"}
			}
			return c.disableMount(ctx, path, force)
		case op == logical.ReadOperation:
			return c.readTune(ctx, path)
		}
	case p == "remount" && write:
		return nil, c.remount(ctx, logical.String(req.Data["from"]), logical.String(req.Data["to"]))
	case p == "policies/password" || strings.HasPrefix(p, "policies/password/"):
		return c.handlePasswordPolicy(ctx, req, strings.TrimPrefix(strings.TrimPrefix(p, "policies/password"), "/"))
	case p == "policy", p == "policies/acl":
		return c.handlePolicy(ctx, req, "")
	case strings.HasPrefix(p, "policy/"):
		return c.handlePolicy(ctx, req, strings.TrimPrefix(p, "policy/"))
	case strings.HasPrefix(p, "policies/acl/"):
		return c.handlePolicy(ctx, req, strings.TrimPrefix(p, "policies/acl/"))
	case p == "audit" && (op == logical.ReadOperation || op == logical.ListOperation):
		return c.listAudit(ctx)
	case strings.HasPrefix(p, "audit/"):
		path, err := canonicalMountPath(strings.TrimPrefix(p, "audit/"))
		if err != nil {
			return nil, err
		}
		if write {
			return nil, c.enableAudit(ctx, path, req.Data)
		}
		if op == logical.DeleteOperation {
			return nil, c.disableAudit(ctx, path)
		}
	case (p == "audit-hash" || strings.HasPrefix(p, "audit-hash/")) && write:
		path, err := canonicalMountPath(strings.TrimPrefix(strings.TrimPrefix(p, "audit-hash"), "/"))
		if err != nil {
			return nil, err
		}
		return c.auditHash(ctx, path, logical.String(req.Data["input"]))
	case p == "leases" && op == logical.ReadOperation:
		return c.irrevocableLeases(ctx, req, false)
	case p == "leases/count" && op == logical.ReadOperation:
		return c.irrevocableLeases(ctx, req, true)
	case strings.HasPrefix(p, "leases/"):
		return c.handleLeases(ctx, req, strings.TrimPrefix(req.Path, "leases/"))
	case p == "capabilities-self" && write:
		return c.capabilities(ctx, req.ClientToken, req.Data)
	case p == "capabilities" && write:
		return c.capabilities(ctx, logical.String(req.Data["token"]), req.Data)
	default:
		return nil, logical.UnsupportedPath(req)
	}
	return nil, logical.UnsupportedOperation(req)
}
