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

// Group messages (protocol.md §6.7): one shared payload stored once, an
// entry per recipient device referring to it, freed by the last ack or by
// expiry; the group records the operator sees.

// groupID is the suite's group id n.
func groupID(n byte) []byte { return bytes.Repeat([]byte{n}, 16) }

// sharedFor is the shared payload the suite sends under a message id, of
// size bytes.
func sharedFor(id []byte, size int) []byte { return fill(size, fmt.Sprintf("shared %x", id)) }

// groupMessage is a group message of a shared payload of size bytes.
func groupMessage(from chat.Device, id uint64, at time.Time, group []byte, size int, to ...chat.Device) store.Message {
	m := store.Message{From: from, ID: msgID(id), Time: at, Group: group}
	m.Shared = sharedFor(m.ID, size)
	for _, d := range to {
		m.Envelopes = append(m.Envelopes, store.Envelope{To: d, Key: deviceKeyOf(d)})
	}
	return m
}

// group returns the group record of id, if there is one.
func (h *harness) group(id []byte) (store.Group, bool) {
	h.t.Helper()
	gs, err := h.s.ListGroups()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, g := range gs {
		if bytes.Equal(g.ID, id) {
			return g, true
		}
	}
	return store.Group{}, false
}

// checkShared checks that the store holds n shared payloads of bytes.
func (h *harness) checkShared(what string, n int, size int64) {
	h.t.Helper()
	if st := h.s.Stats(); st.SharedPayloads != n || st.SharedBytes != size {
		h.t.Errorf("%s: %d shared payloads of %d bytes, want %d of %d", what, st.SharedPayloads, st.SharedBytes, n, size)
	}
}

// testGroupShared: the payload is stored once; every recipient's entry
// resolves to it with its group id; acks free it with the last one; the
// group's record counts the accounts, the messages and their times.
func testGroupShared(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	h.account("carol", 1, 0)
	carol1 := chat.DeviceOf("carol", 1)
	g := groupID(1)
	m := groupMessage(alice1, 1, t0, g, 5000, bob1, bob2, carol1)
	res := h.append(m)
	if res.Duplicate || len(res.Entries) != 3 {
		t.Fatalf("append: %+v", res)
	}
	for _, d := range res.Entries {
		if !bytes.Equal(d.Entry.Shared, m.Shared) || !bytes.Equal(d.Entry.Group, g) || len(d.Entry.Payload) != 0 {
			t.Errorf("appended entry of %v: group %x, %d shared bytes, %d payload bytes", d.To, d.Entry.Group, len(d.Entry.Shared), len(d.Entry.Payload))
		}
	}
	h.checkShared("after one group message", 1, 5000)
	h.reopen()
	for _, d := range []chat.Device{bob1, bob2, carol1} {
		p := h.pending(d)
		if len(p) != 1 || !bytes.Equal(p[0].Shared, m.Shared) || !bytes.Equal(p[0].Group, g) || len(p[0].Payload) != 0 || p[0].From != alice1 || !p[0].Time.Equal(t0) {
			t.Fatalf("%v after reopen: %+v", d, p)
		}
	}
	rec, ok := h.group(g)
	if !ok || rec.Members != 3 || rec.Creator != "alice" || rec.Messages != 1 || !rec.Created.Equal(t0) || !rec.LastMessage.Equal(t0) {
		t.Errorf("group record: %+v %v", rec, ok)
	}
	// bob writes to the group a minute later, without carol: 2 accounts.
	h.append(groupMessage(bob1, 2, t0.Add(time.Minute), g, 100, alice1, bob2))
	rec, _ = h.group(g)
	if rec.Members != 2 || rec.Creator != "alice" || rec.Messages != 2 || !rec.Created.Equal(t0) || !rec.LastMessage.Equal(t0.Add(time.Minute)) {
		t.Errorf("group record after bob's message: %+v", rec)
	}
	h.checkShared("after two group messages", 2, 5100)
	// Acks: the payload stays until the last entry referring to it goes.
	for i, d := range []chat.Device{bob1, bob2, carol1} {
		p := h.pending(d)
		h.s.Ack(d, []uint64{p[0].Seq})
		if err := h.s.Sync(h.ctx); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			h.checkShared(fmt.Sprintf("after %d of 3 acks", i+1), 2, 5100)
		}
	}
	h.checkShared("after the last ack", 1, 100)
	// An ordinary message is unaffected and has no group.
	h.append(message(alice1, 3, t0, bob1, bob2))
	if p := h.pending(bob1); len(p) != 1 || p[0].Group != nil || p[0].Shared != nil {
		t.Errorf("an ordinary entry: %+v", p)
	}
	h.reopen()
	h.checkShared("after reopen", 1, 100)
}

// testGroupDuplicate: a resent group message stores nothing, a refused
// one (a stale device, a missing mailbox) stores nothing, not even its
// group's record; the id then stores.
func testGroupDuplicate(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	g := groupID(2)
	h.append(groupMessage(alice1, 1, t0, g, 300, bob1, bob2))
	again, err := h.s.Append(h.ctx, groupMessage(alice1, 1, t0.Add(time.Minute), g, 300, bob1, bob2))
	if err != nil || !again.Duplicate || len(again.Entries) != 0 || !again.Time.Equal(t0) {
		t.Errorf("resend: %+v %v", again, err)
	}
	h.checkShared("after a resend", 1, 300)
	if rec, _ := h.group(g); rec.Messages != 1 {
		t.Errorf("a resend counted: %+v", rec)
	}
	// One envelope under a stale key: nothing at all.
	g2 := groupID(3)
	m := groupMessage(alice1, 2, t0, g2, 300, bob1, bob2)
	m.Envelopes[1].Key = deviceKeyOf(chat.DeviceOf("bob", 9))
	if _, err := h.s.Append(h.ctx, m); !errors.Is(err, store.ErrDeviceMismatch) {
		t.Fatalf("stale envelope: %v", err)
	}
	if _, err := h.s.Append(h.ctx, groupMessage(alice1, 3, t0, g2, 300, bob1)); !errors.Is(err, store.ErrDeviceMismatch) {
		t.Fatalf("missing envelope: %v", err)
	}
	h.checkShared("after refused group messages", 1, 300)
	if _, ok := h.group(g2); ok {
		t.Error("a refused group message left a group record")
	}
	for _, d := range []chat.Device{bob1, bob2} {
		if p := h.pending(d); len(p) != 1 {
			t.Errorf("%v has %d entries, want 1", d, len(p))
		}
	}
	if res := h.append(groupMessage(alice1, 2, t0, g2, 300, bob1, bob2)); res.Duplicate {
		t.Error("a refused id was recorded")
	}
	h.checkShared("after the id stored", 2, 600)
	// Concurrent resends of a new message: stored once.
	var wg sync.WaitGroup
	stored := 0
	var mu sync.Mutex
	for range 8 {
		wg.Go(func() {
			res, err := h.s.Append(h.ctx, groupMessage(alice1, 4, t0, g, 300, bob1, bob2))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if !res.Duplicate {
				stored++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if stored != 1 {
		t.Errorf("concurrent resends stored %d times", stored)
	}
	h.checkShared("after concurrent resends", 3, 900)
}

// testGroupExpiry: expiry frees a shared payload with its last entry and
// drops the records of groups silent since the cutoff; deleting a
// recipient account gives up its entries' references.
func testGroupExpiry(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	h.account("carol", 1, 0)
	carol1 := chat.DeviceOf("carol", 1)
	old, kept := groupID(4), groupID(5)
	for i := range uint64(6) {
		h.append(groupMessage(alice1, i+1, t0.Add(time.Duration(i)*time.Hour), old, 1000, bob1, bob2, carol1))
	}
	h.append(groupMessage(alice1, 10, t0.Add(10*time.Hour), kept, 1000, bob1, bob2, carol1))
	// bob/1 acks the first message: its payload is still carol's and bob/2's.
	h.s.Ack(bob1, []uint64{h.pending(bob1)[0].Seq})
	cutoff := t0.Add(3 * time.Hour)
	for calls := 0; ; calls++ {
		_, more, err := h.s.Expire(h.ctx, cutoff, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
		if calls > 50 {
			t.Fatal("expiry never finishes")
		}
	}
	h.checkShared("after expiring 3 of 7", 4, 4000)
	if _, ok := h.group(old); !ok {
		t.Error("a group with a message after the cutoff was dropped")
	}
	// A later sweep past the old group's last message drops its record.
	for {
		_, more, err := h.s.Expire(h.ctx, t0.Add(9*time.Hour), 2)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	if _, ok := h.group(old); ok {
		t.Error("a group silent since the cutoff kept its record")
	}
	if rec, ok := h.group(kept); !ok || rec.Messages != 1 {
		t.Errorf("the kept group: %+v %v", rec, ok)
	}
	h.checkShared("after expiring 6 of 7", 1, 1000)
	// Deleting carol drops her reference; the acks of bob's free the rest.
	if err := h.s.DeleteAccount(h.ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	h.checkShared("after carol's deletion", 1, 1000)
	for _, d := range []chat.Device{bob1, bob2} {
		h.s.Ack(d, []uint64{h.pending(d)[0].Seq})
	}
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.checkShared("after the last acks", 0, 0)
	if err := h.s.Verify(); err != nil {
		t.Error(err)
	}
}

// testGroupQuota: a group message charges each recipient mailbox its
// small entry and the store's total the shared payload once: to 500
// devices it fits bounds that 500 copies would exceed many times over; a
// payload past the total's room is refused whole; group_max_per_account
// bounds the ids an account may start.
func testGroupQuota(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	var wg sync.WaitGroup
	const accounts, perAccount = 100, 5
	for i := range accounts {
		wg.Go(func() { h.account(fmt.Sprintf("m%03d", i), perAccount, 0) })
	}
	wg.Wait()
	var to []chat.Device
	for i := range accounts {
		for id := uint32(1); id <= perAccount; id++ {
			to = append(to, chat.DeviceOf(fmt.Sprintf("m%03d", i), id))
		}
	}
	const size = 100 << 10
	// groupQuotaBounds: a mailbox takes 1 KiB, the store 2 payloads and
	// their entries: 500 copies would need 500 payloads.
	m := groupMessage(alice1, 1, t0, groupID(6), size, to...)
	res := h.append(m)
	if len(res.Entries) != accounts*perAccount {
		t.Fatalf("%d entries", len(res.Entries))
	}
	h.checkShared("after a message to 500 devices", 1, size)
	if p := h.pending(to[499]); len(p) != 1 || !bytes.Equal(p[0].Shared, m.Shared) {
		t.Errorf("the last device's entry: %+v", p)
	}
	// Another one fits once; a third payload does not, and stores nothing.
	h.append(groupMessage(alice1, 2, t0, groupID(6), size, to...))
	_, err := h.s.Append(h.ctx, groupMessage(alice1, 3, t0, groupID(6), size, to...))
	if !errors.Is(err, store.ErrStoreFull) {
		t.Fatalf("a third payload: %v, want the store full", err)
	}
	h.checkShared("after a refused payload", 2, 2*size)
	if p := h.pending(to[0]); len(p) != 2 {
		t.Errorf("a refused group message stored an entry: %d entries", len(p))
	}
	// An ack by every device makes room for it again.
	for _, d := range to {
		h.s.Ack(d, []uint64{h.pending(d)[0].Seq})
	}
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.checkShared("after every device acked one", 1, size)
	h.append(groupMessage(alice1, 3, t0, groupID(6), size, to...))

	// group_max_per_account: alice started group 6; with a bound of 3
	// she may start 2 more, not a third; an id someone else started, or
	// one she started, always works.
	bob := to[0:perAccount]
	send := func(id uint64, from chat.Device, g byte, max int, to ...chat.Device) error {
		m := groupMessage(from, id, t0, groupID(g), 10, to...)
		m.MaxGroups = max
		_, err := h.s.Append(h.ctx, m)
		return err
	}
	m000 := bob[0]
	if err := send(1, m000, 20, 3, append([]chat.Device{alice1}, bob[1:]...)...); err != nil {
		t.Fatalf("m000 starts a group: %v", err)
	}
	for i, g := range []byte{7, 8} {
		if err := send(uint64(10+i), alice1, g, 3, bob...); err != nil {
			t.Fatalf("alice's group %d of 3: %v", i+2, err)
		}
	}
	err = send(20, alice1, 9, 3, bob...)
	var tm *store.TooManyGroupsError
	if !errors.As(err, &tm) || !errors.Is(err, store.ErrTooManyGroups) || tm.User != "alice" || tm.Max != 3 {
		t.Fatalf("alice's fourth group: %v", err)
	}
	if _, ok := h.group(groupID(9)); ok {
		t.Error("a refused group got a record")
	}
	for i, g := range []byte{6, 7, 20} {
		if err := send(uint64(30+i), alice1, g, 3, bob...); err != nil {
			t.Errorf("alice to group %d she may use: %v", g, err)
		}
	}
	if err := send(40, alice1, 9, 0, bob...); err != nil {
		t.Errorf("no bound: %v", err)
	}
}

// groupQuotaBounds is what testGroupQuota opens with: mailboxes of 1 KiB,
// room for two 100 KiB payloads and two entries of at most 120 bytes for
// each of 500 devices, not for a third payload with its 500 entries.
var groupQuotaBounds = Bounds{Blobs: BlobBound, MailboxEntries: 10, MailboxBytes: 1 << 10, StoreBytes: 2*(100<<10) + 1000*120}
