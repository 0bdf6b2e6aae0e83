package barrier

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// rawFile returns the store file's bytes.
func rawFile(t *testing.T, phys *storage.Bolt) []byte {
	t.Helper()
	data, err := os.ReadFile(phys.Path())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// plainBolt changes the store file with bbolt itself, as anyone who may
// write the file can, without any key.
func plainBolt(t *testing.T, path string, fn func(b *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte("lessor"))) }); err != nil {
		t.Fatal(err)
	}
}

// TestRekeyCutsOffTheOldKey: after a rekey, the file holds no byte of the
// old header's wrapped root key nor of the old keyring, and the old key
// opens nothing even with the old header put back into the file.
func TestRekeyCutsOffTheOldKey(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		put(t, b, fmt.Sprintf("sys/token/id/%02d", i), strings.Repeat("t", 300))
	}
	oldHeader := physGet(t, phys, "barrier/header")
	oldRing := physGet(t, phys, "barrier/keyring")
	if !bytes.Contains(rawFile(t, phys), oldHeader[59:119]) {
		t.Fatal("the scan cannot find the header it looks for")
	}

	if err := b.Rekey(ctx, otherKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := rawFile(t, phys)
	if bytes.Contains(raw, oldHeader[71:119]) {
		t.Error("the old wrapped root key is still in the file")
	}
	if bytes.Contains(raw, oldRing[1+nonceLen:]) {
		t.Error("the old keyring is still in the file")
	}
	if _, err := Open(ctx, phys, testKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old key on the rekeyed file: %v", err)
	}
	// The old header, as any backup holds it, written back into the
	// current file: it unwraps the old root key, which opens nothing.
	physPut(t, phys, "barrier/header", oldHeader)
	old, err := Open(ctx, phys, testKey(t))
	if err == nil {
		got, rerr := readAll(ctx, old)
		t.Fatalf("the old key opened the current file with the old header put back (read %d records, %v)", len(got), rerr)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("old key with the old header: %v", err)
	}
	// With the new header back, the new key reads everything.
	physPut(t, phys, "barrier/header", b.hdrRaw)
	b2, err := Open(ctx, phys, otherKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustReadAll(t, b2); len(got) != 50 {
		t.Fatalf("after rekey: %d records", len(got))
	}
}

// TestRotateReencrypt: every record moves to a new term, older terms leave
// the keyring, and neither the old keyring nor an old ciphertext is left in
// the file.
func TestRotateReencrypt(t *testing.T) {
	phys := newBolt(t, t.TempDir())
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("sys/expire/id/%03d", i), strings.Repeat(fmt.Sprint(i%10), 200)
		put(t, b, k, v)
		want[k] = v
		if i == 100 {
			if _, err := b.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	oldRing := physGet(t, phys, "barrier/keyring")
	oldRecord := physGet(t, phys, "sys/expire/id/007")
	term, err := b.RotateReencrypt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info := b.Info(); term != 3 || info.Term != 3 || len(info.Terms) != 1 {
		t.Fatalf("after re-encrypting: term %d, %+v", term, info)
	}
	raw := rawFile(t, phys)
	if bytes.Contains(raw, oldRing[1+nonceLen:]) {
		t.Error("the old keyring is still in the file")
	}
	if bytes.Contains(raw, oldRecord[recordHdrLen:]) {
		t.Error("an old ciphertext is still in the file")
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustReadAll(t, b2); len(got) != len(want) || got["sys/expire/id/150"] != want["sys/expire/id/150"] {
		t.Fatalf("after re-encrypting: %d records", len(got))
	}
	if tm, _ := recordTerm(physGet(t, phys, "sys/expire/id/007")); tm != 3 {
		t.Fatalf("record still sealed with term %d", tm)
	}
	if res, err := b2.Verify(ctx, true); err != nil || res.Records != len(want) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

// rawStore is a store as someone who may change it without the key sees
// it: the file through plain bbolt, the PostgreSQL schema through SQL (a
// database administrator).
type rawStore struct {
	phys storage.Store
	get  func(key string) []byte
	put  func(key string, value []byte)
	del  func(key string)
}

// rawBackends gives, per backend, a new empty store with its raw access.
func rawBackends() map[string]func(t *testing.T) rawStore {
	return map[string]func(t *testing.T) rawStore{
		"bolt": func(t *testing.T) rawStore {
			phys := newBolt(t, t.TempDir())
			return rawStore{
				phys: phys,
				get:  func(k string) []byte { return physGet(t, phys, k) },
				put: func(k string, v []byte) {
					plainBolt(t, phys.Path(), func(bk *bolt.Bucket) error { return bk.Put([]byte(k), v) })
				},
				del: func(k string) {
					plainBolt(t, phys.Path(), func(bk *bolt.Bucket) error { return bk.Delete([]byte(k)) })
				},
			}
		},
		"postgres": func(t *testing.T) rawStore {
			db := pgtest.Require(t).NewDatabase(t)
			p, err := storage.CreatePostgres(ctx, db.URL, storage.PostgresOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			conn := db.Conn(t)
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := conn.Exec(ctx, q, args...); err != nil {
					t.Fatal(err)
				}
			}
			return rawStore{
				phys: p,
				get: func(k string) []byte {
					var v []byte
					if err := conn.QueryRow(ctx, `SELECT value FROM lessor.kv WHERE key = $1`, []byte(k)).Scan(&v); err != nil {
						t.Fatal(err)
					}
					return v
				},
				put: func(k string, v []byte) {
					exec(`INSERT INTO lessor.kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, []byte(k), v)
				},
				del: func(k string) { exec(`DELETE FROM lessor.kv WHERE key = $1`, []byte(k)) },
			}
		},
	}
}

// TestRecordSetTampering: records deleted, put back, replaced by an older
// copy or altered behind the barrier's back (plain bbolt on the file, SQL
// on the PostgreSQL schema) are found: those under core/ and sys/policy/
// when the store is opened, any other by Verify.
func TestRecordSetTampering(t *testing.T) {
	for name, newRaw := range rawBackends() {
		t.Run(name, func(t *testing.T) { testRecordSetTampering(t, newRaw) })
	}
}

func testRecordSetTampering(t *testing.T, newRaw func(t *testing.T) rawStore) {
	setup := func(t *testing.T) (rawStore, *Barrier) {
		raw := newRaw(t)
		b, err := Init(ctx, raw.phys, testKey(t), InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		put(t, b, "core/mounts", "m", "core/audit", `{"file/":{}}`, "sys/policy/ops", `path "*" { capabilities = ["deny"] }`,
			"sys/token/id/abc", "token abc", "sys/token/accessor/xyz", "abc")
		if _, err := b.Verify(ctx, true); err != nil {
			t.Fatal(err)
		}
		return raw, b
	}
	for _, key := range []string{"core/audit", "sys/policy/ops"} {
		t.Run("delete "+key, func(t *testing.T) {
			raw, _ := setup(t)
			raw.del(key)
			_, err := Open(ctx, raw.phys, testKey(t))
			var te *TamperedError
			if !errors.As(err, &te) || !te.Core || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open after deleting %s: %v", key, err)
			}
		})
	}
	t.Run("replace core/audit with an older copy", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get("core/audit")
		put(t, b, "core/audit", `{}`)
		raw.put("core/audit", old)
		if _, err := Open(ctx, raw.phys, testKey(t)); !errors.As(err, new(*TamperedError)) {
			t.Fatalf("open after restoring core/audit: %v", err)
		}
	})
	t.Run("a token record replaced with an older ciphertext", func(t *testing.T) {
		raw, b := setup(t)
		old := raw.get("sys/token/id/abc")
		put(t, b, "sys/token/id/abc", "token abc, renewed")
		raw.put("sys/token/id/abc", old)
		b2, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		var te *TamperedError
		if _, err := b2.Verify(ctx, false); !errors.As(err, &te) {
			t.Fatalf("verify after the older ciphertext was put back: %v", err)
		}
	})
	t.Run("a token record deleted", func(t *testing.T) {
		raw, _ := setup(t)
		raw.del("sys/token/id/abc")
		b2, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		var te *TamperedError
		if _, err := b2.Verify(ctx, false); !errors.As(err, &te) {
			t.Fatalf("verify after a record was deleted: %v", err)
		}
	})
	t.Run("two records swapped", func(t *testing.T) {
		raw, _ := setup(t)
		a, c := raw.get("sys/token/id/abc"), raw.get("sys/token/accessor/xyz")
		raw.put("sys/token/id/abc", c)
		raw.put("sys/token/accessor/xyz", a)
		b2, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b2.Verify(ctx, false); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("verify after two records were swapped: %v", err)
		}
	})
	t.Run("a ciphertext byte flipped", func(t *testing.T) {
		raw, b := setup(t)
		v := raw.get("sys/token/id/abc")
		v[len(v)/2] ^= 0x01
		raw.put("sys/token/id/abc", v)
		err := b.View(ctx, func(tx storage.Tx) error { _, err := tx.Get("sys/token/id/abc"); return err })
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of a flipped record: %v", err)
		}
	})
	t.Run("revoked token copied back", func(t *testing.T) {
		raw, b := setup(t)
		id, acc := raw.get("sys/token/id/abc"), raw.get("sys/token/accessor/xyz")
		err := b.Update(ctx, func(tx storage.Tx) error {
			if err := tx.Delete("sys/token/id/abc"); err != nil {
				return err
			}
			return tx.Delete("sys/token/accessor/xyz")
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Verify(ctx, false); err != nil {
			t.Fatalf("verify after the revocation: %v", err)
		}
		raw.put("sys/token/id/abc", id)
		raw.put("sys/token/accessor/xyz", acc)
		b2, err := Open(ctx, raw.phys, testKey(t))
		if err != nil {
			t.Fatal(err) // tokens are not checked on every open, only by Verify
		}
		_, err = b2.Verify(ctx, false)
		var te *TamperedError
		if !errors.As(err, &te) || te.Core {
			t.Fatalf("verify after the token was copied back: %v", err)
		}
		// A later write does not launder it.
		put(t, b2, "sys/token/id/other", "x")
		if _, err := b2.Verify(ctx, false); !errors.As(err, &te) {
			t.Fatalf("verify after a later write: %v", err)
		}
		// Nor does a rekey: it refuses to rewrite a tampered store.
		if err := b2.Rekey(ctx, otherKey(t), InitOptions{}); !errors.As(err, &te) {
			t.Fatalf("rekey of a tampered store: %v", err)
		}
	})
	t.Run("the state record deleted", func(t *testing.T) {
		raw, _ := setup(t)
		raw.del("barrier/state")
		if _, err := Open(ctx, raw.phys, testKey(t)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("open without the state record: %v", err)
		}
	})
}

// TestGenerationDetectsRollback: a whole older copy of the store file put
// back is consistent in itself; the generation file outside it tells.
func TestGenerationDetectsRollback(t *testing.T) {
	phys, b, gen := trackedStore(t)
	put(t, b, "sys/token/id/abc", "token")
	backup := rawFile(t, phys)
	put(t, b, "sys/token/id/abc", "revoked")
	if raw, err := os.ReadFile(gen); err != nil || lineGen(raw) != 3 || len(raw) != len(formatGeneration(0, nil)) {
		t.Fatalf("generation file %q, %v", raw, err)
	}
	if fi, err := os.Stat(gen); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generation file mode: %v", err)
	}
	if err := os.WriteFile(phys.Path(), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Verify(ctx, true); err != nil {
		t.Fatalf("the old copy is consistent in itself: %v", err)
	}
	err = b2.TrackGeneration(ctx, gen, false)
	var re *RollbackError
	if !errors.As(err, &re) || !errors.Is(err, ErrRolledBack) || re.Store != 2 || re.Seen != 3 {
		t.Fatalf("rolled back store: %v", err)
	}
	// Accepting it writes nothing until the store has been checked: a
	// write in the meantime does not lower the recorded generation.
	if err := b2.TrackGeneration(ctx, gen, true); err != nil {
		t.Fatal(err)
	}
	put(t, b2, "x", "y")
	if raw, _ := os.ReadFile(gen); lineGen(raw) != 3 {
		t.Fatalf("generation file %q before the copy was accepted", raw)
	}
	// The operator restored it on purpose, and it passed verify.
	b2.AcceptGeneration()
	b3, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b3.TrackGeneration(ctx, gen, false); err != nil {
		t.Fatal(err)
	}
}

// readGen reads the generation file at path, which must be one lessor
// trusts.
func readGen(t *testing.T, path string) uint64 {
	t.Helper()
	n, _, err := readGeneration(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lineGen is the generation a generation file's content says.
func lineGen(raw []byte) uint64 {
	n, _ := parseGeneration(raw)
	return n
}

// TestGenerationFile: the generation file is rewritten in place (same
// inode) once it has this version's fixed width; a line torn by a
// concurrent writer, or damaged, reads as 0, never higher; the bare number
// of earlier versions still reads; and a symbolic link at its path is
// replaced, not followed.
func TestGenerationFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "gen")
	if err := writeGeneration(path, 7, nil, false); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeGeneration(path, 12345, nil, false); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the generation file was replaced, not rewritten in place")
	}
	if got := readGen(t, path); got != 12345 {
		t.Fatalf("read %d, want 12345", got)
	}

	a, b := formatGeneration(99, nil), formatGeneration(100, nil)
	torn := append(append([]byte{}, b[:18]...), a[18:]...) // "…10" then "9 <sum of 99>"
	for _, c := range []struct {
		raw  string
		want uint64
	}{
		{string(a), 99},
		{"42\n", 42}, // written by an earlier version
		{string(torn), 0},
		{"", 0},
		{"00000000000000000099 0000000g\n", 0},
		{"00000000000000000099\n", 99},
		{"00000000000000000099 badf8fab\n", 99}, // the previous version's line
	} {
		if got := lineGen([]byte(c.raw)); got != c.want {
			t.Errorf("parseGeneration(%q) = %d, want %d", c.raw, got, c.want)
		}
	}

	// An earlier version's file, shorter: replaced by the fixed width.
	if err := os.WriteFile(path, []byte("5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeGeneration(path, 6, nil, false); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(path); string(raw) != string(formatGeneration(6, nil)) {
		t.Fatalf("file holds %q", raw)
	}

	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, formatGeneration(1, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "state", "linked")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeGeneration(link, 8, nil, false); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(target); string(raw) != string(formatGeneration(1, nil)) {
		t.Errorf("the link's target was written: %q", raw)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() || readGen(t, link) != 8 {
		t.Errorf("the link was not replaced by the file: %v", err)
	}

	// A FIFO at the path (nobody reading it) neither hangs the write nor
	// stays.
	fifo := filepath.Join(dir, "state", "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- writeGeneration(fifo, 9, nil, false) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writing the generation hangs on a FIFO")
	}
	if fi, err := os.Lstat(fifo); err != nil || !fi.Mode().IsRegular() || readGen(t, fifo) != 9 {
		t.Errorf("the FIFO was not replaced by the file: %v", err)
	}
}

// TestGenerationNeverLowered: two processes that commit one after the
// other may write their generations in the other order; the file keeps
// the newer, or the copy of the store between the two would pass for
// current. Only accepting an older store on purpose lowers it.
func TestGenerationNeverLowered(t *testing.T) {
	dir := t.TempDir()
	phys := newBolt(t, dir)
	gen := filepath.Join(dir, "state", "gen")
	if _, err := Init(ctx, phys, testKey(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	open := func() *Barrier {
		t.Helper()
		b, err := Open(ctx, phys, testKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.TrackGeneration(ctx, gen, false); err != nil {
			t.Fatal(err)
		}
		return b
	}
	slow, fast := open(), open()
	put(t, slow, "sys/token/id/aa", "1") // commits generation 2 ...
	put(t, fast, "sys/token/id/bb", "1") // ... fast commits 3 and writes it
	// ... and slow's write of 2, late, comes last.
	slow.mu.Lock()
	slow.genWritten = 0
	slow.mu.Unlock()
	slow.noteGeneration(2, nil, false)
	if got := readGen(t, gen); got != 3 {
		t.Fatalf("generation file holds %d after a late write of 2, want 3", got)
	}
	if err := writeGeneration(gen, 2, nil, true); err != nil {
		t.Fatal(err)
	}
	if got := readGen(t, gen); got != 2 {
		t.Fatalf("generation file holds %d after accepting 2, want 2", got)
	}

	// A FIFO at the path reads as 0 at once; reading it does not hang.
	fifo := filepath.Join(dir, "state", "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan uint64, 1)
	go func() { n, _, _ := readGeneration(fifo); done <- n }()
	select {
	case got := <-done:
		if got != 0 {
			t.Fatalf("a FIFO read as %d", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading the generation hangs on a FIFO")
	}
}

// TestGenerationConcurrentNewFile: processes that commit at once while
// the generation file is missing (a user's first commands, serve and a
// cron reap) or of an earlier version's width (the first commits after
// an upgrade) used to each write a new file and rename it into place,
// with no lock and no look at what was there: the last rename won, and
// it was often not the newest number.
func TestGenerationConcurrentNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gen")
	const writers = 6
	for round := range 200 {
		if round%2 == 0 {
			os.Remove(path)
		} else if err := os.WriteFile(path, []byte("00000000000000000001 beb08cab\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, writers)
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs <- writeGeneration(path, uint64(2+g), nil, false)
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := readGen(t, path); got != 1+writers {
			t.Fatalf("round %d: the file holds generation %d after concurrent writes of 2 to %d", round, got, 1+writers)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".gen.tmp-*")); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
}

// TestGenerationUntracked: a generation file that cannot be kept (its
// directory cannot be made: no home directory) turns the rollback check
// off, since a missing file reads as 0; TrackGeneration says so, with the
// barrier usable all the same, and says nothing when the file can be kept.
func TestGenerationUntracked(t *testing.T) {
	dir := t.TempDir()
	phys := newBolt(t, dir)
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(notDir, "lessor", "generation", "id")
	err = b.TrackGeneration(ctx, gen, false)
	var ue *UntrackedError
	if !errors.As(err, &ue) || ue.Path != gen || !strings.Contains(err.Error(), "would not be noticed") {
		t.Fatalf("TrackGeneration with no place for the file: %v", err)
	}
	put(t, b, "x", "y") // still usable

	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.TrackGeneration(ctx, filepath.Join(dir, "state", "gen"), false); err != nil {
		t.Fatalf("TrackGeneration with a place for the file: %v", err)
	}
}

// TestGenerationFileOthersCanChange: a generation file in a place another
// user can change (XDG_STATE_HOME in a shared directory, or a file left
// writable by others) is not trusted. Such a user could lower the number
// to let an old copy of the store in, as here, or raise it to have the
// current store refused; lessor used to read and write it as its own.
func TestGenerationFileOthersCanChange(t *testing.T) {
	dir := t.TempDir()
	phys := newBolt(t, dir)
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(shared, "lessor", "generation", "id")
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.TrackGeneration(ctx, gen, false); err != nil {
		t.Fatal(err)
	}
	backup := rawFile(t, phys)
	put(t, b, "sys/token/id/ab", "revoked")
	if err := os.WriteFile(phys.Path(), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	// The directory becomes one others can write (chmod 1777 without the
	// sticky bit, a group-writable shared home), and one of them writes
	// the number of the copy they put back.
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gen, formatGeneration(1, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	err = b2.TrackGeneration(ctx, gen, false)
	var ue *UntrackedError
	var de *storage.UnsafeDirError
	if !errors.As(err, &ue) || !errors.As(err, &de) || de.Dir != shared {
		t.Fatalf("generation file in a directory others can write: %v", err)
	}
	put(t, b2, "x", "y")
	if raw, _ := os.ReadFile(gen); lineGen(raw) != 1 {
		t.Errorf("lessor wrote %q to a generation file others can change", raw)
	}

	// A private directory, but a file others can write.
	if err := os.Chmod(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(gen, 0o622); err != nil {
		t.Fatal(err)
	}
	b3, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	err = b3.TrackGeneration(ctx, gen, false)
	var fe *storage.UnsafeFileError
	if !errors.As(err, &ue) || !errors.As(err, &fe) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("generation file others can write: %v", err)
	}
}

// TestGenerationSameNumberOtherState: an old copy of the store put back
// and then written to (by a host or a user whose generation file is
// behind, or none) up to the generation this user recorded is another
// state of that generation. A new command used to take it, as the
// generation file held only the number; it now holds the state record's
// MAC too. Accepting the copy on purpose still works, and the store it
// accepted passes afterwards.
func TestGenerationSameNumberOtherState(t *testing.T) {
	phys, b, gen := trackedStore(t)
	put(t, b, "sys/token/id/ab", "token")
	backup := rawFile(t, phys)
	put(t, b, "sys/token/id/ab", "revoked") // generation 3, recorded
	if err := os.WriteFile(phys.Path(), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	// Someone who does not track this user's file writes once: the copy
	// is at generation 3 again, with the token not revoked.
	other, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	put(t, other, "sys/token/id/cd", "another")
	if other.Generation() != 3 {
		t.Fatalf("the copy is at generation %d, want 3", other.Generation())
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	err = b2.TrackGeneration(ctx, gen, false)
	var re *RollbackError
	if !errors.As(err, &re) || re.Store != 3 || re.Seen != 3 || re.Path != gen ||
		!strings.Contains(err.Error(), "another state of that generation was already committed (recorded in "+gen+")") {
		t.Fatalf("another state of the recorded generation: %v", err)
	}

	// Accepted on purpose (operator verify -accept-rollback), it becomes
	// the state recorded.
	if err := b2.TrackGeneration(ctx, gen, true); err != nil {
		t.Fatal(err)
	}
	b2.AcceptGeneration()
	b3, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b3.TrackGeneration(ctx, gen, false); err != nil {
		t.Fatalf("the accepted store: %v", err)
	}
	put(t, b3, "x", "y")
	b4, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b4.TrackGeneration(ctx, gen, false); err != nil {
		t.Fatalf("the store after a write: %v", err)
	}
	if raw, _ := os.ReadFile(gen); lineGen(raw) != 4 {
		t.Fatalf("generation file %q, want generation 4", raw)
	}
}

// TestRotateIsANewGeneration: the store from before a rotation, put back,
// is refused as rolled back, not taken with the rotation undone (and new
// records sealed with the older data key).
func TestRotateIsANewGeneration(t *testing.T) {
	phys, b, gen := trackedStore(t)
	put(t, b, "sys/token/id/ab", "token")
	backup := rawFile(t, phys)
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(phys.Path(), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(ctx, phys, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if info := b2.Info(); info.Term != 1 {
		t.Fatalf("the copy is not from before the rotation: %+v", info)
	}
	if err := b2.TrackGeneration(ctx, gen, false); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("the store from before the rotation, put back: %v", err)
	}
	// The rotating process itself refuses it too, in its next transaction.
	if err := b.Update(ctx, func(tx storage.Tx) error { return tx.Put("x", []byte("y")) }); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("the rotating barrier wrote to the store from before: %v", err)
	}
}

// TestCRC32C holds the bitwise CRC of generation lines to hash/crc32's
// Castagnoli table, so that lines written by either read with the other.
func TestCRC32C(t *testing.T) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, s := range []string{"", "a", "123456789", "00000000000000000024", "18446744073709551615", strings.Repeat("\xff", 64)} {
		if got, want := crc32c([]byte(s)), crc32.Checksum([]byte(s), table); got != want {
			t.Errorf("crc32c(%q) = %08x, want %08x", s, got, want)
		}
	}
	// The check value of the CRC-32C catalogue.
	if got := crc32c([]byte("123456789")); got != 0xe3069283 {
		t.Errorf("crc32c(123456789) = %08x, want e3069283", got)
	}
}

// trackedStore makes a store in a test directory, its generation tracked
// in a file under it (gen).
func trackedStore(t *testing.T) (phys *storage.Bolt, b *Barrier, gen string) {
	t.Helper()
	dir := t.TempDir()
	phys = newBolt(t, dir)
	gen = filepath.Join(dir, "state", "gen")
	b, err := Init(ctx, phys, testKey(t), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.TrackGeneration(ctx, gen, false); err != nil {
		t.Fatal(err)
	}
	return phys, b, gen
}
