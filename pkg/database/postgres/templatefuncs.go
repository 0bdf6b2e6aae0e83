package postgres

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/lessorhq/lessor/pkg/randstr"
)

// maxRandom bounds random n: a username holds 63 bytes, and a template
// asking for millions of characters is a mistake, not a name.
const maxRandom = 1024

// templateFuncs are the functions of Vault's and OpenBao's username
// templates (sdk/helper/template), with their semantics, except where a
// comment says otherwise. Time comes from now and randomness from r, so
// tests can fix both.
func templateFuncs(now time.Time, r io.Reader) template.FuncMap {
	fm := boundFuncs(now, r)
	for name, fn := range fixedFuncs {
		fm[name] = fn
	}
	return fm
}

// fixedFuncs are the template functions that depend on nothing but their
// arguments.
var fixedFuncs = template.FuncMap{
	"truncate":        truncate,
	"truncate_sha256": truncateSHA256,
	"uppercase":       strings.ToUpper,
	"lowercase":       strings.ToLower,
	"replace":         func(find, repl, s string) string { return strings.ReplaceAll(s, find, repl) },
	"sha256":          sha256Hex,
	"base64":          func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"decode_base64":   decodeBase64,
	"hex":             func(s string) string { return hex.EncodeToString([]byte(s)) },
	"decode_hex":      decodeHex,
	"glob":            Glob,
}

// boundFuncs are the template functions bound to one render's time and
// randomness.
func boundFuncs(now time.Time, r io.Reader) template.FuncMap {
	return template.FuncMap{
		"random":           func(n int) (string, error) { return random(r, n) },
		"unix_time":        func() string { return strconv.FormatInt(now.Unix(), 10) },
		"unix_time_millis": func() string { return strconv.FormatInt(now.UnixMilli(), 10) },
		// Vault formats the server's local time; lessor has no server, and
		// a name should not depend on the time zone of whoever issues it.
		"timestamp": func(layout string) string { return now.UTC().Format(layout) },
		"uuid":      func() (string, error) { return uuid(r) },
	}
}

// random returns n base62 characters; random 0 is "", as in Vault.
func random(r io.Reader, n int) (string, error) {
	if n < 0 || n > maxRandom {
		return "", fmt.Errorf("random: length %d out of range 0..%d", n, maxRandom)
	}
	return randstr.String(r, randstr.Base62, n)
}

// truncate cuts s to at most n bytes, as Vault's does, except that it
// never cuts a UTF-8 character in two (Vault's would, and PostgreSQL
// would then refuse the name).
func truncate(n int, s string) (string, error) {
	if n <= 0 {
		return "", fmt.Errorf("truncate: length %d must be positive", n)
	}
	return cutBytes(s, n), nil
}

// truncateSHA256 keeps s when it is at most n bytes; otherwise it keeps
// the first n-8 bytes and appends the first 8 hex digits of the SHA-256
// of the rest, so two long names sharing a prefix stay distinct. The cut
// moves back to a character boundary as truncate's does.
func truncateSHA256(n int, s string) (string, error) {
	if n <= 8 {
		return "", fmt.Errorf("truncate_sha256: length %d must be over 8", n)
	}
	if len(s) <= n {
		return s, nil
	}
	head := cutBytes(s, n-8)
	return head + sha256Hex(s[len(head):])[:8], nil
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func decodeBase64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("decode_base64: %w", err)
	}
	return string(b), nil
}

func decodeHex(s string) (string, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("decode_hex: %w", err)
	}
	return string(b), nil
}

// uuid returns a random version 4 UUID. (Vault's sets no version bits;
// every UUID this returns is one Vault's could.)
func uuid(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("uuid: read random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Glob reports whether value matches pattern, where "*" matches any run
// of characters (including none) and every other character matches itself:
// Vault's glob (ryanuber/go-glob), used by the template function and by
// allowed_roles.
func Glob(pattern, value string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == value
	}
	if !strings.HasPrefix(value, parts[0]) {
		return false
	}
	value = value[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(value, p)
		if i < 0 {
			return false
		}
		value = value[i+len(p):]
	}
	return strings.HasSuffix(value, last)
}
