package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/lease"
)

func newReapCmd(f *Factory, g *globalOptions) *cobra.Command {
	var dryRun, verbose, orphans bool
	var parallel int
	var loop time.Duration
	var once func(ctx context.Context, stop <-chan struct{}) error
	c := &cobra.Command{
		Use:   "reap [flags]",
		Short: "Revoke every expired lease and token, rotate due static roles (run it from cron or a systemd timer)",
		Long: `Revokes, in batches, every lease that is due: expired, waiting to retry a
failed revocation, left pending by an issuer that died, or claimed by a
reaper that died. Expired tokens are revoked with their child tokens and
their leases. Then it rotates the password of every static role that is
due (database/static-roles/<name>): its rotation_period elapsed or its
rotation_schedule came, a failed rotation waits for its retry, or a
rotation was left unfinished by a process that died (settled by logging
in with the pending password). A failed revocation is recorded on its lease with the error,
and retried by later runs with exponential backoff (10 s doubling to 1 h,
with jitter) for ever; nothing is silently given up.

Batches of 1,000 are revoked -parallel at a time (default 2, at most 16),
each on a connection of its own to each database it touches: set
-parallel=1 where the admin role may hold only one connection.

reap needs the unseal key (key file, LESSOR_UNSEAL_KEY or passphrase file)
but no token: it is the store's own housekeeping. Two reaps may run at once;
they never revoke the same lease twice.

With -orphans, reap then asks every configured database connection for
the roles whose comment says this store created them, and revokes (with
the full default teardown) those of which the store holds no lease record
and whose recorded expiry has passed: roles left behind when the store
was restored from an older backup or a record was lost. Orphans not yet
expired are reported and left alone. A role without lessor's comment, or
created by another store, is never touched. The sweep lists every lessor
role of each server, so run it daily rather than every minute. -orphans
first checks the whole store against its record checksum, as
` + "`lessor operator verify`" + ` does (without decrypting): a record deleted, or
put back from an old copy (a revoked token, a revoked lease), stops the
reap with an error.

It prints nothing when there is nothing to say and stdout is not a
terminal (cron mails only failures); -verbose prints a summary anyway, and
-format=json always prints one.

Exit codes: 0 all due work done; 3 some revocations failed and will be
retried (alert on it); 1 and 2 as for other commands.

crontab, every minute:

  * * * * * LESSOR_KEY_FILE=/etc/lessor/unseal.key lessor reap -store=/var/lib/lessor/lessor.db

systemd, /etc/systemd/system/lessor-reap.service:

  [Unit]
  Description=Revoke expired lessor leases
  [Service]
  Type=oneshot
  User=lessor
  Environment=LESSOR_STORE=/var/lib/lessor/lessor.db LESSOR_KEY_FILE=/etc/lessor/unseal.key XDG_STATE_HOME=/var/lib/lessor/state
  ExecStart=/usr/bin/lessor reap

and /etc/systemd/system/lessor-reap.timer:

  [Unit]
  Description=Run lessor reap every minute
  [Timer]
  OnCalendar=minutely
  Persistent=true
  [Install]
  WantedBy=timers.target

then: systemctl enable --now lessor-reap.timer

With -loop=INTERVAL, reap runs until SIGTERM or SIGINT instead, starting a
pass every INTERVAL (for hosts that prefer a long-running service to a
timer). A failed pass is reported on stderr and the next one runs anyway.
On SIGTERM it claims no further batch, finishes and settles the batches in
hand, and exits 0. Several hosts may each run one against a shared
PostgreSQL store: claims keep them off each other's leases.`,
		Example: `  lessor reap
  lessor reap -dry-run
  lessor reap -orphans -dry-run
  lessor reap -format=json
  lessor reap -loop=30s`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if parallel < 1 || parallel > maxReapParallel {
				return usageErrorf("-parallel must be from 1 to %d, not %d", maxReapParallel, parallel)
			}
			if loop < 0 || c.Flags().Changed("loop") && loop < 100*time.Millisecond {
				return usageErrorf("-loop must be at least 100ms, not %v", loop)
			}
			if loop == 0 {
				return once(c.Context(), nil)
			}
			// The signal ends the loop and stops new claims; the work in
			// hand runs on a context the signal does not cancel.
			sig := c.Context()
			work := context.WithoutCancel(sig)
			for pass := 0; ; pass++ {
				if pass > 0 {
					f.resyncClock(work)
				}
				if err := once(work, sig.Done()); err != nil {
					printError(f.IO.Err, err)
				}
				select {
				case <-sig.Done():
					return nil
				case <-time.After(loop):
				}
			}
		},
	}
	once = func(ctx context.Context, stopCh <-chan struct{}) error {
		cr, err := f.Core(ctx)
		if err != nil {
			return err
		}
		if orphans {
			// The daily sweep also checks the whole record set, so that
			// a revoked token or lease put back into the file is found
			// (every command checks only the mounts, audit devices and
			// policies, which costs nothing as leases grow).
			b, err := f.Barrier(ctx)
			if err != nil {
				return err
			}
			if _, err := b.Verify(ctx, false); err != nil {
				return f.storeError(err)
			}
		}
		opts := lease.ReapOptions{DryRun: dryRun, Workers: parallel, Stop: stopCh}
		if f.IO.ErrTTY {
			opts.Progress = func(done int) {
				if done >= 1000 {
					fmt.Fprintf(f.IO.Err, "\rrevoked or tried %d leases…", done)
				}
			}
		}
		res, err := cr.Reap(ctx, opts)
		if opts.Progress != nil && res != nil && res.ReapSummary != nil && res.Revoked+res.Failed >= 1000 {
			fmt.Fprintln(f.IO.Err)
		}
		if err != nil {
			return err
		}
		out := &reapOutput{ReapResult: res}
		if orphans {
			if out.Orphans, err = cr.ReapOrphans(ctx, dryRun); err != nil {
				return err
			}
		}
		if err := printReap(f, g, out, dryRun, verbose); err != nil {
			return err
		}
		if !dryRun && res.RotationsFailed > 0 {
			return &exitCodeError{code: exitReapPending, err: fmt.Errorf("%s; reap retries them", count(res.RotationsFailed, "static role rotation failed", "static role rotations failed"))}
		}
		if !dryRun && (res.Failed > 0 || res.WaitingRetry > 0) {
			return &exitCodeError{code: exitReapPending, err: fmt.Errorf("%s in this run and %s waiting for retry; see `lessor lease list`",
				count(res.Failed, "revocation failed", "revocations failed"), count(res.WaitingRetry, "lease is", "leases are"))}
		}
		if o := out.Orphans; !dryRun && o != nil && (o.Failed > 0 || len(o.Errors) > 0) {
			return &exitCodeError{code: exitReapPending, err: fmt.Errorf("%s could not be revoked and %s could not be swept; the next `lessor reap -orphans` retries them",
				count(o.Failed, "orphaned role", "orphaned roles"), count(len(o.Errors), "connection", "connections"))}
		}
		return nil
	}
	c.Flags().DurationVar(&loop, "loop", 0, "run until SIGTERM, a pass every `INTERVAL` (e.g. 30s)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be revoked and why, and change nothing")
	c.Flags().BoolVar(&verbose, "verbose", false, "print a summary even when not on a terminal")
	c.Flags().BoolVar(&orphans, "orphans", false, "also revoke expired roles this store created but has no lease record of")
	c.Flags().IntVar(&parallel, "parallel", lease.DefaultReapWorkers, "how many batches to revoke at once, each on connections of its own")
	return c
}

// maxReapParallel bounds -parallel: each worker holds connections of its
// own to every database it revokes in.
const maxReapParallel = 16

// reapOutput is reap's summary; orphans is there only with -orphans.
type reapOutput struct {
	*core.ReapResult
	Orphans *core.OrphanSummary `json:"orphans,omitempty" yaml:"orphans,omitempty"`
}

func printReap(f *Factory, g *globalOptions, out *reapOutput, dryRun, verbose bool) error {
	res := out.ReapResult
	if o := g.formatOptions(f); o.Format.Encoded() {
		return format.Encode(f.IO.Out, out, o.Format)
	}
	if dryRun {
		switch {
		case len(res.Due) == 0 && len(res.RotationsDue) == 0:
			fmt.Fprintln(f.IO.Out, "Nothing is due.")
		case len(res.Due) > 0:
			rows := make([][]string, 0, len(res.Due))
			for _, d := range res.Due {
				rows = append(rows, []string{d.LeaseID, d.Reason, d.DueSince.Format(time.RFC3339), fmt.Sprint(d.Attempts)})
			}
			format.Table(f.IO.Out, []string{"Lease ID", "Reason", "Due Since", "Attempts"}, rows)
		}
		if len(res.RotationsDue) > 0 {
			if len(res.Due) > 0 {
				fmt.Fprintln(f.IO.Out)
			}
			rows := make([][]string, 0, len(res.RotationsDue))
			for _, d := range res.RotationsDue {
				rows = append(rows, []string{d.Mount + "static-roles/" + d.Role, d.Reason, d.DueSince.Format(time.RFC3339), fmt.Sprint(d.Attempts)})
			}
			format.Table(f.IO.Out, []string{"Static Role", "Reason", "Due Since", "Attempts"}, rows)
		}
		if out.Orphans != nil {
			fmt.Fprintln(f.IO.Out)
			printOrphans(f, out.Orphans, true)
		}
		return nil
	}
	for _, e := range res.Errors {
		fmt.Fprintf(f.IO.Err, "lessor: revoke %s failed: %s\n", e.LeaseID, oneLine(e.Error))
	}
	for _, e := range res.RotationErrors {
		fmt.Fprintf(f.IO.Err, "lessor: rotate %sstatic-roles/%s failed: %s\n", e.Mount, e.Role, oneLine(e.Error))
	}
	if o := out.Orphans; o != nil {
		for _, ce := range o.Errors {
			fmt.Fprintf(f.IO.Err, "lessor: list roles of %sconfig/%s failed: %s\n", ce.Mount, ce.Connection, oneLine(ce.Error))
		}
		for _, or := range o.Orphans {
			if or.Error != "" {
				// The name is the database's: any login with CREATEROLE
				// may choose it, and forge the comment that makes it an
				// orphan of this store.
				fmt.Fprintf(f.IO.Err, "lessor: revoke orphaned role %s failed: %s\n", format.EscapeControls(or.Username), oneLine(or.Error))
			}
		}
	}
	if f.IO.OutTTY || verbose {
		fmt.Fprintf(f.IO.Out, "revoked %s and %s; %d failed, %d waiting for retry, %d skipped\n",
			count(res.Revoked, "lease", "leases"), count(res.TokensRevoked, "token", "tokens"), res.Failed, res.WaitingRetry, res.Skipped)
		if res.Rotated > 0 || res.RotationsFailed > 0 {
			fmt.Fprintf(f.IO.Out, "rotated %s; %d failed\n", count(res.Rotated, "static role", "static roles"), res.RotationsFailed)
		}
		if out.Orphans != nil {
			printOrphans(f, out.Orphans, false)
		}
	}
	return nil
}

// printOrphans shows the orphans found: all of them in a dry run, else a
// count line and the ones left for later.
func printOrphans(f *Factory, o *core.OrphanSummary, dryRun bool) {
	if !dryRun {
		fmt.Fprintf(f.IO.Out, "revoked %d orphaned roles; %d failed, %d not yet expired\n", o.Revoked, o.Failed, o.NotExpired)
	}
	var rows [][]string
	for _, or := range o.Orphans {
		action := "orphan, not yet expired"
		switch {
		case or.Expired && dryRun:
			action = "would revoke (expired)"
		case or.Revoked:
			continue
		case or.Error != "":
			action = "revocation failed"
		}
		rows = append(rows, []string{or.Username, or.LeaseID, or.Expires.Format(time.RFC3339), action})
	}
	switch {
	case len(rows) > 0:
		format.Table(f.IO.Out, []string{"Orphaned Role", "Lease ID", "Expires", "Action"}, rows)
	case dryRun:
		fmt.Fprintln(f.IO.Out, "No orphaned roles.")
	}
}
