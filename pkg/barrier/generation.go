package barrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/lessorhq/lessor/pkg/storage"
)

// ErrRolledBack: the store is older than one this user has already seen,
// so it was put back from a copy.
var ErrRolledBack = errors.New("store was rolled back")

// RollbackError says how far back the store went.
type RollbackError struct {
	Path        string // the generation file; "" when this process saw the newer one
	Store, Seen uint64
}

func (e *RollbackError) Error() string {
	if e.Store == e.Seen && e.Path != "" {
		return fmt.Sprintf("store was rolled back: it is at generation %d, but another state of that generation was already committed (recorded in %s): an older copy, changed since", e.Store, e.Path)
	}
	if e.Path == "" && e.Store == e.Seen {
		return fmt.Sprintf("store was rolled back: its generation %d is not the one this process saw committed (an older copy, changed since)", e.Store)
	}
	if e.Path == "" {
		return fmt.Sprintf("store was rolled back: it is at generation %d, but this process already saw generation %d committed", e.Store, e.Seen)
	}
	return fmt.Sprintf("store was rolled back: it is at generation %d, but generation %d was already committed (recorded in %s)", e.Store, e.Seen, e.Path)
}

func (e *RollbackError) Unwrap() error { return ErrRolledBack }

// Generation is the store's generation as of this barrier's last
// transaction: the number of transactions that changed a record since the
// store was created (or got its record checksum). A store of format
// version 1 has none and reports 0.
func (b *Barrier) Generation() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen
}

// TrackGeneration detects whole-file rollback, which the file alone cannot
// show: path is a small file outside the store (in the user's own state
// directory) that holds the highest generation this user saw committed,
// and the MAC of the state record committed at it. TrackGeneration fails
// with a *RollbackError when the store is older than that, or is at that
// generation with another state record (an older copy written to since,
// up to the same number), unless accept is set (the operator restored a
// copy on purpose);
// from then on, every transaction of b that commits writes its generation
// to path. Writing it is best effort and not synced: a crash can only leave
// it behind the store, which weakens the check but never fails it.
//
// With accept and a store older than path says, nothing is written until
// AcceptGeneration: the older store is accepted only once it has been
// checked (operator verify), never by a check that failed.
//
// The file is trusted only where no other user can change it: its
// directory and those above must pass storage.CheckPrivateDir, and the
// file storage.CheckOwnFile. Another user who could write it would lower
// the number, and a store put back would pass, or raise it, and the store
// be refused. Elsewhere TrackGeneration neither reads nor writes it and
// returns an *UntrackedError.
func (b *Barrier) TrackGeneration(ctx context.Context, path string, accept bool) error {
	if err := checkGenerationDir(path); err != nil {
		return err
	}
	seen, seenTag, err := readGeneration(path)
	if err != nil {
		return &UntrackedError{Path: path, Err: err}
	}
	cur, curState := b.seenState()
	if seen > cur && !accept {
		// Another process may have committed after this one read the
		// state and before it read the file: read the state again.
		if err := b.phys.View(ctx, func(tx storage.Tx) error { return b.refreshState(tx) }); err != nil {
			return err
		}
		if cur, curState = b.seenState(); seen > cur {
			return &RollbackError{Path: path, Store: cur, Seen: seen}
		}
	}
	// The file is written only after its generation committed, and one
	// store has one state record per generation: another one is another
	// history. (A file or store without the MAC, from an earlier version,
	// is checked by the number only.)
	tag := stateTag(curState)
	forked := seen == cur && seenTag != nil && tag != nil && !bytes.Equal(seenTag, tag)
	if forked && !accept {
		return &RollbackError{Path: path, Store: cur, Seen: seen}
	}
	if accept && (seen > cur || forked) {
		b.mu.Lock()
		b.acceptPath = path
		b.mu.Unlock()
		return nil
	}
	b.mu.Lock()
	b.genPath = path
	b.mu.Unlock()
	if cur > seen {
		b.noteGeneration(cur, curState, false)
	}
	return checkGenerationFile(path)
}

// UntrackedError: the generation file can be neither read nor written (the
// user has no home directory, as a system account a service runs as may
// not), so this user would not notice a store put back from an older
// copy. TrackGeneration returns it with the barrier fully usable: the
// caller decides whether to go on, and should say so.
type UntrackedError struct {
	Path string
	Err  error
}

func (e *UntrackedError) Error() string {
	return fmt.Sprintf("cannot keep the store's generation in %s (%v), so a store put back from an older copy would not be noticed", e.Path, e.Err)
}

func (e *UntrackedError) Unwrap() error { return e.Err }

// checkGenerationDir makes the generation file's directory (0700) if it
// is missing and checks that only this user (or root) can change what it
// holds, as the directories of the store and the key file are checked
// (an XDG_STATE_HOME in a shared directory would fail here).
func checkGenerationDir(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &UntrackedError{Path: path, Err: err}
	}
	if err := storage.CheckPrivateDir(dir); err != nil {
		return &UntrackedError{Path: path, Err: err}
	}
	return nil
}

// checkGenerationFile tells whether later commits can write the
// generation file: it exists and opens for writing, or its directory
// (made by checkGenerationDir) can be written in. Writing it is best
// effort, and a failed write silently reads as 0 at the next command,
// which turns the check off: this says so once, when the barrier starts
// tracking.
func checkGenerationFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ELOOP) && !errors.Is(err, syscall.ENXIO) {
		// ELOOP, ENXIO: a link or a FIFO at the path, which a write
		// replaces.
		return &UntrackedError{Path: path, Err: err}
	}
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, 2|1); err != nil { // W_OK|X_OK
		return &UntrackedError{Path: path, Err: &fs.PathError{Op: "write in", Path: dir, Err: err}}
	}
	return nil
}

// AcceptGeneration records, after TrackGeneration with accept, the store's
// generation as the newest seen, lower though it is than the one
// recorded. A store that was not older needs nothing.
func (b *Barrier) AcceptGeneration() {
	b.mu.Lock()
	path := b.acceptPath
	b.acceptPath = ""
	if path != "" {
		b.genPath = path
	}
	cur, state := b.gen, b.genState
	b.mu.Unlock()
	if path != "" {
		b.noteGeneration(cur, state, true)
	}
}

// refreshState reads the state record again (a version 2 store) and
// remembers its generation.
func (b *Barrier) refreshState(tx storage.Tx) error {
	b.mu.Lock()
	v2, root := b.hdr.version >= 2, b.root
	b.mu.Unlock()
	if !v2 {
		return nil
	}
	raw, err := tx.Get(stateKey)
	if err != nil {
		return err
	}
	s, err := parseState(raw, root, b.storeID)
	if err != nil {
		return err
	}
	b.noteState(s.gen, raw)
	return nil
}

// readGeneration reads the generation file under a shared lock, so that
// it never catches a commit's rewrite half done (see writeGeneration):
// read as 0, a line would let this command take a rolled-back store, and
// then write the older number over the newer one. A FIFO or a link at the
// path reads as 0 at once, and is replaced by the next write. A file that
// another user owns or may write fails storage.CheckOwnFile, and is not
// read: its number, lower or higher, could be theirs.
func readGeneration(path string) (gen uint64, tag []byte, err error) {
	if path == "" {
		return 0, nil, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, nil, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, nil, nil
	}
	if err := storage.CheckOwnFile(path, fi); err != nil {
		return 0, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return 0, nil, nil
	}
	raw, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return 0, nil, nil
	}
	gen, tag = parseGeneration(raw)
	return gen, tag, nil
}

// The generation file is one line of fixed width: the generation in 20
// digits, a space, the state record's MAC at that generation in 64 hex
// digits (all zero when not known: a store upgraded from version 1 in
// that commit), a space, and the CRC-32C of what comes before it in 8 hex
// digits. Fixed width lets a commit overwrite the line in place, one
// pwrite that changes no metadata, where creating a file and renaming it
// over the old one waits on the file system's journal behind whatever
// else syncs: 1.6 ms per commit in `lessor serve` under load, on the path
// of every issue. The checksum makes a line that a reader catches half
// rewritten read as 0, never as a number higher than was written, nor as
// another MAC. Files of earlier versions hold the number and its CRC, or
// the bare number, which still read, with no MAC.
func formatGeneration(gen uint64, tag []byte) []byte {
	var t [sha256.Size]byte
	copy(t[:], tag)
	body := fmt.Sprintf("%020d %x", gen, t)
	return fmt.Appendf(nil, "%s %08x\n", body, crc32c([]byte(body)))
}

// stateTag is what the generation file keeps to tell state records of one
// generation apart: the MAC of the state record raw, nil if raw is none.
func stateTag(raw []byte) []byte {
	if len(raw) != stateLen {
		return nil
	}
	return raw[stateBodyLen:]
}

// crc32c is the CRC-32C (Castagnoli) of b, bit by bit: for the 20 bytes
// of a generation line that is a few hundred operations, where
// hash/crc32's table for this polynomial costs every command that starts
// its construction (tables for the SSE4.2 instructions, over a megabyte of
// CRC work) at package initialisation.
func crc32c(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			crc = crc>>1 ^ 0x82f63b78&-(crc&1)
		}
	}
	return ^crc
}

// parseGeneration reads a generation file's content: the generation, and
// the state record's MAC at it (nil when the line has none, or all zero).
// A file left empty or torn by a crash or a concurrent write reads as 0:
// only someone who can write the user's own files can make it so, and
// such a user has the key anyway.
func parseGeneration(raw []byte) (uint64, []byte) {
	line := strings.TrimSpace(string(raw))
	body, sum := line, ""
	if i := strings.LastIndexByte(line, ' '); i >= 0 {
		body, sum = line[:i], line[i+1:]
		want, err := strconv.ParseUint(sum, 16, 32)
		if err != nil || len(sum) != 8 || crc32c([]byte(body)) != uint32(want) {
			return 0, nil
		}
	}
	digits, hexTag, hasTag := strings.Cut(body, " ")
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, nil
	}
	if !hasTag {
		return n, nil
	}
	tag, err := hex.DecodeString(hexTag)
	if err != nil || len(tag) != sha256.Size {
		return 0, nil
	}
	if bytes.Equal(tag, make([]byte, sha256.Size)) {
		return n, nil
	}
	return n, tag
}

// noteGeneration records gen, after a commit, in the generation file,
// with the MAC of state, its state record (nil: not known). A process
// that commits from several goroutines (serve) writes each generation
// once, and not one that an earlier write already passed.
func (b *Barrier) noteGeneration(gen uint64, state []byte, force bool) {
	b.mu.Lock()
	if gen > b.gen || force && gen != b.gen {
		// A newer generation (or an accepted older one).
		b.gen, b.genState = gen, state
	}
	path := b.genPath
	b.mu.Unlock()
	if path == "" || gen == 0 {
		return
	}
	b.genMu.Lock()
	defer b.genMu.Unlock()
	if gen <= b.genWritten && !force {
		return
	}
	if writeGeneration(path, gen, stateTag(state), force) == nil {
		b.genWritten = gen
	}
}

// writeGeneration overwrites the number in the generation file in place
// when the file is one this version wrote (a regular file of the line's
// width); otherwise it writes the line to a new file and puts it at the
// path, never following a symbolic link or waiting on a FIFO.
//
// It never lowers the number unless lower is set (an older store accepted
// on purpose): two processes that commit one after the other write their
// generations in either order, and the file must keep the newer. The
// check and the write are made under an exclusive lock on the file, which
// readers share; so is the replacement of an earlier version's file. A
// new file is linked into place only where there is none, so that two
// processes creating the file at once cannot both succeed, the later
// with the lower number; the other one then writes in place.
func writeGeneration(path string, gen uint64, tag []byte, lower bool) error {
	line := formatGeneration(gen, tag)
	for range 100 {
		// O_NONBLOCK: a FIFO put at the path fails to open (no reader)
		// instead of hanging the command, and is then replaced.
		f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		var again bool
		if err == nil {
			again, err = writeGenerationLocked(f, path, line, gen, lower)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		} else {
			again, err = placeGeneration(path, line, errors.Is(err, fs.ErrNotExist))
		}
		if !again {
			return err
		}
	}
	return fmt.Errorf("write %s: the file keeps being replaced", path)
}

// writeGenerationLocked writes line to the generation file f, open at
// path, under its exclusive lock, unless it holds gen or a newer one and
// lower is not set. again: f was replaced while this waited for the lock.
func writeGenerationLocked(f *os.File, path string, line []byte, gen uint64, lower bool) (again bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		// A FIFO with a reader, a device: a file takes its place.
		return placeGeneration(path, line, false)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return false, err
	}
	if now, err := os.Lstat(path); err != nil || !os.SameFile(fi, now) {
		return true, nil
	}
	if !lower {
		cur := make([]byte, 128)
		n, _ := f.ReadAt(cur, 0)
		if g, _ := parseGeneration(cur[:n]); g >= gen {
			return false, nil
		}
	}
	if fi.Size() != int64(len(line)) {
		// An earlier version's file: replaced while this holds its lock.
		return placeGeneration(path, line, false)
	}
	_, err = f.WriteAt(line, 0)
	return false, err
}

// placeGeneration writes line to a new file and puts it at path: by a
// link when create says nothing is there (again if something is by now),
// else by renaming it over what is.
func placeGeneration(path string, line []byte, create bool) (again bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return false, err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp) // once linked or renamed, only the name goes
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if create {
		err = os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return true, nil
		}
		if err == nil {
			return false, nil
		}
		// A file system without hard links: renamed, as before.
	}
	return false, os.Rename(tmp, path)
}
