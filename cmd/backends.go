package cmd

import (
	"sort"

	"github.com/lessorhq/lessor/pkg/core"
	"github.com/lessorhq/lessor/pkg/database"
	"github.com/lessorhq/lessor/pkg/logical"
)

// backendFactories are the secrets engine types lessor knows, by the name
// `secrets enable` takes.
func backendFactories() map[string]core.Factory {
	return backendFactoriesWith(database.Options{})
}

// backendFactoriesWith is backendFactories with the database engine's
// options (lessor serve's connection pool).
func backendFactoriesWith(db database.Options) map[string]core.Factory {
	return map[string]core.Factory{
		"database": func() logical.Backend { return database.New(db) },
	}
}

// engineTypes are backendFactories' names, sorted.
func engineTypes() []string {
	var out []string
	for typ := range backendFactories() {
		out = append(out, typ)
	}
	sort.Strings(out)
	return out
}

// mountPathSpecs returns the paths a mount of type typ declares (a secrets
// engine's from its backend, sys and auth/token's from the core), for
// completion: the same declarations path-help prints.
func mountPathSpecs(typ string) []logical.PathSpec {
	if specs := core.BuiltinPathSpecs(typ); specs != nil {
		return specs
	}
	newBackend, ok := backendFactories()[typ]
	if !ok {
		return nil
	}
	if d, ok := newBackend().(logical.PathDescriber); ok {
		return d.PathSpecs()
	}
	return nil
}
