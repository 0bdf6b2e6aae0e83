package core

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The core knows backends through pkg/logical's interfaces, never by
// importing a backend's package: a new backend then touches no core code,
// and a backend's types cannot leak into the core's API. Part of issue 14
// (the orphan report used pkg/database's types).
func TestCoreImportsNoBackend(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/lessorhq/lessor/pkg/database") {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}
