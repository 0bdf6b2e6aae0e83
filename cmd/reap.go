package cmd

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/lease"
)

func newReapCmd(f *Factory, g *globalOptions) *cobra.Command {
	var dryRun, verbose bool
	c := &cobra.Command{
		Use:   "reap [flags]",
		Short: "Revoke every expired lease and token (run it from cron or a systemd timer)",
		Long: `Revokes, in batches, every lease that is due: expired, waiting to retry a
failed revocation, left pending by an issuer that died, or claimed by a
reaper that died. Expired tokens are revoked with their child tokens and
their leases. A failed revocation is recorded on its lease with the error,
and retried by later runs with exponential backoff (10 s doubling to 1 h,
with jitter) for ever; nothing is silently given up.

reap needs the unseal key (key file, LESSOR_UNSEAL_KEY or passphrase file)
but no token: it is the store's own housekeeping. Two reaps may run at once;
they never revoke the same lease twice.

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
  Environment=LESSOR_STORE=/var/lib/lessor/lessor.db LESSOR_KEY_FILE=/etc/lessor/unseal.key
  ExecStart=/usr/bin/lessor reap

and /etc/systemd/system/lessor-reap.timer:

  [Unit]
  Description=Run lessor reap every minute
  [Timer]
  OnCalendar=minutely
  Persistent=true
  [Install]
  WantedBy=timers.target

then: systemctl enable --now lessor-reap.timer`,
		Example: `  lessor reap
  lessor reap -dry-run
  lessor reap -format=json`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			cr, err := f.Core(c.Context())
			if err != nil {
				return err
			}
			opts := lease.ReapOptions{DryRun: dryRun}
			if f.IO.ErrTTY {
				opts.Progress = func(done int) {
					if done >= 1000 {
						fmt.Fprintf(f.IO.Err, "\rrevoked or tried %d leases…", done)
					}
				}
			}
			res, err := cr.Reap(c.Context(), opts)
			if opts.Progress != nil && res != nil && res.ReapSummary != nil && res.Revoked+res.Failed >= 1000 {
				fmt.Fprintln(f.IO.Err)
			}
			if err != nil {
				return err
			}
			if err := printReap(f, g, res, dryRun, verbose); err != nil {
				return err
			}
			if !dryRun && (res.Failed > 0 || res.Pending > 0) {
				return &exitCodeError{code: exitReapPending, err: fmt.Errorf("%d revocations failed in this run and %d leases are waiting to be retried; see `lessor lease list`", res.Failed, res.Pending)}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be revoked and why, and change nothing")
	c.Flags().BoolVar(&verbose, "verbose", false, "print a summary even when not on a terminal")
	return c
}

func printReap(f *Factory, g *globalOptions, res *core.ReapResult, dryRun, verbose bool) error {
	o := g.formatOptions(f)
	switch o.Format {
	case "json":
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(f.IO.Out, string(b))
		return nil
	case "yaml":
		return yamlOut(f.IO.Out, res)
	}
	if dryRun {
		if len(res.Due) == 0 {
			fmt.Fprintln(f.IO.Out, "Nothing is due.")
			return nil
		}
		rows := make([][]string, 0, len(res.Due))
		for _, d := range res.Due {
			rows = append(rows, []string{d.LeaseID, d.Reason, d.DueSince.Format("2006-01-02T15:04:05Z07:00"), fmt.Sprint(d.Attempts)})
		}
		format.Table(f.IO.Out, []string{"Lease ID", "Reason", "Due Since", "Attempts"}, rows)
		return nil
	}
	for _, e := range res.Errors {
		fmt.Fprintf(f.IO.Err, "lessor: revoke %s failed: %s\n", e.LeaseID, oneLine(e.Error))
	}
	if f.IO.OutTTY || verbose {
		fmt.Fprintf(f.IO.Out, "revoked %d leases and %d tokens; %d failed, %d waiting for retry, %d skipped\n",
			res.Revoked, res.TokensRevoked, res.Failed, res.Pending, res.Skipped)
	}
	return nil
}
