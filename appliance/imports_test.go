package appliance

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyBoltstoreImportsBbolt walks the server's sources, tests
// included, and fails on a bbolt import outside store/boltstore: feature
// code reaches storage through the store interfaces (docs/design.md §4).
func TestOnlyBoltstoreImportsBbolt(t *testing.T) {
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "go.etcd.io/bbolt") && filepath.ToSlash(filepath.Dir(path)) != "store/boltstore" {
				t.Errorf("%s imports %s; only store/boltstore may", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d files: walking the wrong directory?", checked)
	}
}
