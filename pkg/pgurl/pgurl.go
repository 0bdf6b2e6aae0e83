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

import "strings"

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
