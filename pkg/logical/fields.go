package logical

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Values reach a backend in whatever shape the CLI or a JSON body gave
// them: "5", "1h" and "true" as strings, repeated keys as []any, JSON
// numbers as json.Number (or float64 when decoded without UseNumber). The
// parsers below are the one place that reads each shape a Vault script can
// produce; they refuse the rest with an error that starts with the field's
// name. Every backend reads its fields through them, and declares the
// fields each path knows in a FieldSchema, so that every path treats an
// unknown field the way Vault does: it is ignored, with a warning.

// FieldType is how a field's value is read.
type FieldType int

// The field types, named after Vault's framework types where one exists.
const (
	// TypeString is a string; numbers and booleans are formatted.
	TypeString FieldType = iota + 1
	// TypeBool is a boolean, or a string strconv.ParseBool reads.
	TypeBool
	// TypeInt is an integer that fits an int.
	TypeInt
	// TypeDurationSecond is Vault's TTL field: seconds as a number or a
	// string of digits, a Go duration ("1h30m") or whole days ("7d").
	TypeDurationSecond
	// TypeCommaStringSlice is a comma-separated string or a list of them.
	TypeCommaStringSlice
	// TypeStatements is a list of SQL statement elements, each given as
	// SQL, a JSON array of strings, or either of those in base64.
	TypeStatements
	// TypeKVPairs is a map of strings, or "k=v" strings (one, a list, or
	// comma-separated).
	TypeKVPairs
	// TypeMap is a JSON object, taken as given.
	TypeMap
)

var fieldTypeNames = map[FieldType]string{
	TypeString: "string", TypeBool: "bool", TypeInt: "int", TypeDurationSecond: "duration",
	TypeCommaStringSlice: "comma-separated list", TypeStatements: "statements",
	TypeKVPairs: "key=value pairs", TypeMap: "map",
}

func (t FieldType) String() string { return fieldTypeNames[t] }

// Field describes one field a path knows.
type Field struct {
	Type        FieldType
	Description string
	// NonNegative refuses an int field below zero.
	NonNegative bool
}

// FieldSchema is the fields one path (and operation) knows, by name.
type FieldSchema map[string]*Field

// Names returns the schema's field names, sorted.
func (s FieldSchema) Names() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FieldData is request data read against a schema: every known field that
// was sent, parsed, and the names of the fields the schema does not know.
type FieldData struct {
	values  map[string]any
	Unknown []string
}

// ParseFields reads every field of data that schema knows, in name order
// so that the first error is the same on every run, and lists (sorted) the
// fields it does not know. The error names the field.
func ParseFields(schema FieldSchema, data map[string]any) (*FieldData, error) {
	fd := &FieldData{values: make(map[string]any, len(data))}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := schema[k]
		if !ok {
			fd.Unknown = append(fd.Unknown, k)
			continue
		}
		v, err := f.Parse(k, data[k])
		if err != nil {
			return nil, err
		}
		fd.values[k] = v
	}
	return fd, nil
}

// Parse reads one value of the field, named name in errors.
func (f *Field) Parse(name string, v any) (any, error) {
	switch f.Type {
	case TypeString:
		return parseString(name, v)
	case TypeBool:
		return parseBool(name, v)
	case TypeInt:
		n, err := parseInt(name, v)
		if err == nil && f.NonNegative && n < 0 {
			return nil, Errorf("%s cannot be negative", name)
		}
		return n, err
	case TypeDurationSecond:
		return parseDurationSecond(name, v)
	case TypeCommaStringSlice:
		return parseCommaStrings(name, v)
	case TypeStatements:
		return parseStatements(name, v)
	case TypeKVPairs:
		return parseKeyValues(name, v)
	case TypeMap:
		if v == nil {
			return map[string]any(nil), nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, Errorf("%s: expected a map, got %s", name, describe(v))
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: field has no type", name)
}

// GetOk returns the parsed value of a field and whether it was sent.
func (d *FieldData) GetOk(name string) (any, bool) {
	v, ok := d.values[name]
	return v, ok
}

// Has reports whether the field was sent.
func (d *FieldData) Has(name string) bool {
	_, ok := d.values[name]
	return ok
}

// String returns a TypeString field, or "" when it was not sent.
func (d *FieldData) String(name string) string { s, _ := d.values[name].(string); return s }

// Bool returns a TypeBool field, or false when it was not sent.
func (d *FieldData) Bool(name string) bool { b, _ := d.values[name].(bool); return b }

// Int returns a TypeInt field, or 0 when it was not sent.
func (d *FieldData) Int(name string) int { n, _ := d.values[name].(int); return n }

// Duration returns a TypeDurationSecond field, or 0 when it was not sent.
func (d *FieldData) Duration(name string) time.Duration {
	t, _ := d.values[name].(time.Duration)
	return t
}

// Strings returns a TypeCommaStringSlice or TypeStatements field, or nil
// when it was not sent.
func (d *FieldData) Strings(name string) []string { s, _ := d.values[name].([]string); return s }

// KeyValues returns a TypeKVPairs field, or nil when it was not sent.
func (d *FieldData) KeyValues(name string) map[string]string {
	m, _ := d.values[name].(map[string]string)
	return m
}

// Map returns a TypeMap field, or nil when it was not sent.
func (d *FieldData) Map(name string) map[string]any {
	m, _ := d.values[name].(map[string]any)
	return m
}

// IgnoredWarning is Vault's warning, word for word, for the fields a path
// does not know (sorted): "Endpoint ignored these unrecognized parameters:
// [a b]".
func IgnoredWarning(unknown []string) string {
	return fmt.Sprintf("Endpoint ignored these unrecognized parameters: %v", unknown)
}

// WarnIgnored adds IgnoredWarning to resp when unknown is not empty, making
// a response when there was none so that the warning is seen.
func WarnIgnored(resp *Response, unknown []string) *Response {
	if len(unknown) == 0 {
		return resp
	}
	if resp == nil {
		resp = &Response{}
	}
	resp.Warnings = append(resp.Warnings, IgnoredWarning(unknown))
	return resp
}

// prefix puts the field's name before an error message; an empty name
// (a value read outside any schema, such as a command-line flag) leaves
// the message alone.
func prefix(field, msg string) string {
	if field == "" {
		return msg
	}
	return field + ": " + msg
}

// parseString reads a string field; numbers and booleans are formatted.
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
	return "", Errorf("%s", prefix(field, "expected a string, got "+describe(v)))
}

// parseBool reads a boolean given as a bool, a string strconv.ParseBool
// reads ("1", "t", "true"…), or the numbers 0 and 1. nil is false.
func parseBool(field string, v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return false, Errorf("%s", prefix(field, strconv.Quote(x)+" is not a boolean"))
		}
		return b, nil
	case json.Number:
		return parseBool(field, x.String())
	case int:
		return parseBool(field, strconv.Itoa(x))
	}
	return false, Errorf("%s", prefix(field, "expected a boolean, got "+describe(v)))
}

// parseInt reads an integer given as a number or a string of digits. A
// value that does not fit an int is out of range; a fraction is refused.
func parseInt(field string, v any) (int, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, nil
	case int:
		return x, nil
	case int64:
		if x > math.MaxInt || x < math.MinInt {
			return 0, Errorf("%s", prefix(field, fmt.Sprintf("%d is out of range", x)))
		}
		return int(x), nil
	case float64:
		if x != math.Trunc(x) {
			return 0, Errorf("%s", prefix(field, fmt.Sprintf("%v is not an integer", x)))
		}
		if math.Abs(x) > math.MaxInt32 {
			return 0, Errorf("%s", prefix(field, fmt.Sprintf("%v is out of range", x)))
		}
		return int(x), nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, Errorf("%s", prefix(field, "expected an integer, got "+describe(v)))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, Errorf("%s", prefix(field, strconv.Quote(s)+" is out of range"))
		}
		return 0, Errorf("%s", prefix(field, strconv.Quote(s)+" is not an integer"))
	}
	return n, nil
}

// maxDays is the largest whole number of days a time.Duration holds.
const maxDays = math.MaxInt64 / int64(24*time.Hour)

// durationRE is the grammar time.ParseDuration reads; a string that
// matches it and still fails to parse overflowed.
var durationRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$`)
})

// parseDurationSecond reads what Vault's TypeDurationSecond reads: a
// number of seconds (as a number or a string of digits), a Go duration
// ("1h30m", "90s"), or whole days ("7d"). The result is truncated to whole
// seconds. A negative value is refused, and so is one too large for a
// time.Duration (about 106751 days), which is out of range rather than
// wrapped round to a negative one.
func parseDurationSecond(field string, v any) (time.Duration, error) {
	outOfRange := func() error {
		return Errorf("%s", prefix(field, fmt.Sprintf("%s is out of range (at most %dd)", quoteValue(v), maxDays)))
	}
	var d time.Duration
	switch x := v.(type) {
	case nil:
		return 0, nil
	case time.Duration:
		d = x
	case int:
		return parseDurationSecond(field, int64(x))
	case int64:
		if x > math.MaxInt64/int64(time.Second) || x < math.MinInt64/int64(time.Second) {
			return 0, outOfRange()
		}
		d = time.Duration(x) * time.Second
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > float64(math.MaxInt64/int64(time.Second)) {
			return 0, outOfRange()
		}
		d = time.Duration(x * float64(time.Second))
	case json.Number:
		return parseDurationSecond(field, x.String())
	case string:
		s := strings.TrimSpace(x)
		var err error
		d, err = parseDurationString(s)
		switch {
		case err == errOutOfRange:
			return 0, outOfRange()
		case err != nil:
			return 0, Errorf("%s", prefix(field, strconv.Quote(x)+` is not a duration (use seconds, "1h" or "1d")`))
		}
	default:
		return 0, Errorf("%s", prefix(field, "expected a duration, got "+describe(v)))
	}
	if d < 0 {
		return 0, Errorf("%s", prefix(field, "duration cannot be negative"))
	}
	return d.Truncate(time.Second), nil
}

var errOutOfRange = fmt.Errorf("out of range")

func parseDurationString(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, errOutOfRange
		}
		return time.Duration(n) * time.Second, nil
	} else if isDigits(strings.TrimPrefix(s, "-")) {
		return 0, errOutOfRange
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			if isDigits(strings.TrimPrefix(days, "-")) {
				return 0, errOutOfRange
			}
			return 0, err
		}
		if n > maxDays || n < -maxDays {
			return 0, errOutOfRange
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil && durationRE().MatchString(s) {
		return 0, errOutOfRange
	}
	return d, err
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

func quoteValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case json.Number:
		return strconv.Quote(x.String())
	}
	return fmt.Sprint(v)
}

// parseCommaStrings is Vault's TypeCommaStringSlice: a comma-separated
// string or a list of them; elements are trimmed and empty ones dropped.
// The result is never nil.
func parseCommaStrings(field string, v any) ([]string, error) {
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

// parseStatements reads a *_statements field as Vault's API does, decoded
// once, when it is written: the value is one element or a list of them,
// and each element is SQL, a JSON array of strings, base64 of SQL, or
// base64 of a JSON array (the order strutil.ParseArbitraryStringSlice
// tries: base64 first, then JSON). An element that decodes to a JSON
// array contributes its strings; any other element is SQL, kept as one
// element (splitting on ";" happens when the statements run). Elements
// are trimmed and empty ones dropped. The result is never nil.
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
		for _, s := range decodeStatement(p) {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func decodeStatement(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
		s = string(raw)
	}
	var list []string
	if strings.HasPrefix(strings.TrimSpace(s), "[") && json.Unmarshal([]byte(s), &list) == nil {
		return list
	}
	return []string{s}
}

// parseKeyValues reads a map of strings given as a map, or as "k=v"
// strings (one, a list, or comma-separated). Empty gives nil.
func parseKeyValues(field string, v any) (map[string]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case map[string]string:
		if len(t) == 0 {
			return nil, nil
		}
		out := make(map[string]string, len(t))
		for k, v := range t {
			out[k] = v
		}
		return out, nil
	case map[string]any:
		if len(t) == 0 {
			return nil, nil
		}
		out := make(map[string]string, len(t))
		for k, v := range t {
			s, ok := v.(string)
			if !ok {
				return nil, Errorf("%s", prefix(field, fmt.Sprintf("value of %q is not a string", k)))
			}
			out[k] = s
		}
		return out, nil
	}
	pairs, err := parseCommaStrings(field, v)
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, val, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, Errorf("%s", prefix(field, strconv.Quote(p)+" is not key=value"))
		}
		out[k] = val
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
	return nil, Errorf("%s", prefix(field, "expected a string or a list of strings, got "+describe(v)))
}

// StringList reads a list back out of stored or internal data, which may
// have made a round trip through JSON and so hold []any for []string;
// elements that are not strings are skipped.
func StringList(v any) []string {
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
	case map[string]any, map[string]string:
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

// String formats a value read back from a response or stored data as
// text; numbers and booleans are formatted, nil is "".
func String(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	}
	return fmt.Sprint(v)
}

// The parsers below read one value outside any schema (a command-line
// flag, a field of a response); their errors name no field.

// ParseDuration reads a duration as a TypeDurationSecond field does.
func ParseDuration(v any) (time.Duration, error) { return parseDurationSecond("", v) }

// ParseBool reads a boolean as a TypeBool field does.
func ParseBool(v any) (bool, error) { return parseBool("", v) }

// ParseInt reads an integer as a TypeInt field does.
func ParseInt(v any) (int, error) { return parseInt("", v) }

// ParseCommaStrings reads a list as a TypeCommaStringSlice field does.
func ParseCommaStrings(v any) ([]string, error) { return parseCommaStrings("", v) }

// Canonicalize rewrites, in data, each value of a list, statements or
// boolean field into the shape the backend acts on (a list becomes a []any
// of its elements; base64 and JSON statements are decoded; "1" becomes
// true), so that a DataCanonicalizer lets the ACL judge exactly what the
// backend will use. A value the field cannot read is left alone, for the
// backend to refuse.
func (s FieldSchema) Canonicalize(data map[string]any) {
	for k, v := range data {
		f, ok := s[k]
		if !ok {
			continue
		}
		switch f.Type {
		case TypeCommaStringSlice, TypeStatements, TypeBool:
		default:
			continue
		}
		x, err := f.Parse(k, v)
		if err != nil {
			continue
		}
		if list, ok := x.([]string); ok {
			out := make([]any, len(list))
			for i, e := range list {
				out[i] = e
			}
			x = out
		}
		data[k] = x
	}
}
