// Package postgres is lessor's PostgreSQL plugin: it creates, renews and
// revokes the short-lived roles that the database secrets engine issues, and
// rotates the engine's own (root) password. It speaks to PostgreSQL through
// one pgx/v5 connection per DB and never through database/sql.
//
// What it promises, beyond Vault's PostgreSQL plugin:
//
//   - Statements are split by a lexer that understands quotes, dollar quotes,
//     comments and BEGIN ATOMIC bodies, so `DO $$ … $$` blocks survive.
//   - Placeholders ({{name}}, {{username}}, {{password}}, {{expiration}}) are
//     replaced as raw text, as in Vault, except that a value placed inside a
//     quoted identifier or literal has that quote doubled, and a value that
//     would change the meaning of unquoted SQL is refused.
//   - With scram-sha-256 (the default) {{password}} becomes a SCRAM verifier
//     computed here, so no issued password reaches the server or its log.
//   - {{expiration}} is always written in UTC with an explicit +0000, as Vault writes it.
//   - Creation runs in one transaction and checks that the role it was asked
//     to create exists under exactly that name before committing; a failure
//     at any point leaves no role behind.
//   - Default revocation really removes the role: NOLOGIN, terminate its
//     sessions, revoke every grant it holds as that grant's grantor and
//     DROP OWNED what it owns (never handed to the admin), in every database, then DROP
//     ROLE IF EXISTS, with a superuser admin or a CREATEROLE one. A role
//     already gone is success. Many roles are revoked in a few round trips.
//   - Errors never contain the connection password: it is replaced with
//     [password] in every error this package returns. Wrapped causes stay
//     reachable through errors.As for their SQLSTATE; do not print their
//     fields.
//
// A DB is safe for use by several goroutines; it serialises its work on its
// one connection.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/pgurl"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Authentication types for Config.PasswordAuthentication.
const (
	AuthSCRAMSHA256 = "scram-sha-256"
	AuthPassword    = "password"
)

// DefaultTimeout is the connect and statement timeout when Config leaves
// them zero.
const DefaultTimeout = 10 * time.Second

// Config is how to reach the server as the admin (root) role.
type Config struct {
	// ConnectionURL is a postgres:// URL or a keyword/value DSN. It may
	// contain {{username}} and {{password}}, replaced by Username and
	// Password.
	ConnectionURL string
	Username      string
	Password      string
	// DisableEscaping turns off the percent-encoding of the values put
	// into {{username}} and {{password}}, for keyword/value DSNs.
	DisableEscaping bool
	// PasswordAuthentication is "scram-sha-256" (the default when "") or
	// "password" (plaintext passwords in statements).
	PasswordAuthentication string
	// ConnectTimeout bounds the whole connection attempt, StatementTimeout
	// each statement (server side, and client side with a short grace so a
	// hung server or network still gives an error). Zero means 10 s.
	ConnectTimeout   time.Duration
	StatementTimeout time.Duration
	// MaxOpenConnections bounds the connections a Pool keeps open for
	// this config (Vault's max_open_connections); 0 leaves the pool's
	// own size.
	MaxOpenConnections int
	// Confined says that the config's writer was not the account lessor
	// runs as (it came through lessor serve or sudo, or was stored by a
	// lessor that did not record its writer): nothing of that account's
	// environment or home directory applies to the connection, no file
	// it names is read as the account, and no client certificate is
	// offered (see confine.go).
	Confined bool
}

// MaxMessageLen bounds a message from the server: the driver sets aside
// room for as much as a message's header announces (up to 1 GiB) before
// it reads any of it, and a server that a config writer named (their
// own, through lessor serve) would otherwise have lessor hold a GiB for
// each request that connects to it. lessor's own statements get rows
// and errors far smaller.
const MaxMessageLen = 64 << 20

// MaxOpenConnectionsLimit bounds MaxOpenConnections: a Pool sets aside
// room for that many connections before it opens one, and a size a config
// writer chose freely could abort the server. PostgreSQL's own default
// max_connections is 100. A config write refuses more; a Pool holds a
// config stored with more to this many.
const MaxOpenConnectionsLimit = 1000

const (
	tmplUsername = "{{username}}"
	tmplPassword = "{{password}}"
)

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	if strings.TrimSpace(c.ConnectionURL) == "" {
		return errors.New("connection_url cannot be empty")
	}
	if strings.Contains(c.Username, tmplUsername) || strings.Contains(c.Username, tmplPassword) ||
		strings.Contains(c.Password, tmplUsername) || strings.Contains(c.Password, tmplPassword) {
		return errors.New("username and/or password cannot contain the template variables")
	}
	switch c.PasswordAuthentication {
	case "", AuthSCRAMSHA256, AuthPassword:
	default:
		return fmt.Errorf("'%s' is not a valid password authentication type", c.PasswordAuthentication)
	}
	if c.ConnectTimeout < 0 {
		return fmt.Errorf("connect timeout %s is negative", c.ConnectTimeout)
	}
	if c.StatementTimeout < 0 {
		return fmt.Errorf("statement timeout %s is negative", c.StatementTimeout)
	}
	if _, err := c.connConfig(c.Password); err != nil {
		return err
	}
	return nil
}

func (c Config) scram() bool { return c.PasswordAuthentication != AuthPassword }

// SCRAM tells whether passwords reach PostgreSQL as SCRAM-SHA-256
// verifiers (the default) rather than in plaintext.
func (c Config) SCRAM() bool { return c.scram() }

func (c Config) connectTimeout() time.Duration {
	if c.ConnectTimeout > 0 {
		return c.ConnectTimeout
	}
	return DefaultTimeout
}

func (c Config) statementTimeout() time.Duration {
	if c.StatementTimeout > 0 {
		return c.StatementTimeout
	}
	return DefaultTimeout
}

// connConfig parses the connection URL with password in place of the
// configured one. Errors are redacted.
func (c Config) connConfig(password string) (*pgx.ConnConfig, error) {
	user, pw := c.Username, password
	if !c.DisableEscaping {
		user, pw = escapeUserinfo(user), escapeUserinfo(pw)
	}
	if err := checkURLUserinfo(c.ConnectionURL); err != nil {
		return nil, err
	}
	dsn := strings.NewReplacer(tmplUsername, user, tmplPassword, pw).Replace(c.ConnectionURL)
	// The driver takes a string for a URL only when it begins with the
	// scheme, where lessor's checks (isURL) skip leading blanks: " postgres://
	// h?a=b host=elsewhere" was a URL to confine and keyword/value pairs to
	// the driver, which took the password from PGPASSWORD or ~/.pgpass.
	dsn = strings.TrimLeftFunc(dsn, unicode.IsSpace)
	if err := checkURLUserinfo(dsn); err != nil {
		// The URL is fine; the values put into it are not encoded.
		err.(*URLError).Reason += " (disable_escaping=true puts the username and password into the URL as they are)"
		return nil, err
	}
	var session []string
	if c.Confined {
		if err := confinedRefusal(dsn); err != nil {
			return nil, err
		}
		var err error
		if dsn, session, err = confine(dsn); err != nil {
			return nil, err
		}
	} else {
		dsn = noDefaultClientCert(dsn)
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the string (with its password masked only
		// where pgx found one) and the URL parser's reason, which may be a
		// piece of the password: none of it is shown.
		reason := "it is neither a postgres:// URL nor a keyword/value connection string that PostgreSQL's libpq rules accept"
		if svc := os.Getenv("PGSERVICE"); svc != "" {
			// The driver reads libpq's environment too, and fails on a
			// service that no service file holds.
			reason += fmt.Sprintf(", or PGSERVICE=%s in lessor's environment names a service no service file holds", svc)
		}
		return nil, &URLError{Scheme: urlScheme(c.ConnectionURL), Reason: reason}
	}
	if c.Confined {
		confined(cc, session)
	}
	// Explicit username and password fields win over whatever the URL, the
	// environment or ~/.pgpass supplied: they are what rotation changes.
	if c.Username != "" {
		cc.User = c.Username
	}
	if password != "" {
		cc.Password = password
	}
	// The admin's password, or a static role's that TryLogin checks, goes
	// to no server that asks for it in clear text unverified: whoever sits
	// between would keep the login.
	pgurl.NoClearText(cc)
	if c.Confined {
		if err := requireAuthenticated(cc); err != nil {
			return nil, err
		}
	}
	cc.MaxProtocolMessageBodyLen = MaxMessageLen
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > c.connectTimeout() {
		cc.ConnectTimeout = c.connectTimeout()
	}
	if isURL(c.ConnectionURL) {
		if _, ok := cc.RuntimeParams["application_name"]; !ok {
			cc.RuntimeParams["application_name"] = "lessor"
		}
		if _, ok := cc.RuntimeParams["timezone"]; !ok {
			cc.RuntimeParams["timezone"] = "UTC"
		}
	}
	cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.statementTimeout().Milliseconds(), 10)
	// Values are quoted, and statements split, as standard SQL strings,
	// where a backslash is an ordinary character: a database or role
	// default of off would make one in a password an escape.
	cc.RuntimeParams["standard_conforming_strings"] = "on"
	// A database default (its owner's to set) of read-only transactions
	// would keep lessor from creating, changing or revoking anything there.
	cc.RuntimeParams["default_transaction_read_only"] = "off"
	// Nor may its idle-in-transaction timeout end lessor's transactions:
	// an issue's waits for its lease record, with its transaction open,
	// and a revocation's transactions span round trips.
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = "0"
	return cc, nil
}

// Target is the connection string as connConfig renders it, with the
// password left out: where the password goes. A username that goes into
// it as letters, digits, "-._~" and percent escapes only (any username,
// escaped) names a login and nothing else, and stands as {{username}};
// one that disable_escaping puts in as it is may end the user part with
// an '@' and name a host and parameters, or add keyword/value pairs, and
// is kept.
func (c Config) Target() string {
	user := c.Username
	if !c.DisableEscaping {
		user = escapeUserinfo(user)
	}
	if strings.IndexFunc(user, func(r rune) bool { return r != '%' && escapeUserinfo(string(r)) != string(r) }) < 0 {
		user = tmplUsername
	}
	return strings.ReplaceAll(c.ConnectionURL, tmplUsername, user)
}

// escapeUserinfo percent-encodes all but RFC 3986's unreserved characters.
// Vault uses url.PathEscape, which leaves '@', ':' and '&' as they are and
// so breaks URLs for passwords holding them; this encoding decodes to the
// same text anywhere in a URL.
func escapeUserinfo(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '.' || c == '_' || c == '~' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// checkURLUserinfo refuses a postgres:// URL whose user name or password
// holds a character that ends the userinfo (see pgurl.MisplacedAt): pgx
// would take the host to start at the first '@', dial a "host" that is
// the rest of the password, and print it in its error. The error quotes
// nothing from the URL.
func checkURLUserinfo(dsn string) error {
	if !isURL(dsn) {
		return nil
	}
	if reason := pgurl.MisplacedAt(dsn); reason != "" {
		return &URLError{Scheme: urlScheme(dsn), Reason: reason}
	}
	return nil
}

// URLError is an error about the connection string itself: it does not
// parse. Like Vault's "unable to parse connection url", its text quotes
// nothing of the string but the scheme, because a string that does not
// parse may hold a password where no redaction would find it.
type URLError struct {
	Scheme string // "postgres" or "postgresql"; "" for a keyword/value string
	Reason string
}

func (e *URLError) Error() string {
	msg := "unable to parse connection url"
	if e.Scheme != "" {
		msg += " (a " + e.Scheme + ":// URL)"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// urlScheme returns the scheme of a postgres:// or postgresql:// URL, and
// "" for anything else (a keyword/value string quotes no scheme).
func urlScheme(s string) string {
	scheme, _, ok := strings.Cut(strings.TrimSpace(s), "://")
	if ok && (scheme == "postgres" || scheme == "postgresql") {
		return scheme
	}
	return ""
}

func isURL(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// DB is one admin connection to the server.
type DB struct {
	mu      sync.Mutex
	cfg     Config
	conn    *pgx.Conn
	closed  bool
	version int      // server_version_num
	secrets []string // passwords to redact: the current and any former one
	// pool, when set, takes the connection back on Close (Pool.Connect).
	pool *Pool
	set  *connSet
	// unbound says that conn is not set up against its database's
	// defaults (unbindSession): Connect made it, or a creation's statements
	// ran in it since (see Creation.end). admin sets it up before it hands
	// conn out; begin does in its own round trip (unboundBatch).
	unbound bool
	// testOnlyAfterCatalog, when set, runs in the default revocation
	// between its catalog query and ALTER ROLE … NOLOGIN, where a test
	// logs in as a role being revoked.
	testOnlyAfterCatalog func()
}

// Connect opens the admin connection (authenticated, ready for queries).
func Connect(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db := &DB{cfg: cfg}
	db.addSecret(cfg.Password)
	// Set up by the first round trip that uses it: begin's, on the issue
	// path, or one of admin's own (see unbound).
	conn, err := db.dialUnbound(ctx, cfg.Password, "")
	if err != nil {
		return nil, err
	}
	db.conn, db.unbound = conn, true
	return db, nil
}

// Target says where the admin connection logged in: the host (a name, an
// address or a socket directory), the port and the database. Credentials
// that this connection creates log in there too.
func (db *DB) Target() (host string, port uint16, database string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.conn == nil {
		return "", 0, ""
	}
	cc := db.conn.Config()
	return cc.Host, cc.Port, cc.Database
}

// TLSSettings are the sslmode and sslrootcert the connection string sets,
// "" where it sets none.
func (db *DB) TLSSettings() (sslmode, sslrootcert string) {
	return storage.ConnParam(db.cfg.ConnectionURL, "sslmode"), storage.ConnParam(db.cfg.ConnectionURL, "sslrootcert")
}

func (db *DB) addSecret(s string) {
	if s != "" {
		db.secrets = append(db.secrets, s)
	}
}

// dialUnbound connects with the given password, to database dbName when
// not "". The session is not yet set up against what its database's
// defaults impose (see unbindSession): no SQL of lessor's may run on it
// before that.
func (db *DB) dialUnbound(ctx context.Context, password, dbName string) (*pgx.Conn, error) {
	cc, err := db.cfg.connConfig(password)
	if err != nil {
		return nil, err
	}
	if dbName != "" {
		cc.Database = dbName
	}
	settings := make(map[string]string, len(newerStartupSettings))
	for _, name := range newerStartupSettings {
		settings[name] = "0"
	}
	record := refusedSettings.Install(&cc.Config, settings)
	// ConnectConfig returns only after authentication and the server's
	// ReadyForQuery, so the connection is proven; a ping would only add a
	// round trip to every command. Each round that a server refused a
	// setting in leaves it out of what that server is sent; a few are
	// enough for any list of hosts.
	var conn *pgx.Conn
	for round := 0; ; round++ {
		conn, err = pgx.ConnectConfig(ctx, cc)
		if err == nil || round == 8 || !record(err) {
			break
		}
	}
	if err != nil {
		cerr := connectError(cc, err)
		if ce, ok := cerr.(*connError); ok && endsInNewline(password) && isAuthFailure(err) {
			ce.cause = ErrPasswordEndsInNewline
		}
		return nil, db.redact(cerr)
	}
	if db.version == 0 {
		db.version = pgurl.ServerVersionNum(conn.PgConn())
	}
	return conn, nil
}

// newerStartupSettings are timeouts that every admin session lifts in its
// startup packet, though servers before PostgreSQL 14 do not know them:
// idle_session_timeout, a database default (its owner's to set, like the
// rest), ends a session idle between statements, a pooled one between
// requests or a new one before its first statement arrives; at a
// millisecond no issue or revocation would get through. It must be off
// before the session first waits, which no statement could ensure. A
// server that refuses one as unknown has no such timeout: it is connected
// to again without it, and this process asks it no more (refusedSettings).
var newerStartupSettings = []string{"idle_session_timeout"}

// refusedSettings are the servers that refused a setting of
// newerStartupSettings, by the address dialled: of the hosts a connection
// string lists, a PostgreSQL 13 standby refuses idle_session_timeout and
// a newer primary needs it.
var refusedSettings pgurl.Refusals

// dial connects as dialUnbound does, and sets the session up against its
// database's defaults (unbindSession).
func (db *DB) dial(ctx context.Context, password, dbName string) (*pgx.Conn, error) {
	conn, err := db.dialUnbound(ctx, password, dbName)
	if err != nil {
		return nil, err
	}
	if err := unbindSession(ctx, conn); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, db.redact(err)
	}
	return conn, nil
}

// setUpSession puts pg_catalog first in the session's search_path, and
// keeps the rest as the server set it; its second column tells whether
// the session acts as another role than its login. A database's owner,
// or any member of its owner role (a credential that creation statements
// made one), may give the database a default search_path that lists a
// schema of its own before pg_catalog; every admin session lessor opened
// there would then resolve the operators and catalog views of lessor's
// own SQL to that schema's objects, and run them with the admin's
// privileges. With pg_catalog first they resolve to PostgreSQL's own, as
// under the default search_path, while statements of the operator's still
// find their tables where the database says. The statement names only
// pg_catalog's functions, with no operator (namene is name <>), so it
// cannot be diverted; one statement, as parsing a second on a fresh
// session cost a third of a millisecond more.
const setUpSession = `SELECT pg_catalog.set_config('search_path', pg_catalog.rtrim(pg_catalog.concat('pg_catalog, ', pg_catalog.current_setting('search_path')), ', '), false), pg_catalog.namene(current_user, session_user)`

// liftTimeout is what comes first in a set-up (see unbindSession) on a
// server of the given version (server_version_num): from PostgreSQL 17
// on, the transaction_timeout that a database's defaults may set (its
// owner's to set, like the rest) is lifted. At a millisecond it would end
// every transaction of the admin's, its revocations among them, for ever.
// The startup packet lifts the other timeouts (see Config.connConfig and
// newerStartupSettings),
// but older servers refuse this name there; and it must come first,
// before the timeout can run out: SET is not planned, and ends it at
// once. "" before PostgreSQL 17.
func liftTimeout(version int) string {
	if version >= 170000 {
		return "SET transaction_timeout = 0"
	}
	return ""
}

// actsAsAnother reads setUpSession's answer: whether the session acts as
// another role than its login, which it nearly never does; when it does,
// actingRoleFromDatabase tells why.
func actsAsAnother(res *pgconn.Result) (bool, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) != 2 {
		return false, errors.New("set up the admin session: unexpected answer")
	}
	return string(res.Rows[0][1]) == "t", nil
}

// actingRoleFromDatabase tells whether the session acts as another role
// than its login only because of a setting no one with a say over the
// login made: not one of the login's own (ALTER ROLE … SET role, for
// every database or this one), which leaves the database's default, set
// by its owner, or the connection string's options. On a fresh session
// the catalog lookups make it cost milliseconds, so it is asked only
// when setUpSession says the session acts as another role.
const actingRoleFromDatabase = `SELECT current_user <> session_user AND NOT EXISTS (
  SELECT FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
  WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user)
    AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
    AND c LIKE 'role=%')`

// unbindSession undoes what a database's defaults, which its owner sets,
// could impose on an admin session: a search_path with pg_catalog behind
// the owner's schema (see setUpSession), and a role to act as (SET ROLE
// NONE, unless the connection string asked for one), with which the
// admin could no longer revoke the owner's credentials. Read-only
// transactions are refused in the startup packet (see Config.connConfig).
// A session that begin set up in its own round trip (see unboundBatch)
// comes here only when it acts as another role.
func unbindSession(ctx context.Context, conn *pgx.Conn) error {
	q := setUpSession
	if lift := liftTimeout(pgurl.ServerVersionNum(conn.PgConn())); lift != "" {
		q = lift + "; " + q
	}
	res, err := conn.PgConn().Exec(ctx, q).ReadAll()
	if err != nil {
		return fmt.Errorf("set up the admin session: %w", pgError(err))
	}
	if len(res) == 0 {
		return errors.New("set up the admin session: unexpected answer")
	}
	if other, err := actsAsAnother(res[len(res)-1]); err != nil || !other {
		return err
	}
	return unbindRole(ctx, conn)
}

// unbindRole ends acting as the role a database's default set (see
// unbindSession), on a session whose search_path is set up already.
func unbindRole(ctx context.Context, conn *pgx.Conn) error {
	if roleAsked(conn) {
		return nil
	}
	res, err := conn.PgConn().Exec(ctx, actingRoleFromDatabase).ReadAll()
	if err != nil {
		return fmt.Errorf("set up the admin session: %w", pgError(err))
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return errors.New("set up the admin session: unexpected answer")
	}
	if string(res[0].Rows[0][0]) != "t" {
		return nil
	}
	if err := conn.PgConn().Exec(ctx, "SET ROLE NONE").Close(); err != nil {
		return fmt.Errorf("set up the admin session: %w", pgError(err))
	}
	return nil
}

// roleAsked tells whether the connection string asks for a role to act
// as: that one is the operator's, and stays. It asks with role= (in any
// case, as PostgreSQL reads the startup packet's names), or with role
// among the settings of its options (-c role=…, -crole=…, --role=…), not
// with any word that only contains "role" (-c search_path=roles), which
// would leave the admin acting as the role the database's owner chose.
func roleAsked(conn *pgx.Conn) bool {
	for k, v := range conn.Config().RuntimeParams {
		if strings.EqualFold(k, "role") && v != "" {
			return true
		}
	}
	words := strings.Fields(conn.Config().RuntimeParams["options"])
	for i, w := range words {
		var setting string
		switch {
		case w == "-c" && i+1 < len(words):
			setting = words[i+1]
		case strings.HasPrefix(w, "--"), strings.HasPrefix(w, "-c"):
			setting = w[2:]
		default:
			continue
		}
		if name, _, _ := strings.Cut(setting, "="); strings.EqualFold(name, "role") {
			return true
		}
	}
	return false
}

// unboundBatch puts the set-up of an admin session that Connect left
// unbound (setUpSession) at the head of b, so that it costs no round trip
// of its own: lessor's statements after it in b are parsed once it has
// run. It returns how many results it adds; finishUnbound reads them.
func (db *DB) unboundBatch(b *pgconn.Batch) int {
	if !db.unbound {
		return 0
	}
	n := 1
	if lift := liftTimeout(db.version); lift != "" {
		b.ExecParams(lift, nil, nil, nil, nil)
		n++
	}
	b.ExecParams(setUpSession, nil, nil, nil, nil)
	return n
}

// finishUnbound reads the results unboundBatch added (n of them) at the
// head of res and returns the rest. again says that the session acts as
// another role than its login and than the one conn's string asked for:
// its set-up is not finished, and the caller ends what it began in the
// batch, runs db.admin (which finishes it) and starts over. A role the
// string asked for needs nothing more, and costs no round trip.
// The set-up ran in the transaction the batch began (one Sync ends a
// batch, and BEGIN makes what came before it part of its transaction),
// so the session stays unbound: a rollback undoes the set-up too, and a
// commit keeps what the creation statements made of it (see Creation.end).
func finishUnbound(conn *pgx.Conn, res []*pgconn.Result, n int) (rest []*pgconn.Result, again bool, err error) {
	if n == 0 {
		return res, false, nil
	}
	if len(res) < n {
		return nil, false, errors.New("set up the admin session: unexpected answer")
	}
	other, err := actsAsAnother(res[n-1])
	return res[n:], other && !roleAsked(conn), err
}

// connectError says where the connection went and why it failed, without
// pgx's layers of prefixes.
func connectError(cc *pgx.ConnConfig, err error) error {
	where := net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
	if strings.HasPrefix(cc.Host, "/") {
		where = cc.Host
	}
	var (
		pgErr *pgconn.PgError
		errno syscall.Errno
		dns   *net.DNSError
		nerr  net.Error
	)
	switch {
	case errors.As(err, &pgErr):
		return &connError{where: where, msg: pgErr.Message + " (SQLSTATE " + pgErr.Code + ")", err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return &connError{where: where, msg: fmt.Sprintf("timed out after %s", cc.ConnectTimeout), err: err}
	case errors.As(err, &errno):
		return &connError{where: where, msg: errno.Error(), err: err}
	case errors.As(err, &dns):
		return &connError{where: where, msg: dns.Error(), err: err}
	}
	// Peel pgx's "failed to connect to `user=… database=…`:" and per-dial
	// layers, which repeat what where already says.
	inner := err
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		inner = ce.Unwrap()
		if u := errors.Unwrap(inner); u != nil {
			inner = u
		}
	}
	msg := inner.Error()
	if strings.Contains(cc.RequireAuth, "!password") && pgurl.RefusedClearText(err) {
		msg += " (" + pgurl.ClearTextHint + ")"
	}
	if strings.Contains(cc.RequireAuth, "!none") && strings.Contains(msg, "server did not complete authentication") {
		msg += " (" + NoAuthHint + ")"
	}
	return &connError{where: where, msg: msg, err: err}
}

type connError struct {
	where, msg string
	err        error
	// cause is a likely reason lessor can name (ErrPasswordEndsInNewline),
	// nil when there is none.
	cause error
}

func (e *connError) Error() string { return "connect to " + e.where + ": " + e.msg }
func (e *connError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.err}
	}
	return []error{e.err, e.cause}
}

// ErrPasswordEndsInNewline is in the chain of a connect error when
// PostgreSQL refused the password and the password ends in a newline:
// most likely it came from a file written with echo (password=@file keeps
// the file's bytes as they are), and the newline is not part of the real
// password. The CLI turns it into a hint; the password is never shown.
var ErrPasswordEndsInNewline = errors.New("the configured password ends in a newline")

func endsInNewline(password string) bool {
	return strings.HasSuffix(password, "\n") || strings.HasSuffix(password, "\r")
}

// isAuthFailure: PostgreSQL refused the password (28P01), or the
// authentication as a whole (28000, as pg_hba's reject or a failed
// SCRAM exchange reports).
func isAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

// Close closes the admin connection (or gives it back to its Pool); the DB
// cannot be used afterwards.
func (db *DB) Close(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.closed = true
	if db.conn == nil {
		return nil
	}
	if db.pool != nil {
		db.pool.put(db.set, db.conn, db.version, db.cfg.statementTimeout())
		db.conn = nil
		return nil
	}
	err := db.conn.Close(ctx)
	db.conn = nil
	return db.redact(err)
}

// admin returns the live admin connection, reconnecting when a timeout or a
// network error closed the previous one. Call with db.mu held.
func (db *DB) admin(ctx context.Context) (*pgx.Conn, error) {
	if db.conn != nil && !db.conn.IsClosed() {
		if db.unbound {
			if err := unbindSession(ctx, db.conn); err != nil {
				return nil, db.redact(err)
			}
			db.unbound = false
		}
		return db.conn, nil
	}
	if db.closed {
		return nil, errors.New("database connection is closed")
	}
	conn, err := db.dial(ctx, db.cfg.Password, "")
	if err != nil {
		return nil, err
	}
	db.conn, db.unbound = conn, false
	return conn, nil
}

// roundTrip bounds one call to the server on the client side: a little over
// the server's statement_timeout, so that the server's clearer error wins
// when the server is alive.
func (db *DB) roundTrip(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.cfg.statementTimeout()+2*time.Second)
}

// redact replaces every password this DB knows with [password].
func (db *DB) redact(err error) error {
	return Redact(err, db.secrets...)
}

// IsTransient reports whether err is a failure that the same work may not
// meet when retried at once: a serialization failure, a deadlock, or
// concurrent catalog updates.
func IsTransient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	case "XX000":
		return strings.Contains(pgErr.Message, "tuple concurrently updated")
	}
	return false
}

// sqlState returns the SQLSTATE of err, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// pgError formats a PostgreSQL error with its DETAIL and HINT, which say
// which objects block a DROP ROLE; pgx's own message leaves them out.
func pgError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	msg := pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	if pgErr.Detail != "" {
		msg += ": " + strings.ReplaceAll(pgErr.Detail, "\n", "; ")
	}
	if pgErr.Hint != "" {
		msg += " (hint: " + pgErr.Hint + ")"
	}
	return &detailedError{msg: msg, err: err}
}

type detailedError struct {
	msg string
	err error
}

func (e *detailedError) Error() string { return e.msg }
func (e *detailedError) Unwrap() error { return e.err }
