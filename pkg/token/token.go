// Package token is lessor's token store: it issues, looks up, renews and
// revokes the tokens that authorise callers, with Vault's semantics
// (policies inherited or narrowed from the parent, TTLs, periods, use
// limits, parent/child trees that are revoked together, orphans that
// survive), and serves the auth/token/ paths.
//
// What it promises:
//
//   - A token ("lsr_" + 32 base62 characters) is shown once, in the
//     response that creates it, and is never stored: its entry is keyed by
//     HMAC-SHA256 of the token under a random per-store salt, in hex (the
//     entry's ID). No storage key or value holds the token.
//   - An unknown, expired, used-up or revoked token fails Lookup with
//     ErrBadToken, so a stale token never authorises anything even before
//     reap removes it.
//   - Revoking a token revokes its whole child tree, and OnRevoke hears
//     every accessor in the tree before any entry is deleted, so the leases
//     those tokens created go first. A failure leaves the tree marked
//     revoked (unusable) and due, and RevokeExpired finishes it later.
//   - RevokeExpired costs in proportion to what is due, not to how many
//     tokens exist.
//
// Storage layout (keys below the store's own prefix):
//
//	salt                            the HMAC key (32 random bytes)
//	id/<ID>                         the Entry, JSON
//	accessor/<accessor>             <ID>
//	parent/<parentID>/<childID>     empty: the child index
//	expire/<unix, 20 digits>/<ID>   empty: the expiry index, ordered by time
//
// NumUses -1 marks a token whose revocation is pending (its last use was
// consumed, or a revocation began and has not finished), as in Vault; such
// an entry is also indexed as due now.
package token

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/randstr"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Prefix starts every token, so that secret scanners recognise one.
const Prefix = logical.TokenPrefix

// SaltKey is where a token store keeps the salt of its token hashes, below
// the storage it is given: a caller that reads ahead for a lookup reads it.
const SaltKey = "salt"

const (
	tokenRandomLen = 32
	accessorLen    = 24
	defaultTTL     = 768 * time.Hour

	saltKey        = SaltKey
	idPrefix       = "id/"
	accessorPrefix = "accessor/"
	parentPrefix   = "parent/"
	expirePrefix   = "expire/"

	// revocationPending is NumUses for a token that may no longer be used
	// and is waiting to be deleted.
	revocationPending = -1

	rootPath = "auth/token/root"
)

// ErrBadToken is returned for a token that is unknown, expired, used up or
// being revoked. It matches logical.ErrPermissionDenied with errors.Is, so
// callers that only know the logical errors deny the request.
var ErrBadToken error = badTokenError{}

type badTokenError struct{}

func (badTokenError) Error() string { return "bad token" }
func (badTokenError) Unwrap() error { return logical.ErrPermissionDenied }

// ErrCallerToken marks, beside ErrBadToken, a request refused because
// its own token (not one it names, as a lookup does) is missing, unknown,
// expired, used up or being revoked: the caller has to log in again.
var ErrCallerToken = errors.New("the request's token is missing, invalid or expired")

// Entry is a stored token. It never holds the token itself.
type Entry struct {
	// ID is the salted hash of the token and the storage key.
	ID string `json:"id"`
	// Accessor names the token without granting its power (24 base62).
	Accessor string `json:"accessor"`
	// Parent is the parent's ID, "" for orphans.
	Parent string `json:"parent,omitempty"`
	// Policies are sorted and lower case.
	Policies []string `json:"policies"`
	// DisplayName is "root", "token" or "token-<name>".
	DisplayName string `json:"display_name"`
	// Path is the path that created the token ("auth/token/create").
	Path string            `json:"path"`
	Meta map[string]string `json:"meta,omitempty"`
	// NumUses is the number of uses left; 0 is unlimited and -1 means the
	// token is used up or being revoked.
	NumUses      int       `json:"num_uses"`
	CreationTime time.Time `json:"creation_time"`
	// TTL is the TTL granted at creation; 0 means the token never expires.
	TTL            time.Duration `json:"ttl"`
	ExplicitMaxTTL time.Duration `json:"explicit_max_ttl"`
	Period         time.Duration `json:"period"`
	// ExpireTime is zero for a token that never expires.
	ExpireTime  time.Time `json:"expire_time"`
	LastRenewal time.Time `json:"last_renewal"`
	Orphan      bool      `json:"orphan"`
	Renewable   bool      `json:"renewable"`
}

func (e *Entry) clone() *Entry {
	c := *e
	c.Policies = append([]string(nil), e.Policies...)
	if e.Meta != nil {
		c.Meta = make(map[string]string, len(e.Meta))
		for k, v := range e.Meta {
			c.Meta[k] = v
		}
	}
	return &c
}

func (e *Entry) expired(now time.Time) bool {
	return !e.ExpireTime.IsZero() && !now.Before(e.ExpireTime)
}

func (e *Entry) hasPolicy(p string) bool {
	for _, q := range e.Policies {
		if q == p {
			return true
		}
	}
	return false
}

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// Now is the clock (time.Now).
	Now func() time.Time
	// Rand supplies tokens, accessors and the salt (crypto/rand).
	Rand io.Reader
	// DefaultTTL and MaxTTL govern token TTLs (768h both).
	DefaultTTL, MaxTTL time.Duration
	// PolicyExists, when set, lets create warn about policies that do not
	// exist. It is called outside any transaction of this store.
	PolicyExists func(ctx context.Context, name string) (bool, error)
	// OnRevoke, when set, is called with the accessors of every token about
	// to be deleted, before the deletion and outside any transaction, so
	// that the leases those tokens created are revoked first. An error
	// leaves the tokens unusable and due, for RevokeExpired to retry.
	OnRevoke func(ctx context.Context, accessors []string) error
}

// Store is the token store.
type Store struct {
	st storage.Store
	o  Options

	mu   sync.Mutex // guards salt and reads of o.Rand
	salt []byte
}

// New returns a token store over s, a view private to the token store.
func New(s storage.Store, o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = defaultTTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = defaultTTL
	}
	return &Store{st: s, o: o}
}

// now is the clock at whole seconds, as Vault counts token times.
func (s *Store) now() time.Time { return s.o.Now().Truncate(time.Second).UTC() }

// CreateRoot creates a root token: the root policy, no parent, no expiry.
// It is for `operator init`; the token is returned once and never stored.
func (s *Store) CreateRoot(ctx context.Context) (string, *Entry, error) {
	e := &Entry{
		Policies:     []string{"root"},
		DisplayName:  "root",
		Path:         rootPath,
		CreationTime: s.now(),
		Orphan:       true,
	}
	tok, err := s.create(ctx, e, nil)
	if err != nil {
		return "", nil, fmt.Errorf("create root token: %w", err)
	}
	return tok, e.clone(), nil
}

// Lookup returns the entry of a usable token; ErrBadToken when the token is
// unknown, expired, used up or being revoked.
func (s *Store) Lookup(ctx context.Context, token string) (*Entry, error) {
	return s.lookup(ctx, token, false)
}

// LookupTx is Lookup inside a transaction the caller holds on the token
// store's storage (keys as this store sees them, without the prefix the
// core gives it), so that the caller can read what else it needs in the
// same transaction.
func (s *Store) LookupTx(tx storage.Tx, token string) (*Entry, error) {
	return s.lookupTx(tx, token, false)
}

// lookup is Lookup that, with pending, also returns a token whose
// revocation is pending, so that a token on its last use can still look
// itself up and revoke itself within that use.
func (s *Store) lookup(ctx context.Context, token string, pending bool) (*Entry, error) {
	if !validTokenForm(token) {
		return nil, ErrBadToken
	}
	var e *Entry
	var ferr error
	err := s.st.View(ctx, func(tx storage.Tx) error {
		e, ferr = s.lookupTx(tx, token, pending)
		return ferr
	})
	if err != nil && err != ferr {
		// The transaction itself failed, not the lookup inside it.
		return nil, fmt.Errorf("look up token: %w", err)
	}
	return e, err
}

// lookupTx reads the salt (unless cached) and the token's entry in tx.
func (s *Store) lookupTx(tx storage.Tx, token string, pending bool) (*Entry, error) {
	if !validTokenForm(token) {
		return nil, ErrBadToken
	}
	salt, err := s.saltTx(tx)
	if err != nil {
		return nil, err
	}
	if salt == nil {
		return nil, ErrBadToken
	}
	e, err := getEntry(tx, hashToken(salt, token))
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	now := s.now()
	if e == nil || !usable(e, now, pending) {
		return nil, ErrBadToken
	}
	if err := ancestorsUsable(tx, e, now); err != nil {
		return nil, err
	}
	return e, nil
}

// ancestorsUsable returns ErrBadToken if an ancestor of e has expired or
// is being revoked. A token lives no longer than its parent: Vault revokes
// a token's children when it expires, and here reap does that only on its
// next run, so until then such an ancestor makes its whole tree unusable.
// (revoke-orphan clears the children's parent; a parent missing under a
// live child is a store that lost a record.)
func ancestorsUsable(tx storage.Tx, e *Entry, now time.Time) error {
	seen := map[string]bool{e.ID: true}
	for id := e.Parent; id != ""; {
		if seen[id] {
			return fmt.Errorf("look up token: its parent chain loops")
		}
		seen[id] = true
		pe, err := getEntry(tx, id)
		if err != nil {
			return fmt.Errorf("look up token: %w", err)
		}
		if pe == nil || !usable(pe, now, false) {
			return ErrBadToken
		}
		id = pe.Parent
	}
	return nil
}

func usable(e *Entry, now time.Time, pending bool) bool {
	if e.NumUses < 0 {
		return pending
	}
	return !e.expired(now)
}

// validTokenForm rejects what cannot be a token before any storage access.
func validTokenForm(token string) bool {
	if len(token) != len(Prefix)+tokenRandomLen || !strings.HasPrefix(token, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(token); i++ {
		if strings.IndexByte(randstr.Base62, token[i]) < 0 {
			return false
		}
	}
	return true
}

// Use consumes one use of a use-limited token (a no-op for unlimited ones).
// On the last use the token becomes pending revocation: Lookup fails from
// now on, e.NumUses is set to -1, and the caller should Revoke it once the
// request is done (RevokeExpired does it otherwise). A token used up
// concurrently, or gone, gives ErrBadToken.
func (s *Store) Use(ctx context.Context, e *Entry) error {
	if e.NumUses == 0 {
		return nil
	}
	now := s.now()
	var stored *Entry
	err := s.st.Update(ctx, func(tx storage.Tx) error {
		cur, err := getEntry(tx, e.ID)
		if err != nil {
			return err
		}
		if cur == nil || !usable(cur, now, false) {
			return ErrBadToken
		}
		if cur.NumUses > 1 {
			cur.NumUses--
			stored = cur
			return putEntry(tx, cur)
		}
		stored = cur
		return markPending(tx, cur, now)
	})
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			return err
		}
		return logical.AccessorErrorf(e.Accessor, "use token %s: %w", e.Accessor, err)
	}
	e.NumUses, e.ExpireTime = stored.NumUses, stored.ExpireTime
	return nil
}

// StillUsableTx returns ErrBadToken unless the token e (looked up at the
// start of a request) is still stored, unexpired and not being revoked,
// in tx on the token store's storage: a request that records what must
// die with its token does so only while the token lives, so that a
// revocation that began after the request's check either sees the record
// or refuses it. lastUse accepts a token whose revocation is pending
// because this very request was its last use (Use marked it; its caller
// revokes it, and what the request created, when the request is done).
func (s *Store) StillUsableTx(tx storage.Tx, e *Entry, lastUse bool) error {
	cur, err := getEntry(tx, e.ID)
	if err != nil {
		return fmt.Errorf("look up token: %w", err)
	}
	if cur == nil || !usable(cur, s.now(), lastUse) {
		return ErrBadToken
	}
	return nil
}

// Count returns the number of stored tokens, including expired ones that
// reap has not yet removed.
func (s *Store) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.st.View(ctx, func(tx storage.Tx) error {
		return tx.Walk(idPrefix, func(string) error { n++; return nil })
	})
	if err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}

// create stores e as a new token, filling in its ID and accessor (and
// ExpireTime from TTL). With a creator (the token of the request, the
// parent unless e is an orphan), the creator must still be usable when the
// transaction runs, so that a child can never be added to a tree whose
// revocation has begun, nor an orphan made by a token being revoked.
func (s *Store) create(ctx context.Context, e *Entry, creator *Entry) (string, error) {
	salt, err := s.loadSalt(ctx, true)
	if err != nil {
		return "", err
	}
	if e.TTL > 0 {
		e.ExpireTime = e.CreationTime.Add(e.TTL)
	}
	var token string
	err = s.st.Update(ctx, func(tx storage.Tx) error {
		if creator != nil {
			p, err := getEntry(tx, creator.ID)
			if err != nil {
				return err
			}
			if p == nil || !usable(p, s.now(), false) {
				return ErrBadToken
			}
		}
		for {
			r, err := s.random(tokenRandomLen)
			if err != nil {
				return err
			}
			token = Prefix + r
			e.ID = hashToken(salt, token)
			if v, err := tx.Get(idPrefix + e.ID); err != nil {
				return err
			} else if v == nil {
				break
			}
		}
		for {
			acc, err := s.random(accessorLen)
			if err != nil {
				return err
			}
			if v, err := tx.Get(accessorPrefix + acc); err != nil {
				return err
			} else if v == nil {
				e.Accessor = acc
				break
			}
		}
		if err := putEntry(tx, e); err != nil {
			return err
		}
		if err := tx.Put(accessorPrefix+e.Accessor, []byte(e.ID)); err != nil {
			return err
		}
		if e.Parent != "" {
			if err := tx.Put(parentKey(e.Parent, e.ID), nil); err != nil {
				return err
			}
		}
		if !e.ExpireTime.IsZero() {
			return tx.Put(expireKey(e.ExpireTime, e.ID), nil)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// loadSalt returns the HMAC key, creating it when create is set and it does
// not exist yet. It returns nil (and no error) when there is none and
// create is false: then no token can exist. The key is cached only once
// committed, so a rolled-back transaction cannot leave a wrong one behind.
func (s *Store) loadSalt(ctx context.Context, create bool) ([]byte, error) {
	s.mu.Lock()
	salt := s.salt
	s.mu.Unlock()
	if salt != nil {
		return salt, nil
	}
	err := s.st.View(ctx, func(tx storage.Tx) error {
		var err error
		salt, err = tx.Get(saltKey)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read token salt: %w", err)
	}
	if salt == nil && create {
		err = s.st.Update(ctx, func(tx storage.Tx) error {
			cur, err := tx.Get(saltKey)
			if err != nil || cur != nil {
				salt = cur
				return err
			}
			fresh := make([]byte, 32)
			if err := s.readRand(fresh); err != nil {
				return err
			}
			salt = fresh
			return tx.Put(saltKey, fresh)
		})
		if err != nil {
			return nil, fmt.Errorf("create token salt: %w", err)
		}
	}
	if salt != nil {
		s.mu.Lock()
		s.salt = salt
		s.mu.Unlock()
	}
	return salt, nil
}

// saltTx returns the cached salt, else the one stored in tx (and caches
// it); nil when no token was ever created.
func (s *Store) saltTx(tx storage.Tx) ([]byte, error) {
	s.mu.Lock()
	salt := s.salt
	s.mu.Unlock()
	if salt != nil {
		return salt, nil
	}
	salt, err := tx.Get(saltKey)
	if err != nil {
		return nil, fmt.Errorf("read token salt: %w", err)
	}
	if salt != nil {
		s.mu.Lock()
		s.salt = salt
		s.mu.Unlock()
	}
	return salt, nil
}

func hashToken(salt []byte, token string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// random returns n base62 characters, every one equally likely. The
// reader is held for the whole draw, since a test's reader need not be
// safe for concurrent use.
func (s *Store) random(n int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return randstr.String(s.o.Rand, randstr.Base62, n)
}

func (s *Store) readRand(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.ReadFull(s.o.Rand, b); err != nil {
		return fmt.Errorf("read random: %w", err)
	}
	return nil
}

func parentKey(parent, child string) string { return parentPrefix + parent + "/" + child }

func expireKey(t time.Time, id string) string {
	return expirePrefix + fmt.Sprintf("%020d", t.Unix()) + "/" + id
}

// parseExpireKey returns the unix time and ID of an expiry index key.
func parseExpireKey(k string) (int64, string, error) {
	rest := strings.TrimPrefix(k, expirePrefix)
	ts, id, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, "", fmt.Errorf("malformed expiry index key %q", k)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("malformed expiry index key %q", k)
	}
	return n, id, nil
}

// EntryKey is the key, under the token store's prefix, of the record
// StillUsableTx reads for the token with this id: a caller that reads
// other keys in the same transaction can fetch it with them.
func EntryKey(id string) string { return idPrefix + id }

func getEntry(tx storage.Tx, id string) (*Entry, error) {
	v, err := tx.Get(idPrefix + id)
	if err != nil || v == nil {
		return nil, err
	}
	e := &Entry{}
	if err := json.Unmarshal(v, e); err != nil {
		return nil, logical.AccessorErrorf(e.Accessor, "decode token entry %s: %w", e.Accessor, err)
	}
	return e, nil
}

func putEntry(tx storage.Tx, e *Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return logical.AccessorErrorf(e.Accessor, "encode token entry %s: %w", e.Accessor, err)
	}
	return tx.Put(idPrefix+e.ID, v)
}

// setExpire moves e's expiry index key to t (zero: not indexed) and stores
// e.
func setExpire(tx storage.Tx, e *Entry, t time.Time) error {
	if !e.ExpireTime.IsZero() {
		if err := tx.Delete(expireKey(e.ExpireTime, e.ID)); err != nil {
			return err
		}
	}
	e.ExpireTime = t
	if !t.IsZero() {
		if err := tx.Put(expireKey(t, e.ID), nil); err != nil {
			return err
		}
	}
	return putEntry(tx, e)
}

// markPending makes e unusable and due now, so that whatever interrupts its
// revocation, RevokeExpired finishes it.
func markPending(tx storage.Tx, e *Entry, now time.Time) error {
	e.NumUses = revocationPending
	due := e.ExpireTime
	if due.IsZero() || due.After(now) {
		due = now
	}
	return setExpire(tx, e, due)
}

// deleteEntry removes e and its index keys.
func deleteEntry(tx storage.Tx, e *Entry) error {
	keys := []string{idPrefix + e.ID, accessorPrefix + e.Accessor}
	if e.Parent != "" {
		keys = append(keys, parentKey(e.Parent, e.ID))
	}
	if !e.ExpireTime.IsZero() {
		keys = append(keys, expireKey(e.ExpireTime, e.ID))
	}
	for _, k := range keys {
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// children returns the IDs of e's children.
func children(tx storage.Tx, id string) ([]string, error) {
	p := parentPrefix + id + "/"
	keys, err := tx.List(p)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, p)
	}
	return keys, nil
}

// sanitizePolicies lower-cases, trims, drops empty names and duplicates and
// sorts; root eclipses every other policy, as in Vault.
func sanitizePolicies(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, p := range in {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" || seen[p] {
			continue
		}
		if p == "root" {
			return []string{"root"}
		}
		seen[p] = true
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
