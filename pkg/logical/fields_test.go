package logical

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestFieldTypes runs each field type over the shapes a CLI or a JSON body
// sends, and checks that every error starts with the field's name.
func TestFieldTypes(t *testing.T) {
	const create = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`
	const grant = `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`
	jsonList := `["` + `CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';", "` + `GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"]`
	for _, tc := range []struct {
		name string
		typ  FieldType
		in   any
		want any
		err  string
	}{
		{"string", TypeString, "x", "x", ""},
		{"string number", TypeString, json.Number("5"), "5", ""},
		{"string list", TypeString, []any{"a"}, nil, "f: expected a string, got a list"},
		{"bool", TypeBool, "true", true, ""},
		{"bool 1", TypeBool, "1", true, ""},
		{"bool int", TypeBool, 0, false, ""},
		{"bool bad", TypeBool, "maybe", nil, `f: "maybe" is not a boolean`},
		{"bool list", TypeBool, []any{}, nil, "f: expected a boolean, got a list"},
		{"int", TypeInt, "42", 42, ""},
		{"int json", TypeInt, json.Number("7"), 7, ""},
		{"int float", TypeInt, 1.5, nil, "f: 1.5 is not an integer"},
		{"int range", TypeInt, "99999999999999999999", nil, `f: "99999999999999999999" is out of range`},
		{"int bad", TypeInt, "x", nil, `f: "x" is not an integer`},
		{"duration secs", TypeDurationSecond, 3600, time.Hour, ""},
		{"duration string secs", TypeDurationSecond, "3600", time.Hour, ""},
		{"duration json", TypeDurationSecond, json.Number("90"), 90 * time.Second, ""},
		{"duration float", TypeDurationSecond, float64(60), time.Minute, ""},
		{"duration go", TypeDurationSecond, "1h30m", 90 * time.Minute, ""},
		{"duration days", TypeDurationSecond, "7d", 7 * 24 * time.Hour, ""},
		{"duration truncated", TypeDurationSecond, "1.5s", time.Second, ""},
		{"duration empty", TypeDurationSecond, "", time.Duration(0), ""},
		{"duration negative", TypeDurationSecond, "-1", nil, "f: duration cannot be negative"},
		{"duration negative go", TypeDurationSecond, "-1h", nil, "f: duration cannot be negative"},
		{"duration negative int", TypeDurationSecond, -5, nil, "f: duration cannot be negative"},
		{"duration weeks", TypeDurationSecond, "1w", nil, `f: "1w" is not a duration (use seconds, "1h" or "1d")`},
		{"duration bool", TypeDurationSecond, true, nil, "f: expected a duration, got a boolean"},
		// Too large for a time.Duration: out of range, never wrapped round
		// to a negative duration.
		{"duration days range", TypeDurationSecond, "99999999999999d", nil, `f: "99999999999999d" is out of range (at most 106751d)`},
		{"duration secs range", TypeDurationSecond, "99999999999999999999", nil, `f: "99999999999999999999" is out of range (at most 106751d)`},
		{"duration int range", TypeDurationSecond, int64(1) << 62, nil, `f: 4611686018427387904 is out of range (at most 106751d)`},
		{"duration hours range", TypeDurationSecond, "9999999999h", nil, `f: "9999999999h" is out of range (at most 106751d)`},
		{"duration max days", TypeDurationSecond, "106751d", 106751 * 24 * time.Hour, ""},
		{"comma", TypeCommaStringSlice, "a,b , c,,", []string{"a", "b", "c"}, ""},
		{"comma list", TypeCommaStringSlice, []any{"a,b", " c "}, []string{"a", "b", "c"}, ""},
		{"comma empty", TypeCommaStringSlice, "", []string{}, ""},
		{"comma object", TypeCommaStringSlice, map[string]any{}, nil, "f: expected a string or a list of strings, got an object"},
		// Statements: Vault's four encodings, and SQL that is none of them.
		{"statements sql", TypeStatements, create + grant, []string{create + grant}, ""},
		{"statements list", TypeStatements, []any{create, " " + grant + " "}, []string{create, grant}, ""},
		{"statements json", TypeStatements, jsonList, []string{create, grant}, ""},
		{"statements base64", TypeStatements, b64(create + grant), []string{create + grant}, ""},
		{"statements base64 json", TypeStatements, b64(jsonList), []string{create, grant}, ""},
		{"statements list of base64", TypeStatements, []any{b64(create), grant}, []string{create, grant}, ""},
		{"statements bracket sql", TypeStatements, "[not json", []string{"[not json"}, ""},
		{"statements empty", TypeStatements, "", []string{}, ""},
		{"statements object", TypeStatements, map[string]any{}, nil, "f: expected a string or a list of strings, got an object"},
		{"kv string", TypeKVPairs, "a=1,b=2", map[string]string{"a": "1", "b": "2"}, ""},
		{"kv map", TypeKVPairs, map[string]any{"a": "1"}, map[string]string{"a": "1"}, ""},
		{"kv bad", TypeKVPairs, "novalue", nil, `f: "novalue" is not key=value`},
		{"map", TypeMap, map[string]any{"a": 1}, map[string]any{"a": 1}, ""},
		{"map bad", TypeMap, "x", nil, "f: expected a map, got string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&Field{Type: tc.typ}).Parse("f", tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				var ce *CodedError
				if e, ok := err.(*CodedError); !ok || e.Status != 400 {
					t.Fatalf("error %T %v is not a 400 CodedError", err, ce)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, %v; want %#v", got, err, tc.want)
			}
		})
	}
}

func TestFieldRangeNonNegative(t *testing.T) {
	f := &Field{Type: TypeInt, NonNegative: true}
	if _, err := f.Parse("max_open_connections", "-1"); err == nil || err.Error() != "max_open_connections cannot be negative" {
		t.Fatalf("got %v", err)
	}
	if n, err := f.Parse("max_open_connections", "0"); err != nil || n != 0 {
		t.Fatalf("got %v %v", n, err)
	}
}

// TestParseFieldsUnknown: unknown fields are listed sorted and draw Vault's
// warning, word for word; known ones are parsed; the first bad field (in
// name order) is the error.
func TestParseFieldsUnknown(t *testing.T) {
	schema := FieldSchema{"ttl": {Type: TypeDurationSecond}, "renewable": {Type: TypeBool}}
	fd, err := ParseFields(schema, map[string]any{"ttl": "1h", "zeta": 1, "alpha": "x", "renewable": "false"})
	if err != nil {
		t.Fatal(err)
	}
	if fd.Duration("ttl") != time.Hour || fd.Bool("renewable") || !fd.Has("renewable") || fd.Has("alpha") {
		t.Fatalf("values: %#v", fd.values)
	}
	if !reflect.DeepEqual(fd.Unknown, []string{"alpha", "zeta"}) {
		t.Fatalf("unknown = %v", fd.Unknown)
	}
	resp := WarnIgnored(nil, fd.Unknown)
	if resp == nil || !reflect.DeepEqual(resp.Warnings, []string{"Endpoint ignored these unrecognized parameters: [alpha zeta]"}) {
		t.Fatalf("resp = %#v", resp)
	}
	if WarnIgnored(nil, nil) != nil {
		t.Fatal("a warning with no unknown fields")
	}
	_, err = ParseFields(schema, map[string]any{"ttl": "soon", "renewable": "maybe"})
	if err == nil || err.Error() != `renewable: "maybe" is not a boolean` {
		t.Fatalf("err = %v", err)
	}
}

// TestCanonicalize: the ACL sees decoded statements and split lists.
func TestCanonicalize(t *testing.T) {
	schema := FieldSchema{"s": {Type: TypeStatements}, "l": {Type: TypeCommaStringSlice}, "b": {Type: TypeBool}, "d": {Type: TypeDurationSecond}}
	data := map[string]any{"s": b64(`["A;", "B;"]`), "l": "x,y", "b": "1", "d": "1h", "other": "z", "bad": map[string]any{}}
	schema.Canonicalize(data)
	want := map[string]any{"s": []any{"A;", "B;"}, "l": []any{"x", "y"}, "b": true, "d": "1h", "other": "z", "bad": map[string]any{}}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("got %#v", data)
	}
}

func TestUnsupportedErrors(t *testing.T) {
	req := &Request{MountPoint: "sys/", Path: "nope", Operation: DeleteOperation}
	if err := UnsupportedPath(req); err.Error() != `unsupported path "sys/nope"` || !errorsIs(err, ErrUnsupportedPath) {
		t.Fatalf("got %v", err)
	}
	if err := UnsupportedOperation(req); err.Error() != `unsupported operation delete on "sys/nope"` || !errorsIs(err, ErrUnsupportedOperation) {
		t.Fatalf("got %v", err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
