package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lessorhq/lessor/pkg/randstr"
)

// PasswordLength is the length of generated passwords.
const PasswordLength = 20

const (
	lowerChars    = "abcdefghijklmnopqrstuvwxyz"
	upperChars    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digitChars    = "0123456789"
	passwordChars = upperChars + lowerChars + digitChars + "-"
)

// maxPasswordAttempts bounds resampling: a fair candidate lacks a class
// about three times in four, so 1,000 failures in a row mean the random
// source is broken, not unlucky.
const maxPasswordAttempts = 1000

// GeneratePassword returns 20 characters from [A-Za-z0-9-] with at least
// one upper case letter, one lower case letter, one digit and one dash,
// like Vault's default password policy. Candidates that lack a class are
// drawn again whole, so every acceptable password is equally likely.
func GeneratePassword(r io.Reader) (string, error) {
	for range maxPasswordAttempts {
		p, err := randstr.String(r, passwordChars, PasswordLength)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		if strings.ContainsAny(p, lowerChars) && strings.ContainsAny(p, upperChars) &&
			strings.ContainsAny(p, digitChars) && strings.Contains(p, "-") {
			return p, nil
		}
	}
	return "", errors.New("generate password: random source gives no password with every character class")
}

// SCRAM parameters PostgreSQL itself uses for new verifiers.
const (
	scramIterations = 4096
	scramSaltLen    = 16
)

// ScramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, with a 16-byte salt read from r:
// SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey> (standard base64).
// Sending the verifier instead of the password keeps the password out of the
// server and its logs.
//
// PostgreSQL's clients normalise a password with SASLprep before hashing it;
// for printable ASCII that is the identity, so non-ASCII passwords are
// refused rather than stored in a form some clients could not match.
func ScramVerifier(password string, r io.Reader) (string, error) {
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			return "", errors.New("scram verifier: password is not ASCII")
		}
	}
	salt := make([]byte, scramSaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", fmt.Errorf("scram verifier: read salt: %w", err)
	}
	return scramVerifierWithSalt(password, salt, scramIterations)
}

func scramVerifierWithSalt(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram verifier: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
