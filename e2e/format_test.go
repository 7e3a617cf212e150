package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Tests of issue 14 point 10: one form for each thing people read.

// groupedFP is the fingerprint fp (64 hex digits) as people are shown it.
func groupedFP(fp string) string {
	f, err := transport.ParseFingerprint(fp)
	if err != nil {
		panic(err)
	}
	return f.Grouped()
}

// TestKeyMismatchGrouped: a server key that does not match the one given
// is refused with both keys grouped as everywhere, not as 64 raw digits.
func TestKeyMismatchGrouped(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	wrong := strings.Repeat("ab", 32)
	r := fails(t, 1, "server key does not match", pwEnv, "register", "--server", s.Addr, "--server-key", wrong, "--user", "alice", "--home", t.TempDir())
	want := "server key does not match: expected " + groupedFP(wrong) + ", server presented " + groupedFP(s.FP) + " ("
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("the mismatch %q lacks %q", r.Stderr, want)
	}
	if strings.Contains(r.Stderr, s.FP) || strings.Contains(r.Stderr, wrong) {
		t.Errorf("the mismatch shows a key as 64 raw digits: %q", r.Stderr)
	}
}

// TestFingerprintGroupedEverywhere: the server key fingerprint is grouped
// the same way (transport.Fingerprint.Grouped) in serve's banner, register's
// trust-on-first-use line, the first run, `admin stats` and the terminal
// client's status bar (its first 16 digits).
func TestFingerprintGroupedEverywhere(t *testing.T) {
	x := newTmux(t)
	s := startServer(t)
	grouped := groupedFP(s.FP)
	if !regexp.MustCompile(`^([0-9a-f]{4} ){15}[0-9a-f]{4}$`).MatchString(grouped) {
		t.Fatalf("grouped fingerprint %q", grouped)
	}
	waitFor(t, "the serve banner", func() bool { return strings.Contains(s.stdout.String(), "\n") })
	if line := lineWith(s.stdout.String(), "server key fingerprint:"); line != "server key fingerprint: "+grouped {
		t.Errorf("serve prints %q, want the grouped fingerprint %q", line, grouped)
	}

	home := filepath.Join(t.TempDir(), "alice")
	r := ok(t, pwEnv, "register", "--server", s.Addr, "--user", "alice", "--home", home) // no --server-key: trusted on first use
	if line := lineWith(r.Stderr, "server key fingerprint:"); line != "server key fingerprint: "+grouped {
		t.Errorf("register prints %q, want %q", line, grouped)
	}
	if stats := s.admin(t, "stats").Stdout; !strings.Contains(stats, grouped) {
		t.Errorf("admin stats lacks %q:\n%s", grouped, stats)
	}

	// The first run shows all of it; declining asks for the server again,
	// and stopping there changes nothing.
	first := filepath.Join(t.TempDir(), "erin")
	cmd := fmt.Sprintf("%s chat --home %s --server %s; echo exited $?; sleep 30", bin, first, s.Addr)
	x.run("new-session", "-d", "-s", "first", "-x", "110", "-y", "30", "env -u SECURECHAT_PASSPHRASE -u SECURECHAT_PASSWORD "+cmd)
	screen := x.waitScreen("first", "the fingerprint", contains("Is it the same?"))
	if !strings.Contains(screen, "  "+grouped+"\n") {
		t.Errorf("the first run does not show %q on a line:\n%s", grouped, screen)
	}
	x.typeLine("first", "n")
	x.waitScreen("first", "the server asked again", contains("Server (host:port):"))
	x.keys("first", "C-c")
	x.waitScreen("first", "the first run to end", contains("exited 1"))
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the declined first run left %s: %v", first, err)
	}

	// The status bar: the first 16 digits, grouped the same way.
	x.start("alice", user{name: "alice", home: home})
	short := groupedFP(s.FP)[:19]
	if !strings.HasPrefix(grouped, short) {
		t.Fatalf("%q is not a prefix of %q", short, grouped)
	}
	x.waitScreen("alice", "the status bar's server key", contains("server "+short))
	x.typeLine("alice", "/quit")
}

// TestMuteErrorLocalTime: the mute error names its end in the sender's
// local time with the zone (chat.TimeLayout), not the server's UTC.
func TestMuteErrorLocalTime(t *testing.T) {
	t.Parallel()
	const zone = "Asia/Kolkata" // +05:30 all year: never the server's zone here
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	s := startServer(t)
	alice := register(t, s, "alice")
	register(t, s, "bob")
	before := time.Now()
	s.admin(t, "mute", "alice", "1h")
	after := time.Now()
	r := fails(t, 1, "you are muted on this server until ", []string{"TZ=" + zone}, "send", "--home", alice.home, "--to", "bob", "muted?")
	m := regexp.MustCompile(`until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+)`).FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("no time in %q", r.Stderr)
	}
	until, err := time.ParseInLocation(chat.TimeLayout, m[1], loc)
	if err != nil {
		t.Fatalf("the time %q is not in the shared form: %v", m[1], err)
	}
	if name, _ := until.Zone(); !strings.HasSuffix(m[1], " "+name) || name == "UTC" {
		t.Errorf("the time %q is not in the sender's zone (%s)", m[1], name)
	}
	// The mute ends an hour after it was set, to the second.
	if until.Before(before.Add(time.Hour).Add(-2*time.Second)) || until.After(after.Add(time.Hour).Add(2*time.Second)) {
		t.Errorf("mute until %v, set between %v and %v for an hour", until, before, after)
	}
	if regexp.MustCompile(`\d{4}-\d\d-\d\dT`).MatchString(r.Stderr) {
		t.Errorf("an ISO time in %q", r.Stderr)
	}
}
