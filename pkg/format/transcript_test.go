package format

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// The responses below carry the values that OpenBao v2.6.2 printed in a
// recorded session, and each want is that session's output, byte for
// byte (stderr and stdout apart; the session showed them combined,
// warnings first). The only change is
// "Vault" → "lessor" in the warning header.

var transcriptCreds = &logical.Response{
	Secret: &logical.Secret{
		LeaseID:   "database/creds/readonly/Bc3O1OvgG4pKBKIjvYRjXAEs",
		TTL:       time.Hour,
		Renewable: true,
	},
	Data: map[string]any{
		"password": "IzfNzFo7-rMc7PvFnRuS",
		"username": "v-token-readonly-1bLcUYSBuwNeDbiCxJSL-1795715170",
	},
}

const transcriptCredsTable = `Key                Value
---                -----
lease_id           database/creds/readonly/Bc3O1OvgG4pKBKIjvYRjXAEs
lease_duration     1h
lease_renewable    true
password           IzfNzFo7-rMc7PvFnRuS
username           v-token-readonly-1bLcUYSBuwNeDbiCxJSL-1795715170
`

func transcriptConfig() *logical.Response {
	return &logical.Response{Data: map[string]any{
		"allowed_roles": []string{"readonly"},
		"connection_details": map[string]any{
			"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable",
			"username":       "root",
		},
		"password_policy":                    "",
		"plugin_name":                        "postgresql-database-plugin",
		"plugin_version":                     "",
		"root_credentials_rotate_statements": []string{},
	}}
}

func transcriptRole() *logical.Response {
	return &logical.Response{Data: map[string]any{
		"creation_statements":   []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`},
		"credential_type":       "password",
		"db_name":               "postgresql",
		"default_ttl":           3600,
		"max_ttl":               int64(86400),
		"renew_statements":      []string{},
		"revocation_statements": []string{},
		"rollback_statements":   []string{},
	}}
}

func transcriptLookup(ttl any) *logical.Response {
	return &logical.Response{Data: map[string]any{
		"expire_time":  "2026-11-26T18:46:10.482044015Z",
		"id":           "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
		"issue_time":   time.Date(2026, 11, 26, 17, 46, 10, 482043685, time.UTC),
		"last_renewal": nil,
		"path":         "database/creds/readonly",
		"renewable":    true,
		"ttl":          ttl,
	}}
}

func TestTranscript(t *testing.T) {
	renewed := &logical.Response{Secret: &logical.Secret{
		LeaseID: "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq", TTL: time.Hour, Renewable: true,
	}}
	capped := &logical.Response{
		Secret: &logical.Secret{
			LeaseID:   "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
			TTL:       23*time.Hour + 59*time.Minute + 57*time.Second,
			Renewable: true,
		},
		Warnings: []string{`TTL of "48h" exceeded the effective max_ttl of "23h59m57s"; TTL value is capped accordingly`},
	}
	tests := []struct {
		name       string
		resp       *logical.Response
		opts       Options
		wantOut    string
		wantErrOut string
	}{
		{name: "read credentials (table)", resp: transcriptCreds, wantOut: transcriptCredsTable},
		{
			name: "read credentials (json)",
			resp: &logical.Response{
				Secret: &logical.Secret{LeaseID: "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq", TTL: time.Hour, Renewable: true},
				Data: map[string]any{
					"password": "W-bRz5cqA23EyVPtyJ5f",
					"username": "v-token-readonly-Q0K6ZJ6v6VMUr07M1kjg-1795715170",
				},
			},
			opts: Options{Format: "json", RequestID: "c5da83db-4657-dd67-d4a1-3a568d4feb62"},
			wantOut: `{
  "request_id": "c5da83db-4657-dd67-d4a1-3a568d4feb62",
  "lease_id": "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
  "lease_duration": 3600,
  "renewable": true,
  "data": {
    "password": "W-bRz5cqA23EyVPtyJ5f",
    "username": "v-token-readonly-Q0K6ZJ6v6VMUr07M1kjg-1795715170"
  },
  "warnings": null
}
`,
		},
		{
			name: "read one field",
			resp: &logical.Response{
				Secret: &logical.Secret{LeaseID: "database/creds/readonly/x", TTL: time.Hour},
				Data:   map[string]any{"password": "p", "username": "v-token-readonly-LPWMjKM8dxJPCURnqXx5-1795715170"},
			},
			opts:    Options{Field: "username"},
			wantOut: "v-token-readonly-LPWMjKM8dxJPCURnqXx5-1795715170",
		},
		{
			name: "read the connection (table)", resp: transcriptConfig(),
			wantOut: `Key                                   Value
---                                   -----
allowed_roles                         [readonly]
connection_details                    map[connection_url:postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable username:root]
password_policy                       n/a
plugin_name                           postgresql-database-plugin
plugin_version                        n/a
root_credentials_rotate_statements    []
`,
		},
		{
			name: "read the connection (json)", resp: transcriptConfig(),
			opts: Options{Format: "json", RequestID: "fb1738c2-0a55-20be-3a9d-8cb5629d7a7e"},
			wantOut: `{
  "request_id": "fb1738c2-0a55-20be-3a9d-8cb5629d7a7e",
  "lease_id": "",
  "lease_duration": 0,
  "renewable": false,
  "data": {
    "allowed_roles": [
      "readonly"
    ],
    "connection_details": {
      "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/myapp?sslmode=disable",
      "username": "root"
    },
    "password_policy": "",
    "plugin_name": "postgresql-database-plugin",
    "plugin_version": "",
    "root_credentials_rotate_statements": []
  },
  "warnings": null
}
`,
		},
		{
			name: "read the role (table)", resp: transcriptRole(),
			wantOut: `Key                      Value
---                      -----
creation_statements      [CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";]
credential_type          password
db_name                  postgresql
default_ttl              1h
max_ttl                  24h
renew_statements         []
revocation_statements    []
rollback_statements      []
`,
		},
		{
			name: "read the role (json)", resp: transcriptRole(),
			opts: Options{Format: "json", RequestID: "e68d67ba-4367-3105-0463-496740064179"},
			wantOut: `{
  "request_id": "e68d67ba-4367-3105-0463-496740064179",
  "lease_id": "",
  "lease_duration": 0,
  "renewable": false,
  "data": {
    "creation_statements": [
      "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"
    ],
    "credential_type": "password",
    "db_name": "postgresql",
    "default_ttl": 3600,
    "max_ttl": 86400,
    "renew_statements": [],
    "revocation_statements": [],
    "rollback_statements": []
  },
  "warnings": null
}
`,
		},
		{
			name: "create an apps token (table)",
			resp: &logical.Response{Auth: &logical.Auth{
				ClientToken: "s.Q2aOUVn1Lgj6qXzIS0j4enMh", Accessor: "BeqmvtVE60aSiEBh0Sn2YFsG",
				Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
				LeaseDuration: 768 * time.Hour, Renewable: true,
			}},
			wantOut: `Key                  Value
---                  -----
token                s.Q2aOUVn1Lgj6qXzIS0j4enMh
token_accessor       BeqmvtVE60aSiEBh0Sn2YFsG
token_duration       768h
token_renewable      true
token_policies       ["apps" "default"]
identity_policies    []
policies             ["apps" "default"]
`,
		},
		{
			name: "create an apps token (json)",
			resp: &logical.Response{Auth: &logical.Auth{
				ClientToken: "s.6xlvEC9QHe2MLn44rahoUTb6", Accessor: "F2M1z5V2LAL4srTSctTrQy6J",
				Policies: []string{"apps", "default"}, TokenPolicies: []string{"apps", "default"},
				LeaseDuration: 768 * time.Hour, Renewable: true,
			}},
			opts: Options{Format: "json", RequestID: "c16101ac-49c4-e93a-f416-d4ecd65839e7"},
			wantOut: `{
  "request_id": "c16101ac-49c4-e93a-f416-d4ecd65839e7",
  "lease_id": "",
  "lease_duration": 0,
  "renewable": false,
  "data": null,
  "warnings": null,
  "auth": {
    "client_token": "s.6xlvEC9QHe2MLn44rahoUTb6",
    "accessor": "F2M1z5V2LAL4srTSctTrQy6J",
    "policies": [
      "apps",
      "default"
    ],
    "token_policies": [
      "apps",
      "default"
    ],
    "identity_policies": null,
    "metadata": null,
    "orphan": false,
    "entity_id": "",
    "lease_duration": 2764800,
    "renewable": true,
    "mfa_requirement": null
  }
}
`,
		},
		{
			name: "lease lookup (table)", resp: transcriptLookup(3598),
			wantOut: `Key             Value
---             -----
expire_time     2026-11-26T18:46:10.482044015Z
id              database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
issue_time      2026-11-26T17:46:10.482043685Z
last_renewal    <nil>
path            database/creds/readonly
renewable       true
ttl             59m58s
`,
		},
		{
			name: "lease lookup (json)", resp: transcriptLookup(json.Number("3598")),
			opts: Options{Format: "json", RequestID: "f631f847-53f2-207e-08eb-e816a97c0c90"},
			wantOut: `{
  "request_id": "f631f847-53f2-207e-08eb-e816a97c0c90",
  "lease_id": "",
  "lease_duration": 0,
  "renewable": false,
  "data": {
    "expire_time": "2026-11-26T18:46:10.482044015Z",
    "id": "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
    "issue_time": "2026-11-26T17:46:10.482043685Z",
    "last_renewal": null,
    "path": "database/creds/readonly",
    "renewable": true,
    "ttl": 3598
  },
  "warnings": null
}
`,
		},
		{
			name: "lease renew (table)", resp: renewed,
			wantOut: `Key                Value
---                -----
lease_id           database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
lease_duration     1h
lease_renewable    true
`,
		},
		{
			name: "lease renew with increment (json)",
			resp: &logical.Response{Secret: &logical.Secret{
				LeaseID: "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq", TTL: 2 * time.Hour, Renewable: true,
			}},
			opts: Options{Format: "json", RequestID: "f99f0c8f-2ace-7e3f-c89a-d502947f08e9"},
			wantOut: `{
  "request_id": "f99f0c8f-2ace-7e3f-c89a-d502947f08e9",
  "lease_id": "database/creds/readonly/2AbWopfdHwscMcejEJroqLfq",
  "lease_duration": 7200,
  "renewable": true,
  "data": null,
  "warnings": null
}
`,
		},
		{
			name: "lease renew past max_ttl (warning format)", resp: capped,
			wantErrOut: `WARNING! The following warnings were returned from lessor:

  * TTL of "48h" exceeded the effective max_ttl of "23h59m57s"; TTL value is
  capped accordingly

`,
			wantOut: `Key                Value
---                -----
lease_id           database/creds/readonly/2AbWopfdHwscMcejEJroqLfq
lease_duration     23h59m57s
lease_renewable    true
`,
		},
		{
			name: "irrevocable lease count",
			resp: &logical.Response{Data: map[string]any{"counts": map[string]int{}, "lease_count": 0}},
			wantOut: `Key            Value
---            -----
counts         map[]
lease_count    0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := render(tt.resp, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkText(t, "stdout", out, tt.wantOut)
			checkText(t, "stderr", errOut, tt.wantErrOut)
		})
	}
}

func TestTranscriptList(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		opts Options
		want string
	}{
		{"list roles (table)", []string{"readonly"}, Options{}, "Keys\n----\nreadonly\n"},
		{"list roles (json)", []string{"readonly"}, Options{Format: "json"}, "[\n  \"readonly\"\n]\n"},
		{
			"list leases of the role (table)",
			[]string{"Qd6LjtaND3y6V6IcqAkG7b4e", "2AbWopfdHwscMcejEJroqLfq", "Bc3O1OvgG4pKBKIjvYRjXAEs"},
			Options{},
			"Keys\n----\n2AbWopfdHwscMcejEJroqLfq\nBc3O1OvgG4pKBKIjvYRjXAEs\nQd6LjtaND3y6V6IcqAkG7b4e\n",
		},
		{
			"list leases of the role (json)",
			[]string{"Qd6LjtaND3y6V6IcqAkG7b4e", "2AbWopfdHwscMcejEJroqLfq", "Bc3O1OvgG4pKBKIjvYRjXAEs"},
			Options{Format: "json"},
			"[\n  \"2AbWopfdHwscMcejEJroqLfq\",\n  \"Bc3O1OvgG4pKBKIjvYRjXAEs\",\n  \"Qd6LjtaND3y6V6IcqAkG7b4e\"\n]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if err := List(&out, &errOut, tt.keys, "database/roles", tt.opts); err != nil {
				t.Fatal(err)
			}
			checkText(t, "stdout", out.String(), tt.want)
			checkText(t, "stderr", errOut.String(), "")
		})
	}
}
