package storage

import (
	"context"
	"strings"
)

// Prefixed returns a view of s in which every key is silently prefixed, so
// that a backend sees only its own part of the store ("logical/<uuid>/").
func Prefixed(s Store, prefix string) Store { return &prefixStore{s: s, p: prefix} }

type prefixStore struct {
	s Store
	p string
}

func (ps *prefixStore) View(ctx context.Context, fn func(Tx) error) error {
	return ps.s.View(ctx, func(tx Tx) error { return fn(&prefixTx{tx: tx, p: ps.p}) })
}

func (ps *prefixStore) Update(ctx context.Context, fn func(Tx) error) error {
	return ps.s.Update(ctx, func(tx Tx) error { return fn(&prefixTx{tx: tx, p: ps.p}) })
}

// PrefixedTx is Prefixed for one transaction: a caller that holds a
// transaction on s can hand a component whose storage is Prefixed(s,
// prefix) the view that component expects.
func PrefixedTx(tx Tx, prefix string) Tx { return &prefixTx{tx: tx, p: prefix} }

// Unprefixed returns the transaction that tx, a transaction of a Prefixed
// store or a PrefixedTx, reads and writes through, with no prefix; any
// other tx as it is. The core reads its own records in a backend's
// transaction with it.
func Unprefixed(tx Tx) Tx {
	for {
		p, ok := tx.(*prefixTx)
		if !ok {
			return tx
		}
		tx = p.tx
	}
}

type prefixTx struct {
	tx Tx
	p  string
}

func (t *prefixTx) Get(key string) ([]byte, error)     { return t.tx.Get(t.p + key) }
func (t *prefixTx) Put(key string, value []byte) error { return t.tx.Put(t.p+key, value) }
func (t *prefixTx) Delete(key string) error            { return t.tx.Delete(t.p + key) }

func (t *prefixTx) List(prefix string) ([]string, error) {
	keys, err := t.tx.List(t.p + prefix)
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, t.p)
	}
	return keys, err
}

func (t *prefixTx) Walk(prefix string, fn func(string) error) error {
	return t.tx.Walk(t.p+prefix, func(k string) error { return fn(strings.TrimPrefix(k, t.p)) })
}
