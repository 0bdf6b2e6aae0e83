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
func CheckPrivateDir(dir string) error { return checkDir(dir, false) }

// CheckLogDir is CheckPrivateDir for a directory that holds a log rather
// than a secret: the directory itself may also be writable by others if
// it is sticky (as /tmp and Debian's /var/log/postgresql are), since
// others can then add files but not rename or remove the caller's. A
// file they plant at the log's name is for the opener to refuse.
func CheckLogDir(dir string) error { return checkDir(dir, true) }

func checkDir(dir string, stickyLeaf bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	for d, parent := abs, true; ; d, parent = filepath.Dir(d), false {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != euid && st.Uid != 0 {
			return &UnsafeDirError{Dir: d, Reason: fmt.Sprintf("belongs to uid %d, not to uid %d running lessor or to root", st.Uid, euid)}
		}
		m := fi.Mode()
		if m.Perm()&0o022 != 0 && (parent && !stickyLeaf || m&fs.ModeSticky == 0) {
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
