package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/lessorhq/lessor/pkg/apiclient"
	"github.com/lessorhq/lessor/pkg/barrier"
	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// IOStreams are the command's standard streams and whether they are
// terminals; tests inject buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	Err    io.Writer
	InTTY  bool
	OutTTY bool
	ErrTTY bool
}

// Factory holds what commands need, built lazily: help, version and
// completion never open the store, prompt, or dial PostgreSQL.
type Factory struct {
	IO     *IOStreams
	Getenv func(string) string
	// Now is lessor's clock: the host's, or on a PostgreSQL store the
	// database server's once the store is open (see syncClock).
	Now   func() time.Time
	v     *viper.Viper
	flags map[string]string
	// hostClock is the host's own clock (time.Now). clockFrom is the
	// PostgreSQL store whose server's clock Now follows, if any.
	hostClock func() time.Time
	clockFrom *storage.Postgres

	// ReadPassword reads a secret from the terminal without echo.
	ReadPassword func(prompt string) ([]byte, error)

	core    *core.Core
	barrier *barrier.Barrier
	// sudo is what sudoInvoker found, once per run (it reads /proc).
	sudo *sudoCaller
	// client sends requests to the server at LESSOR_ADDR (remote.go).
	client *apiclient.Client
	// closers run when the command ends (a PostgreSQL store's connections).
	closers []func()
	// acceptRollback: the store may be older than the generation this user
	// last saw (operator verify -accept-rollback).
	acceptRollback bool
	// holdReads: a request is being prepared, whose reads of a file store
	// share one opening of it (storage.Bolt.Hold) until endReads.
	holdReads    bool
	releaseReads func()
	// keepOpen: a file store keeps its opening between transactions
	// (storage.BoltOptions.KeepOpen), for lessor serve.
	keepOpen bool
	// unsealedFrom is the key file the store was unsealed with; "" when
	// the key came from elsewhere (LESSOR_UNSEAL_KEY, a passphrase).
	unsealedFrom string
	// unsealPassphrase is the passphrase that unsealed the store, if one
	// did: a rekey refuses it as the new one.
	unsealPassphrase []byte
	// homeDir is the caller's home directory (see resolveHome); homeErr
	// says why there is none, and every command that runs apply refuses.
	homeDir string
	homeErr error
}

func newFactory(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *Factory {
	f := &Factory{
		IO:        &IOStreams{In: stdin, Out: stdout, Err: stderr},
		Getenv:    getenv,
		hostClock: time.Now,
		v:         viper.New(),
		flags:     map[string]string{},
	}
	f.homeDir, f.homeErr = resolveHome(getenv)
	f.defaults()
	f.IO.InTTY = isTerminal(stdin)
	f.IO.OutTTY = isTerminal(stdout)
	f.IO.ErrTTY = isTerminal(stderr)
	if testOnlyHostClock != nil {
		if host := testOnlyHostClock(getenv); host != nil {
			f.hostClock = host
		}
	}
	f.Now = f.hostClock
	if testOnlyClock != nil {
		if now := testOnlyClock(getenv, f.hostClock); now != nil {
			f.Now = now
		}
	}
	f.ReadPassword = func(prompt string) ([]byte, error) {
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, errNoTerminal
		}
		defer tty.Close()
		fmt.Fprint(tty, prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return b, err
	}
	return f
}

// testOnlyClock is a test seam, set only by the test binary's TestMain:
// given a factory's environment and the host's clock it returns the clock
// lessor runs on, or nil for the host's, so that tests can move lessor's
// clock forward to check expiry without sleeping. testOnlyHostClock
// likewise returns the host's clock, or nil for the real one, so that a
// test can play a host whose clock is wrong. A shipped binary leaves both
// nil: nothing in its environment or flags can move its clock.
var (
	testOnlyClock     func(getenv func(string) string, host func() time.Time) func() time.Time
	testOnlyHostClock func(getenv func(string) string) func() time.Time
)

func isTerminal(x any) bool {
	f, ok := x.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Settings, each with its flag, environment variable and config key; the
// precedence is flag > env > config file > default.
type setting struct {
	key, flag, env, desc string
}

var globalSettings = []setting{
	{"store", "store", "LESSOR_STORE", "the encrypted store: a file path, a postgres:// URL (?schema=NAME, default lessor) or a keyword/value string (host=… dbname=… schema=NAME)"},
	{"key_file", "key-file", "LESSOR_KEY_FILE", "path of the unseal key file"},
	{"format", "format", "LESSOR_FORMAT", "output format: table, json, yaml, env, dotenv, pgpass or dsn"},
	{"unseal_key", "", "LESSOR_UNSEAL_KEY", "the unseal key itself, base64 (instead of a key file; for CI)"},
	{"passphrase_file", "", "LESSOR_PASSPHRASE_FILE", "file holding the passphrase of a passphrase-protected store"},
	{"token", "", "LESSOR_TOKEN", "the token to use (overrides the token file)"},
	{"token_file", "", "LESSOR_TOKEN_FILE", "where `lessor login` stores the token"},
	{"address", "", "LESSOR_ADDR", "send requests to this lessor serve (https://host:8200, unix:///path) instead of the local store"},
	{"ca_cert", "", "LESSOR_CACERT", "with LESSOR_ADDR: PEM file of the CA certificates to trust (default: the system's)"},
	{"ca_path", "", "LESSOR_CAPATH", "with LESSOR_ADDR: directory of PEM CA certificate files to trust"},
	{"client_timeout", "", "LESSOR_CLIENT_TIMEOUT", "with LESSOR_ADDR: how long a request may take (default 60s)"},
	{"allow_http", "", "LESSOR_ALLOW_HTTP", "with LESSOR_ADDR: allow plain http:// to a host that is not loopback (the token crosses in clear)"},
}

// settings are every command's settings: the global ones, then serve's.
var settings = append(globalSettings, serveSettings...)

// home is the caller's home directory, "" when there is none (homeErr
// says why, and apply refuses before any command uses it).
func (f *Factory) home() string { return f.homeDir }

// resolveHome finds the caller's home directory: $HOME when it is an
// absolute path, else the home directory of the caller's passwd entry.
// Never a relative path: the defaults under it (the config file, the store,
// the key and token files) would then be looked for under whatever
// directory lessor was started in, which another user may have prepared.
func resolveHome(getenv func(string) string) (string, error) {
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Clean(h), nil
	}
	uid := os.Getuid()
	// LookupId, not user.Current: without cgo, Current falls back on the
	// process's own $HOME, which tests replace through getenv.
	u, err := user.LookupId(strconv.Itoa(uid))
	switch {
	case err != nil:
		return "", fmt.Errorf("HOME is not set to an absolute path and uid %d has no passwd entry to take a home directory from; set HOME", uid)
	case !filepath.IsAbs(u.HomeDir):
		return "", fmt.Errorf("HOME is not set to an absolute path and the passwd entry of uid %d gives no absolute home directory; set HOME", uid)
	}
	return filepath.Clean(u.HomeDir), nil
}

func (f *Factory) xdg(env, fallback string) string {
	if d := f.Getenv(env); d != "" && filepath.IsAbs(d) {
		return d
	}
	return filepath.Join(f.home(), fallback)
}

func (f *Factory) defaults() {
	f.v.SetDefault("format", "table")
	if f.homeErr != nil {
		return // no defaults under a home directory there is not
	}
	f.v.SetDefault("store", filepath.Join(f.xdg("XDG_DATA_HOME", ".local/share"), "lessor", "lessor.db"))
	f.v.SetDefault("key_file", filepath.Join(f.xdg("XDG_CONFIG_HOME", ".config"), "lessor", "unseal.key"))
	f.v.SetDefault("token_file", filepath.Join(f.home(), ".lessor-token"))
}

// setFlag records a flag the user set; it outranks everything else.
func (f *Factory) setFlag(key, value string) { f.flags[key] = value }

// get returns a setting: flag (if set) > environment > config file >
// default. The environment is read through Getenv so that tests stay
// hermetic.
func (f *Factory) get(key string) string {
	if v, ok := f.flags[key]; ok {
		return v
	}
	for _, s := range settings {
		if s.key == key {
			if v := f.Getenv(s.env); v != "" {
				return v
			}
		}
	}
	return f.v.GetString(key)
}

// loadConfigFile reads the YAML config file, if there is one. A file that
// was named explicitly must exist. The file decides where the store, the
// key file and the server are, so it is refused when another user could
// change it (see storage.CheckOwnFile), and it may not hold secrets.
func (f *Factory) loadConfigFile(path string, explicit bool) error {
	if path == "" {
		path = filepath.Join(f.xdg("XDG_CONFIG_HOME", ".config"), "lessor", "config.yaml")
	}
	fh, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return &localError{fmt.Errorf("config file %s: %w", path, unwrapPathError(err))}
	}
	defer fh.Close()
	// The checks are of the file opened, then read: not of a name that
	// could point elsewhere by the time it is read.
	fi, err := fh.Stat()
	if err != nil {
		return &localError{fmt.Errorf("config file %s: %w", path, unwrapPathError(err))}
	}
	if err := storage.CheckOwnFile(path, fi); err != nil {
		return configFileUnsafe(path, err)
	}
	raw, err := io.ReadAll(fh)
	if err != nil {
		return &localError{fmt.Errorf("config file %s: %w", path, unwrapPathError(err))}
	}
	// Checked by hand before viper sees it: the YAML library's errors
	// quote the file (a value it cannot decode, an anchor's name, a
	// duplicated key), and LESSOR_CONFIG pointed at a key or token file
	// must not print it. Errors name the file and a line, never contents.
	if err := checkConfigYAML(raw); err != nil {
		return &localError{fmt.Errorf("config file %s: %w", path, err)}
	}
	f.v.SetConfigType("yaml")
	if err := f.v.ReadConfig(bytes.NewReader(raw)); err != nil {
		return &localError{fmt.Errorf("config file %s: not a valid config file", path)}
	}
	return nil
}

// configFileUnsafe is the refusal of a config file another user could
// change, with what to do about it.
func configFileUnsafe(path string, err error) error {
	var fe *storage.UnsafeFileError
	var de *storage.UnsafeDirError
	switch {
	case errors.As(err, &fe) && strings.HasPrefix(fe.Reason, "is writable"):
		return &localError{withHint(fmt.Errorf("config file %w: another user could change lessor's settings", err),
			"run: chmod go-w %s", path)}
	case errors.As(err, &fe):
		return &localError{withHint(fmt.Errorf("config file %w: another user could change lessor's settings", err),
			"use a config file of your own (-config, LESSOR_CONFIG)")}
	case errors.As(err, &de):
		return &localError{withHint(fmt.Errorf("config file %s: %w", path, err),
			"keep the config file in a directory only you (or root) can change, as ~/.config/lessor")}
	}
	return &localError{fmt.Errorf("config file %s: %w", path, unwrapPathError(err))}
}

// secretSettings are the settings that hold a secret itself, not the
// path of a file holding it: the config file may not set them. It is read
// by every command, copied between hosts and into backups, and shown in
// bug reports, unlike a 0600 key or token file; and a value found there
// would be used in silence where the user meant the key or token file.
var secretSettings = map[string]string{
	"unseal_key": "keep the unseal key in a key file (-key-file, LESSOR_KEY_FILE) or give it in LESSOR_UNSEAL_KEY",
	"token":      "keep the token in the token file (`lessor login`, LESSOR_TOKEN_FILE) or give it in LESSOR_TOKEN",
}

// checkConfigYAML checks that raw is a YAML mapping of known settings to
// single values, none of them a secret. Its errors give line numbers and
// lessor's own setting names, never text from the file.
func checkConfigYAML(raw []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("line %s: not valid YAML", m[1])
		}
		return errors.New("not valid YAML")
	}
	if len(doc.Content) == 0 {
		return nil // empty: no settings
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: not a mapping of settings (key: value)", top.Line)
	}
	var known []string
	for _, s := range settings {
		if _, ok := secretSettings[s.key]; !ok {
			known = append(known, s.key)
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		// viper folds case; so does this check.
		name := strings.ToLower(k.Value)
		if hint, ok := secretSettings[name]; ok && k.Kind == yaml.ScalarNode {
			return fmt.Errorf("line %d: %s is a secret and may not be in the config file; %s", k.Line, name, hint)
		}
		if k.Kind != yaml.ScalarNode || !slices.Contains(known, name) {
			return fmt.Errorf("line %d: unknown key (known: %s)", k.Line, strings.Join(known, ", "))
		}
		if seen[name] {
			return fmt.Errorf("line %d: %s is set twice", k.Line, name)
		}
		seen[name] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s must be a single value", v.Line, name)
		}
		if err := checkConfigValue(name, v.Value); err != nil {
			return fmt.Errorf("line %d: %w", v.Line, err)
		}
	}
	return nil
}

// configPaths are the settings that name a file or directory.
var configPaths = []string{"store", "key_file", "passphrase_file", "token_file", "ca_cert", "ca_path", "unix", "tls_cert", "tls_key"}

// checkConfigValue refuses, in the config file, a path that is relative
// (it would be looked up in whatever directory lessor runs in, which
// another user may have prepared: a CA certificate of theirs, a store of
// theirs) and a store connection string that holds a password (the file
// need not be private; the password goes in ~/.pgpass).
func checkConfigValue(name, value string) error {
	if name == "store" && (storage.LooksLikeURL(value) || storage.IsPostgresKeywords(value)) {
		if storage.HoldsPassword(value) {
			return errors.New("store holds a password, which may not be in the config file; put it in ~/.pgpass or PGPASSFILE")
		}
		return nil
	}
	if value != "" && slices.Contains(configPaths, name) && !filepath.IsAbs(value) && value != "~" && !strings.HasPrefix(value, "~/") {
		return fmt.Errorf("%s must be an absolute path (or start with ~/): a relative one would be looked up in whatever directory lessor runs in", name)
	}
	return nil
}

// checkStoreArg refuses a store connection string with a password in it
// as a command-line flag (-store, -to): every local user can read a
// process's arguments in /proc for as long as it runs, months for
// `lessor serve`. The same string in LESSOR_STORE is readable only by the
// process's owner.
//
// Another kind of URL is left to the unsupported-URL error.
func checkStoreArg(flag, value string) error {
	if !(storage.IsPostgresURL(value) || storage.IsPostgresKeywords(value)) || !storage.HoldsPassword(value) {
		return nil
	}
	msg := "%s holds a password, which every local user can read in the process list; put it in ~/.pgpass or PGPASSFILE"
	if flag == "-store" {
		msg += ", or give the URL in LESSOR_STORE"
	}
	return usageErrorf(msg, flag)
}

var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bline (\d+)\b`) })

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// storePath is the store setting as given: a file path (with ~ expanded)
// or a store URL, which may hold a password; say storeName in messages.
func (f *Factory) storePath() string {
	raw := f.get("store")
	if storage.LooksLikeURL(raw) {
		return raw
	}
	return expandHome(raw, f.home())
}

// storeName names the store in messages and output: the path, or the URL
// with its password redacted.
func (f *Factory) storeName() string {
	raw := f.storePath()
	if storage.LooksLikeURL(raw) || storage.IsPostgresURL(raw) {
		return storage.RedactURL(raw)
	}
	return raw
}

// storeURL returns the store URL, "" for a file store, and refuses a value
// that looks like a URL of a kind lessor does not support: it must never
// become a file named after it.
func (f *Factory) storeURL() (string, error) {
	raw := f.storePath()
	switch {
	case storage.IsPostgresURL(raw):
		if err := f.checkSudoPostgres(raw, "-store"); err != nil {
			return "", err
		}
		return raw, nil
	case storage.LooksLikeURL(raw):
		return "", usageErrorf("store %s: unsupported store URL; use a file path or a postgres:// or postgresql:// URL", storage.RedactURL(raw))
	}
	return "", nil
}

// checkSudoPostgres refuses, when lessor runs through sudo for another
// user, a PostgreSQL store URL that user chose (-store, LESSOR_STORE,
// migrate -to) rather than this account's config file: lessor would look
// its password up in this account's passfile (~/.pgpass, PGPASSFILE,
// passfile=) and send it to whatever server the URL names, which may ask
// for it in clear text.
func (f *Factory) checkSudoPostgres(raw, what string) error {
	uid, _, sudo := f.sudoInvoker()
	if !sudo || raw == f.v.GetString("store") {
		return nil
	}
	return withHint(usageErrorf("%s %s: lessor was run through sudo by another user (uid %d), and would send this account's database password to a server that user chose", what, storage.RedactURL(raw), uid),
		"through sudo, the PostgreSQL store is the one in this account's config file (store:)")
}

// checkSudoFileStore refuses, when lessor runs through sudo for another
// user, a file store that is not this account's (or root's), or that
// another user could put another file in the place of (see
// storage.CheckOwnFile). A store the caller made with its own key, where
// it is root, would have lessor, running as this account, log in to the
// databases it configures with this account's passfile and client
// certificates, for reap with no token at all.
func (f *Factory) checkSudoFileStore(path string) error {
	uid, _, sudo := f.sudoInvoker()
	if !sudo {
		return nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil // OpenBolt says what is wrong
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err == nil {
		err = storage.CheckOwnFile(path, fi)
	}
	if err != nil {
		return withHint(&localError{fmt.Errorf("store %w: lessor was run through sudo by another user (uid %d), and opens only a store of this account's", err, uid)},
			"through sudo, the store is one this account owns, in directories only it (or root) can change")
	}
	return nil
}

func (f *Factory) onClose(fn func()) { f.closers = append(f.closers, fn) }

// close releases what the command opened.
func (f *Factory) close() {
	for _, fn := range f.closers {
		fn()
	}
	f.closers = nil
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// openPhysical opens the store without unsealing it.
func (f *Factory) openPhysical(ctx context.Context) (storage.Store, error) {
	u, err := f.storeURL()
	if err != nil {
		return nil, err
	}
	if u != "" {
		p, err := storage.OpenPostgres(ctx, u, storage.PostgresOptions{Now: f.hostClock})
		if err != nil {
			if errors.Is(err, storage.ErrNoStore) {
				return nil, &localError{withHint(err, "run `lessor operator init` to create it, or point -store / LESSOR_STORE at an existing one")}
			}
			return nil, f.storeError(err)
		}
		f.onClose(p.Close)
		f.syncClock(p)
		return p, nil
	}
	path := f.storePath()
	if err := f.checkSudoFileStore(path); err != nil {
		return nil, err
	}
	phys, err := storage.OpenBolt(path, storage.BoltOptions{KeepOpen: f.keepOpen})
	if err != nil {
		if errors.Is(err, storage.ErrNoStore) {
			return nil, &localError{withHint(err, "run `lessor operator init` to create it, or point -store / LESSOR_STORE at an existing one")}
		}
		return nil, &localError{err}
	}
	if f.keepOpen {
		f.onClose(func() { phys.Close() })
	}
	if f.holdReads {
		f.releaseReads = phys.Hold()
		f.onClose(f.releaseReads)
	}
	return phys, nil
}

// syncClock makes lessor's clock the store's database server's. Every
// host that shares the store compares the times its records hold (a
// lease's expiry, a reaper's claim, a renewal's hold, a token's TTL)
// with its clock: on each host's own, one whose clock ran ahead would
// revoke the others' leases before their time and take over their live
// claims, and one behind would accept expired tokens. From the open on,
// the host's clock measures only how much time has passed (monotonic, so
// that a step of the host's clock does not move lessor's either).
func (f *Factory) syncClock(p *storage.Postgres) {
	server, host := p.ServerTime()
	if f.clockFrom != nil || server.IsZero() {
		return
	}
	f.clockFrom = p
	if skew := server.Sub(host); skew > clockSkewWarning || skew < -clockSkewWarning {
		// Said, not refused: the store is shared, and this host keeps time
		// by the server as every other does. But one of the two clocks is
		// wrong, and if it is the server's, every host follows it.
		way := "ahead of"
		if skew < 0 {
			way, skew = "behind", -skew
		}
		fmt.Fprintf(f.IO.Err, "lessor: warning: the store server's clock is %s %s this host's; lessor keeps time by the server's, as every host sharing the store does\n", skew.Round(time.Second), way)
		fmt.Fprintln(f.IO.Err, "lessor: hint: check NTP on this host and on the store's database server")
	}
	hostNow, now := f.hostClock, f.Now
	f.Now = func() time.Time {
		server, host := p.ServerTime()
		h := hostNow()
		// now runs ahead of the host's clock only in tests, which move
		// lessor's clock forward: as far ahead of the server's.
		return server.Add(h.Sub(host)).Add(now().Sub(h))
	}
}

// clockSkewWarning is how far the store server's clock and the host's may
// be apart before every command says so.
const clockSkewWarning = time.Minute

// resyncClock reads the store server's clock again, for a process that
// runs for weeks (serve, reap -loop): the host's clock, which may be the
// wrong one, need not keep pace with the server's for long. A failure
// keeps the last reading; the store's next transaction says why. It is
// bounded: serve waits for it to stop, and a server that no longer
// answers must not hold up its shutdown.
func (f *Factory) resyncClock(ctx context.Context) {
	if f.clockFrom != nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = f.clockFrom.MeasureClock(ctx)
	}
}

// endReads ends the hold Request took on the file store's reads: the
// request is about to act, and may wait on the network.
func (f *Factory) endReads() {
	if f.releaseReads != nil {
		f.releaseReads()
	}
}

// unsealKey picks the unseal key for a store of the given kind:
// LESSOR_UNSEAL_KEY, else the key file, for key-file stores; the passphrase
// file, else a terminal prompt, for passphrase stores.
func (f *Factory) unsealKey(kind string) (barrier.UnsealKey, error) {
	if kind == barrier.KindPassphrase {
		if pf := f.get("passphrase_file"); pf != "" {
			b, err := readSecretFile(expandHome(pf, f.home()))
			if err != nil {
				return barrier.UnsealKey{}, &localError{fmt.Errorf("passphrase file: %w", err)}
			}
			f.unsealPassphrase = b
			return barrier.KeyFromPassphrase(b), nil
		}
		b, err := f.ReadPassword("Passphrase for " + f.storeName() + ": ")
		if errors.Is(err, errNoTerminal) {
			return barrier.UnsealKey{}, withHint(&localError{fmt.Errorf("read passphrase for %s: %w", f.storeName(), err)}, passphraseHint)
		}
		if err != nil {
			return barrier.UnsealKey{}, &localError{fmt.Errorf("read passphrase: %w", err)}
		}
		f.unsealPassphrase = b
		return barrier.KeyFromPassphrase(b), nil
	}
	if k := f.get("unseal_key"); k != "" {
		key, err := barrier.KeyFromBase64(k)
		if err != nil {
			return barrier.UnsealKey{}, &localError{fmt.Errorf("LESSOR_UNSEAL_KEY: %w", err)}
		}
		return key, nil
	}
	path := expandHome(f.get("key_file"), f.home())
	key, err := barrier.KeyFromFile(path)
	if err != nil {
		return barrier.UnsealKey{}, &localError{err}
	}
	f.unsealedFrom = path
	return key, nil
}

// readSecretFile reads a passphrase file (see openSecretFile; a pipe,
// LESSOR_PASSPHRASE_FILE=<(pass show lessor), is read like a file) and
// drops one trailing newline.
func readSecretFile(path string) ([]byte, error) {
	f, err := openSecretFile(path, "", true)
	var me *secretModeError
	if errors.As(err, &me) {
		return nil, fmt.Errorf("%w; run: chmod 600 %s", err, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a passphrase", path, maxSecretFile)
	}
	b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// secretModeError is a secret file that group or others can read.
type secretModeError struct{ msg string }

func (e *secretModeError) Error() string { return e.msg }

// openSecretFile opens a file that holds one of the caller's secrets (a
// passphrase, a token) and checks the file it opened, not the path: a
// path in a shared directory can be swapped between a check and a read.
// It must be a regular file (or, with pipeOK, a pipe), mode 0600 or
// narrower, and the caller's or root's. Opening never waits
// (O_NONBLOCK), so a FIFO put at the path cannot hang the command.
// what ("token file ") opens the messages.
func openSecretFile(path, what string, pipeOK bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", what, path, unwrapPathError(err))
	}
	st, err := f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("%s%s: %w", what, path, unwrapPathError(err))
	case !st.Mode().IsRegular() && !(pipeOK && st.Mode()&fs.ModeNamedPipe != 0):
		kind := "a regular file"
		if pipeOK {
			kind += " or a pipe"
		}
		err = fmt.Errorf("%s%s is not %s", what, path, kind)
	case st.Mode().Perm()&0o077 != 0:
		err = &secretModeError{fmt.Sprintf("%s%s is readable by group or others (mode %04o)", what, path, st.Mode().Perm())}
	default:
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() && sys.Uid != 0 {
			err = fmt.Errorf("%s%s belongs to another user (uid %d); use a file of your own", what, path, sys.Uid)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// maxSecretFile bounds what readSecretFile reads.
const maxSecretFile = 64 << 10

// Barrier opens and unseals the store.
func (f *Factory) Barrier(ctx context.Context) (*barrier.Barrier, error) {
	if f.barrier != nil {
		return f.barrier, nil
	}
	phys, err := f.openPhysical(ctx)
	if err != nil {
		return nil, err
	}
	// One read of the header and keyring serves both choosing the key and
	// unsealing: each read transaction opens and locks the file again.
	sealed, err := barrier.Peek(ctx, phys)
	if err != nil {
		return nil, f.storeError(err)
	}
	kind := sealed.UnsealKind()
	if kind == barrier.KindPassphrase {
		// Reading the passphrase may wait for a person at a terminal.
		f.endReads()
	}
	key, err := f.unsealKey(kind)
	if err != nil {
		return nil, err
	}
	var b *barrier.Barrier
	if kind == barrier.KindPassphrase {
		// A prompt may wait a long time: read the header again after it,
		// in case the store was rekeyed meanwhile.
		b, err = barrier.Open(ctx, phys, key)
	} else {
		b, err = sealed.Unseal(key)
	}
	if err != nil {
		return nil, f.storeError(err)
	}
	if err := f.trackGeneration(ctx, b, f.acceptRollback); err != nil {
		return nil, f.storeError(err)
	}
	f.barrier = b
	return b, nil
}

// trackGeneration starts b's rollback check (barrier.TrackGeneration). A
// generation file that cannot be kept (no home directory, as for a system
// account a service runs as), or that another user could change, does not
// stop the command, but is said on stderr each time: the check is off
// until it is fixed.
func (f *Factory) trackGeneration(ctx context.Context, b *barrier.Barrier, accept bool) error {
	err := b.TrackGeneration(ctx, f.generationFile(b.StoreID()), accept)
	var ue *barrier.UntrackedError
	if !errors.As(err, &ue) {
		return err
	}
	fmt.Fprintf(f.IO.Err, "lessor: warning: %s\n", oneLine(ue.Error()))
	var fe *storage.UnsafeFileError
	if errors.As(ue, &fe) && strings.HasPrefix(fe.Reason, "is writable") {
		fmt.Fprintf(f.IO.Err, "lessor: hint: run: chmod 600 %s\n", fe.Path)
		return nil
	}
	fmt.Fprintln(f.IO.Err, "lessor: hint: set XDG_STATE_HOME (or HOME) to a directory that this user owns and only it (or root) can write, such as the service's state directory")
	return nil
}

// generationFile is where this user keeps the highest generation of the
// store it has seen committed, to detect the store file being put back
// from an older copy (see barrier.TrackGeneration). It lives in the user's
// own state directory, not next to the store, which whoever could roll the
// store back may also write.
func (f *Factory) generationFile(storeID string) string {
	return filepath.Join(f.xdg("XDG_STATE_HOME", ".local/state"), "lessor", "generation", storeID)
}

// storeError names the store in errors about it.
func (f *Factory) storeError(err error) error {
	path := f.storeName()
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		// The database behind the store failed: the operation failed
		// (exit 2), nothing local is wrong. The message names the store.
		if strings.Contains(err.Error(), path) {
			return err
		}
		return fmt.Errorf("store %s: %w", path, err)
	case errors.Is(err, barrier.ErrWrongKey):
		hint := "check -key-file / LESSOR_KEY_FILE, LESSOR_UNSEAL_KEY or the passphrase"
		if next := expandHome(f.get("key_file"), f.home()) + ".new"; fileExists(next) {
			// operator rekey writes the new key there, rekeys, then renames
			// it over the old one; an interruption leaves it behind.
			hint = fmt.Sprintf("an interrupted `lessor operator rekey` left the new key in %s: try -key-file=%s, then move it over the old key file", next, next)
		}
		return &localError{withHint(fmt.Errorf("store %s: %w", path, err), "%s", hint)}
	case errors.Is(err, barrier.ErrNotInitialized):
		return &localError{withHint(fmt.Errorf("store %s: %w", path, err), "run `lessor operator init`")}
	case errors.Is(err, barrier.ErrRolledBack):
		return &localError{withHint(fmt.Errorf("store %s: %w", path, err),
			"if you restored this copy on purpose, run `lessor operator verify -accept-rollback`; otherwise someone put an old copy back: restore the newest backup")}
	case errors.As(err, new(*barrier.TamperedError)):
		who := "someone with write access to the file changed it"
		if storage.IsPostgresURL(f.storePath()) {
			who = "someone with write access to the store's table changed it"
		}
		return &localError{withHint(fmt.Errorf("store %s: %w", path, err),
			"%s; restore it from a backup, and check it with `lessor operator verify`", who)}
	}
	if strings.Contains(err.Error(), path) {
		return &localError{err}
	}
	return &localError{fmt.Errorf("store %s: %w", path, err)}
}

// Core returns the request pipeline over the unsealed store.
func (f *Factory) Core(ctx context.Context) (*core.Core, error) {
	if f.core != nil {
		return f.core, nil
	}
	b, err := f.Barrier(ctx)
	if err != nil {
		return nil, err
	}
	f.core = f.newCore(b)
	return f.core, nil
}

func (f *Factory) newCore(b *barrier.Barrier) *core.Core {
	_, _, sudo := f.sudoInvoker()
	return core.New(core.Config{
		Store:      b,
		StoreID:    b.StoreID(),
		StoreLogin: f.storeLogin(),
		Factories:  backendFactoriesWith(database.Options{ForeignCallers: sudo}),
		Now:        f.Now,
		RemoteUser: osUser(),
		EndReads:   f.endReads,
	})
}

// storeLogin is the PostgreSQL login the store connects as, "" for a
// file store: no static role or root rotation may change its password.
func (f *Factory) storeLogin() string {
	u, err := f.storeURL()
	if err != nil || u == "" {
		return ""
	}
	cc, _, err := storage.ParsePostgresURL(u)
	if err != nil {
		return ""
	}
	return cc.User
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}

// Token returns the caller's token: LESSOR_TOKEN, else the token file.
func (f *Factory) Token() (string, error) {
	if t := f.Getenv("LESSOR_TOKEN"); t != "" {
		return strings.TrimSpace(t), nil
	}
	path := f.tokenFile()
	if uid, _, sudo := f.sudoInvoker(); sudo {
		// This account's token file is shared by every caller sudo lets
		// in, and holds whatever token was stored last (the root token,
		// after operator init): using it would give each caller the
		// powers of another. Through sudo the caller's token is theirs.
		if fileExists(path) {
			return "", withHint(&localError{fmt.Errorf("lessor was run through sudo by another user (uid %d): the token file %s is this account's, not yours; give your token in LESSOR_TOKEN", uid, path)},
				"let sudo keep it: Defaults!/usr/bin/lessor env_keep += \"LESSOR_TOKEN\" in sudoers, then LESSOR_TOKEN=… sudo -u <account> lessor …; not SETENV or -E, which let the caller set SUDO_UID, LD_PRELOAD or HOME and act as the account")
		}
		return "", nil
	}
	b, err := readTokenFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", &localError{err}
	}
	return strings.TrimSpace(string(b)), nil
}

// readTokenFile reads the token file, refusing, as for the key file, one
// that is not a regular file or that group or others can read: a token
// (the root token, after `operator init`) others could read is a token
// others hold.
func readTokenFile(path string) ([]byte, error) {
	tf, err := openSecretFile(path, "token file ", false)
	var me *secretModeError
	if errors.As(err, &me) {
		return nil, withHint(err, "run: chmod 600 %s (and revoke the token if others may have read it)", path)
	}
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	b, err := io.ReadAll(io.LimitReader(tf, 4096))
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return b, nil
}

func (f *Factory) tokenFile() string { return expandHome(f.get("token_file"), f.home()) }

// Request runs one request through the pipeline with the caller's token:
// the local store's, or, with LESSOR_ADDR set, the server's (remote.go).
func (f *Factory) Request(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if f.remote() {
		return f.remoteRequest(ctx, req)
	}
	if err := f.refuseSudoAuditDevice(req); err != nil {
		return nil, err
	}
	// The reads before the backend acts (the barrier's header, the token,
	// its policies, the mounts) share one opening of a file store.
	f.holdReads = true
	defer func() {
		f.holdReads = false
		f.endReads()
	}()
	c, err := f.Core(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.setToken(req); err != nil {
		return nil, err
	}
	resp, err := c.Handle(ctx, req)
	if err != nil && isStoreFailure(err) {
		// The store failed under the request (damage found in a record, a
		// full disk, a read-only file system): a local error, named after
		// the store, like the ones found when it is opened.
		return nil, f.storeError(err)
	}
	return resp, err
}

// refuseSudoAuditDevice refuses, when lessor runs through sudo for
// another user, to enable an audit device (sys/audit/NAME): its log is
// written by this account, at a path the caller names, by this run and by
// every later one, the account's own included. Any file the account may
// write would take JSON lines that hold request paths the caller chooses:
// in ~/.bashrc or ~/.bash_profile, a $(…) in one runs as the account in
// its next shell. The account enables audit devices itself.
func (f *Factory) refuseSudoAuditDevice(req *logical.Request) error {
	if req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil
	}
	p, err := logical.CanonicalPath(req.Path, false)
	if err != nil || !strings.HasPrefix(p, "sys/audit/") {
		return nil // the request's own checks refuse a path that is not canonical
	}
	uid, _, sudo := f.sudoInvoker()
	if !sudo {
		return nil
	}
	return withHint(usageErrorf("%s: lessor was run through sudo by another user (uid %d), and an audit device writes as this account, to the file the request names", p, uid),
		"enable audit devices as the account itself: from its own shell (sudo -iu <account>) or its service unit")
}

// setToken gives the request the caller's token unless it has one.
func (f *Factory) setToken(req *logical.Request) error {
	if req.ClientToken == "" {
		tok, err := f.Token()
		if err != nil {
			return err
		}
		if tok == "" {
			return withHint(errors.New("no token"), // the caller names the request
				"set LESSOR_TOKEN or run `lessor login` (the root token was printed by `lessor operator init`)")
		}
		req.ClientToken = tok
	}
	return nil
}

// isStoreFailure tells a failure of the local store apart from a refused
// or failed operation.
func isStoreFailure(err error) bool {
	return errors.Is(err, storage.ErrCorrupt) || errors.Is(err, storage.ErrBusy) || errors.Is(err, storage.ErrUnavailable) ||
		errors.Is(err, storage.ErrSchemaVersion) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EDQUOT)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
