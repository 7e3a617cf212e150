package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tests of the first run of `securechat chat` (issue 14, points 3 and 4):
// every answer is checked when it is given and asked again at once, an
// invite-only server can be joined, and a first run that does not finish
// leaves no home behind.

// startFirstRun opens a tmux session running chat's first run in home with
// args, without the passphrase or password in the environment.
func startFirstRun(x *tmux, session, home string, args ...string) {
	x.t.Helper()
	cmd := fmt.Sprintf("%s chat --home %s %s; echo exited $?; sleep 30", bin, home, strings.Join(args, " "))
	x.run("new-session", "-d", "-s", session, "-x", "110", "-y", "45", "env -u SECURECHAT_PASSPHRASE -u SECURECHAT_PASSWORD "+cmd)
}

// count waits until sub appears at least n times on the screen.
func count(sub string, n int) func(string) bool {
	return func(s string) bool { return strings.Count(s, sub) >= n }
}

// newSecrets types the account password twice, then the passphrase twice.
func newSecrets(x *tmux, session, pw, pass string) {
	x.t.Helper()
	before := strings.Count(x.screen(session), "again:")
	x.waitScreen(session, "password", contains("account password:"))
	x.typeLine(session, pw)
	x.waitScreen(session, "password again", count("again:", before+1))
	x.typeLine(session, pw)
	x.waitScreen(session, "passphrase", contains("new passphrase"))
	x.typeLine(session, pass)
	x.waitScreen(session, "passphrase again", count("again:", before+2))
	x.typeLine(session, pass)
}

// TestChatFirstRunAsksAgain feeds the first run wrong answers: an address
// without a port (the port defaults to 4433), an invalid user name, a
// password too short (refused right after it is typed), a name that is
// taken (asked again after the passphrase, without the rest); then a
// second run with a wrong passphrase is asked again.
func TestChatFirstRunAsksAgain(t *testing.T) {
	if l, err := net.ListenPacket("udp", "127.0.0.1:4433"); err != nil {
		t.Skipf("UDP port 4433 is in use: %v", err)
	} else {
		l.Close()
	}
	x := newTmux(t)
	s := &server{t: t, data: filepath.Join(t.TempDir(), "data"), listen: "127.0.0.1:4433", stderr: &syncBuffer{}}
	s.start()
	t.Cleanup(s.stop)
	register(t, s, "alice")

	home := filepath.Join(t.TempDir(), "erin")
	startFirstRun(x, "erin", home)
	x.waitScreen("erin", "server prompt", contains("Server (host:port):"))
	x.typeLine("erin", "127.0.0.1")
	screen := x.waitScreen("erin", "the fingerprint", contains("Is it the same?"))
	if !strings.Contains(screen, s.FP[:4]+" "+s.FP[4:8]) || !strings.Contains(screen, "127.0.0.1:4433") {
		t.Fatalf("the address without a port did not reach the server on 4433:\n%s", screen)
	}
	x.typeLine("erin", "y")
	x.waitScreen("erin", "register or log in", contains("[r/l]"))
	x.typeLine("erin", "x")
	x.waitScreen("erin", "register or log in again", count("[r/l]", 2))
	x.typeLine("erin", "r")
	x.waitScreen("erin", "user name", contains("User name:"))
	x.typeLine("erin", "no spaces allowed")
	x.waitScreen("erin", "user name again", count("User name:", 2))
	x.typeLine("erin", "alice")
	x.waitScreen("erin", "password", contains("account password:"))
	x.typeLine("erin", "short")
	x.waitScreen("erin", "password again at once", count("account password:", 2))
	if sc := x.screen("erin"); !strings.Contains(sc, "at least 8 characters") || strings.Contains(sc, "passphrase") {
		t.Fatalf("a short password was not refused at once:\n%s", sc)
	}
	newSecrets(x, "erin", "erins password", "erins passphrase")
	x.waitScreen("erin", "name taken", contains("choose another name"))
	x.waitScreen("erin", "user name again", count("User name:", 3))
	x.typeLine("erin", "erin")
	x.waitScreen("erin", "the main screen", contains("connected │"))
	if sc := x.screen("erin"); strings.Count(sc, "new passphrase") > 0 {
		t.Fatalf("the passphrase was asked again after the name was taken:\n%s", sc)
	}
	x.typeLine("erin", "/quit")
	x.waitScreen("erin", "exit", contains("exited 0"))

	x.run("new-session", "-d", "-s", "erin2", "-x", "110", "-y", "30", "env -u SECURECHAT_PASSPHRASE "+fmt.Sprintf("%s chat --home %s; echo exited $?; sleep 30", bin, home))
	x.run("kill-session", "-t", "erin")
	x.waitScreen("erin2", "passphrase prompt", contains("passphrase for this home:"))
	x.typeLine("erin2", "not the passphrase")
	x.waitScreen("erin2", "passphrase again", count("passphrase for this home:", 2))
	if sc := x.screen("erin2"); !strings.Contains(sc, "Wrong passphrase") {
		t.Fatalf("no word on the wrong passphrase:\n%s", sc)
	}
	x.typeLine("erin2", "erins passphrase")
	x.waitScreen("erin2", "the main screen", contains("connected │"))
	x.typeLine("erin2", "/quit")
	x.waitScreen("erin2", "exit", contains("exited 0"))
}

// TestChatFirstRunInvite joins an invite-only server: the first run asks
// for the code when the server wants one (a wrong code is asked again),
// and takes --invite.
func TestChatFirstRunInvite(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--registration", "invite", "--register-burst", "50")
	code := strings.TrimSpace(s.admin(t, "invite").Stdout)

	home := filepath.Join(t.TempDir(), "dave")
	startFirstRun(x, "dave", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("dave", "register or log in", contains("[r/l]"))
	x.typeLine("dave", "r")
	x.waitScreen("dave", "user name", contains("User name:"))
	x.typeLine("dave", "dave")
	newSecrets(x, "dave", "daves password", "daves passphrase")
	x.waitScreen("dave", "invite prompt", contains("Invite code:"))
	x.typeLine("dave", "nope")
	x.waitScreen("dave", "invite prompt again", count("Invite code:", 2))
	x.typeLine("dave", code)
	x.waitScreen("dave", "the main screen", contains("connected │"))
	x.typeLine("dave", "/quit")
	x.waitScreen("dave", "exit", contains("exited 0"))

	code2 := strings.TrimSpace(s.admin(t, "invite").Stdout)
	home2 := filepath.Join(t.TempDir(), "frank")
	startFirstRun(x, "frank", home2, "--server", s.Addr, "--server-key", s.FP, "--invite", code2)
	x.run("kill-session", "-t", "dave")
	x.waitScreen("frank", "register or log in", contains("[r/l]"))
	x.typeLine("frank", "r")
	x.waitScreen("frank", "user name", contains("User name:"))
	x.typeLine("frank", "frank")
	newSecrets(x, "frank", "franks password", "franks passphrase")
	x.waitScreen("frank", "the main screen", contains("connected │"))
	x.typeLine("frank", "/quit")
	x.waitScreen("frank", "exit", contains("exited 0"))
}

// TestChatFirstRunLeavesNothing: a first run interrupted at the passphrase
// prompt, or refused by the server, leaves no home; the next run starts
// afresh.
func TestChatFirstRunLeavesNothing(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--registration", "closed")

	home := filepath.Join(t.TempDir(), "gina")
	startFirstRun(x, "gina", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("gina", "register or log in", contains("[r/l]"))
	x.typeLine("gina", "r")
	x.waitScreen("gina", "user name", contains("User name:"))
	x.typeLine("gina", "gina")
	x.waitScreen("gina", "password", contains("account password:"))
	x.typeLine("gina", "ginas password")
	x.waitScreen("gina", "password again", contains("again:"))
	x.typeLine("gina", "ginas password")
	x.waitScreen("gina", "passphrase", contains("new passphrase"))
	x.keys("gina", "C-c")
	x.waitScreen("gina", "exit", contains("exited 1"))
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the interrupted first run left %s: %v", home, err)
	}

	// The server refuses: registration is closed.
	startFirstRun(x, "gina2", home, "--server", s.Addr, "--server-key", s.FP)
	x.run("kill-session", "-t", "gina")
	x.waitScreen("gina2", "register or log in", contains("[r/l]"))
	x.typeLine("gina2", "r")
	x.waitScreen("gina2", "user name", contains("User name:"))
	x.typeLine("gina2", "gina")
	newSecrets(x, "gina2", "ginas password", "ginas passphrase")
	x.waitScreen("gina2", "exit", contains("exited 1"))
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the refused first run left %s: %v", home, err)
	}
}

// TestEnrollFailureLeavesNoHome: a register or login the server refuses
// leaves no home, so the next try is not stuck with the failed one's
// passphrase.
func TestEnrollFailureLeavesNoHome(t *testing.T) {
	s := startServer(t, "--registration", "invite", "--register-burst", "50")
	home := filepath.Join(t.TempDir(), "hal")
	fails(t, 1, "invite code", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "hal", "--home", home)
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the refused register left %s: %v", home, err)
	}
	fails(t, 1, "authentication failed", pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "nobody", "--home", home)
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the refused login left %s: %v", home, err)
	}
	// A home directory that existed keeps what it held.
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(home, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, "invite code", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "hal", "--home", home)
	if entries, _ := os.ReadDir(home); len(entries) != 1 || entries[0].Name() != "notes.txt" {
		t.Fatalf("the refused register left %v in %s", entries, home)
	}
	code := strings.TrimSpace(s.admin(t, "invite").Stdout)
	ok(t, append([]string{"SECURECHAT_PASSPHRASE=another passphrase"}, pwEnv...), "register", "--server", s.Addr, "--server-key", s.FP, "--user", "hal", "--invite", code, "--home", home)
}
