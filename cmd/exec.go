package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// forwardedSignals reach the child as they reach lessor. SIGTSTP, SIGCONT
// and SIGWINCH are left alone: the terminal sends them to the whole
// foreground process group, the child included, and lessor must be able
// to stop with it.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// revokeTimeout bounds the revocation after the child exits, so that an
// unreachable database does not hold the caller's shell for ever; reap
// retries what fails.
const revokeTimeout = time.Minute

func newExecCmd(f *Factory, g *globalOptions) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "exec [flags] PATH -- COMMAND [ARGS...]",
		Short: "Run a command with a new credential in its environment, revoked when it exits",
		Long: `Reads PATH (a database engine's creds/<role>) once, and runs COMMAND with the
credential in libpq's environment variables: PGUSER and PGPASSWORD, and
PGHOST, PGPORT, PGDATABASE, PGSSLMODE and PGSSLROOTCERT from the connection
config where they are known and not already set to a non-empty value in
lessor's environment.
LESSOR_LEASE_ID and LESSOR_LEASE_DURATION name the lease. The password is
never in argv and never printed.

Signals lessor receives (INT, TERM, HUP, QUIT, USR1, USR2) are passed to
COMMAND, but for an INT or QUIT while lessor and COMMAND are the
foreground job of their terminal: the terminal's ^C or ^\ reaches COMMAND
by itself, and is not passed a second time. When COMMAND exits, lessor revokes the lease (so the role is
dropped) and exits with COMMAND's exit code, or 128+N if signal N killed
it. With -keep the lease is left to its TTL instead.

Revoking needs update on sys/leases/revoke/PATH/<lease id> (a policy path
"sys/leases/revoke/PATH/*"); without it, exec refuses before issuing
anything, unless -keep is given. If the revocation fails after COMMAND
exited, lessor says so on stderr and exits with COMMAND's code, or 2 if
that was 0; the lease is recorded as failing and ` + "`lessor reap`" + ` retries it.

Run through sudo by another user (SUDO_UID), exec refuses before issuing
anything: COMMAND would run as the account that holds the store, with its
files, not only the credential.`,
		Example: `  lessor exec database/creds/readonly -- psql -c 'SELECT 1'
  lessor exec database/creds/readonly -- pg_dump -Fc -f app.dump
  lessor exec -keep database/creds/readonly -- ./migrate.sh`,
		// The "--" is required: everything after it is the command's, so
		// that none of its flags is taken for lessor's.
		Args: func(c *cobra.Command, args []string) error {
			if c.ArgsLenAtDash() != 1 || len(args) < 2 {
				return usageErrorf("expected PATH -- COMMAND [ARGS...]; see `%s -h`", c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return runExec(c.Context(), f, cleanPath(args[0]), args[1:], keep)
		},
		ValidArgsFunction: completePaths(f),
	}
	c.Flags().BoolVar(&keep, "keep", false, "leave the lease to its TTL instead of revoking it when the command exits")
	return c
}

func runExec(ctx context.Context, f *Factory, path string, argv []string, keep bool) error {
	// Everything that can be refused is checked before a credential exists.
	if uid, _, sudo := f.sudoInvoker(); sudo {
		// The command would run as the account sudo switched to, which
		// can read what lessor reads (the unseal key, that account's
		// token file): a token confined to one creds path would give its
		// holder the whole store.
		return withHint(usageErrorf("exec: lessor was run through sudo by another user (uid %d), and %s would run as this account, with its files, not only the credential", uid, argv[0]),
			"run the command as yourself with the credential: eval \"$(sudo -u <account> lessor read -format=env %s)\"", path)
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return usageErrorf("exec %s: %v", argv[0], errors.Unwrap(err))
	}
	if !keep {
		if err := checkCanRevoke(ctx, f, path); err != nil {
			return err
		}
	}

	req := &logical.Request{Operation: logical.ReadOperation, Path: path}
	resp, err := f.Request(ctx, req)
	if err != nil {
		return requestError("read", path, err)
	}
	if resp == nil {
		return fmt.Errorf("no value found at %s", path)
	}
	leaseID := ""
	if resp.Secret != nil {
		leaseID = resp.Secret.LeaseID
	}
	vars, ok := format.Credential(resp)
	if !ok {
		err := usageErrorf("%s returned no database credential (username and password); exec runs a command with one from a creds/<role> path", path)
		return errors.Join(err, revokeAfter(ctx, f, leaseID))
	}
	warn(f, resp.Warnings)
	// libpq takes what a service file says over PGUSER and PGPASSWORD: a
	// user or password there, not the credential, would be what COMMAND
	// logs in with. The service may also hold the TLS settings COMMAND
	// needs, so it is left in place, and the caller told.
	if svc := os.Getenv("PGSERVICE"); svc != "" {
		fmt.Fprintf(f.IO.Err, "lessor: warning: PGSERVICE=%s is set: if its service file names a user or password, libpq uses them instead of the issued PGUSER and PGPASSWORD\n", svc)
	}

	child := exec.Command(prog, argv[1:]...)
	child.Args[0] = argv[0]
	child.Env = childEnv(os.Environ(), vars)
	child.Stdin, child.Stdout, child.Stderr = f.IO.In, f.IO.Out, f.IO.Err

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	// The controlling terminal, if any, to tell its ^C and ^\ (sent to
	// the whole foreground process group, COMMAND included) from a
	// signal sent to lessor alone.
	tty, _ := os.Open("/dev/tty")
	if tty != nil {
		defer tty.Close()
	}
	if err := child.Start(); err != nil {
		err = &localError{fmt.Errorf("exec %s: %w", argv[0], errors.Unwrap(err))}
		if !keep {
			err = errors.Join(err, revokeAfter(ctx, f, leaseID))
		}
		return err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if terminalSentToChild(tty, s, child.Process.Pid) {
					continue
				}
				_ = child.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	waitErr := child.Wait()
	close(done)
	code := child.ProcessState.ExitCode()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		fmt.Fprintf(f.IO.Err, "lessor: error: wait for %s: %v\n", argv[0], waitErr)
		code = max(code, exitFailed)
	}

	if !keep {
		if err := revokeAfter(ctx, f, leaseID); err != nil {
			printError(f.IO.Err, err)
			if code == 0 {
				code = exitFailed
			}
		}
	}
	if code == 0 {
		return nil
	}
	return &exitCodeError{code: code}
}

// terminalSentToChild reports whether sig, which lessor received, is one
// a terminal sends (INT for ^C, QUIT for ^\) and may have come from tty,
// whose foreground process group is lessor's and the child's: the
// terminal sent it to the child too, which must not get it twice. sudo
// tells such a signal by its si_code (sent by the kernel, not kill(2)),
// which Go does not show; so an INT or QUIT that another process sends
// to lessor alone while lessor runs in the foreground of its terminal
// is not passed on either.
func terminalSentToChild(tty *os.File, sig os.Signal, child int) bool {
	if tty == nil || sig != syscall.SIGINT && sig != syscall.SIGQUIT {
		return false
	}
	fg, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	if err != nil {
		return false
	}
	own := unix.Getpgrp()
	cpg, err := unix.Getpgid(child)
	return err == nil && fg == own && cpg == own
}

// withheldFromChild are the caller's secrets that the command never
// gets: it holds the credential, not what unseals the store or asks for
// more credentials.
var withheldFromChild = []string{"LESSOR_UNSEAL_KEY", "LESSOR_TOKEN", "VAULT_TOKEN"}

// fromConnection are the credential's variables that say where and how it
// logs in: a caller who set one chose it.
var fromConnection = []string{"PGHOST", "PGPORT", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"}

// childEnv is env with the credential's variables: PGUSER, PGPASSWORD
// and the LESSOR_ lease names replace any the caller had; those of
// fromConnection are added only where the caller set none (an empty value
// counts as none). The unseal key, the token and a store connection
// string are left out.
func childEnv(env []string, vars []format.Var) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, value, _ := strings.Cut(kv, "=")
		// A store given as a connection string may hold its password.
		return slices.Contains(withheldFromChild, name) ||
			name == "LESSOR_STORE" && (storage.LooksLikeURL(value) || storage.IsPostgresKeywords(value))
	})
	set := func(name string) int {
		return slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	}
	for _, v := range vars {
		i := set(v.Name)
		callers := slices.Contains(fromConnection, v.Name)
		switch {
		case i < 0:
			env = append(env, v.Name+"="+v.Value)
		case callers && env[i] != v.Name+"=":
			// The caller chose this one.
		default:
			env[i] = v.Name + "=" + v.Value
		}
	}
	return env
}

// checkCanRevoke refuses, before anything is issued, a token that could
// not revoke the lease exec is about to create: the credential would
// outlive the command. A token that may not ask about its capabilities
// is let through; the revocation then says what went wrong.
func checkCanRevoke(ctx context.Context, f *Factory, path string) error {
	// Any lease id stands for the one to come: policies name leases by
	// prefix or glob, never by an id they cannot know.
	target := "sys/leases/revoke/" + path + "/probe"
	resp, err := f.Request(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "sys/capabilities-self",
		Data: map[string]any{"path": target}})
	if err != nil {
		if errors.Is(err, logical.ErrPermissionDenied) {
			return nil
		}
		return requestError("check capabilities on", target, err)
	}
	var caps []string
	if resp != nil {
		caps, _ = logical.ParseCommaStrings(resp.Data["capabilities"])
	}
	if slices.Contains(caps, "root") || slices.Contains(caps, "update") {
		return nil
	}
	return withHint(usageErrorf("exec %s: this token may not revoke the lease it would get, so the credential would outlive the command", path),
		"grant update on \"sys/leases/revoke/%s/*\" in the token's policy, or pass -keep to leave the lease to its TTL", path)
}

// revokeAfter revokes the lease exec issued. It runs whatever happened
// to ctx (an interrupt forwarded to the child also cancels lessor's
// context), bounded by revokeTimeout.
func revokeAfter(ctx context.Context, f *Factory, leaseID string) error {
	if leaseID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	// The id goes in the path, where the policy that checkCanRevoke
	// asked about applies.
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "sys/leases/revoke/" + leaseID, Data: map[string]any{}}
	if _, err := f.Request(ctx, req); err != nil {
		return withHint(fmt.Errorf("revoke %s after the command exited: %w", leaseID, err),
			"the lease is left to `lessor reap`, which revokes it when it expires, or retries a revocation that failed")
	}
	return nil
}
