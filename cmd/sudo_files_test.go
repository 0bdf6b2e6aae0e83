package cmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sudoCaller plays a caller who ran lessor through sudo as the account
// that runs it (the test's own user): another user and group, and sudo
// itself as lessor's parent.
func (c *cli) sudoCaller() {
	c.env["SUDO_UID"] = strconv.Itoa(os.Getuid() + 1)
	c.env["SUDO_GID"] = strconv.Itoa(os.Getgid() + 1)
	c.env["SUDO_USER"] = "caller"
	c.env[testStartedByEnv] = "sudo"
}

// TestSudoCallerReadsOnlyFilesItCouldRead: run through sudo as the
// service account that holds the store, lessor read the files named in a
// command's arguments (key=@file, @file.json, policy write FILE) with the
// service account's rights. A caller whose token may only read
// database/creds/readonly read the unseal key file and the service
// account's token file, which a path-echoing endpoint the default policy
// grants (sys/capabilities-self) sent straight back. Through sudo, lessor
// now reads only a file the user who ran it could read.
func TestSudoCallerReadsOnlyFilesItCouldRead(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	home := c.env["HOME"]
	apps := c.writeFile("apps.hcl", "path \"database/creds/readonly\" {\n  capabilities = [\"read\"]\n}\n")
	c.must("policy", "write", "apps", apps)
	c.env["LESSOR_TOKEN"] = strings.TrimSpace(c.must("token", "create", "-policy=apps", "-field=token"))
	keyFile := filepath.Join(home, ".config", "lessor", "unseal.key")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(key))
	tokenFile := filepath.Join(home, ".lessor-token") // the root token, written by operator init
	rootTok, err := os.ReadFile(tokenFile)
	if err != nil || !strings.HasPrefix(string(rootTok), "lsr_") {
		t.Fatalf("operator init wrote no token file: %v", err)
	}
	pub := c.writeFile("paths.txt", "database/creds/readonly")
	if err := os.Chmod(pub, 0o644); err != nil {
		t.Fatal(err)
	}
	// ... in directories everyone may search, or no one else reaches it.
	for _, d := range []string{home, filepath.Dir(home)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	obj := c.writeFile("paths.json", `{"paths": "database/creds/readonly"}`)

	// The service account itself reads its own files, as before.
	if out := c.must("write", "-format=json", "sys/capabilities-self", "paths=@"+keyFile); !strings.Contains(out, secret) {
		t.Fatalf("the path-echoing endpoint this test relies on no longer echoes: %s", out)
	}

	// Through sudo, from another user: files only the service account
	// can read are refused, and nothing of them is shown.
	c.sudoCaller()
	for _, args := range [][]string{
		{"write", "sys/capabilities-self", "paths=@" + keyFile},
		{"write", "sys/capabilities-self", "paths=@" + tokenFile},
		{"write", "sys/capabilities-self", "@" + obj},
		{"policy", "write", "stolen", keyFile},
	} {
		r := c.fails(1, `is not readable by the user who ran lessor through sudo \(uid \d+\)`, args...)
		if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, string(rootTok)) {
			t.Errorf("lessor %s: the refusal shows the file: %s%s", strings.Join(args, " "), r.stdout, r.stderr)
		}
	}
	// A file the caller could read is read; standard input is the caller's.
	if out := c.must("write", "-format=json", "sys/capabilities-self", "paths=@"+pub); !strings.Contains(out, `"read"`) {
		t.Errorf("a file everyone may read: %s", out)
	}
	// sudo to the same user changes nothing.
	c.env["SUDO_UID"] = strconv.Itoa(os.Getuid())
	c.must("write", "sys/capabilities-self", "@"+obj)
}

// TestSudoCallerDoesNotGetTheAccountsTokenFile: run through sudo as the
// service account, lessor used the account's token file whenever the
// caller's LESSOR_TOKEN did not come through sudo (sudo drops the
// environment by default). That file is shared by every caller, and
// `operator init` puts the root token there: a caller confined by a
// policy that left LESSOR_TOKEN behind acted as root, and one who ran
// `lessor login` handed their token to everyone after them. Through sudo
// the token now comes from LESSOR_TOKEN only.
func TestSudoCallerDoesNotGetTheAccountsTokenFile(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore() // the root token is in the token file, and in LESSOR_TOKEN
	apps := c.writeFile("apps.hcl", "path \"database/creds/readonly\" {\n  capabilities = [\"read\"]\n}\n")
	c.must("policy", "write", "apps", apps)
	appsTok := strings.TrimSpace(c.must("token", "create", "-policy=apps", "-field=token"))
	delete(c.env, "LESSOR_TOKEN")
	// The account itself, run by cron or an operator logged in as it,
	// uses its token file as before.
	c.must("policy", "read", "apps")

	c.sudoCaller()
	r := c.fails(1, `^lessor: error: lessor was run through sudo by another user \(uid \d+\): the token file .* is this account's, not yours; give your token in LESSOR_TOKEN`,
		"policy", "read", "apps")
	if strings.Contains(r.stdout, "database/creds/readonly") {
		t.Errorf("the caller read a policy with the account's root token: %s", r.stdout)
	}
	// With its own token the caller is what its policy says.
	c.env["LESSOR_TOKEN"] = appsTok
	c.fails(2, `permission denied`, "policy", "read", "apps")
	if out := c.must("token", "lookup", "-format=json"); !strings.Contains(out, `"apps"`) {
		t.Errorf("token lookup through sudo: %s", out)
	}
}

// TestSudoLoginDoesNotStoreInTheAccountsTokenFile: through sudo, `lessor
// login` wrote the caller's token into the service account's token file,
// where the account's own jobs (and, before the fix above, every later
// caller) then used it, and where it replaced what the account kept
// there. Through sudo, login now only verifies unless told -no-store.
func TestSudoLoginDoesNotStoreInTheAccountsTokenFile(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	root := c.env["LESSOR_TOKEN"]
	appsTok := strings.TrimSpace(c.must("token", "create", "-policy=default", "-field=token"))
	delete(c.env, "LESSOR_TOKEN")
	tokenFile := filepath.Join(c.env["HOME"], ".lessor-token")

	c.sudoCaller()
	c.fails(1, `^lessor: error: lessor was run through sudo by another user \(uid \d+\): login would store your token in this account's token file`,
		"login", appsTok)
	if b, err := os.ReadFile(tokenFile); err != nil || strings.TrimSpace(string(b)) != root {
		t.Errorf("the account's token file was changed: %q, %v", b, err)
	}
	c.must("login", "-no-store", appsTok)
	if b, err := os.ReadFile(tokenFile); err != nil || strings.TrimSpace(string(b)) != root {
		t.Errorf("the account's token file was changed: %q, %v", b, err)
	}
}

// TestSudoRefusesCommandsNoTokenConfines: run through sudo as the account
// that holds the store, the commands that act with the unseal key and no
// token (operator init, rekey, rotate, verify, migrate, upgrade-schema,
// serve, dev) ran for any caller sudo let in. A rekey to a passphrase the
// caller typed, then a migrate to a database the caller owns, would hand
// over every record. They are refused there; reap, which revokes only
// what is due, is not. From a shell of the account (sudo -iu, which keeps
// SUDO_UID), lessor is the account's, as before.
func TestSudoRefusesCommandsNoTokenConfines(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.initStore()
	delete(c.env, "LESSOR_TOKEN")
	home := c.env["HOME"]
	c.sudoCaller()
	for _, cmd := range []struct {
		name string
		args []string
	}{
		{"operator rekey", []string{"operator", "rekey", "-new-key-file", filepath.Join(home, "new.key")}},
		{"operator rotate", []string{"operator", "rotate"}},
		{"operator verify", []string{"operator", "verify"}},
		{"operator migrate", []string{"operator", "migrate", "-to", filepath.Join(home, "copy.db")}},
		{"operator init", []string{"operator", "init", "-store", filepath.Join(home, "mine.db"), "-key-file", filepath.Join(home, "mine.key")}},
		{"serve", []string{"serve", "-listen", "127.0.0.1:0"}},
		{"dev", []string{"dev"}},
	} {
		c.fails(1, `^lessor: error: `+cmd.name+`: lessor was run through sudo by another user \(uid \d+\), and `+cmd.name+` acts with the store's unseal key`, cmd.args...)
	}
	for _, p := range []string{"new.key", "copy.db", "mine.db", "mine.key"} {
		if _, err := os.Stat(filepath.Join(home, p)); err == nil {
			t.Errorf("a refused command left %s", p)
		}
	}
	c.must("reap")

	// A shell of the account: its parent runs as the account.
	c.env[testStartedByEnv] = "account"
	c.must("operator", "rotate")
	c.must("policy", "read", "default") // with the token file: the account's own
	// And with no seam, lessor reads its parent from /proc: this test's
	// process, of lessor's own user.
	delete(c.env, testStartedByEnv)
	c.must("operator", "verify")
}
