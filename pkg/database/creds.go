package database

import (
	"bytes"
	"context"
	"crypto/rand"
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
// the role is committed, and adopted later by whoever meets it.
// Everything that can be refused is checked before the lease is
// recorded, so a refused request leaves nothing behind; after Prepare,
// the pending lease is discarded only when PostgreSQL certainly rolled
// the creation back.
func (b *Backend) credsRead(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var role roleEntry
	var cfg dbConfig
	var haveRole, haveCfg bool
	var roleRaw []byte
	err := req.Storage.View(ctx, func(tx storage.Tx) error {
		var err error
		// The record is kept: the lease's Check compares it.
		if roleRaw, err = tx.Get(rolePrefix + name); err != nil || roleRaw == nil {
			return err
		}
		if err := json.Unmarshal(roleRaw, &role); err != nil {
			return fmt.Errorf("decode %s: %w", rolePrefix+name, err)
		}
		haveRole = true
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

	if req.EndReads != nil {
		// The connection below may wait on the network.
		req.EndReads()
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
	pc := cfg.pluginConfig()
	var sp spare
	spared := false
	if b.spareFor(&cfg, pc) {
		sp, spared = b.spares.take()
		// Made again in the background once this issue has its
		// credential, while the response goes out.
		defer b.spares.refill(func() (string, error) { return postgres.GeneratePassword(b.rand) })
	}
	password := sp.password
	if !spared {
		if password, err = b.newPassword(ctx, req.System, &cfg); err != nil {
			return nil, fmt.Errorf("generate password for role %q: %w", name, err)
		}
	}

	// The pending lease must be durable before the role is committed,
	// not before the work on it starts. So the lease is recorded (one
	// commit, with its fdatasyncs) while, alongside, the connection is
	// made (TCP and SCRAM, several round trips, unless a pool has one
	// open) and the creation's transaction runs up to its COMMIT (the
	// password's verifier, and CREATE ROLE, which costs PostgreSQL a SCRAM
	// key derivation). COMMIT is sent once the record is committed; a
	// failure or a crash before that leaves PostgreSQL nothing to keep.
	// Only the first connection attempt runs alongside: the fallback to a
	// rotation's pending password reads and writes the store, so it runs
	// after.
	type dialed struct {
		db  *postgres.DB
		err error
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dial := make(chan dialed, 1)
	go func() {
		db, err := b.dial(dialCtx, pc)
		dial <- dialed{db, err}
	}()
	// The password's SCRAM verifier (4,096 rounds of PBKDF2) is computed
	// meanwhile too, instead of after the connection is up. If it fails,
	// CreateUser computes it again and reports why, before creating
	// anything.
	verifier := make(chan string, 1)
	if spared {
		verifier <- sp.verifier
	} else {
		go func() {
			v := ""
			if pc.SCRAM() {
				v, _ = postgres.ScramVerifier(password, rand.Reader)
			}
			verifier <- v
		}()
	}

	type recorded struct {
		lease *logical.PreparedLease
		err   error
	}
	planned := make(chan logical.PreparedLease, 1)
	record := make(chan recorded, 1)
	lr := &logical.LeaseRequest{
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
		Planned: func(p logical.PreparedLease) { planned <- p },
		// The role is created by what was read above: an operator who
		// deletes or rewrites the role, or takes it out of allowed_roles,
		// and then revokes its prefix must not miss a lease recorded
		// after that revocation.
		CheckKeys: []string{rolePrefix + name, configPrefix + role.DBName},
		Check: func(tx storage.Tx) error {
			cur, err := tx.Get(rolePrefix + name)
			if err != nil {
				return err
			}
			var now dbConfig
			found, err := getJSON(tx, configPrefix+role.DBName, &now)
			if err != nil {
				return err
			}
			if !bytes.Equal(cur, roleRaw) || !found || !now.roleAllowed(name) {
				return logical.Errorf("role %q or its connection %q changed while the request ran; nothing was issued", name, role.DBName)
			}
			return nil
		},
	}
	go func() {
		p, err := req.Leases.Prepare(ctx, lr)
		record <- recorded{p, err}
	}()
	// recordDone waits for the record once; every path below waits for it
	// before it returns.
	var rec *recorded
	recordDone := func() recorded {
		if rec == nil {
			r := <-record
			rec = &r
			if r.err == nil {
				failpoint.Hit(failpoint.IssueAfterPending)
			}
		}
		return *rec
	}
	var plan logical.PreparedLease
	select {
	case plan = <-planned:
	case r := <-record:
		// Prepare failed before it planned, or a recorder that does not
		// plan ahead finished first.
		rec = &r
		if r.err != nil {
			cancelDial()
			if d := <-dial; d.db != nil {
				d.db.Close(context.WithoutCancel(ctx))
			}
			return nil, fmt.Errorf("record lease for role %q: %w", name, r.err)
		}
		failpoint.Hit(failpoint.IssueAfterPending)
		plan = *r.lease
	}

	d := <-dial
	if d.err != nil {
		if r := recordDone(); r.err != nil {
			return nil, fmt.Errorf("record lease for role %q: %w", name, r.err)
		}
		d.db, d.err = b.retryPending(ctx, req.Storage, role.DBName, &cfg, d.err)
	}
	db, err := d.db, d.err
	if err != nil {
		// Nothing reached PostgreSQL: the pending lease goes. If that
		// fails too, reap takes the record for a dead issuer's and drops
		// it once the database answers (until then it fails, and retries,
		// like any revocation).
		cerr := fmt.Errorf("connection %q: %w", role.DBName, err)
		if derr := req.Leases.Discard(context.WithoutCancel(ctx), plan.ID); derr != nil {
			return nil, errors.Join(cerr, fmt.Errorf("discard lease %s: %w", plan.ID, derr))
		}
		return nil, cerr
	}
	defer db.Close(context.WithoutCancel(ctx))

	// The role is committed before reap may take this issue for dead
	// (plan.CreateBy), or not at all: a statement waiting on a lock, or a
	// slow server, must not commit a role whose pending record reap has
	// meanwhile settled as never created.
	createCtx := ctx
	if !plan.CreateBy.IsZero() {
		var cancelCreate context.CancelFunc
		createCtx, cancelCreate = context.WithDeadline(ctx, plan.CreateBy)
		defer cancelCreate()
	}
	creation := db.StartCreate(createCtx, postgres.CreateUserRequest{
		Username:   username,
		Password:   password,
		Expiration: plan.ExpireTime.Add(expirationBuffer),
		Statements: role.CreationStatements,
		Verifier:   <-verifier,
		Comment: RoleMetadata{
			StoreID: req.System.StoreID(), LeaseID: plan.ID, Expires: plan.ExpireTime,
		}.Comment(),
	})
	if r := recordDone(); r.err != nil {
		creation.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("record lease for role %q: %w", name, r.err)
	}
	prepared := rec.lease
	err = creation.Commit(createCtx)
	if err != nil {
		// A creation statement that failed may quote the generated
		// password, or the SQL token of it where the error arose (an
		// unquoted {{password}} under password_authentication=password).
		cerr := fmt.Errorf("role %q: %w", name, cfg.redactStatements(err, password))
		if ctx.Err() == nil && createCtx.Err() != nil {
			cerr = fmt.Errorf("role %q: not created by %s, after which reap may take this issue for dead: %w",
				name, plan.CreateBy.UTC().Format(time.RFC3339), cfg.redactStatements(err, password))
		}
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
	if err := req.Leases.Confirm(ctx, prepared.ID); err != nil {
		return nil, b.dropUnconfirmed(ctx, db, &cfg, &role, name, username, belongsTo(req.System.StoreID(), plan.ID), err)
	}

	host, port, dbName := db.Target()
	sslmode, rootcert := db.TLSSettings()
	return &logical.Response{
		Data: map[string]any{"username": username, "password": password},
		Secret: &logical.Secret{
			LeaseID: prepared.ID, TTL: prepared.TTL, Renewable: true,
		},
		Warnings:   prepared.Warnings,
		Connection: &logical.Connection{Host: host, Port: port, Database: dbName, SSLMode: sslmode, SSLRootCert: rootcert},
	}, nil
}

// dropUnconfirmed drops the role just created for a lease that Confirm
// refused: a revocation claimed the lease meanwhile, perhaps before the
// role was committed, when it had nothing to drop (or the record could
// not be read back). The credential is never handed out. Should the drop
// fail, the record a revocation kept has reap revoke the role at the end
// of the issuer's grace; a record still pending is adopted and revoked at
// its expiry.
func (b *Backend) dropUnconfirmed(ctx context.Context, db *postgres.DB, cfg *dbConfig, role *roleEntry, name, username string, belongs func(string) bool, cause error) error {
	err := fmt.Errorf("role %q: %w", name, cause)
	out := db.RevokeUsers(context.WithoutCancel(ctx), []postgres.RevokeRequest{{Username: username, Statements: role.RevocationStatements, Belongs: belongs}})
	if len(out) == 1 && out[0] != nil {
		return fmt.Errorf("%w; dropping its role failed too (reap retries it): %v", err, cfg.redact(out[0]))
	}
	return err
}

// isDefiniteFailure reports whether a failed creation certainly left
// nothing in PostgreSQL: the server answered with an error (so the
// creation transaction rolled back), or the driver failed before sending
// anything.
func isDefiniteFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) || pgconn.SafeToRetry(err) || errors.Is(err, postgres.ErrNotCreated)
}

// sqlTokens returns pw and the pieces of it that PostgreSQL's lexer can
// quote in a syntax error ("at or near ..."): within every run of
// identifier characters, each stretch at least 4 characters long (a
// number lexes apart from the letters after it, and a numeric literal
// from what follows its exponent). A sign after an E or e counts as within
// the run: a number's exponent takes it ("2E-x" is one token of trailing
// junk, which PostgreSQL quotes whole).
func sqlTokens(pw string) []string {
	out := []string{pw}
	ident := func(c byte) bool {
		return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
	}
	exponentSign := func(j int) bool {
		return (pw[j] == '-' || pw[j] == '+') && j > 0 && (pw[j-1] == 'e' || pw[j-1] == 'E')
	}
	for i := 0; i < len(pw); {
		if !ident(pw[i]) {
			i++
			continue
		}
		j := i
		for j < len(pw) && (ident(pw[j]) || exponentSign(j)) {
			j++
		}
		for a := i; a+4 <= j; a++ {
			for b := a + 4; b <= j; b++ {
				if b-a < len(pw) {
					out = append(out, pw[a:b])
				}
			}
		}
		i = j
	}
	return out
}
