package postgres

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
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

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestValidateUsernameTemplate(t *testing.T) {
	ok := []string{
		DefaultUsernameTemplate,
		`{{ .DisplayName | truncate 63 }}`,
		`{{ printf "%s-%s" (.DisplayName | truncate 20) (.RoleName | truncate_sha256 20) }}`,
		`lessor-{{ random 20 }}`,
	}
	for _, tmpl := range ok {
		if err := ValidateUsernameTemplate(tmpl); err != nil {
			t.Errorf("ValidateUsernameTemplate(%s): %v", tmpl, err)
		}
	}
	bad := map[string]string{
		`{{ .DisplayName }}`: "can produce 200-byte names",
		`{{ printf "v-%s-%s-%s" (.DisplayName | truncate 30) (.RoleName | truncate 30) (random 20) }}`: "can produce 84-byte names",
		`{{ .DisplayName `:     "parse username template",
		`{{ .Nope }}`:          "render username template",
		`{{ truncate 0 "x" }}`: "must be positive",
		``:                     "empty name",
		`{{ if .DisplayName }}x{{ else }}{{ .Nope }}{{ end }}`: "render username template",
		`{{ .RoleName | truncate 5 | truncate_sha256 4 }}`:     "must be over 8",
	}
	for tmpl, want := range bad {
		err := ValidateUsernameTemplate(tmpl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateUsernameTemplate(%q) = %v, want an error containing %q", tmpl, err, want)
		}
	}
}

func TestRenderUsernameRefusesLongNames(t *testing.T) {
	m := UsernameMetadata{DisplayName: strings.Repeat("x", 64)}
	_, err := RenderUsername(`{{ .DisplayName }}`, m, rand.Reader)
	if err == nil || !strings.Contains(err.Error(), "is 64 bytes, over PostgreSQL's limit of 63") {
		t.Errorf("64-byte name: err = %v", err)
	}
	m.DisplayName = strings.Repeat("x", 63)
	if got, err := RenderUsername(`{{ .DisplayName }}`, m, rand.Reader); err != nil || got != m.DisplayName {
		t.Errorf("63-byte name: %q, %v", got, err)
	}
}
