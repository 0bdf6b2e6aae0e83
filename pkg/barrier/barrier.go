// Package barrier seals every value of a lessor store with AES-256-GCM. A
// Barrier is a storage.Store layered over a physical one (storage.Bolt, or
// storage.Memory in tests), so the rest of lessor reads and writes plain
// values and never sees ciphertext, while a copy of the file reveals only key
// names and value sizes.
//
// # Keys
//
// An unseal key (a key file, the same key in base64 from the environment, or
// a passphrase) yields a key-encryption key: HKDF-SHA256 of the 32 key bytes
// with the store id as salt, or Argon2id of the passphrase with the
// parameters and salt kept in the header. The KEK wraps a random 256-bit root
// key; the root key seals the keyring; the keyring holds numbered terms of
// random 256-bit data keys, one of them active; data keys seal records.
// Rotate adds a term (old ones stay, to read old records; a record moves to
// the active term when it is next written). Rekey re-wraps the root key for a
// new unseal key without touching any record.
//
// # Format (version 1)
//
// The barrier's own records live under "barrier/", a prefix callers may not
// use.
//
//	barrier/header   plaintext, fixed 151 bytes, all integers big-endian:
//	                 "lessorhd" | version u8 = 1 | store id [16] |
//	                 created unix seconds i64 | unseal kind u8 (1 key file,
//	                 2 passphrase) | argon2id t u32 | m KiB u32 | p u8 |
//	                 salt [16] (KDF fields zero for a key file) |
//	                 wrap nonce [12] | wrapped root key [48] |
//	                 SHA-256 of everything before it [32]
//	barrier/keyring  0x01 | nonce [12] | AES-GCM under the root key of
//	                 active term u32 | count u32 | count × (term u32 |
//	                 created unix seconds i64 | key [32])
//	any other key    0x01 | term u32 | nonce [12] | AES-GCM under the term's
//	                 data key of the value
//
// Additional data binds each ciphertext to its place: the root key's wrap
// covers every header field before the nonce ("lessor/v1/rk" | header[0:59]),
// so KDF parameters cannot be downgraded unnoticed; the keyring covers the
// store id and format version; a record covers the store id, its term and its
// storage key, so a value copied to another key or another store does not
// open. The header's unkeyed checksum tells a damaged header ("store header
// is damaged") from a wrong key, whose wrap simply fails to open.
//
// Nonces are random: at one encryption per write per term, the 2^32 messages
// per key that random 96-bit nonces allow are far beyond a CLI's life, and
// Rotate starts a new key anyway.
//
// What is not protected: which keys exist, and each value's size and age.
// Someone who can write the file can delete a record or put back an older
// sealed value of the same key; pkg/storage's bbolt layer does not prevent
// that either.
package barrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/storage"
)

// FormatVersion is the version of the on-disk format this package writes
// and the only one it reads.
const FormatVersion = 1

// Physical keys of the barrier's own records, and the prefix reserved for
// them.
const (
	ReservedPrefix = "barrier/"
	headerKey      = ReservedPrefix + "header"
	keyringKey     = ReservedPrefix + "keyring"
)

var (
	// ErrWrongKey: the unseal key does not open this store.
	ErrWrongKey = errors.New("wrong unseal key")
	// ErrCorrupt: a header, keyring or record is damaged or was tampered
	// with. It is storage.ErrCorrupt, so one test covers damage found by
	// either layer.
	ErrCorrupt = storage.ErrCorrupt
	// ErrNotInitialized: the store has no barrier yet.
	ErrNotInitialized = errors.New("store is not initialized")
	// ErrAlreadyInitialized: Init found a barrier in the store.
	ErrAlreadyInitialized = errors.New("store is already initialized")
	// ErrReservedKey: a caller used a key under ReservedPrefix.
	ErrReservedKey = errors.New("key is reserved for the barrier")
)

// InitOptions tunes Init.
type InitOptions struct {
	// KDF is the Argon2id cost for a passphrase; zero means DefaultArgon2.
	// It is ignored for a key file.
	KDF Argon2Params
	// Now stamps the header and the first key term; nil means time.Now.
	Now func() time.Time
	// Rand supplies every key, salt and nonce; nil means crypto/rand.
	// Only tests should set it.
	Rand io.Reader
}

// Info describes an open barrier, as of its last transaction.
type Info struct {
	FormatVersion int
	StoreID       string // hex
	Term          uint32 // the active data key term
	Terms         []uint32
	UnsealKind    string       // "keyfile" or "passphrase"
	KDF           Argon2Params // zero for a key file
	Created       time.Time
}

// Barrier is an unsealed store. It is safe for concurrent use, and several
// processes may have the same store open: each transaction sees the others'
// rotations.
type Barrier struct {
	phys    storage.Store
	rand    io.Reader
	now     func() time.Time
	storeID [16]byte // never changes; copied out of hdr so that it needs no lock
	rk      []byte   // never changes once unsealed

	mu     sync.Mutex
	hdr    *header
	hdrRaw []byte
	ring   *keyring
}

// UnsealKind reports which kind of key (KindKeyFile or KindPassphrase)
// unseals the barrier in phys, so that a caller knows whether to ask for a
// passphrase before calling Open.
func UnsealKind(ctx context.Context, phys storage.Store) (string, error) {
	s, err := Peek(ctx, phys)
	if err != nil {
		return "", err
	}
	return s.UnsealKind(), nil
}

// Sealed is a barrier as read from its store but not unsealed: what a
// command needs to choose its unseal key and then to unseal, from one read
// transaction instead of two (each one opens and locks the store file).
type Sealed struct {
	phys    storage.Store
	hdr     *header
	hdrRaw  []byte
	ringRaw []byte
}

// Peek reads the barrier's header and keyring from phys in one read
// transaction and checks the header. It fails with ErrNotInitialized for an
// empty store.
func Peek(ctx context.Context, phys storage.Store) (*Sealed, error) {
	var hdrRaw, ringRaw []byte
	err := phys.View(ctx, func(tx storage.Tx) error {
		var err error
		if hdrRaw, err = tx.Get(headerKey); err != nil {
			return err
		}
		if hdrRaw == nil {
			if err := checkEmpty(tx); err != nil {
				return err
			}
			return ErrNotInitialized
		}
		ringRaw, err = tx.Get(keyringKey)
		return err
	})
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(hdrRaw)
	if err != nil {
		return nil, err
	}
	return &Sealed{phys: phys, hdr: h, hdrRaw: hdrRaw, ringRaw: ringRaw}, nil
}

// UnsealKind is KindKeyFile or KindPassphrase.
func (s *Sealed) UnsealKind() string { return s.hdr.kind.String() }

// Unseal opens the barrier with key, from what Peek read and without
// reading the store again. What Peek read may since have changed: a
// rotation is picked up by the next transaction, a rekey makes Unseal fail
// as with a wrong key; a caller that may wait long between the two (a
// passphrase prompt) should call Open instead.
func (s *Sealed) Unseal(key UnsealKey) (*Barrier, error) {
	if key.kind == 0 {
		return nil, errNoKey
	}
	rk, err := unwrapRootKey(s.hdr, key)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	ring, err := openKeyring(rk, s.hdr.storeID, s.ringRaw)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	return &Barrier{phys: s.phys, rand: rand.Reader, now: time.Now, storeID: s.hdr.storeID, hdr: s.hdr, hdrRaw: s.hdrRaw, rk: rk, ring: ring}, nil
}

// Initialized reports whether phys holds a barrier. A store that holds
// records but no header is damaged, not uninitialized.
func Initialized(ctx context.Context, phys storage.Store) (bool, error) {
	var found bool
	err := phys.View(ctx, func(tx storage.Tx) error {
		hdr, err := tx.Get(headerKey)
		if err != nil {
			return err
		}
		found = hdr != nil
		if !found {
			return checkEmpty(tx)
		}
		return nil
	})
	return found, err
}

// checkEmpty fails if the store holds any record, which without a header
// means the header was lost.
func checkEmpty(tx storage.Tx) error {
	var any string
	err := tx.Walk("", func(k string) error { any = k; return storage.ErrStop })
	if err != nil {
		return err
	}
	if any != "" {
		return &damageError{"store has records but no barrier header"}
	}
	return nil
}

// Init creates a barrier in the empty store phys, sealed by key, and
// returns it unsealed.
func Init(ctx context.Context, phys storage.Store, key UnsealKey, opts InitOptions) (*Barrier, error) {
	if key.kind == 0 {
		return nil, errNoKey
	}
	b := &Barrier{phys: phys, rand: opts.Rand, now: opts.Now}
	if b.rand == nil {
		b.rand = rand.Reader
	}
	if b.now == nil {
		b.now = time.Now
	}
	h := &header{version: FormatVersion, created: b.now().Unix()}
	if _, err := io.ReadFull(b.rand, h.storeID[:]); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	rk, err := b.random(32)
	if err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	if err := b.setUnsealKey(h, key, opts.KDF); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	if err := b.wrapRootKey(h, key, rk); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	dk, err := b.random(32)
	if err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	ring := &keyring{active: 1, terms: map[uint32]*term{}}
	if err := ring.add(1, time.Unix(h.created, 0), dk); err != nil {
		return nil, err
	}
	if ring.raw, err = sealKeyring(rk, h.storeID, ring, b.rand); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	hdrRaw := h.marshal()

	err = phys.Update(ctx, func(tx storage.Tx) error {
		cur, err := tx.Get(headerKey)
		if err != nil {
			return err
		}
		if cur != nil {
			return ErrAlreadyInitialized
		}
		if err := checkEmpty(tx); err != nil {
			return err
		}
		if err := tx.Put(headerKey, hdrRaw); err != nil {
			return err
		}
		return tx.Put(keyringKey, ring.raw)
	})
	if err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	b.hdr, b.hdrRaw, b.rk, b.ring, b.storeID = h, hdrRaw, rk, ring, h.storeID
	return b, nil
}

// Open unseals the barrier in phys with key. The key derivation (Argon2id
// for a passphrase) runs outside any storage transaction.
func Open(ctx context.Context, phys storage.Store, key UnsealKey) (*Barrier, error) {
	if key.kind == 0 {
		return nil, errNoKey
	}
	s, err := Peek(ctx, phys)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	return s.Unseal(key)
}

// StoreID returns the store's random id in hex.
func (b *Barrier) StoreID() string { return hex.EncodeToString(b.storeID[:]) }

// Info describes the barrier.
func (b *Barrier) Info() Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	terms := make([]uint32, 0, len(b.ring.terms))
	for t := range b.ring.terms {
		terms = append(terms, t)
	}
	slices.Sort(terms)
	kdf := Argon2Params{}
	if b.hdr.kind == kindPassphrase {
		kdf = b.hdr.kdf
	}
	return Info{
		FormatVersion: int(b.hdr.version),
		StoreID:       hex.EncodeToString(b.hdr.storeID[:]),
		Term:          b.ring.active,
		Terms:         terms,
		UnsealKind:    b.hdr.kind.String(),
		KDF:           kdf,
		Created:       time.Unix(b.hdr.created, 0).UTC(),
	}
}

// View runs fn in a read-only transaction that opens each value it reads.
func (b *Barrier) View(ctx context.Context, fn func(storage.Tx) error) error {
	return b.phys.View(ctx, func(tx storage.Tx) error {
		return fn(&sealedTx{b: b, tx: tx, ring: b.cachedRing()})
	})
}

// Update runs fn in a read-write transaction that seals each value it
// writes with the active data key term.
func (b *Barrier) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return b.phys.Update(ctx, func(tx storage.Tx) error {
		return fn(&sealedTx{b: b, tx: tx, ring: b.cachedRing(), write: true})
	})
}

// Rotate adds a new data key term and makes it the active one. Records
// sealed with older terms stay readable and move to the new term when they
// are next written.
func (b *Barrier) Rotate(ctx context.Context) (uint32, error) {
	var next *keyring
	err := b.phys.Update(ctx, func(tx storage.Tx) error {
		cur, err := b.loadRing(tx)
		if err != nil {
			return err
		}
		next = cur.clone()
		t := slices.Max(slices.Collect(maps.Keys(cur.terms))) + 1
		if t == 0 {
			return errors.New("no key term left")
		}
		dk, err := b.random(32)
		if err != nil {
			return err
		}
		if err := next.add(t, time.Unix(b.now().Unix(), 0), dk); err != nil {
			return err
		}
		next.active = t
		if next.raw, err = sealKeyring(b.rk, b.storeID, next, b.rand); err != nil {
			return err
		}
		if err := tx.Put(keyringKey, next.raw); err != nil {
			return err
		}
		failpoint.Hit(failpoint.BarrierRotateBeforeCommit)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotate barrier key: %w", err)
	}
	failpoint.Hit(failpoint.BarrierRotateAfterCommit)
	b.setRing(next)
	return next.active, nil
}

// Rekey re-wraps the root key for newKey (which may be of the other kind)
// with a fresh nonce and, for a passphrase, a fresh salt and opts.KDF (zero:
// DefaultArgon2); it uses no other field of opts. Records are not
// re-encrypted. Afterwards the old key no longer opens the store.
func (b *Barrier) Rekey(ctx context.Context, newKey UnsealKey, opts InitOptions) error {
	if newKey.kind == 0 {
		return errNoKey
	}
	b.mu.Lock()
	h := *b.hdr
	oldRaw := b.hdrRaw
	b.mu.Unlock()
	if err := b.setUnsealKey(&h, newKey, opts.KDF); err != nil {
		return fmt.Errorf("rekey barrier: %w", err)
	}
	if err := b.wrapRootKey(&h, newKey, b.rk); err != nil {
		return fmt.Errorf("rekey barrier: %w", err)
	}
	newRaw := h.marshal()
	err := b.phys.Update(ctx, func(tx storage.Tx) error {
		cur, err := tx.Get(headerKey)
		if err != nil {
			return err
		}
		if !bytes.Equal(cur, oldRaw) {
			return errors.New("the store header changed since the store was opened (rekeyed by another process?); open it again")
		}
		if err := tx.Put(headerKey, newRaw); err != nil {
			return err
		}
		failpoint.Hit(failpoint.BarrierRekeyBeforeCommit)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rekey barrier: %w", err)
	}
	failpoint.Hit(failpoint.BarrierRekeyAfterCommit)
	b.mu.Lock()
	b.hdr, b.hdrRaw = &h, newRaw
	b.mu.Unlock()
	return nil
}

func (b *Barrier) random(n int) ([]byte, error) {
	buf := make([]byte, n)
	_, err := io.ReadFull(b.rand, buf)
	return buf, err
}

func (b *Barrier) cachedRing() *keyring {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ring
}

func (b *Barrier) setRing(r *keyring) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring = r
}

// loadRing returns the keyring as stored in tx, reusing the cached one when
// the stored bytes have not changed (no other process rotated).
func (b *Barrier) loadRing(tx storage.Tx) (*keyring, error) {
	raw, err := tx.Get(keyringKey)
	if err != nil {
		return nil, err
	}
	cached := b.cachedRing()
	if bytes.Equal(raw, cached.raw) {
		return cached, nil
	}
	ring, err := openKeyring(b.rk, b.storeID, raw)
	if err != nil {
		return nil, err
	}
	b.setRing(ring)
	return ring, nil
}

// sealedTx is a transaction as the rest of lessor sees it.
type sealedTx struct {
	b     *Barrier
	tx    storage.Tx
	ring  *keyring
	write bool
	fresh bool // ring was compared with the stored keyring in this tx
}

func checkKey(key string) error {
	if strings.HasPrefix(key, ReservedPrefix) {
		return fmt.Errorf("key %q: %w", key, ErrReservedKey)
	}
	return nil
}

func (t *sealedTx) Get(key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	sealed, err := t.tx.Get(key)
	if err != nil || sealed == nil {
		return nil, err
	}
	term, ok := recordTerm(sealed)
	if ok && t.ring.terms[term] == nil && !t.fresh {
		// Another process rotated since this one last looked.
		if t.ring, err = t.b.loadRing(t.tx); err != nil {
			return nil, err
		}
		t.fresh = true
	}
	return openRecord(t.ring, t.b.storeID, key, sealed)
}

func (t *sealedTx) Put(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if !t.write {
		// Let the physical store refuse it in its own words.
		return t.tx.Put(key, value)
	}
	if !t.fresh {
		// Write with the newest active term, even if another process
		// rotated since this one last looked.
		var err error
		if t.ring, err = t.b.loadRing(t.tx); err != nil {
			return err
		}
		t.fresh = true
	}
	sealed, err := sealRecord(t.ring, t.b.storeID, key, value, t.b.rand)
	if err != nil {
		return fmt.Errorf("seal %q: %w", key, err)
	}
	return t.tx.Put(key, sealed)
}

func (t *sealedTx) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return t.tx.Delete(key)
}

func (t *sealedTx) List(prefix string) ([]string, error) {
	var keys []string
	err := t.Walk(prefix, func(k string) error { keys = append(keys, k); return nil })
	return keys, err
}

func (t *sealedTx) Walk(prefix string, fn func(string) error) error {
	if err := checkKey(prefix); err != nil {
		return err
	}
	return t.tx.Walk(prefix, func(k string) error {
		if strings.HasPrefix(k, ReservedPrefix) {
			return nil
		}
		return fn(k)
	})
}

// damageError is damage found by the barrier; its text names what is
// damaged and never includes key material.
type damageError struct{ msg string }

func (e *damageError) Error() string { return e.msg }
func (e *damageError) Unwrap() error { return ErrCorrupt }
