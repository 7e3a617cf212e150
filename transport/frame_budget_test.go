package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"testing/iotest"
	"time"

	"github.com/quic-go/quic-go"
)

// stallReader yields b and then fails, like a peer that stopped sending
// mid-frame and whose connection then timed out.
type stallReader struct{ b []byte }

var errStalled = errors.New("stalled")

func (r *stallReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errStalled
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestFrameHalfSentNotAllocated: a frame that declares DefaultMaxFrame but
// sends only a little of its body costs about what was sent, not the
// declared length (issue 17 point 1: 25 such connections held +103 MiB).
// Not parallel: it measures allocation.
func TestFrameHalfSentNotAllocated(t *testing.T) {
	for _, sent := range []int{0, 1000, 100 << 10} {
		b := append(header(DefaultMaxFrame, Version, CodeSend, 1), make([]byte, sent)...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadFrame(&stallReader{b: b}, DefaultMaxFrame)
		runtime.ReadMemStats(&after)
		if err != errStalled {
			t.Errorf("%d bytes sent: %v, want the reader's error", sent, err)
		}
		if got, bound := after.TotalAlloc-before.TotalAlloc, uint64(4*sent+4*bodyStep); got > bound { // the doublings: at most twice the final buffer
			t.Errorf("%d of %d bytes sent: reading allocated %d bytes, want at most %d", sent, DefaultMaxFrame, got, bound)
		}
	}
}

// TestFrameBodyInPieces: a body that arrives a little at a time, across
// every growth of the buffer, is read whole.
func TestFrameBodyInPieces(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, bodyStep - 1, bodyStep, bodyStep + 1, 5*bodyStep + 7} {
		want := Frame{Code: CodeSend, ID: 3, Body: fill(n, 9)}
		enc := AppendFrame(nil, want)
		for name, r := range map[string]io.Reader{
			"one byte": iotest.OneByteReader(bytes.NewReader(enc)),
			"half":     iotest.HalfReader(bytes.NewReader(enc)),
			"data+err": iotest.DataErrReader(bytes.NewReader(enc)),
		} {
			got, err := ReadFrame(r, DefaultMaxFrame)
			if err != nil || got.Code != want.Code || got.ID != want.ID || !bytes.Equal(got.Body, want.Body) {
				t.Errorf("%d bytes, %s reader: %v, %d bytes", n, name, err, len(got.Body))
			}
		}
		// Cut short: io.ErrUnexpectedEOF, never a short body.
		if _, err := ReadFrame(bytes.NewReader(enc[:len(enc)-1]), DefaultMaxFrame); err != io.ErrUnexpectedEOF {
			t.Errorf("%d bytes cut by one: %v", n, err)
		}
	}
}

// quicPair is a client and a server Conn over real QUIC on loopback.
func quicPair(t *testing.T) (client, server *Conn) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	tlsConf, err := ServerTLSConfig(key)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsConf, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); tr.Close(); udp.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Conn, 1)
	go func() {
		qc, err := ln.Accept(ctx)
		if err != nil {
			accepted <- nil
			return
		}
		c, _ := Accept(ctx, qc, 0)
		accepted <- c
	}()
	client, err = Dial(ctx, udp.LocalAddr().String(), &Pinner{Pin: FingerprintOf(key.Public().(ed25519.PublicKey))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(CloseNormal, "") })
	// The server sees the stream once something is written on it.
	if err := client.WriteFrame(CodePing, 1, &Empty{}); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("no server connection")
	}
	if f, err := server.ReadFrame(); err != nil || f.Code != CodePing {
		t.Fatalf("first frame: %v %v", f.Code, err)
	}
	return client, server
}

// TestConnFrameTimeout: a frame whose header arrived but whose body does
// not complete within the frame timeout fails with ErrFrameTimeout; a
// connection that is merely quiet between frames does not.
func TestConnFrameTimeout(t *testing.T) {
	t.Parallel()
	client, server := quicPair(t)
	const d = 300 * time.Millisecond
	server.SetFrameTimeout(d)
	// Quiet for longer than d between frames: fine.
	go func() {
		time.Sleep(2 * d)
		client.WriteFrame(CodePing, 2, &Empty{})
	}()
	if f, err := server.ReadFrame(); err != nil || f.ID != 2 {
		t.Fatalf("frame after a pause: %v %v", f.ID, err)
	}
	// A header declaring 1 MiB and 10 bytes of body, then nothing.
	if err := client.WriteRaw(append(header(1<<20, Version, CodeSend, 3), make([]byte, 10)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadFrame(); !errors.Is(err, ErrFrameTimeout) {
		t.Fatalf("half-sent frame: %v, want ErrFrameTimeout", err)
	}
}

// TestConnWriteTimeout: writing to a peer that does not read fails with
// ErrWriteTimeout once flow control stops the bytes, instead of blocking
// forever.
func TestConnWriteTimeout(t *testing.T) {
	t.Parallel()
	_, server := quicPair(t) // the client never reads
	server.SetWriteTimeout(300 * time.Millisecond)
	big := Frame{Code: CodeDeliver, Body: make([]byte, 1<<20)}
	done := make(chan error, 1)
	go func() {
		for {
			if err := server.WriteFrames(big); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrWriteTimeout) {
			t.Fatalf("write to a non-reading peer: %v, want ErrWriteTimeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("write to a non-reading peer still blocked after 20s")
	}
}
