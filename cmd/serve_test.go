package cmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHealthy polls sys/health until the server answers 200.
func waitHealthy(t *testing.T, client *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(base + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never became healthy", base)
}

// TestServeOptions: what serve refuses before it opens anything, and the
// config file keys that stand for its flags.
func TestServeOptions(t *testing.T) {
	c := newCompCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-listen=0.0.0.0:8200"}, `plain HTTP is served only on a loopback address`},
		{[]string{"serve", "-listen=[::]:8200"}, `plain HTTP is served only on a loopback address`},
		{[]string{"serve", "-listen=", "-unix="}, `nothing to listen on`},
		{[]string{"serve", "-tls-cert=/x"}, `-tls-cert and -tls-key go together`},
		{[]string{"serve", "-unix-mode=999"}, `not an octal file mode`},
		{[]string{"serve", "-reap-interval=1ns"}, `reap_interval`},
		{[]string{"serve", "-max-request-size=10"}, `max_request_size`},
		{[]string{"serve", "-log-format=xml"}, `log_format`},
	} {
		out, errs, code := c.run(tc.args...)
		if code != 1 || out != "" || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 1 {
			t.Errorf("lessor %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
	// The config file says the same; a flag beats it.
	cfg := c.file("config.yaml", "listen: 0.0.0.0:8200\nreap_interval: 1ns\n")
	c.env["LESSOR_CONFIG"] = cfg
	if _, errs, code := c.run("serve"); code != 1 || !strings.Contains(errs, "reap_interval") {
		t.Errorf("config file reap_interval: exit %d %s", code, errs)
	}
	if _, errs, code := c.run("serve", "-reap-interval=30s"); code != 1 || !strings.Contains(errs, "loopback") {
		t.Errorf("config file listen: exit %d %s", code, errs)
	}
	// -tls-disable lets plain HTTP out; then the missing store is the error.
	if _, errs, code := c.run("serve", "-reap-interval=30s", "-tls-disable"); code != 1 || !strings.Contains(errs, "no store") {
		t.Errorf("-tls-disable: exit %d %s", code, errs)
	}
	c.file("config.yaml", "listen: 0.0.0.0:8200\ntls_disable: true\nreap_interval: 1m\n")
	if _, errs, code := c.run("serve"); code != 1 || !strings.Contains(errs, "no store") {
		t.Errorf("config file tls_disable: exit %d %s", code, errs)
	}
	c.env["LESSOR_TLS_DISABLE"] = "false"
	if _, errs, code := c.run("serve"); code != 1 || !strings.Contains(errs, "loopback") {
		t.Errorf("LESSOR_TLS_DISABLE=false over the config file: exit %d %s", code, errs)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns the certificate's serial number.
func selfSignedCert(t *testing.T, certFile, keyFile string) *big.Int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "lessor test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return serial
}

// startServe runs `lessor serve` in this process until the returned stop
// is called; it returns serve's exit code through the channel.
func startServe(t *testing.T, c *compCLI, args ...string) (stop func() int, stderr *syncBuffer) {
	t.Helper()
	return startServeWith(t, c, nil, args...)
}

// startServeWith is startServe with setup, if not nil, given the factory
// before serve runs.
func startServeWith(t *testing.T, c *compCLI, setup func(*Factory), args ...string) (stop func() int, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		f := newFactory(strings.NewReader(""), io.Discard, stderr, func(k string) string { return c.env[k] })
		if setup != nil {
			setup(f)
		}
		done <- run(ctx, f, append([]string{"serve"}, args...))
	}()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("serve did not stop 30 s after its context ended")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop, stderr
}

// serveProcess starts `lessor serve args...` from bin as a process of its
// own, with HOME and nothing of the caller's lessor settings; exited
// gets its Wait's result, and the test kills it at cleanup.
func serveProcess(t *testing.T, bin, home string, args ...string) (cmd *exec.Cmd, exited chan error, logs *syncBuffer) {
	t.Helper()
	cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "XDG_STATE_HOME=",
		"LESSOR_TOKEN=", "LESSOR_STORE=", "LESSOR_KEY_FILE=", "LESSOR_CONFIG=", "LESSOR_UNSEAL_KEY=")
	logs = &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, exited, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServeTLSReloadAndUnixSocket: serve speaks TLS with the configured
// certificate and takes a new one on SIGHUP; its Unix socket has the
// configured mode; a slow client's headers are cut off; SIGTERM-like
// cancellation stops it with exit 0 and removes the socket.
func TestServeTLSReloadAndUnixSocket(t *testing.T) {
	c := newCompCLI(t)
	c.must("operator", "init")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := selfSignedCert(t, certFile, keyFile)
	sock := filepath.Join(dir, "lessor.sock")
	addr := freeAddr(t)
	stop, logs := startServe(t, c, "-listen="+addr, "-tls-cert="+certFile, "-tls-key="+keyFile, "-unix="+sock, "-unix-mode=0600", "-reap-interval=0")

	serial := func() *big.Int {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitHealthy(t, tlsClient, "https://"+addr)
	if got := serial(); got.Cmp(first) != 0 {
		t.Fatalf("served certificate %v, want %v", got, first)
	}
	// HTTP/2 is offered beside HTTP/1.1.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	if resp, err := h2.Get("https://" + addr + "/v1/sys/health"); err != nil || resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("HTTP/2 over TLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + addr + "/v1/sys/health"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS listener")
	}

	second := selfSignedCert(t, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for serial().Cmp(second) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the certificate was not reloaded on SIGHUP; log:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken certificate on SIGHUP keeps the old one.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for !strings.Contains(logs.String(), "TLS certificate not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("a broken certificate was not reported; log:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if serial().Cmp(second) != 0 {
		t.Fatal("a broken certificate replaced the good one")
	}

	// The Unix socket, with its mode.
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
	unixClient := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := unixClient.Get("http://lessor/v1/sys/seal-status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("seal-status over the socket: %v %v", resp, err)
	}
	resp.Body.Close()

	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, logs)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket is left behind: %v", err)
	}
	for _, want := range []string{"msg=listening", "SIGHUP: TLS certificate reloaded", "msg=stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestServeSlowHeaders: a client that never finishes its headers is cut
// off by the read-header timeout, and the server goes on serving.
func TestServeSlowHeaders(t *testing.T) {
	c := newCompCLI(t)
	c.must("operator", "init")
	addr := freeAddr(t)
	testOnlyReadHeaderTimeout = 300 * time.Millisecond
	defer func() { testOnlyReadHeaderTimeout = 0 }()
	stop, _ := startServe(t, c, "-listen="+addr, "-reap-interval=0")
	waitHealthy(t, http.DefaultClient, "http://"+addr)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if took := time.Since(start); err != nil || took > 5*time.Second {
		t.Fatalf("a slow header was not cut off: %v after %v", err, took)
	}
	waitHealthy(t, http.DefaultClient, "http://"+addr)
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// issued is one credential a client got from the server.
type issued struct{ lease, user, pass string }

// TestServeShutdownUnderLoad: SIGTERM reaches a real `lessor serve` while
// 8 clients issue credentials. It exits 0; after one reap every
// credential a client received has its lease and its role (which logs
// in), and every lease its role.
func TestServeShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a server under load")
	}
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	bin := buildLessor(t)
	c, ini := storeWithConnection(t, srv, db, "readonly")
	c.must("write", "database/roles/readonly", "db_name=postgresql", "default_ttl=1h", "max_ttl=24h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)
	t.Cleanup(func() { dropStoreRoles(t, srv, db, ini.StoreID) })

	addr := freeAddr(t)
	cmd, exited, logs := serveProcess(t, bin, c.env["HOME"], "-listen="+addr, "-reap-interval=1s", "-log-format=json")
	base := "http://" + addr
	waitHealthy(t, http.DefaultClient, base)

	var mu sync.Mutex
	var got []issued
	var wg sync.WaitGroup
	stopClients := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 60 * time.Second}
			for {
				select {
				case <-stopClients:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+"/v1/database/creds/readonly", nil)
				req.Header.Set("X-Vault-Token", ini.Root)
				resp, err := client.Do(req)
				if err != nil {
					continue // the server is going away
				}
				var env struct {
					LeaseID string `json:"lease_id"`
					Data    struct {
						Username string `json:"username"`
						Password string `json:"password"`
					} `json:"data"`
				}
				err = json.NewDecoder(resp.Body).Decode(&env)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					continue
				}
				if err != nil {
					t.Errorf("a 200 with a body that does not decode: %v", err)
					continue
				}
				mu.Lock()
				got = append(got, issued{env.LeaseID, env.Data.Username, env.Data.Password})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v; log:\n%s", err, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit 60 s after SIGTERM; log:\n%s", logs.String())
	}
	close(stopClients)
	wg.Wait()
	if len(got) == 0 {
		t.Fatalf("no credential was issued before SIGTERM; log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), ini.Root) || strings.Contains(logs.String(), got[0].pass) {
		t.Fatal("the server's log holds a token or a password")
	}

	// One reap, with the clock past the pending grace (5 min), so that a
	// pending record would be settled; the issued leases (1 h) stay.
	c.env["LESSOR_TESTONLY_CLOCK_SKEW"] = "6m"
	c.must("reap")
	delete(c.env, "LESSOR_TESTONLY_CLOCK_SKEW")

	leases := map[string]bool{}
	var keys []string
	if out, _, code := c.run("list", "-format=json", "sys/leases/lookup/database/creds/readonly"); code == 0 {
		if err := json.Unmarshal([]byte(out), &keys); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		leases["database/creds/readonly/"+k] = true
	}
	roles := storeRoles(t, srv, db, ini.StoreID)
	for _, is := range got {
		if !leases[is.lease] {
			t.Errorf("credential %s was handed out, but its lease %s is gone", is.user, is.lease)
		}
		if roles[is.user] != is.lease {
			t.Errorf("credential %s (lease %s) has no role, or the role names lease %q", is.user, is.lease, roles[is.user])
		}
	}
	leaseOf := map[string]bool{}
	for _, l := range roles {
		leaseOf[l] = true
	}
	for l := range leases {
		if !leaseOf[l] {
			t.Errorf("lease %s has no role", l)
		}
	}
	for l := range leaseOf {
		if !leases[l] {
			t.Errorf("a role names lease %s, which the store does not have", l)
		}
	}
	// The credentials log in (a sample: each login costs a SCRAM exchange).
	for i, is := range got {
		if i%10 != 0 {
			continue
		}
		if err := srv.CanLogin(context.Background(), is.user, is.pass, db.Name); err != nil {
			t.Errorf("credential %s does not log in: %v", is.user, err)
		}
	}
	t.Logf("%d credentials issued before SIGTERM, %d leases, %d roles after reap", len(got), len(leases), len(roles))
}

// storeRoles maps the roles this store created (by their comment) to the
// lease each names.
func storeRoles(t *testing.T, srv *pgtest.Server, db *pgtest.Database, storeID string) map[string]string {
	t.Helper()
	conn := db.Conn(t)
	rows, err := conn.Query(context.Background(), `SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1`,
		`lessor:{"store":"`+storeID+`"%`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Lease string `json:"lease"`
		}
		json.Unmarshal([]byte(strings.TrimPrefix(comment, "lessor:")), &m)
		out[name] = m.Lease
	}
	return out
}

func dropStoreRoles(t *testing.T, srv *pgtest.Server, db *pgtest.Database, storeID string) {
	var names []string
	for n := range storeRoles(t, srv, db, storeID) {
		names = append(names, n)
	}
	srv.DropRolesAtCleanup(t, names...)
}

// TestServeReapsBesideCron: the server's reaper and a cron-like
// `lessor reap` run side by side over the same store; every expired
// credential is revoked once, neither reports a failure, and nothing is
// left behind.
func TestServeReapsBesideCron(t *testing.T) {
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	c, ini := storeWithConnection(t, srv, db, "short")
	c.must("write", "database/roles/short", "db_name=postgresql", "default_ttl=1s", "max_ttl=1s",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`)
	t.Cleanup(func() { dropStoreRoles(t, srv, db, ini.StoreID) })
	addr := freeAddr(t)
	stop, logs := startServe(t, c, "-listen="+addr, "-reap-interval=100ms")
	base := "http://" + addr
	waitHealthy(t, http.DefaultClient, base)
	// A lease's TTL counts from the start of the second its issue began
	// in, so a 1 s lease may expire while the role is being created; the
	// server's reaper then claims it, and the issue fails rather than
	// hand out a credential under revocation. That is allowed, not the
	// rule.
	issued := 0
	for range 30 {
		req, _ := http.NewRequest("GET", base+"/v1/database/creds/short", nil)
		req.Header.Set("X-Vault-Token", ini.Root)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("issue: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 200:
			issued++
		case !strings.Contains(string(body), "revoked while it was being issued"):
			t.Fatalf("issue: %s %s", resp.Status, body)
		}
	}
	if issued < 15 {
		t.Fatalf("only %d of 30 issues succeeded; log:\n%s", issued, logs)
	}
	// The cron reap joins once the server's reaper has revoked something:
	// on a loaded machine a cron loop started at once may win every batch.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "msg=reaped") {
		if time.Now().After(deadline) {
			t.Fatalf("the server's reaper revoked nothing in 20 s; log:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for len(storeRoles(t, srv, db, ini.StoreID)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("roles left 20 s after expiry; log:\n%s", logs)
		}
		if out, errs, code := c.run("reap", "-verbose"); code != 0 {
			t.Fatalf("cron reap beside the server: exit %d\n%s%s", code, out, errs)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if strings.Contains(logs.String(), "revocation failed") || strings.Contains(logs.String(), "reap failed") {
		t.Fatalf("the server's reaper reported a failure:\n%s", logs)
	}
	// A lease claimed while its role was being created keeps its record
	// (revoking) until the issuer's grace (5 min) is over, in case the
	// role was committed after the revocation looked; every other lease
	// is gone.
	var left []string
	if out, _, code := c.run("list", "-format=json", "sys/leases/lookup/database/creds/short"); code == 0 {
		if err := json.Unmarshal([]byte(out), &left); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range left {
		var lk struct {
			Data struct {
				State string `json:"state"`
			} `json:"data"`
		}
		out := c.must("write", "-format=json", "sys/leases/lookup", "lease_id=database/creds/short/"+k)
		if err := json.Unmarshal([]byte(out), &lk); err != nil {
			t.Fatal(err)
		}
		if lk.Data.State != "revoking" {
			t.Errorf("lease %s left %s, not revoking", k, lk.Data.State)
		}
	}
	if len(left) > 0 {
		c.env["LESSOR_TESTONLY_CLOCK_SKEW"] = "6m"
		c.must("reap")
		delete(c.env, "LESSOR_TESTONLY_CLOCK_SKEW")
		if out, _, code := c.run("list", "sys/leases/lookup/database/creds/short"); code == 0 {
			t.Fatalf("leases left after the issuer's grace: %s", out)
		}
	}
	if roles := storeRoles(t, srv, db, ini.StoreID); len(roles) > 0 {
		t.Fatalf("roles left: %v", roles)
	}
	if !strings.Contains(logs.String(), "msg=reaped") {
		t.Fatalf("the server's reaper revoked nothing (the cron reap did it all); log:\n%s", logs)
	}
}

// processUmask reads the process umask without changing it.
func processUmask(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Skip("/proc/self/status has no Umask line")
	return ""
}

// Listening on a Unix socket never changes the process umask, which
// every goroutine shares: a file created meanwhile elsewhere in the
// process (a binary built by a parallel test, say) would get the wrong
// mode.
func TestListenUnixLeavesUmask(t *testing.T) {
	want := processUmask(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 300 {
			l, err := listenUnix(sock, 0o600)
			if err != nil {
				t.Error(err)
				return
			}
			l.Close()
		}
	}()
	for {
		select {
		case <-done:
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket left after Close: %v", err)
			}
			return
		default:
		}
		if got := processUmask(t); got != want {
			t.Fatalf("umask changed to %s while listening (was %s)", got, want)
		}
	}
}

// A second server on the same socket path is refused while the first
// listens, and takes over a stale socket once it is gone; closing an old
// listener never removes a socket that now belongs to another server.
func TestListenUnixSharedPath(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	a, err := listenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := listenUnix(sock, 0o600); err == nil {
		l.Close()
		t.Fatal("a second listener took the socket of a live one")
	} else if !strings.Contains(err.Error(), "another server is listening") {
		t.Fatalf("second listener: %v", err)
	}
	// A stale socket: bound, then its listener gone without removing it.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	l, err := listenUnix(stale, 0o600)
	if err != nil {
		t.Fatalf("stale socket not taken over: %v", err)
	}
	l.Close()
	// An operator moves the first server's socket away and starts another
	// server at the path; the first one then closes.
	if err := os.Rename(sock, sock+".old"); err != nil {
		t.Fatal(err)
	}
	b, err := listenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("closing the old listener removed the new server's socket: %v", err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the new server's socket does not answer: %v", err)
	}
	c.Close()
	if _, err := os.Lstat(sock + ".old"); err != nil {
		t.Errorf("the old listener's own socket, moved: %v", err)
	}
}

// TestListenUnixSharedDirectory: serve does not listen in a directory
// other users can write to (/tmp), where any of them could take the path
// while it is down; clients refuse to send a token there anyway.
func TestListenUnixSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	if l, err := listenUnix(sock, 0o600); err == nil {
		l.Close()
		t.Fatal("listened in a world-writable directory")
	} else if !strings.Contains(err.Error(), "can be written by other users (mode 1777)") {
		t.Fatalf("listen in a world-writable directory: %v", err)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("a socket was left at the path")
	}
}

// TestServeStopLeavesOthersSocket: a server that stops removes its socket
// only while the path still names it. An operator who moved it away and
// started another server at the path keeps the new server reachable.
func TestServeStopLeavesOthersSocket(t *testing.T) {
	c := newCompCLI(t)
	c.must("operator", "init")
	sock := filepath.Join(t.TempDir(), "lessor.sock")
	stop, logs := startServe(t, c, "-listen=", "-unix="+sock, "-reap-interval=0")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Lstat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket at %s; log:\n%s", sock, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Rename(sock, sock+".old"); err != nil {
		t.Fatal(err)
	}
	other, err := listenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, logs)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("stopping the first server removed the second one's socket: %v", err)
	}
	conn.Close()
}

// TestServeSIGHUPWhileStarting: a reload signal that arrives while serve
// is still opening its store (here, waiting for another process's lock on
// the file) does not kill it; once the lock is free it serves, and stops
// with exit 0.
func TestServeSIGHUPWhileStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildLessor(t)
	c := newCompCLI(t)
	c.must("operator", "init")
	store := filepath.Join(c.env["HOME"], ".local", "share", "lessor", "lessor.db")
	lock, err := os.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd, exited, logs := serveProcess(t, bin, c.env["HOME"], "-listen="+addr, "-reap-interval=0")
	// Started, and waiting for the lock: by then it catches SIGHUP. (A
	// fixed pause let a SIGHUP reach a process still starting on a
	// loaded machine, which it killed before serve could catch it.)
	waitFlockWaiter(t, cmd.Process.Pid, exited, logs)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("serve exited on SIGHUP while it opened the store: %v\n%s", err, logs.String())
	case <-time.After(500 * time.Millisecond):
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	waitHealthy(t, http.DefaultClient, "http://"+addr)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
}

// waitFlockWaiter waits until process pid waits for a file lock, as
// /proc/locks shows it ("->" before a blocked request).
func waitFlockWaiter(t *testing.T, pid int, exited <-chan error, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Skipf("cannot tell when serve waits for the lock: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[1] == "->" && f[2] == "FLOCK" && f[5] == strconv.Itoa(pid) {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("serve exited before it waited for the lock: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not wait for the store's lock in 60 s; log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeTLSKeyMode: a TLS private key that other users may read, or
// its group change, is refused, at start and on reload (which keeps the
// certificate in service); one its group may only read is accepted.
func TestServeTLSKeyMode(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSignedCert(t, certFile, keyFile)
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, true}, {0o644, false}, {0o660, false}, {0o604, false}, {0o400, true}} {
		if err := os.Chmod(keyFile, c.mode); err != nil {
			t.Fatal(err)
		}
		err := r.load()
		if (err == nil) != c.ok {
			t.Errorf("key mode %04o: %v", c.mode, err)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("TLS key %s has mode %04o", keyFile, c.mode)) {
			t.Errorf("key mode %04o: %v", c.mode, err)
		}
	}
}

// storeInit is what operator init -format=json tells a test.
type storeInit struct {
	Root    string `json:"root_token"`
	StoreID string `json:"store_id"`
}

// storeWithConnection makes a store (newCompCLI's) with the database
// engine at database/ and a connection "postgresql" to db as srv's user,
// allowing the roles allowed; extra are more fields of the connection's
// write. The CLI then uses the root token.
func storeWithConnection(t *testing.T, srv *pgtest.Server, db *pgtest.Database, allowed string, extra ...string) (*compCLI, storeInit) {
	t.Helper()
	c := newCompCLI(t)
	var ini storeInit
	if err := json.Unmarshal([]byte(c.must("operator", "init", "-format=json")), &ini); err != nil {
		t.Fatal(err)
	}
	c.env["LESSOR_TOKEN"] = ini.Root
	c.must("secrets", "enable", "database")
	pw := c.file("admin-pw", srv.Password)
	c.must(append([]string{"write", "database/config/postgresql", "plugin_name=postgresql-database-plugin", "allowed_roles=" + allowed,
		fmt.Sprintf("connection_url=postgresql://{{username}}:{{password}}@%s:%d/%s?sslmode=disable", srv.Host, srv.Port, db.Name),
		"username=" + srv.User, "password=@" + pw}, extra...)...)
	return c, ini
}
