package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/failpoint"
)

// TestCrashScriptCoversEveryFailpoint keeps reap_crash.txtar honest: a
// failpoint added to lessor without a crash case there fails this test.
func TestCrashScriptCoversEveryFailpoint(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "script", "reap_crash.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range failpoint.All {
		if !strings.Contains(string(raw), "env "+testOnlyFailpointEnv+"="+step+"\n") {
			t.Errorf("reap_crash.txtar never crashes at %s", step)
		}
	}
}

// cmdLeaseCheck is the script command `leasecheck`: it checks lessor's
// crash-safety invariant between the script's store and PostgreSQL —
// every role whose comment names the store has a lease record of that id
// for that username, and every lease record's role exists — and prints
// "consistent: N leases, N roles". With !, it expects a violation.
func cmdLeaseCheck(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 0 {
		ts.Fatalf("usage: leasecheck")
	}
	p := pgOf(ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, ts.Getenv)
	f.ReadPassword = func(string) ([]byte, error) { return nil, errors.New("no prompt in leasecheck") }
	cr, err := f.Core(ctx)
	if err != nil {
		ts.Fatalf("leasecheck: open store: %v", err)
	}
	entries, err := cr.Leases().Entries(ctx, "")
	if err != nil {
		ts.Fatalf("leasecheck: list leases: %v", err)
	}
	conn, err := pgx.Connect(ctx, p.db.URL)
	if err != nil {
		ts.Fatalf("leasecheck: connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
WHERE shobj_description(oid, 'pg_authid') LIKE $1`, database.CommentPrefix+"%")
	if err != nil {
		ts.Fatalf("leasecheck: list roles: %v", err)
	}
	roles := map[string]string{} // role name -> lease id, this store's only
	allRoles := map[string]bool{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			ts.Fatalf("leasecheck: %v", err)
		}
		allRoles[name] = true
		if m, err := database.ParseRoleComment(comment); err == nil && m.StoreID == cr.StoreID() {
			roles[name] = m.LeaseID
		}
	}
	if err := rows.Err(); err != nil {
		ts.Fatalf("leasecheck: list roles: %v", err)
	}

	var problems []string
	byID := map[string]string{} // lease id -> username
	for _, e := range entries {
		user, _ := e.InternalData["username"].(string)
		byID[e.ID] = user
		if !allRoles[user] {
			problems = append(problems, fmt.Sprintf("lease %s (%s) points to missing role %q", e.ID, e.State, user))
		}
	}
	for name, id := range roles {
		user, ok := byID[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("role %s has no lease (its comment names %s)", name, id))
		case user != name:
			problems = append(problems, fmt.Sprintf("role %s: its lease %s is for %q", name, id, user))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		fmt.Fprintln(ts.Stderr(), strings.Join(problems, "\n"))
		if !neg {
			ts.Fatalf("leasecheck: %d problems", len(problems))
		}
		return
	}
	if neg {
		ts.Fatalf("leasecheck: unexpectedly consistent (%d leases, %d roles)", len(entries), len(roles))
	}
	fmt.Fprintf(ts.Stdout(), "consistent: %d leases, %d roles\n", len(entries), len(roles))
}
