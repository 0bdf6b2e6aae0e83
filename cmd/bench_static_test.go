package cmd

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/storage"
)

// TestBenchStaticReap measures what static roles cost reap, in one run:
//
//   - a reap with nothing to do, on a store without static roles and on
//     one with 1,000 static roles none of which is due, interleaved (the
//     target: no measurable difference);
//   - a reap that rotates 1,000 due static roles, against a reap of the
//     same store with none due.
//
// The 1,000 logins really exist; after the rotations a sample of them
// logs in with the password static-creds returns.
func TestBenchStaticReap(t *testing.T) {
	r := requireBench(t)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("LESSOR_BENCH_STATIC")); err == nil && v > 0 {
		n = v
	}
	empty, many := r.newStore(""), r.newStore("")
	many.lessor("write", "database/config/pg", "allowed_roles=group,tables6,st*")
	prefix := "bench-static-" + many.storeID[:8] + "-"
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "CREATE ROLE %s LOGIN;", ident(prefix+strconv.Itoa(i)))
		if i%500 == 499 || i == n-1 {
			mustExec(t, r.admConn, b.String())
			b.Reset()
		}
	}
	many.lessor("write", "database/static-roles/st0", "db_name=pg", "username="+prefix+"0", "rotation_period=1h")
	many.cloneStaticRoles(n, prefix)
	if out := many.lessor("list", "-format=json", "database/static-roles"); strings.Count(out, `"st`) != n {
		t.Fatalf("%d static roles listed, want %d", strings.Count(out, `"st`), n)
	}
	reapOnce := func(s *benchStore, wantRotated int) time.Duration {
		t.Helper()
		res := s.run("reap", "-format=json")
		if res.err != nil {
			t.Fatal(res.err)
		}
		var sum struct {
			Rotated         int `json:"rotated"`
			RotationsFailed int `json:"rotations_failed"`
		}
		if err := json.Unmarshal([]byte(res.out), &sum); err != nil {
			t.Fatalf("reap output: %v\n%s", err, res.out)
		}
		if sum.Rotated != wantRotated || sum.RotationsFailed != 0 {
			t.Fatalf("reap rotated %d (want %d), %d failed:\n%s", sum.Rotated, wantRotated, sum.RotationsFailed, res.out)
		}
		return res.wall
	}

	// A reap with nothing to do: no static roles vs 1,000 not due.
	runs := benchRuns()
	var es, ws []time.Duration
	load0 := loadAvg()
	for i := -2; i < runs; i++ {
		e, m := reapOnce(empty, 0), reapOnce(many, 0)
		if i >= 0 {
			es, ws = append(es, e), append(ws, m)
		}
	}
	report(t, fmt.Sprintf("reap, nothing due: no static roles vs %d not due (median, min-max)", n),
		fmt.Sprintf("%s (%s-%s) vs %s (%s-%s), %.3fx; load %s -> %s", ms(median(es)), ms(slices.Min(es)), ms(slices.Max(es)),
			ms(median(ws)), ms(slices.Min(ws)), ms(slices.Max(ws)), float64(median(ws))/float64(median(es)), load0, loadAvg()), "1.00x (none measurable)")

	// 1,000 due vs none due, alternately, on the same store, and
	// interleaved with the floor: PostgreSQL alone setting the same n
	// passwords (verifiers computed beforehand) in one transaction sent
	// in one round trip.
	floor := func(round int) time.Duration {
		var q strings.Builder
		q.WriteString("BEGIN;")
		for i := range n {
			v, err := postgres.ScramVerifier(fmt.Sprintf("floor-password-%d-%d", round, i), crand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&q, "ALTER ROLE %s WITH PASSWORD '%s';", ident(prefix+strconv.Itoa(i)), v)
		}
		q.WriteString("COMMIT;")
		start := time.Now()
		mustExec(t, r.admConn, q.String())
		return time.Since(start)
	}
	var dues, nones, floors []time.Duration
	load0 = loadAvg()
	for k := range 3 {
		many.makeStaticDue()
		dues = append(dues, reapOnce(many, n))
		nones = append(nones, reapOnce(many, 0))
		floors = append(floors, floor(k))
	}
	// Put lessor's passwords back for the login check below.
	many.makeStaticDue()
	reapOnce(many, n)
	report(t, fmt.Sprintf("reap: %d static rotations, SQL floor (median of 3, min-max), lessor / floor", n),
		fmt.Sprintf("%s (%s-%s), %.2fx", ms(median(floors)), ms(slices.Min(floors)), ms(slices.Max(floors)), float64(median(dues))/float64(median(floors))), "")
	report(t, fmt.Sprintf("reap: %d static roles due vs none due (median of 3, min-max)", n),
		fmt.Sprintf("%s (%s-%s) vs %s (%s-%s): %.0f rotations/s; load %s -> %s", ms(median(dues)), ms(slices.Min(dues)), ms(slices.Max(dues)),
			ms(median(nones)), ms(slices.Min(nones)), ms(slices.Max(nones)), float64(n)/median(dues).Seconds(), load0, loadAvg()), "O(due)")

	// The rotations were real: a sample logs in with what static-creds says.
	cfg := postgres.Config{ConnectionURL: r.url(r.lessorAdm, "bench-admin-pw", r.dbName)}
	for i := 0; i < n; i += max(1, n/10) {
		pw := strings.TrimSpace(many.lessor("read", "-field=password", "database/static-creds/st"+strconv.Itoa(i)))
		if res, err := postgres.TryLogin(context.Background(), cfg, prefix+strconv.Itoa(i), pw); res != postgres.LoginAccepted {
			t.Fatalf("static role st%d: static-creds' password does not log in (%v)", i, err)
		}
	}
}

func loadAvg() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "?"
	}
	s := strings.TrimSpace(string(out))
	if _, after, ok := strings.Cut(s, "load average:"); ok {
		return strings.TrimSpace(after)
	}
	return s
}

// staticMountPrefix finds the storage prefix of the mount that holds the
// template static role st0.
func (s *benchStore) staticMountPrefix(tx storage.Tx) string {
	keys, err := tx.List("logical/")
	if err != nil {
		s.rig.t.Fatal(err)
	}
	for _, k := range keys {
		if p, ok := strings.CutSuffix(k, "static-role/st0"); ok {
			return p
		}
	}
	s.rig.t.Fatal("no static-role/st0 in the store")
	return ""
}

// cloneStaticRoles writes static roles st1..st(n-1) straight into the
// store, copies of st0 for logins prefix+i, not due for an hour. The key
// layout mirrors pkg/database's (static.go); if it changes, the listing
// check above fails.
func (s *benchStore) cloneStaticRoles(n int, prefix string) {
	t := s.rig.t
	b := s.open()
	ctx := context.Background()
	err := b.Update(ctx, func(tx storage.Tx) error {
		mp := s.staticMountPrefix(tx)
		raw, err := tx.Get(mp + "static-role/st0")
		if err != nil {
			return err
		}
		next := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		for i := 1; i < n; i++ {
			var rec map[string]any
			if err := json.Unmarshal(raw, &rec); err != nil {
				return err
			}
			name := "st" + strconv.Itoa(i)
			rec["username"] = prefix + strconv.Itoa(i)
			rec["next_rotation"] = next
			// The record holds its due key relative to the mount.
			rec["due_key"] = fmt.Sprintf("static-due/%012d/%s", next.Unix(), name)
			val, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			for k, v := range map[string][]byte{
				mp + "static-role/" + name: val,
				rec["due_key"].(string):    {},
				mp + "static-user/pg/" + fmt.Sprintf("%x", prefix+strconv.Itoa(i)): []byte(name),
			} {
				if err := tx.Put(k, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("clone static roles: %v", err)
	}
}

// makeStaticDue moves every static role's next rotation a minute into
// the past.
func (s *benchStore) makeStaticDue() {
	t := s.rig.t
	b := s.open()
	err := b.Update(context.Background(), func(tx storage.Tx) error {
		mp := s.staticMountPrefix(tx)
		keys, err := tx.List(mp + "static-role/")
		if err != nil {
			return err
		}
		past := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		for _, k := range keys {
			raw, err := tx.Get(k)
			if err != nil {
				return err
			}
			var rec map[string]any
			if err := json.Unmarshal(raw, &rec); err != nil {
				return err
			}
			name := strings.TrimPrefix(k, mp+"static-role/")
			if old, _ := rec["due_key"].(string); old != "" {
				if err := tx.Delete(mp + old); err != nil {
					return err
				}
			}
			dk := fmt.Sprintf("static-due/%012d/%s", past.Unix(), name)
			rec["next_rotation"], rec["due_key"] = past, dk
			val, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := tx.Put(k, val); err != nil {
				return err
			}
			if err := tx.Put(mp+dk, []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("make static roles due: %v", err)
	}
}
