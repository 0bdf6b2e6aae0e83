package postgres

import (
	"strings"
	"testing"
	"time"
)

func TestFormatExpiration(t *testing.T) {
	east := time.FixedZone("UTC+3", 3*3600)
	got := FormatExpiration(time.Date(2024, 5, 4, 0, 7, 11, 999e6, east))
	if want := "2024-05-03 21:07:11+0000"; got != want {
		t.Errorf("FormatExpiration = %q, want %q", got, want)
	}
}

func TestSubstitute(t *testing.T) {
	vals := map[string]string{
		"name":       "v-root-ro-abc-1700000000",
		"username":   "v-root-ro-abc-1700000000",
		"password":   "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5",
		"expiration": "2024-05-03 21:07:11+0000",
	}
	cases := []struct{ in, want string }{
		{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
			`CREATE ROLE "v-root-ro-abc-1700000000" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5' VALID UNTIL '2024-05-03 21:07:11+0000'`},
		{`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{username}}"`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "v-root-ro-abc-1700000000"`},
		// Unknown placeholders stay, as in Vault; PostgreSQL reports them.
		{`SELECT '{{other}}'`, `SELECT '{{other}}'`},
		// Raw outside quotes when harmless (an unquoted name is the user's
		// choice, as in Vault).
		{`ALTER ROLE x VALID UNTIL {{expiration}}`, `ALTER ROLE x VALID UNTIL 2024-05-03 21:07:11+0000`},
		{`DO $$ BEGIN EXECUTE format('GRANT r TO %I', '{{name}}'); END $$`,
			`DO $$ BEGIN EXECUTE format('GRANT r TO %I', 'v-root-ro-abc-1700000000'); END $$`},
		{"SELECT 1 -- for {{name}}", "SELECT 1 -- for v-root-ro-abc-1700000000"},
	}
	for _, c := range cases {
		got, err := substitute(c.in, vals)
		if err != nil {
			t.Errorf("substitute(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("substitute(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestSubstituteHostileValues(t *testing.T) {
	hostile := `a"b'c;d\e$$f`
	vals := map[string]string{"name": hostile, "username": "{{name}}"}
	cases := []struct{ in, want string }{
		{`CREATE ROLE "{{name}}"`, `CREATE ROLE "a""b'c;d\e$$f"`},
		{`COMMENT ON ROLE x IS '{{name}}'`, `COMMENT ON ROLE x IS 'a"b''c;d\e$$f'`},
		{`COMMENT ON ROLE x IS E'{{name}}'`, `COMMENT ON ROLE x IS E'a"b''c;d\\e$$f'`},
		{`DO $fn$ BEGIN RAISE NOTICE '%', '{{name}}'; END $fn$`, `DO $fn$ BEGIN RAISE NOTICE '%', 'a"b''c;d\e$$f'; END $fn$`},
		// One pass: a value that looks like a placeholder stays as it is.
		{`SELECT '{{username}}'`, `SELECT '{{name}}'`},
	}
	for _, c := range cases {
		got, err := substitute(c.in, vals)
		if err != nil {
			t.Errorf("substitute(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("substitute(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	refused := map[string]string{
		`DROP ROLE {{name}}`:                     "not safe outside quotes",
		`DO $$ BEGIN PERFORM '{{name}}'; END $$`: "would end the dollar-quoted body",
		`SELECT 1 /* {{name}} */`:                "",
	}
	for in, want := range refused {
		_, err := substitute(in, vals)
		if want == "" {
			if err != nil {
				t.Errorf("substitute(%q): %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("substitute(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	for _, v := range []string{"x\ny", "x*/y"} {
		if _, err := substitute("SELECT 1 -- {{name}}\n/* {{name}} */", map[string]string{"name": v}); err == nil {
			t.Errorf("value %q accepted inside a comment", v)
		}
	}
	if _, err := substitute(`SELECT '{{name}}'`, map[string]string{"name": "a\x00b"}); err == nil {
		t.Error("NUL byte accepted")
	}
}
