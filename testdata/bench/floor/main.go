// Command floor is the yardstick of lessor's issue-latency benchmark: the
// least a program can do to issue one PostgreSQL credential the way lessor
// does. It opens a fresh pgx connection, then in one transaction creates a
// login role with a SCRAM-SHA-256 verifier and VALID UNTIL, grants it what
// the benchmark's role grants, and comments on it; nothing else (no store,
// no token, no lease record). cmd/bench_test.go builds it and divides
// lessor's time by its time.
//
// Usage: floor URL GRANT_SQL PREFIX
//
// GRANT_SQL is run as is after CREATE ROLE, with {{name}} replaced by the
// quoted role name; the role's name is PREFIX and random hex, so that a
// benchmark's clean-up drops its own roles and no other run's.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: floor URL GRANT_SQL PREFIX")
		os.Exit(1)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(2)
	}
}

func run(url, grant, prefix string) error {
	ctx := context.Background()
	// The same amount of randomness and hashing lessor spends on a
	// credential: a random name and password, a SCRAM verifier.
	raw := make([]byte, 26)
	rand.Read(raw)
	name := prefix + hex.EncodeToString(raw[:10])
	password := base64.RawURLEncoding.EncodeToString(raw[10:])
	verifier, err := scram(password)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	until := time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05-07")
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s WITH LOGIN PASSWORD '%s' VALID UNTIL '%s'", ident, verifier, until),
		strings.ReplaceAll(grant, "{{name}}", ident),
		fmt.Sprintf("COMMENT ON ROLE %s IS 'lessor-bench-floor'", ident),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func scram(password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, 4096, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(msg string) []byte {
		h := hmac.New(sha256.New, salted)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac("Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$4096:%s$%s:%s", b64(salt), b64(stored[:]), b64(mac("Server Key"))), nil
}
