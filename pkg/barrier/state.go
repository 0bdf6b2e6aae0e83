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
	stateKey = ReservedPrefix + "state"
	// stateV1 is the state record without the token buckets' sums, as
	// lessor wrote it before them; it is read, and replaced by stateV2 at
	// the store's next write.
	stateV1     = 0x01
	stateV1Body = 1 + 8 + 32 + 32
	stateV2     = 0x02
	stateV2Body = stateV1Body + guardBuckets*32
	stateMACLen = sha256.Size
	stateV1Len  = stateV1Body + stateMACLen
	stateV2Len  = stateV2Body + stateMACLen
)

// Token entries are guarded: reading one checks, in the same transaction,
// the sum of its bucket (the entries whose key shares its first two hex
// digits) against the state record, so that a revoked token's entry put
// back from an old copy of its row, or an entry replaced by an older
// version of itself (more uses left, a longer TTL), is refused by the
// read that would have let it in, on a long-running server as on the
// command line, and not only by a full verification. The keys are salted
// HMACs in hex, so the 256 buckets are even: a check reads about n/256
// entries.
const (
	guardPrefix  = "sys/token/id/"
	guardBuckets = 256
)

// guardBucket returns the bucket of a guarded key, and false for any other.
func guardBucket(key string) (int, bool) {
	if len(key) < len(guardPrefix)+2 || !strings.HasPrefix(key, guardPrefix) {
		return 0, false
	}
	hi, lo := unhex(key[len(guardPrefix)]), unhex(key[len(guardPrefix)+1])
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return hi<<4 | lo, true
}

// unhex is the value of a lower-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

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

// setSums are the sums of every record's element hash, of the core
// records' ones, and of each token bucket's.
type setSums struct {
	all, core sum256
	guard     [guardBuckets]sum256
}

func (s *setSums) add(e *elementHasher, key string, sealed []byte) {
	x := e.sum(key, sealed)
	s.all.add(x)
	if isCore(key) {
		s.core.add(x)
	}
	if g, ok := guardBucket(key); ok {
		s.guard[g].add(x)
	}
}

func (s *setSums) sub(e *elementHasher, key string, sealed []byte) {
	x := e.sum(key, sealed)
	s.all.sub(x)
	if isCore(key) {
		s.core.sub(x)
	}
	if g, ok := guardBucket(key); ok {
		s.guard[g].sub(x)
	}
}

func (s *setSums) addSums(d *setSums) {
	s.all.add(d.all[:])
	s.core.add(d.core[:])
	for i := range s.guard {
		s.guard[i].add(d.guard[i][:])
	}
}

// state is the content of the state record.
type state struct {
	gen  uint64 // bumped by every transaction that changes a record
	sums setSums
	// guarded: the record has the token buckets' sums (stateV2). A
	// stateV1 record, from before them, has not, and sums.guard is zero.
	guarded bool
}

// marshal always writes stateV2: the caller has the buckets' sums.
func (s *state) marshal(r *rootKeys, storeID [16]byte) []byte {
	b := make([]byte, 0, stateV2Len)
	b = append(b, stateV2)
	b = be.AppendUint64(b, s.gen)
	b = append(b, s.sums.all[:]...)
	b = append(b, s.sums.core[:]...)
	for i := range s.sums.guard {
		b = append(b, s.sums.guard[i][:]...)
	}
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
	body := len(raw) - stateMACLen
	ok := len(raw) == stateV1Len && raw[0] == stateV1 || len(raw) == stateV2Len && raw[0] == stateV2
	if !ok || !hmac.Equal(raw[body:], stateMAC(r, storeID, raw[:body])) {
		return nil, &damageError{"the store's record checksum failed authentication (damaged or tampered)"}
	}
	s := &state{gen: be.Uint64(raw[1:]), guarded: raw[0] == stateV2}
	copy(s.sums.all[:], raw[9:41])
	copy(s.sums.core[:], raw[41:73])
	if s.guarded {
		for i := range s.sums.guard {
			copy(s.sums.guard[i][:], raw[73+32*i:])
		}
	}
	return s, nil
}

// check compares sums, computed from every record, with the state's.
func (s *state) check(sums *setSums) error {
	switch {
	case sums.core != s.sums.core:
		return &TamperedError{Core: true}
	case s.guarded && sums.guard != s.sums.guard:
		return &TamperedError{Token: true}
	case sums.all != s.sums.all:
		return &TamperedError{}
	}
	return nil
}

// TamperedError: the set of records does not match the store's checksum, so
// a record was deleted, added, or replaced by an older copy outside lessor.
// It wraps ErrCorrupt.
type TamperedError struct {
	// Core: the records under core/ and sys/policy/ (checked on every
	// unseal) rather than the store as a whole (checked by Verify).
	Core bool
	// Token: a token entry (checked by every read of one in its bucket).
	Token bool
}

func (e *TamperedError) Error() string {
	switch {
	case e.Core:
		return "the mount table, audit devices or policies were changed outside lessor: a record under core/ or sys/policy/ was deleted, added or replaced (the store's record checksum does not match)"
	case e.Token:
		return "token entries were changed outside lessor: one under sys/token/id/ was deleted, added or replaced by an older copy (the store's record checksum does not match)"
	}
	return "records were changed outside lessor: one was deleted, added or replaced by an older copy (the store's record checksum does not match)"
}

func (e *TamperedError) Unwrap() error { return ErrCorrupt }

// sumRecords walks every record of tx (not the barrier's own) and sums
// them; visit, if not nil, sees each one, in key order.
func sumRecords(tx storage.Tx, r *rootKeys, only string, visit func(key string, sealed []byte) error) (setSums, int, error) {
	var sums setSums
	e := r.hasher()
	n := 0
	// The values are read sumChunk keys at a time: one query per chunk,
	// not one per record, on a store that pays a round trip per read.
	var keys []string
	flush := func() error {
		vs, err := storage.GetMany(tx, keys)
		if err != nil {
			return err
		}
		for i, k := range keys {
			v := vs[i]
			if v == nil {
				return &damageError{fmt.Sprintf("record %q vanished during the walk", k)}
			}
			n++
			sums.add(e, k, v)
			if visit != nil {
				if err := visit(k, v); err != nil {
					return err
				}
			}
		}
		keys = keys[:0]
		return nil
	}
	err := tx.Walk(only, func(k string) error {
		if strings.HasPrefix(k, ReservedPrefix) {
			return nil
		}
		keys = append(keys, k)
		if len(keys) < sumChunk {
			return nil
		}
		return flush()
	})
	if err == nil {
		err = flush()
	}
	return sums, n, err
}

const sumChunk = 1000

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

// guardState gives st, a state record from before the token buckets, their
// sums, from a pass over every record of tx (which holds the changes delta
// accounts for). The pass first checks the whole set against st, so that
// the buckets never start from records changed outside lessor.
func guardState(tx storage.Tx, r *rootKeys, st *state, delta *setSums) error {
	sums, _, err := sumRecords(tx, r, "", nil)
	if err != nil {
		return err
	}
	want := *st
	want.sums.addSums(delta)
	if err := want.check(&sums); err != nil {
		return err
	}
	st.sums, st.guarded = sums, true
	return nil
}

// checkGuard checks the bucket of key, if it is a token entry, against
// the state record, once per bucket and transaction: the entries stored
// in the bucket must sum to the state's sum plus what this transaction
// changed in it. A state record older than one this process has seen
// committed is refused as rolled back, since putting back the state
// record together with old entries would otherwise pass.
func (t *sealedTx) checkGuard(key string) error {
	g, ok := guardBucket(key)
	if !ok || t.guarded[g/64]&(1<<(g%64)) != 0 {
		return nil
	}
	if t.state == nil {
		t.b.mu.Lock()
		v1 := t.b.hdr.version < 2
		t.b.mu.Unlock()
		if v1 {
			// No state record yet: its first write gives it one.
			t.state = &state{}
		} else {
			raw, err := t.tx.Get(stateKey)
			if err != nil {
				return err
			}
			st, err := parseState(raw, t.root, t.b.storeID)
			if err != nil {
				return err
			}
			if st.gen < t.seen {
				return &RollbackError{Store: st.gen, Seen: t.seen}
			}
			t.state = st
		}
	}
	if t.state.guarded {
		keys, vs, err := storage.GetPrefix(t.tx, key[:len(guardPrefix)+2])
		if err != nil {
			return err
		}
		if t.hash == nil {
			t.hash = t.root.hasher()
		}
		var got sum256
		for i, v := range vs {
			if v != nil {
				got.add(t.hash.sum(keys[i], v))
			}
		}
		want := t.state.sums.guard[g]
		want.add(t.delta.guard[g][:])
		if got != want {
			return &TamperedError{Token: true}
		}
	}
	t.guarded[g/64] |= 1 << (g % 64)
	return nil
}
