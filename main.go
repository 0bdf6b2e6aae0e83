// Command lessor hands out short-lived PostgreSQL credentials from a local,
// encrypted state file, the way Vault's database secrets engine does, with
// no server.
package main

import (
	"os"

	"github.com/lessorhq/lessor/cmd"
)

func main() { os.Exit(cmd.Main()) }
