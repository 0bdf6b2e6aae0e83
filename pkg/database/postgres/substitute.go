package postgres

import (
	"fmt"
	"strings"
	"time"
)

// ExpirationLayout is how {{expiration}} is written: Vault's layout
// (expirationFormat in its PostgreSQL plugin), always in UTC, so the
// offset is "+0000" as Vault's is. PostgreSQL reads the explicit offset
// the same whatever the session or server time zone.
const ExpirationLayout = "2006-01-02 15:04:05-0700"

// FormatExpiration renders t for {{expiration}}.
func FormatExpiration(t time.Time) string {
	return t.UTC().Format(ExpirationLayout)
}

// substitute replaces {{key}} placeholders in one statement. The text
// around a placeholder decides how its value is written:
//
//   - inside "…": embedded double quotes doubled;
//   - inside '…': embedded single quotes doubled (and backslashes in E'…');
//   - inside a dollar-quoted body: the body is read as SQL again (PL/pgSQL
//     quotes the same way), and a value holding the closing tag is refused;
//   - inside comments, and in plain SQL: as is (Vault's raw substitution),
//     but a value that could end the comment, open a quote or end the
//     statement is refused.
//
// Generated names, passwords, verifiers and expirations never meet a
// refusal or a doubling, so for them this is exactly Vault's raw
// substitution.
func substitute(stmt string, vals map[string]string) (string, error) {
	if !strings.Contains(stmt, "{{") {
		return stmt, nil
	}
	var b strings.Builder
	for _, t := range lex(stmt) {
		out, err := substituteToken(t, vals)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	return b.String(), nil
}

func substituteToken(t token, vals map[string]string) (string, error) {
	if !strings.Contains(t.text, "{{") {
		return t.text, nil
	}
	var escape func(key, v string) (string, error)
	switch t.kind {
	case tokIdent:
		escape = func(_, v string) (string, error) { return strings.ReplaceAll(v, `"`, `""`), nil }
	case tokString:
		escape = func(_, v string) (string, error) { return strings.ReplaceAll(v, `'`, `''`), nil }
	case tokEString:
		escape = func(_, v string) (string, error) {
			return strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v), nil
		}
	case tokDollar:
		body := t.text[len(t.tag):]
		closed := strings.HasSuffix(body, t.tag) && len(body) >= len(t.tag)
		if closed {
			body = body[:len(body)-len(t.tag)]
		}
		for k, v := range vals {
			if strings.Contains(body, "{{"+k+"}}") && strings.Contains(v, t.tag) {
				return "", fmt.Errorf("value of {{%s}} contains %s and would end the dollar-quoted body", k, t.tag)
			}
		}
		inner, err := substitute(body, vals)
		if err != nil {
			return "", err
		}
		if closed {
			return t.tag + inner + t.tag, nil
		}
		return t.tag + inner, nil
	case tokLineComment, tokBlockComment:
		escape = func(key, v string) (string, error) {
			if strings.ContainsAny(v, "\n\r") || strings.Contains(v, "*/") || strings.Contains(v, "/*") {
				return "", fmt.Errorf("value of {{%s}} would end the comment it is placed in", key)
			}
			return v, nil
		}
	default:
		escape = func(key, v string) (string, error) {
			if !safeUnquoted(v) {
				return "", fmt.Errorf("value of {{%s}} is not safe outside quotes: write \"{{%s}}\" or '{{%s}}'", key, key, key)
			}
			return v, nil
		}
	}
	var pairs []string
	for k, v := range vals {
		ph := "{{" + k + "}}"
		if !strings.Contains(t.text, ph) {
			continue
		}
		if strings.IndexByte(v, 0) >= 0 {
			return "", fmt.Errorf("value of {{%s}} contains a NUL byte", k)
		}
		ev, err := escape(k, v)
		if err != nil {
			return "", err
		}
		pairs = append(pairs, ph, ev)
	}
	// One pass, so a value that itself looks like a placeholder stays as is.
	return strings.NewReplacer(pairs...).Replace(t.text), nil
}

// safeUnquoted reports whether v can stand in plain SQL without opening a
// quote or comment or ending the statement.
func safeUnquoted(v string) bool {
	if strings.ContainsAny(v, `'"\;$`) || strings.Contains(v, "--") || strings.Contains(v, "/*") || strings.Contains(v, "*/") {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
