package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/lessorhq/lessor/pkg/pgtest"
)

// TestPostgresStoreIgnoresHostileSearchPath: the owner of the database that
// holds the store (who has no access to the store's schema) puts public
// before pg_catalog in the database's search_path and plants operators
// there. None of them may run in a store session, where they would run as
// the store's role and could rewrite its tables.
func TestPostgresStoreIgnoresHostileSearchPath(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Require(t)
	db := srv.NewDatabase(t)
	suffix := make([]byte, 4)
	rand.Read(suffix)
	store, owner := "lessor_sp_store_"+hex.EncodeToString(suffix), "lessor_sp_owner_"+hex.EncodeToString(suffix)
	srv.DropRolesAtCleanup(t, store, owner)
	// Runs first: the owner's database would keep it from being dropped.
	t.Cleanup(func() { db.Exec(t, `ALTER DATABASE `+db.Name+` OWNER TO CURRENT_USER`) })
	db.Exec(t, `CREATE ROLE `+store+` LOGIN PASSWORD 'storepw'; CREATE ROLE `+owner+`;
		ALTER DATABASE `+db.Name+` OWNER TO `+owner+`;
		CREATE SCHEMA lessor AUTHORIZATION `+store+`;
		CREATE SCHEMA other AUTHORIZATION `+store)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(store, "storepw")
	storeURL := u.String()
	p, err := CreatePostgres(ctx, storeURL, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(ctx, func(tx Tx) error { return tx.Put("a", []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	p.Close()

	// The owner of the database (public belongs to it) plants operators
	// for every type the store's SQL compares, each recording who ran it.
	db.ExecAs(t, owner, `CREATE TABLE public.ran (who text);
		GRANT INSERT ON public.ran TO PUBLIC;
		CREATE FUNCTION public.ran_note() RETURNS void LANGUAGE plpgsql AS
			$$BEGIN INSERT INTO public.ran VALUES (current_user);
			EXCEPTION WHEN read_only_sql_transaction THEN RAISE EXCEPTION 'planted operator ran as %', current_user; END$$;
		CREATE FUNCTION public.ran_int(int, int) RETURNS bool LANGUAGE plpgsql AS
			$$BEGIN PERFORM public.ran_note(); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
		CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.ran_int);
		CREATE FUNCTION public.ran_bytea(bytea, bytea) RETURNS bool LANGUAGE plpgsql AS
			$$BEGIN PERFORM public.ran_note(); RETURN true; END$$;
		CREATE OPERATOR public.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.ran_bytea);
		CREATE OPERATOR public.>= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.ran_bytea);
		CREATE OPERATOR public.> (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.ran_bytea);
		CREATE OPERATOR public.< (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.ran_bytea);
		CREATE FUNCTION public.ran_name(name, text) RETURNS bool LANGUAGE plpgsql AS
			$$BEGIN PERFORM public.ran_note(); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
		CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.ran_name);
		ALTER DATABASE `+db.Name+` SET search_path = public, pg_catalog`)

	p, err = OpenPostgres(ctx, storeURL, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Update(ctx, func(tx Tx) error {
		if _, err := tx.Get("a"); err != nil {
			return err
		}
		if _, err := tx.List(""); err != nil {
			return err
		}
		if err := tx.Delete("a"); err != nil {
			return err
		}
		return tx.Put("b", []byte("2"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.View(ctx, func(tx Tx) error {
		if _, err := tx.Get("b"); err != nil {
			return err
		}
		if _, err := tx.(ManyGetter).GetMany([]string{"a", "b"}); err != nil {
			return err
		}
		_, _, err := tx.(PrefixGetter).GetPrefix("b")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Rewrite(ctx, func(src, dst Tx) error {
		v, err := src.Get("b")
		if err != nil {
			return err
		}
		return dst.Put("b", v)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := UpgradePostgres(ctx, storeURL, PostgresOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := CreatePostgres(ctx, storeURL+"&schema=other", PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()

	var n int
	var who string
	if err := db.Conn(t).QueryRow(ctx, `SELECT pg_catalog.count(*), COALESCE(pg_catalog.min(who), '') FROM public.ran`).Scan(&n, &who); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("planted operators ran %d times in store sessions (as %s)", n, who)
	}
}
