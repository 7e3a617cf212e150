package ui_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/ui/uitest"
)

// Group ids of the sample groups: two share the title "club".
const (
	familyID = "5e1f0000000000000000000000000001"
	club1ID  = "1a2b0000000000000000000000000002"
	club2ID  = "9f3c0000000000000000000000000003"
	oldID    = "0dd00000000000000000000000000004"
)

var (
	family = chat.Group(familyID)
	oldGrp = chat.Group(oldID)
)

// groupBackend is sampleBackend with alice's groups: #family (owner; bob
// verified, carol not; two unread texts), two groups called "club", and
// #old, which she left.
func groupBackend() *uitest.Backend {
	b := sampleBackend()
	b.AddGroup(client.GroupInfo{ID: familyID, Title: "family", Members: []client.GroupMemberInfo{
		{User: "alice", Role: "owner", KeyTrusted: true},
		{User: "bob", Role: "admin", KeyTrusted: true, Verified: true, Devices: []uint32{1, 3}},
		{User: "carol", Role: "member", KeyTrusted: true},
		{User: "dave", Role: "member"},
	}})
	b.AddConversation(client.ConversationInfo{Conversation: family, Unread: 2},
		client.HistoryEntry{Kind: chat.KindSystem, From: "alice", Text: `you created the group "family" (with bob, carol, dave)`, Time: t0.Add(-90 * time.Minute)},
		client.HistoryEntry{From: "bob", Text: "hi all", Time: t0.Add(-80 * time.Minute)},
		client.HistoryEntry{Kind: chat.KindSystem, From: "bob", Text: "a message from dave is waiting for the key from dave", Time: t0.Add(-79 * time.Minute)},
		client.HistoryEntry{From: "carol", Text: "hello from carol", Time: t0.Add(-78 * time.Minute)},
	)
	for _, id := range []string{club1ID, club2ID} {
		b.AddGroup(client.GroupInfo{ID: id, Title: "club", Members: []client.GroupMemberInfo{{User: "alice", Role: "member"}, {User: "erin", Role: "owner"}}})
	}
	b.AddGroup(client.GroupInfo{ID: oldID, Title: "old", Left: true, Members: []client.GroupMemberInfo{{User: "bob", Role: "owner"}}})
	b.AddConversation(client.ConversationInfo{Conversation: oldGrp},
		client.HistoryEntry{Kind: chat.KindSystem, From: "bob", Text: "bob removed you", Time: t0.Add(-72 * time.Hour)},
	)
	return b
}

// TestGroupConversationList: groups are listed as #TITLE with their unread
// count, two groups of one title told apart by their ids' first digits, a
// group left marked ×; opening one shows its members and this account's
// role in the header.
func TestGroupConversationList(t *testing.T) {
	t.Parallel()
	x := start(t, groupBackend(), 100, 25)
	lines := x.term.WaitText(t, "#family")
	if r := uitest.Row(lines, "#family "); r < 0 || !strings.Contains(lines[r], "(2)") {
		t.Errorf("#family without its unread count:\n%s", x.term.Text())
	}
	for _, want := range []string{"#club (1a2b)", "#club (9f3c)", " × #old"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("the list does not show %q:\n%s", want, x.term.Text())
		}
	}

	x.term.Type("/msg #family\n")
	lines = x.term.WaitText(t, "4 members · you: owner · 1 of 3 verified (/group info)")
	if !strings.Contains(lines[0], "#family") {
		t.Errorf("header %q", lines[0])
	}
	for _, want := range []string{"start of the group #family", "10:40 bob: hi all", "10:42 carol: hello from carol", "-- a message from dave is waiting for the key from dave"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("the pane does not show %q:\n%s", want, x.term.Text())
		}
	}
	if !strings.Contains(statusLine(lines), "#family: 4 members") {
		t.Errorf("status %q", statusLine(lines))
	}
	x.waitInput("#family> ", "message #family, or /help")
	if uitest.Contains(x.term.Lines(), "(2)") {
		t.Errorf("the unread count stays after opening:\n%s", x.term.Text())
	}
	x.waitCalls(1, "MarkRead", family.String())

	// A group of a duplicated title opens by its label, or by its id.
	x.term.Type("/msg #club (9f3c)\n")
	x.waitInput("#club (9f3c)> ", "message #club (9f3c), or /help")
	x.term.Type("/msg #g:1a2b\n")
	x.waitInput("#club (1a2b)> ", "message #club (1a2b), or /help")
}

// TestGroupLeftIsReadOnly: a group this account left takes no text: typing
// is refused with the reason, and so is /msg with text; commands still
// work there.
func TestGroupLeftIsReadOnly(t *testing.T) {
	t.Parallel()
	x := start(t, groupBackend(), 100, 25)
	x.term.Type("/msg #old\n")
	lines := x.term.WaitText(t, "× you are no longer a member: read-only")
	if !uitest.Contains(lines, "-- bob removed you") {
		t.Errorf("the history is not shown:\n%s", x.term.Text())
	}
	x.waitInput("#old> ", "read-only: you are no longer a member; /group info shows the group")
	x.term.Type("hello")
	x.term.WaitText(t, "you are no longer a member of #old; it is read-only")
	if got := inputLine(x.term.Lines()); strings.Contains(got, "hello") {
		t.Errorf("text went into a group left: %q", got)
	}
	x.term.Type("/msg #old hi there\n")
	x.term.WaitText(t, "not sent: you are no longer a member of #old; it is read-only")
	if n := x.calls("Send"); n != 0 {
		t.Errorf("%d sends to a group left", n)
	}
	if !strings.Contains(statusLine(x.term.Lines()), "#old: read-only") {
		t.Errorf("status %q", statusLine(x.term.Lines()))
	}
	// /group info works there, other changes are refused.
	x.term.Press(tcell.KeyBackspace2)
	x.term.Type("/group info\n")
	x.term.WaitText(t, "you are no longer a member: this is the group as you last knew it")
	x.term.WaitText(t, "bob  owner   key unknown or not accepted (/verify bob)")
	x.term.Type("/group add old carol\n")
	x.term.WaitText(t, "/group add: you are no longer a member of #old")
	if n := x.calls("AddToGroup"); n != 0 {
		t.Errorf("AddToGroup called for a group left")
	}
}

// TestGroupCommands: /group create, add, role, remove, info and leave call
// the engine; what each did appears as its line in the group, in italics;
// the header follows the membership.
func TestGroupCommands(t *testing.T) {
	t.Parallel()
	x := start(t, groupBackend(), 110, 30)
	x.term.Type(`/group create "Book club" bob carol` + "\n")
	x.waitCalls(1, "CreateGroup", "Book club", "bob", "carol")
	lines := x.term.WaitText(t, `-- you created the group "Book club" (with bob, carol)`)
	x.waitInput("#Book club> ", "message #Book club, or /help")
	if !uitest.Contains(lines, "3 members · you: owner") {
		t.Errorf("header after create: %q\n%s", lines[0], x.term.Text())
	}
	if st, _ := x.term.StyleOf("-- you created"); !italic(st) {
		t.Errorf("the group's line is not in italics")
	}
	g := groupByTitle(t, x.b, "Book club")

	x.term.Type("/group add Book club dave\n") // a known title with a space needs no quotes
	x.waitCalls(1, "AddToGroup", g.String(), "dave")
	x.term.WaitText(t, "-- you added dave")
	x.term.WaitText(t, "4 members · you: owner")

	x.term.Type("/group role \"Book club\" bob admin\n")
	x.waitCalls(1, "SetGroupRole", g.String(), "bob", "true")
	x.term.WaitText(t, "-- you made bob an admin")

	x.term.Type("/group remove #Book club carol\n")
	x.waitCalls(1, "RemoveFromGroup", g.String(), "carol")
	x.term.WaitText(t, "-- you removed carol")
	x.term.WaitText(t, "3 members · you: owner")

	x.term.Type("/group info\n")
	lines = x.term.WaitText(t, "#Book club (g:")
	for _, want := range []string{"alice  owner   you", "bob    admin   not verified (/verify bob)", "dave   member  not verified (/verify dave)"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("/group info does not show %q:\n%s", want, x.term.Text())
		}
	}
	// The verification state of each member, as /verify knows it.
	x.term.Type("/group info family\n")
	lines = x.term.WaitText(t, "#family (g:"+familyID+"): 4 members")
	for _, want := range []string{"bob    admin   verified ✓ · devices 1, 3", "carol  member  not verified (/verify carol) · devices –", "dave   member  key unknown or not accepted (/verify dave)"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("/group info family does not show %q:\n%s", want, x.term.Text())
		}
	}

	x.term.Type("/msg #Book club\n")
	x.term.Type("/group leave\n")
	x.waitCalls(1, "LeaveGroup", g.String())
	x.term.WaitText(t, "-- you left")
	x.term.WaitText(t, "× you are no longer a member: read-only")
	x.term.WaitText(t, " × #Book club")
}

func italic(st tcell.Style) bool {
	_, _, attr := st.Decompose()
	return attr&tcell.AttrItalic != 0
}

func groupByTitle(t *testing.T, b *uitest.Backend, title string) chat.Conversation {
	t.Helper()
	gs, _ := b.Groups()
	for _, g := range gs {
		if g.Title == title {
			return g.Conversation
		}
	}
	t.Fatalf("no group %q", title)
	return chat.Conversation{}
}

// TestGroupCommandErrors: a wrong /group line says why in one line and
// stays in the input; a change the engine refuses says why too.
func TestGroupCommandErrors(t *testing.T) {
	t.Parallel()
	x := start(t, groupBackend(), 110, 30)
	for _, c := range []struct{ line, want string }{
		{"/group frobnicate", `unknown /group subcommand "frobnicate": usage: /group create TITLE`},
		{"/group create", "usage: /group create TITLE [MEMBER...]"},
		{"/group add nosuch bob", `/group add: no group called "nosuch"`},
		{"/group add family", "usage: /group add TITLE MEMBER..."},
		{"/group add family Bob!", `/group add: invalid user name "Bob!"`},
		{"/group role family bob boss", "usage: /group role TITLE MEMBER admin|member"},
		{"/group add club erin", `/group add: 2 groups are called "club": name one as #club (1a2b)`},
		{"/msg #nosuch", `/msg: no group called "nosuch"`},
		{"/msg #club", `/msg: 2 groups are called "club"`},
		{"/verify #family", "/verify: a group has no safety number of its own: /group info shows whether"},
	} {
		x.term.Type(c.line + "\n")
		x.term.WaitText(t, c.want)
		x.term.WaitText(t, "not done: Enter retries")
		x.term.Press(tcell.KeyBackspace2) // the failed line goes
		x.waitInput("bob> ", "message bob, or /help")
	}
	for _, m := range []string{"CreateGroup", "AddToGroup", "SetGroupRole"} {
		if n := x.calls(m); n != 0 {
			t.Errorf("%s called %d times for wrong lines", m, n)
		}
	}
	// Refused by the engine: one line, in the conversation it was typed in.
	x.b.SetGroupError(errors.New("family: only admins add members"))
	x.term.Type("/group add family erin\n")
	x.term.WaitText(t, "!! /group add: family: only admins add members")
	x.waitInput("bob> ", "message bob, or /help")
	x.b.SetGroupError(errors.New("not connected"))
	x.term.Type("/msg #family\n/group leave\n")
	lines := x.term.WaitText(t, "!! /group leave: not connected")
	if strings.Contains(lines[0], "×") {
		t.Errorf("the group shows as left after a failed leave: %q", lines[0])
	}
}

// TestGroupColoursAndNotes: each member's name has its own colour, the same
// in every group; the lines about the group are italic and dim, not
// coloured as names; a line about a group arriving while another
// conversation is open is not counted unread and rings no bell.
func TestGroupColoursAndNotes(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	x := start(t, b, 100, 25)
	x.term.Type("/msg #family\n")
	x.term.WaitText(t, "carol: hello from carol")
	fg := func(s string) tcell.Color {
		t.Helper()
		st, ok := x.term.StyleOf(s)
		if !ok {
			t.Fatalf("%q not on the screen:\n%s", s, x.term.Text())
		}
		c, _, _ := st.Decompose()
		return c
	}
	bob, carol := fg("bob: hi all"), fg("carol: hello")
	if bob == carol || bob == tcell.ColorDefault || carol == tcell.ColorDefault {
		t.Errorf("bob and carol are not told apart by colour: %v, %v", bob, carol)
	}
	st, _ := x.term.StyleOf("-- a message from dave")
	if nfg, _, _ := st.Decompose(); !italic(st) || nfg != tcell.ColorGray {
		t.Errorf("a note is not dim italics: %v", st)
	}
	// bob has his colour in another group too.
	b.AddGroup(client.GroupInfo{ID: "77770000000000000000000000000005", Title: "work", Members: []client.GroupMemberInfo{{User: "alice", Role: "member"}, {User: "bob", Role: "owner"}}})
	work := chat.Group("77770000000000000000000000000005")
	b.GroupNote(work, "bob", "bob added you to the group \"work\" (with alice)", t0)
	x.term.WaitText(t, "#work")
	if x.term.Beeps() != 0 || uitest.Contains(x.term.Lines(), "(1)") {
		t.Errorf("a note counted unread or rang:\n%s", x.term.Text())
	}
	b.ReceiveGroup(work, "bob", "morning", t0)
	x.term.WaitText(t, "(1)")
	x.term.WaitBeeps(t, 1)
	x.term.Type("/msg #work\n")
	x.term.WaitText(t, "12:00 bob: morning")
	if got := fg("bob: morning"); got != bob {
		t.Errorf("bob's colour differs between groups: %v, %v", got, bob)
	}
}

// TestGroupTyping (issue 10 point 4): typing in a group tells the group;
// a member's typing shows with the member's name.
func TestGroupTyping(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	x := start(t, b, 100, 25)
	x.term.Type("/msg #family\n")
	x.waitInput("#family> ", "message #family, or /help")
	x.term.Type("see you")
	x.waitCalls(1, "Typing", family.String())
	// carol types in the group: the line names her, not the group.
	b.Emit(client.UIEvent{Type: client.UITyping, Conversation: family, ID: "carol"})
	x.term.WaitText(t, "carol is typing…")
}

// TestGroupCompletion: Tab completes /group, its subcommands, group titles
// (in quotes when they have spaces), members and roles.
func TestGroupCompletion(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	b.AddGroup(client.GroupInfo{ID: "b00c0000000000000000000000000006", Title: "Book club", Members: []client.GroupMemberInfo{{User: "alice", Role: "owner"}, {User: "carol", Role: "member"}}})
	x := start(t, b, 100, 25)
	x.term.Type("/gro")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/group")
	x.term.Type("ro")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/group role")
	x.term.Type("fa")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/group role family")
	x.term.Type("ca")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/group role family carol")
	x.term.Type("ad")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/group role family carol admin")
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "SetGroupRole", family.String(), "carol", "true")

	x.term.Type("/group add Bo")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", `/group add "Book club"`)
	x.term.Type("fr") // frank has a conversation, and is not in the group
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", `/group add "Book club" frank`)
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "AddToGroup", chat.Group("b00c0000000000000000000000000006").String(), "frank")

	x.term.Type("/msg #fa")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/msg #family")
}

// TestGroupHelp: /help lists the group commands and the list's marks.
func TestGroupHelp(t *testing.T) {
	t.Parallel()
	x := start(t, groupBackend(), 100, 70)
	x.term.Type("/help\n")
	lines := x.term.WaitText(t, "/msg #TITLE [TEXT]  open a group")
	for _, want := range []string{"/group info [TITLE]  members, roles, verification, devices", "/group create TITLE [MEMBER...]", "/group add|remove TITLE MEMBER...", "/group role TITLE MEMBER admin|member", "/group leave [TITLE]", "× a group you left"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("/help does not show %q:\n%s", want, x.term.Text())
		}
	}
}

// TestGroupReadBy (issue 10 point 4): an outgoing group message shows how
// many members it reached and read it, as the engine's receipts say.
func TestGroupReadBy(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	x := start(t, b, 100, 25)
	x.term.Type("/msg #family\n")
	x.term.WaitText(t, "carol: hello from carol")
	x.term.Type("lunch at one?\n")
	x.term.WaitText(t, "alice: lunch at one?")
	var sent client.HistoryEntry
	for _, e := range b.GroupEntries(family) {
		if e.Outgoing && e.Text == "lunch at one?" {
			sent = e
		}
	}
	if sent.ID == "" {
		t.Fatalf("the message was not sent: %+v", b.GroupEntries(family))
	}
	upd := sent
	upd.State, upd.Recipients, upd.DeliveredTo = client.StateDelivered, 3, []string{"bob", "carol"}
	b.Emit(client.UIEvent{Type: client.UIState, Conversation: family, ID: sent.ID, State: upd.State, Entry: &upd})
	x.term.WaitText(t, "lunch at one? ✓✓ 2 of 3")
	upd.ReadBy = []string{"bob"}
	b.Emit(client.UIEvent{Type: client.UIState, Conversation: family, ID: sent.ID, State: upd.State, Entry: &upd})
	x.term.WaitText(t, "lunch at one? ✓✓ read by 1 of 3")
}

// TestGroupMute: /group mute TITLE MEMBER FOR mutes for that long, off
// lifts it; a bad length is refused at once.
func TestGroupMute(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	x := start(t, b, 100, 25)
	x.term.Type("/group mute family dave 2d\n")
	x.waitCalls(1, "MuteInGroup", family.String(), "dave", t0.Add(48*time.Hour).Format(time.RFC3339))
	x.term.Type("/group mute family dave off\n")
	x.waitCalls(1, "MuteInGroup", family.String(), "dave", time.Time{}.Format(time.RFC3339))
	x.term.Type("/group mute family dave soon\n")
	x.term.WaitText(t, "usage: /group mute TITLE MEMBER FOR|off")
}

// TestGroupRename: /group rename TITLE NEWTITLE renames; the list shows it.
func TestGroupRename(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	x := start(t, b, 100, 25)
	x.term.Type("/group rename family \"the family\"\n")
	x.waitCalls(1, "RenameGroup", family.String(), "the family")
	x.term.WaitText(t, "#the family")
}

// TestGroupInfoKeyDiffers: /group info says when the key a group names
// for a member is not the one this home holds for them.
func TestGroupInfoKeyDiffers(t *testing.T) {
	t.Parallel()
	b := groupBackend()
	b.AddGroup(client.GroupInfo{ID: "d1ff0000000000000000000000000007", Title: "odd", Members: []client.GroupMemberInfo{
		{User: "alice", Role: "owner", KeyTrusted: true}, {User: "mallory", Role: "member", KeyDiffers: true}}})
	x := start(t, b, 120, 25)
	x.term.Type("/group info odd\n")
	x.term.WaitText(t, "mallory  member  KEY DIFFERS from the one you have (/verify mallory)")
}
