// Package passwordpolicy reads Vault's password policies and generates
// passwords that follow them, for sites whose rules say how long a
// password is and which kinds of character it must hold.
//
// A policy is HCL (or JSON):
//
//	length = 24
//	rule "charset" {
//	  charset   = "0123456789"
//	  min-chars = 2
//	}
//
// As in Vault, a password is drawn rune by rune, uniformly from the
// union of every rule's charset, and the whole candidate is drawn again
// until every rule holds (one rune may count for several rules). So every
// acceptable password is equally likely; nothing is placed on purpose.
//
// What it promises beyond Vault: a policy that random draws would almost
// never satisfy is refused by Parse, so a policy that saves is one that
// generates (Vault saves it and times out later, at each use). Charsets
// are printable ASCII only, because lessor sends passwords to PostgreSQL
// as SCRAM verifiers, which clients compute the same way only for ASCII.
package passwordpolicy

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/lessorhq/lessor/pkg/hclnest"
	"github.com/lessorhq/lessor/pkg/randstr"
)

// Length bounds, as Vault's.
const (
	MinLength = 4
	MaxLength = 100
)

// Rule is one charset rule: at least MinChars of the password's runes
// come from Charset.
type Rule struct {
	Charset  string
	MinChars int
}

// Policy is a parsed password policy.
type Policy struct {
	Length int
	Rules  []Rule
	// alphabet is the sorted, de-duplicated union of the charsets.
	alphabet string
	// need holds, as sets, the rules whose min-chars is above 0 (no more
	// than Length of them), the only ones a password can fail. Meets
	// runs for every draw, up to checkAttempts of them at each write of
	// a policy, and a search of a charset of a megabyte for each of its
	// characters held the CPU for seconds.
	need []class
}

// class is a rule as Meets tests it: which ASCII characters its charset
// holds, and how many of them a password needs.
type class struct {
	in  [128]bool
	min int
}

// Alphabet returns the characters passwords are drawn from.
func (p *Policy) Alphabet() string { return p.alphabet }

// Candidates a generation draws at most: a policy Parse accepts meets its
// rules once in checkAttempts draws or better, so 100,000 failures in a
// row (a chance below e^-10) mean a broken random source.
const (
	checkAttempts    = 10_000
	generateAttempts = 100_000
)

// ErrUnlikely is in the chain of Parse's error for a policy whose rules
// can be met but hardly ever by a random draw.
var ErrUnlikely = errors.New("too few random passwords meet the rules")

// Parse reads a policy and checks that it can be satisfied: a length of
// 4 to 100, at least one charset, charsets of printable ASCII, min-chars
// that fit in the length, and rules that random passwords meet often
// enough to generate them (it draws some with r to find out).
func Parse(text string, r io.Reader) (*Policy, error) {
	p, err := parse(text)
	if err != nil {
		return nil, err
	}
	if _, err := p.generate(r, checkAttempts); err != nil {
		if errors.Is(err, ErrUnlikely) {
			return nil, fmt.Errorf("unable to construct a test password from the policy (none of %d random draws met every rule): lower min-chars or raise length: %w", checkAttempts, err)
		}
		return nil, err
	}
	return p, nil
}

// MaxSize is the largest policy text, in bytes, that lessor parses, as
// for ACL policies: a policy is parsed again at every issue and rotation
// that uses it, and real ones are a few hundred bytes.
const MaxSize = 1 << 20

func parse(text string) (p *Policy, err error) {
	if len(text) > MaxSize {
		return nil, fmt.Errorf("parse policy: larger than the limit of %d bytes (1 MiB)", MaxSize)
	}
	// The hcl v1 parser has panicked on malformed input before, and a
	// policy comes from users.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("malformed policy: %v", r)
		}
	}()
	if hclnest.Deeper(text) {
		return nil, fmt.Errorf("parse policy: braces and brackets nest deeper than %d levels", hclnest.Limit)
	}
	file, err := hcl.ParseString(text)
	if err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	// The decoder gathers each item of several keys ("a" "b" { }, or in
	// JSON an object of objects) from all of its siblings, so its work
	// grows with the square of their number: a few thousand hold the CPU
	// for seconds, a request body of them for days. A policy needs a few
	// dozen nodes.
	if n := countNodes(file.Node); n > maxNodes {
		return nil, fmt.Errorf("parse policy: more than %d keys and values (a policy has length and a few rule blocks)", maxNodes)
	}
	var raw map[string]any
	if err := hcl.DecodeObject(&raw, file); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	p = &Policy{}
	for k, v := range raw {
		switch k {
		case "length":
			n, ok := toInt(v)
			if !ok {
				return nil, fmt.Errorf("length must be a whole number, not %v", v)
			}
			p.Length = n
		case "rule":
			rules, err := parseRules(v)
			if err != nil {
				return nil, err
			}
			p.Rules = append(p.Rules, rules...)
		default:
			return nil, fmt.Errorf("unknown key %q: a policy has length and rule \"charset\" blocks", k)
		}
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// maxNodes bounds the syntax nodes (keys, values, objects, lists) of a
// policy that parse decodes.
const maxNodes = 4096

// countNodes counts the nodes of the tree under n, up to maxNodes+1.
func countNodes(n ast.Node) int {
	count := 0
	ast.Walk(n, func(n ast.Node) (ast.Node, bool) {
		// Walk calls again with nil as it leaves each node.
		if n != nil {
			count++
		}
		return n, count <= maxNodes
	})
	return count
}

// parseRules reads the value of "rule": HCL gives a list of maps keyed by
// the rule type, JSON may give one map.
func parseRules(v any) ([]Rule, error) {
	var out []Rule
	for _, m := range maps(v) {
		for typ, body := range m {
			if typ != "charset" {
				return nil, fmt.Errorf("unrecognized rule type %q: the only rule type is \"charset\"", typ)
			}
			for _, b := range maps(body) {
				rule := Rule{}
				for k, val := range b {
					switch k {
					case "charset":
						s, ok := val.(string)
						if !ok {
							return nil, fmt.Errorf("charset must be a string, not %v", val)
						}
						rule.Charset = s
					case "min-chars", "min_chars":
						n, ok := toInt(val)
						if !ok || n < 0 {
							return nil, fmt.Errorf("min-chars must be a whole number of 0 or more, not %v", val)
						}
						rule.MinChars = n
					default:
						return nil, fmt.Errorf("unknown key %q in a charset rule: it has charset and min-chars", k)
					}
				}
				out = append(out, rule)
			}
		}
	}
	return out, nil
}

// maps flattens what hcl decodes a block into: a map, or a list of maps.
func maps(v any) []map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}
	case []map[string]any:
		return x
	case []any:
		var out []map[string]any
		for _, e := range x {
			out = append(out, maps(e)...)
		}
		return out
	}
	return nil
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}

func (p *Policy) check() error {
	if p.Length < MinLength || p.Length > MaxLength {
		return fmt.Errorf("passwords must be between %d and %d characters, not %d", MinLength, MaxLength, p.Length)
	}
	if len(p.Rules) == 0 {
		return errors.New("no charset specified: add a rule \"charset\" block")
	}
	seen := map[byte]bool{}
	need := 0
	for _, r := range p.Rules {
		if r.Charset == "" {
			return errors.New("no charset specified: a charset rule has an empty charset")
		}
		for i := 0; i < len(r.Charset); i++ {
			c := r.Charset[i]
			if c >= 0x80 {
				return fmt.Errorf("charset %q holds a character that is not ASCII: lessor sends passwords as SCRAM verifiers, which need ASCII passwords", r.Charset)
			}
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("non-printable character in charset %q", r.Charset)
			}
			seen[c] = true
		}
		need += r.MinChars
	}
	if need > p.Length {
		return fmt.Errorf("specified rules require at least %d characters but %d is specified", need, p.Length)
	}
	p.need = nil
	for _, r := range p.Rules {
		if r.MinChars == 0 {
			continue
		}
		c := class{min: r.MinChars}
		for i := 0; i < len(r.Charset); i++ {
			c.in[r.Charset[i]] = true
		}
		p.need = append(p.need, c)
	}
	var b []byte
	for c := range seen {
		b = append(b, c)
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	p.alphabet = string(b)
	return nil
}

// Generate returns a password that follows the policy, reading randomness
// from r.
func (p *Policy) Generate(r io.Reader) (string, error) {
	return p.generate(r, generateAttempts)
}

func (p *Policy) generate(r io.Reader, attempts int) (string, error) {
	for range attempts {
		s, err := randstr.String(r, p.alphabet, p.Length)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		if p.Meets(s) {
			return s, nil
		}
	}
	return "", ErrUnlikely
}

// Meets reports whether s has the policy's length, only runes of its
// alphabet, and meets every rule.
func (p *Policy) Meets(s string) bool {
	if len(s) != p.Length {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(p.alphabet, s[i]) < 0 {
			return false
		}
	}
	for _, c := range p.need {
		n := 0
		for i := 0; i < len(s); i++ {
			// s is of the alphabet, which is ASCII.
			if c.in[s[i]] {
				n++
			}
		}
		if n < c.min {
			return false
		}
	}
	return true
}
