package archtest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The checks find what they should in testdata/fixture, a small module with
// a violation of each kind beside code that keeps the rules, and nothing else:
// testdata/want lists what each check must report.

func loadFixture(t *testing.T) *repo {
	t.Helper()
	r, err := loadRepo("testdata/fixture")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// want returns the messages of testdata/want/name.txt: one a line, # for a
// comment.
func want(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "want", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// same reports the difference between the messages got and want, in any order.
func same(t *testing.T, got, want []string) {
	t.Helper()
	for _, m := range got {
		if !slices.Contains(want, m) {
			t.Errorf("unexpected: %s", m)
		}
	}
	for _, m := range want {
		if !slices.Contains(got, m) {
			t.Errorf("missing: %s", m)
		}
	}
}

func TestFixtureCitations(t *testing.T) {
	same(t, checkCitations(loadFixture(t)), want(t, "citations"))
}

func TestFixtureImports(t *testing.T) {
	var got []string
	for _, v := range checkImports(loadFixture(t)) {
		got = append(got, v.pkg+" | "+v.what+" | "+v.msg)
	}
	same(t, got, want(t, "imports"))
}

func TestFixtureDesign(t *testing.T) {
	r := loadFixture(t)
	var got []string
	for _, v := range checkPackageList(r, r.docs[designDoc]) {
		got = append(got, v.msg)
	}
	same(t, got, want(t, "packages"))
	same(t, checkImportTable(r.docs[designDoc]), want(t, "importtable"))
}

// TestPending checks that pending hides what it lists and nothing else, and
// that an entry with nothing left to hide fails.
func TestPending(t *testing.T) {
	vs := []violation{
		{violationKey{"client", bboltPath}, "a"},
		{violationKey{"client", bboltPath}, "b"},
		{violationKey{"ui", "appliance"}, "c"},
	}
	got := applyPending(vs, []violationKey{{"client", bboltPath}, {"appliance", bboltPath}})
	if len(got) != 2 || got[0] != "c" || !strings.Contains(got[1], `{"appliance", "go.etcd.io/bbolt"} matches no violation any more`) {
		t.Errorf("applyPending = %q", got)
	}
}

// TestDesignNotYetWritten checks that while docs/design.md is missing, its
// sections 1 to 13 count as there and nothing else does.
func TestDesignNotYetWritten(t *testing.T) {
	r := &repo{docs: map[string]*mdDoc{}}
	for sec, ok := range map[string]bool{"1": true, "13": true, "14": false, "0": false, "4.2": false} {
		if got := r.resolve(designDoc, sec) == ""; got != ok {
			t.Errorf("resolve(%s, %s) resolved = %v, want %v", designDoc, sec, got, ok)
		}
	}
	if r.resolve("docs/protocol.md", "1") == "" {
		t.Error("a missing docs/protocol.md resolved")
	}
}

func TestRangeEnd(t *testing.T) {
	for _, c := range []struct{ start, end, want string }{
		{"9.2", "3", "9.3"}, {"4", "6", "6"}, {"2.4", "2.5", "2.5"}, {"10", "11", "11"}, {"1.2.3", "4.5", "1.4.5"},
	} {
		if got := rangeEnd(c.start, c.end); got != c.want {
			t.Errorf("rangeEnd(%s, %s) = %s, want %s", c.start, c.end, got, c.want)
		}
	}
}
