package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A URL with an unencoded '@' in its password made pgx dial the rest of
// the password as a host, and print it: no piece of the password may
// survive redaction.
func TestRedactPiecesOfAPassword(t *testing.T) {
	cause := errors.New("lookup Zk2Lm@127.0.0.1: no such host")
	for _, tc := range []struct{ password, msg string }{
		{"Xq9@Zk2Lm", "connect to Zk2Lm@127.0.0.1:5432: lookup Zk2Lm@127.0.0.1: no such host"},
		{"Ab3d/Zk2Lm", `cannot parse: invalid port ":Ab3d" after host; database "Zk2Lm@h"`},
		{"Qq:Ww@Ee9z/Rr7t?Tt", "host Ee9z/Rr7t, database Rr7t?Tt, user Qq:Ww"},
		{"p@ss/w:rd", "host p%40ss%2Fw%3Ard or p@ss/w:rd"},
	} {
		err := Redact(fmt.Errorf("%s: %w", tc.msg, cause), tc.password)
		for i := 0; i+4 <= len(tc.password); i++ {
			if w := tc.password[i : i+4]; strings.Contains(err.Error(), w) {
				t.Errorf("password %q: %q shows %q", tc.password, err, w)
			}
		}
		if !errors.Is(err, cause) {
			t.Errorf("password %q: the chain is lost: %v", tc.password, err)
		}
	}
	if want := "connect to [password]@127.0.0.1:5432: lookup [password]@127.0.0.1: no such host"; Redact(errors.New("connect to Zk2Lm@127.0.0.1:5432: lookup Zk2Lm@127.0.0.1: no such host"), "Xq9@Zk2Lm").Error() != want {
		t.Errorf("want %s", want)
	}
	// Text that merely shares a word with the password is not garbled.
	msg := `connect to 127.0.0.1:5432: password authentication failed for user "lessor_test" (SQLSTATE 28P01)`
	if got := Redact(errors.New(msg), "lessor-ci-9f3a").Error(); got != msg {
		t.Errorf("got %q, want it unchanged", got)
	}
}

func TestURLWithUnencodedAtIsRefused(t *testing.T) {
	const at = "unable to parse connection url (a postgresql:// URL): an '@' in the user name or password must be percent-encoded as %40"
	const slash = "unable to parse connection url (a postgresql:// URL): an '@' after the host: percent-encode an '@' in a parameter's value as %40, and a '/', '?' or '#' in the user name or password as %2F, %3F or %23"
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ConnectionURL: "postgresql://root:Xq9@Zk2Lm@127.0.0.1:5432/db"}, at},
		{Config{ConnectionURL: "postgresql://root:Ab3d/Zk2Lm@127.0.0.1:5432/db?sslmode=disable"}, slash},
		{Config{ConnectionURL: "postgresql://root:77?Zk2LmQ@127.0.0.1/db"}, slash},
		{Config{ConnectionURL: "postgresql://root:12?k=Zk2LmQ@127.0.0.1/db"}, slash},
		{Config{ConnectionURL: "postgresql://root:pw@127.0.0.1/d@b"}, "unable to parse connection url (a postgresql:// URL): an '@' after the host: a '/' or '#' in the user name or password must be percent-encoded as %2F or %23 (and an '@' in the database name as %40)"},
		{Config{ConnectionURL: "postgres://{{username}}:{{password}}@h/db", Username: "u", Password: "Xq9@Zk2Lm", DisableEscaping: true},
			strings.Replace(at, "postgresql://", "postgres://", 1) + " (disable_escaping=true puts the username and password into the URL as they are)"},
		{Config{ConnectionURL: "postgres://{{username}}:{{password}}@h/db", Username: "u", Password: "Xq9@Zk2Lm"}, ""},
		{Config{ConnectionURL: "postgresql://root:Xq9%40Zk2Lm@h/db?options=a@b"}, ""},
		{Config{ConnectionURL: "host=h user=root password=Xq9@Zk2Lm"}, ""},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.cfg.ConnectionURL, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v\nwant %s", tc.cfg.ConnectionURL, err, tc.want)
		}
	}
}

// TestRedactVerifier: a SCRAM verifier quoted by a failed statement is
// masked, whatever secrets the caller passed.
func TestRedactVerifier(t *testing.T) {
	v, err := ScramVerifier("a-Password-1", strings.NewReader(strings.Repeat("s", 16)))
	if err != nil {
		t.Fatal(err)
	}
	for _, secrets := range [][]string{nil, {"4096"}} {
		got := Redact(fmt.Errorf(`rotation statement 1: invalid input syntax for type integer: "%s" (SQLSTATE 22P02)`, v), secrets...).Error()
		if strings.Contains(got, v) || !strings.Contains(got, `type integer: "[verifier]"`) {
			t.Fatalf("Redact with secrets %q = %q", secrets, got)
		}
	}
}
