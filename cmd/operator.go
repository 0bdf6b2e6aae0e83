package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/storage"
)

func newOperatorCmd(f *Factory, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "operator <subcommand>",
		Short: "Create the store, show its status, rotate and rekey it",
		Example: `  lessor operator init
  lessor operator status
  lessor operator rotate`,
	}
	c.AddCommand(newOperatorInitCmd(f, g), newOperatorStatusCmd(f, g), newOperatorRotateCmd(f, g), newOperatorRekeyCmd(f, g),
		newOperatorVerifyCmd(f, g), newOperatorMigrateCmd(f, g),
		newOperatorUpgradeSchemaCmd(f, g))
	return c
}

// passphrase reads a new passphrase: LESSOR_PASSPHRASE_FILE, else twice
// from the terminal.
func newPassphrase(f *Factory) ([]byte, error) {
	if pf := f.get("passphrase_file"); pf != "" {
		b, err := readSecretFile(expandHome(pf, f.home()))
		if err != nil {
			return nil, usageErrorf("passphrase file: %v", err)
		}
		if len(b) < minPassphrase {
			return nil, usageErrorf("the passphrase in %s is too short: use at least %d characters", pf, minPassphrase)
		}
		return b, nil
	}
	p1, err := f.ReadPassword("New passphrase: ")
	if errors.Is(err, errNoTerminal) {
		return nil, withHint(usageErrorf("read new passphrase: %w", err), passphraseHint)
	}
	if err != nil {
		return nil, usageErrorf("read passphrase: %v", err)
	}
	p2, err := f.ReadPassword("Repeat passphrase: ")
	if errors.Is(err, errNoTerminal) {
		return nil, withHint(usageErrorf("read new passphrase: %w", err), passphraseHint)
	}
	if err != nil {
		return nil, usageErrorf("read passphrase: %v", err)
	}
	if !bytes.Equal(p1, p2) {
		return nil, usageErrorf("the passphrases do not match")
	}
	if len(p1) < minPassphrase {
		return nil, usageErrorf("the passphrase is too short: use at least %d characters", minPassphrase)
	}
	return p1, nil
}

// minPassphrase is the shortest passphrase init and rekey accept.
const minPassphrase = 12

func newOperatorInitCmd(f *Factory, g *globalOptions) *cobra.Command {
	var usePassphrase, noStoreToken bool
	c := &cobra.Command{
		Use:   "init [flags]",
		Short: "Create a new encrypted store, its unseal key and the root token",
		Long: `Creates the store file (0600, in a 0700 directory) and its unseal key, then
creates the root token and prints it once. The key is, by default, a new
key file (-key-file / LESSOR_KEY_FILE, created 0600) so that cron and
scripts unseal at no cost; with -passphrase, a passphrase (from
LESSOR_PASSPHRASE_FILE or typed twice) stretched with Argon2id; with
LESSOR_UNSEAL_KEY set, that key. The root token is also written to the
token file (~/.lessor-token) unless -no-store-token.

init never touches an existing store.`,
		Example: `  lessor operator init
  lessor operator init -store=/var/lib/lessor/lessor.db -key-file=/etc/lessor/unseal.key
  LESSOR_PASSPHRASE_FILE=./pass lessor operator init -passphrase -format=json`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			storeURL, err := f.storeURL()
			if err != nil {
				return err
			}
			path := f.storeName()
			if storeURL == "" {
				if _, err := os.Lstat(path); err == nil {
					return &localError{withHint(fmt.Errorf("a store already exists at %s; init refuses to touch it", path),
						"use -store to create another one, or `lessor operator status` to inspect this one")}
				}
			}
			var key barrier.UnsealKey
			var keyFile string
			switch {
			case usePassphrase:
				pass, err := newPassphrase(f)
				if err != nil {
					return err
				}
				key = barrier.KeyFromPassphrase(pass)
			case f.get("unseal_key") != "":
				if key, err = barrier.KeyFromBase64(f.get("unseal_key")); err != nil {
					return usageErrorf("LESSOR_UNSEAL_KEY: %v", err)
				}
			default:
				keyFile = expandHome(f.get("key_file"), f.home())
				if _, err := os.Lstat(keyFile); err == nil {
					return &localError{withHint(fmt.Errorf("key file %s already exists; init will not reuse or overwrite it", keyFile),
						"choose another with -key-file, or move the old one away")}
				}
				if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
					return &localError{fmt.Errorf("create key file directory: %w", err)}
				}
				if err := barrier.GenerateKeyFile(keyFile); err != nil {
					return &localError{fmt.Errorf("create key file %s: %w", keyFile, err)}
				}
				if key, err = barrier.KeyFromFile(keyFile); err != nil {
					os.Remove(keyFile)
					return &localError{err}
				}
			}
			tok, storeID, err := initStore(ctx, f, storeURL, key)
			if err != nil {
				if keyFile != "" {
					os.Remove(keyFile)
				}
				return err
			}
			if !noStoreToken {
				if err := storeToken(f.tokenFile(), tok); err != nil {
					return &localError{fmt.Errorf("store the root token in %s: %w (the store was created; the token is shown below)", f.tokenFile(), err)}
				}
			}
			unseal := "key file " + keyFile
			switch {
			case usePassphrase:
				unseal = "passphrase"
			case keyFile == "":
				unseal = "LESSOR_UNSEAL_KEY"
			}
			data := map[string]any{"root_token": tok, "store_path": path, "store_id": storeID, "unseal": unseal}
			if keyFile != "" {
				data["key_file"] = keyFile
			}
			o := g.formatOptions(f)
			if o.Format == format.NameTable && o.Field == "" {
				fmt.Fprintf(f.IO.Out, "Store:         %s\nStore ID:      %s\nUnseal:        %s\nRoot Token:    %s\n\n", path, storeID, unseal, tok)
				fmt.Fprintln(f.IO.Out, "The root token is shown once. It can do anything: keep it for set-up and")
				fmt.Fprintln(f.IO.Out, "emergencies, and create tokens with narrower policies for daily use.")
				if !noStoreToken {
					fmt.Fprintf(f.IO.Out, "It was written to %s, so the next commands use it.\n", f.tokenFile())
				}
				if keyFile != "" {
					fmt.Fprintf(f.IO.Out, "Whoever can read %s can decrypt the store: keep it off backups of the store.\n", keyFile)
				}
				return nil
			}
			return flatOut(f, g, data)
		},
	}
	c.Flags().BoolVar(&usePassphrase, "passphrase", false, "protect the store with a passphrase instead of a key file")
	c.Flags().BoolVar(&noStoreToken, "no-store-token", false, "do not write the root token to the token file")
	return c
}

// initStore creates the store (a file, or the tables of a PostgreSQL
// schema when storeURL is set) and initialises it; on any failure what it
// created is removed, so that init can simply be run again.
func initStore(ctx context.Context, f *Factory, storeURL string, key barrier.UnsealKey) (tok, storeID string, err error) {
	path := f.storeName()
	var phys storage.Store
	if storeURL != "" {
		// perr, berr: the deferred removals below must see the function's
		// err, not a variable of this block.
		p, perr := storage.CreatePostgres(ctx, storeURL, storage.PostgresOptions{})
		if perr != nil {
			if errors.Is(perr, storage.ErrStoreExists) {
				return "", "", &localError{withHint(fmt.Errorf("%w; init refuses to touch it", perr),
					"use ?schema=NAME in the URL to create another one, or `lessor operator status` to inspect this one")}
			}
			return "", "", f.storeError(perr)
		}
		f.onClose(p.Close)
		defer func() {
			if err != nil {
				p.Drop(context.WithoutCancel(ctx))
			}
		}()
		phys = p
	} else {
		b, berr := storage.CreateBolt(path, storage.BoltOptions{})
		if berr != nil {
			return "", "", &localError{berr}
		}
		defer func() {
			if err != nil {
				os.Remove(path)
			}
		}()
		phys = b
	}
	b, err := barrier.Init(ctx, phys, key, barrier.InitOptions{Now: f.Now})
	if err != nil {
		return "", "", &localError{fmt.Errorf("initialise store %s: %w", path, err)}
	}
	if err := f.trackGeneration(ctx, b, true); err != nil {
		return "", "", &localError{fmt.Errorf("initialise store %s: %w", path, err)}
	}
	tok, err = f.newCore(b).Initialize(ctx)
	if err != nil {
		return "", "", &localError{fmt.Errorf("initialise store %s: %w", path, err)}
	}
	return tok, b.StoreID(), nil
}

func newOperatorStatusCmd(f *Factory, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the store exists, its format, key term and counts",
		Long: `Shows the store's path, format version, id, unseal kind and key term, and
how many mounts, policies, tokens and leases it holds. Exits 2 when there is
no store at the path.

With LESSOR_ADDR set, shows the server's status instead (its
sys/seal-status: address, initialized, sealed, version, storage type), as
` + "`vault status`" + ` does, and exits 2 when the server is sealed.`,
		Example: `  lessor operator status
  lessor operator status -format=json`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if f.remote() {
				return remoteStatus(ctx, f, g)
			}
			storeURL, err := f.storeURL()
			if err != nil {
				return err
			}
			path := f.storeName()
			missing := false
			if storeURL != "" {
				p, err := storage.OpenPostgres(ctx, storeURL, storage.PostgresOptions{})
				if err == nil {
					p.Close()
				}
				missing = errors.Is(err, storage.ErrNoStore)
			} else {
				_, err := os.Stat(path)
				missing = errors.Is(err, os.ErrNotExist)
			}
			if missing {
				if err := flatOut(f, g, map[string]any{"initialized": false, "store_path": path}); err != nil {
					return err
				}
				return &exitCodeError{code: exitFailed}
			}
			b, err := f.Barrier(ctx)
			if err != nil {
				return err
			}
			cr, err := f.Core(ctx)
			if err != nil {
				return err
			}
			n, err := cr.Count(ctx)
			if err != nil {
				return f.storeError(err)
			}
			info := b.Info()
			data := map[string]any{
				"initialized":    true,
				"store_path":     path,
				"store_id":       info.StoreID,
				"format_version": info.FormatVersion,
				"key_term":       info.Term,
				"unseal":         info.UnsealKind,
				"mounts":         n.Mounts,
				"policies":       n.Policies,
				"tokens":         n.Tokens,
				"leases":         n.Leases,
			}
			return flatOut(f, g, data)
		},
	}
}

func newOperatorRotateCmd(f *Factory, g *globalOptions) *cobra.Command {
	var reencrypt bool
	c := &cobra.Command{
		Use:   "rotate [flags]",
		Short: "Start a new data-encryption key term",
		Long: `Adds a new data key to the keyring; every value written from now on is sealed
with it, and older values stay readable and are re-sealed when next
written. The unseal key does not change (see rekey for that).

With -reencrypt, every value is sealed again with the new key at once and
the older keys are dropped, so that an old data key (from an old copy of
the store and an old unseal key) decrypts nothing in the store any more.
The store is rewritten into a new file, which is renamed over the old one;
no old key or value is left in it. This reads and writes the whole store
while holding its lock (about a second per 100,000 leases): other commands
wait. If it is interrupted, the store is as it was before, and running it
again does the job.`,
		Example: `  lessor operator rotate
  lessor operator rotate -reencrypt`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			b, err := f.Barrier(c.Context())
			if err != nil {
				return err
			}
			if reencrypt {
				term, err := b.RotateReencrypt(c.Context())
				if err != nil {
					return f.storeError(err)
				}
				fmt.Fprintf(f.IO.Out, "Success! Re-encrypted every value with a new data key; the active key term is now %d and older terms were dropped\n", term)
				return nil
			}
			term, err := b.Rotate(c.Context())
			if err != nil {
				return f.storeError(err)
			}
			fmt.Fprintf(f.IO.Out, "Success! Rotated the data key; the active key term is now %d\n", term)
			return nil
		},
	}
	c.Flags().BoolVar(&reencrypt, "reencrypt", false, "re-encrypt every value with the new key and drop the older keys")
	return c
}

func newOperatorVerifyCmd(f *Factory, g *globalOptions) *cobra.Command {
	var acceptRollback bool
	c := &cobra.Command{
		Use:   "verify [flags]",
		Short: "Check every record of the store against its checksum",
		Long: `Reads every record of the store, opens (authenticates) each one, and checks
the set of records against the store's record checksum, which every write
keeps up to date: a record deleted, added, or replaced by an older copy by
anything but lessor is found. Every command already checks the mount table,
the audit devices and the policies this way when it opens the store, and
every use of a token checks the token entries near it; verify checks the
rest (leases, roles, connections) and all of those again. It costs a pass
over the whole store. A store written by an older lessor gets its checksum
here (or at its first write).

Every command also compares the store's generation with the newest one
this user has seen (kept under $XDG_STATE_HOME/lessor/generation/), so a
store file put back from an older copy is refused. After restoring a backup
on purpose, run verify -accept-rollback once.

Exits 1 when the store was tampered with.`,
		Example: `  lessor operator verify
  lessor operator verify -accept-rollback`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			f.acceptRollback = acceptRollback
			b, err := f.Barrier(c.Context())
			if err != nil {
				return err
			}
			res, err := b.Verify(c.Context(), true)
			if err != nil {
				return f.storeError(err)
			}
			// Only a store that passed is accepted as the newest seen.
			b.AcceptGeneration()
			o := g.formatOptions(f)
			if o.Format == format.NameTable && o.Field == "" {
				fmt.Fprintf(f.IO.Out, "Success! %s verified at generation %d: each one opens, and none is missing or extra.\n", count(res.Records, "record", "records"), res.Generation)
				return nil
			}
			return flatOut(f, g, map[string]any{"store_path": f.storeName(), "records": res.Records, "generation": res.Generation})
		},
	}
	c.Flags().BoolVar(&acceptRollback, "accept-rollback", false, "accept a store older than the newest one seen (a backup restored on purpose)")
	return c
}

func newOperatorRekeyCmd(f *Factory, g *globalOptions) *cobra.Command {
	var usePassphrase bool
	var newKeyFile string
	c := &cobra.Command{
		Use:   "rekey [flags]",
		Short: "Replace the unseal key (key file or passphrase)",
		Long: `Generates a new root key, seals the keyring under it and wraps it under a
new unseal key; the old key stops working at once. The store is rewritten
into a new file (renamed over the old one) so that no copy of the old
header is left in it: the old key opens nothing in the store, even with a
header from an old backup put back. The values themselves are not
re-encrypted: to make the data keys of old copies worthless as well, run
` + "`lessor operator rotate -reencrypt`" + ` too.

With a store unsealed by its key file and no flags, a new key file replaces it
in place: the new key is written next to it (<key file>.new) first, the
store is rekeyed, then the new file is renamed over the old one. If lessor
is interrupted in between, <key file>.new is the key that works.
-new-key-file writes the new key elsewhere instead; -passphrase switches to
a passphrase (from LESSOR_PASSPHRASE_FILE or typed twice).`,
		Example: `  lessor operator rekey
  lessor operator rekey -new-key-file=/etc/lessor/unseal-2026.key
  LESSOR_PASSPHRASE_FILE=./new-pass lessor operator rekey -passphrase`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			b, err := f.Barrier(ctx)
			if err != nil {
				return err
			}
			if usePassphrase {
				if newKeyFile != "" {
					return usageErrorf("-passphrase and -new-key-file exclude each other")
				}
				pass, err := newPassphrase(f)
				if err != nil {
					return err
				}
				if f.unsealPassphrase != nil && bytes.Equal(pass, f.unsealPassphrase) {
					// As when LESSOR_PASSPHRASE_FILE gave both.
					return usageErrorf("the new passphrase is the one that unseals the store now; unset LESSOR_PASSPHRASE_FILE to type the current one and then the new one")
				}
				newKey := barrier.KeyFromPassphrase(pass)
				if err := b.Rekey(ctx, newKey, barrier.InitOptions{Now: f.Now}); err != nil {
					switch rekeyed, cerr := f.storeOpensWith(ctx, newKey); {
					case cerr != nil:
						return fmt.Errorf("%w (whether the store was rekeyed cannot be told now: if the old key is refused, the new passphrase opens it)", f.storeError(err))
					case !rekeyed:
						return f.storeError(err)
					}
					// The rekey took effect; only its answer was lost.
				}
				fmt.Fprintln(f.IO.Out, "Success! The store is now unsealed by the new passphrase; the old key no longer works.")
				return nil
			}
			current := f.unsealedFrom
			target, inPlace := newKeyFile, newKeyFile == ""
			if inPlace && current == "" {
				// Replacing the configured key file would destroy the
				// key of whatever store that file unseals, and this
				// store was not unsealed by it.
				return usageErrorf("this store was not unsealed by a key file (but by LESSOR_UNSEAL_KEY or a passphrase): give -new-key-file=PATH for the new key, or -passphrase")
			}
			if inPlace {
				// One in-place rekey of a key file at a time: two would
				// each write <key file>.new, and one could rename the
				// other's key over the key file.
				unlock, err := lockDir(filepath.Dir(current))
				if err != nil {
					return &localError{fmt.Errorf("rekey %s: %w", current, err)}
				}
				defer unlock()
				target = current + ".new"
				// The store was opened before the lock was taken: ask it
				// again. Only if it still opens with the current key is a
				// <key file>.new the leftover of a rekey that never
				// reached the store; otherwise it may be the only key
				// that opens it.
				curKey, err := barrier.KeyFromFile(current)
				if err != nil {
					return &localError{err}
				}
				switch ok, err := f.storeOpensWith(ctx, curKey); {
				case err != nil:
					return f.storeError(err)
				case !ok:
					return &localError{fmt.Errorf("the store no longer opens with %s: it was rekeyed meanwhile (if %s exists, it is probably the key that opens it now); nothing was changed", current, target)}
				}
				os.Remove(target)
			}
			if _, err := os.Lstat(target); err == nil {
				return usageErrorf("%s already exists; choose another -new-key-file", target)
			}
			if err := barrier.GenerateKeyFile(target); err != nil {
				return &localError{fmt.Errorf("create key file %s: %w", target, err)}
			}
			key, err := barrier.KeyFromFile(target)
			if err != nil {
				return &localError{err}
			}
			if err := b.Rekey(ctx, key, barrier.InitOptions{Now: f.Now}); err != nil {
				// The new key is deleted only when the store provably
				// does not open with it: a commit whose answer was lost
				// (a dropped connection) may have rekeyed the store.
				switch rekeyed, cerr := f.storeOpensWith(ctx, key); {
				case cerr != nil:
					return fmt.Errorf("%w (whether the store was rekeyed cannot be told now: keep %s; if the old key is refused, use it)", f.storeError(err), target)
				case !rekeyed:
					os.Remove(target)
					return f.storeError(err)
				}
			}
			if inPlace {
				if err := os.Rename(target, current); err != nil {
					return &localError{fmt.Errorf("the store was rekeyed, but moving %s over %s failed: %w; use %s from now on", target, current, err, target)}
				}
				if d, err := os.Open(filepath.Dir(current)); err == nil {
					d.Sync()
					d.Close()
				}
				target = current
			}
			fmt.Fprintf(f.IO.Out, "Success! The store is now unsealed by the key file %s; the old key no longer works.\n", target)
			return nil
		},
	}
	c.Flags().BoolVar(&usePassphrase, "passphrase", false, "switch to a passphrase")
	c.Flags().StringVar(&newKeyFile, "new-key-file", "", "write the new key to this file instead of replacing the current one")
	return c
}

// storeOpensWith tells whether the store, opened afresh, opens with key:
// after a rekey that failed, whether it took effect anyway. An error
// means it cannot be told (the store does not answer).
func (f *Factory) storeOpensWith(ctx context.Context, key barrier.UnsealKey) (bool, error) {
	phys, err := f.openPhysical(ctx)
	if err != nil {
		return false, err
	}
	_, err = barrier.Open(ctx, phys, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, barrier.ErrWrongKey):
		return false, nil
	}
	return false, err
}

// lockDir takes an exclusive lock (flock) on directory dir, released by
// the function it returns or when the process ends. It does not wait: a
// lock held elsewhere is an error.
func lockDir(dir string) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("another rekey of a key file in this directory is running; retry when it is done")
		}
		return nil, err
	}
	return func() { d.Close() }, nil
}
