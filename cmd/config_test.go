package cmd

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestConfigErrorsNeverQuoteTheFile points LESSOR_CONFIG at files that are
// not config files — a token file, a key file, YAML that quotes its own
// values in errors — and checks that the error names the file (and the
// line, where there is one) and shows nothing of what is in it.
func TestConfigErrorsNeverQuoteTheFile(t *testing.T) {
	const secret = "Qz7xWv3KpN9d"
	cases := []struct {
		name, content, want string
	}{
		{"token file", "lsr_" + secret + "\n", `: line 1: not a mapping of settings \(key: value\)$`},
		{"key file", "\n" + secret + "==\n", `: line 2: not a mapping of settings \(key: value\)$`},
		{"list", "- " + secret + "\n", `: line 1: not a mapping of settings \(key: value\)$`},
		{"unknown key", "store: /x\n" + secret + ": 1\n", `: line 2: unknown key \(known: store, key_file, format, .*\)$`},
		{"key with colon", secret + ":" + secret + ": x\n", `: line 1: unknown key \(known: .*\)$`},
		{"nested value", "format: json\nstore: {" + secret + ": b}\n", `: line 2: store must be a single value$`},
		{"list value", "store: [" + secret + "]\n", `: line 1: store must be a single value$`},
		{"twice", "store: /" + secret + "\nSTORE: /x\n", `: line 2: store is set twice$`},
		{"unknown anchor", "store: *" + secret + "\n", `: line 1: not valid YAML$|: not valid YAML$`},
		{"unterminated", "format: json\nstore: \"" + secret + "\n", `: line \d+: not valid YAML$`},
		{"binary tag", "store: !!int /" + secret + "\n", `: not a valid config file$`},
		{"relative path", "ca_cert: " + secret + ".pem\n", `: line 1: ca_cert must be an absolute path \(or start with ~/\): a relative one would be looked up in whatever directory lessor runs in$`},
		{"store password", "store: postgres://u:" + secret + "@h/db\n", `: line 1: store holds a password, which may not be in the config file; put it in ~/.pgpass or PGPASSFILE$`},
		{"store keyword password", "store: host=h password=" + secret + "\n", `: line 1: store holds a password, which may not be in the config file; put it in ~/.pgpass or PGPASSFILE$`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			path := filepath.Join(c.env["HOME"], "not-a-config")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			c.env["LESSOR_CONFIG"] = path
			r := c.run("operator", "status")
			msg := strings.TrimSpace(strings.SplitN(r.stderr, "\n", 2)[0])
			prefix := "lessor: error: config file " + path
			if r.code == 0 || !strings.HasPrefix(msg, prefix) {
				t.Fatalf("exit %d, stderr %q: want an error starting %q", r.code, r.stderr, prefix)
			}
			if !regexp.MustCompile(tc.want).MatchString(msg) {
				t.Errorf("stderr %q does not match %q", msg, tc.want)
			}
			rest := strings.ReplaceAll(r.stderr, path, "")
			for i := 0; i+4 <= len(secret); i++ {
				if strings.Contains(rest, secret[i:i+4]) {
					t.Errorf("stderr %q shows %q from the file", r.stderr, secret[i:i+4])
				}
			}
		})
	}

	// A good file still works, case-folded keys included.
	c := newCLI(t)
	path := filepath.Join(c.env["HOME"], "config.yaml")
	if err := os.WriteFile(path, []byte("# comment\nFormat: json\nstore: "+filepath.Join(c.env["HOME"], "s.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.env["LESSOR_CONFIG"] = path
	// Exit 2: the store is not initialised; the output is JSON as asked.
	if r := c.run("operator", "status"); r.stderr != "" || !strings.Contains(r.stdout, `"initialized": false`) {
		t.Errorf("good config: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestConfigFileOthersCanChangeIsRefused: a config file decides which store,
// key file and server lessor uses, so one that another user owns, or could
// swap for another file through a directory they can change, is refused
// before any of its settings are used; a private file in a private
// directory, even under a sticky world-writable one, is read.
func TestConfigFileOthersCanChangeIsRefused(t *testing.T) {
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
	write := func(dir string) string {
		t.Helper()
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte("format: json\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	status := func(path string) cliResult {
		c := newCLI(t)
		c.env["LESSOR_CONFIG"] = path
		return c.run("operator", "status")
	}
	accepted := func(name, path string) {
		t.Helper()
		if r := status(path); r.stderr != "" || !strings.Contains(r.stdout, `"initialized": false`) {
			t.Errorf("%s: exit %d\nstdout %s\nstderr %s", name, r.code, r.stdout, r.stderr)
		}
	}
	refused := func(name, path, want string) {
		t.Helper()
		r := status(path)
		if r.code != 1 || r.stdout != "" || !regexp.MustCompile(want).MatchString(r.stderr) {
			t.Errorf("%s: exit %d\nstdout %s\nstderr %q\nwant exit 1 and stderr matching %q", name, r.code, r.stdout, r.stderr, want)
		}
	}

	private := mkdir("private", 0o700)
	accepted("private file", write(private))

	sticky := mkdir("sticky", 0o777|os.ModeSticky)
	accepted("own file in a sticky directory", write(sticky))

	open := mkdir("open", 0o777)
	p := write(open)
	refused("world-writable directory", p, `^lessor: error: config file `+regexp.QuoteMeta(p)+`: directory `+regexp.QuoteMeta(open)+
		` is writable by group or others \(mode 0777\): another user could replace the files lessor keeps there\n`+
		`lessor: hint: keep the config file in a directory only you \(or root\) can change, as ~/.config/lessor\n$`)

	under := mkdir("open/private", 0o700)
	refused("under a world-writable directory", write(under), `directory `+regexp.QuoteMeta(open)+` is writable by group or others`)

	// A link in a private directory to a file in a directory others can
	// change: they could swap the file the link resolves to.
	link := filepath.Join(private, "link.yaml")
	if err := os.Symlink(filepath.Join(open, "config.yaml"), link); err != nil {
		t.Fatal(err)
	}
	refused("link into a world-writable directory", link, `^lessor: error: config file `+regexp.QuoteMeta(link)+`: directory `+regexp.QuoteMeta(open)+` is writable by group or others`)

	symlink := func(target, name string) string {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
		return name
	}
	// Links from private directories to a private file: fine.
	own := filepath.Join(private, "config.yaml")
	accepted("chain of links within private directories",
		symlink(symlink(own, filepath.Join(private, "hop.yaml")), filepath.Join(private, "chain.yaml")))
	// A chain that starts and ends in private directories but passes
	// through a link others can re-point.
	hop := symlink(own, filepath.Join(open, "hop.yaml"))
	chain := symlink(hop, filepath.Join(private, "via-open.yaml"))
	refused("chain through a link in a world-writable directory", chain,
		`^lessor: error: config file `+regexp.QuoteMeta(chain)+`: directory `+regexp.QuoteMeta(open)+` is writable by group or others`)
	// ".." after a link to a directory goes up from where the link led,
	// as the kernel resolves it, not from where the name was.
	mkdir("open/inner", 0o700)
	symlink(filepath.Join(open, "inner"), filepath.Join(private, "inner"))
	up := filepath.Join(private, "inner") + "/../config.yaml"
	refused("'..' after a link into a world-writable directory", up,
		`^lessor: error: config file `+regexp.QuoteMeta(up)+`: directory `+regexp.QuoteMeta(open)+` is writable by group or others`)

	if os.Geteuid() != 0 {
		t.Log("not root: files and directories of another user are not tested")
		return
	}
	nobody := mkdir("nobody", 0o755)
	p = write(nobody)
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refused("directory of another user", p, `: directory `+regexp.QuoteMeta(nobody)+` belongs to uid 65534, not to uid 0 running lessor or to root: `)

	theirs := write(mkdir("theirs", 0o700))
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refused("file of another user", theirs, `^lessor: error: config file `+regexp.QuoteMeta(theirs)+
		` belongs to uid 65534, not to uid 0 running lessor or to root: another user could change lessor's settings\n`+
		`lessor: hint: use a config file of your own \(-config, LESSOR_CONFIG\)\n$`)
}

// TestConfigFileSecretsAreRefused: the unseal key and a token belong in
// their 0600 files or the environment, not in the config file; the error
// names the line and where the secret belongs and shows nothing of it.
func TestConfigFileSecretsAreRefused(t *testing.T) {
	t.Parallel()
	const secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U="
	for _, tc := range []struct{ content, want string }{
		{"format: json\nunseal_key: " + secret + "\n", `line 2: unseal_key is a secret and may not be in the config file; keep the unseal key in a key file \(-key-file, LESSOR_KEY_FILE\) or give it in LESSOR_UNSEAL_KEY$`},
		{"UNSEAL_KEY: " + secret + "\n", `line 1: unseal_key is a secret`},
		{"token: lsr_" + secret + "\n", "line 1: token is a secret and may not be in the config file; keep the token in the token file \\(`lessor login`, LESSOR_TOKEN_FILE\\) or give it in LESSOR_TOKEN$"},
		{"Token: lsr_" + secret + "\n", `line 1: token is a secret`},
	} {
		c := newCLI(t)
		path := c.writeFile("config.yaml", tc.content)
		c.env["LESSOR_CONFIG"] = path
		r := c.run("operator", "status")
		msg := strings.TrimSuffix(r.stderr, "\n")
		if r.code != 1 || r.stdout != "" || strings.Contains(msg, "\n") ||
			!strings.HasPrefix(msg, "lessor: error: config file "+path+": ") || !regexp.MustCompile(tc.want).MatchString(msg) {
			t.Errorf("%q: exit %d\nstdout %s\nstderr %q\nwant exit 1 and one line matching %q", tc.content, r.code, r.stdout, r.stderr, tc.want)
		}
		if strings.Contains(r.stderr, secret[:8]) {
			t.Errorf("%q: the error shows the secret: %q", tc.content, r.stderr)
		}
	}
}

// TestHomeUnsetNeverMeansTheWorkingDirectory: with HOME unset (or empty)
// lessor takes the home directory from the caller's passwd entry, not from
// the directory it was started in, where another user may have left a
// config file naming their store; with no passwd entry either, it refuses
// in one line. lessor runs as other OS users here, so the test needs root.
func TestHomeUnsetNeverMeansTheWorkingDirectory(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	plant := func(s *devSandbox) string {
		t.Helper()
		planted := filepath.Join(s.home, "planted.db")
		dir := filepath.Join(s.home, ".config", "lessor")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(cfg, []byte("format: json\nstore: "+planted+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Join(s.home, ".config"), dir, cfg} {
			if err := os.Chown(p, int(s.u.cred.Uid), int(s.u.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
		return planted
	}

	t.Run("passwd entry", func(t *testing.T) {
		u, err := user.LookupId("65534")
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			t.Skipf("no passwd entry with a home directory for uid 65534: %v", err)
		}
		s := newDevSandbox(t, devUser{name: "nobody", uid: 65534, cred: nobodyCred})
		planted := plant(s)
		// The run starts in the sandbox's home, where the planted
		// .config/lessor/config.yaml is; exit 2: no store.
		o, e, _ := s.run(t, []string{"HOME=", "XDG_CONFIG_HOME=", "XDG_DATA_HOME="}, "operator", "status", "-format=yaml")
		want := "store_path: " + filepath.Join(u.HomeDir, ".local", "share", "lessor", "lessor.db")
		if !strings.Contains(o, want) || strings.Contains(o, planted) {
			t.Errorf("HOME unset: stdout %q, stderr %q: want %q, from the passwd entry", o, e, want)
		}
	})

	t.Run("no passwd entry", func(t *testing.T) {
		uid := 54321
		for ; ; uid++ {
			if _, err := user.LookupId(strconv.Itoa(uid)); err != nil {
				break
			}
		}
		s := newDevSandbox(t, devUser{name: "unlisted", uid: uid, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}})
		planted := plant(s)
		o, e, err := s.run(t, []string{"HOME="}, "operator", "status")
		want := fmt.Sprintf("lessor: error: HOME is not set to an absolute path and uid %d has no passwd entry to take a home directory from; set HOME\n", uid)
		if err == nil || o != "" || e != want {
			t.Errorf("HOME unset, no passwd entry: %v\nstdout %q\nstderr %q\nwant exit 1 and stderr %q", err, o, e, want)
		}
		// A relative HOME is no better: it too names the working directory.
		if o, e, err := s.run(t, []string{"HOME=."}, "operator", "status"); err == nil || o != "" || e != want {
			t.Errorf("HOME=.: %v\nstdout %q\nstderr %q\nwant exit 1 and stderr %q", err, o, e, want)
		}
		if _, err := os.Stat(planted); err == nil {
			t.Errorf("lessor created the store the planted config names")
		}
	})
}
