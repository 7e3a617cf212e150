package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/transport"
)

// The echo baseline: what the same load shape costs over raw quic-go with
// the project's framing and nothing else. A separate process (this program,
// re-executed with echoServerArg) accepts connections and echoes every
// frame of the control stream back; N clients each run a closed loop of
// write frame, read echo. No authentication, no store, no fsync: the round
// trips/s it reaches is the ceiling that securechat's durable delivery is
// measured against (docs/design.md §8).

// echoServerArg is the hidden first argument that makes this program the
// echo server.
const echoServerArg = "echo-server"

// echoQUICConfig mirrors the securechat server's quic-go settings
// (appliance.Server.quicConfig with the default max frame and idle
// timeout), so that flow control and timeouts do not favour the baseline.
func echoQUICConfig() *quic.Config {
	const maxFrame = transport.DefaultMaxFrame
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 60 * time.Second,
		MaxIncomingStreams:             8,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         2 * maxFrame,
		InitialConnectionReceiveWindow: 512 << 10,
		MaxConnectionReceiveWindow:     4 * maxFrame,
	}
}

// runEchoServer is the echo server process. It listens on a free loopback
// port with a fresh self-signed Ed25519 certificate (ALPN securechat/1, as
// the real server), prints "ADDR FINGERPRINT" on stdout and echoes until
// stdin closes or it gets SIGINT or SIGTERM.
func runEchoServer(stdin io.Reader, stdout io.Writer) error {
	return runBaselineServer(stdin, stdout, echoConn)
}

// runRelayServer is the relay server process (relay.go), started and
// stopped like the echo server.
func runRelayServer(stdin io.Reader, stdout io.Writer) error {
	rl := &relay{receivers: make(map[int]*transport.Conn)}
	return runBaselineServer(stdin, stdout, rl.relayConn)
}

// runBaselineServer serves each connection with serve.
func runBaselineServer(stdin io.Reader, stdout io.Writer, serve func(context.Context, *quic.Conn)) error {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	tlsConf, err := transport.ServerTLSConfig(key)
	if err != nil {
		return err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, echoQUICConfig())
	if err != nil {
		return fmt.Errorf("echo server: %w", err)
	}
	defer ln.Close()
	if _, err := fmt.Fprintf(stdout, "%s %s\n", ln.Addr(), transport.FingerprintOf(pub)); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		io.Copy(io.Discard, stdin) // the bench holds stdin open while it wants us
		cancel()
	}()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return nil // ctx ended
		}
		conns.Go(func() { serve(ctx, qc) })
	}
}

// echoConn echoes the frames of one connection's control stream.
func echoConn(ctx context.Context, qc *quic.Conn) {
	defer qc.CloseWithError(transport.CloseNormal, "")
	c, err := transport.Accept(ctx, qc, transport.DefaultMaxFrame)
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close(transport.CloseShutdown, "") })
	defer stop()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		if err := c.WriteFrames(f); err != nil {
			return
		}
	}
}

// runEcho runs the echo load against the echo server at addr.
func runEcho(ctx context.Context, o *options, addr, fingerprint string, srv *proc) (result, error) {
	fp, err := transport.ParseFingerprint(fingerprint)
	if err != nil {
		return result{}, fmt.Errorf("echo server fingerprint: %w", err)
	}
	ctx, fail := newFailure(ctx)
	defer fail.cancel(nil)
	conns := make([]*transport.Conn, o.clients)
	err = parallel(ctx, o.clients, connectParallelism, func(i int) error {
		c, err := transport.Dial(ctx, addr, &transport.Pinner{Pin: fp})
		if err != nil {
			return fmt.Errorf("echo client %d: %w", i, err)
		}
		conns[i] = c
		return nil
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(transport.CloseNormal, "")
			}
		}
	}()
	if err != nil {
		return result{}, err
	}
	// A failure or Ctrl-C unblocks every client stuck in ReadFrame.
	defer context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close(transport.CloseNormal, "")
		}
	})()

	body := make([]byte, o.sendBody())
	rand.Read(body)
	w := o.window(now())
	var rtts samples
	var stopping stopFlag
	var workers sync.WaitGroup
	for i, c := range conns {
		workers.Go(func() {
			var mine []time.Duration
			defer func() { rtts.add(mine) }()
			for id := uint32(1); !stopping.isSet(); id++ {
				t0 := now()
				if err := c.WriteFrames(transport.Frame{Code: transport.CodeSend, ID: id, Body: body}); err != nil {
					fail.report(fmt.Errorf("echo client %d: write: %w", i, err))
					return
				}
				f, err := c.ReadFrame()
				if err != nil {
					fail.report(fmt.Errorf("echo client %d: read: %w", i, err))
					return
				}
				t1 := now()
				if f.ID != id || len(f.Body) != len(body) {
					fail.report(fmt.Errorf("echo client %d: echo of frame %d came back as frame %d of %d bytes", i, id, f.ID, len(f.Body)))
					return
				}
				if w.contains(t1) {
					mine = append(mine, t1-t0)
				}
			}
		})
	}
	cpu, err := measureWindow(ctx, w, srv, nil, nil)
	stopping.set()
	workers.Wait()
	if err == nil {
		err = fail.err()
	}
	if err != nil {
		return result{}, err
	}
	return baselineResult(w, rtts.summary(), cpu), nil
}
