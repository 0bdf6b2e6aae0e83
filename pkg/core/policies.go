package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
)

const policyPrefix = "sys/policy/"

type storedPolicy struct {
	Name string `json:"name"`
	Raw  string `json:"raw"`
}

// loadPolicy returns a policy's text; the built-in default exists until
// someone writes their own.
func loadPolicy(tx storage.Tx, name string) (string, bool, error) {
	raw, err := tx.Get(policyPrefix + name)
	if err != nil {
		return "", false, err
	}
	if raw == nil {
		if name == "default" {
			return policy.DefaultPolicy, true, nil
		}
		return "", false, nil
	}
	var sp storedPolicy
	if err := json.Unmarshal(raw, &sp); err != nil {
		return "", false, fmt.Errorf("decode policy %s: %w", name, err)
	}
	return sp.Raw, true, nil
}

func (c *Core) policyExists(ctx context.Context, name string) (bool, error) {
	if name == "root" {
		return true, nil
	}
	var ok bool
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		_, ok, err = loadPolicy(tx, name)
		return err
	})
	return ok, err
}

// aclFor builds the ACL of a token's policies. Policies that no longer
// exist grant nothing.
func (c *Core) aclFor(ctx context.Context, names []string) (*policy.ACL, error) {
	var acl *policy.ACL
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		acl, err = aclForTx(tx, names)
		return err
	})
	return acl, err
}

// aclForTx is aclFor inside a transaction the caller holds.
func aclForTx(tx storage.Tx, names []string) (*policy.ACL, error) {
	var ps []*policy.Policy
	for _, n := range names {
		if n == "root" {
			ps = append(ps, &policy.Policy{Name: "root"})
			continue
		}
		text, ok, err := loadPolicy(tx, n)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		p, err := policy.Parse(n, text)
		if err != nil {
			return nil, fmt.Errorf("stored policy %s: %w", n, err)
		}
		ps = append(ps, p)
	}
	return policy.NewACL(ps...)
}

func (c *Core) policyNames(ctx context.Context) ([]string, error) {
	names := map[string]bool{"default": true}
	err := c.store.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(policyPrefix, func(k string) error {
			names[strings.TrimPrefix(k, policyPrefix)] = true
			return nil
		})
	})
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, err
}

// handlePolicy serves sys/policy[/name] and sys/policies/acl[/name].
func (c *Core) handlePolicy(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if name == "" {
		if req.Operation != logical.ListOperation && req.Operation != logical.ReadOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		names, err := c.policyNames(ctx)
		if err != nil {
			return nil, err
		}
		names = append(names, "root")
		return &logical.Response{Data: map[string]any{"keys": names, "policies": names}}, nil
	}
	norm, changed := policy.NormalizeName(name)
	switch req.Operation {
	case logical.ReadOperation:
		if norm == "root" {
			return nil, nil
		}
		var text string
		var ok bool
		err := c.store.View(ctx, func(tx storage.Tx) error {
			var err error
			text, ok, err = loadPolicy(tx, norm)
			return err
		})
		if err != nil || !ok {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"name": norm, "policy": text, "rules": text}}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		if norm == "root" {
			return nil, logical.Errorf("cannot update %q policy", "root")
		}
		text := logical.String(req.Data["policy"])
		if text == "" {
			text = logical.String(req.Data["rules"])
		}
		if strings.TrimSpace(text) == "" {
			return nil, logical.Errorf("policy text is empty")
		}
		if _, err := policy.Parse(norm, text); err != nil {
			return nil, logical.Errorf("failed to parse policy: %v", err)
		}
		raw, err := json.Marshal(storedPolicy{Name: norm, Raw: text})
		if err != nil {
			return nil, err
		}
		if err := c.store.Update(ctx, func(tx storage.Tx) error { return tx.Put(policyPrefix+norm, raw) }); err != nil {
			return nil, err
		}
		resp := &logical.Response{Data: map[string]any{"name": norm}}
		if changed {
			resp.AddWarning("Policy name was converted from %q to %q", name, norm)
		}
		return resp, nil
	case logical.DeleteOperation:
		switch norm {
		case "default":
			return nil, logical.Errorf("cannot delete default policy")
		case "root":
			return nil, logical.Errorf("cannot delete %q policy", "root")
		}
		return nil, c.store.Update(ctx, func(tx storage.Tx) error { return tx.Delete(policyPrefix + norm) })
	}
	return nil, logical.ErrUnsupportedOperation
}
