package audit

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestValidateDeviceRefuses(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "audit.log")
	cases := []struct {
		name string
		dev  Device
		want string
	}{
		{"type", Device{Path: "syslog/", Type: "syslog", Options: map[string]string{"file_path": abs}},
			`audit device syslog/: unsupported type "syslog" (only "file")`},
		{"path without slash", Device{Path: "file", Type: "file", Options: map[string]string{"file_path": abs}},
			`audit device path "file": must be a name ending in a slash, like "file/"`},
		{"empty path", Device{Path: "/", Type: "file", Options: map[string]string{"file_path": abs}},
			`audit device path "/": must be a name ending in a slash, like "file/"`},
		{"no file_path", Device{Path: "file/", Type: "file"},
			`audit device file/: file_path is required`},
		{"stdout", fileDevice("stdout"),
			`audit device file/: file_path "stdout" is not supported: give the absolute path of a file`},
		{"stderr", fileDevice("stderr"),
			`audit device file/: file_path "stderr" is not supported: give the absolute path of a file`},
		{"dash", fileDevice("-"),
			`audit device file/: file_path "-" is not supported: give the absolute path of a file`},
		{"discard", fileDevice("discard"),
			`audit device file/: file_path "discard" is not supported: give the absolute path of a file`},
		{"relative", fileDevice("logs/audit.log"),
			`audit device file/: file_path "logs/audit.log" must be absolute`},
		{"unknown option", fileDevice(abs, "prefix", "x"),
			`audit device file/: unknown option "prefix" (known: file_path, format, hmac_accessor, log_raw, mode)`},
		{"mode not octal", fileDevice(abs, "mode", "0689"),
			`audit device file/: mode "0689" is not an octal file mode like "0600"`},
		{"mode too big", fileDevice(abs, "mode", "01600"),
			`audit device file/: mode "01600" is not an octal file mode like "0600"`},
		{"mode read-only", fileDevice(abs, "mode", "0400"),
			`audit device file/: mode "0400": the owner must be able to write the log`},
		{"mode executable", fileDevice(abs, "mode", "0700"),
			`audit device file/: mode "0700": a log file must not be executable`},
		{"mode world-writable", fileDevice(abs, "mode", "0602"),
			`audit device file/: mode "0602": a log file must not be world-writable`},
		{"hmac_accessor", fileDevice(abs, "hmac_accessor", "maybe"),
			`audit device file/: hmac_accessor "maybe" is not a boolean`},
		{"log_raw true", fileDevice(abs, "log_raw", "true"),
			"audit device file/: log_raw=true is not supported: secrets are never logged in clear; find a value with `lessor audit hash`"},
		{"log_raw junk", fileDevice(abs, "log_raw", "yes"),
			`audit device file/: log_raw "yes" is not a boolean`},
		{"format", fileDevice(abs, "format", "jsonx"),
			`audit device file/: format "jsonx" is not supported (only "json")`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateDevice(tc.dev)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	// None of the refused devices may have created the file.
	if _, err := os.Stat(abs); !os.IsNotExist(err) {
		t.Errorf("a refused device created %s: %v", abs, err)
	}
}

func TestValidateDeviceCreatesWithMode(t *testing.T) {
	old := syscall.Umask(0o077) // a strict umask must not narrow the chosen mode
	defer syscall.Umask(old)
	dir := t.TempDir()
	cases := []struct {
		opts []string
		want os.FileMode
	}{
		{nil, 0o600},
		{[]string{"mode", "0640", "log_raw", "false", "format", "json", "hmac_accessor", "true"}, 0o640},
		{[]string{"mode", "0660"}, 0o660},
		{[]string{"mode", "0000"}, 0o600}, // "leave the mode alone": created 0600 less the umask
	}
	for i, tc := range cases {
		path := filepath.Join(dir, string(rune('a'+i))+".log")
		if err := ValidateDevice(fileDevice(path, tc.opts...)); err != nil {
			t.Fatalf("%v: %v", tc.opts, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.want || fi.Size() != 0 {
			t.Errorf("%v: file has mode %v size %d, want %v size 0", tc.opts, fi.Mode(), fi.Size(), tc.want)
		}
	}
}

func TestValidateDeviceExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Enabling a device applies its mode to an existing log and keeps
	// what is in it.
	if err := ValidateDevice(fileDevice(path)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if fi.Mode() != 0o600 || string(b) != "old line\n" {
		t.Errorf("got mode %v content %q, want 0600 and the old line", fi.Mode(), b)
	}

	// mode=0000 leaves the operator's mode alone.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := ValidateDevice(fileDevice(path, "mode", "0000")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode() != 0o640 {
		t.Errorf("mode 0000 changed the mode to %v", fi.Mode())
	}
}
