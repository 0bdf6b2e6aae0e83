package storage

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// UnsafeDirError is a directory that another user could change, found
// where lessor was about to create a secret file (the store, a key file):
// they could then rename the file away and put their own in its place.
type UnsafeDirError struct {
	Dir    string
	Reason string // "is writable by group or others (mode 0777)"
}

func (e *UnsafeDirError) Error() string {
	return fmt.Sprintf("directory %s %s: another user could replace the files lessor keeps there", e.Dir, e.Reason)
}

// CheckPrivateDir checks that only the caller and root can change what dir
// holds, and what its ancestors hold: dir and every directory above it
// must belong to the caller or to root; dir must not be writable by group
// or others; an ancestor may be, if it is sticky (as /tmp is: others
// cannot rename or remove what they do not own).
func CheckPrivateDir(dir string) error { return checkDir(dir, true) }

// CheckLogDir is CheckPrivateDir for a directory that holds a log rather
// than a secret: the directory itself may also be writable by others if
// it is sticky (as /tmp and Debian's /var/log/postgresql are), since
// others can then add files but not rename or remove the caller's. A
// file they plant at the log's name is for the opener to refuse.
func CheckLogDir(dir string) error { return checkDir(dir, false) }

func checkDir(dir string, strict bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The directories above the one the links lead to, not those the name
	// spells: /tmp/x -> /home/u/y is checked as /home/u/y, after the
	// links on the way (and who may change them) are.
	real, err := checkLinkChain(abs)
	if err != nil {
		return err
	}
	return checkDirChain(real, strict)
}

// UnsafeFileError is a file lessor was about to read its settings from that
// another user could change: a file they own, or one they can write.
type UnsafeFileError struct {
	Path   string
	Reason string // "is writable by group or others (mode 0666)"
}

func (e *UnsafeFileError) Error() string {
	return fmt.Sprintf("%s %s", e.Path, e.Reason)
}

// CheckOwnFile checks that no other user can change the file at path, whose
// metadata fi the caller took from the file it opened (so that the checks
// are of what it reads, not of what the name points at a moment later):
// it must belong to the caller or to root, must not be writable by group
// or others, and the directories its path goes through must pass
// checkLinkChain. A character device that root owns (/dev/null) passes
// whatever its mode: writing to it changes nothing another reader sees.
func CheckOwnFile(path string, fi fs.FileInfo) error {
	euid := os.Geteuid()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &UnsafeFileError{Path: path, Reason: "has no owner lessor can check"}
	}
	if int(st.Uid) != euid && st.Uid != 0 {
		return &UnsafeFileError{Path: path, Reason: fmt.Sprintf("belongs to uid %d, not to uid %d running lessor or to root", st.Uid, euid)}
	}
	m := fi.Mode()
	rootDevice := m&fs.ModeCharDevice != 0 && st.Uid == 0
	if m.Perm()&0o022 != 0 && !rootDevice {
		return &UnsafeFileError{Path: path, Reason: fmt.Sprintf("is writable by group or others (mode %04o)", unixMode(m))}
	}
	if !m.IsRegular() {
		// A pipe (-config <(…)) or a device has no resolvable target
		// (/dev/fd/63 links to "pipe:[…]"): its directory is checked as
		// named.
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		return checkDirChain(filepath.Dir(abs), false)
	}
	real, err := checkLinkChain(path)
	if err != nil {
		return err
	}
	// The chain checked must end at the file that was opened; if a link
	// changed in between, what was opened is not what was checked.
	now, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !os.SameFile(fi, now) {
		return &UnsafeFileError{Path: path, Reason: "changed while lessor checked it"}
	}
	return nil
}

// maxLinkHops bounds the symbolic links followed for one path, as the
// kernel's own limit does.
const maxLinkHops = 40

// checkLinkChain checks that no other user can put another file in the
// place of path: it resolves path one component at a time, as open(2) does
// (a ".." after a link goes up from where the link led, not lexically),
// and checks with checkDirChain every directory that holds a link it
// follows and the directory of the file it ends at, whose resolved path it
// returns. Whoever can change any of them can swap the file.
func checkLinkChain(path string) (string, error) {
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		path = wd + "/" + path
	}
	cur, rest, hops := "/", components(path), 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			cur = filepath.Dir(cur) // cur holds no links: this is its parent
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		// Whoever may write where the link is may point it elsewhere, and
		// in a sticky directory (/tmp) so may the link's owner.
		if err := checkDirChain(cur, false); err != nil {
			return "", err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
			return "", &UnsafeDirError{Dir: next, Reason: fmt.Sprintf("is a symbolic link that belongs to uid %d, not to uid %d running lessor or to root", st.Uid, os.Geteuid())}
		}
		if hops++; hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(components(target), rest...)
	}
	if err := checkDirChain(filepath.Dir(cur), false); err != nil {
		return "", err
	}
	return cur, nil
}

// components splits a path into its names, without empty ones and ".".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// checkDirChain checks the absolute directory dir and every directory above
// it: each must belong to the caller or to root and must not be writable
// by group or others unless it is sticky; with strict, dir itself must not
// be writable by group or others even if sticky.
func checkDirChain(dir string, strict bool) error {
	euid := os.Geteuid()
	for d, first := dir, true; ; d, first = filepath.Dir(d), false {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != euid && st.Uid != 0 {
			return &UnsafeDirError{Dir: d, Reason: fmt.Sprintf("belongs to uid %d, not to uid %d running lessor or to root", st.Uid, euid)}
		}
		m := fi.Mode()
		if m.Perm()&0o022 != 0 && ((first && strict) || m&fs.ModeSticky == 0) {
			return &UnsafeDirError{Dir: d, Reason: fmt.Sprintf("is writable by group or others (mode %04o)", unixMode(m))}
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// unixMode is m's permission and special bits as chmod writes them.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	return u
}
