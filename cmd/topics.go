package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Help topics are commands with no Run: cobra lists them under
// "Additional help topics" and `lessor help <topic>` prints them.

func newEnvironmentTopic() *cobra.Command {
	var b strings.Builder
	b.WriteString("lessor reads these environment variables. A flag beats its variable, which\n")
	b.WriteString("beats the config file ($XDG_CONFIG_HOME/lessor/config.yaml, or -config /\n")
	b.WriteString("LESSOR_CONFIG), which beats the default.\n\n")
	for _, s := range settings {
		flag := ""
		if s.flag != "" {
			flag = " (flag -" + s.flag + ")"
		}
		fmt.Fprintf(&b, "  %-24s %s%s\n", s.env, s.desc, flag)
	}
	fmt.Fprintf(&b, "  %-24s %s\n", "LESSOR_CONFIG", "path of the config file (flag -config)")
	b.WriteString(`
The config file is YAML with the keys store, key_file, format,
passphrase_file and token_file; lessor serve's keys: listen, unix,
unix_mode, tls_cert, tls_key, tls_disable, reap_interval,
max_request_size, request_timeout, shutdown_timeout, log_format and
db_pool_size; and address, ca_cert, ca_path, client_timeout and allow_http
for a client of a server. Keep secrets out of it: unseal_key and token
are refused. The file, and every directory above it, must belong to you
or root and be writable by no one else (a directory may be if sticky).

With LESSOR_ADDR set (https://host:8200, http://127.0.0.1:8200 or
unix:///path/to/socket), lessor is a client of ` + "`lessor serve`" + `: every request
command (read, write, list, delete, lease, token, policy, secrets, audit,
login, exec, path-help) goes to the server, even where a local store
exists, and prints and exits as it would locally; the host needs only a
token (LESSOR_TOKEN or the token file). The commands that work on the
store with its key (operator init, rotate, rekey, verify, migrate,
upgrade-schema, reap, dev) refuse; operator status shows the server's
status. The server's certificate is checked against LESSOR_CACERT /
LESSOR_CAPATH, else the system's CAs. Plain http:// is refused to any host
but loopback (the token would cross the network in clear) unless
LESSOR_ALLOW_HTTP=true. Each request is tried once (no retries), within
LESSOR_CLIENT_TIMEOUT (default 60s), and a redirect is not followed.

lessor also keeps, per user, the newest generation of each store it saw
committed under $XDG_STATE_HOME/lessor/generation/ (default
~/.local/state/lessor/generation/), to refuse a store file put back from an
older copy; see lessor operator verify -h.

LESSOR_UNSEAL_KEY and LESSOR_TOKEN are secrets: every child process
inherits them and the same user can read them from /proc. Prefer the key
file and the token file outside of CI.

Tests read LESSOR_TEST_DATABASE_URL (a PostgreSQL superuser URL),
LESSOR_TEST_REQUIRE_PG=1 (fail instead of skipping without PostgreSQL) and
LESSOR_TEST_PG_LOG (the server log, for the no-password-in-logs test).`)
	return &cobra.Command{
		Use:   "environment",
		Short: "Environment variables and the config file",
		Long:  b.String(),
	}
}

func newExitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What lessor's exit codes mean",
		Long: `  0  success
  1  usage or local error: an unknown command, a wrong flag or argument,
     bad KEY=VALUE data, a missing or unreadable file, a missing, damaged,
     tampered or rolled-back store, a wrong unseal key, a -field that is not
     in the response, a -format that cannot print the command's output,
     a LESSOR_ADDR or CA file lessor cannot use, a command that needs the
     store run with LESSOR_ADDR set
  2  the operation was refused or failed: permission denied, nothing found
     at the path, a backend or PostgreSQL error; with LESSOR_ADDR also a
     server that does not answer or whose certificate is not trusted
  3  (reap only) reap finished, but some revocations or static role
     rotations failed; they are recorded and will be retried by the next
     runs

exec exits with its command's code (128+N if signal N killed it), or with
1 or 2 as above if it failed before the command ran. If the command
exited 0 but the lease could not be revoked, exec exits 2.

Any other code means lessor itself failed: treat it as an error.
Every error is one line on stderr, "lessor: error: …", sometimes followed by
a "lessor: hint: …" line.`,
	}
}
