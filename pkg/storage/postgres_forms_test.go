package storage

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// TestPostgresConnectionForms: a store is reached through every form libpq
// users write: a URL or a keyword/value string, one host or several (a
// dead one first, with target_session_attrs=read-write), sslmode, and the
// password from the URL, passfile=, PGPASSFILE or $HOME/.pgpass, never
// required in the string itself. The schema setting works in both forms.
func TestPostgresConnectionForms(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	dead := deadPort(t)
	dir := t.TempDir()
	passfile := filepath.Join(dir, "pgpass")
	line := fmt.Sprintf("%s:%d:%s:%s:%s\n", srv.Host, srv.Port, db.Name, srv.User, strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(srv.Password))
	if err := os.WriteFile(passfile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing from this process's environment may help a login.
	for _, k := range []string{"PGPASSWORD", "PGPASSFILE", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("HOME", filepath.Join(dir, "empty-home"))
	hostport := fmt.Sprintf("%s:%d", srv.Host, srv.Port)
	base := fmt.Sprintf("postgres://%s@%s/%s", srv.User, hostport, db.Name)
	kw := fmt.Sprintf("host=%s port=%d dbname=%s user=%s", srv.Host, srv.Port, db.Name, srv.User)

	cases := []struct {
		name, store, schema string
		env                 map[string]string
	}{
		{"url password", db.URL + "&schema=f_url", "f_url", nil},
		{"url passfile=", base + "?sslmode=disable&passfile=" + passfile + "&schema=f_passfile", "f_passfile", nil},
		{"url PGPASSFILE", base + "?sslmode=disable&schema=f_env", "f_env", map[string]string{"PGPASSFILE": passfile}},
		{"url ~/.pgpass", base + "?sslmode=disable&schema=f_home", "f_home", map[string]string{"HOME": home}},
		{"url multi-host", fmt.Sprintf("postgresql://%s@127.0.0.1:%d,%s/%s?sslmode=disable&target_session_attrs=read-write&passfile=%s&schema=f_multi", srv.User, dead, hostport, db.Name, passfile), "f_multi", nil},
		{"url sslmode=require", base + "?sslmode=require&passfile=" + passfile + "&schema=f_ssl", "f_ssl", nil},
		{"keywords passfile=", kw + " sslmode=disable passfile=" + passfile + " schema=f_kw", "f_kw", nil},
		{"keywords default schema", kw + " sslmode=disable passfile='" + passfile + "'", DefaultPostgresSchema, nil},
		{"keywords ~/.pgpass", kw + " sslmode=disable schema = f_kwhome", "f_kwhome", map[string]string{"HOME": home}},
		{"keywords password=", kw + " sslmode=disable password='" + strings.ReplaceAll(srv.Password, `'`, `\'`) + "' schema=f_kwpw", "f_kwpw", nil},
		{"keywords multi-host", fmt.Sprintf("host=127.0.0.1,%s port=%d,%d dbname=%s user=%s target_session_attrs=read-write sslmode=disable passfile=%s schema=f_kwmulti", srv.Host, dead, srv.Port, db.Name, srv.User, passfile), "f_kwmulti", nil},
	}
	conn := db.Conn(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			if !IsPostgresURL(c.store) {
				t.Fatalf("%q is not taken for a PostgreSQL store", c.store)
			}
			if strings.Contains(RedactURL(c.store), srv.Password) {
				t.Fatalf("RedactURL keeps the password: %s", RedactURL(c.store))
			}
			p, err := CreatePostgres(ctx, c.store, PostgresOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Schema() != c.schema {
				t.Fatalf("schema %q, want %q", p.Schema(), c.schema)
			}
			if err := p.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+p.ident()+`.kv WHERE key = 'k'`).Scan(&n); err != nil || n != 1 {
				t.Fatalf("the write did not land in schema %s: %d, %v", c.schema, n, err)
			}
			var ssl bool
			err = p.withConn(ctx, func(c *pgx.Conn) error {
				return c.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl)
			})
			if err != nil || ssl != strings.Contains(c.store, "sslmode=require") {
				t.Fatalf("ssl = %v (%v)", ssl, err)
			}
		})
	}

	// Without a password anywhere, the login fails, and the message names
	// the store.
	t.Run("no password", func(t *testing.T) {
		for _, store := range []string{base + "?sslmode=disable&schema=f_none", kw + " sslmode=disable schema=f_none"} {
			_, err := OpenPostgres(ctx, store, PostgresOptions{})
			if err == nil || !strings.Contains(err.Error(), RedactURL(store)) {
				t.Errorf("%s: %v", store, err)
			}
		}
	})
	// A wrong password given in the string never shows in an error.
	t.Run("wrong password redacted", func(t *testing.T) {
		for _, store := range []string{
			fmt.Sprintf("postgres://%s:Wr0ng-Secret-Pw@%s/%s?sslmode=disable", srv.User, hostport, db.Name),
			kw + " sslmode=disable password=Wr0ng-Secret-Pw",
		} {
			_, err := OpenPostgres(ctx, store, PostgresOptions{})
			if err == nil || strings.Contains(err.Error(), "Wr0ng-Secret-Pw") || !strings.Contains(err.Error(), "xxxxx") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: %v", RedactURL(store), err)
			}
		}
	})
}

func TestPostgresKeywordParsing(t *testing.T) {
	for in, want := range map[string]bool{
		"host=db dbname=ops": true, " dbname = ops": true, "schema=x host=h": true,
		"service=ops": true, "hostx=db": false, "./host=db": false, "host": false,
		"notes=db": false, "/var/lib/lessor/host=x.db": false,
		// Every libpq keyword, not only the common ones: a string that
		// starts with sslpassword= or channel_binding= must not become a
		// file named after it, password and all.
		"sslpassword=s host=h": true, "channel_binding=require host=h": true,
		"gssencmode=disable host=h": true, "load_balance_hosts=random host=a,b": true,
		"tcp_user_timeout=1000 host=h": true, "require_auth=scram-sha-256 host=h": true,
	} {
		if got := IsPostgresKeywords(in); got != want {
			t.Errorf("IsPostgresKeywords(%q) = %v", in, got)
		}
	}
	for in, want := range map[string]string{
		`host=db password=s3cret user=me`:                `host='db' password='xxxxx' user='me'`,
		`host=db password='it''s' dbname=x`:              "(unparsable connection string)",
		`host=db password='it\'s a secret' dbname='x y'`: `host='db' password='xxxxx' dbname='x y'`,
		`host=db password=`:                              `host='db' password='xxxxx'`,
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	cfg, schema, err := ParsePostgresURL(`host=a,b port=5432,5433 dbname='my db' user=u target_session_attrs=read-write sslmode=disable schema=s1 application_name=ops`)
	if err != nil || schema != "s1" || cfg.Database != "my db" || len(cfg.Fallbacks) != 1 || cfg.ValidateConnect == nil || cfg.RuntimeParams["application_name"] != "ops" {
		t.Fatalf("keywords: %v, schema %q, %+v", err, schema, cfg)
	}
	if _, ok := cfg.RuntimeParams["schema"]; ok {
		t.Fatal("schema was passed on to the server")
	}
	for _, bad := range []string{`host=a schema=Bad`, `host=a dbname='open`, `host=a dbname`} {
		if _, _, err := ParsePostgresURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A password with a space, unquoted, ends at the space: the rest of it
	// is read as a keyword, which the error must not show.
	for _, bad := range []string{`host=a password=two secret-1 user=u`, `host=a password=two secret-1='x`} {
		if _, _, err := ParsePostgresURL(bad); err == nil || strings.Contains(err.Error(), "secret-1") {
			t.Errorf("ParsePostgresURL(%q): %v", bad, err)
		}
	}
}

// deadPort returns a local port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
