package database

import (
	"context"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// A template from Vault's username-templating docs without a final
// truncate is accepted with a warning, as Vault accepts it; the name is
// cut to 63 bytes by lessor, and that is the role PostgreSQL holds.
func TestLongUsernameTemplateIsCutNotRefused(t *testing.T) {
	e := newEnv(t)
	tmpl := `FOO_{{.DisplayName | replace "-" "_" | uppercase}}_{{.RoleName | replace "-" "_" | uppercase}}_{{ random 60 }}`
	resp, err := e.do(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "connection_url": e.templatedURL(),
		"username": e.srv.User, "password": e.srv.Password,
		"allowed_roles": "readonly", "username_template": tmpl,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || !strings.Contains(strings.Join(resp.Warnings, "\n"), "lessor cuts them to 63 bytes, as PostgreSQL would") {
		t.Fatalf("config write: no warning about long names: %+v", resp)
	}
	e.writeRole("readonly", nil)
	got := e.issue("readonly")
	name := got.Data["username"].(string)
	if len(name) != 63 || !strings.HasPrefix(name, "FOO_") {
		t.Fatalf("username %q (%d bytes), want 63 bytes", name, len(name))
	}
	var n int
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, name).Scan(&n); err != nil || n != 1 {
		t.Fatalf("role %q in pg_roles: %d, %v", name, n, err)
	}
}
