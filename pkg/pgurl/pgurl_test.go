package pgurl

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestMisplacedAt(t *testing.T) {
	for _, tc := range []struct {
		dsn string
		bad bool
	}{
		{"postgres://u:pw@h:5432/db?sslmode=disable", false},
		{"postgres://u:p%2Fw%40x@h/db", false},
		{"postgres://u:pw@h/db?application_name=ops@team", false},
		{"postgres://h/db?user=me%40server&sslmode=disable", false},
		{"postgres://h/db?user=me@server&sslmode=disable", true},
		{"postgres://lessor:12?k=SecretTail@127.0.0.1:5432/db", true},
		{"postgres://u:12/x?y=z@h/db", true},
		{"postgres://h/db", false},
		{"host=h password=a@b", false},
		{"postgres://u:a@b@h/db", true},
		{"postgres://lessor:/Sb64+pwTail@127.0.0.1:5432/db", true},
		{"postgres://u:Sec/ret@h/db", true},
		{"postgres://lessor:77?QmarkTail@127.0.0.1/db", true},
		{"postgres://u:77?Q@x=y@h/db", true},
		{"postgres://u:pw#frag@h/db", true},
		{"  postgresql://u:a/b@h/db", true},
	} {
		if got := MisplacedAt(tc.dsn); (got != "") != tc.bad {
			t.Errorf("MisplacedAt(%q) = %q, want a reason: %v", tc.dsn, got, tc.bad)
		}
	}
}

// TestRefusedSetting: the setting a server refused is found in its message
// in any language, whatever quotes it uses, and only for an unknown
// setting.
func TestRefusedSetting(t *testing.T) {
	names := []string{"idle_session_timeout"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&pgconn.PgError{Code: "42704", Message: `unrecognized configuration parameter "idle_session_timeout"`}, "idle_session_timeout"},
		{fmt.Errorf("connect: %w", &pgconn.PgError{Code: "42704", Message: "paramètre de configuration « idle_session_timeout » non reconnu"}), "idle_session_timeout"},
		{&pgconn.PgError{Code: "42704", Message: `unrecognized configuration parameter "foo"`}, ""},
		{&pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "idle_session_timeout"`}, ""},
		{errors.New("idle_session_timeout"), ""},
		{nil, ""},
	} {
		if got := RefusedSetting(tc.err, names); got != tc.want {
			t.Errorf("RefusedSetting(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
