package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/transport"
)

// The relay baseline: securechat's message flow over raw quic-go with
// nothing else. The echo baseline answers each frame on the connection it
// came from; a delivered securechat message takes two hops on two
// connections and four frames: Send (sender → server), Sent (server →
// sender), Deliver (server → receiver) and Ack (receiver → server). The
// relay server (this program, re-executed with relayServerArg) does exactly
// that with frames of the same sizes, and stores, authenticates and
// encrypts nothing: its msgs/s is what any server with this protocol's
// shape can reach on this machine and quic-go, the ceiling for the durable
// figure (BENCHMARKS.md).

// relayServerArg is the hidden first argument that makes this program the
// relay server.
const relayServerArg = "relay-server"

// The relay's frames besides Send: a client's hello names its role and
// pair ("s:7", "r:7") and is answered with Welcome once registered.
const (
	sentBody = 12 // Sent: server time and flags, as transport.Sent
	ackBody  = 12 // Ack: one sequence number, as transport.Ack
)

// relay is the relay server's routing table.
type relay struct {
	mu        sync.Mutex // guards receivers
	receivers map[int]*transport.Conn
}

// relayConn serves one connection of the relay server.
func (rl *relay) relayConn(ctx context.Context, qc *quic.Conn) {
	defer qc.CloseWithError(transport.CloseNormal, "")
	c, err := transport.Accept(ctx, qc, transport.DefaultMaxFrame)
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close(transport.CloseShutdown, "") })
	defer stop()
	hello, err := c.ReadFrame()
	if err != nil {
		return
	}
	role, pair, ok := parseHello(hello.Body)
	if !ok {
		c.Close(transport.CloseProtocol, "bad hello")
		return
	}
	if role == 'r' {
		rl.mu.Lock()
		rl.receivers[pair] = c
		rl.mu.Unlock()
	}
	if err := c.WriteFrames(transport.Frame{Code: transport.CodeWelcome, ID: hello.ID}); err != nil {
		return
	}
	sent := make([]byte, sentBody)
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		if role == 'r' {
			continue // an Ack: the relay keeps nothing to delete
		}
		rl.mu.Lock()
		to := rl.receivers[pair]
		rl.mu.Unlock()
		if to == nil {
			c.Close(transport.CloseProtocol, "no receiver for pair "+strconv.Itoa(pair))
			return
		}
		if err := to.WriteFrames(transport.Frame{Code: transport.CodeDeliver, Body: f.Body}); err != nil {
			return
		}
		if err := c.WriteFrames(transport.Frame{Code: transport.CodeSent, ID: f.ID, Body: sent}); err != nil {
			return
		}
	}
}

func parseHello(b []byte) (role byte, pair int, ok bool) {
	r, n, found := strings.Cut(string(b), ":")
	if !found || (r != "s" && r != "r") {
		return 0, 0, false
	}
	pair, err := strconv.Atoi(n)
	return r[0], pair, err == nil && pair >= 0
}

// runRelay runs the relay load against the relay server at addr: N
// senders in a closed loop of Send, wait for Sent; N receivers that ack
// each Deliver. An op is a delivered message; its latency runs from the
// sender's write to the receiver's read, as securechat's.
func runRelay(ctx context.Context, o *options, addr, fingerprint string, srv *proc) (result, error) {
	fp, err := transport.ParseFingerprint(fingerprint)
	if err != nil {
		return result{}, fmt.Errorf("relay server fingerprint: %w", err)
	}
	ctx, fail := newFailure(ctx)
	defer fail.cancel(nil)
	n := o.clients
	conns := make([]*transport.Conn, 2*n) // receivers, then senders
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(transport.CloseNormal, "")
			}
		}
	}()
	dial := func(i int) error {
		role, pair := "r", i
		if i >= n {
			role, pair = "s", i-n
		}
		c, err := transport.Dial(ctx, addr, &transport.Pinner{Pin: fp})
		if err != nil {
			return fmt.Errorf("relay client %s:%d: %w", role, pair, err)
		}
		conns[i] = c
		if err := c.WriteFrames(transport.Frame{Code: transport.CodeAuth, ID: 1, Body: []byte(role + ":" + strconv.Itoa(pair))}); err != nil {
			return err
		}
		f, err := c.ReadFrame()
		if err != nil || f.Code != transport.CodeWelcome {
			return fmt.Errorf("relay client %s:%d: no welcome: %v", role, pair, err)
		}
		return nil
	}
	// Receivers first: a sender's first message must find its receiver.
	if err := parallel(ctx, n, connectParallelism, dial); err != nil {
		return result{}, err
	}
	if err := parallel(ctx, n, connectParallelism, func(i int) error { return dial(n + i) }); err != nil {
		return result{}, err
	}
	defer context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close(transport.CloseNormal, "")
		}
	})()

	w := o.window(now())
	var lat samples
	var stopping stopFlag
	var workers, readers sync.WaitGroup
	for i := range n {
		recv, send := conns[i], conns[n+i]
		readers.Go(func() {
			var mine []time.Duration
			defer func() { lat.add(mine) }()
			ack := make([]byte, ackBody)
			for seq := uint32(1); ; seq++ {
				f, err := recv.ReadFrame()
				if err != nil {
					if !stopping.isSet() {
						fail.report(fmt.Errorf("relay receiver %d: %w", i, err))
					}
					return
				}
				t1 := now()
				if f.Code != transport.CodeDeliver || len(f.Body) < 8 {
					fail.report(fmt.Errorf("relay receiver %d: got %v of %d bytes", i, f.Code, len(f.Body)))
					return
				}
				if t0 := time.Duration(binary.BigEndian.Uint64(f.Body)); w.contains(t1) {
					mine = append(mine, t1-t0)
				}
				if err := recv.WriteFrames(transport.Frame{Code: transport.CodeAck, ID: seq, Body: ack}); err != nil {
					if !stopping.isSet() {
						fail.report(fmt.Errorf("relay receiver %d: ack: %w", i, err))
					}
					return
				}
			}
		})
		workers.Go(func() {
			body := make([]byte, o.sendBody())
			rand.Read(body)
			for id := uint32(1); !stopping.isSet(); id++ {
				binary.BigEndian.PutUint64(body, uint64(now()))
				if err := send.WriteFrames(transport.Frame{Code: transport.CodeSend, ID: id, Body: body}); err != nil {
					fail.report(fmt.Errorf("relay sender %d: write: %w", i, err))
					return
				}
				f, err := send.ReadFrame()
				if err != nil {
					fail.report(fmt.Errorf("relay sender %d: read: %w", i, err))
					return
				}
				if f.Code != transport.CodeSent || f.ID != id {
					fail.report(fmt.Errorf("relay sender %d: Send %d answered with %v %d", i, id, f.Code, f.ID))
					return
				}
			}
		})
	}
	cpu, err := measureWindow(ctx, w, srv, nil, nil)
	stopping.set()
	workers.Wait()
	for _, c := range conns[:n] {
		c.Close(transport.CloseNormal, "") // ends the readers
	}
	readers.Wait()
	if err == nil {
		err = fail.err()
	}
	if err != nil {
		return result{}, err
	}
	return baselineResult(w, lat.summary(), cpu), nil
}
