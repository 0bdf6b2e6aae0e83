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
// the active term when it is next written, the core records at once, so
// that the keyring from before, put back, no longer opens the store, nor
// seals the writes of a process that opened it before the rotation);
// RotateReencrypt adds one,
// re-seals every record with it and drops the others. Rekey generates a new
// root key, re-seals the keyring under it and wraps it for a new unseal
// key. Both rewrite the store into a new file (storage.Rewriter), because
// bbolt leaves freed pages as they were: no old header, keyring or, after
// RotateReencrypt, record ciphertext is left in the file.
//
// # Format (version 2; version 1 is read, and upgraded on its first write)
//
// The barrier's own records live under "barrier/", a prefix callers may not
// use.
//
//	barrier/header   plaintext, fixed 151 bytes, all integers big-endian:
//	                 "lessorhd" | version u8 | store id [16] |
//	                 created unix seconds i64 | unseal kind u8 (1 key file,
//	                 2 passphrase) | argon2id t u32 | m KiB u32 | p u8 |
//	                 salt [16] (KDF fields zero for a key file) |
//	                 wrap nonce [12] | wrapped root key [48] |
//	                 SHA-256 of everything before it [32]
//	barrier/keyring  0x01 | nonce [12] | AES-GCM under the root key of
//	                 active term u32 | count u32 | count × (term u32 |
//	                 created unix seconds i64 | key [32])
//	barrier/state    (version 2) 0x01 | generation u64 | all-records sum
//	                 [32] | core sum [32] | HMAC-SHA256 under the state key
//	                 of "lessor/v2/state" | store id | the fields before [32]
//	barrier/guard    (version 2) 0x01 | generation u64 | 256 token bucket
//	                 sums [32 each] | HMAC-SHA256 under the state key of
//	                 "lessor/v2/guard" | store id | the fields before [32];
//	                 current only while its generation is the state
//	                 record's. Lessors from before it neither read nor
//	                 update it, so a store shared with one stays readable by
//	                 both; a stale or missing guard record is rebuilt from
//	                 a pass checked against the state record.
//	barrier/sets     (version 2) 0x01 | generation u64 | SHA-256 of the
//	                 keyring record [32] | count u32 | count × (prefix
//	                 length u16 | prefix | sum [32]), prefixes in byte
//	                 order | HMAC-SHA256 under the state key of
//	                 "lessor/v2/sets" | store id | the fields before [32];
//	                 the sums of the checked sets and the keyring they
//	                 were written with, current and kept as the guard
//	                 record is.
//	any other key    0x01 | term u32 | nonce [12] | AES-GCM under the term's
//	                 data key of the value
//
// Additional data binds each ciphertext to its place: the root key's wrap
// covers every header field before the nonce ("lessor/v1/rk" | header[0:59]),
// so KDF parameters cannot be downgraded unnoticed, nor the version turned
// back to 1 (which has no state record); the keyring covers the store id and
// the format version; a record covers the store id, its term and its
// storage key, so a value copied to another key or another store does not
// open. The header's unkeyed checksum tells a damaged header ("store header
// is damaged") from a wrong key, whose wrap simply fails to open.
//
// The state record authenticates the set of records: each record (key,
// sealed value) contributes HMAC-SHA256(set key, len(key) u32 | key |
// sealed value), and the sums (mod 2^256) are kept over all records, over
// the core ones (under core/ and sys/policy/: mounts, audit devices,
// policies), and over each of 256 buckets of token entries (under
// sys/token/id/, by the first two hex digits of the token's hash; in the
// guard record), and over each checked set (the database engine's
// connection configs, roles and static roles of one mount, under
// logical/<mount uuid>/config/, role/ and static-role/, and the password
// policies, under sys/password-policy/; in the sets record, an empty set
// left out). Every write transaction adds the new and subtracts the
// old contributions, bumps the generation and re-MACs the three records: O(1)
// per write. The set and
// state keys are HKDF-SHA256 of the root key (salt the store id; "lessor
// v2 record set", "lessor v2 state").
//
// What is checked when: every unseal opens each core record and checks the
// core sum, so deleting, adding or putting back an old copy of a mount
// table, an audit device or a policy is refused by the next command, at a
// cost that does not grow with tokens or leases. Every read of a token
// entry checks its bucket (about n/256 entries) in the same transaction,
// once per bucket and transaction, so a revoked token's entry put back, or
// an entry replaced by its older self, is refused by the read that would
// honour it, also in a server that unsealed long before. Every read of a
// record of a checked set, present or absent, checks its set the same way,
// read whole in the read that brings the record (no round trip of its
// own), so an older role, connection or password policy put back is
// refused by the issue that would use it; a List within one checks it
// too, and lists what the check's scan found, as does a List of the core
// records. Such a read must
// also find what the check's scan found (the state database could answer
// a lookup by key and a scan of a range differently); a write that finds
// no entry, or deletes a core record or entry it does not find, is checked
// too, as it acts on the absence. Verify (operator
// verify, reap -orphans) reads every record and checks the full sum: a
// deleted, added or restored lease or any other record. A rewrite checks
// the old sums before it writes new ones, and later writes never correct a
// wrong sum, so tampering is not laundered. Each record read is still
// authenticated on its own. Every unseal and Verify compare the keyring
// with the one the sets record names, so a keyring put back from before a
// rotation is refused even where no core record moved to the new term.
// Every transaction also refuses a state record
// older than one the barrier has seen committed (ErrRolledBack): putting
// the state record back together with old entries would otherwise pass.
//
// A whole older copy of the file is consistent in itself. TrackGeneration
// compares the store's generation with the highest one this user saw
// committed, kept in a file outside the store; it detects a rollback to a
// copy older than the last write this user made or saw, not one made
// before the user's first command, nor a rollback another user's commands
// alone would reveal.
//
// Nonces are random: at one encryption per write per term, the 2^32 messages
// per key that random 96-bit nonces allow are far beyond a CLI's life, and
// Rotate starts a new key anyway.
//
// What is not protected: which keys exist, and each value's size and age.
package barrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/storage"
)

// FormatVersion is the version of the on-disk format this package writes
// and the only one it reads.
const FormatVersion = 2

// Physical keys of the barrier's own records, and the prefix reserved for
// them.
const (
	ReservedPrefix = "barrier/"
	headerKey      = ReservedPrefix + "header"
	// HeaderKey is where the store's header is: a store without one
	// (the remains of an interrupted copy) opens as no store.
	HeaderKey  = headerKey
	keyringKey = ReservedPrefix + "keyring"
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

	mu      sync.Mutex
	root    *rootKeys // replaced by Rekey
	kek     []byte    // wraps the root key; kept to upgrade a version 1 header
	hdr     *header
	hdrRaw  []byte
	ring    *keyring
	gen     uint64
	genPath string
	// genState is the state record of generation gen as this barrier saw
	// it (nil: not known), so that another record of the same generation
	// (a copy changed since it was taken) is told from it.
	genState []byte
	// guardCache: the token buckets' sums a checked pass found for the
	// state record, while the guard record is stale.
	guardCache *guardCache
	// ringGen is the newest generation at which the keyring this barrier
	// writes with was found to hold every term the core records name (0:
	// not yet): see checkRingTerms.
	ringGen uint64

	genMu      sync.Mutex // serializes writes of the generation file
	acceptPath string     // the generation file an AcceptGeneration will write
	genWritten uint64     // the last generation written to it
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
	phys     storage.Store
	hdr      *header
	hdrRaw   []byte
	ringRaw  []byte
	stateRaw []byte      // version 2
	setsRaw  []byte      // version 2
	core     []rawRecord // version 2: the records under corePrefixes
}

// Peek reads the barrier's header and keyring from phys in one read
// transaction and checks the header. It fails with ErrNotInitialized for an
// empty store.
func Peek(ctx context.Context, phys storage.Store) (*Sealed, error) {
	s := &Sealed{phys: phys}
	err := phys.View(ctx, func(tx storage.Tx) error {
		// One round trip, not five, on a store that pays one per read:
		// the core records are checked at the unseal.
		if err := storage.PrefetchPrefixes(tx, []string{headerKey, keyringKey, stateKey, setsKey}, corePrefixes); err != nil {
			return err
		}
		var err error
		if s.hdrRaw, err = tx.Get(headerKey); err != nil {
			return err
		}
		if s.hdrRaw == nil {
			if err := checkEmpty(tx); err != nil {
				return err
			}
			return ErrNotInitialized
		}
		if s.hdr, err = parseHeader(s.hdrRaw); err != nil {
			return err
		}
		if s.ringRaw, err = tx.Get(keyringKey); err != nil {
			return err
		}
		if s.stateRaw, err = tx.Get(stateKey); err != nil {
			return err
		}
		if s.hdr.version < 2 {
			if s.stateRaw != nil {
				// Only an upgrade writes a state record, with a version
				// 2 header: a version 1 header (and its keyring) put back
				// would turn every set check off.
				return errHeaderReplaced
			}
			return nil
		}
		if s.setsRaw, err = tx.Get(setsKey); err != nil {
			return err
		}
		s.core, err = readCore(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
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
	kek, err := deriveKEK(s.hdr, key)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	rk, err := unwrapRootKey(s.hdr, kek)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	root, err := deriveRootKeys(rk, s.hdr.storeID)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	ring, err := openKeyring(rk, s.hdr.storeID, s.hdr.version, s.ringRaw)
	if err != nil {
		return nil, fmt.Errorf("open barrier: %w", err)
	}
	b := &Barrier{phys: s.phys, rand: rand.Reader, now: time.Now, storeID: s.hdr.storeID, hdr: s.hdr, hdrRaw: s.hdrRaw,
		root: root, kek: kek, ring: ring}
	if s.hdr.version >= 2 {
		st, err := parseState(s.stateRaw, root, s.hdr.storeID)
		if err != nil {
			return nil, fmt.Errorf("open barrier: %w", err)
		}
		// The keyring before the core records: a keyring put back from
		// before a rotation is named as such.
		if err := st.takeSets(s.setsRaw, root, s.hdr.storeID); err != nil {
			return nil, fmt.Errorf("open barrier: %w", err)
		}
		if err := st.checkRing(s.ringRaw); err != nil {
			return nil, fmt.Errorf("open barrier: %w", err)
		}
		// Each core record first on its own, so that a damaged one is
		// named; then the set.
		for _, rec := range s.core {
			if _, err := openRecord(ring, s.hdr.storeID, rec.key, rec.sealed); err != nil {
				return nil, fmt.Errorf("open barrier: %w", err)
			}
		}
		if err := checkCore(s.core, root, st.sums.core); err != nil {
			return nil, fmt.Errorf("open barrier: %w", err)
		}
		b.gen, b.genState = st.gen, s.stateRaw
	}
	return b, nil
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
	kek, err := deriveKEK(h, key)
	if err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	if err := b.wrapRootKey(h, kek, rk); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	root, err := deriveRootKeys(rk, h.storeID)
	if err != nil {
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
	if ring.raw, err = sealKeyring(rk, h.storeID, h.version, ring, b.rand); err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	hdrRaw := h.marshal()
	st := &state{gen: 1, guarded: true, setsKnown: true, ring: sha256.Sum256(ring.raw)}
	guardRaw, setsRaw, stateRaw := st.marshalGuard(root, h.storeID), st.marshalSets(root, h.storeID), st.marshal(root, h.storeID)

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
		if err := tx.Put(keyringKey, ring.raw); err != nil {
			return err
		}
		if err := tx.Put(guardKey, guardRaw); err != nil {
			return err
		}
		if err := tx.Put(setsKey, setsRaw); err != nil {
			return err
		}
		return tx.Put(stateKey, stateRaw)
	})
	if err != nil {
		return nil, fmt.Errorf("init barrier: %w", err)
	}
	b.hdr, b.hdrRaw, b.root, b.kek, b.ring, b.storeID, b.gen = h, hdrRaw, root, kek, ring, h.storeID, st.gen
	b.genState = stateRaw
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
	seen, seenState := b.seenState()
	return b.phys.View(ctx, func(tx storage.Tx) error {
		ring, root := b.current()
		return fn(&sealedTx{b: b, tx: tx, ring: ring, root: root, seen: seen, seenState: seenState})
	})
}

// Update runs fn in a read-write transaction that seals each value it
// writes with the active data key term. If fn changed a record, the
// transaction also updates the record checksum and the generation in the
// state record; a version 1 store gets them here, on its first write.
func (b *Barrier) Update(ctx context.Context, fn func(storage.Tx) error) error {
	return b.update(ctx, false, fn)
}

// Upgrade gives a store of format version 1 its record checksum (a full
// pass over the store) without waiting for its first write. It does
// nothing to a version 2 store.
func (b *Barrier) Upgrade(ctx context.Context) error {
	b.mu.Lock()
	v1 := b.hdr.version < 2
	b.mu.Unlock()
	if !v1 {
		// A store whose guard record is stale (or missing: from before
		// the token buckets) gets a current one.
		err := b.phys.View(ctx, func(tx storage.Tx) error {
			_, root := b.current()
			st, _, err := loadState(tx, root, b.storeID)
			if err == nil && st.current() {
				err = errNoUpgrade
			}
			return err
		})
		if errors.Is(err, errNoUpgrade) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return b.update(ctx, true, func(storage.Tx) error { return nil })
}

var errNoUpgrade = errors.New("no upgrade needed")

func (b *Barrier) update(ctx context.Context, force bool, fn func(storage.Tx) error) error {
	var done func()
	var gen uint64
	var genState []byte
	seen, seenState := b.seenState()
	err := b.phys.Update(ctx, func(tx storage.Tx) error {
		done, gen, genState = nil, 0, nil
		ring, root := b.current()
		// The header is checked at fn's first read or write, before it
		// sees or seals a record, and read with it (see ahead).
		t := &sealedTx{b: b, tx: tx, ring: ring, root: root, write: true, seen: seen, seenState: seenState, headerDue: true}
		if err := fn(t); err != nil {
			return err
		}
		if !t.changed && !force {
			return nil
		}
		if t.headerDue {
			// fn read and wrote nothing (an upgrade).
			if err := t.ahead(nil, nil, true); err != nil {
				return err
			}
		}
		h := t.hdr
		var err error
		if h.version < 2 {
			done, gen, err = b.upgrade(tx, h)
			return err
		}
		st, raw, err := loadState(tx, t.root, b.storeID)
		if err != nil {
			return err
		}
		if err := b.observe(st.gen, raw, seen, seenState); err != nil {
			return err
		}
		if !st.current() {
			if err := b.guardState(tx, t.root, st, raw, &t.delta); err != nil {
				return err
			}
		}
		st.sums.addSums(&t.delta)
		st.gen++
		gen, genState = st.gen, st.marshal(t.root, b.storeID)
		return st.put(tx, t.root, b.storeID)
	})
	if err != nil {
		return err
	}
	if done != nil {
		done()
	}
	if gen != 0 {
		b.noteGeneration(gen, genState, false)
		b.noteState(gen, genState)
		b.noteRingChecked(gen)
	}
	return nil
}

// noteRingChecked records that the commit of generation gen, which wrote
// no keyring, left the keyring checked at gen-1 current.
func (b *Barrier) noteRingChecked(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ringGen == gen-1 {
		b.ringGen = gen
	}
}

var errRekeyed = errors.New("the store was rekeyed since this command opened it; run the command again")

// checkHeader returns the header stored in tx, which is the one this
// barrier was opened with unless another process upgraded it to version 2
// since (which this barrier adopts). Any other change is a rekey, after
// which this barrier's root key no longer seals anything.
func (b *Barrier) checkHeader(tx storage.Tx) (*header, error) {
	raw, err := tx.Get(headerKey)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bytes.Equal(raw, b.hdrRaw) {
		return b.hdr, nil
	}
	if raw == nil {
		return nil, &damageError{"store header is missing"}
	}
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.version < b.hdr.version || h.storeID != b.storeID {
		return nil, errHeaderReplaced
	}
	rk, err := unwrapRootKey(h, b.kek)
	if err != nil || !bytes.Equal(rk, b.root.rk) {
		return nil, errRekeyed
	}
	b.hdr, b.hdrRaw = h, raw
	return h, nil
}

var errHeaderReplaced = &damageError{"store header was replaced by an older one (tampered)"}

// upgrade turns a version 1 store into version 2 in tx: the header and the
// keyring are sealed again with version 2 in their additional data (so
// that neither can be passed off as version 1 without the keys), and the
// state record is computed from every record. It returns what to adopt
// once tx commits.
func (b *Barrier) upgrade(tx storage.Tx, old *header) (func(), uint64, error) {
	if raw, err := tx.Get(stateKey); err != nil || raw != nil {
		if err == nil {
			err = errHeaderReplaced
		}
		return nil, 0, err
	}
	b.mu.Lock()
	kek, root, ring := b.kek, b.root, b.ring
	b.mu.Unlock()
	h := *old
	h.version = 2
	if err := b.wrapRootKey(&h, kek, root.rk); err != nil {
		return nil, 0, err
	}
	ring, err := b.loadRing(tx)
	if err != nil {
		return nil, 0, err
	}
	next := ring.clone()
	if next.raw, err = sealKeyring(root.rk, b.storeID, h.version, next, b.rand); err != nil {
		return nil, 0, err
	}
	sums, _, err := sumRecords(tx, root, "", nil)
	if err != nil {
		return nil, 0, err
	}
	st := &state{gen: 1, sums: sums, guarded: true, setsKnown: true, ring: sha256.Sum256(next.raw)}
	hdrRaw := h.marshal()
	if err := tx.Put(headerKey, hdrRaw); err != nil {
		return nil, 0, err
	}
	if err := tx.Put(keyringKey, next.raw); err != nil {
		return nil, 0, err
	}
	if err := st.put(tx, root, b.storeID); err != nil {
		return nil, 0, err
	}
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.hdr, b.hdrRaw, b.ring = &h, hdrRaw, next
	}, st.gen, nil
}

// Rotate adds a new data key term and makes it the active one. Records
// sealed with older terms stay readable and move to the new term when they
// are next written, except the few core records, which move now;
// RotateReencrypt moves all of them at once. It starts a
// new generation, so that the store from before it, put back, is refused as
// rolled back.
func (b *Barrier) Rotate(ctx context.Context) (uint32, error) {
	// A version 1 store first gets its record checksum: without it the
	// rotation would start no generation nor move the core records, and
	// the store or keyring from before it, put back, would pass.
	if err := b.Upgrade(ctx); err != nil {
		return 0, fmt.Errorf("rotate barrier key: %w", err)
	}
	var next *keyring
	var gen uint64
	var genState []byte
	seen, seenState := b.seenState()
	err := b.phys.Update(ctx, func(tx storage.Tx) error {
		gen, genState = 0, nil
		h, err := b.checkHeader(tx)
		if err != nil {
			return err
		}
		cur, err := b.loadRing(tx)
		if err != nil {
			return err
		}
		next = cur.clone()
		t := cur.newest() + 1
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
		_, root := b.current()
		if next.raw, err = sealKeyring(root.rk, b.storeID, h.version, next, b.rand); err != nil {
			return err
		}
		if err := tx.Put(keyringKey, next.raw); err != nil {
			return err
		}
		if h.version >= 2 {
			// A new generation, though no record changed: a copy of the
			// store from before the rotation, put back, would otherwise be
			// the same generation with the same state record, and pass
			// for current with the rotation undone.
			st, raw, err := loadState(tx, root, b.storeID)
			if err != nil {
				return err
			}
			if err := b.observe(st.gen, raw, seen, seenState); err != nil {
				return err
			}
			if !st.current() {
				if err := b.guardState(tx, root, st, raw, &setSums{}); err != nil {
					return err
				}
			}
			// The core records move to the new term now, not at their
			// next write: every unseal opens them, so the keyring from
			// before the rotation, put back (it opens under the same
			// root key), no longer opens the store, where it would have
			// every later write sealed with the retired data key.
			d, err := resealCore(tx, cur, next, root, b.storeID, st.sums.core, b.rand)
			if err != nil {
				return err
			}
			st.sums.addSums(&d)
			st.gen++
			st.ring = sha256.Sum256(next.raw)
			if err := st.put(tx, root, b.storeID); err != nil {
				return err
			}
			gen, genState = st.gen, st.marshal(root, b.storeID)
		}
		failpoint.Hit(failpoint.BarrierRotateBeforeCommit)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotate barrier key: %w", err)
	}
	failpoint.Hit(failpoint.BarrierRotateAfterCommit)
	b.setRing(next)
	if gen != 0 {
		b.noteGeneration(gen, genState, false)
		b.noteState(gen, genState)
	}
	return next.active, nil
}

// RotateReencrypt starts a new data key term, seals every record again
// with it and drops every older term, so that an old data key (from an old
// copy of the keyring and an old unseal key) opens nothing in the store any
// more. It rewrites the store into a new file (see storage.Rewriter): a
// crash leaves either the old store or the new one, and running it again
// finishes the job. Its cost is a full pass over the store, in bounded
// memory.
func (b *Barrier) RotateReencrypt(ctx context.Context) (uint32, error) {
	r, err := b.rewrite(ctx, rewritePlan{reencrypt: true, failpoint: failpoint.BarrierReencryptBeforeRename})
	if err != nil {
		return 0, fmt.Errorf("rotate and re-encrypt: %w", err)
	}
	return r.active, nil
}

// Rekey generates a new root key, wraps it for newKey (which may be of the
// other kind) with a fresh nonce and, for a passphrase, a fresh salt and
// opts.KDF (zero: DefaultArgon2), and seals the keyring and the record
// checksum under it; it uses no other field of opts. Records are not
// re-encrypted (RotateReencrypt does that). The store is rewritten into a
// new file, so no copy of the old header or keyring is left in it: the old
// key opens nothing in the store, not even with an old header put back.
func (b *Barrier) Rekey(ctx context.Context, newKey UnsealKey, opts InitOptions) error {
	if newKey.kind == 0 {
		return errNoKey
	}
	if _, err := b.rewrite(ctx, rewritePlan{key: newKey, kdf: opts.KDF, failpoint: failpoint.BarrierRekeyBeforeCommit}); err != nil {
		return fmt.Errorf("rekey barrier: %w", err)
	}
	failpoint.Hit(failpoint.BarrierRekeyAfterCommit)
	return nil
}

type rewritePlan struct {
	key       UnsealKey // a new unseal key and root key; zero keeps both
	kdf       Argon2Params
	reencrypt bool
	failpoint string
}

// rewrite copies the store into a new file, changing it as plan says, and
// returns the new keyring. A version 1 store comes out as version 2. The
// old record checksum is checked on the way: a rewrite must not make
// tampering look legitimate.
func (b *Barrier) rewrite(ctx context.Context, plan rewritePlan) (*keyring, error) {
	rw, ok := b.phys.(storage.Rewriter)
	if !ok {
		return nil, errors.New("this store cannot be rewritten")
	}
	b.mu.Lock()
	oldRaw, oldHdr, kek, oldRoot := b.hdrRaw, *b.hdr, b.kek, b.root
	b.mu.Unlock()

	h := oldHdr
	h.version = FormatVersion
	root := oldRoot
	if plan.key.kind != 0 {
		if err := b.setUnsealKey(&h, plan.key, plan.kdf); err != nil {
			return nil, err
		}
		var err error
		if kek, err = deriveKEK(&h, plan.key); err != nil {
			return nil, err
		}
		rk, err := b.random(32)
		if err != nil {
			return nil, err
		}
		if root, err = deriveRootKeys(rk, b.storeID); err != nil {
			return nil, err
		}
	}
	if err := b.wrapRootKey(&h, kek, root.rk); err != nil {
		return nil, err
	}
	hdrRaw := h.marshal()

	var next *keyring
	var st *state
	var stateRaw []byte
	err := rw.Rewrite(ctx, func(src, dst storage.Tx) error {
		cur, err := src.Get(headerKey)
		if err != nil {
			return err
		}
		if !bytes.Equal(cur, oldRaw) {
			return errors.New("the store header changed since the store was opened (rekeyed by another process?); open it again")
		}
		ring, err := b.loadRing(src)
		if err != nil {
			return err
		}
		var old *state
		if oldHdr.version >= 2 {
			if old, _, err = loadState(src, oldRoot, b.storeID); err != nil {
				return err
			}
		}
		next = ring.clone()
		if plan.reencrypt {
			t := ring.newest() + 1
			if t == 0 {
				return errors.New("no key term left")
			}
			dk, err := b.random(32)
			if err != nil {
				return err
			}
			next = &keyring{active: t, terms: map[uint32]*term{}}
			if err := next.add(t, time.Unix(b.now().Unix(), 0), dk); err != nil {
				return err
			}
		}
		if next.raw, err = sealKeyring(root.rk, b.storeID, h.version, next, b.rand); err != nil {
			return err
		}
		var sums setSums
		e := root.hasher()
		oldSums, _, err := sumRecords(src, oldRoot, "", func(k string, sealed []byte) error {
			if plan.reencrypt {
				if t, ok := recordTerm(sealed); !ok || t != next.active {
					v, err := openRecord(ring, b.storeID, k, sealed)
					if err != nil {
						return err
					}
					if sealed, err = sealRecord(next, b.storeID, k, v, b.rand); err != nil {
						return err
					}
				}
			}
			sums.add(e, k, sealed)
			return dst.Put(k, sealed)
		})
		if err != nil {
			return err
		}
		st = &state{gen: 1, sums: sums, guarded: true, setsKnown: true, ring: sha256.Sum256(next.raw)}
		if old != nil {
			if err := old.check(&oldSums); err != nil {
				return err
			}
			st.gen = old.gen + 1
		}
		stateRaw = st.marshal(root, b.storeID)
		for _, kv := range []struct {
			k string
			v []byte
		}{{headerKey, hdrRaw}, {keyringKey, next.raw}, {stateKey, stateRaw}, {guardKey, st.marshalGuard(root, b.storeID)}, {setsKey, st.marshalSets(root, b.storeID)}} {
			if err := dst.Put(kv.k, kv.v); err != nil {
				return err
			}
		}
		failpoint.Hit(plan.failpoint)
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.hdr, b.hdrRaw, b.root, b.kek, b.ring = &h, hdrRaw, root, kek, next
	b.mu.Unlock()
	b.noteGeneration(st.gen, stateRaw, false)
	return next, nil
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Records    int    // records checked
	Generation uint64 // the store's generation
	Opened     bool   // every record was also opened (authenticated)
}

// Verify checks the whole store against its record checksum: any record
// deleted, added, or replaced by an older copy since lessor last wrote
// fails it with a *TamperedError. With open, it also opens every record,
// which authenticates each one and finds any that no key term opens. It
// reads every record (O(n)), in one read transaction. A version 1 store
// has no checksum yet: Verify upgrades it first (see Upgrade).
func (b *Barrier) Verify(ctx context.Context, open bool) (VerifyResult, error) {
	if err := b.Upgrade(ctx); err != nil {
		return VerifyResult{}, fmt.Errorf("verify store: %w", err)
	}
	var res VerifyResult
	err := b.phys.View(ctx, func(tx storage.Tx) error {
		if _, err := b.checkHeader(tx); err != nil {
			return err
		}
		_, root := b.current()
		st, _, err := loadState(tx, root, b.storeID)
		if err != nil {
			return err
		}
		ring, err := b.loadRing(tx)
		if err != nil {
			return err
		}
		if err := st.checkRing(ring.raw); err != nil {
			return err
		}
		sums, n, err := sumRecords(tx, root, "", func(k string, sealed []byte) error {
			if !open {
				return nil
			}
			_, err := openRecord(ring, b.storeID, k, sealed)
			return err
		})
		if err != nil {
			return err
		}
		if err := st.check(&sums); err != nil {
			return err
		}
		res = VerifyResult{Records: n, Generation: st.gen, Opened: open}
		return nil
	})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify store: %w", err)
	}
	return res, nil
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

// current returns the keyring and root keys as of the last transaction.
func (b *Barrier) current() (*keyring, *rootKeys) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ring, b.root
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
	b.mu.Lock()
	cached, root, version := b.ring, b.root, b.hdr.version
	b.mu.Unlock()
	if bytes.Equal(raw, cached.raw) {
		return cached, nil
	}
	ring, err := openKeyring(root.rk, b.storeID, version, raw)
	if err != nil {
		return nil, err
	}
	// Terms only grow: Rotate adds one past the newest, RotateReencrypt
	// starts one past them all. A keyring whose newest term is older than
	// one this barrier has seen was put back from an older copy, and
	// writes would be sealed with a retired data key.
	if got, seen := ring.newest(), cached.newest(); got < seen {
		return nil, fmt.Errorf("%w: the keyring's newest key term is %d, but this process already saw term %d (an older keyring was put back)", ErrRolledBack, got, seen)
	}
	b.setRing(ring)
	return ring, nil
}

// sealedTx is a transaction as the rest of lessor sees it.
type sealedTx struct {
	b       *Barrier
	tx      storage.Tx
	ring    *keyring
	root    *rootKeys
	write   bool
	fresh   bool // ring was compared with the stored keyring in this tx
	changed bool // a record was put or deleted
	delta   setSums
	hash    *elementHasher

	// seen is the newest generation this barrier knew of when the
	// transaction began: every commit up to it is in the transaction's
	// view, so a state record older than it was put back.
	seen        uint64
	seenState   []byte // the state record of generation seen, if known
	state       *state // as read by the first check
	stateRaw    []byte
	guarded     [guardBuckets / 64]uint64 // the token buckets checked
	coreChecked bool                      // the core records checked
	setsChecked map[string]bool           // the checked sets checked, by prefix
	// scanned holds, by key, the sealed values that the checks of the
	// core records and of the token buckets summed, kept up to date by
	// the transaction's own writes. A read of a key in a checked set must
	// find what the scan found: the state database can answer a lookup
	// by key otherwise than a scan of a range (a row security policy that
	// tests the query's text, a row changed between two statements at
	// READ COMMITTED), and serve a revoked token entry, or hide a deny
	// policy, behind sums that add up.
	scanned map[string][]byte
	// headerDue: an Update's header is still to be checked (see ahead);
	// hdr is the header it found.
	headerDue bool
	hdr       *header
	// ringChecked: the keyring the writes are sealed with was read in
	// this transaction and checked against the core records' terms.
	ringChecked bool
}

// track accounts for the record at key changing from old (nil: absent) to
// new (nil: deleted) in the record checksum.
func (t *sealedTx) track(key string, old, new []byte) {
	if t.hash == nil {
		t.hash = t.root.hasher()
	}
	if old != nil {
		t.delta.sub(t.hash, key, old)
	}
	if new != nil {
		t.delta.add(t.hash, key, new)
	}
	t.changed = true
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
	// The record and what its check reads, in one trip.
	if err := t.ahead([]string{key}, nil, false); err != nil {
		return nil, err
	}
	sealed, err := t.tx.Get(key)
	if err != nil {
		return nil, err
	}
	var v []byte
	if sealed != nil {
		if v, err = t.open(key, sealed); err != nil {
			return nil, err
		}
	}
	if err := t.checkSet(key, sealed); err != nil {
		return nil, err
	}
	return v, nil
}

// open opens one record read in t: with the stored keyring if the record
// names a term this barrier has not seen (another process rotated).
func (t *sealedTx) open(key string, sealed []byte) ([]byte, error) {
	if term, ok := recordTerm(sealed); ok && t.ring.terms[term] == nil && !t.fresh {
		var err error
		if t.ring, err = t.b.loadRing(t.tx); err != nil {
			return nil, err
		}
		t.fresh = true
	}
	return openRecord(t.ring, t.b.storeID, key, sealed)
}

// checkSet checks the set a record just read (sealed; nil: not found)
// belongs to, after the record itself opened: the core records' whole set,
// a token entry's bucket; and that the read found what the check's scan
// of the set found. A token entry not found is checked in a write only: a
// read-only lookup that finds nothing refuses the token, but a write acts
// on the absence (a revocation that finds no entry revokes nothing and
// succeeds), so an entry the state database hid from writes alone would
// outlive its revocation. Writes rarely miss, so this costs little, where
// every read that misses (any invalid token presented) would pay a scan.
func (t *sealedTx) checkSet(key string, sealed []byte) error {
	var err error
	set, inSet := checkedSet(key)
	switch {
	case isCore(key):
		err = t.checkCoreSet()
	case inSet:
		// Present or absent: these sets are small and read with the
		// record anyway.
		err = t.checkSetOf(set)
	case sealed != nil || t.write:
		err = t.checkGuard(key)
	}
	if err != nil || !t.inScanned(key) {
		return err
	}
	if want, ok := t.scanned[key]; ok != (sealed != nil) || !bytes.Equal(want, sealed) {
		return &TamperedError{Core: isCore(key), Config: inSet, Token: !isCore(key) && !inSet}
	}
	return nil
}

// inScanned reports whether key belongs to a set whose scan t.scanned
// holds: the core records, or a token bucket, once checked in a version 2
// store.
func (t *sealedTx) inScanned(key string) bool {
	if t.scanned == nil {
		return false
	}
	if isCore(key) {
		return t.coreChecked
	}
	if p, ok := checkedSet(key); ok {
		return t.setsChecked[p]
	}
	g, ok := guardBucket(key)
	return ok && t.guarded[g/64]&(1<<(g%64)) != 0
}

// GetMany implements storage.ManyGetter: the physical store reads the
// keys in one call where it can, and each value is opened as Get opens it.
func (t *sealedTx) GetMany(keys []string) ([][]byte, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	if err := t.ahead(keys, nil, false); err != nil {
		return nil, err
	}
	sealed, err := storage.GetMany(t.tx, keys)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, s := range sealed {
		if s == nil {
			continue
		}
		if out[i], err = t.open(keys[i], s); err != nil {
			return nil, err
		}
	}
	for i, s := range sealed {
		if err := t.checkSet(keys[i], s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Prefetch implements storage.Prefetcher: the physical store reads the
// sealed values ahead (if it gains by it), for the Gets, Puts and Deletes
// to come, which open or replace them, together with what the checks of
// their sets will read: the state records, a token entry's bucket, the
// core records.
func (t *sealedTx) Prefetch(keys []string) error {
	return t.PrefetchPrefixes(keys, nil)
}

// PrefetchPrefixes implements storage.PrefixPrefetcher: Prefetch, and
// every record under prefixes, for the GetPrefixes to come, in the same
// call.
func (t *sealedTx) PrefetchPrefixes(keys, prefixes []string) error {
	for _, k := range append(keys[:len(keys):len(keys)], prefixes...) {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return t.ahead(keys, prefixes, true)
}

// ahead reads ahead, in one call with keys and prefixes (which an
// operation is about to read; always: even with no check to add), what it
// will read besides them: what their sets' checks read (see checksAhead)
// and, at an Update's first operation, the barrier's own records, whose
// header it then checks, so that an Update pays no round trip of its own
// for them where a read costs one.
func (t *sealedTx) ahead(keys, prefixes []string, always bool) error {
	keys, prefixes = t.checksAhead(keys, prefixes)
	switch {
	case t.headerDue:
		// The header now, the keyring at the first write, the state
		// records at the end; the core records too (a few rows), which
		// the first write checks the keyring against when another
		// process committed since (see checkRingTerms), which this one
		// learns only from the state record this read brings.
		keys = append([]string{headerKey, keyringKey, stateKey, guardKey, setsKey}, keys...)
		if !t.coreChecked && !slices.ContainsFunc(prefixes, touchesCore) {
			prefixes = append(prefixes[:len(prefixes):len(prefixes)], corePrefixes...)
		}
	case len(prefixes) == 0 && !always:
		return nil
	}
	if err := storage.PrefetchPrefixes(t.tx, keys, prefixes); err != nil {
		return err
	}
	if t.headerDue {
		h, err := t.b.checkHeader(t.tx)
		if err != nil {
			return err
		}
		t.hdr, t.headerDue = h, false
	}
	return nil
}

// checksAhead returns keys with the state records added, and prefixes
// with those that the checks of the sets keys belong to will read whole (a
// token entry's bucket, the core records, which a GetPrefix of a prefix
// that touches them checks too), for the checks not yet made in t, so that
// one read serves the records and their checks where a read costs a round
// trip. A bucket is read even if its entry turns out absent (no check
// then): the same round trip, a few more rows.
func (t *sealedTx) checksAhead(keys, prefixes []string) ([]string, []string) {
	prefixes = prefixes[:len(prefixes):len(prefixes)]
	checks := false
	core := false
	for _, k := range keys {
		if g, ok := guardBucket(k); ok && t.guarded[g/64]&(1<<(g%64)) == 0 {
			if p := k[:len(guardPrefix)+2]; !slices.Contains(prefixes, p) {
				prefixes = append(prefixes, p)
			}
			checks = true
		}
		core = core || isCore(k)
		if p, ok := checkedSet(k); ok && !t.setsChecked[p] {
			if !slices.Contains(prefixes, p) {
				prefixes = append(prefixes, p)
			}
			checks = true
		}
	}
	for _, p := range prefixes {
		core = core || touchesCore(p)
		// A prefix within a checked set: the set is checked too.
		if s, ok := checkedSet(p); ok && !t.setsChecked[s] {
			if !slices.Contains(prefixes, s) {
				prefixes = append(prefixes, s)
			}
			checks = true
		}
	}
	if core && !t.coreChecked {
		prefixes = append(prefixes, corePrefixes...)
		checks = true
	}
	if checks && t.state == nil {
		// The checks will read the state records: in the same trip; and,
		// while the store is in format version 1 for this barrier, the
		// header, which tells whether another process upgraded it.
		keys = append(keys[:len(keys):len(keys)], stateKey, guardKey, setsKey)
		t.b.mu.Lock()
		if t.b.hdr.version < 2 {
			keys = append(keys, headerKey)
		}
		t.b.mu.Unlock()
	}
	return keys, prefixes
}

func (t *sealedTx) Put(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if !t.write {
		// Let the physical store refuse it in its own words.
		return t.tx.Put(key, value)
	}
	if err := t.ahead([]string{key}, nil, false); err != nil {
		return err
	}
	if !t.ringChecked {
		// Write with the newest active term, even if another process
		// rotated since this one last looked.
		ring, err := t.b.loadRing(t.tx)
		if err != nil {
			return err
		}
		if err := t.checkRingTerms(ring); err != nil {
			return err
		}
		t.ring, t.fresh, t.ringChecked = ring, true, true
	}
	sealed, err := sealRecord(t.ring, t.b.storeID, key, value, t.b.rand)
	if err != nil {
		return fmt.Errorf("seal %q: %w", key, err)
	}
	old, err := t.tx.Get(key)
	if err != nil {
		return err
	}
	if err := t.tx.Put(key, sealed); err != nil {
		return err
	}
	t.track(key, old, sealed)
	if t.inScanned(key) {
		t.scanned[key] = sealed
	}
	return nil
}

func (t *sealedTx) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if !t.write {
		return t.tx.Delete(key)
	}
	if err := t.ahead([]string{key}, nil, false); err != nil {
		return err
	}
	old, err := storage.Take(t.tx, key)
	if err != nil {
		return err
	}
	if old == nil {
		// Deleting an absent key changes nothing, once its set says it
		// is absent: a policy or token entry the state database hid
		// from this lookup would otherwise survive its deletion.
		return t.checkSet(key, nil)
	}
	t.track(key, old, nil)
	delete(t.scanned, key)
	return nil
}

// GetPrefix implements storage.PrefixGetter: the physical store reads the
// records under prefix with their values in one call where it can; each is
// opened and its set checked as List and GetMany would.
func (t *sealedTx) GetPrefix(prefix string) ([]string, [][]byte, error) {
	if err := checkKey(prefix); err != nil {
		return nil, nil, err
	}
	if err := t.ahead(nil, []string{prefix}, false); err != nil {
		return nil, nil, err
	}
	if touchesCore(prefix) {
		if err := t.checkCoreSet(); err != nil {
			return nil, nil, err
		}
	}
	if s, ok := checkedSet(prefix); ok {
		// Its set, even if it finds no record.
		if err := t.checkSetOf(s); err != nil {
			return nil, nil, err
		}
	}
	keys, sealed, err := storage.GetPrefix(t.tx, prefix)
	if err != nil {
		return nil, nil, err
	}
	var outK []string
	var outV, outS [][]byte
	for i, k := range keys {
		if strings.HasPrefix(k, ReservedPrefix) {
			continue
		}
		v, err := t.open(k, sealed[i])
		if err != nil {
			return nil, nil, err
		}
		outK, outV, outS = append(outK, k), append(outV, v), append(outS, sealed[i])
	}
	for i, k := range outK {
		if err := t.checkSet(k, outS[i]); err != nil {
			return nil, nil, err
		}
	}
	return outK, outV, nil
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
	var ahead []string
	if touchesCore(prefix) {
		ahead = corePrefixes // for the check below
	}
	// A walk within a checked set checks it, and lists what its scan
	// found, as a walk of the core records does.
	set, inSet := checkedSet(prefix)
	if inSet {
		ahead = []string{set}
	}
	if err := t.ahead(nil, ahead, false); err != nil {
		return err
	}
	if touchesCore(prefix) {
		if err := t.checkCoreSet(); err != nil {
			return err
		}
	}
	if inSet {
		if err := t.checkSetOf(set); err != nil {
			return err
		}
	}
	fromScan := func(k string) bool {
		return isCore(k) || inSet && strings.HasPrefix(k, set)
	}
	if t.scanned == nil || !(touchesCore(prefix) && t.coreChecked || inSet && t.setsChecked[set]) {
		return t.tx.Walk(prefix, func(k string) error {
			if strings.HasPrefix(k, ReservedPrefix) {
				return nil
			}
			return fn(k)
		})
	}
	// The core records, and the records of a checked set, come from the
	// scan that checked their set, not from the walk's own query, which
	// the state database can answer otherwise (row security on the
	// query's text) and so hide a policy, a static role or a connection
	// from a listing whose set added up. They are taken as the walk
	// begins: one that fn writes is not visited, one it deletes is not
	// visited after.
	var scan []string
	for k := range t.scanned {
		if fromScan(k) && strings.HasPrefix(k, prefix) {
			scan = append(scan, k)
		}
	}
	slices.Sort(scan)
	stopped := false
	call := func(k string) error {
		err := fn(k)
		stopped = errors.Is(err, storage.ErrStop)
		return err
	}
	emit := func(below string, all bool) error {
		for len(scan) > 0 && (all || scan[0] < below) {
			k := scan[0]
			scan = scan[1:]
			if _, ok := t.scanned[k]; !ok {
				continue // deleted by fn
			}
			if err := call(k); err != nil {
				return err
			}
		}
		return nil
	}
	err := t.tx.Walk(prefix, func(k string) error {
		if strings.HasPrefix(k, ReservedPrefix) || fromScan(k) {
			return nil
		}
		if err := emit(k, false); err != nil {
			return err
		}
		return call(k)
	})
	if err != nil || stopped {
		return err
	}
	if err := emit("", true); err != nil && !errors.Is(err, storage.ErrStop) {
		return err
	}
	return nil
}

// damageError is damage found by the barrier; its text names what is
// damaged and never includes key material.
type damageError struct{ msg string }

func (e *damageError) Error() string { return e.msg }
func (e *damageError) Unwrap() error { return ErrCorrupt }
