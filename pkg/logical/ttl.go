package logical

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrPastMaxTTL is returned when a lease or token can no longer be
// extended because its hard limit has been reached.
var ErrPastMaxTTL = errors.New("past the max TTL, cannot renew")

// TTLInputs are the layers that decide a lease's TTL, exactly as in Vault:
// the request's increment, the backend's (role's) values, the mount's tuned
// values (zero means inherit) and the system's.
type TTLInputs struct {
	Increment                time.Duration
	BackendTTL, BackendMax   time.Duration
	MountDefault, MountMax   time.Duration
	SystemDefault, SystemMax time.Duration
	Start, Now               time.Time
}

// CalculateTTL returns the TTL to grant and, when the proposed TTL was capped
// by the effective maximum, a warning in Vault's words. The effective
// maximum is the mount's max (else the system's), lowered to the backend
// max when that is smaller; it counts from Start (the issue time), while
// the TTL counts from Now, so a renewal may also shorten a lease.
func CalculateTTL(in TTLInputs) (ttl time.Duration, warning string, err error) {
	now := in.Now.Truncate(time.Second)
	start := in.Start.Truncate(time.Second)

	maxTTL := in.MountMax
	if maxTTL <= 0 {
		maxTTL = in.SystemMax
	}
	if in.BackendMax > 0 && in.BackendMax < maxTTL {
		maxTTL = in.BackendMax
	}

	proposed := in.Increment
	if proposed <= 0 {
		proposed = in.BackendTTL
	}
	if proposed <= 0 {
		proposed = in.MountDefault
	}
	if proposed <= 0 {
		proposed = in.SystemDefault
	}

	remaining := start.Add(maxTTL).Sub(now)
	if remaining <= 0 {
		return 0, "", ErrPastMaxTTL
	}
	if proposed > remaining {
		warning = fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
			HumanDuration(proposed), HumanDuration(remaining))
		return remaining, warning, nil
	}
	return proposed, "", nil
}

// HumanDuration formats d the way Vault's CLI does: Go's format with zero
// units dropped ("1h", "30m", "1h30m", "768h", "10m3s"), and "0s" for zero.
func HumanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
