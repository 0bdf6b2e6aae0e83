package pgtest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { Main(m) }

// A login test proves something only if the server checks passwords.
func TestTCPRefusesWrongPassword(t *testing.T) {
	s := Require(t)
	ctx := context.Background()
	if err := s.CanLogin(ctx, s.User, s.Password, "postgres"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	err := s.CanLogin(ctx, s.User, "not-"+s.Password, "postgres")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01 (invalid_password)", err)
	}
	err = s.CanLogin(ctx, s.User, "", "postgres")
	if err == nil {
		t.Fatal("empty password accepted")
	}
	// Password authentication must be SCRAM, so a verifier stored by lessor
	// is what the server checks.
	conn := s.Connect(t, s.User, s.Password, "postgres")
	var enc string
	if err := conn.QueryRow(ctx, "SHOW password_encryption").Scan(&enc); err != nil {
		t.Fatal(err)
	}
	if enc != "scram-sha-256" {
		t.Errorf("password_encryption = %q, want scram-sha-256", enc)
	}
}

func TestNewDatabaseIsFreshAndDropped(t *testing.T) {
	s := Require(t)
	ctx := context.Background()
	var name string
	t.Run("inner", func(t *testing.T) {
		d := s.NewDatabase(t)
		name = d.Name
		if !strings.HasPrefix(d.Name, "lessor_testnewdatabaseisfreshanddropped") {
			t.Errorf("name %q does not say which test made it", d.Name)
		}
		if want := s.URL(d.Name); d.URL != want || !strings.HasSuffix(d.URL, "/"+d.Name+"?sslmode=disable") {
			t.Errorf("URL = %q, want %q ending in /%s?sslmode=disable", d.URL, want, d.Name)
		}
		conn := d.Conn(t)
		var cur string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&cur); err != nil {
			t.Fatal(err)
		}
		if cur != d.Name {
			t.Errorf("current_database() = %q, want %q", cur, d.Name)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("fresh database has %d tables", tables)
		}
		// The URL itself works with pgx.
		c2, err := pgx.Connect(ctx, d.URL)
		if err != nil {
			t.Fatalf("connect with URL: %v", err)
		}
		c2.Close(ctx)
		// A session left open must not stop the drop.
		_ = s.Connect(t, s.User, s.Password, d.Name)
	})
	conn := s.Connect(t, s.User, s.Password, "postgres")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestDropRolesAtCleanup(t *testing.T) {
	s := Require(t)
	ctx := context.Background()
	role := "pgtest_owner_" + randomHex(4)
	t.Run("inner", func(t *testing.T) {
		d := s.NewDatabase(t)
		s.DropRolesAtCleanup(t, role)
		conn := d.Conn(t)
		for _, q := range []string{
			`CREATE ROLE "` + role + `" LOGIN PASSWORD 'pw-1-Aa'`,
			`GRANT CREATE ON SCHEMA public TO "` + role + `"`,
			`SET ROLE "` + role + `"`,
			`CREATE TABLE owned (id int)`,
			`RESET ROLE`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := s.CanLogin(ctx, role, "pw-1-Aa", d.Name); err != nil {
			t.Fatalf("role cannot log in: %v", err)
		}
		_ = s.Connect(t, role, "pw-1-Aa", d.Name) // still open at cleanup
	})
	conn := s.Connect(t, s.User, s.Password, "postgres")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("role %s still exists after cleanup", role)
	}
}

func TestUniqueName(t *testing.T) {
	a, b := uniqueName("TestX/sub case"), uniqueName("TestX/sub case")
	if a == b {
		t.Errorf("two names alike: %s", a)
	}
	if !strings.HasPrefix(a, "lessor_testx_sub_case_") || len(a) != len("lessor_testx_sub_case_")+8 {
		t.Errorf("name %q", a)
	}
	long := uniqueName(strings.Repeat("Ü", 100))
	if len(long) > 63 {
		t.Errorf("name %q is %d bytes", long, len(long))
	}
}
