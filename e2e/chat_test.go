package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tmux drives `securechat chat` in real terminals.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("SECURECHAT_REQUIRE_ALL") != "" {
			t.Fatal("tmux is required (SECURECHAT_REQUIRE_ALL is set): apt-get install -y tmux")
		}
		t.Skip("tmux not installed")
	}
	x := &tmux{t: t, socket: fmt.Sprintf("securechat-e2e-%d-%d", os.Getpid(), time.Now().UnixNano())}
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	return x
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", x.socket}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// start opens a session running securechat chat for u.
func (x *tmux) start(name string, u user) {
	x.t.Helper()
	cmd := fmt.Sprintf("SECURECHAT_PASSPHRASE=%q %s chat --home %s 2>>%s", passphrase, bin, u.home, filepath.Join(filepath.Dir(u.home), name+".stderr"))
	x.run("new-session", "-d", "-s", name, "-x", "110", "-y", "30", cmd)
}

func (x *tmux) keys(session string, keys ...string) {
	x.t.Helper()
	x.run(append([]string{"send-keys", "-t", session}, keys...)...)
}

// typeLine types text literally and presses Enter.
func (x *tmux) typeLine(session, text string) {
	x.t.Helper()
	x.run("send-keys", "-t", session, "-l", text)
	x.keys(session, "Enter")
}

func (x *tmux) screen(session string) string {
	x.t.Helper()
	return x.run("capture-pane", "-p", "-t", session)
}

// waitScreen waits until the session's screen satisfies cond.
func (x *tmux) waitScreen(session, what string, cond func(string) bool) string {
	x.t.Helper()
	return x.waitScreenFor(session, what, 20*time.Second, cond)
}

// waitScreenFor is waitScreen with its own bound.
func (x *tmux) waitScreenFor(session, what string, d time.Duration, cond func(string) bool) string {
	x.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := x.screen(session)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("%s: timed out waiting for %s; screen:\n%s", session, what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

// lineWith returns the screen line holding sub.
func lineWith(screen, sub string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestChatInTmux runs two terminal clients against a real server: they
// exchange messages, the sender sees delivered then read, the receiver sees
// the typing line, and a server restart loses nothing.
func TestChatInTmux(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	x.start("alice", alice)
	x.waitScreen("alice", "connected", contains("connected"))
	x.typeLine("alice", "/msg bob")
	x.typeLine("alice", "hello bob, this is alice")
	// Stored on the server (✓) while bob is offline, not yet delivered.
	x.waitScreen("alice", "stored mark", func(s string) bool {
		l := lineWith(s, "hello bob, this is alice")
		return strings.HasSuffix(strings.TrimSpace(l), "✓") && !strings.Contains(l, "✓✓")
	})

	x.start("bob", bob)
	x.waitScreen("bob", "alice in the list", contains("alice"))
	x.waitScreen("alice", "delivered mark", func(s string) bool {
		return strings.Contains(lineWith(s, "hello bob, this is alice"), "✓✓")
	})
	x.typeLine("bob", "/msg alice")
	x.waitScreen("bob", "alice's message", contains("hello bob, this is alice"))
	x.waitScreen("alice", "read mark", func(s string) bool {
		return strings.Contains(lineWith(s, "hello bob, this is alice"), "read")
	})

	// bob types: alice sees the typing line, then his message.
	x.run("send-keys", "-t", "bob", "-l", "hi alice")
	x.waitScreen("alice", "typing line", contains("bob is typing"))
	x.keys("bob", "Enter")
	x.waitScreen("alice", "bob's reply", contains("bob: hi alice"))

	// The server restarts; a message typed meanwhile is queued and arrives.
	s.stop()
	x.waitScreen("alice", "lost connection", func(s string) bool { return !strings.Contains(s, " connected │") })
	x.typeLine("alice", "sent while the server was down")
	x.waitScreen("alice", "queued mark", func(s string) bool {
		return strings.Contains(lineWith(s, "sent while the server was down"), "…")
	})
	s.start()
	x.waitScreen("bob", "the queued message", contains("sent while the server was down"))
	final := x.waitScreen("alice", "queued message read", func(s string) bool {
		return strings.Contains(lineWith(s, "sent while the server was down"), "read")
	})
	if path := os.Getenv("SECURECHAT_CAPTURE"); path != "" {
		os.WriteFile(path, []byte(final), 0o644) // the README's screen capture
	}
	x.typeLine("alice", "/quit")
	x.typeLine("bob", "/quit")
}

// TestChatFirstRun walks through the first run in a terminal: server,
// fingerprint confirmation, registration, passphrase; then a second run
// asks only for the passphrase.
func TestChatFirstRun(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	home := filepath.Join(t.TempDir(), "carol")
	cmd := fmt.Sprintf("%s chat --home %s --server %s; echo exited $?; sleep 30", bin, home, s.Addr)
	x.run("new-session", "-d", "-s", "carol", "-x", "110", "-y", "30", "env -u SECURECHAT_PASSPHRASE -u SECURECHAT_PASSWORD "+cmd)
	x.waitScreen("carol", "the fingerprint", contains("Is it the same?"))
	fp := x.screen("carol")
	grouped := s.FP[:4] + " " + s.FP[4:8]
	if !strings.Contains(fp, grouped) {
		t.Fatalf("first run does not show the server fingerprint %s:\n%s", grouped, fp)
	}
	x.typeLine("carol", "y")
	x.waitScreen("carol", "register or log in", contains("[r/k/l]"))
	x.typeLine("carol", "r")
	x.waitScreen("carol", "user name", contains("User name:"))
	x.typeLine("carol", "carol")
	x.waitScreen("carol", "password", contains("account password:"))
	x.typeLine("carol", "carols password")
	x.waitScreen("carol", "password again", contains("again:"))
	x.typeLine("carol", "carols password")
	x.waitScreen("carol", "passphrase", contains("new passphrase"))
	x.typeLine("carol", "carols passphrase")
	x.waitScreen("carol", "passphrase again", func(s string) bool { return strings.Count(s, "again:") >= 2 })
	x.typeLine("carol", "carols passphrase")
	x.waitScreen("carol", "the main screen", contains("connected │"))
	x.typeLine("carol", "/quit")
	x.waitScreen("carol", "exit", contains("exited 0"))

	// Later runs: the passphrase, then straight in. The new session comes
	// first: killing the last one ends the tmux server, and a new-session
	// racing that shutdown fails ("server exited unexpectedly").
	x.run("new-session", "-d", "-s", "carol2", "-x", "110", "-y", "30", "env -u SECURECHAT_PASSPHRASE "+fmt.Sprintf("%s chat --home %s; echo exited $?; sleep 30", bin, home))
	x.run("kill-session", "-t", "carol")
	x.waitScreen("carol2", "passphrase prompt", contains("passphrase for this home:"))
	x.typeLine("carol2", "carols passphrase")
	x.waitScreen("carol2", "the main screen", contains("connected │"))
	x.typeLine("carol2", "/quit")
	x.waitScreen("carol2", "exit", contains("exited 0"))
}

// TestChatServerKeyChanged: the terminal client's server is replaced by
// one with another key on the same address. The pane says why the client
// is disconnected, with both fingerprints; the client keeps trying, and
// when the right server is back it reconnects by itself and sends what was
// typed meanwhile.
func TestChatServerKeyChanged(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	x.start("alice", alice)
	x.waitScreen("alice", "connected", contains(" connected │"))
	x.typeLine("alice", "/msg bob")

	s.stop()
	other := startServerOn(t, s.Addr)
	if other.FP == s.FP {
		t.Fatal("the second server has the same key")
	}
	// The full fingerprints do not fit on one line of the pane: what is
	// on the screen is compared without line breaks, the pane's indent,
	// the grouping spaces and the list's border.
	flat := func(screen string) string {
		return strings.ReplaceAll(strings.Join(strings.Fields(screen), ""), "│", "")
	}
	x.waitScreenFor("alice", "the key mismatch with both fingerprints", 60*time.Second, func(screen string) bool {
		f := flat(screen)
		return strings.Contains(screen, "server key does not match") && strings.Contains(f, s.FP) && strings.Contains(f, other.FP)
	})
	x.typeLine("alice", "typed while the server was another")
	x.waitScreen("alice", "queued mark", func(screen string) bool {
		return strings.Contains(lineWith(screen, "typed while the server was another"), "…")
	})

	other.stop()
	s.start()
	x.waitScreenFor("alice", "reconnected", 60*time.Second, contains(" connected │"))
	x.waitScreen("alice", "the queued message stored", func(screen string) bool {
		return strings.Contains(lineWith(screen, "typed while the server was another"), "✓")
	})
	msgs := bob.recv(t, "2s")
	if got := texts(msgs); len(got) != 1 || got[0] != "typed while the server was another" {
		t.Fatalf("bob received %q", got)
	}
	x.typeLine("alice", "/quit")
}

// TestChatServerKilled: a server that dies without a word (SIGKILL) is
// noticed by the terminal client in seconds, not after QUIC's old 60 s
// idle timeout, and the client is back when the server is.
func TestChatServerKilled(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice := register(t, s, "alice")
	x.start("alice", alice)
	x.waitScreen("alice", "connected", contains(" connected │"))

	s.kill()
	killed := time.Now()
	x.waitScreenFor("alice", "the lost connection", 60*time.Second, func(screen string) bool {
		return !strings.Contains(screen, " connected │")
	})
	d := time.Since(killed)
	if d > 20*time.Second {
		t.Fatalf("the killed server was noticed after %v", d)
	}
	t.Logf("the killed server was noticed after %v", d.Round(time.Second))
	// The reason says what happened, not a frame timer's "0s".
	x.waitScreen("alice", "the reason", contains("the server stopped answering"))
	s.start()
	x.waitScreenFor("alice", "reconnected", 60*time.Second, contains(" connected │"))
	x.typeLine("alice", "/quit")
}

// listRow is the conversation list's row for name on a screen of the
// terminal client ("   name   (2) 12:01 │…"), "" if none.
func listRow(screen, name string) string {
	for _, l := range strings.Split(screen, "\n") {
		if row, _, ok := strings.Cut(l, "│"); ok && strings.HasPrefix(strings.TrimLeft(row, " !"), name+" ") {
			return row
		}
	}
	return ""
}

// TestRecvCountsAsRead: reading with `recv` (same home, the terminal
// client not running) counts as read: the sender's terminal client shows
// "read", and the reader's terminal client afterwards shows none of it
// unread, with no "new" divider. What arrives while it runs in another
// conversation is unread, under the divider, which is gone once the
// conversation has been left and opened again.
func TestRecvCountsAsRead(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice, bob, carol := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol")

	x.start("alice", alice)
	x.waitScreen("alice", "connected", contains(" connected │"))
	x.typeLine("alice", "/msg bob")
	x.typeLine("alice", "read with recv")
	x.waitScreen("alice", "stored mark", func(s string) bool {
		l := strings.TrimSpace(lineWith(s, "read with recv"))
		return strings.HasSuffix(l, "✓") && !strings.Contains(l, "✓✓")
	})
	if got := texts(bob.recv(t, "0s")); len(got) != 1 || got[0] != "read with recv" {
		t.Fatalf("bob's recv printed %q", got)
	}
	x.waitScreen("alice", "read mark after bob's recv", func(s string) bool {
		return strings.Contains(lineWith(s, "read with recv"), "✓✓ read")
	})

	// carol's message, read with recv too, is the most recent: bob's
	// terminal client opens it; alice's conversation shows no unread count.
	carol.send(t, "bob", "from carol")
	if got := texts(bob.recv(t, "0s")); len(got) != 1 || got[0] != "from carol" {
		t.Fatalf("bob's recv printed %q", got)
	}
	x.start("bob", bob)
	screen := x.waitScreen("bob", "carol's message", contains("carol: from carol"))
	x.waitScreen("bob", "connected", contains(" connected │"))
	if row := listRow(screen, "alice"); row == "" || strings.Contains(row, "(") {
		t.Errorf("alice's conversation is %q in bob's list after recv read it, want no unread count:\n%s", row, screen)
	}
	if strings.Contains(screen, "─ new ─") {
		t.Errorf("a \"new\" divider for what recv read:\n%s", screen)
	}

	// A message arriving while bob looks at carol's conversation is unread;
	// opening alice's puts the divider right above it.
	x.typeLine("alice", "while bob is elsewhere")
	x.waitScreen("bob", "one unread from alice", func(s string) bool { return strings.Contains(listRow(s, "alice"), "(1)") })
	x.typeLine("bob", "/msg alice")
	screen = x.waitScreen("bob", "alice's new message", contains("alice: while bob is elsewhere"))
	lines := strings.Split(screen, "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "alice: while bob is elsewhere") })
	if at < 1 || !strings.Contains(lines[at-1], "─ new ─") || strings.Count(screen, "─ new ─") != 1 {
		t.Errorf("no divider right above the unread message:\n%s", screen)
	}
	x.waitScreen("alice", "read mark from the terminal client", func(s string) bool {
		return strings.Contains(lineWith(s, "while bob is elsewhere"), "✓✓ read")
	})
	x.typeLine("bob", "/msg carol")
	x.waitScreen("bob", "carol's conversation", contains("carol  not verified"))
	x.typeLine("bob", "/msg alice")
	x.waitScreen("bob", "alice's conversation without the divider", func(s string) bool {
		return strings.Contains(s, "alice  not verified") && !strings.Contains(s, "─ new ─")
	})
	x.typeLine("alice", "/quit")
	x.typeLine("bob", "/quit")
}

// TestChatAnnouncementsReadOnly: an operator's broadcast arrives in the
// terminal client's read-only conversation *server* (/msg *server* opens
// it): text typed there is refused with a note and nothing is sent;
// /verify is refused.
func TestChatAnnouncementsReadOnly(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	alice := register(t, s, "alice")
	s.admin(t, "broadcast", "maintenance at 22:00")
	x.start("alice", alice)
	x.waitScreen("alice", "the announcement, unread", func(s string) bool { return strings.Contains(listRow(s, "*server*"), "(1)") })
	x.typeLine("alice", "/msg *server*")
	screen := x.waitScreen("alice", "the announcement", contains("-- maintenance at 22:00"))
	for _, want := range []string{"*server*  the server's announcements, read-only", "*server*> read-only: the server's announcements"} {
		if !strings.Contains(screen, want) {
			t.Errorf("no %q:\n%s", want, screen)
		}
	}
	x.run("send-keys", "-t", "alice", "-l", "hello server")
	x.waitScreen("alice", "the read-only note", contains("this is the server's announcements; it is read-only"))
	x.typeLine("alice", "/verify")
	x.waitScreen("alice", "the refusal", contains("/verify: *server* is the server's announcements"))
	if strings.Contains(x.screen("alice"), "Safety number") {
		t.Errorf("/verify opened the verification screen for *server*")
	}
	x.typeLine("alice", "/quit")
}
