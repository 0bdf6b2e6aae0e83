// Package pgurl checks where a postgres:// URL's user information ends.
//
// A password with an unencoded '/', '?' or '#' ends the authority early for
// a URL parser: the rest of the password becomes a path, a query or a
// fragment, the text up to the ':' a host, and what follows the '@' is
// read as part of the database name or a parameter. A driver then dials a
// host named after part of the password and prints it in its error. Both
// the store and the database plugin refuse such URLs before they reach a
// driver, with a reason that quotes nothing of the URL.
package pgurl

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MisplacedAt returns why the '@' of dsn (a postgres:// or postgresql://
// URL, leading blanks aside) is where no URL parser would put the end of
// the user information, or "" when it is not. Two '@' in the authority,
// an '@' in the path or the fragment, an '@' in a query parameter's name
// (or in one with no '='), and any '@' after an authority that has none
// all are: "u:12?k=x@h" is a password holding a '?', not a host u and a
// parameter. An '@' in a parameter's value after a user part
// (u:pw@h/db?application_name=ops@team) is not; without one, write it
// %40.
func MisplacedAt(dsn string) string {
	_, rest, ok := strings.Cut(strings.TrimLeft(dsn, " \t\r\n"), "://")
	if !ok {
		return ""
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Count(authority, "@") > 1 {
		return "an '@' in the user name or password must be percent-encoded as %40"
	}
	if !strings.Contains(authority, "@") && strings.Contains(tail, "@") {
		return "an '@' after the host: percent-encode an '@' in a parameter's value as %40, and a '/', '?' or '#' in the user name or password as %2F, %3F or %23"
	}
	tail, fragment, _ := strings.Cut(tail, "#")
	path, query, _ := strings.Cut(tail, "?")
	if strings.Contains(path, "@") || strings.Contains(fragment, "@") {
		return "an '@' after the host: a '/' or '#' in the user name or password must be percent-encoded as %2F or %23 (and an '@' in the database name as %40)"
	}
	for _, seg := range strings.Split(query, "&") {
		at := strings.IndexByte(seg, '@')
		if at >= 0 && !strings.Contains(seg[:at], "=") {
			return "an '@' in the query where no parameter's value can hold it: a '?' in the user name or password must be percent-encoded as %3F"
		}
	}
	return ""
}

// ClearTextHint says why a connection was refused when NoClearText set
// its requirement, and what to write instead.
const ClearTextHint = "lessor sends no clear-text password to a server whose certificate it did not verify, nor to a socket in a directory other users may write to: use sslmode=verify-full, or add require_auth=password"

// NoClearText makes cfg refuse to send its password in clear text, unless
// the connection string chose require_auth itself or every server cfg may
// reach is verified (see ServerVerified), and reports whether it did. A
// server that asks for the password itself (pg_hba's password, ldap, pam
// or radius) gets it as it is: over plain TCP, or TLS with a certificate
// nobody checked (sslmode prefer, allow, require), whoever sits between
// the host and the database can ask, and keep the login. SCRAM and md5
// send no password.
func NoClearText(cfg *pgx.ConnConfig) bool {
	if cfg.RequireAuth != "" || ServerVerified(cfg) {
		return false
	}
	cfg.RequireAuth = "!password"
	return true
}

// RefusedClearText reports whether err is a connection that NoClearText's
// requirement refused.
func RefusedClearText(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server requested password authentication")
}

// ServerVerified reports whether every connection cfg may make (each host,
// and each TLS fallback sslmode=prefer or allow adds) is to a Unix socket
// that only the server could have put there (see socketDirPrivate) or
// over TLS with the server's certificate checked (sslmode verify-ca or
// verify-full, or require with sslrootcert).
func ServerVerified(cfg *pgx.ConnConfig) bool {
	verified := func(host string, tc *tls.Config) bool {
		if strings.HasPrefix(host, "/") {
			return socketDirPrivate(host)
		}
		return tc != nil && (!tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil)
	}
	if !verified(cfg.Host, cfg.TLSConfig) {
		return false
	}
	for _, fb := range cfg.Fallbacks {
		if !verified(fb.Host, fb.TLSConfig) {
			return false
		}
	}
	return true
}

// socketDirPrivate reports whether dir, where a server's Unix socket is,
// is one that no other local user could put a socket of their own in:
// neither it (sticky or not: while the server is down, its socket's name
// is free) nor a directory above it that is not sticky (they could rename
// what is below) may be written by others. Some builds keep the socket in
// /tmp. A directory its group may write to is the server's own
// (/var/run/postgresql, 2775 postgres:postgres, on Debian). Where dir
// goes through a link, the directories the link leads through are judged
// too: the kernel finds the socket through them.
func socketDirPrivate(dir string) bool {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	return dirChainPrivate(dir) && (real == filepath.Clean(dir) || dirChainPrivate(real))
}

// MaxCAFile is the size of the largest CA file FileOnlyHereChanges
// accepts: a system's whole bundle is some 200 KiB.
const MaxCAFile = 4 << 20

// FileOnlyHereChanges reports whether path is the absolute name of a
// regular file, root's or this process's user's, that no other local user
// could replace, at its
// name or where a link there leads (see dirChainPrivate), and that holds
// something, at most MaxCAFile bytes. The driver reads a CA file whole at
// every connection: another user's, or one they could swap for a link to
// /dev/zero or a FIFO, would have it read without end, and so would a
// file of the kernel's that says it holds nothing and is read out
// without end (/proc/self/pagemap, 256 GiB of the process's own, at
// gigabytes a second), or a large one (a log).
func FileOnlyHereChanges(path string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.Mode().IsRegular() || !ownedHere(real) || fi.Size() <= 0 || fi.Size() > MaxCAFile {
		return false
	}
	return dirChainPrivate(filepath.Dir(path)) && dirChainPrivate(filepath.Dir(real))
}

// dirChainPrivate is socketDirPrivate for the directories dir names, as
// they are named. In a sticky directory others may write to, an entry is
// its maker's: one owned by another user than root or this process's may
// be a directory (or a link) that user made before the server's, with a
// socket of theirs in it, however private its own mode.
func dirChainPrivate(dir string) bool {
	child := ""
	for d, first := filepath.Clean(dir), true; ; d, first = filepath.Dir(d), false {
		fi, err := os.Stat(d)
		if err != nil {
			return false
		}
		if m := fi.Mode(); m.Perm()&0o002 != 0 && (first || m&fs.ModeSticky == 0 || !ownedHere(child)) {
			return false
		}
		if filepath.Dir(d) == d {
			return true
		}
		child = d
	}
}

// ownedHere reports whether path itself (a link, not what it leads to) is
// root's or this process's user's.
func ownedHere(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid == 0 || int(st.Uid) == os.Geteuid())
}

// ServerVersionNum is the server's version as server_version_num would give it.
// Only PostgreSQL 18+ reports server_version_num when a session starts;
// older servers report server_version ("17.10", "16.4 (Debian …)"), whose
// major and minor numbers say as much. Anything unreadable counts as 10,
// the oldest server with SCRAM, which lessor needs anyway.
func ServerVersionNum(pc *pgconn.PgConn) int {
	if n, err := strconv.Atoi(pc.ParameterStatus("server_version_num")); err == nil && n > 0 {
		return n
	}
	v, _, _ := strings.Cut(pc.ParameterStatus("server_version"), " ")
	major, minor, _ := strings.Cut(v, ".")
	ma, err := strconv.Atoi(major)
	if err != nil || ma < 10 {
		return 100000
	}
	mi, _ := strconv.Atoi(strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' }))
	return ma*10000 + mi
}

// RefusedSetting names the setting of names that err, a connection
// attempt's, says the server does not know (an older server refuses the
// connection for one in its startup packet), or is "". The name is looked
// for in the message, whose quotes are the server's language's.
func RefusedSetting(err error, names []string) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42704" {
		return ""
	}
	for _, n := range names {
		if strings.Contains(pe.Message, n) {
			return n
		}
	}
	return ""
}

// Refusals remembers, per server (the address dialled: "ip:port", or a
// socket's path), which settings of a startup packet it refused as
// unknown (see RefusedSetting): an older server refuses a connection for
// one, a newer one needs it. A connection string may list several hosts,
// of different versions; the driver sends one startup packet to each it
// tries, so what one refused must not keep it from another.
type Refusals struct{ m sync.Map }

// Install makes cc carry settings (name and value) in the startup packet
// it sends to each server, but those the server refused before, and
// returns record. record takes ConnectConfig's error, remembers the
// servers whose refusal of a setting it holds, and reports whether there
// was one: the caller connects again, and those servers are not sent it.
func (r *Refusals) Install(cc *pgconn.Config, settings map[string]string) (record func(error) bool) {
	var (
		mu     sync.Mutex
		dialed string
		sent   []string
	)
	dial := cc.DialFunc
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = addr
		mu.Unlock()
		return dial(ctx, network, addr)
	}
	after := cc.AfterNetConnect
	// Called for each server between the dial (and TLS) and the startup
	// packet, with the config the driver is about to send it from.
	cc.AfterNetConnect = func(ctx context.Context, c *pgconn.Config, conn net.Conn) (net.Conn, error) {
		mu.Lock()
		addr := dialed
		mu.Unlock()
		asked := false
		for name, value := range settings {
			if _, refused := r.m.Load(addr + " " + name); refused {
				delete(c.RuntimeParams, name)
			} else {
				c.RuntimeParams[name] = value
				asked = true
			}
		}
		if asked {
			mu.Lock()
			sent = append(sent, addr)
			mu.Unlock()
		}
		if after != nil {
			return after(ctx, c, conn)
		}
		return conn, nil
	}
	names := make([]string, 0, len(settings))
	for name := range settings {
		names = append(names, name)
	}
	return func(err error) bool {
		mu.Lock()
		defer mu.Unlock()
		again := false
		for _, e := range attempts(err) {
			name := RefusedSetting(e, names)
			if name == "" {
				continue
			}
			// The driver names the address it dialled at the head of
			// each attempt's error.
			for _, addr := range sent {
				if strings.HasPrefix(e.Error(), addr+" (") {
					r.m.Store(addr+" "+name, true)
					again = true
				}
			}
		}
		return again
	}
}

// attempts are the errors of err's tree that are not a list of others:
// the driver's error of one connection attempt among them, where the
// list's own text begins with its first attempt's.
func attempts(err error) []error {
	switch u := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, attempts(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		return append([]error{err}, attempts(u.Unwrap())...)
	}
	return []error{err}
}
