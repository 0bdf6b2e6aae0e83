package logical

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CanonicalPath returns the form of a request path that the ACL checks
// and the backend acts on: without a leading "/", and without a trailing
// one unless the request is a list. It refuses, rather than maps, every
// path that a backend could read as another one: an empty segment ("a//b"),
// a "." or ".." segment, a segment with white space at either end (which
// a backend trimming names would drop), control characters and invalid
// UTF-8. So the string the ACL sees is the string the backend gets.
func CanonicalPath(p string, list bool) (string, error) {
	p = strings.TrimPrefix(p, "/")
	if !list {
		p = strings.TrimSuffix(p, "/")
	}
	// A refusal quotes the path, which a client may have put a token in
	// (Vault's old auth/token/lookup/<token>): the answer is logged by
	// clients and printed by the CLI, so the token is masked there, as
	// in every other error that quotes a path.
	if !utf8.ValidString(p) {
		return "", Errorf("invalid path %q: it is not valid UTF-8", MaskTokens(p))
	}
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return "", Errorf("invalid path %q: it contains a control character", MaskTokens(p))
	}
	if p == "" {
		return p, nil
	}
	body := p
	if list {
		body = strings.TrimSuffix(p, "/")
	}
	for _, s := range strings.Split(body, "/") {
		if err := checkSegment(p, s); err != nil {
			return "", err
		}
	}
	return p, nil
}

func checkSegment(p, s string) error {
	switch {
	case s == "":
		return Errorf("invalid path %q: it has an empty segment (\"//\")", MaskTokens(p))
	case s == "." || s == "..":
		return Errorf("invalid path %q: it has a %q segment", MaskTokens(p), s)
	case strings.TrimSpace(s) != s:
		return Errorf("invalid path %q: segment %q begins or ends with white space", MaskTokens(p), MaskTokens(s))
	}
	return nil
}

// CheckKeys refuses request data whose keys differ only in case
// ("policies" and "POLICIES"): backends read keys exactly as written, so
// such a pair would let a parameter check and a backend read different
// values.
func CheckKeys(data map[string]any) error {
	if len(data) < 2 {
		return nil
	}
	seen := make(map[string]string, len(data))
	for k := range data {
		f := strings.ToLower(k)
		if other, dup := seen[f]; dup {
			a, b := min(k, other), max(k, other)
			return Errorf("keys %q and %q differ only in case; send one", a, b)
		}
		seen[f] = k
	}
	return nil
}
