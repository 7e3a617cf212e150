package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// TestPipelinedBadAuthsBanOnce (issue 17 point 3): 300 bad Auths pipelined
// on one real QUIC connection give exactly one ban of the address — one
// log line, one ban event, one entry in `securechat admin bans` — and the
// connection is closed, not left to make a ban per frame.
func TestPipelinedBadAuthsBanOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "alice")
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(transport.CloseNormal, "")
	frames := make([]transport.Frame, 300)
	for i := range frames {
		body := transport.Marshal(&transport.Auth{User: "alice", Device: 1, Signature: make([]byte, 64)})
		frames[i] = transport.Frame{Code: transport.CodeAuth, ID: uint32(i + 1), Body: body}
	}
	// The server may close the connection for the ban while the frames are
	// still being written: that is the outcome wanted, not a failure.
	if err := c.WriteFrames(frames...); err != nil && !strings.Contains(err.Error(), "banned") {
		t.Fatal(err)
	}
	// The server answers some, then closes the connection for the ban.
	answered := 0
	for {
		if _, err := c.ReadFrame(); err != nil {
			break
		}
		answered++
	}
	if answered >= len(frames) {
		t.Errorf("all %d bad Auths answered: the connection was not closed at the ban", answered)
	}
	waitFor(t, "the ban", func() bool { return strings.Contains(s.admin(t, "bans").Stdout, "127.0.0.1") })
	time.Sleep(time.Second) // let any stray ban land
	if n := strings.Count(s.stderr.String(), "too many authentication failures, address banned"); n != 1 {
		t.Errorf("%d ban log lines, want 1", n)
	}
	if n := strings.Count(s.admin(t, "bans").Stdout, "127.0.0.1"); n != 1 {
		t.Errorf("%d bans of 127.0.0.1 listed, want 1", n)
	}
	var events []struct {
		Kind, Subject string
		Count         int
	}
	s.api(t, "GET", "/api/events?n=500", nil, &events)
	bans := 0
	for _, e := range events {
		if e.Kind == "ban" {
			bans += e.Count
		}
	}
	if bans != 1 {
		t.Errorf("%d ban events, want 1: %+v", bans, events)
	}
}

// TestBannedAccountCannotAddDevice (issue 17 point 9): a Login with the
// right password to a banned account is refused with the ban's reason and
// adds no device.
func TestBannedAccountCannotAddDevice(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "bob")
	s.admin(t, "ban", "user:bob", "spam")
	fails(t, 1, "account banned", pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "bob", "--home", t.TempDir())
	s.admin(t, "unban", "user:bob")
	// Had the banned Login added a device, this one would be device 3.
	r := ok(t, pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "bob", "--home", t.TempDir())
	if !strings.Contains(r.Stdout, "device 2") {
		t.Errorf("login after unban: %q, want device 2", r.Stdout)
	}
}

// TestAccountLoginFailureLimit (issue 17 point 4): after
// account_login_failures wrong passwords to one account, its Logins wait —
// the right password too, and an unknown name behaves the same — while
// the address itself is not banned and the account's devices still work.
func TestAccountLoginFailureLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--account-login-failures", "3", "--login-failures", "100", "--login-failure-window", "1h")
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	wrong := []string{"SECURECHAT_PASSWORD=wrong password"}
	for _, name := range []string{"alice", "nobody"} {
		for i := 0; i < 3; i++ {
			fails(t, 1, "authentication failed", wrong, "login", "--server", s.Addr, "--server-key", s.FP, "--user", name, "--home", t.TempDir())
		}
		fails(t, 1, "too many failed logins to this account", wrong, "login", "--server", s.Addr, "--server-key", s.FP, "--user", name, "--home", t.TempDir())
	}
	fails(t, 1, "too many failed logins to this account", pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	// Another account, and alice's own device (signature Auth), are untouched.
	ok(t, pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "bob", "--home", t.TempDir())
	alice.send(t, "bob", "still here")
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "still here" {
		t.Errorf("bob got %q", texts(got))
	}
}

// TestTakenNamesSpareRegistrations (issue 14 point 9): a registration
// refused because the name is taken does not use the address's
// registration budget (5 at once by default): after eight such refusals a
// free name still registers.
func TestTakenNamesSpareRegistrations(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	register(t, s, "taken")
	for i := range 8 {
		home := filepath.Join(t.TempDir(), fmt.Sprint("try", i))
		fails(t, 1, "user name is taken", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "taken", "--home", home)
	}
	register(t, s, "free")
}
