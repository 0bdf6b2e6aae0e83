package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// ErrNotCredential is wrapped by the error for -format=pgpass or dsn on a
// response that holds no database credential.
var ErrNotCredential = errors.New("not a database credential")

// cannotRender is the error for a response the chosen format cannot
// carry; it wraps ErrUnsupported, and the CLI exits 1 on it.
type cannotRender struct{ err error }

func (e *cannotRender) Error() string { return e.err.Error() }
func (e *cannotRender) Unwrap() []error {
	return []error{e.err, ErrUnsupported}
}

func cannot(format string, args ...any) error {
	return &cannotRender{fmt.Errorf(format, args...)}
}

// Var is one environment variable of a client's settings.
type Var struct{ Name, Value string }

// Credential returns a database credential's libpq settings: PGUSER and
// PGPASSWORD, then PGHOST, PGPORT, PGDATABASE, PGSSLMODE and PGSSLROOTCERT
// where the response says where and how the credential logs in, then
// LESSOR_LEASE_ID and
// LESSOR_LEASE_DURATION when it has a lease. ok is false when resp holds
// no username and password.
func Credential(resp *logical.Response) (vars []Var, ok bool) {
	user, pass, ok := credential(resp)
	if !ok {
		return nil, false
	}
	vars = []Var{{"PGUSER", user}, {"PGPASSWORD", pass}}
	if c := resp.Connection; c != nil {
		if c.Host != "" {
			vars = append(vars, Var{"PGHOST", c.Host})
		}
		if c.Port != 0 {
			vars = append(vars, Var{"PGPORT", strconv.Itoa(int(c.Port))})
		}
		if c.Database != "" {
			vars = append(vars, Var{"PGDATABASE", c.Database})
		}
		if c.SSLMode != "" {
			vars = append(vars, Var{"PGSSLMODE", c.SSLMode})
		}
		if c.SSLRootCert != "" {
			vars = append(vars, Var{"PGSSLROOTCERT", c.SSLRootCert})
		}
	}
	return append(vars, leaseVars(resp)...), true
}

func credential(resp *logical.Response) (user, pass string, ok bool) {
	user, uok := resp.Data["username"].(string)
	pass, pok := resp.Data["password"].(string)
	return user, pass, uok && pok && user != "" && pass != ""
}

func leaseVars(resp *logical.Response) []Var {
	if resp.Secret == nil || resp.Secret.LeaseID == "" {
		return nil
	}
	return []Var{
		{"LESSOR_LEASE_ID", resp.Secret.LeaseID},
		{"LESSOR_LEASE_DURATION", strconv.FormatInt(seconds(resp.Secret.TTL), 10)},
	}
}

// reservedNames are variables that change how a shell, or any program it
// starts, behaves: a data key that would set one (or one of lessor's own
// LESSOR_ settings) is written with a LESSOR_ prefix instead, so that
// eval'ing the output never changes PATH, IFS or the token lessor uses.
var reservedNames = []string{"PATH", "IFS", "ENV", "BASH_ENV", "CDPATH", "HOME", "SHELL",
	"SHELLOPTS", "BASHOPTS", "GLOBIGNORE", "PROMPT_COMMAND", "PS1", "PS2", "PS3", "PS4"}

func reserved(name string) bool {
	return slices.Contains(reservedNames, name) || strings.HasPrefix(name, "LD_") ||
		strings.HasPrefix(name, "DYLD_") || strings.HasPrefix(name, "LESSOR_")
}

// envVars lists the variables -format=env and dotenv print: a
// credential's libpq settings, else the lease, the token and each data
// key as a shell name (upper case; what is not a letter, digit or
// underscore becomes an underscore; LESSOR_ before a reserved name).
func envVars(resp *logical.Response) ([]Var, error) {
	if vars, ok := Credential(resp); ok {
		return vars, nil
	}
	vars := leaseVars(resp)
	if a := resp.Auth; a != nil {
		vars = append(vars,
			Var{"LESSOR_TOKEN", a.ClientToken},
			Var{"LESSOR_TOKEN_ACCESSOR", a.Accessor},
			Var{"LESSOR_TOKEN_DURATION", strconv.FormatInt(seconds(a.LeaseDuration), 10)},
			Var{"LESSOR_TOKEN_POLICIES", strings.Join(a.Policies, ",")})
	}
	from := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(resp.Data)) {
		name := shellName(k)
		if reserved(name) {
			// lease lookup's "path" must not set PATH when eval'd.
			name = "LESSOR_" + name
		}
		if prev, dup := from[name]; dup {
			return nil, cannot("data keys %q and %q would both set %s; use -format=json", prev, k, name)
		}
		from[name] = k
		v, err := envValue(resp.Data[k])
		if err != nil {
			return nil, cannot("data key %q: %w", k, err)
		}
		vars = append(vars, Var{name, v})
	}
	return vars, nil
}

func shellName(key string) string {
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}

// envValue is a data value as text: strings as they are, lists and maps
// as compact JSON, nil as empty.
func envValue(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	}
	if structured(v) {
		b, err := json.Marshal(v)
		return string(escapeC1(b)), err
	}
	return fmt.Sprint(v), nil
}

// structured reports whether v is a list, a map or a struct (other than
// a time), which -field and env print as JSON.
func structured(v any) bool {
	if _, ok := v.(time.Time); ok || v == nil {
		return false
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		return true
	}
	return false
}

// encodeEnv renders env (`export NAME='value'`, POSIX shell quoting, safe
// to eval) or dotenv (NAME='value'; a value holding a quote or a line
// break is double-quoted with \\, \" and \n escapes, as dotenv readers
// unescape them).
func encodeEnv(resp *logical.Response, format Name) ([]byte, error) {
	vars, err := envVars(resp)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, v := range vars {
		if strings.IndexByte(v.Value, 0) >= 0 {
			return nil, cannot("%s holds a NUL byte, which no environment can carry", v.Name)
		}
		if format == NameEnv {
			fmt.Fprintf(&b, "export %s=%s\n", v.Name, ShellQuote(v.Value))
			continue
		}
		if strings.ContainsAny(v.Value, "'\n\r") && strings.ContainsAny(v.Value, "$`") {
			// Double quotes are then needed, and inside them a shell
			// that sources the file runs $(…) and `…`, and dotenv
			// readers expand ${…}: no quoting keeps such a value as it is.
			return nil, cannot("-format=dotenv: %s holds a quote or a line break and a $ or `, which a dotenv file cannot hold literally; use -format=env or -format=json", v.Name)
		}
		fmt.Fprintf(&b, "%s=%s\n", v.Name, dotenvQuote(v.Value))
	}
	return []byte(b.String()), nil
}

// ShellQuote quotes s for a POSIX shell: inside single quotes nothing is
// special, and a single quote is written as '\”.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func dotenvQuote(s string) string {
	if !strings.ContainsAny(s, "'\n\r") {
		return "'" + s + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// encodeClient renders a credential as one libpq password-file line
// (host:port:database:username:password, `\` and `:` escaped, `*` for
// what is unknown) or as a postgresql:// URL with the user name and
// password percent-encoded.
func encodeClient(resp *logical.Response, format Name) ([]byte, error) {
	user, pass, ok := credential(resp)
	if !ok {
		return nil, cannot("-format=%s: %w (no username and password in the response)", format, ErrNotCredential)
	}
	var c logical.Connection
	if resp.Connection != nil {
		c = *resp.Connection
	}
	if format == NamePgpass {
		field := func(s string) string {
			if s == "" {
				return "*"
			}
			return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
		}
		port := ""
		if c.Port != 0 {
			port = strconv.Itoa(int(c.Port))
		}
		line := strings.Join([]string{field(c.Host), field(port), field(c.Database), field(user), field(pass)}, ":")
		if strings.ContainsAny(line, "\n\r") {
			return nil, cannot("-format=pgpass: a field holds a line break, which a password file cannot carry")
		}
		return []byte(line + "\n"), nil
	}
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, pass)}
	q := url.Values{}
	switch {
	case strings.HasPrefix(c.Host, "/"):
		// A socket directory goes in the query, where a path may stand.
		q.Set("host", c.Host)
		if c.Port != 0 {
			q.Set("port", strconv.Itoa(int(c.Port)))
		}
	case c.Host != "" && c.Port != 0:
		u.Host = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	case c.Host != "":
		u.Host = c.Host
		if strings.Contains(c.Host, ":") {
			u.Host = "[" + c.Host + "]"
		}
	case c.Port != 0:
		q.Set("port", strconv.Itoa(int(c.Port)))
	}
	if c.Database != "" {
		u.Path = "/" + c.Database
	}
	u.RawQuery = q.Encode()
	return []byte(u.String() + "\n"), nil
}
