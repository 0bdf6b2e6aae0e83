package postgres

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/randstr"
)

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		p, err := GeneratePassword(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 20 {
			t.Fatalf("password %q has %d characters", p, len(p))
		}
		if strings.Trim(p, passwordChars) != "" {
			t.Fatalf("password %q has characters outside [A-Za-z0-9-]", p)
		}
		if !strings.ContainsAny(p, lowerChars) || !strings.ContainsAny(p, upperChars) ||
			!strings.ContainsAny(p, digitChars) || !strings.Contains(p, "-") {
			t.Fatalf("password %q lacks a character class", p)
		}
		if seen[p] {
			t.Fatalf("password %q drawn twice", p)
		}
		seen[p] = true
		for _, r := range p {
			counts[r]++
		}
	}
	// 40,000 characters over 63 symbols: about 620 each. Every password
	// needs a dash, so a password holds 20/63 / (1-(62/63)^20) = 1.16 dashes
	// on average: about 2,316. A modulo bias towards the first symbols
	// would show as a spread far wider than this.
	if c := counts['-']; c < 2100 || c > 2550 {
		t.Errorf("dash drawn %d times in 40,000, want about 2,316", c)
	}
	for _, r := range strings.TrimSuffix(passwordChars, "-") {
		if c := counts[r]; c < 480 || c > 780 {
			t.Errorf("symbol %q drawn %d times in 40,000", r, c)
		}
	}
}

type byteSeq struct{ next byte }

func (s *byteSeq) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = s.next
		s.next++
	}
	return len(p), nil
}

func TestRandomStringRejectsBiasedBytes(t *testing.T) {
	// 63 symbols: bytes 252..255 would favour the first four symbols, so
	// they are skipped.
	r := io.MultiReader(bytes.NewReader([]byte{252, 253, 254, 255, 0, 62, 63, 251}), &byteSeq{})
	got, err := randstr.String(r, passwordChars, 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := "A-A-A"; got != want {
		t.Errorf("randstr.String = %q, want %q", got, want)
	}
}

func TestGeneratePasswordBrokenRandom(t *testing.T) {
	if _, err := GeneratePassword(bytes.NewReader(make([]byte, 100))); err == nil || !strings.Contains(err.Error(), "read random") {
		t.Errorf("short reader: err = %v", err)
	}
	zeros := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), strings.NewReader(""))
	_, err := GeneratePassword(zeros)
	if err == nil {
		t.Fatal("all-zero random source gave a password")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "every character class") {
		t.Errorf("err = %v", err)
	}
}

// TestScramVerifierRFC7677 checks the verifier against the exchange in
// RFC 7677, section 3: a client proving "pencil" must be accepted by the
// StoredKey, and the ServerKey must sign as the server there did.
func TestScramVerifierRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := ScramVerifier("pencil", bytes.NewReader(salt))
	if err != nil {
		t.Fatal(err)
	}
	prefix := "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	if !strings.HasPrefix(v, prefix) {
		t.Fatalf("verifier %q does not start with %q", v, prefix)
	}
	keys := strings.Split(strings.TrimPrefix(v, prefix), ":")
	if len(keys) != 2 {
		t.Fatalf("verifier %q: want StoredKey:ServerKey", v)
	}
	storedKey, err1 := base64.StdEncoding.DecodeString(keys[0])
	serverKey, err2 := base64.StdEncoding.DecodeString(keys[1])
	if err1 != nil || err2 != nil || len(storedKey) != 32 || len(serverKey) != 32 {
		t.Fatalf("verifier %q: bad keys", v)
	}
	authMessage := "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	clientSig := hmacSHA256(storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if sum := sha256.Sum256(clientKey); !hmac.Equal(sum[:], storedKey) {
		t.Error("RFC 7677 client proof does not verify against the StoredKey")
	}
	serverSig := base64.StdEncoding.EncodeToString(hmacSHA256(serverKey, authMessage))
	if want := "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; serverSig != want {
		t.Errorf("server signature %s, want %s", serverSig, want)
	}
}

func TestScramVerifierRefusals(t *testing.T) {
	if _, err := ScramVerifier("pässword", rand.Reader); err == nil {
		t.Error("non-ASCII password accepted")
	}
	if _, err := ScramVerifier("pw", bytes.NewReader(make([]byte, 3))); err == nil {
		t.Error("short salt accepted")
	}
	a, _ := ScramVerifier("pw", rand.Reader)
	b, _ := ScramVerifier("pw", rand.Reader)
	if a == b {
		t.Error("two verifiers of one password share a salt")
	}
}
