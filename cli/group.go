package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/internal/usage"
)

const groupUsage = `group [--home DIR] SUBCOMMAND ...
  create TITLE [MEMBER...]      make a group; you are its owner
  add TITLE MEMBER...           add members (owner and admins)
  remove TITLE MEMBER...        remove members (owner and admins)
  leave TITLE                   leave the group
  role TITLE MEMBER admin|member  make a member an admin, or a plain member again
  mute TITLE MEMBER FOR|off     keep a member from writing for FOR (1h, 30d…), or lift it (owner and admins)
  rename TITLE NEWTITLE         give the group a new title (owner and admins)
  list                          your groups
  info TITLE                    members, roles, and whether you verified each
TITLE is the group's title, or its id (g: and 8 or more of its hex digits)
when two groups share a title. Run securechat recv (or chat) to take in
what the other members changed.`

// Group is `securechat group` (docs/design.md §7).
func Group(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("group", env.Stderr).Synopsis("SUBCOMMAND ... (create, add, remove, leave, role, mute, rename, list, info)").After(usage.Text, "the subcommand")
	dir := homeFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return usage.Errorf("usage: securechat %s", groupUsage)
	}
	sub, a := a[0], a[1:]
	need := map[string][2]int{ // least and most arguments; -1: no most
		"create": {1, -1}, "add": {2, -1}, "remove": {2, -1}, "leave": {1, 1}, "role": {3, 3}, "mute": {3, 3}, "rename": {2, 2}, "list": {0, 0}, "info": {1, 1},
	}
	n, ok := need[sub]
	if !ok {
		return usage.Errorf("group: unknown subcommand %q (create, add, remove, leave, role, mute, rename, list, info)", sub)
	}
	if len(a) < n[0] || n[1] >= 0 && len(a) > n[1] {
		return usage.Errorf("usage: securechat %s", groupUsage)
	}
	if sub == "role" && a[2] != "admin" && a[2] != "member" {
		return usage.Errorf("group role: the role is admin or member, not %q", a[2])
	}
	var muteFor time.Duration
	if sub == "mute" && a[2] != "off" {
		d, err := appliance.ParseDuration(a[2])
		if err != nil || d <= 0 {
			return usage.Errorf("group mute: how long is a duration like 1h or 30d, or off, not %q", a[2])
		}
		muteFor = d
	}
	if sub == "create" && (strings.TrimSpace(a[0]) == "" || len(a[0]) > 256) {
		return usage.Errorf("group create: a title is 1 to 256 bytes")
	}
	if sub == "rename" && (strings.TrimSpace(a[1]) == "" || len(a[1]) > 256) {
		return usage.Errorf("group rename: a title is 1 to 256 bytes")
	}

	if sub == "list" || sub == "info" { // the home alone: works offline
		h, e, err := openEngine(env, *dir)
		if err != nil {
			return err
		}
		defer h.Close()
		defer e.Close()
		if sub == "list" {
			return groupList(e, env)
		}
		g, err := e.ResolveGroup(a[0])
		if err != nil {
			return err
		}
		self, _, _ := e.Self()
		return groupInfo(g, self, env)
	}

	h, e, err := connect(ctx, env, *dir, false)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	if err := flushOutbox(ctx, e, env); err != nil {
		return fmt.Errorf("group %s: not done, since an earlier message still waits: %w", sub, err)
	}
	if sub == "create" {
		g, err := e.CreateGroup(ctx, a[0], a[1:])
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "created %q (g:%s) with %d members\n", g.Title, g.ID[:8], len(g.Members))
		return nil
	}
	g, err := e.ResolveGroup(a[0])
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		err = e.AddToGroup(ctx, g.Conversation, a[1:])
	case "remove":
		err = e.RemoveFromGroup(ctx, g.Conversation, a[1:])
	case "leave":
		err = e.LeaveGroup(ctx, g.Conversation)
	case "role":
		err = e.SetGroupRole(ctx, g.Conversation, a[1:2], a[2] == "admin")
	case "rename":
		err = e.RenameGroup(ctx, g.Conversation, a[1])
	case "mute":
		var until time.Time
		if muteFor > 0 {
			until = time.Now().Add(muteFor)
		}
		err = e.MuteInGroup(ctx, g.Conversation, a[1:2], until)
	}
	return err
}

func groupList(e *client.Engine, env Env) error {
	gs, err := e.Groups()
	if err != nil {
		return err
	}
	if len(gs) == 0 {
		fmt.Fprintln(env.Stdout, "no groups yet (securechat group create TITLE MEMBER...)")
		return nil
	}
	self, _, _ := e.Self()
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, g := range gs {
		state := "you: " + g.Role(self)
		if g.Left {
			state = "you left"
		}
		fmt.Fprintf(w, "%s\tg:%s\t%s\t%s\n", g.Title, g.ID[:8], plural(len(g.Members), "member"), state)
	}
	return w.Flush()
}

func groupInfo(g client.GroupInfo, self string, env Env) error {
	fmt.Fprintf(env.Stdout, "%s (g:%s)\n", g.Title, g.ID)
	if g.Left {
		fmt.Fprintln(env.Stdout, "you are no longer a member; this is the group as you last knew it")
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, m := range g.Members {
		trust := "not verified"
		switch {
		case m.User == self:
			trust = "you"
		case m.Verified:
			trust = "verified"
		case m.KeyDiffers:
			trust = "KEY DIFFERS from the one you have for " + m.User + " (compare: securechat fingerprint " + m.User + ")"
		case !m.KeyTrusted:
			trust = "key not yet known to you (securechat fingerprint " + m.User + ")"
		}
		muted := ""
		if !m.MutedUntil.IsZero() {
			muted = "muted until " + chat.FormatTime(m.MutedUntil)
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", m.User, m.Role, trust, muted)
	}
	return w.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
