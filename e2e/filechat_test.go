package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestChatFileInTmux: files in the terminal client, with the built
// binary in tmux (issue 12 point 1). alice sends bob a file of a few MB
// with /file PATH; her line says sent, bob's client fetches it by itself
// and its line says complete with the id to save it by; /save ID DIR
// writes the very bytes alice sent.
func TestChatFileInTmux(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--byte-rate", "1e12", "--byte-burst", "1099511627776")
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	dir := t.TempDir()
	path, sum := writeFile(t, dir, "holiday.bin", 3<<20, "TUI FILE MARKER", 12)
	out := t.TempDir()

	x.start("alice", alice)
	x.start("bob", bob)
	x.waitScreen("alice", "connected", contains("connected │"))
	x.waitScreen("bob", "connected", contains("connected │"))
	x.typeLine("alice", "/msg bob")
	x.typeLine("alice", "/file "+path)
	x.waitScreen("alice", "the file's line", contains("alice: file holiday.bin (3 MiB)"))
	x.waitScreen("alice", "sent", func(s string) bool {
		return strings.Contains(lineAfter(s, "alice: file holiday.bin"), "sent")
	})

	x.waitScreen("bob", "alice in the list", contains("alice"))
	x.typeLine("bob", "/msg alice")
	screen := x.waitScreen("bob", "complete", func(s string) bool {
		return strings.Contains(lineAfter(s, "alice: file holiday.bin"), "complete — /save ")
	})
	m := regexp.MustCompile(`complete — /save ([0-9a-f]{8})`).FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no id on bob's line:\n%s", screen)
	}
	x.typeLine("bob", "/save "+m[1]+" "+out)
	want := filepath.Join(out, "holiday.bin")
	x.waitScreen("bob", "saved", contains("holiday.bin saved to "+want))
	if got := sumFile(t, want); got != sum {
		t.Fatalf("saved file's SHA-256 %x, sent %x", got, sum)
	}
	x.typeLine("bob", "/files")
	x.waitScreen("bob", "the files view", func(s string) bool {
		return regexp.MustCompile(m[1] + ` +saved +3 MiB +from alice +holiday\.bin`).MatchString(s)
	})
	x.typeLine("alice", "/quit")
	x.typeLine("bob", "/quit")
}

// lineAfter is the line of the screen below the first one holding sub.
func lineAfter(screen, sub string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, sub) && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	return ""
}
