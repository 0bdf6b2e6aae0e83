package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestGetMany: a batched read returns what Gets would, in the order asked
// (absent keys nil, empty values empty), and sees the transaction's own
// writes and deletes, on every backend and through a prefixed view; on
// PostgreSQL, later Gets of the keys read are served without a query.
func TestGetMany(t *testing.T) {
	stores := everyStore(t)
	ctx := context.Background()
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			keys := []string{"a/absent"}
			err := s.Update(ctx, func(tx Tx) error {
				for i := range 1500 {
					k := fmt.Sprintf("a/%04d", i)
					keys = append(keys, k)
					if err := tx.Put(k, []byte("v"+k)); err != nil {
						return err
					}
				}
				return tx.Put("a/empty", nil)
			})
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, "a/empty", "a/0001")
			slices.Reverse(keys)
			check := func(tx Tx, want func(k string) []byte) {
				t.Helper()
				got, err := GetMany(tx, keys)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(keys) {
					t.Fatalf("%d values for %d keys", len(got), len(keys))
				}
				for i, k := range keys {
					w := want(k)
					if (got[i] == nil) != (w == nil) || string(got[i]) != string(w) {
						t.Fatalf("%s: got %q, want %q", k, got[i], w)
					}
					one, err := tx.Get(k)
					if err != nil || (one == nil) != (w == nil) || string(one) != string(w) {
						t.Fatalf("%s: Get after GetMany: %q %v, want %q", k, one, err, w)
					}
				}
			}
			stored := func(k string) []byte {
				switch k {
				case "a/absent":
					return nil
				case "a/empty":
					return []byte{}
				}
				return []byte("v" + k)
			}
			if err := s.View(ctx, func(tx Tx) error { check(tx, stored); return nil }); err != nil {
				t.Fatal(err)
			}
			err = s.Update(ctx, func(tx Tx) error {
				if err := tx.Delete("a/0001"); err != nil {
					return err
				}
				if err := tx.Put("a/absent", []byte("new")); err != nil {
					return err
				}
				if p, ok := tx.(*pgTx); ok {
					if err := p.Prefetch(keys); err != nil {
						return err
					}
					// Kill the connection's ability to answer: every
					// value must now come from the transaction itself.
					p.table = "no_such_table"
				}
				check(tx, func(k string) []byte {
					switch k {
					case "a/0001":
						return nil
					case "a/absent":
						return []byte("new")
					}
					return stored(k)
				})
				return errStopTest
			})
			if err != errStopTest {
				t.Fatal(err)
			}
			pre := Prefixed(s, "a/")
			err = pre.View(ctx, func(tx Tx) error {
				got, err := GetMany(tx, []string{"0002", "absent"})
				if err != nil || string(got[0]) != "va/0002" || got[1] != nil {
					t.Fatalf("prefixed: %q %v", got, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

var errStopTest = fmt.Errorf("roll back")

// TestGetPrefix: keys under a prefix with their values, as List and Gets
// would return them, including the transaction's own writes and deletes
// (PostgreSQL sends those before it reads), on every backend.
func TestGetPrefix(t *testing.T) {
	stores := everyStore(t)
	ctx := context.Background()
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			err := s.Update(ctx, func(tx Tx) error {
				for _, k := range []string{"p/a", "p/b", "p/c", "p", "q/a", "o/z"} {
					if err := tx.Put(k, []byte("v"+k)); err != nil {
						return err
					}
				}
				return tx.Put("p/empty", nil)
			})
			if err != nil {
				t.Fatal(err)
			}
			check := func(tx Tx, want ...string) {
				t.Helper()
				keys, vs, err := GetPrefix(tx, "p/")
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for i, k := range keys {
					got = append(got, k+"="+string(vs[i]))
					if vs[i] == nil {
						t.Fatalf("%s: nil value", k)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("GetPrefix: %q, want %q", got, want)
				}
				if len(vs) > 0 {
					vs[0][0] = 'X' // the caller's copy: the next read is unchanged
					if v, err := tx.Get(keys[0]); err != nil || v[0] == 'X' {
						t.Fatalf("Get after changing GetPrefix's value: %q %v", v, err)
					}
				}
			}
			if err := s.View(ctx, func(tx Tx) error { check(tx, "p/a=vp/a", "p/b=vp/b", "p/c=vp/c", "p/empty="); return nil }); err != nil {
				t.Fatal(err)
			}
			err = s.Update(ctx, func(tx Tx) error {
				if err := tx.Delete("p/b"); err != nil {
					return err
				}
				if err := tx.Put("p/d", []byte("new")); err != nil {
					return err
				}
				check(tx, "p/a=vp/a", "p/c=vp/c", "p/d=new", "p/empty=")
				return tx.Delete("p/empty")
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.View(ctx, func(tx Tx) error { check(tx, "p/a=vp/a", "p/c=vp/c", "p/d=new"); return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPrefetchPrefixes: after keys and whole prefixes are read ahead, a
// GetPrefix of one of them (or of a longer prefix) and a Get under it
// return what they return without the read ahead, the transaction's own
// writes and deletes included, before and after the read ahead, on every
// backend and through a prefixed view; on PostgreSQL they then send no
// query, and the read ahead is one.
func TestPrefetchPrefixes(t *testing.T) {
	stores := everyStore(t)
	ctx := context.Background()
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			err := s.Update(ctx, func(tx Tx) error {
				for _, k := range []string{"v/p/a", "v/p/b", "v/p/c", "v/p/c/d", "v/p", "v/q/a", "v/o/z", "v/k"} {
					if err := tx.Put(k, []byte("v"+k)); err != nil {
						return err
					}
				}
				for i := range maxReadCache + 10 {
					if err := tx.Put(fmt.Sprintf("v/big/%05d", i), nil); err != nil {
						return err
					}
				}
				return tx.Put("v/p/empty", nil)
			})
			if err != nil {
				t.Fatal(err)
			}
			type read struct {
				prefix []string // GetPrefix of each
				gets   []string // Get of each
			}
			asked := read{
				prefix: []string{"p/", "p/c", "q/", "r/"},
				gets:   []string{"k", "p/a", "p/zz", "absent", "p/b"},
			}
			answer := func(tx Tx) string {
				var out []string
				for _, p := range asked.prefix {
					keys, vs, err := GetPrefix(tx, p)
					if err != nil {
						t.Fatal(err)
					}
					for i, k := range keys {
						if vs[i] == nil {
							t.Fatalf("%s: nil value", k)
						}
						out = append(out, k+"="+string(vs[i]))
					}
				}
				for _, k := range asked.gets {
					v, err := tx.Get(k)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, fmt.Sprintf("%s:%q", k, v))
				}
				return strings.Join(out, " ")
			}
			write := func(tx Tx) {
				for _, err := range []error{
					tx.Delete("p/b"), tx.Put("p/d", []byte("new")), tx.Put("p/a", []byte("changed")),
					tx.Put("p/zz", nil), tx.Delete("q/a"), tx.Put("r/x", []byte("r")),
				} {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			view := Prefixed(s, "v/")
			// Each answer is taken three ways in its own transaction:
			// with no read ahead, writes before the read ahead, writes
			// after it. The transactions roll back.
			for _, writes := range []string{"none", "before", "after"} {
				var want string
				for _, ahead := range []bool{false, true} {
					err := view.Update(ctx, func(tx Tx) error {
						if writes == "before" {
							write(tx)
						}
						if ahead {
							if err := PrefetchPrefixes(tx, asked.gets, []string{"p/", "q/", "r/", "big/"}); err != nil {
								return err
							}
						}
						if writes == "after" {
							write(tx)
						}
						var pg *pgTx
						if ahead {
							pg, _ = tx.(*prefixTx).tx.(*pgTx)
						}
						table := ""
						if pg != nil {
							// Every answer but big/'s (more keys than
							// the cache keeps) must now come from the
							// transaction itself.
							table, pg.table = pg.table, "no_such_table"
						}
						got := answer(tx)
						if pg != nil {
							pg.table = table
						}
						keys, _, err := GetPrefix(tx, "big/")
						if err != nil || len(keys) != maxReadCache+10 {
							t.Fatalf("big/: %d keys, %v", len(keys), err)
						}
						if !ahead {
							want = got
						} else if got != want {
							t.Errorf("writes %s the read ahead:\n got %s\nwant %s", writes, got, want)
						}
						return errStopTest
					})
					if err != errStopTest {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// everyStore gives a new store of each backend, the memory one included.
func everyStore(t *testing.T) map[string]Store {
	stores := map[string]Store{"memory": NewMemory()}
	for name, open := range backends(t) {
		stores[name] = open()
	}
	return stores
}
