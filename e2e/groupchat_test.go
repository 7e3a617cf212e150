package e2e

import (
	"strings"
	"testing"
)

// TestGroupChatInTmux (issue 10 point 5): three terminal clients against a
// real server. alice makes a group of the three with /group create; each
// sees it in the list and opens it with /msg #TITLE; a message from each
// reaches the other two's panes, under the sender's name; the actor's own
// line and the others' lines about the change are in the group.
func TestGroupChatInTmux(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	users := map[string]user{}
	names := []string{"alice", "bob", "carol"}
	for _, n := range names {
		users[n] = register(t, s, n)
	}
	for _, n := range names {
		x.start(n, users[n])
	}
	for _, n := range names {
		x.waitScreen(n, "connected", contains("connected"))
	}

	x.typeLine("alice", "/group create friends bob carol")
	x.waitScreen("alice", "the actor's line", contains(`-- you created the group "friends" (with bob, carol)`))
	x.waitScreen("alice", "the header", contains("#friends  3 members · you: owner"))
	for _, n := range names[1:] {
		x.waitScreen(n, "the group in the list", func(s string) bool { return listRow(s, "#friends") != "" })
		x.typeLine(n, "/msg #friends")
		x.waitScreen(n, "the line about the group", contains(`-- alice added you to the group "friends"`))
		x.waitScreen(n, "the header", contains("#friends  3 members · you: member"))
	}

	// A message from each reaches the two others.
	for _, from := range names {
		text := "hello from " + from + " to the group"
		x.typeLine(from, text)
		x.waitScreen(from, "the message stored", func(s string) bool {
			return strings.Contains(lineWith(s, text), "✓")
		})
		for _, to := range names {
			if to != from {
				x.waitScreen(to, from+"'s message", contains(from+": "+text))
			}
		}
	}
	for _, n := range names {
		screen := x.screen(n)
		for _, from := range names {
			if c := strings.Count(screen, "hello from "+from+" to the group"); c != 1 {
				t.Errorf("%s's screen shows %s's message %d times:\n%s", n, from, c, screen)
			}
		}
		if strings.Contains(screen, "waiting for the key") || strings.Contains(screen, "not shown") {
			t.Errorf("%s's screen:\n%s", n, screen)
		}
	}

	// /group info: each member's role, verification and the devices that
	// read what alice sends there.
	x.typeLine("alice", "/group info")
	x.waitScreen("alice", "the group's info", func(s string) bool {
		l := lineWith(s, "bob    member  not verified (/verify bob) · devices ")
		return l != "" && !strings.Contains(l, "devices –")
	})

	// A membership change shows in every pane; the one who left reads only.
	x.typeLine("carol", "/group leave")
	x.waitScreen("carol", "left", contains("× you are no longer a member: read-only"))
	x.waitScreen("carol", "her own line", contains("-- you left"))
	x.waitScreen("alice", "carol's leaving", contains("-- carol left"))
	x.waitScreen("alice", "the header", contains("#friends  2 members"))
	for _, n := range names {
		x.typeLine(n, "/quit")
	}
}
