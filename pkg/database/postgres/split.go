package postgres

import (
	"strings"
)

// tokenKind classifies a stretch of SQL text for the splitter and for
// placeholder substitution, which both need to know whether a character is
// SQL or inside a quote or comment.
type tokenKind int

const (
	tokPlain        tokenKind = iota
	tokString                 // '…' with '' escapes
	tokEString                // E'…' with backslash escapes too
	tokIdent                  // "…" with "" escapes
	tokDollar                 // $tag$…$tag$
	tokLineComment            // -- … up to the newline
	tokBlockComment           // /* … */, nested
)

type token struct {
	kind tokenKind
	text string // the whole token, delimiters included
	tag  string // tokDollar: the delimiter, e.g. "$$" or "$fn$"
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 ||
		(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// dollarTag returns the dollar-quote delimiter starting at s[i] ('$'), or "".
func dollarTag(s string, i int) string {
	j := i + 1
	if j < len(s) && s[j] == '$' {
		return "$$"
	}
	if j >= len(s) || !isIdentStart(s[j]) {
		return ""
	}
	for j < len(s) && isIdentByte(s[j]) && s[j] != '$' {
		j++
	}
	if j < len(s) && s[j] == '$' {
		return s[i : j+1]
	}
	return ""
}

// lex cuts s into tokens whose texts concatenate to s. Unterminated quotes
// and comments run to the end of s, as PostgreSQL would read them.
func lex(s string) []token {
	var toks []token
	plainStart := 0
	flush := func(end int) {
		if end > plainStart {
			toks = append(toks, token{kind: tokPlain, text: s[plainStart:end]})
		}
	}
	i := 0
	for i < len(s) {
		c := s[i]
		start, kind, tag := i, tokPlain, ""
		switch {
		case c == '\'':
			kind = tokString
			// E'…' only when the E stands alone, not as the end of a word.
			if i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i == 1 || !isIdentByte(s[i-2])) {
				kind, start = tokEString, i-1
			}
			i++
			for i < len(s) {
				if kind == tokEString && s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
		case c == '"':
			kind = tokIdent
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
		case c == '$' && (i == 0 || !isIdentByte(s[i-1])) && dollarTag(s, i) != "":
			kind, tag = tokDollar, dollarTag(s, i)
			if end := strings.Index(s[i+len(tag):], tag); end >= 0 {
				i += len(tag) + end + len(tag)
			} else {
				i = len(s)
			}
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			kind = tokLineComment
			if end := strings.IndexByte(s[i:], '\n'); end >= 0 {
				i += end
			} else {
				i = len(s)
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			kind = tokBlockComment
			depth := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			i++
			continue
		}
		if i > len(s) { // a backslash at the very end of an E'…' string
			i = len(s)
		}
		flush(start)
		toks = append(toks, token{kind: kind, text: s[start:i], tag: tag})
		plainStart = i
	}
	flush(len(s))
	return toks
}

// SplitStatements splits sql into statements at the semicolons that end
// them: not those inside quoted literals or identifiers, dollar-quoted
// bodies, comments, or the BEGIN ATOMIC … END body of a CREATE FUNCTION or
// CREATE PROCEDURE (or a BEGIN … END block written, unquoted, after DO).
// Pieces are trimmed and empty ones dropped.
func SplitStatements(sql string) []string {
	var (
		out      []string
		start    int    // start of the current statement in sql
		first    string // first keyword of the current statement, upper case
		prev     string // previous keyword
		depth    int    // BEGIN/CASE … END nesting inside a body
		endOpen  bool   // saw END inside a body; whether it closes depends on the next word
		pos      int
		wordFrom = -1
	)
	resolveEnd := func(next string) {
		if endOpen {
			endOpen = false
			// END IF and END LOOP close blocks that never counted.
			if next != "IF" && next != "LOOP" && depth > 0 {
				depth--
			}
		}
	}
	word := func(w string) {
		w = strings.ToUpper(w)
		resolveEnd(w)
		if first == "" {
			first = w
		}
		switch {
		case depth == 0 && first == "CREATE" && prev == "BEGIN" && w == "ATOMIC":
			depth = 1
		case depth == 0 && first == "DO" && w == "BEGIN":
			depth = 1
		case depth > 0 && (w == "BEGIN" || w == "CASE"):
			depth++
		case depth > 0 && w == "END":
			endOpen = true
		}
		prev = w
	}
	cut := func(end int) {
		if piece := strings.TrimSpace(sql[start:end]); piece != "" {
			out = append(out, piece)
		}
	}
	for _, t := range lex(sql) {
		if t.kind != tokPlain {
			if wordFrom >= 0 {
				word(sql[wordFrom:pos])
				wordFrom = -1
			}
			pos += len(t.text)
			continue
		}
		for k := 0; k < len(t.text); k++ {
			c := t.text[k]
			if isIdentByte(c) {
				if wordFrom < 0 {
					wordFrom = pos
				}
				pos++
				continue
			}
			if wordFrom >= 0 {
				word(sql[wordFrom:pos])
				wordFrom = -1
			}
			if c == ';' {
				resolveEnd("")
				if depth == 0 {
					cut(pos)
					start, first, prev = pos+1, "", ""
				}
			}
			pos++
		}
	}
	cut(len(sql))
	return out
}
