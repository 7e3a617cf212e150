package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// receiveAll takes what is queued for h and returns what a person would
// read: texts and notes, as "from: text" in the group's conversation.
func receiveAll(t *testing.T, ctx context.Context, h *home.Home) []string {
	t.Helper()
	e := oneShotEngine(t, ctx, h, true)
	defer e.Close()
	var got []string
	err := e.Receive(ctx, ReceiveOptions{Show: func(m *Message) error {
		got = append(got, m.From.User+": "+m.Text)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestGroupMembershipAndMessages: alice creates a group with bob and
// carol; each learns it and who is in it; a text reaches the others once;
// a plain member cannot add; a promoted admin can; a removed member gets
// the removal and nothing sent after it; a message from a non-member is
// not shown.
func TestGroupMembershipAndMessages(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc, hd := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol"), testAccount(t, s, "dave")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := oneShotEngine(t, ctx, ha, false)
	g, err := alice.CreateGroup(ctx, "family", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Title != "family" || len(g.Members) != 3 || g.Role("alice") != "owner" || g.Role("bob") != "member" {
		t.Fatalf("created: %+v", g)
	}
	if got := receiveAll(t, ctx, hb); len(got) != 1 || !strings.Contains(got[0], `alice added you to the group "family" (with alice, carol)`) {
		t.Fatalf("bob read %q", got)
	}
	receiveAll(t, ctx, hc)
	for _, h := range []*home.Home{hb, hc} {
		info, err := ResolveGroup(h, "family")
		if err != nil || info.Conversation != g.Conversation || len(info.Members) != 3 {
			t.Fatalf("a member's view: %+v %v", info, err)
		}
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "hello family"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*home.Home{hb, hc} {
		if got := receiveAll(t, ctx, h); !slices.Equal(got, []string{"alice: hello family"}) {
			t.Fatalf("a member read %q", got)
		}
	}

	// bob, a plain member, cannot add; once promoted, he can.
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	if err := bob.AddToGroup(ctx, g.Conversation, []string{"dave"}); err == nil || !strings.Contains(err.Error(), "only admins add members") {
		t.Fatalf("a plain member adding: %v", err)
	}
	if err := alice.SetGroupRole(ctx, g.Conversation, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	if err := bob.AddToGroup(ctx, g.Conversation, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hd); len(got) != 1 || !strings.Contains(got[0], "bob added you") {
		t.Fatalf("dave read %q", got)
	}
	// carol catches up on both changes at once.
	if got := receiveAll(t, ctx, hc); len(got) != 2 || !strings.Contains(got[0], "alice made bob an admin") || !strings.Contains(got[1], "bob added dave") {
		t.Fatalf("carol read %q", got)
	}

	// alice removes carol: carol is told, then gets nothing more.
	if got := receiveAll(t, ctx, ha); len(got) != 1 || !strings.Contains(got[0], "bob added dave") {
		t.Fatalf("alice read %q", got)
	}
	if err := alice.RemoveFromGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "after carol"); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hc); len(got) != 1 || !strings.Contains(got[0], "alice removed you") {
		t.Fatalf("carol read %q after her removal", got)
	}
	if info, _ := ResolveGroup(hc, "family"); !info.Left {
		t.Error("carol's home does not know she left")
	}
	carol := oneShotEngine(t, ctx, hc, false)
	defer carol.Close()
	if _, err := carol.SendGroupText(ctx, g.Conversation, "still here?"); err == nil || !strings.Contains(err.Error(), "no longer a member") {
		t.Fatalf("a removed member sending: %v", err)
	}
	// A removed member's client made to send anyway is not shown.
	cc, _ := carol.connected()
	if _, err := cc.sendContent(ctx, newID(cc), chat.Peer("dave"), &Content{Kind: chat.KindText, Text: "sneaky", SentAt: 1, Group: g.ID}, nil); err != nil {
		t.Fatal(err)
	}
	got := receiveAll(t, ctx, hd)
	if !slices.Contains(got, "alice: after carol") || slices.Contains(got, "carol: sneaky") || !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "not shown") }) {
		t.Fatalf("dave read %q", got)
	}
	alice.Close()
}

// groupSend builds a group text from e's device as SendGroupText would and
// sends it, returning the Send: one shared ciphertext, address-only
// envelopes.
func groupSend(t *testing.T, ctx context.Context, e *Engine, conv chat.Conversation, text string) *transport.Send {
	t.Helper()
	c, err := e.connected()
	if err != nil {
		t.Fatal(err)
	}
	id := newID(c)
	content := &Content{Kind: chat.KindText, Text: text, SentAt: time.Now().UnixMilli(), Group: conv.ID()}
	entry := &home.OutboxEntry{To: conv, Content: transport.Marshal(content)}
	msg, err := c.buildGroupSend(ctx, id, entry, content)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Shared == nil || msg.Group == nil {
		t.Fatalf("a group text built without a shared ciphertext: %+v", msg)
	}
	for _, env := range msg.Envelopes {
		if len(env.Payload) != 0 {
			t.Fatalf("a group Send's envelope for %s carries its own payload", env.User)
		}
	}
	if _, err := c.transmit(ctx, id, entry, msg, nil); err != nil {
		t.Fatal(err)
	}
	return msg
}

// chainOf is the chain id of a sender-key message (protocol.md §9.6).
func chainOf(shared []byte) uint32 {
	return binary.BigEndian.Uint32(shared[1+e2ee.DistributionIDSize:])
}

// TestGroupSenderKeys (issue 10 point 3): a group text is one ciphertext
// for every member device; a removed member cannot read what is sent
// after, even handed the ciphertext (the chain was replaced); a member
// added later cannot read what was sent before; a message whose key has
// not arrived waits, said so, and is read once the key comes.
func TestGroupSenderKeys(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc, hd := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol"), testAccount(t, s, "dave")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "team", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	receiveAll(t, ctx, hc)
	gid, _ := groupIDBytes(g.Conversation)
	aliceDev := chat.Device{User: "alice", ID: 1}

	first := groupSend(t, ctx, alice, g.Conversation, "one")
	if len(first.Envelopes) != 2 {
		t.Fatalf("%d envelopes, want bob's and carol's devices", len(first.Envelopes))
	}
	for _, h := range []*home.Home{hb, hc} {
		if got := receiveAll(t, ctx, h); !slices.Equal(got, []string{"alice: one"}) {
			t.Fatalf("a member read %q", got)
		}
	}
	// The same chain goes on while nobody leaves.
	second := groupSend(t, ctx, alice, g.Conversation, "two")
	if chainOf(second.Shared) != chainOf(first.Shared) {
		t.Error("the chain was replaced though nobody left")
	}
	receiveAll(t, ctx, hb)
	receiveAll(t, ctx, hc)

	// carol is removed: alice's next message is on a new chain carol
	// never got, and cannot decrypt with what she holds.
	if err := alice.RemoveFromGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	after := groupSend(t, ctx, alice, g.Conversation, "after carol")
	if chainOf(after.Shared) == chainOf(first.Shared) {
		t.Fatal("the chain was not replaced after a member was removed")
	}
	if slices.ContainsFunc(after.Envelopes, func(e transport.Envelope) bool { return e.User == "carol" }) {
		t.Error("a removed member is still addressed")
	}
	receiveAll(t, ctx, hc)
	b, err := hc.SenderKey(g.Conversation, aliceDev)
	if err != nil || b == nil {
		t.Fatalf("carol's record of alice's chain: %v", err)
	}
	r, err := e2ee.UnmarshalSenderKeyRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Decrypt(after.Shared, groupAD(gid, aliceDev)); !errors.Is(err, e2ee.ErrUnknownSenderChain) {
		t.Errorf("carol decrypting what was sent after her removal: %v", err)
	}
	if got := receiveAll(t, ctx, hb); !slices.Contains(got, "alice: after carol") {
		t.Fatalf("bob read %q", got)
	}

	// dave joins later: he reads from his join on, never before.
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hd)
	receiveAll(t, ctx, hb)
	groupSend(t, ctx, alice, g.Conversation, "hi dave")
	if got := receiveAll(t, ctx, hd); !slices.Equal(got, []string{"alice: hi dave"}) {
		t.Fatalf("dave read %q", got)
	}
	b, _ = hd.SenderKey(g.Conversation, aliceDev)
	r, err = e2ee.UnmarshalSenderKeyRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Decrypt(after.Shared, groupAD(gid, aliceDev)); err == nil {
		t.Error("dave decrypted a message sent before he joined")
	}
	receiveAll(t, ctx, hb)

	// bob loses alice's chain: her next message waits, is said to, is
	// not lost, and is read when the key comes.
	fake, _ := e2ee.NewSenderKey(nil, [e2ee.DistributionIDSize]byte(gid))
	fb, _ := e2ee.NewSenderKeyRecord(fake.Distribution()).MarshalBinary()
	if err := hb.SaveSenderKey(g.Conversation, aliceDev, fb); err != nil {
		t.Fatal(err)
	}
	own, _ := ha.SenderKey(g.Conversation, aliceDev)
	key, err := e2ee.UnmarshalSenderKey(own)
	if err != nil {
		t.Fatal(err)
	}
	groupSend(t, ctx, alice, g.Conversation, "held")
	got := receiveAll(t, ctx, hb)
	if slices.Contains(got, "alice: held") || !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "waiting for the key from alice") }) {
		t.Fatalf("bob without the key read %q", got)
	}
	ac, _ := alice.connected()
	bobDevs, err := ac.Devices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.distribute(ctx, g.Conversation, bobDevs, key, nil); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hb); !slices.Equal(got, []string{"alice: held"}) {
		t.Fatalf("bob, once the key came, read %q", got)
	}
}

// TestGroupConcurrentAdmins (issue 10 point 2): two admins change the
// membership at the same time, each before seeing the other's change —
// alice removes carol while bob adds dave and makes erin an admin — and
// every member ends with the same members and roles.
func TestGroupConcurrentAdmins(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	names := []string{"alice", "bob", "carol", "dave", "erin"}
	homes := make(map[string]*home.Home)
	for _, n := range names {
		homes[n] = testAccount(t, s, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, homes["alice"], false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "both", []string{"bob", "carol", "erin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetGroupRole(ctx, g.Conversation, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"bob", "carol", "erin"} {
		receiveAll(t, ctx, homes[n])
	}
	bob := oneShotEngine(t, ctx, homes["bob"], false)
	defer bob.Close()
	// Both act on the state they hold; neither has seen the other's change.
	errs := make(chan error, 2)
	go func() { errs <- alice.RemoveFromGroup(ctx, g.Conversation, []string{"carol"}) }()
	go func() {
		if err := bob.AddToGroup(ctx, g.Conversation, []string{"dave"}); err != nil {
			errs <- err
			return
		}
		errs <- bob.SetGroupRole(ctx, g.Conversation, []string{"erin"}, true)
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Everyone takes what is queued, twice over (a change can bring another).
	for range 2 {
		for _, n := range names {
			receiveAll(t, ctx, homes[n])
		}
	}
	state := func(n string) string {
		info, err := ResolveGroup(homes[n], g.ID)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		var parts []string
		for _, m := range info.Members {
			parts = append(parts, m.User+"="+info.Role(m.User))
		}
		slices.Sort(parts)
		return strings.Join(parts, ",")
	}
	want := state("alice")
	if !strings.Contains(want, "dave=member") || strings.Contains(want, "carol") || !strings.Contains(want, "erin=admin") {
		t.Errorf("alice's group after both changes: %s", want)
	}
	for _, n := range []string{"bob", "dave", "erin"} {
		if got := state(n); got != want {
			t.Errorf("%s holds %s, alice %s", n, got, want)
		}
	}
}

// TestGroupChangeLeavesActorLine (issue 10 point 5): the one who makes a
// group change keeps a line of the group's history for it, as the other
// members do ("you added carol" where they read "alice added carol"), and
// the interactive engine shows it as a message event.
func TestGroupChangeLeavesActorLine(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, err := StartEngine(ha, EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	waitEvent(t, alice, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })

	line := func(what, want string) UIEvent {
		t.Helper()
		ev := waitEvent(t, alice, what, func(ev UIEvent) bool { return ev.Type == UIMessage })
		if ev.Entry.Kind != chat.KindSystem || ev.Entry.Text != want || ev.Entry.Outgoing {
			t.Fatalf("%s: the event's line is %+v, want the system line %q", what, ev.Entry, want)
		}
		return ev
	}
	g, err := alice.CreateGroup(ctx, "family", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := line("create", `you created the group "family" (with bob)`); ev.Conversation != g.Conversation || ev.Entry.Conversation != g.Conversation {
		t.Fatalf("the line went to %v, not the group", ev.Conversation)
	}
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	line("add", "you added carol")
	if err := alice.SetGroupRole(ctx, g.Conversation, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	line("role", "you made bob an admin")
	hist, err := alice.History(g.Conversation, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range hist {
		got = append(got, e.Text)
	}
	if want := []string{`you created the group "family" (with bob)`, "you added carol", "you made bob an admin"}; !slices.Equal(got, want) {
		t.Fatalf("alice's history of the group: %q, want %q", got, want)
	}
	if convs, _ := alice.Conversations(); len(convs) != 1 || convs[0].Conversation != g.Conversation || convs[0].Unread != 0 {
		t.Fatalf("alice's conversations: %+v", convs)
	}
	// The group's info names the devices that hold alice's sending chain:
	// none before her first message, then bob's and carol's.
	info, err := alice.ResolveGroup("family")
	if err != nil || len(info.Members) != 3 || info.Members[1].Devices != nil {
		t.Fatalf("before a message: %+v %v", info, err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "hello"); err != nil {
		t.Fatal(err)
	}
	prof, _ := hb.Profile()
	info, _ = alice.ResolveGroup("family")
	for _, m := range info.Members {
		if m.User == "bob" && !slices.Equal(m.Devices, []uint32{prof.Device}) {
			t.Errorf("bob's devices holding alice's key: %v, want [%d]", m.Devices, prof.Device)
		}
	}

	// A one-shot engine (securechat group leave) keeps it too.
	receiveAll(t, ctx, hb)
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	if err := bob.LeaveGroup(ctx, g.Conversation); err != nil {
		t.Fatal(err)
	}
	hist, _ = bob.History(g.Conversation, "", 10)
	if n := len(hist); n == 0 || hist[n-1].Text != "you left" || hist[n-1].Kind != chat.KindSystem {
		t.Fatalf("bob's history of the group ends %+v", hist)
	}
}

// TestMarkReadGroupSendsReceipt (issue 10 point 4): marking a group read
// clears its unread count and queues a read receipt to the sender alone,
// naming the group; a peer's conversation gets one as before.
func TestMarkReadGroupSendsReceipt(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	g, err := alice.CreateGroup(ctx, "family", []string{"bob"})
	alice.Close()
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	// A text from alice in the group and one in private, unread, as the
	// engine keeps them when they arrive while another conversation is
	// open.
	for i, conv := range []chat.Conversation{g.Conversation, chat.Peer("alice")} {
		rec := &home.HistoryRecord{ID: []byte(fmt.Sprintf("unread-text-%04d", i)), From: "alice", Kind: chat.KindText, Text: "hello", Time: time.Now().UnixMilli()}
		if err := hb.Update(func(tx *home.Tx) error { _, err := tx.AddHistory(conv, rec, true); return err }); err != nil {
			t.Fatal(err)
		}
	}
	bob, err := OpenEngine(hb, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	unread := func(conv chat.Conversation) int {
		convs, err := bob.Conversations()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range convs {
			if c.Conversation == conv {
				return c.Unread
			}
		}
		t.Fatalf("no conversation %v", conv)
		return 0
	}
	if n := unread(g.Conversation); n != 1 {
		t.Fatalf("the group has %d unread, want 1", n)
	}
	if err := bob.MarkRead(g.Conversation); err != nil {
		t.Fatal(err)
	}
	if n := unread(g.Conversation); n != 0 {
		t.Errorf("the group has %d unread after MarkRead", n)
	}
	// The group's read receipt goes to its sender, naming the group.
	k, q, ok, err := hb.NextQueued()
	if err != nil || !ok || q.To != chat.Peer("alice") {
		t.Fatalf("MarkRead of a group queued %+v %v (%v)", q, ok, err)
	}
	var gc Content
	if err := transport.Unmarshal(q.Content, &gc); err != nil || gc.Kind != chat.KindRead || gc.Group != g.ID || len(gc.Refs) != 1 {
		t.Fatalf("queued for alice: %+v %v", gc, err)
	}
	if err := hb.Update(func(tx *home.Tx) error { return tx.Dequeue(k) }); err != nil {
		t.Fatal(err)
	}
	// The same for a peer queues the read receipt.
	if err := bob.MarkRead(chat.Peer("alice")); err != nil {
		t.Fatal(err)
	}
	_, q, ok, err = hb.NextQueued()
	if err != nil || !ok || q.To != chat.Peer("alice") {
		t.Fatalf("MarkRead of alice's conversation queued %+v %v (%v)", q, ok, err)
	}
	var content Content
	if err := transport.Unmarshal(q.Content, &content); err != nil || content.Kind != chat.KindRead {
		t.Fatalf("queued for alice: %+v %v", content, err)
	}
}

// TestGroupReadBy (issue 10 point 4): each member's receipts for a group
// message reach its sender, who counts them per member: "delivered to 2
// of 3, read by 1".
func TestGroupReadBy(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol")
	testAccount(t, s, "dave")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	g, err := alice.CreateGroup(ctx, "readers", []string{"bob", "carol", "dave"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.SendGroupText(ctx, g.Conversation, "did you read this?")
	alice.Close()
	if err != nil {
		t.Fatal(err)
	}
	// bob reads as recv does (delivered and read); carol's client only
	// takes it (delivered); dave is offline.
	for h, read := range map[*home.Home]bool{hb: true, hc: false} {
		e := oneShotEngine(t, ctx, h, true)
		if err := e.Receive(ctx, ReceiveOptions{Read: read, Show: func(*Message) error { return nil }}); err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	receiveAll(t, ctx, ha)
	entries, err := ha.History(g.Conversation, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(entries, func(e HistoryEntry) bool { return e.ID == res.ID })
	if i < 0 {
		t.Fatalf("the message is not in alice's history: %+v", entries)
	}
	e := entries[i]
	slices.Sort(e.DeliveredTo)
	if e.Recipients != 3 || !slices.Equal(e.DeliveredTo, []string{"bob", "carol"}) || !slices.Equal(e.ReadBy, []string{"bob"}) || e.State != home.StateDelivered {
		t.Errorf("alice's entry: recipients %d, delivered to %q, read by %q, state %v", e.Recipients, e.DeliveredTo, e.ReadBy, e.State)
	}
}

// TestGroupChangeInBatches: a membership change for more devices than one
// Send can carry goes in several (the 500-member group of make bench
// needs five); here the batch is made small so that five members need
// three, and every member gets the group and the sender's key.
func TestGroupChangeInBatches(t *testing.T) {
	old := maxBatchBytes
	maxBatchBytes = 2 * (1600 + 900)
	defer func() { maxBatchBytes = old }()
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	l, _ := s.srv.Limits(context.Background())
	l.RegisterRate, l.RegisterBurst = 1e6, 1e6
	if err := s.srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	ha := testAccount(t, s, "alice")
	names := []string{"bob", "carol", "dave", "erin", "frank"}
	homes := make([]*home.Home, len(names))
	for i, n := range names {
		homes[i] = testAccount(t, s, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "batched", names)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "one for all"); err != nil {
		t.Fatal(err)
	}
	for i, h := range homes {
		got := receiveAll(t, ctx, h)
		if len(got) != 2 || !strings.Contains(got[0], "alice added you") || got[1] != "alice: one for all" {
			t.Errorf("%s read %q", names[i], got)
		}
	}
}

// TestLostWelcomeAsksForLog (review finding 6): a member whose welcome was
// lost gets a later change of a group it does not have; it asks the
// change's author for the log, gets it, and is in the group.
func TestLostWelcomeAsksForLog(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "lost", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	// bob's home loses the group, as if its welcome never came.
	if err := hb.Update(func(tx *home.Tx) error { return tx.DeleteGroup(g.Conversation) }); err != nil {
		t.Fatal(err)
	}
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // the change, for a group bob lacks: he asks alice
	receiveAll(t, ctx, ha) // alice answers with the log
	got := receiveAll(t, ctx, hb)
	if !reported(got, "alice added you") {
		t.Errorf("bob read %q", got)
	}
	info, err := ResolveGroup(hb, "lost")
	if err != nil || len(info.Members) != 3 {
		t.Fatalf("bob's group after asking: %+v %v", info, err)
	}
}

// TestKeyRequest (review finding 9, issue 10 point 3): a member whose
// copy of a sender's chain is gone (another chain in its place) asks for
// it when a message waits; the sender's device answers at once, without
// a message of its own, and the waiting message is read.
func TestKeyRequest(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "keys", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "one"); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	gid, _ := groupIDBytes(g.Conversation)
	fake, _ := e2ee.NewSenderKey(nil, [e2ee.DistributionIDSize]byte(gid))
	fb, _ := e2ee.NewSenderKeyRecord(fake.Distribution()).MarshalBinary()
	if err := hb.SaveSenderKey(g.Conversation, chat.Device{User: "alice", ID: 1}, fb); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "two"); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hb); !reported(got, "waiting for the key from alice") {
		t.Fatalf("bob read %q", got)
	}
	receiveAll(t, ctx, ha) // bob's request, answered
	if got := receiveAll(t, ctx, hb); !slices.Equal(got, []string{"alice: two"}) {
		t.Errorf("bob, after asking for the key, read %q", got)
	}
}

// TestGroupTyping (issue 10 point 4): typing in a group is sealed once,
// under the chain's signal key, to every connected member device; a member
// sees who types in which group, and nothing is stored.
func TestGroupTyping(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "typists", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "hello"); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for ev := range bob.Events() { // the mailbox is empty
		if ev.Type == EventQueueEmpty {
			break
		}
	}
	ac, _ := alice.connected()
	online, err := ac.SendGroupSignal(ctx, g.Conversation, &Content{Kind: chat.KindTyping, SentAt: time.Now().UnixMilli()})
	if err != nil || online != 1 {
		t.Fatalf("typing to the group: %d online, %v", online, err)
	}
	select {
	case ev := <-bob.Events():
		if ev.Type != EventSignal || ev.Message.Kind != chat.KindTyping || ev.Message.Conversation != g.Conversation || ev.Message.From.User != "alice" {
			t.Fatalf("bob got %+v %+v", ev, ev.Message)
		}
	case <-ctx.Done():
		t.Fatal("bob got no typing signal")
	}
}

// TestHeadsDivergence (protocol.md §9.7): a change the server kept from
// bob is noticed when a member's next message carries other heads; bob
// asks the sender for its log and has the change after.
func TestHeadsDivergence(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "heads", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	before, err := hb.Group(g.Conversation)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetGroupRole(ctx, g.Conversation, []string{"carol"}, true); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	// The server withheld the change from bob: his record is as before it.
	if err := hb.Update(func(tx *home.Tx) error { return tx.PutGroup(before) }); err != nil {
		t.Fatal(err)
	}
	if info, _ := ResolveGroup(hb, g.ID); info.Role("carol") != "member" {
		t.Fatalf("carol is %s in bob's group before", info.Role("carol"))
	}
	if _, err := alice.SendGroupText(ctx, g.Conversation, "hi all"); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb) // other heads: bob asks alice
	receiveAll(t, ctx, ha) // alice answers with her log
	receiveAll(t, ctx, hb)
	if info, _ := ResolveGroup(hb, g.ID); info.Role("carol") != "admin" {
		t.Errorf("after the heads differed, carol is %s in bob's group", info.Role("carol"))
	}
}

// TestGroupMute (issue 10 point 1): an admin mutes a member inside the
// group: the member's own client refuses to send, a message the member's
// client is made to send anyway is not shown, and a plain member cannot
// mute; lifting it lets the member write again.
func TestGroupMute(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "quiet", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	receiveAll(t, ctx, hc)
	unmuted, err := hb.Group(g.Conversation) // bob's record before the mute
	if err != nil {
		t.Fatal(err)
	}
	carol := oneShotEngine(t, ctx, hc, false)
	defer carol.Close()
	if err := carol.MuteInGroup(ctx, g.Conversation, []string{"bob"}, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("a plain member muted someone")
	}
	if err := alice.MuteInGroup(ctx, g.Conversation, []string{"bob"}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hb); !reported(got, "alice muted you until") {
		t.Fatalf("bob read %q", got)
	}
	receiveAll(t, ctx, hc)
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	if _, err := bob.SendGroupText(ctx, g.Conversation, "let me talk"); err == nil || !strings.Contains(err.Error(), "muted you until") {
		t.Fatalf("a muted member sending: %v", err)
	}
	// bob's client made to send anyway (a copy of it without the check).
	bc, _ := bob.connected()
	id := newID(bc)
	content := &Content{Kind: chat.KindText, Text: "sneaking", SentAt: time.Now().UnixMilli(), Group: g.ID}
	entry := &home.OutboxEntry{To: g.Conversation, Content: transport.Marshal(content)}
	muted, _ := hb.Group(g.Conversation)
	if err := hb.Update(func(tx *home.Tx) error { return tx.PutGroup(unmuted) }); err != nil {
		t.Fatal(err)
	}
	msg, err := bc.buildGroupSend(ctx, id, entry, content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.transmit(ctx, id, entry, msg, nil); err != nil {
		t.Fatal(err)
	}
	if err := hb.Update(func(tx *home.Tx) error { return tx.PutGroup(muted) }); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hc); slices.Contains(got, "bob: sneaking") || !reported(got, "muted in this group") {
		t.Errorf("carol read %q", got)
	}
	if err := alice.MuteInGroup(ctx, g.Conversation, []string{"bob"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	receiveAll(t, ctx, hc)
	if _, err := bob.SendGroupText(ctx, g.Conversation, "thanks"); err != nil {
		t.Fatalf("after the mute was lifted: %v", err)
	}
	if got := receiveAll(t, ctx, hc); !slices.Contains(got, "bob: thanks") {
		t.Errorf("carol read %q", got)
	}
}

// TestGroupRename: an admin renames the group; every member's client
// takes the new title; a plain member cannot.
func TestGroupRename(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "old name", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	if err := bob.RenameGroup(ctx, g.Conversation, "bob's"); err == nil {
		t.Error("a plain member renamed the group")
	}
	if err := alice.RenameGroup(ctx, g.Conversation, "new name"); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, ctx, hb); !reported(got, `alice renamed the group "new name"`) {
		t.Errorf("bob read %q", got)
	}
	if info, err := ResolveGroup(hb, "new name"); err != nil || info.Conversation != g.Conversation {
		t.Errorf("bob's group by its new name: %+v %v", info, err)
	}
}

// TestGroupSendFromOutbox: a group message whose confirmation was lost is
// kept in the outbox without its addresses (one ciphertext, whatever the
// group's size) and sent again, addressed anew, under the same id.
func TestGroupSendFromOutbox(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "outbox", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := alice.connected()
	content := &Content{Kind: chat.KindText, Text: "from the outbox", SentAt: time.Now().UnixMilli(), Group: g.ID}
	if err := ac.QueueOutbox(ctx, newID(ac), g.Conversation, content); err != nil {
		t.Fatal(err)
	}
	items, err := ha.Outbox()
	if err != nil || len(items) != 1 {
		t.Fatalf("outbox: %d items, %v", len(items), err)
	}
	var kept transport.Send
	if err := transport.Unmarshal(items[0].Entry.Send, &kept); err != nil || kept.Shared == nil || len(kept.Envelopes) != 0 {
		t.Fatalf("the kept group Send: %d envelopes, shared %d bytes, %v", len(kept.Envelopes), len(kept.Shared), err)
	}
	out, err := ac.FlushOutbox(ctx)
	if err != nil || len(out) != 1 || out[0].Err != nil {
		t.Fatalf("flush: %+v %v", out, err)
	}
	for _, h := range []*home.Home{hb, hc} {
		if got := receiveAll(t, ctx, h); !slices.Contains(got, "alice: from the outbox") {
			t.Errorf("a member read %q", got)
		}
	}
}

// TestGroupOutboxKeptOnTransientError (second review, finding 1): a group
// message in the outbox whose addresses cannot be had now (the connection
// is gone) stays in the outbox for the next flush.
func TestGroupOutboxKeptOnTransientError(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha := testAccount(t, s, "alice")
	testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "kept", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := alice.connected()
	content := &Content{Kind: chat.KindText, Text: "still here", SentAt: time.Now().UnixMilli(), Group: g.ID}
	if err := ac.QueueOutbox(ctx, newID(ac), g.Conversation, content); err != nil {
		t.Fatal(err)
	}
	ac.forgetDevices(&transport.Send{Envelopes: []transport.Envelope{{User: "bob"}}}) // the addresses must be asked again
	dead, stop := context.WithCancel(ctx)
	stop()
	if _, err := ac.FlushOutbox(dead); err == nil {
		t.Error("a flush that could not address the message reported no error")
	}
	if items, err := ha.Outbox(); err != nil || len(items) != 1 {
		t.Fatalf("after a failed flush the outbox holds %d items (%v), want the message", len(items), err)
	}
}

// A group message to a group that has not changed names the server's
// hash of the last address list instead of sending it (protocol.md
// §6.7): no envelopes, whatever the group's size. A change of members
// sends the list again; a list the server does not know (another
// connection's, or forgotten) is refused and the message goes with the
// list, once.
func TestGroupSameRecipients(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb, hc, hd := testAccount(t, s, "alice"), testAccount(t, s, "bob"), testAccount(t, s, "carol"), testAccount(t, s, "dave")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	g, err := alice.CreateGroup(ctx, "team", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, ctx, hb)
	receiveAll(t, ctx, hc)
	read := func(want string, hs ...*home.Home) {
		t.Helper()
		for _, h := range hs {
			if got := receiveAll(t, ctx, h); !slices.Equal(got, []string{want}) {
				t.Fatalf("a member read %q, want only %q", got, want)
			}
		}
	}

	first := groupSend(t, ctx, alice, g.Conversation, "one")
	if len(first.Envelopes) != 2 || first.Recipients != nil {
		t.Fatalf("the first message: %d envelopes, recipients %x; want the list", len(first.Envelopes), first.Recipients)
	}
	read("alice: one", hb, hc)
	second := groupSend(t, ctx, alice, g.Conversation, "two")
	if len(second.Envelopes) != 0 || len(second.Recipients) != transport.RecipientsLen {
		t.Fatalf("the second message: %d envelopes, recipients %x; want the list's hash alone", len(second.Envelopes), second.Recipients)
	}
	read("alice: two", hb, hc)

	// dave joins: the list changes and goes again, then is named.
	if err := alice.AddToGroup(ctx, g.Conversation, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*home.Home{hb, hc, hd} {
		receiveAll(t, ctx, h) // the notice, the log
	}
	third := groupSend(t, ctx, alice, g.Conversation, "three")
	if len(third.Envelopes) != 3 || third.Recipients != nil {
		t.Fatalf("after dave joined: %d envelopes, recipients %x; want the new list", len(third.Envelopes), third.Recipients)
	}
	fourth := groupSend(t, ctx, alice, g.Conversation, "four")
	if len(fourth.Envelopes) != 0 || fourth.Recipients == nil {
		t.Fatalf("the fourth message: %d envelopes; want the list's hash alone", len(fourth.Envelopes))
	}
	for _, h := range []*home.Home{hb, hc, hd} {
		if got := receiveAll(t, ctx, h); !slices.Equal(got, []string{"alice: three", "alice: four"}) {
			t.Fatalf("a member read %q", got)
		}
	}

	// A hash the server does not know for this connection: refused, and
	// the message goes with its list, stored once.
	c, err := alice.connected()
	if err != nil {
		t.Fatal(err)
	}
	c.memoMu.Lock()
	c.groupMemo[g.Conversation.ID()].hash = bytes.Repeat([]byte{7}, transport.RecipientsLen)
	c.memoMu.Unlock()
	groupSend(t, ctx, alice, g.Conversation, "five")
	for _, h := range []*home.Home{hb, hc, hd} {
		if got := receiveAll(t, ctx, h); !slices.Equal(got, []string{"alice: five"}) {
			t.Fatalf("after an unknown list a member read %q", got)
		}
	}
	// Another connection of alice's (the engine reconnected) has no list:
	// the next message sends it.
	alice.Close()
	alice = oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	if sixth := groupSend(t, ctx, alice, g.Conversation, "six"); len(sixth.Envelopes) != 3 {
		t.Fatalf("on a new connection: %d envelopes, want the list", len(sixth.Envelopes))
	}
	read("alice: six", hb, hc, hd)
}
