package e2e

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestLinkInTmux (issue 11, must show): the terminal client's link flow on
// two homes. A first run on a new home chooses "link", names the account
// and shows a code with its QR code; alice, in her terminal client, types
// /devices approve CODE; the new device starts as alice's second device,
// lists both, and what it sends reaches bob and comes back to both of
// alice's devices.
func TestLinkInTmux(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	x.start("alice", alice)
	x.waitScreen("alice", "connected", contains("connected"))

	home := filepath.Join(t.TempDir(), "phone")
	startFirstRun(x, "phone", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("phone", "register, link or log in", contains("[r/k/l]"))
	x.typeLine("phone", "k")
	x.waitScreen("phone", "user name", contains("User name:"))
	x.typeLine("phone", "alice")
	before := strings.Count(x.screen("phone"), "again:")
	x.waitScreen("phone", "passphrase", contains("new passphrase"))
	x.typeLine("phone", "phones passphrase")
	x.waitScreen("phone", "passphrase again", count("again:", before+1))
	x.typeLine("phone", "phones passphrase")
	sc := x.waitScreen("phone", "the code", contains("Link code: "))
	code := regexp.MustCompile(`Link code: ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})`).FindStringSubmatch(sc)
	if code == nil {
		t.Fatalf("no code on the screen:\n%s", sc)
	}
	if !strings.Contains(sc, "▀") && !strings.Contains(sc, "▄") {
		t.Fatalf("no QR code on the screen:\n%s", sc)
	}
	x.typeLine("alice", "/devices approve "+code[1])
	x.waitScreen("alice", "the approval", contains("linked device 2"))
	x.waitScreen("phone", "the main screen", contains("connected │"))

	x.typeLine("phone", "/devices")
	x.waitScreen("phone", "both devices", func(s string) bool {
		return strings.Contains(s, "Your devices:") && strings.Contains(s, "(this device)") && strings.Contains(s, "  1  ")
	})
	x.typeLine("phone", "/msg bob")
	x.typeLine("phone", "hello bob, from my phone")
	x.waitScreen("phone", "stored", func(s string) bool { return strings.Contains(lineWith(s, "hello bob, from my phone"), "✓") })
	if got := texts(bob.recv(t, "0s")); !slices.Contains(got, "hello bob, from my phone") {
		t.Fatalf("bob got %q", got)
	}
	bob.send(t, "alice", "hello both of you")
	x.waitScreen("phone", "bob's answer", contains("bob: hello both of you"))
	x.typeLine("alice", "/msg bob")
	x.waitScreen("alice", "the phone's message as sent, and bob's answer", func(s string) bool {
		return strings.Contains(s, "hello bob, from my phone") && strings.Contains(s, "bob: hello both of you")
	})
}
