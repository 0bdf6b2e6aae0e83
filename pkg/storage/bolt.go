package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Errors of the file backend. Each is returned wrapped in an error whose text
// names the store file; test for them with errors.Is.
var (
	// ErrNoStore: the store file does not exist.
	ErrNoStore = errors.New("no store")
	// ErrStoreExists: CreateBolt found a file at the path.
	ErrStoreExists = errors.New("store already exists")
	// ErrBusy: another process held the store's lock for longer than
	// BoltOptions.LockTimeout.
	ErrBusy = errors.New("store is busy")
	// ErrCorrupt: the store's bytes are damaged. pkg/barrier uses the same
	// value for records that fail authentication, so one errors.Is covers
	// every kind of damage.
	ErrCorrupt = errors.New("store is damaged")
)

// DefaultLockTimeout is how long a transaction waits for another process's
// lock when BoltOptions.LockTimeout is zero.
const DefaultLockTimeout = 30 * time.Second

// dataBucket is the one bbolt bucket that holds every key.
var dataBucket = []byte("lessor")

// BoltOptions tunes a Bolt store.
type BoltOptions struct {
	// LockTimeout bounds the wait for another process's lock on the file;
	// zero means DefaultLockTimeout. The context passed to View or Update
	// can end the wait sooner.
	LockTimeout time.Duration
	// KeepOpen keeps the file open and mapped between transactions, but
	// never its lock (see Bolt), for a process that runs many: lessor
	// serve. Close lets go of it.
	KeepOpen bool
}

// Bolt is a Store kept in one bbolt file.
//
// Every View and Update opens the file, takes bbolt's flock (shared for
// View, exclusive for Update), runs one transaction and closes the file, so
// the lock is never held between transactions, and a caller that talks to
// PostgreSQL between two transactions blocks nobody. With KeepOpen, the
// opening an Update committed through stays open, mapped and unlocked, and
// the next transaction that finds it idle locks it again and reuses it if
// the file is provably as that commit left it (see takeKept); the lock is
// still given back after every transaction.
//
// Before bbolt reads a byte, the file's structure is checked (see
// boltcheck.go): on a damaged file bbolt can loop for ever, overflow its
// stack, allocate without bound or copy memory from outside the file into
// it, and none of this can be recovered from. The check reads the meta
// pages, the freelist and the branch pages (with pread: about 1 ms at
// 100,000 leases), and then each leaf a lookup or write reaches; a later
// transaction on a file that has not changed since, or that only this
// handle's own commit changed, reuses the branch walk.
// Panics that bbolt raises on damage it does detect, and memory faults on
// the mapped file, become errors wrapping ErrCorrupt. Check does the
// thorough, slower check.
type Bolt struct {
	path string
	opts BoltOptions

	mu     sync.Mutex // guards layout
	layout layoutCache

	hmu     sync.Mutex // guards holding and held
	holding bool
	held    *heldFile

	kmu  sync.Mutex // guards kept, writers, changed and the kept opening's state
	kept *keptFile
	// writers counts the Updates of a KeepOpen store under way (waiting or
	// running, on the kept opening or their own): Views wait for them, so
	// that overlapping Views cannot starve an Update.
	writers int
	// viewers counts the Views of a KeepOpen store under way; viewing is
	// when the first of those overlapping now began, and draining says
	// they have held the lock for shareFor: new Views wait for them.
	viewers  int
	viewing  time.Time
	draining bool
	changed  chan struct{} // closed, and replaced, when the above change

	// flocks counts the goroutines blocked in flock(2) for lock, including
	// those whose wait was given up (see lock).
	flocks sync.WaitGroup

	// Updates of this process that arrive while one commits are
	// committed together next (see Update).
	gmu    sync.Mutex
	gbusy  bool // a group is being committed
	gqueue []*groupCall
}

// heldFile is the opening of the file that View transactions share while
// the store is held (see Hold).
type heldFile struct {
	db    *bolt.DB
	f     *os.File
	l     *layout
	users int  // Views running on it
	done  bool // the hold ended while Views ran: the last one closes it
}

func (h *heldFile) close() {
	_ = closeBolt(h.db, h.f)
	h.l.close()
}

// closeBolt closes db, opened on f. If bbolt panics on the way (on a
// damaged file), f is closed all the same: it holds the flock.
func closeBolt(db *bolt.DB, f *os.File) error {
	defer func() {
		if p := recover(); p != nil {
			f.Close()
		}
	}()
	return db.Close()
}

// Hold makes the View transactions that follow share one opening of the
// file (its shared lock, its mapping, the check of its structure) until
// release is called or an Update begins, instead of each opening, locking
// and mapping it again: a command reads the store two or three times
// (the barrier's header, the token and its policies) before it writes or
// calls anything else. While the store is held, no other process can
// commit, so the caller must release it before it waits for anything
// (the network, a prompt). release may be called more than once.
func (b *Bolt) Hold() (release func()) {
	b.hmu.Lock()
	b.holding = true
	b.hmu.Unlock()
	return b.endHold
}

func (b *Bolt) endHold() {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	b.holding = false
	if h := b.held; h != nil {
		b.held = nil
		if h.users == 0 {
			h.close()
		} else {
			h.done = true
		}
	}
}

// heldView returns the shared opening of the file for a View while the
// store is held, opening it if need be, and the function that gives it
// back; nil if the store is not held.
func (b *Bolt) heldView(ctx context.Context) (*heldFile, func(broken bool), error) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if !b.holding || b.held != nil && b.held.users > 0 {
		// Not held; or a View runs on the shared opening already (one
		// nested in another, or on another goroutine): this one opens
		// the file for itself, as without a hold.
		return nil, nil, nil
	}
	if b.held == nil {
		db, f, l, err := b.open(ctx, false, false)
		if err != nil {
			return nil, nil, err
		}
		b.held = &heldFile{db: db, f: f, l: l}
	}
	h := b.held
	h.users++
	return h, func(broken bool) {
		b.hmu.Lock()
		defer b.hmu.Unlock()
		h.users--
		if broken && b.held == h {
			// Damage found through it: the next View opens afresh.
			b.held, h.done = nil, true
		}
		if h.done && h.users == 0 {
			h.close()
		}
	}, nil
}

// keptFile is the opening of the file that a KeepOpen store keeps between
// transactions: bbolt's handle on it (its mapping, and for writes its
// freelist) and the state of the file when its last transaction gave the
// lock back. Views of this process share it, under one shared lock, as
// bbolt's read transactions share a handle; an Update has it to itself.
type keptFile struct {
	db   *bolt.DB
	f    *os.File
	key  layoutKey
	born time.Time

	// Guarded by Bolt.kmu.
	readers int  // Views running on it, under its shared lock
	writer  bool // an Update has it (and is taking or holds its exclusive lock)
	retired bool // replaced or found stale while in use: the last user closes it
}

// shareFor bounds how long the Views of a KeepOpen store that overlap,
// one starting before the last ends, hold the file's shared lock: for as
// long as they do, no other process can write (flock grants a shared lock
// beside others while an exclusive one waits). After it, new Views wait
// for the running ones to end, and the lock comes free for a moment,
// which a process blocked in flock(2) for it takes.
var shareFor = 50 * time.Millisecond

// keptLifetime bounds how long an opening is kept. Its mapping keeps every
// page that its transactions touched resident, and counted in the
// process's RSS: with large folios, 2 MiB around each, so up to the whole
// file (200 MiB at 100,000 leases). The first Update after that opens the
// file afresh, which costs a fraction of a millisecond once a second.
var keptLifetime = time.Second

func (k *keptFile) close() {
	_ = closeBolt(k.db, k.f)
}

// signal wakes the transactions waiting for the kept opening or for the
// Updates under way; kmu is held.
func (b *Bolt) signal() {
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

// endView ends a View of a KeepOpen store that takeKept counted, once
// its lock is given back. The last of the Views under way ends their
// draining; those waiting are woken (they need kmu, after any other
// process blocked in flock(2) for the lock, which the kernel wakes as
// the lock comes free).
func (b *Bolt) endView() {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	b.viewers--
	if b.viewers == 0 {
		b.draining = false
		b.signal()
	}
}

// beginWrite counts an Update of a KeepOpen store until the function it
// returns is called (see writers).
func (b *Bolt) beginWrite() (end func()) {
	b.kmu.Lock()
	b.writers++
	b.kmu.Unlock()
	return func() {
		b.kmu.Lock()
		b.writers--
		b.signal()
		b.kmu.Unlock()
	}
}

// takeKept returns the kept opening with its lock taken (exclusive if
// write) and the file checked to be exactly as the kept handle last saw
// it, with the key of that state; or nil, and the caller opens the file for itself, as without
// KeepOpen: none is kept, the file has changed since (bbolt's state of it,
// the mapping's size and the freelist, can no longer be trusted), or, for
// a View, another process holds the lock (the caller's own opening waits
// for it).
//
// Views share the opening and its shared lock. While any Update of this
// process is under way (on the kept opening or, when there is none, on its
// own), Views wait for it, so that overlapping Views, which never leave
// the lock free, cannot starve it; an Update waits for the Views on the
// kept opening to finish. Both waits end with the context or the lock
// timeout, as a wait for the lock does; a View nested in another View or
// in an Update (nothing in lessor nests them) would wait that long. The
// Update then waits, as on its own opening, for another process's lock.
//
// The check is the one the layout cache relies on (layoutKeyOf): same
// inode at the store's path, size, change and modification times, and
// the same bytes in both meta pages, which every commit by any process
// rewrites.
func (b *Bolt) takeKept(ctx context.Context, write bool) (*keptFile, layoutKey, error) {
	if !b.opts.KeepOpen {
		return nil, layoutKey{}, nil
	}
	timeout := b.opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)
	var timer *time.Timer
	b.kmu.Lock()
	for {
		k := b.kept
		if !write && b.writers == 0 && !b.draining {
			defer b.kmu.Unlock()
			// Counted until endView, whichever opening it runs on.
			b.viewers++
			if b.viewers == 1 {
				b.viewing = time.Now()
			} else if time.Since(b.viewing) > shareFor {
				b.draining = true
			}
			if k == nil {
				return nil, layoutKey{}, nil
			}
			if k.readers == 0 {
				if unix.Flock(int(k.f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
					return nil, layoutKey{}, nil
				}
				if !b.keptCurrent(k) {
					b.kept = nil
					k.close() // gives the lock back
					return nil, layoutKey{}, nil
				}
			}
			k.readers++
			return k, k.key, nil
		}
		if write && k == nil {
			b.kmu.Unlock()
			return nil, layoutKey{}, nil
		}
		if write && !k.writer && k.readers == 0 {
			if time.Since(k.born) > keptLifetime {
				// Opened afresh by this Update, which the Views wait for.
				b.retire(k)
				b.kmu.Unlock()
				return nil, layoutKey{}, nil
			}
			k.writer = true
			b.kmu.Unlock()
			err := b.lock(ctx, k.f, true, time.Until(deadline))
			b.kmu.Lock()
			defer b.kmu.Unlock()
			if err == nil && b.keptCurrent(k) {
				return k, k.key, nil
			}
			k.writer = false
			b.retire(k) // closes it, and gives the lock back
			return nil, layoutKey{}, err
		}
		// Wait: a View for the Updates under way, an Update for the
		// transactions on the kept opening.
		if timer == nil {
			timer = time.NewTimer(timeout)
			defer timer.Stop()
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.kmu.Unlock()
		var why error
		select {
		case <-ch:
		case <-ctx.Done():
			why = fmt.Errorf("wait for store %s: %w", b.path, ctx.Err())
		case <-timer.C:
			why = &pathError{msg: "store " + b.path + " is busy (in use by this process)", kind: ErrBusy}
		}
		if why != nil {
			return nil, layoutKey{}, why
		}
		b.kmu.Lock()
	}
}

// keptCurrent reports whether the file at the store's path is, lock held,
// exactly as k last saw it.
func (b *Bolt) keptCurrent(k *keptFile) bool {
	key, ok := layoutKeyOf(k.f)
	return ok && key == k.key && samePath(k.f, b.path)
}

// putKept ends a transaction on k. keep false (the transaction panicked,
// found damage, or failed to commit) retires k; key, if not nil, is the
// state a committed Update left the file in. The last user of k gives its
// lock back, or closes it if it is retired.
func (b *Bolt) putKept(k *keptFile, write, keep bool, key *layoutKey) {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	if write {
		k.writer = false
	} else {
		k.readers--
	}
	if key != nil {
		k.key = *key
	}
	if !keep || b.kept != k {
		k.retired = true
		if b.kept == k {
			b.kept = nil
		}
	}
	b.signal()
	if k.writer || k.readers > 0 {
		return
	}
	if k.retired {
		k.close()
		return
	}
	if unix.Flock(int(k.f.Fd()), unix.LOCK_UN) != nil {
		b.kept = nil
		k.close()
	}
}

// keep makes the opening a write transaction has just committed through,
// whose lock is still held and whose state key records, the kept one, and
// gives the lock back; false
// if it cannot (the caller then closes the opening).
func (b *Bolt) keep(db *bolt.DB, f *os.File, key layoutKey) bool {
	if unix.Flock(int(f.Fd()), unix.LOCK_UN) != nil {
		return false
	}
	b.kmu.Lock()
	defer b.kmu.Unlock()
	if old := b.kept; old != nil {
		b.retire(old)
	}
	b.kept = &keptFile{db: db, f: f, key: key, born: time.Now()}
	return true
}

// retire lets go of the kept opening k: at once if it is idle, else when
// its last transaction ends.
func (b *Bolt) retire(k *keptFile) {
	if b.kept == k {
		b.kept = nil
	}
	k.retired = true
	b.signal()
	if !k.writer && k.readers == 0 {
		k.close()
	}
}

// Close closes the opening a KeepOpen store keeps (a transaction that runs
// on it closes it when it ends). The store stays usable: the next
// transaction opens the file again.
func (b *Bolt) Close() error {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	if k := b.kept; k != nil {
		b.retire(k)
	}
	return nil
}

// OpenBolt returns the store kept in the bbolt file at path. It checks that
// the file exists and is a regular file, but does not open it: each
// transaction does.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &pathError{msg: "no store at " + path, kind: ErrNoStore}
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open store: %s is not a regular file", path)
	}
	// Whoever may write the file may put an old copy in its place or
	// damage it; lessor creates it 0600.
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("open store: %s is writable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	return &Bolt{path: path, opts: opts}, nil
}

// CreateBolt creates a new, empty store file at path, mode 0600, creating
// missing parent directories with mode 0700. It refuses to replace an
// existing file, and to create one in a directory another user could
// change (see CheckPrivateDir).
//
// The file is built under a temporary name in the same directory and then
// hard-linked into place, so a crash never leaves a half-made store at path
// and two processes racing to create it cannot both succeed.
func CreateBolt(path string, opts BoltOptions) (*Bolt, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, &pathError{msg: "store " + path + " already exists", kind: ErrStoreExists}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	if err := CheckPrivateDir(dir); err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".new-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	f.Close()
	defer os.Remove(tmp)

	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, PageSize: newStorePageSize})
	if err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(dataBucket)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, &pathError{msg: "store " + path + " already exists", kind: ErrStoreExists}
		}
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("create store %s: %w", path, err)
	}
	return &Bolt{path: path, opts: opts}, nil
}

// Path returns the store file's path.
func (b *Bolt) Path() string { return b.path }

// View runs fn in a read-only transaction under a shared lock.
func (b *Bolt) View(ctx context.Context, fn func(Tx) error) error {
	return b.run(ctx, false, fn)
}

// Update runs fn in a read-write transaction under an exclusive lock and
// commits it, with fsync, if fn returns nil. If ctx is done by the time fn
// returns, nothing is committed and the context's error is returned.
//
// Updates that goroutines of this process start while another commits
// (a server issuing for many clients, reap's workers) wait for it and
// are then committed together: one transaction runs their functions one
// after the other, each seeing the writes of those before it, and one
// commit (two fdatasyncs) makes them all durable. A commit holds the
// file's exclusive lock for two fdatasyncs, 3 ms each on a loaded disk,
// which made every other request of `lessor serve` wait its turn. If any
// function of a group fails (or panics, or its context ends), nothing of
// the group is committed and each function runs again in a transaction
// of its own, so that each caller gets its own outcome: fn must, as on
// every backend, be safe to run more than once. An Update that finds no
// commit under way runs at once, as before.
func (b *Bolt) Update(ctx context.Context, fn func(Tx) error) error {
	c := &groupCall{ctx: ctx, fn: fn, done: make(chan error, 1)}
	b.gmu.Lock()
	b.gqueue = append(b.gqueue, c)
	lead := !b.gbusy
	b.gbusy = true
	b.gmu.Unlock()
	if !lead {
		err, left := b.await(ctx, c)
		if left {
			return err
		}
		if !errors.Is(err, errLead) {
			return b.outcome(ctx, fn, err)
		}
	}
	// c is first in the queue: commit the group it heads.
	b.commitGroup()
	return b.outcome(ctx, fn, <-c.done)
}

// await waits for the outcome of a queued call. A call still waiting in
// the queue when ctx ends or the lock timeout passes leaves it, as a
// caller waiting for the file's lock would, with left set: its function
// never ran. (An Update nested in another's function would otherwise
// wait for ever behind the group that runs it.) Once a group has taken
// the call, it waits for that group's end.
func (b *Bolt) await(ctx context.Context, c *groupCall) (err error, left bool) {
	timeout := b.opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case err := <-c.done:
		return err, false
	case <-ctx.Done():
		why = fmt.Errorf("wait for store %s: %w", b.path, ctx.Err())
	case <-timer.C:
		why = &pathError{msg: "store " + b.path + " is busy (locked by another lessor process)", kind: ErrBusy}
	}
	b.gmu.Lock()
	i := slices.Index(b.gqueue, c)
	if i < 0 {
		// A group has it (or is about to hand it the lead).
		b.gmu.Unlock()
		return <-c.done, false
	}
	b.gqueue = slices.Delete(b.gqueue, i, i+1)
	b.gmu.Unlock()
	select {
	case <-c.done:
		// The lead was handed to it just before it left: pass it on.
		b.handOver()
	default:
	}
	return why, true
}

// outcome is what Update returns for a call whose group ended with err.
func (b *Bolt) outcome(ctx context.Context, fn func(Tx) error, err error) error {
	if errors.Is(err, errRunAlone) {
		return b.run(ctx, true, fn)
	}
	return err
}

// maxGroup bounds the functions committed in one transaction.
const maxGroup = 64

// groupCall is one Update waiting to be committed with others.
type groupCall struct {
	ctx  context.Context
	fn   func(Tx) error
	done chan error // its outcome, errRunAlone, or errLead
}

var (
	// errRunAlone tells a caller of Update that its group failed and
	// that it must run its function in a transaction of its own.
	errRunAlone = errors.New("storage: run alone")
	// errLead tells a caller of Update that its call heads the queue
	// and that it commits the next group.
	errLead = errors.New("storage: lead the next group")
)

// commitGroup takes the group at the head of the queue (the caller's own
// call first, then those that queued behind it), runs it in one
// transaction, tells each call its outcome, and hands the lead to the
// next call queued, if any: no caller commits for others after its own
// group, so none waits longer than its group.
func (b *Bolt) commitGroup() {
	b.gmu.Lock()
	n := min(len(b.gqueue), maxGroup)
	group := b.gqueue[:n:n]
	b.gqueue = b.gqueue[n:]
	b.gmu.Unlock()
	defer b.handOver()
	if len(group) == 1 {
		// Alone: exactly as without groups; a panic in fn is the
		// caller's own.
		c := group[0]
		c.done <- b.run(c.ctx, true, c.fn)
		return
	}
	delivered := false
	defer func() {
		if p := recover(); p != nil && !delivered {
			// The function that panicked panics again in its own
			// caller's transaction; the others run alone.
			for _, c := range group {
				c.done <- errRunAlone
			}
		}
	}()
	err := b.run(group[0].ctx, true, func(tx Tx) error {
		for _, c := range group {
			if c.ctx.Err() != nil {
				return errRunAlone
			}
			if err := c.fn(tx); err != nil {
				return errRunAlone
			}
		}
		for _, c := range group {
			if c.ctx.Err() != nil {
				return errRunAlone
			}
		}
		return nil
	})
	delivered = true
	if err != nil {
		err = errRunAlone
	}
	for _, c := range group {
		c.done <- err
	}
}

// handOver gives the lead to the call at the head of the queue, or ends
// the commits under way if none is queued.
func (b *Bolt) handOver() {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	if len(b.gqueue) == 0 {
		b.gbusy = false
		return
	}
	b.gqueue[0].done <- errLead
}

// Check verifies the whole file: both meta pages, every page's structure
// (also the element counts and separator keys that View and Update do not
// read), and bbolt's own consistency check (every page reachable exactly
// once or free, keys in order). It reads every page, so it is for a doctor
// command, not for every run. A damaged meta page is reported here although
// transactions work around it: bbolt then falls back to the previous commit,
// which is also what a power loss in the middle of a commit looks like.
func (b *Bolt) Check(ctx context.Context) (err error) {
	db, f, l, err := b.open(ctx, false, true)
	if err != nil {
		return err
	}
	defer l.close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			f.Close()
			err = b.damaged("%v", p)
		}
	}()
	defer db.Close()
	if err := checkMetaPages(f); err != nil {
		return b.damaged("%v", err)
	}
	return db.View(func(tx *bolt.Tx) error {
		var problems []string
		for cerr := range tx.Check() {
			problems = append(problems, cerr.Error())
		}
		if len(problems) > 0 {
			return b.damaged("%s", strings.Join(problems, "; "))
		}
		return nil
	})
}

func (b *Bolt) run(ctx context.Context, write bool, fn func(Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	// bbolt reads pages through a shared mapping of the file; a page outside
	// the file faults. PanicOnFault turns that fault into a panic, which the
	// guards below turn into ErrCorrupt.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	if write && b.opts.KeepOpen {
		defer b.beginWrite()()
	}
	var db *bolt.DB
	var f *os.File
	var l *layout
	closeDB := func() error { return nil }
	if write {
		// A write needs the exclusive lock: a hold on the store ends here.
		b.endHold()
	} else if h, put, herr := b.heldView(ctx); herr != nil {
		return herr
	} else if h != nil {
		db, f, l = h.db, h.f, h.l
		defer func() { put(err != nil && errors.Is(err, ErrCorrupt)) }()
	}
	// kept: the opening is the one a KeepOpen store keeps; keepIt is set
	// once the transaction has ended in a way that leaves bbolt's state of
	// the file true (no damage found, no panic, no failed commit), and
	// newKey once a commit has changed the file.
	var kept *keptFile
	keepIt := false
	var newKey *layoutKey
	if db == nil {
		var keptKey layoutKey
		if kept, keptKey, err = b.takeKept(ctx, write); err != nil {
			return err
		}
		if !write && b.opts.KeepOpen {
			defer b.endView()
		}
		if kept != nil {
			defer func() { b.putKept(kept, write, keepIt, newKey) }()
			// takeKept has just checked that the file is in the state
			// kept.key records, and no one can have changed it since.
			b.mu.Lock()
			l, err = b.layout.checkedLayoutAt(kept.f, keptKey, true)
			b.mu.Unlock()
			if err != nil {
				return b.damaged("%v", err)
			}
			db, f = kept.db, kept.f
			defer l.close()
		}
	}
	closed := false
	if db == nil {
		db, f, l, err = b.open(ctx, write, false)
		if err != nil {
			return err
		}
		defer l.close()
		closeDB = func() error {
			if closed {
				return nil
			}
			closed = true
			return closeBolt(db, f)
		}
		defer closeDB()
	}
	t := &boltTx{b: b, write: write, l: l, size: uintptr(l.size), written: map[string]bool{}}
	// Also on a panic in fn: bbolt's Close waits for an open write
	// transaction, so it must be rolled back first.
	defer t.rollback()

	func() {
		defer t.guard(&err)
		t.tx, err = db.Begin(write)
		if err != nil {
			err = fmt.Errorf("begin transaction on store %s: %w", b.path, err)
			return
		}
		t.bkt = t.tx.Bucket(dataBucket)
		if t.bkt == nil {
			err = b.damaged("the data bucket is missing")
		}
		t.base = db.Info().Data
	}()
	if err != nil {
		t.rollback()
		return err
	}

	ferr := fn(t)
	switch {
	case t.broken != nil:
		err = t.broken
	case ferr != nil:
		err = ferr
	case !write:
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		func() {
			defer t.guard(&err)
			if cerr := t.tx.Commit(); cerr != nil {
				err = fmt.Errorf("commit to store %s: %w", b.path, cerr)
			}
			t.tx = nil
		}()
		if err != nil {
			t.rollback()
			return err
		}
		b.mu.Lock()
		key, ok := b.layout.adopt(f, l)
		b.mu.Unlock()
		switch {
		case kept != nil:
			// The file is now as this commit left it, lock still held.
			newKey, keepIt = &key, ok
		case b.opts.KeepOpen && ok && b.keep(db, f, key):
			closed = true
		}
		return closeDB()
	}
	t.rollback()
	// Nothing was written: the file is as the kept handle last saw it,
	// unless the transaction found it damaged.
	keepIt = t.broken == nil
	return err
}

// open opens the bbolt file with the lock taken (exclusive if write) and
// its structure checked. It returns the descriptor too, so that it can be
// closed, and the lock released, even if bbolt panics.
func (b *Bolt) open(ctx context.Context, write, full bool) (db *bolt.DB, f *os.File, l *layout, err error) {
	timeout := b.opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		// Never let bbolt create the file: a store deleted after OpenBolt
		// must not come back empty.
		fd, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &pathError{msg: "no store at " + b.path, kind: ErrNoStore}
		}
		if err != nil {
			// A pathError passes through bolt.Open untouched: a read-only
			// file system or a permission problem is not damage.
			return nil, &pathError{msg: "open store: " + err.Error(), kind: err}
		}
		if err := b.lock(ctx, fd, write, timeout); err != nil {
			fd.Close()
			return nil, err
		}
		// Rewrite replaces the file by rename while holding the lock on the
		// old one: a process that was waiting for that lock now holds it on
		// a file nobody will read again. Start over on the new one.
		for tries := 0; !samePath(fd, b.path); tries++ {
			fd.Close()
			if tries == 100 {
				return nil, fmt.Errorf("open store %s: the file keeps being replaced", b.path)
			}
			if fd, err = os.OpenFile(name, flag&^os.O_CREATE, perm); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil, &pathError{msg: "no store at " + b.path, kind: ErrNoStore}
				}
				return nil, &pathError{msg: "open store: " + err.Error(), kind: err}
			}
			if err := b.lock(ctx, fd, write, timeout); err != nil {
				fd.Close()
				return nil, err
			}
		}
		if full {
			l, err = mapLayout(fd, true)
		} else {
			b.mu.Lock()
			l, err = b.layout.checkedLayout(fd)
			b.mu.Unlock()
		}
		if err != nil {
			fd.Close()
			return nil, b.damaged("%v", err)
		}
		f = fd
		return fd, nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if f != nil {
				f.Close()
			}
			l.close()
			db, f, l, err = nil, nil, nil, b.damaged("%v", p)
		}
	}()
	// The lock is already held when bbolt asks for it again on the same
	// descriptor, so bbolt's own timeout never comes into play.
	db, err = bolt.Open(b.path, 0o600, &bolt.Options{
		ReadOnly: !write,
		Timeout:  time.Second,
		OpenFile: openFile,
	})
	if err != nil {
		l.close()
		var pe *pathError
		if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, nil, err
		}
		// Anything bbolt itself rejects after our checks (bad meta pages,
		// a wrong version) means the file is not a usable store.
		return nil, nil, nil, b.damaged("%v", err)
	}
	return db, f, l, nil
}

// lock takes flock on fd, waiting at most timeout, and less if ctx ends.
//
// The wait is flock(2) itself, blocked in the kernel, which wakes it as
// soon as the lock is given back: polling with LOCK_NB, as lessor did
// before, found the lock free only if a poll fell into a gap between two
// holders, and lessor serve's transactions, one after another, leave gaps
// of microseconds, so a CLI command beside a busy server waited for one
// until its lock timeout. Linux's flock is not fair (a shared lock is
// granted while an exclusive one waits), but a blocked waiter is at least
// there when the lock comes free.
//
// flock(2) cannot be interrupted, so it runs on its own goroutine, on a
// duplicate of fd (the same open file, so the same lock). A wait given up
// leaves that goroutine blocked: when it gets the lock it gives it back
// and closes the duplicate; the caller closes fd when lock fails, so the
// lock, which belongs to the open file, ends with the last of the two.
func (b *Bolt) lock(ctx context.Context, fd *os.File, exclusive bool, timeout time.Duration) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	err := unix.Flock(int(fd.Fd()), how|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("lock store %s: %w", b.path, err)
	}
	if timeout <= 0 {
		return &pathError{msg: "store " + b.path + " is busy (locked by another lessor process)", kind: ErrBusy}
	}
	dup, err := unix.FcntlInt(fd.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lock store %s: %w", b.path, err)
	}
	var abandoned atomic.Bool
	got := make(chan error, 1)
	b.flocks.Add(1)
	go func() {
		defer b.flocks.Done()
		defer unix.Close(dup)
		var err error
		for {
			if err = unix.Flock(dup, how); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err == nil && abandoned.Load() {
			unix.Flock(dup, unix.LOCK_UN)
		}
		got <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("lock store %s: %w", b.path, err)
		}
		return nil
	case <-ctx.Done():
		why = fmt.Errorf("wait for store %s: %w", b.path, ctx.Err())
	case <-timer.C:
		why = &pathError{msg: "store " + b.path + " is busy (locked by another lessor process)", kind: ErrBusy}
	}
	abandoned.Store(true)
	select {
	case err := <-got:
		// The lock came just as the wait ended: keep it after all, unless
		// the goroutine already saw the wait given up.
		if err == nil && unix.Flock(int(fd.Fd()), how|unix.LOCK_NB) == nil {
			return nil
		}
	default:
	}
	return why
}

func (b *Bolt) damaged(format string, args ...any) error {
	return &pathError{msg: "store " + b.path + " is damaged: " + fmt.Sprintf(format, args...), kind: ErrCorrupt}
}

// pathError carries a message that already names the file, and the
// sentinel it stands for.
type pathError struct {
	msg  string
	kind error
}

func (e *pathError) Error() string { return e.msg }
func (e *pathError) Unwrap() error { return e.kind }

type boltTx struct {
	b      *Bolt
	tx     *bolt.Tx
	bkt    *bolt.Bucket
	write  bool
	gen    int   // bumped by every write, so Walk knows to re-seek
	broken error // set when bbolt panicked; nothing more may run or commit

	l       *layout
	base    uintptr         // where bbolt maps the file
	size    uintptr         // the file's size when checked
	written map[string]bool // keys put in this transaction
	values  map[*byte]int   // values put in this transaction, by address
	// getCursor serves every Get of the transaction: each Get seeks it
	// afresh, from the bucket's root as it stands, which is all a new
	// cursor would do, without allocating one and growing its stack for
	// each of the tens of thousands of keys a reap reads.
	getCursor *bolt.Cursor
}

// fromFile reports whether b, a key or value that bbolt returned, lies in
// its mapping of the file. A damaged leaf could make it point anywhere in
// memory, and the backend must not copy that out; what a write transaction
// put itself lies on the heap, and is told apart by the caller. A bucket
// small enough to be stored inline in its parent's leaf was checked in full
// with that leaf, but bbolt may read it from a copy on the heap, so there
// this answers true.
func (t *boltTx) fromFile(b []byte) bool {
	if len(b) == 0 || t.l.tree == 0 {
		return true
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a >= t.base && a-t.base <= t.size && uintptr(len(b)) <= t.size-(a-t.base)
}

// checkPath checks the leaves bbolt will read for key (see
// layout.checkPath).
func (t *boltTx) checkPath(key string, siblings bool) error {
	if err := t.l.checkPath([]byte(key), siblings); err != nil {
		return t.fail("%v", err)
	}
	return nil
}

// fail reports damage found in this transaction, which may then neither
// read on nor commit.
func (t *boltTx) fail(format string, args ...any) error {
	t.broken = t.b.damaged(format, args...)
	return t.broken
}

// guard is deferred around every call into bbolt: a panic there means bbolt
// met a page it could not make sense of.
func (t *boltTx) guard(err *error) {
	if p := recover(); p != nil {
		t.broken = t.b.damaged("%v", p)
		*err = t.broken
	}
}

func (t *boltTx) rollback() {
	if t.tx == nil {
		return
	}
	defer func() { _ = recover() }()
	_ = t.tx.Rollback()
	t.tx = nil
}

func (t *boltTx) Get(key string) (v []byte, err error) {
	if t.broken != nil {
		return nil, t.broken
	}
	defer t.guard(&err)
	if err := t.checkPath(key, false); err != nil {
		return nil, err
	}
	val, found, err := t.seek(key)
	if err != nil || !found {
		return nil, err
	}
	return bytes.Clone(val), nil
}

// seek finds key with the transaction's Get cursor, which then stands on
// it, and returns its value where it lies (not copied). A cursor rather
// than Bucket.Get, which answers nil both for a missing key and for a
// nested bucket; the data bucket has no nested buckets, so meeting one
// means a damaged leaf.
func (t *boltTx) seek(key string) (val []byte, found bool, err error) {
	if t.getCursor == nil {
		t.getCursor = t.bkt.Cursor()
	}
	k, val := t.getCursor.Seek([]byte(key))
	if string(k) != key {
		return nil, false, nil
	}
	if val == nil {
		return nil, false, t.fail("key %q is marked as a bucket", key)
	}
	if !t.fromFile(val) && t.values[unsafe.SliceData(val)] != len(val) {
		return nil, false, t.fail("the value of key %q lies outside the file", key)
	}
	return val, true, nil
}

// Take implements Taker: Get and Delete with one check of the key's leaf
// and its neighbours (Delete's) and one seek of the Get cursor, which then
// deletes the element it stands on, as Bucket.Delete does after a seek of
// its own.
func (t *boltTx) Take(key string) (v []byte, err error) {
	if t.broken != nil {
		return nil, t.broken
	}
	if !t.write {
		return nil, fmt.Errorf("delete %q: %w", key, errReadOnly)
	}
	if key == "" {
		return nil, nil
	}
	defer t.guard(&err)
	if err := t.checkPath(key, true); err != nil {
		return nil, err
	}
	val, found, err := t.seek(key)
	if err != nil || !found {
		return nil, err
	}
	v = bytes.Clone(val)
	t.gen++
	if err := t.getCursor.Delete(); err != nil {
		return nil, fmt.Errorf("delete %q: %w", key, err)
	}
	return v, nil
}

func (t *boltTx) Put(key string, value []byte) (err error) {
	if t.broken != nil {
		return t.broken
	}
	if !t.write {
		return fmt.Errorf("put %q: %w", key, errReadOnly)
	}
	if key == "" {
		return errors.New("put: empty key")
	}
	defer t.guard(&err)
	if err := t.checkPath(key, true); err != nil {
		return err
	}
	t.gen++
	// bbolt keeps the slice until commit, so it must not alias the caller's.
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	if err := t.bkt.Put([]byte(key), v); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	t.written[key] = true
	if len(v) > 0 {
		if t.values == nil {
			t.values = map[*byte]int{}
		}
		t.values[unsafe.SliceData(v)] = len(v)
	}
	return nil
}

func (t *boltTx) Delete(key string) (err error) {
	if t.broken != nil {
		return t.broken
	}
	if !t.write {
		return fmt.Errorf("delete %q: %w", key, errReadOnly)
	}
	if key == "" {
		return nil
	}
	defer t.guard(&err)
	if err := t.checkPath(key, true); err != nil {
		return err
	}
	t.gen++
	if err := t.bkt.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

func (t *boltTx) List(prefix string) ([]string, error) {
	var keys []string
	err := t.Walk(prefix, func(k string) error { keys = append(keys, k); return nil })
	return keys, err
}

func (t *boltTx) Walk(prefix string, fn func(string) error) error {
	if t.broken != nil {
		return t.broken
	}
	var (
		c    *bolt.Cursor
		last []byte
		gen  = -1
	)
	// step advances the cursor under the panic guard and copies the key out
	// of the mapped file. The callback runs outside the guard, so a panic
	// in the caller's code stays the caller's.
	step := func() (key string, ok bool, err error) {
		defer t.guard(&err)
		var k, v []byte
		switch {
		case last == nil:
			c = t.bkt.Cursor()
			k, v = c.Seek([]byte(prefix))
		case gen != t.gen:
			// fn wrote to the bucket, which invalidates bbolt cursors:
			// find our place again.
			c = t.bkt.Cursor()
			k, v = c.Seek(last)
			if k != nil && bytes.Equal(k, last) {
				k, v = c.Next()
			}
		default:
			k, v = c.Next()
		}
		gen = t.gen
		if k == nil {
			return "", false, nil
		}
		if !t.fromFile(k) && (len(k) > bolt.MaxKeySize || !t.written[string(k)]) {
			return "", false, t.fail("a key after %q lies outside the file", last)
		}
		if !bytes.HasPrefix(k, []byte(prefix)) {
			return "", false, nil
		}
		if last != nil && bytes.Compare(k, last) <= 0 {
			return "", false, t.fail("keys out of order after %q", last)
		}
		if v == nil {
			return "", false, t.fail("key %q is marked as a bucket", k)
		}
		last = bytes.Clone(k)
		return string(last), true, nil
	}
	for {
		k, ok, err := step()
		if err != nil || !ok {
			return err
		}
		if err := fn(k); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
		if t.broken != nil {
			return t.broken
		}
	}
}

// samePath reports whether fd is still the file at path.
func samePath(fd *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(fd.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

const newStorePageSize = 16 << 10
