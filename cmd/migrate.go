package cmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/storage"
)

// migrateBatch is how many records go into one destination transaction.
const migrateBatch = 1000

func newOperatorMigrateCmd(f *Factory, g *globalOptions) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "migrate -to URL_OR_PATH",
		Short: "Copy the store to a new file or PostgreSQL schema, under the same unseal key",
		Long: `Copies the store (-store / LESSOR_STORE) record for record to a new store: a
file path, or a postgres:// URL whose schema does not hold a store yet. The
records are copied as they are, sealed, so the copy opens with the same
unseal key and keeps the store id and generation. Every record is then
opened and the whole set checked against the record checksum at the
destination. The source is only read; point -store / LESSOR_STORE (on
every host) at the destination once it succeeded, and keep the source
until you have. A destination that exists is refused; one left half made
by a failure is removed.`,
		Example: `  lessor operator migrate -to='postgres://lessor@db.internal/ops?sslmode=verify-full'
  lessor operator migrate -store='postgres://lessor@db.internal/ops' -to=/var/lib/lessor/lessor.db`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if to == "" {
				return usageErrorf("-to is required: a file path or a postgres:// URL")
			}
			if err := storeArgError(c, "to"); err != nil {
				return err
			}
			src, err := f.Barrier(ctx)
			if err != nil {
				return err
			}
			key, err := f.unsealKey(src.Info().UnsealKind)
			if err != nil {
				return err
			}
			srcPhys, err := f.openPhysical(ctx)
			if err != nil {
				return err
			}
			dst, dstName, undo, err := createDestination(ctx, f, to)
			if err != nil {
				return err
			}
			n, res, err := migrate(ctx, srcPhys, dst, key)
			if err != nil {
				if uerr := undo(); uerr != nil {
					return &localError{fmt.Errorf("migrate to %s: %w (removing the destination failed too: %v; remove it by hand before migrating there again; the source is unchanged)", dstName, err, uerr)}
				}
				return &localError{fmt.Errorf("migrate to %s: %w (the destination was removed; the source is unchanged)", dstName, err)}
			}
			o := g.formatOptions(f)
			if o.Format == "table" && o.Field == "" {
				fmt.Fprintf(f.IO.Out, "Success! Copied %d records to %s and verified them at generation %d; the source is unchanged.\n", n, dstName, res.Generation)
				return nil
			}
			return flatOut(f, g, map[string]any{"from": f.storeName(), "to": dstName, "records": n, "generation": res.Generation})
		},
	}
	c.Flags().Var(newStoreArgValue("-to", &to), "to", "the new store: a file path or a postgres:// URL")
	return c
}

// createDestination creates an empty store at to, refusing one that
// exists, and returns how to remove it again.
func createDestination(ctx context.Context, f *Factory, to string) (storage.Store, string, func() error, error) {
	switch {
	case storage.IsPostgresURL(to):
		if err := f.checkSudoPostgres(to, "-to"); err != nil {
			return nil, "", nil, err
		}
		p, err := storage.CreatePostgres(ctx, to, storage.PostgresOptions{})
		if err != nil {
			if errors.Is(err, storage.ErrStoreExists) {
				hint := "migrate copies only into a new store: use another ?schema="
				if old, oerr := storage.OpenPostgres(ctx, to, storage.PostgresOptions{}); oerr == nil {
					if headerless(ctx, old) {
						hint = "it holds records but no store header: the remains of a migration that was interrupted; drop its tables kv and meta and migrate again"
					}
					old.Close()
				}
				return nil, "", nil, &localError{withHint(err, "%s", hint)}
			}
			return nil, "", nil, f.storeError(err)
		}
		f.onClose(p.Close)
		return p, p.Name(), func() error { return p.Drop(context.WithoutCancel(ctx)) }, nil
	case storage.LooksLikeURL(to):
		return nil, "", nil, usageErrorf("-to %s: unsupported store URL; use a file path or a postgres:// or postgresql:// URL", storage.RedactURL(to))
	}
	path := expandHome(to, f.home())
	b, err := storage.CreateBolt(path, storage.BoltOptions{})
	if err != nil {
		if errors.Is(err, storage.ErrStoreExists) {
			if old, oerr := storage.OpenBolt(path, storage.BoltOptions{}); oerr == nil && headerless(ctx, old) {
				return nil, "", nil, &localError{withHint(err, "it holds records but no store header: the remains of a migration that was interrupted; remove it and migrate again")}
			}
		}
		return nil, "", nil, &localError{err}
	}
	return b, path, func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}, nil
}

// headerless reports whether st holds records but no header: what a
// migration killed before its last write leaves (it writes the header
// last).
func headerless(ctx context.Context, st storage.Store) bool {
	var some, header bool
	err := st.View(ctx, func(tx storage.Tx) error {
		v, err := tx.Get(barrier.HeaderKey)
		if err != nil {
			return err
		}
		header = v != nil
		return tx.Walk("", func(string) error { some = true; return storage.ErrStop })
	})
	return err == nil && some && !header
}

// migrate copies every record of src, in one read transaction, into dst
// in batches, then opens dst with key and verifies every record.
func migrate(ctx context.Context, src, dst storage.Store, key barrier.UnsealKey) (int, barrier.VerifyResult, error) {
	n := 0
	type kv struct {
		k string
		v []byte
	}
	var batch []kv
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := dst.Update(ctx, func(tx storage.Tx) error {
			for _, r := range batch {
				if err := tx.Put(r.k, r.v); err != nil {
					return err
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	err := src.View(ctx, func(tx storage.Tx) error {
		n, batch = 0, batch[:0]
		var header []byte
		err := tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			if err != nil {
				return err
			}
			if k == barrier.HeaderKey {
				// Written last: a copy cut off before the end has no
				// header, and opens as no store rather than as a
				// damaged one.
				header = v
				n++
				return nil
			}
			batch = append(batch, kv{k, v})
			n++
			if len(batch) >= migrateBatch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err == nil && header != nil {
			batch = append(batch, kv{barrier.HeaderKey, header})
			err = flush()
		}
		return err
	})
	if err != nil {
		return 0, barrier.VerifyResult{}, err
	}
	b, err := barrier.Open(ctx, dst, key)
	if err != nil {
		return 0, barrier.VerifyResult{}, err
	}
	res, err := b.Verify(ctx, true)
	if err != nil {
		return 0, res, err
	}
	// Verify counts the records under the barrier's checksum; the copy
	// also holds the barrier's own header, keyring and state.
	var copied int
	err = dst.View(ctx, func(tx storage.Tx) error {
		copied = 0
		return tx.Walk("", func(string) error { copied++; return nil })
	})
	if err == nil && copied != n {
		err = fmt.Errorf("the destination holds %d records, the source %d", copied, n)
	}
	return n, res, err
}

func newOperatorUpgradeSchemaCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "upgrade-schema",
		Short: "Bring a PostgreSQL store's tables to this lessor's schema version",
		Long: `A PostgreSQL store records the version of its tables. A lessor that finds
an older version refuses the store until this command upgrades it (never
as a side effect of another command), in one transaction that holds the
store's write lock; a newer version is refused: upgrade lessor instead.
Upgrade every host's lessor before running it. A file store has no schema
to upgrade.`,
		Example: `  lessor operator upgrade-schema -store='postgres://lessor@db.internal/ops'`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			u, err := f.storeURL()
			if err != nil {
				return err
			}
			if u == "" {
				return usageErrorf("store %s is a file: only a PostgreSQL store has a schema to upgrade", f.storeName())
			}
			from, err := storage.UpgradePostgres(c.Context(), u, storage.PostgresOptions{})
			if err != nil {
				if errors.Is(err, storage.ErrNoStore) {
					return &localError{err}
				}
				return f.storeError(err)
			}
			if from == storage.PostgresSchemaVersion {
				fmt.Fprintf(f.IO.Out, "The schema of %s is already at version %d.\n", f.storeName(), from)
				return nil
			}
			fmt.Fprintf(f.IO.Out, "Success! Upgraded the schema of %s from version %d to %d.\n", f.storeName(), from, storage.PostgresSchemaVersion)
			return nil
		},
	}
}
