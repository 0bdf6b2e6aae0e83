package cmd

import (
	"os"
	"time"
)

// killSelf is the action of lessor's failpoints (pkg/failpoint): when
// LESSOR_FAILPOINT names a step, the process dies there by SIGKILL, so
// that no deferred function, store close or connection shutdown runs:
// the crash-safety tests see exactly what a power cut would leave.
func killSelf(string) {
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		// Still no deferred work: exit as a killed process would report.
		os.Exit(137)
	}
	// The signal is asynchronous; nothing may run after the step.
	for {
		time.Sleep(time.Hour)
	}
}
