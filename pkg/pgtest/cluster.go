package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// cluster is a throwaway PostgreSQL cluster in a temporary directory.
type cluster struct {
	dir    string
	data   string
	pgCtl  string
	cred   *syscall.Credential // non-nil when the server runs as another OS user
	server *Server
}

const clusterUser = "lessor_pgtest"

// findBinDir returns a directory holding initdb and pg_ctl: $PATH first,
// then the newest /usr/lib/postgresql/*/bin.
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if q, err := exec.LookPath("pg_ctl"); err == nil {
			if filepath.Dir(p) == filepath.Dir(q) {
				return filepath.Dir(p), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) && fileExists(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found in $PATH or /usr/lib/postgresql/*/bin")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster() (*cluster, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lessor-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, data: filepath.Join(dir, "data"), pgCtl: filepath.Join(bin, "pg_ctl")}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()

	// initdb and postgres refuse to run as root.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres OS user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}

	password := randomHex(16)
	pwFile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(pwFile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if err := c.run(filepath.Join(bin, "initdb"), "-D", c.data, "-U", clusterUser,
		"--pwfile="+pwFile, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	os.Remove(pwFile)

	// Only scram over TCP from 127.0.0.1: no trust, no socket, so a login
	// test proves the password.
	hba := "host all all 127.0.0.1/32 scram-sha-256\n"
	if err := c.writeFile(filepath.Join(c.data, "pg_hba.conf"), hba); err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, "server.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := fmt.Sprintf(`listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%%m [%%p] %%q%%u@%%d '
`, port)
		if err := c.writeFile(filepath.Join(c.data, "postgresql.auto.conf"), conf); err != nil {
			return nil, err
		}
		lastErr = c.run(c.pgCtl, "start", "-w", "-t", "60", "-D", c.data, "-l", logFile)
		if lastErr == nil {
			c.server = &Server{Host: "127.0.0.1", Port: port, User: clusterUser, Password: password, LogFile: logFile}
			ok = true
			return c, nil
		}
		// Most likely another process took the port between freePort and
		// the server's bind; try another.
		time.Sleep(100 * time.Millisecond)
	}
	if b, err := os.ReadFile(logFile); err == nil {
		lastErr = fmt.Errorf("%w\nserver log:\n%s", lastErr, b)
	}
	return nil, lastErr
}

func (c *cluster) writeFile(name, content string) error {
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(name, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

func (c *cluster) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), args[0], err, out.Bytes())
	}
	return nil
}

func (c *cluster) stop() error {
	err := c.run(c.pgCtl, "stop", "-m", "immediate", "-w", "-D", c.data)
	if rmErr := os.RemoveAll(c.dir); err == nil && rmErr != nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("stop throwaway cluster in %s: %w", c.dir, err)
	}
	return nil
}
