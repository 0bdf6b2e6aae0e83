package cmd

import (
	"slices"
	"testing"

	"github.com/lessorhq/lessor/pkg/format"
)

// TestChildEnvWithholdsSecrets: the command lessor exec runs gets the
// credential, and none of the caller's unseal key or tokens.
func TestChildEnvWithholdsSecrets(t *testing.T) {
	caller := []string{"HOME=/home/u", "LESSOR_UNSEAL_KEY=k3y", "LESSOR_TOKEN=lsr_x", "VAULT_TOKEN=hvs.x", "LESSOR_STORE=/s", "PGUSER=old"}
	for _, store := range []string{"postgres://lessor:St0re@db/lessor", "host=db password=St0re"} {
		if got := childEnv([]string{"LESSOR_STORE=" + store}, nil); len(got) != 0 {
			t.Errorf("the child gets the store connection string: %q", got)
		}
	}
	got := childEnv(caller, []format.Var{{Name: "PGUSER", Value: "v-1"}, {Name: "PGPASSWORD", Value: "pw"}})
	want := []string{"HOME=/home/u", "LESSOR_STORE=/s", "PGUSER=v-1", "PGPASSWORD=pw"}
	if !slices.Equal(got, want) {
		t.Fatalf("child env = %q, want %q", got, want)
	}
	if caller[1] != "LESSOR_UNSEAL_KEY=k3y" {
		t.Fatal("childEnv changed the caller's slice")
	}
}
