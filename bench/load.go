package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// The securechat load: N senders and N receivers, each a client engine
// (package client) with its own home, all in this process; the server is
// the real binary in another. Sender i runs a closed loop of SendText to
// receiver i, each call returning once the server has fsynced the message
// into the receiver's mailbox. Receivers consume their push stream and ack
// what they got, as the terminal client does. Before the loops, each pair
// starts its end-to-end session (establish), so that the loops measure a
// conversation under way rather than a first contact.

// registerParallelism bounds concurrent registrations; each costs the
// server an argon2id hash.
const registerParallelism = 4

// benchPassword is every bench account's password.
const benchPassword = "bench-password"

func senderName(i int) string   { return fmt.Sprintf("sender%03d", i) }
func receiverName(i int) string { return fmt.Sprintf("receiver%03d", i) }

// accounts are the registered users, each with its open home.
type accounts struct {
	senders, receivers []*home.Home
}

// close closes every home that was opened.
func (a *accounts) close() {
	for _, h := range append(a.senders, a.receivers...) {
		if h != nil {
			h.Close()
		}
	}
}

// registerAccounts creates n senders and n receivers on the server, each in
// a home directory under dir.
func registerAccounts(ctx context.Context, dir, addr, fingerprint string, n int) (*accounts, error) {
	fp, err := transport.ParseFingerprint(fingerprint)
	if err != nil {
		return nil, fmt.Errorf("server fingerprint: %w", err)
	}
	a := &accounts{senders: make([]*home.Home, n), receivers: make([]*home.Home, n)}
	err = parallel(ctx, 2*n, registerParallelism, func(i int) error {
		name, slot := senderName(i), &a.senders[i%n]
		if i >= n {
			name, slot = receiverName(i-n), &a.receivers[i-n]
		}
		// The homes' passphrase KDF is at its cheapest: setup speed only;
		// the sealing of every value is as in any home.
		home, err := home.Open(filepath.Join(dir, name), home.Options{
			Passphrase: benchPassword, Create: true, KDF: home.KDFParams{Time: 1, MemoryK: 64, Threads: 1},
		})
		if err != nil {
			return err
		}
		*slot = home
		_, err = client.Register(ctx, home, client.EnrollOptions{
			Server: addr, User: name, Password: benchPassword, Pin: fp, DeviceName: "bench",
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// text is the message a sender sends at t: the send time in nanoseconds
// since epoch, padded to o.size bytes.
func (o *options) text(t time.Duration) string {
	b := make([]byte, 0, max(o.size, 20))
	b = strconv.AppendInt(b, int64(t), 10)
	b = append(b, ' ')
	for len(b) < o.size {
		b = append(b, 'x')
	}
	return string(b)
}

// sentAt recovers the send time from a message text.
func sentAt(text string) (time.Duration, error) {
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' {
			v, err := strconv.ParseInt(text[:i], 10, 64)
			return time.Duration(v), err
		}
	}
	return 0, fmt.Errorf("no send time in message %.30q", text)
}

// runSecurechat runs the load on the registered accounts: it connects the
// receivers, starts every pair's session unless o.established is off,
// connects the senders and runs the closed loops.
func runSecurechat(ctx context.Context, o *options, a *accounts, srv *proc, progress func(string, ...any)) (result, error) {
	ctx, fail := newFailure(ctx)
	defer fail.cancel(nil)
	n := o.clients
	senders := make([]*client.Client, n)
	receivers := make([]*client.Client, n)
	var stopping stopFlag
	var recvWG, sendWG sync.WaitGroup
	// Close senders first, then receivers; receivers' goroutines drain
	// their events until the engine closes the stream.
	defer func() {
		stopping.set()
		sendWG.Wait()
		closeAll(senders)
		closeAll(receivers)
		recvWG.Wait()
	}()

	err := parallel(ctx, n, connectParallelism, func(i int) error {
		var err error
		receivers[i], err = client.Connect(ctx, a.receivers[i], client.Options{Receive: true})
		if err != nil {
			return fmt.Errorf("connect %s: %w", receiverName(i), err)
		}
		return nil
	})
	if err != nil {
		return result{}, err
	}
	var setup setupStats
	if o.established {
		if setup, err = establish(ctx, a, receivers); err != nil {
			return result{}, err
		}
		progress("securechat: %d sessions started and confirmed in %v (first SendText p50 %.1f ms, until the answer is decrypted p50 %.1f ms)",
			setup.Pairs, time.Duration(setup.WallS*float64(time.Second)).Round(time.Millisecond), setup.FirstSend.P50MS, setup.Handshake.P50MS)
	}
	err = parallel(ctx, n, connectParallelism, func(i int) error {
		var err error
		senders[i], err = client.Connect(ctx, a.senders[i], client.Options{Receive: false})
		if err != nil {
			return fmt.Errorf("connect %s: %w", senderName(i), err)
		}
		return nil
	})
	if err != nil {
		return result{}, err
	}
	progress("securechat: %d senders → %d receivers, %v warm-up, %v window", n, n, o.warmup, o.duration)

	w := o.window(now())
	var deliveries, acks samples
	for i, c := range receivers {
		recvWG.Go(func() { deliveries.add(receive(c, senderName(i), o.ackDelay, w, &stopping, fail)) })
	}
	for i, c := range senders {
		sendWG.Go(func() { acks.add(send(ctx, c, receiverName(i), o, w, &stopping, fail)) })
	}
	cpu, err := measureWindow(ctx, w, srv, &o.prof, o.stderr)
	stopping.set()
	sendWG.Wait()
	if err == nil {
		err = fail.err()
	}
	if err != nil {
		return result{}, err
	}
	// Receivers may still be handing on messages that arrived inside the
	// window: closing the connections ends their event streams, and once
	// they have returned every delivery is counted.
	closeAll(senders)
	closeAll(receivers)
	recvWG.Wait()
	if err := fail.err(); err != nil {
		return result{}, err
	}
	d := deliveries.summary()
	return result{
		Ops: d.N, Window: w.end - w.begin, RTT: d, Ack: acks.summary(),
		ServerCPU: cpu.server, ClientCPU: cpu.self, Loopback: cpu.loopback, OtherCPU: other(cpu), Setup: setup,
	}, nil
}

// setupStats is what starting the pairs' sessions cost, as first contacts.
type setupStats struct {
	Pairs int     `json:"pairs"`
	WallS float64 `json:"wall_s"` // all pairs, connectParallelism at a time
	// FirstSend is the sender's first SendText: device list, prekey bundle
	// fetch, PQXDH, encryption, durable store.
	FirstSend latencyMS `json:"first_send"`
	// Handshake runs from the first SendText to the sender having decrypted
	// the answer: the receiver's PQXDH response, its ack and its answer too.
	Handshake latencyMS `json:"handshake"`
}

// latencyMS is a latency summary in milliseconds.
type latencyMS struct {
	P50MS float64 `json:"p50_ms"`
	MaxMS float64 `json:"max_ms"`
}

// handshakeTimeout bounds one pair's session start.
const handshakeTimeout = 30 * time.Second

// establish starts every pair's end-to-end session as a first contact
// would, and confirms it: sender i, on a connection of its own with
// Receive set, writes to receiver i (fetching a prekey bundle, running
// PQXDH: the message carries the initial header); receiver i decrypts and
// acks it and answers; sender i decrypts and acks the answer and
// disconnects. The initiator has then heard from its peer, so it stops
// attaching the PQXDH header (client/session.go, home.Session.Initial), and
// the responder never attaches one: the load that follows is plain Double
// Ratchet messages (payload type 3) in both directions.
func establish(ctx context.Context, a *accounts, receivers []*client.Client) (setupStats, error) {
	n := len(receivers)
	first := make([]time.Duration, n)
	whole := make([]time.Duration, n)
	t := time.Now()
	err := parallel(ctx, n, connectParallelism, func(i int) error {
		var err error
		first[i], whole[i], err = handshake(ctx, a.senders[i], senderName(i), receivers[i], receiverName(i))
		if err != nil {
			return fmt.Errorf("start session %s → %s: %w", senderName(i), receiverName(i), err)
		}
		return nil
	})
	if err != nil {
		return setupStats{}, err
	}
	var f, h samples
	f.add(first)
	h.add(whole)
	fs, hs := f.summary(), h.summary()
	return setupStats{
		Pairs:     n,
		WallS:     time.Since(t).Seconds(),
		FirstSend: latencyMS{P50MS: ms(fs.P50), MaxMS: ms(fs.Max)},
		Handshake: latencyMS{P50MS: ms(hs.P50), MaxMS: ms(hs.Max)},
	}, nil
}

// handshake is one pair's part of establish.
func handshake(ctx context.Context, home *home.Home, from string, rc *client.Client, to string) (first, whole time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	sc, err := client.Connect(ctx, home, client.Options{Receive: true})
	if err != nil {
		return 0, 0, fmt.Errorf("connect %s: %w", from, err)
	}
	defer sc.Close() // after a round trip, so the server has read the ack
	t0 := time.Now()
	if _, err := sc.SendText(ctx, to, "hello "+to); err != nil {
		return 0, 0, fmt.Errorf("first message: %w", err)
	}
	first = time.Since(t0)
	m, err := nextMessage(ctx, rc, from)
	if err != nil {
		return 0, 0, err
	}
	if err := rc.Ack(m); err != nil {
		return 0, 0, fmt.Errorf("%s: ack: %w", to, err)
	}
	if _, err := rc.SendText(ctx, from, "hello "+from); err != nil {
		return 0, 0, fmt.Errorf("answer: %w", err)
	}
	if m, err = nextMessage(ctx, sc, to); err != nil {
		return 0, 0, err
	}
	whole = time.Since(t0)
	if err := sc.Ack(m); err != nil {
		return 0, 0, fmt.Errorf("%s: ack: %w", from, err)
	}
	return first, whole, nil
}

// nextMessage waits for c's next message, which must be a text from from
// that decrypted.
func nextMessage(ctx context.Context, c *client.Client, from string) (*client.Message, error) {
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				return nil, fmt.Errorf("%s: connection closed", c.Profile().User)
			}
			switch ev.Type {
			case client.EventMessage:
				if m := ev.Message; m.From.User != from || m.Kind != chat.KindText {
					return nil, fmt.Errorf("%s got %s from %s instead of a text from %s: %.80q", c.Profile().User, m.Kind, m.From, from, m.Text)
				}
				return ev.Message, nil
			case client.EventClosed:
				return nil, fmt.Errorf("%s: %w", c.Profile().User, ev.Err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: no message from %s: %w", c.Profile().User, from, context.Cause(ctx))
		}
	}
}

// send is one sender's closed loop; it returns the send → durable ack
// latencies of the sends that completed inside w.
func send(ctx context.Context, c *client.Client, to string, o *options, w window, stopping *stopFlag, fail *failure) []time.Duration {
	var lat []time.Duration
	for !stopping.isSet() {
		t0 := now()
		_, err := c.SendText(ctx, to, o.text(t0))
		t1 := now()
		if err != nil {
			if ctx.Err() == nil {
				fail.report(fmt.Errorf("send to %s: %w", to, err))
			}
			return lat
		}
		if w.contains(t1) {
			lat = append(lat, t1-t0)
		}
	}
	return lat
}

// receive consumes one receiver's events until the engine closes them and
// returns the send → deliver latencies of the messages that arrived inside
// w. Messages already queued together, or arriving within ackDelay of the
// first, are acked together: one local commit and one Ack frame for the
// lot.
func receive(c *client.Client, from string, ackDelay time.Duration, w window, stopping *stopFlag, fail *failure) []time.Duration {
	var lat []time.Duration
	var batch []*client.Message
	handle := func(ev client.Event) {
		switch ev.Type {
		case client.EventMessage:
			t1 := now()
			m := ev.Message
			t0, err := sentAt(m.Text)
			if err != nil || m.From.User != from {
				fail.report(fmt.Errorf("%s got an unexpected message from %s: %.40q", c.Profile().User, m.From, m.Text))
				return
			}
			if w.contains(t1) {
				lat = append(lat, t1-t0)
			}
			batch = append(batch, m)
		case client.EventClosed:
			if !stopping.isSet() {
				fail.report(fmt.Errorf("%s: %w", c.Profile().User, ev.Err))
			}
		}
	}
	events := c.Events()
	for {
		ev, ok := <-events
		if !ok {
			return lat
		}
		handle(ev)
		var timer *time.Timer
		var timeout <-chan time.Time // nil: take only what is already queued
		if ackDelay > 0 && len(batch) > 0 {
			timer = time.NewTimer(ackDelay)
			timeout = timer.C
		}
	collect:
		for ok {
			if timeout == nil {
				select {
				case ev, ok = <-events:
				default:
					break collect
				}
			} else {
				select {
				case ev, ok = <-events:
				case <-timeout:
					break collect
				}
			}
			if ok {
				handle(ev)
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if len(batch) > 0 {
			if err := c.Ack(batch...); err != nil && !stopping.isSet() {
				fail.report(fmt.Errorf("%s: ack: %w", c.Profile().User, err))
			}
			batch = batch[:0]
		}
		if !ok {
			return lat
		}
	}
}

// closeAll closes the connected clients, concurrently: each Close makes a
// round trip first.
func closeAll(cs []*client.Client) {
	var wg sync.WaitGroup
	for i, c := range cs {
		if c != nil {
			wg.Go(func() { c.Close() })
			cs[i] = nil
		}
	}
	wg.Wait()
}
