package barrier

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// The byte layouts here are described in the package comment.

const (
	headerMagic   = "lessorhd"
	headerBodyLen = 119
	headerLen     = headerBodyLen + sha256.Size
	headerAADLen  = 59 // everything before the wrap nonce
	nonceLen      = 12
	tagLen        = 16
	recordVersion = 0x01
	recordHdrLen  = 1 + 4 + nonceLen
	maxTerms      = 1 << 16
	termEntryLen  = 4 + 8 + 32
)

var be = binary.BigEndian

type keyKind uint8

const (
	kindKeyFile    keyKind = 1
	kindPassphrase keyKind = 2
)

func (k keyKind) String() string {
	switch k {
	case kindKeyFile:
		return KindKeyFile
	case kindPassphrase:
		return KindPassphrase
	}
	return fmt.Sprintf("unknown(%d)", uint8(k))
}

// header is the plaintext record that says how to unseal the store.
type header struct {
	version uint8
	storeID [16]byte
	created int64 // unix seconds
	kind    keyKind
	kdf     Argon2Params
	salt    [16]byte
	nonce   [nonceLen]byte
	wrapped [32 + tagLen]byte
}

func (h *header) marshal() []byte {
	b := make([]byte, 0, headerLen)
	b = append(b, headerMagic...)
	b = append(b, h.version)
	b = append(b, h.storeID[:]...)
	b = be.AppendUint64(b, uint64(h.created))
	b = append(b, byte(h.kind))
	b = be.AppendUint32(b, h.kdf.Time)
	b = be.AppendUint32(b, h.kdf.MemoryKiB)
	b = append(b, h.kdf.Threads)
	b = append(b, h.salt[:]...)
	b = append(b, h.nonce[:]...)
	b = append(b, h.wrapped[:]...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// aad is the additional data of the root key's wrap: every header field
// before the nonce, so that none can be changed without the key noticing.
func (h *header) aad() []byte {
	return append([]byte("lessor/v1/rk"), h.marshal()[:headerAADLen]...)
}

var errHeaderDamaged = &damageError{"store header is damaged"}

// parseHeader reads a stored header, telling damage (a failed checksum) from
// a header this version cannot use.
func parseHeader(b []byte) (*header, error) {
	if len(b) != headerLen {
		return nil, errHeaderDamaged
	}
	if sum := sha256.Sum256(b[:headerBodyLen]); !bytes.Equal(sum[:], b[headerBodyLen:]) {
		return nil, errHeaderDamaged
	}
	if string(b[:8]) != headerMagic {
		return nil, &damageError{"store header is not a lessor header"}
	}
	h := &header{version: b[8]}
	if h.version != 1 && h.version != FormatVersion {
		return nil, fmt.Errorf("store format version %d is not supported (this lessor reads versions 1 and %d)", h.version, FormatVersion)
	}
	copy(h.storeID[:], b[9:25])
	h.created = int64(be.Uint64(b[25:]))
	h.kind = keyKind(b[33])
	h.kdf = Argon2Params{Time: be.Uint32(b[34:]), MemoryKiB: be.Uint32(b[38:]), Threads: b[42]}
	copy(h.salt[:], b[43:59])
	copy(h.nonce[:], b[59:71])
	copy(h.wrapped[:], b[71:119])
	switch h.kind {
	case kindKeyFile:
		if h.kdf != (Argon2Params{}) || h.salt != [16]byte{} {
			return nil, &damageError{"store header has KDF parameters for a key file"}
		}
	case kindPassphrase:
		if err := h.kdf.Validate(); err != nil {
			return nil, &damageError{"store header: " + err.Error()}
		}
	default:
		return nil, &damageError{fmt.Sprintf("store header has unknown unseal kind %d", h.kind)}
	}
	return h, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// setUnsealKey records in h how newKey is turned into a KEK: nothing for a
// key file, Argon2id parameters and a fresh salt for a passphrase.
func (b *Barrier) setUnsealKey(h *header, key UnsealKey, kdf Argon2Params) error {
	h.kind = key.kind
	h.kdf, h.salt = Argon2Params{}, [16]byte{}
	if key.kind != kindPassphrase {
		return nil
	}
	if len(key.secret) == 0 {
		return errors.New("empty passphrase")
	}
	if kdf == (Argon2Params{}) {
		kdf = DefaultArgon2
	}
	if err := kdf.Validate(); err != nil {
		return err
	}
	h.kdf = kdf
	_, err := io.ReadFull(b.rand, h.salt[:])
	return err
}

// wrapRootKey seals rk under kek into h, with a fresh nonce.
func (b *Barrier) wrapRootKey(h *header, kek, rk []byte) error {
	aead, err := newGCM(kek)
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(b.rand, h.nonce[:]); err != nil {
		return err
	}
	copy(h.wrapped[:], aead.Seal(nil, h.nonce[:], rk, h.aad()))
	return nil
}

func unwrapRootKey(h *header, kek []byte) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	rk, err := aead.Open(nil, h.nonce[:], h.wrapped[:], h.aad())
	if err != nil {
		// The checksum held, so the header is as written: the key is wrong
		// (or someone rewrote the header and its checksum, which looks
		// the same and is refused the same).
		return nil, ErrWrongKey
	}
	return rk, nil
}

type term struct {
	created time.Time
	key     []byte
	aead    cipher.AEAD
}

// keyring is the set of data keys. It is never changed once built (clone
// before changing), so a transaction can keep using the one it started
// with.
type keyring struct {
	raw    []byte // as stored, to notice another process's rotation
	active uint32
	terms  map[uint32]*term
}

func (r *keyring) add(t uint32, created time.Time, key []byte) error {
	aead, err := newGCM(key)
	if err != nil {
		return err
	}
	r.terms[t] = &term{created: created, key: key, aead: aead}
	return nil
}

// newest is the highest term the keyring holds.
func (r *keyring) newest() uint32 {
	return slices.Max(slices.Collect(maps.Keys(r.terms)))
}

func (r *keyring) clone() *keyring {
	return &keyring{raw: r.raw, active: r.active, terms: maps.Clone(r.terms)}
}

func keyringAAD(storeID [16]byte, version uint8) []byte {
	aad := append([]byte("lessor/v1/keyring"), storeID[:]...)
	return append(aad, version)
}

func sealKeyring(rk []byte, storeID [16]byte, version uint8, r *keyring, rand io.Reader) ([]byte, error) {
	terms := slices.Sorted(maps.Keys(r.terms))
	pt := be.AppendUint32(nil, r.active)
	pt = be.AppendUint32(pt, uint32(len(terms)))
	for _, t := range terms {
		pt = be.AppendUint32(pt, t)
		pt = be.AppendUint64(pt, uint64(r.terms[t].created.Unix()))
		pt = append(pt, r.terms[t].key...)
	}
	aead, err := newGCM(rk)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceLen, 1+nonceLen+len(pt)+tagLen)
	out[0] = recordVersion
	if _, err := io.ReadFull(rand, out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], pt, keyringAAD(storeID, version)), nil
}

var errKeyringDamaged = &damageError{"keyring failed authentication (damaged or tampered)"}

func openKeyring(rk []byte, storeID [16]byte, version uint8, raw []byte) (*keyring, error) {
	if raw == nil {
		return nil, &damageError{"keyring is missing"}
	}
	if len(raw) < 1+nonceLen+tagLen || raw[0] != recordVersion {
		return nil, errKeyringDamaged
	}
	aead, err := newGCM(rk)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, raw[1:1+nonceLen], raw[1+nonceLen:], keyringAAD(storeID, version))
	if err != nil {
		return nil, errKeyringDamaged
	}
	// Authenticated, so malformed contents are a bug in whatever wrote
	// them; still refuse them rather than trust them.
	bad := &damageError{"keyring is malformed"}
	if len(pt) < 8 {
		return nil, bad
	}
	r := &keyring{raw: bytes.Clone(raw), active: be.Uint32(pt), terms: map[uint32]*term{}}
	n := be.Uint32(pt[4:])
	if n == 0 || n > maxTerms || uint64(len(pt)) != 8+uint64(n)*termEntryLen {
		return nil, bad
	}
	for e := pt[8:]; len(e) > 0; e = e[termEntryLen:] {
		t := be.Uint32(e)
		if r.terms[t] != nil || t == 0 {
			return nil, bad
		}
		if err := r.add(t, time.Unix(int64(be.Uint64(e[4:])), 0), bytes.Clone(e[12:44])); err != nil {
			return nil, err
		}
	}
	if r.terms[r.active] == nil {
		return nil, bad
	}
	return r, nil
}

func recordAAD(storeID [16]byte, t uint32, key string) []byte {
	aad := make([]byte, 0, 16+16+4+len(key))
	aad = append(aad, "lessor/v1/record"...)
	aad = append(aad, storeID[:]...)
	aad = be.AppendUint32(aad, t)
	return append(aad, key...)
}

func sealRecord(r *keyring, storeID [16]byte, key string, value []byte, rand io.Reader) ([]byte, error) {
	out := make([]byte, recordHdrLen, recordHdrLen+len(value)+tagLen)
	out[0] = recordVersion
	be.PutUint32(out[1:], r.active)
	if _, err := io.ReadFull(rand, out[5:recordHdrLen]); err != nil {
		return nil, err
	}
	return r.terms[r.active].aead.Seal(out, out[5:recordHdrLen], value, recordAAD(storeID, r.active, key)), nil
}

// recordTerm returns the term a sealed record says it was sealed with.
func recordTerm(sealed []byte) (uint32, bool) {
	if len(sealed) < recordHdrLen || sealed[0] != recordVersion {
		return 0, false
	}
	return be.Uint32(sealed[1:]), true
}

func openRecord(r *keyring, storeID [16]byte, key string, sealed []byte) ([]byte, error) {
	failed := func() error {
		return &damageError{fmt.Sprintf("record %q failed authentication (damaged or tampered)", key)}
	}
	t, ok := recordTerm(sealed)
	if !ok || len(sealed) < recordHdrLen+tagLen {
		return nil, failed()
	}
	tk := r.terms[t]
	if tk == nil {
		return nil, &damageError{fmt.Sprintf("record %q names key term %d, which the keyring does not hold (damaged or tampered)", key, t)}
	}
	v, err := tk.aead.Open(nil, sealed[5:recordHdrLen], sealed[recordHdrLen:], recordAAD(storeID, t, key))
	if err != nil {
		return nil, failed()
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

var errNoKey = errors.New("no unseal key given")
