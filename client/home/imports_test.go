package home

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyHomeTouchesBolt enforces docs/design.md §6.2 and §11 on the
// client side: no Go file under client/ outside client/home, nor under ui/
// or cli/, imports bbolt or names a bolt transaction. The home is reached
// only through its repository methods.
func TestOnlyHomeTouchesBolt(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root is not at %s: %v", root, err)
	}
	home := filepath.Join(root, "client", "home")
	checked := 0
	for _, dir := range []string{"client", "ui", "cli"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path == home || d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") {
				return nil
			}
			checked++
			rel, _ := filepath.Rel(root, path)
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if p == "go.etcd.io/bbolt" || strings.HasPrefix(p, "go.etcd.io/bbolt/") {
					t.Errorf("%s imports %s: only client/home may (docs/design.md §11)", rel, p)
				}
			}
			if strings.Contains(string(src), "bolt.Tx") {
				t.Errorf("%s mentions bolt.Tx: a transaction never leaves client/home (docs/design.md §6.2)", rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d Go files checked: the walk missed the packages", checked)
	}
}

// TestReadsGoThroughView keeps the deferred-write read rule (later.go) in
// the package's own code: the bbolt handle opens transactions only in View
// and Update (tx.go, later.go), in unlock before the home is shared
// (home.go), and in the Probe, whose reads take the same lock (probe.go).
func TestReadsGoThroughView(t *testing.T) {
	allowed := map[string]int{"tx.go": 1, "later.go": 1, "home.go": 3, "probe.go": 3}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(src), ".db.View(") + strings.Count(string(src), ".db.Update(") + strings.Count(string(src), ".db.Begin(") + strings.Count(string(src), ".db.Batch(")
		if n > allowed[f] {
			t.Errorf("%s opens %d bbolt transactions directly, %d allowed: read through View, write through Update", f, n, allowed[f])
		}
	}
}
