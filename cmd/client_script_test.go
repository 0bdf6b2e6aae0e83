package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// clientScripts are end-to-end scripts that run a second time with the
// CLI as a client (LESSOR_ADDR) of `lessor serve` over the script's store:
// every request command must print and exit as it does locally. Their
// operator commands are the exception: they refuse with LESSOR_ADDR set,
// so the set-up runs `operator init` before the server starts, and the
// scripts run theirs only [!client].
var clientScripts = []string{
	"seed_guide.txtar",
	"format_env.txtar",
	"exec.txtar",
	"lease_renew.txtar",
	"audit_log.txtar",
	"generic_verbs.txtar",
	"least_privilege_recipe.txtar",
	"path_help.txtar",
	"policy_token.txtar",
	"secrets_enable.txtar",
	"security_lease_id.txtar",
	"security_mount_enum.txtar",
	"security_param_case.txtar",
	"security_param_values.txtar",
	"security_path_canonical.txtar",
	"security_statements_encoded.txtar",
	"token_ttl_range.txtar",
	"ux_bad_token.txtar",
	"ux_db_errors.txtar",
	"vault_connection_url.txtar",
	"vault_expiration.txtar",
	"vault_failed_issue.txtar",
	"vault_statements.txtar",
	"vault_unknown_fields.txtar",
	"vault_username_template.txtar",
}

// testClockSkewHeader carries the client's LESSOR_TESTONLY_CLOCK_SKEW to
// the test's proxy in front of the server, which moves the server's clock
// by it for that request: the clock that decides a lease's expiry is the
// server's.
const testClockSkewHeader = "X-Lessor-Testonly-Clock-Skew"

func TestScriptsAgainstServer(t *testing.T) { runClientScripts(t, clientScripts, false) }

// The seed guide again, the server's store in PostgreSQL.
func TestScriptsAgainstServerOnPostgresStore(t *testing.T) {
	runClientScripts(t, []string{"seed_guide.txtar"}, true)
}

func runClientScripts(t *testing.T, scripts []string, pgStore bool) {
	var files []string
	for _, f := range scripts {
		files = append(files, filepath.Join("..", "testdata", "script", f))
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			if err := scriptSetup(env); err != nil {
				return err
			}
			if pgStore {
				p, _ := env.Values[pgKey{}].(*scriptPG)
				if p == nil {
					t.Fatal("a script run on the PostgreSQL store must need PostgreSQL")
				}
				env.Setenv("LESSOR_STORE", p.db.URL+"&schema=lessor_state")
			}
			return startScriptServer(env)
		},
		Cmds: scriptCmds,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "client":
				return true, nil
			case "pgstore":
				return pgStore, nil
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// startScriptServer does on the "server's host" what an operator does:
// operator init (writing the root token to the script's token file, and
// ROOT_TOKEN and STORE_ID for the script), then `lessor serve` over the
// store, which the client no longer has; LESSOR_ADDR points at it. When
// the script ends, the server must stop cleanly with no token in its log.
func startScriptServer(env *testscript.Env) error {
	getenv := func(k string) string { return env.Getenv(k) }
	var out, errOut bytes.Buffer
	f := newFactory(strings.NewReader(""), &out, &errOut, getenv)
	if code := run(context.Background(), f, []string{"operator", "init", "-format=json"}); code != 0 {
		return fmt.Errorf("operator init: exit %d: %s", code, errOut.String())
	}
	var init struct {
		RootToken string `json:"root_token"`
		StoreID   string `json:"store_id"`
	}
	if err := json.Unmarshal(out.Bytes(), &init); err != nil {
		return fmt.Errorf("operator init: %v", err)
	}
	env.Setenv("ROOT_TOKEN", init.RootToken)
	env.Setenv("STORE_ID", init.StoreID)

	// The store and its key move to the "server's host": the client keeps
	// only its token, so a request that did not go to the server fails.
	host := filepath.Join(env.WorkDir, "server-host")
	if err := os.Mkdir(host, 0o700); err != nil {
		return err
	}
	moved := map[string]string{}
	files := map[string]string{"LESSOR_KEY_FILE": expandHome(f.get("key_file"), f.home())}
	if u, _ := f.storeURL(); u == "" {
		files["LESSOR_STORE"] = f.storePath()
	}
	for k, from := range files {
		to := filepath.Join(host, filepath.Base(from))
		if err := os.Rename(from, to); err != nil {
			return err
		}
		moved[k] = to
	}
	if p, _ := env.Values[pgKey{}].(*scriptPG); p != nil {
		// scriptSetup's clean-up finds the store in HOME no more.
		env.Defer(func() { dropScriptRoles(p.srv, p.db.Name, init.StoreID) })
	}

	// The real `lessor serve`, in-process (on its own factory, whose clock
	// the test moves), on a Unix socket of the server's host; the reaper is
	// off, so that a request with a moved clock cannot race it.
	var skew atomic.Int64
	serveLog := &lockedBuffer{}
	// The server's environment is a copy: it runs beside the set-up,
	// which goes on to set LESSOR_ADDR for the script.
	serverEnv := map[string]string{}
	for _, kv := range env.Vars {
		if k, v, ok := strings.Cut(kv, "="); ok {
			serverEnv[k] = v
		}
	}
	maps.Copy(serverEnv, moved)
	env.Values[serverHostKey{}] = moved
	sf := newFactory(strings.NewReader(""), io.Discard, serveLog, func(k string) string { return serverEnv[k] })
	sf.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	sock := filepath.Join(host, "lessor.sock")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, sf, []string{"serve", "-listen=", "-unix=" + sock, "-reap-interval=0"}) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case code := <-done:
			stop()
			return fmt.Errorf("lessor serve exited %d: %s", code, serveLog.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("lessor serve did not listen on %s: %s", sock, serveLog.String())
		}
	}

	// The script talks to the server through a proxy on a loopback port
	// that applies the client's clock skew, a test seam, to the server's
	// clock for the request.
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "lessor"
			r.Out.Header.Del(testClockSkewHeader)
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Requests of one script come one at a time.
		if d, err := time.ParseDuration(r.Header.Get(testClockSkewHeader)); err == nil {
			skew.Store(int64(d))
			defer skew.Store(0)
		}
		proxy.ServeHTTP(w, r)
	}))
	env.Defer(func() {
		srv.Close()
		stop()
		if code := <-done; code != 0 {
			env.T().Fatal(fmt.Sprintf("lessor serve exited %d on SIGTERM's equivalent: %s", code, serveLog.String()))
		}
		sf.close()
		// No token reaches the server's log.
		if strings.Contains(serveLog.String(), "lsr_") {
			env.T().Fatal("the server's log holds a token:\n" + serveLog.String())
		}
	})
	env.Setenv("LESSOR_ADDR", srv.URL)
	return nil
}

// lockedBuffer is a bytes.Buffer the server's goroutines may write while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverHostKey keeps, in a script run against a server, where the set-up
// moved the store and its key (LESSOR_STORE, LESSOR_KEY_FILE).
type serverHostKey struct{}

// cmdOnHost is `onhost COMMAND [ARGS...]`: exec COMMAND as the operator
// does on the server's host, for what only the account running the server
// may do (enable an audit device). Against a server ([client]) it runs
// without LESSOR_ADDR, on the store and key file the set-up moved there;
// otherwise it is exec.
func cmdOnHost(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: onhost COMMAND [ARGS...]")
	}
	vars := map[string]string{"LESSOR_ADDR": ""}
	if host, ok := ts.Value(serverHostKey{}).(map[string]string); ok {
		maps.Copy(vars, host)
	}
	saved := map[string]string{}
	for k, v := range vars {
		saved[k] = ts.Getenv(k)
		ts.Setenv(k, v)
	}
	defer func() {
		for k, v := range saved {
			ts.Setenv(k, v)
		}
	}()
	err := ts.Exec(args[0], args[1:]...)
	switch {
	case err != nil && !neg:
		ts.Fatalf("onhost %s: %v", strings.Join(args, " "), err)
	case err == nil && neg:
		ts.Fatalf("onhost %s: unexpected success", strings.Join(args, " "))
	}
}
