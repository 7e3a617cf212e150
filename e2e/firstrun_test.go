package e2e

import (
	"bytes"
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
// without a port (the port defaults to 4433), an invalid user name, an
// empty one, a name that is taken (the server says so at once, CheckName:
// asked again before any password prompt), a password too short (refused
// right after it is typed); then a second run with a wrong passphrase is
// asked again.
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
	x.waitScreen("erin", "register or log in", contains("[r/k/l]"))
	x.typeLine("erin", "x")
	x.waitScreen("erin", "register or log in again", count("[r/k/l]", 2))
	x.typeLine("erin", "r")
	x.waitScreen("erin", "user name", contains("User name:"))
	x.typeLine("erin", "no spaces allowed")
	x.waitScreen("erin", "user name again", count("User name:", 2))
	x.typeLine("erin", "")
	x.waitScreen("erin", "user name again", count("User name:", 3))
	if sc := x.screen("erin"); !strings.Contains(sc, "A name is needed.") {
		t.Fatalf("an empty name was asked again without a word:\n%s", sc)
	}
	x.typeLine("erin", "alice")
	sc := x.waitScreen("erin", "user name again after a taken name", count("User name:", 4))
	if !strings.Contains(sc, "user name is taken: choose another name.") || strings.Contains(sc, "password") {
		t.Fatalf("a taken name was not refused before the password prompt:\n%s", sc)
	}
	x.typeLine("erin", "erin")
	x.waitScreen("erin", "password", contains("account password:"))
	x.typeLine("erin", "short")
	x.waitScreen("erin", "password again at once", count("account password:", 2))
	if sc := x.screen("erin"); !strings.Contains(sc, "at least 8 characters") || strings.Contains(sc, "passphrase") {
		t.Fatalf("a short password was not refused at once:\n%s", sc)
	}
	newSecrets(x, "erin", "erins password", "erins passphrase")
	x.waitScreen("erin", "the main screen", contains("connected │"))
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
// for the code right after the name when the server wants one (CheckName
// says so; a wrong code is asked again), and takes --invite.
func TestChatFirstRunInvite(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--registration", "invite", "--register-burst", "50")
	code := strings.TrimSpace(s.admin(t, "invite").Stdout)

	home := filepath.Join(t.TempDir(), "dave")
	startFirstRun(x, "dave", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("dave", "register or log in", contains("[r/k/l]"))
	x.typeLine("dave", "r")
	x.waitScreen("dave", "user name", contains("User name:"))
	x.typeLine("dave", "dave")
	sc := x.waitScreen("dave", "invite prompt", contains("Invite code:"))
	if !strings.Contains(sc, "registers by invitation") || strings.Contains(sc, "password") {
		t.Fatalf("the invite code was not asked before the password:\n%s", sc)
	}
	x.typeLine("dave", "nope")
	newSecrets(x, "dave", "daves password", "daves passphrase")
	x.waitScreen("dave", "invite prompt again", count("Invite code:", 2))
	x.typeLine("dave", code)
	x.waitScreen("dave", "the main screen", contains("connected │"))
	x.typeLine("dave", "/quit")
	x.waitScreen("dave", "exit", contains("exited 0"))

	code2 := strings.TrimSpace(s.admin(t, "invite").Stdout)
	home2 := filepath.Join(t.TempDir(), "frank")
	startFirstRun(x, "frank", home2, "--server", s.Addr, "--server-key", s.FP, "--invite", code2)
	x.run("kill-session", "-t", "dave")
	x.waitScreen("frank", "register or log in", contains("[r/k/l]"))
	x.typeLine("frank", "r")
	x.waitScreen("frank", "user name", contains("User name:"))
	x.typeLine("frank", "frank")
	newSecrets(x, "frank", "franks password", "franks passphrase")
	if sc := x.screen("frank"); strings.Contains(sc, "Invite code:") {
		t.Fatalf("--invite was asked for again:\n%s", sc)
	}
	x.waitScreen("frank", "the main screen", contains("connected │"))
	x.typeLine("frank", "/quit")
	x.waitScreen("frank", "exit", contains("exited 0"))
}

// TestChatFirstRunLeavesNothing: a first run interrupted at the passphrase
// prompt, or ended with Ctrl-D where a server closed to registration sends
// it back to "register or log in", leaves no home; the next run starts
// afresh.
func TestChatFirstRunLeavesNothing(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--registration", "closed")

	home := filepath.Join(t.TempDir(), "gina")
	startFirstRun(x, "gina", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("gina", "register or log in", contains("[r/k/l]"))
	x.typeLine("gina", "r")
	x.waitScreen("gina", "user name", contains("User name:"))
	x.typeLine("gina", "gina")
	x.waitScreen("gina", "register or log in again", count("[r/k/l]", 2))
	if sc := x.screen("gina"); !strings.Contains(sc, "Registration is closed on this server") || strings.Contains(sc, "password") {
		t.Fatalf("a closed server was not said before the password:\n%s", sc)
	}
	x.typeLine("gina", "l")
	x.waitScreen("gina", "user name", count("User name:", 2))
	x.typeLine("gina", "gina")
	x.waitScreen("gina", "password", contains("account password:"))
	x.typeLine("gina", "ginas password")
	x.waitScreen("gina", "passphrase", contains("new passphrase"))
	x.keys("gina", "C-c")
	x.waitScreen("gina", "exit", contains("exited 1"))
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the interrupted first run left %s: %v", home, err)
	}

	// The server refuses: registration is closed; Ctrl-D at the question
	// it goes back to ends the first run like Ctrl-C.
	startFirstRun(x, "gina2", home, "--server", s.Addr, "--server-key", s.FP)
	x.run("kill-session", "-t", "gina")
	x.waitScreen("gina2", "register or log in", contains("[r/k/l]"))
	x.typeLine("gina2", "r")
	x.waitScreen("gina2", "user name", contains("User name:"))
	x.typeLine("gina2", "gina")
	x.waitScreen("gina2", "register or log in again", count("[r/k/l]", 2))
	x.keys("gina2", "C-d")
	sc := x.waitScreen("gina2", "exit", contains("exited 1"))
	if !strings.Contains(sc, "interrupted: nothing was set up") {
		t.Fatalf("Ctrl-D did not end the first run as Ctrl-C does:\n%s", sc)
	}
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

// TestChatFirstRunCtrlDAndFingerprint: answering n to the server's
// fingerprint asks for the server again (a mistyped address is the usual
// cause), and Ctrl-D at a secret prompt (the passphrase) ends the first run
// as Ctrl-C does: "interrupted: nothing was set up", exit 1, no home.
func TestChatFirstRunCtrlDAndFingerprint(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)

	home := filepath.Join(t.TempDir(), "ivan")
	startFirstRun(x, "ivan", home)
	x.waitScreen("ivan", "server prompt", contains("Server (host:port):"))
	x.typeLine("ivan", s.Addr)
	x.waitScreen("ivan", "the fingerprint", contains("Is it the same?"))
	x.typeLine("ivan", "n")
	sc := x.waitScreen("ivan", "server prompt again", count("Server (host:port):", 2))
	if !strings.Contains(sc, "Not confirmed; enter the server again (or Ctrl-C to stop).") || strings.Contains(sc, "exited") {
		t.Fatalf("a fingerprint not confirmed did not ask for the server again:\n%s", sc)
	}
	x.typeLine("ivan", s.Addr)
	x.waitScreen("ivan", "the fingerprint again", count("Is it the same?", 2))
	x.typeLine("ivan", "y")
	x.waitScreen("ivan", "register or log in", contains("[r/k/l]"))
	x.typeLine("ivan", "r")
	x.waitScreen("ivan", "user name", contains("User name:"))
	x.typeLine("ivan", "ivan")
	x.waitScreen("ivan", "password", contains("account password:"))
	x.typeLine("ivan", "ivans password")
	x.waitScreen("ivan", "password again", contains("again:"))
	x.typeLine("ivan", "ivans password")
	x.waitScreen("ivan", "passphrase", contains("new passphrase"))
	x.keys("ivan", "C-d")
	sc = x.waitScreen("ivan", "exit", contains("exited 1"))
	if !strings.Contains(sc, "interrupted: nothing was set up") {
		t.Fatalf("Ctrl-D at the passphrase did not end the first run as Ctrl-C does:\n%s", sc)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("the first run ended with Ctrl-D left %s: %v", home, err)
	}
	// Nothing was registered: the name is still free.
	register(t, s, "ivan")
}

// TestRegisterIntoRegisteredHome (issue 14 review, point 5): register or
// login with a --home that holds an account is refused at once, before
// any prompt or connection (the server given is not even running), exit
// 1, the home untouched; the account is named when the passphrase opens
// the home.
func TestRegisterIntoRegisteredHome(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	db := filepath.Join(alice.home, "client.db")
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "127.0.0.1:9" // nothing listens: a connection would say so
	fails(t, 1, alice.home+" already holds the account alice (device 1): use another --home", pwEnv, "register", "--server", nowhere, "--user", "other", "--home", alice.home)
	fails(t, 1, alice.home+" already holds the account alice (device 1): use another --home", pwEnv, "login", "--server", nowhere, "--user", "alice", "--home", alice.home)
	r := fails(t, 1, alice.home+" already holds an account: use another --home", []string{"SECURECHAT_PASSPHRASE=", "SECURECHAT_PASSWORD="}, "register", "--server", nowhere, "--user", "other", "--home", alice.home)
	if strings.Contains(r.Stderr, "password") || strings.Contains(r.Stderr, "passphrase") {
		t.Errorf("asked before refusing: %s", r.Stderr)
	}
	if after, _ := os.ReadFile(db); !bytes.Equal(before, after) {
		t.Error("the refused register changed the home")
	}
	ok(t, nil, "fingerprint", "--home", alice.home) // the home still opens
}

// TestFirstRunNameChecksLimited: the first run's name checks (CheckName)
// are limited per address, from the same budget as registrations refused
// for a taken name (lookup_burst 3 here, one more an hour): one refused register
// and two checks spend it, then both are refused with the limit's error;
// the registration budget is untouched, so a free name still registers.
func TestFirstRunNameChecksLimited(t *testing.T) {
	x := newTmux(t)
	s := startServer(t, "--name-check-rate", "1/3600", "--name-check-burst", "3")
	register(t, s, "taken")
	fails(t, 1, "user name is taken", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "taken", "--home", filepath.Join(t.TempDir(), "try1"))

	home := filepath.Join(t.TempDir(), "judy")
	startFirstRun(x, "judy", home, "--server", s.Addr, "--server-key", s.FP)
	x.waitScreen("judy", "register or log in", contains("[r/k/l]"))
	x.typeLine("judy", "r")
	for i := 1; i <= 2; i++ {
		x.waitScreen("judy", "user name", count("User name:", i))
		x.typeLine("judy", "taken")
		x.waitScreen("judy", "name taken", count("user name is taken: choose another name.", i))
	}
	x.waitScreen("judy", "user name", count("User name:", 3))
	x.typeLine("judy", "judy")
	sc := x.waitScreen("judy", "the name checks limited", contains("rate limited (name checks)"))
	if strings.Contains(sc, "password") {
		t.Fatalf("a name was taken unchecked:\n%s", sc)
	}
	x.waitScreen("judy", "user name again", count("User name:", 4))
	fails(t, 1, "rate limited (name checks)", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "taken", "--home", filepath.Join(t.TempDir(), "try2"))
	x.keys("judy", "C-c")
	x.waitScreen("judy", "exit", contains("exited 1"))
	register(t, s, "judy")
}
