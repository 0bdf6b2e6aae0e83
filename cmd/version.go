package cmd

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set by the release build through -ldflags "-X …".
var (
	version = ""
	commit  = ""
	date    = ""
)

// buildVersion returns the version, falling back to the module's build
// information for `go install` builds.
func buildVersion() (v, c, d string) {
	v, c, d = version, commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	return v, c, d
}

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print lessor's version",
		Example: `  lessor version`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintln(f.IO.Out, versionLine())
			return nil
		},
	}
}

// versionLine is what `lessor version`, `lessor -v` and `lessor --version`
// print: "lessor v1.2.3 (0123456789ab, 2026-01-02T03:04:05Z)".
func versionLine() string {
	v, cm, d := buildVersion()
	out := "lessor " + v
	if cm != "" {
		if len(cm) > 12 {
			cm = cm[:12]
		}
		out += " (" + cm
		if d != "" {
			out += ", " + d
		}
		out += ")"
	}
	return out
}
