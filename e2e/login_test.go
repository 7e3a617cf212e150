package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// Tests of issue 14 point 6: login says that the device it adds cannot
// send or receive yet — before it asks for the password on a terminal,
// after success otherwise, so that a failed login stays one line.

const loginNote = "note: a device added with login is not linked"

// TestLoginNoteBeforePrompt runs login in a terminal (tmux), asking for
// the password: the note is on the screen before the prompt, and only once.
func TestLoginNoteBeforePrompt(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	register(t, s, "alice")
	home := t.TempDir()
	cmd := fmt.Sprintf("env -u SECURECHAT_PASSWORD SECURECHAT_PASSPHRASE=%q %s login --server %s --server-key %s --user alice --home %s; echo exited $?; sleep 30",
		passphrase, bin, s.Addr, s.FP, home)
	x.run("new-session", "-d", "-s", "login", "-x", "200", "-y", "30", cmd)
	screen := x.waitScreen("login", "the password prompt", contains("account password:"))
	note, prompt := strings.Index(screen, loginNote), strings.Index(screen, "account password:")
	if note < 0 || note > prompt {
		t.Errorf("the note is not before the password prompt:\n%s", screen)
	}
	x.typeLine("login", password)
	screen = x.waitScreen("login", "login to end", contains("exited "))
	if !strings.Contains(screen, "logged in alice (device 2)") || !strings.Contains(screen, "exited 0") {
		t.Fatalf("login in a terminal did not succeed:\n%s", screen)
	}
	if n := strings.Count(screen, loginNote); n != 1 {
		t.Errorf("the note is on the screen %d times:\n%s", n, screen)
	}
}

// TestLoginNoteNonInteractive: with the password from the environment or
// standard input, a failed login is one line (fails checks it) and a
// successful one has the note after it.
func TestLoginNoteNonInteractive(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "alice")
	r := fails(t, 1, "authentication failed", []string{"SECURECHAT_PASSWORD=not the password"},
		"login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	if strings.Contains(r.Stderr, loginNote) {
		t.Errorf("a failed login printed the note: %q", r.Stderr)
	}
	r = run(t, nil, "not the password\n", "login", "--password-stdin", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	if r.Code != 1 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, "authentication failed") {
		t.Errorf("login --password-stdin with a wrong password: exit %d, stderr %q; want 1 and one line", r.Code, r.Stderr)
	}
	r = run(t, nil, password+"\n", "login", "--password-stdin", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	if r.Code != 0 || !strings.Contains(r.Stdout, "logged in alice") || !strings.Contains(r.Stderr, loginNote) {
		t.Errorf("login --password-stdin: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}
