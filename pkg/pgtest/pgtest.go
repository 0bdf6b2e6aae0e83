// Package pgtest gives tests a real PostgreSQL server that enforces password
// authentication over TCP, and a fresh database per test.
//
// Require finds the server once per test process: the superuser URL in
// LESSOR_TEST_DATABASE_URL (TCP, with a password), or else a throwaway
// cluster (package devcluster) started from the local initdb/pg_ctl on a free
// 127.0.0.1 port, with scram-sha-256 as the only accepted authentication and
// a random superuser password. A throwaway cluster lives until pgtest.Main
// (or WithCluster) stops it, so a test binary that may start one must say so
// in TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The server's password is then a secret of this process only; LogFile
// names its log.
//
// Whatever server is found, Require first proves that it refuses a wrong
// password over TCP; otherwise every "the issued credential can log in"
// assertion would prove nothing. When no server can be had, tests skip with a
// loud message, unless LESSOR_TEST_REQUIRE_PG=1 (CI), when they fail. A
// LESSOR_TEST_DATABASE_URL that is set but does not work always fails them:
// someone asked for that server.
//
// Roles are cluster-wide and outlive a test's database; tests that create
// roles register them with DropRolesAtCleanup.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by Require.
const (
	EnvDatabaseURL = "LESSOR_TEST_DATABASE_URL" // superuser URL of an existing server
	EnvRequirePG   = "LESSOR_TEST_REQUIRE_PG"   // "1": fail instead of skip without a server
	EnvLog         = "LESSOR_TEST_PG_LOG"       // server log path of the server in EnvDatabaseURL
)

// Server is a PostgreSQL server reachable over TCP with a superuser's
// password.
type Server struct {
	Host     string
	Port     int
	User     string
	Password string
	// LogFile is the server's log path when known (a throwaway cluster's own
	// log, else $LESSOR_TEST_PG_LOG), "" otherwise.
	LogFile string
}

// Database is a database created for one test and dropped at its cleanup.
type Database struct {
	Name string
	// URL is a superuser URL into this database, with sslmode=disable.
	URL string

	server *Server
}

var (
	once       sync.Once
	found      *Server
	foundErr   error // why no server could be had
	fatalSetup bool  // foundErr is a misconfiguration, never a skip
	running    *cluster
	mainActive bool
)

// Main runs the tests of a package and then stops the throwaway cluster, if
// Require started one. Call it from TestMain.
func Main(m *testing.M) {
	// testing passes m.Run's result to os.Exit when TestMain returns, so
	// Main need not exit itself.
	WithCluster(m).Run()
}

// WithCluster wraps m for a TestMain that hands m to another runner, such
// as testscript.Main, which exits without returning:
//
//	func TestMain(m *testing.M) { testscript.Main(pgtest.WithCluster(m), cmds) }
//
// Its Run runs the tests and then stops the throwaway cluster.
func WithCluster(m *testing.M) interface{ Run() int } {
	mainActive = true
	return clusterM{m}
}

type clusterM struct{ m *testing.M }

func (c clusterM) Run() int {
	code := c.m.Run()
	if running != nil {
		if err := running.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		running = nil
	}
	return code
}

// Require returns the test server, finding or starting it on first use. It
// skips the test when there is none (fails with LESSOR_TEST_REQUIRE_PG=1).
func Require(t testing.TB) *Server {
	t.Helper()
	once.Do(setup)
	if foundErr != nil {
		msg := fmt.Sprintf("pgtest: NO POSTGRESQL SERVER, database tests not run: %v", foundErr)
		if fatalSetup || os.Getenv(EnvRequirePG) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return found
}

func setup() {
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		s, err := serverFromURL(raw)
		if err == nil {
			err = s.checkPasswordEnforced()
		}
		if err != nil {
			// Someone asked for this server explicitly: a broken one is a
			// configuration error, never a reason to skip.
			foundErr, fatalSetup = fmt.Errorf("%s: %w", EnvDatabaseURL, err), true
			return
		}
		s.LogFile = os.Getenv(EnvLog)
		found = s
		return
	}
	if !mainActive {
		foundErr, fatalSetup = errors.New("LESSOR_TEST_DATABASE_URL is unset and this test binary's TestMain does not call pgtest.Main or pgtest.WithCluster, so a throwaway cluster could never be stopped"), true
		return
	}
	c, err := startCluster()
	if err != nil {
		foundErr = fmt.Errorf("LESSOR_TEST_DATABASE_URL is unset and no throwaway cluster could be started: %w", err)
		return
	}
	running = c
	if err := c.server.checkPasswordEnforced(); err != nil {
		foundErr, fatalSetup = err, true
		return
	}
	found = c.server
}

func serverFromURL(raw string) (*Server, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if cfg.Host == "" || strings.HasPrefix(cfg.Host, "/") {
		return nil, fmt.Errorf("host %q is not a TCP host; password login tests need TCP", cfg.Host)
	}
	if cfg.Password == "" {
		return nil, errors.New("no password in the URL; password login tests need one")
	}
	return &Server{Host: cfg.Host, Port: int(cfg.Port), User: cfg.User, Password: cfg.Password}, nil
}

// checkPasswordEnforced logs in with the right password and with a wrong
// one; the server must accept the first and refuse the second.
func (s *Server) checkPasswordEnforced() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.CanLogin(ctx, s.User, s.Password, "postgres"); err != nil {
		return fmt.Errorf("superuser login to %s:%d: %w", s.Host, s.Port, err)
	}
	if err := s.CanLogin(ctx, s.User, s.Password+"-wrong", "postgres"); err == nil {
		return fmt.Errorf("server %s:%d accepts a wrong password over TCP (check pg_hba.conf for trust); login tests would prove nothing", s.Host, s.Port)
	}
	return nil
}

// URL returns a superuser URL into database db, with sslmode=disable.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.User, s.Password),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// config builds a connection config from explicit fields only, so that
// PGPASSWORD, ~/.pgpass and friends can never make a login succeed.
func (s *Server) config(user, password, db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host = s.Host
	cfg.Port = uint16(s.Port)
	cfg.User = user
	cfg.Password = password
	cfg.Database = db
	cfg.Fallbacks = nil
	cfg.TLSConfig = nil
	cfg.ConnectTimeout = 10 * time.Second
	cfg.RuntimeParams = map[string]string{"application_name": "lessor-pgtest"}
	return cfg, nil
}

// CanLogin logs in over TCP as user with password into database db, runs
// one query, and logs out. A nil error means the credential works.
func (s *Server) CanLogin(ctx context.Context, user, password, db string) error {
	cfg, err := s.config(user, password, db)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Connect opens a connection as user with password into database db and
// closes it at the end of the test. It fails the test if login fails.
func (s *Server) Connect(t testing.TB, user, password, db string) *pgx.Conn {
	t.Helper()
	cfg, err := s.config(user, password, db)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", db, user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// adminConn connects as the superuser to db; the caller closes it.
func (s *Server) adminConn(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := s.config(s.User, s.Password, db)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// NewDatabase creates a database with a unique name and drops it (after
// terminating its sessions) when the test ends.
func (s *Server) NewDatabase(t testing.TB) *Database {
	t.Helper()
	name := uniqueName(t.Name())
	ctx := context.Background()
	conn, err := s.adminConn(ctx, "postgres")
	if err != nil {
		t.Fatalf("pgtest: connect to %s:%d: %v", s.Host, s.Port, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.dropDatabase(name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Database{Name: name, URL: s.URL(name), server: s}
}

func (s *Server) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := s.adminConn(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	// FORCE terminates the sessions still in the database; the explicit
	// termination first covers sessions that are mid-connection.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
		return fmt.Errorf("drop database %s: terminate sessions: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Conn returns a superuser connection into the database, closed when the
// test ends.
func (d *Database) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	return d.server.Connect(t, d.server.User, d.server.Password, d.Name)
}

// DropRolesAtCleanup drops the named roles when the test ends, whatever
// they own or hold in any database and whoever is still logged in as them.
// Roles already gone are fine. Register it after NewDatabase so that it runs
// before the database drop.
func (s *Server) DropRolesAtCleanup(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		if err := s.dropRoles(names); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
}

func (s *Server) dropRoles(names []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := s.adminConn(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("drop roles: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname = ANY($1::name[])`, names)
	if err != nil {
		return fmt.Errorf("drop roles: %w", err)
	}
	present, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(present) == 0 {
		return err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::name[])`, present); err != nil {
		return fmt.Errorf("drop roles: terminate sessions: %w", err)
	}
	rows, err = conn.Query(ctx, `
SELECT DISTINCT d.datname FROM pg_shdepend s
JOIN pg_roles r ON r.oid = s.refobjid AND s.refclassid = 'pg_authid'::regclass
JOIN pg_database d ON d.oid = s.dbid
WHERE r.rolname = ANY($1::name[]) AND d.datallowconn`, present)
	if err != nil {
		return fmt.Errorf("drop roles: %w", err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("drop roles: %w", err)
	}
	idents := make([]string, len(present))
	for i, name := range present {
		idents[i] = pgx.Identifier{name}.Sanitize()
	}
	list := strings.Join(idents, ", ")
	for _, db := range append(dbs, "postgres") {
		c, err := s.adminConn(ctx, db)
		if err != nil {
			return fmt.Errorf("drop roles: %w", err)
		}
		_, err = c.Exec(ctx, "DROP OWNED BY "+list)
		c.Close(ctx)
		if err != nil {
			return fmt.Errorf("drop roles %s: drop owned in %s: %w", list, db, err)
		}
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+list); err != nil {
		return fmt.Errorf("drop roles %s: %w", list, err)
	}
	return nil
}

// uniqueName makes a database name from the test name: readable in
// pg_stat_activity, unique through a random suffix, under 63 bytes.
func uniqueName(testName string) string {
	var b strings.Builder
	b.WriteString("lessor_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String() + "_" + randomHex(4)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(buf)
}
