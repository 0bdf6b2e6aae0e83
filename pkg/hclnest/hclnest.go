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

import (
	"strings"
	"unicode"

	hclscanner "github.com/hashicorp/hcl/hcl/scanner"
	hcltoken "github.com/hashicorp/hcl/hcl/token"
	jsonscanner "github.com/hashicorp/hcl/json/scanner"
	jsontoken "github.com/hashicorp/hcl/json/token"
)

// Limit is the deepest nesting Deeper allows.
const Limit = 32

// Deeper reports whether text's braces and brackets nest deeper than
// Limit, counted on the tokens of the scanner the parser reads them from
// (JSON's for a text that starts with '{', as hcl.Parse chooses, HCL's
// otherwise). Only that scanner knows what is a string, a heredoc or a
// comment: a scan of its own that disagreed anywhere ("${"}", in which
// HCL's strings ignore a quote, or a quote in a heredoc) would start a
// string the parser does not see, and miss every bracket up to its end.
// The scanner does not recurse, and its work grows with the text only.
//
// The scanner panics on some malformed text (JSON's on `{"\0`). The
// parser, which reads the same tokens, stops there too (its panic is
// recovered as a parse error), so what came before is all the nesting it
// can meet: Deeper recovers and answers for that part.
func Deeper(text string) (deep bool) {
	defer func() {
		if recover() != nil {
			deep = false
		}
	}()
	if strings.HasPrefix(strings.TrimLeftFunc(text, unicode.IsSpace), "{") {
		s := jsonscanner.New([]byte(text))
		s.Error = func(jsontoken.Pos, string) {}
		return deeper(func() jsontoken.Type { return s.Scan().Type },
			jsontoken.EOF, [2]jsontoken.Type{jsontoken.LBRACE, jsontoken.LBRACK}, [2]jsontoken.Type{jsontoken.RBRACE, jsontoken.RBRACK})
	}
	s := hclscanner.New([]byte(text))
	s.Error = func(hcltoken.Pos, string) {}
	return deeper(func() hcltoken.Type { return s.Scan().Type },
		hcltoken.EOF, [2]hcltoken.Type{hcltoken.LBRACE, hcltoken.LBRACK}, [2]hcltoken.Type{hcltoken.RBRACE, hcltoken.RBRACK})
}

// deeper counts the nesting of the tokens scan returns up to eof, of which
// open and close are the brace and the bracket that open and close a
// level.
func deeper[T comparable](scan func() T, eof T, open, close [2]T) bool {
	depth := 0
	for t := scan(); t != eof; t = scan() {
		switch t {
		case open[0], open[1]:
			if depth++; depth > Limit {
				return true
			}
		case close[0], close[1]:
			depth = max(depth-1, 0)
		}
	}
	return false
}
