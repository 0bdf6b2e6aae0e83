package httpapi_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// TestConcurrentRenewalsMatchPostgres: requests renew one lease at once
// (several clients of one `lessor serve`, or a cron renewal meeting an
// application's). Each succeeds (PostgreSQL's "tuple concurrently
// updated" on two ALTER ROLEs of one role is no answer to give), and
// the role's rolvaliduntil ends as the lease's expiry plus the 5 s
// buffer: a record earlier than the role has reap revoke a credential a
// renewal promised, one later has the credential stop logging in while
// its lease is valid.
func TestConcurrentRenewalsMatchPostgres(t *testing.T) {
	e := newInflightEnv(t)
	resp := e.must(t, e.root, logical.ReadOperation, "database/creds/readonly", nil)
	id, user := resp.Secret.LeaseID, logical.String(resp.Data["username"])
	// Adopted first: the renewals below race each other, not the
	// adoption of a served credential's pending lease.
	e.must(t, e.root, logical.UpdateOperation, "sys/leases/renew/"+id, map[string]any{"increment": "5m"})
	conn := e.db.Conn(t)
	for round := range 15 {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inc := fmt.Sprintf("%dm", 10*(i+1)+round)
				if _, err := e.do(e.root, logical.UpdateOperation, "sys/leases/renew/"+id, map[string]any{"increment": inc}); err != nil {
					t.Errorf("renew +%s: %v", inc, err)
				}
			}()
		}
		wg.Wait()
		le, err := e.c.Leases().Lookup(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var until time.Time
		if err := conn.QueryRow(ctx, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, user).Scan(&until); err != nil {
			t.Fatal(err)
		}
		if d := until.Sub(le.ExpireTime.Add(5 * time.Second)); d > time.Second || d < -time.Second {
			t.Fatalf("round %d: the lease expires at %v, the role's VALID UNTIL is %v (%v apart)", round, le.ExpireTime, until, d)
		}
	}
}

// TestConcurrentRenewalsOfPendingLease: a served credential's lease is
// left pending for the next command to adopt. Two requests renewing it
// at once both adopt it; the one whose adoption found the lease already
// active must renew it, not answer "lease not found" (exit 2) for a
// lease that exists.
func TestConcurrentRenewalsOfPendingLease(t *testing.T) {
	e := newInflightEnv(t)
	for range 5 {
		resp := e.must(t, e.root, logical.ReadOperation, "database/creds/readonly", nil)
		id := resp.Secret.LeaseID
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.do(e.root, logical.UpdateOperation, "sys/leases/renew/"+id, map[string]any{"increment": "30m"}); err != nil {
					t.Errorf("renew %s: %v", id, err)
				}
			}()
		}
		wg.Wait()
	}
}
