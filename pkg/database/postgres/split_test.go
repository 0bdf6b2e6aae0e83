package postgres

import (
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"only separators and space", " ;\n;\t; ", nil},
		{"seed guide", `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`,
			[]string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"`}},
		{"no trailing semicolon", "SELECT 1;SELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"literal with semicolon and doubled quote", `SELECT 'a;''b'; SELECT 2`, []string{`SELECT 'a;''b'`, "SELECT 2"}},
		{"E string with backslash quote", `SELECT E'it\'s; here'; SELECT 2`, []string{`SELECT E'it\'s; here'`, "SELECT 2"}},
		{"E inside a word is not an E string", `SELECT name'x;y'; SELECT 2`, []string{`SELECT name'x;y'`, "SELECT 2"}},
		{"quoted identifier", `CREATE ROLE "a;""b"; SELECT 2`, []string{`CREATE ROLE "a;""b"`, "SELECT 2"}},
		{"DO block", "DO $$ BEGIN PERFORM 1; RAISE NOTICE 'x;y'; END $$; SELECT 2",
			[]string{"DO $$ BEGIN PERFORM 1; RAISE NOTICE 'x;y'; END $$", "SELECT 2"}},
		{"tagged dollar quote holding $$", "CREATE FUNCTION f() RETURNS text AS $fn$ SELECT $$a;b$$; $fn$ LANGUAGE sql; SELECT 2",
			[]string{"CREATE FUNCTION f() RETURNS text AS $fn$ SELECT $$a;b$$; $fn$ LANGUAGE sql", "SELECT 2"}},
		{"dollar in identifier is no quote", "SELECT a$b; SELECT $1; SELECT 2", []string{"SELECT a$b", "SELECT $1", "SELECT 2"}},
		{"line comment", "SELECT 1 -- a; b\n; SELECT 2", []string{"SELECT 1 -- a; b", "SELECT 2"}},
		{"nested block comment", "SELECT /* a; /* b; */ c; */ 1; SELECT 2", []string{"SELECT /* a; /* b; */ c; */ 1", "SELECT 2"}},
		{"begin atomic body", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3",
			[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END", "SELECT 3"}},
		{"begin atomic lower case", "create procedure p() begin atomic insert into t values (1); end; select 3",
			[]string{"create procedure p() begin atomic insert into t values (1); end", "select 3"}},
		{"unquoted DO body", "DO BEGIN x; IF a THEN y; END IF; LOOP z; END LOOP; END; SELECT 1",
			[]string{"DO BEGIN x; IF a THEN y; END IF; LOOP z; END LOOP; END", "SELECT 1"}},
		{"transaction BEGIN is a statement", "BEGIN; SELECT 1; END; COMMIT", []string{"BEGIN", "SELECT 1", "END", "COMMIT"}},
		{"begin as a column name", "CREATE TABLE t (begin int, \"end\" int); SELECT 1", []string{"CREATE TABLE t (begin int, \"end\" int)", "SELECT 1"}},
		{"unterminated literal runs to the end", "SELECT 'abc; def", []string{"SELECT 'abc; def"}},
		{"unterminated dollar quote", "DO $$ BEGIN; SELECT 2", []string{"DO $$ BEGIN; SELECT 2"}},
		{"comment only piece kept", "-- just a comment", []string{"-- just a comment"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := SplitStatements(c.in)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("SplitStatements(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

// checkSplit asserts the splitter's invariants for any input.
func checkSplit(t *testing.T, in string) {
	pieces := SplitStatements(in)
	var joined []rune
	for _, p := range pieces {
		if p == "" || strings.TrimSpace(p) != p {
			t.Fatalf("piece %q is empty or untrimmed (input %q)", p, in)
		}
		for _, r := range p {
			if !unicode.IsSpace(r) {
				joined = append(joined, r)
			}
		}
	}
	// The pieces' non-space characters are the input's, less some ';'.
	k := 0
	for _, r := range in {
		if unicode.IsSpace(r) {
			continue
		}
		if k < len(joined) && joined[k] == r {
			k++
			continue
		}
		if r != ';' {
			t.Fatalf("character %q lost (input %q, pieces %q)", r, in, pieces)
		}
	}
	if k != len(joined) {
		t.Fatalf("pieces hold characters not in the input (input %q, pieces %q)", in, pieces)
	}
	// A piece is one statement: splitting it again changes nothing.
	for _, p := range pieces {
		if again := SplitStatements(p); len(again) != 1 || again[0] != p {
			t.Fatalf("piece %q splits again into %q (input %q)", p, again, in)
		}
	}
}

func FuzzSplitStatements(f *testing.F) {
	for _, s := range []string{
		"SELECT 1; SELECT 2",
		"DO $$ BEGIN PERFORM 1; END $$;",
		"SELECT 'a;''b'; SELECT \"x;\"\"y\"",
		"SELECT E'\\';x'; SELECT 1",
		"SELECT /* /* ; */ */ 1 -- ;\n; SELECT 2",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkSplit(t, in)
	})
}

func TestLexRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "E'\\", "$a$ x $a", "/* /* */", "'x", `"x`, "--", "$$"} {
		var b strings.Builder
		for _, tok := range lex(s) {
			b.WriteString(tok.text)
		}
		if b.String() != s {
			t.Errorf("lex(%q) tokens join to %q", s, b.String())
		}
	}
}
