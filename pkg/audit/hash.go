package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/lessorhq/lessor/pkg/logical"
)

// hashPrefix marks a hashed value, in the same form as Vault's audit log,
// so that tools and habits built for Vault's log recognise it.
const hashPrefix = "hmac-sha256:"

// HashString returns the HMAC-SHA256 of s under key as "hmac-sha256:<hex>",
// exactly as it appears in the audit log; `lessor audit hash VALUE` prints
// it so that an operator can grep the log for a secret without the log
// ever holding the secret.
func HashString(key []byte, s string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return hashPrefix + hex.EncodeToString(m.Sum(nil))
}

// exposure says how much of a value must be hidden. The levels are ordered:
// a value inherits the strictest level of any key above it.
type exposure int

const (
	// clear values are written as they are, except that a string that
	// looks like a URL carrying a password is still hashed.
	clear exposure = iota
	// urlish values are connection strings: hashed whole when they carry
	// an inline password, clear otherwise.
	urlish
	// secret values are always hashed, whatever their type.
	secret
)

// secretKeys are the keys whose values are always hashed. Everything not
// named here (usernames, lease ids, accessors, paths, policies) stays in
// clear, because the audit log's main question is "who held role X when",
// which a hashed username cannot answer.
var secretKeys = map[string]bool{
	"password":     true,
	"new_password": true,
	"client_token": true,
	"token":        true,
	"private_key":  true,
	"unseal_key":   true,
	"unseal_keys":  true,
	"passphrase":   true,
}

// pathSecrets are keys that are secret only under some request paths:
// under auth/token/, "id" is the token itself (a custom id on create, the
// looked-up token in a lookup response), while elsewhere an id (a lease's)
// must stay readable; under sys/audit-hash, "input" is the value an
// operator wants to find in the log, usually a password.
var pathSecrets = map[string]string{
	"auth/token/":    "id",
	"sys/audit-hash": "input", // with or without a device path
}

// redactor hides the secret values of one entry. It never changes its
// input: callers hand it a private tree (see tree).
type redactor struct {
	key []byte
	// pathSecret is the key that the request's path makes secret, if any.
	pathSecret string
	// hashAccessor hashes token accessors too (the device's hmac_accessor
	// option).
	hashAccessor bool
}

func (r *redactor) classify(key string) exposure {
	k := strings.ToLower(key)
	switch {
	case secretKeys[k],
		strings.HasSuffix(k, "_password"),
		strings.HasSuffix(k, "_token"),
		r.pathSecret != "" && k == r.pathSecret,
		r.hashAccessor && k == "accessor":
		return secret
	case k == "connection_url", strings.HasSuffix(k, "_url"), k == "dsn":
		return urlish
	}
	return clear
}

// redact walks a tree of decoded JSON (maps, lists, strings, json.Number,
// bools, nil) and returns it with every secret value replaced by its hash.
// Maps and lists are rewritten in place: the tree is a private copy.
func (r *redactor) redact(v any, level exposure) any {
	switch t := v.(type) {
	case map[string]any:
		var renamed map[string]any
		for k, child := range t {
			t[k] = r.redact(child, max(level, r.classify(k)))
			if hk := r.tokens(k); hk != k {
				if renamed == nil {
					renamed = map[string]any{}
				}
				renamed[hk] = t[k]
				delete(t, k)
			}
		}
		// A token sent as a key ("lessor write auth/token/revoke lsr_…"
		// with the = forgotten) is hashed too, once the walk is done.
		for k, v := range renamed {
			t[k] = v
		}
		return t
	case []any:
		for i, child := range t {
			t[i] = r.redact(child, level)
		}
		return t
	case nil:
		// An absent value hides nothing.
		return nil
	case string:
		switch {
		case level == secret:
			return HashString(r.key, t)
		case level == urlish && hasInlinePassword(t):
			return HashString(r.key, t)
		case level == clear && strings.Contains(t, "://") && hasInlinePassword(t):
			// A URL with a password under a key nobody thought of is
			// still a password.
			return HashString(r.key, t)
		}
		return r.tokens(t)
	case json.Number:
		if level == secret {
			return HashString(r.key, t.String())
		}
		return t
	case bool:
		if level == secret {
			if t {
				return HashString(r.key, "true")
			}
			return HashString(r.key, "false")
		}
		return t
	}
	// tree produces no other types; hide anything unexpected rather than
	// guess.
	return HashString(r.key, "")
}

// tokens returns s with every token in it replaced by its hash, as in the
// path and the error text: a token sent where something else belongs (for
// its accessor to revoke-accessor, a common mix-up) is still a token.
func (r *redactor) tokens(s string) string {
	if !strings.Contains(s, logical.TokenPrefix) {
		return s
	}
	return logical.ReplaceTokens(s, func(tok string) string { return HashString(r.key, tok) })
}

// passwordTemplate is the placeholder that the database engine replaces
// with the generated password; a connection_url holding only the
// placeholder carries no secret and stays readable.
const passwordTemplate = "{{password}}"

// passwordParam finds password=value in a libpq keyword/value string
// ("host=db password=x") or a URL query ("?password=x"); it also matches
// sslpassword, which unlocks the client's private key. A quoted value
// that is never closed runs to the end, as libpq would read it (the
// string is refused, but the request is audited). It is compiled on
// first use, when a connection string is audited, rather than at the start
// of every lessor process.
var passwordParam = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)password\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&']*)`)
})

// hasInlinePassword reports whether a connection string carries a password
// of its own. It errs towards yes: a false positive only hashes a string
// that was harmless, a false negative writes a password to the log.
func hasInlinePassword(s string) bool {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	// The userinfo ends at the last "@": passwords may hold an unescaped
	// "@", and a query holding one only makes us hash a harmless URL.
	if at := strings.LastIndex(s, "@"); at >= 0 {
		userinfo := s[:at]
		if c := strings.Index(userinfo, ":"); c >= 0 && userinfo[c+1:] != passwordTemplate {
			return true
		}
	}
	if paramPassword(s) {
		return true
	}
	// A URL's parameter names are percent-decoded before the driver
	// reads them (?pass%77ord=x is a password), so look again with the
	// escapes decoded.
	if dec := percentDecode(s); dec != s {
		return paramPassword(dec)
	}
	return false
}

// paramPassword reports whether s sets a password parameter to anything
// but the template.
func paramPassword(s string) bool {
	for _, m := range passwordParam().FindAllStringSubmatch(s, -1) {
		v := strings.Trim(m[1], "'")
		if v != "" && v != passwordTemplate {
			return true
		}
	}
	return false
}

// percentDecode decodes every well-formed %XX escape of s, leaving the
// rest as it is.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// newRedactor returns the redactor for a request to path.
func newRedactor(key []byte, path string, hashAccessor bool) *redactor {
	r := &redactor{key: key, hashAccessor: hashAccessor}
	for prefix, k := range pathSecrets {
		if strings.HasPrefix(path, prefix) {
			r.pathSecret = k
		}
	}
	return r
}
