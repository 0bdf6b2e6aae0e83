package postgres

import (
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
