package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// testServer runs a real server in-process on 127.0.0.1.
type testServer struct {
	t      *testing.T
	data   string
	addr   string
	fp     transport.Fingerprint
	cancel context.CancelFunc
	done   chan struct{}
	srv    *appliance.Server
}

func startTestServer(t *testing.T, data, listen string) *testServer {
	t.Helper()
	srv, err := appliance.New(appliance.Config{Listen: listen, Data: data, Admin: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), cancel: cancel, done: make(chan struct{}), srv: srv}
	go func() { srv.Serve(ctx); close(ts.done) }()
	return ts
}

func (s *testServer) stop() {
	s.cancel()
	<-s.done
}

func testAccount(t *testing.T, s *testServer, name string) *home.Home {
	t.Helper()
	h, err := home.Open(filepath.Join(t.TempDir(), name), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, h) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Register(ctx, h, EnrollOptions{Server: s.addr, User: name, Password: "password1", Pin: s.fp}); err != nil {
		t.Fatal(err)
	}
	return h
}

// testKDF makes test homes cheap to open.
var testKDF = home.KDFParams{Time: 1, MemoryK: 64, Threads: 1}

// closeChecked writes what is deferred, checks the store's integrity and
// closes the home.
func closeChecked(t *testing.T, h *home.Home) {
	t.Helper()
	if err := h.Probe().Check(); err != nil {
		t.Errorf("home %s: %v", h.Dir, err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("home %s: close: %v", h.Dir, err)
	}
}

// waitEvent reads events until match accepts one.
func waitEvent(t *testing.T, e *Engine, what string, match func(UIEvent) bool) UIEvent {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-e.Events():
			if !ok {
				t.Fatalf("events closed waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestEngineReceiptsTypingHistory(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	fast := EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	alice, err := StartEngine(ha, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := StartEngine(hb, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for _, e := range []*Engine{alice, bob} {
		waitEvent(t, e, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })
	}

	entry, err := alice.Send(chat.Peer("bob"), "hello bob")
	if err != nil || entry.State != StateSending || !entry.Outgoing {
		t.Fatalf("send: %+v %v", entry, err)
	}
	for _, want := range []DeliveryState{StateStored, StateDelivered} {
		waitEvent(t, alice, want.String(), func(ev UIEvent) bool {
			return ev.Type == UIState && ev.ID == entry.ID && ev.State == want
		})
	}
	got := waitEvent(t, bob, "the message", func(ev UIEvent) bool { return ev.Type == UIMessage })
	if got.Entry.Text != "hello bob" || got.Conversation != chat.Peer("alice") || got.Entry.Outgoing {
		t.Fatalf("bob got %+v", got.Entry)
	}
	convs, _ := bob.Conversations()
	if len(convs) != 1 || convs[0].Conversation != chat.Peer("alice") || convs[0].Unread != 1 {
		t.Fatalf("bob's conversations %+v", convs)
	}
	if err := bob.MarkRead(chat.Peer("alice")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, "read", func(ev UIEvent) bool { return ev.Type == UIState && ev.ID == entry.ID && ev.State == StateRead })
	if convs, _ := bob.Conversations(); convs[0].Unread != 0 {
		t.Errorf("unread after MarkRead: %d", convs[0].Unread)
	}
	hist, err := alice.History(chat.Peer("bob"), "", 10)
	if err != nil || len(hist) != 1 || hist[0].State != StateRead {
		t.Fatalf("alice's history %+v %v", hist, err)
	}

	// Typing is ephemeral: bob answers (confirming the session) and types.
	if _, err := bob.Send(chat.Peer("alice"), "hi alice"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, "bob's reply", func(ev UIEvent) bool { return ev.Type == UIMessage && ev.Entry.Text == "hi alice" })
	bob.Typing(chat.Peer("alice"))
	waitEvent(t, alice, "typing", func(ev UIEvent) bool { return ev.Type == UITyping && ev.Conversation == chat.Peer("bob") })

	// Read receipts can be turned off.
	bob.SetSendReceipts(false)
	e2, _ := alice.Send(chat.Peer("bob"), "second")
	waitEvent(t, alice, "delivered", func(ev UIEvent) bool { return ev.Type == UIState && ev.ID == e2.ID && ev.State == StateDelivered })
	waitEvent(t, bob, "second", func(ev UIEvent) bool { return ev.Type == UIMessage && ev.Entry.Text == "second" })
	bob.MarkRead(chat.Peer("alice"))
	e3, _ := alice.Send(chat.Peer("bob"), "third")
	waitEvent(t, alice, "third delivered", func(ev UIEvent) bool { return ev.Type == UIState && ev.ID == e3.ID && ev.State == StateDelivered })
	if h, _ := alice.History(chat.Peer("bob"), "", 10); h[len(h)-2].ID != e2.ID || h[len(h)-2].State != StateDelivered {
		t.Errorf("a read receipt was sent with receipts off: %+v", h)
	}
	// History pages backwards.
	page, _ := alice.History(chat.Peer("bob"), e3.ID, 1)
	if len(page) != 1 || page[0].ID != e2.ID {
		t.Errorf("page before third: %+v", page)
	}
}

func TestEngineQueuesWhileOffline(t *testing.T) {
	data := t.TempDir()
	s := startTestServer(t, data, "127.0.0.1:0")
	addr := s.addr
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	fast := EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	alice, err := StartEngine(ha, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	waitEvent(t, alice, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })

	s.stop()
	waitEvent(t, alice, "disconnected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnDisconnected })
	entry, err := alice.Send(chat.Peer("bob"), "typed while offline")
	if err != nil || entry.State != StateSending {
		t.Fatalf("offline send: %+v %v", entry, err)
	}
	s = startTestServer(t, data, addr)
	defer s.stop()
	waitEvent(t, alice, "stored after reconnect", func(ev UIEvent) bool {
		return ev.Type == UIState && ev.ID == entry.ID && ev.State == StateStored
	})
	bob, err := StartEngine(hb, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got := waitEvent(t, bob, "the queued message", func(ev UIEvent) bool { return ev.Type == UIMessage })
	if got.Entry.Text != "typed while offline" {
		t.Fatalf("bob got %q", got.Entry.Text)
	}
}

// TestEngineIdleDisconnect: after an idle disconnect the engine waits for
// the user instead of reconnecting at once.
func TestEngineIdleDisconnect(t *testing.T) {
	data := t.TempDir()
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: data, AFKTimeout: appliance.Duration(time.Second), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	s := &testServer{addr: srv.Addr().String(), fp: srv.Fingerprint()}
	ha := testAccount(t, s, "alice")
	testAccount(t, s, "bob")
	alice, err := StartEngine(ha, EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	waitEvent(t, alice, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })
	waitEvent(t, alice, "idle disconnect", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnDisconnected })
	select {
	case ev := <-alice.Events():
		if ev.Type == UIConn && ev.Conn == ConnConnecting {
			t.Fatal("reconnected without user activity")
		}
	case <-time.After(500 * time.Millisecond):
	}
	entry, err := alice.Send(chat.Peer("bob"), "I'm back")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, "stored after the user came back", func(ev UIEvent) bool { return ev.Type == UIState && ev.ID == entry.ID && ev.State == StateStored })
}

func TestEngineSettingsPersist(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	h := testAccount(t, s, "alice")
	e, err := StartEngine(h, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if typing, receipts := e.Settings(); !typing || !receipts {
		t.Fatalf("defaults: %v %v", typing, receipts)
	}
	e.SetSendReceipts(false)
	e.Close()
	e, err = StartEngine(h, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if typing, receipts := e.Settings(); !typing || receipts {
		t.Fatalf("after a restart: typing %v receipts %v, want true false", typing, receipts)
	}
}

// TestOneShotEngine runs the scriptable commands' path: a one-shot engine
// receives by the interactive engine's rules (history, acks, delivery
// receipts), and a message its front end could not show is not acked.
func TestOneShotEngine(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oneShot := func(h *home.Home, receive bool) *Engine {
		t.Helper()
		e, err := OpenEngine(h, EngineOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Connect(ctx, receive); err != nil {
			t.Fatal(err)
		}
		if _, err := e.FlushOutbox(ctx); err != nil {
			t.Fatal(err)
		}
		return e
	}

	alice := oneShot(ha, false)
	res, err := alice.SendText(ctx, "bob", "first")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, "bob", "second"); err != nil {
		t.Fatal(err)
	}
	alice.Close()

	// bob's front end fails to show the first message: it is neither kept
	// nor acked.
	boom := errors.New("stdout closed")
	var shown []string
	bob := oneShot(hb, true)
	err = bob.Receive(ctx, ReceiveOptions{Show: func(m *Message) error {
		if m.Text == "first" {
			return boom
		}
		shown = append(shown, m.Text)
		return nil
	}})
	bob.Close()
	if !errors.Is(err, boom) {
		t.Fatalf("Receive = %v, want the front end's error", err)
	}
	if h, _ := hb.History(chat.Peer("alice"), "", 10); len(h) != 0 {
		t.Fatalf("history after a failed show: %+v", h)
	}

	// The next run gets both again, keeps them, acks them and answers
	// with one delivery receipt.
	shown = nil
	bob = oneShot(hb, true)
	if err := bob.Receive(ctx, ReceiveOptions{Show: func(m *Message) error { shown = append(shown, m.Text); return nil }}); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	if !slices.Equal(shown, []string{"first", "second"}) {
		t.Fatalf("shown %q", shown)
	}
	if h, _ := hb.History(chat.Peer("alice"), "", 10); len(h) != 2 || h[0].Outgoing || h[0].Kind != chat.KindText {
		t.Fatalf("bob's history %+v", h)
	}
	if n := hb.Probe().Count("pending"); n != 0 {
		t.Errorf("%d queued messages left after Receive", n)
	}
	bob = oneShot(hb, true)
	if err := bob.Receive(ctx, ReceiveOptions{Show: func(m *Message) error { t.Errorf("shown again: %+v", m); return nil }}); err != nil {
		t.Fatal(err)
	}
	bob.Close()

	// alice's next run takes the receipt: acked, not shown, and her
	// history says delivered.
	alice = oneShot(ha, true)
	if err := alice.Receive(ctx, ReceiveOptions{Show: func(m *Message) error { t.Errorf("alice was shown %+v", m); return nil }}); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	h, _ := ha.History(chat.Peer("bob"), "", 10)
	if len(h) != 2 || h[0].ID != res.ID || h[0].State != StateDelivered || h[1].State != StateDelivered {
		t.Fatalf("alice's history %+v", h)
	}
}

// TestOneShotEngineRead: what a command shows with Read (recv) counts as
// read: it is not unread in the home, and the sender learns it was read;
// with the receipts setting off, the sender learns only that it was
// delivered, and it is still not unread.
func TestOneShotEngineRead(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oneShot := func(h *home.Home, receive bool) *Engine {
		t.Helper()
		e, err := OpenEngine(h, EngineOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Connect(ctx, receive); err != nil {
			t.Fatal(err)
		}
		if _, err := e.FlushOutbox(ctx); err != nil {
			t.Fatal(err)
		}
		return e
	}
	send := func(text string) string {
		t.Helper()
		alice := oneShot(ha, false)
		defer alice.Close()
		res, err := alice.SendText(ctx, "bob", text)
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	recv := func(h *home.Home, read bool) []string {
		t.Helper()
		var shown []string
		e := oneShot(h, true)
		defer e.Close()
		if err := e.Receive(ctx, ReceiveOptions{Read: read, Show: func(m *Message) error { shown = append(shown, m.Text); return nil }}); err != nil {
			t.Fatal(err)
		}
		return shown
	}
	state := func(id string) DeliveryState {
		t.Helper()
		recv(ha, true) // alice takes bob's receipts
		h, _ := ha.History(chat.Peer("bob"), "", 10)
		for _, e := range h {
			if e.ID == id {
				return e.State
			}
		}
		t.Fatalf("%s not in alice's history %+v", id, h)
		return 0
	}
	unread := func() int {
		t.Helper()
		convs, err := hb.Conversations()
		if err != nil || len(convs) != 1 {
			t.Fatalf("bob's conversations %+v %v", convs, err)
		}
		return convs[0].Unread
	}

	// Without Read (as before): kept unread, answered as delivered.
	first := send("first")
	if got := recv(hb, false); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("shown %q", got)
	}
	if n := unread(); n != 1 {
		t.Errorf("unread %d after a Receive without Read, want 1", n)
	}
	if st := state(first); st != StateDelivered {
		t.Errorf("alice sees %v after a Receive without Read, want delivered", st)
	}

	// With Read: not unread, and alice sees it read.
	second := send("second")
	if got := recv(hb, true); !slices.Equal(got, []string{"second"}) {
		t.Fatalf("shown %q", got)
	}
	if n := unread(); n != 1 {
		t.Errorf("unread %d after a Receive with Read, want the 1 from before", n)
	}
	if st := state(second); st != StateRead {
		t.Errorf("alice sees %v after a Receive with Read, want read", st)
	}

	// Read receipts off: delivered only, and still not unread.
	bob, err := OpenEngine(hb, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bob.SetSendReceipts(false)
	bob.Close()
	third := send("third")
	if got := recv(hb, true); !slices.Equal(got, []string{"third"}) {
		t.Fatalf("shown %q", got)
	}
	if n := unread(); n != 1 {
		t.Errorf("unread %d after a Receive with Read and receipts off, want 1", n)
	}
	if st := state(third); st != StateDelivered {
		t.Errorf("alice sees %v with bob's read receipts off, want delivered", st)
	}
	if st := state(first); st != StateDelivered {
		t.Errorf("the first message, never read, is %v, want delivered", st)
	}
}
