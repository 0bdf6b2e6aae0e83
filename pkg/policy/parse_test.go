package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// seedAdmin and seedApps are the policies of the seed guide, verbatim.
const seedAdmin = `# Mount secret engines
path "sys/mounts/*" {
capabilities = [ "create", "read", "update", "delete", "list" ]
}
# Configure the database secret engine and create roles
path "database/*" {
capabilities = [ "create", "read", "update", "delete", "list" ]
}
# Write ACL policies
path "sys/policy/*" {
capabilities = [ "create", "read", "update", "delete", "list" ]
}
# Manage tokens for verification
path "auth/token/create" {
capabilities = [ "create", "read", "update", "delete", "list", "sudo" ]
}
`

const seedApps = `# Get credentials from the database secret engine
path "database/creds/readonly" {
capabilities = [ "read" ]
}
`

func mustParse(t testing.TB, name, text string) *Policy {
	t.Helper()
	p, err := Parse(name, text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", name, err)
	}
	return p
}

func TestParseSeedAdmin(t *testing.T) {
	p := mustParse(t, "admin", seedAdmin)
	crudl := []string{"create", "delete", "list", "read", "update"}
	want := []PathRules{
		{Path: "sys/mounts/*", Prefix: true, Capabilities: crudl, Line: 2},
		{Path: "database/*", Prefix: true, Capabilities: crudl, Line: 6},
		{Path: "sys/policy/*", Prefix: true, Capabilities: crudl, Line: 10},
		{Path: "auth/token/create", Capabilities: []string{"create", "delete", "list", "read", "sudo", "update"}, Line: 14},
	}
	if p.Name != "admin" || p.Raw != seedAdmin {
		t.Errorf("name %q, raw kept: %v", p.Name, p.Raw == seedAdmin)
	}
	if !reflect.DeepEqual(p.Paths, want) {
		t.Errorf("paths:\n got %+v\nwant %+v", p.Paths, want)
	}
}

// TestParseJSONEqualsHCL parses the same policy in both syntaxes, with
// every key a path block may hold.
func TestParseJSONEqualsHCL(t *testing.T) {
	hcl := `
name = "ignored"
path "/secret/+/config" {
  comment = "team configs"
  capabilities = ["update", "read", "read"]
  required_parameters = ["Owner"]
  allowed_parameters = {
    "owner" = []
    "ttl"   = [3600, "2h", true, 1.5]
  }
  denied_parameters = {
    "*" = []
  }
  min_wrapping_ttl = "1m"
  max_wrapping_ttl = 3600
  mfa_methods = ["duo"]
  control_group = {
    factor "ops" {
      identity {
        group_names = ["managers"]
        approvals = 1
      }
    }
  }
}
`
	json := `{
  "name": "ignored",
  "path": {
    "/secret/+/config": {
      "comment": "team configs",
      "capabilities": ["update", "read", "read"],
      "required_parameters": ["Owner"],
      "allowed_parameters": {"owner": [], "ttl": [3600, "2h", "true", 1.5]},
      "denied_parameters": {"*": []},
      "min_wrapping_ttl": "1m",
      "max_wrapping_ttl": 3600,
      "mfa_methods": ["duo"],
      "control_group": {"factor": {"ops": {"identity": {"group_names": ["managers"], "approvals": 1}}}}
    }
  }
}`
	want := []PathRules{{
		Path:               "secret/+/config",
		HasSegmentWildcard: true,
		Capabilities:       []string{"read", "update"},
		RequiredParameters: []string{"owner"},
		AllowedParameters:  map[string][]string{"owner": {}, "ttl": {"3600", "2h", "true", "1.5"}},
		DeniedParameters:   map[string][]string{"*": {}},
		MinWrappingTTL:     time.Minute,
		MaxWrappingTTL:     time.Hour,
		MFAMethods:         []string{"duo"},
		ControlGroup:       true,
		Comment:            "team configs",
	}}
	for name, text := range map[string]string{"hcl": hcl, "json": json} {
		p := mustParse(t, "Team ", text)
		if p.Name != "team" {
			t.Errorf("%s: name %q", name, p.Name)
		}
		got := append([]PathRules(nil), p.Paths...)
		for i := range got {
			got[i].Line = 0
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

func TestParseCapabilities(t *testing.T) {
	tests := []struct {
		block string
		want  []string
	}{
		{`capabilities = ["deny", "read", "sudo"]`, []string{"deny"}},
		{`capabilities = ["read"]` + "\n" + `policy = "deny"`, []string{"deny"}},
		{`policy = "read"`, []string{"list", "read"}},
		{`policy = "write"`, []string{"create", "delete", "list", "read", "update"}},
		{`policy = "sudo"`, []string{"create", "delete", "list", "read", "sudo", "update"}},
		{`policy = "deny"`, []string{"deny"}},
		{`capabilities = ["patch"]` + "\n" + `policy = "read"`, []string{"list", "patch", "read"}},
		{`capabilities = []`, nil},
		{``, nil},
	}
	for _, tt := range tests {
		p := mustParse(t, "p", "path \"a\" {\n"+tt.block+"\n}\n")
		if got := p.Paths[0].Capabilities; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.block, got, tt.want)
		}
	}
}

func TestParsePatterns(t *testing.T) {
	tests := []struct {
		pattern, path    string
		prefix, segments bool
	}{
		{"secret/foo", "secret/foo", false, false},
		{"/secret/foo", "secret/foo", false, false},
		{"secret/*", "secret/*", true, false},
		{"*", "*", true, false},
		{"secret/zip-*", "secret/zip-*", true, false},
		{"secret/*/x", "secret/*/x", false, false}, // a * not at the end is literal
		{"+", "+", false, true},
		{"+/foo", "+/foo", false, true},
		{"secret/+/foo/*", "secret/+/foo/*", true, true},
		{"secret/a+b", "secret/a+b", false, false},
	}
	for _, tt := range tests {
		p := mustParse(t, "p", `path "`+tt.pattern+`" { capabilities = ["read"] }`)
		pr := p.Paths[0]
		if pr.Path != tt.path || pr.Prefix != tt.prefix || pr.HasSegmentWildcard != tt.segments {
			t.Errorf("%q: got path %q prefix %v segments %v", tt.pattern, pr.Path, pr.Prefix, pr.HasSegmentWildcard)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown capability", "path \"a\" {\n}\npath \"a/b\" {\n  capabilities = [\"read\",\n    \"raed\"]\n}",
			`line 5: path "a/b": invalid capability "raed"`},
		{"capability case", `path "a" { capabilities = ["READ"] }`, `line 1: path "a": invalid capability "READ"`},
		{"newer vault capability", `path "a" { capabilities = ["subscribe"] }`, `line 1: path "a": invalid capability "subscribe"`},
		{"unknown block key", "path \"a\" {\n  capabilities = [\"read\"]\n  capability = [\"read\"]\n}",
			`line 3: path "a": invalid key "capability"`},
		{"unknown top-level key", "path \"a\" {}\n\npaths \"b\" {}", `line 3: invalid key "paths"`},
		{"hcl syntax error", "path \"a\" {\n  capabilities = [\"read\" \"list\"]\n}\n", `line 2: error parsing list, expected comma or list end, got: STRING`},
		{"hcl unterminated string", "path \"a\" {\n  capabilities = [\"read]\n}\n", `line 2: literal not terminated`},
		// hcl v1 reports a missing brace where the input ends.
		{"hcl missing brace", "path \"a\" {\n  capabilities = [\"read\"]\n", `line 3: object expected closing RBRACE got: EOF`},
		{"json syntax error", "{\"path\": {\n \"a\": {\"capabilities\": [\"read\"],}\n}}", `line 2: invalid JSON: invalid character '}' looking for beginning of object key string`},
		{"json boolean in list", "{\"path\": {\"a\": {\n \"allowed_parameters\": {\"x\": [true]}}}}",
			`line 2: a list in a JSON policy may not hold booleans; quote them`},
		{"json trailing data", `{"path": {}} {}`, `line 1: invalid JSON: data after the top-level object`},
		{"plus star", "\n\npath \"secret/+*\" { capabilities = [\"read\"] }", `line 3: path "secret/+*": invalid use of wildcards ('+*' is forbidden)`},
		{"plus star mid", `path "a/+*/b" {}`, `line 1: path "a/+*/b": invalid use of wildcards ('+*' is forbidden)`},
		{"empty path", "\npath \"\" { capabilities = [\"read\"] }", `line 2: path "": empty path`},
		{"only slash", `path "/" { capabilities = ["read"] }`, `line 1: path "/": empty path`},
		{"capabilities not a list", `path "a" { capabilities = "read" }`, `line 1: path "a": capabilities must be a list of strings`},
		{"capability not a string", `path "a" { capabilities = [1] }`, `line 1: path "a": capabilities must be a list of strings`},
		{"legacy policy unknown", "path \"a\" {\n policy = \"all\"\n}", `line 2: path "a": invalid policy "all"`},
		{"duplicate key", "path \"a\" {\n capabilities = []\n capabilities = [\"read\"]\n}", `line 3: path "a": duplicate key "capabilities"`},
		{"path without block", `path = "a"`, `line 1: path must be followed by a quoted pattern and a block`},
		{"pattern without block", "{\"path\": {\n \"a\": \"read\"}}", `line 2: path "a": expected a block { ... }`},
		{"hcl pattern without block", "path = {\n \"a\" = [\"read\"]\n}", `line 2: path "a": expected a block { ... }`},
		{"parameters not a map", "path \"a\" {\n allowed_parameters = [\"x\"]\n}", `line 2: path "a": allowed_parameters: must be a map of parameter names to lists of values`},
		{"parameter values not a list", "path \"a\" {\n denied_parameters = {\n  \"x\" = \"y\"\n }\n}", `line 3: path "a": denied_parameters: parameter "x": values must be a list`},
		{"duplicate parameter", "path \"a\" {\n allowed_parameters = {\n  \"x\" = []\n  \"X\" = []\n }\n}", `line 4: path "a": allowed_parameters: duplicate parameter "x"`},
		{"bad duration", `path "a" { min_wrapping_ttl = "soon" }`, `line 1: path "a": min_wrapping_ttl: invalid duration "soon"`},
		{"wrapping ttls reversed", "path \"a\" {\n min_wrapping_ttl = \"2h\"\n max_wrapping_ttl = \"1h\"\n}", `line 1: path "a": max_wrapping_ttl cannot be less than min_wrapping_ttl`},
		{"name not a string", `name = 1`, `line 1: name must be a string`},
		{"duration overflow", "path \"a\" {\n min_wrapping_ttl = 99999999999999999999\n}", `line 2: path "a": min_wrapping_ttl: invalid value 99999999999999999999`},
		{"negative duration", `path "a" { max_wrapping_ttl = -5 }`, `line 1: path "a": max_wrapping_ttl: must not be negative`},
		{"heredoc not terminated", "path \"a\" {\n comment = <<EOT\nabc", `line 3: heredoc not terminated`},
		{"json escape hcl cannot read", `{"path": {"a": {"comment": "\/"}}}`, `line 1: illegal char escape`},
		{"json nested list", "{\"path\": {\"a\": {\n\"capabilities\": [[\"read\"]]}}}", `line 2: a list may not hold a list`},
		{"json null block", `{"path": {"a": null}}`, `line 1: path "a": expected a block { ... }`},
		// hcl's JSON scanner panics on these escapes, in the nesting
		// count as in the parser.
		{"json escape the scanner panics on", `{"path": {"a\x": {}}}`, `line 1: invalid JSON: invalid character 'x' in string escape code`},
		{"json escape cut short", `{"path": {"a\u00`, `line 1: invalid JSON: unexpected EOF`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p", tt.text)
			if err == nil {
				t.Fatalf("parsed; want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *ParseError", err)
			}
			if _, ferr := Format(tt.text); ferr == nil || ferr.Error() != tt.want {
				t.Errorf("Format error %v, want the same as Parse", ferr)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct {
		in, norm string
		changed  bool
	}{
		{"apps", "apps", false},
		{"Apps", "apps", true},
		{"  my-Policy\n", "my-policy", true},
	} {
		norm, changed := NormalizeName(tt.in)
		if norm != tt.norm || changed != tt.changed {
			t.Errorf("NormalizeName(%q) = %q, %v", tt.in, norm, changed)
		}
	}
	for in, want := range map[string]string{
		"":       `invalid policy name: empty name`,
		"   ":    `invalid policy name: empty name`,
		"a/b":    `invalid policy name "a/b": contains "/"`,
		"a\x00b": `invalid policy name "a\x00b": contains a control character`,
		"a\tb":   `invalid policy name "a\tb": contains a control character`,
		" Root":  `invalid policy name "root": reserved for the implicit root policy`,
	} {
		_, err := Parse(in, `path "a" {}`)
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidName) {
			t.Errorf("Parse(%q): %v, want %s", in, err, want)
		}
	}
	if p := mustParse(t, " ÉQUIPE ", ""); p.Name != "équipe" || len(p.Paths) != 0 {
		t.Errorf("got %q with %d paths", p.Name, len(p.Paths))
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := mustParse(t, DefaultPolicyName, DefaultPolicy)
	var got []string
	for _, pr := range p.Paths {
		got = append(got, pr.Path+" "+strings.Join(pr.Capabilities, ","))
	}
	want := []string{
		"auth/token/lookup-self read",
		"auth/token/renew-self update",
		"auth/token/revoke-self update",
		"sys/capabilities-self update",
		"sys/leases/renew update",
		"sys/leases/lookup update",
		"sys/tools/hash update",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("default policy:\n got %q\nwant %q", got, want)
	}
	a, err := NewACL(p)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"sys/leases/renew": true, "sys/leases/lookup": true, "sys/leases/revoke": false,
		"sys/leases/lookup/database/creds": false, "auth/token/create": false,
	} {
		if got := a.Allow("update", path, nil).Allowed; got != want {
			t.Errorf("default: update %q = %v", path, got)
		}
	}
	formatted, err := Format(DefaultPolicy)
	if err != nil || formatted != DefaultPolicy {
		t.Errorf("default policy is not in canonical form (%v):\n%s", err, formatted)
	}
}

// TestParseSizeLimit: a text over MaxSize is refused before parsing.
func TestParseSizeLimit(t *testing.T) {
	text := `path "a" { capabilities = ["read"] }` + strings.Repeat(" ", MaxSize)
	if _, err := Parse("big", text); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse of %d bytes: %v, want ErrTooLarge", len(text), err)
	}
	if _, err := Format(text); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Format of %d bytes: %v, want ErrTooLarge", len(text), err)
	}
	if _, err := Parse("small", text[:MaxSize]); err != nil {
		t.Errorf("Parse of %d bytes: %v", MaxSize, err)
	}
}

// TestParseDeepNesting: a policy nesting brackets or braces thousands deep
// is refused at once. The hcl parser's work grows with the square of the
// depth (20,000 levels took 47 s, a MaxSize policy hours, for whoever may
// write one to lessor serve), and millions overflow its stack.
func TestParseDeepNesting(t *testing.T) {
	for name, text := range map[string]string{
		"list":   `path "a" { capabilities = ` + strings.Repeat("[", MaxSize-40) + ` }`,
		"object": `path "a" ` + strings.Repeat("{ x = ", 20000),
		"JSON":   strings.Repeat(`{"a":`, 20000),
	} {
		start := time.Now()
		_, err := Parse("deep", text)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "nest deeper than") {
			t.Errorf("%s: %v", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refused after %s", name, d)
		}
	}
	// Brackets in strings and comments are characters, not nesting.
	deep := strings.Repeat("[{", 40)
	text := "# " + deep + "\n" + `path "a` + deep + `" { capabilities = ["read"] }`
	if _, err := Parse("chars", text); err != nil {
		t.Errorf("brackets in a string and a comment: %v", err)
	}
}

// TestParseDeepNestingHidden: the depth is counted on what the parser
// reads as brackets. In an HCL string, "${" makes the scanner ignore
// quotes up to its "}", and a heredoc may hold a quote: a count that took
// either quote for the start of a string missed every bracket up to the
// next quote (so did a count on the text before the parser's change of
// line endings), and half a million of them held lessor serve's CPU for
// longer than five minutes.
func TestParseDeepNestingHidden(t *testing.T) {
	deep := "y = " + strings.Repeat("[", 2000) + "\nz = \"a\"\n"
	for name, hide := range map[string]string{
		"interpolation": `x = "${"}"` + "\n",
		"heredoc":       "x = <<EOT\n\"\nEOT\n",
		// The parser turns "\r\n" into "\n" before it scans: the anchor
		// is then EOT, not "EOT\r", and the heredoc ends a line sooner.
		"heredoc CRLF": "x = <<EOT\r\nEOT\n",
	} {
		_, err := Parse("hidden", `path "a" { capabilities = ["read"] }`+"\n"+hide+deep)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "nest deeper than") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestParseScannerPanicIsAnError: hcl's JSON scanner panics on `{"\0`
// (FuzzParse found it once the nesting check scanned with it), and the
// check ran outside the parser's recover: writing such a policy ended
// lessor serve. It is now a parse error, with deep nesting after it too.
func TestParseScannerPanicIsAnError(t *testing.T) {
	for _, text := range []string{`{"\0`, `{"\0` + strings.Repeat("[", 100_000), `{"a": [[[{"\0`} {
		if _, err := Parse("p", text); err == nil {
			t.Errorf("Parse(%.20q): no error", text)
		}
	}
}
