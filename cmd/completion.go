package cmd

import (
	"github.com/spf13/cobra"
)

// completePaths completes PATH arguments. Dynamic completion of mounts,
// roles and leases needs the store; until that lands it offers nothing
// rather than file names.
func completePaths(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeLeases(f *Factory) cobra.CompletionFunc { return completePaths(f) }
