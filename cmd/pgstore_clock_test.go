package cmd

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
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

// TestServeClockFollowsServerWithoutReaper: serve with its reaper off
// (-reap-interval=0, another host reaps) still reads the store server's
// clock again now and then. Its host's clock gains an hour while it runs;
// sys/health's server_time_utc, lessor's clock, is soon back on the
// server's, as the tokens it checks and the leases it issues are.
func TestServeClockFollowsServerWithoutReaper(t *testing.T) {
	db := pgtest.Require(t).NewDatabase(t)
	c := newCompCLI(t)
	c.env["LESSOR_STORE"] = db.URL + "&schema=serve_clock"
	c.must("operator", "init")
	// Restored after serve stops (cleanups run last first).
	was := serveClockInterval
	t.Cleanup(func() { serveClockInterval = was })
	serveClockInterval = 50 * time.Millisecond

	var drift atomic.Int64
	addr := freeAddr(t)
	stop, _ := startServeWith(t, c, func(f *Factory) {
		f.hostClock = func() time.Time { return time.Now().Add(time.Duration(drift.Load())) }
		f.Now = f.hostClock
	}, "-listen="+addr, "-reap-interval=0")
	waitHealthy(t, http.DefaultClient, "http://"+addr)
	drift.Store(int64(time.Hour))

	var off time.Duration
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v1/sys/health")
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			ServerTime int64 `json:"server_time_utc"`
		}
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The server runs on this machine: its clock is the real one.
		if off = time.Unix(h.ServerTime, 0).Sub(time.Now()); off > -3*time.Second && off < 3*time.Second {
			break
		}
	}
	if off <= -3*time.Second || off >= 3*time.Second {
		t.Fatalf("10 s after the host's clock gained an hour, serve's clock is %v off the server's", off)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}
