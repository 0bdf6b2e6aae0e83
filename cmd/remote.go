package cmd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lessorhq/lessor/pkg/apiclient"
	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
)

// With LESSOR_ADDR set, lessor is a client of `lessor serve`: every
// request (Factory.Request) goes to the server instead of the local store,
// even where one exists, and is printed and exits as it would locally.
// The commands that work on a store with its unseal key refuse instead
// (localOnlyCommands): the store is the server's.

// remote reports whether requests go to a server.
func (f *Factory) remote() bool { return f.address() != "" }

func (f *Factory) address() string { return strings.TrimSpace(f.get("address")) }

// testOnlyClientHeader is a test seam, set only by the test binary's
// TestMain: headers every request to a server carries, from the client's
// environment (the clock skew that the seed-guide script sets, for the
// test server to apply). A shipped binary leaves it nil.
var testOnlyClientHeader func(getenv func(string) string) http.Header

// Client returns the client of the server at LESSOR_ADDR.
func (f *Factory) Client() (*apiclient.Client, error) {
	if f.client != nil {
		return f.client, nil
	}
	timeout, err := clientTimeout(f.get("client_timeout"))
	if err != nil {
		return nil, err
	}
	allowHTTP := false
	if v := strings.TrimSpace(f.get("allow_http")); v != "" {
		if allowHTTP, err = strconv.ParseBool(v); err != nil {
			return nil, usageErrorf("LESSOR_ALLOW_HTTP %q: not true or false", v)
		}
	}
	cfg := apiclient.Config{
		Address:     f.address(),
		AddressName: "LESSOR_ADDR",
		Timeout:     timeout,
		AllowHTTP:   allowHTTP,
		Causes:      map[string]error{"password_ends_in_newline": postgres.ErrPasswordEndsInNewline},
	}
	if p := strings.TrimSpace(f.get("ca_cert")); p != "" {
		cfg.CACert = expandHome(p, f.home())
	}
	if p := strings.TrimSpace(f.get("ca_path")); p != "" {
		cfg.CAPath = expandHome(p, f.home())
	}
	if testOnlyClientHeader != nil {
		cfg.Header = testOnlyClientHeader(f.Getenv)
	}
	c, err := apiclient.New(cfg)
	if err != nil {
		var ce *apiclient.ConfigError
		if errors.As(err, &ce) {
			switch ce.Setting {
			case "address":
				if strings.Contains(err.Error(), "plain http") {
					return nil, &localError{withHint(err, "if the network is protected otherwise (a VPN, a service mesh), set LESSOR_ALLOW_HTTP=true")}
				}
			case "ca_cert":
				err = fmt.Errorf("LESSOR_CACERT: %w", err)
			case "ca_path":
				err = fmt.Errorf("LESSOR_CAPATH: %w", err)
			}
		}
		return nil, &localError{err}
	}
	f.client = c
	return c, nil
}

// clientTimeout reads LESSOR_CLIENT_TIMEOUT: seconds or a Go duration,
// as VAULT_CLIENT_TIMEOUT.
func clientTimeout(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return apiclient.DefaultTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.Atoi(v); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d <= 0 {
		return 0, usageErrorf("LESSOR_CLIENT_TIMEOUT %q: not a positive duration (seconds, or 30s, 2m)", v)
	}
	return d, nil
}

// remoteRequest sends the request to the server at LESSOR_ADDR.
func (f *Factory) remoteRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	c, err := f.Client()
	if err != nil {
		return nil, err
	}
	if err := f.setToken(req); err != nil {
		var he *hintError
		if errors.As(err, &he) && he.err.Error() == "no token" {
			return nil, withHint(he.err, "set LESSOR_TOKEN or run `lessor login` with a token of the server at LESSOR_ADDR")
		}
		return nil, err
	}
	resp, err := c.Do(ctx, req)
	var ce *apiclient.ConnError
	if errors.As(err, &ce) && ce.Certificate {
		return nil, withHint(err, "set LESSOR_CACERT to the certificate of the CA that signed the server's certificate")
	}
	return resp, err
}

// localOnlyCommands work on the store itself, with its unseal key, on the
// store's host; with LESSOR_ADDR set they refuse rather than act on
// whatever local store there is, which is not the server's. (A Vault user
// expects `vault operator rotate` to act on the server; lessor cannot do
// that over the API, so it says so.) The value says why.
var localOnlyCommands = map[string]string{
	"operator init":           "creates a local store",
	"operator rotate":         "works on the store with its unseal key",
	"operator rekey":          "works on the store with its unseal key",
	"operator verify":         "works on the store with its unseal key",
	"operator migrate":        "works on the store with its unseal key",
	"operator upgrade-schema": "works on the store with its unseal key",
	"reap":                    "works on the store with its unseal key (lessor serve reaps on its own, every -reap-interval)",
	"dev":                     "sets up a local throwaway store",
}

// refuseLocalOnly stops a command of localOnlyCommands when LESSOR_ADDR
// is set, with one line that says what to do.
func refuseLocalOnly(f *Factory, c *cobra.Command) error {
	if !f.remote() {
		return nil
	}
	name := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	why, ok := localOnlyCommands[name]
	if !ok {
		// -store or -key-file on the command line names a local store:
		// going to the server instead would quietly ignore it. (The
		// environment's LESSOR_STORE is left alone: LESSOR_ADDR wins, so
		// that a host that serves may also set it for its own use.)
		for key, flag := range map[string]string{"store": "-store", "key_file": "-key-file"} {
			if _, set := f.flags[key]; set && name != "serve" {
				return usageErrorf("%s names a local store, but LESSOR_ADDR (%s) sends requests to a server; unset LESSOR_ADDR to use the local store", flag, f.address())
			}
		}
		return nil
	}
	return usageErrorf("%s %s, on the store's host, and is not sent to the server at LESSOR_ADDR (%s); run it with LESSOR_ADDR unset",
		name, why, f.address())
}

// remoteStatus is `operator status` with LESSOR_ADDR set: the server's
// sys/seal-status, as `vault status` shows it. Exits 2 when the server
// says it is sealed or not initialized.
func remoteStatus(ctx context.Context, f *Factory, g *globalOptions) error {
	c, err := f.Client()
	if err != nil {
		return err
	}
	st, err := c.Get(ctx, "sys/seal-status")
	if err != nil {
		return requestError("read", "sys/seal-status", err)
	}
	data := map[string]any{"address": c.Address()}
	for _, k := range []string{"initialized", "sealed", "version", "storage_type", "cluster_name", "cluster_id"} {
		if v, ok := st[k]; ok {
			data[k] = v
		}
	}
	if err := flatOut(f, g, data); err != nil {
		return err
	}
	init, _ := logical.ParseBool(st["initialized"])
	sealed, _ := logical.ParseBool(st["sealed"])
	if !init || sealed {
		return &exitCodeError{code: exitFailed}
	}
	return nil
}
