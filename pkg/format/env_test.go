package format

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/logical"
)

// hostile holds what a shell, a .env reader or libpq would misread if a
// value were not quoted or escaped.
var hostile = []string{
	`plain`, `it's`, `'`, `''`, `a b`, `$(touch pwned)`, "`id`", `$HOME`, `\`, `\'`, `"`, `a:b\c`,
	"line\nbreak", "tab\there", `%41`, `@/?#&=+`, `*`, "", "ünï",
}

func TestEnvSurvivesEval(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, v := range hostile {
		resp := &logical.Response{
			Data:       map[string]any{"username": "u" + v, "password": "p" + v},
			Secret:     &logical.Secret{LeaseID: "database/creds/r/x", TTL: time.Hour},
			Connection: &logical.Connection{Host: "h", Port: 5432, Database: "d" + v},
		}
		var out bytes.Buffer
		if err := Secret(&out, io.Discard, resp, Options{Format: NameEnv}); err != nil {
			t.Fatal(err)
		}
		sh := exec.Command("sh", "-ec", `eval "$OUT"; printf '%s\0' "$PGUSER" "$PGPASSWORD" "$PGHOST" "$PGPORT" "$PGDATABASE" "$LESSOR_LEASE_ID" "$LESSOR_LEASE_DURATION"`)
		sh.Env = []string{"OUT=" + out.String()}
		sh.Dir = t.TempDir()
		got, err := sh.Output()
		if err != nil {
			t.Fatalf("eval of %q: %v", out.String(), err)
		}
		want := strings.Join([]string{"u" + v, "p" + v, "h", "5432", "d" + v, "database/creds/r/x", "3600"}, "\x00") + "\x00"
		if string(got) != want {
			t.Errorf("value %q: eval gives %q, want %q", v, got, want)
		}
	}
}

func TestEnvNames(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{
		"path": "database/creds/r", "ttl": 60, "max-ttl": 3, "9lives": true, "policies": []string{"a", "b"},
		"lessor_token": "x", "ld_preload": "y", "nothing": nil,
	}}
	var out bytes.Buffer
	if err := Secret(&out, io.Discard, resp, Options{Format: NameEnv}); err != nil {
		t.Fatal(err)
	}
	want := `export _9LIVES='true'
export LESSOR_LD_PRELOAD='y'
export LESSOR_LESSOR_TOKEN='x'
export MAX_TTL='3'
export NOTHING=''
export LESSOR_PATH='database/creds/r'
export POLICIES='["a","b"]'
export TTL='60'
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}

	dup := &logical.Response{Data: map[string]any{"a-b": 1, "a_b": 2}}
	err := Secret(io.Discard, io.Discard, dup, Options{Format: NameDotenv})
	if !errors.Is(err, ErrUnsupported) || err.Error() != `data keys "a-b" and "a_b" would both set A_B; use -format=json` {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestDotenvQuoting(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{"a": `it's`, "b": "two\nlines", "c": `$x "q" \`}}
	var out bytes.Buffer
	if err := Secret(&out, io.Discard, resp, Options{Format: NameDotenv}); err != nil {
		t.Fatal(err)
	}
	want := "A=\"it's\"\nB=\"two\\nlines\"\nC='$x \"q\" \\'\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	// A value that needs double quotes and holds $ or a backquote: a
	// shell sourcing the file would run it, so it is refused.
	for _, v := range []string{"a'$(touch x)", "a'`touch x`", "l1\n${HOME}"} {
		resp := &logical.Response{Data: map[string]any{"k": v}}
		err := Secret(io.Discard, io.Discard, resp, Options{Format: NameDotenv})
		if err == nil || !strings.Contains(err.Error(), "K holds a quote or a line break and a $ or `") {
			t.Errorf("dotenv of %q: %v", v, err)
		}
	}
}

// pgpass escapes ':' and '\' as libpq reads them; dsn percent-encodes so
// that libpq's own parser (pgconn's, which follows it) gets the values
// back.
func TestPgpassAndDSN(t *testing.T) {
	for _, v := range hostile {
		if strings.ContainsAny(v, "\n") {
			continue
		}
		resp := &logical.Response{
			Data:       map[string]any{"username": "u" + v, "password": "p" + v},
			Connection: &logical.Connection{Host: "db.example", Port: 6432, Database: "d" + v},
		}
		var out bytes.Buffer
		if err := Secret(&out, io.Discard, resp, Options{Format: NamePgpass}); err != nil {
			t.Fatal(err)
		}
		fields := splitPgpass(strings.TrimSuffix(out.String(), "\n"))
		want := []string{"db.example", "6432", "d" + v, "u" + v, "p" + v}
		if strings.Join(fields, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("pgpass %q reads back as %q", out.String(), fields)
		}

		out.Reset()
		if err := Secret(&out, io.Discard, resp, Options{Format: NameDSN}); err != nil {
			t.Fatal(err)
		}
		cfg, err := pgconn.ParseConfig(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("dsn %q: %v", out.String(), err)
		}
		if cfg.User != "u"+v || cfg.Password != "p"+v || cfg.Host != "db.example" || cfg.Port != 6432 || cfg.Database != "d"+v {
			t.Errorf("dsn %q reads back as %q %q %q %d %q", out.String(), cfg.User, cfg.Password, cfg.Host, cfg.Port, cfg.Database)
		}
	}
	// A socket directory goes in the query; unknown fields are wildcards.
	sock := &logical.Response{Data: map[string]any{"username": "u", "password": "p"},
		Connection: &logical.Connection{Host: "/var/run/postgresql", Port: 5432}}
	var out bytes.Buffer
	if err := Secret(&out, io.Discard, sock, Options{Format: NameDSN}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "postgresql://u:p@?host=%2Fvar%2Frun%2Fpostgresql&port=5432\n" {
		t.Errorf("socket dsn = %q", got)
	}
	out.Reset()
	if err := Secret(&out, io.Discard, sock, Options{Format: NamePgpass}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "/var/run/postgresql:5432:*:u:p\n" {
		t.Errorf("socket pgpass = %q", got)
	}
	// Not a credential: refused, nothing written.
	out.Reset()
	err := Secret(&out, io.Discard, &logical.Response{Data: map[string]any{"username": "u"}}, Options{Format: NamePgpass})
	if !errors.Is(err, ErrNotCredential) || !errors.Is(err, ErrUnsupported) || out.Len() != 0 {
		t.Errorf("no password: err %v, wrote %q", err, out.String())
	}
}

// splitPgpass reads a password-file line as libpq does: ':' separates,
// '\' escapes the next character.
func splitPgpass(line string) []string {
	var fields []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			if i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
			}
		case ':':
			fields = append(fields, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(fields, cur.String())
}

func TestParseRegistry(t *testing.T) {
	for in, want := range map[string]Name{"": NameTable, "YML": NameYAML, "yaml": NameYAML, "Env": NameEnv, "DSN": NameDSN, "pgpass": NamePgpass, "dotenv": NameDotenv} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if NamePgpass.Prints(Document) || NameEnv.Prints(Document) || !NameEnv.Prints(Flat) || NameDSN.Prints(Flat) || !NameYAML.Prints(Document) {
		t.Error("Prints disagrees with the registry")
	}
}

// TestCredentialTLSSettings: the connection's sslmode and sslrootcert go
// with the credential, so that a client checks the server as lessor does.
func TestCredentialTLSSettings(t *testing.T) {
	resp := &logical.Response{
		Data:       map[string]any{"username": "u", "password": "p"},
		Connection: &logical.Connection{Host: "h", SSLMode: "verify-full", SSLRootCert: "/etc/ca.crt"},
	}
	vars, ok := Credential(resp)
	if !ok {
		t.Fatal("no credential")
	}
	got := map[string]string{}
	for _, v := range vars {
		got[v.Name] = v.Value
	}
	if got["PGSSLMODE"] != "verify-full" || got["PGSSLROOTCERT"] != "/etc/ca.crt" {
		t.Fatalf("vars %v", vars)
	}
}
