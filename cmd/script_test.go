package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

func TestMain(m *testing.M) {
	installTestHooks()
	testscript.Main(pgtest.WithCluster(m), map[string]func(){
		"lessor": func() { os.Exit(Main()) },
	})
}

// TestScripts runs testdata/script/*.txtar: each script gets its own HOME
// (so its own store, key file and token file) and, when it names [pg] or
// uses the database commands, its own PostgreSQL database.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("..", "testdata", "script"),
		RequireExplicitExec: false,
		Setup:               scriptSetup,
		Cmds:                scriptCmds,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			case "pgstore": // the run with the store in PostgreSQL (pgstore_script_test.go)
				return false, nil
			case "client": // the run against a server (client_script_test.go)
				return false, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

type pgKey struct{}

func scriptSetup(env *testscript.Env) error {
	home := filepath.Join(env.WorkDir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	env.Setenv("HOME", home)
	for _, k := range []string{"XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "LESSOR_STORE", "LESSOR_KEY_FILE", "LESSOR_TOKEN",
		"LESSOR_UNSEAL_KEY", "LESSOR_PASSPHRASE_FILE", "LESSOR_FORMAT", "LESSOR_CONFIG", "LESSOR_TOKEN_FILE",
		"LESSOR_ADDR", "LESSOR_CACERT", "LESSOR_CAPATH", "LESSOR_CLIENT_TIMEOUT", "LESSOR_ALLOW_HTTP",
		// Tests run through sudo are not lessor run through sudo for another user.
		"SUDO_UID", "SUDO_GID", "SUDO_USER", testStartedByEnv} {
		env.Setenv(k, "")
	}
	// Scripts that touch PostgreSQL say so in their first line.
	if !scriptUsesPG(env) {
		return nil
	}
	t := env.T().(testing.TB)
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	env.Values[pgKey{}] = &scriptPG{srv: srv, db: db}
	env.Setenv("PGHOST", srv.Host)
	env.Setenv("PGPORT", strconv.Itoa(srv.Port))
	env.Setenv("PGDB", db.Name)
	env.Setenv("PGADMIN", srv.User)
	env.Setenv("PGURL", db.URL)
	// A per-script name for an admin role a script creates itself (roles
	// are cluster-wide, so a fixed name would collide).
	rootUser := "root_" + db.Name
	env.Setenv("ROOTUSER", rootUser)
	// The admin password reaches scripts as a file, the way a careful
	// operator passes it (password=@file), never in argv.
	if err := os.WriteFile(filepath.Join(env.WorkDir, "admin-password"), []byte(srv.Password), 0o600); err != nil {
		return err
	}
	env.Defer(func() { dropScriptRoles(srv, db.Name, scriptStoreID(home), rootUser) })
	return nil
}

func scriptUsesPG(env *testscript.Env) bool {
	// testscript gives Setup no script text; scripts that need PostgreSQL
	// carry a marker file.
	_, err := os.Stat(filepath.Join(env.WorkDir, ".needs-postgres"))
	return err == nil
}

type scriptPG struct {
	srv *pgtest.Server
	db  *pgtest.Database
}

func pgOf(ts *testscript.TestScript) *scriptPG {
	p, _ := ts.Value(pgKey{}).(*scriptPG)
	if p == nil {
		ts.Fatalf("this script needs PostgreSQL: add an empty .needs-postgres file to it")
	}
	return p
}

// scriptStoreID returns the id of the store a script made in its HOME, ""
// when there is none that opens without a prompt.
func scriptStoreID(home string) string {
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	})
	f.ReadPassword = func(string) ([]byte, error) { return nil, errors.New("no prompt in cleanup") }
	b, err := f.Barrier(context.Background())
	if err != nil {
		return ""
	}
	return b.StoreID()
}

// dropScriptRoles removes the roles a script's credentials created: they
// are cluster-wide, so the database drop alone would leave them. Only the
// roles of the script's own store go (scripts run in parallel on one
// cluster); a store that cannot be read drops nothing.
func dropScriptRoles(srv *pgtest.Server, dbName, storeID string, extra ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.URL(dbName))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	names := extra
	// Without the store's id (a script that keeps its store elsewhere),
	// nothing is dropped by comment: matching every lessor role would
	// delete the roles of the scripts running beside this one.
	if storeID != "" {
		rows, err := conn.Query(ctx, `SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE 'lessor:{"store":"' || $1 || '"%'`, storeID)
		if err != nil {
			return
		}
		own, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		names = append(own, extra...)
	}
	for _, n := range names {
		q := pgx.Identifier{n}.Sanitize()
		conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, n)
		conn.Exec(ctx, "REASSIGN OWNED BY "+q+" TO CURRENT_USER")
		conn.Exec(ctx, "DROP OWNED BY "+q)
		conn.Exec(ctx, "DROP ROLE IF EXISTS "+q)
	}
}

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// leasecheck: checks that store and PostgreSQL agree (crash_test.go).
	"leasecheck": cmdLeaseCheck,
	// onhost COMMAND...: exec on the server's host (client_script_test.go).
	"onhost": cmdOnHost,
	// pglog: reads the server log (pgstore_log_test.go).
	"pglog": cmdPGLog,
	// rawstore: changes the store file with plain bbolt, as anyone who may
	// write it can without a key (script_raw_test.go).
	"rawstore": cmdRawStore,
	// sql QUERY... | sql -f FILE: runs the query as the superuser in the
	// script's database and prints each row as values joined by "|".
	"sql": func(ts *testscript.TestScript, neg bool, args []string) {
		p := pgOf(ts)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.db.URL)
		if err != nil {
			ts.Fatalf("sql: connect: %v", err)
		}
		defer conn.Close(ctx)
		q := strings.Join(args, " ")
		if len(args) == 2 && args[0] == "-f" {
			// sql -f FILE runs FILE verbatim, as psql -f would.
			q = ts.ReadFile(args[1])
		}
		rows, err := conn.Query(ctx, expandBraced(ts, q), pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			var out bytes.Buffer
			for rows.Next() {
				vals, verr := rows.Values()
				if verr != nil {
					err = verr
					break
				}
				parts := make([]string, len(vals))
				for i, v := range vals {
					switch x := v.(type) {
					case nil:
						parts[i] = "NULL"
					case time.Time:
						parts[i] = x.UTC().Format(time.RFC3339)
					default:
						parts[i] = fmt.Sprint(x)
					}
				}
				out.WriteString(strings.Join(parts, "|") + "\n")
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
			ts.Stdout().Write(out.Bytes())
		}
		if err != nil && !neg {
			ts.Fatalf("sql: %v", err)
		}
		if err == nil && neg {
			ts.Fatalf("sql: unexpected success")
		}
		if err != nil {
			fmt.Fprintln(ts.Stderr(), err)
		}
	},
	// pglogin USER PASSWORD [QUERY]: logs in over TCP with a password
	// (scram-sha-256 on the test server) and runs QUERY (default SELECT 1).
	"pglogin": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: pglogin USER PASSWORD [QUERY]")
		}
		p := pgOf(ts)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cfg, err := pgx.ParseConfig(p.db.URL)
		if err != nil {
			ts.Fatalf("pglogin: %v", err)
		}
		cfg.User, cfg.Password = args[0], args[1]
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			q := "SELECT 1"
			if len(args) > 2 {
				q = expandBraced(ts, strings.Join(args[2:], " "))
			}
			_, err = conn.Exec(ctx, q)
			conn.Close(ctx)
		}
		switch {
		case err != nil && !neg:
			ts.Fatalf("pglogin %s: %v", args[0], err)
		case err == nil && neg:
			ts.Fatalf("pglogin %s: unexpectedly succeeded", args[0])
		case err != nil:
			fmt.Fprintln(ts.Stderr(), err)
		}
	},
	// json2env PATH=VAR...: reads the last command's stdout as JSON and
	// sets each VAR to the value at the dotted PATH.
	"json2env": func(ts *testscript.TestScript, neg bool, args []string) {
		var doc any
		if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &doc); err != nil {
			ts.Fatalf("json2env: stdout is not JSON: %v", err)
		}
		for _, a := range args {
			path, name, ok := strings.Cut(a, "=")
			if !ok {
				ts.Fatalf("json2env: want PATH=VAR, got %q", a)
			}
			v := doc
			for _, k := range strings.Split(path, ".") {
				m, ok := v.(map[string]any)
				if !ok {
					ts.Fatalf("json2env: %s: not an object at %q", path, k)
				}
				v = m[k]
			}
			if v == nil {
				ts.Fatalf("json2env: %s is missing", path)
			}
			ts.Setenv(name, fmt.Sprint(v))
		}
	},
	// stdout2env VAR: sets VAR to the last command's stdout, trimmed.
	"stdout2env": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: stdout2env VAR")
		}
		ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
	},
	// filesum FILE: prints a digest of the file, to compare before/after.
	"filesum": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		if err != nil {
			ts.Fatalf("filesum: %v", err)
		}
		fmt.Fprintf(ts.Stdout(), "%x\n", sha256Sum(b))
	},
	// flipbyte FILE KEY: flips one byte in the middle of the sealed value
	// stored under KEY in a store file, the way disk damage or tampering
	// would.
	"flipbyte": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: flipbyte STOREFILE KEY")
		}
		if err := flipValueByte(ts.MkAbs(args[0]), args[1]); err != nil {
			ts.Fatalf("flipbyte: %v", err)
		}
	},
	// readmewalk HEADING: runs the commands of that README section's
	// console block verbatim with sh (readme_walk_test.go).
	"readmewalk": cmdReadmeWalk,
}

// expandBraced replaces ${NAME} with the script's variable, leaving every
// other "$" alone (SQL uses them for parameters and dollar quoting);
// testscript itself does not expand inside single quotes.
func expandBraced(ts *testscript.TestScript, s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(ts.Getenv(s[i+2 : i+j]))
		s = s[i+j+1:]
	}
}
