// Package randstr draws random strings: lease IDs, token secrets and
// accessors, generated passwords and the random part of usernames all come
// from String, so there is one place that decides how a byte becomes a
// character.
//
// Every symbol of the alphabet is equally likely: a byte that would make a
// modulo favour the first symbols is skipped (rejection sampling), never
// folded in. The reader is read in batches, so a deterministic reader in a
// test gives a deterministic string.
package randstr

import (
	"errors"
	"fmt"
	"io"
)

// Base62 is Vault's base62 alphabet: digits, then upper and lower case
// letters.
const Base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// String returns n symbols drawn uniformly from alphabet, which holds 1 to
// 256 single-byte symbols, reading random bytes from r.
func String(r io.Reader, alphabet string, n int) (string, error) {
	if len(alphabet) == 0 || len(alphabet) > 256 {
		return "", fmt.Errorf("random string: alphabet of %d symbols, want 1 to 256", len(alphabet))
	}
	if n < 0 {
		return "", errors.New("random string: negative length")
	}
	// Bytes at or above limit are rejected: below it, each symbol has
	// exactly limit/len(alphabet) bytes that map to it.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2+1)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}
