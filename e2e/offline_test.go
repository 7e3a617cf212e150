package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// Tests of issue 14 point 5: a server that is down is reported quickly
// with the clear line, and what needs no server works without it.

// TestServerDownFailsFast: a command against a stopped server fails with
// the one clear line, in about the quick handshake timeout: well within
// what a successful command takes plus half the old default timeout
// (measured in this run, not an absolute time).
func TestServerDownFailsFast(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	start := time.Now()
	alice.send(t, "bob", "while the server runs")
	success := time.Since(start)
	s.stop()

	want := "cannot reach server " + s.Addr + ": no answer (is it running?)"
	for _, args := range [][]string{
		{"send", "--home", alice.home, "--to", "bob", "hi"},
		{"recv", "--home", bob.home},
	} {
		start := time.Now()
		fails(t, 1, want, nil, args...)
		took := time.Since(start)
		if bound := success + transport.ClientHandshakeTimeout/2; took > bound {
			t.Errorf("%s against a stopped server took %v; a successful send took %v, the bound is %v", args[0], took, success, bound)
		}
	}
	// register has no home to open: the quick timeout is all it waits.
	start = time.Now()
	fails(t, 1, want, pwEnv, "register", "--server", s.Addr, "--user", "carol", "--home", t.TempDir())
	if took := time.Since(start); took > success+transport.ClientHandshakeTimeout/2 {
		t.Errorf("register against a stopped server took %v (a send took %v)", took, success)
	}
}

// TestOfflineCommands: with the server stopped, a known contact's safety
// number is shown from the home's records and says so, the own fingerprint
// and trust work; a contact never met needs the server and says why.
func TestOfflineCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	register(t, s, "bob")
	register(t, s, "carol")
	online, _ := safetyNumber(t, alice, "bob")
	own := ok(t, nil, "fingerprint", "--home", alice.home).Stdout
	s.stop()

	r := ok(t, nil, "fingerprint", "--home", alice.home, "bob")
	m := safetyRE.FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("offline fingerprint bob printed %q", r.Stdout)
	}
	if offline := m[1]; offline != online {
		t.Errorf("offline safety number %q, online %q", offline, online)
	}
	if !strings.Contains(lineWith(r.Stdout, "safety number with bob"), "(offline: from your records)") {
		t.Errorf("offline fingerprint does not say it is from the records: %q", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "cannot reach server "+s.Addr) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("offline fingerprint stderr: %q, want the reason on one line", r.Stderr)
	}
	if got := ok(t, nil, "fingerprint", "--home", alice.home).Stdout; got != own {
		t.Errorf("own fingerprint offline %q, online %q", got, own)
	}
	fails(t, 1, "bob's identity key has not changed: nothing to accept", nil, "trust", "--home", alice.home, "bob")
	fails(t, 1, "cannot reach server "+s.Addr+": no answer", nil, "fingerprint", "--home", alice.home, "carol")
}
