package ui

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/uniseg"
)

// Text from the network (names, messages, error strings) is drawn cell by
// cell, never through tview's tag parser, and control characters are
// replaced first: a message must not be able to move the cursor, recolour
// the terminal, or reorder what is around it.

const replacement = '\uFFFD'

// known reports whether t is a real time: neither the zero time nor the
// Unix epoch a store writes for "none".
func known(t time.Time) bool { return !t.IsZero() && t.Unix() > 0 }

// sanitize makes text safe to draw: invalid UTF-8, control characters and
// bidirectional overrides become U+FFFD; tabs become spaces; newlines stay.
func sanitize(text string) string {
	clean := true
	for _, r := range text {
		if r == utf8.RuneError || (r != '\n' && unsafeRune(r)) {
			clean = false
			break
		}
	}
	if clean {
		return text
	}
	var b strings.Builder
	text = strings.ReplaceAll(text, "\r\n", "\n")
	for _, r := range text {
		switch {
		case r == '\n':
			b.WriteRune(r)
		case r == '\t':
			b.WriteString("    ")
		case r == utf8.RuneError || unsafeRune(r):
			b.WriteRune(replacement)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sanitizeLine is sanitize for text that must stay on one line.
func sanitizeLine(text string) string {
	return strings.ReplaceAll(sanitize(text), "\n", " ")
}

func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069: // bidi embeddings, overrides, isolates
		return true
	case r == 0x200E || r == 0x200F || r == 0x061C: // bidi marks
		return true
	}
	return false
}

// span is text in one style.
type span struct {
	text  string
	style tcell.Style
}

// cell is one grapheme cluster as drawn.
type cell struct {
	text    string
	width   int
	style   tcell.Style
	nobreak bool // wrap does not break a line at this space
}

// glue makes the spaces of l, but for a leading one, unbreakable.
func glue(l line) line {
	for i := 1; i < len(l); i++ {
		l[i].nobreak = true
	}
	return l
}

// breaks reports whether wrap may break a line at c.
func (c cell) breaks() bool { return c.text == " " && !c.nobreak }

// line is a row of cells.
type line []cell

func (l line) width() int {
	w := 0
	for _, c := range l {
		w += c.width
	}
	return w
}

// cells splits spans into grapheme clusters; zero-width clusters are
// dropped (they have no cell of their own).
func cells(spans ...span) line {
	var out line
	for _, s := range spans {
		rest, state := s.text, -1
		for rest != "" {
			var cl string
			var w int
			cl, rest, w, state = uniseg.FirstGraphemeClusterInString(rest, state)
			if cl == "\n" {
				out = append(out, cell{text: cl, style: s.style})
				continue
			}
			if w == 0 {
				continue
			}
			out = append(out, cell{text: cl, width: w, style: s.style})
		}
	}
	return out
}

// textWidth is the number of columns text takes.
func textWidth(text string) int { return cells(span{text: text}).width() }

// wrap breaks cs into lines of at most width columns, at spaces where it
// can, and at "\n" cells. Lines after the first begin with indent columns
// of blank (when that leaves room for text).
func wrap(cs line, width, indent int) []line {
	if width < 1 {
		width = 1
	}
	if indent > width/2 {
		indent = 0
	}
	var lines []line
	var cur line
	start := 0 // width of the current line's indentation
	curW := 0
	newLine := func() {
		lines = append(lines, cur)
		cur = nil
		curW = 0
		for range indent {
			cur = append(cur, cell{text: " ", width: 1})
		}
		curW, start = indent, indent
	}
	trimRight := func() {
		for len(cur) > 0 && curW > start && cur[len(cur)-1].breaks() {
			curW -= cur[len(cur)-1].width
			cur = cur[:len(cur)-1]
		}
	}
	for i := 0; i < len(cs); {
		c := cs[i]
		switch {
		case c.text == "\n":
			newLine()
			i++
			continue
		case c.breaks():
			if curW+c.width <= width {
				cur = append(cur, c)
				curW += c.width
			} else {
				trimRight()
				newLine()
			}
			i++
			continue
		}
		j, ww := i, 0
		for j < len(cs) && !cs[j].breaks() && cs[j].text != "\n" {
			ww += cs[j].width
			j++
		}
		if curW+ww <= width {
			cur = append(cur, cs[i:j]...)
			curW += ww
			i = j
			continue
		}
		if curW > start && ww <= width-indent {
			trimRight()
			newLine()
			continue
		}
		// A word longer than a line: break it anywhere.
		for ; i < j; i++ {
			if curW+cs[i].width > width && curW > start {
				newLine()
			}
			cur = append(cur, cs[i])
			curW += cs[i].width
		}
	}
	return append(lines, cur)
}

// drawLine draws l at (x, y), clipped to width columns; the rest of the
// row up to width is filled with fill.
func drawLine(screen tcell.Screen, x, y, width int, l line, fill tcell.Style) {
	col := 0
	for _, c := range l {
		if col+c.width > width {
			break
		}
		r, comb := splitCluster(c.text)
		screen.SetContent(x+col, y, r, comb, c.style)
		col += c.width
	}
	for ; col < width; col++ {
		screen.SetContent(x+col, y, ' ', nil, fill)
	}
}

func splitCluster(cl string) (rune, []rune) {
	rs := []rune(cl)
	if len(rs) == 0 {
		return ' ', nil
	}
	return rs[0], rs[1:]
}

// truncate cuts l to width columns, ending in "…" when it had to cut.
func truncate(l line, width int) line {
	if l.width() <= width {
		return l
	}
	if width <= 0 {
		return nil
	}
	var out line
	w := 0
	for _, c := range l {
		if w+c.width > width-1 {
			break
		}
		out = append(out, c)
		w += c.width
	}
	style := tcell.StyleDefault
	if len(out) > 0 {
		style = out[len(out)-1].style
	}
	return append(out, cell{text: "…", width: 1, style: style})
}
