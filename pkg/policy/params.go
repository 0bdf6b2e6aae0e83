package policy

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// paramsAllow applies the rule's parameter constraints to the keys a
// request actually sent (defaults a backend fills in are not seen here).
// A required parameter must be sent under exactly its name, the one the
// backends read. Every key sent is checked against the allowed and denied
// lists under its lower-cased name, one key at a time: a key that differs
// only in case from another must not hide the other's value (Handle also
// refuses such requests). Values are compared in their canonical string
// form, so `ttl = [3600]` in a policy matches the string "3600" that the
// command line sends; Vault compares typed values, which makes numbers in
// policies match nothing a CLI sends.
func (r *rule) paramsAllow(data map[string]any) bool {
	for _, name := range r.required {
		if _, ok := data[name]; !ok {
			return false
		}
	}
	if len(data) == 0 {
		return true
	}
	if len(r.denied) > 0 {
		if _, all := r.denied["*"]; all {
			return false
		}
		for k, v := range data {
			if values, ok := r.denied[strings.ToLower(k)]; ok && anyValueListed(v, values) {
				return false
			}
		}
	}
	if len(r.allowed) == 0 {
		return true
	}
	_, anyName := r.allowed["*"]
	for k, v := range data {
		values, ok := r.allowed[strings.ToLower(k)]
		if !ok {
			if anyName {
				continue
			}
			return false
		}
		if !everyValueListed(v, values) {
			return false
		}
	}
	return true
}

// anyValueListed reports whether v, or any element of v when it is a list
// or a map, matches the list; an empty list matches every value. It
// decides a denial, so a value it cannot read (a map inside a list, a
// list inside a map) counts as listed: it is denied, not let through.
func anyValueListed(v any, list []string) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range scalars(v) {
		if !s.ok || matchesAny(s.text, list) {
			return true
		}
	}
	return false
}

// everyValueListed reports whether v, and every element of v when it is a
// list, matches the list; an empty list matches every value.
func everyValueListed(v any, list []string) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range scalars(v) {
		if !s.ok || !matchesAny(s.text, list) {
			return false
		}
	}
	return true
}

type scalar struct {
	text string
	ok   bool
}

// scalars returns the canonical strings of v, or of each element of v
// when it is a list (a key repeated on the command line), or of each entry
// of v as "key=value" when it is a map: the form in which the command
// line sends key/value parameters (meta=team=ops), so that a policy judges
// a JSON object's entries as it judges those strings, and an object is no
// way around a denied value.
func scalars(v any) []scalar {
	switch x := v.(type) {
	case map[string]any:
		out := make([]scalar, 0, len(x))
		for k, e := range x {
			s, ok := scalarText(e)
			out = append(out, scalar{k + "=" + s, ok})
		}
		return out
	case map[string]string:
		out := make([]scalar, 0, len(x))
		for k, e := range x {
			out = append(out, scalar{k + "=" + e, true})
		}
		return out
	case []any:
		out := make([]scalar, 0, len(x))
		for _, e := range x {
			s, ok := scalarText(e)
			out = append(out, scalar{s, ok})
		}
		return out
	case []string:
		out := make([]scalar, 0, len(x))
		for _, e := range x {
			out = append(out, scalar{e, true})
		}
		return out
	}
	s, ok := scalarText(v)
	return []scalar{{s, ok}}
}

// scalarText is the canonical string of one request value, matching what
// the parser makes of the same value in a policy.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		if f, err := x.Float64(); err == nil {
			return floatText(f), true
		}
		return x.String(), true
	case int:
		return strconv.FormatInt(int64(x), 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint:
		return strconv.FormatUint(uint64(x), 10), true
	case uint32:
		return strconv.FormatUint(uint64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float32:
		return floatText(float64(x)), true
	case float64:
		return floatText(x), true
	}
	return "", false
}

// floatText prints a whole float as an integer, so that JSON's 3600 (a
// float64 once decoded) equals the policy's 3600.
func floatText(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// matchesAny reports whether s matches one of the patterns: a pattern
// with a leading `*` matches by suffix, a trailing `*` by prefix, both by
// substring (so a lone "*" matches anything); otherwise exactly.
func matchesAny(s string, patterns []string) bool {
	for _, p := range patterns {
		lead, trail := strings.HasPrefix(p, "*"), strings.HasSuffix(p, "*")
		switch {
		case lead && trail:
			inner := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
			if strings.Contains(s, inner) {
				return true
			}
		case lead:
			if strings.HasSuffix(s, p[1:]) {
				return true
			}
		case trail:
			if strings.HasPrefix(s, p[:len(p)-1]) {
				return true
			}
		case s == p:
			return true
		}
	}
	return false
}
