package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Backend returns the backend that serves the auth/token/ paths.
func (s *Store) Backend() logical.Backend { return &backend{s: s} }

type backend struct{ s *Store }

// route is one path of the backend: the operations it accepts, the fields
// it knows (others draw Vault's "ignored" warning) and its handler.
type route struct {
	ops    []logical.Operation
	fields logical.FieldSchema
	handle func(ctx context.Context, req *logical.Request) (*logical.Response, error)
}

var (
	readOrUpdate = []logical.Operation{logical.ReadOperation, logical.UpdateOperation}
	write        = []logical.Operation{logical.CreateOperation, logical.UpdateOperation}
	update       = []logical.Operation{logical.UpdateOperation}

	createFields = logical.FieldSchema{
		"policies":          {Type: logical.TypeCommaStringSlice, Description: "policies of the new token (default: the parent's)"},
		"no_default_policy": {Type: logical.TypeBool, Description: "leave out the default policy"},
		"ttl":               {Type: logical.TypeDurationSecond, Description: "initial TTL"},
		"explicit_max_ttl":  {Type: logical.TypeDurationSecond, Description: "hard limit, renewals included"},
		"period":            {Type: logical.TypeDurationSecond, Description: "periodic token: each renewal grants this again"},
		"num_uses":          {Type: logical.TypeInt, Description: "uses before the token is revoked (0: unlimited)"},
		"no_parent":         {Type: logical.TypeBool, Description: "create an orphan token"},
		"display_name":      {Type: logical.TypeString, Description: "name shown in the audit log"},
		"meta":              {Type: logical.TypeKVPairs, Description: "key=value metadata"},
		"renewable":         {Type: logical.TypeBool, Description: "whether the token may be renewed (default true)"},
		"type":              {Type: logical.TypeString, Description: "service (the only type)"},
		"id":                {Type: logical.TypeString, Description: "not supported: lessor always generates the token"},
	}
	tokenField     = logical.FieldSchema{"token": {Type: logical.TypeString, Description: "the token"}}
	accessorField  = logical.FieldSchema{"accessor": {Type: logical.TypeString, Description: "the token's accessor"}}
	incrementField = logical.FieldSchema{"increment": {Type: logical.TypeDurationSecond, Description: "requested TTL from now"}}
	renewFields    = logical.FieldSchema{"token": tokenField["token"], "increment": incrementField["increment"]}
)

func (s *Store) route(path string) (route, bool) {
	switch path {
	case "create":
		return route{write, createFields, s.handleCreateChild}, true
	case "create-orphan":
		return route{write, createFields, s.handleCreateOrphan}, true
	case "lookup":
		return route{readOrUpdate, tokenField, s.handleLookup}, true
	case "lookup-self":
		return route{readOrUpdate, nil, s.handleLookupSelf}, true
	case "lookup-accessor":
		return route{readOrUpdate, accessorField, s.handleLookupAccessor}, true
	case "renew":
		return route{update, renewFields, s.handleRenew}, true
	case "renew-self":
		return route{update, incrementField, s.handleRenewSelf}, true
	case "revoke":
		return route{update, tokenField, s.handleRevoke}, true
	case "revoke-self":
		return route{update, nil, s.handleRevokeSelf}, true
	case "revoke-accessor":
		return route{update, accessorField, s.handleRevokeAccessor}, true
	case "revoke-orphan":
		return route{update, tokenField, s.handleRevokeOrphan}, true
	}
	return route{}, false
}

func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := strings.Trim(req.Path, "/")
	rt, ok := b.s.route(p)
	if !ok {
		return nil, logical.UnsupportedPath(req)
	}
	allowed := false
	for _, op := range rt.ops {
		allowed = allowed || op == req.Operation
	}
	if !allowed {
		return nil, logical.UnsupportedOperation(req)
	}
	fd, err := logical.ParseFields(rt.fields, req.Data)
	if err != nil {
		return nil, err
	}
	resp, err := rt.handle(ctx, req)
	if err != nil {
		return nil, err
	}
	return logical.WarnIgnored(resp, fd.Unknown), nil
}

// ExistenceCheck reports no check: every write here is an update (or, for
// the create paths, allowed by either capability).
func (b *backend) ExistenceCheck(context.Context, *logical.Request) (bool, bool, error) {
	return false, false, nil
}

// createInput is a create request's fields, parsed.
type createInput struct {
	policies                 []string
	noDefault, noParent      bool
	ttl, explicitMax, period time.Duration
	numUses                  int
	displayName              string
	meta                     map[string]string
	renewable                bool
}

func parseCreate(d map[string]any) (*createInput, error) {
	in := &createInput{renewable: true}
	// The core has already made the list canonical (CanonicalData); a
	// caller that skipped it is held to the same rule.
	ps, err := canonicalPolicies(d["policies"])
	if err != nil {
		return nil, err
	}
	if in.policies, err = logical.ParseCommaStrings(ps); err != nil {
		return nil, logical.Errorf("policies: %v", err)
	}
	bools := []struct {
		name string
		dst  *bool
	}{{"no_default_policy", &in.noDefault}, {"no_parent", &in.noParent}, {"renewable", &in.renewable}}
	for _, b := range bools {
		if v, ok := d[b.name]; ok {
			if *b.dst, err = logical.ParseBool(v); err != nil {
				return nil, logical.Errorf("%s: %v", b.name, err)
			}
		}
	}
	durs := []struct {
		name string
		dst  *time.Duration
	}{{"ttl", &in.ttl}, {"explicit_max_ttl", &in.explicitMax}, {"period", &in.period}}
	for _, f := range durs {
		if *f.dst, err = logical.ParseDuration(d[f.name]); err != nil {
			return nil, logical.Errorf("%s: %v", f.name, err)
		}
		// Token times are whole seconds, as in Vault.
		*f.dst = f.dst.Truncate(time.Second)
	}
	if in.numUses, err = logical.ParseInt(d["num_uses"]); err != nil {
		return nil, logical.Errorf("num_uses: %v", err)
	}
	in.displayName = logical.String(d["display_name"])
	if in.meta, err = parseMeta(d["meta"]); err != nil {
		return nil, err
	}
	if logical.String(d["id"]) != "" {
		return nil, logical.Errorf("custom token IDs are not supported: lessor always generates the token")
	}
	switch t := logical.String(d["type"]); t {
	case "", "service":
	default:
		return nil, logical.Errorf("unsupported token type %q: only service tokens exist", t)
	}
	return in, nil
}

// parseMeta accepts a map, or "k=v" strings (one, a list, or
// comma-separated) as a command line gives them.
func parseMeta(v any) (map[string]string, error) {
	m, err := createFields["meta"].Parse("meta", v)
	if err != nil {
		return nil, err
	}
	return m.(map[string]string), nil
}

// displayName is Vault's: "token-" + name with characters outside
// [a-zA-Z0-9-] replaced by "-" and one trailing "-" trimmed.
func displayName(name string) string {
	if name == "" {
		return "token"
	}
	// Per character, not per byte: "é" becomes one "-", as Vault's regexp
	// replacement makes it.
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, "token-"+name)
	return strings.TrimSuffix(name, "-")
}

func (s *Store) handleCreateChild(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return s.handleCreate(ctx, req, false)
}

func (s *Store) handleCreateOrphan(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return s.handleCreate(ctx, req, true)
}

func (s *Store) handleCreate(ctx context.Context, req *logical.Request, orphanPath bool) (*logical.Response, error) {
	in, err := parseCreate(req.Data)
	if err != nil {
		return nil, err
	}
	parent, err := s.lookup(ctx, req.ClientToken, true)
	if err != nil {
		return nil, fmt.Errorf("parent token lookup failed: %w", err)
	}
	// A use-limited token could escape its limit through children.
	if parent.NumUses != 0 {
		return nil, logical.Errorf("restricted use token cannot generate child tokens")
	}
	if in.numUses < 0 {
		return nil, logical.Errorf("number of uses cannot be negative")
	}
	isSudo := req.HasSudo || req.IsRoot

	// Policies, in Vault's order of cases: none given inherits the parent's
	// (default only if the parent has it); otherwise a plain caller may
	// only narrow, and gets default if the parent has it; a sudo caller may
	// ask for anything and gets default.
	var addDefault bool
	policies := sanitizePolicies(in.policies)
	switch {
	case len(policies) == 0:
		policies = sanitizePolicies(parent.Policies)
	case !isSudo:
		if !subset(policies, sanitizePolicies(parent.Policies)) {
			return nil, logical.Errorf("child policies must be subset of parent")
		}
		addDefault = !in.noDefault && parent.hasPolicy("default")
	default:
		addDefault = !in.noDefault
	}
	if addDefault {
		// sanitizePolicies lets root eclipse default.
		policies = sanitizePolicies(append(policies, "default"))
	}
	if in.noDefault {
		policies = without(policies, "default")
	}
	isRootToken := len(policies) == 1 && policies[0] == "root"
	if isRootToken && !parent.hasPolicy("root") {
		return nil, logical.Errorf("root tokens may not be created without parent token being root")
	}

	e := &Entry{
		Policies:     policies,
		DisplayName:  displayName(in.displayName),
		Path:         "auth/token/" + strings.Trim(req.Path, "/"),
		Meta:         in.meta,
		NumUses:      in.numUses,
		CreationTime: s.now(),
		Parent:       parent.ID,
	}
	switch {
	case in.noParent:
		if !isSudo {
			return nil, logical.Errorf("root or sudo privileges required to create orphan token")
		}
		e.Parent = ""
	case orphanPath:
		// create-orphan is guarded by its own ACL path.
		e.Parent = ""
	}
	e.Orphan = e.Parent == ""

	if in.period > 0 && !isSudo {
		return nil, logical.Errorf("root or sudo privileges required to create periodic token")
	}
	e.ExplicitMaxTTL, e.Period = in.explicitMax, in.period

	resp := &logical.Response{}
	ttl := in.ttl
	// A root token with no TTL and no period never expires.
	if in.period > 0 || in.ttl > 0 || !isRootToken {
		var warnings []string
		ttl, warnings, err = s.calculateTTL(0, in.ttl, in.period, in.explicitMax, e.CreationTime, e.CreationTime)
		if err != nil {
			return nil, logical.Errorf("%v", err)
		}
		resp.Warnings = append(resp.Warnings, warnings...)
	}
	if ttl == 0 && in.explicitMax > 0 {
		ttl = in.explicitMax
	}
	renewable := in.renewable
	if ttl == 0 {
		if parent.TTL != 0 {
			return nil, logical.Errorf("expiring root tokens cannot create non-expiring root tokens")
		}
		renewable = false
	}
	e.TTL, e.Renewable = ttl, renewable

	if s.o.PolicyExists != nil {
		for _, p := range policies {
			if p == "root" {
				continue
			}
			ok, err := s.o.PolicyExists(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("look up policy %q: %w", p, err)
			}
			if !ok {
				resp.AddWarning("Policy %q does not exist", p)
			}
		}
	}

	tok, err := s.create(ctx, e, parent)
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			return nil, fmt.Errorf("parent token lookup failed: %w", err)
		}
		return nil, fmt.Errorf("create token: %w", err)
	}
	resp.Auth = authFor(tok, e, ttl)
	return resp, nil
}

func authFor(token string, e *Entry, ttl time.Duration) *logical.Auth {
	return &logical.Auth{
		ClientToken:   token,
		Accessor:      e.Accessor,
		Policies:      append([]string(nil), e.Policies...),
		TokenPolicies: append([]string(nil), e.Policies...),
		Metadata:      e.Meta,
		Orphan:        e.Orphan,
		LeaseDuration: ttl,
		Renewable:     e.Renewable,
		NumUses:       max(e.NumUses, 0),
	}
}

// calculateTTL is Vault's CalculateTTL for tokens: the layers of
// logical.CalculateTTL with the explicit max as the backend max, plus the
// period, which replaces the TTL on every renewal and is capped only by the
// explicit max (counted from start).
func (s *Store) calculateTTL(increment, backendTTL, period, explicitMax time.Duration, start, now time.Time) (time.Duration, []string, error) {
	if period <= 0 {
		ttl, w, err := logical.CalculateTTL(logical.TTLInputs{
			Increment: increment, BackendTTL: backendTTL, BackendMax: explicitMax,
			SystemDefault: s.o.DefaultTTL, SystemMax: s.o.MaxTTL,
			Start: start, Now: now,
		})
		if w != "" {
			return ttl, []string{w}, err
		}
		return ttl, nil, err
	}
	var warnings []string
	maxTTL := s.o.MaxTTL
	if explicitMax > 0 && explicitMax < maxTTL {
		maxTTL = explicitMax
	}
	ttl := period
	if ttl > maxTTL {
		warnings = append(warnings, fmt.Sprintf("period of %q exceeded the effective max_ttl of %q; period value is capped accordingly",
			logical.HumanDuration(ttl), logical.HumanDuration(maxTTL)))
		ttl = maxTTL
	}
	if explicitMax > 0 {
		remaining := start.Add(explicitMax).Sub(now)
		if remaining <= 0 {
			return 0, warnings, logical.ErrPastMaxTTL
		}
		if ttl > remaining {
			warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
				logical.HumanDuration(ttl), logical.HumanDuration(remaining)))
			ttl = remaining
		}
	}
	return ttl, warnings, nil
}

func subset(sub, set []string) bool {
	for _, p := range sub {
		found := false
		for _, q := range set {
			found = found || p == q
		}
		if !found {
			return false
		}
	}
	return true
}

func without(list []string, drop string) []string {
	out := list[:0:0]
	for _, p := range list {
		if p != drop {
			out = append(out, p)
		}
	}
	return out
}

func (s *Store) handleLookup(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	tok := logical.String(req.Data["token"])
	if tok == "" {
		tok = req.ClientToken
	}
	return s.lookupResponse(ctx, tok, tok == req.ClientToken)
}

func (s *Store) handleLookupSelf(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return s.lookupResponse(ctx, req.ClientToken, true)
}

// lookupResponse answers a lookup by token. The caller's own token may be
// on its last use (pending revocation) and still see itself.
func (s *Store) lookupResponse(ctx context.Context, tok string, self bool) (*logical.Response, error) {
	e, err := s.lookup(ctx, tok, self)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: s.lookupData(e, tok)}, nil
}

func (s *Store) handleLookupAccessor(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	acc := logical.String(req.Data["accessor"])
	if acc == "" {
		return nil, logical.Errorf("missing accessor")
	}
	e, err := s.byAccessor(ctx, acc)
	if err != nil {
		return nil, err
	}
	if e == nil || !usable(e, s.now(), false) {
		return nil, logical.Errorf("invalid accessor")
	}
	// Nor is a token whose parent has expired (see ancestorsUsable).
	if err := s.st.View(ctx, func(tx storage.Tx) error { return ancestorsUsable(tx, e, s.now()) }); err != nil {
		if errors.Is(err, ErrBadToken) {
			return nil, logical.Errorf("invalid accessor")
		}
		return nil, err
	}
	// The token itself is not known here, and is never stored.
	return &logical.Response{Data: s.lookupData(e, "")}, nil
}

func (s *Store) byAccessor(ctx context.Context, acc string) (*Entry, error) {
	var e *Entry
	err := s.st.View(ctx, func(tx storage.Tx) error {
		id, err := tx.Get(accessorPrefix + acc)
		if err != nil || id == nil {
			return err
		}
		e, err = getEntry(tx, string(id))
		return err
	})
	if err != nil {
		return nil, logical.AccessorErrorf(acc, "look up accessor %s: %w", acc, err)
	}
	return e, nil
}

// lookupData is Vault's lookup response; id is the token when the caller
// gave it, "" when looked up by accessor.
func (s *Store) lookupData(e *Entry, id string) map[string]any {
	now := s.now()
	d := map[string]any{
		"accessor":         e.Accessor,
		"creation_time":    e.CreationTime.Unix(),
		"creation_ttl":     int64(e.TTL / time.Second),
		"display_name":     e.DisplayName,
		"entity_id":        "",
		"expire_time":      nil,
		"explicit_max_ttl": int64(e.ExplicitMaxTTL / time.Second),
		"id":               id,
		"issue_time":       e.CreationTime.Format(time.RFC3339Nano),
		"meta":             e.Meta,
		"num_uses":         e.NumUses,
		"orphan":           e.Orphan,
		"path":             e.Path,
		"policies":         append([]string(nil), e.Policies...),
		"renewable":        e.Renewable && !e.ExpireTime.IsZero(),
		"ttl":              int64(0),
		"type":             "service",
	}
	if !e.ExpireTime.IsZero() {
		d["expire_time"] = e.ExpireTime.Format(time.RFC3339Nano)
		d["ttl"] = int64(max(e.ExpireTime.Sub(now), 0) / time.Second)
	}
	if e.Period > 0 {
		d["period"] = int64(e.Period / time.Second)
	}
	if !e.LastRenewal.IsZero() {
		d["last_renewal"] = e.LastRenewal.Format(time.RFC3339Nano)
		d["last_renewal_time"] = e.LastRenewal.Unix()
	}
	return d
}

func (s *Store) handleRenew(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	tok := logical.String(req.Data["token"])
	if tok == "" {
		return nil, logical.Errorf("missing token ID")
	}
	return s.renew(ctx, tok, req.Data["increment"])
}

func (s *Store) handleRenewSelf(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return s.renew(ctx, req.ClientToken, req.Data["increment"])
}

// renew extends a token: the increment (else its creation TTL, else the
// default) counts from now, capped at creation + the effective max; a
// periodic token gets its period again.
func (s *Store) renew(ctx context.Context, tok string, incrementRaw any) (*logical.Response, error) {
	increment, err := logical.ParseDuration(incrementRaw)
	if err != nil {
		return nil, logical.Errorf("increment: %v", err)
	}
	increment = increment.Truncate(time.Second)
	e, err := s.lookup(ctx, tok, false)
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			return nil, logical.Errorf("token not found")
		}
		return nil, err
	}
	if e.ExpireTime.IsZero() {
		return nil, logical.Errorf("lease is not renewable")
	}
	if !e.Renewable {
		return nil, logical.Errorf("token is not renewable")
	}
	now := s.now()
	ttl, warnings, err := s.calculateTTL(increment, e.TTL, e.Period, e.ExplicitMaxTTL, e.CreationTime, now)
	if err != nil {
		return nil, logical.AccessorErrorf(e.Accessor, "renew token %s: %w", e.Accessor, err)
	}
	err = s.st.Update(ctx, func(tx storage.Tx) error {
		cur, err := getEntry(tx, e.ID)
		if err != nil {
			return err
		}
		if cur == nil || !usable(cur, now, false) {
			return ErrBadToken
		}
		cur.LastRenewal = now
		if err := setExpire(tx, cur, now.Add(ttl)); err != nil {
			return err
		}
		e = cur
		return nil
	})
	if errors.Is(err, ErrBadToken) {
		return nil, logical.Errorf("token not found")
	}
	if err != nil {
		return nil, logical.AccessorErrorf(e.Accessor, "renew token %s: %w", e.Accessor, err)
	}
	return &logical.Response{Auth: authFor(tok, e, ttl), Warnings: warnings}, nil
}

func (s *Store) handleRevoke(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	tok := logical.String(req.Data["token"])
	if tok == "" {
		return nil, logical.Errorf("missing token ID")
	}
	return nil, s.revokeToken(ctx, tok)
}

func (s *Store) handleRevokeSelf(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return nil, s.revokeToken(ctx, req.ClientToken)
}

// handleRevokeAccessor revokes the token behind an accessor and its tree;
// an unknown accessor succeeds, like an unknown token, so that a revoke can
// be repeated safely.
func (s *Store) handleRevokeAccessor(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	acc := logical.String(req.Data["accessor"])
	if acc == "" {
		return nil, logical.Errorf("missing accessor")
	}
	e, err := s.byAccessor(ctx, acc)
	if err != nil || e == nil {
		return nil, err
	}
	return nil, s.Revoke(ctx, e)
}

func (s *Store) handleRevokeOrphan(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	tok := logical.String(req.Data["token"])
	if tok == "" {
		return nil, logical.Errorf("missing token ID")
	}
	if !req.HasSudo && !req.IsRoot {
		return nil, logical.Errorf("root or sudo privileges required to revoke and orphan")
	}
	e, err := s.lookup(ctx, tok, false)
	if errors.Is(err, ErrBadToken) {
		return nil, logical.Errorf("token to revoke not found")
	}
	if err != nil {
		return nil, err
	}
	return nil, s.revokeOrphan(ctx, e)
}

// CanonicalData puts a create request's list fields in the shape the
// backend reads them, before the ACL checks them: "policies" and "meta"
// are split on commas into a list of their elements, so that
// allowed_parameters and denied_parameters judge each policy name and
// each key=value pair rather than the string "apps,ops". A policy name
// that the backend would lower-case or trim, and an empty one, are
// refused with the canonical form: mapping them after the check let
// policies=OPS past a deny on "ops". The booleans become true or false,
// so that "1" cannot pass for something other than "true".
func (b *backend) CanonicalData(req *logical.Request) error {
	switch strings.Trim(req.Path, "/") {
	case "create", "create-orphan":
	default:
		return nil
	}
	d := req.Data
	if v, ok := d["policies"]; ok {
		ps, err := canonicalPolicies(v)
		if err != nil {
			return err
		}
		d["policies"] = ps
	}
	if v, ok := d["meta"]; ok {
		switch v.(type) {
		case map[string]any, map[string]string:
		default:
			if pairs, err := logical.ParseCommaStrings(v); err == nil {
				d["meta"] = toAny(pairs)
			}
		}
	}
	for _, name := range []string{"no_default_policy", "no_parent", "renewable"} {
		if v, ok := d[name]; ok {
			if x, err := logical.ParseBool(v); err == nil {
				d[name] = x
			}
		}
	}
	return nil
}

// canonicalPolicies splits a policies value (one comma-separated string
// or a list of them) into the list of names the backend acts on, and
// refuses any name that is not already in canonical form.
func canonicalPolicies(v any) (any, error) {
	var parts []string
	switch x := v.(type) {
	case nil:
		return v, nil
	case string:
		if x == "" {
			return v, nil // no policies: the parent's
		}
		parts = strings.Split(x, ",")
	case []string:
		for _, e := range x {
			parts = append(parts, strings.Split(e, ",")...)
		}
	case []any:
		for _, e := range x {
			parts = append(parts, strings.Split(logical.String(e), ",")...)
		}
	default:
		return v, nil // the backend refuses it
	}
	// The rule is the one sys/policy/<name> applies (policy.NormalizeName),
	// so a name a token may carry is a name a policy can be written under.
	want := make([]string, 0, len(parts))
	for _, p := range parts {
		if norm, _ := policy.NormalizeName(p); norm != "" {
			want = append(want, norm)
		}
	}
	for _, p := range parts {
		switch norm, changed := policy.NormalizeName(p); {
		case norm == "":
			return nil, logical.Errorf("policies: %q holds an empty policy name; use %q", strings.Join(parts, ","), strings.Join(want, ","))
		case changed:
			return nil, logical.Errorf("policies: policy name %q is not canonical: policy names are lower case without surrounding white space; use %q", p, strings.Join(want, ","))
		}
	}
	return toAny(parts), nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// tokenPaths are the backend's paths in the order path-help and completion
// show them; route serves each.
var tokenPaths = []struct{ path, description string }{
	{"create", "create a child token"},
	{"create-orphan", "create an orphan token"},
	{"lookup", "look up a token"},
	{"lookup-self", "look up the calling token"},
	{"lookup-accessor", "look up a token by its accessor"},
	{"renew", "renew a token"},
	{"renew-self", "renew the calling token"},
	{"revoke", "revoke a token and its children"},
	{"revoke-self", "revoke the calling token and its children"},
	{"revoke-accessor", "revoke a token by its accessor"},
	{"revoke-orphan", "revoke a token, leaving its children as orphans"},
}

// PathSpecs declares the backend's paths.
func (b *backend) PathSpecs() []logical.PathSpec { return PathSpecs() }

// PathSpecs declares the token backend's paths from the same routes that
// serve them (operations and fields), for path-help and completion.
func PathSpecs() []logical.PathSpec {
	var out []logical.PathSpec
	for _, p := range tokenPaths {
		// The routes' handlers are only named here, never called.
		rt, _ := (*Store)(nil).route(p.path)
		ops := map[logical.Operation]logical.FieldSchema{}
		for _, op := range rt.ops {
			ops[op] = rt.fields
		}
		out = append(out, logical.PathSpec{Pattern: p.path, Description: p.description, Operations: ops})
	}
	return out
}
