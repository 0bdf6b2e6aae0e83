package storage

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	return checkDirChain(abs, strict)
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
// or others, and its directory must pass CheckDirOfOwnFile. A character
// device that root owns (/dev/null) passes whatever its mode: writing to
// it changes nothing another reader sees.
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
	return CheckDirOfOwnFile(path)
}

// CheckDirOfOwnFile checks that no other user can put another file in the
// place of path, a file that belongs to the caller or to root: every
// directory above it must belong to the caller or to root and be writable
// by group or others only if sticky, since in a sticky directory others
// cannot rename or remove a file they do not own. Both the directories path
// names and, when path goes through a symbolic link, those of the file it
// resolves to are checked: whoever can change either can swap the file.
func CheckDirOfOwnFile(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := checkDirChain(filepath.Dir(abs), false); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if real == abs {
		return nil
	}
	return checkDirChain(filepath.Dir(real), false)
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
