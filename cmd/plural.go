package cmd

import "fmt"

// count says "1 lease" or "2 leases": n with the word in the number that
// fits.
func count(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
