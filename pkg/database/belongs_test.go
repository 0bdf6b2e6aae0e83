package database

import (
	"strings"
	"testing"
	"time"
)

// belongsToByParse is belongsTo without its short cut: the rule it must
// keep.
func belongsToByParse(storeID, leaseID string) func(string) bool {
	return func(c string) bool {
		m, err := ParseRoleComment(c)
		return err == nil && m.StoreID == storeID && m.LeaseID == leaseID
	}
}

// TestBelongsToAgreesWithParse: belongsTo claims exactly the comments
// ParseRoleComment reads as this store's and this lease's, for comments
// lessor wrote and for near misses a role's owner could write.
func TestBelongsToAgreesWithParse(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := [][2]string{
		{"store-1", "database/creds/ro/abc"},
		{"st\"ore", "database/creds/<ro>&/x"},
		{"s\\", "l\u2028é"},
		{"", "database/creds/ro/abc"},
		{"store-1", ""},
	}
	var comments []string
	for _, id := range ids {
		c := RoleMetadata{StoreID: id[0], LeaseID: id[1], Expires: exp}.Comment()
		head, _, _ := strings.Cut(c, `"expires":"`)
		head += `"expires":"`
		comments = append(comments, c,
			c+" ", c+`x`, strings.TrimSuffix(c, `}`), c+`{}`,
			head+`2030-01-02T03:04:05+01:00"}`,
			head+`2030-01-02T03:04:05.5Z"}`,
			head+`2030-13-02T03:04:05Z"}`,
			head+`2030-01-02T03:04:05Z","store":"other"}`,
			head+`2030-01-02T03:04:05Z","extra":1}`,
			head+`2030-01-02T03:04:05Z\"}`,
			head+`"}`,
			head+"2030-01-02T03:04:05Z\x00\"}",
			strings.Replace(c, `{"store"`, `{ "store"`, 1),
			strings.ToUpper(c[:1])+c[1:],
		)
	}
	for _, id := range ids {
		fast, slow := belongsTo(id[0], id[1]), belongsToByParse(id[0], id[1])
		for _, c := range comments {
			if got, want := fast(c), slow(c); got != want {
				t.Errorf("belongsTo(%q, %q)(%q) = %v, ParseRoleComment says %v", id[0], id[1], c, got, want)
			}
		}
	}
	if !belongsTo(ids[0][0], ids[0][1])(comments[0]) {
		t.Error("the comment lessor wrote for the lease is not claimed")
	}
}

// TestBelongsToAllocatesNothing: claiming a comment lessor wrote costs no
// JSON decoding (reap asks it of every role it drops).
func TestBelongsToAllocatesNothing(t *testing.T) {
	c := RoleMetadata{StoreID: "store-1", LeaseID: "database/creds/ro/abc", Expires: time.Now()}.Comment()
	mine := belongsTo("store-1", "database/creds/ro/abc")
	if n := testing.AllocsPerRun(100, func() {
		if !mine(c) {
			t.Fatal("not claimed")
		}
	}); n != 0 {
		t.Errorf("%v allocations per comment, want 0", n)
	}
}
