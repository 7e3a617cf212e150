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
