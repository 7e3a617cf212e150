package client

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// TestOneShotConnectQuick: a one-shot engine (the scriptable commands)
// connects with the quick handshake timeout, so a server that is down is
// reported in about that time with the clear line; the interactive engine
// keeps the default.
func TestOneShotConnectQuick(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0")
	h := testAccount(t, s, "alice")
	s.stop()
	e, err := OpenEngine(h, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.oneShotOptions(false).HandshakeTimeout; got != transport.QuickHandshakeTimeout {
		t.Errorf("one-shot handshake timeout %v, want %v", got, transport.QuickHandshakeTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*transport.ClientHandshakeTimeout)
	defer cancel()
	start := time.Now()
	err = e.Connect(ctx, false)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "cannot reach server "+s.addr+": no answer (is it running?)") {
		t.Fatalf("Connect to a stopped server: %v", err)
	}
	if took >= transport.ClientHandshakeTimeout {
		t.Errorf("Connect to a stopped server took %v, no less than the default handshake timeout %v", took, transport.ClientHandshakeTimeout)
	}
}

// TestLocalTimesMuted: a mute's end is shown in the client's zone, from
// the time left the server sent; other errors are left as they are.
func TestLocalTimesMuted(t *testing.T) {
	// The zone comes with the clock's time: time.Local is not changed,
	// which other tests' goroutines read (a data race under -race).
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC).In(time.FixedZone("XYZ", 5*3600+30*60))
	e := &transport.Error{Code: transport.ErrMuted, Message: "you are muted on this server until 2026-11-22 06:00:00 UTC", RetryAfterMS: 3600_000 - 3}
	localTimes(e, now)
	if want := "you are muted on this server until 2026-11-22 11:30:00 XYZ"; e.Message != want {
		t.Errorf("muted: %q, want %q", e.Message, want)
	}
	forever := &transport.Error{Code: transport.ErrMuted, Message: "you are muted on this server"}
	limited := &transport.Error{Code: transport.ErrRateLimited, Message: "rate limited", RetryAfterMS: 1000}
	localTimes(forever, now)
	localTimes(limited, now)
	if forever.Message != "you are muted on this server" || limited.Message != "rate limited" {
		t.Errorf("changed: %q, %q", forever.Message, limited.Message)
	}
}
