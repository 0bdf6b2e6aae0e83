package cmd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
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
// or one everyone may read, judged on the file opened (a link to the key
// file is the key file). Otherwise a token that may do nothing but read
// database/creds/readonly could have the service account's unseal key or
// token sent back by any endpoint that echoes what it is given.
func (f *Factory) readArgFile(name string) ([]byte, error) {
	uid, gid, sudo := f.sudoInvoker()
	if !sudo {
		return os.ReadFile(name)
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
	mode := fi.Mode().Perm()
	var readable bool
	switch {
	case uid == 0:
		readable = true
	case int64(st.Uid) == int64(uid):
		readable = mode&0o400 != 0
	case int64(st.Gid) == int64(gid):
		readable = mode&0o040 != 0
	default:
		readable = mode&0o004 != 0
	}
	if !readable {
		return nil, fmt.Errorf("%s is not readable by the user who ran lessor through sudo (uid %d): lessor reads only what that user could; give its content on standard input instead (key=- or -)", name, uid)
	}
	return io.ReadAll(file)
}
