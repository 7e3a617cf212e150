package archtest

import (
	"fmt"
	"go/ast"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// importRule is one row of docs/design.md §11: what the row's packages may
// import from the module. The rules hold for a package's code; its tests may
// import more (client's tests run a real server from appliance, appliance's
// run real clients), but not bbolt (bboltImporters).
type importRule struct {
	pkgs []string // the packages of the row
	may  []string // the only module packages they may import; "x…" is x and every package below it
	but  []string // if set instead of may: they may import anything but these
}

// importRules is the table of docs/design.md §11, row for row
// (TestDesignImportTable compares the two). A row with neither may nor but
// allows nothing from the module; a package in no row is not restricted.
var importRules = []importRule{
	{pkgs: []string{"chat", "transport", "e2ee", "internal/usage", "internal/qrterm", "internal/boltfile"}},
	{pkgs: []string{"appliance/store"}, may: []string{"chat", "transport"}},
	{pkgs: []string{"appliance/store/boltstore"}, may: []string{"appliance/store", "chat", "transport", "e2ee", "internal/boltfile"}},
	{pkgs: []string{"appliance"}, may: []string{"appliance/store…", "chat", "transport", "e2ee", "internal/usage"}},
	{pkgs: []string{"client/home"}, may: []string{"chat", "transport", "e2ee", "internal/boltfile"}},
	{pkgs: []string{"client"}, may: []string{"client/home", "chat", "transport", "e2ee"}},
	{pkgs: []string{"ui"}, may: []string{"client", "chat"}},
	{pkgs: []string{"admin"}, may: []string{"appliance", "assets", "chat", "internal/usage"}},
	{pkgs: []string{"cli"}, but: []string{"e2e", "bench"}},
}

const bboltPath = "go.etcd.io/bbolt"

// bboltImporters are the only packages whose files may import bbolt or one of
// its packages (docs/design.md §11); testsOnly limits it to their _test.go
// files.
var bboltImporters = []struct {
	pkg       string
	testsOnly bool
}{
	{"appliance/store/boltstore", false},
	{"client/home", false},
	{"e2e", true}, // tests of the binary inspect the data it wrote
}

// txFree are the packages none of whose files, tests included, may mention a
// bbolt transaction: only client/home handles a client transaction.
var txFree = []string{"client…", "ui…", "cli…"}

// sealedAPIs are the packages whose exported API must not expose a bbolt
// type: no transaction or database handle leaves the home.
var sealedAPIs = []string{"client/home…"}

// pending are today's violations of the rules above, while issue 16's
// restructuring moves bbolt into appliance/store/boltstore and client/home
// on other branches. Removed when the
// restructuring lands: an entry that matches no violation any more fails the
// test, so that the list only shrinks.
var pending = []violationKey{}

// violationKey is what pending matches: a package and what it must not do.
type violationKey struct {
	pkg  string
	what string // an import path (relative to the module if in it), "bolt.Tx", or exportsBbolt
}

const exportsBbolt = "exported bbolt type"

type violation struct {
	violationKey
	msg string // "file:line: what is wrong"
}

// matches reports whether the package path p matches pattern: "x" is x,
// "x…" is x and every package below it.
func matches(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "…"); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchesAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pattern string) bool { return matches(pattern, p) })
}

// checkImports returns every violation of the import rules in r.
func checkImports(r *repo) []violation {
	var out []violation
	for _, f := range r.files {
		bboltNames := map[string]bool{}
		for _, spec := range f.ast.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				continue
			}
			at := r.pos(spec.Pos()) + ": "
			if imp == bboltPath || strings.HasPrefix(imp, bboltPath+"/") {
				if imp == bboltPath {
					name := "bbolt"
					if spec.Name != nil {
						name = spec.Name.Name
					}
					bboltNames[name] = true
				}
				if !bboltAllowed(f) {
					out = append(out, violation{violationKey{f.pkg, bboltPath}, at + f.pkg + " imports " + imp +
						"; only appliance/store/boltstore and client/home import bbolt (and the e2e tests)"})
				}
				continue
			}
			rel, ok := strings.CutPrefix(imp, r.module+"/")
			if !ok || f.test {
				continue
			}
			for _, rule := range importRules {
				if !matchesAny(rule.pkgs, f.pkg) || rule.allows(rel) {
					continue
				}
				out = append(out, violation{violationKey{f.pkg, rel}, at + f.pkg + " imports " + rel + "; docs/design.md §11 allows " + rule.describe()})
			}
		}
		if matchesAny(txFree, f.pkg) && !matchesAny(sealedAPIs, f.pkg) {
			out = append(out, mentionsTx(r, f, bboltNames)...)
		}
		if matchesAny(sealedAPIs, f.pkg) && !f.test {
			out = append(out, exportedBbolt(r, f, bboltNames)...)
		}
	}
	return out
}

func bboltAllowed(f *goFile) bool {
	for _, a := range bboltImporters {
		if f.pkg == a.pkg && (f.test || !a.testsOnly) {
			return true
		}
	}
	return false
}

func (rule importRule) allows(rel string) bool {
	if rule.but != nil {
		return !matchesAny(rule.but, rel)
	}
	return matchesAny(rule.may, rel)
}

// describe says what the rule allows, as docs/design.md §11 does.
func (rule importRule) describe() string {
	switch {
	case rule.but != nil:
		return "anything but " + strings.Join(sorted(rule.but), ", ")
	case rule.may == nil:
		return "nothing"
	}
	return strings.Join(sorted(rule.may), ", ")
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

// mentionsTx returns where f names a bbolt transaction, in code or in a
// comment.
func mentionsTx(r *repo, f *goFile, bboltNames map[string]bool) []violation {
	var out []violation
	add := func(at string) {
		out = append(out, violation{violationKey{f.pkg, "bolt.Tx"}, at + ": mentions bolt.Tx; only client/home handles a client transaction"})
	}
	for _, g := range f.ast.Comments {
		for _, c := range g.List {
			if strings.Contains(c.Text, "bolt.Tx") {
				add(r.pos(c.Pos()))
			}
		}
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Tx" {
			if x, ok := sel.X.(*ast.Ident); ok && bboltNames[x.Name] {
				add(r.pos(sel.Pos()))
			}
		}
		return true
	})
	return out
}

// exportedBbolt returns the exported declarations of f whose types name a
// bbolt type: functions, methods of exported types, exported fields and
// methods of exported types, exported variables and types.
func exportedBbolt(r *repo, f *goFile, bboltNames map[string]bool) []violation {
	var out []violation
	check := func(name string, n ast.Node) {
		if n == nil || !mentionsBbolt(n, bboltNames) {
			return
		}
		out = append(out, violation{violationKey{f.pkg, exportsBbolt}, fmt.Sprintf("%s: %s exposes a bbolt type; no transaction or database handle leaves %s", r.pos(n.Pos()), name, f.pkg)})
	}
	for _, decl := range f.ast.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() || d.Recv != nil && !ast.IsExported(receiverName(d.Recv)) {
				continue
			}
			check(d.Name.Name, d.Type)
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							check(n.Name, s.Type)
						}
					}
				case *ast.TypeSpec:
					if !s.Name.IsExported() {
						continue
					}
					var fields *ast.FieldList
					switch t := s.Type.(type) {
					case *ast.StructType:
						fields = t.Fields
					case *ast.InterfaceType:
						fields = t.Methods
					default:
						check(s.Name.Name, s.Type)
						continue
					}
					for _, fld := range fields.List {
						exported := len(fld.Names) == 0 // embedded: promotes its methods
						for _, n := range fld.Names {
							exported = exported || n.IsExported()
						}
						if exported {
							check(s.Name.Name, fld.Type)
						}
					}
				}
			}
		}
	}
	return out
}

func receiverName(recv *ast.FieldList) string {
	if len(recv.List) == 0 {
		return ""
	}
	t := recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

func mentionsBbolt(n ast.Node, bboltNames map[string]bool) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && bboltNames[x.Name] {
				found = true
			}
		}
		return !found
	})
	return found
}

// TestImportRules checks the import rules of docs/design.md §11, that bbolt
// stays in appliance/store/boltstore and client/home, and that no client code
// outside the home touches a transaction.
func TestImportRules(t *testing.T) {
	r := theRepo(t)
	for _, msg := range applyPending(checkImports(r), pending) {
		t.Error(msg)
	}
}

// applyPending returns the messages of the violations pending does not list,
// and one for each entry of pending that matches no violation.
func applyPending(vs []violation, pending []violationKey) []string {
	used := map[violationKey]bool{}
	var out []string
	for _, v := range vs {
		if slices.Contains(pending, v.violationKey) {
			used[v.violationKey] = true
			continue
		}
		out = append(out, v.msg)
	}
	for _, k := range pending {
		if !used[k] {
			out = append(out, fmt.Sprintf("pending entry {%q, %q} matches no violation any more: delete it from internal/archtest/imports_test.go", k.pkg, k.what))
		}
	}
	return out
}
