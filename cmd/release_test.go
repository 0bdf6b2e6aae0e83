package cmd

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/lessorhq/lessor/pkg/failpoint"
)

// buildRelease builds lessor as .goreleaser.yaml's first build does, with
// its env, flags, tags and ldflags (templates filled with placeholders), for
// the machine running the test.
func buildRelease(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Builds []struct {
			Main    string   `yaml:"main"`
			Env     []string `yaml:"env"`
			Flags   []string `yaml:"flags"`
			Tags    []string `yaml:"tags"`
			Ldflags []string `yaml:"ldflags"`
		} `yaml:"builds"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil || len(cfg.Builds) == 0 {
		t.Fatalf(".goreleaser.yaml: no builds (%v)", err)
	}
	b := cfg.Builds[0]
	tmpl := regexp.MustCompile(`\{\{.*?\}\}`)
	fill := func(s string) string { return tmpl.ReplaceAllString(s, "0.0.0-release-test") }
	bin := filepath.Join(t.TempDir(), "lessor")
	args := []string{"build", "-o", bin}
	for _, f := range b.Flags {
		args = append(args, fill(f))
	}
	if len(b.Tags) > 0 {
		args = append(args, "-tags="+fill(strings.Join(b.Tags, ",")))
	}
	var ld []string
	for _, l := range b.Ldflags {
		ld = append(ld, fill(l))
	}
	args = append(args, "-ldflags="+strings.Join(ld, " "), "./"+filepath.Clean(b.Main))
	c := exec.Command("go", args...)
	c.Dir = ".."
	c.Env = os.Environ()
	for _, e := range b.Env {
		c.Env = append(c.Env, fill(e))
	}
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// TestReleaseBinaryHasNoTestHooks builds lessor as the release does and
// proves that the test seams are not in it: the names of their variables
// appear nowhere in the binary, a clock skew of 30 days leaves a 1-hour
// token's TTL alone, and an armed failpoint does not stop the command.
func TestReleaseBinaryHasNoTestHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	t.Parallel()
	bin := buildRelease(t)
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{testOnlyClockSkewEnv, testOnlyFailpointEnv, "LESSOR_TESTONLY", testClockSkewHeader} {
		if bytes.Contains(raw, []byte(name)) {
			t.Errorf("the release binary contains %q", name)
		}
	}

	home := t.TempDir()
	run := func(env []string, args ...string) (string, error) {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}, env...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil {
			t.Errorf("lessor %s with %q: %v\nstderr: %s", strings.Join(args, " "), env, err, errb.String())
			return "", err
		}
		return out.String(), nil
	}
	initOut, err := run(nil, "operator", "init", "-format=json")
	if err != nil {
		t.FailNow()
	}
	var init struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(initOut), &init); err != nil || init.RootToken == "" {
		t.Fatalf("operator init: %v\n%s", err, initOut)
	}
	root := "LESSOR_TOKEN=" + init.RootToken
	tok, err := run([]string{root}, "token", "create", "-ttl=1h", "-field=token")
	if err != nil {
		t.FailNow()
	}
	hooks := []string{
		testOnlyClockSkewEnv + "=720h",
		testOnlyFailpointEnv + "=" + strings.Join(failpoint.All, ","),
	}
	if out, err := run(append(hooks, "LESSOR_TOKEN="+tok), "token", "lookup", "-format=json"); err == nil {
		var look struct {
			Data struct {
				TTL int64 `json:"ttl"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &look); err != nil {
			t.Fatalf("token lookup: %v\n%s", err, out)
		}
		if look.Data.TTL < 3500 || look.Data.TTL > 3600 {
			t.Errorf("with %s the 1h token has ttl %d s, want about 3600", hooks[0], look.Data.TTL)
		}
	}
	// The operations that pass a failpoint without PostgreSQL complete.
	run(append(hooks, root), "operator", "rotate")
	run(append(hooks, "LESSOR_TOKEN="+tok), "token", "revoke", "-self")
	run(nil, "operator", "status")
}
