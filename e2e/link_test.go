package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
)

// Tests of linking devices with the built binary (issue 11 points 1 and
// 3, docs/design.md §7): `link` on the new device, `devices` on the
// account's.

// linking is a running `securechat link`, its code read from the first
// line of its standard output, as a script reads it.
type linking struct {
	cmd    *exec.Cmd
	code   string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func startLink(t *testing.T, s *server, name, home string, extra ...string) *linking {
	t.Helper()
	args := append([]string{"link", "--server", s.Addr, "--server-key", s.FP, "--user", name, "--home", home, "--name", "phone"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SECURECHAT_PASSPHRASE="+passphrase)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l := &linking{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = l.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-l.done
	})
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		for { // the rest, if any, until the process ends
			if _, err := r.ReadString('\n'); err != nil {
				break
			}
		}
		l.err = cmd.Wait()
		close(l.done)
	}()
	select {
	case line := <-lines:
		l.code = strings.TrimSpace(line)
	case <-time.After(30 * time.Second):
		t.Fatalf("link printed no code; stderr:\n%s", l.stderr.String())
	}
	if len(l.code) != 14 {
		t.Fatalf("link's first line is %q, want a code; stderr:\n%s", l.code, l.stderr.String())
	}
	return l
}

// wait waits for link to end and returns its exit status.
func (l *linking) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("link did not end; stderr:\n%s", l.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(l.err, &ee) {
		return ee.ExitCode()
	}
	if l.err != nil {
		t.Fatalf("link: %v", l.err)
	}
	return 0
}

// device is one line of devices list --json.
type device struct {
	ID       uint32 `json:"id"`
	Name     string `json:"name"`
	Added    string `json:"added"`
	LastSeen string `json:"last_seen"`
	This     bool   `json:"this_device"`
	Linked   bool   `json:"linked"`
}

func devicesOf(t *testing.T, home string) []device {
	t.Helper()
	r := ok(t, nil, "devices", "--home", home, "list", "--json")
	var out []device
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var d device
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("devices list --json line %q: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}

// link links a new home to u's account and returns it.
func link(t *testing.T, s *server, u user) user {
	t.Helper()
	phone := user{name: u.name, home: filepath.Join(t.TempDir(), u.name+"-phone")}
	l := startLink(t, s, u.name, phone.home)
	r := ok(t, nil, "devices", "--home", u.home, "approve", l.code, "--yes")
	if !strings.Contains(r.Stdout, `"phone"`) {
		t.Errorf("approve says %q; want the device's name", r.Stdout)
	}
	if code := l.wait(t); code != 0 {
		t.Fatalf("link exited %d:\n%s", code, l.stderr.String())
	}
	return phone
}

// TestLinkDevice: alice links a second home by its code; both list the
// two devices, and the new one sends and receives.
func TestLinkDevice(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	phone := user{name: "alice", home: filepath.Join(t.TempDir(), "phone")}
	l := startLink(t, s, "alice", phone.home)
	// A typed code is read as people type it: lower case, spaces.
	typed := strings.ToLower(strings.ReplaceAll(l.code, "-", " "))
	r := ok(t, nil, "devices", "--home", alice.home, "approve", typed, "--yes")
	if !strings.Contains(r.Stdout, "linked device 2 \"phone\"") {
		t.Errorf("approve: %q", r.Stdout)
	}
	if code := l.wait(t); code != 0 {
		t.Fatalf("link exited %d:\n%s", code, l.stderr.String())
	}
	if !strings.Contains(l.stderr.String(), "securechat devices approve "+l.code) || !strings.Contains(l.stderr.String(), "█") {
		t.Errorf("link's instructions do not say how to approve, or show no QR code:\n%s", l.stderr.String())
	}
	if !strings.Contains(l.stderr.String(), "linked as device 2 of alice") {
		t.Errorf("link's last words:\n%s", l.stderr.String())
	}
	for _, h := range []string{alice.home, phone.home} {
		devs := devicesOf(t, h)
		if len(devs) != 2 || devs[0].ID != 1 || devs[1].ID != 2 || devs[1].Name != "phone" || !devs[0].Linked || !devs[1].Linked {
			t.Fatalf("devices list in %s: %+v", h, devs)
		}
		if devs[0].This != (h == alice.home) || devs[1].This != (h == phone.home) {
			t.Errorf("devices list in %s marks the wrong device as this one: %+v", h, devs)
		}
	}
	// Messages flow from and to the new device.
	phone.send(t, "bob", "from alice's phone")
	if got := texts(bob.recv(t, "0s")); len(got) != 1 || got[0] != "from alice's phone" {
		t.Errorf("bob received %q", got)
	}
	bob.send(t, "alice", "to both of alice's devices")
	if got := texts(phone.recv(t, "0s")); len(got) != 1 || got[0] != "to both of alice's devices" {
		t.Errorf("alice's phone received %q", got)
	}
	if got := texts(alice.recv(t, "0s")); !strings.Contains(strings.Join(got, "|"), "to both of alice's devices") {
		t.Errorf("alice's first device received %q", got)
	}
	// Renamed, on the server's record, seen from the other device.
	ok(t, nil, "devices", "--home", alice.home, "rename", "2", "work phone")
	if devs := devicesOf(t, phone.home); devs[1].Name != "work phone" {
		t.Errorf("after rename: %+v", devs)
	}
	// A device added with login is listed, and marked.
	ok(t, pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", filepath.Join(t.TempDir(), "unlinked"))
	text := ok(t, nil, "devices", "--home", alice.home, "list").Stdout
	if lines := strings.Split(strings.TrimSpace(text), "\n"); len(lines) != 4 || !strings.Contains(lines[3], "not linked (added with login): not sent to") || strings.Contains(lines[2], "not linked") || !strings.Contains(lines[1], "this device") {
		t.Errorf("devices list:\n%s", text)
	}
}

// TestLinkRefused: a mistyped code is refused, and so is one whose new
// device stopped waiting (Ctrl-C, which leaves its home as it was); a
// code that is not one is a usage error.
func TestLinkRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	phone := filepath.Join(t.TempDir(), "phone")
	l := startLink(t, s, "alice", phone)
	typo := []byte(l.code)
	if typo[0] == 'A' {
		typo[0] = 'B'
	} else {
		typo[0] = 'A'
	}
	fails(t, 1, "no device is waiting with this code", nil, "devices", "--home", alice.home, "approve", "--yes", string(typo))
	fails(t, 2, "is not a link code", nil, "devices", "--home", alice.home, "approve", "--yes", "ABCD-EFGH")
	fails(t, 1, "no terminal to confirm the link on: run with --yes", nil, "devices", "--home", alice.home, "approve", l.code)

	l.cmd.Process.Signal(os.Interrupt)
	if code := l.wait(t); code != 1 || !strings.Contains(l.stderr.String(), "interrupted: nothing was set up") {
		t.Errorf("link interrupted: exit %d\n%s", code, l.stderr.String())
	}
	if _, err := os.Stat(phone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted link left its home: %v", err)
	}
	fails(t, 1, "no device is waiting with this code", nil, "devices", "--home", alice.home, "approve", "--yes", l.code)
	if devs := devicesOf(t, alice.home); len(devs) != 1 {
		t.Errorf("refused links added devices: %+v", devs)
	}
}

// TestRevokeLinkedDevice: a device cannot revoke itself; revoked, a
// linked device is told so at its next connection and is no longer listed.
func TestRevokeLinkedDevice(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	phone := link(t, s, alice)
	fails(t, 1, "a device cannot revoke itself", nil, "devices", "--home", alice.home, "revoke", "1")
	fails(t, 1, "a device cannot revoke itself", nil, "devices", "--home", phone.home, "revoke", "2")
	ok(t, nil, "devices", "--home", alice.home, "revoke", "2")
	fails(t, 1, "this device was removed from the account", nil, "recv", "--home", phone.home)
	if devs := devicesOf(t, alice.home); len(devs) != 1 || devs[0].ID != 1 || !devs[0].Linked {
		t.Errorf("after the revocation: %+v", devs)
	}
	// The account links again, a list later.
	phone2 := link(t, s, alice)
	if devs := devicesOf(t, phone2.home); len(devs) != 2 || devs[1].ID != 3 || !devs[1].Linked || !devs[1].This {
		t.Errorf("linked again: %+v", devs)
	}
}

// TestLinkedDevicesEveryMessage (issue 11, must show, with the built
// binary): alice with 2 linked devices and bob with 3. A message each way
// reaches every other device exactly once (recv), and the sender's other
// devices keep it as sent by them in the conversation (their history).
func TestLinkedDevicesEveryMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alices := []user{alice, link(t, s, alice)}
	bobs := []user{bob, link(t, s, bob), link(t, s, bob)}
	for _, u := range append(append([]user(nil), alices...), bobs...) {
		u.recv(t, "0s") // what linking left
	}
	alices[1].send(t, "bob", "from alice's second device")
	bobs[2].send(t, "alice", "from bob's third device")
	for i, u := range bobs {
		if got := texts(u.recv(t, "0s")); len(got) != 1 || got[0] != "from alice's second device" {
			t.Fatalf("bob's device %d received %q", i+1, got)
		}
	}
	for i, u := range alices {
		if got := texts(u.recv(t, "0s")); len(got) != 1 || got[0] != "from bob's third device" {
			t.Fatalf("alice's device %d received %q", i+1, got)
		}
	}
	// Every device keeps both in the conversation, once each, its own
	// account's as sent.
	check := func(u user, peer, mine, theirs string) {
		t.Helper()
		h, err := home.Open(u.home, home.Options{Passphrase: passphrase})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		es, err := h.History(chat.Peer(peer), "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var sent, got int
		for _, e := range es {
			switch {
			case e.Text == mine && e.Outgoing && e.From == u.name:
				sent++
			case e.Text == theirs && !e.Outgoing && e.From == peer:
				got++
			}
		}
		if sent != 1 || got != 1 {
			t.Fatalf("%s's device %s keeps %d of its own, %d of %s's: %+v", u.name, u.home, sent, got, peer, es)
		}
	}
	for _, u := range alices {
		check(u, "bob", "from alice's second device", "from bob's third device")
	}
	for _, u := range bobs {
		check(u, "alice", "from bob's third device", "from alice's second device")
	}
}
