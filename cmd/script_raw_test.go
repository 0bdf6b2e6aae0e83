package cmd

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
	bolt "go.etcd.io/bbolt"
)

// cmdRawStore is the script command `rawstore`, which reads and changes a
// store file with bbolt alone, as an attacker who may write the file but
// has no key can:
//
//	rawstore save STORE PREFIX FILE   copy every record under PREFIX to FILE
//	rawstore load STORE FILE          put the records saved in FILE back
//	rawstore delete STORE KEY...      delete records
//	rawstore delete-under STORE PREFIX  delete every record under PREFIX
//	rawstore keys STORE PREFIX        print the keys under PREFIX
func cmdRawStore(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: rawstore save|load|delete|keys STORE ...")
	}
	db, err := bolt.Open(ts.MkAbs(args[1]), 0o600, nil)
	if err != nil {
		ts.Fatalf("rawstore: %v", err)
	}
	defer db.Close()
	bucket := []byte("lessor")
	switch args[0] {
	case "save", "keys":
		if args[0] == "save" && len(args) != 4 || args[0] == "keys" && len(args) != 3 {
			ts.Fatalf("usage: rawstore save STORE PREFIX FILE | keys STORE PREFIX")
		}
		var out bytes.Buffer
		err = db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.Seek([]byte(args[2])); k != nil && bytes.HasPrefix(k, []byte(args[2])); k, v = c.Next() {
				if args[0] == "keys" {
					out.WriteString(string(k) + "\n")
				} else {
					out.WriteString(hex.EncodeToString(k) + " " + hex.EncodeToString(v) + "\n")
				}
			}
			return nil
		})
		if args[0] == "keys" {
			ts.Stdout().Write(out.Bytes())
		} else if err == nil {
			err = os.WriteFile(ts.MkAbs(args[3]), out.Bytes(), 0o600)
		}
	case "load":
		var raw []byte
		if raw, err = os.ReadFile(ts.MkAbs(args[2])); err != nil {
			break
		}
		err = db.Update(func(tx *bolt.Tx) error {
			for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				k, v, _ := strings.Cut(line, " ")
				kb, err := hex.DecodeString(k)
				if err != nil {
					return err
				}
				vb, err := hex.DecodeString(v)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucket).Put(kb, vb); err != nil {
					return err
				}
			}
			return nil
		})
	case "delete":
		err = db.Update(func(tx *bolt.Tx) error {
			for _, k := range args[2:] {
				if tx.Bucket(bucket).Get([]byte(k)) == nil {
					ts.Fatalf("rawstore: no key %q", k)
				}
				if err := tx.Bucket(bucket).Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
	case "delete-under":
		if len(args) != 3 {
			ts.Fatalf("usage: rawstore delete-under STORE PREFIX")
		}
		err = db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			n := 0
			for k, _ := c.Seek([]byte(args[2])); k != nil && bytes.HasPrefix(k, []byte(args[2])); k, _ = c.Seek([]byte(args[2])) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			if n == 0 {
				ts.Fatalf("rawstore: nothing under %q", args[2])
			}
			return nil
		})
	default:
		ts.Fatalf("rawstore: unknown action %q", args[0])
	}
	if err != nil {
		ts.Fatalf("rawstore: %v", err)
	}
}
