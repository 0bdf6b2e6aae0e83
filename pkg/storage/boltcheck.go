package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// This file checks the structure of a bbolt file before bbolt reads it.
//
// bbolt trusts its pages. On a damaged file it can
//   - recurse for ever down a branch page that points at one of its own
//     ancestors (a fatal stack overflow, etcd-io/bbolt#701),
//   - loop for ever when a cursor walks such a cycle,
//   - allocate a freelist as large as a damaged count says (a fatal out of
//     memory), or
//   - hand out a live page as free on the next commit, and so overwrite data.
// None of these can be recovered from, so they are ruled out here, under the
// lock and before bbolt maps the file: the meta page bbolt will use, the
// freelist it will load, and the tree reachable from that meta.
//
// Every transaction runs the quick check (or reuses it, see layoutCache),
// which reads the meta pages, the freelist and the branch pages, about one
// page in fifty, so that its cost grows slowly with the store. bbolt keeps
// every leaf of a tree at the same depth; the quick check learns that
// depth from the leftmost path and only claims the pages that branch pages
// name at it, without reading them: claimed twice, free, or out of range
// is damage, and a pointer that was bent towards any branch page (the only
// way to a cycle) is one of those.
//
// bbolt also trusts a leaf's element sizes and positions: a damaged one
// makes it read, and on commit copy into the file, memory far outside the
// page. So a leaf is checked in full when a transaction first reaches it
// (checkPath): before a lookup, a write or a delete the backend descends the
// branch pages as bbolt will and checks the leaf it lands on, and for a
// write also the leaf's neighbours, which bbolt may merge it with. A walk
// steps through leaves unchecked, but every key it returns must lie within
// the file (boltTx.fromFile), so damage there yields wrong keys, which a
// lookup then reports, never memory from outside the file.
//
// Check runs the full check, which reads every leaf, and bbolt's own
// consistency check, for a doctor command.
//
// The layout follows bbolt's on-disk format version 2, in the machine's byte
// order (bbolt writes its structs from memory as they are).

const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16
	elementSize     = 16 // both branch and leaf elements
	bucketHeaderLen = 16
	noFreelist      = ^uint64(0)
	maxTreeDepth    = 32

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10

	leafFlagBucket = 0x01
)

var ne = binary.NativeEndian

type boltMeta struct {
	pageSize uint32
	root     uint64 // root page of the root bucket
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
	valid    bool
}

// readMeta parses the meta page that starts at b[0].
func readMeta(b []byte) boltMeta {
	if len(b) < 80 {
		return boltMeta{}
	}
	m := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:56])
	return boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
		valid: ne.Uint32(m[0:]) == boltMagic && ne.Uint32(m[4:]) == boltVersion &&
			ne.Uint64(m[56:]) == h.Sum64(),
	}
}

// mapLayout checks the structure of f that bbolt will rely on; full
// selects the full check. The layout keeps f, so that the leaves a
// transaction touches can be checked as it goes (see checkPath).
//
// Pages are read with pread, not through a mapping: on kernels that cache
// files in large folios, touching one page of a mapping maps up to 2 MiB
// around it, so the quick check's scattered branch pages mapped the whole
// file (a 180 MB store put 180 MB in every command's RSS, and unmapping it
// cost milliseconds per transaction).
func mapLayout(f *os.File, full bool) (*layout, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < 4*1024 {
		return nil, fmt.Errorf("file is too short to be a store (%d bytes)", size)
	}
	return checkLayout(f, uint64(size), full)
}

// close lets go of the file; the layout does not own it.
func (l *layout) close() {
	if l != nil {
		l.f = nil
	}
}

// read returns n bytes of the file at off, or an error wrapping the
// short read.
func (l *layout) read(off, n uint64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := l.f.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, err)
	}
	return b, nil
}

// layoutCache keeps the last quick check of a store file, so that the
// many short transactions of one command do not each read every branch
// page again (at 100,000 leases that was some 3 ms a transaction, a dozen
// times per command). It is reused only while the file provably has not
// changed: same device and inode, size, change and modification times
// (which any write(2) moves, with fine-grained timestamps once they have
// been read), and the same bytes in both meta pages (which every bbolt
// commit rewrites). The handle's own commits refill it (adopt), so that a
// command that writes twice still walks the branch pages once. Leaves are
// still checked afresh in every transaction.
type layoutCache struct {
	key layoutKey
	l   *layout
}

type layoutKey struct {
	dev, ino     uint64
	size         int64
	ctime, mtime unix.Timespec
	meta         [2][80]byte
}

// layoutKeyOf identifies the state of f; ok is false when it cannot, and
// then nothing is cached.
func layoutKeyOf(f *os.File) (k layoutKey, ok bool) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return k, false
	}
	k.dev, k.ino, k.size, k.ctime, k.mtime = uint64(st.Dev), st.Ino, st.Size, st.Ctim, st.Mtim
	if _, err := f.ReadAt(k.meta[0][:], 0); err != nil {
		return k, false
	}
	m := readMeta(k.meta[0][:])
	if !m.valid {
		return k, false
	}
	if _, err := f.ReadAt(k.meta[1][:], int64(m.pageSize)); err != nil {
		return k, false
	}
	return k, true
}

// checkedLayout returns the quick check of f, from c when f has not
// changed since c was filled, and refills c otherwise.
func (c *layoutCache) checkedLayout(f *os.File) (*layout, error) {
	k, ok := layoutKeyOf(f)
	return c.checkedLayoutAt(f, k, ok)
}

// checkedLayoutAt is checkedLayout for a caller that has just read f's
// key, with the lock held since.
func (c *layoutCache) checkedLayoutAt(f *os.File, k layoutKey, ok bool) (*layout, error) {
	if ok && c.l != nil && c.key == k {
		l := *c.l
		l.f, l.checked, l.branches = f, map[uint64]bool{}, map[uint64][]byte{}
		return &l, nil
	}
	l, err := mapLayout(f, false)
	if err != nil || !ok {
		c.l = nil
		return l, err
	}
	keep := *l
	keep.f, keep.checked, keep.branches, keep.scratch = nil, nil, nil, nil
	keep.free, keep.used = nil, nil // only the walk itself needs them
	c.key, c.l = k, &keep
	return l, nil
}

// adopt fills c with the state that this process's own commit has just
// left in f, while the lock it took for that commit is still held, so that
// the command's next transaction need not walk the branch pages again.
// prev is the layout the committing transaction was checked against.
//
// bbolt built that state from pages this transaction checked or wrote
// itself: untouched subtrees keep their (claimed) pages, the freelist is
// the checked one plus what the commit freed, and every new page came from
// bbolt's memory. So the structure the quick check proves still holds, and
// what must be learnt afresh is only where things now are: the page size
// and high-water mark, the data tree's root and the depth of its leaves.
// Anything unexpected leaves c empty, and the next transaction walks the
// branch pages again.
//
// It returns the key of the state f is in, which the caller may keep as
// its own record of it (ok false if it could not be read).
func (c *layoutCache) adopt(f *os.File, prev *layout) (k layoutKey, ok bool) {
	c.l = nil
	k, ok = layoutKeyOf(f)
	if !ok || prev == nil || prev.full {
		return k, ok
	}
	ps := prev.ps
	m, err := pickMeta(readMeta(k.meta[0][:]), readMeta(k.meta[1][:]), ps, uint64(k.size))
	if err != nil {
		return
	}
	l := &layout{f: f, size: uint64(k.size), ps: ps, hwm: m.pgid, branches: map[uint64][]byte{}}
	tree, err := l.dataTree(m.root)
	if err != nil {
		return
	}
	if tree != 0 {
		if l.leafLevel, err = l.findLeafLevel(tree); err != nil {
			return
		}
	}
	l.tree, l.f, l.branches = tree, nil, nil
	c.key, c.l = k, l
	return k, ok
}

// dataTree returns the root page of the data bucket's tree (0 when the
// bucket is inline), found in the root bucket's tree, which must be a
// single leaf, as it is while a store has a handful of buckets.
func (l *layout) dataTree(root uint64) (uint64, error) {
	flags, count, span, err := l.header(root)
	if err != nil {
		return 0, err
	}
	if flags != flagLeaf {
		return 0, fmt.Errorf("root bucket page %d is not a leaf", root)
	}
	if err := checkElements(span, count); err != nil {
		return 0, fmt.Errorf("page %d: %w", root, err)
	}
	for i := range uint64(count) {
		e := pageHeaderSize + elementSize*i
		pos := e + uint64(ne.Uint32(span[e+4:]))
		ksize, vsize := uint64(ne.Uint32(span[e+8:])), uint64(ne.Uint32(span[e+12:]))
		if ne.Uint32(span[e:])&leafFlagBucket == 0 || !bytes.Equal(span[pos:pos+ksize], dataBucket) {
			continue
		}
		if vsize < bucketHeaderLen {
			return 0, fmt.Errorf("page %d: bucket header is %d bytes", root, vsize)
		}
		return ne.Uint64(span[pos+ksize:]), nil
	}
	return 0, fmt.Errorf("page %d: no data bucket", root)
}

// checkMetaPages reports a damaged meta page, which bbolt silently works
// around by falling back to the other one.
func checkMetaPages(f *os.File) error {
	var buf [80]byte
	if _, err := f.ReadAt(buf[:], 0); err != nil {
		return fmt.Errorf("read meta page 0: %w", err)
	}
	m0 := readMeta(buf[:])
	if !m0.valid {
		return errors.New("meta page 0 is invalid")
	}
	if _, err := f.ReadAt(buf[:], int64(m0.pageSize)); err != nil {
		return fmt.Errorf("read meta page 1: %w", err)
	}
	if !readMeta(buf[:]).valid {
		return errors.New("meta page 1 is invalid")
	}
	return nil
}

type layout struct {
	f    io.ReaderAt
	size uint64 // the file's size when checked
	ps   uint64
	hwm  uint64
	free []bool
	used []bool
	full bool

	// The data bucket's tree (tree 0: the bucket is inline in its parent
	// leaf, and was checked with it), the level of its leaves, and the
	// leaves checked so far.
	tree      uint64
	leafLevel int
	checked   map[uint64]bool
	// branches keeps the branch pages read above the parents of leaves,
	// because every lookup and write descends through them again.
	branches map[uint64][]byte
	scratch  []byte // see page
}

func checkLayout(f io.ReaderAt, size uint64, full bool) (*layout, error) {
	l := &layout{f: f, size: size, full: full, checked: map[uint64]bool{}, branches: map[uint64][]byte{}}
	// readMetaAt reads the meta page at off; a page that cannot be read is
	// an invalid one.
	readMetaAt := func(off uint64) boltMeta {
		if off+80 > size {
			return boltMeta{}
		}
		b, err := l.read(off, 80)
		if err != nil {
			return boltMeta{}
		}
		return readMeta(b)
	}
	// Find the page size as bbolt does: from meta page 0 if it is valid,
	// else from a valid meta page 1 at any power-of-two offset.
	m0 := readMetaAt(0)
	ps := uint64(m0.pageSize)
	if !m0.valid {
		ps = 0
		for i := 0; i <= 14; i++ {
			pos := uint64(1024) << i
			if pos >= size-1024 {
				break
			}
			if m := readMetaAt(pos); m.valid {
				ps = uint64(m.pageSize)
				break
			}
		}
		if ps == 0 {
			return nil, errors.New("both meta pages are invalid")
		}
	}
	if ps < 1024 || ps > 1<<20 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("page size %d is not plausible", ps)
	}
	if size < 4*ps {
		return nil, fmt.Errorf("file is too short to be a store (%d bytes)", size)
	}

	m, err := pickMeta(readMetaAt(0), readMetaAt(ps), ps, size)
	if err != nil {
		return nil, err
	}

	l.ps, l.hwm, l.free, l.used = ps, m.pgid, make([]bool, m.pgid), make([]bool, m.pgid)
	l.used[0], l.used[1] = true, true
	if m.freelist != noFreelist {
		if err := l.checkFreelist(m.freelist); err != nil {
			return nil, err
		}
	}
	if err := l.walk(m.root, 0, -1, true, nil, nil); err != nil {
		return nil, err
	}
	return l, nil
}

// pickMeta picks the meta page bbolt will pick, the higher transaction id
// if that page is valid, else the other, and checks it against the page
// size and the file's size.
func pickMeta(m0, m1 boltMeta, ps, size uint64) (boltMeta, error) {
	a, b := m0, m1
	if m1.txid > m0.txid {
		a, b = m1, m0
	}
	m := a
	if !a.valid {
		m = b
	}
	if !m.valid {
		return m, errors.New("both meta pages are invalid")
	}
	if uint64(m.pageSize) != ps {
		return m, fmt.Errorf("meta page gives page size %d, expected %d", m.pageSize, ps)
	}
	if m.pgid < 4 || m.pgid > size/ps {
		return m, fmt.Errorf("high-water mark %d is outside the file (%d pages)", m.pgid, size/ps)
	}
	return m, nil
}

// header reads the page header of page id, checking that the page, with its
// overflow pages, lies below the high-water mark and says it is page id.
func (l *layout) header(id uint64) (flags, count uint16, span []byte, err error) {
	return l.page(id, true)
}

// page is header; keep says whether a branch page is kept for later
// descents. A page not kept is read into a buffer that the next such read
// reuses: the quick check reads every parent of a leaf once and never
// again (a later lookup reads the one it needs afresh), and keeping them
// all cost a megabyte of garbage per 10,000 leases; leaves are read once
// each, to be checked.
func (l *layout) page(id uint64, keep bool) (flags, count uint16, span []byte, err error) {
	if id < 2 || id >= l.hwm {
		return 0, 0, nil, fmt.Errorf("page %d is out of range (high-water mark %d)", id, l.hwm)
	}
	if p, ok := l.branches[id]; ok {
		return flagBranch, ne.Uint16(p[10:]), p, nil
	}
	var p []byte
	if keep {
		p, err = l.read(id*l.ps, l.ps)
	} else {
		if uint64(len(l.scratch)) != l.ps {
			l.scratch = make([]byte, l.ps)
		}
		p = l.scratch
		if _, err = l.f.ReadAt(p, int64(id*l.ps)); err != nil {
			err = fmt.Errorf("read %d bytes at %d: %w", l.ps, id*l.ps, err)
		}
	}
	if err != nil {
		return 0, 0, nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := ne.Uint64(p[0:]); got != id {
		return 0, 0, nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	flags, count = ne.Uint16(p[8:]), ne.Uint16(p[10:])
	overflow := uint64(ne.Uint32(p[12:]))
	if overflow >= l.hwm-id {
		return 0, 0, nil, fmt.Errorf("page %d overflows past the high-water mark", id)
	}
	if overflow > 0 {
		if p, err = l.read(id*l.ps, (1+overflow)*l.ps); err != nil {
			return 0, 0, nil, fmt.Errorf("page %d: %w", id, err)
		}
	}
	if flags == flagBranch && keep {
		l.branches[id] = p
	}
	return flags, count, p, nil
}

// claim marks the pages of a span as in use, refusing a page that is free
// or already in use: either means two owners, and the next commit would
// overwrite one of them.
func (l *layout) claim(id uint64, span []byte) error {
	for i := id; i < id+uint64(len(span))/l.ps; i++ {
		if err := l.claimPage(i); err != nil {
			return err
		}
	}
	return nil
}

func (l *layout) claimPage(i uint64) error {
	if l.free[i] {
		return fmt.Errorf("page %d is both in use and on the freelist", i)
	}
	if l.used[i] {
		return fmt.Errorf("page %d is reached twice", i)
	}
	l.used[i] = true
	return nil
}

func (l *layout) checkFreelist(id uint64) error {
	flags, count, span, err := l.header(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != flagFreelist {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	if err := l.claim(id, span); err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	ids := span[pageHeaderSize:]
	n := uint64(count)
	if count == 0xFFFF {
		n = ne.Uint64(ids)
		ids = ids[8:]
	}
	if n > uint64(len(ids))/8 {
		return fmt.Errorf("freelist page %d claims %d entries but has room for %d", id, n, len(ids)/8)
	}
	for i := uint64(0); i < n; i++ {
		f := ne.Uint64(ids[8*i:])
		if f < 2 || f >= l.hwm {
			return fmt.Errorf("freelist lists page %d, outside the file", f)
		}
		if l.free[f] {
			return fmt.Errorf("freelist lists page %d twice", f)
		}
		if l.used[f] {
			return fmt.Errorf("freelist lists its own page %d", f)
		}
		l.free[f] = true
	}
	return nil
}

// walk checks the tree rooted at page id, which is at the given level
// below the tree's root. Pages at leafLevel are claimed but not read; a
// negative leafLevel reads every page. In the root bucket's tree (buckets
// true) leaves are read in full, to find the buckets' own trees.
//
// Every key of a page must lie in [lo, hi) (nil: unbounded), the range its
// parent's branch element promises, as bbolt's own Check demands. A damaged
// branch key would otherwise send lookups to the wrong leaf, where a key
// that exists is silently not found.
func (l *layout) walk(id uint64, level, leafLevel int, buckets bool, lo, hi []byte) error {
	if level > maxTreeDepth {
		return fmt.Errorf("tree is deeper than %d pages at page %d", maxTreeDepth, id)
	}
	if level == leafLevel {
		if id < 2 || id >= l.hwm {
			return fmt.Errorf("page %d is out of range (high-water mark %d)", id, l.hwm)
		}
		return l.claimPage(id)
	}
	flags, count, span, err := l.page(id, level+1 != leafLevel)
	if err != nil {
		return err
	}
	if err := l.claim(id, span); err != nil {
		return err
	}
	if flags != flagBranch && flags != flagLeaf {
		return fmt.Errorf("page %d has type %#x where a tree page belongs", id, flags)
	}
	if err := checkElements(span, count); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if count == 0 {
		if flags == flagBranch {
			return fmt.Errorf("branch page %d is empty", id)
		}
		return nil
	}
	if l.full {
		first, err := elementKey(span, flags, 0)
		if err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		last, err := elementKey(span, flags, uint64(count)-1)
		if err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		if bytes.Compare(first, lo) < 0 || hi != nil && bytes.Compare(last, hi) >= 0 {
			return fmt.Errorf("page %d holds keys outside the range its parent gives it", id)
		}
	}
	if flags == flagLeaf {
		if !buckets {
			return nil
		}
		return l.checkBucketLeaf(fmt.Sprintf("leaf page %d", id), span, count)
	}
	// The quick check does not compare keys: a misplaced key makes
	// lookups miss, but cannot make bbolt loop or crash.
	var key, next []byte
	for i := range uint64(count) {
		if l.full {
			if key, err = elementKey(span, flags, i); err != nil {
				return fmt.Errorf("page %d: %w", id, err)
			}
			next = hi
			if i+1 < uint64(count) {
				if next, err = elementKey(span, flags, i+1); err != nil {
					return fmt.Errorf("page %d: %w", id, err)
				}
				if bytes.Compare(key, next) >= 0 {
					return fmt.Errorf("branch page %d has keys out of order", id)
				}
			}
		}
		child := ne.Uint64(span[pageHeaderSize+elementSize*i+8:])
		if level+1 == leafLevel {
			// The hot loop of the quick check: one per leaf.
			if child < 2 || child >= l.hwm {
				return fmt.Errorf("page %d is out of range (high-water mark %d)", child, l.hwm)
			}
			if err := l.claimPage(child); err != nil {
				return err
			}
			continue
		}
		if err := l.walk(child, level+1, leafLevel, buckets, key, next); err != nil {
			return err
		}
	}
	return nil
}

// findLeafLevel follows the first child of each branch page from root down to
// a leaf and returns how many levels down it is. The walk that follows
// checks every page it relies on.
func (l *layout) findLeafLevel(root uint64) (int, error) {
	id := root
	seen := map[uint64]bool{}
	for level := 0; level <= maxTreeDepth; level++ {
		if seen[id] {
			return 0, fmt.Errorf("page %d is reached twice", id)
		}
		seen[id] = true
		flags, count, span, err := l.header(id)
		if err != nil {
			return 0, err
		}
		if flags != flagBranch || count == 0 {
			return level, nil
		}
		id = ne.Uint64(span[pageHeaderSize+8:])
	}
	return 0, fmt.Errorf("tree below page %d is deeper than %d pages", root, maxTreeDepth)
}

// checkPath checks, in full, the leaf of the data tree that key belongs in,
// and with siblings also its neighbours under the same parent, which bbolt
// may merge it with when a transaction deletes from it. The quick check did
// not read leaves, and bbolt trusts a leaf's element sizes: a damaged one
// could make it read, and on commit copy into the file, memory far outside
// the page. So every leaf that a lookup, a write or a delete reaches is
// checked first, at the cost of one descent through branch pages.
func (l *layout) checkPath(key []byte, siblings bool) error {
	if l.tree == 0 || l.full {
		return nil // an inline bucket, or every leaf is checked already
	}
	id, lo, hi := l.tree, []byte(nil), []byte(nil)
	var parent, parentHi []byte
	var index, count uint64
	for level := 0; level < l.leafLevel; level++ {
		flags, n, span, err := l.header(id)
		if err != nil {
			return err
		}
		if flags != flagBranch {
			break // a leaf above the usual level; checkLeaf reads it
		}
		// The child bbolt's cursor picks: the last element whose key is
		// not above key, or the first.
		i := uint64(sort.Search(int(n), func(i int) bool {
			k, _ := elementKey(span, flags, uint64(i))
			return bytes.Compare(k, key) > 0
		}))
		if i > 0 {
			i--
		}
		parent, parentHi, index, count = span, hi, i, uint64(n)
		lo, hi = l.bounds(span, i, count, hi)
		id = ne.Uint64(span[pageHeaderSize+elementSize*i+8:])
	}
	if err := l.checkLeaf(id, lo, hi); err != nil {
		return err
	}
	if !siblings || parent == nil {
		return nil
	}
	for _, j := range []uint64{index - 1, index + 1} {
		if j >= count { // also catches index-1 below zero
			continue
		}
		slo, shi := l.bounds(parent, j, count, parentHi)
		if err := l.checkLeaf(ne.Uint64(parent[pageHeaderSize+elementSize*j+8:]), slo, shi); err != nil {
			return err
		}
	}
	return nil
}

// bounds returns the key range that element i of a branch page gives its
// child: from its own key to the next element's, or to the page's own upper
// bound for the last element.
func (l *layout) bounds(span []byte, i, count uint64, hi []byte) ([]byte, []byte) {
	lo, _ := elementKey(span, flagBranch, i)
	if i+1 < count {
		hi, _ = elementKey(span, flagBranch, i+1)
	}
	return lo, hi
}

// checkLeaf checks a leaf page in full: its header, that its elements and
// their data fit, and that its keys are in order and within [lo, hi).
func (l *layout) checkLeaf(id uint64, lo, hi []byte) error {
	if l.checked[id] {
		return nil
	}
	// Not kept: once checked, a leaf is left to bbolt.
	flags, count, span, err := l.page(id, false)
	if err != nil {
		return err
	}
	if flags != flagLeaf {
		return fmt.Errorf("page %d has type %#x where a leaf belongs", id, flags)
	}
	if err := checkElements(span, count); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	prev := lo
	for i := range uint64(count) {
		k, err := elementKey(span, flags, i)
		if err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		if bytes.Compare(k, prev) < 0 || i > 0 && bytes.Equal(k, prev) {
			return fmt.Errorf("page %d has keys out of order or outside the range its parent gives it", id)
		}
		prev = k
	}
	if count > 0 && hi != nil && bytes.Compare(prev, hi) >= 0 {
		return fmt.Errorf("page %d has keys out of order or outside the range its parent gives it", id)
	}
	l.checked[id] = true
	return nil
}

// elementKey returns the key of element i of a branch or leaf page.
func elementKey(page []byte, flags uint16, i uint64) ([]byte, error) {
	e := pageHeaderSize + elementSize*i
	pos, ksize := ne.Uint32(page[e+4:]), ne.Uint32(page[e+8:])
	if flags == flagBranch {
		pos, ksize = ne.Uint32(page[e:]), ne.Uint32(page[e+4:])
	}
	k, err := slice(page, e+uint64(pos), uint64(ksize))
	if err != nil {
		return nil, fmt.Errorf("element %d: %w", i, err)
	}
	return k, nil
}

// checkBucketLeaf checks a leaf of the root bucket's tree: each element
// that is a bucket has a header, and either its own tree or an inline leaf.
func (l *layout) checkBucketLeaf(what string, page []byte, count uint16) error {
	for i := range uint64(count) {
		e := pageHeaderSize + elementSize*i
		pos := e + uint64(ne.Uint32(page[e+4:]))
		ksize, vsize := uint64(ne.Uint32(page[e+8:])), uint64(ne.Uint32(page[e+12:]))
		if _, err := slice(page, pos, ksize+vsize); err != nil {
			return fmt.Errorf("%s element %d: %w", what, i, err)
		}
		if ne.Uint32(page[e:])&leafFlagBucket == 0 {
			continue
		}
		v := page[pos+ksize : pos+ksize+vsize]
		if len(v) < bucketHeaderLen {
			return fmt.Errorf("%s element %d: bucket header is %d bytes", what, i, len(v))
		}
		if root := ne.Uint64(v); root != 0 {
			leafLevel := -1
			if !l.full {
				var err error
				if leafLevel, err = l.findLeafLevel(root); err != nil {
					return err
				}
			}
			if err := l.walk(root, 0, leafLevel, false, nil, nil); err != nil {
				return err
			}
			if bytes.Equal(page[pos:pos+ksize], dataBucket) {
				l.tree, l.leafLevel = root, leafLevel
			}
			continue
		}
		// An inline bucket: a leaf page stored in the value itself, which
		// bbolt reads without looking at its length.
		inline := v[bucketHeaderLen:]
		if len(inline) < pageHeaderSize {
			return fmt.Errorf("%s element %d: inline bucket is %d bytes", what, i, len(inline))
		}
		if ne.Uint16(inline[8:]) != flagLeaf {
			return fmt.Errorf("%s element %d: inline bucket is not a leaf", what, i)
		}
		n := uint64(ne.Uint16(inline[10:]))
		if err := checkElements(inline, uint16(n)); err != nil {
			return fmt.Errorf("%s element %d: inline bucket: %w", what, i, err)
		}
		for j := range n {
			ie := pageHeaderSize + elementSize*j
			ipos := ie + uint64(ne.Uint32(inline[ie+4:]))
			isize := uint64(ne.Uint32(inline[ie+8:])) + uint64(ne.Uint32(inline[ie+12:]))
			if _, err := slice(inline, ipos, isize); err != nil {
				return fmt.Errorf("%s element %d: inline element %d: %w", what, i, j, err)
			}
			if ne.Uint32(inline[ie:])&leafFlagBucket != 0 {
				return fmt.Errorf("%s element %d: inline bucket holds a bucket", what, i)
			}
		}
	}
	return nil
}

// checkElements checks that count elements fit in the page and that their
// keys and values lie packed one after another right behind the last
// element, which is exactly where bbolt writes them. So a damaged count
// (which would hide or invent records) or a damaged position or size (which
// would make bbolt read outside the page, even outside the file's mapping)
// is refused. It reads 16 bytes per element, not the keys and values.
func checkElements(page []byte, count uint16) error {
	end := pageHeaderSize + elementSize*uint64(count)
	if end > uint64(len(page)) {
		return fmt.Errorf("%d elements do not fit", count)
	}
	branch := ne.Uint16(page[8:]) == flagBranch
	data := end // where the next element's key must start
	for i := range uint64(count) {
		e := pageHeaderSize + elementSize*i
		var pos, size uint64
		if branch {
			pos, size = uint64(ne.Uint32(page[e:])), uint64(ne.Uint32(page[e+4:]))
		} else {
			pos = uint64(ne.Uint32(page[e+4:]))
			size = uint64(ne.Uint32(page[e+8:])) + uint64(ne.Uint32(page[e+12:]))
		}
		if e+pos != data {
			return fmt.Errorf("element %d of %d is not where its data starts", i, count)
		}
		if size > uint64(len(page))-data {
			return fmt.Errorf("element %d runs past the page", i)
		}
		data += size
	}
	return nil
}

func slice(b []byte, off, n uint64) ([]byte, error) {
	if off > uint64(len(b)) || n > uint64(len(b))-off {
		return nil, fmt.Errorf("%d bytes at offset %d run past the page", n, off)
	}
	return b[off : off+n], nil
}
