package kvargs

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// failingReader stands for a stdin that breaks half way (a closed pipe).
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestParse(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sql := write("create.sql", "CREATE ROLE \"{{name}}\";\nGRANT x TO \"{{name}}\";\n")
	empty := write("empty.txt", "")
	obj := write("body.json", `{"db_name": "pg", "max_ttl": 86400, "allowed_roles": ["a", "b"], "nested": {"n": 1.5}}`)
	arr := write("arr.json", `["a"]`)
	null := write("null.json", "null")
	bad := write("bad.json", `{"a": `)
	twice := write("twice.json", `{"a": 1} {"b": 2}`)
	garbage := write("garbage.json", `{"a": 1} x`)
	spaced := write("spaced.json", "\n  {\"a\": \"b\"}  \n\n")
	missing := filepath.Join(dir, "nope.txt")

	tests := []struct {
		name    string
		args    []string
		stdin   io.Reader // nil: no stdin at all
		want    map[string]any
		wantErr string
	}{
		{name: "no args", args: nil, want: map[string]any{}},
		{name: "plain", args: []string{"username=root", "password=rootpassword"},
			want: map[string]any{"username": "root", "password": "rootpassword"}},
		{name: "split on first equals",
			args: []string{"connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable&a=b"},
			want: map[string]any{"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable&a=b"}},
		{name: "empty value", args: []string{"k="}, want: map[string]any{"k": ""}},
		{name: "value is only equals", args: []string{"k=="}, want: map[string]any{"k": "="}},
		{name: "spaces kept", args: []string{" k = v "}, want: map[string]any{" k ": " v "}},
		{name: "empty argument ignored", args: []string{"", "a=1", ""}, want: map[string]any{"a": "1"}},
		{name: "file raw bytes", args: []string{"creation_statements=@" + sql},
			want: map[string]any{"creation_statements": "CREATE ROLE \"{{name}}\";\nGRANT x TO \"{{name}}\";\n"}},
		{name: "empty file", args: []string{"k=@" + empty}, want: map[string]any{"k": ""}},
		{name: "escaped at", args: []string{`k=\@x`}, want: map[string]any{"k": "@x"}},
		{name: "escaped at alone", args: []string{`k=\@`}, want: map[string]any{"k": "@"}},
		{name: "lone backslash", args: []string{`k=\`}, want: map[string]any{"k": `\`}},
		{name: "backslash not before at", args: []string{`k=\x`}, want: map[string]any{"k": `\x`}},
		{name: "at in the middle is literal", args: []string{"email=a@b"}, want: map[string]any{"email": "a@b"}},
		{name: "value from stdin raw", args: []string{"password=-"}, stdin: strings.NewReader("s3cret\n"),
			want: map[string]any{"password": "s3cret\n"}},
		{name: "dash inside value is literal", args: []string{"k=--"}, stdin: strings.NewReader("x"),
			want: map[string]any{"k": "--"}},
		{name: "bare dash merges JSON", args: []string{"a=1", "-"},
			stdin: strings.NewReader(`{"b": 2, "c": [true, null], "d": {"e": "f"}}`),
			want:  map[string]any{"a": "1", "b": json.Number("2"), "c": []any{true, nil}, "d": map[string]any{"e": "f"}}},
		{name: "bare file merges JSON", args: []string{"@" + obj},
			want: map[string]any{"db_name": "pg", "max_ttl": json.Number("86400"),
				"allowed_roles": []any{"a", "b"}, "nested": map[string]any{"n": json.Number("1.5")}}},
		{name: "JSON replaces an earlier key", args: []string{"db_name=x", "@" + obj},
			want: map[string]any{"db_name": "pg", "max_ttl": json.Number("86400"),
				"allowed_roles": []any{"a", "b"}, "nested": map[string]any{"n": json.Number("1.5")}}},
		{name: "repeat after JSON list appends", args: []string{"@" + obj, "allowed_roles=c"},
			want: map[string]any{"db_name": "pg", "max_ttl": json.Number("86400"),
				"allowed_roles": []any{"a", "b", "c"}, "nested": map[string]any{"n": json.Number("1.5")}}},
		{name: "JSON with surrounding whitespace", args: []string{"@" + spaced}, want: map[string]any{"a": "b"}},
		{name: "empty JSON object", args: []string{"-"}, stdin: strings.NewReader("{}"), want: map[string]any{}},
		{name: "repeated key becomes list", args: []string{"policies=a", "policies=b"},
			want: map[string]any{"policies": []any{"a", "b"}}},
		{name: "third repetition appends", args: []string{"p=a", "p=b", "p=c"},
			want: map[string]any{"p": []any{"a", "b", "c"}}},
		{name: "repeat of file and stdin values", args: []string{"k=@" + empty, "k=-"}, stdin: strings.NewReader("in"),
			want: map[string]any{"k": []any{"", "in"}}},
		{name: "at sign key from split", args: []string{"@a=b"}, want: map[string]any{"@a": "b"}},

		{name: "no equals", args: []string{"k"},
			wantErr: `invalid key/value pair "k": format must be key=value`},
		{name: "empty key", args: []string{"=v"},
			wantErr: `invalid key/value pair "=v": format must be key=value`},
		{name: "only equals", args: []string{"="},
			wantErr: `invalid key/value pair "=": format must be key=value`},
		{name: "bad after good", args: []string{"a=1", "oops"},
			wantErr: `invalid key/value pair "oops": format must be key=value`},
		{name: "double dash", args: []string{"--"},
			wantErr: `invalid key/value pair "--": format must be key=value`},
		{name: "missing value file", args: []string{"k=@" + missing},
			wantErr: `invalid key/value pair "k=@` + missing + `": open ` + missing + `: no such file or directory`},
		{name: "missing JSON file", args: []string{"@" + missing},
			wantErr: `invalid key/value pair "@` + missing + `": open ` + missing + `: no such file or directory`},
		{name: "unreadable file (a directory)", args: []string{"k=@" + dir},
			wantErr: `invalid key/value pair "k=@` + dir + `": read ` + dir + `: is a directory`},
		{name: "empty file name", args: []string{"k=@"},
			wantErr: `invalid key/value pair "k=@": open : no such file or directory`},
		{name: "stdin twice by value", args: []string{"a=-", "b=-"}, stdin: strings.NewReader("x"),
			wantErr: `invalid key/value pair "b=-": stdin already consumed`},
		{name: "stdin twice mixed", args: []string{"a=-", "-"}, stdin: strings.NewReader("x"),
			wantErr: `invalid key/value pair "-": stdin already consumed`},
		{name: "stdin twice by JSON", args: []string{"-", "-"}, stdin: strings.NewReader("{}"),
			wantErr: `invalid key/value pair "-": stdin already consumed`},
		{name: "no stdin", args: []string{"a=-"},
			wantErr: `invalid key/value pair "a=-": stdin is not available`},
		{name: "broken stdin", args: []string{"a=-"}, stdin: failingReader{},
			wantErr: `invalid key/value pair "a=-": read stdin: broken pipe`},
		{name: "invalid JSON on stdin", args: []string{"-"}, stdin: strings.NewReader("{nope"),
			wantErr: `invalid key/value pair "-": invalid JSON on stdin: invalid character 'n' looking for beginning of object key string`},
		{name: "empty stdin for JSON", args: []string{"-"}, stdin: strings.NewReader("  \n"),
			wantErr: `invalid key/value pair "-": invalid JSON on stdin: no JSON object found`},
		{name: "truncated JSON file", args: []string{"@" + bad},
			wantErr: `invalid key/value pair "@` + bad + `": invalid JSON in ` + bad + `: unexpected EOF`},
		{name: "JSON array", args: []string{"@" + arr},
			wantErr: `invalid key/value pair "@` + arr + `": invalid JSON in ` + arr + `: want an object, got an array`},
		{name: "JSON null", args: []string{"a=1", "@" + null},
			wantErr: `invalid key/value pair "@` + null + `": invalid JSON in ` + null + `: want an object, got null`},
		{name: "JSON string on stdin", args: []string{"-"}, stdin: strings.NewReader(`"x"`),
			wantErr: `invalid key/value pair "-": invalid JSON on stdin: want an object, got a string`},
		{name: "two JSON values", args: []string{"@" + twice},
			wantErr: `invalid key/value pair "@` + twice + `": invalid JSON in ` + twice + `: unexpected data after the object`},
		{name: "garbage after JSON", args: []string{"@" + garbage},
			wantErr: `invalid key/value pair "@` + garbage + `": invalid JSON in ` + garbage + `: unexpected data after the object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.args, tt.stdin)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %#v, want error %q", tt.args, got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("Parse(%q) error:\n got %q\nwant %q", tt.args, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Parse(%q) returned data %#v with its error", tt.args, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseFileErrorKeepsCause(t *testing.T) {
	_, err := Parse([]string{"k=@" + filepath.Join(t.TempDir(), "gone")}, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not wrap fs.ErrNotExist", err)
	}
}

// FuzzParse feeds arbitrary arguments (NUL-separated) and stdin to the
// parser. Files come from a fixed in-memory set so that a generated
// `@/dev/zero` cannot hang the run.
func FuzzParse(f *testing.F) {
	f.Add("a=b\x00c=@f.json\x00-", []byte(`{"x": 1}`))
	f.Add("@f.json\x00k=\\@x\x00k=\\", []byte(""))
	f.Add("=\x00k", []byte("x"))
	files := map[string][]byte{
		"f.json":   []byte(`{"a": ["b"], "n": 1e400}`),
		"raw.txt":  []byte("line\n"),
		"null":     []byte("null"),
		"bad.json": []byte("{"),
	}
	f.Fuzz(func(t *testing.T, joined string, stdin []byte) {
		args := strings.Split(joined, "\x00")
		p := parser{
			stdin: strings.NewReader(string(stdin)),
			readFile: func(name string) ([]byte, error) {
				if b, ok := files[name]; ok {
					return b, nil
				}
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			},
			result: map[string]any{},
		}
		for _, arg := range args {
			if err := p.add(arg); err != nil {
				if err.Error() == "" {
					t.Fatalf("empty error for %q", arg)
				}
				return
			}
			// A plain key=value argument always lands in the result.
			k, v, ok := strings.Cut(arg, "=")
			if ok && k != "" && !strings.HasPrefix(v, "@") && v != "-" {
				if _, present := p.result[k]; !present {
					t.Fatalf("key %q from %q missing in %#v", k, arg, p.result)
				}
			}
		}
		if p.result == nil {
			t.Fatal("nil result")
		}
	})
}

// TestEndlessInput: stdin or a file that never ends (a pipe from `yes`,
// /dev/zero) is an error once it passes MaxInput, not a read that grows
// until the process is killed; MaxInput bytes exactly are taken.
func TestEndlessInput(t *testing.T) {
	endless := io.LimitReader(zeros{}, 1<<40)
	if _, err := Parse([]string{"k=-"}, endless); err == nil || !strings.Contains(err.Error(), "stdin holds more than 32 MiB") {
		t.Errorf("k=- from an endless stdin: %v, want the 32 MiB error", err)
	}
	if _, err := Parse([]string{"k=@/dev/zero"}, nil); err == nil || !strings.Contains(err.Error(), "/dev/zero holds more than 32 MiB") {
		t.Errorf("k=@/dev/zero: %v, want the 32 MiB error", err)
	}
	got, err := Parse([]string{"k=-"}, io.LimitReader(zeros{}, MaxInput))
	if err != nil || len(got["k"].(string)) != MaxInput {
		t.Errorf("exactly MaxInput bytes: %v", err)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
