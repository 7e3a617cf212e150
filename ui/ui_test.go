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
	"github.com/securechat/securechat/transport"
	"github.com/securechat/securechat/ui/uitest"
)

func TestConversationList(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	lines := x.term.WaitText(t, "carol")
	bob, carol, dave, erin, frank := uitest.Row(lines, "  bob "), uitest.Row(lines, "carol "), uitest.Row(lines, "dave "), uitest.Row(lines, "erin "), uitest.Row(lines, "frank")
	if !(0 < bob && bob < carol && carol < dave && dave < erin && erin < frank) {
		t.Fatalf("list not ordered by last activity (rows bob %d, carol %d, dave %d, erin %d, frank %d):\n%s", bob, carol, dave, erin, frank, x.term.Text())
	}
	if strings.TrimRight(lines[frank], " │") != "   frank" {
		t.Errorf("a conversation without activity shows a time: %q", lines[frank])
	}
	for _, c := range []struct {
		row  int
		want string
	}{
		{bob, "11:40"},       // today: the time
		{carol, "(3) 11:00"}, // unread count and time
		{dave, "Fri"},        // yesterday: the weekday
		{erin, " ! erin"},    // identity changed
	} {
		if !strings.Contains(lines[c.row], c.want) {
			t.Errorf("row %q does not show %q", lines[c.row], c.want)
		}
	}
	if strings.Contains(lines[bob], "(") {
		t.Errorf("the open conversation shows an unread count: %q", lines[bob])
	}
	if !strings.HasPrefix(lines[0], " alice") {
		t.Errorf("the list does not start with the account name: %q", lines[0])
	}
}

func TestStartOpensMostRecentConversation(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	lines := x.term.WaitText(t, "11:30 bob: hi alice")
	if !uitest.Contains(lines, "11:40 alice: hello bob ✓✓ read") {
		t.Errorf("outgoing entry with its state missing:\n%s", x.term.Text())
	}
	if !uitest.Contains(lines, "start of your conversation with bob") || !uitest.Contains(lines, "Sat 14 Mar 2026") {
		t.Errorf("no start marker or date divider:\n%s", x.term.Text())
	}
	if inputLine(lines) != "bob> message bob, or /help" {
		t.Errorf("input line %q", inputLine(lines))
	}
	x.waitCalls(1, "History", "bob", "", "100")
	x.waitCalls(1, "MarkRead", "bob")
}

func TestOpenConversationLoadsHistory(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	if n := x.calls("History", "carol"); n != 0 {
		t.Fatalf("carol's history loaded before it was opened (%d calls)", n)
	}
	x.term.Type("/msg carol\n")
	lines := x.term.WaitText(t, "11:00 carol: carol three")
	if !uitest.Contains(lines, "10:58 carol: carol one") {
		t.Errorf("history incomplete:\n%s", x.term.Text())
	}
	x.waitCalls(1, "History", "carol", "", "100")
	x.waitCalls(1, "MarkRead", "carol")
	if uitest.Contains(lines, "(3)") {
		t.Errorf("unread count still shown after opening:\n%s", x.term.Text())
	}
	if !strings.Contains(statusLine(lines), "carol: not verified") {
		t.Errorf("status %q", statusLine(lines))
	}
	// Back to bob with Ctrl-P (the list is bob, carol, ...): loaded once.
	x.term.Press(tcell.KeyCtrlP, tcell.ModCtrl)
	x.term.WaitText(t, "bob: hi alice")
	if n := x.calls("History", "bob"); n != 1 {
		t.Errorf("bob's history loaded %d times", n)
	}
}

func TestClickOpensConversation(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	lines := x.term.WaitText(t, "dave")
	x.term.Click(4, uitest.Row(lines, "dave "))
	x.term.WaitText(t, "dave: see you")
	// The input keeps the focus.
	x.term.Type("x")
	x.waitInput("dave> ", "x")
}

func TestSendShowsDeliveryStates(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("how are you?\n")
	x.term.WaitText(t, "12:00 alice: how are you? …")
	x.waitInput("bob> ", "message bob, or /help")
	x.waitCalls(1, "Send", "bob", "how are you?")
	id := x.lastEntry("bob").ID
	for _, s := range []struct {
		state client.DeliveryState
		want  string
	}{
		{client.StateStored, "how are you? ✓"},
		{client.StateDelivered, "how are you? ✓✓"},
		{client.StateRead, "how are you? ✓✓ read"},
	} {
		x.b.SetState("bob", id, s.state)
		x.term.WaitFor(t, s.want, func(lines []string) bool {
			for _, l := range lines {
				if strings.HasSuffix(l, s.want) {
					return true
				}
			}
			return false
		})
	}
	// A late receipt does not move the state back.
	x.b.SetState("bob", id, client.StateDelivered)
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected}) // a marker after it
	x.waitStatus("connected")
	if !uitest.Contains(x.term.Lines(), "how are you? ✓✓ read") {
		t.Errorf("state went back:\n%s", x.term.Text())
	}
}

func TestSendFailure(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.b.SetSendError(errors.New("message is too long"))
	x.term.Type("words\n")
	x.term.WaitText(t, "not sent: message is too long")
	x.waitInput("bob> ", "words") // nothing typed is lost
	x.b.SetSendError(nil)
	x.term.Press(tcell.KeyEnter)
	x.term.WaitText(t, "alice: words …")

	// A failed state from the engine shows with its reason.
	x.b.Emit(client.UIEvent{Type: client.UIState, Conversation: chat.Peer("bob"), ID: x.lastEntry("bob").ID, State: client.StateFailed, Err: errors.New("no such user")})
	x.term.WaitText(t, "alice: words ✗ not sent: no such user")
}

func TestIncomingMessages(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.WaitText(t, "bob: hi alice")
	x.waitCalls(1, "MarkRead", "bob")

	// In another conversation: unread count, moved to the top, bell.
	x.b.Receive("dave", "are you there?", t0)
	lines := x.term.WaitText(t, "(1)")
	if r := uitest.Row(lines, "dave "); r != 1 || !strings.Contains(lines[r], "(1) 12:00") {
		t.Errorf("dave not first with one unread:\n%s", x.term.Text())
	}
	x.term.WaitBeeps(t, 1)
	x.b.Receive("dave", "hello?", t0)
	x.term.WaitText(t, "(2)")
	x.term.WaitBeeps(t, 2)

	// In the open conversation: shown and marked read, no bell.
	x.b.Receive("bob", "lunch?", t0)
	x.term.WaitText(t, "12:00 bob: lunch?")
	x.waitCalls(2, "MarkRead", "bob")
	if n := x.term.Beeps(); n != 2 {
		t.Errorf("bell rang %d times, want 2", n)
	}

	// A message from someone new starts a conversation.
	x.b.Receive("zed", "hi, it's zed", t0)
	lines = x.term.WaitText(t, "zed")
	if r := uitest.Row(lines, "zed "); r < 0 || !strings.Contains(lines[r], "(1)") {
		t.Errorf("zed's conversation missing or without unread count:\n%s", x.term.Text())
	}
	x.term.WaitBeeps(t, 3)
}

func TestTypingIndicator(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.b.Emit(client.UIEvent{Type: client.UITyping, Conversation: chat.Peer("carol")}) // not open: not shown
	x.b.Emit(client.UIEvent{Type: client.UITyping, Conversation: chat.Peer("bob")})
	lines := x.term.WaitText(t, "bob is typing…")
	if uitest.Contains(lines, "carol is typing") {
		t.Errorf("typing shown for a conversation that is not open")
	}
	x.clock.Advance(4 * time.Second)
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected})
	x.waitStatus("connected")
	if !uitest.Contains(x.term.Lines(), "bob is typing…") {
		t.Fatalf("typing line gone before 5s")
	}
	x.clock.Advance(time.Second)
	x.term.WaitNoText(t, "bob is typing…")

	// A message from bob ends his typing line at once.
	x.b.Emit(client.UIEvent{Type: client.UITyping, Conversation: chat.Peer("bob")})
	x.term.WaitText(t, "bob is typing…")
	x.b.Receive("bob", "done typing", t0)
	x.term.WaitText(t, "bob: done typing")
	x.term.WaitNoText(t, "bob is typing…")
}

func TestTypingSignals(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("h")
	x.waitInput("bob> ", "h")
	x.waitCalls(1, "Typing", "bob")
	x.term.Type("i")
	x.waitInput("bob> ", "hi")
	if n := x.calls("Typing"); n != 1 {
		t.Fatalf("%d typing signals within 3s, want 1", n)
	}
	x.clock.Advance(3 * time.Second)
	x.term.Type("!")
	x.waitInput("bob> ", "hi!")
	x.waitCalls(2, "Typing", "bob")

	// Commands are not typing.
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.clock.Advance(3 * time.Second)
	x.term.Type("/set typing off")
	x.waitInput("bob> ", "/set typing off")
	x.term.Press(tcell.KeyEnter)
	lines := x.waitStatus("typing off")
	if !uitest.Contains(lines, "typing indicators off") {
		t.Errorf("no confirmation:\n%s", x.term.Text())
	}
	x.waitCalls(1, "SetSendTyping", "false")
	x.clock.Advance(3 * time.Second)
	x.term.Type("quiet")
	x.waitInput("bob> ", "quiet")
	if n := x.calls("Typing"); n != 2 {
		t.Errorf("%d typing signals, want 2 (none for commands or after /set typing off)", n)
	}

	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/set receipts off\n")
	x.waitStatus("typing off, receipts off")
	x.waitCalls(1, "SetSendReceipts", "false")
	x.term.Type("/set typing on\n")
	x.term.WaitText(t, "typing indicators on")
	x.waitCalls(1, "SetSendTyping", "true")
	x.term.Type("/set typing maybe\n")
	x.term.WaitText(t, "usage: /set typing on|off")
}

func TestInputHistory(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("one\n")
	x.term.WaitText(t, "alice: one")
	x.term.Type("two\n")
	x.term.WaitText(t, "alice: two")
	x.term.Type("draft")
	x.waitInput("bob> ", "draft")
	x.term.Press(tcell.KeyUp)
	x.waitInput("bob> ", "two")
	x.term.Press(tcell.KeyUp)
	x.waitInput("bob> ", "one")
	x.term.Press(tcell.KeyUp) // nothing older
	x.term.Press(tcell.KeyDown)
	x.waitInput("bob> ", "two")
	x.term.Press(tcell.KeyDown)
	x.waitInput("bob> ", "draft")
	if n := x.calls("Send"); n != 2 {
		t.Errorf("%d sends, want 2", n)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("/ms")
	x.waitInput("bob> ", "/ms")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/msg ")
	x.term.Type("c")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/msg carol ")
	x.term.Press(tcell.KeyEnter)
	x.term.WaitText(t, "carol: carol three")

	// Several candidates are listed and cycled through.
	x.term.Type("/verify ")
	x.term.Press(tcell.KeyTab)
	lines := x.term.WaitText(t, "completions: bob  carol  dave  erin") // most recent first
	if got := inputLine(lines); got != "carol> /verify bob" {
		t.Errorf("input %q after the first Tab", got)
	}
	x.term.Press(tcell.KeyTab)
	x.waitInput("carol> ", "/verify carol")
	x.term.Press(tcell.KeyTab)
	x.waitInput("carol> ", "/verify dave")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)

	// Command names; arguments of /set.
	x.term.Type("/se")
	x.term.Press(tcell.KeyTab)
	x.waitInput("carol> ", "/set ")
	x.term.Type("r")
	x.term.Press(tcell.KeyTab)
	x.waitInput("carol> ", "/set receipts ")
	x.term.Type("of")
	x.term.Press(tcell.KeyTab)
	x.waitInput("carol> ", "/set receipts off ")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/zz")
	x.term.Press(tcell.KeyTab)
	x.term.WaitText(t, "no completions")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend(), 120, 50)
	x.term.Type("/help\n")
	lines := x.term.WaitText(t, "Commands:")
	for _, want := range []string{
		"/msg NAME [TEXT]", "/verify [NAME]", "/trust [NAME]", "/set typing on|off", "/set receipts on|off", "/quit",
		"…        sending", "✓        stored on the server", "✓✓       delivered", "✓✓ read  read by the recipient", "PgUp/PgDn",
	} {
		if !uitest.Contains(lines, want) {
			t.Errorf("help lacks %q:\n%s", want, x.term.Text())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("/frobnicate now\n")
	x.term.WaitText(t, "!! unknown command /frobnicate: /help lists the commands")
	x.term.Type("/msg\n")
	x.term.WaitText(t, "usage: /msg NAME [TEXT]")
	x.term.Type("/msg Not*Valid\n")
	x.term.WaitText(t, `invalid user name "Not*Valid"`)
	x.term.Type("/\n")
	x.term.WaitText(t, "unknown command /:")
	// "//" sends a message that begins with "/".
	x.term.Type("//shrug\n")
	x.term.WaitText(t, "alice: /shrug")
	x.waitCalls(1, "Send", "bob", "/shrug")
}

func TestMsgStartsConversation(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("/msg Zed hello there\n")
	lines := x.term.WaitText(t, "alice: hello there")
	if r := uitest.Row(lines, "  zed "); r != 1 {
		t.Errorf("zed not at the top of the list:\n%s", x.term.Text())
	}
	x.waitCalls(1, "Send", "zed", "hello there")
	if got := inputLine(lines); got != "zed> message zed, or /help" {
		t.Errorf("input %q", got)
	}
}

func TestConnectionState(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend(), 120, 25)
	x.waitStatus("connecting…")
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected})
	x.waitStatus(" connected │ server f90a d123 8ca2 52e4 │ bob: not verified")
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnDisconnected, Err: errors.New("timeout: no recent network activity")})
	x.waitStatus("disconnected: timeout: no recent network activity  reconnecting… │ server f90a d123 8ca2 52e4 │ bob: not verified")
	x.term.Reshape(80, 25)
	x.waitStatus(" disconnected: timeout: no recent network activity  │ bob: not verified")

	// Typed while offline: queued, shown as sending.
	x.term.Type("are you there\n")
	x.term.WaitText(t, "alice: are you there …")
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnecting})
	x.waitStatus("connecting…")
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected, Err: errors.New("prekeys not published")})
	x.waitStatus("connected (prekeys not published)")

	// The engine stopping is shown too.
	x.b.Close()
	x.waitStatus("client stopped")
}

func TestStatusBarFitsNarrowTerminal(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend(), 44, 12)
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnDisconnected, Err: errors.New("a long network error message")})
	lines := x.waitStatus("disconnected")
	st := statusLine(lines)
	if !strings.Contains(st, "bob: not verified") {
		t.Errorf("status bar dropped the verification: %q", st)
	}
	if len([]rune(st)) > 44 {
		t.Errorf("status bar too wide: %q", st)
	}
}

func TestTooSmallTerminal(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.WaitText(t, "bob: hi alice")
	x.term.Reshape(30, 8)
	lines := x.term.WaitText(t, "terminal too small")
	if !uitest.Contains(lines, "(need 40x10)") || !uitest.Contains(lines, "it is 30x8") {
		t.Errorf("too-small message incomplete:\n%s", x.term.Text())
	}
	frames := x.term.Frames()
	x.term.Type("ignored\n") // nothing to see, nothing happens
	x.term.WaitFor(t, "the keys handled", func([]string) bool { return x.term.Frames() >= frames+8 })
	x.term.Reshape(39, 20)
	x.term.WaitText(t, "it is 39x20")
	x.term.Reshape(60, 15)
	lines = x.term.WaitText(t, "bob: hi alice")
	if uitest.Contains(lines, "too small") || len(lines) != 15 || !strings.Contains(statusLine(lines), "bob: not verified") {
		t.Errorf("layout not back after growing:\n%s", x.term.Text())
	}
	if n := x.calls("Send"); n != 0 {
		t.Errorf("keys typed into a too-small terminal sent %d messages", n)
	}
	if got := inputLine(lines); got != "bob> message bob, or /help" {
		t.Errorf("input %q", got)
	}

	// Starting in a too-small terminal works as well.
	y := start(t, sampleBackend(), 20, 5)
	y.term.Reshape(40, 10)
	y.term.WaitText(t, "bob: hi alice")
}

func TestScrollbackLoadsOlderHistory(t *testing.T) {
	t.Parallel()
	b := uitest.NewBackend("alice")
	var entries []client.HistoryEntry
	for i := 1; i <= 150; i++ {
		entries = append(entries, client.HistoryEntry{Text: fmt.Sprintf("message %03d", i), Time: t0.Add(time.Duration(i-150) * time.Minute)})
	}
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("bob")}, entries...)
	x := start(t, b)
	lines := x.term.WaitText(t, "message 150")
	if uitest.Contains(lines, "message 120") {
		t.Fatalf("pane does not start at the newest messages:\n%s", x.term.Text())
	}
	x.waitCalls(1, "History", "bob", "", "100")

	x.term.Press(tcell.KeyPgUp)
	lines = x.term.WaitNoText(t, "message 150")
	if !uitest.Contains(lines, "scrolled up, PgDn for newer") {
		t.Errorf("no scrolled-up hint:\n%s", x.term.Text())
	}
	x.term.Press(tcell.KeyPgDn)
	x.term.WaitText(t, "message 150")

	// Up to the top of the loaded page (51..150), which loads 1..50
	// without moving the view.
	x.pressUntil(tcell.KeyPgUp, func([]string) bool { return x.calls("History", "bob", entries[50].ID, "100") > 0 })
	lines = x.term.WaitText(t, "message 051")
	if uitest.Contains(lines, "message 030") {
		t.Errorf("the view jumped when older messages were loaded:\n%s", x.term.Text())
	}
	lines = x.pressUntil(tcell.KeyPgUp, func(lines []string) bool { return uitest.Contains(lines, "message 001") })
	if !uitest.Contains(lines, "start of your conversation with bob") {
		t.Errorf("no start marker at the top:\n%s", x.term.Text())
	}
	for range 3 { // at the very top: nothing more to load
		x.term.Press(tcell.KeyPgUp)
	}
	x.term.Press(tcell.KeyEscape) // back to the newest
	x.term.WaitText(t, "message 150")
	if n := x.calls("History", "bob"); n != 2 {
		t.Errorf("%d history loads, want 2", n)
	}

	// The mouse wheel scrolls the pane too.
	x.term.Wheel(50, 10, true)
	x.term.Wheel(50, 10, true)
	x.term.WaitNoText(t, "message 150")
	x.term.Wheel(50, 10, false)
	x.term.Wheel(50, 10, false)
	x.term.WaitText(t, "message 150")
}

func TestScrolledViewStaysWhenMessagesArrive(t *testing.T) {
	t.Parallel()
	b := uitest.NewBackend("alice")
	var entries []client.HistoryEntry
	for i := 1; i <= 60; i++ {
		entries = append(entries, client.HistoryEntry{Text: fmt.Sprintf("message %03d", i), Time: t0.Add(time.Duration(i-60) * time.Minute)})
	}
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("bob")}, entries...)
	x := start(t, b)
	x.term.WaitText(t, "message 060")
	x.term.Press(tcell.KeyPgUp)
	before := x.term.WaitNoText(t, "message 060")
	x.b.Receive("bob", "new one", t0)
	x.waitCalls(2, "MarkRead", "bob")
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected})
	after := x.waitStatus("connected")
	if paneText(before) != paneText(after) {
		t.Errorf("the scrolled view moved when a message arrived:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	x.term.Press(tcell.KeyPgDn)
	x.term.Press(tcell.KeyPgDn)
	x.term.WaitText(t, "bob: new one")
}

// paneText is the text right of the conversation list.
func paneText(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if _, pane, ok := strings.Cut(l, "│"); ok {
			b.WriteString(pane + "\n")
		}
	}
	return b.String()
}

func TestPasteMultiLine(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Paste("first line\nsecond line\nthird line")
	lines := x.term.WaitText(t, "third line")
	n := len(lines)
	if lines[n-4] != "bob> first line" || lines[n-3] != "     second line" || lines[n-2] != "     third line" {
		t.Errorf("pasted text not shown as three input rows:\n%s", x.term.Text())
	}
	if n := x.calls("Send"); n != 0 {
		t.Fatalf("the paste's newlines sent %d messages", n)
	}
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "Send", "bob", "first line\nsecond line\nthird line")
	lines = x.term.WaitText(t, "12:00 alice: first line")
	r := uitest.Row(lines, "12:00 alice: first line")
	if !strings.HasSuffix(lines[r+1], "│      second line") || !strings.HasSuffix(lines[r+2], "│      third line …") {
		t.Errorf("multi-line message not shown as one entry:\n%s", x.term.Text())
	}
	x.waitInput("bob> ", "message bob, or /help")

	// Alt-Enter adds a line by hand.
	x.term.Type("a")
	x.term.Press(tcell.KeyEnter, tcell.ModAlt)
	x.term.Type("b\n")
	x.waitCalls(1, "Send", "bob", "a\nb")
}

func TestQuit(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.term.Type("/quit\n")
	if err := x.waitExit(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	y := start(t, sampleBackend())
	y.term.Press(tcell.KeyCtrlC, tcell.ModCtrl)
	if err := y.waitExit(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Run returns while engine events keep coming.
	z := start(t, sampleBackend())
	go func() {
		for range 60 { // fewer than the stream buffers: never blocks
			z.b.Emit(client.UIEvent{Type: client.UITyping, Conversation: chat.Peer("bob")})
		}
	}()
	z.term.Type("/q\n")
	if err := z.waitExit(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNoConversations(t *testing.T) {
	t.Parallel()
	x := start(t, uitest.NewBackend("alice"))
	lines := x.term.WaitText(t, "Welcome to securechat")
	if got := inputLine(lines); got != "> /msg NAME to start a conversation, /help for help" {
		t.Errorf("input %q", got)
	}
	x.term.Type("hello?\n")
	x.term.WaitText(t, "no conversation is open: /msg NAME opens one")
	x.waitInput("> ", "hello?") // kept
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/verify\n")
	x.term.WaitText(t, "usage: /verify NAME")
	if n := x.calls("Send"); n != 0 {
		t.Errorf("%d sends without a conversation", n)
	}
}

func TestHostileText(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend())
	x.b.Receive("bob", "evil\x1b[2J\x1b]0;title\x07 [red]tag[-] \u202eoverride", t0)
	lines := x.term.WaitText(t, "bob: evil")
	r := uitest.Row(lines, "bob: evil")
	if want := "evil\uFFFD[2J\uFFFD]0;title\uFFFD [red]tag[-] \uFFFDoverride"; !strings.Contains(lines[r], want) {
		t.Errorf("control characters not neutralised: %q, want %q", lines[r], want)
	}
}

// TestSettingsFromBackend: the settings the engine kept from an earlier run
// show at start and are honoured.
func TestSettingsFromBackend(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	b.SetSendTyping(false)
	b.SetSendReceipts(false)
	x := start(t, b)
	x.waitStatus("typing off, receipts off")
	x.term.Type("quiet")
	x.waitInput("bob> ", "quiet")
	if n := x.calls("Typing"); n != 0 {
		t.Errorf("%d typing signals with typing off", n)
	}
}

// TestConnectionLostReason: why the connection was lost is said in the
// pane, where it fits: a server key that does not match with both
// fingerprints, once however often the engine retries, and the
// reconnection after it.
func TestConnectionLostReason(t *testing.T) {
	t.Parallel()
	x := start(t, sampleBackend(), 120, 25)
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected})
	x.waitStatus(" connected │")
	pinned, _ := transport.ParseFingerprint(strings.Repeat("ab", 32))
	got, _ := transport.ParseFingerprint(strings.Repeat("cd", 32))
	mismatch := &client.KeyMismatchError{Pinned: pinned, Got: got}
	for range 3 { // the engine retrying
		x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnecting})
		x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnDisconnected, Err: mismatch})
	}
	x.waitStatus("disconnected: server key does not match")
	lines := x.term.WaitText(t, "keeps trying")
	flat := strings.Join(strings.Fields(strings.Join(lines, "")), "")
	flat = strings.ReplaceAll(flat, "│", "")
	if !strings.Contains(flat, pinned.String()) || !strings.Contains(flat, got.String()) {
		t.Errorf("the pane does not show both fingerprints:\n%s", x.term.Text())
	}
	if n := strings.Count(x.term.Text(), "server key does not match: expected"); n != 1 {
		t.Errorf("the reason is shown %d times, want once:\n%s", n, x.term.Text())
	}
	x.b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnConnected})
	x.term.WaitText(t, "Connected to the server again.")
	x.waitStatus(" connected │")
}
