package postgres

import (
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Redact returns err with every password in secrets replaced by
// [password] in its text, keeping err's chain for errors.Is and errors.As.
// Besides each password whole (as is, percent-encoded, percent-decoded),
// it removes the pieces a connection-string parser can cut a password
// into — every stretch of it between two of the characters URLs and DSNs
// split on, 4 characters or longer — so that a mangled URL that printed
// part of a password as a host name shows none of it. Arbitrary runs of a
// password's characters are left alone: they occur in ordinary text (a
// user name that shares a word with the password, the word "password"),
// and removing them would garble errors; a parser cuts only at its
// delimiters.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var whole []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		forms := []string{s, url.PathEscape(s), url.QueryEscape(s), escapeUserinfo(s)}
		if u, err := url.PathUnescape(s); err == nil && u != s {
			forms = append(forms, u)
		}
		for _, f := range forms {
			whole = append(whole, f)
			whole = append(whole, pieces(f)...)
		}
	}
	// Verifiers first: a secret that is part of one (its iteration
	// count, say) would otherwise break it up and leave its keys.
	clean := redactText(maskVerifiers(msg), whole)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// minPiece is the length of the shortest piece of a password that is
// removed on its own.
const minPiece = 4

// splitters are the characters at which URL and keyword/value parsers cut
// a connection string.
const splitters = "@:/?#&=%,; '\"\\\t\n"

// pieces returns every stretch of s from one splitter boundary to another
// that is at least minPiece long (s itself excluded).
func pieces(s string) []string {
	bounds := []int{0}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(splitters, s[i]) >= 0 {
			bounds = append(bounds, i, i+1)
		}
	}
	bounds = append(bounds, len(s))
	var out []string
	for a := 0; a < len(bounds); a += 2 {
		for b := a + 1; b < len(bounds); b += 2 {
			if p := s[bounds[a]:bounds[b]]; len(p) >= minPiece && len(p) < len(s) {
				out = append(out, p)
			}
		}
	}
	return out
}

// redactText replaces, left to right, the longest of whole found at each
// position.
func redactText(msg string, whole []string) string {
	var b strings.Builder
	for i := 0; i < len(msg); {
		best := 0
		for _, w := range whole {
			if len(w) > best && strings.HasPrefix(msg[i:], w) {
				best = len(w)
			}
		}
		if best == 0 {
			b.WriteByte(msg[i])
			i++
			continue
		}
		b.WriteString("[password]")
		i += best
	}
	return b.String()
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// verifierRE matches a SCRAM-SHA-256 verifier, what {{password}} becomes
// under scram-sha-256: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
var verifierRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+`)
})

// maskVerifiers replaces every SCRAM verifier in msg: a statement that
// fails may quote the one it was given (SELECT '{{password}}'::int), and
// a verifier, with one login of the role seen in clear, logs in as it.
func maskVerifiers(msg string) string {
	if !strings.Contains(msg, "SCRAM-SHA-256$") {
		return msg
	}
	return verifierRE().ReplaceAllString(msg, "[verifier]")
}
