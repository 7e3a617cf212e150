package ui

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Groups in the terminal client (issue 10 point 5). Who is in a group, and
// with which role, is what the engine derives from the group's signed log
// (docs/protocol.md §8.2); the UI reads it with Backend.Groups whenever a
// line of a group's history may mean a change (a membership notice, a
// group not seen before, a /group command done) and shows a group as
// "#Title" — "#Title (1a2b)" when two groups share the title. The changes
// wait for the server, so /group runs them in a goroutine and shows what
// failed as one line in the pane where it was typed; what they did
// arrives as the line the engine keeps ("you added dave").

// groupTimeout bounds one /group change.
const groupTimeout = 30 * time.Second

// styleGroupNote is a line of a group's history that is not a message:
// a membership change, a message waiting for its sender's key.
var styleGroupNote = styleDim.Italic(true)

// memberColours colour the names of a group's members: none is the green
// of this account's name, the red of errors or the yellow of warnings.
var memberColours = []tcell.Color{
	tcell.ColorTeal, tcell.ColorFuchsia, tcell.ColorOrange, tcell.ColorAqua,
	tcell.ColorViolet, tcell.ColorOlive, tcell.ColorSkyblue, tcell.ColorSalmon,
}

// memberStyle is a member's name in a group: a colour that depends only on
// the name, so it is the same in every group, every run, every client.
func memberStyle(name string) tcell.Style {
	h := fnv.New32a()
	h.Write([]byte(name))
	return tcell.StyleDefault.Foreground(memberColours[h.Sum32()%uint32(len(memberColours))]).Bold(true)
}

// refreshGroups reads the groups again: every group gets its conversation
// (listed even before anything was said in it), its member list and its
// label.
func (u *UI) refreshGroups() {
	gs, err := u.b.Groups()
	if err != nil {
		u.console.notify(noticeError, "cannot list the groups: "+err.Error())
		return
	}
	byTitle := make(map[string][]string) // ids by title
	for _, g := range gs {
		byTitle[g.Title] = append(byTitle[g.Title], g.ID)
	}
	for i := range gs {
		g := &gs[i]
		c := u.conversation(g.Conversation, true)
		if c == nil {
			continue
		}
		label := "#" + g.Title
		if ids := byTitle[g.Title]; len(ids) > 1 {
			label += " (" + g.ID[:distinctPrefix(g.ID, ids)] + ")"
		}
		if c.label != label || c.group == nil || c.group.Left != g.Left {
			c.changed()
		}
		c.group, c.label = g, label
	}
	u.sortConversations()
	if u.open != nil && u.open.group != nil {
		u.labelInput(u.open)
	}
}

// distinctPrefix is how many of id's first hex digits (at least 4) tell it
// apart from the other ids.
func distinctPrefix(id string, ids []string) int {
	n := 4
	for _, other := range ids {
		for other != id && n < len(id) && strings.HasPrefix(other, id[:n]) {
			n += 2
		}
	}
	return n
}

// readOnly is why c takes no messages, "" if it does: the server's
// announcements, or a group this account left or was removed from.
func (u *UI) readOnly(c *conversation) string {
	switch {
	case c.isSystem():
		return readOnlyHint
	case c.group != nil && c.group.Left:
		return "you are no longer a member of " + sanitizeLine(c.name()) + "; it is read-only"
	}
	return ""
}

// groupHeader is a group's part of the header: members, this account's
// role, how many of the others are verified; or that it was left.
func (u *UI) groupHeader(c *conversation) line {
	g := c.group
	if g == nil {
		return cells(span{"group", styleDim})
	}
	if g.Left {
		return cells(span{"× you are no longer a member: read-only", styleWarn})
	}
	others, verified := 0, 0
	for _, m := range g.Members {
		if m.User != u.self {
			others++
			if m.Verified {
				verified++
			}
		}
	}
	text := fmt.Sprintf("%s · you: %s", plural(len(g.Members), "member"), g.Role(u.self))
	if others > 0 {
		text += fmt.Sprintf(" · %d of %d verified (/group info)", verified, others)
	}
	return cells(span{text, styleDim})
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// groupUsage is what a /group without a valid subcommand says.
const groupUsage = "usage: /group create TITLE [MEMBER...], /group add|remove TITLE MEMBER..., /group leave [TITLE], /group role TITLE MEMBER admin|member, /group mute TITLE MEMBER FOR|off, /group rename TITLE NEWTITLE, /group info [TITLE]"

// parseFor reads how long a mute lasts: a Go duration (90m, 1h30m) or
// whole days (30d).
func parseFor(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 3650 {
			return 0, fmt.Errorf("bad days %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("not positive: %q", s)
	}
	return d, err
}

// groupSubcommands are /group's subcommands, for completion.
var groupSubcommands = []string{"add", "create", "info", "leave", "mute", "remove", "rename", "role"}

// groupCommand runs /group. Usage errors, unknown groups and names are
// said at once (false: the line stays in the input); the change itself
// runs in a goroutine (groupChange).
func (u *UI) groupCommand(rest string) bool {
	u.refreshGroups() // the engine may have changed what it holds (devices, by a send)
	sub, rest := nextField(rest)
	sub = strings.ToLower(sub)
	switch sub {
	case "":
		u.listGroups()
		return true
	case "create":
		title, rest := splitTitle(rest, nil)
		title = strings.TrimPrefix(title, "#")
		if strings.TrimSpace(title) == "" || len(title) > 256 {
			u.notice(noticeError, "usage: /group create TITLE [MEMBER...] (a title is 1 to 256 bytes; \"in quotes\" when it has spaces)")
			return false
		}
		members, ok := u.userNames("group create", strings.Fields(rest))
		if !ok {
			return false
		}
		u.groupChange("/group create", func(ctx context.Context) error {
			g, err := u.b.CreateGroup(ctx, title, members)
			if err == nil {
				created := g.Conversation
				u.update(func() {
					u.refreshGroups()
					if c := u.conversation(created, true); c != nil {
						u.openConversation(c)
					}
				})
			}
			return err
		})
		return true
	case "add", "remove", "role", "mute", "rename":
		g, rest, ok := u.groupArg(sub, rest, false)
		if !ok {
			return false
		}
		if sub == "rename" {
			title := strings.Trim(strings.TrimSpace(rest), `"`)
			if title == "" || len(title) > 256 {
				u.notice(noticeError, "usage: /group rename TITLE NEWTITLE (a title is 1 to 256 bytes)")
				return false
			}
			u.groupChange("/group rename", func(ctx context.Context) error {
				err := u.b.RenameGroup(ctx, g.Conversation, title)
				if err == nil {
					u.update(func() { u.refreshGroups() })
				}
				return err
			})
			return true
		}
		args := strings.Fields(rest)
		if sub == "mute" {
			var d time.Duration
			var err error
			if len(args) == 2 && args[1] != "off" {
				d, err = parseFor(args[1])
			}
			if len(args) != 2 || err != nil {
				u.notice(noticeError, "usage: /group mute TITLE MEMBER FOR|off (FOR like 1h or 30d)")
				return false
			}
			users, ok := u.userNames("group mute", args[:1])
			if !ok {
				return false
			}
			var until time.Time
			if d > 0 {
				until = u.now().Add(d)
			}
			u.groupChange("/group mute", func(ctx context.Context) error {
				return u.b.MuteInGroup(ctx, g.Conversation, users, until)
			})
			return true
		}
		if sub == "role" {
			if len(args) != 2 || (args[1] != "admin" && args[1] != "member") {
				u.notice(noticeError, "usage: /group role TITLE MEMBER admin|member")
				return false
			}
			admin := args[1] == "admin"
			users, ok := u.userNames("group role", args[:1])
			if !ok {
				return false
			}
			u.groupChange("/group role", func(ctx context.Context) error {
				return u.b.SetGroupRole(ctx, g.Conversation, users, admin)
			})
			return true
		}
		if len(args) == 0 {
			u.notice(noticeError, "usage: /group %s TITLE MEMBER...", sub)
			return false
		}
		users, ok := u.userNames("group "+sub, args)
		if !ok {
			return false
		}
		u.groupChange("/group "+sub, func(ctx context.Context) error {
			if sub == "add" {
				return u.b.AddToGroup(ctx, g.Conversation, users)
			}
			return u.b.RemoveFromGroup(ctx, g.Conversation, users)
		})
		return true
	case "leave":
		g, rest, ok := u.groupArg(sub, rest, true)
		if !ok {
			return false
		}
		if strings.TrimSpace(rest) != "" {
			u.notice(noticeError, "usage: /group leave [TITLE]")
			return false
		}
		u.groupChange("/group leave", func(ctx context.Context) error { return u.b.LeaveGroup(ctx, g.Conversation) })
		return true
	case "info":
		g, rest, ok := u.groupArg(sub, rest, true)
		if !ok {
			return false
		}
		if strings.TrimSpace(rest) != "" {
			u.notice(noticeError, "usage: /group info [TITLE]")
			return false
		}
		u.groupInfo(g)
		return true
	}
	u.notice(noticeError, "unknown /group subcommand %q: %s", sanitizeLine(sub), groupUsage)
	return false
}

// groupArg is the group a /group subcommand names first, and the rest of
// the line. Without a name (optional) it is the open group. A group this
// account left takes no changes, only info.
func (u *UI) groupArg(sub, rest string, optional bool) (*client.GroupInfo, string, bool) {
	var g *client.GroupInfo
	if strings.TrimSpace(rest) == "" && optional && u.open.group != nil {
		g = u.open.group
	} else {
		name, after := splitTitle(rest, u.groupNames())
		if name == "" {
			u.notice(noticeError, "usage: %s", subUsage(sub))
			return nil, "", false
		}
		var err error
		if g, err = u.findGroup(name); err != nil {
			u.notice(noticeError, "/group %s: %v", sub, err)
			return nil, "", false
		}
		rest = after
	}
	if g.Left && sub != "info" {
		u.notice(noticeError, "/group %s: you are no longer a member of %s", sub, sanitizeLine(u.groupName(g)))
		return nil, "", false
	}
	return g, rest, true
}

func subUsage(sub string) string {
	switch sub {
	case "add", "remove":
		return "/group " + sub + " TITLE MEMBER..."
	case "role":
		return "/group role TITLE MEMBER admin|member"
	}
	return "/group " + sub + " [TITLE]"
}

// groupChange runs a change of a group in a goroutine; if it fails, the
// reason is one line in the conversation where it was typed.
func (u *UI) groupChange(what string, op func(ctx context.Context) error) {
	c := u.open
	hint := what + ": waiting for the server…"
	u.hint = hint
	go func() {
		ctx, cancel := context.WithTimeout(u.ctx, groupTimeout)
		err := op(ctx)
		cancel()
		u.update(func() {
			if u.hint == hint {
				u.hint = ""
			}
			u.refreshGroups()
			if err != nil {
				c.notify(noticeError, what+": "+err.Error())
				if c == u.open {
					u.pane.follow()
				}
			}
		})
	}()
}

// userNames checks user names as the server does.
func (u *UI) userNames(cmd string, names []string) ([]string, bool) {
	var out []string
	for _, n := range names {
		name, err := canonicalName(n)
		if err != nil {
			u.notice(noticeError, "/%s: %v", cmd, err)
			return nil, false
		}
		out = append(out, name)
	}
	return out, true
}

// groupName is how g is shown.
func (u *UI) groupName(g *client.GroupInfo) string {
	if c := u.byConv[g.Conversation]; c != nil && c.label != "" {
		return c.label
	}
	return "#" + g.Title
}

// groupNames are the names a group can be given by: its label and its
// title, with and without "#".
func (u *UI) groupNames() []string {
	var out []string
	for _, c := range u.convs {
		if c.group != nil {
			out = append(out, c.label, strings.TrimPrefix(c.label, "#"), "#"+c.group.Title, c.group.Title)
		}
	}
	return out
}

// findGroup finds the group a user names: by its label ("#family (1a2b)"),
// its title ("#family" or "family": refused when two groups share it), or
// 4 or more of its id's first hex digits ("g:1a2b").
func (u *UI) findGroup(name string) (*client.GroupInfo, error) {
	name = strings.TrimSpace(name)
	var byTitle []*conversation
	for _, c := range u.convs {
		if c.group == nil {
			continue
		}
		if c.label == name || c.label == "#"+name {
			return c.group, nil
		}
		if t := strings.TrimPrefix(name, "#"); c.group.Title == t || c.group.Title == name {
			byTitle = append(byTitle, c)
		}
	}
	switch len(byTitle) {
	case 1:
		return byTitle[0].group, nil
	case 0:
	default:
		var labels []string
		for _, c := range byTitle {
			labels = append(labels, sanitizeLine(c.label))
		}
		slices.Sort(labels)
		return nil, fmt.Errorf("%d groups are called %q: name one as %s", len(byTitle), sanitizeLine(strings.TrimPrefix(name, "#")), strings.Join(labels, " or "))
	}
	prefix := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(name, "#"), "g:"))
	var byID []*client.GroupInfo
	if len(prefix) >= 4 {
		for _, c := range u.convs {
			if c.group != nil && strings.HasPrefix(c.group.ID, prefix) {
				byID = append(byID, c.group)
			}
		}
	}
	if len(byID) == 1 {
		return byID[0], nil
	}
	return nil, fmt.Errorf("no group called %q (/group lists yours, /group create TITLE MEMBER... makes one)", sanitizeLine(strings.TrimPrefix(name, "#")))
}

// splitTitle takes a group's name off the front of s: a name "in quotes",
// else the longest of names that s begins with as a whole word, else the
// first word. It returns the name and the rest of s.
func splitTitle(s string, names []string) (name, rest string) {
	s = strings.TrimLeft(s, " ")
	if q := strings.TrimPrefix(s, "#"); strings.HasPrefix(q, `"`) {
		if end := strings.IndexByte(q[1:], '"'); end >= 0 {
			return q[1 : end+1], strings.TrimLeft(q[end+2:], " ")
		}
		return q[1:], ""
	}
	best := ""
	for _, n := range names {
		if len(n) > len(best) && strings.HasPrefix(s, n) && (len(s) == len(n) || s[len(n)] == ' ') {
			best = n
		}
	}
	if best != "" {
		return best, strings.TrimLeft(s[len(best):], " ")
	}
	return nextField(s)
}

// quoteName is a name as completion fills it in: "in quotes" when it has
// spaces, so that splitTitle reads it back whole.
func quoteName(name string) string {
	if strings.ContainsAny(name, " \t") {
		return `"` + name + `"`
	}
	return name
}

// splitArgs splits a command line into words; "words in quotes" are one.
func splitArgs(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return append(out, s[1:])
			}
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		w, rest := nextField(s)
		out = append(out, w)
		s = rest
	}
}

// listGroups shows this account's groups (/group alone).
func (u *UI) listGroups() {
	var rows []string
	for _, c := range u.convs {
		if g := c.group; g != nil {
			state := "you: " + g.Role(u.self)
			if g.Left {
				state = "× you left"
			}
			rows = append(rows, fmt.Sprintf("  %s  %s, %s", c.label, plural(len(g.Members), "member"), state))
		}
	}
	slices.Sort(rows)
	if len(rows) == 0 {
		u.notice(noticeInfo, "no groups yet: /group create TITLE MEMBER... makes one")
		return
	}
	u.notice(noticeInfo, "your groups (/msg #TITLE opens one):\n%s\n%s", strings.Join(rows, "\n"), groupUsage)
}

// groupInfo shows a group's members (/group info): each one's role,
// whether this account compared safety numbers with them, as /verify and
// the status bar say it for a conversation with one person, and their
// devices that read what this device sends to the group.
func (u *UI) groupInfo(g *client.GroupInfo) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (g:%s): %s", u.groupName(g), g.ID, plural(len(g.Members), "member"))
	if g.Left {
		b.WriteString("\nyou are no longer a member: this is the group as you last knew it")
	}
	width := 0
	for _, m := range g.Members {
		width = max(width, len(m.User))
	}
	for _, m := range g.Members {
		state := "not verified (/verify " + m.User + ")"
		switch {
		case m.User == u.self:
			state = "you"
		case m.Verified:
			state = "verified ✓"
		case m.KeyDiffers:
			state = "KEY DIFFERS from the one you have (/verify " + m.User + ")"
		case !m.KeyTrusted:
			state = "key unknown or not accepted (/verify " + m.User + ")"
		}
		muted := ""
		if !m.MutedUntil.IsZero() {
			muted = ", muted until " + chat.FormatTime(m.MutedUntil)
		}
		devices := "–"
		if len(m.Devices) > 0 {
			var ds []string
			for _, d := range m.Devices {
				ds = append(ds, fmt.Sprint(d))
			}
			devices = strings.Join(ds, ", ")
		}
		fmt.Fprintf(&b, "\n  %-*s  %-6s  %s%s · devices %s", width, m.User, m.Role, state, muted, devices)
	}
	b.WriteString("\ndevices: those that hold your key for this group and read what you send here (each gets it with your next message)")
	u.notice(noticeInfo, "%s", b.String())
}

// groupCompletions are the candidates for the next word of /group sub
// after args: a group's name, then user names (anyone in a conversation
// for add, the group's members for remove and role), then a role.
func (u *UI) groupCompletions(sub string, args []string) []string {
	if sub == "create" {
		if len(args) == 0 {
			return nil // a new title
		}
		return u.peerNames(nil)
	}
	if !slices.Contains(groupSubcommands, sub) {
		return nil
	}
	if len(args) == 0 {
		var out []string
		for _, c := range u.convs {
			if c.group != nil && (!c.group.Left || sub == "info") {
				out = append(out, quoteName(strings.TrimPrefix(c.label, "#")))
			}
		}
		slices.Sort(out)
		return out
	}
	g, err := u.findGroup(args[0])
	if err != nil {
		return nil
	}
	var members []string
	for _, m := range g.Members {
		if m.User != u.self {
			members = append(members, m.User)
		}
	}
	switch {
	case sub == "add":
		return u.peerNames(g)
	case sub == "remove", (sub == "role" || sub == "mute") && len(args) == 1:
		return members
	case sub == "role" && len(args) == 2:
		return []string{"admin", "member"}
	}
	return nil
}

// peerNames are the people this account has conversations with, those in
// g (if not nil) left out.
func (u *UI) peerNames(g *client.GroupInfo) []string {
	var out []string
	for _, c := range u.convs {
		if c.Conversation.Kind() == chat.PeerConversation && !c.isSystem() && (g == nil || g.Role(c.Conversation.ID()) == "") {
			out = append(out, c.Conversation.ID())
		}
	}
	slices.Sort(out)
	return out
}
