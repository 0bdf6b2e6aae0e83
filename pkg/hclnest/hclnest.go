// Package hclnest bounds how deeply an HCL or JSON text nests, before the
// hcl v1 parser sees it.
//
// That parser recurses once per brace or bracket: a text of millions
// ("[[[[…", under any size limit a request has) overflows its goroutine's
// stack, a fatal error that no recover catches and that ends the process
// (lessor serve, for everyone), and a few thousand already take it
// seconds to minutes, as its work grows with the square of the depth.
// lessor's policies need at most five levels.
package hclnest

import "strings"

// Limit is the deepest nesting Deeper allows.
const Limit = 32

// Deeper reports whether text's braces and brackets, outside strings and
// comments (#, // and /* */), nest deeper than Limit.
func Deeper(text string) bool {
	depth := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '"':
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
		case '#':
			i = skipPast(text, i, "\n")
		case '/':
			switch {
			case strings.HasPrefix(text[i:], "//"):
				i = skipPast(text, i, "\n")
			case strings.HasPrefix(text[i:], "/*"):
				i = skipPast(text, i+2, "*/")
			}
		case '{', '[':
			if depth++; depth > Limit {
				return true
			}
		case '}', ']':
			depth = max(depth-1, 0)
		}
	}
	return false
}

// skipPast returns the index of the last byte of the first end in text
// after i, or the end of text.
func skipPast(text string, i int, end string) int {
	j := strings.Index(text[i:], end)
	if j < 0 {
		return len(text)
	}
	return i + j + len(end) - 1
}
