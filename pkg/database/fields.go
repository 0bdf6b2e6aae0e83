package database

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// Values reach the backend in whatever shape the CLI or a JSON body gave
// them: "5", "1h" and "true" as strings, repeated keys as []any, JSON
// numbers as json.Number (or float64 when decoded without UseNumber). The
// helpers below accept each shape a Vault script can produce and reject the
// rest with an error naming the field.

// nameRE is Vault's generic path-segment name: a word character, then word
// characters, "-" or ".", ending in a word character. It keeps quotes,
// semicolons, spaces and slashes out of storage keys and of anything that
// might later be spliced into SQL or a lease id.
var nameRE = regexp.MustCompile(`^\w(([\w.-]+)?\w)?$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return logical.Errorf("invalid name %q: use letters, digits, \"_\", \"-\" and \".\", starting and ending with a letter, digit or \"_\"", name)
	}
	return nil
}

// checkFields rejects keys outside known, so that a typo such as
// "default_tll" is an error rather than a silently ignored setting.
func checkFields(data map[string]any, known map[string]bool) error {
	var unknown []string
	for k := range data {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return logical.Errorf("unknown fields: %s", strings.Join(unknown, ", "))
}

func parseString(field string, v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool, int, int64, float64:
		return fmt.Sprint(x), nil
	}
	return "", logical.Errorf("%s: expected a string, got %s", field, describe(v))
}

func parseBool(field string, v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return false, logical.Errorf("%s: %q is not a boolean", field, x)
		}
		return b, nil
	case json.Number:
		return parseBool(field, x.String())
	case int:
		return parseBool(field, strconv.Itoa(x))
	}
	return false, logical.Errorf("%s: expected a boolean, got %s", field, describe(v))
}

func parseInt(field string, v any) (int, error) {
	var s string
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
			return 0, logical.Errorf("%s: %v is not an integer", field, x)
		}
		return int(x), nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, logical.Errorf("%s: expected an integer, got %s", field, describe(v))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, logical.Errorf("%s: %q is not an integer", field, s)
	}
	return n, nil
}

// parseDurationSecond accepts what Vault's TypeDurationSecond accepts: a
// number of seconds (as a number or a string of digits), a Go duration
// ("1h30m", "90s"), or whole days ("7d"). The result is truncated to whole
// seconds; negative values are rejected.
func parseDurationSecond(field string, v any) (time.Duration, error) {
	var d time.Duration
	switch x := v.(type) {
	case int:
		d = time.Duration(x) * time.Second
	case int64:
		d = time.Duration(x) * time.Second
	case float64:
		d = time.Duration(x * float64(time.Second))
	case json.Number:
		return parseDurationSecond(field, x.String())
	case string:
		s := strings.TrimSpace(x)
		var err error
		d, err = parseDurationString(s)
		if err != nil {
			return 0, logical.Errorf("%s: %q is not a duration (use seconds, \"1h\" or \"1d\")", field, x)
		}
	default:
		return 0, logical.Errorf("%s: expected a duration, got %s", field, describe(v))
	}
	if d < 0 {
		return 0, logical.Errorf("%s: duration cannot be negative", field)
	}
	return d.Truncate(time.Second), nil
}

func parseDurationString(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			return 0, err
		}
		if n > math.MaxInt64/int64(24*time.Hour) || n < math.MinInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// parseCommaList is Vault's TypeCommaStringSlice: a comma-separated string
// or a list; elements are trimmed and empty ones dropped.
func parseCommaList(field string, v any) ([]string, error) {
	var parts []string
	switch x := v.(type) {
	case nil:
	case string:
		parts = strings.Split(x, ",")
	default:
		list, err := parseList(field, v)
		if err != nil {
			return nil, err
		}
		for _, e := range list {
			parts = append(parts, strings.Split(e, ",")...)
		}
	}
	out := []string{}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// parseStatements is Vault's TypeStringSlice as the roles use it: a single
// string is one statement element (splitting on ";" happens in the plugin),
// a list keeps its elements; elements are trimmed and empty ones dropped.
func parseStatements(field string, v any) ([]string, error) {
	var parts []string
	switch x := v.(type) {
	case nil:
	case string:
		parts = []string{x}
	default:
		list, err := parseList(field, v)
		if err != nil {
			return nil, err
		}
		parts = list
	}
	out := []string{}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

func parseList(field string, v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return append([]string(nil), x...), nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, err := parseString(field, e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, logical.Errorf("%s: expected a string or a list of strings, got %s", field, describe(v))
}

// stringList reads a list back out of lease internal data, which may have
// made a round trip through JSON and so hold []any instead of []string.
func stringList(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any, []string:
		return "a list"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// globMatch reports whether s matches pattern, where "*" matches any run of
// characters (including none) and every other character matches itself,
// the rule Vault applies to allowed_roles.
func globMatch(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}
