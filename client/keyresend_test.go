package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Key requests answered at once (issue 10 point 3, protocol.md §8.3): a
// member whose group messages wait for a sender's chain asks for it; the
// sender's device answers without sending anything else, with the chain
// from the position that member's device was first sent it, and the
// waiting messages are read.

// startStoreServer is startTestServer keeping the server's store, so that
// a test can play a server that loses or withholds an entry.
func startStoreServer(t *testing.T) (*testServer, *store.Store) {
	t.Helper()
	var st store.Store
	data := t.TempDir()
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: data, Admin: "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		WrapStore: func(s store.Store) store.Store { st = s; return s }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), cancel: cancel, done: make(chan struct{}), srv: srv}
	go func() { srv.Serve(ctx); close(s.done) }()
	t.Cleanup(s.stop)
	return s, &st
}

// pendingFrom lists what d's mailbox holds from user.
func pendingFrom(t *testing.T, st store.Store, d chat.Device, user string) []store.Entry {
	t.Helper()
	if err := st.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	all, err := st.Pending(d, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(e store.Entry) bool { return e.From.User != user })
}

// holdsFrom reports whether d's mailbox comes to hold want entries from
// user: a client's acks reach the store after the client is done, so the
// count is read again until it matches or ctx ends.
func holdsFrom(t *testing.T, ctx context.Context, st store.Store, d chat.Device, user string, want int) bool {
	t.Helper()
	for {
		if len(pendingFrom(t, st, d, user)) == want {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// askForKey makes h's device ask to's devices for their chain in conv, n
// times on one connection, as a client whose message waits does.
func askForKey(t *testing.T, ctx context.Context, h *home.Home, to string, conv chat.Conversation, n int) {
	t.Helper()
	e := oneShotEngine(t, ctx, h, false)
	defer e.Close()
	for range n {
		ask := &Content{Kind: chat.KindSenderKey, Group: conv.ID(), SentAt: time.Now().UnixMilli()}
		if _, err := e.client().SendContent(ctx, randomID(t), chat.Peer(to), ask); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKeyResend: the server withholds the chain alice's device sent bob's
// (a lying or lossy router); alice sends three messages; bob shows that
// they wait for the key and asks; alice's device answers without sending
// anything else; bob reads the three, in order, exactly once. bob's
// further asks, on that connection or another, get no second answer on
// this chain; a non-member's ask gets none.
func TestKeyResend(t *testing.T) {
	s, stp := startStoreServer(t)
	ha, hb, hd := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "dave")
	st := *stp
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "resend", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // the welcome
	for _, text := range []string{"m1", "m2", "m3"} {
		if _, err := alice.SendGroupText(ctx, g.Conversation, text); err != nil {
			t.Fatal(err)
		}
	}
	bob1 := chat.Device{User: "bob", ID: 1}
	if !holdsFrom(t, ctx, st, bob1, "alice", 4) { // the welcome acked: the chain and the three
		t.Fatalf("bob's mailbox holds %d entries from alice", len(pendingFrom(t, st, bob1, "alice")))
	}
	var withheld int
	for _, e := range pendingFrom(t, st, bob1, "alice") {
		if e.Shared == nil { // the chain, ahead of the messages
			st.Ack(bob1, []uint64{e.Seq})
			withheld++
		}
	}
	if err := st.Sync(ctx); err != nil || withheld != 1 {
		t.Fatalf("withheld %d entries: %v", withheld, err)
	}

	got := receiveAll(t, ctx, hb)
	if n := len(slices.DeleteFunc(slices.Clone(got), func(s string) bool { return !strings.Contains(s, "waiting for the key from alice") })); n != 3 || reported(got, "alice: m") {
		t.Fatalf("bob, without alice's chain, read %q", got)
	}
	own, err := ha.SenderKey(g.Conversation, chat.Device{User: "alice", ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, ha) // bob's request, answered at once
	if after, _ := ha.SenderKey(g.Conversation, chat.Device{User: "alice", ID: 1}); string(after) != string(own) {
		t.Fatal("alice's chain moved: she sent a message to answer")
	}
	if !holdsFrom(t, ctx, st, bob1, "alice", 4) {
		t.Fatalf("bob's mailbox holds %d entries from alice, want the 3 messages and the answer", len(pendingFrom(t, st, bob1, "alice")))
	}
	got = receiveAll(t, ctx, hb)
	var read []string
	for _, line := range got {
		if strings.HasPrefix(line, "alice: m") {
			read = append(read, line)
		}
	}
	if !slices.Equal(read, []string{"alice: m1", "alice: m2", "alice: m3"}) || reported(got, "could not be read") {
		t.Fatalf("bob, after alice answered, read %q", got)
	}
	if got := receiveAll(t, ctx, hb); len(got) != 0 {
		t.Errorf("bob read %q again", got)
	}

	// bob's connection above asked again (its messages were held when it
	// began); bob asks twice more, then once on another connection: the
	// chain was given to his device once, and is not again.
	askForKey(t, ctx, hb, "alice", g.Conversation, 2)
	askForKey(t, ctx, hb, "alice", g.Conversation, 1)
	receiveAll(t, ctx, ha)
	if !holdsFrom(t, ctx, st, bob1, "alice", 0) {
		t.Errorf("alice answered bob's repeated requests: %d entries", len(pendingFrom(t, st, bob1, "alice")))
	}

	// dave, not a member, asks: nothing is sent to him, nothing queued.
	askForKey(t, ctx, hd, "alice", g.Conversation, 1)
	receiveAll(t, ctx, ha)
	if !holdsFrom(t, ctx, st, chat.Device{User: "dave", ID: 1}, "alice", 0) {
		t.Errorf("alice answered a non-member: %d entries", len(pendingFrom(t, st, chat.Device{User: "dave", ID: 1}, "alice")))
	}
	if _, _, ok, err := ha.NextQueued(); ok || err != nil {
		t.Errorf("alice's queue after the requests: %v %v", ok, err)
	}
}

// TestKeyResendNotBeforeJoin: carol, added after alice's third message,
// is handed the three earlier ciphertexts (a member forwards them); they
// wait and she asks; alice's device answers from the position carol was
// first sent the chain, not earlier, so they still cannot be read, and
// once the answer came each says so and is acked.
func TestKeyResendNotBeforeJoin(t *testing.T) {
	s, stp := startStoreServer(t)
	ha, hb, hc := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol")
	st := *stp
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "later", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	var early [][]byte
	for _, text := range []string{"m1", "m2", "m3"} {
		early = append(early, groupSend(t, ctx, alice, g.Conversation, text).Shared)
	}
	receiveAll(t, ctx, hb)
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "m4"); err != nil {
		t.Fatal(err)
	}
	// A member hands carol the earlier ciphertexts, as new group Sends.
	ac, _ := alice.connected()
	gid, _ := groupIDBytes(g.Conversation)
	carolDevs, err := ac.Devices(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	for _, shared := range early {
		msg := &transport.Send{MessageID: randomID(t), Group: gid, Shared: shared}
		for _, d := range carolDevs {
			msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: ac.listedKey(d)})
		}
		var sent transport.Sent
		if err := ac.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveAll(t, ctx, hc)
	if !slices.Contains(got, "alice: m4") || reported(got, "alice: m1") || !reported(got, "waiting for the key from alice") {
		t.Fatalf("carol read %q", got)
	}
	receiveAll(t, ctx, ha) // carol's request
	carol1 := chat.Device{User: "carol", ID: 1}
	if !holdsFrom(t, ctx, st, carol1, "alice", 4) {
		t.Fatalf("carol's mailbox holds %d entries from alice, want the 3 held and an answer", len(pendingFrom(t, st, carol1, "alice")))
	}
	got = receiveAll(t, ctx, hc)
	if reported(got, "alice: m1") || reported(got, "alice: m2") || reported(got, "alice: m3") {
		t.Fatalf("carol read what was sent before she joined: %q", got)
	}
	if n := len(slices.DeleteFunc(slices.Clone(got), func(s string) bool {
		return !strings.Contains(s, "could not be read: it was sent before you had alice's key")
	})); n != 3 {
		t.Errorf("carol, after the answer, read %q", got)
	}
	if !holdsFrom(t, ctx, st, carol1, "alice", 0) {
		t.Errorf("%d entries left in carol's mailbox", len(pendingFrom(t, st, carol1, "alice")))
	}
	// What carol holds of alice's chain opens none of them.
	b, err := hc.SenderKey(g.Conversation, chat.Device{User: "alice", ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e2ee.UnmarshalSenderKeyRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, shared := range early {
		if _, err := r.Decrypt(shared, groupAD(gid, chat.Device{User: "alice", ID: 1})); !errors.Is(err, e2ee.ErrBeforeSenderKey) {
			t.Errorf("m%d with carol's chain: %v", i+1, err)
		}
	}
}
