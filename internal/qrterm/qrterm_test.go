package qrterm

import (
	"strings"
	"testing"

	"rsc.io/qr"
)

// The drawing holds every module of the code, light as block halves, with
// the quiet zone around it.
func TestRender(t *testing.T) {
	const text = "securechat link alice ABCD-EFGH-JKMN"
	s, err := Render(text)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := qr.Encode(text, qr.M)
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	n := code.Size + 2*quiet
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines for %d modules", len(lines), n)
	}
	for row, line := range lines {
		cells := []rune(line)
		if len(cells) != n {
			t.Fatalf("line %d has %d cells, want %d", row, len(cells), n)
		}
		for x, c := range cells {
			for half, y := range []int{2 * row, 2*row + 1} {
				if y >= n {
					continue
				}
				light := c == '█' || (half == 0 && c == '▀') || (half == 1 && c == '▄')
				mx, my := x-quiet, y-quiet
				dark := mx >= 0 && my >= 0 && mx < code.Size && my < code.Size && code.Black(mx, my)
				if light == dark {
					t.Fatalf("module (%d,%d) drawn light=%v, dark=%v", x, y, light, dark)
				}
			}
		}
	}
}
