package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

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
	// JSON escaping at most sextuples a text; a record larger than that
	// bound is refused before it costs a decode.
	if len(raw) > 6*policy.MaxSize+1024 {
		return "", false, fmt.Errorf("stored policy %s: %w; delete it and write a smaller one", name, policy.ErrTooLarge)
	}
	var sp storedPolicy
	if err := json.Unmarshal(raw, &sp); err != nil {
		return "", false, fmt.Errorf("decode policy %s: %w", name, err)
	}
	if len(sp.Raw) > policy.MaxSize {
		return "", false, fmt.Errorf("stored policy %s: %w; delete it and write a smaller one", name, policy.ErrTooLarge)
	}
	return sp.Raw, true, nil
}

func (c *Core) policyExists(ctx context.Context, name string) (bool, error) {
	if name == "root" {
		return true, nil
	}
	ok := name == "default"
	err := c.store.View(ctx, func(tx storage.Tx) error {
		raw, err := tx.Get(policyPrefix + name)
		ok = ok || raw != nil
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

// policyKeys are the storage keys of the named policies.
func policyKeys(names []string) []string {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = policyPrefix + n
	}
	return keys
}

// stillAllowedTx returns a PermissionError unless the token's policies, as
// stored in tx, still grant what pre.acl granted the request (op on
// fullPath with data, and sudo where the path needs it). The ACL is built
// again only if a policy's record changed since pre was read.
func stillAllowedTx(tx storage.Tx, pre *prefetched, op logical.Operation, fullPath string, data map[string]any) error {
	names := pre.token.Policies
	cur, err := storage.GetMany(tx, policyKeys(names))
	if err != nil {
		return err
	}
	if slices.EqualFunc(cur, pre.policies, bytes.Equal) {
		return nil
	}
	acl, err := aclForTx(tx, names)
	if err != nil {
		return err
	}
	res := acl.Allow(op, fullPath, data)
	if res.Allowed && (res.Sudo || !needsSudo(fullPath, op)) {
		return nil
	}
	return &PermissionError{Operation: op, Path: fullPath, Reason: "the token's policies changed while the request ran and no longer grant it; nothing was issued"}
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
		p, err := parsedPolicy(n, text)
		if err != nil {
			return nil, fmt.Errorf("stored policy %s: %w", n, err)
		}
		ps = append(ps, p)
	}
	return policy.NewACL(ps...)
}

// parsed holds the policies aclForTx parsed, by name and text. Every
// request builds its token's ACL from the stored texts, and a policy of a
// megabyte takes its parser a large part of a second: whoever may write
// one that tokens hold made each of their requests cost that much CPU.
// NewACL only reads a Policy, so one may serve many requests at once.
var parsed struct {
	sync.Mutex
	m     map[policyText]*policy.Policy
	bytes int // the length of the texts in m
}

type policyText struct{ name, text string }

// maxParsedBytes bounds the texts in parsed, each counted with
// parsedEntryCost, and so the memory the parsed policies take: past it,
// the cache starts again empty.
const maxParsedBytes = 8 << 20

// parsedEntryCost is what an entry of parsed takes beside its text: the
// parsed Policy, the key and the map's own. Counted by their text alone,
// eight megabytes of policies of a few bytes (a policy writer's to make,
// and a token's requests to parse) held a million entries and hundreds of
// megabytes.
const parsedEntryCost = 512

// parsedPolicy is policy.Parse(name, text), from parsed when it is there.
func parsedPolicy(name, text string) (*policy.Policy, error) {
	key := policyText{name, text}
	parsed.Lock()
	p := parsed.m[key]
	parsed.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := policy.Parse(name, text)
	if err != nil {
		return nil, err
	}
	cost := len(text) + parsedEntryCost
	parsed.Lock()
	if parsed.m == nil || parsed.bytes+cost > maxParsedBytes {
		parsed.m, parsed.bytes = map[policyText]*policy.Policy{}, 0
	}
	parsed.m[key] = p
	parsed.bytes += cost
	parsed.Unlock()
	return p, nil
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

// checkPolicyName refuses a policy name in a request path that is not in
// the canonical form every policy is stored under (lower case, no white
// space around it). Vault lower-cases it after the ACL check, so a deny on
// sys/policy/ops did not stop a write to sys/policy/OPS; lessor refuses
// instead, naming the canonical form.
func checkPolicyName(name string) error {
	if norm, changed := policy.NormalizeName(name); changed {
		return logical.Errorf("policy name %q is not canonical: policy names are lower case without surrounding white space; use %q", name, norm)
	}
	return nil
}

// handlePolicy serves sys/policy[/name] and sys/policies/acl[/name].
func (c *Core) handlePolicy(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if name == "" {
		if req.Operation != logical.ListOperation && req.Operation != logical.ReadOperation {
			return nil, logical.UnsupportedOperation(req)
		}
		names, err := c.policyNames(ctx)
		if err != nil {
			return nil, err
		}
		names = append(names, "root")
		return &logical.Response{Data: map[string]any{"keys": names, "policies": names}}, nil
	}
	if err := checkPolicyName(name); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		if name == "root" {
			return nil, nil
		}
		var text string
		var ok bool
		err := c.store.View(ctx, func(tx storage.Tx) error {
			var err error
			text, ok, err = loadPolicy(tx, name)
			return err
		})
		if err != nil || !ok {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"name": name, "policy": text, "rules": text}}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		if name == "root" {
			return nil, logical.Errorf("cannot update %q policy", "root")
		}
		text := logical.String(req.Data["policy"])
		if text == "" {
			text = logical.String(req.Data["rules"])
		}
		if strings.TrimSpace(text) == "" {
			return nil, logical.Errorf("policy text is empty")
		}
		if len(text) > policy.MaxSize {
			return nil, logical.Errorf("policy %s is %d bytes, larger than the limit of %d bytes (1 MiB)", name, len(text), policy.MaxSize)
		}
		parsed, err := policy.Parse(name, text)
		if err != nil {
			return nil, logical.Errorf("failed to parse policy: %v", err)
		}
		raw, err := json.Marshal(storedPolicy{Name: name, Raw: text})
		if err != nil {
			return nil, err
		}
		if err := c.store.Update(ctx, func(tx storage.Tx) error { return tx.Put(policyPrefix+name, raw) }); err != nil {
			return nil, err
		}
		resp := &logical.Response{Data: map[string]any{"name": name}}
		for _, pr := range parsed.Paths {
			if what := pr.Unmet(); what != "" {
				resp.AddWarning("path %q (line %d): this block asks for %s, which lessor cannot give, so it allows no request", pr.Path, pr.Line, what)
			}
		}
		return resp, nil
	case logical.DeleteOperation:
		switch name {
		case "default":
			return nil, logical.Errorf("cannot delete default policy")
		case "root":
			return nil, logical.Errorf("cannot delete %q policy", "root")
		}
		return nil, c.store.Update(ctx, func(tx storage.Tx) error { return tx.Delete(policyPrefix + name) })
	}
	return nil, logical.UnsupportedOperation(req)
}
