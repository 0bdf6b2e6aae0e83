package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

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
	prefix := mountStoragePrefix(m)
	var forgotten int
	err = c.store.Update(ctx, func(tx storage.Tx) error {
		// A lease still recorded under the mount was being issued while
		// its leases were revoked: its record must outlive the issue
		// (see lease.Manager.revokeClaimed), and removing the mount now
		// would leave it for reap to fail on for ever.
		left, err := lease.LeftUnder(tx, m.Path)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			if !force {
				return logical.Errorf("cannot disable %s: %s being issued while its leases were revoked (first: %s); retry in %s, when the issue's grace is over, or use -force to forget %s",
					m.Path, plural(len(left), "lease was", "leases were"), left[0], c.leases.PendingGrace(), plural1(len(left), "it", "them"))
			}
			if err := lease.Forget(tx, left); err != nil {
				return err
			}
			forgotten = len(left)
		}
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
		resp.AddWarning("Force-removed %s; %s (find %s with `lessor reap -orphans -dry-run`)",
			plural(len(failed), "lease whose revocation failed", "leases whose revocation failed"),
			plural1(len(failed), "its database role may still exist", "their database roles may still exist"),
			plural1(len(failed), "it", "them"))
	}
	if forgotten > 0 {
		resp.AddWarning("Force-removed %s being issued while the mount's leases were revoked; %s (find %s with `lessor reap -orphans -dry-run`)",
			plural(forgotten, "lease", "leases"),
			plural1(forgotten, "its database role may still exist", "their database roles may still exist"),
			plural1(forgotten, "it", "them"))
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
	failpoint.Hit(failpoint.RemountAfterRevoke)
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
		// A credential issued under the old path since its leases were
		// revoked would outlive the move that was to revoke it (and a
		// pending one would be handed out afterwards, its id naming the
		// old path).
		issued, err := lease.IssuedUnder(tx, m.Path)
		if err != nil {
			return err
		}
		if len(issued) > 0 {
			return logical.Errorf("cannot move %s: %s issued under it while its leases were revoked (first: %s); run the move again",
				m.Path, plural(len(issued), "lease was", "leases were"), issued[0])
		}
		if err := checkMountPath(to, others); err != nil {
			return err
		}
		cur.Path = to
		return saveMounts(tx, append(others, cur))
	})
}
