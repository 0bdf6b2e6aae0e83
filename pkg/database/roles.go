package database

import (
	"context"
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

var roleFields = map[string]bool{
	"db_name": true, "creation_statements": true, "revocation_statements": true,
	"renew_statements": true, "rollback_statements": true,
	"default_ttl": true, "max_ttl": true, "credential_type": true,
}

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
func (b *Backend) roleWrite(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	d := req.Data
	if err := checkFields(d, roleFields); err != nil {
		return nil, err
	}
	return nil, req.Storage.Update(ctx, func(tx storage.Tx) error {
		r := roleEntry{CredentialType: "password"}
		if _, err := getJSON(tx, rolePrefix+name, &r); err != nil {
			return err
		}
		if err := applyRoleFields(&r, d); err != nil {
			return err
		}
		if r.DBName == "" {
			return logical.Errorf("database name is required")
		}
		if err := checkName(r.DBName); err != nil {
			return err
		}
		return putJSON(tx, rolePrefix+name, &r)
	})
}

func applyRoleFields(r *roleEntry, d map[string]any) error {
	if v, ok := d["db_name"]; ok {
		s, err := parseString("db_name", v)
		if err != nil {
			return err
		}
		r.DBName = s
	}
	for field, dst := range map[string]*[]string{
		"creation_statements":   &r.CreationStatements,
		"revocation_statements": &r.RevocationStatements,
		"renew_statements":      &r.RenewStatements,
		"rollback_statements":   &r.RollbackStatements,
	} {
		if v, ok := d[field]; ok {
			s, err := parseStatements(field, v)
			if err != nil {
				return err
			}
			*dst = s
		}
	}
	for field, dst := range map[string]*int64{"default_ttl": &r.DefaultTTL, "max_ttl": &r.MaxTTL} {
		if v, ok := d[field]; ok {
			dur, err := parseDurationSecond(field, v)
			if err != nil {
				return err
			}
			*dst = int64(dur / time.Second)
		}
	}
	if v, ok := d["credential_type"]; ok {
		s, err := parseString("credential_type", v)
		if err != nil {
			return err
		}
		if s != "" && s != "password" {
			return logical.Errorf("unsupported credential_type %q: only \"password\" is supported", s)
		}
	}
	return nil
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
