package devcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// replicaName is compiled on first use: its bounded repetition compiles to
// some 700 allocations, which every lessor command would pay at start-up
// (this package is linked for `lessor dev`) for a check only StartReplica
// makes.
var replicaName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`) })

// StartReplica starts a streaming replica of c, a cluster started with
// Replication: pg_basebackup -R copies c into a directory of its own
// (beside c's, with the same promises), and the replica starts in hot
// standby on a free port, streaming from c as application name (which
// Options.SynchronousStandby may name). Its superuser and password are
// c's.
//
// Unlike a primary, a replica keeps its password on disk: the walreceiver
// reads it from a 0600 passfile of the server's OS user in the replica's
// directory, removed with it.
func (c *Cluster) StartReplica(ctx context.Context, name string) (_ *Cluster, err error) {
	if !c.opts.Replication {
		return nil, errors.New("start replica: the primary was started without Replication")
	}
	if !replicaName().MatchString(name) {
		return nil, fmt.Errorf("start replica: name %q: use lower-case letters, digits and _", name)
	}
	dir, err := os.MkdirTemp(filepath.Dir(c.Dir), filepath.Base(c.Dir)+"-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	o := c.opts
	o.SynchronousStandby = "" // the replica's own commits wait for no one
	r := &Cluster{
		Dir:      dir,
		DataDir:  filepath.Join(dir, "data"),
		LogFile:  filepath.Join(dir, "server.log"),
		BinDir:   c.BinDir,
		Host:     c.Host,
		User:     c.User,
		Password: c.Password,
		OSUser:   c.OSUser,
		cred:     c.cred,
		opts:     o,
	}
	defer func() {
		if err != nil {
			Stop(dir)
		}
	}()
	if r.cred != nil {
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, fmt.Errorf("start replica: %w", err)
		}
	}
	if err := os.Mkdir(r.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	if r.cred != nil {
		if err := os.Chown(r.DataDir, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
			return nil, fmt.Errorf("start replica: %w", err)
		}
	}
	if err := r.createFile(r.LogFile, ""); err != nil {
		return nil, err
	}
	// libpq's passfile format: the password in a file, never in argv or
	// in the environment of a process the server's OS user can read.
	pass := filepath.Join(dir, "passfile")
	if err := r.createFile(pass, fmt.Sprintf("%s:%d:*:%s:%s\n", c.Host, c.Port, passfileEscape(c.User), passfileEscape(c.Password))); err != nil {
		return nil, err
	}
	conninfo := fmt.Sprintf("host=%s port=%d user='%s' passfile='%s' application_name=%s", c.Host, c.Port, c.User, pass, name)
	if err := run(ctx, dir, r.cred, filepath.Join(r.BinDir, "pg_basebackup"),
		"-D", r.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-d", conninfo); err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	// -R wrote standby.signal and a primary_conninfo into
	// postgresql.auto.conf, which start rewrites: give it again.
	if err := r.start(ctx, fmt.Sprintf("primary_conninfo = '%s'\n", escapeConfString(conninfo))); err != nil {
		return nil, err
	}
	return r, nil
}

func passfileEscape(s string) string {
	return regexp.MustCompile(`[:\\]`).ReplaceAllString(s, `\$0`)
}

func escapeConfString(s string) string {
	return regexp.MustCompile(`['\\]`).ReplaceAllString(s, `\$0`)
}

// Crash stops the server the way a lost machine would: pg_ctl stop -m
// immediate, no checkpoint, every session cut. The directory stays until
// Stop.
func (c *Cluster) Crash(ctx context.Context) error {
	if err := run(ctx, c.Dir, c.cred, filepath.Join(c.BinDir, "pg_ctl"), "stop", "-m", "immediate", "-w", "-t", "30", "-D", c.DataDir); err != nil {
		return fmt.Errorf("crash cluster: %w", err)
	}
	return nil
}

// Promote turns a replica into a primary that accepts writes (pg_ctl
// promote), waiting until it does.
func (c *Cluster) Promote(ctx context.Context) error {
	if err := run(ctx, c.Dir, c.cred, filepath.Join(c.BinDir, "pg_ctl"), "promote", "-w", "-t", "60", "-D", c.DataDir); err != nil {
		return fmt.Errorf("promote cluster: %w", err)
	}
	return nil
}
