package database

import (
	"github.com/lessorhq/lessor/pkg/logical"
)

// The fields each path knows, read by pkg/logical's one set of parsers.
// A field outside them is ignored with Vault's warning.

var configFields = logical.FieldSchema{
	"plugin_name":              {Type: logical.TypeString, Description: "the plugin: postgresql-database-plugin"},
	"plugin_version":           {Type: logical.TypeString, Description: "accepted for Vault; only the built-in version exists"},
	"verify_connection":        {Type: logical.TypeBool, Description: "connect once before storing (default true)"},
	"allowed_roles":            {Type: logical.TypeCommaStringSlice, Description: "role names or globs that may use this connection; empty allows none"},
	"root_rotation_statements": {Type: logical.TypeStatements, Description: "statements that rotate the admin password"},
	"password_policy":          {Type: logical.TypeString, Description: "the password policy (sys/policies/password/<name>) for generated passwords; empty: 20 characters of [A-Za-z0-9-]"},
	"connection_url":           {Type: logical.TypeString, Description: "postgres:// URL or keyword/value string, templated with {{username}} and {{password}}"},
	"username":                 {Type: logical.TypeString, Description: "the admin's user name"},
	"password":                 {Type: logical.TypeString, Description: "the admin's password (never read back)"},
	"password_authentication":  {Type: logical.TypeString, Description: "scram-sha-256 (default) or password"},
	"username_template":        {Type: logical.TypeString, Description: "template for the names of issued roles"},
	"disable_escaping":         {Type: logical.TypeBool, Description: "put the username and password into the URL unencoded"},
	"max_open_connections":     {Type: logical.TypeInt, NonNegative: true, Description: "admin connections lessor serve keeps open for this config, at most 1000 (0: serve's -db-pool-size, 4); a command opens one"},
	"max_idle_connections":     {Type: logical.TypeInt, NonNegative: true, Description: "accepted for Vault; lessor opens one connection per request"},
	"max_connection_lifetime":  {Type: logical.TypeDurationSecond, Description: "accepted for Vault; lessor opens one connection per request"},
}

var roleFields = logical.FieldSchema{
	"db_name":               {Type: logical.TypeString, Description: "the connection (config/<name>) the role uses"},
	"creation_statements":   {Type: logical.TypeStatements, Description: "SQL that creates {{name}}; SQL, a JSON array, or either in base64"},
	"revocation_statements": {Type: logical.TypeStatements, Description: "SQL that drops {{name}} (default: lessor's revocation)"},
	"renew_statements":      {Type: logical.TypeStatements, Description: "SQL run when a lease is renewed"},
	"rollback_statements":   {Type: logical.TypeStatements, Description: "accepted for Vault; not run"},
	"default_ttl":           {Type: logical.TypeDurationSecond, Description: "lease TTL (0 inherits the mount's)"},
	"max_ttl":               {Type: logical.TypeDurationSecond, Description: "lease max TTL (0 inherits the mount's)"},
	"credential_type":       {Type: logical.TypeString, Description: "password (the only type)"},
}

var staticRoleFields = logical.FieldSchema{
	"username":             {Type: logical.TypeString, Description: "the existing PostgreSQL login to manage (cannot change)"},
	"db_name":              {Type: logical.TypeString, Description: "the connection (config/<name>) the login is on"},
	"rotation_period":      {Type: logical.TypeDurationSecond, Description: "rotate this often (5s or more); exclusive with rotation_schedule"},
	"rotation_schedule":    {Type: logical.TypeString, Description: "rotate on a cron schedule (minute hour day-of-month month day-of-week, UTC)"},
	"rotation_window":      {Type: logical.TypeDurationSecond, Description: "with rotation_schedule: how long after the scheduled time a rotation may still run (1h or more)"},
	"rotation_statements":  {Type: logical.TypeStatements, Description: "SQL that sets {{name}}'s password to {{password}} (default ALTER ROLE, sent as a SCRAM verifier)"},
	"credential_type":      {Type: logical.TypeString, Description: "password (the only type)"},
	"credential_config":    {Type: logical.TypeKVPairs, Description: "password_policy=NAME: the password policy for this role (overrides the connection's)"},
	"skip_import_rotation": {Type: logical.TypeBool, Description: "on create, keep the login's current password (given as password) instead of rotating it at once"},
	"password":             {Type: logical.TypeString, Description: "with skip_import_rotation=true, the login's current password (checked by logging in)"},
}

// validName is Vault's generic path-segment name: a word character, then word
// characters, "-" or ".", ending in a word character. It keeps quotes,
// semicolons, spaces and slashes out of storage keys and of anything that
// might later be spliced into SQL or a lease id. (Checked by hand: it is
// on the path of every issue, and a regular expression would be compiled
// by every command at start.)
func validName(name string) bool {
	if name == "" || !isWordByte(name[0]) || !isWordByte(name[len(name)-1]) {
		return false
	}
	for i := 1; i < len(name)-1; i++ {
		if c := name[i]; !isWordByte(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isWordByte is RE2's \w: an ASCII letter, digit or "_".
func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func checkName(name string) error {
	if !validName(name) {
		return logical.Errorf("invalid name %q: use letters, digits, \"_\", \"-\" and \".\", starting and ending with a letter, digit or \"_\"", name)
	}
	return nil
}

var writeOps = []logical.Operation{logical.CreateOperation, logical.UpdateOperation}

// PathSpecs declares the engine's paths, for path-help and completion.
func (b *Backend) PathSpecs() []logical.PathSpec {
	ops := func(fields logical.FieldSchema, extra ...logical.Operation) map[logical.Operation]logical.FieldSchema {
		m := map[logical.Operation]logical.FieldSchema{}
		if fields != nil {
			for _, op := range writeOps {
				m[op] = fields
			}
		}
		for _, op := range extra {
			m[op] = nil
		}
		return m
	}
	list := map[logical.Operation]logical.FieldSchema{logical.ListOperation: nil}
	update := map[logical.Operation]logical.FieldSchema{logical.UpdateOperation: nil}
	return []logical.PathSpec{
		{Pattern: "config/", Description: "list the connections", Operations: list},
		{Pattern: "config/:name", Description: "configure a connection to a PostgreSQL server", Operations: ops(configFields, logical.ReadOperation, logical.DeleteOperation)},
		{Pattern: "roles/", Description: "list the roles", Operations: list},
		{Pattern: "roles/:name", Description: "manage a role: the SQL that creates and revokes its credentials", Operations: ops(roleFields, logical.ReadOperation, logical.DeleteOperation)},
		{Pattern: "creds/:name", Description: "issue a credential of a role, with a lease", Operations: map[logical.Operation]logical.FieldSchema{logical.ReadOperation: nil}, NamesFrom: "roles/"},
		{Pattern: "static-roles/", Description: "list the static roles", Operations: list},
		{Pattern: "static-roles/:name", Description: "manage a static role: an existing login whose password lessor rotates on a schedule (delete stops managing it, never drops it)", Operations: ops(staticRoleFields, logical.ReadOperation, logical.DeleteOperation)},
		{Pattern: "static-creds/:name", Description: "read a static role's username and current password (no lease; reap rotates it)", Operations: map[logical.Operation]logical.FieldSchema{logical.ReadOperation: nil}, NamesFrom: "static-roles/"},
		{Pattern: "rotate-role/:name", Description: "rotate a static role's password now", Operations: update, NamesFrom: "static-roles/"},
		{Pattern: "rotate-root/:name", Description: "rotate a connection's admin password", Operations: update, NamesFrom: "config/"},
		{Pattern: "reset/:name", Description: "close and reopen a connection", Operations: update, NamesFrom: "config/"},
	}
}
