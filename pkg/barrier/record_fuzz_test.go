package barrier

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// fuzzRing is a keyring of two terms with fixed keys, so that records
// sealed in one fuzz run open in every other.
func fuzzRing(t testing.TB) *keyring {
	t.Helper()
	r := &keyring{active: 2, terms: map[uint32]*term{}}
	for tm := uint32(1); tm <= 2; tm++ {
		if err := r.add(tm, time.Unix(1700000000, 0), bytes.Repeat([]byte{byte(tm)}, 32)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

var fuzzStoreID = [16]byte{'f', 'u', 'z', 'z'}

// FuzzOpenRecord checks record decoding from two sides. Arbitrary bytes
// under an arbitrary key never panic and are refused as damage (the
// fuzzer cannot forge an AES-GCM tag). A record sealed here and then
// damaged — one byte XORed, cut short, or extended — is refused; only the
// undamaged record opens, to exactly the value sealed, and only under the
// key it was sealed for.
func FuzzOpenRecord(f *testing.F) {
	f.Add("logical/abc/config/postgresql", []byte(`{"connection_url":"postgres://x"}`), []byte{}, uint16(0), byte(0), uint16(0), false)
	f.Add("sys/token/id/0123", []byte{}, []byte{1, 0, 0, 0, 2}, uint16(3), byte(0x80), uint16(0), false)
	f.Add("core/mounts", []byte("v"), bytes.Repeat([]byte{1}, recordHdrLen+tagLen), uint16(20), byte(1), uint16(5), true)
	f.Add("", []byte("x"), []byte{1, 0, 0, 0, 9}, uint16(0), byte(0), uint16(1), false)
	f.Fuzz(func(t *testing.T, key string, value, raw []byte, pos uint16, mask byte, cut uint16, appendTail bool) {
		r := fuzzRing(t)

		// Arbitrary bytes: refused, as ErrCorrupt, naming the key.
		if v, err := openRecord(r, fuzzStoreID, key, raw); err == nil {
			t.Fatalf("arbitrary bytes %x opened as %q", raw, v)
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("arbitrary bytes: error %v is not ErrCorrupt", err)
		}

		sealed, err := sealRecord(r, fuzzStoreID, key, value, rand.NewChaCha8([32]byte{1}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := openRecord(r, fuzzStoreID, key, sealed)
		if err != nil || !bytes.Equal(got, value) || got == nil {
			t.Fatalf("sealed record does not round-trip: %q, %v", got, err)
		}
		if _, err := openRecord(r, fuzzStoreID, key+"x", sealed); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("record opened under another key: %v", err)
		}

		damaged := bytes.Clone(sealed)
		if mask != 0 {
			damaged[int(pos)%len(damaged)] ^= mask
		}
		if c := int(cut) % (len(damaged) + 1); c > 0 {
			damaged = damaged[:len(damaged)-c]
		}
		if appendTail {
			damaged = append(damaged, 0)
		}
		// Cutting a last byte that is 0 and appending a 0 gives the
		// record back unchanged: judge by the bytes, not by the steps.
		changed := !bytes.Equal(damaged, sealed)
		got, err = openRecord(r, fuzzStoreID, key, damaged)
		switch {
		case !changed && (err != nil || !bytes.Equal(got, value)):
			t.Fatalf("undamaged record: %q, %v", got, err)
		case changed && err == nil:
			t.Fatalf("damaged record %x opened as %q", damaged, got)
		case changed && !errors.Is(err, ErrCorrupt):
			t.Fatalf("damaged record: error %v is not ErrCorrupt", err)
		case changed && !strings.Contains(err.Error(), "tampered"):
			t.Fatalf("damaged record: error %q does not say what happened", err)
		}
	})
}
