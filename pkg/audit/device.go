package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Device is one enabled audit device as the core stores it.
type Device struct {
	// Path is the device's mount-like name with its trailing slash
	// ("file/"); it names the device in errors and in `audit list`.
	Path        string
	Type        string
	Description string
	// Options are the key=value arguments of `audit enable`: file_path
	// (required, absolute), mode (octal, default "0600"), hmac_accessor
	// (default false), log_raw (only false is accepted) and format (only
	// "json").
	Options map[string]string
}

// DeviceError is a failure to write (or to open, when a device is enabled)
// one device's file. The core fails the request that could not be
// audited.
type DeviceError struct {
	Device string // the device's path, "file/"
	File   string // the file_path option
	Err    error
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("audit device %s (%s): %v", e.Device, e.File, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// defaultMode is the mode a new log file gets: the log names every
// database user issued and who asked for it, so it is nobody else's
// business by default.
const defaultMode fs.FileMode = 0o600

// fileConfig is a file device's options, parsed and checked.
type fileConfig struct {
	path string
	// mode is applied with chmod when lessor creates the file (and when
	// the device is enabled), so the umask cannot widen or narrow it; zero
	// means "leave the mode alone", as in Vault.
	mode         fs.FileMode
	hashAccessor bool
}

var knownOptions = []string{"file_path", "format", "hmac_accessor", "log_raw", "mode"}

// parseDevice checks d without touching the file system.
func parseDevice(d Device) (*fileConfig, error) {
	if d.Path == "" || !strings.HasSuffix(d.Path, "/") || strings.Trim(d.Path, "/") == "" {
		return nil, fmt.Errorf("audit device path %q: must be a name ending in a slash, like \"file/\"", d.Path)
	}
	if d.Type != "file" {
		return nil, fmt.Errorf("audit device %s: unsupported type %q (only \"file\")", d.Path, d.Type)
	}
	for k := range d.Options {
		if !slices.Contains(knownOptions, k) {
			return nil, fmt.Errorf("audit device %s: unknown option %q (known: %s)", d.Path, k, strings.Join(knownOptions, ", "))
		}
	}
	cfg := &fileConfig{mode: defaultMode}

	p := d.Options["file_path"]
	switch {
	case p == "":
		return nil, fmt.Errorf("audit device %s: file_path is required", d.Path)
	case p == "stdout", p == "stderr", p == "-", p == "discard":
		// stdout carries command output only; stderr belongs to whoever
		// runs the command, who is the one being audited; and a log that
		// discards is no log. Each of these would let a request go
		// unaudited while looking audited.
		return nil, fmt.Errorf("audit device %s: file_path %q is not supported: give the absolute path of a file", d.Path, p)
	case !filepath.IsAbs(p):
		// Every command is a new process, possibly started from a
		// different directory: a relative path would scatter the log.
		return nil, fmt.Errorf("audit device %s: file_path %q must be absolute", d.Path, p)
	}
	cfg.path = filepath.Clean(p)

	if s, ok := d.Options["mode"]; ok {
		m, err := strconv.ParseUint(s, 8, 32)
		switch {
		case err != nil || m > 0o777:
			return nil, fmt.Errorf("audit device %s: mode %q is not an octal file mode like \"0600\"", d.Path, s)
		case m != 0 && m&0o200 == 0:
			return nil, fmt.Errorf("audit device %s: mode %q: the owner must be able to write the log", d.Path, s)
		case m&0o111 != 0:
			return nil, fmt.Errorf("audit device %s: mode %q: a log file must not be executable", d.Path, s)
		case m&0o002 != 0:
			// Anyone could then forge or truncate the record.
			return nil, fmt.Errorf("audit device %s: mode %q: a log file must not be world-writable", d.Path, s)
		}
		cfg.mode = fs.FileMode(m)
	}
	if s, ok := d.Options["hmac_accessor"]; ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("audit device %s: hmac_accessor %q is not a boolean", d.Path, s)
		}
		cfg.hashAccessor = b
	}
	if s, ok := d.Options["log_raw"]; ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("audit device %s: log_raw %q is not a boolean", d.Path, s)
		}
		if b {
			return nil, fmt.Errorf("audit device %s: log_raw=true is not supported: secrets are never logged in clear; find a value with `lessor audit hash`", d.Path)
		}
	}
	if s, ok := d.Options["format"]; ok && s != "json" {
		return nil, fmt.Errorf("audit device %s: format %q is not supported (only \"json\")", d.Path, s)
	}
	return cfg, nil
}

// ValidateDevice checks a device before the core stores it, and proves
// that its file can be written: the file is created (with the device's
// mode) if missing and opened for appending; nothing is written to it. An
// existing file of the caller's gets the device's mode, as the operator
// asked for it now, unless others could write it (see openLog).
func ValidateDevice(d Device) error {
	cfg, err := parseDevice(d)
	if err != nil {
		return err
	}
	f, created, err := openLog(cfg, true)
	if err == nil && !created && cfg.mode != 0 {
		err = chmodIfNeeded(f, cfg.mode)
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &DeviceError{Device: d.Path, File: cfg.path, Err: bare(err)}
	}
	return nil
}

// openLog opens the log for appending, creating it when missing, and
// reports whether it created the file. It never follows a symbolic link
// at the log's name, and it refuses an existing file that is not a
// regular file, that another user owns, that has another name (a hard
// link to another file of the caller's), or whose mode grants more than
// the device's mode (0660 for mode 0000: nothing for others): a file
// planted or loosened by someone else would let them read the log, or
// forge or truncate it. Every command opens the log afresh, so a file
// swapped in after a rotation is checked too. When enabling, an existing
// file of the caller's that others may only read is accepted: the device's
// mode is applied to it right after.
func openLog(cfg *fileConfig, enabling bool) (f *os.File, created bool, err error) {
	// A directory another user can change lets them rename the log away
	// or delete it, erasing the record; refuse to log there at all.
	if err := storage.CheckLogDir(filepath.Dir(cfg.path)); err != nil {
		return nil, false, err
	}
	perm := cfg.mode
	if perm == 0 {
		perm = defaultMode
	}
	// Read as well as write: a line starts by checking that the last one
	// ended (see device.write).
	f, err = os.OpenFile(cfg.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err == nil {
		if cfg.mode != 0 {
			// The umask applied to OpenFile's mode; the operator's mode
			// wins.
			if err := f.Chmod(cfg.mode); err != nil {
				f.Close()
				return nil, false, err
			}
		}
		return f, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	// Refuse anything but a regular file before opening it: opening a
	// FIFO with no reader would hang the command, and a device such as
	// /dev/null would quietly discard the record.
	fi, err := os.Lstat(cfg.path)
	if err != nil {
		return nil, false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, false, errSymlink
	}
	if !fi.Mode().IsRegular() {
		return nil, false, errNotRegular
	}
	// O_NONBLOCK: should the name have become a FIFO since, the open
	// fails rather than waits. It changes nothing for a regular file.
	const flags = os.O_APPEND | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	f, err = os.OpenFile(cfg.path, os.O_RDWR|flags, 0)
	if errors.Is(err, fs.ErrPermission) {
		// A log the owner may only write (mode 0200) is still written,
		// without the check.
		f, err = os.OpenFile(cfg.path, os.O_WRONLY|flags, 0)
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			err = errSymlink
		}
		return nil, false, err
	}
	// What counts is the file opened, not the name looked at before.
	if err := checkLogFile(f, cfg, enabling); err != nil {
		f.Close()
		return nil, false, err
	}
	return f, false, nil
}

var (
	errNotRegular = errors.New("not a regular file")
	errSymlink    = errors.New("is a symbolic link, which lessor does not follow for its log: give the path of the file itself")
)

// checkLogFile checks an existing log lessor opened: a regular file, owned
// by the user running lessor, with no more permission than the device
// grants.
func checkLogFile(f *os.File, cfg *fileConfig, enabling bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errNotRegular
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("cannot tell who owns the file")
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("owned by uid %d, not by uid %d running lessor: another user could read or rewrite the log; remove it or give it to uid %d", st.Uid, euid, euid)
	}
	if st.Nlink > 1 {
		// A link to another file of the caller's (a key file), which
		// anyone may make where fs.protected_hardlinks is off: the
		// device's mode and every entry would go to that file.
		return fmt.Errorf("has %d names (hard links): another of them may be a file of the caller's that the log would write; give the log a file of its own", st.Nlink)
	}
	allowed := cfg.mode
	if allowed == 0 {
		allowed = 0o660
	}
	extra := fi.Mode().Perm() &^ allowed
	if extra == 0 || enabling && cfg.mode != 0 && extra&0o022 == 0 {
		return nil
	}
	return fmt.Errorf("mode %04o lets others read or write the log (the device allows %04o); run: chmod %o %s", fi.Mode().Perm(), allowed, allowed, cfg.path)
}

func chmodIfNeeded(f *os.File, mode fs.FileMode) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm() == mode {
		return nil
	}
	return f.Chmod(mode)
}

// bare drops the operation and path from an os error: DeviceError already
// names the file, and "permission denied" reads better than the path twice.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
