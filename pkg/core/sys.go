package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/lessorhq/lessor/pkg/audit"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
	"github.com/lessorhq/lessor/pkg/token"
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

func (c *Core) listMounts(ctx context.Context) (*logical.Response, error) {
	ms, err := c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	data := map[string]any{}
	for _, m := range ms {
		data[m.Path] = mountData(m)
	}
	data[sysMount.Path] = map[string]any{
		"type": "system", "description": "system endpoints used for control, policy and debugging",
		"accessor": "system", "uuid": "system",
		"config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0},
	}
	return &logical.Response{Data: data}, nil
}

func parseMountConfig(data map[string]any, cfg *MountConfig) error {
	raw := map[string]any{}
	if m, ok := data["config"].(map[string]any); ok {
		for k, v := range m {
			raw[k] = v
		}
	}
	for _, k := range []string{"default_lease_ttl", "max_lease_ttl"} {
		if v, ok := data[k]; ok {
			raw[k] = v
		}
	}
	for k, v := range raw {
		var d = &cfg.DefaultLeaseTTL
		switch k {
		case "default_lease_ttl":
		case "max_lease_ttl":
			d = &cfg.MaxLeaseTTL
		default:
			return logical.Errorf("unknown mount config key %q", k)
		}
		if s, ok := v.(string); ok && strings.TrimSpace(s) == "system" {
			*d = 0
			continue
		}
		dur, err := logical.ParseDuration(v)
		if err != nil {
			return logical.Errorf("%s: %v", k, err)
		}
		*d = dur
	}
	if cfg.MaxLeaseTTL > 0 && cfg.DefaultLeaseTTL > cfg.MaxLeaseTTL {
		return logical.Errorf("backend max lease TTL of %d would be less than backend default lease TTL of %d",
			int64(cfg.MaxLeaseTTL.Seconds()), int64(cfg.DefaultLeaseTTL.Seconds()))
	}
	return nil
}

func (c *Core) enableMount(ctx context.Context, path string, data map[string]any) error {
	typ := logical.String(data["type"])
	if typ == "" {
		return logical.Errorf("missing secrets engine type")
	}
	// Refused rather than trimmed: the ACL checked the type as sent, so a
	// deny on "database" must not be passed by " database".
	if t := strings.TrimSpace(typ); t != typ {
		return logical.Errorf("secrets engine type %q has surrounding white space; use %q", typ, t)
	}
	if _, ok := c.factories[typ]; !ok {
		known := make([]string, 0, len(c.factories))
		for k := range c.factories {
			known = append(known, k)
		}
		sort.Strings(known)
		return logical.Errorf("unknown secrets engine type %q (lessor knows: %s)", typ, strings.Join(known, ", "))
	}
	m := &MountEntry{Path: path, Type: typ, Description: logical.String(data["description"])}
	if err := parseMountConfig(data, &m.Config); err != nil {
		return err
	}
	uuid := c.requestID()
	if uuid == "" {
		return errors.New("generate mount id: no randomness")
	}
	m.UUID = uuid
	m.Accessor = typ + "_" + uuid[:8]
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ms, err := loadMounts(tx)
		if err != nil {
			return err
		}
		if err := checkMountPath(path, ms); err != nil {
			return err
		}
		return saveMounts(tx, append(ms, m))
	})
}

func (c *Core) mountAt(ctx context.Context, path string) (*MountEntry, error) {
	ms, err := c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Path == path {
			return m, nil
		}
	}
	return nil, nil
}

// disableMount revokes every lease of the mount, then removes the mount
// and all of its data. It refuses while any revocation fails, unless
// forced: Vault's behaviour, minus Vault's roles stranded by a forced
// revocation that nothing lists afterwards, since failed leases stay
// visible.
func (c *Core) disableMount(ctx context.Context, path string, force bool) (*logical.Response, error) {
	m, err := c.mountAt(ctx, path)
	if err != nil || m == nil {
		return nil, err // disabling nothing succeeds, as in Vault
	}
	revoked, failed, err := c.leases.RevokePrefixCount(ctx, m.Path, force)
	if err != nil {
		var re *lease.RevokeError
		if errors.As(err, &re) {
			return nil, logical.Errorf("cannot disable %s: %d of its leases could not be revoked (first: %s: %s); fix the database and retry, or use -force to forget them",
				m.Path, len(re.Failed), re.Failed[0].LeaseID, re.Failed[0].Error)
		}
		return nil, err
	}
	failpoint.Hit(failpoint.DisableAfterRevoke)
	prefix := "logical/" + m.UUID + "/"
	err = c.store.Update(ctx, func(tx storage.Tx) error {
		ms, err := loadMounts(tx)
		if err != nil {
			return err
		}
		kept := ms[:0]
		for _, x := range ms {
			if x.UUID != m.UUID {
				kept = append(kept, x)
			}
		}
		if err := saveMounts(tx, kept); err != nil {
			return err
		}
		keys, err := tx.List(prefix)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: map[string]any{"revoked_leases": revoked}}
	if len(failed) > 0 {
		resp.AddWarning("Force-removed %d leases whose revocation failed; their database roles may still exist (find them with `lessor reap -orphans -dry-run`)", len(failed))
	}
	return resp, nil
}

func (c *Core) readTune(ctx context.Context, path string) (*logical.Response, error) {
	m, err := c.mountAt(ctx, path)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, logical.Errorf("no mount at %s", path)
	}
	sv := c.systemView(m)
	return &logical.Response{Data: map[string]any{
		"default_lease_ttl": int64(sv.DefaultLeaseTTL().Seconds()),
		"max_lease_ttl":     int64(sv.MaxLeaseTTL().Seconds()),
		"description":       m.Description,
	}}, nil
}

func (c *Core) tuneMount(ctx context.Context, path string, data map[string]any) error {
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ms, err := loadMounts(tx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Path != path {
				continue
			}
			cfg := m.Config
			if err := parseMountConfig(data, &cfg); err != nil {
				return err
			}
			m.Config = cfg
			if d, ok := data["description"]; ok {
				m.Description = logical.String(d)
			}
			return saveMounts(tx, ms)
		}
		return logical.Errorf("no mount at %s", path)
	})
}

// remount moves a mount; like Vault, it first revokes every lease issued
// under the old path, since their ids name it.
func (c *Core) remount(ctx context.Context, from, to string) error {
	from, err := canonicalMountPath(from)
	if err != nil {
		return err
	}
	to, err = canonicalMountPath(to)
	if err != nil {
		return err
	}
	if from == "" || to == "" {
		return logical.Errorf("both 'from' and 'to' are required")
	}
	m, err := c.mountAt(ctx, from)
	if err != nil {
		return err
	}
	if m == nil {
		return logical.Errorf("no mount at %s", from)
	}
	if _, err := c.leases.RevokePrefix(ctx, from, false); err != nil {
		return fmt.Errorf("revoke leases of %s: %w", from, err)
	}
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ms, err := loadMounts(tx)
		if err != nil {
			return err
		}
		var others []*MountEntry
		var cur *MountEntry
		for _, x := range ms {
			if x.UUID == m.UUID {
				cur = x
			} else {
				others = append(others, x)
			}
		}
		if cur == nil {
			return logical.Errorf("no mount at %s", from)
		}
		if err := checkMountPath(to, others); err != nil {
			return err
		}
		cur.Path = to
		return saveMounts(tx, append(others, cur))
	})
}

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
		out := make([]map[string]any, 0, len(es))
		for _, e := range es {
			out = append(out, c.leases.LookupData(e))
		}
		return &logical.Response{Data: map[string]any{"leases": out}}, nil
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
	return nil, &logical.CodedError{Status: 405, Msg: fmt.Sprintf("unsupported operation %s on sys/leases/%s", op, rest)}
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
func (c *Core) checkLeaseTarget(ctx context.Context, acl *policy.ACL, te *token.Entry, op logical.Operation, fullPath string, data map[string]any) error {
	if op != logical.CreateOperation && op != logical.UpdateOperation {
		return nil
	}
	ep, pathID, bodyID, err := leaseTarget(fullPath, data)
	if err != nil || ep == "" || pathID != "" || bodyID == "" {
		return err
	}
	target := "sys/leases/" + ep + "/" + bodyID
	if acl.Allow(op, target, data).Allowed {
		return nil
	}
	if ep != "revoke" && te.Accessor != "" {
		e, err := c.leases.Lookup(ctx, bodyID)
		switch {
		case err == nil && e.TokenAccessor == te.Accessor:
			return nil
		case err != nil && !errors.Is(err, lease.ErrInvalidLease):
			return err
		}
	}
	reason := fmt.Sprintf("only the token that created a lease, or a policy granting %s on sys/leases/%s/<lease id>, may %s it", op, ep, ep)
	if ep == "revoke" {
		reason = fmt.Sprintf("revoking a lease named in the body needs %s on sys/leases/revoke/<lease id>", op)
	}
	return &PermissionError{Operation: op, Path: target, Reason: reason}
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
		resp.AddWarning("%d leases were forgotten although their revocation failed; their database roles may still exist: %s (first error: %s)",
			len(failed), failed[0].LeaseID, failed[0].Error)
		return resp, nil
	}
	return nil, nil
}

func (c *Core) capabilities(ctx context.Context, tok string, data map[string]any) (*logical.Response, error) {
	te, err := c.tokens.Lookup(ctx, tok)
	if err != nil {
		return nil, logical.Errorf("invalid token")
	}
	acl, err := c.aclFor(ctx, te.Policies)
	if err != nil {
		return nil, err
	}
	paths, err := logical.ParseCommaStrings(data["paths"])
	if err != nil {
		return nil, logical.Errorf("paths: %v", err)
	}
	if p := logical.String(data["path"]); p != "" {
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return nil, logical.Errorf("missing paths")
	}
	out := map[string]any{}
	for _, p := range paths {
		caps := acl.Capabilities(strings.Trim(p, "/"))
		out[p] = caps
	}
	if len(paths) == 1 {
		out["capabilities"] = out[paths[0]]
	}
	return &logical.Response{Data: out}, nil
}

// Audit devices.

const (
	auditKeyPath     = "core/audit-hmac-key"
	auditDevicesPath = "core/audit"
)

func loadAudit(tx storage.Tx) ([]audit.Device, []byte, error) {
	key, err := tx.Get(auditKeyPath)
	if err != nil {
		return nil, nil, err
	}
	raw, err := tx.Get(auditDevicesPath)
	if err != nil || raw == nil {
		return nil, key, err
	}
	var ds []audit.Device
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, nil, fmt.Errorf("decode audit devices: %w", err)
	}
	return ds, key, nil
}

func (c *Core) auditBroker(ctx context.Context) (*audit.Broker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerOK {
		return c.broker, nil
	}
	var ds []audit.Device
	var key []byte
	if err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ds, key, err = loadAudit(tx)
		return err
	}); err != nil {
		return nil, err
	}
	c.broker, c.brokerOK = audit.NewBroker(ds, key, c.now), true
	return c.broker, nil
}

// prefetchedBroker is auditBroker from the audit configuration that
// prefetch read, if it read it.
func (c *Core) prefetchedBroker(ctx context.Context, pre *prefetched) (*audit.Broker, error) {
	if !pre.auditRead {
		return c.auditBroker(ctx)
	}
	if pre.auditErr != nil {
		return nil, pre.auditErr
	}
	b := audit.NewBroker(pre.devices, pre.auditKey, c.now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerOK {
		return c.broker, nil
	}
	if c.brokerGen == pre.auditGen {
		c.broker, c.brokerOK = b, true
	}
	return b, nil
}

func (c *Core) resetBroker() {
	c.mu.Lock()
	c.brokerOK = false
	c.brokerGen++
	c.mu.Unlock()
}

func (c *Core) listAudit(ctx context.Context) (*logical.Response, error) {
	var ds []audit.Device
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ds, _, err = loadAudit(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	data := map[string]any{}
	for _, d := range ds {
		opts := map[string]any{}
		for k, v := range d.Options {
			opts[k] = v
		}
		data[d.Path] = map[string]any{"type": d.Type, "description": d.Description, "path": d.Path, "options": opts}
	}
	return &logical.Response{Data: data}, nil
}

func (c *Core) enableAudit(ctx context.Context, path string, data map[string]any) error {
	d := audit.Device{Path: path, Type: logical.String(data["type"]), Description: logical.String(data["description"]), Options: map[string]string{}}
	if opts, ok := data["options"].(map[string]any); ok {
		for k, v := range opts {
			d.Options[k] = logical.String(v)
		}
	}
	for k, v := range data {
		switch k {
		case "type", "description", "options", "local":
		default:
			d.Options[k] = logical.String(v)
		}
	}
	if path == "" {
		return logical.Errorf("audit device path is required")
	}
	if err := audit.ValidateDevice(d); err != nil {
		return logical.Errorf("%v", err)
	}
	defer c.resetBroker()
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ds, _, err := loadAudit(tx)
		if err != nil {
			return err
		}
		for _, x := range ds {
			if x.Path == path {
				return logical.Errorf("path already in use at %s", path)
			}
		}
		raw, err := json.Marshal(append(ds, d))
		if err != nil {
			return err
		}
		return tx.Put(auditDevicesPath, raw)
	})
}

func (c *Core) disableAudit(ctx context.Context, path string) error {
	defer c.resetBroker()
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ds, _, err := loadAudit(tx)
		if err != nil {
			return err
		}
		kept := ds[:0]
		for _, x := range ds {
			if x.Path != path {
				kept = append(kept, x)
			}
		}
		raw, err := json.Marshal(kept)
		if err != nil {
			return err
		}
		return tx.Put(auditDevicesPath, raw)
	})
}

func (c *Core) auditHash(ctx context.Context, path, input string) (*logical.Response, error) {
	var key []byte
	var found bool
	err := c.store.View(ctx, func(tx storage.Tx) error {
		ds, k, err := loadAudit(tx)
		key = k
		for _, d := range ds {
			if d.Path == path {
				found = true
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if path != "" && !found {
		return nil, logical.Errorf("unknown audit device %s", path)
	}
	return &logical.Response{Data: map[string]any{"hash": audit.HashString(key, input)}}, nil
}

// AuditHash returns the HMAC of a value under the store's audit key, so an
// operator can grep the audit log for it.
func (c *Core) AuditHash(ctx context.Context, input string) (string, error) {
	resp, err := c.auditHash(ctx, "", input)
	if err != nil {
		return "", err
	}
	return logical.String(resp.Data["hash"]), nil
}
