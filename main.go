// Command lessor hands out short-lived PostgreSQL credentials from a local,
// encrypted state file, the way Vault's database secrets engine does, with
// no server.
package main

import (
	"os"
	"runtime/pprof"
	"time"

	"github.com/lessorhq/lessor/cmd"
)

func main() {
	if p := os.Getenv("LESSOR_DEVPROF"); p != "" && len(os.Args) > 1 && os.Args[1] == "serve" {
		f, _ := os.Create(p)
		pprof.StartCPUProfile(f)
		go func() { time.Sleep(9 * time.Second); pprof.StopCPUProfile(); f.Close() }()
	}
	os.Exit(cmd.Main())
}
