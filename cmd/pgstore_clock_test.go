package cmd

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/storage"
)

// TestStoreClockFollowsServerOverTime: lessor's clock on a PostgreSQL
// store is the server's as read at the open, moved on by the host's clock.
// A long-running process (serve, reap -loop) on a host whose clock runs
// fast drifts away from the server's by as much as the host's does, an
// hour here after weeks; each reaping pass reads the server's clock again
// and lessor's is back on it.
func TestStoreClockFollowsServerOverTime(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Require(t).NewDatabase(t)
	u := db.URL + "&schema=clock_drift"
	p, err := storage.CreatePostgres(ctx, u, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()

	var drift atomic.Int64
	f := newFactory(strings.NewReader(""), io.Discard, io.Discard, func(k string) string {
		if k == "LESSOR_STORE" {
			return u
		}
		return ""
	})
	f.hostClock = func() time.Time { return time.Now().Add(time.Duration(drift.Load())) }
	f.Now = f.hostClock
	defer f.close()
	if _, err := f.openPhysical(ctx); err != nil {
		t.Fatal(err)
	}
	near := func(what string) {
		t.Helper()
		// The server runs on this machine: its clock is the real one.
		if d := f.Now().Sub(time.Now()); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("%s: lessor's clock is %v off the server's", what, d)
		}
	}
	near("after the open")
	drift.Store(int64(time.Hour))
	f.resyncClock(ctx)
	near("after the host's clock gained an hour and a reaping pass began")
}
