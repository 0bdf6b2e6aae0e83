package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// pgStoreScripts are end-to-end scripts that run a second time with the
// store in a PostgreSQL schema (LESSOR_STORE) instead of a file: nothing
// above the storage layer may tell the difference.
var pgStoreScripts = []string{
	"seed_guide.txtar",
	"lease_renew.txtar",
	"lease_token.txtar",
	"reap_expiry.txtar",
	"reap_crash.txtar",
	"security_lease_id.txtar",
}

func TestScriptsOnPostgresStore(t *testing.T) {
	var files []string
	for _, f := range pgStoreScripts {
		files = append(files, filepath.Join("..", "testdata", "script", f))
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			if err := scriptSetup(env); err != nil {
				return err
			}
			p, _ := env.Values[pgKey{}].(*scriptPG)
			if p == nil {
				t.Fatal("a script run on the PostgreSQL store must need PostgreSQL")
			}
			env.Setenv("LESSOR_STORE", p.db.URL+"&schema=lessor_state")
			return nil
		},
		Cmds: scriptCmds,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "pgstore":
				return true, nil
			case "client":
				return false, nil
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}
