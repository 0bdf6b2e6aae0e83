package cmd

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/barrier"
)

// TestRekeyInPlaceOneAtATime: an in-place rekey holds a lock on the key
// file's directory; a second one meanwhile is refused before it touches
// <key file>.new, which the first one is about to rename over the key.
func TestRekeyInPlaceOneAtATime(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	keyDir := filepath.Join(c.env["HOME"], ".config", "lessor")
	unlock, err := lockDir(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	c.fails(1, `another rekey of a key file in this directory is running`, "operator", "rekey")
	unlock()
	c.must("operator", "rekey")
	c.must("secrets", "list")
}

// TestStoreOpensWith: after a rekey that reported a failure, lessor asks
// the store which key opens it before deleting the new one.
func TestStoreOpensWith(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	keyFile := filepath.Join(c.env["HOME"], ".config", "lessor", "unseal.key")
	oldKey, err := barrier.KeyFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.must("operator", "rekey")
	newKey, err := barrier.KeyFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return c.env[k] })
	ctx := context.Background()
	if ok, err := f.storeOpensWith(ctx, newKey); !ok || err != nil {
		t.Fatalf("the new key: %v, %v", ok, err)
	}
	if ok, err := f.storeOpensWith(ctx, oldKey); ok || err != nil {
		t.Fatalf("the old key: %v, %v", ok, err)
	}
	c.env["LESSOR_STORE"] = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	f = newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return c.env[k] })
	if ok, err := f.storeOpensWith(ctx, newKey); ok || err == nil {
		t.Fatalf("a store that does not answer: %v, %v", ok, err)
	}
}
