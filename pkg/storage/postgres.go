package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgpassfile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/pgurl"
)

// PostgresSchemaVersion is the layout of the tables this package writes and
// the only one it opens. A store at another version is refused; moving it
// to this one is UpgradePostgres, which only an operator command calls.
const PostgresSchemaVersion = 1

// DefaultPostgresSchema is the schema a store URL without ?schema= uses.
const DefaultPostgresSchema = "lessor"

// Errors of the PostgreSQL backend besides ErrNoStore, ErrStoreExists and
// ErrBusy, which it shares with the file backend.
var (
	// ErrUnavailable: the server could not be reached, or the connection
	// broke in the middle of a transaction. Nothing of that transaction was
	// applied, except that a break during COMMIT leaves it unknown whether
	// the whole transaction was.
	ErrUnavailable = errors.New("store is unavailable")
	// ErrSchemaVersion: the store's schema is at another version than this
	// lessor's.
	ErrSchemaVersion = errors.New("store schema version differs")
)

// IsPostgresURL reports whether s names a PostgreSQL store: a postgres://
// or postgresql:// URL, or a libpq keyword/value connection string
// (IsPostgresKeywords).
func IsPostgresURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") || IsPostgresKeywords(s)
}

// libpqKeywords are the connection parameters a keyword/value string may
// start with to be taken for one: every keyword libpq knows in PostgreSQL
// 13 to 18, and lessor's schema. A string that starts with one of them and
// "=" is never a file path (a file named after it would carry its
// password, and messages name file paths unredacted).
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true,
	"password": true, "passfile": true, "require_auth": true, "channel_binding": true,
	"connect_timeout": true, "client_encoding": true, "options": true,
	"application_name": true, "fallback_application_name": true,
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true,
	"keepalives_count": true, "tcp_user_timeout": true, "replication": true,
	"gssencmode": true, "sslmode": true, "sslnegotiation": true, "requiressl": true,
	"sslcompression": true, "sslcert": true, "sslkey": true, "sslkeylogfile": true,
	"sslpassword": true, "sslcertmode": true, "sslrootcert": true, "sslcrl": true,
	"sslcrldir": true, "sslsni": true, "requirepeer": true,
	"ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"min_protocol_version": true, "max_protocol_version": true,
	"krbsrvname": true, "gsslib": true, "gssdelegation": true, "service": true,
	"target_session_attrs": true, "load_balance_hosts": true,
	"oauth_issuer": true, "oauth_client_id": true, "oauth_client_secret": true,
	"oauth_scope": true, "schema": true,
}

// IsPostgresKeywords reports whether s is a libpq keyword/value connection
// string ("host=db1,db2 dbname=ops user=lessor schema=lessor"): it starts
// with one of libpq's connection keywords (or lessor's schema) and "=".
// Such a value is never a file path; write ./host=x for a file of that
// name.
func IsPostgresKeywords(s string) bool {
	s = strings.TrimLeft(s, " \t\n")
	i := strings.IndexAny(s, "= \t\n")
	if i <= 0 {
		return false
	}
	rest := strings.TrimLeft(s[i:], " \t\n")
	return libpqKeywords[s[:i]] && strings.HasPrefix(rest, "=")
}

// LooksLikeURL reports whether s has the form scheme://…, which is never
// taken for a file path: a mistyped or unsupported store URL must not
// become a file named after it (its password included).
func LooksLikeURL(s string) bool {
	// Leading blanks (a value pasted with a space) do not make a URL a
	// path, nor does a PostgreSQL scheme without its "//".
	s = strings.TrimLeft(s, " \t\n")
	if l := strings.ToLower(s); strings.HasPrefix(l, "postgres:") || strings.HasPrefix(l, "postgresql:") {
		return true
	}
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j, r := range s[:i] {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || j > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')
		if !ok {
			return false
		}
	}
	return true
}

// RedactURL returns a store URL fit for messages: the password, in the
// user part or in a password= (or sslpassword=) parameter, is replaced by
// xxxxx. A value that does not parse is reduced to its scheme; a query
// parameter whose name does not decode, or that holds a ';', keeps only
// its name; a fragment is dropped. A keyword/value string comes back in
// that form, its passwords replaced.
func RedactURL(raw string) string {
	if IsPostgresKeywords(raw) && !LooksLikeURL(raw) {
		kvs, err := parseKeywords(raw)
		if err != nil {
			return "(unparsable connection string)"
		}
		for i := range kvs {
			if secretParam(kvs[i].k) {
				kvs[i].v = "xxxxx"
			}
		}
		return formatKeywords(kvs)
	}
	if pgurl.MisplacedAt(raw) != "" {
		// A password with an unencoded '/', '?', '#' or '@': a URL parser
		// shows part of it as a host or a path. Everything up to the last
		// '@' is hidden, the host and the rest are shown.
		t := strings.TrimLeft(raw, " \t\n")
		scheme, rest, _ := strings.Cut(t, "://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			raw = scheme + "://xxxxx" + rest[at:]
		}
	}
	u, err := url.Parse(raw)
	// "postgres:/u:pw@h/db" parses, but with no "//" it has no user part
	// to hide the password in: the parser takes it all for a path.
	if err != nil || u.Opaque != "" || u.OmitHost {
		if LooksLikeURL(raw) {
			// Its scheme: what precedes the first ':' (see LooksLikeURL).
			t := strings.TrimLeft(raw, " \t\n")
			return t[:strings.IndexByte(t, ':')] + "://(unparsable URL)"
		}
		if err == nil {
			return u.Scheme + ":(unparsable URL)"
		}
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	u.RawQuery = redactQuery(u.RawQuery)
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// HoldsPassword reports whether a store URL or keyword/value string
// carries a password of its own (in the user part, or a password= or
// sslpassword= parameter), or is malformed in a way that may hide one.
func HoldsPassword(raw string) bool {
	if IsPostgresKeywords(raw) && !LooksLikeURL(raw) {
		kvs, err := parseKeywords(raw)
		if err != nil {
			return true
		}
		for _, kv := range kvs {
			if secretParam(kv.k) && kv.v != "" {
				return true
			}
		}
		return false
	}
	if pgurl.MisplacedAt(raw) != "" {
		return true
	}
	// The driver, as libpq, reads a '#' as one more character, not as
	// the start of a fragment that url.Parse would set aside unread.
	u, err := url.Parse(strings.ReplaceAll(strings.TrimLeft(raw, " \t\n"), "#", "%23"))
	if err != nil {
		return true
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	for seg := range strings.SplitSeq(u.RawQuery, "&") {
		k, v, _ := strings.Cut(seg, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || secretParam(name) && v != "" {
			return true
		}
	}
	return false
}

// redactQuery replaces the value of every parameter of a raw query that
// could hold a secret: one named like a password, one whose name does not
// decode (what it means is unknown), and one holding a ';' (a separator
// some parsers honour and others do not). It works on the raw text, so
// that a malformed escape cannot make a value slip through unparsed.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	segs := strings.Split(raw, "&")
	kept := segs[:0]
	for _, seg := range segs {
		if seg == "" {
			continue
		}
		k, v, hasValue := strings.Cut(seg, "=")
		name, err := url.QueryUnescape(k)
		switch {
		case err != nil || strings.Contains(k, ";"):
			seg = "xxxxx"
		case hasValue && (secretParam(name) || strings.Contains(v, ";")):
			seg = k + "=xxxxx"
		}
		kept = append(kept, seg)
	}
	return strings.Join(kept, "&")
}

// secretParam reports whether a connection parameter can hold a secret:
// password, sslpassword (the client key's passphrase), libpq 18's
// oauth_client_secret (which pgx would send on to the server as a
// setting), in any case.
func secretParam(name string) bool {
	l := strings.ToLower(name)
	return strings.Contains(l, "password") || strings.Contains(l, "secret")
}

// PostgresOptions tunes a Postgres store.
type PostgresOptions struct {
	// LockTimeout bounds the wait for another writer; zero means
	// DefaultLockTimeout. Past it a transaction fails with ErrBusy.
	LockTimeout time.Duration
	// Now is the host's clock that ServerTime is measured against
	// (time.Now).
	Now func() time.Time
}

// Postgres is a Store kept in one schema of a PostgreSQL database:
//
//	<schema>.meta  one row: schema_version, created
//	<schema>.kv    key bytea primary key, value bytea
//
// Keys are bytea so that their order is byte order whatever the
// database's collation. Values arrive sealed by pkg/barrier: the server
// sees key names and ciphertext, as a copy of a store file would show.
//
// Isolation. Every Update is one PostgreSQL transaction at READ COMMITTED
// that first locks the meta row (SELECT … FOR UPDATE), so writers run one
// at a time, as they do on the file store under its exclusive flock. With
// no other writer running, every statement of the transaction sees the same
// data plus its own writes, so the transaction behaves as if it ran alone:
// no lost update, no torn read. SERIALIZABLE would give the same result by
// aborting one of two overlapping writers instead of making it wait; since
// every write of a lessor store also rewrites the barrier's state record,
// any two writers overlap, and aborting and re-running them would only
// waste their work. Every View is one REPEATABLE READ READ ONLY
// transaction: one snapshot for all its reads, never blocked by writers
// and never blocking them. A transaction PostgreSQL aborts anyway with a
// serialization failure (40001) or a deadlock (40P01), which a lessor
// transaction can only meet against someone else's locks, is run again,
// fn included, after a short random backoff; fn must not keep state
// between runs.
//
// A broken connection ends the transaction with an error wrapping
// ErrUnavailable; PostgreSQL rolls back what the transaction wrote. Errors
// name the store by its URL with the password replaced by xxxxx.
//
// Connections are opened on first use and kept for the next transaction
// (only between transactions, never holding a lock); Close closes them.
type Postgres struct {
	cfg    *pgx.ConnConfig
	schema string
	name   string // the URL, redacted
	opts   PostgresOptions

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
	// serverAt is the server's clock when the host's read hostAt, as
	// SchemaVersion or MeasureClock last measured them.
	serverAt, hostAt time.Time
}

// maxIdle is how many connections a Postgres keeps open between
// transactions.
const maxIdle = 4

// ParsePostgresURL checks a store URL and returns the connection config and
// the schema it names. The schema comes from the query parameter schema
// (lessor's own: it is taken out before the rest goes to the driver),
// default DefaultPostgresSchema. Everything else is libpq's: several
// hosts (host1:5432,host2:5432) with target_session_attrs=read-write,
// sslmode, connect_timeout, and the password from the URL, a passfile=
// parameter, PGPASSFILE or ~/.pgpass ($HOME's).
//
// A keyword/value string (IsPostgresKeywords) works the same way, with the
// schema as one more keyword: "host=a,b dbname=ops schema=team".
func ParsePostgresURL(raw string) (*pgx.ConnConfig, string, error) {
	name := RedactURL(raw)
	if !IsPostgresURL(raw) {
		return nil, "", fmt.Errorf("store %s: not a postgres:// or postgresql:// URL", name)
	}
	if IsPostgresKeywords(raw) {
		return parsePostgresKeywords(raw, name)
	}
	if reason := pgurl.MisplacedAt(raw); reason != "" {
		return nil, "", fmt.Errorf("store %s: not a valid URL: %s", name, reason)
	}
	// The driver reads a URL as libpq does, where a '#' is one more
	// character of the value it is in, not the start of a fragment: in
	// "?x=#&password=…&host=…" it would take a password and a host that
	// the URL parser here, -store's check and every message leave out.
	if strings.Contains(raw, "#") {
		return nil, "", fmt.Errorf("store %s: not a valid URL: write a '#' as %%23 (PostgreSQL reads on through it, where URL parsers see a fragment)", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("store %s: not a valid URL", name)
	}
	q, driverQuery, err := splitQuery(u.RawQuery)
	if err != nil {
		return nil, "", fmt.Errorf("store %s: not a valid URL query", name)
	}
	schema := DefaultPostgresSchema
	if vs, ok := q["schema"]; ok {
		if len(vs) != 1 || vs[0] == "" {
			return nil, "", fmt.Errorf("store %s: schema= must name one schema", name)
		}
		schema = vs[0]
	}
	if !validSchemaName(schema) {
		return nil, "", fmt.Errorf("store %s: schema %q: use lower-case letters, digits and _ (at most 63), starting with a letter or _", name, schema)
	}
	if _, ok := q["application_name"]; !ok {
		driverQuery = append(driverQuery, "application_name=lessor")
	}
	if _, ok := q["connect_timeout"]; !ok {
		driverQuery = append(driverQuery, "connect_timeout=10")
	}
	u.RawQuery = strings.Join(driverQuery, "&")
	tsa, tsaSet := lastValue(q, "target_session_attrs")
	passfile, _ := lastValue(q, "passfile")
	return parseDriverConfig(u.String(), schema, name, passfile, tsa, tsaSet)
}

// splitQuery reads a URL's query as the driver (and libpq) does: '&'
// between parameters, blanks around names and values skipped, and only
// %XX escapes decoded, so a '+' is a '+', not the space of an HTML form.
// It returns the values, and the parameters but schema (lessor's own)
// exactly as written, for the driver: encoding them again would turn the
// space of "options=-c%20x%3Dy" into a '+'.
func splitQuery(raw string) (url.Values, []string, error) {
	// A ';', which some parsers take for '&', stays refused, as Go's
	// query parser refuses it.
	if strings.Contains(raw, ";") {
		return nil, nil, errors.New("a ';' in the query")
	}
	q := url.Values{}
	var driver []string
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		// The driver, as libpq, skips blanks around a name and a value:
		// "target_session_attrs=any " is any to it, and must be to the
		// checks too.
		k, v, _ := strings.Cut(p, "=")
		key, err := url.PathUnescape(strings.Trim(k, " "))
		if err != nil {
			return nil, nil, err
		}
		value, err := url.PathUnescape(strings.Trim(v, " "))
		if err != nil {
			return nil, nil, err
		}
		q[key] = append(q[key], value)
		if key != "schema" {
			driver = append(driver, p)
		}
	}
	return q, driver, nil
}

// lastValue is the value of the query parameter key that the driver
// uses: like libpq, it takes the last of several, where q.Get takes the
// first ("target_session_attrs=read-write&target_session_attrs=any" is
// any to it).
func lastValue(q url.Values, key string) (string, bool) {
	vs := q[key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func parsePostgresKeywords(raw, name string) (*pgx.ConnConfig, string, error) {
	kvs, err := parseKeywords(raw)
	if err != nil {
		return nil, "", fmt.Errorf("store %s: not a valid connection string: %v", name, err)
	}
	schema := DefaultPostgresSchema
	var rest []keyValue
	seen := map[string]bool{}
	passfile, tsa := "", ""
	for _, kv := range kvs {
		seen[kv.k] = true
		switch kv.k {
		case "passfile":
			passfile = kv.v
		case "target_session_attrs":
			tsa = kv.v
		}
		if kv.k == "schema" {
			schema = kv.v
			continue
		}
		rest = append(rest, kv)
	}
	if !validSchemaName(schema) {
		return nil, "", fmt.Errorf("store %s: schema %q: use lower-case letters, digits and _ (at most 63), starting with a letter or _", name, schema)
	}
	if !seen["application_name"] {
		rest = append(rest, keyValue{"application_name", "lessor"})
	}
	if !seen["connect_timeout"] {
		rest = append(rest, keyValue{"connect_timeout", "10"})
	}
	return parseDriverConfig(formatKeywords(rest), schema, name, passfile, tsa, seen["target_session_attrs"])
}

// parseDriverConfig hands conn to the driver. tsa is the
// target_session_attrs conn sets, if set.
func parseDriverConfig(conn, schema, name, passfile, tsa string, tsaSet bool) (*pgx.ConnConfig, string, error) {
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		// pgx's message quotes the connection string (redacted, best
		// effort); say only what was wrong.
		what := "URL"
		if IsPostgresKeywords(conn) {
			what = "connection string"
		}
		if svc := os.Getenv("PGSERVICE"); svc != "" {
			// The driver reads libpq's environment too.
			return nil, "", fmt.Errorf("store %s: not a valid PostgreSQL %s, or PGSERVICE=%s in lessor's environment names a service no service file holds", name, what, svc)
		}
		return nil, "", fmt.Errorf("store %s: not a valid PostgreSQL %s", name, what)
	}
	if !tsaSet {
		tsa, tsaSet = os.LookupEnv("PGTARGETSESSIONATTRS")
	}
	if err := chooseSessionAttrs(cfg, name, tsa, tsaSet); err != nil {
		return nil, "", err
	}
	if cfg.Password == "" {
		cfg.Password = passfilePassword(cfg, passfile)
	}
	sessionDefaults(cfg)
	// The driver sets aside as much as a message's header announces (up
	// to 1 GiB) before it reads it; whoever runs the state database need
	// not have lessor hold that. The store's rows are far smaller.
	cfg.MaxProtocolMessageBodyLen = maxStoreMessageLen
	// No clear-text password to a server nobody verified: it would hold
	// the store's login, which may rewrite or delete the store.
	pgurl.NoClearText(cfg)
	// One round trip per statement and no named prepared statements, which
	// poolers in transaction mode do not keep.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return cfg, schema, nil
}

// sessionDefaults sets, in the startup packet, where they outrank the
// defaults ALTER DATABASE … SET gives (its owner's to set, who need have
// no access to the store), what the store's SQL depends on: results come
// as text, and a bytea_output of escape makes every value unreadable to
// the driver; a statement_timeout, idle_in_transaction_session_timeout
// or idle_session_timeout of a millisecond ends the store's statements,
// transactions and kept connections. Any would take the store away from
// every host. A timeout the connection string sets stays.
func sessionDefaults(cfg *pgx.ConnConfig) {
	cfg.RuntimeParams["bytea_output"] = "hex"
	for _, k := range append([]string{"statement_timeout", "idle_in_transaction_session_timeout"}, newerStartupSettings...) {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = "0"
		}
	}
	// One the connection string sets, as a parameter or in options=-c,
	// stays.
	if _, ok := cfg.RuntimeParams["transaction_timeout"]; !ok && !strings.Contains(cfg.RuntimeParams["options"], "transaction_timeout") {
		cfg.AfterConnect = liftTransactionTimeout
	}
}

// liftTransactionTimeout lifts, on PostgreSQL 17 and later, the
// transaction_timeout a database default may set (a DBA's limit for the
// apps there), which ends every store transaction that takes longer.
// Older servers refuse the name in the startup packet, so it costs a
// round trip, on those servers only, once per connection. A default of a
// few milliseconds may still end a connection before this runs: the
// server arms the timeout in the transaction that starts the session, so
// only the startup packet could keep it off there.
func liftTransactionTimeout(ctx context.Context, c *pgconn.PgConn) error {
	if pgurl.ServerVersionNum(c) < 170000 {
		return nil
	}
	_, err := c.Exec(ctx, "SET transaction_timeout = 0").ReadAll()
	return err
}

// newerStartupSettings are settings that sessionDefaults lifts in the
// startup packet though the oldest servers lessor supports do not know
// them: idle_session_timeout (PostgreSQL 14) ends a session idle between
// transactions, as every kept connection is, and must be off before the
// session first waits, which no statement sent after the start could
// ensure. A server that refuses one as unknown has no such timeout, and
// is connected to again without it (see Postgres.connect).
var newerStartupSettings = []string{"idle_session_timeout"}

// maxStoreMessageLen bounds a message from the state database (see
// OpenPostgres): a row of the store holds one record.
const maxStoreMessageLen = 64 << 20

// chooseSessionAttrs makes a store connect only to a primary, the server
// that takes writes. Without target_session_attrs the driver takes the first that
// answers (libpq's any): of several hosts, or of the addresses one name
// resolves to; that may be a hot standby, as may a single host (a
// replica's address, a virtual IP not yet moved), whose replay can lag
// behind the primary's commits (even a synchronous one:
// synchronous_commit=on waits for the standby's disk, not its replay).
// Every command would read the store there: tokens and leases revoked on
// the primary still there, to a host that has no newer generation to
// compare with. Its writes fail on a standby anyway. So a store without
// the setting gets primary (see validatePrimary), and a setting that
// picks a standby, or any server of several, is refused rather than
// followed. read-write, which the README's failover URL sets, gets
// primary too: the driver's read-write asks for transaction_read_only,
// which a database default (its owner's to set) turns on at every
// primary, and the store's writes say READ WRITE themselves.
func chooseSessionAttrs(cfg *pgx.ConnConfig, name, tsa string, set bool) error {
	switch tsa {
	case "read-only", "standby", "prefer-standby":
		return fmt.Errorf("store %s: target_session_attrs=%s reads the store from a standby, which may lag behind the primary; lessor needs read-write", name, tsa)
	}
	if !set || tsa == "" || tsa == "read-write" {
		cfg.ValidateConnect = validatePrimary
		return nil
	}
	if tsa != "any" {
		return nil
	}
	hosts := map[string]bool{net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))): true}
	for _, fb := range cfg.Fallbacks {
		hosts[net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port)))] = true
	}
	if len(hosts) > 1 {
		return fmt.Errorf("store %s: target_session_attrs=any with several hosts may read the store from a standby, which may lag behind the primary; use read-write", name)
	}
	return nil
}

// validatePrimary is target_session_attrs=primary without its round trip
// where the server allows: PostgreSQL 14 and later report at the start of
// a session whether they are a standby, as libpq uses it. Older servers
// are asked. It is not read-write, which also refuses a primary whose
// database defaults to read-only transactions (its owner's to set): the
// store's writes say READ WRITE themselves.
func validatePrimary(ctx context.Context, c *pgconn.PgConn) error {
	switch c.ParameterStatus("in_hot_standby") {
	case "on":
		return pgconn.ErrStandbyConnection
	case "off":
		return nil
	}
	return pgconn.ValidateConnectTargetSessionAttrsPrimary(ctx, c)
}

// passfilePassword finds the password for cfg's hosts in the passfile
// (passfile=, else PGPASSFILE, else ~/.pgpass). pgx looks up only the
// first host, and uses that password for every host; libpq looks up each.
// With the first host down (the failover case) a passfile that lists only
// the other would give no password, so the first host that has a line
// gives it. The hosts of one store are one replicated cluster, with one
// password per role.
func passfilePassword(cfg *pgx.ConnConfig, passfile string) string {
	if passfile == "" {
		passfile = os.Getenv("PGPASSFILE")
	}
	if passfile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		passfile = filepath.Join(home, ".pgpass")
	}
	pf, err := pgpassfile.ReadPassfile(passfile)
	if err != nil {
		return ""
	}
	hosts := []struct {
		host string
		port uint16
	}{{cfg.Host, cfg.Port}}
	for _, fb := range cfg.Fallbacks {
		hosts = append(hosts, struct {
			host string
			port uint16
		}{fb.Host, fb.Port})
	}
	for _, h := range hosts {
		host := h.host
		if strings.HasPrefix(host, "/") {
			host = "localhost"
		}
		if pw := pf.FindPassword(host, strconv.Itoa(int(h.port)), cfg.Database, cfg.User); pw != "" {
			return pw
		}
	}
	return ""
}

// ConnParam is the value a PostgreSQL connection string (a URL, or a
// keyword/value string) gives the parameter key, as the driver reads it
// (the last of several wins), or "" when it gives none or does not parse.
func ConnParam(dsn, key string) string {
	vs, err := connParams(dsn, key)
	if err != nil || len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// ConnParamSet reports whether a PostgreSQL connection string names the
// parameter key at all, with any value, or does not parse (what it names
// is then unknown): ConnParam's "" cannot tell an empty value, or an
// earlier one a later empty one follows, from none.
func ConnParamSet(dsn, key string) bool {
	vs, err := connParams(dsn, key)
	return err != nil || len(vs) > 0
}

// connParams are the values a connection string gives key, in order.
func connParams(dsn, key string) ([]string, error) {
	if LooksLikeURL(dsn) {
		_, raw, ok := strings.Cut(dsn, "?")
		if !ok {
			return nil, nil
		}
		q, _, err := splitQuery(raw)
		return q[key], err
	}
	kvs, err := parseKeywords(dsn)
	var vs []string
	for _, kv := range kvs {
		if kv.k == key {
			vs = append(vs, kv.v)
		}
	}
	return vs, err
}

type keyValue struct{ k, v string }

// parseKeywords splits a libpq keyword/value string: keyword = value,
// separated by spaces, a value either bare (backslash escapes the next
// character) or in single quotes (with \' and \\).
func parseKeywords(s string) ([]keyValue, error) {
	var out []keyValue
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	for {
		for i < len(s) && space(s[i]) {
			i++
		}
		if i == len(s) {
			return out, nil
		}
		j := i
		for j < len(s) && s[j] != '=' && !space(s[j]) {
			j++
		}
		key := s[i:j]
		for j < len(s) && space(s[j]) {
			j++
		}
		if key == "" || j == len(s) || s[j] != '=' {
			return nil, fmt.Errorf("missing \"=\" after %s (a value with a space is written in single quotes)", keywordName(key))
		}
		j++
		for j < len(s) && space(s[j]) {
			j++
		}
		var v strings.Builder
		if j < len(s) && s[j] == '\'' {
			j++
			for ; ; j++ {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated quoted value of %s", keywordName(key))
				}
				if s[j] == '\\' && j+1 < len(s) {
					j++
				} else if s[j] == '\'' {
					j++
					break
				}
				v.WriteByte(s[j])
			}
		} else {
			for ; j < len(s) && !space(s[j]); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				v.WriteByte(s[j])
			}
		}
		out = append(out, keyValue{key, v.String()})
		i = j
	}
}

// keywordName names key in a parse error: quoted if it is a keyword libpq
// knows, and otherwise not at all, as it is then likely the rest of an
// unquoted value with a space in it ("password=two words"), which may be a
// password.
func keywordName(key string) string {
	if libpqKeywords[key] {
		return strconv.Quote(key)
	}
	return "a word that is no connection keyword"
}

// formatKeywords writes keyword/value pairs back, every value quoted.
func formatKeywords(kvs []keyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		v := strings.ReplaceAll(kv.v, `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `\'`)
		parts[i] = kv.k + "='" + v + "'"
	}
	return strings.Join(parts, " ")
}

func validSchemaName(s string) bool {
	if s == "" || len(s) > 63 || strings.HasPrefix(s, "pg_") {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func newPostgres(raw string, opts PostgresOptions) (*Postgres, error) {
	cfg, schema, err := ParsePostgresURL(raw)
	if err != nil {
		return nil, err
	}
	return &Postgres{cfg: cfg, schema: schema, name: RedactURL(raw), opts: opts}, nil
}

// OpenPostgres connects to the store at the URL raw and checks that its
// schema exists and is at PostgresSchemaVersion.
func OpenPostgres(ctx context.Context, raw string, opts PostgresOptions) (*Postgres, error) {
	p, err := newPostgres(raw, opts)
	if err != nil {
		return nil, err
	}
	if _, err := p.SchemaVersion(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// CreatePostgres creates the store's tables in the schema the URL names:
// it creates the schema, or uses an empty one (a database administrator
// may create it for a role that may not create schemas). It refuses a
// schema that holds any table, a store or not, with ErrStoreExists.
func CreatePostgres(ctx context.Context, raw string, opts PostgresOptions) (*Postgres, error) {
	p, err := newPostgres(raw, opts)
	if err != nil {
		return nil, err
	}
	err = p.withConn(ctx, func(c *pgx.Conn) error {
		tx, err := c.BeginTx(ctx, pinnedTx(""))
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		var exists bool
		var tables int
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1),
			(SELECT pg_catalog.count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)`,
			p.schema).Scan(&exists, &tables)
		if err != nil {
			return err
		}
		if tables > 0 {
			return &pathError{msg: fmt.Sprintf("store %s already exists (schema %s is not empty)", p.name, p.schema), kind: ErrStoreExists}
		}
		s := p.ident()
		stmts := []string{
			`CREATE TABLE ` + s + `.meta (
				id int PRIMARY KEY CHECK (id = 1),
				schema_version int NOT NULL,
				created timestamptz NOT NULL DEFAULT now())`,
			`INSERT INTO ` + s + `.meta (id, schema_version) VALUES (1, ` + fmt.Sprint(PostgresSchemaVersion) + `)`,
			`CREATE TABLE ` + s + `.kv (key bytea PRIMARY KEY, value bytea NOT NULL)`,
			`COMMENT ON SCHEMA ` + s + ` IS 'lessor store: values are sealed by lessor; do not edit'`,
		}
		if !exists {
			stmts = append([]string{`CREATE SCHEMA ` + s}, stmts...)
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && (pe.Code == "42P06" || pe.Code == "42P07" || pe.Code == "23505") {
					// Another init got there first.
					return &pathError{msg: fmt.Sprintf("store %s already exists", p.name), kind: ErrStoreExists}
				}
				return err
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		p.Close()
		return nil, p.wrap("create", err)
	}
	return p, nil
}

// SchemaVersion reads the store's schema version. It fails with ErrNoStore
// when there is no store in the schema, and with ErrSchemaVersion when the
// version is not PostgresSchemaVersion (returning it as well).
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		// One round trip: the version, and the server's clock, which
		// rides on a query the open makes anyway. Outside a transaction,
		// so without pinnedTx's search_path: the operator is named with
		// its schema.
		err := p.timeQuery(func(server *int64) error {
			return c.QueryRow(ctx, `SELECT schema_version, `+serverClock+` FROM `+p.ident()+`.meta WHERE id OPERATOR(pg_catalog.=) 1`).Scan(&v, server)
		})
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000"):
			// No such table, or no such schema.
			return &pathError{msg: fmt.Sprintf("no store at %s (schema %s has no lessor tables)", p.name, p.schema), kind: ErrNoStore}
		case errors.Is(err, pgx.ErrNoRows):
			return p.metaMissing()
		}
		return err
	})
	if err != nil {
		return 0, p.wrap("open", err)
	}
	return v, p.checkVersion(v)
}

// serverClock reads the server's clock as microseconds since 1970. Not as
// a timestamptz: results come as text, which the session's DateStyle
// formats, and the database's owner (or the store's role) may set one
// ("07/12/2026 18:34:35 UTC") that no parser reads back, and no host could
// open the store. Nor as a float8, whose text extra_float_digits may cut
// to a few digits: int8's text is its value, whatever the settings.
const serverClock = `pg_catalog.int8(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000000)`

// timeQuery runs query, which reads serverClock into *server, between two
// readings of the host's, and keeps the pair: the server read its clock
// somewhere between them, taken to be half way.
func (p *Postgres) timeQuery(query func(server *int64) error) error {
	hostNow := p.opts.Now
	if hostNow == nil {
		hostNow = time.Now
	}
	var server int64
	before := hostNow()
	if err := query(&server); err != nil {
		return err
	}
	after := hostNow()
	p.mu.Lock()
	p.serverAt, p.hostAt = time.UnixMicro(server), before.Add(after.Sub(before)/2)
	p.mu.Unlock()
	return nil
}

// MeasureClock reads the server's clock again (see ServerTime): a process
// that runs for weeks calls it now and then, so that its host's clock,
// which only measures the time passed since, need not keep pace with the
// server's meanwhile. On failure the last measure stays.
func (p *Postgres) MeasureClock(ctx context.Context) error {
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		return p.timeQuery(func(server *int64) error {
			return c.QueryRow(ctx, `SELECT `+serverClock).Scan(server)
		})
	})
	return p.wrap("read the clock of", err)
}

// ServerTime returns the database server's clock and the host's at the
// same moment, as the open (or MeasureClock) last measured them; zero
// before. Lessor's hosts share the store and judge the same records'
// expiry, claims and holds: on the server's clock they agree, whatever
// each host's own says.
func (p *Postgres) ServerTime() (server, host time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serverAt, p.hostAt
}

// metaMissing is the error for a store whose meta row is gone: someone
// deleted it, as lessor never does.
func (p *Postgres) metaMissing() error {
	return &pathError{msg: fmt.Sprintf("store %s is damaged: its meta row is missing", p.name), kind: ErrCorrupt}
}

func (p *Postgres) checkVersion(v int) error {
	switch {
	case v == PostgresSchemaVersion:
		return nil
	case v > PostgresSchemaVersion:
		return &pathError{msg: fmt.Sprintf("store %s has schema version %d, newer than this lessor's %d: upgrade lessor", p.name, v, PostgresSchemaVersion), kind: ErrSchemaVersion}
	default:
		return &pathError{msg: fmt.Sprintf("store %s has schema version %d, older than this lessor's %d: run `lessor operator upgrade-schema`", p.name, v, PostgresSchemaVersion), kind: ErrSchemaVersion}
	}
}

// postgresUpgrades[v] moves a schema from version v to v+1; there are none
// yet.
var postgresUpgrades = map[int][]string{}

// UpgradePostgres brings the schema of the store at raw to
// PostgresSchemaVersion, in one transaction that holds the writers' lock.
// It returns the version found. A newer schema is refused.
func UpgradePostgres(ctx context.Context, raw string, opts PostgresOptions) (from int, err error) {
	p, err := newPostgres(raw, opts)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	err = p.withConn(ctx, func(c *pgx.Conn) error {
		tx, err := c.BeginTx(ctx, pinnedTx(""))
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		var found bool
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, p.schema+".meta").Scan(&found); err != nil {
			return err
		}
		if !found {
			return &pathError{msg: fmt.Sprintf("no store at %s", p.name), kind: ErrNoStore}
		}
		if err := tx.QueryRow(ctx, `SELECT schema_version FROM `+p.ident()+`.meta WHERE id = 1 FOR UPDATE`).Scan(&from); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return p.metaMissing()
			}
			return err
		}
		if from > PostgresSchemaVersion {
			return p.checkVersion(from)
		}
		for v := from; v < PostgresSchemaVersion; v++ {
			stmts, ok := postgresUpgrades[v]
			if !ok {
				return fmt.Errorf("store %s: no upgrade from schema version %d", p.name, v)
			}
			for _, q := range stmts {
				if _, err := tx.Exec(ctx, strings.ReplaceAll(q, "{schema}", p.ident())); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE `+p.ident()+`.meta SET schema_version = $1 WHERE id = 1`, PostgresSchemaVersion); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	return from, p.wrap("upgrade", err)
}

// Drop removes the store's tables (not the schema, which may have been
// there before): operator init's undo when it fails half way.
func (p *Postgres) Drop(ctx context.Context) error {
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DROP TABLE IF EXISTS `+p.ident()+`.kv, `+p.ident()+`.meta`)
		return err
	})
	return p.wrap("drop", err)
}

// Name returns the store's URL with its password redacted.
func (p *Postgres) Name() string { return p.name }

// Schema returns the store's schema.
func (p *Postgres) Schema() string { return p.schema }

// Close closes the connections kept between transactions.
func (p *Postgres) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.Close(ctx)
		cancel()
	}
}

// pinnedTx returns the options of a transaction begun with "BEGIN mode"
// that first sets its search_path to pg_catalog, pg_temp, in the same round
// trip. Every name the store's SQL leaves unqualified (operators, now(),
// pg_class) then resolves in pg_catalog, whatever search_path the database
// or the role was given (ALTER DATABASE … SET search_path is open to the
// database's owner, who need not have any access to the store's schema):
// an operator planted in public or "$user" would otherwise run in the
// store's session, as its role, and could rewrite the store's tables or
// bind itself into the CHECK constraint init creates. pg_temp is named
// last so that no temporary table shadows a catalog; functions and
// operators are never looked up there.
func pinnedTx(mode string) pgx.TxOptions {
	begin := "BEGIN"
	if mode != "" {
		begin += " " + mode
	}
	return pgx.TxOptions{BeginQuery: begin + "; SET LOCAL search_path = pg_catalog, pg_temp"}
}

func (p *Postgres) ident() string { return pgx.Identifier{p.schema}.Sanitize() }

// withConn runs fn on an idle connection or a new one, and keeps the
// connection afterwards if it is still healthy and not in a transaction.
func (p *Postgres) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	var c *pgx.Conn
	p.mu.Lock()
	for len(p.idle) > 0 && c == nil {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.IsClosed() {
			c = nil
		}
	}
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = p.connect(ctx); err != nil {
			return &driverError{err}
		}
	}
	err := fn(c)
	keep := !c.IsClosed() && c.PgConn().TxStatus() == 'I' && ctx.Err() == nil
	p.mu.Lock()
	if keep && !p.closed && len(p.idle) < maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		c.Close(cctx)
		cancel()
	}
	return err
}

// connect opens a new connection. A server that refuses a setting of
// newerStartupSettings as unknown is connected to again without it, and
// is not sent it again (storeRefusals); other hosts of the URL still are.
func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	p.mu.Lock()
	cfg := p.cfg.Copy()
	p.mu.Unlock()
	settings := make(map[string]string, len(newerStartupSettings))
	for _, name := range newerStartupSettings {
		if v, ok := cfg.RuntimeParams[name]; ok {
			settings[name] = v
		}
	}
	record := storeRefusals.Install(&cfg.Config, settings)
	for round := 0; ; round++ {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil || round == 8 || !record(err) {
			return c, err
		}
	}
}

// storeRefusals are the servers that refused a setting of
// newerStartupSettings, by the address dialled: of the hosts a store URL
// lists, a PostgreSQL 13 standby refuses idle_session_timeout and a newer
// primary needs it, so one's refusal must not keep it from the other.
var storeRefusals pgurl.Refusals

// wrap names the store in err and classifies it: lost connections as
// ErrUnavailable, lock timeouts as ErrBusy.
func (p *Postgres) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var pth *pathError
	if errors.As(err, &pth) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "55P03":
			return &pathError{msg: fmt.Sprintf("store %s is busy (another lessor process held its lock for too long)", p.name), kind: ErrBusy}
		case strings.HasPrefix(pe.Code, "08"), pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "25006":
			return &pathError{msg: fmt.Sprintf("%s store %s: %s (SQLSTATE %s)", op, p.name, pe.Message, pe.Code), kind: ErrUnavailable}
		}
		return fmt.Errorf("%s store %s: %s (SQLSTATE %s)", op, p.name, pe.Message, pe.Code)
	}
	// Anything else from the driver is the network or the server going
	// away. Its text names hosts and users, never a password.
	msg := oneLine(err)
	if p.cfg.RequireAuth == "!password" && pgurl.RefusedClearText(err) {
		// The requirement is lessor's, not in the URL: say what it is.
		msg += " (" + pgurl.ClearTextHint + ")"
	}
	if errors.Is(err, pgconn.ErrStandbyConnection) || errors.Is(err, pgconn.ErrReadOnlyConnection) {
		// Likewise lessor's requirement when the URL sets none.
		msg += " (lessor uses the store only on a server that takes writes, not on a standby that may lag behind the primary: name the primary, or all the cluster's hosts)"
	}
	return &pathError{msg: fmt.Sprintf("%s store %s: %s", op, p.name, msg), kind: ErrUnavailable}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// driverError marks an error that came from PostgreSQL or the driver, as
// opposed to one fn returned, which run passes on as it is.
type driverError struct{ err error }

func (e *driverError) Error() string { return e.err.Error() }
func (e *driverError) Unwrap() error { return e.err }

// retryable: PostgreSQL aborted the transaction and it may simply be run
// again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// maxAttempts bounds the runs of one transaction that PostgreSQL keeps
// aborting.
const maxAttempts = 10

// View runs fn in a REPEATABLE READ READ ONLY transaction.
func (p *Postgres) View(ctx context.Context, fn func(Tx) error) error {
	return p.run(ctx, false, fn)
}

// Update runs fn in a READ COMMITTED transaction that holds the writers'
// lock, and commits it if fn returns nil and ctx is not done.
func (p *Postgres) Update(ctx context.Context, fn func(Tx) error) error {
	return p.run(ctx, true, fn)
}

func (p *Postgres) run(ctx context.Context, write bool, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := p.withConn(ctx, func(c *pgx.Conn) error { return p.once(ctx, c, write, fn) })
		var de *driverError
		if !errors.As(err, &de) {
			return err // fn's own
		}
		if !retryable(de.err) || attempt == maxAttempts {
			return p.wrap("transaction on", de.err)
		}
		backoff := time.Duration(5<<min(attempt, 7)) * time.Millisecond
		backoff = backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// once runs one attempt of a transaction on c.
func (p *Postgres) once(ctx context.Context, c *pgx.Conn, write bool, fn func(Tx) error) (err error) {
	opts := pinnedTx("ISOLATION LEVEL REPEATABLE READ READ ONLY")
	if write {
		timeout := p.opts.LockTimeout
		if timeout <= 0 {
			timeout = DefaultLockTimeout
		}
		opts = pinnedTx("ISOLATION LEVEL READ COMMITTED READ WRITE")
		// In the BEGIN's round trip, which runs it inside the new
		// transaction as it does the search_path.
		opts.BeginQuery += fmt.Sprintf("; SET LOCAL lock_timeout = %d", timeout.Milliseconds())
	}
	tx, err := c.BeginTx(ctx, opts)
	if err != nil {
		return &driverError{err}
	}
	defer func() {
		if tx != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = tx.Rollback(rctx)
			cancel()
		}
	}()
	t := &pgTx{p: p, ctx: ctx, tx: tx, write: write, table: p.ident() + ".kv"}
	if write {
		var v int
		if err := tx.QueryRow(ctx, `SELECT schema_version FROM `+p.ident()+`.meta WHERE id = 1 FOR UPDATE`).Scan(&v); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return p.metaMissing()
			}
			return &driverError{err}
		}
		if err := p.checkVersion(v); err != nil {
			return err
		}
	}
	ferr := fn(t)
	switch {
	case t.failed != nil:
		// The driver's error, even if fn swallowed it: the transaction is
		// aborted, and a serialization failure is retried.
		return &driverError{t.failed}
	case ferr != nil:
		return ferr
	case !write:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	if err := t.flush(); err != nil {
		return &driverError{err}
	}
	err = tx.Commit(ctx)
	tx = nil
	if err != nil {
		return &driverError{err}
	}
	return nil
}

// pgTx is one transaction of a Postgres store.
type pgTx struct {
	p      *Postgres
	ctx    context.Context
	tx     pgx.Tx
	write  bool
	table  string // the qualified table it reads and writes
	failed error  // the first error from the server; the transaction is aborted
	// pend holds the transaction's writes until flush sends them in two
	// statements: a round trip per Put would make a transaction that
	// writes a thousand records (a reap batch) wait on a thousand round
	// trips. Get and Walk see them.
	pend map[string]pendingWrite
	// read caches what Get read from the table (nil: absent), so that a
	// record read again in the same transaction costs no round trip (the
	// barrier reads a record's old value when it replaces it). The writers'
	// lock keeps other lessor writers out for an Update, and a View reads
	// one snapshot, so a second read would return the same.
	read map[string][]byte
	// whole holds, for each prefix whose every key the table held was
	// read into read (by GetPrefix or PrefetchPrefixes), those keys in
	// byte order, so that a GetPrefix of it (or of a longer prefix) is
	// answered without a round trip, and a key under it that read lacks
	// is known to be absent from the table.
	whole map[string][]string
}

// maxReadCache bounds the records a transaction keeps in read: a View
// that reads every lease must not hold them all.
const maxReadCache = 4096

type pendingWrite struct {
	value []byte
	del   bool
}

// batchMode is how the statements that carry arrays of keys and values
// (flush, GetMany) are sent: the connection's default (exec) sends
// parameters as text, which for a bytea[] means hex-escaping every byte
// (a fifth of a reap's time in the client, and twice the bytes on the
// wire). Cache-describe asks the server for the statement's parameter
// types once per connection, then sends them in binary; it still uses the
// unnamed statement, so no named prepared statement outlives the call.
const batchMode = pgx.QueryExecModeCacheDescribe

// flush sends the pending writes: one DELETE and one INSERT … ON
// CONFLICT, keys in byte order so that two transactions lock rows in the
// same order.
func (t *pgTx) flush() error {
	if t.failed != nil {
		return t.failed
	}
	if len(t.pend) == 0 {
		return nil
	}
	keys := make([]string, 0, len(t.pend))
	for k := range t.pend {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var dels, putKeys, putValues [][]byte
	for _, k := range keys {
		w := t.pend[k]
		if w.del {
			dels = append(dels, []byte(k))
		} else {
			putKeys, putValues = append(putKeys, []byte(k)), append(putValues, w.value)
		}
	}
	t.pend = nil
	if len(dels) > 0 {
		if _, err := t.tx.Exec(t.ctx, `DELETE FROM `+t.table+` WHERE key = ANY($1::bytea[])`, batchMode, dels); err != nil {
			t.failed = err
			return err
		}
	}
	if len(putKeys) > 0 {
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO `+t.table+` (key, value) SELECT * FROM ROWS FROM (pg_catalog.unnest($1::bytea[]), pg_catalog.unnest($2::bytea[]))
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, batchMode, putKeys, putValues); err != nil {
			t.failed = err
			return err
		}
	}
	return nil
}

func (t *pgTx) fail(err error) error {
	if t.failed == nil {
		t.failed = err
	}
	return t.p.wrap("transaction on", err)
}

func (t *pgTx) Get(key string) ([]byte, error) {
	if t.failed != nil {
		return nil, t.p.wrap("transaction on", t.failed)
	}
	if w, ok := t.pend[key]; ok {
		if w.del {
			return nil, nil
		}
		return slices.Clone(w.value), nil
	}
	if v, ok := t.cached(key); ok {
		return slices.Clone(v), nil
	}
	var v []byte
	err := t.tx.QueryRow(t.ctx, `SELECT value FROM `+t.table+` WHERE key = $1`, []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		t.remember(key, nil)
		return nil, nil
	}
	if err != nil {
		return nil, t.fail(err)
	}
	if v == nil {
		v = []byte{}
	}
	t.remember(key, v)
	return slices.Clone(v), nil
}

// getManyChunk bounds the keys of one GetMany query.
const getManyChunk = 1000

// GetMany implements ManyGetter: the keys neither written nor already read
// in this transaction are read in one query per getManyChunk keys instead
// of one round trip each, and remembered as Get remembers them, so that a
// Get of one of them afterwards (the barrier reads a record's old value
// when it replaces or deletes it) costs no round trip either.
func (t *pgTx) GetMany(keys []string) ([][]byte, error) {
	if t.failed != nil {
		return nil, t.p.wrap("transaction on", t.failed)
	}
	ask := t.unread(keys)
	found := map[string][]byte{}
	for len(ask) > 0 {
		chunk := ask[:min(len(ask), getManyChunk)]
		ask = ask[len(chunk):]
		rows, err := t.tx.Query(t.ctx, `SELECT key, value FROM `+t.table+` WHERE key = ANY($1::bytea[])`, batchMode, chunk)
		if err != nil {
			return nil, t.fail(err)
		}
		if err := collect(rows, found); err != nil {
			return nil, t.fail(err)
		}
		for _, k := range chunk {
			t.remember(string(k), found[string(k)])
		}
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		switch w, ok := t.pend[k]; {
		case ok && w.del:
		case ok:
			out[i] = slices.Clone(w.value)
		default:
			if v, ok := t.cached(k); ok {
				out[i] = slices.Clone(v)
			} else if v, ok := found[k]; ok {
				out[i] = slices.Clone(v)
			}
		}
	}
	return out, nil
}

// Prefetch implements Prefetcher: GetMany, keeping the values for the
// Gets to come.
func (t *pgTx) Prefetch(keys []string) error {
	_, err := t.GetMany(keys)
	return err
}

// GetPrefix implements PrefixGetter: from what the transaction read when
// a GetPrefix or PrefetchPrefixes read all of prefix (or of a shorter one)
// already, merged with its pending writes; otherwise in one query, unless
// this transaction has writes under prefix still to send, which the table
// does not hold yet.
func (t *pgTx) GetPrefix(prefix string) ([]string, [][]byte, error) {
	if t.failed != nil {
		return nil, nil, t.p.wrap("transaction on", t.failed)
	}
	if keys, ok := t.wholeKeys(prefix); ok {
		return t.fromCache(prefix, keys)
	}
	for k := range t.pend {
		if strings.HasPrefix(k, prefix) {
			keys, err := t.List(prefix)
			if err != nil {
				return nil, nil, err
			}
			vs, err := t.GetMany(keys)
			return keys, vs, err
		}
	}
	lo := []byte(prefix)
	rows, err := t.tx.Query(t.ctx, `SELECT key, value FROM `+t.table+`
		WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) ORDER BY key`, lo, prefixEnd(lo))
	if err != nil {
		return nil, nil, t.fail(err)
	}
	var keys []string
	var vs [][]byte
	var k, v []byte
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		if v == nil {
			v = []byte{}
		}
		keys, vs = append(keys, string(k)), append(vs, slices.Clone(v))
		return nil
	})
	if err != nil {
		return nil, nil, t.fail(err)
	}
	out := make([][]byte, len(vs))
	for i, k := range keys {
		t.remember(k, vs[i])
		out[i] = slices.Clone(vs[i])
	}
	t.rememberWhole(prefix, keys)
	return keys, out, nil
}

// PrefetchPrefixes implements PrefixPrefetcher: keys and every key under
// each of prefixes, with their values, in one query, kept for the Gets and
// GetPrefixes to come.
func (t *pgTx) PrefetchPrefixes(keys, prefixes []string) error {
	if t.failed != nil {
		return t.p.wrap("transaction on", t.failed)
	}
	ask := t.unread(keys)
	if len(ask) > getManyChunk {
		// Too many for one query: the keys as GetMany reads them.
		if _, err := t.GetMany(keys); err != nil {
			return err
		}
		ask = nil
	}
	var ps []string
	var los, his [][]byte
	for _, p := range prefixes {
		if _, ok := t.wholeKeys(p); ok || slices.Contains(ps, p) {
			continue
		}
		ps = append(ps, p)
		los, his = append(los, []byte(p)), append(his, prefixEnd([]byte(p)))
	}
	if len(ps) == 0 {
		if len(ask) == 0 {
			return nil
		}
		_, err := t.GetMany(keys)
		return err
	}
	// Each range is read through the key index (a lateral join: one index
	// scan per prefix), and the keys by the same index; a key inside a
	// range comes twice, which the map below absorbs.
	rows, err := t.tx.Query(t.ctx, `SELECT key, value FROM `+t.table+` WHERE key = ANY($1::bytea[])
		UNION ALL
		SELECT kv.key, kv.value FROM ROWS FROM (pg_catalog.unnest($2::bytea[]), pg_catalog.unnest($3::bytea[])) AS r(lo, hi)
			CROSS JOIN LATERAL (SELECT key, value FROM `+t.table+`
				WHERE key >= r.lo AND (r.hi IS NULL OR key < r.hi)) AS kv`, batchMode, ask, los, his)
	if err != nil {
		return t.fail(err)
	}
	found := map[string][]byte{}
	if err := collect(rows, found); err != nil {
		return t.fail(err)
	}
	for _, k := range ask {
		t.remember(string(k), found[string(k)])
	}
	sorted := slices.Sorted(maps.Keys(found))
	for _, p := range ps {
		var under []string
		for _, k := range sorted {
			if strings.HasPrefix(k, p) {
				t.remember(k, found[k])
				under = append(under, k)
			}
		}
		t.rememberWhole(p, under)
	}
	return nil
}

// collect reads rows of (key, value) into found, an empty value as empty,
// not nil (absent).
func collect(rows pgx.Rows, found map[string][]byte) error {
	var k, v []byte
	_, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		if v == nil {
			v = []byte{}
		}
		found[string(k)] = slices.Clone(v)
		return nil
	})
	return err
}

// unread returns keys (once each) that the transaction has neither
// written nor read, which a read must ask the table for.
func (t *pgTx) unread(keys []string) [][]byte {
	var ask [][]byte
	seen := map[string]bool{}
	for _, k := range keys {
		if _, ok := t.pend[k]; ok {
			continue
		}
		if _, ok := t.cached(k); ok || seen[k] {
			continue
		}
		seen[k] = true
		ask = append(ask, []byte(k))
	}
	return ask
}

// cached returns what the transaction knows of key in the table without a
// query: the value it read (nil: absent), or absent when a prefix of key
// was read whole and key was not among its keys.
func (t *pgTx) cached(key string) ([]byte, bool) {
	if v, ok := t.read[key]; ok {
		return v, true
	}
	if _, ok := t.wholeKeys(key); ok {
		return nil, true
	}
	return nil, false
}

// wholeKeys returns the table's keys under prefix, when a prefix of it was
// read whole in this transaction.
func (t *pgTx) wholeKeys(prefix string) ([]string, bool) {
	for p, keys := range t.whole {
		if !strings.HasPrefix(prefix, p) {
			continue
		}
		lo, _ := slices.BinarySearch(keys, prefix)
		hi := lo
		for hi < len(keys) && strings.HasPrefix(keys[hi], prefix) {
			hi++
		}
		return keys[lo:hi], true
	}
	return nil, false
}

// rememberWhole notes that keys (sorted) are all the table holds under
// prefix, if read holds each of them: one the cache had no room for would
// have to be read again, so the prefix is not answered from it.
func (t *pgTx) rememberWhole(prefix string, keys []string) {
	for _, k := range keys {
		if _, ok := t.read[k]; !ok {
			return
		}
	}
	if t.whole == nil {
		t.whole = map[string][]string{}
	}
	t.whole[prefix] = slices.Clone(keys) // the caller's may change
}

// fromCache answers GetPrefix(prefix) from keys, the table's keys under
// it as read earlier in the transaction, and the pending writes, as the
// query and the pending writes would.
func (t *pgTx) fromCache(prefix string, keys []string) ([]string, [][]byte, error) {
	all := slices.Clone(keys)
	for k, w := range t.pend {
		if !w.del && strings.HasPrefix(k, prefix) {
			all = append(all, k)
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	var outK []string
	var outV [][]byte
	for _, k := range all {
		var v []byte
		if w, ok := t.pend[k]; ok {
			if w.del {
				continue
			}
			v = w.value
		} else {
			v = t.read[k]
		}
		outK, outV = append(outK, k), append(outV, slices.Clone(v))
	}
	return outK, outV, nil
}

func (t *pgTx) remember(key string, v []byte) {
	if t.read == nil {
		t.read = map[string][]byte{}
	}
	if len(t.read) < maxReadCache {
		t.read[key] = v
	}
}

func (t *pgTx) Put(key string, value []byte) error {
	if t.failed != nil {
		return t.p.wrap("transaction on", t.failed)
	}
	if !t.write {
		return fmt.Errorf("put %q: %w", key, errReadOnly)
	}
	if key == "" {
		return errors.New("put: empty key")
	}
	if t.pend == nil {
		t.pend = map[string]pendingWrite{}
	}
	t.pend[key] = pendingWrite{value: append([]byte{}, value...)}
	return nil
}

func (t *pgTx) Delete(key string) error {
	if t.failed != nil {
		return t.p.wrap("transaction on", t.failed)
	}
	if !t.write {
		return fmt.Errorf("delete %q: %w", key, errReadOnly)
	}
	if key == "" {
		return nil
	}
	if t.pend == nil {
		t.pend = map[string]pendingWrite{}
	}
	t.pend[key] = pendingWrite{del: true}
	return nil
}

func (t *pgTx) List(prefix string) ([]string, error) {
	var keys []string
	err := t.Walk(prefix, func(k string) error { keys = append(keys, k); return nil })
	return keys, err
}

// walkPage is how many keys Walk reads per query. Each page is read in
// full before fn sees its keys, so fn may use the transaction (a
// connection runs one query at a time); a key fn writes after the current
// one is seen by a later page, as on the file store.
const walkPage = 1000

func (t *pgTx) Walk(prefix string, fn func(string) error) error {
	if t.failed != nil {
		return t.p.wrap("transaction on", t.failed)
	}
	lo := []byte(prefix)
	hi := prefixEnd(lo)
	var last []byte
	for {
		args := []any{lo, hi, last, walkPage}
		rows, err := t.tx.Query(t.ctx, `SELECT key FROM `+t.table+`
			WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) AND ($3::bytea IS NULL OR key > $3)
			ORDER BY key LIMIT $4`, args...)
		if err != nil {
			return t.fail(err)
		}
		keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var k []byte
			err := r.Scan(&k)
			return string(k), err
		})
		if err != nil {
			return t.fail(err)
		}
		full := len(keys) == walkPage
		var upper []byte // the last key this page covers; nil: to hi
		if full {
			upper = []byte(keys[len(keys)-1])
		}
		keys = t.mergePending(keys, lo, hi, last, upper)
		for _, k := range keys {
			if err := fn(k); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
			if t.failed != nil {
				return t.p.wrap("transaction on", t.failed)
			}
		}
		if !full {
			return nil
		}
		last = upper
	}
}

// mergePending merges into keys (a page of the table's keys, sorted) the
// pending writes in the page's range: after last (nil: from lo) and up to
// upper included (nil: below hi, nil: no end). Pending deletes drop keys.
func (t *pgTx) mergePending(keys []string, lo, hi, last, upper []byte) []string {
	if len(t.pend) == 0 {
		return keys
	}
	inRange := func(k string) bool {
		b := []byte(k)
		switch {
		case bytes.Compare(b, lo) < 0, last != nil && bytes.Compare(b, last) <= 0:
			return false
		case upper != nil:
			return bytes.Compare(b, upper) <= 0
		default:
			return hi == nil || bytes.Compare(b, hi) < 0
		}
	}
	var added []string
	for k, w := range t.pend {
		if !w.del && inRange(k) {
			added = append(added, k)
		}
	}
	out := make([]string, 0, len(keys)+len(added))
	for _, k := range append(keys, added...) {
		if w, ok := t.pend[k]; ok && w.del {
			continue
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (an empty prefix or all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte{}, prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Rewrite replaces the store's content (see Rewriter) in one transaction
// that holds the writers' lock: fn writes the new content into a temporary
// table, which then replaces the rows of the kv table. PostgreSQL keeps the
// old rows as dead tuples until VACUUM (and in its WAL and backups): unlike
// the file store, a rewrite alone does not erase old ciphertext from disk.
func (p *Postgres) Rewrite(ctx context.Context, fn func(src, dst Tx) error) error {
	return p.run(ctx, true, func(tx Tx) error {
		src := tx.(*pgTx)
		if _, err := src.tx.Exec(ctx, `CREATE TEMPORARY TABLE lessor_rewrite (key bytea PRIMARY KEY, value bytea NOT NULL) ON COMMIT DROP`); err != nil {
			return src.fail(err)
		}
		dst := &pgTx{p: p, ctx: ctx, tx: src.tx, write: true, table: "pg_temp.lessor_rewrite"}
		src.write = false // fn reads the old content and must not change it
		err := fn(src, dst)
		src.write = true
		if err == nil {
			dst.flush()
		}
		if dst.failed != nil {
			return src.fail(dst.failed)
		}
		if err != nil || src.failed != nil {
			return err
		}
		if _, err := src.tx.Exec(ctx, `DELETE FROM `+src.table); err != nil {
			return src.fail(err)
		}
		if _, err := src.tx.Exec(ctx, `INSERT INTO `+src.table+` (key, value) SELECT key, value FROM pg_temp.lessor_rewrite`); err != nil {
			return src.fail(err)
		}
		return nil
	})
}
