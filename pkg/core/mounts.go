package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

const mountsKey = "core/mounts"

// MountEntry is one row of the mount table.
type MountEntry struct {
	Path        string      `json:"path"` // with a trailing slash: "database/"
	Type        string      `json:"type"`
	Description string      `json:"description"`
	UUID        string      `json:"uuid"`
	Accessor    string      `json:"accessor"`
	Config      MountConfig `json:"config"`
}

// MountConfig holds a mount's tuned TTLs; zero inherits the system's.
type MountConfig struct {
	DefaultLeaseTTL time.Duration `json:"default_lease_ttl"`
	MaxLeaseTTL     time.Duration `json:"max_lease_ttl"`
}

// reservedPrefixes cannot hold user mounts.
var reservedPrefixes = []string{"sys/", "auth/"}

func loadMounts(tx storage.Tx) ([]*MountEntry, error) {
	raw, err := tx.Get(mountsKey)
	if err != nil || raw == nil {
		return nil, err
	}
	var ms []*MountEntry
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, fmt.Errorf("decode mount table: %w", err)
	}
	return ms, nil
}

func saveMounts(tx storage.Tx, ms []*MountEntry) error {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Path < ms[j].Path })
	raw, err := json.Marshal(ms)
	if err != nil {
		return err
	}
	return tx.Put(mountsKey, raw)
}

// canonicalMountPath returns a mount (or audit device) path with its
// trailing slash, which it may be given with or without. Any other
// difference from the canonical form (white space or slashes around it,
// an empty segment) is refused rather than mapped: the ACL was checked on
// the path as written, so the mount acted on must be that one.
func canonicalMountPath(p string) (string, error) {
	q := strings.TrimSuffix(p, "/")
	if q == "" {
		return "", nil
	}
	if c, err := logical.CanonicalPath(q, false); err != nil || c != q {
		return "", logical.Errorf("invalid mount path %q: write it without surrounding white space or slashes and without empty segments", p)
	}
	return q + "/", nil
}

// checkMountPath refuses paths that are reserved, malformed, or that
// overlap an existing mount in either direction.
func checkMountPath(path string, existing []*MountEntry) error {
	if path == "" {
		return logical.Errorf("mount path cannot be empty")
	}
	if !utf8.ValidString(path) {
		// The mount table is stored as JSON, which would turn the bad bytes
		// into U+FFFD: the mount would exist but never match its own path.
		return logical.Errorf("invalid mount path %q: it must be valid UTF-8", path)
	}
	for _, r := range reservedPrefixes {
		if strings.HasPrefix(path, r) || path == strings.TrimSuffix(r, "/")+"/" {
			return logical.Errorf("cannot mount under %q: the path is reserved", r)
		}
	}
	for _, seg := range strings.Split(strings.TrimSuffix(path, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return logical.Errorf("invalid mount path %q", path)
		}
		for _, r := range seg {
			if r < 0x20 || r == 0x7f || r == '*' || r == '+' {
				return logical.Errorf("invalid mount path %q: it may not contain control characters, '*' or '+'", path)
			}
		}
	}
	for _, m := range existing {
		switch {
		case m.Path == path:
			return &logical.CodedError{Status: 409, Msg: fmt.Sprintf("path is already in use at %s", path)}
		case strings.HasPrefix(path, m.Path):
			return &logical.CodedError{Status: 409, Msg: fmt.Sprintf("cannot mount %s inside existing mount %s", path, m.Path)}
		case strings.HasPrefix(m.Path, path):
			return &logical.CodedError{Status: 409, Msg: fmt.Sprintf("cannot mount %s: existing mount %s is inside it", path, m.Path)}
		}
	}
	return nil
}

// findMount returns the mount with the longest path that prefixes p.
func findMount(ms []*MountEntry, p string) *MountEntry {
	var best *MountEntry
	for _, m := range ms {
		if strings.HasPrefix(p+"/", m.Path) && (best == nil || len(m.Path) > len(best.Path)) {
			best = m
		}
	}
	return best
}

// mounts reads the mount table.
func (c *Core) mounts(ctx context.Context) ([]*MountEntry, error) {
	var ms []*MountEntry
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ms, err = loadMounts(tx)
		return err
	})
	return ms, err
}

func (c *Core) mountByUUID(ctx context.Context, uuid string) (*MountEntry, error) {
	ms, err := c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.UUID == uuid {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no mount with id %s (was it disabled?)", uuid)
}

func mountData(m *MountEntry) map[string]any {
	return map[string]any{
		"type":        m.Type,
		"description": m.Description,
		"accessor":    m.Accessor,
		"uuid":        m.UUID,
		"config": map[string]any{
			"default_lease_ttl": int64(m.Config.DefaultLeaseTTL / time.Second),
			"max_lease_ttl":     int64(m.Config.MaxLeaseTTL / time.Second),
		},
	}
}
