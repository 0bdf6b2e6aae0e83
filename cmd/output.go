package cmd

import (
	"errors"
	"fmt"

	"github.com/lessorhq/lessor/pkg/format"
	"github.com/lessorhq/lessor/pkg/logical"
)

// render prints a response in the chosen format; a missing -field is a
// local error (exit 1), as in Vault.
func render(f *Factory, g *globalOptions, req *logical.Request, resp *logical.Response) error {
	o := g.formatOptions(f)
	o.RequestID = req.ID
	if err := format.Secret(f.IO.Out, f.IO.Err, resp, o); err != nil {
		if errors.Is(err, format.ErrFieldMissing) || errors.Is(err, format.ErrUnsupported) {
			return &usageError{err}
		}
		return err
	}
	return nil
}

// success prints a Vault-style "Success! …" line, in table format only
// (other formats print nothing, so that stdout stays parseable), unless
// always is set.
func success(f *Factory, g *globalOptions, always bool, msg string, args ...any) {
	if !always && g.formatOptions(f).Format != format.NameTable {
		return
	}
	fmt.Fprintf(f.IO.Out, "Success! "+msg+"\n", args...)
}

// warn prints warnings on stderr.
func warn(f *Factory, warnings []string) {
	if len(warnings) > 0 {
		format.Warnings(f.IO.Err, warnings)
	}
}

// listOut prints keys like `vault list`.
func listOut(f *Factory, g *globalOptions, keys []string, path string) error {
	o := g.formatOptions(f)
	return format.List(f.IO.Out, f.IO.Err, keys, path, o)
}

// flatOut prints the data of a local command (operator init, status) the
// way Vault's operator commands do: a Key/Value table, or a flat JSON or
// YAML object with no request envelope (env and dotenv as for a response).
func flatOut(f *Factory, g *globalOptions, data map[string]any) error {
	o := g.formatOptions(f)
	if o.Field != "" || !o.Format.Encoded() {
		return render(f, g, &logical.Request{}, &logical.Response{Data: data})
	}
	return format.Encode(f.IO.Out, data, o.Format)
}
