package storage

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// TestGetMany: a batched read returns what Gets would, in the order asked
// (absent keys nil, empty values empty), and sees the transaction's own
// writes and deletes, on every backend and through a prefixed view; on
// PostgreSQL, later Gets of the keys read are served without a query.
func TestGetMany(t *testing.T) {
	stores := map[string]Store{"memory": NewMemory()}
	for name, open := range backends(t) {
		stores[name] = open()
	}
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
