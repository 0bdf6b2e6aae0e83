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
	"slices"
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
// In HCL, a block's keys nest too: hcl.Decode makes `a "b" "c" { }` the
// object a holding b holding c, one recursion a key, with work that
// grows with the square of their number (ten thousand keys take seconds,
// a megabyte of them hours). A brace after n keys counts as n levels.
//
// The JSON scanner panics on some escapes in a string ("\x", a "\u" cut
// short). The parser reads the same tokens from the same scanner, so it
// panics there too, or stops earlier, with no more nesting than was
// counted up to that token: the text is not deeper, and the caller's
// parser, which it guards against such panics, gives the error.
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
			jsontoken.EOF, [2]jsontoken.Type{jsontoken.LBRACE, jsontoken.LBRACK}, [2]jsontoken.Type{jsontoken.RBRACE, jsontoken.RBRACK}, nil, nil)
	}
	// hcl's parser scans the text with "\r\n" made "\n", and a heredoc's
	// anchor before a "\r\n" is another word than before a "\n": scanned
	// as given, a heredoc could hide what the parser reads as brackets.
	s := hclscanner.New([]byte(strings.ReplaceAll(text, "\r\n", "\n")))
	s.Error = func(hcltoken.Pos, string) {}
	return deeper(func() hcltoken.Type { return s.Scan().Type },
		hcltoken.EOF, [2]hcltoken.Type{hcltoken.LBRACE, hcltoken.LBRACK}, [2]hcltoken.Type{hcltoken.RBRACE, hcltoken.RBRACK},
		[]hcltoken.Type{hcltoken.IDENT, hcltoken.STRING}, []hcltoken.Type{hcltoken.COMMENT})
}

// deeper counts the nesting of the tokens scan returns up to eof, of which
// open and close are the brace and the bracket that open and close a
// level. A run of keys (between which skip may stand, as comments may
// between a block's keys) before the brace open[0] adds a level for each
// key after the first.
func deeper[T comparable](scan func() T, eof T, open, close [2]T, keys, skip []T) bool {
	var levels []int // what each open brace or bracket added
	depth, run := 0, 0
	for t := scan(); t != eof; t = scan() {
		switch {
		case slices.Contains(skip, t):
			continue
		case slices.Contains(keys, t):
			run++
			continue
		case t == open[0] || t == open[1]:
			n := 1
			if t == open[0] {
				n = max(run, 1)
			}
			levels = append(levels, n)
			if depth += n; depth > Limit {
				return true
			}
		case (t == close[0] || t == close[1]) && len(levels) > 0:
			depth -= levels[len(levels)-1]
			levels = levels[:len(levels)-1]
		}
		run = 0
	}
	return false
}
