package logical

import (
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	for _, tt := range []struct {
		in   string
		list bool
		want string // "" with ok false: refused
		ok   bool
	}{
		{"database/creds/readonly", false, "database/creds/readonly", true},
		{"/database/creds/readonly/", false, "database/creds/readonly", true},
		{"database/roles/", true, "database/roles/", true},
		{"sys/policy/my policy", false, "sys/policy/my policy", true},
		{"", false, "", true},
		{"sys/audit/ file", false, "", false},
		{"sys/audit/file ", false, "", false},
		{"sys/audit/file\u00a0", false, "", false},
		{"sys/mounts//prod", false, "", false},
		{"sys/mounts/prod//", false, "", false},
		{"sys/mounts/prod//", true, "", false},
		{"//sys/mounts", false, "", false},
		{"a/./b", false, "", false},
		{"a/../b", false, "", false},
		{"a/\x1b[31m", false, "", false},
		{"a/\x7f", false, "", false},
		{"a/\xff", false, "", false},
	} {
		got, err := CanonicalPath(tt.in, tt.list)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("CanonicalPath(%q, %v) = %q, %v; want %q", tt.in, tt.list, got, err, tt.want)
		}
		if !tt.ok && err == nil {
			t.Errorf("CanonicalPath(%q, %v) = %q, want an error", tt.in, tt.list, got)
		}
	}
}

func TestCheckKeys(t *testing.T) {
	if err := CheckKeys(map[string]any{"policies": 1, "ttl": 2, "Other": 3}); err != nil {
		t.Error(err)
	}
	err := CheckKeys(map[string]any{"policies": 1, "Policies": 2})
	if err == nil || err.Error() != `keys "Policies" and "policies" differ only in case; send one` {
		t.Errorf("CheckKeys: %v", err)
	}
}

func TestMaskTokens(t *testing.T) {
	tok := "lsr_" + strings.Repeat("Ab9", 10) + "zZ"
	for in, want := range map[string]string{
		"auth/token/lookup/" + tok:               "auth/token/lookup/[token]",
		tok + "/" + tok:                          "[token]/[token]",
		"lsr_short/x":                            "lsr_short/x",
		"database/creds/readonly":                "database/creds/readonly",
		"a/lsr_lsr_" + tok[4:] + "/b":            "a/lsr_[token]/b",
		"x/" + tok + "more":                      "x/[token]more",
		"a/lsr_" + strings.Repeat("q", 31) + tok: "a/[token]",
	} {
		if got := MaskTokens(in); got != want {
			t.Errorf("MaskTokens(%q) = %q, want %q", in, got, want)
		}
	}
}
