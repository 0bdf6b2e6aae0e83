package format

import (
	"io"
	"math"
	"strings"
)

// Warning lines are at most 78 columns, Vault's maxLineLength: 2 columns
// of indent and 76 of text.
const (
	warningIndent = "  "
	warningWidth  = 78 - len(warningIndent)
)

// Warnings writes a response's warnings to errw as Vault does:
//
//	WARNING! The following warnings were returned from lessor:
//
//	  * TTL of "48h" exceeded the effective max_ttl of "23h59m57s"; TTL value is
//	  capped accordingly
//
// Each warning is re-wrapped (its own line breaks become spaces) and
// followed by a blank line. No warnings, no output.
func Warnings(errw io.Writer, warnings []string) {
	if len(warnings) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("WARNING! The following warnings were returned from lessor:\n\n")
	for _, w := range warnings {
		// A server's warning reaches the terminal: its control characters
		// are written as escapes.
		for _, line := range wrap("* "+EscapeControls(w), warningWidth) {
			b.WriteString(warningIndent)
			b.WriteString(line)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	_, _ = io.WriteString(errw, b.String())
}

// overlongPenalty is added for a line that is wider than the limit, which
// happens only when one word is.
const overlongPenalty = 100000

// wrap breaks s into lines of at most limit bytes with the least
// raggedness (the sum over all lines but the last of the squared gap to
// the limit). It is the algorithm of github.com/kr/text, which Vault wraps
// its messages with, down to its details: words are separated by single
// spaces (so a double space survives as an empty word) and measured in
// bytes. Greedy filling would break some warnings differently.
func wrap(s string, limit int) []string {
	words := strings.Split(strings.ReplaceAll(strings.TrimSpace(s), "\n", " "), " ")
	n := len(words)
	// prefix[i] is the width of words[:i] with one space after each word,
	// so words[i:j] joined by spaces is prefix[j]-prefix[i]-1 wide.
	prefix := make([]int, n+1)
	for i, w := range words {
		prefix[i+1] = prefix[i] + len(w) + 1
	}
	width := func(i, j int) int { return prefix[j] - prefix[i] - 1 }

	// cost[i] is the least cost of setting words[i:]; next[i] is where
	// the first of those lines ends.
	cost := make([]int, n+1)
	next := make([]int, n+1)
	for i := n - 1; i >= 0; i-- {
		// The last line costs nothing, even when it is one overlong word.
		if width(i, n) <= limit || i == n-1 {
			next[i] = n
			continue
		}
		cost[i] = math.MaxInt
		for j := i + 1; j < n; j++ {
			lw := width(i, j)
			gap := limit - lw
			c := gap*gap + cost[j]
			if lw > limit {
				// Wider lines only cost more from here on; stop once the
				// line alone costs more than the best found, so that a
				// long warning does not cost time quadratic in its words.
				if gap*gap+overlongPenalty >= cost[i] {
					break
				}
				c += overlongPenalty
			}
			if c < cost[i] {
				cost[i] = c
				next[i] = j
			}
		}
	}

	var lines []string
	for i := 0; i < n; i = next[i] {
		lines = append(lines, strings.Join(words[i:next[i]], " "))
	}
	return lines
}
