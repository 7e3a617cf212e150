package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
)

// listLie is a store that lies about one account's devices and signed
// list (protocol.md §9.8) when told to.
type listLie struct {
	store.Store
	mu      sync.Mutex
	devices func([]store.DeviceKey) []store.DeviceKey // nil: the truth
	list    []byte                                    // nil: the truth
}

func (l *listLie) set(devices func([]store.DeviceKey) []store.DeviceKey, list []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.devices, l.list = devices, list
}

func (l *listLie) ActiveDevices(user string) ([]store.DeviceKey, error) {
	devs, err := l.Store.ActiveDevices(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && user == "alice" && l.devices != nil {
		devs = l.devices(devs)
	}
	return devs, err
}

func (l *listLie) DeviceList(user string) (store.SignedList, error) {
	sl, err := l.Store.DeviceList(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && user == "alice" && l.list != nil {
		sl = store.SignedList{Bytes: l.list}
		if p, err := e2ee.ParseDeviceList(l.list); err == nil {
			sl.Seq = p.Seq
		}
	}
	return sl, err
}

// startListLieServer runs a real server on a store that lies about
// alice's devices and list when told to (listLie), stopped with the test.
func startListLieServer(t *testing.T) (*listLie, *testServer) {
	t.Helper()
	lie := &listLie{}
	data := t.TempDir()
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		WrapStore: func(st store.Store) store.Store { lie.Store = st; return lie }})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return lie, &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), srv: srv}
}

// TestMaliciousServerDeviceList (issue 11, must show): a server that adds
// a device to alice's devices, brings back her revoked device with her
// older signed list, or swaps a device's key gets nothing from bob: his
// client refuses the send, says which device and why, and writes a line
// in the conversation; a newer list is taken, with a line saying alice's
// devices changed. A device the server lists but alice's list does not
// name is never encrypted to, whatever its certificate.
func TestMaliciousServerDeviceList(t *testing.T) {
	lie, s := startListLieServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := connectHome(t, ha, false)
	id := alice.keys.IdentityPrivateKey()
	if err := alice.PublishDeviceList(ctx, signedList(t, id, "alice", 1, alice.me())); err != nil {
		t.Fatal(err)
	}
	// alice links a second device (list 3; registration published 1,
	// signedList counts from it).
	n := makeNewDevice(t)
	n.start(t, s, "alice")
	info, err := alice.FindLink(ctx, n.code("alice"))
	if err != nil {
		t.Fatal(err)
	}
	dev2 := info.Device
	sealed, _ := e2ee.SealLink(nil, info.LinkKey, []byte("x"))
	list2 := signedList(t, id, "alice", 2, alice.me(), entryOf(dev2, n.pub))
	if err := alice.ApproveLink(ctx, n.code("alice"), dev2, list2, sealed); err != nil {
		t.Fatal(err)
	}
	h2 := linkedHome(t, s, "alice", dev2, n, id)
	connectHome(t, h2, false).Close() // publishes its keys

	send := func(text string) error {
		t.Helper()
		bob, err := Connect(ctx, hb, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer bob.Close()
		_, err = bob.SendText(ctx, "alice", text)
		return err
	}
	safety := func() string {
		t.Helper()
		bob := connectHome(t, hb, false)
		defer bob.Close()
		info, err := bob.SafetyNumber(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		return info.Number
	}
	before := safety()
	if err := send("to both"); err != nil {
		t.Fatalf("to alice's two devices: %v", err)
	}
	ct, _ := hb.Contact("alice")
	if l, err := e2ee.ParseDeviceList(ct.DeviceList); err != nil || l.Seq != 3 {
		t.Fatalf("bob keeps alice's list %v, %v", l, err)
	}

	// alice revokes device 2 (list 3): bob takes the newer list, says so.
	if err := alice.RevokeDevice(ctx, dev2, signedList(t, id, "alice", 3, alice.me())); err != nil {
		t.Fatal(err)
	}
	if err := send("to one"); err != nil {
		t.Fatalf("after the revocation: %v", err)
	}
	wantLine(t, hb, "alice's devices changed: removed device 2 (now 1)")
	// The safety number covers the account identity: devices coming and
	// going do not change it (the line above is how the change shows).
	if after := safety(); after != before {
		t.Fatalf("the safety number changed with alice's devices: %s → %s", before, after)
	}

	refused := func(what, why string) {
		t.Helper()
		err := send(what)
		var le *DeviceListError
		if !errors.As(err, &le) || le.User != "alice" || !strings.Contains(err.Error(), why) {
			t.Fatalf("%s: %v, want a device list error with %q", what, err, why)
		}
	}
	// The revoked device brought back with the older list 2.
	lie.set(func(devs []store.DeviceKey) []store.DeviceKey {
		return append(devs, store.DeviceKey{Device: chat.DeviceOf("alice", dev2), Key: n.pub})
	}, list2)
	refused("the revoked device back", "does not")
	wantLine(t, hb, "the server gave an older device list of alice's (number 3, this device has seen 4): refused")
	// A device of the server's own, with the current list.
	other, _, _ := ed25519.GenerateKey(nil)
	lie.set(func(devs []store.DeviceKey) []store.DeviceKey {
		return append(devs, store.DeviceKey{Device: chat.DeviceOf("alice", 9), Key: other})
	}, nil)
	refused("an added device", "alice's signed device list (number 4) does not")
	// A swapped key of device 1.
	lie.set(func(devs []store.DeviceKey) []store.DeviceKey {
		out := append([]store.DeviceKey(nil), devs...)
		for i := range out {
			if out[i].Device.ID == 1 {
				out[i].Key = other
			}
		}
		return out
	}, nil)
	refused("a swapped key", "under another key than alice's signed device list")
	// A list the identity did not sign.
	forged := signedList(t, mustIdentity(t), "alice", 4, alice.me())
	lie.set(nil, forged)
	if err := send("a forged list"); err != nil {
		t.Logf("with a forged list: %v", err) // the kept list 3 still holds: sending goes on
	}
	wantLine(t, hb, "the server gave a device list of alice's that alice's identity key did not sign: refused")
	lie.set(nil, nil)
	if err := send("the truth again"); err != nil {
		t.Fatalf("with the truth: %v", err)
	}
}

func mustIdentity(t *testing.T) e2ee.IdentityPrivateKey {
	t.Helper()
	id, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// wantLine checks that the conversation with alice has a line with text.
func wantLine(t *testing.T, h *home.Home, text string) {
	t.Helper()
	es, err := h.History(chat.Peer("alice"), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Text == text {
			return
		}
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Text)
	}
	t.Fatalf("no line %q in %q", text, got)
}

// linkN links n more devices to the account of h's device (as the link
// flow does: found by code, approved with a newer signed list, keys made
// under the account's identity) and returns their homes.
func linkN(t *testing.T, s *testServer, h *home.Home, user string, n int) []*home.Home {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := connectHome(t, h, false)
	id := first.keys.IdentityPrivateKey()
	entries := []e2ee.DeviceListEntry{first.me()}
	seq := uint64(1)
	if err := first.PublishDeviceList(ctx, signedList(t, id, user, seq, entries...)); err != nil {
		t.Fatal(err)
	}
	var out []*home.Home
	for range n {
		nd := makeNewDevice(t)
		w := nd.start(t, s, user)
		info, err := first.FindLink(ctx, nd.code(user))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entryOf(info.Device, nd.pub))
		seq++
		sealed, _ := e2ee.SealLink(nil, info.LinkKey, []byte("x"))
		if err := first.ApproveLink(ctx, nd.code(user), info.Device, signedList(t, id, user, seq, entries...), sealed); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		hn := linkedHome(t, s, user, info.Device, nd, id)
		connectHome(t, hn, false).Close() // publishes its keys
		out = append(out, hn)
	}
	first.Close()
	return out
}

// TestLinkedDevicesFanOut (issue 11, must show): alice with 2 linked
// devices and bob with 3: every message in either direction reaches every
// other device exactly once, and the sender's other devices show it as
// sent by them, in the conversation with the other.
func TestLinkedDevicesFanOut(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alices := append([]*home.Home{ha}, linkN(t, s, ha, "alice", 1)...)
	bobs := append([]*home.Home{hb}, linkN(t, s, hb, "bob", 2)...)

	type seen struct {
		from, text string
		outgoing   bool
		conv       chat.Conversation
	}
	take := func(h *home.Home) []seen {
		t.Helper()
		e := oneShotEngine(t, ctx, h, true)
		defer e.Close()
		var got []seen
		err := e.Receive(ctx, ReceiveOptions{Show: func(m *Message) error {
			if m.Kind == chat.KindText {
				got = append(got, seen{m.From.User, m.Text, m.Outgoing, m.Conversation})
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, h := range append(append([]*home.Home(nil), alices...), bobs...) {
		take(h) // whatever the links left
	}
	send := func(h *home.Home, to, text string) {
		t.Helper()
		c := connectHome(t, h, false)
		if _, err := c.SendText(ctx, to, text); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		c.Close()
	}
	send(alices[1], "bob", "from alice's second device")
	send(bobs[2], "alice", "from bob's third device")
	want := func(h *home.Home, who string, w ...seen) {
		t.Helper()
		got := take(h)
		if len(got) != len(w) {
			t.Fatalf("%s got %+v, want %+v", who, got, w)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("%s got %+v, want %+v", who, got, w)
			}
		}
	}
	// What a device shows of the conversation with peer: texts, with
	// who sent them and whether as this account.
	shown := func(h *home.Home, peer string) []seen {
		t.Helper()
		es, err := h.History(chat.Peer(peer), "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []seen
		for _, e := range es {
			if e.Kind == chat.KindText {
				out = append(out, seen{e.From, e.Text, e.Outgoing, chat.Peer(peer)})
			}
		}
		slices.SortFunc(out, func(a, b seen) int { return strings.Compare(a.from, b.from) })
		return out
	}
	fromAlice := seen{"alice", "from alice's second device", false, chat.Peer("alice")}
	fromBob := seen{"bob", "from bob's third device", false, chat.Peer("bob")}
	for i, h := range bobs {
		want(h, fmt.Sprintf("bob's device %d", i+1), fromAlice)
	}
	for i, h := range alices {
		want(h, fmt.Sprintf("alice's device %d", i+1), fromBob)
	}
	// Every device shows both texts in the conversation, once each, the
	// account's own as sent by it (in the order each device learnt them).
	for i, h := range bobs {
		got := shown(h, "alice")
		w := []seen{{"alice", fromAlice.text, false, chat.Peer("alice")}, {"bob", fromBob.text, true, chat.Peer("alice")}}
		if !slices.Equal(got, w) {
			t.Fatalf("bob's device %d shows %+v, want %+v", i+1, got, w)
		}
	}
	for i, h := range alices {
		got := shown(h, "bob")
		w := []seen{{"alice", fromAlice.text, true, chat.Peer("bob")}, {"bob", fromBob.text, false, chat.Peer("bob")}}
		if !slices.Equal(got, w) {
			t.Fatalf("alice's device %d shows %+v, want %+v", i+1, got, w)
		}
	}
	// Exactly once: nothing more anywhere.
	for _, h := range append(append([]*home.Home(nil), alices...), bobs...) {
		if got := take(h); len(got) != 0 {
			t.Fatalf("a device got %+v again", got)
		}
	}
}

// TestReadOnAnotherDevice (issue 11 point 2): what bob reads on one
// device is read on his others: his read receipt's copy clears the
// conversation's unread count there.
func TestReadOnAnotherDevice(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	bob2 := linkN(t, s, hb, "bob", 1)[0]
	alice := connectHome(t, ha, false)
	if _, err := alice.SendText(ctx, "bob", "read me"); err != nil {
		t.Fatal(err)
	}
	unread := func(h *home.Home) int {
		t.Helper()
		cs, err := h.Conversations()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Conversation == chat.Peer("alice") {
				return c.Unread
			}
		}
		return -1
	}
	receive := func(h *home.Home, read bool) {
		t.Helper()
		e := oneShotEngine(t, ctx, h, true)
		if err := e.Receive(ctx, ReceiveOptions{Read: read, Show: func(*Message) error { return nil }}); err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	receive(bob2, false)
	if n := unread(bob2); n != 1 {
		t.Fatalf("bob's second device: %d unread, want 1", n)
	}
	receive(hb, true) // bob reads it on his first device
	if n := unread(hb); n != 0 {
		t.Fatalf("bob's first device: %d unread after reading", n)
	}
	receive(bob2, false)
	if n := unread(bob2); n != 0 {
		t.Fatalf("bob's second device: %d unread after bob read it elsewhere", n)
	}
}

// TestSettingsOnAnotherDevice (issue 11 point 2): typing notices and
// read receipts turned off on one device of an account are off on its
// others once they connect.
func TestSettingsOnAnotherDevice(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ha := testAccount(t, s, "alice")
	a2 := linkN(t, s, ha, "alice", 1)[0]
	e1 := oneShotEngine(t, ctx, ha, true)
	e1.SetSendReceipts(false)
	e1.SetSendTyping(false)
	e1.SetSendTyping(true)
	if err := e1.Receive(ctx, ReceiveOptions{}); err != nil { // sends what was queued
		t.Fatal(err)
	}
	e1.Close()
	e2 := oneShotEngine(t, ctx, a2, true)
	if err := e2.Receive(ctx, ReceiveOptions{Show: func(m *Message) error {
		t.Errorf("a settings message shown: %+v", m)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if typing, receipts := e2.Settings(); !typing || receipts {
		t.Fatalf("the other device's settings: typing %v, receipts %v; want on, off", typing, receipts)
	}
	e2.Close()
	if s := a2.Settings(); !s.SendTyping || s.SendReceipts {
		t.Fatalf("kept: %+v", s)
	}
}

// TestUnlinkedDeviceFlagged (issue 11, must show): a device added with
// the password alone is flagged to bob — a line in the conversation and
// in his safety number's report — and is not encrypted to.
func TestUnlinkedDeviceFlagged(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	h2, err := home.Open(t.TempDir(), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := Login(ctx, h2, EnrollOptions{Server: s.addr, User: "alice", Password: "password1", Pin: s.fp}); err != nil {
		t.Fatal(err)
	}
	bob := connectHome(t, hb, false)
	if _, err := bob.SendText(ctx, "alice", "only to linked devices"); err != nil {
		t.Fatal(err)
	}
	text := UnlinkedText("alice", []uint32{2})
	wantLine(t, hb, text)
	info, err := bob.SafetyNumber(ctx, "alice")
	if err != nil || !slices.Equal(info.Unlinked, []uint32{2}) {
		t.Fatalf("bob's safety report: %+v, %v", info, err)
	}
	if got := receiveAll(t, ctx, ha); !slices.Equal(got, []string{"bob: only to linked devices"}) {
		t.Fatalf("alice's linked device got %q", got)
	}
	// The unlinked device's mailbox is empty: nothing was encrypted to it.
	c := connectHome(t, h2, true)
	for ev := range c.Events() {
		if ev.Type == EventMessage {
			t.Fatalf("the unlinked device got %+v", ev.Message)
		}
		if ev.Type == EventQueueEmpty || ev.Type == EventClosed {
			break
		}
	}
	// Once per text: the line is not written again.
	bob.Close()
	bob = connectHome(t, hb, false)
	if _, err := bob.SendText(ctx, "alice", "again"); err != nil {
		t.Fatal(err)
	}
	es, _ := hb.History(chat.Peer("alice"), "", 100)
	n := 0
	for _, e := range es {
		if e.Text == text {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the line is in the conversation %d times", n)
	}
}
