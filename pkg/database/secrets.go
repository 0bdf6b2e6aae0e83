package database

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// issued is what a lease's internal data says about its database role.
type issued struct {
	username, dbName, role string
	revocation, renewStmts []string
}

func issuedFrom(s *logical.SecretRequest) (issued, error) {
	str := func(k string) string { v, _ := s.InternalData[k].(string); return v }
	is := issued{
		username:   str("username"),
		dbName:     str("db_name"),
		role:       str("role"),
		revocation: logical.StringList(s.InternalData["revocation_statements"]),
		renewStmts: logical.StringList(s.InternalData["renew_statements"]),
	}
	if is.username == "" || is.dbName == "" {
		return is, fmt.Errorf("lease %s: internal data names no username or db_name", s.LeaseID)
	}
	return is, nil
}

func noRole(name string) error {
	return fmt.Errorf("could not find role with name %q", name)
}

// SecretLimits returns the issuing role's current default_ttl and
// max_ttl; a lease whose role was deleted can no longer be renewed.
func (b *Backend) SecretLimits(ctx context.Context, s *logical.SecretRequest) (ttl, maxTTL time.Duration, err error) {
	is, err := issuedFrom(s)
	if err != nil {
		return 0, 0, err
	}
	r, err := b.loadRole(ctx, s.Storage, is.role)
	if err != nil {
		return 0, 0, err
	}
	if r == nil {
		return 0, 0, noRole(is.role)
	}
	return r.defaultTTL(), r.maxTTL(), nil
}

// RenewSecret moves the role's VALID UNTIL to expiration plus the same
// buffer as at issue, with the role's current renew_statements. The
// connection is the one the role was created through (the lease's
// db_name), even if the role now points elsewhere.
func (b *Backend) RenewSecret(ctx context.Context, s *logical.SecretRequest, expiration time.Time) error {
	is, err := issuedFrom(s)
	if err != nil {
		return err
	}
	var role roleEntry
	var cfg dbConfig
	var haveRole, haveCfg bool
	err = s.Storage.View(ctx, func(tx storage.Tx) error {
		var err error
		if haveRole, err = getJSON(tx, rolePrefix+is.role, &role); err != nil {
			return err
		}
		haveCfg, err = getJSON(tx, configPrefix+is.dbName, &cfg)
		return err
	})
	switch {
	case err != nil:
		return err
	case !haveRole:
		return noRole(is.role)
	case !haveCfg:
		return missingConfig(is.dbName)
	}
	db, err := b.open(ctx, s.Storage, is.dbName, &cfg)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if err := db.RenewUser(ctx, is.username, expiration.Add(expirationBuffer), role.RenewStatements, belongsTo(s.System.StoreID(), s.LeaseID)); err != nil {
		return cfg.redact(err)
	}
	return nil
}

// belongsTo claims a role whose comment names this store and this lease:
// revocation drops only such a role, never another of the same name.
//
// A comment exactly as RoleMetadata.Comment wrote it for this store and
// lease is claimed without a JSON decoder: reap asks this of every role it
// drops, and decoding each comment was a tenth of its own CPU. What the
// short cut accepts, ParseRoleComment accepts with the same store and
// lease (the expiry is checked as RFC 3339, and holds no quote or
// backslash that could change the JSON around it); anything else is
// decided by ParseRoleComment.
func belongsTo(storeID, leaseID string) func(comment string) bool {
	var head string
	if storeID != "" && leaseID != "" {
		s, err1 := json.Marshal(storeID)
		l, err2 := json.Marshal(leaseID)
		if err1 == nil && err2 == nil {
			head = CommentPrefix + `{"store":` + string(s) + `,"lease":` + string(l) + `,"expires":"`
		}
	}
	return func(c string) bool {
		if head != "" {
			if rest, ok := strings.CutPrefix(c, head); ok {
				if exp, ok := strings.CutSuffix(rest, `"}`); ok && !strings.ContainsAny(exp, `"\`) {
					if _, err := time.Parse(time.RFC3339, exp); err == nil {
						return true
					}
				}
			}
		}
		m, err := ParseRoleComment(c)
		return err == nil && m.StoreID == storeID && m.LeaseID == leaseID
	}
}

// RevokeSecrets drops the roles behind the given leases: one connection
// per database connection config and one RevokeUsers batch on it. Each
// role is revoked with its role's current revocation_statements, or, when
// the role was deleted, with the statements recorded at issue.
func (b *Backend) RevokeSecrets(ctx context.Context, ss []*logical.SecretRequest) []error {
	errs := make([]error, len(ss))
	type item struct {
		idx int
		is  issued
	}
	type group struct {
		st    storage.Store
		name  string
		items []item
	}
	var groups []*group
	byKey := map[string]*group{}
	for i, s := range ss {
		is, err := issuedFrom(s)
		if err != nil {
			errs[i] = err
			continue
		}
		// A backend call carries one mount's leases, so one storage;
		// keying by it as well keeps a mixed batch correct anyway.
		key := fmt.Sprintf("%p\x00%s", s.Storage, is.dbName)
		g := byKey[key]
		if g == nil {
			g = &group{st: s.Storage, name: is.dbName}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, item{i, is})
	}

	for _, g := range groups {
		fail := func(err error) {
			for _, it := range g.items {
				errs[it.idx] = err
			}
		}
		var cfg dbConfig
		var haveCfg bool
		live := map[string]*roleEntry{}
		err := g.st.View(ctx, func(tx storage.Tx) error {
			var err error
			if haveCfg, err = getJSON(tx, configPrefix+g.name, &cfg); err != nil {
				return err
			}
			for _, it := range g.items {
				if _, seen := live[it.is.role]; seen || it.is.role == "" {
					continue
				}
				var r roleEntry
				found, err := getJSON(tx, rolePrefix+it.is.role, &r)
				if err != nil {
					return err
				}
				live[it.is.role] = nil
				if found {
					live[it.is.role] = &r
				}
			}
			return nil
		})
		if err != nil {
			fail(err)
			continue
		}
		if !haveCfg {
			fail(missingConfig(g.name))
			continue
		}
		key := idleKey(&cfg)
		db := b.idle.take(key)
		if db == nil {
			if db, err = b.open(ctx, g.st, g.name, &cfg); err != nil {
				fail(err)
				continue
			}
		}
		reqs := make([]postgres.RevokeRequest, len(g.items))
		for i, it := range g.items {
			stmts := it.is.revocation
			if r := live[it.is.role]; r != nil {
				stmts = r.RevocationStatements
			}
			s := ss[it.idx]
			reqs[i] = postgres.RevokeRequest{Username: it.is.username, Statements: stmts, Belongs: belongsTo(s.System.StoreID(), s.LeaseID)}
		}
		out := db.RevokeUsers(ctx, reqs)
		for i, it := range g.items {
			switch {
			case i >= len(out):
				errs[it.idx] = errors.New("plugin returned no result")
			case out[i] != nil:
				errs[it.idx] = cfg.redact(out[i])
			}
		}
		// The connection waits for the next batch of this run (reap's
		// batches come one after another); CloseIdle ends it.
		b.idle.put(key, db)
	}
	return errs
}

// CloseIdle closes the connections RevokeSecrets kept (logical.IdleCloser).
func (b *Backend) CloseIdle(ctx context.Context) {
	for _, db := range b.idle.drain() {
		// The revocations have run; a failed close changes nothing about
		// their outcome.
		db.Close(context.WithoutCancel(ctx))
	}
}

// idleConns are open admin connections by idleKey.
type idleConns struct {
	mu    sync.Mutex
	conns map[string][]*postgres.DB
}

// idleKey names what a connection was opened with: its configuration (a
// changed password or URL is another key, so a kept connection never
// outlives its configuration). Two mounts whose connections are
// configured alike may share one.
func idleKey(cfg *dbConfig) string {
	raw, _ := json.Marshal(cfg)
	sum := sha256.Sum256(raw)
	return string(sum[:])
}

func (c *idleConns) take(key string) *postgres.DB {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.conns[key]
	if len(l) == 0 {
		return nil
	}
	db := l[len(l)-1]
	c.conns[key] = l[:len(l)-1]
	return db
}

func (c *idleConns) put(key string, db *postgres.DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string][]*postgres.DB{}
	}
	c.conns[key] = append(c.conns[key], db)
}

func (c *idleConns) drain() []*postgres.DB {
	c.mu.Lock()
	defer c.mu.Unlock()
	var all []*postgres.DB
	for _, l := range c.conns {
		all = append(all, l...)
	}
	c.conns = nil
	return all
}

// SecretsCreated tells, for the pending leases given, whether their role
// exists and its comment names this store and that lease: the mark of a
// creation that committed in PostgreSQL. One connection per database
// connection config and one catalog query on it.
func (b *Backend) SecretsCreated(ctx context.Context, ss []*logical.SecretRequest) ([]bool, error) {
	out := make([]bool, len(ss))
	byDB := map[string][]int{}
	var order []string
	for i, s := range ss {
		is, err := issuedFrom(s)
		if err != nil {
			return nil, err
		}
		if _, ok := byDB[is.dbName]; !ok {
			order = append(order, is.dbName)
		}
		byDB[is.dbName] = append(byDB[is.dbName], i)
	}
	for _, name := range order {
		idx := byDB[name]
		st := ss[idx[0]].Storage
		var cfg dbConfig
		var haveCfg bool
		if err := st.View(ctx, func(tx storage.Tx) error {
			var err error
			haveCfg, err = getJSON(tx, configPrefix+name, &cfg)
			return err
		}); err != nil {
			return nil, err
		}
		if !haveCfg {
			return nil, missingConfig(name)
		}
		db, err := b.open(ctx, st, name, &cfg)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(idx))
		for k, i := range idx {
			is, _ := issuedFrom(ss[i])
			names[k] = is.username
		}
		comments, err := db.RoleComments(ctx, names)
		db.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, cfg.redact(err)
		}
		for k, i := range idx {
			c, ok := comments[names[k]]
			if !ok {
				continue
			}
			out[i] = belongsTo(ss[i].System.StoreID(), ss[i].LeaseID)(c)
		}
	}
	return out, nil
}
