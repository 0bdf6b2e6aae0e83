package database

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

func TestConfigWriteReadMergeListDelete(t *testing.T) {
	e := newEnv(t)

	resp := e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name":    PluginName,
		"connection_url": e.templatedURL(),
		"username":       e.srv.User,
		"password":       e.srv.Password,
		"allowed_roles":  "readonly",
	})
	if resp != nil {
		t.Fatalf("templated write returned %+v, want nothing", resp)
	}
	want := map[string]any{
		"allowed_roles": []string{"readonly"},
		"connection_details": map[string]any{
			"connection_url":          e.templatedURL(),
			"password_authentication": "scram-sha-256",
			"username":                e.srv.User,
		},
		"password_policy":                    "",
		"plugin_name":                        "postgresql-database-plugin",
		"plugin_version":                     "",
		"root_credentials_rotate_statements": []string{},
		"verify_connection":                  true,
		// What the verified write found: the server's version and what
		// the admin may do.
		"server_version":   serverVersion(t, e),
		"admin_privileges": "superuser",
	}
	got := e.must(logical.ReadOperation, "config/pg", nil)
	if g, w := jsonOf(t, got.Data), jsonOf(t, want); g != w {
		t.Fatalf("read:\n got %s\nwant %s", g, w)
	}
	if strings.Contains(jsonOf(t, got), e.srv.Password) {
		t.Fatal("config read shows the password")
	}

	// An update that sends only allowed_roles keeps the URL and password:
	// the verification that runs on this write can only succeed with the
	// stored password.
	e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"allowed_roles":           []any{"readonly", "dev-*"},
		"username_template":       `{{ printf "x-%s" (random 10) }}`,
		"max_open_connections":    "5",
		"max_connection_lifetime": "3600",
	})
	// New root rotation statements come with the password (they are run
	// with the admin's next one in them).
	e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"root_rotation_statements": `ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`,
		"password":                 e.srv.Password,
	})
	want["allowed_roles"] = []string{"readonly", "dev-*"}
	want["connection_details"] = map[string]any{
		"connection_url":          e.templatedURL(),
		"max_connection_lifetime": "1h",
		"max_open_connections":    5,
		"password_authentication": "scram-sha-256",
		"username":                e.srv.User,
		"username_template":       `{{ printf "x-%s" (random 10) }}`,
	}
	want["root_credentials_rotate_statements"] = []string{`ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`}
	got = e.must(logical.ReadOperation, "config/pg", nil)
	if g, w := jsonOf(t, got.Data), jsonOf(t, want); g != w {
		t.Fatalf("read after merge:\n got %s\nwant %s", g, w)
	}
	if p := e.storedConfig("pg").Connection.Password; p != e.srv.Password {
		t.Fatalf("stored password changed by a merge that did not send one")
	}

	// verify_connection=false is echoed and stored without connecting.
	e.must(logical.UpdateOperation, "config/other", map[string]any{
		"plugin_name": PluginName, "verify_connection": "false",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/x", freePort(t)),
	})
	if v := e.must(logical.ReadOperation, "config/other", nil).Data["verify_connection"]; v != false {
		t.Fatalf("verify_connection = %v, want false", v)
	}

	list := e.must(logical.ListOperation, "config/", nil)
	if g := jsonOf(t, list.Data); g != `{"keys":["other","pg"]}` {
		t.Fatalf("list = %s", g)
	}

	// reset succeeds for a config that exists and fails for one that does not.
	e.must(logical.UpdateOperation, "reset/pg", nil)
	if _, err := e.do(logical.UpdateOperation, "reset/nope", nil); err == nil || err.Error() != `failed to find entry for connection with name: "nope"` {
		t.Fatalf("reset of a missing config: %v", err)
	}

	e.must(logical.DeleteOperation, "config/pg", nil)
	e.must(logical.DeleteOperation, "config/other", nil)
	if r := e.must(logical.ReadOperation, "config/pg", nil); r != nil {
		t.Fatalf("read after delete = %+v", r)
	}
	if r := e.must(logical.ListOperation, "config", nil); r != nil {
		t.Fatalf("list after delete = %+v", r)
	}
	if keys := e.storedKeys(); len(keys) != 0 {
		t.Fatalf("store after delete holds %v", keys)
	}
}

func TestConfigInlinePasswordIsRedacted(t *testing.T) {
	e := newEnv(t)
	hostPort := net.JoinHostPort(e.srv.Host, strconv.Itoa(e.srv.Port))
	inline := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", e.srv.User, e.srv.Password, hostPort, e.db.Name)

	resp := e.must(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "connection_url": inline, "allowed_roles": "*",
	})
	wantWarn := []string{"Password found in connection_url, use a templated url to enable root rotation and prevent read access to password information."}
	if resp == nil || jsonOf(t, resp.Warnings) != jsonOf(t, wantWarn) || resp.Data != nil {
		t.Fatalf("write response = %+v, want only the warning", resp)
	}
	got := e.must(logical.ReadOperation, "config/pg", nil)
	details := got.Data["connection_details"].(map[string]any)
	wantURL := fmt.Sprintf("postgres://%s:xxxxx@%s/%s?sslmode=disable", e.srv.User, hostPort, e.db.Name)
	if details["connection_url"] != wantURL {
		t.Fatalf("connection_url = %q, want %q", details["connection_url"], wantURL)
	}
	if strings.Contains(jsonOf(t, got), e.srv.Password) {
		t.Fatal("read shows the inline password")
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgresql://{{username}}:{{password}}@h:5432/db?sslmode=disable", "postgresql://{{username}}:{{password}}@h:5432/db?sslmode=disable"},
		{"postgres://root:s3cret@h/db", "postgres://root:xxxxx@h/db"},
		{"postgres://root:s3cret@h1,h2:5433/db?x=1", "postgres://root:xxxxx@h1,h2:5433/db?x=1"},
		{"postgres://root@h/db?sslmode=disable&password=s3cret", "postgres://root@h/db?sslmode=disable&password=xxxxx"},
		{"postgres://root@h/db", "postgres://root@h/db"},
		{"host=h user=root password=s3cret dbname=db", "host=h user=root password=xxxxx dbname=db"},
		{"host=h password='s3 cret' dbname=db", "host=h password=xxxxx dbname=db"},
		{"host=h user={{username}} password={{password}}", "host=h user={{username}} password={{password}}"},
		// Every password, not only the first one found.
		{"postgres://root:s3cret@h/db?password=other&sslpassword=keypass", "postgres://root:xxxxx@h/db?password=xxxxx&sslpassword=xxxxx"},
		// The driver, as libpq, reads a '#' as one more character of
		// the value it is in: no fragment ends a password.
		{"postgres://root@h/db?PASSWORD=s3cret#frag", "postgres://root@h/db?PASSWORD=xxxxx"},
		{"postgres://root@h/db?password=s3cret#TailSecret99&sslmode=disable", "postgres://root@h/db?password=xxxxx&sslmode=disable"},
		{"postgres://root@h/db?pass%77ord=s3cret", "postgres://root@h/db?pass%77ord=xxxxx"},
		{"host=h password=one sslpassword=two", "host=h password=xxxxx sslpassword=xxxxx"},
		// libpq reads a backslash-escaped blank as part of a bare value.
		{`host=h password=Head\ TailSecret99 dbname=db`, "host=h password=xxxxx dbname=db"},
		{`host=h password='it\'s secret' dbname=db`, "host=h password=xxxxx dbname=db"},
		// A password with an unencoded '/', '?', '#' or '@' ends at the
		// last '@', whatever a URL parser makes of it; a pasted URL may
		// start with blanks, and its scheme may be upper case.
		{"postgres://root:Sec/retPass99@h:5432/db", "postgres://root:xxxxx@h:5432/db"},
		{"postgres://root:77?QmarkTail@h/db", "postgres://root:xxxxx@h/db"},
		{"postgres://root:a#b@c@h/db?sslmode=disable", "postgres://root:xxxxx@h/db?sslmode=disable"},
		{" postgres://root:s3cret@h/db", " postgres://root:xxxxx@h/db"},
		{"POSTGRESQL://root:s3cret@h/db", "POSTGRESQL://root:xxxxx@h/db"},
		// An '@' in a parameter's value after a user part is the
		// parameter's; with no user part, the display hides more than it
		// must, never less.
		{"postgres://root:s3cret@h/db?application_name=ops@team", "postgres://root:xxxxx@h/db?application_name=ops@team"},
		{"postgresql://{{username}}:{{password}}@h/db?application_name=ops@team", "postgresql://{{username}}:{{password}}@h/db?application_name=ops@team"},
		{"postgres://h/db?password=s3cret&user=a@b", "postgres://h/db?password=xxxxx&user=a@b"},
		// A password right after a quoted value.
		{"host=h sslmode='disable'password=s3cret user=u", "host=h sslmode='disable'password=xxxxx user=u"},
	} {
		if got, _ := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestInlinePasswordAfterHash: a password parameter holding a '#' is one
// password to the driver, and is redacted from errors whole.
func TestInlinePasswordAfterHash(t *testing.T) {
	got := inlinePasswords("postgres://root@h/db?password=s3cret#TailSecret99&sslmode=disable")
	if !slices.Equal(got, []string{"s3cret#TailSecret99"}) {
		t.Fatalf("inlinePasswords = %q, want the whole password", got)
	}
}

func TestConfigVerifyFailuresStoreNothing(t *testing.T) {
	e := newEnv(t)
	hostPort := net.JoinHostPort(e.srv.Host, strconv.Itoa(e.srv.Port))
	wrong := "wrong-" + e.srv.Password

	for _, tc := range []struct {
		name, url, password, want string
	}{
		{
			name:     "unreachable port",
			url:      fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/x?sslmode=disable", freePort(t)),
			password: e.srv.Password,
			want:     "error creating database object: error verifying connection: connect to 127.0.0.1:",
		},
		{
			name:     "wrong password",
			url:      e.templatedURL(),
			password: wrong,
			want:     "error creating database object: error verifying connection: connect to " + hostPort + ": password authentication failed for user \"" + e.srv.User + "\" (SQLSTATE 28P01)",
		},
		{
			name:     "wrong inline password",
			url:      fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", e.srv.User, wrong, hostPort, e.db.Name),
			want:     "error creating database object: error verifying connection: connect to " + hostPort + ": password authentication failed for user \"" + e.srv.User + "\" (SQLSTATE 28P01)",
			password: "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string]any{
				"plugin_name": PluginName, "connection_url": tc.url,
				"username": e.srv.User, "allowed_roles": "*",
			}
			if tc.password != "" {
				data["password"] = tc.password
			}
			_, err := e.do(logical.UpdateOperation, "config/pg", data)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant prefix %s", err, tc.want)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), e.srv.Password) {
				t.Fatalf("error shows the password: %v", err)
			}
			if keys := e.storedKeys(); len(keys) != 0 {
				t.Fatalf("store holds %v after a failed write", keys)
			}
		})
	}
}

func TestConfigBadInputStoresNothing(t *testing.T) {
	e := newEnv(t)
	good := func(extra map[string]any) map[string]any {
		d := map[string]any{
			"plugin_name": PluginName, "connection_url": e.templatedURL(),
			"username": e.srv.User, "password": e.srv.Password,
		}
		for k, v := range extra {
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
		}
		return d
	}
	for _, tc := range []struct {
		name, path string
		data       map[string]any
		want       string
	}{
		{"no plugin", "config/pg", good(map[string]any{"plugin_name": nil}), "empty plugin name"},
		{"unknown plugin", "config/pg", good(map[string]any{"plugin_name": "mysql-database-plugin"}), `unknown plugin "mysql-database-plugin"`},
		{"double quote", `config/a"b`, good(nil), `invalid name "a\"b"`},
		{"semicolon", "config/a;drop", good(nil), `invalid name "a;drop"`},
		{"single quote", "config/x'", good(nil), `invalid name "x'"`},
		{"space", "config/a b", good(nil), `invalid name "a b"`},
		{"slash", "config/a/b", good(nil), `invalid name "a/b"`},
		{"leading dash", "config/-a", good(nil), `invalid name "-a"`},
		{"no url", "config/pg", good(map[string]any{"connection_url": nil}), "error creating database object: connection_url cannot be empty"},
		{"template in password", "config/pg", good(map[string]any{"password": "{{password}}"}), "error creating database object: username and/or password cannot contain the template variables"},
		{"bad auth", "config/pg", good(map[string]any{"password_authentication": "md5"}), "error creating database object: 'md5' is not a valid password authentication type"},
		{"template parse", "config/pg", good(map[string]any{"username_template": `{{ .Nope`}), "invalid username_template: parse username template"},
		{"bad bool", "config/pg", good(map[string]any{"verify_connection": "maybe"}), `verify_connection: "maybe" is not a boolean`},
		{"password policy", "config/pg", good(map[string]any{"password_policy": "strong"}), `password_policy "strong": no password policy found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.do(logical.UpdateOperation, tc.path, tc.data)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant prefix %s", err, tc.want)
			}
			var ce *logical.CodedError
			if !asCoded(err, &ce) || ce.Status != 400 {
				t.Fatalf("error %v is not a 400", err)
			}
			if strings.Contains(err.Error(), e.srv.Password) {
				t.Fatalf("error shows the password: %v", err)
			}
			if keys := e.storedKeys(); len(keys) != 0 {
				t.Fatalf("store holds %v after a failed write", keys)
			}
		})
	}
}

func asCoded(err error, target **logical.CodedError) bool {
	ce, ok := err.(*logical.CodedError)
	if ok {
		*target = ce
	}
	return ok
}

func TestExistenceCheck(t *testing.T) {
	e := newEnv(t)
	check := func(path string) (bool, bool) {
		t.Helper()
		ok, exists, err := e.b.ExistenceCheck(t.Context(), &logical.Request{Operation: logical.UpdateOperation, Path: path, Storage: e.st})
		if err != nil {
			t.Fatal(err)
		}
		return ok, exists
	}
	if ok, exists := check("config/pg"); !ok || exists {
		t.Fatalf("config/pg before write: ok=%v exists=%v", ok, exists)
	}
	e.writeConfig(nil)
	e.writeRole("readonly", nil)
	for _, p := range []string{"config/pg", "roles/readonly"} {
		if ok, exists := check(p); !ok || !exists {
			t.Fatalf("%s after write: ok=%v exists=%v", p, ok, exists)
		}
	}
	if ok, _ := check("creds/readonly"); ok {
		t.Fatal("creds/ has an existence check")
	}
	if ok, _ := check("rotate-root/pg"); ok {
		t.Fatal("rotate-root/ has an existence check")
	}
}

// TestConfigMaxOpenConnectionsBounded: lessor serve sets a pool up for
// max_open_connections before it opens any connection; a token that may
// write a connection's config must not make every server that issues from
// it abort (a size of 2^40 is a fatal out-of-memory in the runtime, which
// no recover catches).
func TestConfigMaxOpenConnectionsBounded(t *testing.T) {
	e := newEnv(t)
	_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "verify_connection": "false", "connection_url": e.templatedURL(),
		"max_open_connections": json.Number(strconv.Itoa(1 << 40)),
	})
	if err == nil || !strings.Contains(err.Error(), "max_open_connections") {
		t.Fatalf("config write with max_open_connections 2^40: %v, want it refused", err)
	}
	if cfg := e.storedConfig("pg"); cfg != nil {
		t.Fatalf("the refused config was stored: %+v", cfg.Connection)
	}
	e.writeConfig(map[string]any{"max_open_connections": postgres.MaxOpenConnectionsLimit})
}

// TestConfigNewURLNeedsThePassword: an update that points connection_url
// elsewhere and sends no password is refused, and nothing is sent there:
// whoever may update a config, but was never told its password, would
// otherwise be sent it by naming a server of their own (here one that asks
// for it in clear text, which require_auth=password in their URL allows).
// Verified or not: an unverified write would send it at the next issue.
func TestConfigNewURLNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	addr, got := pgtest.CatchPasswords(t)
	theirs := "postgresql://{{username}}:{{password}}@" + addr + "/x?sslmode=disable&require_auth=password"
	for _, verify := range []string{"true", "false"} {
		_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{"connection_url": theirs, "verify_connection": verify})
		if err == nil || !strings.Contains(err.Error(), "send the password with it") {
			t.Fatalf("verify_connection=%s: %v", verify, err)
		}
		select {
		case p := <-got:
			t.Fatalf("verify_connection=%s: the server was sent %q", verify, p)
		default:
		}
		if u := e.storedConfig("pg").Connection.ConnectionURL; u != e.templatedURL() {
			t.Fatalf("verify_connection=%s: stored connection_url %q", verify, u)
		}
	}
	// With the password, the new URL is the writer's to choose.
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"connection_url": theirs, "password": "theirs", "verify_connection": "false"})
	// The same URL again, without the password, changes nothing: allowed.
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"connection_url": theirs, "allowed_roles": "x", "verify_connection": "false"})
}

// TestConfigNewRootRotationNeedsThePassword: rotate-root runs
// root_rotation_statements as the admin with the new admin password in
// them, so whoever sets them learns it at the next rotation. An update
// that changes them and sends no password is refused and stores nothing;
// with the password, or with the statements as they were, it is taken.
func TestConfigNewRootRotationNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	theirs := `ALTER ROLE "{{name}}" WITH PASSWORD 'known-to-them'`
	_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{"root_rotation_statements": theirs, "verify_connection": "false"})
	if err == nil || !strings.Contains(err.Error(), "root_rotation_statements changed: send the password with them") {
		t.Fatalf("new root_rotation_statements without the password: %v", err)
	}
	if got := e.storedConfig("pg").RootRotationStatements; len(got) != 0 {
		t.Fatalf("the refused statements were stored: %q", got)
	}
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"root_rotation_statements": theirs, "password": e.srv.Password, "verify_connection": "false"})
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"root_rotation_statements": theirs, "allowed_roles": "x", "verify_connection": "false"})
}

// TestConfigPlaintextAuthenticationNeedsThePassword: with
// password_authentication=password, rotate-root sends the new admin
// password in clear text in its statements, where the server's log
// (log_statement=ddl) keeps it. An update that turns it on without the
// password is refused and stores nothing; with the password it is taken,
// and turning it off again needs none.
func TestConfigPlaintextAuthenticationNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{"password_authentication": "password", "verify_connection": "false"})
	if err == nil || !strings.Contains(err.Error(), "password_authentication changed to password: send the password with it") {
		t.Fatalf("password_authentication=password without the password: %v", err)
	}
	if got := e.storedConfig("pg").Connection.PasswordAuthentication; got != DefaultPasswordAuthentication {
		t.Fatalf("the refused password_authentication %q was stored", got)
	}
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"password_authentication": "password", "password": e.srv.Password, "verify_connection": "false"})
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"password_authentication": "password", "allowed_roles": "x", "verify_connection": "false"})
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"password_authentication": "scram-sha-256", "verify_connection": "false"})
}

// TestConfigNewTargetNeedsThePassword: connection_url is not the only
// field that says where the stored password goes. With disable_escaping
// the username is put into the URL as it is, so a username that holds an
// '@', a host and a query points the connection at another server with
// the URL left alone (one with no query of its own); so does a
// keyword/value string's. Such an update, without the password, is
// refused, and nothing is sent.
func TestConfigNewTargetNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	addr, got := pgtest.CatchPasswords(t)
	host, port, _ := net.SplitHostPort(addr)
	noQuery, _, _ := strings.Cut(e.templatedURL(), "?")
	keywords := fmt.Sprintf("host=%s port=%d dbname=%s sslmode=disable user={{username}} password={{password}}", e.srv.Host, e.srv.Port, e.db.Name)
	for _, tc := range []struct{ url, username string }{
		{noQuery, "x@" + addr + "/x?sslmode=disable&require_auth=password&application_name="},
		{keywords, "x host=" + host + " port=" + port + " require_auth=password"},
	} {
		e.writeConfig(map[string]any{"connection_url": tc.url, "disable_escaping": true})
		for _, verify := range []string{"true", "false"} {
			_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{"username": tc.username, "verify_connection": verify})
			select {
			case p := <-got:
				t.Fatalf("%s, verify_connection=%s: the server was sent %q", tc.url, verify, p)
			default:
			}
			if err == nil || !strings.Contains(err.Error(), "send the password with it") {
				t.Fatalf("%s, verify_connection=%s: %v", tc.url, verify, err)
			}
		}
		// Turning escaping off while the username holds the same is no
		// other way around it.
		e.writeConfig(map[string]any{"connection_url": tc.url, "disable_escaping": false, "username": tc.username, "verify_connection": "false"})
		_, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{"disable_escaping": true})
		select {
		case p := <-got:
			t.Fatalf("%s, disable_escaping: the server was sent %q", tc.url, p)
		default:
		}
		if err == nil || !strings.Contains(err.Error(), "send the password with it") {
			t.Fatalf("%s, disable_escaping: %v", tc.url, err)
		}
		e.writeConfig(map[string]any{"connection_url": tc.url, "disable_escaping": false})
	}
	// A password written in connection_url goes nowhere else either,
	// whatever password is sent with the username.
	inline := strings.Replace(keywords, "password={{password}}", "password="+e.srv.Password, 1)
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"connection_url": inline, "username": e.srv.User, "password": "", "disable_escaping": true})
	for _, extra := range []map[string]any{{}, {"password": "x"}} {
		extra["username"], extra["verify_connection"] = "x host="+host+" port="+port+" require_auth=password", "true"
		_, err := e.do(logical.UpdateOperation, "config/pg", extra)
		select {
		case p := <-got:
			t.Fatalf("inline password, %v: the server was sent %q", extra, p)
		default:
		}
		if err == nil || !strings.Contains(err.Error(), "send connection_url with it") {
			t.Fatalf("inline password, %v: %v", extra, err)
		}
	}
	// A username change that leaves the server where it was is the
	// writer's to make.
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"username": e.srv.User, "allowed_roles": "x"})
}

// TestServedConfigReadsNoAccountFiles: through lessor serve (or sudo), a
// config writer is not the account running lessor. A connection_url with no
// password had the driver take the one that account's ~/.pgpass holds for
// the host (sent here to a server of the writer's), and sslkey or passfile
// named that account's files; each is refused and nothing is sent. On the
// command line the caller is the account, and its ~/.pgpass is theirs.
func TestServedConfigReadsNoAccountFiles(t *testing.T) {
	e := newEnv(t)
	e.b = New(Options{ForeignCallers: true})
	addr, got := pgtest.CatchPasswords(t)
	host, port, _ := net.SplitHostPort(addr)
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte(host+":"+port+":*:*:the-accounts-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", passfile)
	theirs := "postgresql://admin@" + addr + "/x?sslmode=disable&require_auth=password"
	for _, c := range []struct{ url, want string }{
		{theirs, "password is required"},
		{"postgresql://admin:@" + addr + "/x?sslmode=disable&require_auth=password", "password is required"},
		{theirs + "&passfile=" + passfile, "may not set passfile"},
		{theirs + "&sslkey=/nonexistent&sslkey=", "may not set sslkey"},
		{"host=" + host + " port=" + port + " user=admin sslmode=disable require_auth=password servicefile=/x", "may not set servicefile"},
	} {
		_, err := e.do(logical.UpdateOperation, "config/theirs", map[string]any{
			"plugin_name": PluginName, "connection_url": c.url, "allowed_roles": "*",
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.url, err, c.want)
		}
		select {
		case p := <-got:
			t.Fatalf("%s: the writer's server was sent %q", c.url, p)
		default:
		}
	}
	// The writer's own password, in the field or in the URL, is theirs to
	// send.
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{
		"plugin_name": PluginName, "connection_url": theirs, "password": "theirs", "verify_connection": "false",
	})
	e.must(logical.UpdateOperation, "config/inline", map[string]any{
		"plugin_name": PluginName, "connection_url": "postgresql://admin:theirs@" + addr + "/x?sslmode=disable", "verify_connection": "false",
	})
}

// TestServedConfigCAFileIsTheAccounts: the driver reads sslrootcert whole
// as the account running lessor, at the write and at every connection. A
// FIFO (or a link to /dev/zero) that a config writer names, or can swap in
// from a directory others may change, held the write forever (or filled
// the server's memory); through serve or sudo only a regular file of root's
// or the account's, in directories only they change, is taken.
func TestServedConfigCAFileIsTheAccounts(t *testing.T) {
	e := newEnv(t)
	e.b = New(Options{ForeignCallers: true})
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil || os.Chmod(shared, 0o777) != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	writeCA(t, ca)
	if err := os.Link(ca, filepath.Join(shared, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	write := func(rootcert string) error {
		done := make(chan error, 1)
		go func() {
			_, err := e.do(logical.UpdateOperation, "config/theirs", map[string]any{
				"plugin_name": PluginName, "password": "x", "verify_connection": "false",
				"connection_url": "postgresql://admin@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=" + rootcert,
			})
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("the write still reads the file")
		}
	}
	for _, p := range []string{fifo, filepath.Join(shared, "ca.pem")} {
		if err := write(p); err == nil || !strings.Contains(err.Error(), "sslrootcert through lessor serve or sudo must name a regular file") {
			t.Errorf("sslrootcert=%s: %v", p, err)
		}
	}
	if err := write(ca); err != nil {
		t.Errorf("the account's own CA file: %v", err)
	}
}

// writeCA writes a self-signed certificate in PEM to path.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConfigRecordsItsWriter: a config the account writes on its command
// line is the account's; one written through serve or sudo, and one that
// a change through serve touched, is not; a config stored by a lessor
// that recorded no writer is not either.
func TestConfigRecordsItsWriter(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	if w := e.storedConfig("pg").Writer; w != writerAccount {
		t.Fatalf("written on the command line: writer %q", w)
	}
	e.b = New(Options{ForeignCallers: true})
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"password": e.srv.Password, "allowed_roles": "x"})
	if w := e.storedConfig("pg").Writer; w != "" {
		t.Fatalf("changed through serve: writer %q", w)
	}
	if !e.storedConfig("pg").pluginConfig().Confined {
		t.Fatal("a config changed through serve is not confined")
	}
	var old dbConfig
	if err := json.Unmarshal([]byte(`{"plugin_name":"postgresql-database-plugin","connection_details":{"connection_url":"x"}}`), &old); err != nil {
		t.Fatal(err)
	}
	if !old.pluginConfig().Confined {
		t.Fatal("a config with no writer recorded is not confined")
	}
}

// storeOldConfig stores cfg as a lessor that recorded no writer did.
func (e *env) storeOldConfig(name string, cfg *dbConfig) {
	e.t.Helper()
	cfg.Writer = ""
	if err := e.st.Update(context.Background(), func(tx storage.Tx) error { return putJSON(tx, configPrefix+name, cfg) }); err != nil {
		e.t.Fatal(err)
	}
}

// TestOldConfigReadsNoPgpass: a config stored before serve required a
// password (d1624a7) may have come through serve with none; used through
// serve, or on the command line, the driver took the password that the
// account's ~/.pgpass (or PGPASSFILE, or PGPASSWORD) holds for the host it
// names, and sent it there. lessor cannot tell who wrote it, so it is not
// the account's: nothing is sent. The account's own config, written on
// its command line, still logs in with its ~/.pgpass.
func TestOldConfigReadsNoPgpass(t *testing.T) {
	e := newEnv(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("PGPASSFILE", "")
	t.Setenv("PGPASSWORD", "")
	addr, got := pgtest.CatchPasswords(t)
	host, port, _ := net.SplitHostPort(addr)
	pgpass := fmt.Sprintf("%s:%s:*:*:the-accounts-password\n%s:%d:*:%s:%s\n", host, port, e.srv.Host, e.srv.Port, e.srv.User, e.srv.Password)
	if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte(pgpass), 0o600); err != nil {
		t.Fatal(err)
	}
	// The account's config of its own server, with no password: ~/.pgpass
	// gives it.
	real := fmt.Sprintf("postgresql://%s@%s/%s?sslmode=disable", e.srv.User, net.JoinHostPort(e.srv.Host, strconv.Itoa(e.srv.Port)), e.db.Name)
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"plugin_name": PluginName, "connection_url": real, "allowed_roles": "*"})
	e.writeRole("readonly", nil)
	e.issue("readonly")
	// The same config, stored with no writer: the driver reads no
	// ~/.pgpass, and the server refuses a login with no password.
	cfg := e.storedConfig("pg")
	e.storeOldConfig("pg", cfg)
	for _, foreign := range []bool{true, false} {
		e.b = New(Options{ForeignCallers: foreign})
		if _, err := e.do(logical.ReadOperation, "creds/readonly", nil); err == nil {
			t.Fatalf("foreign=%v: an old config logged in with the account's ~/.pgpass", foreign)
		}
	}
	// A writer's server, named by an old config with no password: neither
	// ~/.pgpass nor PGPASSWORD is sent to it.
	t.Setenv("PGPASSWORD", "the-accounts-env-password")
	theirs := &dbConfig{PluginName: PluginName, AllowedRoles: []string{"*"}, Connection: connDetails{
		ConnectionURL: "postgresql://admin@" + addr + "/x?sslmode=disable&require_auth=password", PasswordAuthentication: DefaultPasswordAuthentication,
	}}
	e.storeOldConfig("theirs", theirs)
	e.must(logical.UpdateOperation, "roles/theirs", map[string]any{"db_name": "theirs", "creation_statements": readonlySQL})
	for _, foreign := range []bool{true, false} {
		e.b = New(Options{ForeignCallers: foreign})
		if _, err := e.do(logical.ReadOperation, "creds/theirs", nil); err == nil {
			t.Fatalf("foreign=%v: creds from the catching server", foreign)
		}
		select {
		case p := <-got:
			if p != "" {
				t.Fatalf("foreign=%v: the writer's server was sent %q", foreign, p)
			}
		default:
		}
	}
}

// TestServedConfigTakesNoAmbientSettings: a connection written through
// serve gets nothing of the environment of the account running lessor:
// PGHOST and PGPORT sent its connection (and the password it was given)
// to the server they name, where its string named none.
func TestServedConfigTakesNoAmbientSettings(t *testing.T) {
	e := newEnv(t)
	e.b = New(Options{ForeignCallers: true})
	addr, got := pgtest.CatchPasswords(t)
	host, port, _ := net.SplitHostPort(addr)
	t.Setenv("PGHOST", host)
	t.Setenv("PGPORT", port)
	t.Setenv("PGREQUIREAUTH", "password")
	t.Setenv("PGSSLMODE", "disable")
	_, err := e.do(logical.UpdateOperation, "config/theirs", map[string]any{
		"plugin_name": PluginName, "connection_url": "user=admin dbname=x connect_timeout=2", "password": "sent-where-PGHOST-says", "allowed_roles": "*",
	})
	if err == nil {
		t.Fatal("the write connected")
	}
	select {
	case p := <-got:
		t.Fatalf("PGHOST's server was sent %q", p)
	default:
	}
}

// TestAccountsPartialWriteKeepsConfinement: a config written through
// serve became the account's when the account, on its command line,
// changed only another field of it (allowed_roles, say): the string its
// writer chose then took the account's environment and ~/.pgpass, and
// logged in where a server asks for nothing (peer on a Unix socket, as
// the account's own database role). Only an account's write that sends
// connection_url makes the config its own.
func TestAccountsPartialWriteKeepsConfinement(t *testing.T) {
	e := newEnv(t)
	addr := pgtest.LetAnyoneIn(t)
	url := "postgresql://" + addr + "/x?sslmode=disable&connect_timeout=5"
	e.b = New(Options{ForeignCallers: true})
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{
		"plugin_name": PluginName, "connection_url": url, "password": "theirs", "allowed_roles": "one", "verify_connection": false,
	})
	e.must(logical.UpdateOperation, "roles/theirs", map[string]any{"db_name": "theirs", "creation_statements": readonlySQL})
	e.b = New(Options{})
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{"allowed_roles": "*", "verify_connection": false})
	if !e.storedConfig("theirs").pluginConfig().Confined {
		t.Error("an account's write of allowed_roles made a config written through serve the account's")
	}
	for _, foreign := range []bool{true, false} {
		e.b = New(Options{ForeignCallers: foreign})
		if _, err := e.do(logical.ReadOperation, "creds/theirs", nil); err == nil || !strings.Contains(err.Error(), postgres.NoAuthHint) {
			t.Errorf("foreign=%v: %v, want %q", foreign, err, postgres.NoAuthHint)
		}
	}
	// With disable_escaping the username they chose goes into the string
	// as it is (and may add settings): connection_url alone vouches for
	// neither.
	e.b = New(Options{ForeignCallers: true})
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{"username": "u host=elsewhere.example", "password": "theirs", "disable_escaping": true, "verify_connection": false})
	e.b = New(Options{})
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{"connection_url": url, "verify_connection": false})
	if !e.storedConfig("theirs").pluginConfig().Confined {
		t.Error("the account's write of connection_url alone made a config whose unescaped username came through serve the account's")
	}
	// The account's write of connection_url (and of the username it goes
	// with) vouches for it.
	e.must(logical.UpdateOperation, "config/theirs", map[string]any{"connection_url": url, "username": "u", "verify_connection": false})
	if e.storedConfig("theirs").pluginConfig().Confined {
		t.Error("the account's write of connection_url left the config confined")
	}
}

// TestServedConfigReadAsTheDriverReadsIt: a connection_url that lessor's
// checks and the driver read differently (a '?' in a bracketed host, a
// scheme in capitals) was stored through serve with verify_connection=
// false, and refused only at each use; its write is refused.
func TestServedConfigReadAsTheDriverReadsIt(t *testing.T) {
	e := newEnv(t)
	e.b = New(Options{ForeignCallers: true})
	for _, url := range []string{"postgres://[x?password=y],elsewhere.example:5432/db", "Postgres://x?password=b host=elsewhere.example c="} {
		_, err := e.do(logical.UpdateOperation, "config/theirs", map[string]any{
			"plugin_name": PluginName, "connection_url": url, "password": "x", "verify_connection": false,
		})
		if err == nil || !strings.Contains(err.Error(), "connection_url through lessor serve or sudo") {
			t.Errorf("%q: %v", url, err)
		}
	}
}
