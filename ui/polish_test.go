package ui_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/ui/uitest"
)

// systemBackend is sampleBackend with an announcement from the server,
// unread and the most recent activity, so it is open at start.
func systemBackend() *uitest.Backend {
	b := sampleBackend()
	b.AddConversation(client.ConversationInfo{Conversation: client.SystemConversation, Unread: 1},
		client.HistoryEntry{Kind: chat.KindSystem, From: "", Text: "maintenance tonight at 22:00", Time: t0.Add(-time.Minute)},
	)
	return b
}

const readOnlyHint = "this is the server's announcements; it is read-only"

// TestSystemConversationReadOnly: the server's announcements are a
// read-only conversation: the input says so, typing or pasting text there
// is refused with a one-line note, /verify and /trust refuse it, and
// commands still work from it.
func TestSystemConversationReadOnly(t *testing.T) {
	t.Parallel()
	x := start(t, systemBackend(), 100, 25)
	lines := x.term.WaitText(t, "-- maintenance tonight at 22:00")
	if got, want := inputLine(lines), "*server*> read-only: the server's announcements; /msg NAME writes to someone"; got != want {
		t.Errorf("input %q, want %q", got, want)
	}
	if !uitest.Contains(lines, "*server*  the server's announcements, read-only") {
		t.Errorf("the header does not say read-only:\n%s", x.term.Text())
	}
	if !strings.Contains(statusLine(lines), "*server*: read-only") || strings.Contains(statusLine(lines), "verified") {
		t.Errorf("status %q", statusLine(lines))
	}
	if uitest.Contains(lines, "/verify") {
		t.Errorf("/verify offered for the announcements:\n%s", x.term.Text())
	}

	// Text is refused, with the note above the input; nothing is sent and
	// no typing signal goes anywhere.
	x.term.Type("hello")
	lines = x.term.WaitText(t, " "+readOnlyHint)
	if got := inputLine(lines); !strings.HasPrefix(got, "*server*> read-only") {
		t.Errorf("typed text went into the read-only input: %q", got)
	}
	x.term.Press(tcell.KeyEscape)
	x.term.WaitNoText(t, readOnlyHint)
	x.term.Paste("pasted text")
	x.term.WaitText(t, " "+readOnlyHint)
	x.term.Press(tcell.KeyEnter) // nothing to send
	if n := x.calls("Send") + x.calls("Typing"); n != 0 {
		t.Errorf("%d sends or typing signals from the announcements", n)
	}

	// /verify and /trust refuse it, by default or by name.
	x.term.Type("/verify\n")
	x.term.WaitText(t, "!! /verify: *server* is the server's announcements, signed with the")
	x.term.Type("/trust\n")
	x.term.WaitText(t, "!! /trust: *server* is the server's announcements")
	if n := x.calls("SafetyNumber") + x.calls("Trust"); n != 0 {
		t.Errorf("%d SafetyNumber or Trust calls for the announcements", n)
	}
	x.term.Type("/msg bob\n")
	x.term.WaitText(t, "bob: hi alice")
	x.term.Type("/verify *server*\n")
	x.term.WaitText(t, "!! /verify: *server* is the server's announcements")
	if x.term.WaitNoText(t, "Safety number with"); x.calls("SafetyNumber") != 0 {
		t.Errorf("/verify *server* asked for a safety number")
	}

	// Completion offers no *server* to write to or verify.
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/verify ")
	x.term.Press(tcell.KeyTab)
	lines = x.term.WaitText(t, "completions:")
	if strings.Contains(lines[uitest.Row(lines, "completions:")], "*server*") || strings.Contains(inputLine(lines), "*server*") {
		t.Errorf("completion offers *server*:\n%s", x.term.Text())
	}
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)

	// /msg *server* goes back to the announcements; "/msg *server* TEXT"
	// is refused like typing, and a command typed there works.
	x.term.Type("/msg *server* hi\n")
	x.term.WaitText(t, "!! "+readOnlyHint+": /msg NAME")
	x.waitInput("*server*> ", "/msg *server* hi")
	x.term.Type("/msg carol\n")
	x.term.WaitText(t, "carol: carol three")
	if n := x.calls("Send"); n != 0 {
		t.Errorf("%d sends", n)
	}
}

// TestFailedLineIsReplaced: a line that failed stays in the input, whole
// and selected: Enter tries it again, an arrow key makes it editable, and
// what is typed next replaces it instead of being glued onto it.
func TestFailedLineIsReplaced(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.WaitText(t, "bob: hi alice")

	// An unknown command, then a message: the message is sent alone.
	x.term.Type("/frobnicate\n")
	lines := x.term.WaitText(t, "unknown command /frobnicate")
	if got := inputLine(lines); got != "bob> /frobnicate" {
		t.Errorf("input %q after a failed command, want it kept", got)
	}
	if !uitest.Contains(lines, "not done: Enter retries, ←→ edit, typing replaces it") {
		t.Errorf("no hint for the kept line:\n%s", x.term.Text())
	}
	x.term.Type("hi\n")
	x.waitCalls(1, "Send", "bob", "hi")
	x.waitInput("bob> ", "message bob, or /help")
	if n := len(x.b.Calls("Send")); n != 1 {
		t.Errorf("%d sends, want 1: %+v", n, x.b.Calls("Send"))
	}

	// A usage error, fixed by editing: End, then the missing letter.
	x.term.Type("/set typing of\n")
	x.term.WaitText(t, "usage: /set typing on|off")
	x.waitInput("bob> ", "/set typing of")
	x.term.Press(tcell.KeyEnd)
	x.term.Type("f")
	x.waitInput("bob> ", "/set typing off")
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "SetSendTyping", "false")
	x.waitInput("bob> ", "message bob, or /help")

	// Backspace deletes a kept line, as a selection.
	x.term.Type("/nope\n")
	x.waitInput("bob> ", "/nope")
	x.term.Press(tcell.KeyBackspace2)
	x.waitInput("bob> ", "message bob, or /help")

	// /msg with a message that cannot be queued: the conversation opens,
	// the whole line is kept, Enter sends it once it can be, and a paste
	// replaces a kept line too.
	x.b.SetSendError(errors.New("storage is full"))
	x.term.Type("/msg carol hi there\n")
	x.term.WaitText(t, "not sent: storage is full")
	x.waitInput("carol> ", "/msg carol hi there")
	x.b.SetSendError(nil)
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(2, "Send", "carol", "hi there")
	x.term.WaitText(t, "alice: hi there …")
	x.waitInput("carol> ", "message carol, or /help")
	x.b.SetSendError(errors.New("storage is full"))
	x.term.Type("first try\n")
	x.waitInput("carol> ", "first try")
	x.b.SetSendError(nil)
	x.term.Paste("pasted")
	x.waitInput("carol> ", "pasted")
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "Send", "carol", "pasted")

	// The failed lines are in the input history.
	x.term.Press(tcell.KeyUp)
	x.waitInput("carol> ", "pasted")
	x.term.Press(tcell.KeyUp)
	x.waitInput("carol> ", "first try")
}

// TestFailedLineInConsole: with no conversation open, a message fails; the
// /msg typed next is a command, not glued onto it.
func TestFailedLineInConsole(t *testing.T) {
	t.Parallel()
	x := start(t, uitest.NewBackend("alice"))
	x.term.Type("hello?\n")
	x.term.WaitText(t, "no conversation is open")
	x.waitInput("> ", "hello?")
	x.term.Type("/msg bob\n")
	x.waitInput("bob> ", "message bob, or /help")
	x.term.Type("hello bob\n")
	x.waitCalls(1, "Send", "bob", "hello bob")
	if n := len(x.b.Calls("Send")); n != 1 {
		t.Errorf("sends %+v, want one", x.b.Calls("Send"))
	}
}

// dividerRow is the row of the "new" divider, -1 if none.
func dividerRow(lines []string) int { return uitest.Row(lines, "─ new ─") }

// TestUnreadDivider: opening a conversation with unread messages shows a
// "new" divider above the first of them; after leaving and coming back
// with nothing new it is gone, and it comes back above what arrived
// meanwhile.
func TestUnreadDivider(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("carol"), Unread: 2},
		client.HistoryEntry{Text: "carol old", Time: t0.Add(-64 * time.Minute)},
		client.HistoryEntry{Text: "my answer", Outgoing: true, Time: t0.Add(-63 * time.Minute), State: client.StateRead},
		client.HistoryEntry{Text: "carol one", Time: t0.Add(-62 * time.Minute)},
		client.HistoryEntry{Text: "carol two", Time: t0.Add(-61 * time.Minute)},
	)
	x := start(t, b)
	lines := x.term.WaitText(t, "bob: hi alice")
	if dividerRow(lines) >= 0 {
		t.Errorf("a divider in a conversation without unread messages:\n%s", x.term.Text())
	}

	x.term.Type("/msg carol\n")
	lines = x.term.WaitText(t, "carol: carol two")
	d := dividerRow(lines)
	if d < 0 || d != uitest.Row(lines, "carol: carol one")-1 || uitest.Row(lines, "alice: my answer") != d-1 {
		t.Fatalf("no divider right above the first unread message (row %d):\n%s", d, x.term.Text())
	}

	// A message arriving in the open conversation is read at once: no
	// second divider.
	x.b.Receive("carol", "carol live", t0)
	lines = x.term.WaitText(t, "carol: carol live")
	if strings.Count(strings.Join(lines, "\n"), "─ new ─") != 1 {
		t.Errorf("the divider moved or doubled for a message read as it came:\n%s", x.term.Text())
	}

	// Left and opened again with nothing new: gone.
	x.term.Type("/msg bob\n")
	x.term.WaitText(t, "bob: hi alice")
	x.term.Type("/msg carol\n")
	lines = x.term.WaitText(t, "carol: carol live")
	if dividerRow(lines) >= 0 {
		t.Errorf("the divider is still there with nothing new:\n%s", x.term.Text())
	}

	// What arrives while another conversation is open gets it.
	x.term.Type("/msg bob\n")
	x.term.WaitText(t, "bob: hi alice")
	x.b.Receive("carol", "carol later", t0)
	x.term.WaitText(t, "(1)")
	x.term.Type("/msg carol\n")
	lines = x.term.WaitText(t, "carol: carol later")
	if d := dividerRow(lines); d < 0 || d != uitest.Row(lines, "carol: carol later")-1 {
		t.Errorf("no divider right above the message that arrived meanwhile:\n%s", x.term.Text())
	}
}

// TestUnreadDividerInView: when the unread messages do not fit below the
// divider, the conversation opens at the divider, not at the newest line.
func TestUnreadDividerInView(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	var entries []client.HistoryEntry
	for i := 1; i <= 60; i++ {
		entries = append(entries, client.HistoryEntry{Text: fmt.Sprintf("carol %03d", i), Time: t0.Add(time.Duration(i-100) * time.Minute)})
	}
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("carol"), Unread: 40}, entries...)
	x := start(t, b)
	x.term.WaitText(t, "bob: hi alice")
	x.term.Type("/msg carol\n")
	lines := x.term.WaitText(t, "─ new ─")
	if d := dividerRow(lines); d < 0 || !strings.Contains(lines[d+1], "carol: carol 021") {
		t.Errorf("the divider is not above the first unread message:\n%s", x.term.Text())
	}
	if uitest.Contains(lines, "carol 060") || !uitest.Contains(lines, "scrolled up, PgDn for newer") {
		t.Errorf("the view is not at the first unread message:\n%s", x.term.Text())
	}
	x.pressUntil(tcell.KeyPgDn, func(lines []string) bool { return uitest.Contains(lines, "carol: carol 060") })
}
