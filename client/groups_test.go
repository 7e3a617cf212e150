package client

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
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
	if !slices.Contains(got, "alice: after carol") || slices.Contains(got, "carol: sneaky") || !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "not in this group") }) {
		t.Fatalf("dave read %q", got)
	}
	alice.Close()
}
