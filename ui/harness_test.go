package ui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/ui"
	"github.com/securechat/securechat/ui/uitest"
)

// The real engine and the fake both satisfy the UI's Backend.
var (
	_ ui.Backend = (*client.Engine)(nil)
	_ ui.Backend = (*uitest.Backend)(nil)
)

// t0 is "now" in every test: Saturday 14 March 2026, 12:00 UTC.
var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

// harness runs a UI on a simulated terminal with a fake backend and a
// fake clock.
type harness struct {
	t     *testing.T
	b     *uitest.Backend
	clock *uitest.Clock
	term  *uitest.Terminal

	cancel context.CancelFunc
	exited chan struct{} // closed when Run has returned, with err set
	err    error
}

// start runs a UI for alice on b on an 80x25 terminal (or size[0] x
// size[1]) and waits for its first frame. The UI stops when the test ends.
func start(t *testing.T, b *uitest.Backend, size ...int) *harness {
	t.Helper()
	w, h := 80, 25
	if len(size) == 2 {
		w, h = size[0], size[1]
	}
	clock := uitest.NewClock(t0)
	b.SetNow(clock.Now)
	x := &harness{t: t, b: b, clock: clock, term: uitest.NewTerminal(w, h), exited: make(chan struct{})}
	u := ui.New(b, ui.Options{Clock: clock, Location: time.UTC})
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	go func() {
		x.err = u.Run(ctx, x.term)
		close(x.exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-x.exited:
			if x.err != nil {
				t.Errorf("Run: %v", x.err)
			}
		case <-time.After(uitest.WaitTimeout):
			t.Errorf("Run did not return after its context ended")
		}
	})
	if w >= ui.MinWidth && h >= ui.MinHeight {
		x.term.WaitFor(t, "the first frame", func(lines []string) bool { return len(lines) > 0 && strings.HasPrefix(lines[0], " alice") })
	} else {
		x.term.WaitText(t, "terminal too small")
	}
	return x
}

// pressUntil presses key, each time waiting for the screen to change,
// until done holds (at most 50 times); it returns the screen.
func (x *harness) pressUntil(key tcell.Key, done func(lines []string) bool) []string {
	x.t.Helper()
	lines := x.term.Lines()
	for range 50 {
		if done(lines) {
			return lines
		}
		before := strings.Join(lines, "\n")
		x.term.Press(key)
		lines = x.term.WaitFor(x.t, "the screen to change", func(l []string) bool { return strings.Join(l, "\n") != before })
	}
	x.t.Fatalf("still not there after 50 keys; the screen:\n%s", strings.Join(lines, "\n"))
	return nil
}

// waitExit waits for Run to return and returns its error.
func (x *harness) waitExit() error {
	x.t.Helper()
	select {
	case <-x.exited:
		return x.err
	case <-time.After(uitest.WaitTimeout):
		x.t.Fatalf("Run did not return; the screen:\n%s", x.term.Text())
		return nil
	}
}

// inputLine is the row of the (one-row) input line.
func inputLine(lines []string) string {
	if len(lines) < 2 {
		return ""
	}
	return lines[len(lines)-2]
}

// statusLine is the bottom row.
func statusLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// waitInput waits until the input line reads exactly want after the label.
func (x *harness) waitInput(label, want string) {
	x.t.Helper()
	x.term.WaitFor(x.t, fmt.Sprintf("input %q", label+want), func(lines []string) bool {
		return inputLine(lines) == strings.TrimRight(label+want, " ")
	})
}

// waitStatus waits until the status bar shows s.
func (x *harness) waitStatus(s string) []string {
	x.t.Helper()
	return x.term.WaitFor(x.t, "status "+s, func(lines []string) bool { return strings.Contains(statusLine(lines), s) })
}

// calls counts the backend calls of method whose arguments begin with
// args.
func (x *harness) calls(method string, args ...string) int {
	n := 0
	for _, c := range x.b.Calls(method) {
		if len(c.Args) >= len(args) && strings.Join(c.Args[:len(args)], "\x00") == strings.Join(args, "\x00") {
			n++
		}
	}
	return n
}

// waitCalls waits until method was called n times with args.
func (x *harness) waitCalls(n int, method string, args ...string) {
	x.t.Helper()
	uitest.Eventually(x.t, fmt.Sprintf("%d calls of %s%q", n, method, args), func() bool { return x.calls(method, args...) >= n })
}

// lastEntry is the newest entry of a conversation in the backend.
func (x *harness) lastEntry(conv string) client.HistoryEntry {
	x.t.Helper()
	es := x.b.Entries(conv)
	if len(es) == 0 {
		x.t.Fatalf("no entries in %s", conv)
	}
	return es[len(es)-1]
}

// sampleBackend has alice's conversations: bob (most recent, open at
// start), carol (3 unread), dave (yesterday) and erin (identity changed).
func sampleBackend() *uitest.Backend {
	b := uitest.NewBackend("alice")
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("bob")},
		client.HistoryEntry{Text: "hi alice", Time: t0.Add(-30 * time.Minute)},
		client.HistoryEntry{Text: "hello bob", Outgoing: true, Time: t0.Add(-20 * time.Minute), State: client.StateRead},
	)
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("carol"), Unread: 3},
		client.HistoryEntry{Text: "carol one", Time: t0.Add(-62 * time.Minute)},
		client.HistoryEntry{Text: "carol two", Time: t0.Add(-61 * time.Minute)},
		client.HistoryEntry{Text: "carol three", Time: t0.Add(-60 * time.Minute)},
	)
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("dave")},
		client.HistoryEntry{Text: "see you", Time: t0.Add(-24 * time.Hour)},
	)
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("erin"), IdentityChanged: true},
		client.HistoryEntry{Text: "new phone", Time: t0.Add(-48 * time.Hour)},
	)
	// A conversation without activity, as a store reports it: the epoch.
	b.AddConversation(client.ConversationInfo{Conversation: chat.Peer("frank"), LastActivity: time.UnixMilli(0)})
	return b
}
