package cmd

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/lessorhq/lessor/pkg/format"
)

// TestEveryFormatThroughEveryCommand runs each name -format accepts (and
// a case variant) through each command that prints, against a store with
// a live credential. A format the command's output allows must print
// that format (JSON parses, YAML parses, env lines are shell-quoted
// exports…); any other must be refused with exit 1, before the command
// prints anything.
func TestEveryFormatThroughEveryCommand(t *testing.T) {
	c, dbName, leaseID := storeWithCredential(t)
	cred := struct{ LeaseID string }{leaseID}

	child := strings.TrimSpace(c.must("token", "create", "-policy=apps", "-field=token"))
	// A device, so that audit list has one to print (none is {} in YAML too).
	c.must("audit", "enable", "file", "file_path="+c.env["HOME"]+"/audit.log")
	// Each command that prints, with arguments that make it print.
	commands := map[string][]string{
		"lessor read":               {"read", "database/roles/readonly"},
		"lessor write":              {"write", "auth/token/create", "policies=default"},
		"lessor list":               {"list", "database/roles"},
		"lessor renew":              {"renew", cred.LeaseID},
		"lessor lease renew":        {"lease", "renew", cred.LeaseID},
		"lessor lease lookup":       {"lease", "lookup", cred.LeaseID},
		"lessor lease list":         {"lease", "list"},
		"lessor secrets list":       {"secrets", "list"},
		"lessor policy read":        {"policy", "read", "apps"},
		"lessor policy list":        {"policy", "list"},
		"lessor token create":       {"token", "create", "-policy=apps"},
		"lessor token lookup":       {"token", "lookup"},
		"lessor token renew":        {"token", "renew", child},
		"lessor token capabilities": {"token", "capabilities", "database/creds/readonly"},
		"lessor login":              {"login", "-no-store", c.rootToken()},
		"lessor audit list":         {"audit", "list"},
		"lessor audit hash":         {"audit", "hash", "x"},
		"lessor operator init":      {"operator", "init", "-store=" + c.env["HOME"] + "/other.db", "-key-file=" + c.env["HOME"] + "/other.key", "-no-store-token"},
		"lessor operator status":    {"operator", "status"},
		"lessor operator verify":    {"operator", "verify"},
		"lessor reap":               {"reap", "-verbose"},
		"lessor path-help":          {"path-help", "database/roles/readonly"},
	}
	for path := range commandOutputs {
		if _, ok := commands[path]; !ok {
			t.Errorf("%s prints (commandOutputs) but has no case here", path)
		}
	}
	// The credential itself: every format, pgpass and dsn included.
	commands["lessor read (creds)"] = []string{"read", "database/creds/readonly"}

	names := append(format.Names(), "JSON", "Env")
	exportLine := regexp.MustCompile(`^export [A-Z_][A-Z0-9_]*='`)
	dotenvLine := regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=('[^'\n]*'|"([^"\\]|\\.)*")$`)
	for label, args := range commands {
		path, _, _ := strings.Cut(label, " (")
		out := commandOutputs[path]
		for _, raw := range names {
			name, err := format.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			argv := append(slices.Clone(args), "-format="+raw)
			if path == "lessor operator init" {
				// A new store each time.
				argv[2] = "-store=" + c.env["HOME"] + "/other-" + raw + ".db"
				argv[3] = "-key-file=" + c.env["HOME"] + "/other-" + raw + ".key"
			}
			stdout, stderr, code := c.run(argv...)
			credential := label == "lessor read (creds)"
			switch {
			case !name.Prints(out):
				if code != exitLocal || stdout != "" || !strings.Contains(stderr, "-format="+string(name)+" cannot print the output of `"+path+"`") {
					t.Errorf("lessor %s: exit %d, stdout %q, stderr %q; want exit 1 and the format refused", strings.Join(argv, " "), code, stdout, stderr)
				}
				continue
			case (name == format.NamePgpass || name == format.NameDSN) && !credential:
				if code != exitLocal || stdout != "" || !strings.Contains(stderr, "not a database credential") {
					t.Errorf("lessor %s: exit %d, stdout %q, stderr %q; want exit 1, not a credential", strings.Join(argv, " "), code, stdout, stderr)
				}
				continue
			}
			if code != 0 {
				t.Errorf("lessor %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(argv, " "), code, stdout, stderr)
				continue
			}
			if stdout == "" {
				t.Errorf("lessor %s printed nothing", strings.Join(argv, " "))
				continue
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			var bad bool
			switch name {
			case format.NameJSON:
				bad = !json.Valid([]byte(stdout))
			case format.NameYAML:
				var v any
				bad = yaml.Unmarshal([]byte(stdout), &v) != nil || json.Valid([]byte(stdout)) || !strings.Contains(stdout, ": ") && !strings.HasPrefix(stdout, "- ")
			case format.NameEnv:
				// A value may span lines; sh is the judge of the rest.
				sh := exec.Command("sh", "-ec", `eval "$OUT"`)
				sh.Env = []string{"OUT=" + stdout}
				bad = !exportLine.MatchString(lines[0]) || sh.Run() != nil
			case format.NameDotenv:
				bad = slices.ContainsFunc(lines, func(l string) bool { return !dotenvLine.MatchString(l) })
			case format.NamePgpass:
				bad = len(lines) != 1 || strings.Count(lines[0], ":") != 4 || !strings.Contains(lines[0], ":"+dbName+":v-")
			case format.NameDSN:
				bad = len(lines) != 1 || !strings.HasPrefix(lines[0], "postgresql://v-") || !strings.HasSuffix(lines[0], "/"+dbName)
			case format.NameTable:
				bad = json.Valid([]byte(stdout)) || strings.HasPrefix(stdout, "export ")
			}
			if credential && (name == format.NameEnv || name == format.NameDotenv) && !strings.Contains(stdout, "PGPASSWORD=") {
				bad = true
			}
			if (name == format.NameEnv || name == format.NameDotenv) && regexp.MustCompile(`(?m)^(export )?PATH=`).MatchString(stdout) {
				bad = true // lease and token lookups' "path" is LESSOR_PATH
			}
			if bad {
				t.Errorf("lessor %s: not %s output:\n%s", strings.Join(argv, " "), name, stdout)
			}
		}
	}
}

// rootToken is the token `operator init` wrote to the token file.
func (c *compCLI) rootToken() string {
	c.t.Helper()
	out := c.must("token", "lookup", "-field=id")
	return strings.TrimSpace(out)
}
