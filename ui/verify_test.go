package ui_test

import (
	"strings"
	"testing"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/ui/uitest"
)

const number = "109298690037597182824433643673902327584245815618333740623784"

// wantGrid is number as the verification screen lays it out.
var wantGrid = []string{
	"10929 86900 37597 18282",
	"44336 43673 90232 75842",
	"45815 61833 37406 23784",
}

func TestVerifyScreen(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	b.SetSafetyNumber("bob", number)
	x := start(t, b)
	x.term.Type("/verify\n") // the open conversation
	lines := x.term.WaitText(t, "Mark verified")
	for _, row := range wantGrid {
		if !uitest.Contains(lines, row) {
			t.Errorf("safety number row %q missing:\n%s", row, x.term.Text())
		}
	}
	for _, want := range []string{"Verify bob", "Safety number with bob", "Compare these 60 digits", "Status: not verified", "Close"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("verification screen lacks %q:\n%s", want, x.term.Text())
		}
	}
	x.waitCalls(1, "SafetyNumber", "bob")

	// Keys go to the screen, not to the input; Close has the focus, and
	// Shift-Tab goes to "Mark verified".
	x.term.Type("z")
	x.term.Press(tcell.KeyBacktab)
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "Verify", "bob")
	lines = x.waitStatus("bob: verified")
	if uitest.Contains(lines, "Mark verified") {
		t.Errorf("screen still open:\n%s", x.term.Text())
	}
	for _, want := range []string{"bob  verified ✓", "you marked bob verified"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("no %q after verifying:\n%s", want, x.term.Text())
		}
	}
	if got := inputLine(lines); got != "bob> message bob, or /help" {
		t.Errorf("input %q: a key meant for the screen reached it", got)
	}

	// Verified: only Close, which Esc does too.
	x.term.Type("/verify bob\n")
	lines = x.term.WaitText(t, "Status: verified")
	if uitest.Contains(lines, "Mark verified") {
		t.Errorf("Mark verified offered again:\n%s", x.term.Text())
	}
	x.term.Press(tcell.KeyEscape)
	x.term.WaitNoText(t, "Status: verified")
	x.term.Type("ok")
	x.waitInput("bob> ", "ok")
}

// TestVerifyScreenClose: the screen opens with the focus on Close, so an
// Enter pressed before reading (or meant for the input) closes it and
// marks nothing verified, accepts no key.
func TestVerifyScreenClose(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b)
	x.term.Type("/verify carol\n")
	x.term.WaitText(t, "Safety number with carol")
	x.term.Press(tcell.KeyEnter)
	x.term.WaitNoText(t, "Safety number with carol")
	if n := x.calls("Verify"); n != 0 {
		t.Errorf("Enter on the screen just opened called Verify")
	}
	x.term.Type("/verify erin\n") // a changed key
	x.term.WaitText(t, "Accept new key")
	x.term.Press(tcell.KeyEnter)
	x.term.WaitNoText(t, "Accept new key")
	if n := x.calls("Trust"); n != 0 {
		t.Errorf("Enter on the screen just opened accepted a new key")
	}
	// Tab moves from Close to the other button, and back.
	x.term.Type("/verify carol\n")
	x.term.WaitText(t, "Safety number with carol")
	x.term.Press(tcell.KeyTab)
	x.term.Press(tcell.KeyTab)
	x.term.Press(tcell.KeyEnter)
	x.term.WaitNoText(t, "Safety number with carol")
	if n := x.calls("Verify"); n != 0 {
		t.Errorf("Close called Verify")
	}
	x.term.Type("ok")
	x.waitInput("bob> ", "ok")
}

func TestIdentityChanged(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b)
	x.term.WaitText(t, "bob: hi alice")

	b.SetIdentityChanged("bob", true)
	b.SetSafetyNumber("bob", number)
	b.Emit(client.UIEvent{Type: client.UIIdentityChanged, Conversation: chat.Peer("bob")})
	lines := x.waitStatus("bob: IDENTITY CHANGED")
	for _, want := range []string{"WARNING: bob's identity key has changed", "IDENTITY CHANGED: sending blocked, /verify bob", " ! bob"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("no %q:\n%s", want, x.term.Text())
		}
	}

	// Sending is blocked with the engine's error, said as what to do
	// here; the text stays.
	x.term.Type("still there?\n")
	lines = x.term.WaitText(t, "not sent: bob's safety number changed: compare it")
	if !strings.Contains(x.term.Text(), "with /verify bob\n") || uitest.Contains(lines, "securechat trust") {
		t.Errorf("the command line's advice in the terminal client:\n%s", x.term.Text())
	}
	x.waitInput("bob> ", "still there?")

	// The verification screen warns and offers to accept the new key.
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/verify bob\n")
	lines = x.term.WaitText(t, "Accept new key")
	for _, want := range []string{"bob's identity key has changed.", "New safety number", wantGrid[0], wantGrid[2]} {
		if !uitest.Contains(lines, want) {
			t.Errorf("no %q:\n%s", want, x.term.Text())
		}
	}
	if uitest.Contains(lines, "Mark verified") {
		t.Errorf("a changed key can be marked verified before it is accepted")
	}
	x.term.Press(tcell.KeyBacktab) // from Close to Accept new key
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "Trust", "bob", number) // the key of the number shown
	// The screen now shows the accepted key, which can be verified.
	x.term.WaitText(t, "Mark verified")
	lines = x.waitStatus("bob: not verified")
	if uitest.Contains(lines, "IDENTITY CHANGED") || uitest.Contains(lines, " ! bob") {
		t.Errorf("still marked changed after accepting:\n%s", x.term.Text())
	}
	x.term.Press(tcell.KeyEscape)
	x.term.WaitText(t, "accepted bob's new identity key")

	x.term.Type("still there?\n")
	x.term.WaitText(t, "alice: still there? …")
}

func TestTrustCommand(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.WaitText(t, " ! erin")
	x.term.Type("/msg erin\n")
	x.waitStatus("erin: IDENTITY CHANGED")
	x.term.Type("/trust erin\n")
	x.waitCalls(1, "Trust", "erin")
	lines := x.waitStatus("erin: not verified")
	if uitest.Contains(lines, " ! erin") {
		t.Errorf("erin still marked changed:\n%s", x.term.Text())
	}
	if !uitest.Contains(lines, "accepted erin's new identity key") {
		t.Errorf("no confirmation:\n%s", x.term.Text())
	}
	x.term.Type("/trust a b\n")
	x.term.WaitText(t, "usage: /trust NAME")
	if !strings.Contains(statusLine(x.term.Lines()), "erin") {
		t.Errorf("status lost the open conversation")
	}
}

// The accept button accepts the key whose number the screen showed: a key
// swapped in after it was shown is refused, not accepted.
func TestAcceptOnlyTheKeyShown(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b)
	x.term.WaitText(t, "bob: hi alice")
	b.SetIdentityChanged("bob", true)
	b.SetSafetyNumber("bob", number)
	x.term.Type("/verify bob\n")
	x.term.WaitText(t, "Accept new key")
	swapped := strings.Repeat("9", 60)
	b.SetSafetyNumber("bob", swapped) // the server swaps the key meanwhile
	x.term.Press(tcell.KeyBacktab)    // from Close to Accept new key
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "Trust", "bob", number)
	x.term.WaitText(t, "Could not accept the new key")
	if x.calls("Trust", "bob", swapped) != 0 || x.calls("Trust", "bob", "") != 0 {
		t.Fatalf("the accept button accepted a key it did not show")
	}
}

// A message that came with an identity key not accepted for its sender is
// shown marked, never as if it were from that contact.
func TestUnverifiedMessageMarked(t *testing.T) {
	t.Parallel()
	b := uitest.NewBackend("alice")
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("bob"), IdentityChanged: true},
		client.HistoryEntry{Text: "it is really me", From: "bob", Time: t0, Unverified: true},
		client.HistoryEntry{Text: "from the old key", From: "bob", Time: t0},
	)
	x := start(t, b)
	lines := x.term.WaitText(t, "it is really me")
	if r := uitest.Row(lines, "it is really me"); r < 0 || !strings.Contains(lines[r], "(unverified) bob: it is really me") {
		t.Errorf("the unverified message is not marked:\n%s", x.term.Text())
	}
	if r := uitest.Row(lines, "from the old key"); r < 0 || strings.Contains(lines[r], "unverified") {
		t.Errorf("a verified message is marked:\n%s", x.term.Text())
	}
}

// TestIdentityChangedSendFailure (issue 14 review): a queued message the
// engine could not send because the contact's identity key changed says on
// its line what to do here, live and when the history is read again; any
// other failure keeps its own words.
func TestIdentityChangedSendFailure(t *testing.T) {
	t.Parallel()
	blocked := (&client.IdentityChangedError{User: "bob"}).Error()
	b := uitest.NewBackend("alice")
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("bob")},
		client.HistoryEntry{ID: "01", Text: "sent before", From: "alice", Outgoing: true, Time: t0, State: client.StateFailed, Error: blocked},
		client.HistoryEntry{ID: "02", Text: "too big", From: "alice", Outgoing: true, Time: t0, State: client.StateFailed, Error: "bob's identity key changed a lot"},
	)
	x := start(t, b, 130, 25) // each line on one row
	lines := x.term.WaitText(t, "alice: sent before ✗ not sent: bob's safety number changed: compare it with /verify bob")
	if !uitest.Contains(lines, "alice: too big ✗ not sent: bob's identity key changed a lot") {
		t.Errorf("another error's words were changed:\n%s", x.term.Text())
	}
	x.term.Type("are you there?\n")
	x.term.WaitText(t, "alice: are you there? …")
	b.Emit(client.UIEvent{Type: client.UIState, Conversation: chat.Peer("bob"), ID: x.lastEntry("bob").ID, State: client.StateFailed, Err: &client.IdentityChangedError{User: "bob"}})
	lines = x.term.WaitText(t, "alice: are you there? ✗ not sent: bob's safety number changed: compare it with /verify bob")
	if uitest.Contains(lines, "securechat trust") || uitest.Contains(lines, "securechat fingerprint") {
		t.Errorf("the command line's advice in the terminal client:\n%s", x.term.Text())
	}
}
