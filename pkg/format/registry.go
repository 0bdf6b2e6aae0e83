package format

import (
	"fmt"
	"io"
	"strings"
)

// Name is an output format, normalised by Parse. Commands compare a Name
// with the constants below, never a string the user typed, so that an
// alias (yml) or a letter case (JSON) means the same everywhere. Adding a
// format touches this file and the file that renders it.
type Name string

// The formats, in the order help and errors list them.
const (
	NameTable  Name = "table"
	NameJSON   Name = "json"
	NameYAML   Name = "yaml"
	NameEnv    Name = "env"    // shell `export NAME='value'` lines, safe to eval
	NameDotenv Name = "dotenv" // NAME='value' lines for .env readers
	NamePgpass Name = "pgpass" // one libpq password-file line, for a credential
	NameDSN    Name = "dsn"    // one postgresql:// URL, for a credential
)

// Output is the kind of thing a command prints; a format either renders
// it or is refused before the command does any work.
type Output int

const (
	// Response is a pipeline response (read, write, token create…).
	// Every format renders one; pgpass and dsn need a credential in it.
	Response Output = iota
	// Flat is a document of named scalar values (operator status).
	Flat
	// Document is a list or a report (list, lease list, reap): tables,
	// JSON and YAML only.
	Document
)

type entry struct {
	name    Name
	aliases []string
	outputs []Output
}

var registry = []entry{
	{NameTable, nil, []Output{Response, Flat, Document}},
	{NameJSON, nil, []Output{Response, Flat, Document}},
	{NameYAML, []string{"yml"}, []Output{Response, Flat, Document}},
	{NameEnv, nil, []Output{Response, Flat}},
	{NameDotenv, nil, []Output{Response, Flat}},
	{NamePgpass, nil, []Output{Response}},
	{NameDSN, nil, []Output{Response}},
}

// Parse normalises a -format, LESSOR_FORMAT or config value: any letter
// case, aliases mapped to their format, "" meaning table. An unknown name
// is an error wrapping ErrInvalidFormat that lists the valid ones.
func Parse(s string) (Name, error) {
	if s == "" {
		return NameTable, nil
	}
	low := strings.ToLower(s)
	for _, e := range registry {
		if low == string(e.name) {
			return e.name, nil
		}
		for _, a := range e.aliases {
			if low == a {
				return e.name, nil
			}
		}
	}
	return "", &formatError{format: s}
}

// Names lists every name Parse accepts, aliases after their format.
func Names() []string {
	var out []string
	for _, e := range registry {
		out = append(out, string(e.name))
		out = append(out, e.aliases...)
	}
	return out
}

// Prints reports whether format n renders output of kind o.
func (n Name) Prints(o Output) bool {
	for _, e := range registry {
		if e.name == n {
			for _, x := range e.outputs {
				if x == o {
					return true
				}
			}
		}
	}
	return false
}

// FormatsFor lists the formats that render output of kind o.
func FormatsFor(o Output) []Name {
	var out []Name
	for _, e := range registry {
		if e.name.Prints(o) {
			out = append(out, e.name)
		}
	}
	return out
}

// Encoded reports whether n prints a command's own document encoded
// (JSON or YAML) rather than as the command's table.
func (n Name) Encoded() bool { return n == NameJSON || n == NameYAML }

// Encode writes v, a command's own document, as JSON or YAML. Other
// formats are an error: commands ask Encoded first.
func Encode(w io.Writer, v any, n Name) error {
	var out []byte
	var err error
	switch n {
	case NameJSON:
		out, err = encodeJSON(v)
	case NameYAML:
		out, err = encodeYAML(v)
	default:
		return fmt.Errorf("format %s does not encode documents", n)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
