package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lessorhq/lessor/pkg/logical"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	testTime = time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.UTC)
)

func fixedClock() time.Time { return testTime }

func fileDevice(path string, opts ...string) Device {
	o := map[string]string{"file_path": path}
	for i := 0; i+1 < len(opts); i += 2 {
		o[opts[i]] = opts[i+1]
	}
	return Device{Path: "file/", Type: "file", Options: o}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("log does not end with a newline: %q", b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// credsEntry is a `read database/creds/readonly` whose request carries
// secrets in every form the redaction must catch.
func credsEntry() *Entry {
	return &Entry{
		RequestID:   "5f0c6a1e-1111-2222-3333-444455556666",
		Operation:   "read",
		Path:        "database/creds/readonly",
		MountType:   "database",
		ClientToken: "lsr.TOKEN-secret-value",
		Accessor:    "acc-7d3e",
		DisplayName: "token-ci",
		Policies:    []string{"apps", "default"},
		RemoteUser:  "deploy",
		Data: map[string]any{
			"username":       "alice",
			"password":       "req-Pa55word",
			"connection_url": "postgresql://root:Inline-Root-PW@db.example:5432/postgres?sslmode=disable",
			"nested": map[string]any{
				"list": []any{map[string]any{"DB_Password": "deep-secret"}, "plain"},
			},
			"ttl": 3600,
		},
	}
}

func credsResponse() *logical.Response {
	return &logical.Response{
		Data: map[string]any{
			"username": "v-token-readonly-Xy12",
			"password": "A1a-Generated-Pw",
		},
		Secret:   &logical.Secret{LeaseID: "database/creds/readonly/Qw3rTy", TTL: time.Hour, Renewable: true},
		Warnings: []string{"TTL of \"2h\" exceeded the effective max_ttl of \"1h\"; TTL value is capped accordingly"},
	}
}

func TestRequestResponsePair(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := ValidateDevice(fileDevice(path)); err != nil {
		t.Fatal(err)
	}
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := credsEntry()
	ctx := context.Background()
	if err := b.LogRequest(ctx, e); err != nil {
		t.Fatal(err)
	}
	e.Response = credsResponse()
	if err := b.LogResponse(ctx, e); err != nil {
		t.Fatal(err)
	}

	h := func(s string) string { return HashString(testKey, s) }
	request := `{"id":"5f0c6a1e-1111-2222-3333-444455556666","operation":"read","mount_type":"database","path":"database/creds/readonly","remote_user":"deploy",` +
		`"data":{"connection_url":"` + h("postgresql://root:Inline-Root-PW@db.example:5432/postgres?sslmode=disable") + `",` +
		`"nested":{"list":[{"DB_Password":"` + h("deep-secret") + `"},"plain"]},` +
		`"password":"` + h("req-Pa55word") + `","ttl":3600,"username":"alice"}}`
	auth := `{"client_token":"` + h("lsr.TOKEN-secret-value") + `","accessor":"acc-7d3e","display_name":"token-ci","policies":["apps","default"]}`
	want := []string{
		`{"time":"2025-03-04T05:06:07.89Z","type":"request","auth":` + auth + `,"request":` + request + `}`,
		`{"time":"2025-03-04T05:06:07.89Z","type":"response","auth":` + auth + `,"request":` + request + `,` +
			`"response":{"data":{"password":"` + h("A1a-Generated-Pw") + `","username":"v-token-readonly-Xy12"},` +
			`"secret":{"lease_id":"database/creds/readonly/Qw3rTy","ttl":3600,"renewable":true},` +
			`"warnings":["TTL of \"2h\" exceeded the effective max_ttl of \"1h\"; TTL value is capped accordingly"]}}`,
	}
	got := readLines(t, path)
	if len(got) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i := range want {
		if !json.Valid([]byte(got[i])) {
			t.Errorf("line %d is not valid JSON: %s", i+1, got[i])
		}
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, got[i], want[i])
		}
	}

	raw, _ := os.ReadFile(path)
	for _, secret := range []string{"lsr.TOKEN-secret-value", "req-Pa55word", "Inline-Root-PW", "deep-secret", "A1a-Generated-Pw"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("log holds secret %q in clear", secret)
		}
	}
	for _, secret := range []string{"A1a-Generated-Pw", "lsr.TOKEN-secret-value"} {
		if !bytes.Contains(raw, []byte(HashString(testKey, secret))) {
			t.Errorf("log lacks HashString(%q)", secret)
		}
	}
	for _, clearText := range []string{`"v-token-readonly-Xy12"`, `"database/creds/readonly/Qw3rTy"`, `"alice"`, `"acc-7d3e"`, `"deploy"`} {
		if c := bytes.Count(raw, []byte(clearText)); c == 0 {
			t.Errorf("log lacks %s in clear", clearText)
		}
	}
}

func TestCallerDataUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := credsEntry()
	e.Response = credsResponse()
	e.Response.Auth = &logical.Auth{ClientToken: "lsr.child", Metadata: map[string]string{"root_token": "x"}}
	before, after := credsEntry(), e
	before.Response = credsResponse()
	before.Response.Auth = &logical.Auth{ClientToken: "lsr.child", Metadata: map[string]string{"root_token": "x"}}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("entry changed by logging:\nbefore %#v\nafter  %#v", before, after)
	}
}

func TestTokenCreateResponse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{
		Operation:   "update",
		Path:        "auth/token/create",
		ClientToken: "lsr.parent",
		Accessor:    "acc-parent",
		DisplayName: "root",
		Policies:    []string{"root"},
		Data:        map[string]any{"id": "lsr.custom-id", "policies": []string{"apps"}},
		Response: &logical.Response{
			Auth: &logical.Auth{
				ClientToken:   "lsr.custom-id",
				Accessor:      "acc-child",
				Policies:      []string{"apps", "default"},
				TokenPolicies: []string{"apps", "default"},
				Metadata:      map[string]string{"team": "web"},
				LeaseDuration: 768 * time.Hour,
				Renewable:     true,
			},
		},
	}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	h := func(s string) string { return HashString(testKey, s) }
	want := `{"time":"2025-03-04T05:06:07.89Z","type":"response",` +
		`"auth":{"client_token":"` + h("lsr.parent") + `","accessor":"acc-parent","display_name":"root","policies":["root"]},` +
		`"request":{"operation":"update","path":"auth/token/create","data":{"id":"` + h("lsr.custom-id") + `","policies":["apps"]}},` +
		`"response":{"auth":{"client_token":"` + h("lsr.custom-id") + `","accessor":"acc-child","policies":["apps","default"],` +
		`"token_policies":["apps","default"],"metadata":{"team":"web"},"token_ttl":2764800,"renewable":true}}}`
	if got := readLines(t, path); len(got) != 1 || got[0] != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

// clearAndHashedAccessors is a broker with two devices, one writing
// accessors in clear and one with hmac_accessor, and their logs.
func clearAndHashedAccessors(t *testing.T) (b *Broker, clearPath, hashedPath string) {
	dir := t.TempDir()
	clearPath, hashedPath = filepath.Join(dir, "clear.log"), filepath.Join(dir, "hashed.log")
	hashed := fileDevice(hashedPath, "hmac_accessor", "true")
	hashed.Path = "hashed/"
	return NewBroker([]Device{fileDevice(clearPath), hashed}, testKey, fixedClock), clearPath, hashedPath
}

func TestHMACAccessor(t *testing.T) {
	b, clearPath, hashedPath := clearAndHashedAccessors(t)
	e := &Entry{Operation: "read", Path: "auth/token/lookup-self", Accessor: "acc-1", Response: &logical.Response{
		Data: map[string]any{"accessor": "acc-1", "display_name": "token"},
	}}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	h := HashString(testKey, "acc-1")
	const format = `{"time":"2025-03-04T05:06:07.89Z","type":"response","auth":{"accessor":"%s"},"request":{"operation":"read","path":"auth/token/lookup-self"},"response":{"data":{"accessor":"%s","display_name":"token"}}}`
	for path, acc := range map[string]string{clearPath: "acc-1", hashedPath: h} {
		want := strings.ReplaceAll(format, "%s", acc)
		if got := readLines(t, path); len(got) != 1 || got[0] != want {
			t.Errorf("%s: got\n%s\nwant\n%s", filepath.Base(path), strings.Join(got, "\n"), want)
		}
	}
}

// TestHMACAccessorInPathAndError: with hmac_accessor, an accessor is hashed
// wherever the line names it: in a path a client put it in, and in error
// text, where lease ids stay readable.
func TestHMACAccessorInPathAndError(t *testing.T) {
	b, clearPath, hashedPath := clearAndHashedAccessors(t)
	inPath, inErr := "Ab3dE5gH7jK9mN1pQ3sT5vW7", "Zy9xW7vU5tS3rQ1pO9nM7lK5"
	leaseID := "database/creds/r/Lm4nO6pQ8rS0tU2vW4xY6zA8"
	entries := []*Entry{
		{Operation: "update", Path: "auth/token/revoke-accessor/" + inPath,
			Err: fmt.Errorf("unsupported path %q", "auth/token/revoke-accessor/"+inPath)},
		{Operation: "update", Path: "auth/token/renew",
			Err: fmt.Errorf("lease %s: %w", leaseID, logical.AccessorErrorf(inErr, "renew token %s: %w", inErr, errors.New("disk full")))},
	}
	for _, e := range entries {
		if err := b.LogResponse(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	clearLog, hashedLog := strings.Join(readLines(t, clearPath), "\n"), strings.Join(readLines(t, hashedPath), "\n")
	for _, acc := range []string{inPath, inErr} {
		if !strings.Contains(clearLog, acc) {
			t.Errorf("the device without hmac_accessor lost accessor %s:\n%s", acc, clearLog)
		}
		if strings.Contains(hashedLog, acc) || !strings.Contains(hashedLog, HashString(testKey, acc)) {
			t.Errorf("with hmac_accessor, accessor %s is not hashed everywhere:\n%s", acc, hashedLog)
		}
	}
	if !strings.Contains(hashedLog, leaseID) {
		t.Errorf("with hmac_accessor, lease id %s was hidden too:\n%s", leaseID, hashedLog)
	}
}

// TestLineAfterCutLine: a write cut short (a full disk, in this process or
// another) left part of a line. The next line starts a line of its own, so
// that a JSON-lines reader loses only the cut one.
func TestLineAfterCutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	if err := b.LogRequest(context.Background(), credsEntry()); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2025-03-04T05:06:07.89Z","type":"requ`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := b.LogResponse(context.Background(), credsEntry()); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || len(lines) != 3 {
		t.Errorf("the line after a cut one is lost (%v):\n%s", err, strings.Join(lines, "\n"))
	}
}

func TestErrorResponseLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "secret/x", DisplayName: "token", Err: logical.ErrPermissionDenied}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2025-03-04T05:06:07.89Z","type":"response","auth":{"display_name":"token"},"request":{"operation":"read","path":"secret/x"},"error":"permission denied"}`
	if got := readLines(t, path); len(got) != 1 || got[0] != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

func TestUnwritableDevice(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.log")
	cases := map[string]struct {
		path string
		want string
	}{
		"missing directory": {filepath.Join(dir, "no-such-dir", "audit.log"), "no such file or directory"},
		"directory":         {dir, "not a regular file"},
		"device file":       {"/dev/null", "not a regular file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			wantMsg := "audit device file/ (" + tc.path + "): " + tc.want
			err := ValidateDevice(fileDevice(tc.path))
			if err == nil || err.Error() != wantMsg {
				t.Fatalf("ValidateDevice: got %v, want %s", err, wantMsg)
			}

			// Requests fail, naming the device, while the good device is
			// still written.
			bad := fileDevice(tc.path)
			other := fileDevice(good)
			other.Path = "good/"
			b := NewBroker([]Device{bad, other}, testKey, fixedClock)
			err = b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"})
			var de *DeviceError
			if !errors.As(err, &de) || de.Device != "file/" || de.File != tc.path {
				t.Fatalf("LogRequest: got %#v, want a DeviceError for file/", err)
			}
			if err.Error() != wantMsg {
				t.Errorf("LogRequest: got %q, want %q", err, wantMsg)
			}
		})
	}
	if n := len(readLines(t, good)); n != len(cases) {
		t.Errorf("good device has %d lines, want %d", n, len(cases))
	}
}

func TestReadOnlyFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes read-only files; the directory and missing-directory cases cover unwritable devices")
	}
	path := filepath.Join(t.TempDir(), "ro.log")
	if err := os.WriteFile(path, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	err := b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"})
	if want := "audit device file/ (" + path + "): permission denied"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %v is not fs.ErrPermission", err)
	}
}

func TestInvalidStoredDeviceFailsRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path, "log_raw", "true")}, testKey, fixedClock)
	err := b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"})
	if err == nil || !strings.Contains(err.Error(), "log_raw=true is not supported") {
		t.Fatalf("got %v, want the log_raw refusal", err)
	}
}

func TestNoDevicesAndNoKey(t *testing.T) {
	e := &Entry{Operation: "read", Path: "sys/mounts"}
	if err := NewBroker(nil, nil, nil).LogRequest(context.Background(), e); err != nil {
		t.Errorf("no devices: %v", err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	err := NewBroker([]Device{fileDevice(path)}, nil, fixedClock).LogRequest(context.Background(), e)
	if want := "audit request sys/mounts: no hmac key"; err == nil || err.Error() != want {
		t.Errorf("no key: got %v, want %s", err, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("log written without a key: %v", err)
	}
}

func TestRotatedLogIsRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path, "mode", "0640")}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "sys/mounts"}
	if err := b.LogRequest(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := b.LogRequest(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".1"} {
		if n := len(readLines(t, p)); n != 1 {
			t.Errorf("%s: %d lines, want 1", p, n)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("recreated log has mode %o, want 640", fi.Mode().Perm())
	}
}

func TestCancelledContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock).LogRequest(ctx, &Entry{Operation: "read", Path: "sys/mounts"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func BenchmarkLogResponse(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	br := NewBroker([]Device{fileDevice(path)}, testKey, nil)
	e := credsEntry()
	e.Response = credsResponse()
	ctx := context.Background()
	for b.Loop() {
		if err := br.LogResponse(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTokenInPathHashed: a token a client put into the path (Vault's old
// auth/token/lookup/<token>) is logged as its HMAC, in the path and in
// the error that quotes the path.
func TestTokenInPathHashed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	tok := "lsr_" + strings.Repeat("aB3", 10) + "xY"
	e := &Entry{Operation: "read", Path: "auth/token/lookup/" + tok, DisplayName: "token",
		Err: fmt.Errorf("unsupported path %q", "auth/token/lookup/"+tok)}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	line := readLines(t, path)[0]
	hashed := HashString(testKey, tok)
	if strings.Contains(line, tok) || strings.Count(line, hashed) != 2 {
		t.Fatalf("audit line %s: want the token's HMAC %s in the path and the error, never the token", line, hashed)
	}
}

// TestLineExpandsNothingInAShell: a caller chooses the path, data and error
// text a line holds, and a log that a shell reads (a device pointed at a
// ~/.bashrc, a log viewer that evals) must not run what they wrote there.
func TestLineExpandsNothingInAShell(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "secret/$(touch dollar)", DisplayName: "token",
		Data: map[string]any{"note": "`touch backtick`", "x": `\$(touch escaped)`},
		Err:  errors.New("no handler for ${HOME} $(touch error)")}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	line := readLines(t, path)[0]
	if strings.ContainsAny(line, "$`") {
		t.Errorf("audit line %s: holds a character a shell expands inside double quotes", line)
	}
	// What was asked stays readable to anything that decodes JSON.
	var got jsonEntry
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	if got.Request.Path != e.Path || got.Error != e.Err.Error() || !reflect.DeepEqual(got.Request.Data, map[string]any{"note": "`touch backtick`", "x": `\$(touch escaped)`}) {
		t.Errorf("decoded %+v %+v: want the path, data and error as they were", got.Request, got.Error)
	}
	cmd := exec.Command("sh", "-c", ". ./audit.log")
	cmd.Dir = dir
	_ = cmd.Run() // the line is no command; only what it ran matters
	for _, f := range []string{"dollar", "backtick", "escaped", "error"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a shell reading the log ran the caller's command (it made %q): %s", f, line)
		}
	}
}

// TestLineHoldsNoC1Controls: encoding/json escapes C0 controls but writes
// U+0080–U+009F as they are, and some terminals obey U+009B as CSI. Any
// token holder chooses request data, and a caller without one the path of
// its refusal, so `tail -f` of the log must not pass them to the terminal.
func TestLineHoldsNoC1Controls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "secret/\u009b2J", DisplayName: "token",
		Data: map[string]any{"note": "\u009b31mok\u0085é"}, Err: logical.ErrPermissionDenied}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	line := readLines(t, path)[0]
	if strings.ContainsFunc(line, func(r rune) bool { return r >= 0x80 && r <= 0x9f }) {
		t.Errorf("audit line %q holds a C1 control character", line)
	}
	var got jsonEntry
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	if got.Request.Path != e.Path || !reflect.DeepEqual(got.Request.Data, map[string]any{"note": "\u009b31mok\u0085é"}) {
		t.Errorf("decoded %+v: want the path and data as they were", got.Request)
	}
}

// TestRefusedLineCutAfterHashing: a refused request's line is cut to a few
// kilobytes, with a marker, after its secrets are hashed: a token the cut
// falls inside is hashed whole, never half left in clear; a cut never
// splits a character; and a request that ran is written whole.
func TestRefusedLineCutAfterHashing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	tok := "lsr_" + strings.Repeat("aB3", 10) + "xY"
	// The token straddles the path's limit; the é before it, the error's.
	long := "auth/token/lookup/" + strings.Repeat("x", refusedPathMax-30) + tok + strings.Repeat("/é", 5000)
	data := map[string]any{"password": "Secret-PW-1", "note": strings.Repeat("n", 20000)}
	refused := &Entry{Operation: "read", Path: long, Data: data, Err: errors.New(strings.Repeat("é", refusedErrorMax)), Refused: true}
	ran := *refused
	ran.Refused = false
	for _, e := range []*Entry{refused, &ran} {
		if err := b.LogResponse(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	var got struct {
		Error   string
		Request struct {
			Path string
			Data map[string]any
			Cut  []string `json:"lessor_cut"`
		}
	}
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if len(lines[0]) > refusedPathMax+refusedErrorMax+refusedDataMax {
		t.Errorf("refused line of %d bytes", len(lines[0]))
	}
	if strings.Contains(lines[0], "aB3aB3") || !strings.Contains(lines[0], "hmac-sha256:") {
		t.Errorf("the cut left part of the token in clear, or no hash: %.2000s", got.Request.Path)
	}
	wantPath := fmt.Sprintf("…[cut: %d bytes]", len("auth/token/lookup/"+strings.Repeat("x", refusedPathMax-30)+HashString(testKey, tok)+strings.Repeat("/é", 5000)))
	if !strings.HasSuffix(got.Request.Path, wantPath) || len(got.Request.Path) > refusedPathMax+len(wantPath) {
		t.Errorf("path of %d bytes ending %q, want at most %d bytes ending %q", len(got.Request.Path), got.Request.Path[max(0, len(got.Request.Path)-40):], refusedPathMax, wantPath)
	}
	if !strings.HasSuffix(got.Error, "é…[cut: "+fmt.Sprint(2*refusedErrorMax)+" bytes]") || !utf8.ValidString(got.Error) {
		t.Errorf("error of %d bytes ending %q: want it cut at a character with the marker", len(got.Error), got.Error[max(0, len(got.Error)-40):])
	}
	if n, ok := got.Request.Data["lessor_cut"].(float64); !ok || len(got.Request.Data) != 1 || n < 20000 {
		t.Errorf("data of %d keys (lessor_cut %v), want only its size as lessor_cut", len(got.Request.Data), got.Request.Data["lessor_cut"])
	}
	if !reflect.DeepEqual(got.Request.Cut, []string{"path", "error", "data"}) {
		t.Errorf("lessor_cut %v, want [path error data]", got.Request.Cut)
	}
	// Data that the line's escapes would make six times larger is cut
	// as the line would hold it.
	dollars := &Entry{Operation: "read", Path: "x", Data: map[string]any{"q": strings.Repeat("$", refusedDataMax/3)}, Refused: true}
	if err := b.LogResponse(context.Background(), dollars); err != nil {
		t.Fatal(err)
	}
	if l := readLines(t, path)[2]; len(l) > refusedDataMax+1024 || !strings.Contains(l, `"lessor_cut":["data"]`) {
		t.Errorf("a refused line of %d bytes with data of %d \"$\" was not cut: %.200s", len(l), refusedDataMax/3, l)
	}
	if len(lines[1]) < 40000 || strings.Contains(lines[1], "lessor_cut") || strings.Contains(lines[1], "Secret-PW-1") || !strings.Contains(lines[1], strings.Repeat("n", 20000)) {
		t.Errorf("the request that ran was cut, or its password written: %d bytes", len(lines[1]))
	}
}

// TestTokenUnderAnyKeyHashed: a token a caller sends where something else
// belongs (an accessor, a display name, a list element, a key) is written
// as its HMAC, as it is in the path and the error text: a token pasted for
// its accessor (revoke-accessor, lookup-accessor) is a common mistake, and
// it went to the log in clear.
func TestTokenUnderAnyKeyHashed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	tok := "lsr_" + strings.Repeat("aB3", 10) + "xY"
	e := &Entry{Operation: "update", Path: "auth/token/revoke-accessor", ClientToken: "lsr_" + strings.Repeat("C", 32),
		Data: map[string]any{"accessor": tok, "meta": map[string]any{"note": "see " + tok + "!", tok: "v"}, "list": []any{tok}},
		Response: &logical.Response{
			Data:     map[string]any{"display_name": "token-" + tok},
			Warnings: []string{"Endpoint ignored these unrecognized parameters: [" + tok + "]"},
		}}
	if err := b.LogResponse(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	line := readLines(t, path)[0]
	hashed := HashString(testKey, tok)
	if strings.Contains(line, tok) || strings.Count(line, hashed) != 6 {
		t.Fatalf("audit line %s: want the token's HMAC %s six times, never the token", line, hashed)
	}
	var got struct {
		Request struct{ Data map[string]any }
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	if got.Request.Data["meta"].(map[string]any)["note"] != "see "+hashed+"!" {
		t.Errorf("meta.note = %q, want the text around the token kept", got.Request.Data["meta"].(map[string]any)["note"])
	}
}
