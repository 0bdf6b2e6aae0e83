package devcluster

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A synchronous replica has every acknowledged commit: after the primary
// crashes and the replica is promoted, the rows are there and the replica
// takes writes. Before that, it refuses them.
func TestReplicaPromote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startOrSkip(t, Options{Superuser: "dev_admin", Replication: true, SynchronousStandby: "r1"})
	r, err := p.StartReplica(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	if r.Port == p.Port || r.Password != p.Password || r.Dir == p.Dir {
		t.Fatalf("replica %+v of %+v", r, p)
	}
	pc, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	// The primary counts the replica as synchronous once it has
	// replied to the stream.
	var mode string
	for range 100 {
		err := pc.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = 'r1' AND state = 'streaming'`).Scan(&mode)
		if err == nil && mode == "sync" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if mode != "sync" {
		t.Fatalf("replica r1 is %q, not a streaming synchronous standby", mode)
	}
	if _, err := pc.Exec(ctx, `CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)`); err != nil {
		t.Fatal(err)
	}
	pc.Close(ctx)
	rc, err := pgx.Connect(ctx, r.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Exec(ctx, `INSERT INTO t VALUES (0)`); err == nil {
		t.Fatal("the standby took a write")
	}
	rc.Close(ctx)

	if err := p.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	if serverRunning(p.DataDir) {
		t.Fatal("the primary still runs after Crash")
	}
	if err := r.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	rc, err = pgx.Connect(ctx, r.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var n int
	if _, err := rc.Exec(ctx, `INSERT INTO t VALUES (101)`); err != nil {
		t.Fatalf("write after promotion: %v", err)
	}
	if err := rc.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 101 {
		t.Fatalf("%d rows after promotion, want 101", n)
	}
}
