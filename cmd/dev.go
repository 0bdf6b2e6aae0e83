package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/devcluster"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// devState is what `lessor dev` records in its directory so that a later
// `lessor dev` and `lessor dev -stop` find what it made. It holds paths
// and a port, never a secret.
//
// The default directory has a predictable name in a $TMPDIR that may be
// shared, so another local user may have made it first. Nothing in it is
// trusted unless the directory is the caller's alone (readDevState), and
// the paths it records are checked against the ones dev derives: the store,
// key and token files lie in the directory; the cluster directory is a
// "lessor-dev-pg-" directory of the caller's (outside, because the server's
// OS user must reach it: see devcluster), which devcluster.Stop verifies.
type devState struct {
	Store      string `json:"store"`
	KeyFile    string `json:"key_file"`
	TokenFile  string `json:"token_file"`
	ClusterDir string `json:"cluster_dir,omitempty"`
	Port       int    `json:"port,omitempty"`
	// External is set when the database engine points at a server that
	// dev did not start: -stop must then revoke the leases itself.
	External bool `json:"external,omitempty"`
}

const (
	devStateFile = "dev.json"
	// devRootTokenFile keeps the root token apart from the token file,
	// which `lessor login` may overwrite, so that -stop can still revoke.
	devRootTokenFile = "root-token"
	devMount         = "database"
	devRole          = "readonly"
	devClusterPrefix = "lessor-dev-pg-"
	// devStateMax bounds what is read from the state file.
	devStateMax = 64 << 10
)

// errNoDevSetup: the directory exists and is the caller's, but holds no
// dev.json.
var errNoDevSetup = errors.New("no lessor dev setup")

// devReadonlySQL is the seed guide's readonly role.
const devReadonlySQL = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`

type devOptions struct {
	dir          string
	dirGiven     bool
	stop         bool
	postgres     bool
	connURL      string
	username     string
	passwordFile string
	runAs        string
}

func newDevCmd(f *Factory, g *globalOptions) *cobra.Command {
	o := &devOptions{}
	c := &cobra.Command{
		Use:   "dev [flags]",
		Short: "Set up a throwaway store (and PostgreSQL) to try lessor",
		Long: `Like ` + "`vault server -dev`" + `: creates a throwaway store in one directory
($TMPDIR/lessor-dev-<uid>, or -dir), unsealed by a generated key file, with
the root token in a token file there, and prints the export lines that point
lessor at it. Only those lines go to stdout, so

  eval "$(lessor dev -postgres)"

sets them in your shell; everything else is said on stderr.

With -postgres, dev also mounts the database engine, configures it and
creates a role "readonly" like the seed guide's (SELECT on the public
schema, default_ttl 1h, max_ttl 24h), so that the next command,
` + "`lessor read database/creds/readonly`" + `, prints a working credential. The
PostgreSQL is a throwaway cluster started from the local initdb and pg_ctl
on a free 127.0.0.1 port (run as the "postgres" OS user when you are root),
or, with -connection-url, an existing server: give a templated URL
(postgresql://{{username}}:{{password}}@host:port/db), -username and a
-password-file; dev never takes a password in argv.

The directory must be yours alone: dev creates it 0700 and refuses (as
does -stop) one that another user made, one open to others, or a symlink.
The throwaway cluster lives in a lessor-dev-pg-* directory of yours in
$TMPDIR (as root: 0711, in /tmp if postgres cannot reach $TMPDIR) where
only the data directory and log are the server's; the server gets none of
your environment variables.

Running dev again while one is set up prints its exports again.
` + "`lessor dev -stop`" + ` undoes everything: it revokes the leases issued against an
existing server, stops the throwaway cluster, and removes the directory.`,
		Example: `  eval "$(lessor dev -postgres)"
  lessor read database/creds/readonly
  eval "$(lessor dev -stop)"
  lessor dev -connection-url='postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp' \
      -username=lessor_admin -password-file=admin-password.txt`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			o.dirGiven = o.dir != ""
			if !o.dirGiven {
				o.dir = defaultDevDir(f)
			}
			dir, err := filepath.Abs(o.dir)
			if err != nil {
				return &localError{err}
			}
			o.dir = dir
			if o.stop {
				if o.postgres || o.connURL != "" {
					return usageErrorf("-stop takes no other flag than -dir")
				}
				return devStop(c.Context(), f, o)
			}
			return devStart(c.Context(), f, o)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.dir, "dir", "", "the dev directory (default $TMPDIR/lessor-dev-<uid>)")
	fl.BoolVar(&o.stop, "stop", false, "stop the dev setup and remove everything it made")
	fl.BoolVar(&o.postgres, "postgres", false, "also set up the database engine, on a throwaway PostgreSQL cluster unless -connection-url")
	fl.StringVar(&o.connURL, "connection-url", "", "use this existing PostgreSQL (a templated URL) instead of a throwaway cluster; implies -postgres")
	fl.StringVar(&o.username, "username", "", "with -connection-url: the admin role lessor creates users as")
	fl.StringVar(&o.passwordFile, "password-file", "", "with -connection-url: file holding the admin role's password")
	fl.StringVar(&o.runAs, "run-as", "postgres", "when run as root: the OS user that runs the throwaway cluster")
	return c
}

func defaultDevDir(f *Factory) string {
	tmp := f.Getenv("TMPDIR")
	if tmp == "" || !filepath.IsAbs(tmp) {
		tmp = "/tmp"
	}
	return filepath.Join(tmp, "lessor-dev-"+strconv.Itoa(os.Getuid()))
}

// devCommand is the dev command line with args, naming the directory when
// the user named one, for the hints dev prints.
func devCommand(o *devOptions, args ...string) string {
	cmd := "lessor dev"
	for _, a := range args {
		cmd += " " + a
	}
	if o.dirGiven {
		cmd += " -dir=" + shellQuote(o.dir)
	}
	return cmd
}

// readDevState reads the state of the dev setup in dir, trusting it only if
// dir is the caller's alone: a directory, not a symlink, owned by the
// caller, closed to everyone else, and dev.json likewise. It returns an
// error satisfying errors.Is(err, os.ErrNotExist) when dir does not exist,
// and errNoDevSetup when dir is the caller's but holds no dev.json.
func readDevState(dir string) (*devState, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if err := checkOwn(dir, fi, true); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, devStateFile)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil, errNoDevSetup
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is open to other users (mode %04o)", dir, fi.Mode().Perm())
	}
	b, err := readOwnFile(p, devStateMax)
	if err != nil {
		return nil, err
	}
	var st devState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("dev state %s: %w", p, err)
	}
	for _, f := range []struct{ got, want string }{
		{st.Store, filepath.Join(dir, "lessor.db")},
		{st.KeyFile, filepath.Join(dir, "unseal.key")},
		{st.TokenFile, filepath.Join(dir, "token")},
	} {
		if f.got != f.want {
			return nil, fmt.Errorf("dev state %s: names %q, not %s", p, f.got, f.want)
		}
	}
	if c := st.ClusterDir; c != "" && (!filepath.IsAbs(c) || filepath.Clean(c) != c || !strings.HasPrefix(filepath.Base(c), devClusterPrefix)) {
		return nil, fmt.Errorf("dev state %s: names %q, not a %s directory", p, c, devClusterPrefix)
	}
	return &st, nil
}

// checkOwn verifies what Lstat said of path: a directory (or a regular
// file), not a symlink, owned by the caller.
func checkOwn(path string, fi os.FileInfo, dir bool) error {
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink; not following it", path)
	case dir && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", path)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", path)
	}
	if int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by you", path, sys.Uid)
	}
	return nil
}

// readOwnFile reads up to max bytes of a regular file of the caller's that
// no one else may read or write, without following a symlink.
func readOwnFile(path string, max int64) ([]byte, error) {
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkOwn(path, fi, false); err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is open to other users (mode %04o)", path, fi.Mode().Perm())
	}
	return io.ReadAll(io.LimitReader(fd, max))
}

// devDirHint is the hint for a dev directory dev does not trust.
const devDirHint = "lessor dev uses only a directory that is yours alone; look at what it holds, then remove it, or choose another with -dir"

func devStart(ctx context.Context, f *Factory, o *devOptions) (err error) {
	if o.connURL != "" {
		o.postgres = true
		if o.username == "" || o.passwordFile == "" {
			return usageErrorf("-connection-url needs -username and -password-file")
		}
		if !strings.Contains(o.connURL, "{{username}}") || !strings.Contains(o.connURL, "{{password}}") {
			return usageErrorf("-connection-url must be templated with {{username}} and {{password}}, so that the password is not in argv")
		}
		// The templates may stand beside a password of their own, in a
		// parameter: argv and the summary dev prints would show it.
		if database.HoldsInlinePassword(o.connURL) {
			return usageErrorf("-connection-url holds a password, which would be in argv; give it with -password-file only")
		}
	} else if o.username != "" || o.passwordFile != "" {
		return usageErrorf("-username and -password-file go with -connection-url")
	}
	dir := o.dir
	switch st, err := readDevState(dir); {
	case err == nil:
		fmt.Fprintf(f.IO.Err, "lessor dev is already set up in %s; its exports are below.\n", dir)
		if o.postgres && st.ClusterDir == "" && !st.External {
			fmt.Fprintf(f.IO.Err, "It has no PostgreSQL: run `%s` first, then `%s`.\n", devCommand(o, "-stop"), devCommand(o, "-postgres"))
		}
		printDevExports(f, st)
		return nil
	case errors.Is(err, errNoDevSetup):
		return &localError{withHint(fmt.Errorf("%s exists but holds no lessor dev setup", dir), "remove it, or choose another with -dir")}
	case !errors.Is(err, os.ErrNotExist):
		return &localError{withHint(err, devDirHint)}
	}
	var password []byte
	if o.passwordFile != "" {
		if password, err = readSecretFile(expandHome(o.passwordFile, f.home())); err != nil {
			return usageErrorf("password file: %v", err)
		}
	}

	// Mkdir fails if anyone made dir first: then it is not ours.
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return &localError{withHint(fmt.Errorf("%s exists but holds no lessor dev setup", dir), "remove it, or choose another with -dir")}
		}
		return &localError{fmt.Errorf("create dev directory: %w", err)}
	}
	st := &devState{
		Store:     filepath.Join(dir, "lessor.db"),
		KeyFile:   filepath.Join(dir, "unseal.key"),
		TokenFile: filepath.Join(dir, "token"),
		External:  o.connURL != "",
	}
	var cluster *devcluster.Cluster
	defer func() {
		// All or nothing: a failed dev leaves nothing to clean up.
		if err != nil {
			if cluster != nil {
				cluster.Stop()
			}
			os.RemoveAll(dir)
		}
	}()
	// Whatever the umask: the directory is the caller's alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return &localError{fmt.Errorf("create dev directory: %w", err)}
	}

	tok, err := devInitStore(ctx, f, st)
	if err != nil {
		return err
	}
	if o.postgres {
		conn := map[string]any{"connection_url": o.connURL, "username": o.username, "password": string(password)}
		if o.connURL == "" {
			fmt.Fprintln(f.IO.Err, "Starting a throwaway PostgreSQL cluster (initdb, pg_ctl)...")
			cluster, err = devcluster.Start(ctx, devcluster.Options{Prefix: devClusterPrefix, Superuser: "lessor_admin", RunAs: o.runAs})
			if err != nil {
				if errors.Is(err, devcluster.ErrNoBinaries) {
					return &localError{withHint(err, "install PostgreSQL's server package, or use an existing server with -connection-url")}
				}
				return &localError{fmt.Errorf("start PostgreSQL: %w", err)}
			}
			st.ClusterDir, st.Port = cluster.Dir, cluster.Port
			conn = map[string]any{
				"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", cluster.Port),
				"username":       cluster.User,
				"password":       cluster.Password,
			}
		}
		if err := devConfigureDatabase(ctx, f, tok, conn); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, devStateFile), append(b, '\n'), 0o600); err != nil {
		return &localError{fmt.Errorf("write dev state: %w", err)}
	}

	w := f.IO.Err
	fmt.Fprintf(w, "lessor dev: a throwaway setup in %s\n", dir)
	fmt.Fprintf(w, "  store       %s\n  key file    %s\n  root token  in %s\n", st.Store, st.KeyFile, st.TokenFile)
	switch {
	case cluster != nil:
		fmt.Fprintf(w, "  PostgreSQL  127.0.0.1:%d, superuser %s, data in %s (run by OS user %s; log %s)\n",
			cluster.Port, cluster.User, cluster.DataDir, cluster.OSUser, cluster.LogFile)
	case st.External:
		fmt.Fprintf(w, "  PostgreSQL  %s as %s (not started by dev)\n", o.connURL, o.username)
	}
	if o.postgres {
		fmt.Fprintf(w, "  mounted %s/, configured %s/config/postgresql, role %s/roles/%s (SELECT on schema public, ttl 1h, max 24h)\n",
			devMount, devMount, devMount, devRole)
	}
	fmt.Fprintf(w, "Use it: eval the export lines on stdout, e.g. eval \"$(%s)\", then\n", devCommand(o, "-postgres"))
	if o.postgres {
		fmt.Fprintf(w, "  lessor read %s/creds/%s\n", devMount, devRole)
	} else {
		fmt.Fprintln(w, "  lessor secrets enable database")
	}
	fmt.Fprintf(w, "Undo it all: eval \"$(%s)\"\n", devCommand(o, "-stop"))
	printDevExports(f, st)
	return nil
}

// devInitStore creates the store and its key file, keeps the unsealed store
// in the factory for the requests that follow, and writes the root token.
func devInitStore(ctx context.Context, f *Factory, st *devState) (string, error) {
	if err := barrier.GenerateKeyFile(st.KeyFile); err != nil {
		return "", &localError{fmt.Errorf("create key file %s: %w", st.KeyFile, err)}
	}
	key, err := barrier.KeyFromFile(st.KeyFile)
	if err != nil {
		return "", &localError{err}
	}
	phys, err := storage.CreateBolt(st.Store, storage.BoltOptions{})
	if err != nil {
		return "", &localError{err}
	}
	b, err := barrier.Init(ctx, phys, key, barrier.InitOptions{Now: f.Now})
	if err != nil {
		return "", &localError{fmt.Errorf("initialise store %s: %w", st.Store, err)}
	}
	f.setFlag("store", st.Store)
	f.setFlag("key_file", st.KeyFile)
	f.barrier = b
	c := f.newCore(b)
	f.core = c
	tok, err := c.Initialize(ctx)
	if err != nil {
		return "", &localError{fmt.Errorf("initialise store %s: %w", st.Store, err)}
	}
	for _, p := range []string{st.TokenFile, filepath.Join(filepath.Dir(st.Store), devRootTokenFile)} {
		if err := writeFileAtomic(p, []byte(tok), 0o600); err != nil {
			return "", &localError{fmt.Errorf("write token file %s: %w", p, err)}
		}
	}
	return tok, nil
}

// devConfigureDatabase does what the seed guide's steps 1 to 3 do, through
// the same pipeline as the commands a user would type.
func devConfigureDatabase(ctx context.Context, f *Factory, tok string, conn map[string]any) error {
	config := map[string]any{
		"plugin_name":   "postgresql-database-plugin",
		"allowed_roles": devRole,
	}
	for k, v := range conn {
		config[k] = v
	}
	steps := []struct {
		path string
		data map[string]any
	}{
		{"sys/mounts/" + devMount + "/", map[string]any{"type": "database"}},
		{devMount + "/config/postgresql", config},
		{devMount + "/roles/" + devRole, map[string]any{
			"db_name":             "postgresql",
			"creation_statements": devReadonlySQL,
			"default_ttl":         "1h",
			"max_ttl":             "24h",
		}},
	}
	for _, s := range steps {
		req := &logical.Request{Operation: logical.UpdateOperation, Path: s.path, Data: s.data, ClientToken: tok}
		if _, err := f.Request(ctx, req); err != nil {
			return requestError("write", s.path, err)
		}
	}
	return nil
}

// printDevExports prints the one line of stdout: shell exports, quoted.
func printDevExports(f *Factory, st *devState) {
	fmt.Fprintf(f.IO.Out, "export LESSOR_STORE=%s LESSOR_KEY_FILE=%s LESSOR_TOKEN_FILE=%s\n",
		shellQuote(st.Store), shellQuote(st.KeyFile), shellQuote(st.TokenFile))
}

func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func devStop(ctx context.Context, f *Factory, o *devOptions) error {
	dir := o.dir
	st, err := readDevState(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if other := devDirOfStore(f); !o.dirGiven && other != "" && other != dir {
			// Printing the unset line now would make an eval forget the
			// only pointer to the setup that is still there.
			return &localError{withHint(fmt.Errorf("no lessor dev setup in %s; LESSOR_STORE is in the one in %s", dir, other),
				"stop that one: eval \"$(lessor dev -stop -dir=%s)\"", shellQuote(other))}
		}
		fmt.Fprintf(f.IO.Err, "lessor dev: nothing to stop (no %s)\n", dir)
		printDevUnset(f)
		return nil
	case errors.Is(err, errNoDevSetup):
		return &localError{withHint(fmt.Errorf("%s holds no lessor dev setup; not touching it", dir), "remove it yourself if it is yours")}
	case err != nil:
		return &localError{withHint(err, "nothing was stopped or removed; "+devDirHint)}
	}
	w := f.IO.Err
	if st.External {
		// The roles live on a server dev does not own: revoke them as a
		// user would, before the store that knows them is deleted.
		tok, err := readOwnFile(filepath.Join(dir, devRootTokenFile), 4<<10)
		if err != nil {
			return &localError{fmt.Errorf("dev root token: %w", err)}
		}
		f.setFlag("store", st.Store)
		f.setFlag("key_file", st.KeyFile)
		path := "sys/leases/revoke-prefix/" + devMount + "/"
		req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: map[string]any{}, ClientToken: strings.TrimSpace(string(tok))}
		if _, err := f.Request(ctx, req); err != nil {
			return withHint(requestError("revoke", devMount+"/", err), "nothing was removed; fix the cause and run `lessor dev -stop` again")
		}
		fmt.Fprintf(w, "Revoked every lease under %s/ (their PostgreSQL roles are dropped)\n", devMount)
	}
	if st.ClusterDir != "" {
		if err := devcluster.Stop(st.ClusterDir); err != nil {
			return &localError{withHint(err, "nothing was removed; look at %s and %s, stop the server as its owner if one runs, then remove both", st.ClusterDir, dir)}
		}
		fmt.Fprintf(w, "Stopped PostgreSQL on 127.0.0.1:%d and removed %s\n", st.Port, st.ClusterDir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return &localError{fmt.Errorf("remove dev directory: %w", err)}
	}
	fmt.Fprintf(w, "Removed %s (store, key file, tokens)\n", dir)
	printDevUnset(f)
	return nil
}

// devDirOfStore returns the directory of $LESSOR_STORE when it holds a dev
// setup: where an eval of dev's exports points this shell.
func devDirOfStore(f *Factory) string {
	store := f.Getenv("LESSOR_STORE")
	if store == "" || !filepath.IsAbs(store) {
		return ""
	}
	dir := filepath.Dir(store)
	if _, err := os.Lstat(filepath.Join(dir, devStateFile)); err != nil {
		return ""
	}
	return dir
}

// printDevUnset prints the line that undoes the exports, for
// eval "$(lessor dev -stop)".
func printDevUnset(f *Factory) {
	fmt.Fprintln(f.IO.Out, "unset LESSOR_STORE LESSOR_KEY_FILE LESSOR_TOKEN_FILE")
}
