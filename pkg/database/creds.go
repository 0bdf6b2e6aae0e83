package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// expirationBuffer keeps a database login valid a little longer than its
// lease, as Vault does, so that the lease (and its revocation) always ends
// first.
const expirationBuffer = 5 * time.Second

// CommentPrefix starts the COMMENT ON ROLE of every role lessor creates;
// reap lists roles by it and never touches a role without it.
const CommentPrefix = "lessor:"

// RoleMetadata is what lessor writes into the comment of each role it
// creates, so that the role can be tied back to its lease, or recognised
// as lessor's when the lease record is gone.
type RoleMetadata struct {
	StoreID string    // the store that issued the role (SystemView.StoreID)
	LeaseID string    // the lease the role belongs to
	Expires time.Time // the lease's expiry when the role was created
}

type roleComment struct {
	Store   string `json:"store"`
	Lease   string `json:"lease"`
	Expires string `json:"expires"`
}

// Comment returns the role comment: CommentPrefix followed by compact JSON
// {"store":…,"lease":…,"expires":…}, expires in RFC 3339 UTC.
func (m RoleMetadata) Comment() string {
	raw, _ := json.Marshal(roleComment{
		Store:   m.StoreID,
		Lease:   m.LeaseID,
		Expires: m.Expires.UTC().Truncate(time.Second).Format(time.RFC3339),
	})
	return CommentPrefix + string(raw)
}

// ErrNotLessorComment is returned by ParseRoleComment for a comment that
// lessor did not write.
var ErrNotLessorComment = errors.New("not a lessor role comment")

// ParseRoleComment reads back what RoleMetadata.Comment wrote. A comment
// without CommentPrefix gives ErrNotLessorComment; one with the prefix
// but a damaged body gives another error.
func ParseRoleComment(comment string) (RoleMetadata, error) {
	body, ok := strings.CutPrefix(comment, CommentPrefix)
	if !ok {
		return RoleMetadata{}, ErrNotLessorComment
	}
	var rc roleComment
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return RoleMetadata{}, fmt.Errorf("parse role comment: %w", err)
	}
	if rc.Store == "" || rc.Lease == "" {
		return RoleMetadata{}, fmt.Errorf("parse role comment: store or lease missing")
	}
	exp, err := time.Parse(time.RFC3339, rc.Expires)
	if err != nil {
		return RoleMetadata{}, fmt.Errorf("parse role comment: %w", err)
	}
	return RoleMetadata{StoreID: rc.Store, LeaseID: rc.Lease, Expires: exp.UTC()}, nil
}

// credsRead issues a credential: the lease is recorded (pending) before
// the role is created, and activated after. Everything that can be
// refused is checked before the lease is recorded, so a refused request
// leaves nothing behind; after Prepare, the pending lease is discarded
// only when PostgreSQL certainly rolled the creation back.
func (b *Backend) credsRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var role roleEntry
	var cfg dbConfig
	var haveRole, haveCfg bool
	err := req.Storage.View(ctx, func(tx storage.Tx) error {
		var err error
		if haveRole, err = getJSON(tx, rolePrefix+name, &role); err != nil || !haveRole {
			return err
		}
		haveCfg, err = getJSON(tx, configPrefix+role.DBName, &cfg)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !haveRole:
		return nil, logical.Errorf("unknown role: %s", name)
	case !haveCfg:
		return nil, missingConfig(role.DBName)
	case !cfg.roleAllowed(name):
		return nil, fmt.Errorf("%q is not an allowed role", name)
	case len(role.CreationStatements) == 0:
		return nil, fmt.Errorf("empty creation statements")
	}

	tmpl := cfg.Connection.UsernameTemplate
	if tmpl == "" {
		tmpl = postgres.DefaultUsernameTemplate
	}
	username, err := postgres.RenderUsername(tmpl, postgres.UsernameMetadata{
		DisplayName: req.DisplayName, RoleName: name, Now: req.System.Now(),
	}, b.rand)
	if err != nil {
		return nil, fmt.Errorf("generate username for role %q: %w", name, err)
	}
	password, err := b.newPassword(ctx, req.System, &cfg)
	if err != nil {
		return nil, fmt.Errorf("generate password for role %q: %w", name, err)
	}

	// Connecting creates nothing, so the handshake with PostgreSQL (TCP
	// and SCRAM, several round trips) runs while the pending lease is
	// committed (two fdatasyncs), and neither waits for the other. Only
	// the first attempt runs alongside: the fallback to a rotation's
	// pending password reads and writes the store, so it runs after.
	type dialed struct {
		db  *postgres.DB
		err error
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dial := make(chan dialed, 1)
	pc := cfg.pluginConfig()
	go func() {
		db, err := b.dial(dialCtx, pc)
		dial <- dialed{db, err}
	}()

	prepared, err := req.Leases.Prepare(ctx, &logical.LeaseRequest{
		Path:      req.MountPoint + req.Path,
		TTL:       role.defaultTTL(),
		MaxTTL:    role.maxTTL(),
		Renewable: true,
		InternalData: map[string]any{
			"username":              username,
			"db_name":               role.DBName,
			"role":                  name,
			"revocation_statements": nonNil(role.RevocationStatements),
			"renew_statements":      nonNil(role.RenewStatements),
		},
	})
	if err != nil {
		cancelDial()
		if d := <-dial; d.db != nil {
			d.db.Close(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("record lease for role %q: %w", name, err)
	}
	failpoint.Hit(failpoint.IssueAfterPending)

	d := <-dial
	db, err := d.db, d.err
	if err != nil {
		db, err = b.retryPending(ctx, req.Storage, role.DBName, &cfg, err)
	}
	if err != nil {
		// Nothing reached PostgreSQL: the pending lease goes. If that
		// fails too, reap takes the record for a dead issuer's and drops
		// it once the database answers (until then it fails, and retries,
		// like any revocation).
		cerr := fmt.Errorf("connection %q: %w", role.DBName, err)
		if derr := req.Leases.Discard(context.WithoutCancel(ctx), prepared.ID); derr != nil {
			return nil, errors.Join(cerr, fmt.Errorf("discard lease %s: %w", prepared.ID, derr))
		}
		return nil, cerr
	}
	defer db.Close(context.WithoutCancel(ctx))

	err = db.CreateUser(ctx, postgres.CreateUserRequest{
		Username:   username,
		Password:   password,
		Expiration: prepared.ExpireTime.Add(expirationBuffer),
		Statements: role.CreationStatements,
		Comment: RoleMetadata{
			StoreID: req.System.StoreID(), LeaseID: prepared.ID, Expires: prepared.ExpireTime,
		}.Comment(),
	})
	if err != nil {
		cerr := fmt.Errorf("role %q: %w", name, cfg.redact(err))
		if isDefiniteFailure(err) {
			if derr := req.Leases.Discard(context.WithoutCancel(ctx), prepared.ID); derr != nil {
				return nil, errors.Join(cerr, fmt.Errorf("discard lease %s: %w", prepared.ID, derr))
			}
			return nil, cerr
		}
		// Otherwise the role may exist (say, the connection broke during
		// COMMIT) and carry this lease's mark, but nobody holds its
		// password: the lease is due for revocation now, not adopted. If
		// even that fails, the pending lease is adopted and revoked at
		// its expiry.
		if aerr := req.Leases.Abandon(context.WithoutCancel(ctx), prepared.ID); aerr != nil {
			return nil, errors.Join(cerr, fmt.Errorf("abandon lease %s: %w", prepared.ID, aerr))
		}
		return nil, cerr
	}
	failpoint.Hit(failpoint.IssueAfterCreate)

	host, port, dbName := db.Target()
	return &logical.Response{
		Data: map[string]any{"username": username, "password": password},
		Secret: &logical.Secret{
			LeaseID: prepared.ID, TTL: prepared.TTL, Renewable: true,
		},
		Warnings:   prepared.Warnings,
		Connection: &logical.Connection{Host: host, Port: port, Database: dbName},
	}, nil
}

// isDefiniteFailure reports whether a failed creation certainly left
// nothing in PostgreSQL: the server answered with an error (so the
// creation transaction rolled back), or the driver failed before sending
// anything.
func isDefiniteFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) || pgconn.SafeToRetry(err) || errors.Is(err, postgres.ErrNotCreated)
}
