package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/lessorhq/lessor/pkg/pgtest"
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

// TestPostgresRetryReadsAfresh: a transaction that PostgreSQL aborts (a
// serialization failure) runs again with nothing of its first run's reads
// cached: a key and a prefix read whole in the first run, changed by
// another session before the retry, read as changed in the second.
func TestPostgresRetryReadsAfresh(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Require(t)
	p, u := newTestPostgres(t)
	err := p.Update(ctx, func(tx Tx) error {
		if err := tx.Put("p/a", []byte("old")); err != nil {
			return err
		}
		return tx.Put("p/z", []byte("gone"))
	})
	if err != nil {
		t.Fatal(err)
	}
	other := srv.Connect(t, srv.User, srv.Password, dbName(t, u))
	// The first write of the first run fails as a serialization failure.
	if _, err := other.Exec(ctx, `CREATE SEQUENCE lessor.runs;
CREATE FUNCTION lessor.abort_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_catalog.nextval('lessor.runs') = 1 THEN
		RAISE EXCEPTION 'abort once' USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER abort_once BEFORE INSERT ON lessor.kv FOR EACH ROW EXECUTE FUNCTION lessor.abort_once()`); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = p.Update(ctx, func(tx Tx) error {
		if err := PrefetchPrefixes(tx, []string{"q"}, []string{"p/"}); err != nil {
			return err
		}
		keys, vs, err := GetPrefix(tx, "p/")
		if err != nil {
			return err
		}
		v, err := tx.Get("p/a")
		if err != nil {
			return err
		}
		seen = append(seen, fmt.Sprintf("%q %q %q", keys, vs, v))
		if len(seen) == 1 {
			if _, err := other.Exec(ctx, `UPDATE lessor.kv SET value = 'new' WHERE key = 'p/a';
DELETE FROM lessor.kv WHERE key = 'p/z'`); err != nil {
				return err
			}
		}
		return tx.Put("p/c", []byte("mine"))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`["p/a" "p/z"] ["old" "gone"] "old"`, `["p/a"] ["new"] "new"`}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("runs read %q, want %q", seen, want)
	}
}

// TestStoreNoLostPrefixUpdate: handles that each add a key numbered by the
// keys a prefix read (read ahead, then read whole) found under it, side by
// side, as reapers that claim what no other claimed, end with every key
// added: no transaction's prefix read answers from before another's
// commit.
func TestStoreNoLostPrefixUpdate(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const writers, each = 3, 20
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for range writers {
				s := open()
				wg.Go(func() {
					for range each {
						err := s.Update(ctx, func(tx Tx) error {
							if err := PrefetchPrefixes(tx, []string{"other"}, []string{"n/"}); err != nil {
								return err
							}
							keys, _, err := GetPrefix(tx, "n/")
							if err != nil {
								return err
							}
							return tx.Put(fmt.Sprintf("n/%04d", len(keys)), nil)
						})
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			err := open().View(ctx, func(tx Tx) error {
				keys, err := tx.List("n/")
				if err == nil && len(keys) != writers*each {
					err = fmt.Errorf("%d keys, want %d", len(keys), writers*each)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
