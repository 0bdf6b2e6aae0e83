package postgres

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSetPasswordsSavepoints: one role whose statements fail is rolled
// back alone; the others commit, and each logs in with its new password.
// The server log shows verifiers, never the passwords.
func TestSetPasswordsSavepoints(t *testing.T) {
	f := setup(t)
	cfg := newAdmin(t, f)
	admin(t, f.d, fmt.Sprintf(`ALTER ROLE %s SET log_statement = 'all'`, pgx.Identifier{cfg.Username}.Sanitize()))
	db := connect(t, cfg)
	var changes []PasswordChange
	for i := range 4 {
		name := newName(t, "v-static")
		f.s.DropRolesAtCleanup(t, name)
		admin(t, f.d, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'old-password-%d'`, pgx.Identifier{name}.Sanitize(), i))
		pw, _ := GeneratePassword(rand.Reader)
		changes = append(changes, PasswordChange{Username: name, Password: pw})
	}
	changes[2].Statements = []string{`ALTER ROLE "{{name}}-missing" WITH PASSWORD '{{password}}'`}
	changes[3].Statements = []string{`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}' -- trailing comment`, `ALTER ROLE "{{name}}" CONNECTION LIMIT 3`}
	errs := db.SetPasswords(f.ctx, changes)
	for i, c := range changes {
		loginErr := f.s.CanLogin(f.ctx, c.Username, c.Password, f.d.Name)
		oldErr := f.s.CanLogin(f.ctx, c.Username, fmt.Sprintf("old-password-%d", i), f.d.Name)
		if i == 2 {
			var pgErr *pgconn.PgError
			if !errors.As(errs[i], &pgErr) || pgErr.Code != "42704" || loginErr == nil || oldErr != nil {
				t.Fatalf("failing change: err %v, new login %v, old login %v", errs[i], loginErr, oldErr)
			}
			if strings.Contains(errs[i].Error(), c.Password) {
				t.Fatalf("error shows the password: %v", errs[i])
			}
			continue
		}
		if errs[i] != nil || loginErr != nil || oldErr == nil {
			t.Fatalf("change %d: err %v, new login %v, old login still works: %v", i, errs[i], loginErr, oldErr == nil)
		}
		res, err := TryLogin(f.ctx, cfg, c.Username, c.Password)
		if res != LoginAccepted || err != nil {
			t.Fatalf("TryLogin with the new password: %v, %v", res, err)
		}
		if res, err := TryLogin(f.ctx, cfg, c.Username, "old-password-0"); res != LoginRefused || err != nil {
			t.Fatalf("TryLogin with a wrong password: %v, %v", res, err)
		}
	}
	var limit int
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT rolconnlimit FROM pg_roles WHERE rolname = $1`, changes[3].Username).Scan(&limit); err != nil || limit != 3 {
		t.Fatalf("second statement of change 3: limit %d, %v", limit, err)
	}
	if f.s.LogFile == "" {
		return
	}
	log := waitForLog(t, f.s.LogFile, changes[3].Username)
	if !strings.Contains(log, `ALTER ROLE "`+changes[0].Username+`" WITH PASSWORD 'SCRAM-SHA-256$4096:`) {
		t.Errorf("log has no ALTER ROLE for %s with a verifier: is log_statement in effect?", changes[0].Username)
	}
	for _, c := range changes {
		if strings.Contains(log, c.Password) {
			t.Errorf("the new password of %s appears in the server log", c.Username)
		}
	}
}

func TestLookupRole(t *testing.T) {
	f := setup(t)
	name := newName(t, "v-lookup")
	f.s.DropRolesAtCleanup(t, name)
	admin(t, f.d, fmt.Sprintf(`CREATE ROLE %s NOLOGIN; COMMENT ON ROLE %s IS 'hello'`, pgx.Identifier{name}.Sanitize(), pgx.Identifier{name}.Sanitize()))
	ri, err := f.db.LookupRole(f.ctx, name)
	if err != nil || !ri.Exists || ri.CanLogin || ri.Comment != "hello" {
		t.Fatalf("LookupRole(%s) = %+v, %v", name, ri, err)
	}
	if ri, err := f.db.LookupRole(f.ctx, name+"-none"); err != nil || ri.Exists {
		t.Fatalf("LookupRole of a missing role = %+v, %v", ri, err)
	}
}

// TestLookupRoleSessionUser: an admin connection that logs in as one
// role and acts as another (role= in its options) still has the login
// as its admin: LookupRole of the login reports IsAdmin, so that no
// static role takes it over and locks the connection out.
func TestLookupRoleSessionUser(t *testing.T) {
	f := setup(t)
	login, group := newName(t, "lessor-login"), newName(t, "lessor-group")
	f.s.DropRolesAtCleanup(t, login, group)
	pw, _ := GeneratePassword(rand.Reader)
	admin(t, f.d, fmt.Sprintf(`CREATE ROLE %s NOLOGIN CREATEROLE`, pgx.Identifier{group}.Sanitize()))
	admin(t, f.d, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE %s`, pgx.Identifier{login}.Sanitize(), pw, pgx.Identifier{group}.Sanitize()))
	cfg := configFor(f.s, f.d.Name, login, pw)
	cfg.ConnectionURL += "&options=-c%20role%3D" + url.QueryEscape(group)
	db := connect(t, cfg)
	ri, err := db.LookupRole(f.ctx, login)
	if err != nil || !ri.Exists || !ri.IsAdmin {
		t.Fatalf("LookupRole(login of the admin connection) = %+v, %v", ri, err)
	}
	if ri, err := db.LookupRole(f.ctx, group); err != nil || !ri.IsAdmin {
		t.Fatalf("LookupRole(role the admin connection acts as) = %+v, %v", ri, err)
	}
	// CheckAdmin names the login, which a config then counts among its
	// admins, and judges the privileges of the role it acts as.
	if c, err := db.CheckAdmin(f.ctx); err != nil || c.User != login || c.Verdict != "createrole" && !strings.HasPrefix(c.Verdict, "createrole ") {
		t.Fatalf("CheckAdmin = %+v, %v", c, err)
	}
}
