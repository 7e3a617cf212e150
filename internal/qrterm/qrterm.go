// Package qrterm draws a QR code in a terminal (docs/design.md §7, the
// link command): two rows of modules per line of text, with Unicode half
// blocks, dark modules on a light quiet zone four modules wide, as a phone
// camera reads a code shown in a terminal of either colour scheme.
package qrterm

import (
	"strings"

	"rsc.io/qr"
)

// quiet is the light border the QR standard asks for, in modules.
const quiet = 4

// Render returns text as a QR code drawn with "█", "▀", "▄" and spaces:
// light modules are drawn as blocks, dark ones as spaces, so that on a
// dark terminal the code shows dark on light.
func Render(text string) (string, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", err
	}
	n := code.Size + 2*quiet
	dark := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		return x >= 0 && y >= 0 && x < code.Size && y < code.Size && code.Black(x, y)
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := range n {
			top, bottom := !dark(x, y), y+1 < n && !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}
