package archtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

const designDoc = "docs/design.md"

// pendingPackages are the differences between the package list of
// docs/design.md §1 and today's tree, while issue 16's restructuring makes
// these packages on other branches. Removed when
// the restructuring lands: an entry that is no difference any more fails the
// test, so that the list only shrinks.
var pendingPackages = []string{}

// checkPackageList returns the packages of r missing from the table of
// docs/design.md §1 and the entries of that table that are no package, as
// violations keyed by the package.
func checkPackageList(r *repo, d *mdDoc) []violation {
	listed := map[string]int{} // package → line
	rows := tableRows(d.section("1"))
	if len(rows) == 0 {
		return []violation{{msg: "docs/design.md §1 has no table of packages"}}
	}
	for _, row := range rows {
		for _, p := range codeSpans(row[0]) {
			if !strings.HasSuffix(p, ".go") { // main.go: the root package
				listed[p] = 0
			}
		}
	}
	var out []violation
	exists := map[string]bool{}
	for _, p := range r.packages() {
		exists[p] = true
		if _, ok := listed[p]; !ok && p != "." {
			out = append(out, violation{violationKey{p, "unlisted"}, fmt.Sprintf("package %s is not in the table of docs/design.md §1", p)})
		}
	}
	for _, p := range slices.Sorted(maps.Keys(listed)) {
		if !exists[p] {
			out = append(out, violation{violationKey{p, "unlisted"}, fmt.Sprintf("docs/design.md §1 lists %s, which is no package", p)})
		}
	}
	return out
}

// TestDesignListsPackages checks that docs/design.md §1 lists every package
// of the module and nothing else.
func TestDesignListsPackages(t *testing.T) {
	r := theRepo(t)
	d := r.docs[designDoc]
	if d == nil {
		t.Skip("no docs/design.md yet")
	}
	var keys []violationKey
	for _, p := range pendingPackages {
		keys = append(keys, violationKey{p, "unlisted"})
	}
	for _, msg := range applyPending(checkPackageList(r, d), keys) {
		t.Error(msg)
	}
}

// designImportTable reads the table of docs/design.md §11: package → what it
// may import, as importRule.describe says it.
func designImportTable(d *mdDoc) (map[string]string, error) {
	rows := tableRows(d.section("11"))
	if len(rows) == 0 {
		return nil, fmt.Errorf("docs/design.md §11 has no table of import rules")
	}
	table := map[string]string{}
	for _, row := range rows {
		if len(row) < 2 {
			return nil, fmt.Errorf("docs/design.md §11: row %q has no second column", strings.Join(row, " | "))
		}
		var rule importRule
		switch may := row[1]; {
		case strings.HasPrefix(may, "nothing"):
		case strings.HasPrefix(may, "anything but"):
			rule.but = codeSpans(may)
		default:
			rule.may = codeSpans(may)
		}
		for _, p := range codeSpans(row[0]) {
			table[p] = rule.describe()
		}
	}
	return table, nil
}

// checkImportTable compares importRules with the table of docs/design.md §11.
func checkImportTable(d *mdDoc) []string {
	doc, err := designImportTable(d)
	if err != nil {
		return []string{err.Error()}
	}
	code := map[string]string{}
	for _, rule := range importRules {
		for _, p := range rule.pkgs {
			code[p] = rule.describe()
		}
	}
	var out []string
	for _, p := range slices.Sorted(maps.Keys(code)) {
		switch rule, ok := doc[p]; {
		case !ok:
			out = append(out, fmt.Sprintf("docs/design.md §11 has no row for %s (importRules: %s)", p, code[p]))
		case rule != code[p]:
			out = append(out, fmt.Sprintf("docs/design.md §11 says %s may import %s; importRules says %s", p, rule, code[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(doc)) {
		if _, ok := code[p]; !ok {
			out = append(out, fmt.Sprintf("docs/design.md §11 has a row for %s that importRules lacks", p))
		}
	}
	return out
}

// TestDesignImportTable checks that docs/design.md §11 and importRules say
// the same.
func TestDesignImportTable(t *testing.T) {
	d := theRepo(t).docs[designDoc]
	if d == nil {
		t.Skip("no docs/design.md yet")
	}
	for _, msg := range checkImportTable(d) {
		t.Error(msg)
	}
}
