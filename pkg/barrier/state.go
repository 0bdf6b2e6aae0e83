package barrier

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"strings"

	"github.com/lessorhq/lessor/pkg/storage"
)

// The state record of a version 2 store authenticates the set of live
// records, not only each record: see the package comment.

const (
	stateKey     = ReservedPrefix + "state"
	stateVersion = 0x01
	stateBodyLen = 1 + 8 + 32 + 32
	stateLen     = stateBodyLen + sha256.Size
)

// corePrefixes name the records whose set is checked on every unseal, not
// only by a full verification: the mount table, the audit devices and their
// HMAC key, and the policies. There are few of them, and deleting one (an
// audit device, a policy with a deny) weakens the store's protection.
var corePrefixes = []string{"core/", "sys/policy/"}

func isCore(key string) bool {
	for _, p := range corePrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// sum256 is a number modulo 2^256, big-endian: the sum of the set's
// element hashes, so that adding or removing one record costs O(1).
type sum256 [32]byte

func (s *sum256) add(x []byte) {
	carry := 0
	for i := 31; i >= 0; i-- {
		v := int(s[i]) + int(x[i]) + carry
		s[i], carry = byte(v), v>>8
	}
}

func (s *sum256) sub(x []byte) {
	borrow := 0
	for i := 31; i >= 0; i-- {
		v := int(s[i]) - int(x[i]) - borrow
		borrow = 0
		if v < 0 {
			v += 256
			borrow = 1
		}
		s[i] = byte(v)
	}
}

// rootKeys are the root key and the keys derived from it. A rekey replaces
// all of them together.
type rootKeys struct {
	rk     []byte
	setKey []byte // HMAC key of the record set's element hashes
	macKey []byte // HMAC key of the state record
}

func deriveRootKeys(rk []byte, storeID [16]byte) (*rootKeys, error) {
	set, err := hkdf.Key(sha256.New, rk, storeID[:], "lessor v2 record set", 32)
	if err != nil {
		return nil, err
	}
	mac, err := hkdf.Key(sha256.New, rk, storeID[:], "lessor v2 state", 32)
	if err != nil {
		return nil, err
	}
	return &rootKeys{rk: rk, setKey: set, macKey: mac}, nil
}

// elementHasher hashes (key, sealed value) pairs into set elements.
type elementHasher struct {
	h   hash.Hash
	buf []byte
}

func (r *rootKeys) hasher() *elementHasher {
	return &elementHasher{h: hmac.New(sha256.New, r.setKey)}
}

func (e *elementHasher) sum(key string, sealed []byte) []byte {
	e.h.Reset()
	e.buf = be.AppendUint32(e.buf[:0], uint32(len(key)))
	e.h.Write(e.buf)
	e.h.Write([]byte(key))
	e.h.Write(sealed)
	return e.h.Sum(e.buf[:0])
}

// setSums are the sums of every record's element hash and of the core
// records' ones.
type setSums struct {
	all, core sum256
}

func (s *setSums) add(e *elementHasher, key string, sealed []byte) {
	x := e.sum(key, sealed)
	s.all.add(x)
	if isCore(key) {
		s.core.add(x)
	}
}

func (s *setSums) sub(e *elementHasher, key string, sealed []byte) {
	x := e.sum(key, sealed)
	s.all.sub(x)
	if isCore(key) {
		s.core.sub(x)
	}
}

func (s *setSums) addSums(d setSums) {
	s.all.add(d.all[:])
	s.core.add(d.core[:])
}

// state is the content of the state record.
type state struct {
	gen  uint64 // bumped by every transaction that changes a record
	sums setSums
}

func (s *state) marshal(r *rootKeys, storeID [16]byte) []byte {
	b := make([]byte, 0, stateLen)
	b = append(b, stateVersion)
	b = be.AppendUint64(b, s.gen)
	b = append(b, s.sums.all[:]...)
	b = append(b, s.sums.core[:]...)
	return append(b, stateMAC(r, storeID, b)...)
}

func stateMAC(r *rootKeys, storeID [16]byte, body []byte) []byte {
	m := hmac.New(sha256.New, r.macKey)
	m.Write([]byte("lessor/v2/state"))
	m.Write(storeID[:])
	m.Write(body)
	return m.Sum(nil)
}

var errStateMissing = &damageError{"the store's record checksum is missing (damaged or tampered)"}

func parseState(raw []byte, r *rootKeys, storeID [16]byte) (*state, error) {
	if raw == nil {
		return nil, errStateMissing
	}
	if len(raw) != stateLen || raw[0] != stateVersion ||
		!hmac.Equal(raw[stateBodyLen:], stateMAC(r, storeID, raw[:stateBodyLen])) {
		return nil, &damageError{"the store's record checksum failed authentication (damaged or tampered)"}
	}
	s := &state{gen: be.Uint64(raw[1:])}
	copy(s.sums.all[:], raw[9:41])
	copy(s.sums.core[:], raw[41:73])
	return s, nil
}

// TamperedError: the set of records does not match the store's checksum, so
// a record was deleted, added, or replaced by an older copy outside lessor.
// It wraps ErrCorrupt.
type TamperedError struct {
	// Core: the records under core/ and sys/policy/ (checked on every
	// unseal) rather than the store as a whole (checked by Verify).
	Core bool
}

func (e *TamperedError) Error() string {
	if e.Core {
		return "the mount table, audit devices or policies were changed outside lessor: a record under core/ or sys/policy/ was deleted, added or replaced (the store's record checksum does not match)"
	}
	return "records were changed outside lessor: one was deleted, added or replaced by an older copy (the store's record checksum does not match)"
}

func (e *TamperedError) Unwrap() error { return ErrCorrupt }

// sumRecords walks every record of tx (not the barrier's own) and sums
// them; visit, if not nil, sees each one.
func sumRecords(tx storage.Tx, r *rootKeys, only string, visit func(key string, sealed []byte) error) (setSums, int, error) {
	var sums setSums
	e := r.hasher()
	n := 0
	err := tx.Walk(only, func(k string) error {
		if strings.HasPrefix(k, ReservedPrefix) {
			return nil
		}
		v, err := tx.Get(k)
		if err != nil {
			return err
		}
		if v == nil {
			return &damageError{fmt.Sprintf("record %q vanished during the walk", k)}
		}
		n++
		sums.add(e, k, v)
		if visit != nil {
			return visit(k, v)
		}
		return nil
	})
	return sums, n, err
}

// coreRecords are the raw core records, as Peek reads them.
type rawRecord struct {
	key    string
	sealed []byte
}

func readCore(tx storage.Tx) ([]rawRecord, error) {
	var out []rawRecord
	for _, p := range corePrefixes {
		keys, err := tx.List(p)
		if err != nil {
			return nil, err
		}
		// In one query, not one per record, where a read is a round trip.
		vs, err := storage.GetMany(tx, keys)
		if err != nil {
			return nil, err
		}
		for i, v := range vs {
			if v != nil {
				out = append(out, rawRecord{keys[i], v})
			}
		}
	}
	return out, nil
}

func checkCore(recs []rawRecord, r *rootKeys, want sum256) error {
	var sums setSums
	e := r.hasher()
	for _, rec := range recs {
		sums.add(e, rec.key, rec.sealed)
	}
	if sums.core != want {
		return &TamperedError{Core: true}
	}
	return nil
}
