package database

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Static roles: existing PostgreSQL logins whose password lessor rotates
// on a schedule and hands to whoever may read static-creds/<name>.
//
// Storage (under the mount's view):
//
//	static-role/<name>                       the role (staticRole), with its current password
//	static-due/<unix secs, 12 digits>/<name> when the role next needs work (the due index)
//	static-user/<db_name>/<hex username>     which static role manages a login
//
// The due index is what reap walks, up to now and no further, so a
// static role that is not due costs a reap nothing. A role is due at its
// next rotation, at its retry time after a failed rotation, and at the
// end of the claim of a rotation in progress (its rotator may have died).
const (
	staticPrefix     = "static-role/"
	staticDuePrefix  = "static-due/"
	staticUserPrefix = "static-user/"
)

// MinRotationPeriod is Vault's lower bound for rotation_period.
const MinRotationPeriod = 5 * time.Second

// minRotationWindow is Vault's lower bound for rotation_window.
const minRotationWindow = time.Hour

// staticClaim is how long a rotation owns its role: a rotation not
// finished by then is taken for dead, and the next command that meets
// the role settles it.
const staticClaim = 5 * time.Minute

// staticAlterTimeout bounds the ALTER ROLE of a claimed rotation, which
// must end before the claim does: past it, another command settles the
// role and may rotate it again, and this ALTER, landing later, would
// leave PostgreSQL holding a password nobody stored. A variable for tests.
var staticAlterTimeout = staticClaim - staticClaim/10

// staticRole is a stored static role, static-role/<name>.
type staticRole struct {
	DBName             string   `json:"db_name"`
	Username           string   `json:"username"`
	RotationStatements []string `json:"rotation_statements"`
	// PasswordPolicy, from credential_config, overrides the connection's.
	PasswordPolicy string `json:"password_policy,omitempty"`
	// RotationPeriod in whole seconds, or RotationSchedule (cron, UTC)
	// with an optional RotationWindow in seconds.
	RotationPeriod   int64  `json:"rotation_period,omitempty"`
	RotationSchedule string `json:"rotation_schedule,omitempty"`
	RotationWindow   int64  `json:"rotation_window,omitempty"`
	// Password is the password PostgreSQL holds for Username, as far as
	// lessor knows; Pending, when set, is a newer one that a rotation
	// recorded before asking PostgreSQL for it.
	Password     string         `json:"password,omitempty"`
	Pending      *staticPending `json:"pending,omitempty"`
	LastRotation time.Time      `json:"last_vault_rotation,omitzero"`
	NextRotation time.Time      `json:"next_rotation"`
	// Attempts counts failed rotations in a row; RetryAt is the next.
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	RetryAt   time.Time `json:"retry_at,omitzero"`
	DueKey    string    `json:"due_key"`
	// Cluster is the system identifier of the server the login lives on,
	// "" when unknown (a role created before lessor recorded it, or an
	// admin that may not read it).
	Cluster string `json:"cluster,omitempty"`
}

// namedStatic is a static role with its name.
type namedStatic struct {
	name string
	role *staticRole
}

// allStatic reads every static role of the mount.
func allStatic(tx storage.Tx) ([]namedStatic, error) {
	keys, err := tx.List(staticPrefix)
	if err != nil {
		return nil, err
	}
	var out []namedStatic
	for _, k := range keys {
		name := strings.TrimPrefix(k, staticPrefix)
		r, err := getStatic(tx, name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, namedStatic{name, r})
		}
	}
	return out, nil
}

// sameLogin reports whether static role o manages the login r is to
// manage: the same username through the same connection, or on the same
// server through another one (two connections may reach one server, and
// a server's roles are shared by its databases).
func sameLogin(r, o *staticRole) bool {
	return o.Username == r.Username && (o.DBName == r.DBName || o.Cluster != "" && o.Cluster == r.Cluster)
}

// staticPending is a rotation in progress: its new password, and until
// when its rotator owns it.
type staticPending struct {
	Password   string    `json:"password"`
	Created    time.Time `json:"created"`
	ClaimUntil time.Time `json:"claim_until"`
	// Undo: the claim is a delete's, setting the shown password back;
	// until it runs out, this password is not promoted.
	Undo bool `json:"undo,omitempty"`
}

func (r *staticRole) period() time.Duration { return time.Duration(r.RotationPeriod) * time.Second }
func (r *staticRole) window() time.Duration { return time.Duration(r.RotationWindow) * time.Second }

// dueAt is when the role next needs work.
func (r *staticRole) dueAt() time.Time {
	switch {
	case r.Pending != nil:
		return r.Pending.ClaimUntil
	case r.Attempts > 0:
		return r.RetryAt
	}
	return r.NextRotation
}

// nextAfter is the scheduled rotation after t.
func (r *staticRole) nextAfter(t time.Time) time.Time {
	if r.RotationSchedule != "" {
		s, err := parseSchedule(r.RotationSchedule)
		if err != nil {
			// Checked when written; an unreadable schedule falls back
			// to a daily rotation rather than none.
			return t.Add(24 * time.Hour)
		}
		return s.Next(t.UTC())
	}
	return t.Add(r.period())
}

func staticDueKey(t time.Time, name string) string {
	secs := t.Unix()
	if secs < 0 {
		secs = 0
	}
	return fmt.Sprintf("%s%012d/%s", staticDuePrefix, secs, name)
}

func staticUserKey(dbName, username string) string {
	return staticUserPrefix + dbName + "/" + hex.EncodeToString([]byte(username))
}

// putStatic stores r and moves its due-index key to r.dueAt().
func putStatic(tx storage.Tx, name string, r *staticRole) error {
	nk := staticDueKey(r.dueAt(), name)
	if r.DueKey != "" && r.DueKey != nk {
		if err := tx.Delete(r.DueKey); err != nil {
			return err
		}
	}
	if r.DueKey != nk {
		if err := tx.Put(nk, []byte{}); err != nil {
			return err
		}
		r.DueKey = nk
	}
	return putJSON(tx, staticPrefix+name, r)
}

// deleteStatic removes the role, its due key and its username claim.
func deleteStatic(tx storage.Tx, name string, r *staticRole) error {
	if r.DueKey != "" {
		if err := tx.Delete(r.DueKey); err != nil {
			return err
		}
	}
	if err := tx.Delete(staticUserKey(r.DBName, r.Username)); err != nil {
		return err
	}
	return tx.Delete(staticPrefix + name)
}

func getStatic(tx storage.Tx, name string) (*staticRole, error) {
	var r staticRole
	found, err := getJSON(tx, staticPrefix+name, &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// loadStatic reads a static role and its connection (nil when missing).
func loadStatic(ctx context.Context, st storage.Store, name string) (*staticRole, *dbConfig, error) {
	var r *staticRole
	var cfg dbConfig
	var haveCfg bool
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		if r, err = getStatic(tx, name); err != nil || r == nil {
			return err
		}
		haveCfg, err = getJSON(tx, configPrefix+r.DBName, &cfg)
		return err
	})
	if err != nil || r == nil || !haveCfg {
		return r, nil, err
	}
	return r, &cfg, nil
}

// staticPassword generates a password for a static role: by the role's
// password policy, else the connection's, else lessor's default.
func (b *Backend) staticPassword(ctx context.Context, sys logical.SystemView, cfg *dbConfig, r *staticRole) (string, error) {
	if r.PasswordPolicy != "" {
		c := *cfg
		c.PasswordPolicy = r.PasswordPolicy
		cfg = &c
	}
	return b.newPassword(ctx, sys, cfg)
}

func noStaticRole(name string) error {
	return logical.Errorf("no static role found for role name %q", name)
}

// staticWrite creates a static role (and, unless skip_import_rotation,
// rotates its password at once, as Vault does, so that lessor knows it)
// or updates its schedule and statements.
func (b *Backend) staticWrite(ctx context.Context, req *logical.Request, name string, fd *logical.FieldData) (*logical.Response, error) {
	if ct := fd.String("credential_type"); ct != "" && ct != "password" {
		return nil, logical.Errorf("invalid credential_type %q: PostgreSQL static roles take \"password\"", ct)
	}
	var old *staticRole
	var dynamicExists bool
	if err := req.Storage.View(ctx, func(tx storage.Tx) error {
		var err error
		if old, err = getStatic(tx, name); err != nil {
			return err
		}
		raw, err := tx.Get(rolePrefix + name)
		dynamicExists = raw != nil
		return err
	}); err != nil {
		return nil, err
	}
	if dynamicExists {
		return nil, logical.Errorf("Role and Static Role names must be unique")
	}
	r := &staticRole{}
	if old != nil {
		cp := *old
		r = &cp
		if fd.Has("username") && fd.String("username") != old.Username {
			return nil, logical.Errorf("cannot update static account username")
		}
		if fd.Has("db_name") && fd.String("db_name") != old.DBName {
			return nil, logical.Errorf("cannot update static account db_name: delete the static role and create it again")
		}
		if fd.Has("skip_import_rotation") || fd.Has("password") {
			return nil, logical.Errorf("skip_import_rotation and password apply only when a static role is created")
		}
	} else {
		r.Username, r.DBName = fd.String("username"), fd.String("db_name")
		switch {
		case r.Username == "":
			return nil, logical.Errorf("username is a required field to create a static account")
		case r.DBName == "":
			return nil, logical.Errorf("database name is a required field")
		case !fd.Has("rotation_period") && !fd.Has("rotation_schedule"):
			return nil, logical.Errorf("one of rotation_schedule or rotation_period must be provided to create a static account")
		}
		if err := checkName(r.DBName); err != nil {
			return nil, err
		}
	}
	if err := applyStaticSchedule(r, fd); err != nil {
		return nil, err
	}
	if fd.Has("rotation_statements") {
		r.RotationStatements = fd.Strings("rotation_statements")
	}
	namesPolicy := false
	if fd.Has("credential_config") {
		for k, v := range fd.KeyValues("credential_config") {
			if k != "password_policy" {
				return nil, logical.Errorf("credential_config: unknown key %q: a password credential takes password_policy", k)
			}
			r.PasswordPolicy = v
		}
		if r.PasswordPolicy != "" {
			// Refused now rather than at every rotation.
			if _, err := b.newPassword(ctx, req.System, &dbConfig{PasswordPolicy: r.PasswordPolicy}); err != nil {
				return nil, logical.Errorf("credential_config: password_policy %q: %v", r.PasswordPolicy, err)
			}
			if old == nil || old.PasswordPolicy != r.PasswordPolicy {
				// Before the first password is made by it; again in
				// the transaction that stores the name (checkNamed).
				if err := checkPolicyWriter(ctx, req, nil, r.PasswordPolicy); err != nil {
					return nil, err
				}
				namesPolicy = true
			}
		}
	}
	now := req.System.Now().UTC()
	// checkNamed checks, in the transaction that stores the role, the
	// password policy it newly names (see checkPolicyWriter).
	checkNamed := func(tx storage.Tx) error {
		if !namesPolicy {
			return nil
		}
		return checkPolicyWriter(ctx, req, tx, r.PasswordPolicy)
	}

	if old != nil {
		// An update never rotates: it moves the next rotation to what
		// the new schedule says after the last one.
		base := r.LastRotation
		if base.IsZero() {
			base = now
		}
		r.NextRotation = r.nextAfter(base)
		return nil, req.Storage.Update(ctx, func(tx storage.Tx) error {
			if err := checkNamed(tx); err != nil {
				return err
			}
			cur, err := getStatic(tx, name)
			if err != nil {
				return err
			}
			if cur == nil {
				return noStaticRole(name)
			}
			// Keep what a rotation changed since we read the role.
			cur.RotationPeriod, cur.RotationSchedule, cur.RotationWindow = r.RotationPeriod, r.RotationSchedule, r.RotationWindow
			cur.RotationStatements, cur.NextRotation = r.RotationStatements, r.NextRotation
			cur.PasswordPolicy = r.PasswordPolicy
			return putStatic(tx, name, cur)
		})
	}
	return nil, b.staticCreate(ctx, req, name, r, fd, now, checkNamed)
}

// applyStaticSchedule sets rotation_period or rotation_schedule and
// rotation_window from the request, with Vault's rules: the two are
// exclusive, and setting one clears the other.
func applyStaticSchedule(r *staticRole, fd *logical.FieldData) error {
	hasPeriod, hasSchedule := fd.Has("rotation_period"), fd.Has("rotation_schedule")
	if hasPeriod && hasSchedule {
		return logical.Errorf("mutually exclusive fields rotation_period and rotation_schedule were both specified; only one of them can be provided")
	}
	if hasPeriod {
		p := fd.Duration("rotation_period")
		if p < MinRotationPeriod {
			return logical.Errorf("rotation_period must be 5 seconds or more")
		}
		r.RotationPeriod, r.RotationSchedule, r.RotationWindow = int64(p/time.Second), "", 0
	}
	if hasSchedule {
		s := strings.TrimSpace(fd.String("rotation_schedule"))
		if _, err := parseSchedule(s); err != nil {
			return logical.Errorf("could not parse rotation_schedule %q: %v", s, err)
		}
		r.RotationSchedule, r.RotationPeriod = s, 0
	}
	if fd.Has("rotation_window") {
		w := fd.Duration("rotation_window")
		switch {
		case r.RotationSchedule == "":
			return logical.Errorf("rotation_window is invalid with use of rotation_period")
		case w != 0 && w < minRotationWindow:
			return logical.Errorf("rotation_window must be 3600 seconds or more")
		}
		r.RotationWindow = int64(w / time.Second)
	}
	return nil
}

// staticCreate checks the login lessor is to manage, then stores the role
// with its first password: a new one set in PostgreSQL (the import
// rotation), or with skip_import_rotation=true the given one, after a
// login with it proves it right.
func (b *Backend) staticCreate(ctx context.Context, req *logical.Request, name string, r *staticRole, fd *logical.FieldData, now time.Time, checkNamed func(storage.Tx) error) error {
	// now was read by the caller a moment ago, and the claim written below
	// runs out staticClaim after it; the ALTER's deadline, set from
	// started, keeps a tenth of the claim as its margin.
	started := time.Now()
	cfg, err := b.loadConfig(ctx, req.Storage, r.DBName)
	switch {
	case err != nil:
		return err
	case cfg == nil:
		return missingConfig(r.DBName)
	case !cfg.roleAllowed(name):
		return fmt.Errorf("%q is not an allowed role", name)
	case r.Username == cfg.Connection.Username:
		return logical.Errorf("username %q is the admin of connection %q: rotate its password with `lessor write -f %srotate-root/%s`", r.Username, r.DBName, req.MountPoint, r.DBName)
	}
	skip := fd.Bool("skip_import_rotation")
	given := fd.String("password")
	if given != "" && !skip {
		return logical.Errorf("password is only accepted with skip_import_rotation=true")
	}
	if skip && given == "" {
		return logical.Errorf("skip_import_rotation=true needs password=@FILE, the login's current password: lessor must know it to hand it out")
	}
	var owner string
	if err := req.Storage.View(ctx, func(tx storage.Tx) error {
		raw, err := tx.Get(staticUserKey(r.DBName, r.Username))
		owner = string(raw)
		return err
	}); err != nil {
		return err
	}
	if owner != "" {
		return logical.Errorf("username %q is already managed by static role %q", r.Username, owner)
	}

	other, err := adminOfOther(ctx, req.Storage, r.DBName, r.Username)
	if err != nil {
		return err
	}
	db, err := b.open(ctx, req.Storage, r.DBName, cfg)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	info, err := db.LookupRole(ctx, r.Username)
	r.Cluster = info.Cluster
	switch {
	case err != nil:
		return fmt.Errorf("static role %q: %w", name, cfg.redact(err))
	case !info.Exists:
		return logical.Errorf("role %q does not exist in PostgreSQL: a static role manages an existing login (create it first)", r.Username)
	case info.IsAdmin:
		// The admin named only in connection_url, not in username.
		return logical.Errorf("username %q is the admin of connection %q: rotate its password with `lessor write -f %srotate-root/%s`", r.Username, r.DBName, req.MountPoint, r.DBName)
	case other != "":
		// Another connection's admin (it may reach the same server): the
		// first rotation would lock that connection out, and hand its
		// admin's password to whoever reads static-creds.
		return logical.Errorf("username %q is the admin of connection %q: a static role never manages a connection's admin (rotate it with `lessor write -f %srotate-root/%s`)", r.Username, other, req.MountPoint, other)
	case strings.HasPrefix(info.Comment, CommentPrefix):
		return logical.Errorf("role %q belongs to a lease (lessor created it for dynamic credentials); a static role cannot manage it", r.Username)
	case info.AlterDenied != "" && len(r.RotationStatements) == 0:
		// Custom rotation statements may set the password some other way
		// (a SECURITY DEFINER function, say): their first run tells.
		return logical.Errorf("static role %q: %s", name, info.AlterDenied)
	}
	if err := checkOtherMounts(ctx, req.System, r); err != nil {
		return err
	}

	if skip {
		res, lerr := postgres.TryLogin(ctx, cfg.pluginConfig(), r.Username, given)
		switch res {
		case postgres.LoginRefused:
			if strings.HasSuffix(given, "\n") {
				return logical.Errorf("password is not the current password of %q: PostgreSQL refused it (the password ends in a newline: write the file with printf, not echo)", r.Username)
			}
			return logical.Errorf("password is not the current password of %q: PostgreSQL refused it", r.Username)
		case postgres.LoginUnknown:
			return fmt.Errorf("check the password of %q: %w", r.Username, cfg.redact(lerr, given))
		}
		r.Password, r.LastRotation, r.NextRotation = given, now, r.nextAfter(now)
		return req.Storage.Update(ctx, func(tx storage.Tx) error {
			if err := checkNamed(tx); err != nil {
				return err
			}
			return b.insertStatic(tx, name, r)
		})
	}

	password, err := b.staticPassword(ctx, req.System, cfg, r)
	if err != nil {
		return fmt.Errorf("generate password for static role %q: %w", name, err)
	}
	r.Pending = &staticPending{Password: password, Created: now, ClaimUntil: now.Add(staticClaim)}
	r.NextRotation = now
	if err := req.Storage.Update(ctx, func(tx storage.Tx) error {
		if err := checkNamed(tx); err != nil {
			return err
		}
		return b.insertStatic(tx, name, r)
	}); err != nil {
		return err
	}
	return b.finishRotation(ctx, req.Storage, name, db, cfg, r, password, now, started, true)
}

// adminOfOther names the connection config, other than dbName, whose
// admin is username ("" for none).
func adminOfOther(ctx context.Context, st storage.Store, dbName, username string) (string, error) {
	var other string
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		other, err = adminIn(tx, dbName, username)
		return err
	})
	return other, err
}

// adminIn names, in tx, the connection config other than skip whose
// admin is username ("" for none).
func adminIn(tx storage.Tx, skip, username string) (string, error) {
	keys, err := tx.List(configPrefix)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		name := strings.TrimPrefix(k, configPrefix)
		if name == skip {
			continue
		}
		cfg, err := configIn(tx, name)
		if err != nil {
			return "", err
		}
		if slices.Contains(cfg.adminNames(), username) {
			return name, nil
		}
	}
	return "", nil
}

// checkOtherMounts refuses a login that another database mount depends
// on: the admin of one of its connections (named alike on any server, as
// a config does not record which server it reaches), or a login one of
// its static roles manages on the same server. A token confined to this
// mount would otherwise rotate that mount's admin password and read it
// from static-creds, or break the other static role's password at every
// rotation.
func checkOtherMounts(ctx context.Context, sys logical.SystemView, r *staticRole) error {
	if isStoreLogin(sys, r.Username) {
		return storeLoginError(r.Username)
	}
	sibs, err := otherMounts(ctx, sys, r.Username)
	if err != nil {
		return err
	}
	for _, sib := range sibs {
		if sib.admin != "" {
			return logical.Errorf("username %q is the admin of connection %q of mount %q: a static role never manages a connection's admin", r.Username, sib.admin, sib.path)
		}
		for _, o := range sib.statics {
			if o.role.Username == r.Username && o.role.Cluster != "" && o.role.Cluster == r.Cluster {
				return logical.Errorf("username %q is already managed by static role %q of mount %q, on the same server: each rotation would break the other's password", r.Username, o.name, sib.path)
			}
		}
	}
	return nil
}

// isStoreLogin reports whether username is the login lessor's store
// connects as (never, for a store in a file).
func isStoreLogin(sys logical.SystemView, username string) bool {
	sl, ok := sys.(logical.StoreLoginView)
	return ok && sl.StoreLogin() != "" && sl.StoreLogin() == username
}

// storeLoginError refuses to change the password of the login lessor's
// store connects as: the new password would be kept only in the store
// that it no longer opens.
func storeLoginError(username string) error {
	return logical.Errorf("username %q is the login lessor's store connects as: changing its password would lock lessor out of its own store", username)
}

// insertStatic stores a new role, unless its name or login was taken
// meanwhile.
func (b *Backend) insertStatic(tx storage.Tx, name string, r *staticRole) error {
	if cur, err := getStatic(tx, name); err != nil || cur != nil {
		if err == nil {
			err = logical.Errorf("static role %q was created meanwhile", name)
		}
		return err
	}
	uk := staticUserKey(r.DBName, r.Username)
	if raw, err := tx.Get(uk); err != nil || raw != nil {
		if err == nil {
			err = logical.Errorf("username %q is already managed by static role %q", r.Username, string(raw))
		}
		return err
	}
	statics, err := allStatic(tx)
	if err != nil {
		return err
	}
	for _, o := range statics {
		if sameLogin(r, o.role) {
			return logical.Errorf("username %q is already managed by static role %q, through connection %q to the same server: each rotation would break the other's password", r.Username, o.name, o.role.DBName)
		}
	}
	// Again here, for a connection config written since the check before
	// PostgreSQL was asked.
	if other, err := adminIn(tx, "", r.Username); err != nil || other != "" {
		if err == nil {
			err = logical.Errorf("username %q is the admin of connection %q: a static role never manages a connection's admin", r.Username, other)
		}
		return err
	}
	if err := tx.Put(uk, []byte(name)); err != nil {
		return err
	}
	return putStatic(tx, name, r)
}

func (b *Backend) staticRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var r *staticRole
	if err := req.Storage.View(ctx, func(tx storage.Tx) error {
		var err error
		r, err = getStatic(tx, name)
		return err
	}); err != nil || r == nil {
		return nil, err
	}
	data := map[string]any{
		"db_name":             r.DBName,
		"username":            r.Username,
		"rotation_statements": nonNil(r.RotationStatements),
		"credential_type":     "password",
	}
	addSchedule(data, r, req.System.Now())
	if r.PasswordPolicy != "" {
		data["credential_config"] = map[string]any{"password_policy": r.PasswordPolicy}
	}
	if r.Attempts > 0 {
		data["last_rotation_error"] = r.LastError
		data["failed_rotations"] = r.Attempts
	}
	return &logical.Response{Data: data}, nil
}

// addSchedule adds the fields static-roles and static-creds share.
func addSchedule(data map[string]any, r *staticRole, now time.Time) {
	if r.RotationSchedule != "" {
		data["rotation_schedule"] = r.RotationSchedule
		if r.RotationWindow > 0 {
			data["rotation_window"] = r.RotationWindow
		}
	} else {
		data["rotation_period"] = r.RotationPeriod
	}
	if !r.LastRotation.IsZero() {
		// Vault shows it in the server's local time.
		data["last_vault_rotation"] = r.LastRotation.Local().Format(time.RFC3339Nano)
	}
	ttl := int64(r.NextRotation.Sub(now) / time.Second)
	if ttl < 0 {
		ttl = 0
	}
	data["ttl"] = ttl
}

// staticDelete stops managing the login; the PostgreSQL role and its
// last password stay as they are. A rotation in progress is settled
// first, so that the password left in PostgreSQL is one lessor showed.
func (b *Backend) staticDelete(ctx context.Context, req *logical.Request, name string) error {
	r, cfg, err := loadStatic(ctx, req.Storage, name)
	if err != nil || r == nil {
		return err
	}
	var settled *staticPending
	if r.Pending != nil {
		if r.Pending.ClaimUntil.After(req.System.Now()) {
			return logical.Errorf("static role %q is being rotated; retry in a moment", name)
		}
		// The rotation's rotator is gone. Deleting neither finishes it
		// nor starts another: the login is left with the password
		// static-creds last showed, which is what its users hold. A role
		// whose first rotation died has shown none: nothing to undo.
		if r.Password != "" {
			if cfg == nil {
				return missingConfig(r.DBName)
			}
			now, started := req.System.Now().UTC(), time.Now()
			claimed, err := b.claimUndo(ctx, req.Storage, name, r, now)
			if err != nil {
				return err
			}
			if err := b.undoPending(ctx, req.Storage, cfg, claimed, started); err != nil {
				// The claim goes, so that a retry need not wait for it.
				releaseUndo(ctx, req.Storage, name, claimed.Pending.Password, now)
				return fmt.Errorf("settle the unfinished rotation of static role %q before deleting it: %w", name, err)
			}
			r = claimed
		}
		settled = r.Pending
	}
	return req.Storage.Update(ctx, func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil || cur == nil {
			return err
		}
		if cur.Pending != nil && (settled == nil || cur.Pending.Password != settled.Password) {
			return logical.Errorf("static role %q is being rotated; retry in a moment", name)
		}
		return deleteStatic(tx, name, cur)
	})
}

// claimUndo takes over the dead rotation pending on r, as a rotation
// claims a role, marked as a delete's undo: until the claim runs out,
// rotate-role and reap wait, and static-creds refuses to promote the
// pending password, while the delete sets the shown one back. It returns
// the role as claimed.
func (b *Backend) claimUndo(ctx context.Context, st storage.Store, name string, r *staticRole, now time.Time) (*staticRole, error) {
	var claimed *staticRole
	err := st.Update(ctx, func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil {
			return err
		}
		if cur == nil || cur.Pending == nil || cur.Pending.Password != r.Pending.Password || cur.Pending.ClaimUntil.After(now) {
			return logical.Errorf("static role %q is being rotated; retry in a moment", name)
		}
		cur.Pending.ClaimUntil, cur.Pending.Undo = now.Add(staticClaim), true
		claimed = cur
		return putStatic(tx, name, cur)
	})
	return claimed, err
}

// releaseUndo ends a delete's claim on a role whose undo failed.
func releaseUndo(ctx context.Context, st storage.Store, name, password string, now time.Time) {
	_ = st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		cur, err := getStatic(tx, name)
		if err != nil || cur == nil || cur.Pending == nil || cur.Pending.Password != password || !cur.Pending.Undo {
			return err
		}
		cur.Pending.ClaimUntil, cur.Pending.Undo = now, false
		return putStatic(tx, name, cur)
	})
}

// undoPending makes sure PostgreSQL holds r's stored password, not the
// pending one of a rotation that died: a login with the pending password
// tells whether its ALTER ROLE landed, and if so the stored one is set
// back (with the role's rotation statements, which run again). When
// neither can be told, it fails. r's pending rotation is claimed.
func (b *Backend) undoPending(ctx context.Context, st storage.Store, cfg *dbConfig, r *staticRole, started time.Time) error {
	res, lerr := postgres.TryLogin(ctx, cfg.pluginConfig(), r.Username, r.Pending.Password)
	switch res {
	case postgres.LoginRefused:
		return nil
	case postgres.LoginAccepted:
		db, err := b.open(ctx, st, r.DBName, cfg)
		if err != nil {
			return err
		}
		defer db.Close(context.WithoutCancel(ctx))
		// started is when the claim's time was read.
		actx, cancel := context.WithDeadline(ctx, started.Add(staticAlterTimeout))
		defer cancel()
		if err := db.SetPassword(actx, r.Username, r.Password, r.RotationStatements); err != nil {
			return fmt.Errorf("set the password static-creds showed back: %w", cfg.redactStatements(err, r.Password, r.Pending.Password))
		}
		return nil
	}
	if lerr == nil {
		lerr = errors.New("the login gave no answer")
	}
	return fmt.Errorf("cannot tell whether PostgreSQL took the pending password of %q: %w", r.Username, cfg.redact(lerr, r.Pending.Password))
}

// staticCredsRead returns the login's current password. It never
// rotates; a rotation left unfinished is settled first: a login with the
// pending password tells whether PostgreSQL has it.
func (b *Backend) staticCredsRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	r, cfg, err := loadStatic(ctx, req.Storage, name)
	switch {
	case err != nil:
		return nil, err
	case r == nil:
		return nil, logical.Errorf("unknown role: %s", name)
	case cfg == nil:
		return nil, missingConfig(r.DBName)
	case !cfg.roleAllowed(name):
		return nil, fmt.Errorf("%q is not an allowed role", name)
	}
	if r.Pending != nil {
		now := req.System.Now().UTC()
		res, _ := postgres.TryLogin(ctx, cfg.pluginConfig(), r.Username, r.Pending.Password)
		switch {
		case res == postgres.LoginAccepted:
			if err := promoteStatic(ctx, req.Storage, name, r.Pending.Password, r.Pending.Created, now); err != nil {
				return nil, err
			}
		case !r.Pending.ClaimUntil.After(now):
			// Its rotator is gone: finish the rotation.
			if _, err := b.rotateStatic(ctx, req.Storage, req.System, name, false); err != nil {
				return nil, fmt.Errorf("settle the unfinished rotation of static role %q: %w", name, err)
			}
		case r.Password == "":
			return nil, logical.Errorf("static role %q is being created; retry in a moment", name)
		}
		if r, cfg, err = loadStatic(ctx, req.Storage, name); err != nil || r == nil || cfg == nil {
			if err == nil {
				err = logical.Errorf("unknown role: %s", name)
			}
			return nil, err
		}
	}
	if r.Password == "" {
		return nil, logical.Errorf("static role %q has no password yet: its first rotation did not finish; run `lessor write -f %srotate-role/%s`", name, req.MountPoint, name)
	}
	data := map[string]any{"username": r.Username, "password": r.Password}
	addSchedule(data, r, req.System.Now())
	return &logical.Response{Data: data}, nil
}

// rotateRole is rotate-role/<name>: rotate now, whatever the schedule.
func (b *Backend) rotateRole(ctx context.Context, req *logical.Request, name string) error {
	r, _, err := loadStatic(ctx, req.Storage, name)
	if err != nil {
		return err
	}
	if r == nil {
		return noStaticRole(name)
	}
	if _, err := b.rotateStatic(ctx, req.Storage, req.System, name, false); err != nil {
		if errors.Is(err, errRotationBusy) {
			return err
		}
		return fmt.Errorf("unable to finish rotating credentials; reap retries them, and it is also safe to retry now: %w", err)
	}
	return nil
}
