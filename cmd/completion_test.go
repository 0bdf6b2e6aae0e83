package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// compCLI runs lessor in-process with its own HOME and environment only.
type compCLI struct {
	t   *testing.T
	env map[string]string
}

func newCompCLI(t *testing.T) *compCLI {
	return &compCLI{t: t, env: map[string]string{"HOME": t.TempDir()}}
}

func (c *compCLI) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := newFactory(strings.NewReader(""), &out, &errb, func(k string) string { return c.env[k] })
	f.ReadPassword = func(prompt string) ([]byte, error) {
		c.t.Errorf("lessor %s prompted %q", strings.Join(args, " "), prompt)
		return nil, errNoPrompt
	}
	code = run(context.Background(), f, args)
	return out.String(), errb.String(), code
}

func (c *compCLI) must(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("lessor %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (c *compCLI) file(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.env["HOME"], name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// complete asks cobra's __complete for the candidates of the command line
// (its last word is the one being completed) and returns stdout whole:
// one candidate a line, then ":<directive>".
func (c *compCLI) complete(words ...string) string {
	c.t.Helper()
	return c.must(append([]string{"__complete"}, words...)...)
}

// storeWithRoles makes a key-file store, holding the database engine with
// roles readonly and writer (written without connecting to PostgreSQL),
// and the policy apps; the root token is in the token file.
func storeWithRoles(t *testing.T) *compCLI {
	c := newCompCLI(t)
	c.must("operator", "init")
	c.must("secrets", "enable", "database")
	for _, role := range []string{"writer", "readonly"} {
		c.must("write", "database/roles/"+role, "db_name=postgresql",
			"creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';")
	}
	c.must("policy", "write", "apps", c.file("apps.hcl", `path "database/creds/readonly" { capabilities = ["read"] }`))
	return c
}

func TestCompleteCredsRoles(t *testing.T) {
	c := storeWithRoles(t)
	if got, want := c.complete("read", "database/creds/"), "database/creds/readonly\ndatabase/creds/writer\n:4\n"; got != want {
		t.Errorf("complete read database/creds/:\n got %q\nwant %q", got, want)
	}
	if got, want := c.complete("read", "database/creds/r"), "database/creds/readonly\n:4\n"; got != want {
		t.Errorf("complete read database/creds/r:\n got %q\nwant %q", got, want)
	}
}

func TestCompletePathsAndPolicies(t *testing.T) {
	c := storeWithRoles(t)
	for _, tc := range []struct {
		words []string
		want  string
	}{
		// Mount paths, then a mount's fixed paths; directories take no space.
		{[]string{"read", ""}, "database/\nsys/\n:6\n"},
		{[]string{"write", "d"}, "database/\n:6\n"},
		{[]string{"read", "database/"}, "database/config/\ndatabase/creds/\ndatabase/reset/\ndatabase/roles/\ndatabase/rotate-role/\ndatabase/rotate-root/\ndatabase/static-creds/\ndatabase/static-roles/\n:6\n"},
		{[]string{"delete", "database/roles/"}, "database/roles/readonly\ndatabase/roles/writer\n:4\n"},
		{[]string{"list", "sys/policy/"}, "sys/policy/apps\nsys/policy/default\nsys/policy/root\n:4\n"},
		// Only the PATH argument is completed; KEY=VALUE data is not.
		{[]string{"write", "database/roles/readonly", ""}, ":4\n"},
		// No lease has been issued.
		{[]string{"lease", "revoke", ""}, ":4\n"},
		// Policy names, but not root, which cannot be read, written or attached.
		{[]string{"policy", "read", ""}, "apps\ndefault\n:4\n"},
		{[]string{"policy", "delete", "a"}, "apps\n:4\n"},
		{[]string{"token", "create", "-policy="}, "apps\ndefault\n:4\n"},
		{[]string{"token", "create", "-policy", "apps,d"}, "apps,default\n:4\n"},
		// Mount paths of the secrets commands, without sys.
		{[]string{"secrets", "disable", ""}, "database\n:4\n"},
		{[]string{"secrets", "move", "database", ""}, ":4\n"},
	} {
		if got := c.complete(tc.words...); got != tc.want {
			t.Errorf("complete %q:\n got %q\nwant %q", tc.words, got, tc.want)
		}
	}
	// policy write NAME FILE: the FILE is the shell's to complete.
	if got, want := c.complete("policy", "write", "apps", ""), ":0\n"; got != want {
		t.Errorf("complete policy write apps FILE: got %q, want %q", got, want)
	}
}

// Completion offers nothing, and never prompts (compCLI fails the test on a
// prompt), when it would need a passphrase, has no token, or the key is
// wrong.
func TestCompleteOffersNothingWithoutFreeAccess(t *testing.T) {
	c := newCompCLI(t)
	c.env["LESSOR_PASSPHRASE_FILE"] = c.file("passphrase", "correct horse battery staple\n")
	c.must("operator", "init", "-passphrase")
	c.must("secrets", "enable", "database")
	// The passphrase file would unseal it, but at the cost of an Argon2id
	// stretch per TAB.
	if got := c.complete("read", ""); got != ":4\n" {
		t.Errorf("passphrase store: complete read gave %q", got)
	}
	delete(c.env, "LESSOR_PASSPHRASE_FILE")
	if got := c.complete("read", ""); got != ":4\n" {
		t.Errorf("passphrase store without a passphrase file: complete read gave %q", got)
	}

	c = storeWithRoles(t)
	if err := os.Remove(filepath.Join(c.env["HOME"], ".lessor-token")); err != nil {
		t.Fatal(err)
	}
	if got := c.complete("read", "database/creds/"); got != ":4\n" {
		t.Errorf("no token: complete gave %q", got)
	}
	c.env["LESSOR_TOKEN"] = "lsr_not-a-token"
	if got := c.complete("read", "database/creds/"); got != ":4\n" {
		t.Errorf("bad token: complete gave %q", got)
	}

	c = storeWithRoles(t)
	otherKey := filepath.Join(c.env["HOME"], "other.key")
	c.must("operator", "init", "-store="+filepath.Join(c.env["HOME"], "other.db"), "-key-file="+otherKey, "-no-store-token")
	if got := c.complete("read", "-key-file="+otherKey, "database/creds/"); got != ":4\n" {
		t.Errorf("wrong -key-file: complete gave %q", got)
	}
	if got, want := c.complete("read", "database/creds/"), "database/creds/readonly\ndatabase/creds/writer\n:4\n"; got != want {
		t.Errorf("right key: complete gave %q, want %q", got, want)
	}
}

// The store named on the line being completed is the one asked.
func TestCompleteUsesStoreFlag(t *testing.T) {
	c := storeWithRoles(t)
	home := c.env["HOME"]
	moved := filepath.Join(home, "elsewhere.db")
	if err := os.Rename(filepath.Join(home, ".local/share/lessor/lessor.db"), moved); err != nil {
		t.Fatal(err)
	}
	if got := c.complete("read", "database/creds/"); got != ":4\n" {
		t.Errorf("no store at the default path: got %q", got)
	}
	if got, want := c.complete("read", "-store="+moved, "database/creds/w"), "database/creds/writer\n:4\n"; got != want {
		t.Errorf("complete with -store: got %q, want %q", got, want)
	}
}

// The acceptance test: bash itself, with the generated script,
// completes `lessor read database/creds/` to the role names. The script
// runs the lessor on PATH, which testscript.Main made this test binary.
func TestBashCompletesCredsRoles(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	if p, err := exec.LookPath("lessor"); err != nil || !strings.Contains(p, "testscript-main") {
		t.Fatalf("lessor on PATH is %q (%v), not this test binary", p, err)
	}
	c := storeWithRoles(t)
	script := c.file("lessor.bash", c.must("completion", "bash"))
	// The script relies on the bash-completion package, as on any
	// distribution; where it is missing, a shim of the one function the
	// script uses stands in, splitting words as bash itself does.
	driver := `if [ -r /usr/share/bash-completion/bash_completion ]; then
	source /usr/share/bash-completion/bash_completion
else
	_get_comp_words_by_ref() {
		words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
		cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
	}
fi
source "$1"
line="lessor read database/creds/"
COMP_LINE=$line
COMP_POINT=${#line}
COMP_WORDS=(lessor read database/creds/)
COMP_CWORD=2
COMP_TYPE=9
__start_lessor
printf '%s\n' "${COMPREPLY[@]}"
`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", driver, "driver", script)
	cmd.Env = []string{"HOME=" + c.env["HOME"], "PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
		case <-done:
		}
	}()
	out, err := cmd.Output()
	close(done)
	if err != nil {
		t.Fatalf("bash: %v\nstderr: %s", err, stderr.String())
	}
	if got, want := string(out), "database/creds/readonly\ndatabase/creds/writer\n"; got != want {
		t.Errorf("bash completion of `lessor read database/creds/`:\n got %q\nwant %q\nstderr: %s", got, want, stderr.String())
	}
}

// storeWithCredential is storeWithRoles with a connection to a fresh
// database and one live credential of role readonly, revoked (and its
// role dropped) at cleanup; it returns the database's name and the lease id.
func storeWithCredential(t *testing.T) (c *compCLI, dbName, leaseID string) {
	t.Helper()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	c = storeWithRoles(t)
	c.must("write", "database/config/postgresql", "plugin_name=postgresql-database-plugin", "allowed_roles=*",
		"connection_url=postgres://{{username}}:{{password}}@"+srv.Host+":"+strconv.Itoa(srv.Port)+"/"+db.Name+"?sslmode=disable",
		"username="+srv.User, "password=@"+c.file("admin-password", srv.Password))
	var cred struct {
		LeaseID string `json:"lease_id"`
		Data    struct{ Username string }
	}
	if err := json.Unmarshal([]byte(c.must("read", "-format=json", "database/creds/readonly")), &cred); err != nil {
		t.Fatal(err)
	}
	srv.DropRolesAtCleanup(t, cred.Data.Username)
	t.Cleanup(func() { c.run("lease", "revoke", "-prefix", "database/creds") })
	return c, db.Name, cred.LeaseID
}

// Lease ids complete one path segment at a time, down to the id.
func TestCompleteLeaseIDs(t *testing.T) {
	c, _, leaseID := storeWithCredential(t)
	cred := struct{ LeaseID string }{leaseID}
	id := strings.TrimPrefix(cred.LeaseID, "database/creds/readonly/")
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"lease", "revoke", ""}, "database/\n:6\n"},
		{[]string{"lease", "revoke", "-prefix", "database/"}, "database/creds/\n:6\n"},
		{[]string{"lease", "lookup", "database/creds/"}, "database/creds/readonly/\n:6\n"},
		{[]string{"renew", "database/creds/readonly/"}, cred.LeaseID + "\n:4\n"},
		{[]string{"lease", "renew", "database/creds/readonly/" + id[:3]}, cred.LeaseID + "\n:4\n"},
		{[]string{"lease", "renew", "database/creds/writer/"}, ":4\n"},
		{[]string{"lease", "list", "database/creds/"}, "database/creds/readonly/\n:6\n"},
	} {
		if got := c.complete(tc.words...); got != tc.want {
			t.Errorf("complete %q:\n got %q\nwant %q", tc.words, got, tc.want)
		}
	}
}

// completions/ holds exactly what `lessor __generate completions` writes.
func TestCompletionFilesUpToDate(t *testing.T) {
	dir := t.TempDir()
	c := newCompCLI(t)
	c.must("__generate", "completions", dir)
	for _, name := range completionFiles {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "completions", name))
		if err != nil {
			t.Errorf("completions/%s: %v; run `go run . __generate completions completions`", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("completions/%s is stale; run `go run . __generate completions completions`", name)
		}
		if !bytes.Contains(want, []byte("__complete")) {
			t.Errorf("completions/%s does not ask lessor for dynamic completions", name)
		}
	}
	entries, err := os.ReadDir(filepath.Join("..", "completions"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(completionFiles) {
		t.Errorf("completions/ has %d files, want %d (%v)", len(entries), len(completionFiles), completionFiles)
	}
}

// TestStorePasswordRefusedInEveryValue: every -store and -to given is in
// the process's arguments, not only the last, which is the one used; a
// password in any of them is refused, and a TAB press on such a line
// connects nowhere with it.
func TestStorePasswordRefusedInEveryValue(t *testing.T) {
	c := storeWithRoles(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dialled := make(chan struct{}, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dialled <- struct{}{}
			conn.Close()
		}
	}()
	const secret = "Secr3tPw"
	withPassword := "postgres://u:" + secret + "@" + ln.Addr().String() + "/db?sslmode=disable&connect_timeout=2"
	file := filepath.Join(c.env["HOME"], ".local/share/lessor/lessor.db")
	for _, args := range [][]string{
		{"read", "-store=" + withPassword, "-store=" + file, "database/roles/writer"},
		{"read", "--store", withPassword, "--store", file, "database/roles/writer"},
		{"operator", "migrate", "-to=" + withPassword, "-to=" + filepath.Join(c.env["HOME"], "copy.db")},
	} {
		_, stderr, code := c.run(args...)
		if code != 1 || !strings.Contains(stderr, "holds a password, which every local user can read") || strings.Contains(stderr, secret) {
			t.Errorf("lessor %s: exit %d, %s", strings.Join(args, " "), code, stderr)
		}
	}
	if got := c.complete("read", "-store="+withPassword, "database/creds/"); got != ":4\n" {
		t.Errorf("complete with a password in -store: %q", got)
	}
	select {
	case <-dialled:
		t.Error("a command or a completion connected with the password it was given")
	default:
	}
	if _, err := os.Stat(filepath.Join(c.env["HOME"], "copy.db")); err == nil {
		t.Error("migrate copied the store")
	}
}
