package database

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/pgurl"
	"github.com/lessorhq/lessor/pkg/storage"
)

// PluginName is the only plugin lessor knows.
const PluginName = "postgresql-database-plugin"

// DefaultPasswordAuthentication is lessor's default, unlike Vault's
// "password": PostgreSQL then only ever receives SCRAM verifiers, never a
// plaintext password it could write to its log.
const DefaultPasswordAuthentication = "scram-sha-256"

// inlinePasswordWarning is Vault's warning, word for word.
const inlinePasswordWarning = "Password found in connection_url, use a templated url to enable root rotation and prevent read access to password information."

// dbConfig is a stored connection, config/<name>.
type dbConfig struct {
	PluginName             string   `json:"plugin_name"`
	AllowedRoles           []string `json:"allowed_roles"`
	RootRotationStatements []string `json:"root_credentials_rotate_statements"`
	VerifyConnection       bool     `json:"verify_connection"`
	// PasswordPolicy names the password policy (sys/policies/password/)
	// for the passwords of this connection's roles; "" is lessor's
	// default generator.
	PasswordPolicy string      `json:"password_policy,omitempty"`
	Connection     connDetails `json:"connection_details"`
	// Admin is what the last verified write found the admin may do.
	Admin *adminCheck `json:"admin_check,omitempty"`
	// Writer is writerAccount when the last write came from the account
	// lessor runs as, on its own command line; "" when it came through
	// lessor serve or sudo, or from a lessor that did not record it (an
	// old config may have come through serve). Only the account's
	// configs get its environment, its ~/.pgpass and the files they
	// name (see postgres.Config.Confined); to give an old config those,
	// the account writes it again.
	Writer string `json:"writer,omitempty"`
}

// writerAccount is dbConfig.Writer for a config the account running
// lessor wrote.
const writerAccount = "account"

// adminCheck is the server version and the admin's privilege verdict, as
// postgres.CheckAdmin found them.
type adminCheck struct {
	ServerVersion string `json:"server_version"`
	Verdict       string `json:"admin_privileges"`
	// User is the login the connection was found to use.
	User string `json:"user,omitempty"`
}

// adminNames are the logins the connection may log in as: its username,
// the user its URL names, and the one a verified write found.
func (c *dbConfig) adminNames() []string {
	var names []string
	add := func(n string) {
		if n != "" && n != "{{username}}" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	add(c.Connection.Username)
	if _, userinfo, _, ok := urlParts(c.Connection.ConnectionURL); ok {
		user, _, _ := strings.Cut(userinfo, ":")
		if u, err := url.PathUnescape(user); err == nil {
			add(u)
		}
	}
	if c.Admin != nil {
		add(c.Admin.User)
	}
	return names
}

// connDetails are the plugin's settings. The pool settings are accepted
// and echoed for compatibility with Vault scripts; a lessor process opens
// one connection per request, so they change nothing yet.
type connDetails struct {
	ConnectionURL          string `json:"connection_url"`
	Username               string `json:"username,omitempty"`
	Password               string `json:"password,omitempty"`
	PasswordAuthentication string `json:"password_authentication"`
	UsernameTemplate       string `json:"username_template,omitempty"`
	DisableEscaping        bool   `json:"disable_escaping,omitempty"`
	MaxOpenConnections     *int   `json:"max_open_connections,omitempty"`
	MaxIdleConnections     *int   `json:"max_idle_connections,omitempty"`
	MaxConnectionLifetime  string `json:"max_connection_lifetime,omitempty"`
}

func (c *dbConfig) pluginConfig() postgres.Config {
	return postgres.Config{
		ConnectionURL:          c.Connection.ConnectionURL,
		Username:               c.Connection.Username,
		Password:               c.Connection.Password,
		DisableEscaping:        c.Connection.DisableEscaping,
		PasswordAuthentication: c.Connection.PasswordAuthentication,
		MaxOpenConnections:     deref(c.Connection.MaxOpenConnections),
		Confined:               c.Writer != writerAccount,
	}
}

func deref(n *int) int {
	if n == nil {
		return 0
	}
	return *n
}

// roleAllowed applies allowed_roles: "*" or any glob that matches; an
// empty list allows nothing.
func (c *dbConfig) roleAllowed(role string) bool {
	for _, p := range c.AllowedRoles {
		if postgres.Glob(p, role) {
			return true
		}
	}
	return false
}

// redact removes the admin password (and any password written inline in
// the URL, and any more secrets given) from an error's text, in the ways
// postgres.Redact does, keeping the error chain for errors.Is and
// errors.As. The plugin already redacts its errors; this is the second
// line of defence, because a leaked admin password cannot be taken back.
func (c *dbConfig) redact(err error, more ...string) error {
	secrets := append([]string{c.Connection.Password}, inlinePasswords(c.Connection.ConnectionURL)...)
	return postgres.Redact(err, append(secrets, more...)...)
}

// redactStatements is redact for an error of statements that substitute
// passwords (an issued one, a static role's next, the admin's next):
// besides the passwords whole, it removes every piece of them that
// PostgreSQL's lexer can quote in a syntax error (see sqlTokens), which
// postgres.Redact, cutting where URL parsers do, leaves.
func (c *dbConfig) redactStatements(err error, passwords ...string) error {
	var more []string
	for _, pw := range passwords {
		if pw != "" {
			more = append(more, sqlTokens(pw)...)
		}
	}
	return c.redact(err, more...)
}

func (b *Backend) loadConfig(ctx context.Context, st storage.Store, name string) (*dbConfig, error) {
	var cfg dbConfig
	var found bool
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		found, err = getJSON(tx, configPrefix+name, &cfg)
		return err
	})
	if err != nil || !found {
		return nil, err
	}
	return &cfg, nil
}

// newPassword generates a password for a role of the connection: by the
// connection's password policy when it names one, else by lessor's
// default (20 characters of [A-Za-z0-9-], one of each class).
func (b *Backend) newPassword(ctx context.Context, sys logical.SystemView, cfg *dbConfig) (string, error) {
	if cfg.PasswordPolicy == "" {
		return postgres.GeneratePassword(b.rand)
	}
	pg, ok := sys.(logical.PasswordGenerator)
	if !ok {
		return "", fmt.Errorf("no password policy found: %q (password policies are not available here)", cfg.PasswordPolicy)
	}
	return pg.GeneratePasswordFromPolicy(ctx, cfg.PasswordPolicy)
}

func missingConfig(name string) error {
	return fmt.Errorf("failed to find entry for connection with name: %q", name)
}

// configWrite creates a connection or merges an update over the stored one
// (fields left out keep their values), checks it, connects once unless
// verify_connection=false, and only then stores it.
func (b *Backend) configWrite(ctx context.Context, req *logical.Request, name string, fd *logical.FieldData) (*logical.Response, error) {
	old, err := b.loadConfig(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	cfg := dbConfig{Connection: connDetails{PasswordAuthentication: DefaultPasswordAuthentication}}
	if old != nil {
		cfg = *old
	}
	if err := applyConfigFields(&cfg, fd); err != nil {
		return nil, err
	}
	// The stored admin password goes nowhere but where the write that gave
	// it pointed: whoever may update this config but was never told the
	// password (it may be one only rotate-root knows) would otherwise name
	// a server of their own in connection_url, and be sent it (in clear
	// text with require_auth=password, or relayed through SCRAM to log in
	// as the admin). Vault sends it; lessor asks for it again. The URL is
	// compared as rendered: with disable_escaping, a username goes into
	// it as it is, and may name a host of its own. A password written in
	// the URL itself is the writer's to send on only with the URL.
	if old != nil && cfg.pluginConfig().Target() != old.pluginConfig().Target() {
		switch {
		case old.Connection.Password != "" && !fd.Has("password"):
			return nil, logical.Errorf("connection_url changed, or a username put into it unescaped: send the password with it (the stored password is only ever sent where connection_url pointed when it was written)")
		case len(inlinePasswords(old.Connection.ConnectionURL)) > 0 && !fd.Has("connection_url"):
			return nil, logical.Errorf("a username put into connection_url unescaped changes where the password written in it goes: send connection_url with it")
		}
	}
	// The same for the statements rotate-root runs as the admin with the
	// new admin password in them: whoever sets them is handed that
	// password at the next rotation, which anyone allowed may start (the
	// statements may send it anywhere the admin's SQL reaches, or set one
	// of the writer's choosing).
	if old != nil && old.Connection.Password != "" && !fd.Has("password") &&
		!slices.Equal(cfg.RootRotationStatements, old.RootRotationStatements) {
		return nil, logical.Errorf("root_rotation_statements changed: send the password with them (rotate-root runs them with the new admin password in them)")
	}
	// And for what makes that password and how it is sent: a policy of
	// the writer's choosing (four of "a") makes it one they know, and
	// password_authentication=password puts it in the statements in clear
	// text, for the server's log (log_statement=ddl) to keep.
	if old != nil && old.Connection.Password != "" && !fd.Has("password") {
		switch {
		case cfg.PasswordPolicy != old.PasswordPolicy:
			return nil, logical.Errorf("password_policy changed: send the password with it (rotate-root makes the new admin password by it)")
		case old.pluginConfig().SCRAM() && !cfg.pluginConfig().SCRAM():
			return nil, logical.Errorf("password_authentication changed to password: send the password with it (rotate-root then sends the new admin password in clear text)")
		}
	}
	// The config is the writer's from now on: a change through serve
	// makes even one the account wrote confined. The account's change
	// makes one written through serve its own only when it sends
	// connection_url: one of allowed_roles alone vouches for no string
	// someone else chose, which would otherwise take the account's
	// environment and ~/.pgpass, and log in where the server asks for
	// nothing, as the account's own database role. With
	// disable_escaping, the username goes into the string as it is and
	// may add settings of its own: the account sends that too.
	if old == nil || fd.Has("connection_url") && (!cfg.Connection.DisableEscaping || fd.Has("username")) {
		cfg.Writer = writerAccount
	}
	if b.foreign {
		if err := foreignConnection(cfg.Connection); err != nil {
			return nil, err
		}
		cfg.Writer = ""
	}
	// verify_connection is an instruction for this write, not a setting
	// that sticks: every write verifies unless told otherwise.
	cfg.VerifyConnection = true
	if fd.Has("verify_connection") {
		cfg.VerifyConnection = fd.Bool("verify_connection")
	}

	switch {
	case cfg.PluginName == "":
		return nil, logical.Errorf("empty plugin name")
	case cfg.PluginName != PluginName:
		return nil, logical.Errorf("unknown plugin %q", cfg.PluginName)
	}
	namesPolicy := false
	if fd.Has("password_policy") && cfg.PasswordPolicy != "" {
		// Refused now rather than at every later issue or rotation.
		if _, err := b.newPassword(ctx, req.System, &cfg); err != nil {
			return nil, logical.Errorf("password_policy %q: %v", cfg.PasswordPolicy, err)
		}
		if old == nil || old.PasswordPolicy != cfg.PasswordPolicy {
			// Before connecting; again in the transaction that stores
			// the name, below.
			if err := checkPolicyWriter(ctx, req, nil, cfg.PasswordPolicy); err != nil {
				return nil, err
			}
			namesPolicy = true
		}
	}
	var templateWarnings []string
	if cfg.Connection.UsernameTemplate != "" {
		if templateWarnings, err = postgres.ValidateUsernameTemplate(cfg.Connection.UsernameTemplate); err != nil {
			return nil, logical.Errorf("invalid username_template: %v", err)
		}
	}
	var warnings []string
	pc := cfg.pluginConfig()
	if err := pc.Validate(); err != nil {
		var ue *postgres.URLError
		if cfg.VerifyConnection || !errors.As(err, &ue) {
			return nil, logical.Errorf("error creating database object: %v", cfg.redact(err))
		}
		// As in Vault, a connection that is not verified is stored as it
		// is: the URL may be fixed later, or be meant for a newer lessor.
		warnings = append(warnings, fmt.Sprintf("connection_url was stored unverified (verify_connection=false), but %v; every request that uses this connection will fail until it is fixed", cfg.redact(err)))
	}
	passwordSent, usernameSent := fd.Has("password"), fd.Has("username")
	cfg.Admin = nil // found again below, or unknown
	// The role the connection logs in as: the username field, or what
	// the server says (the URL may name it).
	adminUser := cfg.Connection.Username
	if cfg.VerifyConnection {
		var db *postgres.DB
		if old != nil && !passwordSent && !usernameSent {
			// The stored credentials are in use, and may be mid-rotation:
			// connect the way every other request does.
			db, err = b.connect(ctx, req.Storage, name, &cfg)
		} else {
			db, err = postgres.Connect(ctx, pc)
		}
		if err != nil {
			err = cfg.redact(err)
			return nil, logical.WrapErrorf(err, "error creating database object: error verifying connection: %v", err)
		}
		check, err := db.CheckAdmin(ctx)
		if err != nil {
			db.Close(context.WithoutCancel(ctx))
			return nil, logical.Errorf("error creating database object: error verifying connection: %v", cfg.redact(err))
		}
		cfg.Admin = &adminCheck{ServerVersion: check.ServerVersion, Verdict: check.Verdict, User: check.User}
		adminUser = check.User
		warnings = check.Warnings
		if err := db.Close(context.WithoutCancel(ctx)); err != nil {
			return nil, logical.Errorf("error creating database object: error verifying connection: %v", cfg.redact(err))
		}
	}

	if err := staticOfOtherMounts(ctx, req.System, adminLogins(&cfg, adminUser)); err != nil {
		return nil, err
	}
	failpoint.Hit(failpoint.ConfigBeforeCommit)
	err = req.Storage.Update(ctx, func(tx storage.Tx) error {
		// A login a static role manages cannot be the admin: the next
		// rotation would change the password the connection logs in with.
		// Static roles of any connection count (two connections may reach
		// one server), whether or not this one was verified.
		if namesPolicy {
			if err := checkPolicyWriter(ctx, req, tx, cfg.PasswordPolicy); err != nil {
				return err
			}
		}
		admins := adminLogins(&cfg, adminUser)
		statics, err := allStatic(tx)
		if err != nil {
			return err
		}
		for _, st := range statics {
			if slices.Contains(admins, st.role.Username) {
				return logical.Errorf("username %q is managed by static role %q (connection %q); an admin must be a login of its own", st.role.Username, st.name, st.role.DBName)
			}
		}
		if passwordSent || usernameSent {
			// An operator who sets the admin credentials by hand has
			// superseded any rotation that was left half done.
			if err := tx.Delete(pendingPrefix + name); err != nil {
				return err
			}
		}
		return putJSON(tx, configPrefix+name, &cfg)
	})
	if err != nil {
		return nil, err
	}
	if _, found := redactURL(cfg.Connection.ConnectionURL); found {
		warnings = append([]string{inlinePasswordWarning}, warnings...)
	}
	warnings = append(warnings, templateWarnings...)
	if len(warnings) == 0 {
		return nil, nil
	}
	resp := &logical.Response{}
	for _, w := range warnings {
		resp.AddWarning("%s", w)
	}
	return resp, nil
}

// adminLogins are the logins cfg may log in as, with adminUser, the one the
// server said it did.
func adminLogins(cfg *dbConfig, adminUser string) []string {
	names := cfg.adminNames()
	if adminUser != "" && !slices.Contains(names, adminUser) {
		names = append(names, adminUser)
	}
	return names
}

// staticOfOtherMounts refuses as a connection's admin a login that a
// static role of another database mount manages (on whatever server: a
// config does not record which one it reaches): that mount's rotations
// would lock this connection out, and hand its admin's password to that
// mount's static-creds readers.
func staticOfOtherMounts(ctx context.Context, sys logical.SystemView, admins []string) error {
	sibs, err := otherMounts(ctx, sys, "")
	if err != nil {
		return err
	}
	for _, sib := range sibs {
		for _, st := range sib.statics {
			if slices.Contains(admins, st.role.Username) {
				return logical.Errorf("username %q is managed by static role %q of mount %q; an admin must be a login of its own", st.role.Username, st.name, sib.path)
			}
		}
	}
	return nil
}

// otherMount is what another database mount holds that a config or a
// static role of this one must not clash with.
type otherMount struct {
	path    string
	statics []namedStatic
	// admin names the connection of that mount whose admin is the login
	// otherMounts was asked about, or is "".
	admin string
}

// otherMounts reads the static roles of every other database mount and,
// when login is not "", which of its connections has login as its admin.
// Without a SystemView that shows other mounts (tests), there are none.
func otherMounts(ctx context.Context, sys logical.SystemView, login string) ([]otherMount, error) {
	sm, ok := sys.(logical.SiblingMounts)
	if !ok {
		return nil, nil
	}
	sibs, err := sm.SiblingMounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]otherMount, 0, len(sibs))
	for _, sib := range sibs {
		m := otherMount{path: sib.Path}
		if err := sib.Storage.View(ctx, func(tx storage.Tx) error {
			var err error
			if login != "" {
				if m.admin, err = adminIn(tx, "", login); err != nil {
					return err
				}
			}
			m.statics, err = allStatic(tx)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func applyConfigFields(cfg *dbConfig, fd *logical.FieldData) error {
	for field, dst := range map[string]*string{
		"plugin_name":             &cfg.PluginName,
		"connection_url":          &cfg.Connection.ConnectionURL,
		"username":                &cfg.Connection.Username,
		"password":                &cfg.Connection.Password,
		"password_authentication": &cfg.Connection.PasswordAuthentication,
		"username_template":       &cfg.Connection.UsernameTemplate,
	} {
		if fd.Has(field) {
			*dst = fd.String(field)
		}
	}
	if v := fd.String("plugin_version"); v != "" {
		return logical.Errorf("plugin_version %q: %s is built in and has no other versions", v, PluginName)
	}
	if fd.Has("password_policy") {
		cfg.PasswordPolicy = fd.String("password_policy")
	}
	if cfg.Connection.PasswordAuthentication == "" {
		cfg.Connection.PasswordAuthentication = DefaultPasswordAuthentication
	}
	if fd.Has("allowed_roles") {
		cfg.AllowedRoles = fd.Strings("allowed_roles")
	}
	if fd.Has("root_rotation_statements") {
		cfg.RootRotationStatements = fd.Strings("root_rotation_statements")
	}
	if fd.Has("disable_escaping") {
		cfg.Connection.DisableEscaping = fd.Bool("disable_escaping")
	}
	for field, dst := range map[string]**int{
		"max_open_connections": &cfg.Connection.MaxOpenConnections,
		"max_idle_connections": &cfg.Connection.MaxIdleConnections,
	} {
		if fd.Has(field) {
			n := fd.Int(field)
			*dst = &n
		}
	}
	if n := cfg.Connection.MaxOpenConnections; fd.Has("max_open_connections") && *n > postgres.MaxOpenConnectionsLimit {
		return logical.Errorf("max_open_connections: %d is more than %d", *n, postgres.MaxOpenConnectionsLimit)
	}
	if fd.Has("max_connection_lifetime") {
		cfg.Connection.MaxConnectionLifetime = logical.HumanDuration(fd.Duration("max_connection_lifetime"))
	}
	return nil
}

func (b *Backend) configRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	cfg, err := b.loadConfig(ctx, req.Storage, name)
	if err != nil || cfg == nil {
		return nil, err
	}
	url, _ := redactURL(cfg.Connection.ConnectionURL)
	details := map[string]any{
		"connection_url":          url,
		"password_authentication": cfg.Connection.PasswordAuthentication,
	}
	if cfg.Connection.Username != "" {
		details["username"] = cfg.Connection.Username
	}
	if cfg.Connection.UsernameTemplate != "" {
		details["username_template"] = cfg.Connection.UsernameTemplate
	}
	if cfg.Connection.DisableEscaping {
		details["disable_escaping"] = true
	}
	if cfg.Connection.MaxOpenConnections != nil {
		details["max_open_connections"] = *cfg.Connection.MaxOpenConnections
	}
	if cfg.Connection.MaxIdleConnections != nil {
		details["max_idle_connections"] = *cfg.Connection.MaxIdleConnections
	}
	if cfg.Connection.MaxConnectionLifetime != "" {
		details["max_connection_lifetime"] = cfg.Connection.MaxConnectionLifetime
	}
	resp := &logical.Response{Data: map[string]any{
		"allowed_roles":                      nonNil(cfg.AllowedRoles),
		"connection_details":                 details,
		"password_policy":                    cfg.PasswordPolicy,
		"plugin_name":                        cfg.PluginName,
		"plugin_version":                     "",
		"root_credentials_rotate_statements": nonNil(cfg.RootRotationStatements),
		"verify_connection":                  cfg.VerifyConnection,
	}}
	if cfg.Admin != nil {
		resp.Data["server_version"] = cfg.Admin.ServerVersion
		resp.Data["admin_privileges"] = cfg.Admin.Verdict
	}
	return resp, nil
}

// configDelete removes the connection. Like Vault it leaves the leases
// issued through it alone; their revocation then fails with "failed to
// find entry for connection" until the connection is written again.
func (b *Backend) configDelete(ctx context.Context, req *logical.Request, name string) error {
	return req.Storage.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Delete(pendingPrefix + name); err != nil {
			return err
		}
		return tx.Delete(configPrefix + name)
	})
}

// reset exists for Vault compatibility: Vault drops its cached connection
// pool; lessor caches nothing between requests, so there is nothing to drop.
func (b *Backend) reset(ctx context.Context, req *logical.Request, name string) error {
	cfg, err := b.loadConfig(ctx, req.Storage, name)
	if err != nil {
		return err
	}
	if cfg == nil {
		return missingConfig(name)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const redacted = "xxxxx"

// keywordPasswordRE finds password=... (and sslpassword=...) in a keyword/value connection
// string, after a blank or right after a quoted value (libpq reads
// "sslmode='disable'password=x"): a single-quoted value or a bare word,
// either with backslash escapes (libpq reads "a\ b" unquoted as one value
// holding a blank).
var keywordPasswordRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?is)(^|[\s'])((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.?)(?:[^\s\\]|\\.?)*)`)
})

// queryParamRE finds the name=value pairs of a URL's query string, and
// anything shaped like one after a '?' or '&' elsewhere in the URL: a
// password holding an unencoded '?' or '&' makes the rest look like a
// query, and reading too much as a parameter only hides more. A '#' ends
// nothing: the driver, as libpq, reads it as one more character of the
// value it is in, so "password=a#b" is the password "a#b", not "a" and a
// fragment shown in clear.
var queryParamRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`([?&])([^=&?]*)=([^&]*)`)
})

// urlParts splits a postgres:// URL (leading blanks and the scheme's case
// aside) after its "://", and finds its user information: up to the last
// '@', since a password may hold an unencoded '/', '?', '#' or '@', and a
// URL parser that cuts at the first of them shows the rest as a host or
// a path. ok is false for a keyword/value string.
func urlParts(conn string) (head, userinfo, rest string, ok bool) {
	t := strings.TrimLeft(conn, " \t\r\n")
	scheme, after, isURL := strings.Cut(t, "://")
	if s := strings.ToLower(scheme); !isURL || s != "postgres" && s != "postgresql" {
		return "", "", "", false
	}
	head = conn[:len(conn)-len(after)]
	at := strings.LastIndex(after, "@")
	if at >= 0 && pgurl.MisplacedAt(t) == "" {
		// A well-formed URL: the user part ends at the authority's '@'
		// (a later one belongs to a parameter's value).
		end := strings.IndexAny(after, "/?#")
		if end < 0 {
			end = len(after)
		}
		at = strings.LastIndex(after[:end], "@")
	}
	if at >= 0 {
		return head, after[:at], after[at:], true
	}
	return head, "", after, true
}

// accountFileParams are the connection parameters that have the driver
// read a file as the account lessor runs as: a password from a passfile,
// a client certificate and its key, a service file's settings.
var accountFileParams = []string{"passfile", "service", "servicefile", "sslcert", "sslkey"}

// foreignConnection refuses, on a server or through sudo, a connection
// that would log in with what the account running lessor holds rather
// than with what the writer gave: the writer is not that account, and
// would otherwise connect (and have lessor run their statements) as any
// login its ~/.pgpass knows, or send that password to a server of their
// own. The driver falls back to ~/.pgpass (or PGPASSFILE) whenever the
// connection string and the password field give no password.
func foreignConnection(c connDetails) error {
	for _, k := range accountFileParams {
		if storage.ConnParamSet(c.ConnectionURL, k) {
			return logical.Errorf("connection_url may not set %s through lessor serve or sudo, as the file it names would be read as the account running lessor; give the admin's password in the password field", k)
		}
	}
	if ca := storage.ConnParam(c.ConnectionURL, "sslrootcert"); ca != "" && ca != "system" && !pgurl.FileOnlyHereChanges(ca) {
		return logical.Errorf("connection_url's sslrootcert through lessor serve or sudo must name a regular file of root's or the account running lessor, of 4 MiB at most and not empty, in directories no other user may change, as it is read whole as that account")
	}
	// What lessor's checks and the driver read differently (a '?' in a
	// bracketed host, a scheme in capitals) is refused at the write, as at each use.
	if err := postgres.ConfinedRefusal(c.ConnectionURL); err != nil {
		return logical.Errorf("connection_url through lessor serve or sudo: %v", err)
	}
	written := literal(storage.ConnParam(c.ConnectionURL, "password"))
	if _, userinfo, _, ok := urlParts(c.ConnectionURL); ok {
		_, pw, _ := strings.Cut(userinfo, ":")
		written = written || literal(pw)
	}
	if c.Password == "" && !written {
		return logical.Errorf("password is required through lessor serve or sudo: a connection written there logs in with a password of its own, never with the ~/.pgpass of the account running lessor, and only to a server that asks for it")
	}
	return nil
}

// inlinePasswords returns the passwords written literally into a
// connection string (in the user part, and in every parameter named like
// a password, in any case, sslpassword included), leaving out the
// {{password}} template; none when there are none.
func inlinePasswords(conn string) []string {
	var pws []string
	if _, userinfo, _, ok := urlParts(conn); ok {
		if _, pw, ok := strings.Cut(userinfo, ":"); ok && literal(pw) {
			pws = append(pws, pw)
		}
		for _, m := range queryParamRE().FindAllStringSubmatch(conn, -1) {
			if passwordParam(m[2]) && literal(m[3]) {
				pws = append(pws, m[3])
			}
		}
		return pws
	}
	for _, m := range keywordPasswordRE().FindAllStringSubmatch(conn, -1) {
		if literal(strings.Trim(m[3], "'")) {
			pws = append(pws, m[3])
		}
	}
	return pws
}

// HoldsInlinePassword reports whether a connection_url carries a password
// written out (in the user part or in a parameter named like a password,
// sslpassword included) besides the {{password}} template, as the
// warning on a config write and the redaction of a config read see it.
func HoldsInlinePassword(conn string) bool { return len(inlinePasswords(conn)) > 0 }

// passwordParam reports whether a URL parameter's raw name names a
// password (password, sslpassword, in any case, escaped or not).
func passwordParam(k string) bool {
	if name, err := url.QueryUnescape(k); err == nil {
		k = name
	}
	return strings.Contains(strings.ToLower(k), "password")
}

// literal reports whether a password value is written out, not empty and
// not the {{password}} template.
func literal(pw string) bool { return pw != "" && pw != "{{password}}" }

// redactURL replaces every inline password with "xxxxx", as Vault shows
// it, and reports whether there was one. A templated URL comes back
// unchanged.
func redactURL(conn string) (string, bool) {
	if len(inlinePasswords(conn)) == 0 {
		return conn, false
	}
	if head, userinfo, rest, ok := urlParts(conn); ok {
		if user, pw, ok := strings.Cut(userinfo, ":"); ok && literal(pw) {
			userinfo = user + ":" + redacted
		}
		out := head + userinfo + rest
		return queryParamRE().ReplaceAllStringFunc(out, func(m string) string {
			sub := queryParamRE().FindStringSubmatch(m)
			if !passwordParam(sub[2]) || !literal(sub[3]) {
				return m
			}
			return sub[1] + sub[2] + "=" + redacted
		}), true
	}
	return keywordPasswordRE().ReplaceAllStringFunc(conn, func(m string) string {
		sub := keywordPasswordRE().FindStringSubmatch(m)
		if !literal(strings.Trim(sub[3], "'")) {
			return m
		}
		return sub[1] + sub[2] + redacted
	}), true
}
