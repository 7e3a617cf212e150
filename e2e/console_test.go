package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsoleScript runs an operator script against a real server with
// `securechat admin --data DIR run FILE`: every command of the console
// language, comments and blank lines, then scripts that fail.
func TestConsoleScript(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "alice")
	backup := filepath.Join(t.TempDir(), "nightly.db")
	script := writeTemp(t, `# nightly moderation
ban 10.9.8.0/24 1h scanners
!bans

   # an indented comment
unban 10.9.8.0/24
!kick alice
mute alice 10m
unmute alice
invite 2 1d
invites
broadcast maintenance tonight
stats
users
backup `+backup+`
`)
	out := s.admin(t, "run", script).Stdout
	for _, want := range []string{
		"banned 10.9.8.0/24 until", "scanners", "unbanned 10.9.8.0/24",
		"disconnected alice (0 connections)", "muted alice for 10m", "unmuted alice",
		"queued for 1 accounts", "refused (banned)", groupedFP(s.FP), "backup written to " + backup,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("script output lacks %q:\n%s", want, out)
		}
	}
	code := regexp.MustCompile(`(?m)^([a-z2-7]{16})$`).FindStringSubmatch(out)
	if code == nil {
		t.Fatalf("no invite code alone on a line in:\n%s", out)
	}
	if invites := s.admin(t, "invites").Stdout; !strings.Contains(invites, code[1]) {
		t.Errorf("invites %q lack the script's code %s", invites, code[1])
	}
	if bans := s.admin(t, "bans").Stdout; strings.Contains(bans, "10.9.8.0") {
		t.Errorf("the script's ban is still there: %q", bans)
	}
	if st, err := os.Stat(backup); err != nil || st.Size() == 0 {
		t.Errorf("backup file: %v", err)
	}

	// The first failing line stops the script, with its number.
	failing := writeTemp(t, "# line 1\nkick alice\nunban 10.1.1.1\nban 10.4.4.4\n")
	r := fails(t, 1, failing+":3: 10.1.1.1/32 is not banned", nil, "admin", "--data", s.data, "run", failing)
	if strings.Contains(s.admin(t, "bans").Stdout, "10.4.4.4") {
		t.Errorf("the script went on after line 3")
	}
	if !strings.Contains(r.Stdout, "disconnected alice") {
		t.Errorf("line 2 did not run: %q", r.Stdout)
	}
	// A syntax error stops the script before anything runs.
	typo := writeTemp(t, "ban 10.5.5.5\n\nfrobnicate now\n")
	fails(t, 1, typo+`:3: unknown command "frobnicate"`, nil, "admin", "--data", s.data, "run", typo)
	if strings.Contains(s.admin(t, "bans").Stdout, "10.5.5.5") {
		t.Errorf("line 1 ran although line 3 does not parse")
	}
	// A script on standard input.
	if r := run(t, nil, "stats\n", "admin", "--data", s.data, "run", "-"); r.Code != 0 || !strings.Contains(r.Stdout, groupedFP(s.FP)) {
		t.Errorf("run -: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	fails(t, 1, "shutdown works only in the server's own console", nil, "admin", "--data", s.data, "shutdown")
	fails(t, 1, "no such file", nil, "admin", "--data", s.data, "run", filepath.Join(t.TempDir(), "missing"))
}

// TestConsoleCommandForms: every console command is a CLI command with the
// same positional syntax, next to the older flag forms.
func TestConsoleCommandForms(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, _ := register(t, s, "alice"), register(t, s, "bob")
	if out := s.admin(t, "ban", "10.6.6.6", "1h", "too", "many", "requests").Stdout; !strings.Contains(out, "banned 10.6.6.6/32 until") {
		t.Errorf("ban: %q", out)
	}
	if bans := s.admin(t, "bans").Stdout; !strings.Contains(bans, "too many requests") {
		t.Errorf("bans: %q", bans)
	}
	s.admin(t, "unban", "10.6.6.6")
	s.admin(t, "!mute", "alice", "5m")
	fails(t, 1, "you are muted", nil, "send", "--home", alice.home, "--to", "bob", "muted?")
	s.admin(t, "unmute", "alice")
	alice.send(t, "bob", "unmuted")
	code := strings.TrimSpace(s.admin(t, "invite").Stdout)
	if len(code) != 16 {
		t.Errorf("invite printed %q, want the code alone", code)
	}
	s.admin(t, "revoke", code)
	fails(t, 1, "no invite", nil, "admin", "--data", s.data, "revoke", code)
	if out := s.admin(t, "broadcast", "hello", "everyone").Stdout; !strings.Contains(out, "queued for 2 accounts") {
		t.Errorf("broadcast: %q", out)
	}
	// Usage errors exit 2, before looking for a server.
	fails(t, 2, "usage: ban TARGET", nil, "admin", "--data", t.TempDir(), "ban")
	fails(t, 2, `"soon" is not a duration`, nil, "admin", "--data", t.TempDir(), "mute", "alice", "soon")
	fails(t, 2, "unknown command", nil, "admin", "--data", t.TempDir(), "frobnicate")
	if out := ok(t, nil, "admin", "--data", t.TempDir(), "help").Stdout; !strings.Contains(out, "broadcast TEXT") {
		t.Errorf("help: %q", out)
	}
}

// TestConsoleOnTerminal runs `securechat serve` in a terminal (tmux): the
// console takes commands on stdin, keeps going after an error, and
// shutdown stops the server gracefully.
func TestConsoleOnTerminal(t *testing.T) {
	x := newTmux(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	logFile := filepath.Join(dir, "server.log")
	x.run("new-session", "-d", "-s", "serve", "-x", "150", "-y", "40",
		fmt.Sprintf("%s serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data %s 2>>%s; sleep 60", bin, data, logFile))
	x.waitScreen("serve", "the console prompt", contains("securechat>")) // capture-pane drops the trailing space
	s := &server{t: t, data: data}

	x.typeLine("serve", "!ban 10.7.7.7 1h from the console")
	x.waitScreen("serve", "the ban", contains("banned 10.7.7.7/32 until"))
	if bans := s.admin(t, "bans").Stdout; !strings.Contains(bans, "from the console") {
		t.Errorf("bans after the console's ban: %q", bans)
	}
	x.typeLine("serve", "frobnicate")
	x.waitScreen("serve", "the error", contains(`error: unknown command "frobnicate"`))
	x.typeLine("serve", "stats")
	x.waitScreen("serve", "the stats", contains("refused (banned)"))

	x.typeLine("serve", "!shutdown")
	x.waitScreen("serve", "shutting down", contains("shutting down"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "msg=stopped") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not stop after !shutdown; log:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(data, "listen.addr")); !os.IsNotExist(err) {
		t.Errorf("listen.addr after shutdown: %v", err)
	}
}

// TestConsoleLogKeepsPrompt (issue 14 point 12) runs `securechat serve`
// in a terminal with its log on that terminal too: a log line written
// while the operator has half typed a command goes above the prompt, which
// is drawn again with what was typed, and the command, finished, runs
// whole. Leaving gives the terminal back in its usual mode (it echoes).
func TestConsoleLogKeepsPrompt(t *testing.T) {
	x := newTmux(t)
	data := filepath.Join(t.TempDir(), "data")
	x.run("new-session", "-d", "-s", "serve", "-x", "200", "-y", "50",
		fmt.Sprintf("%s serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data %s; echo exited $?; sleep 60", bin, data))
	x.waitScreen("serve", "the console prompt", contains("securechat>"))
	s := &server{t: t, data: data}
	waitFor(t, "the admin listener", func() bool { return strings.Contains(x.screen("serve"), "admin listening") })

	x.run("send-keys", "-t", "serve", "-l", "sta")
	x.waitScreen("serve", "the typed text", func(screen string) bool { return lastLine(screen) == "securechat> sta" })
	s.admin(t, "invite") // logs "invite created" on the server's terminal
	screen := x.waitScreen("serve", "the log line", contains("invite created"))
	if last := lastLine(screen); last != "securechat> sta" {
		t.Errorf("after the log line the last line is %q, want the prompt with what was typed:\n%s", last, screen)
	}
	if l := lineWith(screen, "invite created"); strings.Contains(l, "securechat>") {
		t.Errorf("the log line shares the prompt's line: %q", l)
	}
	x.typeLine("serve", "ts")
	x.waitScreen("serve", "the stats", contains("refused (banned)"))

	x.typeLine("serve", "exit")
	x.waitScreen("serve", "the console to end", contains("left the console"))
	x.keys("serve", "C-c") // SIGINT stops the server gracefully
	x.waitScreen("serve", "the server to stop", contains("exited 0"))
	x.run("send-keys", "-t", "serve", "-l", "echoed")
	x.waitScreen("serve", "the terminal's own echo", func(screen string) bool { return lastLine(screen) == "echoed" })
}

// lastLine is the last line of a screen that is not blank.
func lastLine(screen string) string {
	lines := strings.Split(strings.TrimRight(screen, "\n "), "\n")
	return strings.TrimRight(lines[len(lines)-1], " ")
}
