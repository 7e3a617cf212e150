package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestHelpExitsZero: every command's --help succeeds and names its
// arguments; help COMMAND shows that command's help (issue 14 point 9).
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ cmd, want string }{
		{"serve", "usage: securechat serve [flags]"},
		{"chat", "usage: securechat chat [flags]"},
		{"register", "usage: securechat register [flags]"},
		{"login", "usage: securechat login [flags]"},
		{"link", "usage: securechat link [flags]"},
		{"devices", "usage: securechat devices [flags] SUBCOMMAND"},
		{"send", "usage: securechat send [flags] TEXT..."},
		{"recv", "usage: securechat recv [flags]"},
		{"fingerprint", "usage: securechat fingerprint [flags] [NAME]"},
		{"trust", "usage: securechat trust [flags] NAME"},
		{"admin", "usage: securechat admin [flags] COMMAND"},
		{"home", "usage: securechat home [flags] SUBCOMMAND"},
	} {
		for _, args := range [][]string{{c.cmd, "--help"}, {c.cmd, "-h"}, {"help", c.cmd}} {
			r := run(t, nil, "", args...)
			if r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, c.want) {
				t.Errorf("securechat %s: exit %d, output %q; want exit 0 and %q", strings.Join(args, " "), r.Code, r.Stdout+r.Stderr, c.want)
			}
		}
	}
	if r := run(t, nil, "", "help"); r.Code != 0 || !strings.Contains(r.Stdout, "securechat help COMMAND") {
		t.Errorf("securechat help: exit %d, %q", r.Code, r.Stdout)
	}
}

// TestSendFromStdinAndLateFlags: send - reads the text from standard
// input; a flag after the text is refused with a line that says so, not
// taken as text, and so is one after a group's subcommand or an operator's
// broadcast text; -- lets a text start with a dash; a misspelt flag names
// the one meant.
func TestSendFromStdinAndLateFlags(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	r := run(t, nil, "a line from a pipe\nand another\n", "send", "--home", alice.home, "--to", "bob", "-")
	if r.Code != 0 {
		t.Fatalf("send -: exit %d: %s", r.Code, r.Stderr)
	}
	fails(t, 2, "send: flag --to after the message text: put flags first (or use -- before text starting with -)", nil, "send", "--home", alice.home, "hello", "--to", "bob")
	fails(t, 2, "send: flag --home after the message text", nil, "send", "--to", "bob", "hello", "--home", alice.home)
	fails(t, 2, "send: unknown flag --too; did you mean --to?", nil, "send", "--home", alice.home, "--too", "bob", "hello")
	fails(t, 2, "send: unknown flag -5 (use -- before text starting with -)", nil, "send", "--home", alice.home, "--to", "bob", "-5", "degrees")
	fails(t, 2, "no message text on standard input", nil, "send", "--home", alice.home, "--to", "bob", "-")
	fails(t, 2, "group: flag --home after the subcommand", nil, "group", "list", "--home", alice.home)
	fails(t, 2, "fingerprint: flag --home after the arguments: put flags first", nil, "fingerprint", "bob", "--home", alice.home)
	fails(t, 2, "admin: flag --data after the broadcast text", nil, "admin", "broadcast", "hello", "--data", s.data)
	ok(t, nil, "send", "--home", alice.home, "--to", "bob", "--", "-5", "degrees", "--to", "the", "north")
	got := texts(bob.recv(t, "0s"))
	if !slices.Equal(got, []string{"a line from a pipe\nand another", "-5 degrees --to the north"}) {
		t.Errorf("bob got %q", got)
	}
}

// TestUnlinkedDeviceSaysSo (issue 14 point 6): login says that the device
// it adds cannot send or receive yet, and recv on it says why nothing
// arrives instead of printing nothing.
func TestUnlinkedDeviceSaysSo(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "alice")
	second := t.TempDir()
	r := ok(t, pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", second)
	if !strings.Contains(r.Stderr, "note: a device added with login is not linked") {
		t.Errorf("login's stderr has no note: %q", r.Stderr)
	}
	r = ok(t, nil, "recv", "--home", second)
	if !strings.Contains(r.Stderr, "cannot send or receive") || r.Stdout != "" {
		t.Errorf("recv on the unlinked device: stdout %q, stderr %q", r.Stdout, r.Stderr)
	}
}

// TestWeakPassphraseWarned (issue 14 point 9): a new home with a short
// passphrase is made, with a warning; a long one gets none.
func TestWeakPassphraseWarned(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	r := ok(t, append([]string{"SECURECHAT_PASSPHRASE=short"}, pwEnv...), "register", "--server", s.Addr, "--server-key", s.FP, "--user", "weak", "--home", t.TempDir())
	if !strings.Contains(r.Stderr, "passphrase of 5 characters is weak") {
		t.Errorf("no warning for a 5-character passphrase: %q", r.Stderr)
	}
	r = ok(t, pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "strong", "--home", t.TempDir())
	if strings.Contains(r.Stderr, "weak") {
		t.Errorf("a warning for a long passphrase: %q", r.Stderr)
	}
}
