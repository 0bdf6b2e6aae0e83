package policy

import (
	"fmt"
	"strings"

	"github.com/lessorhq/lessor/pkg/logical"
)

// ACL answers what a set of policies allows. It is immutable and safe for
// concurrent use.
type ACL struct {
	root bool
	// exact holds the patterns without wildcards, prefix the `*`
	// patterns keyed without their `*`, segment the `+` patterns (with
	// or without a trailing `*`).
	exact   map[string]*rule
	prefix  map[string]*rule
	segment []*rule
	// longestPrefix bounds the prefix lookup.
	longestPrefix int
}

// rule is the merge of every block, across policies, with one pattern.
type rule struct {
	pattern string
	bits    uint16
	// The parameter constraints; see PathRules.
	required         []string
	allowed, denied  map[string][]string
	isPrefix         bool
	firstWildcard    int
	segments         []string // the pattern without its `*`, split on "/"
	wildcardSegments int
	// unmet: a merged block asks for what lessor cannot give, so the rule
	// allows no request: a wrapped response (min_wrapping_ttl or
	// max_wrapping_ttl: Vault then allows only a request whose response
	// is wrapped, and lessor never wraps one), an MFA check or a control
	// group's approval.
	unmet bool
}

// Result is the answer for one request.
type Result struct {
	// Allowed is true when the request may proceed.
	Allowed bool
	// Sudo is true when the winning rule grants sudo (or the ACL is
	// root), which root-protected paths need in addition to the
	// operation's capability.
	Sudo bool
	// Capabilities are those of the winning rule, sorted; ["root"] for a
	// root ACL and ["deny"] when nothing is granted.
	Capabilities []string
}

// NewACL merges policies into an ACL. Nil policies are skipped (a token
// may name a policy that was deleted since). A policy named root makes a
// root ACL that allows everything; the other policies then add nothing, so
// they are not merged.
func NewACL(policies ...*Policy) (*ACL, error) {
	a := &ACL{exact: map[string]*rule{}, prefix: map[string]*rule{}}
	for _, p := range policies {
		if p != nil && p.Name == RootPolicyName {
			a.root = true
			return a, nil
		}
	}
	byPattern := map[string]*rule{}
	var order []*rule
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, pr := range p.Paths {
			pattern := pr.Path
			if pattern == "" || strings.Contains(pattern, "+*") {
				return nil, fmt.Errorf("policy %q: invalid pattern %q", p.Name, pr.Path)
			}
			var bits uint16
			for _, c := range pr.Capabilities {
				bit, ok := capBits[c]
				if !ok {
					return nil, fmt.Errorf("policy %q: path %q: invalid capability %q", p.Name, pr.Path, c)
				}
				bits |= bit
			}
			r, ok := byPattern[pattern]
			if !ok {
				r = newRule(pattern)
				byPattern[pattern] = r
				order = append(order, r)
			}
			r.merge(bits, &pr)
		}
	}
	for _, r := range order {
		switch {
		case isSegmentWildcard(r.pattern):
			a.segment = append(a.segment, r)
		case r.isPrefix:
			key := strings.TrimSuffix(r.pattern, "*")
			a.prefix[key] = r
			a.longestPrefix = max(a.longestPrefix, len(key))
		default:
			a.exact[r.pattern] = r
		}
	}
	return a, nil
}

func newRule(pattern string) *rule {
	r := &rule{pattern: pattern, isPrefix: strings.HasSuffix(pattern, "*")}
	body := strings.TrimSuffix(pattern, "*")
	if isSegmentWildcard(pattern) {
		r.firstWildcard = strings.Index(pattern, "+")
		r.segments = strings.Split(body, "/")
		for _, s := range r.segments {
			if s == "+" {
				r.wildcardSegments++
			}
		}
	} else {
		// For a prefix pattern the first glob is its `*`.
		r.firstWildcard = len(body)
	}
	return r
}

// merge adds one block with this rule's pattern. As in Vault, deny wins
// and clears the parameters; otherwise capabilities are unioned, required
// parameters unioned, and allowed or denied values of the same parameter
// joined, an empty list (any value) absorbing the other. A block without
// parameter constraints does not lift another block's constraints; that
// is Vault's behaviour, and the safer one.
func (r *rule) merge(bits uint16, pr *PathRules) {
	deny := capBits[CapDeny]
	if r.bits&deny != 0 {
		return
	}
	if bits&deny != 0 {
		r.bits = deny
		r.required, r.allowed, r.denied = nil, nil, nil
		return
	}
	r.bits |= bits
	if pr.Unmet() != "" {
		r.unmet = true
	}
	for _, name := range pr.RequiredParameters {
		if !contains(r.required, name) {
			r.required = append(r.required, name)
		}
	}
	r.allowed = mergeParams(r.allowed, pr.AllowedParameters)
	r.denied = mergeParams(r.denied, pr.DeniedParameters)
}

func mergeParams(into, from map[string][]string) map[string][]string {
	if len(from) == 0 {
		return into
	}
	if into == nil {
		into = map[string][]string{}
	}
	for name, values := range from {
		old, ok := into[name]
		switch {
		case !ok:
			into[name] = append([]string{}, values...)
		case len(old) == 0 || len(values) == 0:
			into[name] = []string{}
		default:
			into[name] = append(old, values...)
		}
	}
	return into
}

// IsRoot reports whether the ACL holds the root policy.
func (a *ACL) IsRoot() bool { return a.root }

// Capabilities returns what the ACL grants on path, sorted: ["root"] for
// a root ACL, ["deny"] when nothing is granted. The path is looked up as
// for a list, so "secret/foo/" also finds an exact rule on "secret/foo",
// as in Vault's sys/capabilities.
func (a *ACL) Capabilities(path string) []string {
	if a.root {
		return []string{CapRoot}
	}
	return capsOf(a.lookup(path, true))
}

func capsOf(r *rule) []string {
	// A rule that asks for what lessor cannot give grants nothing, and
	// says so: callers (exec's check that it may revoke what it issues)
	// act on the capabilities.
	if r == nil || r.bits == 0 || r.bits&capBits[CapDeny] != 0 || r.unmet {
		return []string{CapDeny}
	}
	return sortedCaps(r.bits)
}

// Allow decides one request. The operation needs the capability of the
// same name; for read, create, update and patch the request's data must
// also satisfy the winning rule's parameter constraints.
func (a *ACL) Allow(op logical.Operation, path string, data map[string]any) Result {
	if a.root {
		return Result{Allowed: true, Sudo: true, Capabilities: []string{CapRoot}}
	}
	r := a.lookup(path, op == logical.ListOperation)
	res := Result{Capabilities: capsOf(r)}
	if r == nil || r.bits&capBits[CapDeny] != 0 || r.unmet {
		return res
	}
	res.Sudo = r.bits&capBits[CapSudo] != 0
	want := string(op)
	bit, ok := capBits[want]
	if !ok || want == CapSudo || want == CapDeny || r.bits&bit == 0 {
		return res
	}
	switch want {
	case CapRead, CapCreate, CapUpdate, CapPatch:
		if !r.paramsAllow(data) {
			return res
		}
	}
	res.Allowed = true
	return res
}

// lookup finds the single rule that governs path: an exact rule on the
// path (for a list, also on the path without its trailing "/"), else the
// highest-priority glob rule, else (for a list of "x/") the highest glob
// rule for "x". Only that rule counts, whatever other rules say.
func (a *ACL) lookup(path string, list bool) *rule {
	if r, ok := a.exact[path]; ok {
		return r
	}
	trimmed := strings.TrimSuffix(path, "/")
	if list {
		if r, ok := a.exact[trimmed]; ok {
			return r
		}
	}
	if r := a.glob(path); r != nil {
		return r
	}
	if list && trimmed != path {
		return a.glob(trimmed)
	}
	return nil
}

// glob returns the highest-priority rule among the longest matching
// prefix rule and every matching segment rule.
func (a *ACL) glob(path string) *rule {
	var best *rule
	for n := min(len(path), a.longestPrefix); n >= 0; n-- {
		if r, ok := a.prefix[path[:n]]; ok {
			best = r
			break
		}
	}
	if len(a.segment) == 0 {
		return best
	}
	parts := strings.Split(path, "/")
	for _, r := range a.segment {
		if r.matchSegments(parts) && (best == nil || lowerPriority(best, r)) {
			best = r
		}
	}
	return best
}

// matchSegments reports whether a `+` pattern matches a path split on
// "/": a `+` matches any one segment, other segments match literally,
// and a trailing `*` makes the last segment a prefix and allows more
// segments after it.
func (r *rule) matchSegments(parts []string) bool {
	if len(parts) < len(r.segments) || (!r.isPrefix && len(parts) != len(r.segments)) {
		return false
	}
	last := len(r.segments) - 1
	for i, seg := range r.segments {
		switch {
		case seg == "+":
		case i == last && r.isPrefix:
			if !strings.HasPrefix(parts[i], seg) {
				return false
			}
		case parts[i] != seg:
			return false
		}
	}
	return true
}

// lowerPriority reports whether p has lower priority than q, by Vault's
// rules in order: the first wildcard comes earlier; p is a prefix
// pattern and q is not; p has more `+` segments; p is shorter; p sorts
// first.
func lowerPriority(p, q *rule) bool {
	if p.firstWildcard != q.firstWildcard {
		return p.firstWildcard < q.firstWildcard
	}
	if p.isPrefix != q.isPrefix {
		return p.isPrefix
	}
	if p.wildcardSegments != q.wildcardSegments {
		return p.wildcardSegments > q.wildcardSegments
	}
	pb, qb := strings.TrimSuffix(p.pattern, "*"), strings.TrimSuffix(q.pattern, "*")
	if len(pb) != len(qb) {
		return len(pb) < len(qb)
	}
	return pb < qb
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
