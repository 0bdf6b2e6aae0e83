package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/pgurl"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newPostgresURL creates a database for the test and returns a store URL
// into it (no store created yet).
func newPostgresURL(t *testing.T, schema string) string {
	t.Helper()
	db := pgtest.Require(t).NewDatabase(t)
	u := db.URL
	if schema != "" {
		u += "&schema=" + schema
	}
	return u
}

func newTestPostgres(t *testing.T) (*Postgres, string) {
	t.Helper()
	u := newPostgresURL(t, "")
	p, err := CreatePostgres(context.Background(), u, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, u
}

func openPostgres(t *testing.T, u string) *Postgres {
	t.Helper()
	p, err := OpenPostgres(context.Background(), u, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// backends gives, for each backend, a function that opens another handle
// on one new store, as another process would.
func backends(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"bolt": func() func() Store {
			path := filepath.Join(t.TempDir(), "lessor.db")
			if _, err := CreateBolt(path, BoltOptions{}); err != nil {
				t.Fatal(err)
			}
			return func() Store {
				b, err := OpenBolt(path, BoltOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}(),
		"postgres": func() func() Store {
			var u string
			return func() Store {
				if u == "" {
					_, u = newTestPostgres(t)
				}
				return openPostgres(t, u)
			}
		}(),
	}
}

func TestPostgresStore(t *testing.T) {
	p, _ := newTestPostgres(t)
	testStore(t, p)
}

func TestPostgresMatchesMemory(t *testing.T) {
	p, _ := newTestPostgres(t)
	testMatchesMemory(t, p)
}

// TestStoreNoLostUpdate: handles that each increment one counter many times
// side by side end with every increment counted; and a reader never sees
// two keys that every write changes together differ.
func TestStoreNoLostUpdate(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const writers, each = 4, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers+1)
			var done atomic.Bool
			for range writers {
				s := open()
				wg.Go(func() {
					for range each {
						err := s.Update(ctx, func(tx Tx) error {
							v, err := tx.Get("counter")
							if err != nil {
								return err
							}
							n, _ := strconv.Atoi(string(v))
							next := []byte(strconv.Itoa(n + 1))
							if err := tx.Put("counter", next); err != nil {
								return err
							}
							return tx.Put("mirror", next)
						})
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			reader := open()
			var rg sync.WaitGroup
			rg.Go(func() {
				for !done.Load() {
					err := reader.View(ctx, func(tx Tx) error {
						a, err := tx.Get("counter")
						if err != nil {
							return err
						}
						b, err := tx.Get("mirror")
						if err != nil {
							return err
						}
						if string(a) != string(b) {
							return fmt.Errorf("torn read: counter %q, mirror %q", a, b)
						}
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
			wg.Wait()
			done.Store(true)
			rg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			err := open().View(ctx, func(tx Tx) error {
				v, err := tx.Get("counter")
				if string(v) != strconv.Itoa(writers*each) {
					return fmt.Errorf("counter = %q, want %d", v, writers*each)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStoreRewrite: a rewrite replaces the whole content, and one that
// fails changes nothing.
func TestStoreRewrite(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open()
			err := s.Update(ctx, func(tx Tx) error {
				for i := range 1500 {
					if err := tx.Put(fmt.Sprintf("k/%04d", i), []byte("old")); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rw := s.(Rewriter)
			boom := errors.New("boom")
			err = rw.Rewrite(ctx, func(src, dst Tx) error {
				if err := dst.Put("x", []byte("y")); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("failed rewrite: %v", err)
			}
			if got := snapshot(t, s); len(got) != 1500 {
				t.Fatalf("a failed rewrite changed the store: %d keys", len(got))
			}
			err = rw.Rewrite(ctx, func(src, dst Tx) error {
				if err := src.Put("z", nil); err == nil {
					return errors.New("rewrite source is writable")
				}
				return src.Walk("k/", func(k string) error {
					if !strings.HasSuffix(k, "0") {
						return nil
					}
					v, err := src.Get(k)
					if err != nil {
						return err
					}
					if err := dst.Put(k, append(v, '!')); err != nil {
						return err
					}
					got, err := dst.Get(k)
					if string(got) != "old!" {
						return fmt.Errorf("dst read %q: %v", got, err)
					}
					return err
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			got := snapshot(t, open())
			if len(got) != 150 || got["k/0010"] != "old!" {
				t.Fatalf("after rewrite: %d keys, k/0010 = %q", len(got), got["k/0010"])
			}
		})
	}
}

func TestPostgresCreateAndOpen(t *testing.T) {
	ctx := context.Background()
	u := newPostgresURL(t, "team_store")
	if _, err := OpenPostgres(ctx, u, PostgresOptions{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("open before create: %v", err)
	}
	p, err := CreatePostgres(ctx, u, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := CreatePostgres(ctx, u, PostgresOptions{}); !errors.Is(err, ErrStoreExists) {
		t.Fatalf("second create: %v", err)
	}
	// Another schema of the same database is another store.
	other := strings.Replace(u, "schema=team_store", "schema=lessor", 1)
	if _, err := OpenPostgres(ctx, other, PostgresOptions{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("open of the default schema: %v", err)
	}
	for _, bad := range []string{"Lessor", "pg_x", "a-b", "a;drop"} {
		if _, _, err := ParsePostgresURL(strings.Replace(u, "team_store", bad, 1)); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
	}
	if _, err := OpenPostgres(ctx, u, PostgresOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresSchemaVersion: a store at another schema version is refused
// with a message that says what to do, and only UpgradePostgres moves it.
func TestPostgresSchemaVersion(t *testing.T) {
	ctx := context.Background()
	p, u := newTestPostgres(t)
	set := func(v int) {
		t.Helper()
		c := pgtest.Require(t).Connect(t, pgtest.Require(t).User, pgtest.Require(t).Password, dbName(t, u))
		if _, err := c.Exec(ctx, `UPDATE lessor.meta SET schema_version = $1`, v); err != nil {
			t.Fatal(err)
		}
	}
	set(PostgresSchemaVersion + 1)
	_, err := OpenPostgres(ctx, u, PostgresOptions{})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "upgrade lessor") {
		t.Fatalf("newer schema: %v", err)
	}
	if err := p.Update(ctx, func(tx Tx) error { return tx.Put("a", nil) }); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("write to a newer schema: %v", err)
	}
	if _, err := UpgradePostgres(ctx, u, PostgresOptions{}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("upgrade of a newer schema: %v", err)
	}
	set(0)
	_, err = OpenPostgres(ctx, u, PostgresOptions{})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "upgrade-schema") {
		t.Fatalf("older schema: %v", err)
	}
	postgresUpgrades[0] = []string{`COMMENT ON TABLE {schema}.kv IS 'upgraded'`}
	defer delete(postgresUpgrades, 0)
	if from, err := UpgradePostgres(ctx, u, PostgresOptions{}); err != nil || from != 0 {
		t.Fatalf("upgrade: %d, %v", from, err)
	}
	if _, err := OpenPostgres(ctx, u, PostgresOptions{}); err != nil {
		t.Fatal(err)
	}
}

func dbName(t *testing.T, u string) string {
	t.Helper()
	cfg, _, err := ParsePostgresURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// TestPostgresBrokenConnection: a connection killed in the middle of a
// transaction fails it with ErrUnavailable, names the store without its
// password, and leaves none of its writes.
func TestPostgresBrokenConnection(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Require(t)
	p, u := newTestPostgres(t)
	admin := srv.Connect(t, srv.User, srv.Password, dbName(t, u))
	err := p.Update(ctx, func(tx Tx) error {
		if err := tx.Put("first", []byte("1")); err != nil {
			return err
		}
		_, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'lessor'`)
		if err != nil {
			return err
		}
		return tx.Put("second", []byte("2"))
	})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("update over a killed connection: %v", err)
	}
	if strings.Contains(err.Error(), ":"+srv.Password+"@") || !strings.Contains(err.Error(), "xxxxx@") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error does not name the store, redacted, on one line: %q", err)
	}
	// The next transaction reconnects and finds nothing of the broken one.
	if got := snapshot(t, p); len(got) != 0 {
		t.Fatalf("half-applied: %v", got)
	}
}

// TestPostgresPasswordNotSentInClear: the store's password goes to no one
// who asks for it in clear text over a connection whose server nobody
// verified: plain TCP (sslmode disable, or prefer and allow, whose TLS an
// attacker in between refuses). Such a server, or one that takes its
// place, would hold the store's login. Allowed when asked for.
func TestPostgresPasswordNotSentInClear(t *testing.T) {
	ctx := context.Background()
	addr, got := pgtest.CatchPasswords(t)
	for _, q := range []string{"", "?sslmode=disable", "?sslmode=prefer", "?sslmode=allow"} {
		u := "postgres://lessor:store-secret@" + addr + "/ops" + q
		if _, err := OpenPostgres(ctx, u, PostgresOptions{}); err == nil || !strings.Contains(err.Error(), "sslmode=verify-full") {
			t.Fatalf("%s: %v", q, err)
		}
		select {
		case p := <-got:
			t.Fatalf("%s: the server was sent the password %q", q, p)
		default:
		}
	}
	if _, err := OpenPostgres(ctx, "postgres://lessor:store-secret@"+addr+"/ops?sslmode=disable&require_auth=password", PostgresOptions{}); err == nil {
		t.Fatal("opened")
	}
	if p := <-got; p != "store-secret" {
		t.Fatalf("with require_auth=password the server was sent %q", p)
	}
}

// TestPostgresRetriesDeadlock: a transaction that PostgreSQL aborts as a
// deadlock victim (40P01) is run again and commits.
func TestPostgresRetriesDeadlock(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Require(t)
	p, u := newTestPostgres(t)
	if err := p.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("0")) }); err != nil {
		t.Fatal(err)
	}
	other := srv.Connect(t, srv.User, srv.Password, dbName(t, u))
	locked := make(chan error, 1)
	otherDone := make(chan error, 1)
	runs := 0
	err := p.Update(ctx, func(tx Tx) error {
		runs++
		if runs == 1 {
			// Another session locks k, then (once this one waits for k)
			// asks for the writers' lock this transaction holds.
			go func() {
				otx, err := other.Begin(ctx)
				if err == nil {
					_, err = otx.Exec(ctx, `UPDATE lessor.kv SET value = 'other' WHERE key = 'k'`)
				}
				locked <- err
				if err != nil {
					otherDone <- err
					return
				}
				time.Sleep(300 * time.Millisecond)
				if _, err = otx.Exec(ctx, `SELECT FROM lessor.meta FOR UPDATE`); err != nil {
					otx.Rollback(ctx)
					otherDone <- err
					return
				}
				otherDone <- otx.Commit(ctx)
			}()
			if err := <-locked; err != nil {
				return err
			}
		}
		return tx.Put("k", []byte("mine"))
	})
	if err != nil {
		t.Fatalf("update: %v (runs %d)", err, runs)
	}
	if err := <-otherDone; err != nil {
		t.Fatalf("other session: %v", err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2 (aborted once as the deadlock victim)", runs)
	}
	if got := snapshot(t, p); got["k"] != "mine" {
		t.Fatalf("k = %q", got["k"])
	}
}

func TestStoreURLs(t *testing.T) {
	// Parameters reach the driver as written: a %20 stays a space (it was
	// encoded again as '+', which the driver, like libpq, reads as a
	// '+'), and a '+' stays a '+'.
	for in, want := range map[string][2]string{
		"postgres://u@h/db?options=-c%20statement_timeout%3D5s&schema=x": {"-c statement_timeout=5s", "lessor"},
		"postgres://u@h/db?application_name=a+b%20c":                     {"", "a+b c"},
	} {
		cfg, schema, err := ParsePostgresURL(in)
		if err != nil {
			t.Fatalf("ParsePostgresURL(%q): %v", in, err)
		}
		if got := [2]string{cfg.RuntimeParams["options"], cfg.RuntimeParams["application_name"]}; got != want {
			t.Errorf("ParsePostgresURL(%q): options and application_name %q, want %q", in, got, want)
		}
		if want := map[bool]string{true: "x", false: DefaultPostgresSchema}[strings.Contains(in, "schema=x")]; schema != want {
			t.Errorf("ParsePostgresURL(%q): schema %q, want %q", in, schema, want)
		}
	}
	for s, want := range map[string]bool{
		"postgres://h/db": true, "postgresql://u:p@h/db": true, "POSTGRES://h": true,
		"/var/lib/lessor.db": false, "mysql://h/db": false, "postgres:/h": false,
	} {
		if got := IsPostgresURL(s); got != want {
			t.Errorf("IsPostgresURL(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]bool{
		"mysql://h/db": true, "postgres://h": true, "s3+https://b/k": true, "file:///x": true,
		"/tmp/a://b": false, "./x.db": false, "://x": false, "C:/x": false,
		" postgres://u:p@h/db": true, "\tpostgresql://h": true, "postgres:u:p@h/db": true,
		"PostgreSQL:h": true, "./postgres:x": false, "postgresx.db": false,
	} {
		if got := LooksLikeURL(s); got != want {
			t.Errorf("LooksLikeURL(%q) = %v", s, got)
		}
	}
	for in, want := range map[string]string{
		"postgres://u:secret@h/db?sslmode=disable":   "postgres://u:xxxxx@h/db?sslmode=disable",
		"postgres://u@h/db?password=secret&schema=x": "postgres://u@h/db?password=xxxxx&schema=x",
		"postgresql://u:secret@a:5432,b:5433/db":     "postgresql://u:xxxxx@a:5432,b:5433/db",
		"postgres://h/db":                            "postgres://h/db",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	// Malformed parts must not let a secret through unparsed: a bad
	// escape in a value or a name, a ';', an opaque URL, a fragment, the
	// client key's passphrase.
	for _, in := range []string{
		"postgres://h/db?password=se%zzcret-1",
		"postgres://h/db?password=secret-1;x=1",
		"postgres://h/db?x=1;password=secret-1",
		"postgres://h/db?pass%zzword=secret-1",
		"postgres:u:secret-1@h/db",
		"postgres://h/db#password=secret-1",
		"postgres://h/db?sslpassword=secret-1",
		"postgres://h/db?PassWord=secret-1",
		"host=h sslpassword=secret-1",
		"postgres://u:secret-1#x@h/db",
		"u:secret-1@h/x://y",
		" postgres://u:secret-1@h/db",
		"postgresql:u:secret-1@h/db",
		// One '/' only: no host, a path that holds it all.
		"postgres:/u:secret-1@h/db",
		"PostgreSQL:/u:secret-1@h/db",
		"sslpassword=secret-1 host=h",
		"channel_binding=require host=h password=secret-1",
		// libpq 18's OAuth client secret: no password by name, a
		// secret all the same.
		"postgres://h/db?oauth_client_secret=secret-1",
		"host=h oauth_client_id=x oauth_client_secret=secret-1",
	} {
		if got := RedactURL(in); strings.Contains(got, "secret-1") {
			t.Errorf("RedactURL(%q) = %q keeps the secret", in, got)
		}
	}
	// -store refuses them as it refuses a password.
	// So does one after a '#', which the driver reads on through.
	for _, in := range []string{"postgres://h/db?oauth_client_secret=s", "host=h oauth_client_secret=s", "postgres://h/db?OAuth_Client_Secret=s", "postgres://u@h/db?x=#&password=s"} {
		if !HoldsPassword(in) {
			t.Errorf("HoldsPassword(%q) = false", in)
		}
	}
	// A password with an unencoded '/', '?' or '#' (a base64 one may start
	// with '/'): a URL parser takes its tail for a path or a query, and
	// the driver for a database name.
	for _, in := range []string{
		"postgres://u:/secret-1@h:5432/db",
		"postgres://u:77/secret-1@h/db",
		"postgres://u:77?secret-1@h/db",
		"postgres://u:a#secret-1@h/db",
		"postgres://u:12?k=secret-1@h:5432/db",
	} {
		if got := RedactURL(in); strings.Contains(got, "secret-1") {
			t.Errorf("RedactURL(%q) = %q keeps the secret", in, got)
		}
		// Refused before it reaches the driver, whose error would quote
		// the tail as a database name.
		if _, _, err := ParsePostgresURL(in); err == nil || strings.Contains(err.Error(), "secret-1") {
			t.Errorf("ParsePostgresURL(%q): %v", in, err)
		}
	}
	// A '#' after the host is no fragment to the driver, which reads on
	// through it: a password, or a host, after it would be used, unseen
	// by -store's check and by every message (which drop a fragment).
	for _, in := range []string{
		"postgres://u@h/db?sslmode=disable&x=#&password=secret-1",
		"postgres://u@h/db?sslmode=disable&x=#&host=elsewhere",
		"postgres://u@h/db#x",
	} {
		if _, _, err := ParsePostgresURL(in); err == nil || !strings.Contains(err.Error(), "%23") {
			t.Errorf("ParsePostgresURL(%q): %v", in, err)
		}
	}
	if got := RedactURL("postgres://u:77?secret-1@h/db"); got != "postgres://xxxxx@h/db" {
		t.Errorf("RedactURL of a URL with a '?' in its password = %q", got)
	}
	if _, _, err := ParsePostgresURL("postgres://u@h/db?application_name=ops@team&sslmode=disable"); err != nil {
		t.Errorf("an '@' in a parameter's value: %v", err)
	}
	cfg, schema, err := ParsePostgresURL("postgres://u@a:5432,b:5433/db?target_session_attrs=read-write&schema=s1")
	if err != nil || schema != "s1" || len(cfg.Fallbacks) == 0 || cfg.ValidateConnect == nil {
		t.Fatalf("multi-host URL: %v, schema %q, %d fallbacks", err, schema, len(cfg.Fallbacks))
	}
	if _, ok := cfg.RuntimeParams["schema"]; ok {
		t.Fatal("schema= was passed on to the server")
	}
	// A store connects only to a server that takes writes, never to a
	// standby that may lag behind the primary, whether it names several
	// hosts or one (which may be a standby, or resolve to several
	// addresses): read-write unless told, and a setting that would pick a
	// standby, or any of several servers, is refused. any with one host
	// is left as the operator set it.
	t.Setenv("PGTARGETSESSIONATTRS", "")
	os.Unsetenv("PGTARGETSESSIONATTRS")
	for in, validated := range map[string]bool{
		"postgres://u@a:5432,b:5433/db":                              true,
		"postgres://u@a:5432,a:5433/db?sslmode=prefer":               true,
		"host=a,b dbname=db":                                         true,
		"postgres://u@a:5432,b:5433/db?target_session_attrs=primary": true,
		"postgres://u@a/db":                                          true,
		"postgres://u@a/db?sslmode=prefer":                           true,
		"host=a dbname=db":                                           true,
		"postgres://u@a/db?target_session_attrs=any":                 false,
		"host=a,a port=5432,5432 dbname=db target_session_attrs=any": false,
	} {
		cfg, _, err := ParsePostgresURL(in)
		if err != nil || (cfg.ValidateConnect != nil) != validated {
			t.Errorf("%s: %v, validated %v", in, err, err == nil && cfg.ValidateConnect != nil)
		}
	}
	for _, in := range []string{
		"postgres://u@a:5432,b:5433/db?target_session_attrs=any",
		// The driver takes the last of several, as libpq does.
		"postgres://u@a:5432,b:5433/db?target_session_attrs=read-write&target_session_attrs=any",
		"postgres://u@a/db?target_session_attrs=primary&target_session_attrs=standby",
		"postgres://u@a/db?target_session_attrs=standby",
		"postgres://u@a,b/db?target_session_attrs=prefer-standby",
		"host=a,b dbname=db target_session_attrs=read-only",
		// The driver skips blanks around a value, as libpq does.
		"postgres://u@a:5432,b:5433/db?target_session_attrs=any ",
		"postgres://u@a/db?target_session_attrs= standby",
		"postgres://u@a/db?target_session_attrs =standby",
	} {
		if _, _, err := ParsePostgresURL(in); err == nil || !strings.Contains(err.Error(), "standby") {
			t.Errorf("%s: %v", in, err)
		}
	}
	t.Setenv("PGTARGETSESSIONATTRS", "standby")
	if _, _, err := ParsePostgresURL("postgres://u@a/db"); err == nil {
		t.Error("PGTARGETSESSIONATTRS=standby accepted")
	}
}

// countingTracer counts the statements a connection sends.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestPostgresRoundTrips: a transaction's writes go to the server in a
// few statements at commit, not one per Put, and a record read twice is
// fetched once; reads in the transaction see its own writes, across
// Walk's pages.
func TestPostgresRoundTrips(t *testing.T) {
	ctx := context.Background()
	p, _ := newTestPostgres(t)
	tr := &countingTracer{}
	p.cfg.Tracer = tr
	p.Close() // the next transaction connects with the tracer
	p.closed = false
	err := p.Update(ctx, func(tx Tx) error {
		for i := range 2500 {
			k := fmt.Sprintf("k/%04d", i)
			if err := tx.Put(k, []byte("v")); err != nil {
				return err
			}
			if v, err := tx.Get(k); err != nil || string(v) != "v" {
				return fmt.Errorf("read own write %s: %q, %v", k, v, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := tr.n.Load(); n > 10 {
		t.Fatalf("2,500 puts took %d statements", n)
	}
	tr.n.Store(0)
	var walked []string
	err = p.Update(ctx, func(tx Tx) error {
		for range 3 {
			if _, err := tx.Get("k/0001"); err != nil {
				return err
			}
		}
		for _, k := range []string{"k/0500", "k/1999"} {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range []string{"k/0999a", "k/2499a", "j/0", "l/0"} {
			if err := tx.Put(k, nil); err != nil {
				return err
			}
		}
		return tx.Walk("k/", func(k string) error { walked = append(walked, k); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 2500 {
		if i != 500 && i != 1999 {
			want = append(want, fmt.Sprintf("k/%04d", i))
		}
		if i == 999 || i == 2499 {
			want = append(want, fmt.Sprintf("k/%04da", i))
		}
	}
	if strings.Join(walked, ",") != strings.Join(want, ",") {
		t.Fatalf("walk saw %d keys, want %d", len(walked), len(want))
	}
	if n := tr.n.Load(); n > 12 {
		t.Fatalf("three reads of one key, a walk of 3 pages and 6 writes took %d statements", n)
	}
	got := snapshot(t, p)
	if _, ok := got["k/0500"]; len(got) != 2502 || ok {
		t.Fatalf("after commit: %d keys", len(got))
	}
}

// TestPostgresMetaRowDeleted: a store whose meta row someone deleted is
// refused as damaged by open and upgrade-schema as it is by a write, never
// reported as a store that cannot be reached.
func TestPostgresMetaRowDeleted(t *testing.T) {
	ctx := context.Background()
	p, u := newTestPostgres(t)
	srv := pgtest.Require(t)
	c := srv.Connect(t, srv.User, srv.Password, dbName(t, u))
	if _, err := c.Exec(ctx, `DELETE FROM lessor.meta`); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "meta row is missing") {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err := OpenPostgres(ctx, u, PostgresOptions{})
	check("open", err)
	_, err = UpgradePostgres(ctx, u, PostgresOptions{})
	check("upgrade", err)
	check("write", p.Update(ctx, func(tx Tx) error { return tx.Put("a", nil) }))
}

// TestPostgresPasswordNotSentToPlantedSocket: a Unix socket is as good as
// a verified server only where no one else could have put it. In a
// directory any local user may write to (/tmp, where some builds keep
// PostgreSQL's socket), one of them can put a socket of their own while
// the server is down, and ask for the store's password in clear text;
// lessor refuses. In a directory only its owner writes to, the socket is
// the server's, and the password goes as before.
func TestPostgresPasswordNotSentToPlantedSocket(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		mode os.FileMode
		sent bool
	}{{0o777 | os.ModeSticky, false}, {0o777, false}, {0o755, true}} {
		dir := t.TempDir()
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, got := pgtest.CatchPasswordsOn(t, "unix", filepath.Join(dir, ".s.PGSQL.5432"))
		_, err := OpenPostgres(ctx, "host="+dir+" port=5432 user=lessor password=store-secret dbname=ops", PostgresOptions{})
		if err == nil {
			t.Fatalf("%v: opened", tc.mode)
		}
		select {
		case p := <-got:
			if !tc.sent {
				t.Errorf("%v: the socket was sent the password %q", tc.mode, p)
			}
		default:
			if tc.sent {
				t.Errorf("%v: the password did not go to the server's socket: %v", tc.mode, err)
			} else if !strings.Contains(err.Error(), "require_auth=password") {
				t.Errorf("%v: %v", tc.mode, err)
			}
		}
	}
}

// TestPostgresPasswordNotSentToSocketDirOfAnotherUser: in a sticky
// directory any local user may write to (/tmp), a directory or a link
// another user made is theirs, whatever its mode: made before the
// server's, it holds a socket of theirs, and it is no verified server.
func TestPostgresPasswordNotSentToSocketDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user needs root")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	theirs, link := filepath.Join(base, "pg"), filepath.Join(base, "pglink")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(theirs, link); err != nil {
		t.Fatal(err)
	}
	_, got := pgtest.CatchPasswordsOn(t, "unix", filepath.Join(theirs, ".s.PGSQL.5432"))
	for _, p := range []string{theirs, link} {
		if err := os.Lchown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, host := range []string{theirs, link} {
		_, err := OpenPostgres(context.Background(), "host="+host+" port=5432 user=lessor password=store-secret dbname=ops", PostgresOptions{})
		if p, sent := pgtest.Sent(got); sent {
			t.Fatalf("%s: the socket was sent the password %q", host, p)
		}
		if err == nil || !strings.Contains(err.Error(), "require_auth=password") {
			t.Fatalf("%s: %v", host, err)
		}
	}
}

// newStoreDatabase creates a store in a database of its own, whose
// defaults the test then sets as the database's owner may.
func newStoreDatabase(t *testing.T) *pgtest.Database {
	t.Helper()
	db := pgtest.Require(t).NewDatabase(t)
	p, err := CreatePostgres(context.Background(), db.URL, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	return db
}

// setDatabaseDefault gives db's sessions the default set ("name = value").
func setDatabaseDefault(t *testing.T, db *pgtest.Database, set string) {
	t.Helper()
	db.Exec(t, `ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` SET `+set)
}

// TestPostgresPasswordNotSentThroughLinkedSocketDir: a socket directory
// named through a link is judged where the link leads. Behind it, a
// directory other users may write to (not sticky) lets them rename the
// server's directory away and put one of theirs, with their socket, in
// its place, however private the link's own directory is.
func TestPostgresPasswordNotSentThroughLinkedSocketDir(t *testing.T) {
	base := t.TempDir()
	shared, private := filepath.Join(base, "shared"), filepath.Join(base, "private")
	for dir, mode := range map[string]os.FileMode{shared: 0o777, private: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	theirs := filepath.Join(shared, "pg")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(private, "pg")
	if err := os.Symlink(theirs, link); err != nil {
		t.Fatal(err)
	}
	_, got := pgtest.CatchPasswordsOn(t, "unix", filepath.Join(theirs, ".s.PGSQL.5432"))
	_, err := OpenPostgres(context.Background(), "host="+link+" port=5432 user=lessor password=store-secret dbname=ops", PostgresOptions{})
	select {
	case p := <-got:
		t.Fatalf("the socket was sent the password %q", p)
	default:
	}
	if err == nil || !strings.Contains(err.Error(), "require_auth=password") {
		t.Fatalf("%v", err)
	}
}

// TestPostgresReadOnlyDefaultIsNoStandby: a store connects only to a
// primary, not to a standby; a primary whose database defaults to
// read-only transactions (ALTER DATABASE … SET
// default_transaction_read_only, open to the database's owner, who need
// have no access to the store) is still one: the store's writes say READ
// WRITE themselves. Refusing it would let that owner take every host's
// store away, one host named or several.
func TestPostgresReadOnlyDefaultIsNoStandby(t *testing.T) {
	ctx := context.Background()
	db := newStoreDatabase(t)
	setDatabaseDefault(t, db, "default_transaction_read_only = on")
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	several := *u
	several.Host = u.Host + ",localhost:" + u.Port()
	// read-write (the README's failover URL) likewise.
	readWrite := several
	readWrite.RawQuery += "&target_session_attrs=read-write"
	for _, s := range []string{db.URL, several.String(), readWrite.String(), db.URL + "&target_session_attrs=read-write"} {
		p := openPostgres(t, s)
		if err := p.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// TestPostgresClockUnderAnySettings: the open reads the server's clock,
// and a result comes as text in the session's formats. The owner of the
// store's database (who need have no access to the store) may set a
// DateStyle no parser reads back, or an extra_float_digits that cuts a
// float to one digit (an epoch of 2e+09 is years off); neither may keep a
// host from opening the store, nor move its clock.
func TestPostgresClockUnderAnySettings(t *testing.T) {
	ctx := context.Background()
	db := newStoreDatabase(t)
	for _, set := range []string{"DateStyle = 'SQL, DMY'", "DateStyle = 'German'", "extra_float_digits = -15", "TimeZone = 'Asia/Kathmandu'"} {
		setDatabaseDefault(t, db, set)
		p := openPostgres(t, db.URL)
		if err := p.MeasureClock(ctx); err != nil {
			t.Fatalf("%s: %v", set, err)
		}
		if server, host := p.ServerTime(); server.Sub(host).Abs() > time.Minute {
			t.Errorf("%s: the server's clock reads %s at the host's %s", set, server.UTC(), host.UTC())
		}
	}
}

// TestPostgresDatabaseDefaultsTakeNoStore: the owner of the store's
// database (who need have no access to the store) sets defaults for every
// session there. None may keep a host from reading and writing the store:
// a bytea_output of escape (the driver reads bytea in hex only) or a
// timeout of a millisecond: on statements, or on sessions idle in a
// transaction or between them.
func TestPostgresDatabaseDefaultsTakeNoStore(t *testing.T) {
	ctx := context.Background()
	sets := []string{"bytea_output = 'escape'", "statement_timeout = '1ms'", "idle_in_transaction_session_timeout = '1ms'", "idle_session_timeout = '1ms'"}
	for _, set := range sets {
		db := newStoreDatabase(t)
		setDatabaseDefault(t, db, set)
		p, err := OpenPostgres(ctx, db.URL, PostgresOptions{})
		if err != nil {
			t.Errorf("%s: %v", set, err)
			continue
		}
		t.Cleanup(p.Close)
		for i := range 20 {
			if err := p.Update(ctx, func(tx Tx) error {
				if err := tx.Put(fmt.Sprintf("k/%d", i), []byte{0, 1, 0xff}); err != nil {
					return err
				}
				_, err := tx.List("k/")
				return err
			}); err != nil {
				t.Errorf("%s: %v", set, err)
				break
			}
			if err := p.View(ctx, func(tx Tx) error {
				v, err := tx.Get(fmt.Sprintf("k/%d", i))
				if err == nil && string(v) != "\x00\x01\xff" {
					err = fmt.Errorf("read back %q", v)
				}
				return err
			}); err != nil {
				t.Errorf("%s: %v", set, err)
				break
			}
			// Kept connections wait between transactions, as a
			// serve's do between requests.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestPostgresTransactionTimeoutLifted: from PostgreSQL 17 on, a
// transaction_timeout that the store's database defaults to (a DBA's
// limit for the apps there) ended every store transaction that took
// longer, a long reap's among them. Each connection lifts it. (CI's
// .ci/pg-matrix runs this on 17; older servers have no such setting.)
func TestPostgresTransactionTimeoutLifted(t *testing.T) {
	ctx := context.Background()
	db := newStoreDatabase(t)
	if v := pgurl.ServerVersionNum(db.Conn(t).PgConn()); v < 170000 {
		t.Skipf("PostgreSQL %d has no transaction_timeout", v)
	}
	setDatabaseDefault(t, db, "transaction_timeout = '300ms'")
	p, err := OpenPostgres(ctx, db.URL, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	err = p.Update(ctx, func(tx Tx) error {
		if err := tx.Put("k", []byte("v")); err != nil {
			return err
		}
		time.Sleep(600 * time.Millisecond)
		_, err := tx.List("")
		return err
	})
	if err != nil {
		t.Fatalf("a transaction longer than the database's transaction_timeout: %v", err)
	}
}

// TestPostgresUnknownStartupSettingDropped: a server that does not know a
// setting the startup packet lifts (PostgreSQL 13 has no
// idle_session_timeout) refuses the connection; the store connects again
// without it, and keeps the rest.
func TestPostgresUnknownStartupSettingDropped(t *testing.T) {
	defer func(old []string) { newerStartupSettings = old }(newerStartupSettings)
	newerStartupSettings = append(slices.Clone(newerStartupSettings), "lessor_no_such_setting")
	ctx := context.Background()
	db := newStoreDatabase(t)
	p, err := OpenPostgres(ctx, db.URL, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	// A new connection to the same server leaves it out at once, and
	// still lifts idle_session_timeout, which the server knows.
	c, err := p.connect(ctx)
	if err != nil {
		t.Fatalf("connect again: %v", err)
	}
	defer c.Close(ctx)
	if n := c.Config().MaxProtocolMessageBodyLen; n != maxStoreMessageLen {
		t.Errorf("a message from the state database may announce %d bytes, want at most %d", n, maxStoreMessageLen)
	}
	if _, ok := c.Config().RuntimeParams["lessor_no_such_setting"]; ok {
		t.Error("the refused setting is still asked for")
	}
	var timeout string
	if err := c.QueryRow(ctx, "SHOW idle_session_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Errorf("idle_session_timeout = %q (%v), want 0", timeout, err)
	}
}

// TestStoreMissingServiceIsNamed: a PGSERVICE that no service file holds
// fails the driver's parse of any store URL; the error says so.
func TestStoreMissingServiceIsNamed(t *testing.T) {
	t.Setenv("PGSERVICEFILE", filepath.Join(t.TempDir(), "none.conf"))
	t.Setenv("PGSERVICE", "no-such-service")
	_, _, err := ParsePostgresURL("postgres://u@127.0.0.1/db")
	if err == nil || !strings.Contains(err.Error(), "PGSERVICE=no-such-service in lessor's environment names a service no service file holds") {
		t.Fatalf("ParsePostgresURL with a missing service: %v", err)
	}
}

// TestConnParam: a parameter of a connection string as the driver reads
// it: percent-decoded in a URL, unquoted in a keyword/value string, the
// last of several.
func TestConnParam(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt", "verify-full"},
		{"postgres://u@h/db?sslmode=require&sslmode=verify-ca", "verify-ca"},
		{"postgresql://{{username}}:{{password}}@h:5432/db?application_name=x", ""},
		{"postgres://u@h/db", ""},
		{"host=h sslmode='verify-full' user=u", "verify-full"},
		{"host=h sslmode=require sslmode=disable", "disable"},
		{"host=h user=u", ""},
	} {
		if got := ConnParam(c.dsn, "sslmode"); got != c.want {
			t.Errorf("%s: sslmode %q, want %q", c.dsn, got, c.want)
		}
	}
	if got := ConnParam("postgres://u@h/db?sslrootcert=%2Fetc%2Fca.crt", "sslrootcert"); got != "/etc/ca.crt" {
		t.Errorf("sslrootcert %q", got)
	}
}

// TestTransactionTimeoutOfTheURLStays: a transaction_timeout the store URL
// sets, as a parameter or through options=-c, is not lifted.
func TestTransactionTimeoutOfTheURLStays(t *testing.T) {
	for url, lifted := range map[string]bool{
		"postgres://u@h/db":                                         true,
		"postgres://u@h/db?transaction_timeout=5min":                false,
		"postgres://u@h/db?options=-c%20transaction_timeout%3D5min": false,
		"postgres://u@h/db?options=-c%20work_mem%3D64MB":            true,
	} {
		cfg, _, err := ParsePostgresURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if (cfg.AfterConnect != nil) != lifted {
			t.Errorf("%s: lifted %v, want %v", url, cfg.AfterConnect != nil, lifted)
		}
	}
}

// TestPostgresBeginSetsLockTimeout: a write transaction's lock_timeout is
// the store's, set in the round trip of its BEGIN with the pinned
// search_path: a write transaction that reads and writes nothing sends
// that, the writers' lock and the COMMIT.
func TestPostgresBeginSetsLockTimeout(t *testing.T) {
	ctx := context.Background()
	_, u := newTestPostgres(t)
	p, err := OpenPostgres(ctx, u, PostgresOptions{LockTimeout: 1234 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	n := TraceStatements(p)
	if err := p.Update(ctx, func(Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 3 {
		t.Errorf("an empty write transaction: %d statements, want 3", got)
	}
	err = p.Update(ctx, func(tx Tx) error {
		var timeout, path string
		err := tx.(*pgTx).tx.QueryRow(ctx, `SELECT current_setting('lock_timeout'), current_setting('search_path')`).Scan(&timeout, &path)
		if err == nil && (timeout != "1234ms" || path != "pg_catalog, pg_temp") {
			err = fmt.Errorf("lock_timeout %q, search_path %q", timeout, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPostgresOpenInOneStatement: opening a store reads its version and
// the server's clock in one statement, and still tells a schema with no
// store, or none at all, from a store.
func TestPostgresOpenInOneStatement(t *testing.T) {
	ctx := context.Background()
	_, u := newTestPostgres(t)
	p, err := newPostgres(u, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	n := TraceStatements(p)
	if v, err := p.SchemaVersion(ctx); err != nil || v != PostgresSchemaVersion {
		t.Fatalf("version %d, %v", v, err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("opening: %d statements, want 1", got)
	}
	if server, _ := p.ServerTime(); server.IsZero() {
		t.Error("opening did not read the server's clock")
	}
	for _, schema := range []string{"nosuchschema", "public"} {
		if _, err := OpenPostgres(ctx, u+"&schema="+schema, PostgresOptions{}); !errors.Is(err, ErrNoStore) {
			t.Errorf("schema %s: %v, want ErrNoStore", schema, err)
		}
	}
}
