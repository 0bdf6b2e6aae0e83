// Package format renders a logical.Response the way Vault's CLI does, so
// that scripts written against `vault` read lessor's output unchanged:
// the Key/Value table, the JSON envelope (.lease_id, .lease_duration,
// .renewable, .data, .warnings, .auth), YAML, and -field.
//
// What it promises:
//   - stdout (w) carries data only. Warnings go to errw in every format,
//     before the data, as Vault's table format prints them.
//   - Table: a `Key`/`Value` header underlined with as many dashes as each
//     header word, columns padded to the widest cell and 4 spaces apart,
//     the last column unpadded, no trailing spaces, empty cells `n/a`.
//     Rows: the lease (lease_id, lease_duration, lease_renewable, or
//     refresh_interval without a lease id), then the token, then the data
//     keys sorted. Integer seconds under TTL-like keys are humanized
//     (3600 → 1h). With nothing to show, nothing is printed.
//   - JSON: the envelope in Vault's key order, 2-space indent, one trailing
//     newline; `warnings` and `data` are null when empty, `auth` is left
//     out when there is no token. Encoded with encoding/json defaults (so
//     `<`, `>` and `&` are escaped as \u003c…, as Vault does).
//   - YAML: the JSON envelope re-encoded as YAML, which, as in Vault (it
//     converts through JSON), sorts the keys.
//   - -field: one value, printed as it is (a list or a map as JSON;
//     JSON/YAML encoded under those formats), with a trailing newline only
//     when stdout is a terminal, so that `$(lessor read -field=password …)`
//     is exactly the value.
//   - env, dotenv, pgpass, dsn: a client's settings (env.go); format names
//     and what each renders are in registry.go.
//
// Known differences from Vault, all deliberate: warnings are printed to
// errw in the json and yaml formats too; the general -field names
// (lease_id, renewable…) also work on a token response; token_meta_* rows
// are sorted; a value with a newline continues under the Value column
// instead of at column 0, and a tab in a cell is expanded to spaces
// (both are how tablewriter lays out cells).
package format

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// Options say how to render. The zero value is the table format.
type Options struct {
	// Format is a Name; any spelling Parse accepts works ("" is table).
	Format Name
	// Field, when set, prints only that field (-field).
	Field string
	// TTY reports whether w is a terminal; only -field output depends on it.
	TTY bool
	// RequestID is shown in the json and yaml envelopes.
	RequestID string
}

// ErrInvalidFormat is wrapped by the error for an unknown -format value.
var ErrInvalidFormat = errors.New("invalid output format")

// ErrFieldMissing is wrapped by the error for a -field name that the
// response does not hold. The CLI exits 1 on it, as Vault does.
var ErrFieldMissing = errors.New("field not present in secret")

// ErrNoEntries is wrapped by List's error for an empty list. The CLI exits
// 2 on it, as Vault does for "No value found at <path>".
var ErrNoEntries = errors.New("no entries")

type formatError struct{ format string }

func (e *formatError) Error() string {
	return "invalid output format: " + e.format + " (valid: " + strings.Join(Names(), ", ") + ")"
}
func (e *formatError) Is(target error) bool { return target == ErrInvalidFormat }

// ErrUnsupported is wrapped by the error for output that the chosen format
// cannot carry: a list as pgpass, a response without a credential as dsn,
// a data key that env would turn into PATH. The CLI exits 1 on it.
var ErrUnsupported = errors.New("format cannot print this output")

// UnsupportedError is the error for a format that cannot render what a
// command prints (-format=pgpass for a list, say). The CLI exits 1 on it.
type UnsupportedError struct {
	Format Name
	Output Output
	What   string // what the command prints, e.g. "a list"
}

func (e *UnsupportedError) Error() string {
	valid := FormatsFor(e.Output)
	names := make([]string, len(valid))
	for i, n := range valid {
		names[i] = string(n)
	}
	return fmt.Sprintf("-format=%s cannot print %s (use %s)", e.Format, e.What, strings.Join(names, ", "))
}

func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

type fieldError struct{ field string }

func (e *fieldError) Error() string        { return fmt.Sprintf("field %q not present in secret", e.field) }
func (e *fieldError) Is(target error) bool { return target == ErrFieldMissing }

type noEntriesError struct{ path string }

func (e *noEntriesError) Error() string        { return "no value found at " + e.path }
func (e *noEntriesError) Is(target error) bool { return target == ErrNoEntries }

// ValidateFormat reports whether s is a -format value this package
// renders: `invalid output format: X (valid: …)` when it is not. The CLI
// calls it before doing any work, so that a typo costs nothing.
func ValidateFormat(s string) error {
	_, err := Parse(s)
	return err
}

// Secret writes resp to w in the format o asks for, and its warnings to
// errw. A nil resp is treated as an empty response.
func Secret(w, errw io.Writer, resp *logical.Response, o Options) error {
	format, err := Parse(string(o.Format))
	if err != nil {
		return err
	}
	if resp == nil {
		resp = &logical.Response{}
	}
	if o.Field != "" {
		val, ok := fieldValue(resp, o.Field, o.RequestID)
		if !ok {
			// Warnings still explain why a field may be missing.
			Warnings(errw, resp.Warnings)
			return &fieldError{field: o.Field}
		}
		return writeField(w, errw, resp.Warnings, val, format, o.TTY)
	}

	var out []byte
	switch format {
	case NameJSON:
		out, err = encodeJSON(newEnvelope(resp, o.RequestID))
	case NameYAML:
		out, err = encodeYAML(newEnvelope(resp, o.RequestID))
	case NameEnv, NameDotenv:
		out, err = encodeEnv(resp, format)
	case NamePgpass, NameDSN:
		out, err = encodeClient(resp, format)
	}
	if err != nil {
		return err
	}
	Warnings(errw, resp.Warnings)
	if format == NameTable {
		if rows := secretRows(resp); len(rows) > 0 {
			return writeTable(w, []string{"Key", "Value"}, rows)
		}
		return nil
	}
	_, err = w.Write(out)
	return err
}

func writeField(w, errw io.Writer, warnings []string, val any, format Name, tty bool) error {
	var out []byte
	var err error
	switch format {
	default:
		// A list or a map is printed as JSON: a script can parse that,
		// and Go's map[k:v] it could not.
		if structured(val) {
			if out, err = IndentJSON(val); err != nil {
				return fmt.Errorf("encode json: %w", err)
			}
			break
		}
		v := Value(val)
		if tty {
			// On a terminal a field is read, not parsed: escape what
			// would drive the terminal, as tables do. Piped, it is the
			// exact value a script asked for.
			v = EscapeControls(v)
		}
		out = []byte(v)
	case NameJSON:
		// No newline of its own: as for the table value, one is added
		// only on a terminal.
		if out, err = IndentJSON(val); err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
	case NameYAML:
		// Vault prints the YAML document as the encoder ends it, with its
		// newline, and adds another one on a terminal; so does lessor.
		if out, err = yamlDocument(val); err != nil {
			return err
		}
	}
	Warnings(errw, warnings)
	if tty {
		out = append(out, '\n')
	}
	_, err = w.Write(out)
	return err
}

// fieldValue finds -field's value. A data key whose value is nil counts as
// missing, as in Vault.
func fieldValue(resp *logical.Response, field, requestID string) (any, bool) {
	switch field {
	case "lease_id":
		return leaseID(resp), true
	case "lease_duration", "refresh_interval":
		return leaseSeconds(resp), true
	case "renewable":
		return resp.Secret != nil && resp.Secret.Renewable, true
	case "request_id":
		return requestID, true
	case "data":
		if v, ok := resp.Data["data"]; ok {
			return v, v != nil
		}
		return resp.Data, true
	}
	if a := resp.Auth; a != nil {
		switch field {
		case "token":
			return a.ClientToken, true
		case "token_accessor":
			return a.Accessor, true
		case "token_duration":
			return seconds(a.LeaseDuration), true
		case "token_renewable":
			return a.Renewable, true
		case "token_policies":
			return a.TokenPolicies, true
		case "identity_policies":
			return a.IdentityPolicies, true
		case "policies":
			return a.Policies, true
		}
	}
	v, ok := resp.Data[field]
	return v, ok && v != nil
}

// List writes the keys under path, sorted: a `Keys` table, or a JSON or
// YAML array. An empty list writes nothing and returns an error wrapping
// ErrNoEntries ("no value found at <path>"), Vault's message for it.
func List(w, errw io.Writer, keys []string, path string, o Options) error {
	format, err := Parse(string(o.Format))
	if err != nil {
		return err
	}
	if !format.Prints(Document) {
		return &UnsupportedError{Format: format, Output: Document, What: "a list"}
	}
	if len(keys) == 0 {
		return &noEntriesError{path: path}
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)

	var out []byte
	switch format {
	case NameJSON:
		out, err = encodeJSON(sorted)
	case NameYAML:
		out, err = encodeYAML(sorted)
	default:
		rows := make([][]string, len(sorted))
		for i, k := range sorted {
			rows[i] = []string{k}
		}
		return writeTable(w, []string{"Keys"}, rows)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

func leaseID(resp *logical.Response) string {
	if resp.Secret == nil {
		return ""
	}
	return resp.Secret.LeaseID
}

// leaseSeconds is the lease's TTL in whole seconds, as the envelope's
// lease_duration carries it.
func leaseSeconds(resp *logical.Response) int64 {
	if resp.Secret == nil {
		return 0
	}
	return seconds(resp.Secret.TTL)
}

func seconds(d time.Duration) int64 {
	return int64(d.Round(time.Second) / time.Second)
}
