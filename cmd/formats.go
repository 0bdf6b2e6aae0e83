package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/format"
)

// commandOutputs says what each command that prints data prints, so that
// a -format which cannot render it (-format=pgpass for `lessor reap`) is
// refused before the command does anything. A command not listed prints
// no data (at most a "Success!" line) and takes any format.
var commandOutputs = map[string]format.Output{
	"lessor read":               format.Response,
	"lessor write":              format.Response,
	"lessor list":               format.Document,
	"lessor renew":              format.Flat,
	"lessor lease renew":        format.Flat,
	"lessor lease lookup":       format.Flat,
	"lessor lease list":         format.Document,
	"lessor secrets list":       format.Document,
	"lessor policy read":        format.Flat,
	"lessor policy list":        format.Document,
	"lessor token create":       format.Flat,
	"lessor token lookup":       format.Flat,
	"lessor token renew":        format.Flat,
	"lessor token capabilities": format.Flat,
	"lessor login":              format.Flat,
	"lessor audit list":         format.Document,
	"lessor audit hash":         format.Flat,
	"lessor operator init":      format.Flat,
	"lessor operator status":    format.Flat,
	"lessor operator verify":    format.Flat,
	"lessor reap":               format.Document,
	"lessor path-help":          format.Document,
}

// checkFormat refuses a format that command c cannot print.
func checkFormat(c *cobra.Command, name format.Name) error {
	out, ok := commandOutputs[c.CommandPath()]
	if !ok || name.Prints(out) {
		return nil
	}
	return &usageError{&format.UnsupportedError{Format: name, Output: out, What: "the output of `" + c.CommandPath() + "`"}}
}
