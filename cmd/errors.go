package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
	"github.com/lessorhq/lessor/pkg/token"
)

// Exit codes, documented in `lessor help exit-codes`.
const (
	exitOK          = 0
	exitLocal       = 1 // usage, bad input, local files and the store
	exitFailed      = 2 // the operation was refused or failed
	exitReapPending = 3 // reap finished, but some revocations failed and will be retried
)

// errNoTerminal is ReadPassword's error when there is no terminal to
// prompt on (cron, a pipe, a service): each caller adds the hint that fits
// what it was asking for, the store's passphrase or a token.
var errNoTerminal = errors.New("no terminal to prompt on")

// passphraseHint is the way around a passphrase prompt with no terminal.
const passphraseHint = "put the store's passphrase in a file only you can read and set LESSOR_PASSPHRASE_FILE to it"

// newlineHint answers postgres.ErrPasswordEndsInNewline.
const newlineHint = "lessor: hint: the configured admin password ends in a newline, which is most likely not part of the password; " +
	"remove it (tr -d '\\n' < FILE > NEWFILE) and write the connection config again\n"

// usageError is a mistake in how lessor was invoked, or in local input
// (a missing file, a bad key=value): exit 1.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// localError is a failure of the local environment (store, key file,
// config): exit 1.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// exitCodeError carries an explicit exit code (reap's 3) and an optional
// message.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitCodeError) Unwrap() error { return e.err }

// hintError adds a hint line below the error.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, format string, args ...any) error {
	return &hintError{err: err, hint: fmt.Sprintf(format, args...)}
}

// requestError wraps a pipeline error with what was being done. Local
// errors (the store, the key, the token file) already say what they are
// about and are passed on as they are.
func requestError(verb, path string, err error) error {
	var le *localError
	var ue *usageError
	if errors.As(err, &le) || errors.As(err, &ue) {
		return err
	}
	if path == "" {
		return fmt.Errorf("%s: %w", verb, err)
	}
	if namesAlready(err, path) {
		return err
	}
	return fmt.Errorf("%s %s: %w", verb, path, err)
}

// errNoData is a success that carries none of the data a command shows:
// a server that answers 204 or an empty body where lessor always answers
// with data.
var errNoData = errors.New("the answer holds no data")

// requireData refuses a response without data, for the commands that
// show what the answer holds.
func requireData(resp *logical.Response, verb, path string) error {
	if resp == nil || resp.Data == nil {
		return requestError(verb, path, errNoData)
	}
	return nil
}

// namesAlready tells whether err's text opens by naming path ("revoke
// <lease id>: …", "audit device file/: …"): wrapping it again would say
// the thing twice.
func namesAlready(err error, path string) bool {
	head, _, ok := strings.Cut(err.Error(), ": ")
	return ok && strings.HasSuffix(head, " "+path)
}

// exitCode maps an error to lessor's exit code: the one place that does.
func exitCode(err error) int {
	var ce *exitCodeError
	var ue *usageError
	var le *localError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue), errors.As(err, &le):
		return exitLocal
	}
	return exitFailed
}

// printError prints err once, as `lessor: error: …` with optional hint
// lines; secrets never reach error text (the plugin redacts passwords).
func printError(w io.Writer, err error) {
	msg := strings.TrimSpace(err.Error())
	if msg == "" {
		return
	}
	// The error may quote a path the caller put a token in (Vault's old
	// auth/token/lookup/<token>): requestError and "no value found at"
	// name the path as typed, where the server's own message masks it.
	fmt.Fprintf(w, "lessor: error: %s\n", oneLine(logical.MaskTokens(msg)))
	var he *hintError
	if errors.As(err, &he) && he.hint != "" {
		fmt.Fprintf(w, "lessor: hint: %s\n", logical.MaskTokens(he.hint))
	}
	var ud *storage.UnsafeDirError
	if errors.As(err, &ud) && !errors.As(err, &he) {
		fmt.Fprint(w, "lessor: hint: choose a path in a directory only you and root can change (lessor creates missing directories 0700), such as the defaults under ~/.local/share/lessor and ~/.config/lessor\n")
	}
	if errors.Is(err, postgres.ErrPasswordEndsInNewline) {
		io.WriteString(w, newlineHint)
	}
	switch {
	case errors.As(err, &he):
	case errors.Is(err, token.ErrCallerToken):
		fmt.Fprintln(w, "lessor: hint: log in with `lessor login`, or set LESSOR_TOKEN to a valid token")
	case errors.Is(err, token.ErrBadToken):
		// A token the request names (token lookup, say) is unknown: the
		// caller's own is fine.
	case errors.Is(err, logical.ErrPermissionDenied):
		fmt.Fprintln(w, "lessor: hint: check the token's policies with `lessor token capabilities PATH`")
	}
}

// oneLine keeps an error on one line: PostgreSQL and parser errors may
// carry newlines.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	parts := strings.Split(s, "\n")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	// An error may quote a server's text: a terminal must not obey it.
	return format.EscapeControls(strings.Join(parts, "; "))
}
