package failpoint

import (
	"slices"
	"testing"
)

func TestHitRunsOnlyArmedSteps(t *testing.T) {
	defer Arm("", nil)
	var got []string
	record := func(step string) { got = append(got, step) }

	if armed := Arm(" issue/after-create , revoke/after-claim,", record); !slices.Equal(armed, []string{IssueAfterCreate, RevokeAfterClaim}) {
		t.Fatalf("Arm returned %q", armed)
	}
	for _, s := range All {
		Hit(s)
	}
	Hit("issue/after-create-typo")
	if want := []string{IssueAfterCreate, RevokeAfterClaim}; !slices.Equal(got, want) {
		t.Fatalf("hits = %q, want %q", got, want)
	}

	got = nil
	Arm("", record)
	for _, s := range All {
		Hit(s)
	}
	Arm(IssueAfterPending, nil)
	Hit(IssueAfterPending)
	if got != nil {
		t.Fatalf("disarmed failpoints ran: %q", got)
	}
}

func TestSetActionReadsTheEnvironment(t *testing.T) {
	defer Arm("", nil)
	t.Setenv(EnvVar, RevokeAfterBackend)
	n := 0
	if armed := SetAction(func(string) { n++ }); !slices.Equal(armed, []string{RevokeAfterBackend}) {
		t.Fatalf("SetAction armed %q", armed)
	}
	Hit(RevokeAfterClaim)
	Hit(RevokeAfterBackend)
	if n != 1 {
		t.Fatalf("action ran %d times, want 1", n)
	}
}
