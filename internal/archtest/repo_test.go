package archtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// repo is a module's sources as the checks see them: every Go file parsed with
// its comments, and every markdown document with its numbered headings.
type repo struct {
	root   string // directory holding go.mod
	module string // module path from go.mod
	fset   *token.FileSet
	files  []*goFile
	docs   map[string]*mdDoc // by slash path relative to root: "docs/protocol.md"
}

type goFile struct {
	path string // slash path relative to root
	pkg  string // directory relative to root, "." for the root
	test bool   // a _test.go file
	ast  *ast.File
}

// mdDoc is a markdown document.
type mdDoc struct {
	path     string
	lines    []string
	sections map[string]bool // section numbers of its headings: "9", "9.2"
	headings []heading
}

type heading struct {
	level int // number of #
	num   string
	line  int // 0-based index into lines
}

// headingRE matches the numbered headings of docs/: "## 9. Title",
// "### 9.2 Title", "#### 9.2.1 Title".
var headingRE = regexp.MustCompile(`^(#{1,6})\s+(\d+(?:\.\d+)*)\.?(?:\s|$)`)

// fenceRE opens or closes a fenced code block, whose lines are no headings.
var fenceRE = regexp.MustCompile("^\\s*(```|~~~)")

var realRepo = sync.OnceValues(func() (*repo, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	return loadRepo(root)
})

// theRepo returns this module's sources, loaded once for all tests.
func theRepo(t *testing.T) *repo {
	t.Helper()
	r, err := realRepo()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// moduleRoot walks up from the working directory to the directory with go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("archtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// loadRepo reads the module at root. It skips what the go tool skips:
// testdata, directories starting with . or _, and nested modules.
func loadRepo(root string) (*repo, error) {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	r := &repo{root: root, fset: token.NewFileSet(), docs: map[string]*mdDoc{}}
	for line := range strings.Lines(string(mod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			r.module = strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	if r.module == "" {
		return nil, fmt.Errorf("archtest: %s/go.mod names no module", root)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name := d.Name()
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(name, ".go"):
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			// Named rel, so that positions print relative to the module root.
			f, err := parser.ParseFile(r.fset, rel, src, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			r.files = append(r.files, &goFile{path: rel, pkg: path.Dir(rel), test: strings.HasSuffix(name, "_test.go"), ast: f})
		case strings.HasSuffix(name, ".md"):
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			r.docs[rel] = parseMarkdown(rel, b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func parseMarkdown(rel string, b []byte) *mdDoc {
	d := &mdDoc{path: rel, sections: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	fenced := false
	for sc.Scan() {
		line := sc.Text()
		d.lines = append(d.lines, line)
		if fenceRE.MatchString(line) {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			d.sections[m[2]] = true
			d.headings = append(d.headings, heading{level: len(m[1]), num: m[2], line: len(d.lines) - 1})
		}
	}
	return d
}

// section returns the lines of the section numbered num, up to the next
// heading of the same or a higher level, or nil if there is none.
func (d *mdDoc) section(num string) []string {
	for i, h := range d.headings {
		if h.num != num {
			continue
		}
		end := len(d.lines)
		for _, next := range d.headings[i+1:] {
			if next.level <= h.level {
				end = next.line
				break
			}
		}
		return d.lines[h.line+1 : end]
	}
	return nil
}

// packages returns the module's package directories relative to the root,
// the root itself as ".".
func (r *repo) packages() []string {
	seen := map[string]bool{}
	for _, f := range r.files {
		seen[f.pkg] = true
	}
	var pkgs []string
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}

// pos is file:line of p.
func (r *repo) pos(p token.Pos) string {
	ps := r.fset.Position(p)
	return ps.Filename + ":" + strconv.Itoa(ps.Line)
}

// codeSpanRE finds `code spans` in markdown.
var codeSpanRE = regexp.MustCompile("`([^`]+)`")

// codeSpans returns the code spans of s: "`ui`, `ui/uitest`" gives ui, ui/uitest.
func codeSpans(s string) []string {
	var out []string
	for _, m := range codeSpanRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// tableRows returns the cells of the markdown table rows in lines, without
// the header row and the separator row.
func tableRows(lines []string) [][]string {
	var rows [][]string
	inTable := false
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !inTable { // the header row
			inTable = true
			continue
		}
		if strings.Trim(strings.Join(cells, ""), "-: ") == "" { // the separator row
			continue
		}
		rows = append(rows, cells)
	}
	return rows
}
