package postgres

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRenderUsername renders arbitrary templates with arbitrary display and
// role names. Whatever it is given, RenderUsername never panics and never
// returns a name PostgreSQL would silently truncate or could not hold: a
// result is non-empty, at most 63 bytes, valid UTF-8 and free of NUL
// bytes. truncate
// never splits a UTF-8 sequence it was given whole. A template that
// ValidateUsernameTemplate accepts renders with the names it was
// validated with.
func FuzzRenderUsername(f *testing.F) {
	f.Add(DefaultUsernameTemplate, "token", "readonly")
	f.Add(`{{.RoleName}}`, `x"; DROP ROLE postgres; --`, "r")
	f.Add(`{{.DisplayName | truncate 5}}`, "ééééé", "r")
	f.Add(`{{ printf "%s-%s" .DisplayName .RoleName | truncate_sha256 20 }}`, strings.Repeat("a", 100), "b")
	f.Add(`{{ uuid }}{{ random 3 }}`, "", "")
	f.Add(`{{ timestamp "2006-01-02" }}{{unix_time_millis}}`, "d", "r")
	f.Add(`{{ replace "-" "_" .DisplayName | uppercase | lowercase | sha256 | truncate 10 }}`, "a-b", "r")
	f.Add(`{{printf "%c" 0}}`, "", "")
	f.Add("{{.DisplayName}}", "\xff\xfe\x00", "")
	f.Add(`{{.Missing}}`, "d", "r")
	f.Add(`{{random 0}}`, "d", "r")
	f.Fuzz(func(t *testing.T, tmpl, display, role string) {
		// text/template has no step limit: a range over a large integer
		// spins for as long as it likes. Role templates are written by an
		// operator holding the config path, so that is not an attack
		// surface; the fuzzer must not wander into it.
		if strings.Contains(tmpl, "range") || len(tmpl) > 512 {
			t.Skip()
		}
		m := UsernameMetadata{DisplayName: display, RoleName: role, Now: time.Unix(1700000000, 0)}
		name, err := RenderUsername(tmpl, m, rand.NewChaCha8([32]byte{2}))
		if err == nil {
			switch {
			case strings.TrimSpace(name) == "":
				t.Fatalf("rendered an empty name %q", name)
			case len(name) > MaxIdentifierLength:
				t.Fatalf("rendered %d bytes", len(name))
			case strings.IndexByte(name, 0) >= 0:
				t.Fatalf("rendered a NUL byte: %q", name)
			case !utf8.ValidString(name):
				t.Fatalf("rendered invalid UTF-8: %q", name)
			}
		}
		if utf8.ValidString(display) {
			for n := 1; n <= len(display)+1; n++ {
				got, err := truncate(n, display)
				if err != nil || len(got) > n || !strings.HasPrefix(display, got) || !utf8.ValidString(got) {
					t.Fatalf("truncate %d %q = %q, %v", n, display, got, err)
				}
				if n > 8 {
					got, err = truncateSHA256(n, display)
					if err != nil || len(got) > n || !utf8.ValidString(got) {
						t.Fatalf("truncate_sha256 %d %q = %q, %v", n, display, got, err)
					}
				}
			}
		}
		// What validation accepts at config time must issue later: with
		// the names validation used, a validated template renders.
		if _, err := ValidateUsernameTemplate(tmpl); err != nil {
			return
		}
		long := UsernameMetadata{DisplayName: strings.Repeat("d", validationNameLen), RoleName: strings.Repeat("r", validationNameLen), Now: m.Now}
		if _, err := RenderUsername(tmpl, long, rand.NewChaCha8([32]byte{3})); err != nil {
			t.Fatalf("validated template %q does not render: %v", tmpl, err)
		}
	})
}
