package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// A lying server (issue 10, must show): whatever the server says reaches a
// client as the frames it pushes, so the harness plays the server's router
// by pushing forged and replayed Delivers into a client's connection as if
// read from it, next to what a real server and real clients sent. Each
// forgery must be refused and reported in the group's history.

// lieTo hands forged Delivers to h's device, as its server would push
// them, and returns what a person reads: "from: text" lines.
func lieTo(t *testing.T, ctx context.Context, h *home.Home, lies ...*transport.Deliver) []string {
	t.Helper()
	e := oneShotEngine(t, ctx, h, false) // nothing from the real server: only the lies
	defer e.Close()
	c := e.client()
	for i, d := range lies {
		d.Seq = 1<<40 + uint64(i) // no real entry's number: the acks delete nothing
		c.inbox.push(transport.Frame{Code: transport.CodeDeliver, Body: transport.Marshal(d)})
	}
	c.inbox.push(transport.Frame{Code: transport.CodeQueueEmpty, Body: transport.Marshal(&transport.Empty{})})
	var got []string
	if err := e.Receive(ctx, ReceiveOptions{Show: func(m *Message) error {
		got = append(got, m.From.User+": "+m.Text)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	return got
}

func randomID(t *testing.T) []byte {
	id := make([]byte, transport.MessageIDLen)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// reported reports whether got has a line with all of parts.
func reported(got []string, parts ...string) bool {
	return slices.ContainsFunc(got, func(s string) bool {
		for _, p := range parts {
			if !strings.Contains(s, p) {
				return false
			}
		}
		return true
	})
}

// TestMaliciousServerGroups: a message replayed from another group, a
// 1:1 message presented as a group message, a group message from someone
// the server slips into the group, a membership change forged by a
// non-member and a replayed change are each refused by the member's
// client and reported; nothing forged is shown as said.
func TestMaliciousServerGroups(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, he := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "eve")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g1, err := alice.CreateGroup(ctx, "one", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := alice.CreateGroup(ctx, "two", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	groupSend(t, ctx, alice, g1.Conversation, "in one")
	inTwo := groupSend(t, ctx, alice, g2.Conversation, "in two")
	if got := receiveAll(t, ctx, hb); !slices.Contains(got, "alice: in one") || !slices.Contains(got, "alice: in two") {
		t.Fatalf("bob read %q", got)
	}
	gid1, _ := groupIDBytes(g1.Conversation)
	now := time.Now().UnixMilli()

	// 1. A message of group two, presented as group one's.
	got := lieTo(t, ctx, hb, &transport.Deliver{From: "alice", FromDevice: 1, MessageID: randomID(t), ServerTime: now, Group: gid1, Shared: inTwo.Shared})
	if slices.Contains(got, "alice: in two") || !reported(got, "could not be decrypted") {
		t.Errorf("another group's message replayed: bob read %q", got)
	}

	// 2. A 1:1 message presented as a group message.
	ac, _ := alice.connected()
	id := randomID(t)
	content := &Content{Kind: chat.KindText, Text: "just for bob", SentAt: now}
	entry := &home.OutboxEntry{To: chat.Peer("bob"), Content: transport.Marshal(content)}
	pair, err := ac.buildSend(ctx, id, entry, content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.transmit(ctx, id, entry, pair, nil); err != nil {
		t.Fatal(err)
	}
	got = lieTo(t, ctx, hb, &transport.Deliver{From: "alice", FromDevice: 1, MessageID: randomID(t), ServerTime: now, Group: gid1, Shared: pair.Envelopes[0].Payload})
	if slices.Contains(got, "alice: just for bob") || !reported(got, "could not be decrypted") {
		t.Errorf("a 1:1 message as a group's: bob read %q", got)
	}
	receiveAll(t, ctx, hb)

	// 3. eve, not a member, slipped into the group by the server: she has
	// bob's pairwise session and makes a chain for the group's id, but
	// bob's client does not show what she sends there.
	eve := oneShotEngine(t, ctx, he, false)
	defer eve.Close()
	ec, _ := eve.connected()
	key, err := e2ee.NewSenderKey(nil, [e2ee.DistributionIDSize]byte(gid1))
	if err != nil {
		t.Fatal(err)
	}
	bobDevs, err := ec.Devices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.distribute(ctx, g1.Conversation, bobDevs, key, nil); err != nil {
		t.Fatal(err)
	}
	plain := transport.Marshal(&Content{Kind: chat.KindText, Text: "eve was here", SentAt: now, Group: g1.ID})
	shared, err := key.Encrypt(plain, groupAD(gid1, chat.Device{User: "eve", ID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // eve's key, through the real server
	got = lieTo(t, ctx, hb, &transport.Deliver{From: "eve", FromDevice: 1, MessageID: randomID(t), ServerTime: now, Group: gid1, Shared: shared})
	if slices.Contains(got, "eve: eve was here") || !reported(got, "eve", "not in this group") {
		t.Errorf("a non-member's group message: bob read %q", got)
	}

	// 4. A membership change forged by eve: she adds herself.
	rec, err := ha.Group(g1.Conversation)
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseLog(rec)
	if err != nil {
		t.Fatal(err)
	}
	forged := &e2ee.GroupChange{Op: e2ee.OpAdd, Actor: "eve", Time: now,
		Members: []e2ee.GroupMember{{User: "eve", Identity: ec.keys.IdentityKey(), Role: e2ee.RoleAdmin}}}
	l.Prepare(forged)
	if err := e2ee.SignGroupChange(forged, ec.keys.IdentityPrivateKey()); err != nil {
		t.Fatal(err)
	}
	fb, err := forged.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.SendContent(ctx, randomID(t), chat.Peer("bob"), &Content{Kind: chat.KindGroupChange, Group: g1.ID, SentAt: now, GroupChanges: [][]byte{fb}}); err != nil {
		t.Fatal(err)
	}
	got = receiveAll(t, ctx, hb)
	if !reported(got, "refused") {
		t.Errorf("a forged change: bob read %q", got)
	}
	if info, _ := ResolveGroup(hb, g1.ID); len(info.Members) != 2 {
		t.Errorf("after a forged change bob's group has %d members", len(info.Members))
	}

	// 5. A change replayed: the server pushes the ciphertext that carried
	// alice's promotion of bob again, under a new message id.
	if err := alice.SetGroupRole(ctx, g1.Conversation, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	if rec, err = ha.Group(g1.Conversation); err != nil {
		t.Fatal(err)
	}
	if l, err = parseLog(rec); err != nil {
		t.Fatal(err)
	}
	last, err := l.Recent(1)[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	aliceBobDevs, err := ac.Devices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	carried, err := ac.encryptTo(ctx, g1.Conversation, aliceBobDevs, &Content{Kind: chat.KindGroupChange, Group: g1.ID, SentAt: now, GroupChanges: [][]byte{last}}, randomID(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var sent transport.Sent
	if err := ac.request(ctx, transport.CodeSend, carried, transport.CodeSent, &sent); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // the same change again: nothing new
	got = lieTo(t, ctx, hb, &transport.Deliver{From: "alice", FromDevice: 1, MessageID: randomID(t), ServerTime: now, Payload: carried.Envelopes[0].Payload})
	if !reported(got, "could not be decrypted") {
		t.Errorf("a replayed change: bob read %q", got)
	}
	if info, _ := ResolveGroup(hb, g1.ID); info.Role("bob") != "admin" || len(info.Members) != 2 {
		t.Errorf("after the lies bob's group is %+v", info)
	}
}

// lyingStore is a server's storage that lies about one account's devices:
// it lists an extra device for victim, with a bundle the server made up
// (the server cannot sign for victim's identity, so it signs with its own).
type lyingStore struct {
	store.Store
	victim string
	extra  store.DeviceKey
	bundle store.Bundle
}

func (l *lyingStore) ActiveDevices(user string) ([]store.DeviceKey, error) {
	devs, err := l.Store.ActiveDevices(user)
	if err == nil && user == l.victim {
		devs = append(devs, l.extra)
	}
	return devs, err
}

func (l *lyingStore) FetchBundles(ctx context.Context, user string, want []uint32) ([]store.Bundle, error) {
	bs, err := l.Store.FetchBundles(ctx, user, want)
	if err == nil && user == l.victim && (len(want) == 0 || slices.Contains(want, l.extra.Device.ID)) {
		bs = append(bs, l.bundle)
	}
	return bs, err
}

// TestMaliciousServerInjectsDevice: a server that slips a device of its
// own into bob's device list (issue 10, must show: "injects a device")
// gets nothing: alice's client refuses the device's keys, which are not
// bob's identity's, and says so instead of sending — for a group as for
// bob alone.
func TestMaliciousServerInjectsDevice(t *testing.T) {
	identity, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	auth, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: "bob", DeviceID: 9, AuthKey: auth}, time.Now(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	up, err := PublishMessage(keys.PublicPreKeys(), true)
	if err != nil {
		t.Fatal(err)
	}
	lie := &lyingStore{victim: "bob", extra: store.DeviceKey{Device: chat.DeviceOf("bob", 9), Key: auth},
		bundle: store.Bundle{Device: 9, Identity: up.Identity, Certificate: up.Certificate, SignedPreKey: up.SignedPreKey, KEM: up.LastResortKEM}}
	var lying atomic.Bool // the store tells the truth while the accounts are made
	data := t.TempDir()
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: data, Admin: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		WrapStore: func(st store.Store) store.Store {
			lie.Store = st
			return &switchStore{Store: st, lie: lie, on: &lying}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	defer func() { stop(); <-done }()
	s := &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), srv: srv}
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	lying.Store(true)

	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	// Refused by bob's signed device list, which does not name device 9
	// (protocol.md §9.8), or by its keys, which are not bob's identity's.
	refused := func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), "bob's identity key changed") ||
			strings.Contains(err.Error(), "bob's device 9: the server lists it, but bob's signed device list"))
	}
	_, err = alice.CreateGroup(ctx, "trap", []string{"bob", "carol"})
	if !refused(err) {
		t.Fatalf("creating a group with bob and a forged device: %v", err)
	}
	if _, err := alice.client().SendText(ctx, "bob", "hello?"); !refused(err) {
		t.Fatalf("a 1:1 message to bob and a forged device: %v", err)
	}
	if got := receiveAll(t, ctx, hb); len(got) != 0 {
		t.Errorf("bob got %q though alice refused to send", got)
	}
}

// switchStore lies (lie) only once on is set.
type switchStore struct {
	store.Store
	lie *lyingStore
	on  *atomic.Bool
}

func (s *switchStore) ActiveDevices(user string) ([]store.DeviceKey, error) {
	if s.on.Load() {
		return s.lie.ActiveDevices(user)
	}
	return s.Store.ActiveDevices(user)
}

func (s *switchStore) FetchBundles(ctx context.Context, user string, want []uint32) ([]store.Bundle, error) {
	if s.on.Load() {
		return s.lie.FetchBundles(ctx, user, want)
	}
	return s.Store.FetchBundles(ctx, user, want)
}

// TestGroupMessagesNotHeldForStrangers (review findings 3, 4): a group
// message without its key, for a group the recipient is not in, is
// dropped and acked with a line saying so, not held (a stranger cannot
// keep a mailbox full of messages never acked); and a message decrypted
// but not yet acked, delivered again under another group's id, is refused.
func TestGroupMessagesNotHeldForStrangers(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, he := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "eve")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eve := oneShotEngine(t, ctx, he, false)
	defer eve.Close()
	ec, _ := eve.connected()
	bobDevs, err := ec.Devices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		msg := &transport.Send{MessageID: randomID(t), Group: randomID(t), Shared: []byte("no key for this")}
		for _, d := range bobDevs {
			msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: ec.listedKey(d)})
		}
		var sent transport.Sent
		if err := ec.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveAll(t, ctx, hb)
	if len(got) != 3 || !reported(got, "eve: a message from eve for a group you are not in was dropped") {
		t.Fatalf("bob read %q", got)
	}
	if got := receiveAll(t, ctx, hb); len(got) != 0 {
		t.Errorf("the dropped messages were not acked: %q", got)
	}
	if convs, _ := hb.Conversations(); slices.ContainsFunc(convs, func(c ConversationInfo) bool { return c.Conversation.IsGroup() }) {
		t.Errorf("a group conversation was made up: %+v", convs)
	}

	// A message decrypted and kept, not yet acked, comes again under
	// another group's id.
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g1, err := alice.CreateGroup(ctx, "one", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := alice.CreateGroup(ctx, "two", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	groupSend(t, ctx, alice, g1.Conversation, "warm up one") // bob gets alice's keys
	groupSend(t, ctx, alice, g2.Conversation, "warm up two")
	receiveAll(t, ctx, hb)
	msg := groupSend(t, ctx, alice, g1.Conversation, "only for one")
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	bc, _ := bob.connected()
	gid1, _ := groupIDBytes(g1.Conversation)
	gid2, _ := groupIDBytes(g2.Conversation)
	d := &transport.Deliver{Seq: 1 << 40, From: "alice", FromDevice: 1, MessageID: msg.MessageID, ServerTime: time.Now().UnixMilli(), Group: gid1, Shared: msg.Shared}
	if content, err := bc.decryptGroup(d); err != nil || content.Text != "only for one" {
		t.Fatalf("decrypting for group one: %v %v", content, err)
	}
	d.Group = gid2
	if content, err := bc.decryptGroup(d); err == nil {
		t.Errorf("the kept message delivered again under group two's id: %q", content.Text)
	}
}

// TestForgedGroupLog (review finding 1, 2): eve makes up a group in which
// alice, whom bob knows, is the owner under a key of eve's; bob's client
// refuses the log and says why. And carol, whom bob has never met, named
// by a group with one key while the server hands out another, is not
// taken on trust: bob's send stops with "identity key changed".
func TestForgedGroupLog(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, he := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "eve")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	if _, err := alice.client().SendText(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // bob knows alice's key now
	eve := oneShotEngine(t, ctx, he, false)
	defer eve.Close()
	ec, _ := eve.connected()
	bobKey, err := ec.identityFor(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	forge := func(title string, members ...e2ee.GroupMember) []byte {
		ch := &e2ee.GroupChange{Actor: "eve", Time: time.Now().UnixMilli(), Op: e2ee.OpCreate, Title: title,
			Members: append([]e2ee.GroupMember{{User: "eve", Identity: ec.keys.IdentityKey(), Role: e2ee.RoleOwner}}, members...)}
		copy(ch.Salt[:], randomID(t))
		ch.Group = e2ee.GroupID(ch)
		id := ch.Group
		if err := e2ee.SignGroupChange(ch, ec.keys.IdentityPrivateKey()); err != nil {
			t.Fatal(err)
		}
		l, err := e2ee.NewGroupLog(ch, groupMaxMembers)
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ec.SendContent(ctx, randomID(t), chat.Peer("bob"), &Content{Kind: chat.KindGroupChange, Group: hex.EncodeToString(id[:]), SentAt: 1, GroupLog: b}); err != nil {
			t.Fatal(err)
		}
		return id[:]
	}
	fakeAlice, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forge("alice's", e2ee.GroupMember{User: "alice", Identity: fakeAlice.Public(), Role: e2ee.RoleAdmin}, e2ee.GroupMember{User: "bob", Identity: bobKey, Role: e2ee.RoleMember})
	got := receiveAll(t, ctx, hb)
	if !reported(got, "names alice with another identity key") {
		t.Errorf("bob read %q", got)
	}
	if gs, _ := Groups(hb); len(gs) != 0 {
		t.Errorf("bob took the forged group: %+v", gs)
	}

	// carol, unknown to bob, under a key of eve's making in eve's group.
	fakeCarol, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forge("carol's", e2ee.GroupMember{User: "carol", Identity: fakeCarol.Public(), Role: e2ee.RoleMember}, e2ee.GroupMember{User: "bob", Identity: bobKey, Role: e2ee.RoleMember})
	receiveAll(t, ctx, hb)
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	if _, err := bob.client().SendText(ctx, "carol", "hello carol"); err == nil || !strings.Contains(err.Error(), "identity key changed") {
		t.Errorf("bob's first message to carol, whom a group names with another key: %v", err)
	}
}

// TestJunkWelcomeHoldsNothing (second review, finding 6): a "log" that
// does not parse or does not name the recipient does not make a stranger's
// group messages held: they are dropped, acked, with a line.
func TestJunkWelcomeHoldsNothing(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	hb, he := testAccount(t, s, "bob"), testAccount(t, s, "eve")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eve := oneShotEngine(t, ctx, he, false)
	defer eve.Close()
	ec, _ := eve.connected()
	gid := randomID(t)
	group := hex.EncodeToString(gid)
	if _, err := ec.SendContent(ctx, randomID(t), chat.Peer("bob"), &Content{Kind: chat.KindGroupChange, Group: group, SentAt: 1, GroupLog: []byte("not a log")}); err != nil {
		t.Fatal(err)
	}
	bobDevs, err := ec.Devices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	msg := &transport.Send{MessageID: randomID(t), Group: gid, Shared: []byte("no key for this")}
	for _, d := range bobDevs {
		msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: ec.listedKey(d)})
	}
	var sent transport.Sent
	if err := ec.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hb); !reported(got, "for a group you are not in was dropped") {
		t.Fatalf("bob read %q", got)
	}
	if got := receiveAll(t, ctx, hb); len(got) != 0 {
		t.Errorf("something was held: %q", got)
	}
}

// TestGroupIDSquatted (issue 10, point 2): eve, who is not in alice's
// group but knows its id (as a member removed from it, or the server,
// would), sends carol, before carol is added, made-up logs under that
// id: one whose creation is eve's own, re-signed under the real id, and
// one in the form older versions wrote, a base state with no creation.
// carol's client refuses both and says why; alice's real welcome that
// follows is applied as usual, and carol reads the group's messages.
func TestGroupIDSquatted(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc, he := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol"), testAccount(t, s, "eve")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "club", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	realID, _ := groupIDBytes(g.Conversation)

	eve := oneShotEngine(t, ctx, he, false)
	defer eve.Close()
	ec, _ := eve.connected()
	carolKey, err := ec.identityFor(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	// eve's own group of eve and carol, under an id of its own making.
	ch := &e2ee.GroupChange{Actor: "eve", Time: time.Now().UnixMilli(), Op: e2ee.OpCreate, Title: "club",
		Members: []e2ee.GroupMember{{User: "eve", Identity: ec.keys.IdentityKey(), Role: e2ee.RoleOwner}, {User: "carol", Identity: carolKey, Role: e2ee.RoleMember}}}
	copy(ch.Salt[:], randomID(t))
	ch.Group = e2ee.GroupID(ch)
	if err := e2ee.SignGroupChange(ch, ec.keys.IdentityPrivateKey()); err != nil {
		t.Fatal(err)
	}
	l, err := e2ee.NewGroupLog(ch, groupMaxMembers)
	if err != nil {
		t.Fatal(err)
	}
	own, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The same log under the real id, its creation signed again by eve:
	// log = 2 ‖ u32 len ‖ creation (body ‖ signature[64]) ‖ state … (protocol.md §9.7).
	squat := bytes.ReplaceAll(own, ch.Group[:], realID)
	size := int(binary.BigEndian.Uint32(squat[1:5]))
	seed, err := ec.keys.IdentityPrivateKey().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	body := squat[5 : 5+size-ed25519.SignatureSize]
	copy(squat[5+size-ed25519.SignatureSize:], ed25519.Sign(ed25519.NewKeyFromSeed(seed[1:]), append([]byte("securechat group change v1"), body...)))
	// And as version 1 wrote a log: the base state alone, taken as given then.
	unbound := append([]byte{1}, squat[5+size:]...)
	for _, lb := range [][]byte{squat, unbound} {
		if _, err := ec.SendContent(ctx, randomID(t), chat.Peer("carol"), &Content{Kind: chat.KindGroupChange, Group: g.ID, SentAt: 1, GroupLog: lb}); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveAll(t, ctx, hc)
	if !reported(got, "eve", "not the one its creation makes") || !reported(got, "eve", "without the signed creation its id must come from") {
		t.Errorf("carol read %q", got)
	}
	if gs, _ := Groups(hc); len(gs) != 0 {
		t.Fatalf("carol took a made-up group: %+v", gs)
	}

	// The real group.
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	groupSend(t, ctx, alice, g.Conversation, "welcome, carol")
	got = receiveAll(t, ctx, hc)
	if !reported(got, "alice added you to the group \"club\"") || !slices.Contains(got, "alice: welcome, carol") || reported(got, "does not match") {
		t.Errorf("carol read %q", got)
	}
	info, err := ResolveGroup(hc, g.ID)
	if err != nil || len(info.Members) != 3 || info.Role("alice") != "owner" || info.Role("eve") != "" || info.Left {
		t.Fatalf("carol's group: %+v %v", info, err)
	}
	if got := receiveAll(t, ctx, hb); !reported(got, "alice added carol") {
		t.Errorf("bob read %q", got)
	}
}

// TestUnboundGroupKept: a group whose log a home kept before logs carried
// their creation (version 1) still works for its members after an
// upgrade; adding to it is refused with a line that says why (a new member
// would refuse its log).
func TestUnboundGroupKept(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "old", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	// Both homes' records as version 1 wrote them: no creation.
	for _, h := range []*home.Home{ha, hb} {
		if err := h.Update(func(tx *home.Tx) error {
			rec, err := tx.Group(g.Conversation)
			if err != nil || rec == nil || rec.Log[0] != 2 {
				t.Fatalf("record %+v: %v", rec, err)
			}
			size := int(binary.BigEndian.Uint32(rec.Log[1:5]))
			rec.Log = append([]byte{1}, rec.Log[5+size:]...)
			return tx.PutGroup(rec)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SetGroupRole(ctx, g.Conversation, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	groupSend(t, ctx, alice, g.Conversation, "still here")
	if got := receiveAll(t, ctx, hb); !reported(got, "alice made you an admin") || !slices.Contains(got, "alice: still here") {
		t.Errorf("bob read %q", got)
	}
	if info, err := ResolveGroup(hb, g.ID); err != nil || info.Role("bob") != "admin" {
		t.Errorf("bob's group: %+v %v", info, err)
	}
	err = alice.AddToGroup(ctx, g.Conversation, []string{"carol"})
	if err == nil || !strings.Contains(err.Error(), "older version of securechat") || !strings.Contains(err.Error(), "make the group again") {
		t.Errorf("adding to a version-1 group: %v", err)
	}
	if rec, _ := ha.Group(g.Conversation); rec == nil || rec.Log[0] != 1 {
		t.Errorf("alice's record was rewritten: %v", rec)
	}
}
