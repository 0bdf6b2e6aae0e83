package barrier

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

var updateFixture = flag.Bool("update-fixture", false, "write testdata/v<FormatVersion>-keyfile.db (only when the format version changes)")

// fixturePath is the fixture written by format version v. Each one is kept
// for as long as lessor reads that version: a store written by a released
// lessor opens for ever.
func fixturePath(v int) string { return fmt.Sprintf("testdata/v%d-keyfile.db", v) }

var fixtureWant = map[string]string{
	"core/mounts":          `{"database/":{"type":"database"}}`,
	"sys/policy/apps":      `path "database/creds/readonly" { capabilities = ["read"] }`,
	"sys/expire/id/lease1": "sealed with term 1",
	"sys/expire/id/lease2": "sealed with term 2",
}

// TestFormatV1Fixture opens a store written by format version 1, kept in
// testdata for as long as lessor reads that version, so that a change that
// breaks old stores fails here.
func TestFormatV1Fixture(t *testing.T) {
	if *updateFixture {
		writeFixture(t)
	}
	b, phys := openFixture(t, 1)
	if got := mustReadAll(t, b); !reflect.DeepEqual(got, fixtureWant) {
		t.Fatalf("fixture reads %v", got)
	}
	want := Info{FormatVersion: 1, StoreID: "0123456789abcdef0123456789abcdef", Term: 2, Terms: []uint32{1, 2},
		UnsealKind: "keyfile", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if got := b.Info(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fixture info\n got %+v\nwant %+v", got, want)
	}
	v1Header := physGet(t, phys, "barrier/header")
	// It still takes writes, and the first one gives it a record checksum
	// (format version 2).
	put(t, b, "after", "x")
	if v := b.Info().FormatVersion; v != 2 {
		t.Fatalf("after the first write, format version %d", v)
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b2.Verify(ctx, true); err != nil || res.Records != len(fixtureWant)+1 || res.Generation != 1 {
		t.Fatalf("verify the upgraded fixture: %+v, %v", res, err)
	}
	// The version 1 header put back does not turn the checksum off: its
	// keyring no longer opens under version 1.
	physPut(t, phys, "barrier/header", v1Header)
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("upgraded store with its version 1 header put back: %v", err)
	}
}

// TestFormatV2Fixture opens a store written by format version 2.
func TestFormatV2Fixture(t *testing.T) {
	b, _ := openFixture(t, 2)
	if got := mustReadAll(t, b); !reflect.DeepEqual(got, fixtureWant) {
		t.Fatalf("fixture reads %v", got)
	}
	want := Info{FormatVersion: 2, StoreID: "0123456789abcdef0123456789abcdef", Term: 2, Terms: []uint32{1, 2},
		UnsealKind: "keyfile", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if got := b.Info(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fixture info\n got %+v\nwant %+v", got, want)
	}
	// Its state record predates the token buckets: verify checks it, gives
	// it the buckets (a write: generation 3 becomes 4), then checks again.
	if res, err := b.Verify(ctx, true); err != nil || res.Records != len(fixtureWant) || res.Generation != 4 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	put(t, b, "after", "x")
}

func openFixture(t *testing.T, version int) (*Barrier, *storage.Bolt) {
	data, err := os.ReadFile(fixturePath(version))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lessor.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	phys, err := storage.OpenBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := phys.Check(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return b, phys
}

// writeFixture builds the fixture. Its store id is fixed by patching the
// random source's first 16 bytes.
func writeFixture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lessor.db")
	phys, err := storage.CreateBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := Init(ctx, phys, testKey(t), InitOptions{Now: func() time.Time { return created }, Rand: &prefixed{id, detRand(9)}})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "core/mounts", fixtureWant["core/mounts"], "sys/policy/apps", fixtureWant["sys/policy/apps"],
		"sys/expire/id/lease1", fixtureWant["sys/expire/id/lease1"])
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, b, "sys/expire/id/lease2", fixtureWant["sys/expire/id/lease2"])
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixturePath(FormatVersion), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// prefixed reads p first, then r.
type prefixed struct {
	p []byte
	r interface{ Read([]byte) (int, error) }
}

func (s *prefixed) Read(b []byte) (int, error) {
	if len(s.p) > 0 {
		n := copy(b, s.p)
		s.p = s.p[n:]
		return n, nil
	}
	return s.r.Read(b)
}
