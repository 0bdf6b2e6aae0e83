package barrier

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
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

	// guardKey holds the sums of the token buckets, for the state
	// record's generation. It is a record of its own, not a longer state
	// record, so that a lessor from before the buckets still reads the
	// store it shares with newer hosts: it updates the state record and
	// leaves the guard record behind, and a newer lessor, finding it stale,
	// rebuilds it from a pass checked against the state record.
	guardKey     = ReservedPrefix + "guard"
	guardVersion = 0x01
	guardBodyLen = 1 + 8 + guardBuckets*32
	guardLen     = guardBodyLen + sha256.Size

	// setsKey holds the sums of the checked sets (see checkedSet), for
	// the state record's generation, in a record of its own for the reason
	// the guard record is one: lessors from before it leave it behind,
	// stale, and a newer one rebuilds it from a checked pass.
	setsKey     = ReservedPrefix + "sets"
	setsVersion = 0x01
)

// The database engine's connection configs, roles and static roles, and
// the password policies, are checked in sets: reading one checks, in the
// same transaction and in the round trip that reads it, the sum of its set
// (every record of its kind on its mount, or every password policy)
// against the sets record, so that an older copy of a role (its creation
// statements before an admin tightened them), of a connection (the URL and
// password before a rotation) or of a password policy, or one deleted and
// put back, is refused by the read that would use it. These sets are
// small (an operator writes each record) and read whole by the check.
var checkedKinds = []string{"config/", "role/", "static-role/"}

const passwordPolicyPrefix = "sys/password-policy/"

// checkedSet returns the prefix of the checked set key belongs to:
// logical/<mount uuid>/<kind>/ for a kind in checkedKinds, or the password
// policies' prefix; false for any other key. key may be the prefix itself.
func checkedSet(key string) (string, bool) {
	if strings.HasPrefix(key, passwordPolicyPrefix) {
		return passwordPolicyPrefix, true
	}
	rest, ok := strings.CutPrefix(key, "logical/")
	if !ok {
		return "", false
	}
	uuid, rest, ok := strings.Cut(rest, "/")
	if !ok || uuid == "" {
		return "", false
	}
	for _, k := range checkedKinds {
		if strings.HasPrefix(rest, k) {
			return key[:len("logical/")+len(uuid)+1+len(k)], true
		}
	}
	return "", false
}

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
// records' ones, of each token bucket's and of each checked set's.
type setSums struct {
	all, core sum256
	guard     [guardBuckets]sum256
	// sets: by checkedSet prefix; a set whose sum is zero (empty) has
	// no entry. Nil until a set is summed.
	sets map[string]sum256
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
	if p, ok := checkedSet(key); ok {
		s.setAdd(p, x, false)
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
	if p, ok := checkedSet(key); ok {
		s.setAdd(p, x, true)
	}
}

// setAdd adds x to (or, with neg, subtracts it from) the sum of the set
// prefix.
func (s *setSums) setAdd(prefix string, x []byte, neg bool) {
	v := s.sets[prefix]
	if neg {
		v.sub(x)
	} else {
		v.add(x)
	}
	if v == (sum256{}) {
		delete(s.sets, prefix)
		return
	}
	if s.sets == nil {
		s.sets = map[string]sum256{}
	}
	s.sets[prefix] = v
}

func (s *setSums) addSums(d *setSums) {
	s.all.add(d.all[:])
	s.core.add(d.core[:])
	for i := range s.guard {
		s.guard[i].add(d.guard[i][:])
	}
	for p, v := range d.sets {
		s.setAdd(p, v[:], false)
	}
}

// subSets takes d's sets' sums out of s's.
func (s *setSums) subSets(d *setSums) {
	for p, v := range d.sets {
		s.setAdd(p, v[:], true)
	}
}

// state is the content of the state record, and of the guard record when
// that is current.
type state struct {
	gen  uint64 // bumped by every transaction that changes a record, and by Rotate
	sums setSums
	// guarded: sums.guard holds the token buckets' sums for gen, from the
	// guard record or from a checked pass; otherwise it is zero.
	guarded bool
	// setsKnown: sums.sets holds the checked sets' sums for gen, from
	// the sets record or from a checked pass, and ring the SHA-256 of the
	// keyring as stored at gen; otherwise both are zero.
	setsKnown bool
	ring      [sha256.Size]byte
	// v2: read from a state record (a version 1 store has none, and
	// nothing to check reads against).
	v2 bool
}

func (s *state) marshal(r *rootKeys, storeID [16]byte) []byte {
	b := make([]byte, 0, stateLen)
	b = append(b, stateVersion)
	b = be.AppendUint64(b, s.gen)
	b = append(b, s.sums.all[:]...)
	b = append(b, s.sums.core[:]...)
	return append(b, stateMAC(r, storeID, "lessor/v2/state", b)...)
}

func (s *state) marshalGuard(r *rootKeys, storeID [16]byte) []byte {
	b := make([]byte, 0, guardLen)
	b = append(b, guardVersion)
	b = be.AppendUint64(b, s.gen)
	for i := range s.sums.guard {
		b = append(b, s.sums.guard[i][:]...)
	}
	return append(b, stateMAC(r, storeID, "lessor/v2/guard", b)...)
}

// marshalSets is the sets record: 0x01 | generation u64 | SHA-256 of the
// keyring record [32] | count u32 |
// count × (prefix length u16 | prefix | sum [32]), prefixes in byte
// order | HMAC-SHA256 under the state key of "lessor/v2/sets" | store id
// | the fields before [32].
func (s *state) marshalSets(r *rootKeys, storeID [16]byte) []byte {
	prefixes := slices.Sorted(maps.Keys(s.sums.sets))
	b := make([]byte, 0, 1+8+32+4+len(prefixes)*64+sha256.Size)
	b = append(b, setsVersion)
	b = be.AppendUint64(b, s.gen)
	b = append(b, s.ring[:]...)
	b = be.AppendUint32(b, uint32(len(prefixes)))
	for _, p := range prefixes {
		v := s.sums.sets[p]
		b = be.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
		b = append(b, v[:]...)
	}
	return append(b, stateMAC(r, storeID, "lessor/v2/sets", b)...)
}

// put writes the state record, the guard record and the sets record.
func (s *state) put(tx storage.Tx, r *rootKeys, storeID [16]byte) error {
	if err := tx.Put(stateKey, s.marshal(r, storeID)); err != nil {
		return err
	}
	if err := tx.Put(guardKey, s.marshalGuard(r, storeID)); err != nil {
		return err
	}
	return tx.Put(setsKey, s.marshalSets(r, storeID))
}

func stateMAC(r *rootKeys, storeID [16]byte, label string, body []byte) []byte {
	m := hmac.New(sha256.New, r.macKey)
	m.Write([]byte(label))
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
		!hmac.Equal(raw[stateBodyLen:], stateMAC(r, storeID, "lessor/v2/state", raw[:stateBodyLen])) {
		return nil, &damageError{"the store's record checksum failed authentication (damaged or tampered)"}
	}
	s := &state{gen: be.Uint64(raw[1:])}
	copy(s.sums.all[:], raw[9:41])
	copy(s.sums.core[:], raw[41:73])
	return s, nil
}

// takeGuard adopts the guard record raw if it is for s's generation. One
// that is missing (a store from before the buckets, or rewritten by a
// lessor from before them), for an older generation (a lessor from before
// them wrote since) or of a later version leaves s unguarded, which costs
// a checked pass and never trusts the record. One that does not
// authenticate is damage: lessor never writes one.
func (s *state) takeGuard(raw []byte, r *rootKeys, storeID [16]byte) error {
	if raw == nil {
		return nil
	}
	body := len(raw) - sha256.Size
	if body < 9 || !hmac.Equal(raw[body:], stateMAC(r, storeID, "lessor/v2/guard", raw[:body])) {
		return &damageError{"the store's token checksum failed authentication (damaged or tampered)"}
	}
	if raw[0] != guardVersion || len(raw) != guardLen || be.Uint64(raw[1:]) != s.gen {
		return nil
	}
	for i := range s.sums.guard {
		copy(s.sums.guard[i][:], raw[9+32*i:])
	}
	s.guarded = true
	return nil
}

// takeSets adopts the sets record raw if it is for s's generation, as
// takeGuard adopts the guard record.
func (s *state) takeSets(raw []byte, r *rootKeys, storeID [16]byte) error {
	if raw == nil {
		return nil
	}
	body := len(raw) - sha256.Size
	if body < 9 || !hmac.Equal(raw[body:], stateMAC(r, storeID, "lessor/v2/sets", raw[:body])) {
		return &damageError{"the store's configuration checksum failed authentication (damaged or tampered)"}
	}
	if raw[0] != setsVersion || be.Uint64(raw[1:]) != s.gen {
		return nil
	}
	damaged := &damageError{"the store's configuration checksum is malformed"}
	b := raw[9:body]
	if len(b) < 32+4 {
		return damaged
	}
	copy(s.ring[:], b)
	b = b[32:]
	n := be.Uint32(b)
	b = b[4:]
	sets := map[string]sum256{}
	prev := ""
	for i := uint32(0); i < n; i++ {
		if len(b) < 2 {
			return damaged
		}
		l := int(be.Uint16(b))
		if len(b) < 2+l+32 {
			return damaged
		}
		p := string(b[2 : 2+l])
		if q, ok := checkedSet(p); !ok || q != p || i > 0 && p <= prev {
			return damaged
		}
		var v sum256
		copy(v[:], b[2+l:])
		sets[p], prev, b = v, p, b[2+l+32:]
	}
	if len(b) != 0 {
		return damaged
	}
	s.sums.sets, s.setsKnown = sets, true
	return nil
}

// loadState reads the state record, the guard record and the sets record
// from tx (one round trip where reads cost one), and returns the state
// record's raw bytes too.
func loadState(tx storage.Tx, r *rootKeys, storeID [16]byte) (*state, []byte, error) {
	vs, err := storage.GetMany(tx, []string{stateKey, guardKey, setsKey})
	if err != nil {
		return nil, nil, err
	}
	s, err := parseState(vs[0], r, storeID)
	if err != nil {
		return nil, nil, err
	}
	if err := s.takeGuard(vs[1], r, storeID); err != nil {
		return nil, nil, err
	}
	if err := s.takeSets(vs[2], r, storeID); err != nil {
		return nil, nil, err
	}
	return s, vs[0], nil
}

// current reports whether s holds the sums of every set checked on read.
func (s *state) current() bool { return s.guarded && s.setsKnown }

var errRingReplaced = &damageError{"the store's keyring is not the one its record checksum names: an older keyring was put back (tampered)"}

// checkRing checks the keyring record raw against the one s names, when
// s knows it.
func (s *state) checkRing(raw []byte) error {
	if s.setsKnown && sha256.Sum256(raw) != s.ring {
		return errRingReplaced
	}
	return nil
}

// check compares sums, computed from every record, with the state's.
func (s *state) check(sums *setSums) error {
	switch {
	case sums.core != s.sums.core:
		return &TamperedError{Core: true}
	case s.guarded && sums.guard != s.sums.guard:
		return &TamperedError{Token: true}
	case s.setsKnown && !maps.Equal(sums.sets, s.sums.sets):
		return &TamperedError{Config: true}
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
	// Config: a database connection config, role, static role or
	// password policy (checked by every read of one in its set).
	Config bool
}

func (e *TamperedError) Error() string {
	switch {
	case e.Core:
		return "the mount table, audit devices or policies were changed outside lessor: a record under core/ or sys/policy/ was deleted, added or replaced (the store's record checksum does not match)"
	case e.Token:
		return "token entries were changed outside lessor: one under sys/token/id/ was deleted, added or replaced by an older copy (the store's record checksum does not match)"
	case e.Config:
		return "database connections, roles, static roles or password policies were changed outside lessor: one was deleted, added or replaced by an older copy (the store's record checksum does not match)"
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
	// Both prefixes in one query, where a read is a round trip and they
	// were not read ahead.
	if err := storage.PrefetchPrefixes(tx, nil, corePrefixes); err != nil {
		return nil, err
	}
	var out []rawRecord
	for _, p := range corePrefixes {
		// In one query, not one per record, where a read is a round trip.
		keys, vs, err := storage.GetPrefix(tx, p)
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

// resealCore seals every core record of tx again with the active term of
// next, whose older terms cur holds, once their set has been checked
// against want (a rotation must not make tampering look legitimate), and
// returns the change to the sums.
func resealCore(tx storage.Tx, cur, next *keyring, r *rootKeys, storeID [16]byte, want sum256, rand io.Reader) (setSums, error) {
	var d setSums
	recs, err := readCore(tx)
	if err != nil {
		return d, err
	}
	if err := checkCore(recs, r, want); err != nil {
		return d, err
	}
	e := r.hasher()
	for _, rec := range recs {
		v, err := openRecord(cur, storeID, rec.key, rec.sealed)
		if err != nil {
			return d, err
		}
		sealed, err := sealRecord(next, storeID, rec.key, v, rand)
		if err != nil {
			return d, err
		}
		if err := tx.Put(rec.key, sealed); err != nil {
			return d, err
		}
		d.sub(e, rec.key, rec.sealed)
		d.add(e, rec.key, sealed)
	}
	return d, nil
}

// guardState gives st, as read in tx before this transaction's changes
// (delta), the token buckets' and the checked sets' sums for its
// generation when its guard or sets record was not current: from the
// barrier's cache if it has them for these very state bytes, or from a
// pass over every record of tx, first checked against st, so that the
// buckets and sets never start from records changed outside lessor.
func (b *Barrier) guardState(tx storage.Tx, r *rootKeys, st *state, raw []byte, delta *setSums) error {
	b.mu.Lock()
	c := b.guardCache
	b.mu.Unlock()
	if c != nil && c.root == r && bytes.Equal(c.state, raw) {
		st.sums.guard, st.guarded = c.guard, true
		st.sums.sets, st.setsKnown, st.ring = maps.Clone(c.sets), true, c.ring
		return nil
	}
	// The keyring as stored now: a sets record written by a lessor from
	// before it, or left stale by one, names none to compare with.
	ring, err := tx.Get(keyringKey)
	if err != nil {
		return err
	}
	sums, _, err := sumRecords(tx, r, "", nil)
	if err != nil {
		return err
	}
	// The pass saw this transaction's changes: take them out.
	for i := range sums.guard {
		sums.guard[i].sub(delta.guard[i][:])
	}
	sums.all.sub(delta.all[:])
	sums.core.sub(delta.core[:])
	sums.subSets(delta)
	if err := st.check(&sums); err != nil {
		return err
	}
	st.sums.guard, st.guarded = sums.guard, true
	st.sums.sets, st.setsKnown, st.ring = maps.Clone(sums.sets), true, sha256.Sum256(ring)
	b.mu.Lock()
	b.guardCache = &guardCache{root: r, state: raw, guard: sums.guard, sets: sums.sets, ring: st.ring}
	b.mu.Unlock()
	return nil
}

// guardCache is the token buckets' and checked sets' sums that a checked
// pass found for one state record, kept so that a stale guard or sets
// record (another host runs a lessor from before them) costs one pass per
// change of the state record, not one per read. Its sets are never
// changed: who takes them takes a copy.
type guardCache struct {
	root  *rootKeys
	state []byte
	guard [guardBuckets]sum256
	sets  map[string]sum256
	ring  [sha256.Size]byte
}

// checkGuard checks the bucket of key, if it is a token entry, against
// the state, once per bucket and transaction: the entries stored in the
// bucket must sum to the state's sum plus what this transaction changed in
// it.
func (t *sealedTx) checkGuard(key string) error {
	g, ok := guardBucket(key)
	if !ok || t.guarded[g/64]&(1<<(g%64)) != 0 {
		return nil
	}
	if err := t.loadCurrentState(); err != nil {
		return err
	}
	if t.state.v2 {
		got, err := t.scanSum(key[:len(guardPrefix)+2])
		if err != nil {
			return err
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

// loadState reads the state and guard records into t once. A state record
// older than one this process has seen committed is refused as rolled
// back, since putting back the state and guard records together with old
// entries would otherwise pass the checks.
func (t *sealedTx) loadState() error {
	if t.state != nil {
		return nil
	}
	t.b.mu.Lock()
	v1 := t.b.hdr.version < 2
	t.b.mu.Unlock()
	if v1 {
		// Another process's write may have upgraded the store since this
		// one opened it, which its header tells (and checkHeader adopts):
		// a process that only reads (a server) would otherwise go on
		// checking nothing, and honour a revoked token entry put back.
		h, err := t.b.checkHeader(t.tx)
		if err != nil {
			return err
		}
		if h.version < 2 {
			// No state record yet: its first write gives it one.
			t.state = &state{guarded: true, setsKnown: true}
			return nil
		}
	}
	st, raw, err := loadState(t.tx, t.root, t.b.storeID)
	if err != nil {
		// A state record that no longer authenticates under this
		// barrier's keys: the store was rekeyed since it was opened, unless
		// the header is unchanged.
		if _, herr := t.b.checkHeader(t.tx); herr != nil {
			return herr
		}
		return err
	}
	if err := t.b.observe(st.gen, raw, t.seen, t.seenState); err != nil {
		return err
	}
	st.v2 = true
	t.state, t.stateRaw = st, raw
	return nil
}

// checkSetOf checks the checked set prefix (see checkedSet) against the
// state, once per set and transaction, when the transaction first reads
// one of its records, present or absent: the records stored under prefix
// must sum to the state's sum plus what this transaction changed in it.
// The read that brought the record brought its set with it (see
// checksAhead), so the check costs no round trip of its own.
func (t *sealedTx) checkSetOf(prefix string) error {
	if t.setsChecked[prefix] {
		return nil
	}
	if err := t.loadCurrentState(); err != nil {
		return err
	}
	if t.state.v2 {
		got, err := t.scanSum(prefix)
		if err != nil {
			return err
		}
		want := t.state.sums.sets[prefix]
		d := t.delta.sets[prefix]
		want.add(d[:])
		if got != want {
			return &TamperedError{Config: true}
		}
	}
	if t.setsChecked == nil {
		t.setsChecked = map[string]bool{}
	}
	t.setsChecked[prefix] = true
	return nil
}

// checkCoreSet checks, once per transaction, the whole set of core records
// (mounts, audit devices, policies) against the state when the
// transaction first reads one of them, present or absent, or lists them:
// every command checked them when it unsealed, but a server unsealed long
// before, and a policy put back or deleted since must not be honoured.
func (t *sealedTx) checkCoreSet() error {
	if t.coreChecked {
		return nil
	}
	if err := t.loadState(); err != nil {
		return err
	}
	if t.state.v2 {
		recs, err := readCore(t.tx)
		if err != nil {
			return err
		}
		want := t.state.sums.core
		want.add(t.delta.core[:])
		if err := checkCore(recs, t.root, want); err != nil {
			return err
		}
		t.scanning()
		for _, rec := range recs {
			t.scanned[rec.key] = rec.sealed
		}
	}
	t.coreChecked = true
	return nil
}

// checkRingTerms checks ring, the keyring t's writes are to be sealed
// with, against the core records: a rotation seals each of them with its
// new term, and their set is checked against the state record, so a core
// record that names a term newer than any ring holds means an older
// keyring was put back. The process that rotated refuses it by its newest
// term (see loadRing), but one opened before another process rotated
// holds that very keyring, and sealed its writes (a connection's root
// password) with the retired data key. The check is made once per
// generation of the state record: every rotation starts one.
func (t *sealedTx) checkRingTerms(ring *keyring) error {
	if err := t.loadState(); err != nil {
		return err
	}
	if !t.state.v2 {
		return nil
	}
	t.b.mu.Lock()
	done := t.b.ringGen == t.state.gen
	t.b.mu.Unlock()
	if done {
		return nil
	}
	if err := t.checkCoreSet(); err != nil {
		return err
	}
	newest := ring.newest()
	for k, sealed := range t.scanned {
		if term, ok := recordTerm(sealed); ok && isCore(k) && term > newest {
			return fmt.Errorf("%w: record %q is sealed with key term %d, newer than the keyring's newest, %d (an older keyring was put back)", ErrRolledBack, k, term, newest)
		}
	}
	t.b.mu.Lock()
	if t.state.gen > t.b.ringGen {
		t.b.ringGen = t.state.gen
	}
	t.b.mu.Unlock()
	return nil
}

// scanning readies t.scanned for the values a set check finds: an empty
// set scanned holds reads to finding nothing, too.
func (t *sealedTx) scanning() {
	if t.scanned == nil {
		t.scanned = map[string][]byte{}
	}
}

// touchesCore reports whether a walk of prefix lists core records.
func touchesCore(prefix string) bool {
	for _, p := range corePrefixes {
		if strings.HasPrefix(prefix, p) || strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// seenState returns the newest generation this barrier has seen and its
// state record (nil when not known).
func (b *Barrier) seenState() (uint64, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen, b.genState
}

// observe checks a state record read in a transaction that began when the
// barrier had seen generation seenGen (its record seenState, if known):
// an older generation, or another record of the same one (a copy changed
// since it was taken: two histories), means the store was put back. Any
// process that reads the state record learns its generation this way,
// not only from its own commits, so a server that only reads still
// refuses a store put back behind another host's revocation.
func (b *Barrier) observe(gen uint64, raw []byte, seenGen uint64, seenState []byte) error {
	if gen < seenGen || gen == seenGen && seenState != nil && !bytes.Equal(raw, seenState) {
		return &RollbackError{Store: gen, Seen: seenGen}
	}
	b.noteState(gen, raw)
	return nil
}

// noteState remembers raw as the state record of generation gen, if gen is
// the newest this barrier has seen.
func (b *Barrier) noteState(gen uint64, raw []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case gen > b.gen:
		b.gen, b.genState = gen, raw
	case gen == b.gen && b.genState == nil:
		b.genState = raw
	}
}

// scanSum reads prefix whole, keeps what it found as the transaction's
// scanned records (which later reads must find again), and returns the
// sum of their contributions.
func (t *sealedTx) scanSum(prefix string) (sum256, error) {
	keys, vs, err := storage.GetPrefix(t.tx, prefix)
	if err != nil {
		return sum256{}, err
	}
	if t.hash == nil {
		t.hash = t.root.hasher()
	}
	var got sum256
	t.scanning()
	for i, v := range vs {
		if v != nil {
			got.add(t.hash.sum(keys[i], v))
			t.scanned[keys[i]] = v
		}
	}
	return got, nil
}

// loadCurrentState loads the state records, and rebuilds the guard and
// sets records' sums from a pass checked against the state record where
// they are stale or missing (a store an older lessor wrote last), so that
// a check has sums to compare with.
func (t *sealedTx) loadCurrentState() error {
	if err := t.loadState(); err != nil {
		return err
	}
	if t.state.current() {
		return nil
	}
	return t.b.guardState(t.tx, t.root, t.state, t.stateRaw, &t.delta)
}
