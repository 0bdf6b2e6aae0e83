package cmd

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

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

// TestMigrateLeftoverNamed: what a migration killed before its end leaves
// (records, but no header: migrate writes the header last) is named as
// such when migrate meets it again, with what to do.
func TestMigrateLeftoverNamed(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	dst := filepath.Join(c.env["HOME"], "copy.db")
	c.must("operator", "migrate", "-to="+dst)
	db, err := bolt.Open(dst, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("lessor")).Delete([]byte(barrier.HeaderKey)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	c.fails(1, `already exists\nlessor: hint: it holds records but no store header: the remains of a migration that was interrupted; remove it and migrate again`,
		"operator", "migrate", "-to="+dst)
}

// TestRekeyKeepsAnotherRekeysKey: a rekey that opened the store before
// another one committed (and died before renaming its <key file>.new over
// the key file) never deletes that .new, the only key that opens the
// store now.
func TestRekeyKeepsAnotherRekeysKey(t *testing.T) {
	c := newCLI(t)
	c.initStore()
	ctx := context.Background()
	keyFile := filepath.Join(c.env["HOME"], ".config", "lessor", "unseal.key")
	getenv := func(k string) string { return c.env[k] }
	var errB strings.Builder
	fB := newFactory(strings.NewReader(""), io.Discard, &errB, getenv)
	if _, err := fB.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	// Meanwhile A's in-place rekey commits and dies before its rename.
	fA := newFactory(strings.NewReader(""), io.Discard, io.Discard, getenv)
	bA, err := fA.Barrier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := barrier.GenerateKeyFile(keyFile + ".new"); err != nil {
		t.Fatal(err)
	}
	k1, err := barrier.KeyFromFile(keyFile + ".new")
	if err != nil {
		t.Fatal(err)
	}
	if err := bA.Rekey(ctx, k1, barrier.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := run(ctx, fB, []string{"operator", "rekey"}); code != 1 || !strings.Contains(errB.String(), "it was rekeyed meanwhile") {
		t.Fatalf("the second rekey: exit %d, stderr %q", code, errB.String())
	}
	k, err := barrier.KeyFromFile(keyFile + ".new")
	if err != nil {
		t.Fatalf("the committed rekey's key is gone: %v", err)
	}
	fC := newFactory(strings.NewReader(""), io.Discard, io.Discard, getenv)
	if ok, err := fC.storeOpensWith(ctx, k); !ok || err != nil {
		t.Fatalf("the store does not open with %s.new: %v, %v", keyFile, ok, err)
	}
}
