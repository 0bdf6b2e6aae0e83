// Package kvargs turns the data arguments of `lessor write` and friends
// (`key=value`, `key=@file`, `key=-`, a bare `-` or `@file.json`) into the
// request body, with exactly the rules of Vault's CLI (go-secure-stdlib's
// kv-builder), so that a script written for Vault sends the same data.
//
// The promises:
//   - `k=v` splits on the first `=`; the key must not be empty.
//   - `k=@file` is the file's raw bytes as a string, never trimmed, so a
//     PEM file or SQL script keeps its final newline.
//   - `k=\@x` is the literal `@x`.
//   - `k=-` is all of stdin, raw. A bare `-` decodes stdin as one JSON
//     object and merges its keys into the body; a bare `@file.json` does
//     the same with a file. Merged keys replace earlier values, as in
//     Vault. Stdin can be read only once.
//   - A key given again becomes a list: `p=a p=b` is []any{"a", "b"}.
//   - An empty argument is ignored.
//   - JSON numbers stay json.Number, so 3600 is not turned into a float.
//
// Unlike Vault, a JSON source must hold exactly one object: `null`, an
// array, or a second value after the object is an error rather than being
// silently dropped or wiping what was parsed before.
package kvargs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Parse builds the request data from args, reading stdin at most once.
// stdin may be nil when no standard input is available; arguments that
// need it then fail. The result is never nil.
//
// Every error names the argument it is about, in Vault's words:
// `invalid key/value pair "<arg>": <reason>`.
func Parse(args []string, stdin io.Reader) (map[string]any, error) {
	return ParseFiles(args, stdin, ReadFile)
}

// MaxInput is the most that is read for one argument, from a file or from
// stdin: what Vault's server takes in a whole request (its default
// max_request_size), and far beyond any policy, certificate or SQL
// script. A name such as /dev/zero or an endless pipe then ends in an
// error, not in a process that grows until the kernel kills it.
const MaxInput = 32 << 20

// ReadAll reads r to its end, refusing more than MaxInput bytes; what
// names the source in the error.
func ReadAll(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxInput {
		return nil, fmt.Errorf("%s holds more than %d MiB, the most lessor reads for one argument", what, MaxInput>>20)
	}
	return data, nil
}

// ReadFile is os.ReadFile within MaxInput.
func ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, name)
}

// ParseFiles is Parse with the function that reads `@file` arguments, so
// that a caller can decide which files a command may read.
func ParseFiles(args []string, stdin io.Reader, readFile func(name string) ([]byte, error)) (map[string]any, error) {
	p := parser{stdin: stdin, readFile: readFile, result: map[string]any{}}
	for _, arg := range args {
		if err := p.add(arg); err != nil {
			return nil, fmt.Errorf("invalid key/value pair %q: %w", arg, err)
		}
	}
	return p.result, nil
}

// parser holds the state of one Parse call. readFile is a field so that
// the fuzz test can run without touching the file system (an argument such
// as `k=@/dev/zero` would otherwise read for ever).
type parser struct {
	stdin        io.Reader
	stdinClaimed bool
	readFile     func(name string) ([]byte, error)
	result       map[string]any
}

// errFormat is Vault's message for an argument that is none of the forms.
var errFormat = errors.New("format must be key=value")

func (p *parser) add(arg string) error {
	if arg == "" {
		return nil
	}
	key, value, found := strings.Cut(arg, "=")
	if !found {
		switch {
		case arg == "-":
			data, err := p.readStdin()
			if err != nil {
				return err
			}
			return p.merge(data, "stdin")
		case arg[0] == '@':
			name := arg[1:]
			data, err := p.readFile(name)
			if err != nil {
				return err
			}
			return p.merge(data, name)
		}
		return errFormat
	}
	if key == "" {
		return errFormat
	}

	switch {
	case strings.HasPrefix(value, "@"):
		data, err := p.readFile(value[1:])
		if err != nil {
			return err
		}
		value = string(data)
	case strings.HasPrefix(value, `\@`):
		value = value[1:]
	case value == "-":
		data, err := p.readStdin()
		if err != nil {
			return err
		}
		value = string(data)
	}

	p.set(key, value)
	return nil
}

// set stores value under key, turning a repeated key into a list.
func (p *parser) set(key string, value any) {
	old, exists := p.result[key]
	if !exists {
		p.result[key] = value
		return
	}
	if list, ok := old.([]any); ok {
		p.result[key] = append(list, value)
		return
	}
	p.result[key] = []any{old, value}
}

func (p *parser) readStdin() ([]byte, error) {
	if p.stdin == nil {
		return nil, errors.New("stdin is not available")
	}
	if p.stdinClaimed {
		return nil, errors.New("stdin already consumed")
	}
	p.stdinClaimed = true
	data, err := ReadAll(p.stdin, "stdin")
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	return data, nil
}

// merge decodes data as one JSON object and copies its keys into the
// result. source names where the bytes came from, for the error.
func (p *parser) merge(data []byte, source string) error {
	where := "in " + source
	if source == "stdin" {
		where = "on stdin"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("invalid JSON %s: no JSON object found", where)
		}
		return fmt.Errorf("invalid JSON %s: %w", where, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("invalid JSON %s: want an object, got %s", where, jsonKind(v))
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON %s: unexpected data after the object", where)
	}
	for k, val := range obj {
		p.result[k] = val
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
