package cmd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lessorhq/lessor/pkg/kvargs"
)

// writeFileAtomic replaces path with data: a temp file in the same
// directory, fsync, rename, fsync of the directory, so that a crash leaves
// either the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// sudoInvoker returns the user who ran lessor through sudo as another
// user (SUDO_UID, SUDO_GID, which sudo sets itself), and false when
// lessor runs for the user it runs as. A SUDO_UID that is not a number
// stands for a user lessor cannot name: -1, who owns nothing.
func (f *Factory) sudoInvoker() (uid, gid int, ok bool) {
	if f.sudo == nil {
		c := sudoCaller{}
		c.uid, c.gid, c.ok = f.findSudoInvoker()
		f.sudo = &c
	}
	return f.sudo.uid, f.sudo.gid, f.sudo.ok
}

// sudoCaller is the answer of findSudoInvoker.
type sudoCaller struct {
	uid, gid int
	ok       bool
}

func (f *Factory) findSudoInvoker() (uid, gid int, ok bool) {
	s := f.Getenv("SUDO_UID")
	if s == "" {
		return 0, 0, false
	}
	uid, err := strconv.Atoi(s)
	if err != nil {
		uid = -1
	} else if uid == os.Getuid() {
		return 0, 0, false
	}
	if !f.startedByAnotherUser() {
		// A shell of this account (sudo -iu ACCOUNT, which keeps
		// SUDO_UID) started lessor: whoever runs it there has the
		// account's files already, and is the account.
		return 0, 0, false
	}
	if gid, err = strconv.Atoi(f.Getenv("SUDO_GID")); err != nil {
		gid = -1
	}
	return uid, gid, true
}

// readArgFile reads a file a command's arguments name (key=@file,
// @file.json, policy write FILE). Run through sudo as another user (a
// service account that holds the store, its key file and a token file),
// lessor reads it on behalf of the user who named it, and so reads only a
// file that user could read: their own, one their primary group may read,
// or one everyone may read, unless its ACL denies them, judged on the file
// opened (a link to the key file is the key file). Otherwise a token that
// may do nothing but read database/creds/readonly could have the service
// account's unseal key or token sent back by any endpoint that echoes what
// it is given.
func (f *Factory) readArgFile(name string) ([]byte, error) {
	uid, gid, sudo := f.sudoInvoker()
	if !sudo {
		return kvargs.ReadFile(name)
	}
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: cannot tell who may read it", name)
	}
	acl, err := accessACL(func(dest []byte) (int, error) { return unix.Fgetxattr(int(file.Fd()), aclXattr, dest) })
	if err != nil {
		return nil, fmt.Errorf("%s: cannot tell who may read it: %w", name, err)
	}
	readable := userMay(uid, gid, st, fi.Mode(), acl, 4)
	if readable {
		// The caller must also reach it: every directory above the
		// file opened (wherever the name's links led) must let it
		// search. A 0644 file in the account's 0700 home is not theirs
		// to read.
		readable = reachable(file, fi, uid, gid)
	}
	if !readable {
		return nil, fmt.Errorf("%s is not readable by the user who ran lessor through sudo (uid %d): lessor reads only what that user could; give its content on standard input instead (key=- or -)", name, uid)
	}
	return kvargs.ReadAll(file, name)
}

// userMay tells whether the user uid, of primary group gid, may read (4)
// or search (1) the file whose owner, mode and POSIX access ACL (nil for
// none) these are, as the kernel decides (root may do anything): an ACL
// entry naming the user decides, whatever the other bits say. The user's
// other groups are not known, and a group entry that denies could be one
// of them: so what the group class denies is denied unless gid itself is
// granted (stricter than the kernel, never looser).
func userMay(uid, gid int, st *syscall.Stat_t, mode os.FileMode, acl []aclEntry, bit os.FileMode) bool {
	if uid == 0 {
		return true
	}
	b := uint16(bit)
	perm := uint16(mode.Perm())
	if int64(st.Uid) == int64(uid) {
		return perm>>6&b != 0
	}
	if acl == nil {
		acl = []aclEntry{{aclGroupObj, perm >> 3 & 7, 0}, {aclOther, perm & 7, 0}}
	}
	mask := uint16(7)
	for _, e := range acl {
		if e.tag == aclMask {
			mask = e.perm
		}
	}
	var other uint16
	groupsGrant, member := true, false
	for _, e := range acl {
		switch e.tag {
		case aclUser:
			if int64(e.id) == int64(uid) {
				return e.perm&mask&b != 0
			}
		case aclGroupObj, aclGroup:
			id := int64(e.id)
			if e.tag == aclGroupObj {
				id = int64(st.Gid)
			}
			grants := e.perm&mask&b != 0
			if id == int64(gid) {
				if grants {
					return true
				}
				member = true
			}
			groupsGrant = groupsGrant && grants
		case aclOther:
			other = e.perm
		}
	}
	return !member && groupsGrant && other&b != 0
}

// A POSIX access ACL entry, as the kernel stores it in the
// system.posix_acl_access attribute (after a 4-byte version, 2): the tag,
// the permission bits and, for named users and groups, the id.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

const (
	aclXattr    = "system.posix_acl_access"
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// accessACL reads an access ACL with get (a getxattr of aclXattr): nil
// when the file has none, or its file system keeps none.
func accessACL(get func(dest []byte) (int, error)) ([]aclEntry, error) {
	n, err := get(nil)
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	raw := make([]byte, n)
	if n, err = get(raw); err != nil {
		return nil, err
	}
	raw = raw[:n]
	if len(raw) < 4 || (len(raw)-4)%8 != 0 || binary.LittleEndian.Uint32(raw) != 2 {
		return nil, errors.New("unreadable POSIX ACL")
	}
	var out []aclEntry
	for i := 4; i < len(raw); i += 8 {
		out = append(out, aclEntry{binary.LittleEndian.Uint16(raw[i:]), binary.LittleEndian.Uint16(raw[i+2:]), binary.LittleEndian.Uint32(raw[i+4:])})
	}
	return out, nil
}

// reachable tells whether the user may search every directory above the
// opened file: its path is the one the kernel gives for the descriptor,
// and it must still name that file after the directories were checked.
func reachable(file *os.File, fi os.FileInfo, uid, gid int) bool {
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
	if err != nil || !filepath.IsAbs(real) {
		return false
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		di, err := os.Stat(d)
		if err != nil {
			return false
		}
		st, ok := di.Sys().(*syscall.Stat_t)
		if !ok || !di.IsDir() {
			return false
		}
		acl, err := accessACL(func(dest []byte) (int, error) { return unix.Getxattr(d, aclXattr, dest) })
		if err != nil || !userMay(uid, gid, st, di.Mode(), acl, 1) {
			return false
		}
		if d == "/" {
			break
		}
	}
	now, err := os.Stat(real)
	return err == nil && os.SameFile(fi, now)
}

// startedByAnotherUser tells whether lessor was started by sudo itself,
// or by a process (its parent) of another user: by the parent's name and
// its real and effective user ids. A shell of the account, even with
// SUDO_UID still set (sudo -iu ACCOUNT keeps it), is the account's. When
// the parent cannot be read, it says yes: lessor then reads files and
// tokens as for a caller who is not the account, which only refuses more.
func (f *Factory) startedByAnotherUser() bool {
	if testOnlyStartedBy != nil {
		if by := testOnlyStartedBy(f.Getenv); by != "" {
			return by == "sudo"
		}
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(os.Getppid()) + "/status")
	if err != nil {
		return true
	}
	me := strconv.Itoa(os.Getuid())
	var name string
	var uids []string
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "Name:"); ok {
			name = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uids = strings.Fields(v)
		}
	}
	return name == "sudo" || len(uids) < 2 || uids[0] != me || uids[1] != me
}

// testOnlyStartedBy is a test seam, set only by the test binary's
// TestMain: "sudo" or "account", from the environment, for tests that
// play a caller running lessor through sudo (whose parent is the test
// binary, of lessor's own user). A shipped binary leaves it nil and reads
// /proc.
var testOnlyStartedBy func(getenv func(string) string) string

// sudoRefused are the commands a caller who runs lessor through sudo as
// the account that holds the store may not run: they act with the
// store's unseal key and no token, so no policy confines them. A rekey to
// a passphrase the caller types, then a migrate to a database the caller
// owns, would hand over the whole store; init would give the caller a root
// token over a store whose connections use the account's ~/.pgpass. The
// account runs them itself (from its own shell, sudo -iu ACCOUNT, or its
// service unit). reap is left: it revokes only what is due.
func sudoRefused(name string) bool {
	if name == "serve" {
		return true
	}
	_, local := localOnlyCommands[name]
	return local && name != "reap"
}

// refuseUnderSudo stops a command of sudoRefused that a caller ran
// through sudo as this account.
func refuseUnderSudo(f *Factory, c *cobra.Command) error {
	name := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	generator := name == "__generate" || strings.HasPrefix(name, "__generate ")
	if !sudoRefused(name) && !generator {
		return nil
	}
	uid, _, sudo := f.sudoInvoker()
	if !sudo {
		return nil
	}
	if generator {
		// A build step: it writes files as this account into the
		// directory the caller names, following links there to the
		// key file, the store or ~/.bashrc.
		return usageErrorf("%s: lessor was run through sudo by another user (uid %d), and it writes files as this account where that user says", name, uid)
	}
	return withHint(usageErrorf("%s: lessor was run through sudo by another user (uid %d), and %s acts with the store's unseal key, which no token confines", name, uid, name),
		"run it as the account itself: from its own shell (sudo -iu <account>) or its service unit")
}
