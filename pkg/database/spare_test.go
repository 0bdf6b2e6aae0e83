package database

import (
	"context"
	"testing"
	"time"
)

// TestSparePasswords: a server's backend (one with a pool) issues with
// passwords made ready after the previous request; each is handed out
// once, and each logs in. A stale spare is dropped, not used.
func TestSparePasswords(t *testing.T) {
	e := newPooledEnv(t)
	e.writeRole("readonly", nil)
	seen := map[string]bool{}
	for i := range 4 {
		ready := map[string]bool{}
		if i > 0 {
			// The refill runs once the previous request has answered
			// (PBKDF2 verifiers: seconds under -race on a loaded machine).
			deadline := time.Now().Add(30 * time.Second)
			for len(e.b.spares.ch) < spareCount && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := len(e.b.spares.ch); n != spareCount {
				t.Fatalf("issue %d: %d spares ready, want %d", i, n, spareCount)
			}
			var held []spare
			for range spareCount {
				sp := <-e.b.spares.ch
				ready[sp.password] = true
				held = append(held, sp)
			}
			for _, sp := range held {
				e.b.spares.ch <- sp
			}
		}
		resp := e.issue("readonly")
		user, pw := resp.Data["username"].(string), resp.Data["password"].(string)
		if seen[pw] {
			t.Fatalf("issue %d: a password was handed out twice", i)
		}
		seen[pw] = true
		if i > 0 && !ready[pw] {
			t.Errorf("issue %d: the password was not one of the spares ready", i)
		}
		if err := e.srv.CanLogin(context.Background(), user, pw, e.db.Name); err != nil {
			t.Errorf("issue %d: login: %v", i, err)
		}
	}
	// Every spare left is one not handed out.
	for len(e.b.spares.ch) > 0 {
		if sp := <-e.b.spares.ch; seen[sp.password] {
			t.Error("a spare left in the pool was handed out")
		}
	}

	s := newSpares()
	s.ch <- spare{password: "old", verifier: "v", made: time.Now().Add(-spareMaxAge - time.Second)}
	if sp, ok := s.take(); ok {
		t.Errorf("took a stale spare %+v", sp)
	}
	// The command line's backend keeps none.
	if New(Options{}).spares != nil {
		t.Error("a backend without a pool keeps spares")
	}
}
