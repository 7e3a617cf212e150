package appliance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Group sends on a real server over QUIC on 127.0.0.1 (protocol.md §6.7):
// stored once and delivered to every device with the group and the shared
// payload; signalled to the online ones; bounded by group_max_members and
// group_max_per_account; charged to the limits by their fan-out.

// groupServer runs a server for the test.
func groupServer(t *testing.T) *Server {
	t.Helper()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// testDevice is a device with its signing key.
type testDevice struct {
	user string
	id   uint32
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// groupAccount creates user with n devices, each with published keys.
func groupAccount(t *testing.T, srv *Server, user string, n int) []testDevice {
	t.Helper()
	ctx := context.Background()
	identity, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []testDevice
	for id := uint32(1); id <= uint32(n); id++ {
		pub, priv, _ := ed25519.GenerateKey(nil)
		if id == 1 {
			err = srv.store.CreateAccount(ctx, store.NewAccount{Name: user, PasswordHash: "phc", DeviceKey: pub, Now: time.Now()})
		} else {
			_, err = srv.store.AddDevice(ctx, user, "phc", pub, "", time.Now())
		}
		if err != nil {
			t.Fatal(err)
		}
		publishTestKeys(t, srv.store, identity, user, id, pub, 1)
		out = append(out, testDevice{user, id, pub, priv})
	}
	return out
}

// connect authenticates d on a connection of its own.
func (d testDevice) connect(t *testing.T, srv *Server, receive bool) *transport.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, srv.Addr().String(), &transport.Pinner{Pin: srv.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(transport.CloseNormal, "") })
	exp, err := c.Exporter()
	if err != nil {
		t.Fatal(err)
	}
	sig := ed25519.Sign(d.priv, transport.AuthTranscript(transport.CodeAuth, exp, d.user, d.id))
	if err := c.WriteFrame(transport.CodeAuth, 1, &transport.Auth{User: d.user, Device: d.id, Signature: sig, Receive: receive}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.ReadFrame(); err != nil || f.Code != transport.CodeWelcome {
		t.Fatalf("auth of %s/%d: %v %v", d.user, d.id, f.Code, err)
	}
	return c
}

// groupSend is a group Send of shared to devs.
func groupSend(id byte, group []byte, shared []byte, devs ...testDevice) *transport.Send {
	req := &transport.Send{MessageID: bytes.Repeat([]byte{id}, 16), Group: group, Shared: shared}
	for _, d := range devs {
		req.Envelopes = append(req.Envelopes, transport.Envelope{User: d.user, Device: d.id, DeviceKey: d.pub})
	}
	return req
}

// sendReq writes req under id and reads frames up to its answer, passing
// the others to other.
func sendReq(t *testing.T, c *transport.Conn, id uint32, req *transport.Send, other func(transport.Frame)) transport.Frame {
	t.Helper()
	if err := c.WriteFrame(transport.CodeSend, id, req); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.ID == id && (f.Code == transport.CodeSent || f.Code == transport.CodeError) {
			return f
		}
		if other != nil {
			other(f)
		}
	}
}

// wantError checks that f is an error of code whose message holds text.
func wantError(t *testing.T, what string, f transport.Frame, code transport.ErrorCode, text string) {
	t.Helper()
	var e transport.Error
	if f.Code != transport.CodeError || transport.Unmarshal(f.Body, &e) != nil || e.Code != code || !bytes.Contains([]byte(e.Message), []byte(text)) {
		t.Errorf("%s: %v %+v, want error %v with %q", what, f.Code, e, code, text)
	}
}

// TestGroupSendDelivered: one group Send to eight devices of five accounts
// is stored once; each device's receiving connection gets one Deliver
// with the group and the shared payload and no payload of its own; the
// operator sees the group's id and its 6 accounts; a resend stores nothing;
// an ephemeral group Send reaches the online devices as a Signal.
func TestGroupSendDelivered(t *testing.T) {
	srv := groupServer(t)
	alice := groupAccount(t, srv, "alice", 2)
	var to []testDevice
	to = append(to, alice[1])
	for i := range 5 {
		to = append(to, groupAccount(t, srv, fmt.Sprintf("m%d", i), 1+i%2)...)
	}
	group := bytes.Repeat([]byte{0x6b}, 16)
	shared := bytes.Repeat([]byte("group ciphertext "), 1000)
	sender := alice[0].connect(t, srv, false)

	f := sendReq(t, sender, 1, groupSend(1, group, shared, to...), nil)
	var sent transport.Sent
	if f.Code != transport.CodeSent || transport.Unmarshal(f.Body, &sent) != nil || sent.Duplicate {
		t.Fatalf("group send: %v %+v", f.Code, sent)
	}
	if f := sendReq(t, sender, 2, groupSend(1, group, shared, to...), nil); f.Code != transport.CodeSent || transport.Unmarshal(f.Body, &sent) != nil || !sent.Duplicate {
		t.Errorf("resend: %v %+v", f.Code, sent)
	}
	if st := srv.store.Stats(); st.SharedPayloads != 1 || st.SharedBytes != int64(len(shared)) || st.QueueDepth != len(to) {
		t.Errorf("store: %+v, want one shared payload and %d entries", st, len(to))
	}
	// bob's receiving connection: the Deliver, then QueueEmpty.
	bob := to[1].connect(t, srv, true)
	var got []*transport.Deliver
	for {
		f, err := bob.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.Code == transport.CodeQueueEmpty {
			break
		}
		if f.Code == transport.CodeDeliver {
			var d transport.Deliver
			if err := transport.Unmarshal(f.Body, &d); err != nil {
				t.Fatal(err)
			}
			got = append(got, &d)
		}
	}
	if len(got) != 1 || !bytes.Equal(got[0].Group, group) || !bytes.Equal(got[0].Shared, shared) || len(got[0].Payload) != 0 || got[0].From != "alice" || got[0].FromDevice != 1 {
		t.Fatalf("bob got %+v", got)
	}
	groups, err := srv.Groups(context.Background())
	if err != nil || len(groups) != 1 || groups[0].ID != fmt.Sprintf("%x", group) || groups[0].Members != 6 || groups[0].Messages != 1 || groups[0].Creator != "alice" {
		t.Errorf("groups: %+v %v", groups, err)
	}
	snap, _ := srv.Snapshot(context.Background())
	if snap.GroupMessages != 1 || snap.Groups != 1 || snap.SharedPayloads != 1 {
		t.Errorf("snapshot: %d group messages, %d groups, %d shared payloads", snap.GroupMessages, snap.Groups, snap.SharedPayloads)
	}

	// Ephemeral: a Signal to bob, the one online device; nothing stored.
	typing := groupSend(3, group, []byte("typing"), to...)
	typing.Ephemeral = true
	f = sendReq(t, sender, 3, typing, nil)
	if f.Code != transport.CodeSent || transport.Unmarshal(f.Body, &sent) != nil || sent.Online != 1 {
		t.Errorf("ephemeral group send: %v %+v, want 1 online", f.Code, sent)
	}
	for {
		f, err := bob.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.Code != transport.CodeSignal {
			continue
		}
		var s transport.Signal
		if err := transport.Unmarshal(f.Body, &s); err != nil || !bytes.Equal(s.Group, group) || string(s.Shared) != "typing" || len(s.Payload) != 0 {
			t.Errorf("signal: %+v %v", s, err)
		}
		break
	}
	if st := srv.store.Stats(); st.SharedPayloads != 1 || st.QueueDepth != len(to) {
		t.Errorf("an ephemeral group send stored something: %+v", st)
	}
}

// TestGroupSendBounds: group_max_members counts the accounts a group Send
// reaches, the sender's included, and refuses past it before any token
// is taken; group_max_per_account refuses a new group id past it, and an
// id already used still works.
func TestGroupSendBounds(t *testing.T) {
	srv := groupServer(t)
	alice := groupAccount(t, srv, "alice", 1)
	var to []testDevice
	for i := range 3 {
		to = append(to, groupAccount(t, srv, fmt.Sprintf("m%d", i), 1)...)
	}
	l := srv.currentLimits()
	l.GroupMaxMembers, l.GroupMaxPerAccount = 3, 2
	l.MessageRate, l.MessageBurst = 0, 4
	if err := srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	c := alice[0].connect(t, srv, false)
	g := func(n byte) []byte { return bytes.Repeat([]byte{n}, 16) }
	for i := range 3 {
		wantError(t, "four accounts", sendReq(t, c, uint32(1+i), groupSend(byte(1+i), g(1), []byte("x"), to...), nil), transport.ErrTooLarge, "at most 3 accounts")
	}
	// The three refusals took no tokens: of the burst of 4, three sends
	// and the refusal of a third group id (by the store) take one each.
	for i, grp := range []byte{1, 2, 1} {
		if f := sendReq(t, c, uint32(10+i), groupSend(byte(10+i), g(grp), []byte("x"), to[:2]...), nil); f.Code != transport.CodeSent {
			var e transport.Error
			transport.Unmarshal(f.Body, &e)
			t.Fatalf("send %d to group %d: %v %+v", i, grp, f.Code, e)
		}
	}
	wantError(t, "a third new group", sendReq(t, c, 20, groupSend(20, g(3), []byte("x"), to[:2]...), nil), transport.ErrTooLarge, "as many as this server allows")
	if f := sendReq(t, c, 21, groupSend(21, g(2), []byte("x"), to[:2]...), nil); f.Code == transport.CodeSent {
		t.Error("the fifth send passed a burst of 4")
	}
	if gs, _ := srv.Groups(context.Background()); len(gs) != 2 || gs[0].Members != 3 {
		t.Errorf("groups: %+v", gs)
	}
}

// TestGroupSendCosts (protocol.md §6.6): a group Send takes a message
// token per started 50 devices and its shared payload once plus 64 bytes
// a device: with a burst of 20 messages, a Send to 1000 devices takes the
// bucket whole and the next is refused, while 20 Sends to a group of 40
// devices pass; a fan-out past the burst is capped at it, never refused
// for ever.
func TestGroupSendCosts(t *testing.T) {
	send := func(devices, shared int) *transport.Send {
		req := &transport.Send{Group: make([]byte, 16), Shared: make([]byte, shared)}
		req.Envelopes = make([]transport.Envelope, devices)
		return req
	}
	for _, c := range []struct {
		devices, tokens, bytes int
	}{{1, 1, 1000 + 64}, {50, 1, 1000 + 50*64}, {51, 2, 1000 + 51*64}, {1000, 20, 1000 + 1000*64}, {8192, 164, 1000 + 8192*64}} {
		if got := sendTokens(send(c.devices, 1000)); got != c.tokens {
			t.Errorf("%d devices: %d tokens, want %d", c.devices, got, c.tokens)
		}
		if got := sendSize(send(c.devices, 1000)); got != c.bytes {
			t.Errorf("%d devices: %d bytes, want %d", c.devices, got, c.bytes)
		}
	}
	if sendTokens(&transport.Send{Envelopes: make([]transport.Envelope, 1000)}) != 1 {
		t.Error("an ordinary Send is one message")
	}
	srv := testServer(t)
	l := srv.currentLimits()
	l.MessageRate, l.MessageBurst = 0, 20
	if err := srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	take := func(ss *session, req *transport.Send) *transport.Error {
		return ss.take(limitMessages, sendTokens(req), sendSize(req))
	}
	big := &session{srv: srv, ip: "192.0.2.1", dev: testDev("big")}
	if e := take(big, send(1000, 10<<10)); e != nil {
		t.Fatalf("the first big fan-out: %v", e)
	}
	if e := take(big, send(1000, 10<<10)); e == nil || e.Code != transport.ErrRateLimited {
		t.Errorf("the second big fan-out: %v, want rate limited", e)
	}
	if e := take(big, send(40, 10)); e == nil {
		t.Error("a small group send after the bucket was emptied passed")
	}
	normal := &session{srv: srv, ip: "192.0.2.1", dev: testDev("normal")}
	for i := range 20 {
		if e := take(normal, send(40, 10<<10)); e != nil {
			t.Fatalf("group message %d of 20 to 40 devices: %v", i+1, e)
		}
	}
	huge := &session{srv: srv, ip: "192.0.2.1", dev: testDev("huge")}
	if e := take(huge, send(8192, 10)); e != nil {
		t.Errorf("a fan-out past the burst from a full bucket: %v", e)
	}
}

func testDev(user string) chat.Device { return chat.DeviceOf(user, 1) }
