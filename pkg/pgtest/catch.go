package pgtest

import (
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// CatchPasswords starts a PostgreSQL server on a loopback port that
// refuses TLS and asks every client for its password in clear text, as
// a server an attacker runs (or one between a client and its database)
// would; it hands back what it was given. It stops when the test ends.
func CatchPasswords(t testing.TB) (addr string, got <-chan string) {
	t.Helper()
	return CatchPasswordsOn(t, "tcp", "127.0.0.1:0")
}

// CatchPasswordsOn is CatchPasswords listening on network's address (a
// Unix socket, say: one another local user put where a server's would
// be).
func CatchPasswordsOn(t testing.TB, network, address string) (addr string, got <-chan string) {
	t.Helper()
	ln, err := net.Listen(network, address)
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
			be := pgproto3.NewBackend(c, c)
			m, err := be.ReceiveStartupMessage()
			if _, ok := m.(*pgproto3.SSLRequest); ok && err == nil {
				// No TLS here: the client goes on in plain TCP, or leaves.
				if _, err = c.Write([]byte("N")); err == nil {
					_, err = be.ReceiveStartupMessage()
				}
			}
			if err == nil {
				be.Send(&pgproto3.AuthenticationCleartextPassword{})
				be.Flush()
				be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
				if m, err := be.Receive(); err == nil {
					if p, ok := m.(*pgproto3.PasswordMessage); ok {
						select {
						case ch <- p.Password:
						default:
						}
					}
				}
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), ch
}

// Sent returns the password the server was sent by now, if it was sent
// one, without waiting.
func Sent(got <-chan string) (string, bool) {
	select {
	case p := <-got:
		return p, true
	default:
		return "", false
	}
}

// LetAnyoneIn listens as a server that lets every client in without
// asking it for anything, as pg_hba's peer, ident or trust do, and then
// answers nothing but ReadyForQuery.
func LetAnyoneIn(t testing.TB) string {
	t.Helper()
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
			be := pgproto3.NewBackend(c, c)
			if _, err := be.ReceiveStartupMessage(); err == nil {
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "17.0"})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				be.Flush()
				be.Receive()
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
