package postgres

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/pgurl"
)

// selfSigned makes a certificate for name and its key, in PEM.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// askForClientCerts listens as a server that takes TLS and asks every
// client for its certificate; it sends the common names it is offered.
func askForClientCerts(t *testing.T) (addr string, offered <-chan string) {
	t.Helper()
	cert, key := selfSigned(t, "server")
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m, err := pgproto3.NewBackend(c, c).ReceiveStartupMessage()
			if _, ok := m.(*pgproto3.SSLRequest); ok && err == nil {
				if _, err := c.Write([]byte("S")); err == nil {
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert})
					if tc.Handshake() == nil {
						for _, pc := range tc.ConnectionState().PeerCertificates {
							ch <- pc.Subject.CommonName
						}
					}
				}
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), ch
}

// TestNoDefaultClientCertificate: the driver offered the account's
// ~/.postgresql/postgresql.crt (signing with its key) to any server that
// asked, whichever server a config named: a config writer's own learnt
// the account's certificate. It is offered only where a config of the
// account's names it; a confined config (written through serve or sudo)
// offers none.
func TestNoDefaultClientCertificate(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, e := range []string{"PGSSLCERT", "PGSSLKEY", "PGSSLCERTMODE", "PGSERVICE"} {
		t.Setenv(e, "")
		os.Unsetenv(e)
	}
	dir := filepath.Join(home, ".postgresql")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, "the-account")
	crt, keyFile := filepath.Join(dir, "postgresql.crt"), filepath.Join(dir, "postgresql.key")
	if os.WriteFile(crt, cert, 0o600) != nil || os.WriteFile(keyFile, key, 0o600) != nil {
		t.Fatal("write the account's client certificate")
	}
	addr, offered := askForClientCerts(t)
	for _, c := range []struct {
		name     string
		url      string
		confined bool
		want     string
	}{
		{"the account's config", "postgres://admin@" + addr + "/x?sslmode=require", false, ""},
		{"the account's keyword config", "host=127.0.0.1 port=" + portOf(addr) + " user=admin dbname=x sslmode=require", false, ""},
		{"a confined config", "postgres://admin@" + addr + "/x?sslmode=require", true, ""},
		{"the account's config naming it", "postgres://admin@" + addr + "/x?sslmode=require&sslcert=" + crt + "&sslkey=" + keyFile, false, "the-account"},
	} {
		cfg := Config{ConnectionURL: c.url, Password: "the-writers", ConnectTimeout: 5 * time.Second, Confined: c.confined}
		if db, err := Connect(context.Background(), cfg); err == nil {
			db.Close(context.Background())
			t.Fatalf("%s: connected", c.name)
		}
		got := ""
		select {
		case got = <-offered:
		default:
		}
		if got != c.want {
			t.Errorf("%s: offered %q, want %q", c.name, got, c.want)
		}
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestConfineKeepsWhatTheStringSets: a confined config gets its own
// settings as it wrote them, and the driver's defaults for the rest,
// whatever the environment says.
func TestConfineKeepsWhatTheStringSets(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	for e, v := range map[string]string{"PGHOST": "ambient.example", "PGPORT": "1111", "PGUSER": "ambient", "PGDATABASE": "ambientdb",
		"PGPASSWORD": "ambient-password", "PGAPPNAME": "ambient-app", "PGOPTIONS": "-c role=ambient", "PGTZ": "Asia/Tokyo",
		"PGCONNECT_TIMEOUT": "77", "PGTARGETSESSIONATTRS": "read-only", "PGSSLMODE": "verify-full", "PGREQUIREAUTH": "md5"} {
		t.Setenv(e, v)
	}
	for _, c := range []struct {
		url                     string
		host, user, db, appname string
		port                    uint16
	}{
		{"postgres://u@h:5433/d?application_name=a&sslmode=disable", "h", "u", "d", "a", 5433},
		{"postgres:///?sslmode=disable", defaultHost(), "", "", "lessor", 5432},
		{"postgres://h?sslmode=disable&", "h", "", "", "lessor", 5432},
		{"host=h port=5433 user=u dbname=d sslmode=disable", "h", "u", "d", "", 5433},
		{"sslmode=disable", defaultHost(), "", "", "", 5432},
		{"user='' sslmode=disable", defaultHost(), "", "", "", 5432},
		{"postgres://@h/?sslmode=disable", "h", "", "", "lessor", 5432},
		{"postgres://h/?ssl=true", "h", "", "", "lessor", 5432},
	} {
		cc, err := Config{ConnectionURL: c.url, Confined: true}.connConfig("")
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if cc.User == "" {
			cc.User = "" // the OS user's name, as the driver has it
		}
		if cc.Host != c.host || cc.Port != c.port || cc.Database != c.db || cc.Password != "" ||
			cc.RuntimeParams["application_name"] != c.appname || cc.RuntimeParams["options"] != "" ||
			cc.ValidateConnect != nil || cc.RequireAuth == "md5" || (cc.TLSConfig != nil) != strings.Contains(c.url, "ssl=true") ||
			cc.TLSConfig != nil && len(cc.Fallbacks) > 0 {
			t.Errorf("%s: host %q port %d db %q password %q app %q options %q tls %v require_auth %q",
				c.url, cc.Host, cc.Port, cc.Database, cc.Password, cc.RuntimeParams["application_name"], cc.RuntimeParams["options"], cc.TLSConfig != nil, cc.RequireAuth)
		}
		if c.user != "" && cc.User != c.user || cc.User == "ambient" {
			t.Errorf("%s: user %q", c.url, cc.User)
		}
		if tz, ok := cc.RuntimeParams["timezone"]; ok && tz != "UTC" {
			t.Errorf("%s: timezone %q", c.url, tz)
		}
	}
}

// TestConfineRefusesWhatItCannotRead: a string that lessor's parser
// cannot read (a ';' in a URL's query, which the driver takes as part of
// a value) would have lessor set nothing, and the driver take the rest
// from the environment.
func TestConfineRefusesWhatItCannotRead(t *testing.T) {
	t.Setenv("PGUSER", "ambient")
	_, err := Config{ConnectionURL: "postgres://h/d?application_name=a;b&sslmode=disable", Confined: true}.connConfig("")
	if err == nil || err.Error() != "unable to parse connection url (a postgres:// URL): lessor cannot tell which parameters it sets" {
		t.Fatal(err)
	}
}

// TestConfinedNeedsAuthentication: a server that asks for nothing (peer,
// ident: the OS user lessor runs as vouches for the login named like
// it) let a config written through serve or sudo in as the account's own
// database role, whatever password its writer gave. A confined config
// logs in only where the server asks for its password; the account's own
// config still may.
func TestConfinedNeedsAuthentication(t *testing.T) {
	addr := pgtest.LetAnyoneIn(t)
	url := "postgres://the-accounts-role@" + addr + "/x?sslmode=disable"
	for _, c := range []struct {
		url      string
		confined bool
		want     string
	}{
		{url, false, ""},
		{url, true, NoAuthHint},
		{url + "&require_auth=!password", true, NoAuthHint},
		{url + "&require_auth=!md5,!none", true, NoAuthHint},
		{url + "&require_auth=scram-sha-256", true, "server did not complete authentication"},
		{url + "&require_auth=scram-sha-256,none", true, "require_auth may not allow none"},
	} {
		db, err := Connect(context.Background(), Config{ConnectionURL: c.url, Password: "any", Confined: c.confined, ConnectTimeout: 5 * time.Second})
		if err == nil {
			db.Close(context.Background())
		}
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s (confined %v): %v, want %q", c.url, c.confined, err, c.want)
		}
	}
}

// TestServerMessageBounded: a server (one a config writer named) that
// announced a message of a GiB had lessor set aside a GiB and read on
// until the connect timeout; the connection is refused at the header.
func TestServerMessageBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := pgproto3.NewBackend(c, c).ReceiveStartupMessage(); err == nil {
				// An ErrorResponse said to be 1 GiB long, and a little of it.
				c.Write(append([]byte{'E', 0x3f, 0xff, 0xff, 0xf0}, make([]byte, 4096)...))
				buf := make([]byte, 1)
				c.Read(buf) // until the client leaves
			}
			c.Close()
		}
	}()
	_, err = Connect(context.Background(), Config{ConnectionURL: "postgres://u@" + ln.Addr().String() + "/x?sslmode=disable", Password: "any", ConnectTimeout: 3 * time.Second})
	var big *pgproto3.ExceededMaxBodyLenErr
	if !errors.As(err, &big) {
		t.Fatalf("%v, want the message refused for its length", err)
	}
}

// TestConfineReadsTheStringAsTheDriver: where lessor's parsers and the
// driver's differ on where a URL's query begins, or on whether a string
// is a URL at all, confine set what the driver did not read, and the
// driver took the account's PGPASSWORD (or ~/.pgpass) and PGUSER to a
// host the config's writer named. Each such string is refused or read as
// the driver reads it.
func TestConfineReadsTheStringAsTheDriver(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PGPASSWORD", "ambient-password")
	t.Setenv("PGUSER", "ambient")
	t.Setenv("PGDATABASE", "ambientdb")
	for _, url := range []string{
		"postgres://[x?password=y],elsewhere.example:5432/db",
		"postgres://u@[x?user=z],elsewhere.example:5432/db",
		"postgres://[x/y]:5432,elsewhere.example/",
		" postgres://x?a=b host=elsewhere.example c=",
		"\u00a0postgres://x?a=b host=elsewhere.example c=",
		"\rpostgres://x?password=b host=elsewhere.example c=",
		"Postgres://x?password=b host=elsewhere.example c=",
		"postgres:x?password=b host=elsewhere.example c=",
		"postgresql:x?password=b host=elsewhere.example c=",
	} {
		cc, err := Config{ConnectionURL: url, Confined: true}.connConfig("")
		if err != nil {
			continue
		}
		if cc.Password == "ambient-password" || cc.User == "ambient" || cc.Database == "ambientdb" || strings.Contains(cc.Database, "&") {
			t.Errorf("%q: host %q user %q password %q database %q", url, cc.Host, cc.User, cc.Password, cc.Database)
		}
	}
	// What the driver reads as a URL still is one, IPv6 hosts included.
	for _, url := range []string{" postgres://u@h/d?sslmode=disable", "postgres://u@[::1],[fe80::1%25eth0]:5433/d?sslmode=disable"} {
		cc, err := Config{ConnectionURL: url, Confined: true}.connConfig("")
		if err != nil || cc.User != "u" || cc.Database != "d" || cc.Password != "" {
			t.Errorf("%q: %v", url, err)
		}
	}
}

// TestConfinedCAFileBounded: a confined connection could name as
// sslrootcert a file of the account's that says it holds nothing and
// reads out without end (/proc/self/pagemap: 256 GiB of the process's
// own, at gigabytes a second), which the driver reads whole at every
// connection, until lessor serve ran out of memory. Such a file, and a
// large one, is refused before the driver reads it.
func TestConfinedCAFileBounded(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(big, make([]byte, 4<<20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{"/proc/self/pagemap", "/proc/self/environ", big} {
		// Checked first, alone: without it, connConfig would read the file.
		if pgurl.FileOnlyHereChanges(ca) {
			t.Fatalf("%s is taken for a CA file", ca)
		}
		_, err := Config{ConnectionURL: "postgres://h/d?sslmode=verify-full&sslrootcert=" + ca, Confined: true}.connConfig("")
		if err == nil || !strings.Contains(err.Error(), "4 MiB at most") {
			t.Errorf("%s: %v", ca, err)
		}
	}
	ok := filepath.Join(t.TempDir(), "ca.pem")
	cert, _ := selfSigned(t, "ca")
	if err := os.WriteFile(ok, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (Config{ConnectionURL: "postgres://h/d?sslmode=verify-full&sslrootcert=" + ok, Confined: true}).connConfig(""); err != nil {
		t.Errorf("a CA file of the account's: %v", err)
	}
}
