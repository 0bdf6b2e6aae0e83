package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/lessorhq/lessor/pkg/httpapi"
)

// clientScripts are end-to-end scripts that run a second time with the
// CLI as a client (LESSOR_ADDR) of a server over the script's store:
// every request command must print and exit as it does locally. Their
// operator commands are the exception: they refuse with LESSOR_ADDR set,
// so the set-up runs `operator init` before the server starts, and the
// scripts run theirs only [!client].
var clientScripts = []string{
	"seed_guide.txtar",
	"format_env.txtar",
	"exec.txtar",
	"lease_renew.txtar",
}

// testClockSkewHeader carries the client's LESSOR_TESTONLY_CLOCK_SKEW to
// the test server, which moves its own clock by it for that request: the
// clock that decides a lease's expiry is the server's.
const testClockSkewHeader = "X-Lessor-Testonly-Clock-Skew"

func TestScriptsAgainstServer(t *testing.T) {
	var files []string
	for _, f := range clientScripts {
		files = append(files, filepath.Join("..", "testdata", "script", f))
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			if err := scriptSetup(env); err != nil {
				return err
			}
			return startScriptServer(env)
		},
		Cmds: scriptCmds,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "client":
				return true, nil
			case "pgstore":
				return false, nil
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// startScriptServer does on the "server's host" what an operator does
// before `lessor serve`: operator init (writing the root token to the
// script's token file, and ROOT_TOKEN and STORE_ID for the script), then
// serves the store on a loopback port and points LESSOR_ADDR at it.
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
	for k, from := range map[string]string{"LESSOR_STORE": f.storePath(), "LESSOR_KEY_FILE": expandHome(f.get("key_file"), f.home())} {
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

	var skew atomic.Int64
	sf := newFactory(strings.NewReader(""), &out, &errOut, func(k string) string {
		if v, ok := moved[k]; ok {
			return v
		}
		return env.Getenv(k)
	})
	sf.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	c, err := sf.Core(context.Background())
	if err != nil {
		return fmt.Errorf("open the store to serve it: %v", err)
	}
	api := httpapi.New(httpapi.Config{Core: c, Now: sf.Now}).Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Requests of one script come one at a time.
		if d, err := time.ParseDuration(r.Header.Get(testClockSkewHeader)); err == nil {
			skew.Store(int64(d))
			defer skew.Store(0)
		}
		api.ServeHTTP(w, r)
	}))
	env.Defer(func() {
		srv.Close()
		sf.close()
	})
	env.Setenv("LESSOR_ADDR", srv.URL)
	return nil
}
