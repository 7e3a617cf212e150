package archtest

import (
	"fmt"
	"go/ast"
	"go/token"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Citations. Code and documents cite sections as "docs/design.md §4" or
// "protocol.md §9.2" (a bare document name is one under docs/), continue a
// citation with a bare section ("protocol.md §9.2 and §9.3") and cite ranges
// ("protocol.md §4–6"). A bare section cites the nearest document named before
// it in the same block: a comment group or a string literal in Go; a
// paragraph, a table row, a heading or a code block in markdown, where a
// section with no document before it cites the file itself and, as
// security.md writes it, the plain name of a document under docs/ ("protocol")
// names that document. A citation resolves when that file has a heading
// numbered so ("## 9. Title", "### 9.2 Title"). Citations of external
// specifications (X3DH, PQXDH, Double Ratchet, RFC 9000 and the like) are not
// checked, but the reader must never have to guess: in Go, a section with no
// document named before it in its comment fails as ambiguous, and so does one
// right after a document's plain name or a name the repository never had.

var (
	// sectionRE is one citation: the section, and the end of a range.
	sectionRE = regexp.MustCompile(`§(\d+(?:\.\d+)*)(?:[–-]§?(\d+(?:\.\d+)*))?`)
	// localDocRE is a document of the repository, with or without a path.
	localDocRE = regexp.MustCompile(`(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-]+\.md\b`)
	// externalRE names the external specifications the code cites by section.
	// Plain "Signal" is not one: it is also a wire message of protocol.md §4,
	// whose citations must stay checked.
	externalRE = regexp.MustCompile(`\b(?:PQXDH|X3DH|XEdDSA|Sesame|Double\s+Ratchet|libsignal|STREAM|RFC\s?\d{3,5}|FIPS\s?\d{2,3}(?:-\d+)?|NIST\s+SP\s?\d{3}-\d+[A-Z]?)\b`)
	// wordBeforeRE is the word right before a citation.
	wordBeforeRE = regexp.MustCompile(`\b([A-Za-z]+)\s*$`)
	// connectorRE is what may stand between two citations of a list, in
	// markdown: "protocol.md §8, §9", "protocol.md §6.1 and §6.2".
	connectorRE = regexp.MustCompile(`^[\s,;/]*(?:and|or|to)?[\s,;/]*$`)
	// plainNameRE is a word right before a citation, as a possible plain
	// document name.
	plainNameRE = regexp.MustCompile(`\b([a-z]+)\s*§\d`)
)

// retiredNames are documents the code once cited that the repository never had.
var retiredNames = map[string]bool{"DESIGN": true, "STYLE": true}

// designSections is how many sections docs/design.md has: while a worktree
// does not have the file yet, its citations of §1 to §13 count as resolved.
const designSections = 13

// block is a run of text in which a bare § continues the nearest document
// named before it.
type block struct {
	file       string // slash path relative to the module root
	text       string
	lines      []int  // the file's line number of each line of text
	defaultDoc string // what a § with no document before it cites; "" makes it ambiguous
}

func (b *block) lineAt(off int) int {
	return b.lines[strings.Count(b.text[:off], "\n")]
}

// add appends s, which starts on line and spans as many lines as it has.
func (b *block) add(s string, line int) {
	if len(b.lines) > 0 {
		b.text += "\n"
	}
	b.text += s
	for i := range strings.Count(s, "\n") + 1 {
		b.lines = append(b.lines, line+i)
	}
}

// goBlocks returns the comment groups and the string literals of f that
// contain a §.
func goBlocks(r *repo, f *goFile) []*block {
	var blocks []*block
	for _, g := range f.ast.Comments {
		b := &block{file: f.path}
		for _, c := range g.List {
			t := c.Text
			if strings.HasPrefix(t, "//") {
				t = t[2:]
			} else {
				t = strings.TrimSuffix(t[2:], "*/")
			}
			b.add(t, r.fset.Position(c.Slash).Line)
		}
		if strings.Contains(b.text, "§") {
			blocks = append(blocks, b)
		}
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || !strings.Contains(lit.Value, "§") {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		line := r.fset.Position(lit.Pos()).Line
		b := &block{file: f.path}
		if lit.Value[0] == '`' {
			b.add(s, line)
		} else { // escaped newlines are not lines of the file
			b.add(strings.ReplaceAll(s, "\n", " "), line)
		}
		blocks = append(blocks, b)
		return true
	})
	return blocks
}

// mdBlocks splits a markdown document into paragraphs, table rows, headings
// and fenced code blocks.
func mdBlocks(d *mdDoc) []*block {
	var blocks []*block
	var cur *block
	flush := func() {
		if cur != nil && strings.Contains(cur.text, "§") {
			blocks = append(blocks, cur)
		}
		cur = nil
	}
	fenced := false
	for i, line := range d.lines {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		switch {
		case fenceRE.MatchString(line):
			flush()
			fenced = !fenced
			if fenced {
				cur = &block{file: d.path, defaultDoc: d.path}
			}
			continue
		case fenced:
		case trimmed == "":
			flush()
			continue
		case strings.HasPrefix(trimmed, "|") || strings.HasPrefix(trimmed, "#"):
			flush()
			cur = &block{file: d.path, defaultDoc: d.path}
			cur.add(line, n)
			flush()
			continue
		}
		if cur == nil {
			cur = &block{file: d.path, defaultDoc: d.path}
		}
		cur.add(line, n)
	}
	flush()
	return blocks
}

// docName is a document named in a block.
type docName struct {
	start, end int
	name       string // as written
	path       string // relative to the module root; "" for an external one
}

// checkCitations returns every citation of r that does not resolve, as
// "file:line: what is wrong".
func checkCitations(r *repo) []string {
	var blocks []*block
	for _, f := range r.files {
		blocks = append(blocks, goBlocks(r, f)...)
	}
	for _, p := range slices.Sorted(maps.Keys(r.docs)) {
		blocks = append(blocks, mdBlocks(r.docs[p])...)
	}
	var bad []string
	for _, b := range blocks {
		bad = append(bad, r.checkBlock(b)...)
	}
	return bad
}

func (r *repo) checkBlock(b *block) []string {
	markdown := b.defaultDoc != ""
	var names []docName
	for _, m := range localDocRE.FindAllStringIndex(b.text, -1) {
		name := b.text[m[0]:m[1]]
		names = append(names, docName{m[0], m[1], name, resolveDoc(name, b.file)})
	}
	for _, m := range externalRE.FindAllStringIndex(b.text, -1) {
		names = append(names, docName{m[0], m[1], b.text[m[0]:m[1]], ""})
	}
	if markdown {
		for _, m := range plainNameRE.FindAllStringSubmatchIndex(b.text, -1) {
			name := b.text[m[2]:m[3]]
			if r.isDocStem(name) {
				names = append(names, docName{m[2], m[3], name, "docs/" + name + ".md"})
			}
		}
	}
	var bad []string
	var prev *docName // the document of the previous citation, in markdown
	prevEnd := -1
	for _, m := range sectionRE.FindAllStringSubmatchIndex(b.text, -1) {
		at := fmt.Sprintf("%s:%d: ", b.file, b.lineAt(m[0]))
		written := b.text[m[0]:m[1]]
		if w := wordBeforeRE.FindStringSubmatch(b.text[:m[0]]); w != nil && (retiredNames[w[1]] || !markdown && r.isDocStem(w[1])) {
			bad = append(bad, at+fmt.Sprintf("%q names no file: cite a document as docs/NAME.md %s", w[1]+" "+written, written))
			continue
		}
		var near *docName
		for i := range names {
			if names[i].end <= m[0] && (near == nil || names[i].start > near.start) {
				near = &names[i]
			}
		}
		if markdown && (near == nil || strings.TrimSpace(b.text[near.end:m[0]]) != "") {
			// Prose: a bare section continues a list of citations, or
			// else cites the document it is in.
			near = nil
			if prevEnd >= 0 && connectorRE.MatchString(b.text[prevEnd:m[0]]) {
				near = prev
			}
		}
		prev, prevEnd = near, m[1]
		var doc, cite string
		switch {
		case near != nil && near.path == "":
			continue // an external specification
		case near != nil:
			doc = near.path
			cite = near.name + " " + written
			if strings.TrimSpace(b.text[near.end:m[0]]) != "" {
				cite = written + " (continuing " + near.name + ")"
			}
		case markdown:
			doc, cite = b.defaultDoc, written
		default:
			bad = append(bad, at+fmt.Sprintf("ambiguous citation %s: no document is named before it in its comment", written))
			continue
		}
		secs := []string{b.text[m[2]:m[3]]}
		if m[4] >= 0 {
			secs = append(secs, rangeEnd(secs[0], b.text[m[4]:m[5]]))
		}
		for _, sec := range secs {
			if msg := r.resolve(doc, sec); msg != "" {
				bad = append(bad, at+cite+" does not resolve: "+msg)
			}
		}
	}
	return bad
}

// isDocStem reports whether w is the plain name of a document under docs/:
// "protocol" for docs/protocol.md.
func (r *repo) isDocStem(w string) bool {
	_, ok := r.docs["docs/"+w+".md"]
	return ok || w == "design" // cited before the lead's design.md lands
}

// resolveDoc returns the path relative to the module root of the document
// name cited in file: a bare name is one under docs/.
func resolveDoc(name, file string) string {
	switch {
	case strings.HasPrefix(name, "./") || strings.HasPrefix(name, "../"):
		return path.Join(path.Dir(file), name)
	case strings.Contains(name, "/"):
		return path.Clean(name)
	default:
		return "docs/" + name
	}
}

// rangeEnd completes the end of a range: protocol.md §9.2–3 ends at 9.3,
// protocol.md §4–6 at 6.
func rangeEnd(start, end string) string {
	s, e := strings.Split(start, "."), strings.Split(end, ".")
	if len(e) >= len(s) {
		return end
	}
	return strings.Join(append(s[:len(s)-len(e):len(s)-len(e)], e...), ".")
}

// resolve returns why section sec of doc does not exist, or "" if it does.
func (r *repo) resolve(doc, sec string) string {
	d := r.docs[doc]
	if d == nil {
		if n, err := strconv.Atoi(sec); err == nil && doc == "docs/design.md" && n >= 1 && n <= designSections {
			return "" // the lead is writing it
		}
		return "there is no " + doc
	}
	if !d.sections[sec] {
		return doc + " has no heading " + sec
	}
	return ""
}

// TestCitations fails on every § citation in the module's Go sources and
// markdown documents that does not name an existing heading.
func TestCitations(t *testing.T) {
	r := theRepo(t)
	for _, msg := range checkCitations(r) {
		t.Error(msg)
	}
}
