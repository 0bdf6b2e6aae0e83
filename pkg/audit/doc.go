// Package audit writes lessor's audit log: for every request, one JSON line
// before it is handled and one with its outcome, to every enabled device.
//
// Promises:
//
//   - Secrets are never written in clear. The values of secret keys
//     (password, new_password, token, client_token, private_key,
//     unseal_key(s), passphrase, and any key ending in _password or _token,
//     at any depth, in any case) are replaced by "hmac-sha256:<hex>" under
//     the store's audit key; so is a connection string (connection_url,
//     dsn, *_url, or any string holding "://") that carries an inline
//     password, "id" under auth/token/ (a token there), and "input" under
//     sys/audit-hash (the value being looked up). A token (lsr_…) is
//     hashed wherever it appears: the caller's, and one in the path, the
//     error, a warning, or any value or key of the data (sent for its
//     accessor, say). HashString gives the same hash, so that an
//     operator can grep for a value.
//   - Everything else stays in clear, usernames and lease ids above all,
//     so that the log answers "who held database user X, and when"
//     without brute-forcing hashes (Vault hashes them, and users of its
//     audit log cannot answer that question). Accessors are clear unless a device sets
//     hmac_accessor=true.
//   - A request that cannot be audited fails: LogRequest and LogResponse
//     return an *Error (holding a *DeviceError for each device that could
//     not be written), and the other devices are still written.
//   - One call is one line per device, written by one write(2) on a file
//     opened with O_APPEND, so lines from goroutines and from concurrent
//     lessor processes never interleave on a local file system. A line
//     that finds the log's last line cut short (a full disk) ends it
//     first, so that a JSON-lines reader loses only that one. The file
//     is reopened for every line, so log rotation needs no signal: a log
//     moved away is recreated with the device's mode.
//   - A request refused before its backend ran (Entry.Refused) writes at
//     most a few kilobytes of what its caller sent (path, error, data),
//     cut after hashing and marked as cut: whoever has no token, or none
//     that grants anything, cannot fill the log's disk. A request that
//     ran is written whole.
//   - A line holds no "$", "`" or C1 control (U+0080–U+009F): they are
//     written as \u escapes, so a shell that reads the log expands
//     nothing a caller wrote in it, and a terminal obeys none of it.
//
// Only the "file" device type exists. Its file_path must be absolute and a
// regular file: stdout is for command output, stderr belongs to the
// audited caller, and a discarding device would make requests look
// audited when they are not.
package audit
