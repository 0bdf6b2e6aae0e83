package barrier

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/argon2"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Argon2Params is the cost of deriving a key from a passphrase with
// Argon2id.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

var (
	// DefaultArgon2 is OWASP's first recommended setting (m=46 MiB, t=1,
	// p=1), rated as strong as its m=19 MiB, t=2 and well under the
	// 64 MiB a lessor command may use at its peak. Stores made with the
	// earlier default (RFC 9106's m=64 MiB, t=3, p=2) keep it: the cost
	// is in each store's header.
	DefaultArgon2 = Argon2Params{Time: 1, MemoryKiB: 46 * 1024, Threads: 1}
	// MinimumArgon2 is OWASP's floor, the weakest cost a store may ask
	// for; tests use it to stay fast.
	MinimumArgon2 = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}
)

// Validate refuses a cost outside what a reader accepts: at least OWASP's
// floor (m >= 19 MiB with t >= 2, or m >= 46 MiB with t = 1), so a header
// cannot be crafted to make passphrases cheap to guess, and at most t=10,
// 4 GiB, 16 lanes, so it cannot be crafted to make unsealing take for
// ever or exhaust memory.
func (p Argon2Params) Validate() error {
	weak := p.Time < 1 || p.MemoryKiB < 19*1024 || p.Time == 1 && p.MemoryKiB < 46*1024
	if weak || p.Time > 10 || p.MemoryKiB > 4*1024*1024 || p.Threads < 1 || p.Threads > 16 {
		return fmt.Errorf("argon2id cost t=%d m=%d KiB p=%d is outside the accepted range (t 2..10 with m 19 MiB..4 GiB, or t 1 with m 46 MiB..4 GiB; p 1..16)",
			p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// The kinds of unseal key, as Kind, UnsealKind and Info name them.
const (
	KindKeyFile    = "keyfile"
	KindPassphrase = "passphrase"
)

// UnsealKey is what unseals a store: 32 key bytes (a key file, or the same
// in base64 from the environment) or a passphrase. Its zero value is no key.
type UnsealKey struct {
	kind   keyKind
	secret []byte
}

// Kind is KindKeyFile or KindPassphrase.
func (k UnsealKey) Kind() string { return k.kind.String() }

const keyLen = 32

var errBadKey = fmt.Errorf("not a base64-encoded %d-byte key", keyLen)

func decodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != keyLen {
		return nil, errBadKey
	}
	return b, nil
}

// KeyFromFile reads a key file: base64 of 32 random bytes. It refuses a
// symbolic link, anything but a regular file, and a file that group or
// others may access, as ssh does for private keys.
func KeyFromFile(path string) (UnsealKey, error) {
	// O_NONBLOCK so that a FIFO put in place of the key cannot block the
	// open; it is then refused as not regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return UnsealKey{}, fmt.Errorf("key file %s is a symbolic link; give the path of the file itself", path)
	}
	if err != nil {
		return UnsealKey{}, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return UnsealKey{}, fmt.Errorf("read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return UnsealKey{}, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return UnsealKey{}, fmt.Errorf("key file %s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	// Another user's key is one they know: what it unseals (or, for a
	// new store, seals) is theirs to read.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return UnsealKey{}, fmt.Errorf("key file %s belongs to another user (uid %d); use a file of your own", path, st.Uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return UnsealKey{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	key, err := decodeKey(string(b))
	if err != nil {
		return UnsealKey{}, fmt.Errorf("key file %s is %w", path, err)
	}
	return UnsealKey{kind: kindKeyFile, secret: key}, nil
}

// KeyFromBase64 reads a key given as text, as in LESSOR_UNSEAL_KEY. It is
// the same key as the key file that holds this text.
func KeyFromBase64(s string) (UnsealKey, error) {
	key, err := decodeKey(s)
	if err != nil {
		return UnsealKey{}, fmt.Errorf("unseal key is %w", err)
	}
	return UnsealKey{kind: kindKeyFile, secret: key}, nil
}

// KeyFromPassphrase makes a key from a passphrase, which Argon2id stretches
// with the store's parameters. Init and Rekey refuse an empty one.
func KeyFromPassphrase(p []byte) UnsealKey {
	return UnsealKey{kind: kindPassphrase, secret: bytes.Clone(p)}
}

// GenerateKeyFile writes a new random key to a new file at path, mode 0600,
// in a directory no other user can change (storage.CheckPrivateDir).
// It never replaces an existing file; read the key with KeyFromFile.
func GenerateKeyFile(path string) error {
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	if err := storage.CheckPrivateDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("key file %s already exists: %w", path, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("generate key file %s: %w", path, err)
	}
	// The file's name is durable too before a store is sealed under the
	// key: a power loss must not keep the store and lose the key.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			os.Remove(path)
			return fmt.Errorf("generate key file %s: sync its directory: %w", path, err)
		}
	}
	return nil
}

// deriveKEK turns key into the key-encryption key for the header h.
func deriveKEK(h *header, key UnsealKey) ([]byte, error) {
	if key.kind != h.kind {
		what := map[keyKind]string{kindKeyFile: "a key file", kindPassphrase: "a passphrase"}
		return nil, fmt.Errorf("%w: this store is unsealed with %s, not %s", ErrWrongKey, what[h.kind], what[key.kind])
	}
	switch key.kind {
	case kindKeyFile:
		return hkdf.Key(sha256.New, key.secret, h.storeID[:], "lessor v1 keyfile", 32)
	case kindPassphrase:
		return argon2.IDKey(key.secret, h.salt[:], h.kdf.Time, h.kdf.MemoryKiB, h.kdf.Threads, 32), nil
	}
	return nil, errNoKey
}
