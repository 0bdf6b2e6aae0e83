package cmd

import (
	"net/http"
	"os"
	"time"

	"github.com/lessorhq/lessor/pkg/failpoint"
)

// The test seams' environment variables. Only this test binary reads them
// (TestReleaseBinaryHasNoTestHooks checks that the release binary does
// not even contain their names).
const (
	// testOnlyClockSkewEnv moves lessor's clock forward by a duration, to
	// test expiry without sleeping; PostgreSQL keeps its own clock.
	testOnlyClockSkewEnv = "LESSOR_TESTONLY_CLOCK_SKEW"
	// testOnlyHostClockSkewEnv moves the host's own clock by a duration:
	// a host whose clock is wrong. Unlike the skew above, which moves time
	// itself, a PostgreSQL store's server clock corrects it.
	testOnlyHostClockSkewEnv = "LESSOR_TESTONLY_HOST_CLOCK_SKEW"
	// testOnlyFailpointEnv names the pkg/failpoint steps (comma-separated)
	// at which a lessor process of this test binary kills itself.
	testOnlyFailpointEnv = "LESSOR_FAILPOINT"
	// testStartedByEnv says what started lessor, for tests that play a
	// caller running it through sudo: "sudo", or "account" (a shell of
	// the account); unset, lessor reads its parent from /proc.
	testStartedByEnv = "LESSOR_TESTONLY_STARTED_BY"
)

// installTestHooks sets the test seams; TestMain calls it before anything
// runs, so that lessor run in-process, by testscript, or as a copy of
// this binary (the dev tests) sees them.
func installTestHooks() {
	skewed := func(getenv func(string) string, env string, base func() time.Time) func() time.Time {
		skew := getenv(env)
		if skew == "" {
			return nil
		}
		d, err := time.ParseDuration(skew)
		if err != nil {
			return nil
		}
		return func() time.Time { return base().Add(d) }
	}
	testOnlyClock = func(getenv func(string) string, host func() time.Time) func() time.Time {
		return skewed(getenv, testOnlyClockSkewEnv, host)
	}
	testOnlyHostClock = func(getenv func(string) string) func() time.Time {
		return skewed(getenv, testOnlyHostClockSkewEnv, time.Now)
	}
	testOnlyClientHeader = func(getenv func(string) string) http.Header {
		skew := getenv(testOnlyClockSkewEnv)
		if skew == "" {
			return nil
		}
		return http.Header{testClockSkewHeader: {skew}}
	}
	testOnlyStartedBy = func(getenv func(string) string) string { return getenv(testStartedByEnv) }
	testOnlyArmFailpoints = func() {
		failpoint.Arm(os.Getenv(testOnlyFailpointEnv), killSelf)
	}
}

// killSelf is the action of the armed failpoints: the process dies there
// by SIGKILL, so that no deferred function, store close or connection
// shutdown runs: the crash-safety tests see exactly what a power cut would
// leave.
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
