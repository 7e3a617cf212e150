package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// Tests of the durable send and receive paths against an in-process
// server: what each leaves in the home (history, outbox, seen, received).

// nextEvent returns c's next message or signal event.
func nextEvent(t *testing.T, c *Client) Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Type == EventClosed {
				t.Fatalf("connection closed: %v", ev.Err)
			}
			if ev.Type == EventMessage || ev.Type == EventSignal {
				return ev
			}
		case <-timeout:
			t.Fatal("timed out waiting for a message")
		}
	}
}

func TestSendTextKeepsHistory(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, err := Connect(ctx, ha, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()

	texts := []string{"first", "second", "third"}
	for i, text := range texts {
		res, err := alice.SendText(ctx, "bob", text)
		if err != nil {
			t.Fatalf("SendText %q: %v", text, err)
		}
		if n := ha.Probe().Count("outbox"); n != 0 {
			t.Errorf("after sending %q the outbox holds %d entries", text, n)
		}
		hist, err := ha.History(chat.Peer("bob"), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != i+1 {
			t.Fatalf("after sending %q the history has %d entries, want %d", text, len(hist), i+1)
		}
		got := hist[i]
		if got.ID != res.ID || got.Text != text || !got.Outgoing || got.State != StateStored || got.From != "alice" {
			t.Errorf("history entry of %q: %+v (sent as %s)", text, got, res.ID)
		}
	}
	if _, err := alice.SendText(ctx, "nobody", "lost"); err == nil {
		t.Error("sending to an unknown user succeeded")
	}
	if hist, _ := ha.History(chat.Peer("nobody"), "", 10); len(hist) != 0 {
		t.Errorf("a refused send is in the history: %+v", hist)
	}
	if n := ha.Probe().Count("outbox"); n != 0 {
		t.Errorf("a refused send left %d outbox entries", n)
	}

	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for _, text := range texts {
		m := nextEvent(t, bob).Message
		if m.Kind != chat.KindText || m.Text != text || m.From.User != "alice" {
			t.Fatalf("bob got %+v, want %q", m, text)
		}
		if err := bob.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if n := hb.Probe().Count("received"); n != 0 {
		t.Errorf("%d received records left after the acks", n)
	}
	if n := hb.Probe().Count("seen"); n != len(texts) {
		t.Errorf("%d seen records, want %d", n, len(texts))
	}
}

// A received message's session and received record are deferred until the
// ack (client/home/later.go). Whether the process keeps them (a lost ack, a reconnect)
// or loses them (a crash), the redelivered message reads the same, and the
// ack leaves the session on disk and no received record.
func TestReceiveDeferredUntilAck(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, err := Connect(ctx, ha, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	connectBob := func() *Client {
		t.Helper()
		c, err := Connect(ctx, hb, Options{Receive: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	receive := func(c *Client, want string) *Message {
		t.Helper()
		m := nextEvent(t, c).Message
		if m.Kind != chat.KindText || m.Text != want {
			t.Fatalf("got %+v, want %q", m, want)
		}
		return m
	}
	sessionOnDisk := func() []byte {
		r, err := hb.Probe().Session(chat.Device{User: "alice", ID: mustProfile(t, ha).Device})
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			return nil
		}
		return r.Ratchet
	}

	// The first message starts the session: written at once.
	if _, err := alice.SendText(ctx, "bob", "first"); err != nil {
		t.Fatal(err)
	}
	bob := connectBob()
	bob.Ack(receive(bob, "first"))
	start := sessionOnDisk()
	if start == nil {
		t.Fatal("no session on disk after the first message")
	}

	// A plain ratchet message: nothing reaches the disk before the ack.
	if _, err := alice.SendText(ctx, "bob", "second"); err != nil {
		t.Fatal(err)
	}
	receive(bob, "second")
	if !bytes.Equal(sessionOnDisk(), start) || hb.Probe().Count("received") != 0 {
		t.Fatal("decrypting wrote before the ack")
	}
	// The ack is lost (reconnect, same process): the message comes again
	// and reads the same, from the deferred received record.
	bob.Close()
	bob = connectBob()
	receive(bob, "second")
	// The process ends before anything is written: the home holds the
	// session as before the message, which decrypts it again.
	bob.Close()
	hb.Probe().Crash()
	bob = connectBob()
	defer func() { bob.Close() }()
	m := receive(bob, "second")
	if err := bob.Ack(m); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sessionOnDisk(), start) || hb.Probe().Count("received") != 0 || hb.Probe().Deferred() != 0 {
		t.Fatal("after the ack: session not written, or received records or deferred values left")
	}

	// A reply writes what is deferred, received record included, before
	// it is sent.
	if _, err := alice.SendText(ctx, "bob", "third"); err != nil {
		t.Fatal(err)
	}
	m = receive(bob, "third")
	if _, err := bob.SendText(ctx, "alice", "reply"); err != nil {
		t.Fatal(err)
	}
	if hb.Probe().Deferred() != 0 || hb.Probe().Count("received") != 1 {
		t.Fatal("a send did not write the deferred session and received record")
	}
	receive(alice, "reply")
	if err := bob.Ack(m); err != nil {
		t.Fatal(err)
	}
	if hb.Probe().Count("received") != 0 {
		t.Fatal("the ack left the received record")
	}
}

func mustProfile(t *testing.T, h *home.Home) *home.Profile {
	t.Helper()
	p, err := h.Profile()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BenchmarkSendReceive is one durable message through the engine, as the
// load bench's loops do it (bench/load.go): alice's SendText, bob decrypting
// the push and acking it, over an established session, with an in-process
// server. Homes and the server's data are on tmpfs when there is one.
// cpu-µs/op is the whole process's CPU time (clients and server) per
// message, home-writes/op the pages the two homes wrote (bbolt's TxStats):
//
//	go test -run '^$' -bench SendReceive -cpuprofile /tmp/client.prof ./client
func BenchmarkSendReceive(b *testing.B) {
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err = os.MkdirTemp("/dev/shm", "securechat-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	srv, err := appliance.New(appliance.Config{
		Listen: "127.0.0.1:0", Data: filepath.Join(dir, "server"), Admin: "127.0.0.1:0",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		MessageRate: 1e9, MessageBurst: 1e9, ByteRate: 1e15, ByteBurst: 1e15, // as the load bench lifts them
	})
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	defer func() { stop(); <-done }()

	ctx := context.Background()
	account := func(name string) *home.Home {
		h, err := home.Open(filepath.Join(dir, name), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		if _, err := Register(ctx, h, EnrollOptions{Server: srv.Addr().String(), User: name, Password: "password1", Pin: srv.Fingerprint()}); err != nil {
			b.Fatal(err)
		}
		return h
	}
	ha, hb := account("alice"), account("bob")
	alice, err := Connect(ctx, ha, Options{Receive: true})
	if err != nil {
		b.Fatal(err)
	}
	defer alice.Close()
	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		b.Fatal(err)
	}
	defer bob.Close()
	next := func(c *Client) *Message {
		for ev := range c.Events() {
			switch ev.Type {
			case EventMessage:
				if ev.Message.Kind != chat.KindText {
					b.Fatalf("got %+v", ev.Message)
				}
				return ev.Message
			case EventClosed:
				b.Fatal(ev.Err)
			}
		}
		b.Fatal("events closed")
		return nil
	}
	// Start and confirm the session, so that the loop's messages carry no
	// PQXDH header.
	if _, err := alice.SendText(ctx, "bob", "hello"); err != nil {
		b.Fatal(err)
	}
	bob.Ack(next(bob))
	if _, err := bob.SendText(ctx, "alice", "hi"); err != nil {
		b.Fatal(err)
	}
	alice.Ack(next(alice))

	text := strings.Repeat("x", 64)
	pageWrites := func() int64 {
		return ha.Probe().PageWrites() + hb.Probe().PageWrites()
	}
	cpu0, writes0 := processCPU(), pageWrites()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := alice.SendText(ctx, "bob", text); err != nil {
			b.Fatal(err)
		}
		if err := bob.Ack(next(bob)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(pageWrites()-writes0)/float64(b.N), "home-writes/op")
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestFlushedSendKeepsHistory: a text whose confirmation was lost (here:
// built into the outbox and never transmitted, as after a crash) enters
// the history when FlushOutbox resends it, once; a receipt-like send
// without history stays out of it.
func TestFlushedSendKeepsHistory(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, _ := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, err := Connect(ctx, ha, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	queue := func(text string, keep bool) {
		id := make([]byte, transport.MessageIDLen)
		rand.Read(id)
		content := &Content{Kind: chat.KindText, Text: text, SentAt: time.Now().UnixMilli()}
		if _, err := alice.buildSend(ctx, id, &home.OutboxEntry{To: chat.Peer("bob"), Content: transport.Marshal(content), Keep: keep}, content); err != nil {
			t.Fatal(err)
		}
	}
	queue("lost confirmation", true)
	queue("no history", false)
	done, err := alice.FlushOutbox(ctx)
	if err != nil || len(done) != 2 {
		t.Fatalf("flush: %v %+v", err, done)
	}
	hist, err := ha.History(chat.Peer("bob"), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Text != "lost confirmation" || !hist[0].Outgoing || hist[0].State != StateStored {
		t.Fatalf("history after the flush: %+v", hist)
	}
	if done, err := alice.FlushOutbox(ctx); err != nil || len(done) != 0 {
		t.Errorf("second flush: %v %+v", err, done)
	}
	if hist, _ := ha.History(chat.Peer("bob"), "", 10); len(hist) != 1 {
		t.Errorf("history after a second flush: %d entries", len(hist))
	}
}
