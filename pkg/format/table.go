package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/lessorhq/lessor/pkg/logical"
)

// columnGap is Vault's column separator (columnize's glue).
const columnGap = "    "

// Table writes rows under header in Vault's borderless layout:
//
//	Key                Value
//	---                -----
//	lease_id           database/creds/readonly/Bc3O1OvgG4pKBKIjvYRjXAEs
//
// Cells are trimmed of surrounding spaces and an empty cell prints as
// `n/a`. A row shorter than the header is filled with `n/a`. Control
// characters other than newline and tab are shown escaped (see
// EscapeControls), so that a mount description or token metadata cannot
// drive the terminal. Like any terminal output, a failed write is not
// reported.
func Table(w io.Writer, header []string, rows [][]string) {
	_ = writeTable(w, header, rows)
}

func writeTable(w io.Writer, header []string, rows [][]string) error {
	ncol := len(header)
	for _, r := range rows {
		ncol = max(ncol, len(r))
	}
	if ncol == 0 {
		return nil
	}
	lines := make([][]string, 0, len(rows)+2)
	head := make([]string, ncol)
	under := make([]string, ncol)
	for i, h := range header {
		head[i] = EscapeControls(strings.TrimSpace(h))
		under[i] = strings.Repeat("-", len([]rune(head[i])))
	}
	lines = append(lines, head, under)
	for _, r := range rows {
		line := make([]string, ncol)
		for i := range line {
			if i < len(r) {
				line[i] = EscapeControls(strings.TrimSpace(r[i]))
			}
			if line[i] == "" {
				line[i] = "n/a"
			}
		}
		lines = append(lines, line)
	}

	if ncol == 1 {
		// One column is the last column: nothing to align. Writing it
		// directly gives the same bytes as tablewriter at a fraction of
		// the cost, which matters for `list` over 100,000 leases
		// (tablewriter: about 1 s and 80 MB of RSS; this: under 0.1 s).
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l[0])
			b.WriteByte('\n')
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	_, err := w.Write(renderColumns(lines))
	return err
}

// EscapeControls returns s with every byte or character a terminal could
// take as a command written as a Go escape: C0 controls (ESC is \x1b), DEL,
// the C1 controls U+0080–U+009F (\u009b, a one-character CSI) and bytes
// that are not UTF-8 (a lone 0x9b is CSI to a terminal that is not in
// UTF-8 mode), and the bidirectional controls (U+202A–U+202E, U+2066–
// U+2069, the marks U+200E, U+200F and U+061C), with which a policy's
// comment could show its rules reordered. Newline and tab stay: multi-line values such as a policy's
// rules or a role's statements print as lines, as in Vault. Text with
// nothing to escape is returned as it is, without copying.
func EscapeControls(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case needsEscape(r, size):
			q := strconv.QuoteRune(r) // '\x1b', '\r', '\u009b'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune, size int) bool {
	if r == '\n' || r == '\t' {
		return false
	}
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r == utf8.RuneError && size == 1) || bidiControl(r)
}

// bidiControl reports whether r changes the order in which a terminal that
// renders bidirectional text shows what follows it.
func bidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// renderColumns lays out equally long lines with tablewriter.
func renderColumns(lines [][]string) []byte {
	// The header and its underline are fed as ordinary rows: Vault's
	// underline is as long as each header word, not as the column, which
	// no tablewriter header style draws.
	var buf bytes.Buffer
	t := tablewriter.NewTable(&buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Symbols: tw.NewSymbolCustom("vault").WithColumn(columnGap).WithRow("").WithCenter(""),
			Settings: tw.Settings{
				Separators: tw.Separators{
					ShowHeader: tw.Off, ShowFooter: tw.Off,
					BetweenRows: tw.Off, BetweenColumns: tw.On,
				},
				Lines: tw.Lines{
					ShowTop: tw.Off, ShowBottom: tw.Off,
					ShowHeaderLine: tw.Off, ShowFooterLine: tw.Off,
				},
			},
		})),
		tablewriter.WithPadding(tw.PaddingNone),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoFormat(tw.Off),
		// Never wrap: a connection URL or a statement stays on one line,
		// as in Vault, however wide the table gets.
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithTrimSpace(tw.Off),
	)
	for _, l := range lines {
		// A tab is drawn as four spaces, so that the columns after it
		// line up whatever the terminal's tab stops.
		for i, c := range l {
			l[i] = strings.ReplaceAll(c, "\t", "    ")
		}
		// Append fails only for streaming tables or mismatched struct
		// input; neither can happen with [][]string of equal width.
		_ = t.Append(l)
	}
	_ = t.Render()

	// tablewriter pads the last column too; Vault does not. Cells were
	// trimmed above, so every trailing space is padding.
	out := make([]byte, 0, buf.Len())
	for line := range strings.Lines(buf.String()) {
		out = append(out, strings.TrimRight(line, " \n")...)
		out = append(out, '\n')
	}
	return out
}

// Value formats one table cell the way Vault's %v does: slices as
// `[a b]`, maps as `map[k:v]`, nil as `<nil>`. A time.Time is shown in
// RFC 3339, as the JSON envelope (and so Vault's table) shows it.
//
// A nil map, slice or pointer is `<nil>` too: the JSON envelope carries it
// as null, which is what Vault's CLI (and lessor's, against a server)
// decodes and shows, where fmt would show `map[]` or `[]`.
func Value(v any) string {
	if t, ok := v.(time.Time); ok {
		return t.Format(time.RFC3339Nano)
	}
	if rv := reflect.ValueOf(v); rv.IsValid() {
		switch rv.Kind() {
		case reflect.Map, reflect.Slice, reflect.Pointer:
			if rv.IsNil() {
				return "<nil>"
			}
		}
	}
	return fmt.Sprint(v)
}

// secretRows lists the Key/Value rows of a response, in Vault's order.
func secretRows(resp *logical.Response) [][]string {
	var rows [][]string
	if secs := leaseSeconds(resp); secs > 0 {
		human := logical.HumanDuration(time.Duration(secs) * time.Second)
		if id := leaseID(resp); id != "" {
			rows = append(rows,
				[]string{"lease_id", id},
				[]string{"lease_duration", human},
				[]string{"lease_renewable", fmt.Sprint(resp.Secret.Renewable)})
		} else {
			rows = append(rows, []string{"refresh_interval", human})
		}
	}
	if a := resp.Auth; a != nil {
		duration := "∞" // a zero TTL is a token that never expires
		if secs := seconds(a.LeaseDuration); secs != 0 {
			duration = logical.HumanDuration(time.Duration(secs) * time.Second)
		}
		rows = append(rows,
			[]string{"token", a.ClientToken},
			[]string{"token_accessor", a.Accessor},
			[]string{"token_duration", duration},
			[]string{"token_renewable", fmt.Sprint(a.Renewable)},
			[]string{"token_policies", fmt.Sprintf("%q", a.TokenPolicies)},
			[]string{"identity_policies", fmt.Sprintf("%q", a.IdentityPolicies)},
			[]string{"policies", fmt.Sprintf("%q", a.Policies)})
		for _, k := range slices.Sorted(maps.Keys(a.Metadata)) {
			rows = append(rows, []string{"token_meta_" + k, a.Metadata[k]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(resp.Data)) {
		v := resp.Data[k]
		cell := Value(v)
		if looksLikeDuration(k) {
			if h, ok := humanSeconds(v); ok {
				cell = h
			}
		}
		rows = append(rows, []string{k, cell})
	}
	return rows
}

// looksLikeDuration reports whether a data key holds a TTL in seconds,
// by Vault's naming rule.
func looksLikeDuration(k string) bool {
	return k == "ttl" || k == "period" || k == "duration" ||
		strings.HasSuffix(k, "_ttl") || strings.HasSuffix(k, "_period") ||
		strings.HasSuffix(k, "_duration") ||
		k == "lease_max" || k == "ttl_max"
}

// maxSeconds is the largest whole number of seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// humanSeconds formats an integer number of seconds as a duration. Any
// other value (a string, a fraction, a number too large) is left to Value,
// as Vault leaves what it cannot parse.
func humanSeconds(v any) (string, bool) {
	var secs int64
	switch x := v.(type) {
	case time.Duration:
		return logical.HumanDuration(x), true
	case int:
		secs = int64(x)
	case int32:
		secs = int64(x)
	case int64:
		secs = x
	case uint32:
		secs = int64(x)
	case uint:
		if uint64(x) > uint64(maxSeconds) {
			return "", false
		}
		secs = int64(x)
	case uint64:
		if x > uint64(maxSeconds) {
			return "", false
		}
		secs = int64(x)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > float64(maxSeconds) {
			return "", false
		}
		secs = int64(x)
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			f, ferr := x.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > float64(maxSeconds) {
				return "", false
			}
			n = int64(f)
		}
		secs = n
	default:
		return "", false
	}
	if secs > maxSeconds || secs < -maxSeconds {
		return "", false
	}
	return logical.HumanDuration(time.Duration(secs) * time.Second), true
}
