package home

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/securechat/securechat/chat"
)

// testdata/v1home/client.db was written by the client before the home was a
// package of its own (commit c0a16e3): a profile, a contact, a session with
// an earlier one, a received record, history in a peer's and the server's
// conversations, an outbox entry, a queued send, settings and a seen
// record. The home must read all of it: the on-disk format did not change.
func TestOpensOlderHome(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("testdata", "v1home", homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, homeDB), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Passphrase: "wrong"}); err == nil {
		t.Fatal("the older home opened with a wrong passphrase")
	}
	h, err := Open(dir, Options{Passphrase: "fixture"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	id := func(b byte) []byte { v := make([]byte, 16); v[0] = b; return v }
	bob1 := chat.Device{User: "bob", ID: 1}

	p, err := h.Profile()
	if err != nil || p.User != "alice" || p.Device != 1 || p.Server != "chat.example:4433" || string(p.Keys) != "keys" {
		t.Fatalf("profile %+v, %v", p, err)
	}
	if s := h.Settings(); s.SendTyping || !s.SendReceipts {
		t.Errorf("settings %+v, want typing off, receipts on", s)
	}
	if c, err := h.Contact("bob"); err != nil || c == nil || !c.Verified || c.Identity[0] != 9 {
		t.Errorf("bob's contact %+v, %v", c, err)
	}
	st, err := h.LoadIncoming(bob1, id(7))
	if err != nil || st.Received == nil || string(st.Received.Content) != "kept" {
		t.Errorf("the received record: %+v, %v", st, err)
	}
	st, err = h.LoadSessions([]chat.Device{bob1})
	if s := st.Sessions[bob1]; err != nil || s == nil || string(s.Ratchet) != "ratchet" || len(s.Previous) != 1 || string(s.Previous[0].Ratchet) != "old" {
		t.Errorf("the session with bob/1: %+v, %v", st.Sessions[bob1], err)
	}
	if !h.WasSeen(MessageKey{From: bob1, ID: id(8)}) || h.WasSeen(MessageKey{From: bob1, ID: id(7)}) {
		t.Error("the seen records read wrong")
	}

	convs, err := h.Conversations()
	if err != nil || len(convs) != 2 {
		t.Fatalf("conversations %+v, %v", convs, err)
	}
	byConv := map[chat.Conversation]ConversationInfo{}
	for _, c := range convs {
		byConv[c.Conversation] = c
	}
	if c := byConv[chat.Peer("bob")]; c.Unread != 2 || !c.Verified || c.LastText != "message could not be decrypted" {
		t.Errorf("bob's conversation %+v", c)
	}
	if c := byConv[chat.Peer("*server*")]; c.Unread != 1 || c.LastText != "maintenance" {
		t.Errorf("the server's conversation %+v", c)
	}
	hist, err := h.History(chat.Peer("bob"), "", 10)
	if err != nil || len(hist) != 3 {
		t.Fatalf("bob's history %+v, %v", hist, err)
	}
	want := []struct {
		kind     chat.ContentKind
		outgoing bool
		state    DeliveryState
	}{{chat.KindText, false, 0}, {chat.KindText, true, StateDelivered}, {chat.KindError, false, 0}}
	for i, w := range want {
		if e := hist[i]; e.Kind != w.kind || e.Outgoing != w.outgoing || e.State != w.state || e.Conversation != chat.Peer("bob") {
			t.Errorf("bob's history entry %d: %+v", i, e)
		}
	}
	if sys, _ := h.History(chat.Peer("*server*"), "", 10); len(sys) != 1 || sys[0].Kind != chat.KindSystem {
		t.Errorf("the server's history %+v", sys)
	}

	out, err := h.Outbox()
	if err != nil || len(out) != 1 || out[0].Entry.To != chat.Peer("bob") || !out[0].Entry.Keep || string(out[0].Entry.Send) != "s" {
		t.Errorf("outbox %+v, %v", out, err)
	}
	_, q, ok, err := h.NextQueued()
	if err != nil || !ok || q.To != chat.Peer("bob") || !q.History || string(q.Content) != "q" {
		t.Errorf("queue %+v, %v, %v", q, ok, err)
	}
}

// TestGroupsAndSenderKeys: a group's conversation is stored apart from a
// peer's of the same name, and the sender-key state of a group is kept
// per group and per chain owner.
func TestGroupsAndSenderKeys(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	peer, group := chat.Peer("friends"), chat.Group("friends")
	err := h.Update(func(tx *Tx) error {
		if _, err := tx.AddHistory(peer, &HistoryRecord{ID: id16(1), Kind: chat.KindText, Text: "to the peer", Time: 1}, true); err != nil {
			return err
		}
		_, err := tx.AddHistory(group, &HistoryRecord{ID: id16(2), Kind: chat.KindText, Text: "to the group", Time: 2}, true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for conv, text := range map[chat.Conversation]string{peer: "to the peer", group: "to the group"} {
		if hist, err := h.History(conv, "", 10); err != nil || len(hist) != 1 || hist[0].Text != text || hist[0].Conversation != conv {
			t.Errorf("history of %v: %+v, %v", conv, hist, err)
		}
	}
	if convs, _ := h.Conversations(); len(convs) != 2 || convs[0].Conversation != group || convs[1].Conversation != peer {
		t.Errorf("conversations %+v", convs)
	}

	me, carol := chat.Device{User: "alice", ID: 1}, chat.Device{User: "carol", ID: 4}
	if v, err := h.SenderKey(group, me); err != nil || v != nil {
		t.Fatalf("a sender key before any: %x, %v", v, err)
	}
	if err := h.SaveSenderKey(group, me, []byte("my chain")); err != nil {
		t.Fatal(err)
	}
	if err := h.SaveSenderKey(group, carol, []byte("carol's chains")); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.SenderKey(group, me); string(v) != "my chain" {
		t.Errorf("my chain: %q", v)
	}
	if v, _ := h.SenderKey(group, carol); string(v) != "carol's chains" {
		t.Errorf("carol's chains: %q", v)
	}
	if v, _ := h.SenderKey(chat.Group("other"), me); v != nil {
		t.Errorf("another group's chain: %q", v)
	}
}

func id16(b byte) []byte {
	v := make([]byte, 16)
	v[0] = b
	return v
}
