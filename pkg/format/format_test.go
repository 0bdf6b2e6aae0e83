package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rogpeppe/go-internal/diff"

	"github.com/lessorhq/lessor/pkg/logical"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func render(resp *logical.Response, o Options) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = Secret(&out, &errOut, resp, o)
	return out.String(), errOut.String(), err
}

func checkText(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s differs (-want +got):\n%s\ngot  %q\nwant %q", what,
			diff.Diff("want", []byte(want), "got", []byte(got)), got, want)
	}
}

// The five responses of the golden matrix.
func goldenResponses() map[string]*logical.Response {
	return map[string]*logical.Response{
		"creds": transcriptCreds,
		"config": {Data: map[string]any{
			"allowed_roles": []any{"readonly", "readwrite"},
			"connection_details": map[string]any{
				"connection_url":       "postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable",
				"username":             "root",
				"max_open_connections": 4,
			},
			"password_authentication":            "scram-sha-256",
			"password_policy":                    "",
			"plugin_name":                        "postgresql-database-plugin",
			"root_credentials_rotate_statements": []string{},
			"verify_connection":                  true,
		}},
		"token": {Auth: &logical.Auth{
			ClientToken:      "s.Q2aOUVn1Lgj6qXzIS0j4enMh",
			Accessor:         "BeqmvtVE60aSiEBh0Sn2YFsG",
			Policies:         []string{"apps", "default"},
			TokenPolicies:    []string{"apps", "default"},
			IdentityPolicies: []string{},
			Metadata:         map[string]string{"user": "ci", "env": "prod"},
			EntityID:         "",
			LeaseDuration:    768 * time.Hour,
			Renewable:        true,
		}},
		"lookup": {Data: map[string]any{
			"id":               "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
			"issue_time":       time.Date(2026, 11, 26, 17, 46, 10, 482043685, time.UTC),
			"expire_time":      "2026-11-26T18:46:10.482044015Z",
			"last_renewal":     nil,
			"renewable":        true,
			"ttl":              3598,
			"creation_ttl":     json.Number("3600"),
			"explicit_max_ttl": int64(0),
			"period":           float64(90),
			"lease_max":        uint32(86400),
			"ttl_max":          json.Number("90000"),
			"token_duration":   int32(45),
			"fraction_ttl":     1.5,
			"text_ttl":         "1h",
			"ttlx":             3600,
			"num_uses":         0,
		}},
		"warnings": {
			Secret: &logical.Secret{
				LeaseID:   "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
				TTL:       23*time.Hour + 59*time.Minute + 57*time.Second,
				Renewable: true,
			},
			Warnings: []string{
				`TTL of "48h" exceeded the effective max_ttl of "23h59m57s"; TTL value is capped accordingly`,
				`revocation of lease database/creds/readonly/Bc3O1OvgG4pKBKIjvYRjXAEs failed 3 times (last error: pq: role "v-token-readonly-1bLcUYSBuwNeDbiCxJSL-1795715170" cannot be dropped because some objects depend on it); it will be retried by every reap`,
			},
		},
	}
}

// goldenFields picks the -field each golden response is asked for.
var goldenFields = map[string]string{
	"creds":    "username",
	"config":   "connection_details",
	"token":    "token_policies",
	"lookup":   "ttl",
	"warnings": "lease_duration",
}

var goldenModes = []struct {
	name string
	opts func(field string) Options
}{
	{"table", func(string) Options { return Options{RequestID: "req-1"} }},
	{"json", func(string) Options { return Options{Format: "json", RequestID: "req-1"} }},
	{"yaml", func(string) Options { return Options{Format: "yaml", RequestID: "req-1"} }},
	{"field", func(f string) Options { return Options{Field: f} }},
	{"field-tty", func(f string) Options { return Options{Field: f, TTY: true} }},
	{"field-json", func(f string) Options { return Options{Format: "json", Field: f} }},
	{"field-yaml", func(f string) Options { return Options{Format: "yml", Field: f} }},
}

// TestGolden renders every golden response in every mode and compares
// stdout and stderr with testdata/golden/<response>.<mode>.{stdout,stderr}
// (no file: must be empty). Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	for name, resp := range goldenResponses() {
		for _, mode := range goldenModes {
			t.Run(name+"."+mode.name, func(t *testing.T) {
				out, errOut, err := render(resp, mode.opts(goldenFields[name]))
				if err != nil {
					t.Fatal(err)
				}
				base := filepath.Join("testdata", "golden", name+"."+mode.name)
				golden(t, base+".stdout", out)
				golden(t, base+".stderr", errOut)
			})
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if got == "" {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	checkText(t, path, got, string(want))
}

// The creds table golden is the transcript's own output, so -update
// cannot quietly move it away from Vault's.
func TestGoldenCredsTableIsTranscript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "creds.table.stdout"))
	if err != nil {
		t.Fatal(err)
	}
	checkText(t, "creds.table.stdout", string(b), transcriptCredsTable)
}

func TestValidateFormat(t *testing.T) {
	for _, ok := range []string{"", "table", "json", "yaml", "yml", "JSON", "Table", "YML", "env", "dotenv", "pgpass", "dsn", "ENV"} {
		if err := ValidateFormat(ok); err != nil {
			t.Errorf("ValidateFormat(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"xml", "pretty", "raw", " json", "tab"} {
		err := ValidateFormat(bad)
		if err == nil || err.Error() != "invalid output format: "+bad+" (valid: table, json, yaml, yml, env, dotenv, pgpass, dsn)" || !errors.Is(err, ErrInvalidFormat) {
			t.Errorf("ValidateFormat(%q) = %v", bad, err)
		}
	}
}

func TestInvalidFormatWritesNothing(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{"a": 1}, Warnings: []string{"w"}}
	out, errOut, err := render(resp, Options{Format: "xml"})
	if !errors.Is(err, ErrInvalidFormat) || err.Error() != "invalid output format: xml"+" (valid: table, json, yaml, yml, env, dotenv, pgpass, dsn)" {
		t.Fatalf("err = %v", err)
	}
	if out != "" || errOut != "" {
		t.Fatalf("wrote %q / %q", out, errOut)
	}
	var b bytes.Buffer
	if err := List(&b, &b, []string{"a"}, "p", Options{Format: "xml"}); !errors.Is(err, ErrInvalidFormat) || b.Len() != 0 {
		t.Fatalf("List: err = %v, wrote %q", err, b.String())
	}
}

func TestTableRows(t *testing.T) {
	tests := []struct {
		name string
		resp *logical.Response
		want string
	}{
		{name: "nil response", resp: nil, want: ""},
		{name: "empty response", resp: &logical.Response{}, want: ""},
		{name: "empty data", resp: &logical.Response{Data: map[string]any{}}, want: ""},
		{name: "lease id without TTL prints no lease rows",
			resp: &logical.Response{Secret: &logical.Secret{LeaseID: "x/y", Renewable: true}}, want: ""},
		{name: "sub-second TTL rounds to nothing",
			resp: &logical.Response{Secret: &logical.Secret{LeaseID: "x/y", TTL: 400 * time.Millisecond}}, want: ""},
		{name: "TTL without lease id is a refresh interval",
			resp: &logical.Response{Secret: &logical.Secret{TTL: 90 * time.Second}, Data: map[string]any{"k": "v"}},
			want: "Key                 Value\n---                 -----\nrefresh_interval    1m30s\nk                   v\n"},
		{name: "root token never expires",
			resp: &logical.Response{Auth: &logical.Auth{ClientToken: "s.root", Policies: []string{"root"}, TokenPolicies: []string{"root"}}},
			want: "Key                  Value\n---                  -----\n" +
				"token                s.root\ntoken_accessor       n/a\ntoken_duration       ∞\ntoken_renewable      false\n" +
				"token_policies       [\"root\"]\nidentity_policies    []\npolicies             [\"root\"]\n"},
		{name: "auth rows before data, lease rows first",
			resp: &logical.Response{
				Secret: &logical.Secret{LeaseID: "l", TTL: time.Minute},
				Auth:   &logical.Auth{ClientToken: "t", Accessor: "a", LeaseDuration: time.Hour, Metadata: map[string]string{"b": "2", "a": " 1 "}},
				Data:   map[string]any{"z": "last", "a": "first"},
			},
			want: "Key                  Value\n---                  -----\n" +
				"lease_id             l\nlease_duration       1m\nlease_renewable      false\n" +
				"token                t\ntoken_accessor       a\ntoken_duration       1h\ntoken_renewable      false\n" +
				"token_policies       []\nidentity_policies    []\npolicies             []\n" +
				"token_meta_a         1\ntoken_meta_b         2\na                    first\nz                    last\n"},
		{name: "values: nested, nil, blank, quotes, padding",
			resp: &logical.Response{Data: map[string]any{
				"list":   []any{"a", json.Number("1"), true, nil},
				"map":    map[string]any{"b": []string{"x"}, "a": map[string]int{"n": 1}},
				"nil":    nil,
				"blank":  "   ",
				"quoted": `say "hi"`,
				"spaced": "  value with inner  spaces  ",
				"int":    -3,
			}},
			want: "Key       Value\n---       -----\n" +
				"blank     n/a\nint       -3\nlist      [a 1 true <nil>]\nmap       map[a:map[n:1] b:[x]]\n" +
				"nil       <nil>\nquoted    say \"hi\"\nspaced    value with inner  spaces\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := render(tt.resp, Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkText(t, "stdout", out, tt.want)
			checkText(t, "stderr", errOut, "")
		})
	}
}

func TestHumanizedDurations(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{3600, "1h"},
		{0, "0s"},
		{90, "1m30s"},
		{5430, "1h30m30s"},
		{int64(2764800), "768h"},
		{int32(-5), "-5s"},
		{uint(60), "1m"},
		{uint64(61), "1m1s"},
		{uint32(3660), "1h1m"},
		{float64(7200), "2h"},
		{json.Number("86400"), "24h"},
		{json.Number("60.0"), "1m"},
		{90 * time.Minute, "1h30m"},
		{1500 * time.Millisecond, "2s"},
		// Left as they are: not whole seconds, not numbers, out of range.
		{1.5, "1.5"},
		{json.Number("1.5"), "1.5"},
		{json.Number("1e400"), "1e400"},
		{"3600", "3600"},
		{true, "true"},
		{nil, "<nil>"},
		{uint64(1) << 63, "9223372036854775808"},
		{int64(1) << 62, "4611686018427387904"},
		{float64(1e300), "1e+300"},
	}
	for _, tt := range tests {
		resp := &logical.Response{Data: map[string]any{"ttl": tt.v}}
		out, _, err := render(resp, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := "Key    Value\n---    -----\nttl    " + tt.want + "\n"
		if out != want {
			t.Errorf("ttl=%#v: got %q, want %q", tt.v, out, want)
		}
	}

	keys := map[string]bool{
		"ttl": true, "period": true, "duration": true, "lease_max": true, "ttl_max": true,
		"default_ttl": true, "token_period": true, "wrap_duration": true,
		"ttlx": false, "max_ttls": false, "lease_maximum": false, "my-ttl": false, "TTL": false,
	}
	for k, human := range keys {
		out, _, err := render(&logical.Response{Data: map[string]any{k: 60}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.HasSuffix(out, " 1m\n")
		if got != human {
			t.Errorf("key %q humanized = %v, want %v (output %q)", k, got, human, out)
		}
	}
}

func TestField(t *testing.T) {
	creds := &logical.Response{
		Secret: &logical.Secret{LeaseID: "database/creds/readonly/abc", TTL: 3599600 * time.Millisecond, Renewable: true},
		Data: map[string]any{
			"username": "v-u", "password": "p@ss word\n", "gone": nil,
			"nested": map[string]any{"k": []string{"a", "b"}}, "n": json.Number("42"),
		},
	}
	token := &logical.Response{
		Secret: &logical.Secret{LeaseID: "x", TTL: time.Minute},
		Auth: &logical.Auth{
			ClientToken: "s.tok", Accessor: "acc", LeaseDuration: time.Hour, Renewable: true,
			Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
		},
		Data: map[string]any{"token": "shadowed", "extra": "e"},
	}
	wrapped := &logical.Response{Data: map[string]any{"data": map[string]any{"inner": 1}, "metadata": "m"}}
	tests := []struct {
		name   string
		resp   *logical.Response
		field  string
		format string
		tty    bool
		want   string
	}{
		{"data field raw, no newline", creds, "password", "", false, "p@ss word\n"},
		{"data field on a tty", creds, "username", "", true, "v-u\n"},
		{"lease_id", creds, "lease_id", "", false, "database/creds/readonly/abc"},
		{"lease_duration is whole seconds", creds, "lease_duration", "", false, "3600"},
		{"refresh_interval", creds, "refresh_interval", "", false, "3600"},
		{"renewable", creds, "renewable", "", false, "true"},
		{"request_id", creds, "request_id", "", false, "req-9"},
		// Lists and maps print as JSON in every format, not as Go's %v.
		{"data is the whole map", creds, "data", "", false,
			"{\n  \"gone\": null,\n  \"n\": 42,\n  \"nested\": {\n    \"k\": [\n      \"a\",\n      \"b\"\n    ]\n  },\n  \"password\": \"p@ss word\\n\",\n  \"username\": \"v-u\"\n}"},
		{"data prefers data.data", wrapped, "data", "", false, "{\n  \"inner\": 1\n}"},
		{"map field", creds, "nested", "", false, "{\n  \"k\": [\n    \"a\",\n    \"b\"\n  ]\n}"},
		{"json string", creds, "username", "json", false, `"v-u"`},
		{"json string on a tty", creds, "username", "json", true, "\"v-u\"\n"},
		{"json number stays a number", creds, "n", "json", false, "42"},
		{"json map", creds, "nested", "json", false, "{\n  \"k\": [\n    \"a\",\n    \"b\"\n  ]\n}"},
		{"yaml string", creds, "username", "yaml", false, "v-u\n"},
		{"yaml string on a tty", creds, "username", "yaml", true, "v-u\n\n"},
		{"yaml map", creds, "nested", "yaml", false, "k:\n- a\n- b\n"},
		{"token", token, "token", "", false, "s.tok"},
		{"token_accessor", token, "token_accessor", "", false, "acc"},
		{"token_duration is seconds", token, "token_duration", "", false, "3600"},
		{"token_renewable", token, "token_renewable", "", false, "true"},
		{"token_policies", token, "token_policies", "", false, "[\n  \"apps\",\n  \"default\"\n]"},
		{"identity_policies nil", token, "identity_policies", "", false, "null"},
		{"identity_policies nil in json", token, "identity_policies", "json", false, "null"},
		{"policies json", token, "policies", "json", false, "[\n  \"apps\",\n  \"default\"\n]"},
		{"lease_id on a token response", token, "lease_id", "", false, "x"},
		{"data key on a token response", token, "extra", "", false, "e"},
		{"auth names are data keys without auth", &logical.Response{Data: map[string]any{"token": "d"}}, "token", "", false, "d"},
		{"no secret: empty lease id", &logical.Response{}, "lease_id", "", false, ""},
		{"no secret: zero duration", &logical.Response{}, "lease_duration", "json", false, "0"},
		{"nil data map", &logical.Response{}, "data", "", false, "null"},
		{"nil data map in json", &logical.Response{}, "data", "json", false, "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := render(tt.resp, Options{Field: tt.field, Format: Name(tt.format), TTY: tt.tty, RequestID: "req-9"})
			if err != nil {
				t.Fatal(err)
			}
			checkText(t, "stdout", out, tt.want)
			checkText(t, "stderr", errOut, "")
		})
	}
}

func TestFieldMissing(t *testing.T) {
	creds := &logical.Response{
		Secret:   &logical.Secret{LeaseID: "l", TTL: time.Hour, Renewable: true},
		Data:     map[string]any{"username": "u", "last_renewal": nil},
		Warnings: []string{"careful"},
	}
	for _, field := range []string{"lease_renewable", "last_renewal", "nope", "token", "token_duration", "Username"} {
		for _, format := range []string{"table", "json", "yaml"} {
			out, errOut, err := render(creds, Options{Field: field, Format: Name(format)})
			if !errors.Is(err, ErrFieldMissing) {
				t.Fatalf("field %q (%s): err = %v, want ErrFieldMissing", field, format, err)
			}
			if want := `field "` + field + `" not present in secret`; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if out != "" {
				t.Errorf("field %q: stdout %q", field, out)
			}
			checkText(t, "stderr", errOut, "WARNING! The following warnings were returned from lessor:\n\n  * careful\n\n")
		}
	}
	if _, _, err := render(nil, Options{Field: "x"}); !errors.Is(err, ErrFieldMissing) {
		t.Errorf("nil response: err = %v", err)
	}
}

func TestJSONEnvelope(t *testing.T) {
	resp := &logical.Response{
		Data:     map[string]any{"url": "a<b>&c", "empty": map[string]any{}},
		Warnings: []string{"w1", "w2"},
	}
	out, errOut, err := render(resp, Options{Format: "JSON"})
	if err != nil {
		t.Fatal(err)
	}
	checkText(t, "stdout", out, `{
  "request_id": "",
  "lease_id": "",
  "lease_duration": 0,
  "renewable": false,
  "data": {
    "empty": {},
    "url": "a\u003cb\u003e\u0026c"
  },
  "warnings": [
    "w1",
    "w2"
  ]
}
`)
	checkText(t, "stderr", errOut, "WARNING! The following warnings were returned from lessor:\n\n  * w1\n\n  * w2\n\n")

	// A nil response is an empty envelope, not an error.
	out, _, err = render(nil, Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	checkText(t, "stdout", out, "{\n  \"request_id\": \"\",\n  \"lease_id\": \"\",\n  \"lease_duration\": 0,\n  \"renewable\": false,\n  \"data\": null,\n  \"warnings\": null\n}\n")

	// What JSON cannot encode fails before anything is written.
	bad := &logical.Response{Data: map[string]any{"c": make(chan int)}, Warnings: []string{"w"}}
	for _, f := range []string{"json", "yaml"} {
		out, errOut, err := render(bad, Options{Format: Name(f)})
		if err == nil || !strings.HasPrefix(err.Error(), "encode "+f+": json: unsupported type: chan int") {
			t.Errorf("%s: err = %v", f, err)
		}
		if out != "" || errOut != "" {
			t.Errorf("%s: wrote %q / %q", f, out, errOut)
		}
		out, errOut, err = render(bad, Options{Format: Name(f), Field: "c"})
		if err == nil || err.Error() != "encode "+f+": json: unsupported type: chan int" {
			t.Errorf("%s field: err = %v", f, err)
		}
		if out != "" || errOut != "" {
			t.Errorf("%s field: wrote %q / %q", f, out, errOut)
		}
	}
}

func TestList(t *testing.T) {
	keys := []string{"b/", "a", "c"}
	want := map[string]string{
		"table": "Keys\n----\na\nb/\nc\n",
		"json":  "[\n  \"a\",\n  \"b/\",\n  \"c\"\n]\n",
		"yaml":  "- a\n- b/\n- c\n",
	}
	for format, w := range want {
		var out, errOut bytes.Buffer
		if err := List(&out, &errOut, keys, "database/roles", Options{Format: Name(format), Field: "ignored"}); err != nil {
			t.Fatal(err)
		}
		checkText(t, format, out.String(), w)
		checkText(t, "stderr", errOut.String(), "")
	}
	if strings.Join(keys, ",") != "b/,a,c" {
		t.Errorf("List sorted the caller's slice: %q", keys)
	}
	for _, format := range []string{"table", "json", "yaml"} {
		var out bytes.Buffer
		err := List(&out, &out, nil, "sys/leases/lookup/database/creds/readonly", Options{Format: Name(format)})
		if !errors.Is(err, ErrNoEntries) || err.Error() != "no value found at sys/leases/lookup/database/creds/readonly" {
			t.Errorf("%s: err = %v", format, err)
		}
		if out.Len() != 0 {
			t.Errorf("%s: wrote %q for an empty list", format, out.String())
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	Table(&b, []string{"Path", "Type", "Accessor", "Description"}, [][]string{
		{"cubbyhole/", "cubbyhole", "cubbyhole_8b2b1ad1", "per-token private secret storage"},
		{"database/", "database", "database_2a6d0b5d", ""},
		{"sys/", "system", "system_3c2ef3e0"},
		{"ünïcode/", "宽字符", "x", " trailing "},
	})
	checkText(t, "table", b.String(), ""+
		"Path          Type         Accessor              Description\n"+
		"----          ----         --------              -----------\n"+
		"cubbyhole/    cubbyhole    cubbyhole_8b2b1ad1    per-token private secret storage\n"+
		"database/     database     database_2a6d0b5d     n/a\n"+
		"sys/          system       system_3c2ef3e0       n/a\n"+
		"ünïcode/      宽字符       x                     trailing\n")

	b.Reset()
	Table(&b, []string{"Key", "Value"}, [][]string{{"statements", "CREATE ROLE x;\nGRANT y;"}, {"k", "v"}})
	checkText(t, "multi-line cell", b.String(),
		"Key           Value\n---           -----\nstatements    CREATE ROLE x;\n              GRANT y;\nk             v\n")

	b.Reset()
	Table(&b, []string{"Keys"}, nil)
	checkText(t, "header only", b.String(), "Keys\n----\n")

	b.Reset()
	Table(&b, nil, nil)
	checkText(t, "nothing", b.String(), "")

	// A wide cell is never wrapped, whatever its length.
	long := strings.Repeat("x", 500)
	b.Reset()
	Table(&b, []string{"Key", "Value"}, [][]string{{"k", long}})
	checkText(t, "wide", b.String(), "Key    Value\n---    -----\nk      "+long+"\n")
}

// The one-column shortcut must print what tablewriter would.
func TestTableSingleColumnMatchesTablewriter(t *testing.T) {
	keys := []string{"2AbWopfdHwscMcejEJroqLfq", "  padded  ", "", "ünïcode/宽", "a-much-longer-key-than-the-others/"}
	rows := make([][]string, len(keys))
	lines := [][]string{{"Keys"}, {"----"}}
	for i, k := range keys {
		rows[i] = []string{k}
		cell := strings.TrimSpace(k)
		if cell == "" {
			cell = "n/a"
		}
		lines = append(lines, []string{cell})
	}
	var b bytes.Buffer
	Table(&b, []string{"Keys"}, rows)
	checkText(t, "one column", b.String(), string(renderColumns(lines)))
	checkText(t, "one column", b.String(),
		"Keys\n----\n2AbWopfdHwscMcejEJroqLfq\npadded\nn/a\nünïcode/宽\na-much-longer-key-than-the-others/\n")
}

func TestValue(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{"s", "s"},
		{nil, "<nil>"},
		{[]string{"a", "b"}, "[a b]"},
		{[]string{}, "[]"},
		{[]any{"a", 1}, "[a 1]"},
		{map[string]any{"b": 2, "a": "x"}, "map[a:x b:2]"},
		{map[string]any{}, "map[]"},
		// What JSON carries as null, as a client decodes it.
		{map[string]string(nil), "<nil>"},
		{[]string(nil), "<nil>"},
		{(*int)(nil), "<nil>"},
		{json.Number("3600"), "3600"},
		{true, "true"},
		{time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), "2026-01-02T03:04:05.0000006Z"},
		{90 * time.Second, "1m30s"},
	}
	for _, tt := range tests {
		if got := Value(tt.v); got != tt.want {
			t.Errorf("Value(%#v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	var b bytes.Buffer
	Warnings(&b, nil)
	Warnings(&b, []string{})
	if b.Len() != 0 {
		t.Fatalf("no warnings printed %q", b.String())
	}

	long := strings.Repeat("x", 100)
	Warnings(&b, []string{
		"short",
		"",
		"a warning\nwith its own  line breaks that is long enough to need wrapping across two lines of output",
		"see " + long + " for details",
	})
	checkText(t, "warnings", b.String(), "WARNING! The following warnings were returned from lessor:\n\n"+
		"  * short\n\n"+
		"  *\n\n"+
		"  * a warning with its own  line breaks that is long enough to need wrapping\n"+
		"  across two lines of output\n\n"+
		// kr/text keeps an overlong word with its neighbour rather than
		// add a short line before it: 30²+penalty < 71²+24²+penalty.
		"  * see "+long+"\n"+
		"  for details\n\n")
	for line := range strings.Lines(b.String()) {
		if n := len(strings.TrimSuffix(line, "\n")); n > 78 && !strings.Contains(line, long) {
			t.Errorf("line of %d bytes: %q", n, line)
		}
	}
}

// Least raggedness, not greedy filling: greedy would fill "aaa bb" and
// leave "cc" alone on a short line (cost 0+16); the best is 9+1.
func TestWrapLeastRaggedness(t *testing.T) {
	got := wrap("aaa bb cc ddddd", 6)
	want := []string{"aaa", "bb cc", "ddddd"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("wrap = %q, want %q", got, want)
	}

	// A warning of many words wraps quickly, keeps every word, and stays
	// within the limit.
	// Linear work takes milliseconds; without the pruning in wrap the
	// search is quadratic, 2·10¹⁰ steps, far beyond the bound even on a
	// loaded machine.
	text := strings.TrimSpace(strings.Repeat("ab cde ", 100000))
	start := time.Now()
	lines := wrap(text, 76)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("wrapping 200000 words took %v", d)
	}
	if strings.Join(lines, " ") != text {
		t.Fatal("words lost or reordered")
	}
	for _, l := range lines {
		if len(l) > 76 {
			t.Fatalf("line of %d bytes: %q", len(l), l)
		}
	}
}

// BenchmarkList100k is `lessor list sys/leases/lookup/<prefix>` over
// 100,000 leases, the largest store lessor is meant to serve.
func BenchmarkList100k(b *testing.B) {
	keys := make([]string, 100000)
	for i := range keys {
		keys[i] = fmt.Sprintf("%024d", (i*7919)%100000)
	}
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := List(io.Discard, io.Discard, keys, "p", Options{Format: Name(format)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTable100kTwoColumns is a two-column listing of 100,000 rows,
// laid out by tablewriter.
func BenchmarkTable100kTwoColumns(b *testing.B) {
	rows := make([][]string, 100000)
	for i := range rows {
		rows[i] = []string{fmt.Sprintf("database/creds/readonly/%024d", i), "2026-11-26T18:46:10Z"}
	}
	b.ReportAllocs()
	for b.Loop() {
		Table(io.Discard, []string{"Lease ID", "Expire Time"}, rows)
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// A closed stdout is an error the caller sees, in every format.
func TestWriteErrors(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{"a": "b", "c": "d"}}
	for _, o := range []Options{{}, {Format: "json"}, {Format: "yaml"}, {Field: "a"}} {
		if err := Secret(brokenWriter{}, io.Discard, resp, o); err == nil || err.Error() != "broken pipe" {
			t.Errorf("Secret %+v: err = %v", o, err)
		}
		if err := List(brokenWriter{}, io.Discard, []string{"k"}, "p", o); err == nil || err.Error() != "broken pipe" {
			t.Errorf("List %+v: err = %v", o, err)
		}
	}
}

// Control characters in cells (a mount's description, token metadata)
// reach the terminal escaped; newline and tab stay; JSON is unchanged.
func TestTableEscapesControlCharacters(t *testing.T) {
	var b bytes.Buffer
	Table(&b, []string{"Path", "Description"}, [][]string{
		{"evil/", "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\x7f"},
		{"c1/", "a\u009b31mb \xff\x9b c"},
		{"ok/", "tab\there é 宽"},
	})
	checkText(t, "table", b.String(), ""+
		"Path     Description\n"+
		"----     -----------\n"+
		`evil/    \x1b]0;pwned\a\x1b[2J\x1b[31mred\r\x7f`+"\n"+
		`c1/      a\u009b31mb \xff\x9b c`+"\n"+
		"ok/      tab    here é 宽\n") // tablewriter expands the tab
	if bytes.ContainsAny(b.Bytes(), "\x1b\x07\r\x7f\u009b") || !utf8.Valid(b.Bytes()) {
		t.Errorf("raw control bytes in %q", b.String())
	}

	b.Reset()
	Table(&b, []string{"Keys"}, [][]string{{"k\x1b[8m"}})
	checkText(t, "one column", b.String(), "Keys\n----\n"+`k\x1b[8m`+"\n")

	b.Reset()
	resp := &logical.Response{Data: map[string]any{"description": "x\x1b[31m"}}
	if err := Secret(&b, io.Discard, resp, Options{Format: "table"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `description    x\x1b[31m`) {
		t.Errorf("secret table: %q", b.String())
	}
	b.Reset()
	if err := Secret(&b, io.Discard, resp, Options{Format: "json"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"description": "x\u001b[31m"`) {
		t.Errorf("json: %q", b.String())
	}
}

func TestIndentJSONEscapesC1(t *testing.T) {
	for in, want := range map[string]string{
		"a\u009b31mb\u0085é\u00a0\u0080": `"a\u009b31mb\u0085é` + "\u00a0" + `\u0080"`,
		"plain":                          `"plain"`,
		"\u00c2\u009f":                   `"Â\u009f"`,
	} {
		got, err := IndentJSON(in)
		if err != nil || string(got) != want {
			t.Errorf("IndentJSON(%q) = %s, %v; want %s", in, got, err, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != in {
			t.Errorf("IndentJSON(%q) decodes to %q, %v", in, back, err)
		}
	}
}

// -field on a terminal escapes control characters as tables do; piped, it
// gives the exact value.
func TestFieldEscapesControlsOnlyOnATerminal(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{"description": "x\x1b]0;pwned\x07"}}
	for _, tc := range []struct {
		tty  bool
		want string
	}{
		{true, `x\x1b]0;pwned\a` + "\n"},
		{false, "x\x1b]0;pwned\x07"},
	} {
		var b bytes.Buffer
		if err := Secret(&b, io.Discard, resp, Options{Format: "table", Field: "description", TTY: tc.tty}); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("-field, tty=%v: %q, want %q", tc.tty, b.String(), tc.want)
		}
	}
}

// TestEscapeBidiControls: a policy's comment with a right-to-left override
// could show the rules after it reordered on a terminal that renders
// bidirectional text ("Trojan source"); the controls are written as
// escapes, and other text is left alone.
func TestEscapeBidiControls(t *testing.T) {
	in := "# ok \u202e } \u2066x\u2069 \u200f\u061c end"
	got := EscapeControls(in)
	want := `# ok \u202e } \u2066x\u2069 \u200f\u061c end`
	if got != want {
		t.Errorf("EscapeControls(%q) = %q, want %q", in, got, want)
	}
	if s := "שלום עולם, naïve"; EscapeControls(s) != s {
		t.Errorf("plain right-to-left text changed: %q", EscapeControls(s))
	}
}
