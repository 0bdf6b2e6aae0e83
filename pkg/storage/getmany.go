package storage

import "strings"

// ManyGetter is a Tx that reads several keys in one call. A backend whose
// reads cost a round trip each (PostgreSQL) implements it with one query;
// callers use GetMany, which falls back to one Get per key.
type ManyGetter interface {
	// GetMany returns the value stored at each key, in the order of keys:
	// nil for an absent key, as Get does.
	GetMany(keys []string) ([][]byte, error)
}

// GetMany reads keys in tx in one call when tx is a ManyGetter, and with
// one Get per key when it is not. The result has one value per key, nil
// for an absent one.
func GetMany(tx Tx, keys []string) ([][]byte, error) {
	if mg, ok := tx.(ManyGetter); ok {
		return mg.GetMany(keys)
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := tx.Get(k)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// GetMany implements ManyGetter for a prefixed view.
func (t *prefixTx) GetMany(keys []string) ([][]byte, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = t.p + k
	}
	return GetMany(t.tx, full)
}

// Prefetcher is a Tx that can read keys ahead of the Gets that will need
// them, in one call (PostgreSQL: one query instead of a round trip per
// key). A caller about to delete or replace many keys through the barrier,
// which reads each key's old value first, prefetches them with Prefetch.
type Prefetcher interface {
	Prefetch(keys []string) error
}

// Prefetch has tx read keys ahead when it is a Prefetcher, and does
// nothing otherwise: a store whose reads are local gains nothing by it.
func Prefetch(tx Tx, keys []string) error {
	if p, ok := tx.(Prefetcher); ok {
		return p.Prefetch(keys)
	}
	return nil
}

// Prefetch implements Prefetcher for a prefixed view.
func (t *prefixTx) Prefetch(keys []string) error {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = t.p + k
	}
	return Prefetch(t.tx, full)
}

// PrefixGetter is a Tx that reads every key under a prefix with its value
// in one call (PostgreSQL: one query, not a list and then a read).
type PrefixGetter interface {
	// GetPrefix returns the keys that start with prefix, in byte order,
	// and their values.
	GetPrefix(prefix string) ([]string, [][]byte, error)
}

// GetPrefix reads every key under prefix in tx with its value: in one call
// when tx is a PrefixGetter, with List and GetMany when it is not.
func GetPrefix(tx Tx, prefix string) ([]string, [][]byte, error) {
	if pg, ok := tx.(PrefixGetter); ok {
		return pg.GetPrefix(prefix)
	}
	keys, err := tx.List(prefix)
	if err != nil {
		return nil, nil, err
	}
	vs, err := GetMany(tx, keys)
	return keys, vs, err
}

// PrefixPrefetcher is a Prefetcher that also reads whole prefixes ahead,
// in the same call: a caller that knows it will read a key and then every
// key under some prefixes (the barrier's checks of the sets a record
// belongs to) pays one round trip for all of them where a read is one.
// A GetPrefix of a prefetched prefix afterwards returns what a fresh one
// would, the transaction's own writes included.
type PrefixPrefetcher interface {
	PrefetchPrefixes(keys, prefixes []string) error
}

// PrefetchPrefixes has tx read keys and every key under prefixes ahead
// when it is a PrefixPrefetcher, and keys alone (see Prefetch) when not.
func PrefetchPrefixes(tx Tx, keys, prefixes []string) error {
	if p, ok := tx.(PrefixPrefetcher); ok {
		return p.PrefetchPrefixes(keys, prefixes)
	}
	return Prefetch(tx, keys)
}

// PrefetchPrefixes implements PrefixPrefetcher for a prefixed view.
func (t *prefixTx) PrefetchPrefixes(keys, prefixes []string) error {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = t.p + k
	}
	fullP := make([]string, len(prefixes))
	for i, p := range prefixes {
		fullP[i] = t.p + p
	}
	return PrefetchPrefixes(t.tx, full, fullP)
}

// GetPrefix implements PrefixGetter for a prefixed view.
func (t *prefixTx) GetPrefix(prefix string) ([]string, [][]byte, error) {
	keys, vs, err := GetPrefix(t.tx, t.p+prefix)
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, t.p)
	}
	return keys, vs, err
}

// Taker is a Tx that deletes a key and returns the value it held in one
// lookup of the key, where Get and then Delete look it up twice. The
// barrier reads every key's old value before it deletes it (for its set
// checksums), and a reap deletes three keys per lease.
type Taker interface {
	// Take deletes key and returns the value it held, nil (and nothing
	// deleted) when it was absent, as Get would have.
	Take(key string) ([]byte, error)
}

// Take deletes key in tx and returns the value it held: in one call when
// tx is a Taker, else with Get and, when the key is there, Delete.
func Take(tx Tx, key string) ([]byte, error) {
	if t, ok := tx.(Taker); ok {
		return t.Take(key)
	}
	old, err := tx.Get(key)
	if err != nil || old == nil {
		return old, err
	}
	return old, tx.Delete(key)
}
