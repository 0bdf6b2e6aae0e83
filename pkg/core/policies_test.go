package core

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
)

// TestACLOfLargePolicyParsedOnce: a token's ACL is built at every request;
// a stored policy of a megabyte is parsed once, not at each of them.
func TestACLOfLargePolicyParsedOnce(t *testing.T) {
	var text strings.Builder
	for i := 0; text.Len() < policy.MaxSize-100; i++ {
		fmt.Fprintf(&text, "path \"s/%d/*\" { capabilities = [\"read\"] }\n", i)
	}
	raw, err := json.Marshal(storedPolicy{Name: "big", Raw: text.String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store := storage.NewMemory()
	if err := store.Update(ctx, func(tx storage.Tx) error { return tx.Put(policyPrefix+"big", raw) }); err != nil {
		t.Fatal(err)
	}
	build := func() time.Duration {
		start := time.Now()
		err := store.View(ctx, func(tx storage.Tx) error {
			acl, err := aclForTx(tx, []string{"big"})
			if err == nil && !acl.Allow("read", "s/7/x", nil).Allowed {
				err = fmt.Errorf("the policy does not grant read on s/7/x")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	first := build()
	var again time.Duration
	for range 10 {
		again += build()
	}
	t.Logf("the first build took %v, ten more %v", first, again)
	// What the timing shows, without depending on the machine's load:
	// the same text gives the policy parsed before, and a new text (a
	// policy updated) a new parse.
	var a, b, c *policy.Policy
	if err := store.View(ctx, func(tx storage.Tx) error {
		var err error
		if a, err = parsedPolicy("big", text.String()); err != nil {
			return err
		}
		if b, err = parsedPolicy("big", text.String()); err != nil {
			return err
		}
		c, err = parsedPolicy("big", text.String()+"# updated\n")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same policy text was parsed again")
	}
	if c == a {
		t.Error("an updated policy text was taken from the cache")
	}
}

// TestPolicyCacheBoundedByEntries: policies of a few bytes each, as many as
// a policy writer makes, fill the cache to a bounded number of entries, not
// to a million.
func TestPolicyCacheBoundedByEntries(t *testing.T) {
	for i := range 100_000 {
		if _, err := parsedPolicy("tiny", fmt.Sprintf("#%d\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	parsed.Lock()
	n := len(parsed.m)
	parsed.Unlock()
	if limit := maxParsedBytes / parsedEntryCost; n > limit {
		t.Fatalf("the cache holds %d policies, more than %d", n, limit)
	}
}
