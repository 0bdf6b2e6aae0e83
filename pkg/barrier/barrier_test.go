package barrier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

var ctx = context.Background()

// testKey is a fixed key-file key, so that child processes can share it.
const testKeyB64 = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho="

func testKey(t testing.TB) UnsealKey {
	t.Helper()
	k, err := KeyFromBase64(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func otherKey(t testing.TB) UnsealKey {
	t.Helper()
	k, err := KeyFromBase64(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func passphrase(t testing.TB, p string) UnsealKey {
	t.Helper()
	return KeyFromPassphrase([]byte(p))
}

var fastKDF = InitOptions{KDF: MinimumArgon2}

// fastDir is a temporary directory on tmpfs when there is one, so that
// tests committing thousands of transactions measure locking, not the
// disk's fsync.
func fastDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "lessor-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func newBolt(t testing.TB, dir string) *storage.Bolt {
	t.Helper()
	b, err := storage.CreateBolt(filepath.Join(dir, "lessor.db"), storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t testing.TB, s storage.Store, kv ...string) {
	t.Helper()
	err := s.Update(ctx, func(tx storage.Tx) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readAll returns every key and value the store shows.
func readAll(ctx context.Context, s storage.Store) (map[string]string, error) {
	got := map[string]string{}
	err := s.View(ctx, func(tx storage.Tx) error {
		return tx.Walk("", func(k string) error {
			v, err := tx.Get(k)
			if err != nil {
				return err
			}
			if v == nil {
				return fmt.Errorf("walk listed %q but get found nothing", k)
			}
			got[k] = string(v)
			return nil
		})
	})
	return got, err
}

func mustReadAll(t testing.TB, s storage.Store) map[string]string {
	t.Helper()
	got, err := readAll(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func physGet(t testing.TB, phys storage.Store, key string) []byte {
	t.Helper()
	var v []byte
	err := phys.View(ctx, func(tx storage.Tx) error {
		var err error
		v, err = tx.Get(key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func physPut(t testing.TB, phys storage.Store, key string, v []byte) {
	t.Helper()
	if err := phys.Update(ctx, func(tx storage.Tx) error { return tx.Put(key, v) }); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	for name, phys := range map[string]storage.Store{
		"memory": storage.NewMemory(),
		"bolt":   newBolt(t, t.TempDir()),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Init(ctx, phys, testKey(t), InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"core/mounts":                       "mount table",
				"logical/uuid/config/postgresql":    `{"connection_url":"postgres://"}`,
				"sys/expire/id/database/creds/ro/1": "",
			}
			var kv []string
			for k, v := range want {
				kv = append(kv, k, v)
			}
			put(t, b, kv...)
			if got := mustReadAll(t, b); !reflect.DeepEqual(got, want) {
				t.Fatalf("read back %v, want %v", got, want)
			}

			// Physically, every value is sealed: version, term 1, nonce,
			// ciphertext and tag, and no plaintext.
			for k, v := range want {
				sealed := physGet(t, phys, k)
				if len(sealed) != 1+4+12+len(v)+16 || sealed[0] != 1 || !bytes.Equal(sealed[1:5], []byte{0, 0, 0, 1}) {
					t.Errorf("%s: sealed as % x", k, sealed)
				}
				if len(v) > 0 && bytes.Contains(sealed, []byte(v)) {
					t.Errorf("%s: plaintext visible", k)
				}
			}
			var physKeys []string
			phys.View(ctx, func(tx storage.Tx) error { physKeys, err = tx.List(""); return err })
			wantPhys := []string{"barrier/guard", "barrier/header", "barrier/keyring", "barrier/sets", "barrier/state", "core/mounts", "logical/uuid/config/postgresql", "sys/expire/id/database/creds/ro/1"}
			if !reflect.DeepEqual(physKeys, wantPhys) {
				t.Fatalf("physical keys %q, want %q", physKeys, wantPhys)
			}

			// A second opening with the same key sees the same.
			b2, err := Open(ctx, phys, testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := mustReadAll(t, b2); !reflect.DeepEqual(got, want) {
				t.Fatalf("reopened: %v, want %v", got, want)
			}
			if b2.StoreID() != b.StoreID() || len(b.StoreID()) != 32 {
				t.Fatalf("store ids %q and %q", b.StoreID(), b2.StoreID())
			}

			// Deletes and a failed update.
			boom := errors.New("boom")
			err = b.Update(ctx, func(tx storage.Tx) error {
				if err := tx.Delete("core/mounts"); err != nil {
					return err
				}
				if v, _ := tx.Get("core/mounts"); v != nil {
					return errors.New("deleted key still readable in its transaction")
				}
				return tx.Put("x", []byte("y"))
			})
			if err != nil {
				t.Fatal(err)
			}
			err = b.Update(ctx, func(tx storage.Tx) error {
				tx.Put("z", []byte("z"))
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			delete(want, "core/mounts")
			want["x"] = "y"
			if got := mustReadAll(t, b2); !reflect.DeepEqual(got, want) {
				t.Fatalf("after delete: %v, want %v", got, want)
			}
		})
	}
}

func TestReservedKeys(t *testing.T) {
	b, err := Init(ctx, storage.NewMemory(), testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(tx storage.Tx) error {
		for _, op := range []func() error{
			func() error { return tx.Put("barrier/header", []byte("x")) },
			func() error { _, err := tx.Get("barrier/keyring"); return err },
			func() error { return tx.Delete("barrier/keyring") },
			func() error { _, err := tx.List("barrier/"); return err },
		} {
			if err := op(); !errors.Is(err, ErrReservedKey) {
				return fmt.Errorf("got %v, want ErrReservedKey", err)
			}
		}
		if err := tx.Put("barrier/x", nil); err.Error() != `key "barrier/x": key is reserved for the barrier` {
			return fmt.Errorf("message: %v", err)
		}
		// Listing everything hides the barrier's records.
		keys, err := tx.List("")
		if err != nil || len(keys) != 0 {
			return fmt.Errorf("list: %q, %v", keys, err)
		}
		keys, err = tx.List("barrier")
		if err != nil || len(keys) != 0 {
			return fmt.Errorf("list barrier: %q, %v", keys, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInitAndOpenStates(t *testing.T) {
	phys := storage.NewMemory()
	if ok, err := Initialized(ctx, phys); ok || err != nil {
		t.Fatalf("empty store: initialized=%v, %v", ok, err)
	}
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrNotInitialized) || err.Error() != "open barrier: store is not initialized" {
		t.Fatalf("open empty: %v", err)
	}
	if _, err := UnsealKind(ctx, phys); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("unseal kind of empty store: %v", err)
	}
	if _, err := Init(ctx, phys, UnsealKey{}, InitOptions{}); err == nil {
		t.Fatal("init without a key")
	}
	if _, err := Init(ctx, phys, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := Initialized(ctx, phys); !ok || err != nil {
		t.Fatalf("after init: initialized=%v, %v", ok, err)
	}
	_, err := Init(ctx, phys, otherKey(t), InitOptions{})
	if !errors.Is(err, ErrAlreadyInitialized) || err.Error() != "init barrier: store is already initialized" {
		t.Fatalf("second init: %v", err)
	}
	if _, err := Open(ctx, phys, testKey(t)); err != nil {
		t.Fatal(err)
	}

	// Records without a header: the header was lost, and neither Init nor
	// Initialized may treat the store as new.
	lost := storage.NewMemory()
	physPut(t, lost, "core/mounts", []byte("sealed"))
	if _, err := Initialized(ctx, lost); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("initialized of headerless store: %v", err)
	}
	if _, err := Init(ctx, lost, testKey(t), InitOptions{}); !errors.Is(err, ErrCorrupt) ||
		err.Error() != "init barrier: store has records but no barrier header" {
		t.Fatalf("init of headerless store: %v", err)
	}
	if _, err := Open(ctx, lost, testKey(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open of headerless store: %v", err)
	}
	if _, err := UnsealKind(ctx, lost); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unseal kind of headerless store: %v", err)
	}
}

// detRand is a deterministic random source for tests that compare exact
// outputs.
func detRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

func TestInfo(t *testing.T) {
	created := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	clock := created
	now := func() time.Time { return clock }
	for _, c := range []struct {
		key  UnsealKey
		kind string
		kdf  Argon2Params
	}{
		{testKey(t), "keyfile", Argon2Params{}},
		{passphrase(t, "correct horse"), "passphrase", MinimumArgon2},
	} {
		b, err := Init(ctx, storage.NewMemory(), c.key, InitOptions{KDF: MinimumArgon2, Now: now, Rand: detRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		id := make([]byte, 16)
		detRand(1).Read(id)
		want := Info{FormatVersion: 2, StoreID: hex.EncodeToString(id), Term: 1, Terms: []uint32{1},
			UnsealKind: c.kind, KDF: c.kdf, Created: created}
		if got := b.Info(); !reflect.DeepEqual(got, want) {
			t.Fatalf("info\n got %+v\nwant %+v", got, want)
		}
		clock = clock.Add(time.Hour)
		if term, err := b.Rotate(ctx); term != 2 || err != nil {
			t.Fatalf("rotate: %d, %v", term, err)
		}
		want.Term, want.Terms = 2, []uint32{1, 2}
		if got := b.Info(); !reflect.DeepEqual(got, want) {
			t.Fatalf("info after rotate\n got %+v\nwant %+v", got, want)
		}
		clock = created
	}
}

func TestDefaultKDF(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Argon2id with 46 and 64 MiB")
	}
	b, err := Init(ctx, storage.NewMemory(), passphrase(t, "pw"), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Info().KDF; got != (Argon2Params{Time: 1, MemoryKiB: 46 * 1024, Threads: 1}) {
		t.Fatalf("default KDF %+v", got)
	}

	// A store made with the earlier default keeps its cost, which is in
	// its header, and still opens; rekeying it to a passphrase takes the
	// new default.
	old := Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 2}
	phys := storage.NewMemory()
	if _, err := Init(ctx, phys, passphrase(t, "pw"), InitOptions{KDF: old}); err != nil {
		t.Fatal(err)
	}
	b, err = Open(ctx, phys, passphrase(t, "pw"))
	if err != nil {
		t.Fatalf("open a store with the earlier default cost: %v", err)
	}
	if got := b.Info().KDF; got != old {
		t.Fatalf("earlier default KDF read back as %+v", got)
	}
}

func TestArgon2Floor(t *testing.T) {
	for _, c := range []struct {
		p  Argon2Params
		ok bool
	}{
		{Argon2Params{Time: 1, MemoryKiB: 46 * 1024, Threads: 1}, true},
		{Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}, true},
		{Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 2}, true},
		{Argon2Params{Time: 1, MemoryKiB: 46*1024 - 1, Threads: 1}, false},
		{Argon2Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1}, false},
		{Argon2Params{Time: 2, MemoryKiB: 19*1024 - 1, Threads: 1}, false},
		{Argon2Params{Time: 0, MemoryKiB: 64 * 1024, Threads: 1}, false},
		{Argon2Params{Time: 11, MemoryKiB: 64 * 1024, Threads: 1}, false},
		{Argon2Params{Time: 1, MemoryKiB: 46 * 1024, Threads: 0}, false},
	} {
		if err := c.p.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", c.p, err, c.ok)
		}
	}
}

func TestAADBindsKeyAndStore(t *testing.T) {
	phys := storage.NewMemory()
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "core/mounts", "secret mounts", "sys/policy/apps", "apps policy")

	// The same sealed bytes under another key do not open.
	physPut(t, phys, "sys/policy/admin", physGet(t, phys, "sys/policy/apps"))
	err = b.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("sys/policy/admin"); return err })
	if !errors.Is(err, ErrCorrupt) || err.Error() != `record "sys/policy/admin" failed authentication (damaged or tampered)` {
		t.Fatalf("moved record: %v", err)
	}

	// Nor in another store sealed by the same key.
	phys2 := storage.NewMemory()
	b2, err := Init(ctx, phys2, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	physPut(t, phys2, "core/mounts", physGet(t, phys, "core/mounts"))
	err = b2.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("core/mounts"); return err })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("record from another store: %v", err)
	}
	// Nor does the other store's keyring open under this store's header.
	physPut(t, phys2, "barrier/keyring", physGet(t, phys, "barrier/keyring"))
	if _, err := Open(ctx, phys2, testKey(t)); !errors.Is(err, ErrCorrupt) ||
		err.Error() != "open barrier: keyring failed authentication (damaged or tampered)" {
		t.Fatalf("keyring from another store: %v", err)
	}

	// Changing the term a record names is refused too.
	sealed := physGet(t, phys, "core/mounts")
	sealed[4] = 9
	physPut(t, phys, "core/mounts", sealed)
	err = b.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("core/mounts"); return err })
	if !errors.Is(err, ErrCorrupt) || err.Error() != `record "core/mounts" names key term 9, which the keyring does not hold (damaged or tampered)` {
		t.Fatalf("record with another term: %v", err)
	}
	// And truncation.
	physPut(t, phys, "core/mounts", sealed[:20])
	err = b.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("core/mounts"); return err })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated record: %v", err)
	}
}

func TestWrongKeys(t *testing.T) {
	phys := storage.NewMemory()
	if _, err := Init(ctx, phys, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, phys, otherKey(t))
	if !errors.Is(err, ErrWrongKey) || err.Error() != "open barrier: wrong unseal key" {
		t.Fatalf("wrong key file: %v", err)
	}
	_, err = Open(ctx, phys, passphrase(t, "pw"))
	if !errors.Is(err, ErrWrongKey) || err.Error() != "open barrier: wrong unseal key: this store is unsealed with a key file, not a passphrase" {
		t.Fatalf("passphrase for a key file store: %v", err)
	}

	pphys := storage.NewMemory()
	if _, err := Init(ctx, pphys, passphrase(t, "correct horse"), fastKDF); err != nil {
		t.Fatal(err)
	}
	if kind, err := UnsealKind(ctx, pphys); kind != KindPassphrase || err != nil {
		t.Fatalf("unseal kind %q, %v", kind, err)
	}
	if _, err := Open(ctx, pphys, passphrase(t, "")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("empty passphrase: %v", err)
	}
	if _, err := Open(ctx, pphys, passphrase(t, "correct horse")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, pphys, passphrase(t, "correct horsf")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	_, err = Open(ctx, pphys, testKey(t))
	if !errors.Is(err, ErrWrongKey) || !strings.HasSuffix(err.Error(), "this store is unsealed with a passphrase, not a key file") {
		t.Fatalf("key file for a passphrase store: %v", err)
	}
}

// rewriteHeader changes a stored header and, if fixSum, recomputes its
// checksum, as someone crafting a header would.
func rewriteHeader(t *testing.T, phys storage.Store, fixSum bool, change func(h []byte)) {
	t.Helper()
	h := physGet(t, phys, "barrier/header")
	change(h)
	if fixSum {
		sum := sha256.Sum256(h[:119])
		copy(h[119:], sum[:])
	}
	physPut(t, phys, "barrier/header", h)
}

func TestHeaderDamageAndTampering(t *testing.T) {
	fresh := func(t *testing.T) storage.Store {
		phys := storage.NewMemory()
		if _, err := Init(ctx, phys, passphrase(t, "pw"), InitOptions{KDF: Argon2Params{Time: 3, MemoryKiB: 20 * 1024, Threads: 1}}); err != nil {
			t.Fatal(err)
		}
		return phys
	}
	cases := []struct {
		name   string
		fixSum bool
		change func(h []byte)
		want   error
		msg    string
	}{
		{"flipped byte", false, func(h []byte) { h[50] ^= 1 }, ErrCorrupt, "open barrier: store header is damaged"},
		{"flipped checksum", false, func(h []byte) { h[140] ^= 1 }, ErrCorrupt, "open barrier: store header is damaged"},
		{"flipped wrapped key", false, func(h []byte) { h[100] ^= 1 }, ErrCorrupt, "open barrier: store header is damaged"},
		// With the checksum fixed up, a cheaper KDF within the accepted
		// range is caught by the root key's wrap.
		{"downgraded passes", true, func(h []byte) { h[37] = 2 }, ErrWrongKey, "open barrier: wrong unseal key"},
		{"downgraded memory", true, func(h []byte) { be.PutUint32(h[38:], 19*1024) }, ErrWrongKey, "open barrier: wrong unseal key"},
		{"changed store id", true, func(h []byte) { h[9] ^= 1 }, ErrWrongKey, "open barrier: wrong unseal key"},
		{"changed created", true, func(h []byte) { h[32] ^= 1 }, ErrWrongKey, "open barrier: wrong unseal key"},
		// Outside the range, the reader refuses before running the KDF.
		{"memory below the floor", true, func(h []byte) { be.PutUint32(h[38:], 1024) }, ErrCorrupt,
			"open barrier: store header: argon2id cost t=3 m=1024 KiB p=1 is outside the accepted range (t 2..10 with m 19 MiB..4 GiB, or t 1 with m 46 MiB..4 GiB; p 1..16)"},
		{"memory above the cap", true, func(h []byte) { be.PutUint32(h[38:], 5*1024*1024) }, ErrCorrupt, ""},
		{"too many passes", true, func(h []byte) { be.PutUint32(h[34:], 11) }, ErrCorrupt, ""},
		{"no lanes", true, func(h []byte) { h[42] = 0 }, ErrCorrupt, ""},
		{"unknown kind", true, func(h []byte) { h[33] = 3 }, ErrCorrupt, "open barrier: store header has unknown unseal kind 3"},
		{"future version", true, func(h []byte) { h[8] = 3 }, nil, "open barrier: store format version 3 is not supported (this lessor reads versions 1 and 2)"},
		// Passing a version 2 header off as version 1 (which has no record
		// checksum) is refused before the key is tried: a version 1 store
		// has no state record.
		{"downgraded version", true, func(h []byte) { h[8] = 1 }, ErrCorrupt, "open barrier: store header was replaced by an older one (tampered)"},
		{"not a header", true, func(h []byte) { h[0] = 'X' }, ErrCorrupt, "open barrier: store header is not a lessor header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			phys := fresh(t)
			rewriteHeader(t, phys, c.fixSum, c.change)
			_, err := Open(ctx, phys, passphrase(t, "pw"))
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || (c.msg != "" && err.Error() != c.msg) {
				t.Fatalf("got %v, want %v %q", err, c.want, c.msg)
			}
			if c.want == ErrCorrupt && errors.Is(err, ErrWrongKey) || c.want == ErrWrongKey && errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v is both damage and a wrong key", err)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		phys := fresh(t)
		physPut(t, phys, "barrier/header", physGet(t, phys, "barrier/header")[:150])
		if _, err := Open(ctx, phys, passphrase(t, "pw")); !errors.Is(err, ErrCorrupt) {
			t.Fatal(err)
		}
	})
	t.Run("keyring damaged", func(t *testing.T) {
		phys := fresh(t)
		k := physGet(t, phys, "barrier/keyring")
		k[20] ^= 0x40
		physPut(t, phys, "barrier/keyring", k)
		_, err := Open(ctx, phys, passphrase(t, "pw"))
		if !errors.Is(err, ErrCorrupt) || err.Error() != "open barrier: keyring failed authentication (damaged or tampered)" {
			t.Fatal(err)
		}
	})
}

func TestRotate(t *testing.T) {
	phys := storage.NewMemory()
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "a", "1", "b", "2")
	term, err := b.Rotate(ctx)
	if err != nil || term != 2 {
		t.Fatalf("rotate: %d, %v", term, err)
	}
	put(t, b, "a", "1'")
	termOf := func(k string) uint32 { return be.Uint32(physGet(t, phys, k)[1:]) }
	if termOf("a") != 2 || termOf("b") != 1 {
		t.Fatalf("terms after rotate: a=%d b=%d, want 2 and 1", termOf("a"), termOf("b"))
	}
	if got, want := mustReadAll(t, b), map[string]string{"a": "1'", "b": "2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after rotate: %v", got)
	}
	// A fresh opening reads both terms.
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustReadAll(t, b2); got["a"] != "1'" || got["b"] != "2" {
		t.Fatalf("reopened after rotate: %v", got)
	}
	if info := b2.Info(); info.Term != 2 || !reflect.DeepEqual(info.Terms, []uint32{1, 2}) {
		t.Fatalf("info %+v", info)
	}
}

// Two openings of one file stand for two processes: each sees the other's
// rotation inside its next transaction.
func TestRotateByAnotherProcess(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b1, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, b1, "new", "sealed with term 2")
	if got := mustReadAll(t, b2); got["new"] != "sealed with term 2" {
		t.Fatalf("other opening reads %v", got)
	}
	if b2.Info().Term != 2 {
		t.Fatalf("other opening did not reload the keyring: %+v", b2.Info())
	}

	// A write by an opening that has not read since a rotation still uses
	// the newest term.
	if _, err := b1.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, b2, "later", "x")
	if term := be.Uint32(physGet(t, phys, "later")[1:]); term != 3 {
		t.Fatalf("write after another's rotation used term %d, want 3", term)
	}
	if got := mustReadAll(t, b1); got["later"] != "x" {
		t.Fatalf("read back %v", got)
	}
}

func TestRekey(t *testing.T) {
	phys := storage.NewMemory()
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "a", "1")
	sealedBefore := physGet(t, phys, "a")

	if err := b.Rekey(ctx, otherKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old key after rekey: %v", err)
	}
	b2, err := Open(ctx, phys, otherKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustReadAll(t, b2); got["a"] != "1" {
		t.Fatalf("after rekey: %v", got)
	}
	if !bytes.Equal(physGet(t, phys, "a"), sealedBefore) {
		t.Fatal("rekey re-encrypted a record")
	}

	// To a passphrase, then to another passphrase: each with a new salt.
	if err := b2.Rekey(ctx, passphrase(t, "one"), InitOptions{KDF: MinimumArgon2}); err != nil {
		t.Fatal(err)
	}
	salt1 := physGet(t, phys, "barrier/header")[43:59]
	if _, err := Open(ctx, phys, otherKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("key file after rekey to a passphrase: %v", err)
	}
	b3, err := Open(ctx, phys, passphrase(t, "one"))
	if err != nil {
		t.Fatal(err)
	}
	if info := b3.Info(); info.UnsealKind != "passphrase" || info.KDF != MinimumArgon2 {
		t.Fatalf("info %+v", info)
	}
	if err := b3.Rekey(ctx, passphrase(t, "two"), InitOptions{KDF: MinimumArgon2}); err != nil {
		t.Fatal(err)
	}
	if salt2 := physGet(t, phys, "barrier/header")[43:59]; bytes.Equal(salt1, salt2) {
		t.Fatal("rekey kept the salt")
	}
	if _, err := Open(ctx, phys, passphrase(t, "one")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old passphrase: %v", err)
	}
	if _, err := Open(ctx, phys, passphrase(t, "two")); err != nil {
		t.Fatal(err)
	}
	if err := b3.Rekey(ctx, passphrase(t, "three"), InitOptions{KDF: Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}}); err == nil {
		t.Fatal("rekey accepted a KDF below the floor")
	}

	// An opening whose header is stale (another process rekeyed) must not
	// undo that rekey.
	if err := b.Rekey(ctx, testKey(t), InitOptions{}); err == nil ||
		err.Error() != "rekey barrier: the store header changed since the store was opened (rekeyed by another process?); open it again" {
		t.Fatalf("stale rekey: %v", err)
	}
}

func writeKeyFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	phys := storage.NewMemory()
	if _, err := Init(ctx, phys, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}

	good := writeKeyFile(t, dir, "good", testKeyB64+"\n", 0o600)
	k, err := KeyFromFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if k.Kind() != "keyfile" {
		t.Fatalf("kind %q", k.Kind())
	}
	if _, err := Open(ctx, phys, k); err != nil {
		t.Fatalf("key file with the base64 key: %v", err)
	}

	loose := writeKeyFile(t, dir, "loose", testKeyB64, 0o644)
	_, err = KeyFromFile(loose)
	if err == nil || err.Error() != "key file "+loose+" is readable by group or others (mode 0644); run: chmod 600 "+loose {
		t.Fatalf("mode 0644: %v", err)
	}
	if _, err := KeyFromFile(writeKeyFile(t, dir, "groupw", testKeyB64, 0o620)); err == nil {
		t.Fatal("mode 0620 accepted")
	}

	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	if _, err := KeyFromFile(link); err == nil || err.Error() != "key file "+link+" is a symbolic link; give the path of the file itself" {
		t.Fatalf("symlink: %v", err)
	}
	if _, err := KeyFromFile(dir); err == nil || err.Error() != "key file "+dir+" is not a regular file" {
		t.Fatalf("directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := KeyFromFile(fifo); err == nil || err.Error() != "key file "+fifo+" is not a regular file" {
		t.Fatalf("fifo: %v", err)
	}
	if _, err := KeyFromFile(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("absent: %v", err)
	}
	if os.Geteuid() == 0 {
		theirs := writeKeyFile(t, dir, "theirs", testKeyB64, 0o600)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := KeyFromFile(theirs); err == nil || err.Error() != "key file "+theirs+" belongs to another user (uid 65534); use a file of your own" {
			t.Fatalf("another user's key file: %v", err)
		}
	}
	for name, content := range map[string]string{
		"short":  base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"text":   "not base64 at all, and it might be a secret",
		"empty":  "",
		"padded": strings.Repeat(" ", 2000) + testKeyB64,
	} {
		p := writeKeyFile(t, dir, name, content, 0o600)
		_, err := KeyFromFile(p)
		if err == nil || err.Error() != "key file "+p+" is not a base64-encoded 32-byte key" {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := KeyFromBase64("c2VjcmV0"); err == nil || err.Error() != "unseal key is not a base64-encoded 32-byte key" {
		t.Fatalf("base64: %v", err)
	}
	if _, err := Init(ctx, storage.NewMemory(), KeyFromPassphrase(nil), fastKDF); err == nil || err.Error() != "init barrier: empty passphrase" {
		t.Fatalf("init with an empty passphrase: %v", err)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "unseal.key")
	if err := GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	k, err := KeyFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	phys := storage.NewMemory()
	if _, err := Init(ctx, phys, k, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if kind, err := UnsealKind(ctx, phys); kind != KindKeyFile || err != nil {
		t.Fatalf("unseal kind %q, %v", kind, err)
	}
	if err := GenerateKeyFile(p); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second generate: %v", err)
	}
	if k2, err := KeyFromFile(p); err != nil || !bytes.Equal(k.secret, k2.secret) {
		t.Fatal("second generate changed the key file")
	}
	p2 := filepath.Join(dir, "second.key")
	if err := GenerateKeyFile(p2); err != nil {
		t.Fatal(err)
	}
	k2, err := KeyFromFile(p2)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(k.secret, k2.secret) {
		t.Fatal("two generated keys are equal")
	}
	if _, err := Open(ctx, phys, k2); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another generated key opened the store: %v", err)
	}
}

// A header that parses is one that marshals back to the same bytes, and
// parsing never panics.
func FuzzParseHeader(f *testing.F) {
	h := &header{version: 1, created: 1700000000, kind: kindPassphrase, kdf: DefaultArgon2}
	f.Add(h.marshal())
	h.kind, h.kdf = kindKeyFile, Argon2Params{}
	f.Add(h.marshal())
	f.Add([]byte("lessorhd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.marshal(), b) {
			t.Fatalf("parsed header marshals differently")
		}
	})
}
