package transport

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDialOptionsHandshakeTimeout: the handshake timeout of DialOptions is
// the one quic-go gets; without one, the client default.
func TestDialOptionsHandshakeTimeout(t *testing.T) {
	t.Parallel()
	if got := (DialOptions{}).quicConfig().HandshakeIdleTimeout; got != ClientHandshakeTimeout {
		t.Errorf("default handshake timeout %v, want %v", got, ClientHandshakeTimeout)
	}
	if got := (DialOptions{HandshakeTimeout: QuickHandshakeTimeout}).quicConfig().HandshakeIdleTimeout; got != QuickHandshakeTimeout {
		t.Errorf("quick handshake timeout %v, want %v", got, QuickHandshakeTimeout)
	}
	if QuickHandshakeTimeout >= ClientHandshakeTimeout/2 {
		t.Errorf("QuickHandshakeTimeout %v is not much shorter than %v", QuickHandshakeTimeout, ClientHandshakeTimeout)
	}
}

// TestDialClosedPortQuick: a UDP port where nothing listens answers
// nothing QUIC sees; a dial with QuickHandshakeTimeout reports "no answer"
// well before the default handshake timeout would have passed.
func TestDialClosedPortQuick(t *testing.T) {
	t.Parallel()
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*ClientHandshakeTimeout)
	defer cancel()
	start := time.Now()
	_, err = DialWith(ctx, addr, &Pinner{}, DialOptions{HandshakeTimeout: QuickHandshakeTimeout})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "cannot reach server "+addr+": no answer (is it running?)") {
		t.Fatalf("dial of a closed port: %v", err)
	}
	// At most twice the idle timeout bounds the handshake; the default
	// would have waited ClientHandshakeTimeout.
	if took >= ClientHandshakeTimeout {
		t.Errorf("dial of a closed port took %v, no shorter than the default timeout %v", took, ClientHandshakeTimeout)
	}
}
