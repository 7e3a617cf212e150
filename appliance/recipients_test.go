package appliance

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

func groupSendTo(group byte, users ...string) *transport.Send {
	m := &transport.Send{MessageID: make([]byte, transport.MessageIDLen), Group: bytes.Repeat([]byte{group}, transport.GroupIDLen), Shared: []byte{1}}
	for _, u := range users {
		m.Envelopes = append(m.Envelopes, transport.Envelope{User: u, Device: 1, DeviceKey: bytes.Repeat([]byte{u[0]}, 32)})
	}
	return m
}

// A connection's remembered address lists (protocol.md §6.7): named by
// their hash, per group, a copy handed out, and bounded in groups and
// addresses, the least recently used going first.
func TestRecipientLists(t *testing.T) {
	var r recipientLists
	first := groupSendTo(1, "bob", "carol")
	h1 := r.remember(first, "alice")
	if len(h1) != transport.RecipientsLen {
		t.Fatalf("hash %x", h1)
	}
	again := groupSendTo(1)
	again.Recipients = h1
	if n, ok := r.expand(again, "alice"); !ok || n != 3 || len(again.Envelopes) != 2 || again.Envelopes[1].User != "carol" {
		t.Fatalf("expanded to %+v, %d accounts", again.Envelopes, n)
	}
	_ = append(again.Envelopes, transport.Envelope{User: "mallory"}) // the list's capacity ends with it
	if len(r.lists[0].envs) != 2 || cap(again.Envelopes) != 2 {
		t.Fatal("an append to the expanded envelopes can reach the remembered list")
	}
	if got := r.remember(again, "alice"); !bytes.Equal(got, h1) {
		t.Fatal("a Send that named its list changed the hash")
	}
	other := groupSendTo(2)
	other.Recipients = h1
	if _, ok := r.expand(other, "alice"); ok {
		t.Fatal("a list was used for another group")
	}
	// Another list for the group replaces the first.
	h2 := r.remember(groupSendTo(1, "bob"), "alice")
	if bytes.Equal(h1, h2) {
		t.Fatal("two lists, one hash")
	}
	stale := groupSendTo(1)
	stale.Recipients = h1
	if _, ok := r.expand(stale, "alice"); ok {
		t.Fatal("a replaced list is still used")
	}
	// At most maxRememberedGroups groups: the least recently used goes.
	for g := byte(10); g < 10+maxRememberedGroups; g++ {
		r.remember(groupSendTo(g, "bob"), "alice")
	}
	if len(r.lists) != maxRememberedGroups {
		t.Fatalf("%d lists kept", len(r.lists))
	}
	gone := groupSendTo(1)
	gone.Recipients = h2
	if _, ok := r.expand(gone, "alice"); ok {
		t.Fatal("the least recently used list was kept past the bound")
	}
	// At most maxRememberedDevices addresses in all.
	var many []string
	for i := range maxRememberedDevices {
		many = append(many, fmt.Sprintf("u%d", i))
	}
	r.remember(groupSendTo(20, many...), "alice")
	total := 0
	for _, l := range r.lists {
		total += len(l.envs)
	}
	if total > maxRememberedDevices || len(r.lists) != 1 {
		t.Fatalf("%d addresses in %d lists kept", total, len(r.lists))
	}
	if h := r.remember(groupSendTo(21, append(many, "one more")...), "alice"); h != nil {
		t.Fatal("a list over the bound was remembered")
	}
}

// TestRecipientsRefusedSendCheap: a Send that names a remembered list and
// is refused before it costs tokens (here: its sender is muted; the same
// holds for group_max_members, and the expansion also runs before the
// limiter refuses a throttled one) must not cost the server work in
// proportion to the list: otherwise a ~100-byte frame makes the server
// clone and canonicalize 8192 addresses (~2 ms, ~760 KB) for free, again
// and again.
func TestRecipientsRefusedSendCheap(t *testing.T) {
	srv := testServer(t)
	ctx := context.Background()
	if err := srv.store.CreateAccount(ctx, store.NewAccount{Name: "bob", PasswordHash: "x", DeviceKey: make([]byte, 32), Now: srv.cfg.Now()}); err != nil {
		t.Fatal(err)
	}
	ss := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("bob", 1)}
	var many []string
	for i := range maxRememberedDevices {
		many = append(many, fmt.Sprintf("u%03d", i%500))
	}
	h := ss.recipients.remember(groupSendTo(1, many...), "bob")
	if err := srv.Mute(ctx, "bob", 0); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		req := groupSendTo(1)
		req.Recipients = h
		if checkSend(ctx, ss, 0, req) {
			t.Fatal("a muted sender's Send passed")
		}
	}
	runtime.ReadMemStats(&after)
	if n := (after.TotalAlloc - before.TotalAlloc) / 10; n > 64<<10 {
		t.Errorf("a refused 100-byte Send naming a list cost %d KB of allocation", n>>10)
	}
}
