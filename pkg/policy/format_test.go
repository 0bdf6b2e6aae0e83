package policy

import (
	"errors"
	"reflect"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"seed admin", seedAdmin, `# Mount secret engines
path "sys/mounts/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Configure the database secret engine and create roles
path "database/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Write ACL policies
path "sys/policy/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Manage tokens for verification
path "auth/token/create" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}
`},
		{"one line", `path "database/creds/readonly" {capabilities = [ "read" ]}`, `path "database/creds/readonly" {
  capabilities = ["read"]
}
`},
		{"comments kept", `# header

# about a
path "a" { # on the open line
  capabilities = [
    "read", # inside the list
    "list"
  ] # after the list


  # before the parameters
  allowed_parameters = { "Owner" = [1, "two", 3.5, true] # owner
  "*" = []}
  /* before the brace */
} # after the block
path "b" { capabilities = ["read"] } # after b
// the end
`, `# header

# about a
path "a" { # on the open line
  # inside the list
  capabilities = ["read", "list"] # after the list

  # before the parameters
  allowed_parameters = {
    "Owner" = [1, "two", 3.5, true] # owner
    "*" = []
  }
  /* before the brace */
} # after the block

path "b" {
  capabilities = ["read"]
} # after b

// the end
`},
		{"json", `{"name": "x", "path": {"a": {"capabilities": ["read"], "denied_parameters": {"x": []}}, "b/*": {"policy": "write", "min_wrapping_ttl": 60}}}`, `name = "x"

path "a" {
  capabilities = ["read"]
  denied_parameters = {
    "x" = []
  }
}

path "b/*" {
  policy = "write"
  min_wrapping_ttl = 60
}
`},
		{"empty blocks", "path \"a\" {   }\npath \"b\" {\n  # nothing yet\n}\n", `path "a" {}

path "b" {
  # nothing yet
}
`},
		{"nested objects and heredoc", `path "a" {
  comment = <<EOT
two
lines
EOT
  control_group = {
    factor "ops" { identity { group_names = ["m"], approvals = 1 } }
  }
}
`, `path "a" {
  comment = "two\nlines\n"
  control_group = {
    factor = {
      ops = {
        identity = {
          group_names = ["m"]
          approvals = 1
        }
      }
    }
  }
}
`},
		{"quoting", `path "a/${x}" { comment = "say \"hi\"\t${ "q" }" }`, `path "a/${x}" {
  comment = "say \"hi\"\t${ "q" }"
}
`},
		{"empty", "", ""},
		{"only comments", "# nothing\n\n\n# at all", "# nothing\n\n# at all\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Format(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			again, err := Format(got)
			if err != nil || again != got {
				t.Errorf("not idempotent (%v):\n%s", err, again)
			}
			p1, p2 := mustParse(t, "p", tt.in), mustParse(t, "p", got)
			if !samePaths(p1.Paths, p2.Paths) {
				t.Errorf("meaning changed:\n%+v\n%+v", p1.Paths, p2.Paths)
			}
		})
	}
}

func TestFormatRefusesUnquotable(t *testing.T) {
	// A JSON string may hold an unbalanced "${", which no HCL v1 string
	// literal can.
	_, err := Format(`{"path": {"a": {"comment": "${"}}}`)
	if !errors.Is(err, ErrFormatChangesMeaning) {
		t.Fatalf("got %v", err)
	}
}

// samePaths compares rules ignoring where they were written.
func samePaths(a, b []PathRules) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Line, y.Line = 0, 0
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
