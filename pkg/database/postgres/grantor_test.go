package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

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
