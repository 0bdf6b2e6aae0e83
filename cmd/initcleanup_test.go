package cmd

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// An init that fails after creating the store removes what it created, so
// that init can simply be run again: the file, or the PostgreSQL schema.
// (A missing unseal key makes barrier.Init fail right after the store was
// created.)
func TestInitStoreRemovesWhatItCreated(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	path := filepath.Join(home, "lessor.db")
	factory := func(store string) *Factory {
		env := map[string]string{"HOME": home, "LESSOR_STORE": store}
		return newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return env[k] })
	}
	f := factory(path)
	if _, _, err := initStore(ctx, f, "", barrier.UnsealKey{}); err == nil {
		t.Fatal("init with no unseal key succeeded")
	}
	f.close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file of a failed init is still there: %v", err)
	}

	srv := pgtest.Require(t)
	url := srv.NewDatabase(t).URL + "&schema=failed_init"
	f = factory(url)
	if _, _, err := initStore(ctx, f, url, barrier.UnsealKey{}); err == nil {
		t.Fatal("init with no unseal key succeeded")
	}
	f.close()
	p, err := storage.OpenPostgres(ctx, url, storage.PostgresOptions{})
	if err == nil {
		p.Close()
	}
	if !errors.Is(err, storage.ErrNoStore) {
		t.Fatalf("the schema of a failed init is still there: %v", err)
	}
}
