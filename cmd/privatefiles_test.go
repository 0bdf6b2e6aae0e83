package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenFileReadableByOthersIsRefused: the token file is checked like
// the key file; a 0644 root token file is refused, not used silently.
func TestTokenFileReadableByOthersIsRefused(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	tok := c.env["LESSOR_TOKEN"]
	delete(c.env, "LESSOR_TOKEN") // from here on, the token file
	path := filepath.Join(c.env["HOME"], ".lessor-token")
	c.must("token", "lookup")

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.fails(1, `^lessor: error: token file `+path+` is readable by group or others \(mode 0644\)\nlessor: hint: run: chmod 600 `+path,
		"token", "lookup")
	if strings.Contains(r.stderr+r.stdout, tok) {
		t.Errorf("the refusal shows the token")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("token", "lookup")

	// A token file of another user's (who chose the token it holds) is
	// refused too, whatever its mode.
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		c.fails(1, `^lessor: error: token file `+path+` belongs to another user \(uid 65534\); use a file of your own`, "token", "lookup")
	}
}

// TestStoreAndKeyRefuseDirectoriesOthersCanChange: init refuses to create
// the store or the key file in a directory that another user can change
// (a world-writable one, /tmp itself, one owned by nobody, one under a
// world-writable non-sticky directory), leaving nothing behind, and
// accepts a private directory under a sticky one, as t.TempDir's are.
func TestStoreAndKeyRefuseDirectoriesOthersCanChange(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	mkdir := func(rel string, mode os.FileMode) string {
		t.Helper()
		d := filepath.Join(base, rel)
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return d
	}
	shared := mkdir("shared", 0o777)
	open := mkdir("open", 0o777)
	under := filepath.Join(open, "private")
	if err := os.Mkdir(under, 0o700); err != nil {
		t.Fatal(err)
	}
	sticky := mkdir("sticky", 0o777|os.ModeSticky)
	mine := filepath.Join(sticky, "mine")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	inTmp := filepath.Join(os.TempDir(), "lessor-test-"+filepath.Base(filepath.Dir(base))+".db")
	t.Cleanup(func() { os.Remove(inTmp) })
	cases := []struct {
		name, store, key, want string
	}{
		{"store in a world-writable directory", filepath.Join(shared, "lessor.db"), "",
			"create store " + shared + "/lessor.db: directory " + shared + " is writable by group or others (mode 0777)"},
		{"key in a world-writable directory", "", filepath.Join(shared, "unseal.key"),
			"create key file " + shared + "/unseal.key: directory " + shared + " is writable by group or others (mode 0777)"},
		{"store directly in /tmp", inTmp, "",
			"directory " + os.TempDir() + " is writable by group or others (mode 1777)"},
		{"store under a world-writable directory", filepath.Join(under, "lessor.db"), "",
			"directory " + open + " is writable by group or others (mode 0777)"},
	}
	if os.Geteuid() == 0 {
		// A directory of another user's: nobody, a real second user.
		theirs := mkdir("theirs", 0o755)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ name, store, key, want string }{"store in nobody's directory", filepath.Join(theirs, "lessor.db"), "",
			"directory " + theirs + " belongs to uid 65534, not to uid 0 running lessor or to root"})
		// A link of another user's in a sticky directory, to a private
		// directory of ours: its owner may point it elsewhere at will.
		link := filepath.Join(sticky, "theirlink")
		if err := os.Symlink(mine, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ name, store, key, want string }{"store through nobody's link", filepath.Join(link, "lessor.db"), "",
			"directory " + link + " is a symbolic link that belongs to uid 65534, not to uid 0 running lessor or to root"})
	} else {
		t.Log("not root: the case of a directory owned by another user is not tested")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			args := []string{"operator", "init"}
			if tc.store != "" {
				args = append(args, "-store="+tc.store)
			}
			if tc.key != "" {
				args = append(args, "-key-file="+tc.key)
			}
			r := c.run(args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want+": another user could replace the files lessor keeps there\n") ||
				!strings.Contains(r.stderr, "lessor: hint: choose a path in a directory only you and root can change") {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q with a hint", r.code, r.stderr, tc.want)
			}
			for _, p := range []string{tc.store, tc.key, filepath.Join(c.env["HOME"], ".config", "lessor", "unseal.key"), filepath.Join(c.env["HOME"], ".local", "share", "lessor", "lessor.db")} {
				if _, err := os.Lstat(p); p != "" && err == nil {
					t.Errorf("%s was left behind", p)
				}
			}
		})
	}

	c := newCLI(t)
	c.must("operator", "init", "-store="+filepath.Join(mine, "lessor.db"), "-key-file="+filepath.Join(mine, "unseal.key"))
}

// TestGenerationFileThatCannotBeKept: a user whose generation file cannot
// be kept (a service account with no home directory) would not notice a
// store put back from an older copy; every command says so on stderr and
// goes on.
func TestGenerationFileThatCannotBeKept(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	notDir := c.writeFile("state", "")
	c.env["XDG_STATE_HOME"] = notDir
	r := c.run("policy", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "root") {
		t.Fatalf("policy list: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	want := "lessor: warning: cannot keep the store's generation in " + filepath.Join(notDir, "lessor", "generation") + "/"
	if !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "would not be noticed") ||
		!strings.Contains(r.stderr, "\nlessor: hint: set XDG_STATE_HOME") {
		t.Errorf("stderr %q, want a warning starting %q", r.stderr, want)
	}
	delete(c.env, "XDG_STATE_HOME")
	if r := c.run("policy", "list"); r.code != 0 || r.stderr != "" {
		t.Errorf("with a generation file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestGenerationFileOthersCanChange: a generation directory another user
// can write (XDG_STATE_HOME in a shared directory) is not trusted: they
// could lower the number to let an old copy of the store in. Every
// command says so on stderr, in one warning and one hint, and goes on.
func TestGenerationFileOthersCanChange(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	shared := filepath.Join(c.env["HOME"], "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	c.env["XDG_STATE_HOME"] = shared
	r := c.run("policy", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "root") {
		t.Fatalf("policy list: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	want := "lessor: warning: cannot keep the store's generation in " + filepath.Join(shared, "lessor", "generation") + "/"
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], want) ||
		!strings.Contains(lines[0], "directory "+shared+" is writable by group or others (mode 0777)") ||
		!strings.HasPrefix(lines[1], "lessor: hint: set XDG_STATE_HOME") {
		t.Errorf("stderr %q, want a warning starting %q", r.stderr, want)
	}
}
