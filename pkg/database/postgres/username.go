package postgres

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/template"
	"time"
	"unicode/utf8"
)

// DefaultUsernameTemplate is Vault's default for PostgreSQL: at most 51
// bytes, so the final truncate never cuts.
const DefaultUsernameTemplate = `{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}`

// MaxIdentifierLength is PostgreSQL's NAMEDATALEN-1. The server cuts a
// longer identifier to this many bytes (on a character boundary); lessor
// cuts a rendered username the same way before using it, so the name it
// records is the name the role has.
const MaxIdentifierLength = 63

// UsernameMetadata is what a username template can refer to.
type UsernameMetadata struct {
	DisplayName string
	RoleName    string
	// Now is the time for unix_time, unix_time_millis and timestamp; zero
	// means time.Now().
	Now time.Time
}

// validationNameLen is the display and role name length used to find
// out whether a template can outgrow PostgreSQL's identifier limit.
const validationNameLen = 200

// ValidateUsernameTemplate checks tmpl at config time. It refuses a
// template that does not parse, fails to render (with 200-byte display
// and role names, and, as Vault does, with empty ones), or renders an
// empty name, a NUL byte or invalid UTF-8, since no credential could be
// issued with it. It accepts, as Vault does, a template whose names can
// be longer than 63 bytes, and returns a warning saying they will be
// cut; and it warns when two renders give the same name, since two
// credentials would then collide.
func ValidateUsernameTemplate(tmpl string) (warnings []string, err error) {
	long := UsernameMetadata{
		DisplayName: strings.Repeat("d", validationNameLen),
		RoleName:    strings.Repeat("r", validationNameLen),
		Now:         time.Now(),
	}
	full, err := render(tmpl, long, rand.Reader)
	if err != nil {
		return nil, err
	}
	first, err := checkName(full)
	if err != nil {
		return nil, err
	}
	if len(full) > MaxIdentifierLength {
		warnings = append(warnings, fmt.Sprintf("username_template can render names over PostgreSQL's limit of %d bytes (%d bytes with %d-byte display and role names): lessor cuts them to %d bytes, as PostgreSQL would",
			MaxIdentifierLength, len(full), validationNameLen, MaxIdentifierLength))
	}
	again, err := RenderUsername(tmpl, long, rand.Reader)
	if err != nil {
		return nil, err
	}
	if again == first {
		warnings = append(warnings, "username_template renders the same name twice for the same role in the same second: two credentials would collide (add random, or keep it within the first 63 bytes)")
	}
	// Like Vault, also render with empty metadata: a template may fail only
	// on that path. Its result may be empty; real display names are not.
	if _, err := render(tmpl, UsernameMetadata{}, rand.Reader); err != nil {
		return nil, err
	}
	return warnings, nil
}

// RenderUsername renders tmpl with m, drawing randomness from r, and cuts
// the result to 63 bytes on a character boundary, as PostgreSQL would. It
// fails when the name is empty, holds a NUL byte or is not valid UTF-8.
func RenderUsername(tmpl string, m UsernameMetadata, r io.Reader) (string, error) {
	name, err := render(tmpl, m, r)
	if err != nil {
		return "", err
	}
	return checkName(name)
}

// checkName cuts a rendered name to MaxIdentifierLength and refuses one
// PostgreSQL could not hold.
func checkName(name string) (string, error) {
	name = cutBytes(name, MaxIdentifierLength)
	switch {
	case strings.TrimSpace(name) == "":
		return "", errors.New("username template rendered an empty name")
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
	parsed, err := parseUsername(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse username template: %w", err)
	}
	// The functions are bound to this render's time and randomness; a
	// clone shares the parsed tree and has its own function table.
	t, err := parsed.Clone()
	if err != nil {
		return "", fmt.Errorf("render username template: %w", err)
	}
	var b strings.Builder
	if err := t.Funcs(boundFuncs(now, r)).Execute(&b, m); err != nil {
		return "", fmt.Errorf("render username template: %w", err)
	}
	return b.String(), nil
}

// parsedUsernames keeps the username templates parsed so far: a role's
// template is parsed once per process, not once per credential (parsing
// was most of a render's 40 µs, and `lessor serve` renders one per
// request). Templates come from role configs, so there are few; past
// maxParsedUsernames, new ones are parsed each time.
var parsedUsernames struct {
	sync.Mutex
	m map[string]*template.Template
}

const maxParsedUsernames = 64

func parseUsername(tmpl string) (*template.Template, error) {
	parsedUsernames.Lock()
	t := parsedUsernames.m[tmpl]
	parsedUsernames.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := template.New("username").Option("missingkey=error").Funcs(templateFuncs(time.Time{}, nil)).Parse(tmpl)
	if err != nil {
		return nil, err
	}
	parsedUsernames.Lock()
	defer parsedUsernames.Unlock()
	if parsedUsernames.m == nil {
		parsedUsernames.m = map[string]*template.Template{}
	}
	if len(parsedUsernames.m) < maxParsedUsernames {
		parsedUsernames.m[tmpl] = t
	}
	return t, nil
}

// cutBytes cuts s to at most n bytes. When byte n is inside a valid UTF-8
// sequence, the cut moves back to the start of that sequence, as
// PostgreSQL does when it truncates an identifier; bytes that are not
// UTF-8 are cut where they fall.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if utf8.RuneStart(s[n]) {
		return s[:n]
	}
	for i := n - 1; i >= 0 && i > n-utf8.UTFMax; i-- {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		if r, size := utf8.DecodeRuneInString(s[i:]); !(r == utf8.RuneError && size == 1) && i+size > n {
			return s[:i]
		}
		break
	}
	return s[:n]
}
