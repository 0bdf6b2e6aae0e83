package postgres

import (
	"crypto/rand"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixedNow = time.Date(2023, 11, 14, 22, 13, 20, 123e6, time.UTC) // unix 1700000000

func TestRenderDefaultUsername(t *testing.T) {
	cases := []struct {
		m    UsernameMetadata
		want string
	}{
		{UsernameMetadata{DisplayName: "token", RoleName: "readonly", Now: fixedNow}, "v-token-readonly-0123456789ABCDEFGHIJ-1700000000"},
		{UsernameMetadata{DisplayName: "token-operator", RoleName: "readonly-long", Now: fixedNow}, "v-token-op-readonly-0123456789ABCDEFGHIJ-1700000000"},
		// Empty parts are kept, as in Vault 1.7+.
		{UsernameMetadata{RoleName: "r", Now: fixedNow}, "v--r-0123456789ABCDEFGHIJ-1700000000"},
	}
	for _, c := range cases {
		got, err := RenderUsername(DefaultUsernameTemplate, c.m, &byteSeq{})
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("RenderUsername(%+v) = %q, want %q", c.m, got, c.want)
		}
	}
	got, err := RenderUsername(DefaultUsernameTemplate, UsernameMetadata{DisplayName: "root", RoleName: "readonly"}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^v-root-readonly-[A-Za-z0-9]{20}-[0-9]{10}$`).MatchString(got) {
		t.Errorf("username %q", got)
	}
}

func TestTemplateFunctions(t *testing.T) {
	m := UsernameMetadata{DisplayName: "Token-ÜberLongName", RoleName: "role", Now: fixedNow}
	cases := map[string]string{
		`{{ .DisplayName | truncate 7 }}`:               "Token-", // never half a rune
		`{{ .DisplayName | truncate 8 }}`:               "Token-Ü",
		`{{ .RoleName | truncate 10 }}`:                 "role",
		`{{ "abcdefghijklmnop" | truncate_sha256 12 }}`: "abcd" + sha256Hex("efghijklmnop")[:8],
		`{{ "short" | truncate_sha256 12 }}`:            "short",
		`{{ .RoleName | uppercase }}`:                   "ROLE",
		`{{ .DisplayName | lowercase }}`:                "token-überlongname",
		`{{ .DisplayName | replace "-" "_" }}`:          "Token_ÜberLongName",
		`{{ .RoleName | sha256 | truncate 16 }}`:        sha256Hex("role")[:16],
		`{{ unix_time }}`:                               "1700000000",
		`{{ unix_time_millis }}`:                        "1700000000123",
		`{{ timestamp "20060102T150405Z" }}`:            "20231114T221320Z",
		`{{ random 5 }}`:                                "01234",
		`{{ uuid }}`:                                    "00010203-0405-4607-8809-0a0b0c0d0e0f",
		`{{ printf "%s_%s" .RoleName (random 3) }}`:     "role_012",
	}
	for tmpl, want := range cases {
		got, err := RenderUsername(tmpl, m, &byteSeq{})
		if err != nil {
			t.Errorf("%s: %v", tmpl, err)
			continue
		}
		if got != want {
			t.Errorf("%s = %q, want %q", tmpl, got, want)
		}
	}
}

func TestValidateUsernameTemplate(t *testing.T) {
	ok := []string{
		DefaultUsernameTemplate,
		`{{ .DisplayName | truncate 50 }}-{{ random 5 }}`,
		`{{ printf "%s-%s" (.DisplayName | truncate 20) (.RoleName | truncate_sha256 20) }}{{ random 4 }}`,
		`lessor-{{ random 20 }}`,
	}
	for _, tmpl := range ok {
		if w, err := ValidateUsernameTemplate(tmpl); err != nil || len(w) != 0 {
			t.Errorf("ValidateUsernameTemplate(%s) = %q, %v", tmpl, w, err)
		}
	}
	// Accepted as Vault accepts them, with a warning: names over 63 bytes
	// (cut by lessor as PostgreSQL would), or names that repeat.
	warn := map[string]string{
		`{{ .DisplayName }}{{ random 4 }}`: "can render names over PostgreSQL's limit of 63 bytes (204 bytes with 200-byte display and role names): lessor cuts them to 63 bytes",
		`{{ printf "v-%s-%s-%s" (.DisplayName | truncate 30) (.RoleName | truncate 30) (random 20) }}`: "(84 bytes with",
		`{{ .RoleName | truncate 8 }}`: "renders the same name twice",
	}
	for tmpl, want := range warn {
		w, err := ValidateUsernameTemplate(tmpl)
		if err != nil || !strings.Contains(strings.Join(w, "\n"), want) {
			t.Errorf("ValidateUsernameTemplate(%q) = %q, %v, want a warning containing %q", tmpl, w, err, want)
		}
	}
	bad := map[string]string{
		`{{ .DisplayName `:     "parse username template",
		`{{ .Nope }}`:          "render username template",
		`{{ truncate 0 "x" }}`: "must be positive",
		``:                     "empty name",
		`{{ if .DisplayName }}x{{ else }}{{ .Nope }}{{ end }}`: "render username template",
		`{{ .RoleName | truncate 5 | truncate_sha256 4 }}`:     "must be over 8",
		`{{ "zz" | decode_hex }}`:                              "decode_hex",
	}
	for tmpl, want := range bad {
		_, err := ValidateUsernameTemplate(tmpl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateUsernameTemplate(%q) = %v, want an error containing %q", tmpl, err, want)
		}
	}
}

// A name over 63 bytes is cut to 63 bytes on a character boundary, as
// PostgreSQL cuts an identifier, so the name lessor records is the role's.
func TestRenderUsernameCutsLongNames(t *testing.T) {
	cases := map[string]string{
		strings.Repeat("x", 64):        strings.Repeat("x", 63),
		strings.Repeat("x", 63):        strings.Repeat("x", 63),
		strings.Repeat("x", 62) + "é!": strings.Repeat("x", 62), // é is bytes 63-64
		strings.Repeat("x", 61) + "é!": strings.Repeat("x", 61) + "é",
	}
	for in, want := range cases {
		got, err := RenderUsername(`{{ .DisplayName }}`, UsernameMetadata{DisplayName: in}, rand.Reader)
		if err != nil || got != want {
			t.Errorf("RenderUsername(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
}

// One table per function, with Vault's results (sdk/helper/template).
func TestTemplateFunctionTables(t *testing.T) {
	m := UsernameMetadata{DisplayName: "token-with-display-name", RoleName: "my_custom_database_role", Now: fixedNow}
	tables := map[string]map[string]string{
		"truncate": {
			`{{ "foobarbaz" | truncate 1 }}`:          "f",
			`{{ "foobarbaz" | truncate 8 }}`:          "foobarba",
			`{{ "foobarbaz" | truncate 9 }}`:          "foobarbaz",
			`{{ "foobarbaz" | truncate 10 }}`:         "foobarbaz",
			`{{ "ab\xff\xfecd" | truncate 4 | hex }}`: "6162fffe", // not UTF-8: cut where it falls
		},
		"truncate_sha256": {
			// Vault's docs: abcdefghijkl + first 8 hex of sha256("mnopqrstuvwxyz").
			`{{ "abcdefghijklmnopqrstuvwxyz" | truncate_sha256 20 }}`: "abcdefghijkl872808ff",
			`{{ "short" | truncate_sha256 12 }}`:                      "short",
		},
		"uppercase":        {`{{ .RoleName | uppercase }}`: "MY_CUSTOM_DATABASE_ROLE"},
		"lowercase":        {`{{ "AbC-1" | lowercase }}`: "abc-1"},
		"replace":          {`{{ .DisplayName | replace "-" "_" }}`: "token_with_display_name"},
		"sha256":           {`{{ "role" | sha256 }}`: "a2f1d2ea4a5ec7e0e6f3e1e3b8a6e79b5b7e43f2bd3f0b2c2aeff1f0b9cfb4a1"},
		"base64":           {`{{ "foobar" | base64 }}`: "Zm9vYmFy"},
		"decode_base64":    {`{{ "Zm9vYmFy" | decode_base64 }}`: "foobar"},
		"hex":              {`{{ "foobar" | hex }}`: "666f6f626172"},
		"decode_hex":       {`{{ "666f6f626172" | decode_hex }}`: "foobar"},
		"unix_time":        {`{{ unix_time }}`: "1700000000"},
		"unix_time_millis": {`{{ unix_time_millis }}`: "1700000000123"},
		"timestamp":        {`{{ timestamp "2006_01_02T15_04_05Z" }}`: "2023_11_14T22_13_20Z"},
		"random":           {`{{ random 5 }}`: "01234", `x{{ random 0 }}`: "x"},
		"uuid":             {`{{ uuid }}`: "00010203-0405-4607-8809-0a0b0c0d0e0f"},
		"glob": {
			`{{ if glob "my_*_role" .RoleName }}yes{{ else }}no{{ end }}`: "yes",
			`{{ if glob "*-ro" .RoleName }}yes{{ else }}no{{ end }}`:      "no",
		},
	}
	tables["sha256"] = map[string]string{`{{ "role" | sha256 | truncate 32 }}`: sha256Hex("role")[:32]}
	for fn, table := range tables {
		for tmpl, want := range table {
			got, err := RenderUsername(tmpl, m, &byteSeq{})
			if err != nil || got != want {
				t.Errorf("%s: %s = %q, %v, want %q", fn, tmpl, got, err, want)
			}
		}
	}
	// The Vault docs' "Custom functions" example has no final truncate and
	// renders 72 bytes with these names: lessor cuts it to 63.
	got, err := RenderUsername(`FOO_{{.DisplayName | replace "-" "_" | uppercase}}_{{.RoleName | replace "-" "_" | uppercase}}_{{timestamp "2006_01_02T15_04_05Z" | replace "-" "_"}}`, m, &byteSeq{})
	if want := "FOO_TOKEN_WITH_DISPLAY_NAME_MY_CUSTOM_DATABASE_ROLE_2023_11_14T"; err != nil || got != want {
		t.Errorf("docs example = %q, %v, want %q", got, err, want)
	}
	for _, bad := range []string{`{{ random -1 }}`, `{{ random 1025 }}`, `{{ "!" | decode_base64 }}`, `{{ "x" | decode_hex }}`} {
		if _, err := RenderUsername(bad, m, &byteSeq{}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestRenderUsernameConcurrent: renders of one parsed template at once
// (lessor serve) each get their own time and randomness. Run with -race.
func TestRenderUsernameConcurrent(t *testing.T) {
	const n = 16
	names := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := UsernameMetadata{DisplayName: "token", RoleName: "readonly", Now: fixedNow.Add(time.Duration(i) * time.Second)}
			name, err := RenderUsername(`{{random 20}}-{{unix_time}}`, m, rand.Reader)
			if err != nil {
				t.Error(err)
			}
			names[i] = name
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, name := range names {
		want := "-" + strconv.FormatInt(fixedNow.Unix()+int64(i), 10)
		if len(name) != 20+len(want) || !strings.HasSuffix(name, want) || seen[name[:20]] {
			t.Fatalf("render %d: %q (want 20 random characters, unique, then %s)", i, name, want)
		}
		seen[name[:20]] = true
	}
}

// BenchmarkRenderUsername: the default template, rendered once per issued
// credential.
func BenchmarkRenderUsername(b *testing.B) {
	m := UsernameMetadata{DisplayName: "token-apps", RoleName: "readonly"}
	for b.Loop() {
		if _, err := RenderUsername(DefaultUsernameTemplate, m, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}
