package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"

	"github.com/lessorhq/lessor/pkg/pgurl"
	"github.com/lessorhq/lessor/pkg/storage"
)

// The driver fills what a connection string leaves out from the
// environment of the process (PGHOST, PGUSER, PGPASSWORD, PGPASSFILE,
// PGSSLCERT and the rest, as libpq does) and from its home directory:
// ~/.pgpass for a password, ~/.postgresql/postgresql.crt and .key as a
// client certificate, ~/.postgresql/root.crt as the CA. A config whose
// writer was not the account lessor runs as (Config.Confined) gets none
// of it: each such parameter the string does not set is set, ahead of
// the driver, to what it is when neither gives one (confine). A config of
// the account's gets the environment and ~/.pgpass, but the default
// client certificate only when the string or the environment names one
// (noDefaultClientCert): the driver would offer it to whatever server
// asks, the config writer's own among them.

// ambientParams are the parameters the environment or the home directory
// may give, with the value each has when neither does. The parameters of
// the server's session (application_name, timezone, options) are set to
// "" and taken out again after parsing (see confine).
var ambientParams = []struct{ key, none string }{
	{"host", ""}, // defaultHost
	{"port", "5432"},
	{"dbname", ""},
	{"user", ""},
	{"password", ""},
	{"passfile", ""},
	{"connect_timeout", "0"},
	{"sslmode", ""},
	{"sslcert", ""},
	{"sslkey", ""},
	{"sslcertmode", "disable"},
	{"sslsni", ""},
	{"sslrootcert", ""},
	{"sslpassword", ""},
	{"sslnegotiation", ""},
	{"target_session_attrs", "any"},
	{"servicefile", ""},
	{"min_protocol_version", ""},
	{"max_protocol_version", ""},
	{"channel_binding", ""},
	{"require_auth", ""},
	{"application_name", ""},
	{"timezone", ""},
	{"options", ""},
}

// sessionParams are the ambient parameters that reach the server as
// session settings; confine takes them out of RuntimeParams again.
var sessionParams = []string{"application_name", "timezone", "options"}

// confinedFileParams are the parameters that have the driver read a file
// the config names as the account lessor runs as, besides sslrootcert
// (see confinedRefusal).
var confinedFileParams = []string{"passfile", "service", "servicefile", "sslcert", "sslkey"}

// errConfinedService is confine's error when lessor's environment names a
// service: the driver reads it whatever the string says.
var errConfinedService = errors.New("PGSERVICE in the environment of lessor would give this connection, written through lessor serve or sudo, the settings of the account's service file; unset it where lessor runs")

// confinedRefusal refuses what a confined connection string may not set:
// a file the driver would read as the account (a config stored before
// lessor refused them at the write, or through sudo before it did).
func confinedRefusal(dsn string) error {
	if storage.ConnParamSet(dsn, "\x00") {
		// What it sets is unknown (see storage.ConnParamSet): confine
		// would take it to set everything, and the driver would take
		// what it does not from the environment.
		return &URLError{Scheme: urlScheme(dsn), Reason: "lessor cannot tell which parameters it sets"}
	}
	if storage.LooksLikeURL(dsn) != isURL(dsn) {
		// One reads it as a URL and the other as keyword/value pairs
		// ("Postgres://", "postgres:h?…"): what confine sees set, the
		// driver may not, and take from the environment.
		return &URLError{Scheme: urlScheme(dsn), Reason: "lessor cannot tell which parameters it sets (a URL begins with postgres:// or postgresql://, in lower case)"}
	}
	if isURL(dsn) && !plainBracketedHosts(dsn) {
		return &URLError{Scheme: urlScheme(dsn), Reason: "a bracketed host may hold only an IPv6 address (hex digits, ':', '.' and a %25 zone)"}
	}
	for _, k := range confinedFileParams {
		if storage.ConnParamSet(dsn, k) {
			return &URLError{Scheme: urlScheme(dsn), Reason: "a connection written through lessor serve or sudo may not set " + k + ", as the file it names would be read as the account running lessor"}
		}
	}
	if ca := storage.ConnParam(dsn, "sslrootcert"); ca != "" && ca != "system" && !pgurl.FileOnlyHereChanges(ca) {
		return &URLError{Scheme: urlScheme(dsn), Reason: "a connection written through lessor serve or sudo may name as sslrootcert only a regular file of root's or the account running lessor, of 4 MiB at most and not empty, in directories no other user may change"}
	}
	return nil
}

// ConfinedRefusal is confinedRefusal for a connection_url as it is
// written through serve or sudo, so that the write is refused, not each
// use of it.
func ConfinedRefusal(connectionURL string) error {
	return confinedRefusal(strings.TrimLeftFunc(connectionURL, unicode.IsSpace))
}

// confine returns dsn with every parameter of ambientParams that it does
// not set itself set to its value without environment or home directory,
// and the session parameters it so set, for confined to take out again.
func confine(dsn string) (string, []string, error) {
	if os.Getenv("PGSERVICE") != "" {
		return "", nil, errConfinedService
	}
	url := isURL(dsn)
	var authority map[string]bool
	if url {
		authority = urlAuthoritySets(dsn)
	}
	var pairs []string
	var session []string
	for _, p := range ambientParams {
		set := storage.ConnParamSet(dsn, p.key) || authority[p.key] ||
			p.key == "dbname" && storage.ConnParamSet(dsn, "database") ||
			// A URL's ssl=true is sslmode=require, unless an sslmode
			// comes after it.
			p.key == "sslmode" && url && storage.ConnParamSet(dsn, "ssl")
		if p.key == "user" && !url {
			// The driver skips an empty user in a keyword/value string.
			set = storage.ConnParam(dsn, "user") != ""
		}
		if set {
			continue
		}
		v := p.none
		switch {
		case p.key == "host":
			v = defaultHost()
		case p.key == "user" && !url:
			// The driver skips an empty user in a keyword/value string,
			// and PGUSER would stand; the OS user's name is what it
			// takes when neither gives one.
			u, err := user.Current()
			if err != nil {
				return "", nil, fmt.Errorf("confine the connection to what it sets: %w", err)
			}
			v = u.Username
		}
		if url {
			pairs = append(pairs, p.key+"="+escapeUserinfo(v))
		} else {
			pairs = append(pairs, p.key+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
		}
		for _, s := range sessionParams {
			if s == p.key {
				session = append(session, s)
			}
		}
	}
	if len(pairs) == 0 {
		return dsn, nil, nil
	}
	if !url {
		// Ahead of the string's own pairs, which win over them: a string
		// that ends in a backslash would otherwise take in what follows.
		return strings.Join(pairs, " ") + " " + dsn, session, nil
	}
	sep := querySep(dsn)
	return dsn + sep + strings.Join(pairs, "&"), session, nil
}

// confined finishes what confine began on the parsed cc: the session
// parameters it set empty are taken out, and no client certificate is
// ever offered.
func confined(cc *pgx.ConnConfig, session []string) {
	for _, k := range session {
		delete(cc.RuntimeParams, k)
	}
	cc.SSLCertMode = "disable"
}

// urlAuthoritySets reports which of user, password, host, port and dbname
// a postgres:// URL sets before its query, as the driver reads it: the
// user information up to an '@' before any '/', the host list, and a
// path.
func urlAuthoritySets(dsn string) map[string]bool {
	sets := map[string]bool{}
	_, p, _ := strings.Cut(strings.TrimSpace(dsn), "://")
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, pw, hasPW := strings.Cut(p[:i], ":")
		sets["user"] = user != ""
		sets["password"] = hasPW && pw != ""
		p = p[i+1:]
	}
	end := strings.IndexAny(p, "/?")
	if end < 0 {
		end = len(p)
	}
	hosts := p[:end]
	sets["host"] = strings.Trim(hosts, ",") != ""
	// A port list is set, even all empty, whenever a ':' or a ',' is
	// there (the driver stores "," for two hosts without ports).
	sets["port"] = strings.ContainsAny(stripIPv6(hosts), ":,")
	if p = p[end:]; strings.HasPrefix(p, "/") {
		db, _, _ := strings.Cut(p[1:], "?")
		sets["dbname"] = db != ""
	}
	return sets
}

// stripIPv6 removes the bracketed IPv6 addresses of a host list, whose
// colons are not ports.
func stripIPv6(hosts string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(hosts, '[')
		if i < 0 {
			b.WriteString(hosts)
			return b.String()
		}
		b.WriteString(hosts[:i])
		j := strings.IndexByte(hosts[i:], ']')
		if j < 0 {
			return b.String()
		}
		hosts = hosts[i+j+1:]
	}
}

// defaultHost is the driver's host when none is given: the first of the
// socket directories that exists, else localhost.
func defaultHost() string {
	for _, dir := range []string{"/var/run/postgresql", "/private/tmp", "/tmp"} {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
	}
	return "localhost"
}

// noDefaultClientCert returns dsn (a config of the account's) set to
// offer no client certificate unless it or the environment names one:
// the driver otherwise takes ~/.postgresql/postgresql.crt and its key,
// and offers the certificate to any server that asks.
func noDefaultClientCert(dsn string) string {
	for _, k := range []string{"sslcert", "sslkey", "sslcertmode"} {
		if storage.ConnParamSet(dsn, k) {
			return dsn
		}
	}
	for _, e := range []string{"PGSSLCERT", "PGSSLKEY", "PGSSLCERTMODE"} {
		if os.Getenv(e) != "" {
			return dsn
		}
	}
	if !isURL(dsn) {
		return "sslcert='' sslkey='' " + dsn
	}
	sep := querySep(dsn)
	return dsn + sep + "sslcert=&sslkey="
}

// querySep is what goes between a URL and a parameter added to its
// query.
func querySep(dsn string) string {
	switch {
	case strings.HasSuffix(dsn, "?"), strings.HasSuffix(dsn, "&"):
		return ""
	case strings.Contains(dsn, "?"):
		return "&"
	}
	return "?"
}

// NoAuthHint says why a confined connection was refused when the server
// let it in without asking for anything.
const NoAuthHint = "a connection written through lessor serve or sudo logs in only where the server asks for its password: one that asks for none (peer or ident, which vouch for the account running lessor; trust; or a client certificate) is refused"

// requireAuthenticated makes a confined connection refuse a server that
// lets it in without authenticating it by a password (its
// require_auth leaves out "none"). The server does not say why: pg_hba's
// peer (on a Unix socket) and ident let in the login named like the OS
// user lessor runs as, and a config writer who names that login would
// act as the account's own database role, with no password of theirs.
// A list of methods the string gave keeps its choice, but may not allow
// none.
func requireAuthenticated(cc *pgx.ConnConfig) error {
	ra := strings.TrimSpace(cc.RequireAuth)
	if ra == "" {
		cc.RequireAuth = "!none"
		return nil
	}
	methods := strings.Split(ra, ",")
	for i := range methods {
		methods[i] = strings.TrimSpace(methods[i])
	}
	if strings.HasPrefix(methods[0], "!") {
		if !slices.Contains(methods, "!none") {
			cc.RequireAuth = ra + ",!none"
		}
		return nil
	}
	if slices.Contains(methods, "none") {
		return &URLError{Reason: "require_auth may not allow none on a connection written through lessor serve or sudo (the server could let it in as the account running lessor)"}
	}
	return nil
}

// plainBracketedHosts reports whether every '[' … ']' of a postgres://
// URL's host list holds only what an IPv6 address and its zone may. The
// driver takes all up to the ']' as the host, a '?' or '/' included,
// where lessor's parsers (storage.ConnParamSet, urlAuthoritySets,
// querySep) end the host list at the first '?' or '/': in
// "postgres://[x?password=y],elsewhere/db" they saw a password set, and
// a query where confine's own pairs would go, which the driver took into
// the database name, and the password from PGPASSWORD or ~/.pgpass.
func plainBracketedHosts(dsn string) bool {
	_, p, _ := strings.Cut(strings.TrimSpace(dsn), "://")
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		p = p[i+1:]
	}
	for {
		if end := strings.IndexAny(p, "[/?"); end < 0 || p[end] != '[' {
			return true
		} else {
			p = p[end+1:]
		}
		j := strings.IndexByte(p, ']')
		if j < 0 {
			return false
		}
		for _, r := range p[:j] {
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == ':' || r == '.' || r == '%' || r == '-' || r == '_') {
				return false
			}
		}
		p = p[j+1:]
	}
}
