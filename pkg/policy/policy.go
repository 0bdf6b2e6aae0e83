// Package policy parses ACL policies and decides, for a set of policies,
// what a caller may do on a path. It follows HashiCorp Vault's policy
// language and matching rules, so that a policy written for Vault means the
// same thing here.
//
// A policy is HCL (or the equivalent JSON) made of `path "<pattern>" {...}`
// blocks. Parsing is strict: an unknown key, an unknown capability, a value
// of the wrong type, an empty pattern or the forbidden `+*` is an error that
// names the line it was found on (*ParseError). A policy that parses is
// therefore exactly what its author meant, never a silently narrower one.
//
// Patterns: a trailing `*` makes a prefix pattern; `+` stands for exactly
// one path segment; any other character is literal. An ACL built from
// several policies first merges blocks with the identical pattern (their
// capabilities are unioned, and deny wins), then answers a request from the
// single pattern that wins: an exact pattern equal to the path beats every
// glob; otherwise the highest-priority pattern among the longest matching
// prefix pattern and every matching `+` pattern, by Vault's five ordered
// rules. Nothing matching means deny.
//
// The package never prints, never touches storage and holds no global
// state; callers keep the policy text and build an ACL per request.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Names of the two built-in policies.
const (
	// RootPolicyName is the implicit policy that allows everything. It is
	// never stored and cannot be written.
	RootPolicyName = "root"
	// DefaultPolicyName is the policy attached to every token unless it
	// is created with no_default_policy.
	DefaultPolicyName = "default"
)

// Capabilities a path block may grant.
const (
	CapCreate = "create"
	CapRead   = "read"
	CapUpdate = "update"
	CapPatch  = "patch"
	CapDelete = "delete"
	CapList   = "list"
	CapSudo   = "sudo"
	CapDeny   = "deny"
	// CapRoot is never written in a policy; Capabilities reports it for a
	// root ACL, as Vault does.
	CapRoot = "root"
)

// capBits gives every capability a bit so that merging and checking are
// set operations. Vault's newer capabilities (subscribe, recover, scan)
// guard features lessor does not have, so a policy naming them is
// rejected rather than accepted with a grant that could never mean
// anything here.
var capBits = map[string]uint16{
	CapCreate: 1 << 0,
	CapRead:   1 << 1,
	CapUpdate: 1 << 2,
	CapPatch:  1 << 3,
	CapDelete: 1 << 4,
	CapList:   1 << 5,
	CapSudo:   1 << 6,
	CapDeny:   1 << 7,
}

// legacyPolicies maps the pre-0.9 `policy = "..."` shorthand onto
// capabilities, as Vault still does.
var legacyPolicies = map[string][]string{
	"deny":  {CapDeny},
	"read":  {CapRead, CapList},
	"write": {CapCreate, CapRead, CapUpdate, CapDelete, CapList},
	"sudo":  {CapCreate, CapRead, CapUpdate, CapDelete, CapList, CapSudo},
}

// Policy is one parsed policy.
type Policy struct {
	// Name is the normalized name (see NormalizeName).
	Name string
	// Raw is the text the policy was parsed from, unchanged.
	Raw string
	// Paths holds the path blocks in the order they were written. Two
	// blocks with the same pattern stay separate here; NewACL merges them.
	Paths []PathRules
}

// PathRules is one `path "<pattern>" { ... }` block.
type PathRules struct {
	// Path is the pattern with one leading "/" removed (as Vault does),
	// including its trailing "*" when it has one.
	Path string
	// Prefix is true when Path ends in "*": it then matches every path
	// that starts with Path minus the "*".
	Prefix bool
	// HasSegmentWildcard is true when Path uses "+" as a segment (it is
	// "+", starts with "+/" or contains "/+").
	HasSegmentWildcard bool
	// Capabilities are the granted capabilities, sorted and without
	// duplicates; when the block names deny they are just ["deny"].
	// The legacy `policy` value is already expanded into them.
	Capabilities []string
	// RequiredParameters must all be present in a request's data.
	RequiredParameters []string
	// AllowedParameters and DeniedParameters map a lower-cased parameter
	// name (or "*") to its listed values, each in its canonical string
	// form; an empty list means any value. A nil map means the block
	// sets no such constraint.
	AllowedParameters map[string][]string
	DeniedParameters  map[string][]string
	// MinWrappingTTL and MaxWrappingTTL: in Vault, a block that sets
	// either allows a request only with a wrapped response. lessor has no
	// response wrapping, so such a block allows no request (it fails
	// closed, never granting the unwrapped response Vault refuses).
	MinWrappingTTL, MaxWrappingTTL time.Duration
	// MFAMethods and control_group are Vault Enterprise features: a block
	// that sets either asks for an approval lessor cannot obtain, so it
	// allows no request (it fails closed, as for the wrapping TTLs).
	MFAMethods []string
	// ControlGroup is true when the block sets control_group.
	ControlGroup bool
	// Comment is the block's `comment` value.
	Comment string
	// Line is where the block starts in Raw, for messages.
	Line int
}

// Unmet names what the block asks for that lessor cannot give, "" for
// nothing: such a block allows no request (a deny block needs nothing).
func (pr *PathRules) Unmet() string {
	if slices.Contains(pr.Capabilities, CapDeny) {
		return ""
	}
	switch {
	case pr.MinWrappingTTL > 0 || pr.MaxWrappingTTL > 0:
		return "a wrapped response (min_wrapping_ttl, max_wrapping_ttl)"
	case len(pr.MFAMethods) > 0:
		return "an MFA check (mfa_methods)"
	case pr.ControlGroup:
		return "a control group's approval (control_group)"
	}
	return ""
}

// ParseError is a policy that cannot be parsed. Line is 0 when the
// position is unknown.
type ParseError struct {
	Line int
	// Path is the pattern of the block at fault as written, "" at the
	// top level.
	Path string
	// Msg is the reason, in lower case.
	Msg string
	// inBlock is set when the error is inside a path block, so that an
	// empty pattern still names the block ("path \"\": empty path").
	inBlock bool
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.inBlock {
		fmt.Fprintf(&b, "path %q: ", e.Path)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// MaxSize is the largest policy text, in bytes, that lessor parses. Every
// request by a token parses its policies again, and a 13 MB policy took
// 3.4 s and 700 MB to parse; real policies are a few kilobytes.
const MaxSize = 1 << 20

// ErrTooLarge is returned for a policy text longer than MaxSize.
var ErrTooLarge = fmt.Errorf("policy is larger than the limit of %d bytes (1 MiB)", MaxSize)

// ErrInvalidName is returned (wrapped) for a policy name that cannot be
// used.
var ErrInvalidName = errors.New("invalid policy name")

// NormalizeName returns the name lower-cased and trimmed of surrounding
// white space, as every policy name is stored, and whether that changed
// it (the CLI then warns, as Vault does).
func NormalizeName(name string) (norm string, changed bool) {
	norm = strings.ToLower(strings.TrimSpace(name))
	return norm, norm != name
}

// ValidateName reports whether a normalized name can name a policy: it is
// not empty and holds no "/" (names are storage keys and path segments of
// sys/policy/<name>) and no control characters (they would corrupt
// terminal output and audit lines).
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if strings.Contains(name, "/") {
		return fmt.Errorf("%w %q: contains \"/\"", ErrInvalidName, name)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w %q: contains a control character", ErrInvalidName, name)
	}
	return nil
}

// Parse parses a policy written in HCL or JSON. The name is normalized
// (NormalizeName), must be valid (ValidateName) and may not be root. A
// `name` key inside the text is accepted and ignored, as in Vault, where
// the name under which a policy is written is the one that counts.
//
// An error in the text is a *ParseError; the caller knows which policy it
// was parsing and adds that.
func Parse(name, text string) (*Policy, error) {
	norm, _ := NormalizeName(name)
	if err := ValidateName(norm); err != nil {
		return nil, err
	}
	// The root policy is implicit; a parsed policy under its name would
	// make NewACL grant everything.
	if norm == RootPolicyName {
		return nil, fmt.Errorf("%w %q: reserved for the implicit root policy", ErrInvalidName, norm)
	}
	p, _, err := parse(text)
	if err != nil {
		return nil, err
	}
	p.Name = norm
	return p, nil
}

// sortedCaps returns the capabilities in bits, sorted by name.
func sortedCaps(bits uint16) []string {
	var out []string
	for name, bit := range capBits {
		if bits&bit != 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
