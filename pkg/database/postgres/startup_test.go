package postgres

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lessorhq/lessor/pkg/pgtest"
	"github.com/lessorhq/lessor/pkg/pgurl"
)

// startupProxy passes each connection on to the server at target. With
// old set it answers as PostgreSQL 13 does a startup packet that asks
// for idle_session_timeout: it refuses the connection. While down is set
// it closes every connection at once, as a server that is down.
func startupProxy(t *testing.T, target string, old bool) (addr string, down *atomic.Bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	down = new(atomic.Bool)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if down.Load() {
					return
				}
				be := pgproto3.NewBackend(c, c)
				m, err := be.ReceiveStartupMessage()
				sm, ok := m.(*pgproto3.StartupMessage)
				if err != nil || !ok {
					return
				}
				if _, asked := sm.Parameters["idle_session_timeout"]; asked && old {
					be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "42704",
						Message: `unrecognized configuration parameter "idle_session_timeout"`})
					be.Flush()
					return
				}
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				buf, err := sm.Encode(nil)
				if err != nil {
					return
				}
				if _, err := s.Write(buf); err != nil {
					return
				}
				go io.Copy(s, c)
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String(), down
}

// TestStartupSettingRefusedPerHost: of the hosts a connection string
// lists, a PostgreSQL 13 one refuses idle_session_timeout in the startup
// packet and a newer one needs it (a database default of its owner's
// would end the admin's sessions). The refusal was remembered for the
// first host listed, whichever refused: while a newer primary was down,
// its 13 standby's refusal kept the setting from it for good after.
func TestStartupSettingRefusedPerHost(t *testing.T) {
	s := pgtest.Require(t)
	d := s.NewDatabase(t)
	if pgurl.ServerVersionNum(d.Conn(t).PgConn()) < 140000 {
		t.Skip("idle_session_timeout is PostgreSQL 14's")
	}
	admin(t, d, "ALTER DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" SET idle_session_timeout = '1h'")
	target := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	primary, down := startupProxy(t, target, false)
	standby, _ := startupProxy(t, target, true)
	cfg := Config{
		ConnectionURL: fmt.Sprintf("postgres://{{username}}:{{password}}@%s,%s/%s?sslmode=disable", primary, standby, d.Name),
		Username:      s.User, Password: s.Password,
	}
	session := func() (server, timeout string) {
		t.Helper()
		db := connect(t, cfg)
		defer db.Close(context.Background())
		if err := db.conn.QueryRow(context.Background(), "SHOW idle_session_timeout").Scan(&timeout); err != nil {
			t.Fatal(err)
		}
		return db.conn.PgConn().Conn().RemoteAddr().String(), timeout
	}
	down.Store(true)
	if server, timeout := session(); server != standby || timeout != "1h" {
		t.Fatalf("with the primary down: %s, idle_session_timeout %s", server, timeout)
	}
	down.Store(false)
	if server, timeout := session(); server != primary || timeout != "0" {
		t.Fatalf("with the primary back: %s, idle_session_timeout %s", server, timeout)
	}
	down.Store(true)
	if server, timeout := session(); server != standby || timeout != "1h" {
		t.Fatalf("with the primary down again: %s, idle_session_timeout %s", server, timeout)
	}
}
