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

// The package never arms itself from the environment: only Arm does.
func TestEnvironmentArmsNothing(t *testing.T) {
	defer Arm("", nil)
	t.Setenv("LESSOR_FAILPOINT", RevokeAfterBackend)
	Hit(RevokeAfterBackend)
	if a := current.Load(); a != nil {
		t.Fatalf("failpoints armed without Arm: %q", a.steps)
	}
}
