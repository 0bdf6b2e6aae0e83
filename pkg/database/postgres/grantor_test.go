package postgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestLeastPrivilegeColumnGrantFromTableGrantOption: a credential holding
// SELECT on a table WITH GRANT OPTION hands a column of it on to another
// role. Its revocation must take that too: a REVOKE … CASCADE of the
// table privilege follows the grants made from it in the table's ACL but
// not in its columns', and DROP ROLE leaves them, with a dangling
// grantor, so the other role kept reading the column after the lease
// ended.
func TestLeastPrivilegeColumnGrantFromTableGrantOption(t *testing.T) {
	bothKinds(t, func(t *testing.T, f *lpFixture) {
		f.d.Exec(t, `ALTER TABLE accounts ADD COLUMN secret text`)
		friend := newName(t, "v-friend")
		f.s.DropRolesAtCleanup(t, friend)
		fr := pgx.Identifier{friend}.Sanitize()
		f.d.Exec(t, `CREATE ROLE `+fr+` NOLOGIN`)
		name, pw := f.issue(t, "v-colgo", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT, UPDATE ON accounts TO "{{name}}" WITH GRANT OPTION`)
		c := f.s.Connect(t, name, pw, f.d.Name)
		if _, err := c.Exec(f.ctx, `GRANT SELECT (secret), UPDATE (secret) ON accounts TO `+fr+`, PUBLIC`); err != nil {
			t.Fatal(err)
		}
		c.Close(f.ctx)
		f.revoke(t, name)
		f.gone(t, name)
		var friendReads, publicReads bool
		if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT has_any_column_privilege($1, 'accounts', 'SELECT, UPDATE'),
  EXISTS (SELECT FROM pg_attribute, aclexplode(attacl) a WHERE attrelid = 'accounts'::regclass AND a.grantee = 0)`, friend).Scan(&friendReads, &publicReads); err != nil {
			t.Fatal(err)
		}
		if friendReads || publicReads {
			t.Errorf("column privileges the credential passed on outlived it: to %s %v, to PUBLIC %v", friend, friendReads, publicReads)
		}
	})
}

// TestRevokeAsGrantorWithSchemaOfItsName: a grantor that may create a
// schema named after itself, with a table of the name of the one it
// granted, must not divert the revocation that acts as it ("$user" in the
// search_path follows SET ROLE) to its own table: the grant it made would
// stay, and the role that holds it could not be dropped.
func TestRevokeAsGrantorWithSchemaOfItsName(t *testing.T) {
	f := setup(t)
	holder := newName(t, "v-holder")
	f.create(t, holder, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`})
	grantor := newName(t, "v-grantor")
	pw := f.create(t, grantor, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}';
GRANT SELECT ON items TO "{{name}}" WITH GRANT OPTION; GRANT CREATE ON DATABASE ` + pgx.Identifier{f.d.Name}.Sanitize() + ` TO "{{name}}"`})
	c := f.s.Connect(t, grantor, pw, f.d.Name)
	if _, err := c.Exec(f.ctx, `CREATE SCHEMA `+pgx.Identifier{grantor}.Sanitize()+`; CREATE TABLE `+pgx.Identifier{grantor, "items"}.Sanitize()+` (id int);
GRANT SELECT ON public.items TO `+pgx.Identifier{holder}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	c.Close(f.ctx)
	f.revoke(t, holder)
	var held bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT EXISTS (SELECT FROM pg_class, aclexplode(relacl) a WHERE oid = 'public.items'::regclass AND a.grantee NOT IN (SELECT oid FROM pg_roles) AND a.grantee <> 0)`).Scan(&held); err != nil || held {
		t.Errorf("a grant to the dropped holder is left on public.items (%v)", err)
	}
}

// TestStuckRoleKeepsNoOtherPrivileges: a role left in place (a view of
// another login's depends on its function) loses its privileges on a
// large object, a domain, a foreign server and its wrapper, a language
// and a tablespace as it loses its table grants: only DROP OWNED took
// them, which it does not go through, and a large object is data its
// SECURITY DEFINER functions would go on reading for whoever calls them.
func TestStuckRoleKeepsNoOtherPrivileges(t *testing.T) {
	f := setup(t)
	suffix := newName(t, "x")
	fdw, srv := pgx.Identifier{"fdw-" + suffix}.Sanitize(), pgx.Identifier{"srv-" + suffix}.Sanitize()
	admin(t, f.d, `CREATE DOMAIN public.score AS int; CREATE FOREIGN DATA WRAPPER `+fdw+`; CREATE SERVER `+srv+` FOREIGN DATA WRAPPER `+fdw)
	var lo uint32
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT lo_from_bytea(0, 'secret')`).Scan(&lo); err != nil {
		t.Fatal(err)
	}
	cred := newName(t, "v-others")
	pw := f.create(t, cred, []string{fmt.Sprintf(`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}";
GRANT SELECT ON LARGE OBJECT %d TO "{{name}}"; GRANT USAGE ON DOMAIN public.score TO "{{name}}"; GRANT USAGE ON FOREIGN SERVER %s TO "{{name}}";
GRANT USAGE ON FOREIGN DATA WRAPPER %s TO "{{name}}"; GRANT USAGE ON LANGUAGE plpgsql TO "{{name}}"; GRANT CREATE ON TABLESPACE pg_default TO "{{name}}"`, lo, srv, fdw)})
	c := f.s.Connect(t, cred, pw, f.d.Name)
	if _, err := c.Exec(f.ctx, fmt.Sprintf(`CREATE FUNCTION public.leak() RETURNS bytea LANGUAGE sql SECURITY DEFINER AS 'SELECT lo_get(%d)'`, lo)); err != nil {
		t.Fatal(err)
	}
	c.Close(f.ctx)
	keeper := newName(t, "v-keeper")
	kpw := f.create(t, keeper, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`})
	k := f.s.Connect(t, keeper, kpw, f.d.Name)
	defer k.Close(f.ctx)
	if _, err := k.Exec(f.ctx, `CREATE TEMP VIEW hold AS SELECT public.leak()`); err != nil {
		t.Fatal(err)
	}
	if err := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: cred}})[0]; err == nil {
		t.Fatal("revocation succeeded although a view depends on the role's function")
	}
	var data []byte
	if err := k.QueryRow(f.ctx, `SELECT public.leak()`).Scan(&data); err == nil {
		t.Errorf("after its revocation failed, the role's function still reads the large object (%q)", data)
	}
	var left []string
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT coalesce(array_agg(k), '{}') FROM (
  SELECT 'large object' AS k FROM pg_largeobject_metadata, aclexplode(lomacl) a WHERE a.grantee = $1::regrole
  UNION ALL SELECT 'domain' FROM pg_type, aclexplode(typacl) a WHERE a.grantee = $1::regrole
  UNION ALL SELECT 'server' FROM pg_foreign_server, aclexplode(srvacl) a WHERE a.grantee = $1::regrole
  UNION ALL SELECT 'wrapper' FROM pg_foreign_data_wrapper, aclexplode(fdwacl) a WHERE a.grantee = $1::regrole
  UNION ALL SELECT 'language' FROM pg_language, aclexplode(lanacl) a WHERE a.grantee = $1::regrole
  UNION ALL SELECT 'tablespace' FROM pg_tablespace, aclexplode(spcacl) a WHERE a.grantee = $1::regrole) x`, pgx.Identifier{cred}.Sanitize()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the role left in place keeps its privileges on: %v", left)
	}
	k.Close(f.ctx)
	f.revoke(t, cred)
}

// TestColumnGrantOutOfReachLeavesNoOtherPrivilege: a credential passed a
// column on from a grant option it holds on a table of a schema that
// another login of its holder's owns, which then takes back the
// credential's USAGE on the schema: only the credential can take the
// column grant back, and acting as it no longer reaches the table. The
// revocation fails for that role, which stays, but the privileges the
// admin granted it go, where the failed statement took back with it the
// REVOKEs made with it, and the role's SECURITY DEFINER functions went on
// reading the app's table for whoever called them. With USAGE back, a
// later revocation takes the column grant too.
func TestColumnGrantOutOfReachLeavesNoOtherPrivilege(t *testing.T) {
	f := setup(t)
	holder, friend := newName(t, "v-holder"), newName(t, "v-friend")
	f.s.DropRolesAtCleanup(t, holder, friend)
	h, fr := pgx.Identifier{holder}.Sanitize(), pgx.Identifier{friend}.Sanitize()
	admin(t, f.d, `CREATE ROLE `+h+` NOLOGIN; CREATE ROLE `+fr+` NOLOGIN; CREATE SCHEMA hs AUTHORIZATION `+h+`; CREATE TABLE hs.t (a int, b int); ALTER TABLE hs.t OWNER TO `+h)
	name := newName(t, "v-reach")
	pw := f.create(t, name, []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON items TO "{{name}}"`})
	id := pgx.Identifier{name}.Sanitize()
	f.d.ExecAs(t, holder, `GRANT USAGE ON SCHEMA hs TO `+id+`; GRANT SELECT ON hs.t TO `+id+` WITH GRANT OPTION`)
	c := f.s.Connect(t, name, pw, f.d.Name)
	if _, err := c.Exec(f.ctx, `GRANT SELECT (b) ON hs.t TO `+fr); err != nil {
		t.Fatal(err)
	}
	c.Close(f.ctx)
	f.d.ExecAs(t, holder, `REVOKE USAGE ON SCHEMA hs FROM `+id)

	err := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0]
	if err == nil {
		t.Fatal("revocation succeeded although the role cannot reach the column grant it made")
	}
	if !strings.Contains(err.Error(), "columns b of table hs.t") {
		t.Errorf("revoke = %v, want an error naming the column grant out of reach", err)
	}
	var items bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT has_table_privilege($1, 'items', 'SELECT')`, name).Scan(&items); err != nil {
		t.Fatal(err)
	}
	if items {
		t.Error("the role left in place still reads items, which the admin granted it")
	}

	f.d.ExecAs(t, holder, `GRANT USAGE ON SCHEMA hs TO `+id)
	if err := f.db.RevokeUsers(f.ctx, []RevokeRequest{{Username: name}})[0]; err != nil {
		t.Fatalf("revoke with USAGE back: %v", err)
	}
	if f.roleExists(t, name) {
		t.Errorf("role %s still exists", name)
	}
	var reads bool
	if err := f.d.Conn(t).QueryRow(f.ctx, `SELECT has_column_privilege($1, 'hs.t', 'b', 'SELECT')`, friend).Scan(&reads); err != nil || reads {
		t.Errorf("the column grant outlived the credential: %v, %v", reads, err)
	}
}
