package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rewriter is a Store that can replace all of its content at once.
//
// Rewrite runs fn with src, a read-only view of the store taken under the
// store's exclusive lock (no other transaction runs until Rewrite returns),
// and dst, an empty store. If fn returns nil, dst replaces the store
// atomically: a reader sees either the old content or the new, never a mix,
// and a crash at any point leaves one or the other. Nothing of the old
// content is left in the store, so Rewrite is how key material and old
// ciphertexts are erased (bbolt frees pages without overwriting them).
type Rewriter interface {
	Store
	Rewrite(ctx context.Context, fn func(src, dst Tx) error) error
}

// rewriteBatch is how many bytes a Rewrite puts into the new bbolt file
// before it commits them, so that its memory stays bounded whatever the
// store's size. Those commits are invisible: the file is renamed into place
// only at the end.
const rewriteBatch = 8 << 20

// Rewrite builds the new content in a new file in the store's directory,
// syncs it and renames it over the store file, all while holding the lock on
// the old file; see Rewriter. A process that was waiting for that lock
// notices the rename and opens the new file (see open). A temporary file
// left by a rewrite that crashed is removed by the next one.
func (b *Bolt) Rewrite(ctx context.Context, fn func(src, dst Tx) error) error {
	// The exclusive lock comes with a write transaction, which must not
	// commit: errRewritten makes it roll back once the new file is in place.
	err := b.run(ctx, true, func(src Tx) error {
		st := src.(*boltTx)
		st.write = false // fn reads the old content and must not change it
		// The file is replaced where it is, not the link at the store's
		// path: renamed over a link, the new file would sit beside it and
		// the old one, old header and ciphertexts and all, would stay
		// where the link led, no longer read but not gone.
		real, err := filepath.EvalSymlinks(b.path)
		if err != nil {
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		dir, base := filepath.Dir(real), filepath.Base(real)
		removeStaleRewrites(dir, base)
		var suffix [8]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		tmp := filepath.Join(dir, "."+base+".rewrite-"+hex.EncodeToString(suffix[:]))
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		f.Close()
		renamed := false
		defer func() {
			if !renamed {
				os.Remove(tmp)
			}
		}()
		if err := buildRewrite(tmp, st, fn); err != nil {
			if strings.Contains(err.Error(), b.path) {
				return err
			}
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		// Keep the owner: root rewriting another user's store must not
		// take it away from that user.
		if fi, err := os.Stat(real); err == nil {
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
				if err := os.Chown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
					return fmt.Errorf("rewrite store %s: %w", b.path, err)
				}
			}
		}
		if err := os.Rename(tmp, real); err != nil {
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		renamed = true
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("rewrite store %s: %w", b.path, err)
		}
		return errRewritten
	})
	if errors.Is(err, errRewritten) {
		return nil
	}
	return err
}

var errRewritten = errors.New("rewritten")

// buildRewrite makes the new store file at tmp and runs fn into it; the
// file is synced when it returns nil.
func buildRewrite(tmp string, src *boltTx, fn func(src, dst Tx) error) error {
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, PageSize: newStorePageSize, NoSync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	dst := &rewriteTx{db: db}
	defer dst.rollback()
	if err := dst.begin(); err != nil {
		return err
	}
	if dst.bkt, err = dst.tx.CreateBucket(dataBucket); err != nil {
		return err
	}
	if err := fn(src, dst); err != nil {
		return err
	}
	if src.broken != nil {
		return src.broken
	}
	if err := dst.tx.Commit(); err != nil {
		return err
	}
	dst.tx = nil
	if err := db.Sync(); err != nil {
		return err
	}
	return db.Close()
}

// removeStaleRewrites removes what rewrites that crashed left behind. The
// caller holds the store's exclusive lock, so no rewrite is running.
func removeStaleRewrites(dir, base string) {
	old, _ := filepath.Glob(filepath.Join(dir, "."+base+".rewrite-*"))
	for _, p := range old {
		os.Remove(p)
	}
}

// rewriteTx writes the new file of a Rewrite, committing every
// rewriteBatch bytes. It reads what it has written so far.
type rewriteTx struct {
	db      *bolt.DB
	tx      *bolt.Tx
	bkt     *bolt.Bucket
	pending int
}

func (t *rewriteTx) begin() error {
	tx, err := t.db.Begin(true)
	if err != nil {
		return err
	}
	t.tx, t.bkt = tx, tx.Bucket(dataBucket)
	return nil
}

func (t *rewriteTx) rollback() {
	if t.tx != nil {
		t.tx.Rollback()
		t.tx = nil
	}
}

func (t *rewriteTx) Get(key string) ([]byte, error) {
	return bytes.Clone(t.bkt.Get([]byte(key))), nil
}

func (t *rewriteTx) Put(key string, value []byte) error {
	if key == "" {
		return errors.New("put: empty key")
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	if err := t.bkt.Put([]byte(key), v); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if t.pending += len(key) + len(v); t.pending < rewriteBatch {
		return nil
	}
	t.pending = 0
	if err := t.tx.Commit(); err != nil {
		t.tx = nil
		return err
	}
	return t.begin()
}

func (t *rewriteTx) Delete(key string) error {
	return t.bkt.Delete([]byte(key))
}

func (t *rewriteTx) List(prefix string) ([]string, error) {
	var keys []string
	err := t.Walk(prefix, func(k string) error { keys = append(keys, k); return nil })
	return keys, err
}

func (t *rewriteTx) Walk(prefix string, fn func(string) error) error {
	// Collected first: fn may write, which invalidates a bbolt cursor. Only
	// the barrier's few own keys are ever walked here.
	var keys []string
	c := t.bkt.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
		keys = append(keys, string(k))
	}
	for _, k := range keys {
		if err := fn(k); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Rewrite replaces the whole map when fn returns nil.
func (m *Memory) Rewrite(ctx context.Context, fn func(src, dst Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	src := &memTx{base: m.data}
	dst := &memTx{base: map[string][]byte{}, writes: map[string][]byte{}, writable: true}
	if err := fn(src, dst); err != nil {
		return err
	}
	next := map[string][]byte{}
	keys := make([]string, 0, len(dst.writes))
	for k := range dst.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := dst.writes[k]; v != nil {
			next[k] = v
		}
	}
	m.data = next
	return nil
}
