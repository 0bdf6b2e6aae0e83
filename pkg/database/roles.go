package database

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// roleEntry is a stored dynamic role, role/<name>.
type roleEntry struct {
	DBName               string   `json:"db_name"`
	CreationStatements   []string `json:"creation_statements"`
	RevocationStatements []string `json:"revocation_statements"`
	RenewStatements      []string `json:"renew_statements"`
	RollbackStatements   []string `json:"rollback_statements"`
	// TTLs in whole seconds; 0 inherits from the mount.
	DefaultTTL     int64  `json:"default_ttl"`
	MaxTTL         int64  `json:"max_ttl"`
	CredentialType string `json:"credential_type"`
}

func (r *roleEntry) defaultTTL() time.Duration { return time.Duration(r.DefaultTTL) * time.Second }
func (r *roleEntry) maxTTL() time.Duration     { return time.Duration(r.MaxTTL) * time.Second }

func (b *Backend) loadRole(ctx context.Context, st storage.Store, name string) (*roleEntry, error) {
	var r roleEntry
	var found bool
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		found, err = getJSON(tx, rolePrefix+name, &r)
		return err
	})
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// roleWrite creates a role or updates one; fields left out keep their
// stored values. Whether db_name names an existing connection is checked
// when credentials are issued, as in Vault.
func (b *Backend) roleWrite(ctx context.Context, req *logical.Request, name string, fd *logical.FieldData) (*logical.Response, error) {
	if ct := fd.String("credential_type"); ct != "" && ct != "password" {
		return nil, logical.Errorf("unsupported credential_type %q: only \"password\" is supported", ct)
	}
	var r roleEntry
	err := req.Storage.Update(ctx, func(tx storage.Tx) error {
		r = roleEntry{CredentialType: "password"}
		if _, err := getJSON(tx, rolePrefix+name, &r); err != nil {
			return err
		}
		if raw, err := tx.Get(staticPrefix + name); err != nil || raw != nil {
			if err == nil {
				err = logical.Errorf("Role and Static Role names must be unique")
			}
			return err
		}
		applyRoleFields(&r, fd)
		if r.DBName == "" {
			return logical.Errorf("database name is required")
		}
		if err := checkName(r.DBName); err != nil {
			return err
		}
		return putJSON(tx, rolePrefix+name, &r)
	})
	if err != nil {
		return nil, err
	}
	var resp *logical.Response
	for _, attr := range escapingAttributes(r.CreationStatements) {
		if resp == nil {
			resp = &logical.Response{}
		}
		resp.AddWarning("creation_statements give each credential %s: it could make roles of its own, or rewrite the comment that marks its role as this lease's, and neither is undone by its revocation; grant what the application needs (a group role) instead", attr)
	}
	if signalsBackends(r.CreationStatements) {
		if resp == nil {
			resp = &logical.Response{}
		}
		resp.AddWarning("creation_statements give each credential pg_signal_backend: with a session open it can end the sessions of every role but a superuser, an admin's that is not one included, and so keep lessor from issuing or revoking any credential, its own too; use a superuser admin, or grant the application what it needs without it")
	}
	return resp, nil
}

// signalBackendRE finds the predefined role that lets a session end
// others' sessions.
var signalBackendRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)\bpg_signal_backend\b`)
})

// signalsBackends tells whether the statements name pg_signal_backend,
// which lessor does not read further: a statement naming it grants it,
// or means to.
func signalsBackends(statements []string) bool {
	return slices.ContainsFunc(statements, signalBackendRE().MatchString)
}

// escapingAttrRE finds role attributes written in statements, with their
// NO prefix when negated.
var escapingAttrRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)\b(NO)?(SUPERUSER|CREATEROLE)\b`)
})

// escapingAttributes lists the role attributes, among those that let a
// credential outlive its revocation (SUPERUSER, CREATEROLE), that the
// statements grant.
func escapingAttributes(statements []string) []string {
	var out []string
	for _, st := range statements {
		for _, m := range escapingAttrRE().FindAllStringSubmatch(st, -1) {
			if a := strings.ToUpper(m[2]); m[1] == "" && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// applyRoleFields sets the fields that were sent; the others keep their
// stored values. Statements arrive decoded (base64, JSON arrays) by the
// schema, so what is stored and read back is the SQL that runs.
func applyRoleFields(r *roleEntry, fd *logical.FieldData) {
	if fd.Has("db_name") {
		r.DBName = fd.String("db_name")
	}
	for field, dst := range map[string]*[]string{
		"creation_statements":   &r.CreationStatements,
		"revocation_statements": &r.RevocationStatements,
		"renew_statements":      &r.RenewStatements,
		"rollback_statements":   &r.RollbackStatements,
	} {
		if fd.Has(field) {
			*dst = fd.Strings(field)
		}
	}
	for field, dst := range map[string]*int64{"default_ttl": &r.DefaultTTL, "max_ttl": &r.MaxTTL} {
		if fd.Has(field) {
			*dst = int64(fd.Duration(field) / time.Second)
		}
	}
}

func (b *Backend) roleRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	r, err := b.loadRole(ctx, req.Storage, name)
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"db_name":               r.DBName,
		"creation_statements":   nonNil(r.CreationStatements),
		"revocation_statements": nonNil(r.RevocationStatements),
		"renew_statements":      nonNil(r.RenewStatements),
		"rollback_statements":   nonNil(r.RollbackStatements),
		"default_ttl":           r.DefaultTTL,
		"max_ttl":               r.MaxTTL,
		"credential_type":       "password",
	}}, nil
}
