package audit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests below need a second local user: they run as root and act as
// nobody through setpriv, in a shared sticky log directory (mode 1777, as
// /tmp), where nobody can add files but not rename or remove root's.

const nobodyUID = 65534

// nobodyLogDir returns a sticky directory that everyone may write,
// inside one that nobody can reach (t.TempDir's parents are 0700).
func nobodyLogDir(t *testing.T) (base, logs string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as a second user (nobody)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv, to act as a second user (nobody)")
	}
	base, err := os.MkdirTemp("", "lessor-audit-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	logs = filepath.Join(base, "logs")
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logs, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return base, logs
}

func asNobody(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
	}
}

func TestLogSymlinkPlantedAfterRotationIsRefused(t *testing.T) {
	base, logs := nobodyLogDir(t)
	target := filepath.Join(base, "root-only")
	if err := os.WriteFile(target, []byte("root's own file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, "audit.log")
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "sys/mounts"}
	if err := b.LogRequest(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	// The log is rotated away; before lessor runs again, nobody plants a
	// link at its name.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	asNobody(t, "ln -s "+target+" "+path)

	want := "audit device file/ (" + path + "): is a symbolic link"
	if err := b.LogRequest(context.Background(), e); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LogRequest through the link: got %v, want %s…", err, want)
	}
	if err := ValidateDevice(fileDevice(path)); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ValidateDevice through the link: got %v, want %s…", err, want)
	}
	if b, _ := os.ReadFile(target); string(b) != "root's own file\n" {
		t.Errorf("the link's target was written: %q", b)
	}
}

func TestLogOwnedByAnotherUserIsRefused(t *testing.T) {
	_, logs := nobodyLogDir(t)
	path := filepath.Join(logs, "audit.log")
	asNobody(t, "umask 0 && : > "+path+" && chmod 666 "+path)

	want := "audit device file/ (" + path + "): owned by uid 65534, not by uid 0 running lessor"
	if err := ValidateDevice(fileDevice(path)); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ValidateDevice: got %v, want %s…", err, want)
	}
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	if err := b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"}); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LogRequest: got %v, want %s…", err, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o666 {
		t.Errorf("nobody's file was written or changed: %v %v", fi, err)
	}
}

// A log of the caller's that others may write is refused, when the device
// is enabled and on every reopen; one that others may read is refused on
// reopen (enabling applies the device's mode to it).
func TestLogWiderThanItsModeIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	want := "audit device file/ (" + path + "): mode 0666 lets others read or write the log (the device allows 0600); run: chmod 600 " + path
	if err := ValidateDevice(fileDevice(path)); err == nil || err.Error() != want {
		t.Errorf("ValidateDevice: got %v\nwant %s", err, want)
	}
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	e := &Entry{Operation: "read", Path: "sys/mounts"}
	if err := b.LogRequest(context.Background(), e); err == nil || err.Error() != want {
		t.Errorf("LogRequest: got %v\nwant %s", err, want)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	want = strings.ReplaceAll(want, "0666", "0644")
	if err := b.LogRequest(context.Background(), e); err == nil || err.Error() != want {
		t.Errorf("LogRequest: got %v\nwant %s", err, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("a refused log was written: %v %v", fi, err)
	}
	// mode 0000 leaves the mode to the operator, but not to others.
	want = "audit device file/ (" + path + "): mode 0644 lets others read or write the log (the device allows 0660); run: chmod 660 " + path
	if err := ValidateDevice(fileDevice(path, "mode", "0000")); err == nil || err.Error() != want {
		t.Errorf("ValidateDevice mode 0000: got %v\nwant %s", err, want)
	}
}

// A log directory another user can change is refused before any file is
// opened: one that user owns, and one everybody may write that is not
// sticky. Either way they could rename the log away or delete it.
func TestLogDirOthersCanChangeIsRefused(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{open: "directory " + open + " is writable by group or others (mode 0777)"}
	if os.Geteuid() == 0 {
		_, logs := nobodyLogDir(t)
		owned := filepath.Join(logs, "nobodys")
		asNobody(t, "mkdir -m 755 "+owned)
		cases[owned] = "directory " + owned + " belongs to uid 65534, not to uid 0 running lessor"
	}
	for dir, want := range cases {
		path := filepath.Join(dir, "audit.log")
		want = "audit device file/ (" + path + "): " + want
		if err := ValidateDevice(fileDevice(path)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ValidateDevice: got %v, want %s…", err, want)
		}
		b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
		if err := b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"}); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("LogRequest: got %v, want %s…", err, want)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("a log was created in %s: %v", dir, err)
		}
	}
}

// TestLogHardLinkIsRefused: a log with another name is another file of the
// caller's, linked at the log's path (anyone may link a file they cannot
// read where fs.protected_hardlinks is 0, in a shared log directory such
// as /tmp). Enabling the device would give that file the device's mode,
// and every request would append to it; both are refused, and the file is
// left as it was.
func TestLogHardLinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "unseal.key")
	if err := os.WriteFile(secret, []byte("the caller's key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	if err := os.Link(secret, path); err != nil {
		t.Fatal(err)
	}
	want := "audit device file/ (" + path + "): has 2 names (hard links): another of them may be a file of the caller's that the log would write; give the log a file of its own"
	if err := ValidateDevice(fileDevice(path, "mode", "0644")); err == nil || err.Error() != want {
		t.Errorf("ValidateDevice: got %v\nwant %s", err, want)
	}
	b := NewBroker([]Device{fileDevice(path)}, testKey, fixedClock)
	if err := b.LogRequest(context.Background(), &Entry{Operation: "read", Path: "sys/mounts"}); err == nil || err.Error() != want {
		t.Errorf("LogRequest: got %v\nwant %s", err, want)
	}
	fi, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(secret); fi.Mode().Perm() != 0o600 || string(got) != "the caller's key\n" {
		t.Errorf("the linked file became mode %04o, content %q", fi.Mode().Perm(), got)
	}
}
