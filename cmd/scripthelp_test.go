package cmd

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// flipValueByte finds the value stored under key in the store file (read
// through bbolt, then located in the raw file) and flips one bit in its
// middle, inside the sealed ciphertext.
func flipValueByte(path, key string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	var val []byte
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("lessor"))
		if b == nil {
			return fmt.Errorf("no data bucket")
		}
		val = append([]byte(nil), b.Get([]byte(key))...)
		return nil
	})
	db.Close()
	if err != nil {
		return err
	}
	if len(val) < 8 {
		return fmt.Errorf("no value at %q", key)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// bbolt is copy-on-write: freed pages may still hold older copies of
	// the same bytes, so flip every copy; one of them is the live one.
	n := 0
	for i := 0; ; {
		j := bytes.Index(raw[i:], val)
		if j < 0 {
			break
		}
		raw[i+j+len(val)/2] ^= 0x01
		i += j + len(val)
		n++
	}
	if n == 0 {
		return fmt.Errorf("value of %q not found in the file", key)
	}
	return os.WriteFile(path, raw, 0o600)
}
