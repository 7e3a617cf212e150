package appliance

import (
	"bytes"
	"fmt"
	"testing"

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
	h1 := r.remember(first)
	if len(h1) != transport.RecipientsLen {
		t.Fatalf("hash %x", h1)
	}
	again := groupSendTo(1)
	again.Recipients = h1
	if !r.expand(again) || len(again.Envelopes) != 2 || again.Envelopes[1].User != "carol" {
		t.Fatalf("expanded to %+v", again.Envelopes)
	}
	again.Envelopes[0].User = "mallory" // a copy: the list is not changed
	if r.lists[0].envs[0].User != "bob" {
		t.Fatal("expand handed out the remembered list itself")
	}
	if got := r.remember(again); !bytes.Equal(got, h1) {
		t.Fatal("a Send that named its list changed the hash")
	}
	other := groupSendTo(2)
	other.Recipients = h1
	if r.expand(other) {
		t.Fatal("a list was used for another group")
	}
	// Another list for the group replaces the first.
	h2 := r.remember(groupSendTo(1, "bob"))
	if bytes.Equal(h1, h2) {
		t.Fatal("two lists, one hash")
	}
	stale := groupSendTo(1)
	stale.Recipients = h1
	if r.expand(stale) {
		t.Fatal("a replaced list is still used")
	}
	// At most maxRememberedGroups groups: the least recently used goes.
	for g := byte(10); g < 10+maxRememberedGroups; g++ {
		r.remember(groupSendTo(g, "bob"))
	}
	if len(r.lists) != maxRememberedGroups {
		t.Fatalf("%d lists kept", len(r.lists))
	}
	gone := groupSendTo(1)
	gone.Recipients = h2
	if r.expand(gone) {
		t.Fatal("the least recently used list was kept past the bound")
	}
	// At most maxRememberedDevices addresses in all.
	var many []string
	for i := range maxRememberedDevices {
		many = append(many, fmt.Sprintf("u%d", i))
	}
	r.remember(groupSendTo(20, many...))
	total := 0
	for _, l := range r.lists {
		total += len(l.envs)
	}
	if total > maxRememberedDevices || len(r.lists) != 1 {
		t.Fatalf("%d addresses in %d lists kept", total, len(r.lists))
	}
	if h := r.remember(groupSendTo(21, append(many, "one more")...)); h != nil {
		t.Fatal("a list over the bound was remembered")
	}
}
