package cmd

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// TestSudoCallerCannotOpenAStoreOfItsOwn: run through sudo as the service
// account, lessor opened whatever file store -store (or LESSOR_STORE)
// named, the caller's own included: one the caller made with its own
// lessor and its own key, where it is root. Its database connections are
// the caller's to configure, and lessor, running as the account, logged
// them in with the account's passfile (~/.pgpass, PGPASSFILE) and client
// certificates. `reap` needs no token, and -dry-run -orphans only reads
// the store (which the account may read but not write), so
//
//	sudo -u svc LESSOR_UNSEAL_KEY=… lessor reap -dry-run -orphans -store=/home/me/mine.db
//
// sent the account's database password to a server the caller ran. A
// file store not the account's (or root's), or one another user could
// swap, is now refused through sudo, as the config file is.
func TestSudoCallerCannotOpenAStoreOfItsOwn(t *testing.T) {
	addr, got := pgtest.CatchPasswords(t)
	// The service account's passfile, with a line for any host.
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:lessor:svc-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", passfile)

	c := newCLI(t) // the service account
	c.initStore()
	delete(c.env, "LESSOR_TOKEN")

	// The caller's own store, made with its own lessor and key, whose
	// connection names the caller's server and no password.
	mine := newCLI(t)
	mine.initStore()
	mine.must("secrets", "enable", "database")
	mine.must("write", "database/config/pg", "plugin_name=postgresql-database-plugin", "allowed_roles=*",
		"connection_url=postgres://lessor@"+addr+"/ops?sslmode=disable", "username=lessor", "verify_connection=false")
	dir := filepath.Join(mine.env["HOME"], ".local", "share", "lessor")
	store := filepath.Join(dir, "lessor.db")
	key, err := os.ReadFile(filepath.Join(mine.env["HOME"], ".config", "lessor", "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	caller := os.Getuid() + 1
	for _, p := range []string{mine.env["HOME"], filepath.Dir(dir), dir, store} {
		if err := os.Chown(p, caller, os.Getgid()+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(store, 0o644); err != nil { // the account may read it
		t.Fatal(err)
	}
	for _, p := range []string{mine.env["HOME"], filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	c.env["SUDO_UID"] = strconv.Itoa(caller)
	c.env["SUDO_GID"] = strconv.Itoa(os.Getgid() + 1)
	c.env["SUDO_USER"] = "caller"
	c.env[testStartedByEnv] = "sudo"
	c.env["LESSOR_UNSEAL_KEY"] = strings.TrimSpace(string(key))
	r := c.run("reap", "-dry-run", "-orphans", "-store="+store)
	select {
	case p := <-got:
		t.Fatalf("the caller's server received the service account's password %q", p)
	default:
	}
	if r.code != 1 || !regexp.MustCompile(`^lessor: error: store .*lessor\.db belongs to uid \d+, not to uid \d+ running lessor or to root: lessor was run through sudo by another user \(uid \d+\)`).MatchString(r.stderr) {
		t.Errorf("reap of the caller's store through sudo: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	c.env["LESSOR_STORE"] = store
	if r := c.run("read", "database/config/pg"); r.code == 0 {
		t.Errorf("LESSOR_STORE through sudo: exit 0: %s", r.stdout)
	}

	// The account's own store, through sudo, opens as before.
	delete(c.env, "LESSOR_STORE")
	delete(c.env, "LESSOR_UNSEAL_KEY")
	c.must("reap", "-dry-run")
}

// TestSudoCallerCannotEnableAnAuditDevice: run through sudo as the
// service account, `lessor audit enable file file_path=…` (or a write to
// sys/audit/NAME) had lessor, and every later run of it, append JSON
// lines as the account to any file the account may write: its ~/.bashrc
// or ~/.bash_profile, whose next shell (sudo -iu ACCOUNT, as operators
// are told to run) expands a $(…) the caller put in a request path. A
// token whose policy grants only sys/audit thus ran commands as the
// account, which reads the unseal key. Through sudo, enabling an audit
// device is refused: the account enables it itself.
func TestSudoCallerCannotEnableAnAuditDevice(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	root := c.env["LESSOR_TOKEN"]
	auditor := c.writeFile("auditor.hcl", "path \"sys/audit/*\" {\n  capabilities = [\"create\", \"update\", \"sudo\"]\n}\n")
	c.must("policy", "write", "auditor", auditor)
	c.env["LESSOR_TOKEN"] = strings.TrimSpace(c.must("token", "create", "-policy=auditor", "-field=token"))
	profile := filepath.Join(c.env["HOME"], ".bash_profile")

	c.sudoCaller()
	for _, args := range [][]string{
		{"audit", "enable", "file", "file_path=" + profile, "mode=0644"},
		{"write", "sys/audit/f2", "type=file", "file_path=" + profile},
		{"write", "/sys/audit/f3/", "type=file", "file_path=" + profile},
	} {
		c.fails(1, `lessor was run through sudo by another user \(uid \d+\), and an audit device writes as this account`, args...)
	}
	c.run("read", "secret/$(id)")
	if b, err := os.ReadFile(profile); err == nil {
		t.Fatalf("the caller had lessor write %s as the account:\n%s", profile, b)
	}
	// The account itself finds none, and enables one, as before.
	delete(c.env, "SUDO_UID")
	c.env["LESSOR_TOKEN"] = root
	if out := c.must("audit", "list", "-format=json"); strings.Contains(out, "file_path") {
		t.Errorf("an audit device was enabled through sudo: %s", out)
	}
	c.must("audit", "enable", "file", "file_path="+filepath.Join(c.env["HOME"], "audit.log"))
}

// searchableHome lets every user search the test's home and the
// directory above it, as a home usually is (0711), so that only what is
// placed inside decides what a sudo caller reaches.
func (c *cli) searchableHome(t *testing.T) {
	t.Helper()
	for _, d := range []string{c.env["HOME"], filepath.Dir(c.env["HOME"])} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}

// refusesArgFiles checks that lessor, run by a sudo caller, refuses to
// read each of paths given as key=@file, and shows none of "app-secret"
// (what the tests put in them).
func (c *cli) refusesArgFiles(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		r := c.fails(1, `is not readable by the user who ran lessor through sudo \(uid \d+\)`, "write", "sys/capabilities-self", "paths=@"+p)
		if strings.Contains(r.stdout+r.stderr, "app-secret") {
			t.Errorf("the refusal shows the file: %s%s", r.stdout, r.stderr)
		}
	}
}

// readsArgFile checks that lessor reads path, which holds
// "database/creds/readonly", given as key=@file.
func (c *cli) readsArgFile(t *testing.T, path string) {
	t.Helper()
	if out := c.must("write", "-format=json", "sys/capabilities-self", "paths=@"+path); !strings.Contains(out, "database/creds/readonly") {
		t.Errorf("a file the caller can reach: %s", out)
	}
}

// TestSudoCallerCannotReadThroughTheAccountsPrivateDirectories: through
// sudo, lessor read a file named in the arguments when its own mode let
// the caller read it, though the caller could not reach it: a 0644 file
// (a config the account keeps its database password in, written with the
// usual umask) in the account's 0700 home or ~/.config. Whoever cannot
// search a directory on the way cannot read the file, and now neither
// does lessor for them.
func TestSudoCallerCannotReadThroughTheAccountsPrivateDirectories(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	private := filepath.Join(c.env["HOME"], "app")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(private, "db.conf")
	if err := os.WriteFile(secret, []byte("password=app-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	// A link the caller could make in a directory of its own leads to
	// the same file.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(c.env["HOME"], "public")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	c.searchableHome(t)
	pub := filepath.Join(open, "paths.txt")
	if err := os.WriteFile(pub, []byte("database/creds/readonly"), 0o644); err != nil {
		t.Fatal(err)
	}

	c.sudoCaller()
	c.refusesArgFiles(t, secret, link)
	// A file the caller can reach, through directories it may search,
	// is read.
	c.readsArgFile(t, pub)
}

// TestSudoHintDoesNotAskForSETENV: the refusal of the account's token
// file told operators to let callers pass LESSOR_TOKEN with
// `sudo LESSOR_TOKEN=… -u ACCOUNT lessor` ("needs SETENV"). A SETENV
// rule lets the caller set any variable, unchecked by env_check and
// env_delete: SUDO_UID=<the account's uid> (lessor then takes the caller
// for the account and uses its token file, the root token), LD_PRELOAD
// for a lessor built with cgo, HOME. The hint now names env_keep for
// LESSOR_TOKEN alone, and warns off SETENV.
func TestSudoHintDoesNotAskForSETENV(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	delete(c.env, "LESSOR_TOKEN")
	c.sudoCaller()
	r := c.fails(1, `is this account's, not yours`, "policy", "read", "default")
	if strings.Contains(r.stderr, "needs SETENV") || !strings.Contains(r.stderr, `env_keep += "LESSOR_TOKEN"`) || !strings.Contains(r.stderr, "not SETENV") {
		t.Errorf("the hint: %s", r.stderr)
	}
	// What SETENV would let a caller do: claim to be the account.
	c.env["SUDO_UID"] = strconv.Itoa(os.Getuid())
	c.must("policy", "read", "default")
}

// TestSudoCallerCannotRunTheBuildGenerator: `lessor __generate
// completions|systemd DIR`, a build step hidden from help, ran through
// sudo for any caller and wrote its files as the account, following
// links: with DIR/lessor.bash a link the caller made to the account's
// unseal key, it replaced the key with a completion script, and the
// store with it, for good, with no token at all. Through sudo it is
// refused.
func TestSudoCallerCannotRunTheBuildGenerator(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	delete(c.env, "LESSOR_TOKEN")
	keyFile := filepath.Join(c.env["HOME"], ".config", "lessor", "unseal.key")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // the caller's
	if err := os.Symlink(keyFile, filepath.Join(dir, "lessor.bash")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keyFile, filepath.Join(dir, "lessor-reap.service")); err != nil {
		t.Fatal(err)
	}
	c.sudoCaller()
	for _, what := range []string{"completions", "systemd"} {
		r := c.run("__generate", what, dir)
		if b, err := os.ReadFile(keyFile); err != nil || string(b) != string(key) {
			t.Fatalf("__generate %s through sudo replaced the unseal key: %.60q", what, b)
		}
		if r.code != 1 || !strings.Contains(r.stderr, "lessor was run through sudo by another user") {
			t.Errorf("__generate %s through sudo: exit %d: %s", what, r.code, r.stderr)
		}
	}
	c.must("operator", "status")
}

// TestSudoCallerCannotReadPastAnACLThatDeniesIt: through sudo, lessor
// judged a file named in the arguments by its mode bits alone, so a file
// or directory everyone may read but whose POSIX ACL denies the caller
// (setfacl -m u:caller:---) was read and echoed for the caller all the
// same. The ACL now counts, as the kernel counts it.
func TestSudoCallerCannotReadPastAnACLThatDeniesIt(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	c.searchableHome(t)
	caller := uint32(os.Getuid() + 1)
	deny := func(path string, perm uint16) {
		t.Helper()
		// An access ACL: user::rw(x), user:caller:---, group::r(x),
		// mask::r(x), other::r(x), in the kernel's xattr format.
		raw := binary.LittleEndian.AppendUint32(nil, 2)
		for _, e := range []struct {
			tag, perm uint16
			id        uint32
		}{{0x01, perm | 2, ^uint32(0)}, {0x02, 0, caller}, {0x04, perm, ^uint32(0)}, {0x10, perm, ^uint32(0)}, {0x20, perm, ^uint32(0)}} {
			raw = binary.LittleEndian.AppendUint16(raw, e.tag)
			raw = binary.LittleEndian.AppendUint16(raw, e.perm)
			raw = binary.LittleEndian.AppendUint32(raw, e.id)
		}
		if err := unix.Setxattr(path, "system.posix_acl_access", raw, 0); err != nil {
			t.Skipf("no POSIX ACLs here: %v", err)
		}
	}
	for _, d := range []string{"public", "closed"} {
		if err := os.Mkdir(filepath.Join(c.env["HOME"], d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	denied := c.writeFile("public/denied.conf", "password=app-secret")
	inside := c.writeFile("closed/db.conf", "password=app-secret")
	pub := c.writeFile("public/paths.txt", "database/creds/readonly")
	for _, f := range []string{denied, inside, pub} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deny(denied, 4)
	deny(filepath.Dir(inside), 5)

	c.sudoCaller()
	c.refusesArgFiles(t, denied, inside)
	// Beside them, a file without an ACL is read as before.
	c.readsArgFile(t, pub)
}

// TestSudoCallerCannotLogInWithTheAccountsPgpass: through sudo, a
// connection written with no password logged in with the one the
// account's ~/.pgpass holds (the store's own login's, as operators are
// told to keep it there), for whoever may write database/config. A
// config write through sudo needs its own password.
func TestSudoCallerCannotLogInWithTheAccountsPgpass(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	c.must("secrets", "enable", "database")
	c.sudoCaller()
	c.fails(2, `password is required through lessor serve or sudo`, "write", "database/config/pg",
		"plugin_name=postgresql-database-plugin", "verify_connection=false", "connection_url=postgresql://admin@127.0.0.1:1/x")
	c.fails(2, `connection_url may not set sslkey`, "write", "database/config/pg", "plugin_name=postgresql-database-plugin",
		"verify_connection=false", "password=x", "connection_url=postgresql://admin@127.0.0.1:1/x?sslkey="+filepath.Join(c.env["HOME"], "k"))
	// The account itself may: its ~/.pgpass is its own.
	delete(c.env, "SUDO_UID")
	c.must("write", "database/config/pg", "plugin_name=postgresql-database-plugin", "verify_connection=false", "connection_url=postgresql://admin@127.0.0.1:1/x")
}
