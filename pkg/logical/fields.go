package logical

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a TTL-like field the way Vault does: an integer
// number of seconds (as a number or a string of digits), a Go duration
// ("1h30m", "90s"), or whole days ("7d"). Negative values are refused.
func ParseDuration(v any) (time.Duration, error) {
	var d time.Duration
	switch t := v.(type) {
	case nil:
		return 0, nil
	case time.Duration:
		d = t
	case int:
		d = time.Duration(t) * time.Second
	case int64:
		d = time.Duration(t) * time.Second
	case float64:
		d = time.Duration(t) * time.Second
	case json.Number:
		n, err := t.Int64()
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", t.String())
		}
		d = time.Duration(n) * time.Second
	case string:
		s := strings.TrimSpace(t)
		switch {
		case s == "":
			return 0, nil
		case isDigits(s):
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", t)
			}
			d = time.Duration(n) * time.Second
		case strings.HasSuffix(s, "d") && isDigits(s[:len(s)-1]):
			n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", t)
			}
			d = time.Duration(n) * 24 * time.Hour
		default:
			var err error
			d, err = time.ParseDuration(s)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", t)
			}
		}
	default:
		return 0, fmt.Errorf("invalid duration %v", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %v is negative", v)
	}
	return d, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ParseBool reads a boolean field given as a bool or a string.
func ParseBool(v any) (bool, error) {
	switch t := v.(type) {
	case nil:
		return false, nil
	case bool:
		return t, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(t))
		if err != nil {
			return false, fmt.Errorf("invalid boolean %q", t)
		}
		return b, nil
	}
	return false, fmt.Errorf("invalid boolean %v", v)
}

// ParseInt reads an integer field given as a number or a string.
func ParseInt(v any) (int, error) {
	switch t := v.(type) {
	case nil:
		return 0, nil
	case int:
		return t, nil
	case int64:
		return int(t), nil
	case float64:
		return int(t), nil
	case json.Number:
		n, err := t.Int64()
		return int(n), err
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil {
			return 0, fmt.Errorf("invalid integer %q", t)
		}
		return n, nil
	}
	return 0, fmt.Errorf("invalid integer %v", v)
}

// ParseCommaStrings reads a list field given as a list or as one
// comma-separated string; elements are trimmed and empty ones dropped.
func ParseCommaStrings(v any) ([]string, error) {
	var parts []string
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		parts = strings.Split(t, ",")
	case []string:
		parts = t
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				s = fmt.Sprint(e)
			}
			parts = append(parts, strings.Split(s, ",")...)
		}
	default:
		return nil, fmt.Errorf("invalid list %v", v)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// String reads a string field; numbers and booleans are formatted.
func String(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	}
	return fmt.Sprint(v)
}
