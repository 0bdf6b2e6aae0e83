package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// pendingRoot is an admin password that rotate-root has generated and may
// have set in PostgreSQL, but has not yet verified and stored in the
// config. It lives at rotate-root-pending/<name> until one of the two
// passwords is known to be the right one.
type pendingRoot struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Created  time.Time `json:"created"`
}

// isAuthFailure reports whether PostgreSQL refused the password
// (SQLSTATE 28P01, invalid_password).
func isAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "28P01"
}

// open is connect with the connection's name on its error.
func (b *Backend) open(ctx context.Context, st storage.Store, name string, cfg *dbConfig) (*postgres.DB, error) {
	db, err := b.connect(ctx, st, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("connection %q: %w", name, err)
	}
	return db, nil
}

// connect connects with the stored admin credentials. When PostgreSQL
// refuses the stored password and a rotation left a pending one, connect
// tries the pending password; if that works, the rotation had reached
// PostgreSQL, so the pending password becomes the stored one and cfg is
// updated.
func (b *Backend) connect(ctx context.Context, st storage.Store, name string, cfg *dbConfig) (*postgres.DB, error) {
	db, err := b.dial(ctx, cfg.pluginConfig())
	if err == nil {
		return db, nil
	}
	return b.retryPending(ctx, st, name, cfg, err)
}

// retryPending is connect after the stored password's attempt failed with
// err: it tries the pending password of an unfinished rotation, if any.
func (b *Backend) retryPending(ctx context.Context, st storage.Store, name string, cfg *dbConfig, err error) (*postgres.DB, error) {
	connErr := cfg.redact(err)
	if !isAuthFailure(err) {
		return nil, connErr
	}
	var p pendingRoot
	var found bool
	if err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		found, err = getJSON(tx, pendingPrefix+name, &p)
		return err
	}); err != nil {
		return nil, errors.Join(connErr, err)
	}
	if !found || p.Username != cfg.Connection.Username || p.Password == cfg.Connection.Password {
		return nil, connErr
	}
	alt := *cfg
	alt.Connection.Password = p.Password
	db, err := postgres.Connect(ctx, alt.pluginConfig())
	if err != nil {
		// Neither password works; report the stored one's failure.
		return nil, connErr
	}
	if err := adoptPending(ctx, st, name, p.Username, cfg.Connection.Password, p.Password, p.Created); err != nil {
		db.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store the rotated admin password: %w", err)
	}
	cfg.Connection.Password = p.Password
	return db, nil
}

// configIn reads the connection config name in tx; a missing one is an
// error.
func configIn(tx storage.Tx, name string) (*dbConfig, error) {
	var cur dbConfig
	found, err := getJSON(tx, configPrefix+name, &cur)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, missingConfig(name)
	}
	return &cur, nil
}

// adoptPending makes a verified password the stored one and drops the
// pending record, unless the config changed meanwhile (another process
// finished the rotation, or an operator wrote new credentials).
func adoptPending(ctx context.Context, st storage.Store, name, username, oldPassword, newPassword string, now time.Time) error {
	return st.Update(ctx, func(tx storage.Tx) error {
		cur, err := configIn(tx, name)
		if err != nil {
			return err
		}
		switch cur.Connection.Password {
		case oldPassword:
			cur.Connection.Password = newPassword
			if err := putJSON(tx, configPrefix+name, cur); err != nil {
				return err
			}
		case newPassword:
		default:
			// Someone else stored other credentials meanwhile, but
			// PostgreSQL may hold this password now: it stays pending, to
			// be tried when the stored one is refused. If another
			// rotation already settled and dropped the record, it is
			// written again (unless another rotation holds it now).
			var p pendingRoot
			pfound, err := getJSON(tx, pendingPrefix+name, &p)
			if err != nil || pfound {
				return err
			}
			return putJSON(tx, pendingPrefix+name, &pendingRoot{Username: username, Password: newPassword, Created: now})
		}
		var p pendingRoot
		pfound, err := getJSON(tx, pendingPrefix+name, &p)
		if err != nil {
			return err
		}
		if pfound && p.Password == newPassword {
			return tx.Delete(pendingPrefix + name)
		}
		return nil
	})
}

// rotationClaim is how long a pending root password keeps another
// rotation of the same connection out: longer than one rotation takes
// (three logins and an ALTER ROLE, each bounded by its timeout), so that
// a pending record older than that was left by a rotation that died, and
// what it left is settled by open() (which tries it when the stored
// password is refused).
const rotationClaim = 5 * time.Minute

// rootAlterTimeout bounds a rotation's ALTER ROLE, which may wait on a
// lock another session holds: it ends before the rotation's claim does
// (a variable so that a test need not wait minutes).
var rootAlterTimeout = rotationClaim - rotationClaim/10

// rotateRoot gives the configured admin a new random password in two
// phases, so that a crash at any point leaves a password lessor can use:
// (1) commit the new password as pending; (2) ALTER ROLE in PostgreSQL;
// (3) log in afresh with it; (4) store it in the config and drop the
// pending record in one transaction. After a crash between (2) and (4),
// open() finds the stored password refused and adopts the pending one.
func (b *Backend) rotateRoot(ctx context.Context, req *logical.Request, name string) error {
	cfg, err := b.loadConfig(ctx, req.Storage, name)
	if err != nil {
		return err
	}
	switch {
	case cfg == nil:
		return missingConfig(name)
	case cfg.Connection.Username == "":
		return errors.New("unable to rotate root credentials: no username in configuration")
	case cfg.Connection.Password == "":
		return errors.New("unable to rotate root credentials: no password in configuration")
	}
	if sl, ok := req.System.(logical.StoreLoginView); ok && slices.Contains(cfg.adminNames(), sl.StoreLogin()) {
		return fmt.Errorf("unable to rotate root credentials: %w", storeLoginError(sl.StoreLogin()))
	}

	db, err := b.open(ctx, req.Storage, name, cfg)
	if err != nil {
		return fmt.Errorf("unable to rotate root credentials: %w", err)
	}
	defer db.Close(context.WithoutCancel(ctx))

	// By the connection's password policy, as Vault does, when it names one.
	newPassword, err := b.newPassword(ctx, req.System, cfg)
	if err != nil {
		return fmt.Errorf("unable to rotate root credentials: generate password: %w", err)
	}
	// The claim runs out rotationClaim after now; started is that moment
	// by this process's clock, from which the ALTER's deadline counts.
	now, started := req.System.Now().UTC(), time.Now()
	pending := pendingRoot{Username: cfg.Connection.Username, Password: newPassword, Created: now}
	if err := req.Storage.Update(ctx, func(tx storage.Tx) error {
		// The pending record is also this rotation's claim: two rotations
		// at once would each ALTER the role, and the one that stored its
		// password last need not be the one PostgreSQL kept.
		cur, err := configIn(tx, name)
		if err != nil {
			return err
		}
		if cur.Connection.Password != cfg.Connection.Password || cur.Connection.Username != cfg.Connection.Username {
			return errors.New("the connection's credentials changed since this rotation began (another rotation finished, or they were rewritten); run it again")
		}
		var p pendingRoot
		pfound, err := getJSON(tx, pendingPrefix+name, &p)
		if err != nil {
			return err
		}
		if pfound && now.Sub(p.Created) < rotationClaim {
			return fmt.Errorf("another rotation of these root credentials began at %s and may still be running; run it again after %s",
				p.Created.Format(time.RFC3339), p.Created.Add(rotationClaim).Format(time.RFC3339))
		}
		return putJSON(tx, pendingPrefix+name, &pending)
	}); err != nil {
		return fmt.Errorf("unable to rotate root credentials: %w", err)
	}
	failpoint.Hit(failpoint.RotateRootAfterPending)

	// The ALTER ends before the claim does: past it, another rotation may
	// begin and store its own password, and this one's ALTER, landing
	// later, would leave PostgreSQL holding a password nobody stored. So
	// its deadline counts from the claim's time, not from now: writing
	// the claim may have waited on the store (another process's
	// transaction, a slow disk) for a good part of it.
	actx, cancel := context.WithDeadline(ctx, started.Add(rootAlterTimeout))
	err = db.RotateRootPassword(actx, newPassword, cfg.RootRotationStatements)
	cancel()
	if err != nil {
		rerr := fmt.Errorf("unable to rotate root credentials: %w", cfg.redactStatements(err, newPassword))
		// The error's shape cannot say for sure which password PostgreSQL
		// holds now (the plugin may have failed to put the old one back),
		// so ask PostgreSQL: log in with the new one.
		fresh := *cfg
		fresh.Connection.Password = newPassword
		probe, perr := postgres.Connect(ctx, fresh.pluginConfig())
		switch {
		case perr == nil:
			probe.Close(context.WithoutCancel(ctx))
			if aerr := adoptPending(ctx, req.Storage, name, cfg.Connection.Username, cfg.Connection.Password, newPassword, now); aerr != nil {
				return errors.Join(rerr, fmt.Errorf("store new password: %w", aerr))
			}
			return nil
		case isAuthFailure(perr):
			// PostgreSQL kept the old password; the pending one is void.
			if derr := dropPending(ctx, req.Storage, name, newPassword); derr != nil {
				return errors.Join(rerr, derr)
			}
		}
		return rerr
	}
	failpoint.Hit(failpoint.RotateRootAfterAlter)
	if b.testOnlyAfterRotate != nil {
		if err := b.testOnlyAfterRotate(); err != nil {
			return err
		}
	}

	fresh := *cfg
	fresh.Connection.Password = newPassword
	vdb, err := postgres.Connect(ctx, fresh.pluginConfig())
	if err != nil {
		return fmt.Errorf("unable to rotate root credentials: PostgreSQL accepted the new password but logging in with it failed (it stays pending and is tried when the stored one is refused): %w",
			fresh.redact(err, cfg.Connection.Password))
	}
	vdb.Close(context.WithoutCancel(ctx))

	if err := adoptPending(ctx, req.Storage, name, cfg.Connection.Username, cfg.Connection.Password, newPassword, now); err != nil {
		return fmt.Errorf("unable to rotate root credentials: store new password (it stays pending and is tried when the stored one is refused): %w", err)
	}
	return nil
}

func dropPending(ctx context.Context, st storage.Store, name, password string) error {
	return st.Update(context.WithoutCancel(ctx), func(tx storage.Tx) error {
		var p pendingRoot
		found, err := getJSON(tx, pendingPrefix+name, &p)
		if err != nil || !found || p.Password != password {
			return err
		}
		return tx.Delete(pendingPrefix + name)
	})
}
