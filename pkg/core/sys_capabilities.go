package core

import (
	"context"
	"strings"

	"github.com/lessorhq/lessor/pkg/logical"
)

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
		// A path no request can take (kv/../sys/policy/x, a//b) allows
		// nothing, whatever glob it would match as a string.
		if _, err := logical.CanonicalPath(p, true); err != nil {
			out[p] = []string{"deny"}
			continue
		}
		// The trailing slash stays: it is part of what a rule names
		// (kv/a/* matches kv/a/, not kv/a), and of the list request the
		// caller asks about.
		out[p] = acl.Capabilities(strings.TrimPrefix(p, "/"))
	}
	if len(paths) == 1 {
		out["capabilities"] = out[paths[0]]
	}
	return &logical.Response{Data: out}, nil
}
