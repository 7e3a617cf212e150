package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// The mailbox bounds the quota test opens a store with, so that it can
// fill them: entries and bytes per device mailbox, and bytes of all
// mailboxes together. A mailbox's bytes are what the store counts for its
// entries: at least the payloads, at most a payload and 1 KiB each.
const (
	MailboxEntryBound = 20
	MailboxByteBound  = 64 << 10
	StoreByteBound    = 3 * MailboxByteBound
)

var quotaBounds = Bounds{Blobs: BlobBound, MailboxEntries: MailboxEntryBound, MailboxBytes: MailboxByteBound, StoreBytes: StoreByteBound}

// testBadSends: every malformed Send is refused with its own domain error
// and stores nothing (protocol.md §5.1, §6.1, docs/design.md §10).
func testBadSends(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	// carol registered but never published keys: no device can receive.
	carol1 := chat.DeviceOf("carol", 1)
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "carol", PasswordHash: "phc carol", DeviceKey: deviceKeyOf(carol1), Now: t0}); err != nil {
		t.Fatal(err)
	}
	// alice/2 was added by Login and never published: it cannot send.
	alice2, err := h.s.AddDevice(h.ctx, "alice", "phc alice", deviceKeyOf(chat.DeviceOf("alice", 2)), "unlinked", t0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		m    store.Message
		want error
	}{
		{"to an account without published devices", message(alice1, 1, t0, carol1), store.ErrNoDevices},
		{"to a device of an account without published devices", message(alice1, 2, t0, bob1, bob2, carol1), store.ErrNoDevices},
		{"to a device that does not exist", message(alice1, 3, t0, chat.DeviceOf("bob", 9)), store.ErrDeviceMismatch},
		{"to the sending device itself", message(alice1, 4, t0, alice1), store.ErrToSendingDevice},
		{"to the sending device and a peer", message(alice1, 5, t0, alice1, bob1, bob2), store.ErrToSendingDevice},
		{"from a device without published keys", message(alice2, 6, t0, bob1, bob2), store.ErrNotPublished},
		{"to own devices none of which can receive", message(alice1, 7, t0, alice2), store.ErrDeviceMismatch},
	}
	for _, c := range cases {
		_, err := h.s.Append(h.ctx, c.m)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		var to []store.DeviceKey
		for _, e := range c.m.Envelopes {
			to = append(to, store.DeviceKey{Device: e.To, Key: e.Key})
		}
		if err := h.s.CheckRecipients(c.m.From, to); !errors.Is(err, c.want) {
			t.Errorf("%s: check: %v, want %v", c.name, err, c.want)
		}
	}
	var nd *store.NoDevicesError
	if _, err := h.s.Append(h.ctx, message(alice1, 1, t0, carol1)); !errors.As(err, &nd) || nd.User != "carol" {
		t.Errorf("the refusal does not name carol: %v", err)
	}
	for _, d := range []chat.Device{alice1, alice2, bob1, bob2, carol1} {
		if p := h.pending(d); len(p) != 0 {
			t.Errorf("%v has %d entries from refused appends", d, len(p))
		}
	}
	// Once carol publishes, the same id stores: refused ids are not recorded.
	h.publish(carol1, 0, false)
	if res := h.append(message(alice1, 1, t0, carol1)); res.Duplicate || len(res.Entries) != 1 {
		t.Errorf("to carol after she published: %+v", res)
	}
}

// testBadSendInBatch: appends running concurrently, so that a store that
// batches commits puts them in one batch, where every few is bad in a
// different way. Every good one commits exactly once and is answered so;
// every bad one gets its own refusal, never another's error.
func testBadSendInBatch(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	nokeys := chat.DeviceOf("nokeys", 1)
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "nokeys", PasswordHash: "x", DeviceKey: deviceKeyOf(nokeys), Now: t0}); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		to   []chat.Device
		want error
	}{
		{[]chat.Device{chat.DeviceOf("bob", 7)}, store.ErrDeviceMismatch},
		{[]chat.Device{nokeys}, store.ErrNoDevices},
		{[]chat.Device{chat.DeviceOf("nokeys", 5)}, store.ErrNoDevices}, // no such device, no mailbox
		{[]chat.Device{alice1}, store.ErrToSendingDevice},
		{[]chat.Device{chat.DeviceOf("nobody", 1)}, store.ErrNoSuchUser},
	}
	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range uint64(n) {
		wg.Go(func() {
			<-start
			m := message(alice1, i+1, t0, bob1, bob2)
			var want error
			if i%10 == 3 {
				b := bad[int(i/10)%len(bad)]
				m, want = message(alice1, i+1, t0, b.to...), b.want
			}
			res, err := h.s.Append(h.ctx, m)
			switch {
			case want != nil && !errors.Is(err, want):
				t.Errorf("bad append %d: %v, want %v", i+1, err, want)
			case want == nil && (err != nil || res.Duplicate || len(res.Entries) != 2):
				t.Errorf("good append %d: %+v %v", i+1, res, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, d := range []chat.Device{bob1, bob2} {
		seen := map[string]int{}
		for _, e := range h.pending(d) {
			seen[string(e.MessageID)]++
			if !bytes.Equal(e.Payload, payloadFor(e.MessageID, d)) {
				t.Errorf("%v: entry %x is not whole", d, e.MessageID)
			}
		}
		for i := range uint64(n) {
			want := 1
			if i%10 == 3 {
				want = 0
			}
			if got := seen[string(msgID(i+1))]; got != want {
				t.Errorf("%v holds message %d %d times, want %d", d, i+1, got, want)
			}
		}
	}
}

// testMailboxQuota: a device's mailbox holds at most MailboxEntryBound
// entries and MailboxByteBound bytes, all mailboxes StoreByteBound bytes;
// past a bound an Append is refused whole, naming the full mailbox; acks,
// expiry and account deletion give the room back; the counts survive a
// reopen. Server notices are the operator's and are never refused.
func testMailboxQuota(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	id := uint64(0)
	send := func(size int, at time.Time, to ...chat.Device) error {
		id++
		m := store.Message{From: alice1, ID: msgID(id), Time: at}
		for _, d := range to {
			m.Envelopes = append(m.Envelopes, store.Envelope{To: d, Key: deviceKeyOf(d), Payload: fill(size, fmt.Sprint(id, d))})
		}
		_, err := h.s.Append(h.ctx, m)
		return err
	}
	// Entries: bob/1 fills first if bob/2 has acked.
	for i := range MailboxEntryBound {
		if err := send(10, t0, bob1, bob2); err != nil {
			t.Fatalf("message %d of %d: %v", i+1, MailboxEntryBound, err)
		}
	}
	bob2Seqs := func() []uint64 {
		var s []uint64
		for _, e := range h.pending(bob2) {
			s = append(s, e.Seq)
		}
		return s
	}
	h.s.Ack(bob2, bob2Seqs())
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	err := send(10, t0, bob1, bob2)
	var full *store.MailboxFullError
	if !errors.As(err, &full) || !errors.Is(err, store.ErrMailboxFull) || full.Device != bob1 {
		t.Fatalf("append to a full mailbox: %v, want bob/1's mailbox full", err)
	}
	if p := h.pending(bob2); len(p) != 0 {
		t.Errorf("a refused append stored %d entries in bob/2's mailbox", len(p))
	}
	h.reopen()
	if err := send(10, t0, bob1, bob2); !errors.Is(err, store.ErrMailboxFull) {
		t.Errorf("after reopen: %v, want the mailbox still full", err)
	}
	// An ack of bob/1 makes room for exactly what it removed.
	p := h.pending(bob1)
	h.s.Ack(bob1, []uint64{p[0].Seq, p[1].Seq})
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := send(10, t0, bob1, bob2); err != nil {
			t.Errorf("append %d after an ack of 2: %v", i+1, err)
		}
	}
	if err := send(10, t0, bob1, bob2); !errors.Is(err, store.ErrMailboxFull) {
		t.Errorf("third append after an ack of 2: %v, want full", err)
	}
	// Server notices are never refused.
	if _, _, err := h.s.Broadcast(h.ctx, msgID(1<<40), []byte("notice"), t0); err != nil {
		t.Errorf("broadcast to a full mailbox: %v", err)
	}
	// Expiry gives the room back.
	for {
		_, more, err := h.s.Expire(h.ctx, t0.Add(time.Hour), 7)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	if p := h.pending(bob1); len(p) != 0 {
		t.Fatalf("bob/1 after expiry: %d entries", len(p))
	}

	// Bytes: payloads of a quarter of the bound fit three times, not four.
	big := MailboxByteBound / 4
	later := t0.Add(2 * time.Hour)
	for i := range 3 {
		if err := send(big, later, bob1, bob2); err != nil {
			t.Fatalf("big message %d: %v", i+1, err)
		}
	}
	if err := send(big, later, bob1, bob2); !errors.As(err, &full) {
		t.Errorf("fourth big message: %v, want a full mailbox", err)
	}
	// The store's total: bob's two mailboxes hold 3 quarters each; carol
	// and dave take the rest, and the store refuses before any mailbox
	// is full.
	h.account("carol", 1, 0)
	h.account("dave", 1, 0)
	carol1, dave1 := chat.DeviceOf("carol", 1), chat.DeviceOf("dave", 1)
	stored := 0
	for i := range 8 {
		to := carol1
		if i%2 == 1 {
			to = dave1
		}
		err := send(big, later, to)
		if err != nil {
			if !errors.Is(err, store.ErrStoreFull) || errors.Is(err, store.ErrMailboxFull) {
				t.Fatalf("big message %d to %v: %v, want the store full", i+1, to, err)
			}
			break
		}
		stored++
	}
	if stored < 3 || stored > 5 {
		t.Errorf("%d big messages stored before the store was full, want 3 to 5 (bound %d, bob holds 6 of %d bytes)", stored, StoreByteBound, big)
	}
	// Deleting bob gives his bytes back to the store.
	if err := h.s.DeleteAccount(h.ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := send(big, later, dave1); err != nil {
		t.Errorf("after bob's account was deleted: %v", err)
	}
}
