// Package database is lessor's database secrets engine: the backend behind
// a mount of type "database" (config/, roles/, creds/, rotate-root/,
// reset/), with Vault's paths, field names, defaults and messages, on top
// of the PostgreSQL plugin in pkg/database/postgres.
//
// What it promises beyond Vault:
//
//   - Issuing never leaves a database role without a lease record. The
//     lease is committed as pending (req.Leases.Prepare) before PostgreSQL
//     is asked to create anything; the creation statements, VALID UNTIL and
//     a COMMENT ON ROLE naming the store and the lease run in one
//     PostgreSQL transaction; a pending lease is discarded only when that
//     transaction certainly rolled back. Anything in between is left for
//     reap, which can always tell lessor's roles by their comment
//     (RoleMetadata).
//   - Rotating the admin password cannot lock lessor out: the new password
//     is stored as pending before ALTER ROLE runs, adopted only after a
//     fresh login with it succeeds, and tried automatically whenever the
//     stored password is refused.
//   - No store transaction is held across a PostgreSQL call, and nothing is
//     cached between requests: every request that needs the database opens
//     one connection and closes it, unless Options.Pool (lessor serve)
//     keeps a few open per connection config.
//   - The admin password is never returned by a read, never put into an
//     error, and a password written inline in connection_url is redacted.
//
// Storage layout under the mount's view (values are JSON):
//
//	config/<name>               connection (dbConfig)
//	role/<name>                 role (roleEntry)
//	rotate-root-pending/<name>  admin password being rotated (pendingRoot)
//	static-role/, static-due/, static-user/   static roles (see static.go)
package database

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Options configure a Backend.
type Options struct {
	// Rand is the source of passwords and of the random part of usernames;
	// nil means crypto/rand.
	Rand io.Reader
	// Pool, when set, keeps admin connections open between requests (a
	// long-running server); nil, as on the command line, opens one
	// connection per request and closes it.
	Pool *postgres.Pool
	// ForeignCallers is set by `lessor serve`, and when another user runs
	// lessor through sudo: a config writer is then not the account lessor
	// runs as, and may not have the driver read that account's files (see
	// foreignConnection).
	ForeignCallers bool
}

// Backend is the database secrets engine. It keeps no state of its own
// between requests, so one value may serve any number of mounts.
type Backend struct {
	rand    io.Reader
	pool    *postgres.Pool
	foreign bool

	// spares are passwords made ready with their verifiers, on a server
	// (nil on the command line; see spare.go).
	spares *spares

	// idle holds the connections RevokeSecrets keeps for the next batch,
	// until CloseIdle.
	idle idleConns

	// testOnlyAfterRotate, when set, runs after PostgreSQL accepted a new
	// admin password and before lessor verified and stored it; an error
	// stops rotate-root there, as a crash would.
	testOnlyAfterRotate func() error
}

var _ logical.SecretBackend = (*Backend)(nil)

// New returns the database secrets engine.
func New(o Options) *Backend {
	r := o.Rand
	if r == nil {
		r = rand.Reader
	}
	b := &Backend{rand: r, pool: o.Pool, foreign: o.ForeignCallers}
	if o.Pool != nil {
		b.spares = newSpares()
	}
	return b
}

// dial opens an admin connection with cfg, from the pool when there is
// one; Close on the DB gives it back.
func (b *Backend) dial(ctx context.Context, cfg postgres.Config) (*postgres.DB, error) {
	if b.pool != nil {
		return b.pool.Connect(ctx, cfg)
	}
	return postgres.Connect(ctx, cfg)
}

const (
	configPrefix  = "config/"
	rolePrefix    = "role/"
	pendingPrefix = "rotate-root-pending/"
)

// fieldsFor returns the fields a path knows for a write; every other
// request knows none. Any other field is ignored, with Vault's warning.
func fieldsFor(path string, op logical.Operation) logical.FieldSchema {
	if op != logical.CreateOperation && op != logical.UpdateOperation {
		return nil
	}
	switch head, _, _ := strings.Cut(path, "/"); head {
	case "config":
		return configFields
	case "roles":
		return roleFields
	case "static-roles":
		return staticRoleFields
	}
	return nil
}

// HoldsReads implements logical.ReadsHolder: issuing a credential reads
// the role and its connection, then ends the hold before it connects.
func (b *Backend) HoldsReads(req *logical.Request) bool {
	return req.Operation == logical.ReadOperation && strings.HasPrefix(req.Path, "creds/")
}

// HandleRequest reads the request's fields against the path's schema,
// routes it by the path below the mount, and warns about the fields the
// path does not know.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	fd, err := logical.ParseFields(fieldsFor(req.Path, req.Operation), req.Data)
	if err != nil {
		return nil, err
	}
	resp, err := b.route(ctx, req, fd)
	if err != nil {
		return nil, err
	}
	return logical.WarnIgnored(resp, fd.Unknown), nil
}

// namedHeads are the paths whose second segment is a name.
var namedHeads = []string{"config", "roles", "creds", "static-roles", "static-creds", "rotate-role", "rotate-root", "reset"}

func (b *Backend) route(ctx context.Context, req *logical.Request, fd *logical.FieldData) (*logical.Response, error) {
	head, name, hasName := strings.Cut(req.Path, "/")
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation

	switch {
	case (head == "config" || head == "roles" || head == "static-roles") && name == "":
		if op != logical.ListOperation {
			return nil, logical.UnsupportedOperation(req)
		}
		prefix := configPrefix
		switch head {
		case "roles":
			prefix = rolePrefix
		case "static-roles":
			prefix = staticPrefix
		}
		return b.list(ctx, req.Storage, prefix)
	case !hasName, op == logical.ListOperation, !slices.Contains(namedHeads, head):
		// Only the collections above list: a list below one (roles/readonly/)
		// or of creds/ names no entry, and its trailing slash would
		// otherwise be reported as a bad name, as would a name under a
		// path the engine does not serve.
		return nil, logical.UnsupportedPath(req)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}

	switch head {
	case "config":
		switch {
		case write:
			return b.configWrite(ctx, req, name, fd)
		case op == logical.ReadOperation:
			return b.configRead(ctx, req, name)
		case op == logical.DeleteOperation:
			return nil, b.configDelete(ctx, req, name)
		}
	case "roles":
		switch {
		case write:
			return b.roleWrite(ctx, req, name, fd)
		case op == logical.ReadOperation:
			return b.roleRead(ctx, req, name)
		case op == logical.DeleteOperation:
			return nil, req.Storage.Update(ctx, func(tx storage.Tx) error { return tx.Delete(rolePrefix + name) })
		}
	case "creds":
		if op == logical.ReadOperation {
			return b.credsRead(ctx, req, name)
		}
	case "static-roles":
		switch {
		case write:
			return b.staticWrite(ctx, req, name, fd)
		case op == logical.ReadOperation:
			return b.staticRead(ctx, req, name)
		case op == logical.DeleteOperation:
			return nil, b.staticDelete(ctx, req, name)
		}
	case "static-creds":
		if op == logical.ReadOperation {
			return b.staticCredsRead(ctx, req, name)
		}
	case "rotate-role":
		if write {
			return nil, b.rotateRole(ctx, req, name)
		}
	case "rotate-root":
		if write {
			return nil, b.rotateRoot(ctx, req, name)
		}
	case "reset":
		if write {
			return nil, b.reset(ctx, req, name)
		}
	default:
		return nil, logical.UnsupportedPath(req)
	}
	return nil, logical.UnsupportedOperation(req)
}

// CanonicalData puts the list, statements and boolean fields of a write
// in the shape the backend stores them, before the ACL checks them:
// otherwise a deny on "admin" in denied_parameters did not stop
// allowed_roles="readonly,admin", a deny on disable_escaping=true the
// value "1", nor a deny on a statement the same SQL sent in base64.
func (b *Backend) CanonicalData(req *logical.Request) error {
	fieldsFor(req.Path, logical.UpdateOperation).Canonicalize(req.Data)
	return nil
}

// ExistenceCheck lets the ACL tell creating a connection or a role from
// updating one. Other paths have no existence check.
func (b *Backend) ExistenceCheck(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	head, name, _ := strings.Cut(req.Path, "/")
	var key string
	switch head {
	case "config":
		key = configPrefix + name
	case "roles":
		key = rolePrefix + name
	case "static-roles":
		key = staticPrefix + name
	default:
		return false, false, nil
	}
	if name == "" || checkName(name) != nil {
		// The handler rejects the request; there is nothing to find.
		return true, false, nil
	}
	err = req.Storage.View(ctx, func(tx storage.Tx) error {
		v, err := tx.Get(key)
		exists = v != nil
		return err
	})
	return true, exists, err
}

func (b *Backend) list(ctx context.Context, st storage.Store, prefix string) (*logical.Response, error) {
	var keys []string
	err := st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(prefix, func(k string) error {
			keys = append(keys, strings.TrimPrefix(k, prefix))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		// Vault answers an empty list with 404, which the CLI shows as
		// "No value found at …".
		return nil, nil
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

// getJSON decodes the value at key into v and reports whether it existed.
func getJSON(tx storage.Tx, key string, v any) (bool, error) {
	raw, err := tx.Get(key)
	if err != nil || raw == nil {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func putJSON(tx storage.Tx, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return tx.Put(key, raw)
}
