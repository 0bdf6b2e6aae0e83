package postgres

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/lessorhq/lessor/pkg/randstr"
)

// DefaultUsernameTemplate is Vault's default for PostgreSQL: at most 51
// bytes, so the final truncate never cuts.
const DefaultUsernameTemplate = `{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}`

// MaxIdentifierLength is PostgreSQL's NAMEDATALEN-1: longer names are
// silently truncated by the server, so lessor refuses them instead.
const MaxIdentifierLength = 63

// UsernameMetadata is what a username template can refer to.
type UsernameMetadata struct {
	DisplayName string
	RoleName    string
	// Now is the time for unix_time, unix_time_millis and timestamp; zero
	// means time.Now().
	Now time.Time
}

// validationNameLen is the display and role name length used to prove a
// template cannot outgrow PostgreSQL's identifier limit.
const validationNameLen = 200

// ValidateUsernameTemplate parses tmpl and renders it with 200-byte display
// and role names, and with empty ones: a template that fails, renders an
// empty name, or can give a name over 63 bytes is refused,
// because PostgreSQL would silently truncate it (and two leases could then
// share one role).
func ValidateUsernameTemplate(tmpl string) error {
	long := UsernameMetadata{
		DisplayName: strings.Repeat("d", validationNameLen),
		RoleName:    strings.Repeat("r", validationNameLen),
	}
	name, err := render(tmpl, long, rand.Reader)
	if err != nil {
		return err
	}
	if strings.TrimSpace(name) == "" {
		return errors.New("username template rendered an empty name")
	}
	if len(name) > MaxIdentifierLength {
		return fmt.Errorf("username template can produce %d-byte names (with %d-byte display and role names), over PostgreSQL's limit of %d: add a truncate", len(name), validationNameLen, MaxIdentifierLength)
	}
	if strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name) {
		// RenderUsername refuses these, so such a role could never issue.
		return errors.New("username template renders a NUL byte or invalid UTF-8")
	}
	// Like Vault, also render with empty metadata: a template may fail only
	// on that path. Its result may be empty; real display names are not.
	_, err = render(tmpl, UsernameMetadata{}, rand.Reader)
	return err
}

// RenderUsername renders tmpl with m, drawing randomness from r. It fails
// when the result is empty, over 63 bytes, holds a NUL byte or is not
// valid UTF-8, rather than letting PostgreSQL truncate or reject it.
func RenderUsername(tmpl string, m UsernameMetadata, r io.Reader) (string, error) {
	name, err := render(tmpl, m, r)
	if err != nil {
		return "", err
	}
	switch {
	case strings.TrimSpace(name) == "":
		return "", errors.New("username template rendered an empty name")
	case len(name) > MaxIdentifierLength:
		return "", fmt.Errorf("username %q is %d bytes, over PostgreSQL's limit of %d", name, len(name), MaxIdentifierLength)
	case strings.IndexByte(name, 0) >= 0:
		return "", errors.New("username template rendered a NUL byte")
	case !utf8.ValidString(name):
		// PostgreSQL identifiers are text in the database encoding.
		return "", fmt.Errorf("username %q is not valid UTF-8", name)
	}
	return name, nil
}

func render(tmpl string, m UsernameMetadata, r io.Reader) (string, error) {
	now := m.Now
	if now.IsZero() {
		now = time.Now()
	}
	t, err := template.New("username").Option("missingkey=error").Funcs(templateFuncs(now, r)).Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse username template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, m); err != nil {
		return "", fmt.Errorf("render username template: %w", err)
	}
	return b.String(), nil
}

func templateFuncs(now time.Time, r io.Reader) template.FuncMap {
	return template.FuncMap{
		"truncate":        truncate,
		"truncate_sha256": truncateSHA256,
		"random": func(n int) (string, error) {
			if n <= 0 || n > 1024 {
				return "", fmt.Errorf("random: length %d out of range 1..1024", n)
			}
			return randstr.String(r, randstr.Base62, n)
		},
		"unix_time":        func() string { return strconv.FormatInt(now.Unix(), 10) },
		"unix_time_millis": func() string { return strconv.FormatInt(now.UnixMilli(), 10) },
		"timestamp":        func(layout string) string { return now.UTC().Format(layout) },
		"uppercase":        strings.ToUpper,
		"lowercase":        strings.ToLower,
		"replace":          func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"sha256":           func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) },
		"uuid":             func() (string, error) { return uuid(r) },
	}
}

// truncate cuts s to at most n bytes, as Vault's does, but never inside a
// UTF-8 sequence.
func truncate(n int, s string) (string, error) {
	if n <= 0 {
		return "", fmt.Errorf("truncate: length %d must be positive", n)
	}
	if len(s) <= n {
		return s, nil
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], nil
}

// truncateSHA256 keeps names up to n bytes as they are; a longer one keeps
// its first n-8 bytes and ends with 8 hex digits of the SHA-256 of the rest,
// so two long names that share a prefix stay distinct.
func truncateSHA256(n int, s string) (string, error) {
	if n <= 8 {
		return "", fmt.Errorf("truncate_sha256: length %d must be over 8", n)
	}
	if len(s) <= n {
		return s, nil
	}
	cut := n - 8
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	h := sha256.Sum256([]byte(s[cut:]))
	return s[:cut] + hex.EncodeToString(h[:])[:8], nil
}

// uuid returns a random (version 4) UUID.
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
