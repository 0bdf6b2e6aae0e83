package core

import (
	"context"
	"fmt"
	"strings"

	"github.com/lessorhq/lessor/pkg/logical"
)

// systemBackend serves sys/: mounts, policies, audit devices, leases and
// capabilities.
type systemBackend struct{ c *Core }

func (s *systemBackend) ExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	p := req.Path
	switch {
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
		if _, dup := req.Data[k]; dup {
			return logical.Errorf("%s is given both at the top level and in config; give it once", k)
		}
		req.Data[k] = v
	}
	delete(req.Data, "config")
	return nil
}

func (s *systemBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
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
			return c.disableMount(ctx, path, force)
		case op == logical.ReadOperation:
			return c.readTune(ctx, path)
		}
	case p == "remount" && write:
		return nil, c.remount(ctx, logical.String(req.Data["from"]), logical.String(req.Data["to"]))
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
	case strings.HasPrefix(p, "leases/"):
		return c.handleLeases(ctx, req, strings.TrimPrefix(req.Path, "leases/"))
	case p == "capabilities-self" && write:
		return c.capabilities(ctx, req.ClientToken, req.Data)
	case p == "capabilities" && write:
		return c.capabilities(ctx, logical.String(req.Data["token"]), req.Data)
	default:
		return nil, &logical.CodedError{Status: 404, Msg: fmt.Sprintf("unsupported path %q", "sys/"+req.Path)}
	}
	return nil, &logical.CodedError{Status: 405, Msg: fmt.Sprintf("unsupported operation %s on sys/%s", op, req.Path)}
}
