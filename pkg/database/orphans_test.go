package database

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

func TestReapOrphans(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(nil)
	e.writeRole("readonly", nil)
	start := e.sys.Now().Truncate(time.Second)

	kept := e.issue("readonly")
	lost1, lost2, renewed := e.issue("readonly"), e.issue("readonly"), e.issue("readonly")
	// A renewal moves VALID UNTIL but not the comment; the orphan must be
	// judged by the later of the two.
	if err := e.b.RenewSecret(ctx, e.secret(renewed.Secret.LeaseID), start.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	user := func(r *logical.Response) string { return r.Data["username"].(string) }

	// Roles lessor must never touch: one made by hand, one of another
	// store, one whose lessor comment is damaged. All long expired.
	conn := e.db.Conn(t)
	byHand := "v-" + e.display + "-byhand"
	otherStore := "v-" + e.display + "-otherstore"
	damaged := "v-" + e.display + "-damaged"
	e.srv.DropRolesAtCleanup(t, byHand, otherStore, damaged)
	for _, q := range []string{
		`CREATE ROLE "` + byHand + `" LOGIN`,
		`COMMENT ON ROLE "` + byHand + `" IS 'made by hand'`,
		`CREATE ROLE "` + otherStore + `" LOGIN`,
		`COMMENT ON ROLE "` + otherStore + `" IS '` + RoleMetadata{StoreID: "other-" + e.sys.storeID, LeaseID: "database/creds/readonly/x", Expires: start.Add(-time.Hour)}.Comment() + `'`,
		`CREATE ROLE "` + damaged + `" LOGIN`,
		`COMMENT ON ROLE "` + damaged + `" IS 'lessor:{"store":"` + e.sys.storeID + `","lease":'`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// The store loses three records, as a restored backup would.
	for _, r := range []*logical.Response{lost1, lost2, renewed} {
		delete(e.leases.pending, r.Secret.LeaseID)
	}
	var looked []string
	opts := OrphanOptions{
		StoreID: e.sys.storeID,
		HasLease: func(_ context.Context, id string) (bool, error) {
			looked = append(looked, id)
			_, ok := e.leases.pending[id]
			return ok, nil
		},
	}
	orphan := func(r *logical.Response, expires time.Time, expired, revoked bool) Orphan {
		return Orphan{Connection: "pg", Username: user(r), LeaseID: r.Secret.LeaseID, Expires: expires, Expired: expired, Revoked: revoked}
	}
	byName := func(os []Orphan) []Orphan {
		slices.SortFunc(os, func(a, b Orphan) int { return strings.Compare(a.Username, b.Username) })
		return os
	}
	all := []string{user(kept), user(lost1), user(lost2), user(renewed), byHand, damaged, otherStore}
	slices.Sort(all)
	check := func(step string, got *OrphanReport, err error, want []Orphan, present []string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		w := jsonOf(t, &OrphanReport{Orphans: byName(want), Errors: []ConnectionError{}})
		if g := jsonOf(t, got); g != w {
			t.Fatalf("%s: report\n%s\nwant\n%s", step, g, w)
		}
		var names []string
		for _, r := range e.pgRoles() {
			names = append(names, r.name)
		}
		if !slices.Equal(names, present) {
			t.Fatalf("%s: roles left %q, want %q", step, names, present)
		}
	}

	// Before expiry: three orphans, none due, nothing dropped.
	opts.Now = start.Add(30 * time.Minute)
	rep, err := e.b.ReapOrphans(ctx, e.st, opts)
	check("before expiry", rep, err, []Orphan{
		orphan(lost1, start.Add(time.Hour), false, false),
		orphan(lost2, start.Add(time.Hour), false, false),
		orphan(renewed, start.Add(3*time.Hour), false, false),
	}, all)
	slices.Sort(looked)
	wantLooked := []string{kept.Secret.LeaseID, lost1.Secret.LeaseID, lost2.Secret.LeaseID, renewed.Secret.LeaseID}
	slices.Sort(wantLooked)
	if !slices.Equal(looked, wantLooked) {
		t.Fatalf("looked up leases %q, want only this store's %q", looked, wantLooked)
	}

	// Two hours on, a dry run names the two expired ones and drops nothing.
	opts.Now, opts.DryRun = start.Add(2*time.Hour), true
	rep, err = e.b.ReapOrphans(ctx, e.st, opts)
	check("dry run", rep, err, []Orphan{
		orphan(lost1, start.Add(time.Hour), true, false),
		orphan(lost2, start.Add(time.Hour), true, false),
		orphan(renewed, start.Add(3*time.Hour), false, false),
	}, all)

	// The real run drops exactly those two.
	opts.DryRun = false
	rep, err = e.b.ReapOrphans(ctx, e.st, opts)
	check("after expiry", rep, err, []Orphan{
		orphan(lost1, start.Add(time.Hour), true, true),
		orphan(lost2, start.Add(time.Hour), true, true),
		orphan(renewed, start.Add(3*time.Hour), false, false),
	}, slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == user(lost1) || n == user(lost2) }))

	// Past the renewed expiry the last orphan goes; the lease-holding role
	// and the roles lessor did not make stay.
	opts.Now = start.Add(4 * time.Hour)
	rep, err = e.b.ReapOrphans(ctx, e.st, opts)
	check("after renewed expiry", rep, err, []Orphan{orphan(renewed, start.Add(3*time.Hour), true, true)},
		slices.Sorted(slices.Values([]string{user(kept), byHand, damaged, otherStore})))
}

func TestReapOrphansUnreachableConnection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeConfig(nil)
	port := freePort(t)
	e.must(logical.UpdateOperation, "config/down", map[string]any{
		"plugin_name":       PluginName,
		"connection_url":    fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/x?sslmode=disable&connect_timeout=2", port),
		"username":          "admin",
		"password":          "secret-admin-pw",
		"verify_connection": false,
	})
	rep, err := e.b.ReapOrphans(ctx, e.st, OrphanOptions{
		StoreID: e.sys.storeID, Now: time.Now(),
		HasLease: func(context.Context, string) (bool, error) { return true, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Orphans) != 0 || len(rep.Errors) != 1 || rep.Errors[0].Connection != "down" ||
		!strings.HasPrefix(rep.Errors[0].Error, `connection "down": `) || strings.Contains(rep.Errors[0].Error, "secret-admin-pw") {
		t.Fatalf("report = %s", jsonOf(t, rep))
	}
	if _, err := e.b.ReapOrphans(ctx, e.st, OrphanOptions{Now: time.Now()}); err == nil {
		t.Fatal("a sweep without store id and lease lookup ran")
	}
}
