package cmd

import "testing"

// -v and --version print what `lessor version` prints, exit 0, and open
// nothing (newCompCLI fails the test on any prompt). Part of issue 14.
func TestVersionFlags(t *testing.T) {
	c := newCompCLI(t)
	want := c.must("version")
	if want != versionLine()+"\n" {
		t.Fatalf("lessor version printed %q, want %q", want, versionLine()+"\n")
	}
	for _, arg := range []string{"-v", "--version", "-version"} {
		out, errs, code := c.run(arg)
		if code != 0 || out != want || errs != "" {
			t.Errorf("lessor %s: exit %d, stdout %q, stderr %q; want exit 0, stdout %q", arg, code, out, errs, want)
		}
	}
}
