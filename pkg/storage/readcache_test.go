package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestPostgresReadCacheMatchesMemory: every read a transaction makes on a
// PostgreSQL store (Get, GetMany, GetPrefix, List, after Prefetch and
// PrefetchPrefixes of nested prefixes, among its own puts and deletes)
// answers what the same read answers on a Memory store given the same
// operations: the transaction's cache of keys and of whole prefixes never
// answers with something its own writes, or a later prefix read, changed.
func TestPostgresReadCacheMatchesMemory(t *testing.T) {
	ctx := context.Background()
	p, _ := newTestPostgres(t)
	m := NewMemory()
	rng := rand.New(rand.NewPCG(88, 1))
	// A small space of nested keys, so that prefixes overlap and reads hit
	// what was written and prefetched.
	key := func() string {
		k := ""
		for range 1 + rng.IntN(3) {
			k += string(rune('a' + rng.IntN(3)))
			if rng.IntN(3) == 0 {
				k += "/"
			}
		}
		return k
	}
	prefix := func() string {
		k := key()
		return k[:rng.IntN(len(k)+1)]
	}
	type op struct {
		name string
		run  func(Tx) (any, error)
	}
	randOp := func() op {
		switch rng.IntN(9) {
		case 0, 1:
			k, v := key(), fmt.Sprint(rng.IntN(1000))
			if rng.IntN(8) == 0 {
				v = ""
			}
			return op{"put " + k, func(tx Tx) (any, error) { return nil, tx.Put(k, []byte(v)) }}
		case 2:
			k := key()
			return op{"delete " + k, func(tx Tx) (any, error) { return nil, tx.Delete(k) }}
		case 3:
			k := key()
			return op{"get " + k, func(tx Tx) (any, error) {
				v, err := tx.Get(k)
				return show(v), err
			}}
		case 4:
			ks := []string{key(), key(), key()}
			return op{fmt.Sprint("getmany ", ks), func(tx Tx) (any, error) {
				vs, err := GetMany(tx, ks)
				out := []string{}
				for _, v := range vs {
					out = append(out, show(v))
				}
				return out, err
			}}
		case 5:
			pr := prefix()
			return op{"getprefix " + pr, func(tx Tx) (any, error) {
				ks, vs, err := GetPrefix(tx, pr)
				out := []string{}
				for i, k := range ks {
					out = append(out, k+"="+show(vs[i]))
				}
				return out, err
			}}
		case 6:
			pr := prefix()
			return op{"list " + pr, func(tx Tx) (any, error) {
				ks, err := tx.List(pr)
				if ks == nil {
					ks = []string{}
				}
				return ks, err
			}}
		case 7:
			ks, ps := []string{key(), key()}, []string{prefix(), prefix()}
			return op{fmt.Sprint("prefetchprefixes ", ks, ps), func(tx Tx) (any, error) { return nil, PrefetchPrefixes(tx, ks, ps) }}
		default:
			ks := []string{key(), key()}
			return op{fmt.Sprint("prefetch ", ks), func(tx Tx) (any, error) { return nil, Prefetch(tx, ks) }}
		}
	}
	for i := range 300 {
		var ops []op
		for range 1 + rng.IntN(25) {
			ops = append(ops, randOp())
		}
		write := rng.IntN(4) != 0
		var log [2][]string
		for j, s := range []Store{p, m} {
			run := s.View
			if write {
				run = s.Update
			}
			err := run(ctx, func(tx Tx) error {
				for _, o := range ops {
					if !write && (o.name[:3] == "put" || o.name[:3] == "del") {
						continue
					}
					got, err := o.run(tx)
					if err != nil {
						return fmt.Errorf("%s: %w", o.name, err)
					}
					log[j] = append(log[j], fmt.Sprintf("%s -> %v", o.name, got))
				}
				return nil
			})
			if err != nil {
				t.Fatalf("transaction %d: %v", i, err)
			}
		}
		if !reflect.DeepEqual(log[0], log[1]) {
			for k := range log[0] {
				if k >= len(log[1]) || log[0][k] != log[1][k] {
					t.Fatalf("transaction %d, operation %d:\npostgres: %s\nmemory:   %s\nops so far: %q", i, k, log[0][k], log[1][min(k, len(log[1])-1)], log[0][:k])
				}
			}
		}
	}
}

func show(v []byte) string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q", v)
}
