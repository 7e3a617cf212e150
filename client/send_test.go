package client

import (
	"context"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tests of the durable send and receive paths against an in-process
// server: what each leaves in the home (history, outbox, seen, received).

// bucketLen counts the keys of one of h's buckets.
func bucketLen(t *testing.T, h *Home, bucket []byte) int {
	t.Helper()
	n := 0
	if err := h.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

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
		if n := bucketLen(t, ha, bucketOutbox); n != 0 {
			t.Errorf("after sending %q the outbox holds %d entries", text, n)
		}
		hist, err := ha.History("bob", "", 10)
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
	if hist, _ := ha.History("nobody", "", 10); len(hist) != 0 {
		t.Errorf("a refused send is in the history: %+v", hist)
	}
	if n := bucketLen(t, ha, bucketOutbox); n != 0 {
		t.Errorf("a refused send left %d outbox entries", n)
	}

	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for _, text := range texts {
		m := nextEvent(t, bob).Message
		if m.Kind != "text" || m.Text != text || m.From != "alice" {
			t.Fatalf("bob got %+v, want %q", m, text)
		}
		if err := bob.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if n := bucketLen(t, hb, bucketReceived); n != 0 {
		t.Errorf("%d received records left after the acks", n)
	}
	if n := bucketLen(t, hb, bucketSeen); n != len(texts) {
		t.Errorf("%d seen records, want %d", n, len(texts))
	}
}
