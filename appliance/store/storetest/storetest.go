// Package storetest is the conformance suite every implementation of
// store.Store must pass (docs/design.md §4.2): the bbolt store runs it now, a
// clustered store later runs the same.
package storetest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// BlobBound is the total blob size the suite opens a store with, so that
// it can fill it.
const BlobBound = 4 << 20

// Bounds are the bounds a store is opened with.
type Bounds struct {
	Blobs          int64 // bytes of all blobs
	MailboxEntries int64 // entries of one device's mailbox
	MailboxBytes   int64 // bytes of one device's mailbox
	StoreBytes     int64 // bytes of all mailboxes
}

// defaultBounds are what most tests open with: the blob bound to fill,
// mailbox bounds out of the way.
var defaultBounds = Bounds{Blobs: BlobBound, MailboxEntries: 1 << 30, MailboxBytes: 1 << 40, StoreBytes: 1 << 50}

// Opener opens the store kept in dir, creating it if dir holds none, with
// bounds b. The suite calls it again on the same dir after Close, to check
// durability.
type Opener func(t *testing.T, dir string, b Bounds) store.Store

// Run runs the suite, each test on a store of its own.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name   string
		fn     func(*testing.T, *harness)
		bounds *Bounds
	}{
		{"Durability", testDurability, nil},
		{"FailedCommitInvisible", testFailedCommitInvisible, nil},
		{"IdempotentAppend", testIdempotentAppend, nil},
		{"Ordering", testOrdering, nil},
		{"Ack", testAck, nil},
		{"Expiry", testExpiry, nil},
		{"Accounts", testAccounts, nil},
		{"Prekeys", testPrekeys, nil},
		{"Broadcast", testBroadcast, nil},
		{"Moderation", testModeration, nil},
		{"Invites", testInvites, nil},
		{"Blobs", testBlobs, nil},
		{"BlobQuota", testBlobQuota, nil},
		{"BlobFetched", testBlobFetched, nil},
		{"BlobExpiry", testBlobExpiry, nil},
		{"BlobCrash", testBlobCrash, nil},
		{"Meta", testMeta, nil},
		{"BadSends", testBadSends, nil},
		{"BadSendInBatch", testBadSendInBatch, nil},
		{"MailboxQuota", testMailboxQuota, &quotaBounds},
		{"GroupShared", testGroupShared, nil},
		{"GroupDuplicate", testGroupDuplicate, nil},
		{"GroupExpiry", testGroupExpiry, nil},
		{"GroupQuota", testGroupQuota, &groupQuotaBounds},
		{"DeviceLists", testDeviceLists, nil},
		{"LinkRollbackInBatch", testLinkRollbackInBatch, nil},
		{"Crash", testCrash, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, open: open, dir: t.TempDir(), ctx: context.Background(), bounds: defaultBounds}
			if tc.bounds != nil {
				h.bounds = *tc.bounds
			}
			h.s = open(t, h.dir, h.bounds)
			t.Cleanup(h.close)
			tc.fn(t, h)
		})
	}
}

// harness holds one test's store.
type harness struct {
	t      *testing.T
	open   Opener
	bounds Bounds
	dir    string
	ctx    context.Context
	s      store.Store
}

// t0 is the suite's clock: the store is given times, never reads its own.
var t0 = time.UnixMilli(1_700_000_000_000)

func (h *harness) close() {
	if h.s == nil {
		return
	}
	if err := h.s.Verify(); err != nil {
		h.t.Errorf("verify: %v", err)
	}
	if err := h.s.Close(); err != nil {
		h.t.Errorf("close: %v", err)
	}
	h.s = nil
}

// reopen closes the store and opens it again from its directory.
func (h *harness) reopen() {
	h.t.Helper()
	h.close()
	h.s = h.open(h.t, h.dir, h.bounds)
}

// identity is the fake account identity key of user: the store keeps keys
// as opaque bytes and never verifies them.
func identity(user string) []byte { return fill(32, "identity "+user) }

func fill(n int, seed string) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed[i%len(seed)] + byte(i/len(seed))
	}
	return b
}

func deviceKeyOf(d chat.Device) ed25519.PublicKey {
	return fill(ed25519.PublicKeySize, "key "+d.String())
}

// account creates user with n devices, each with published keys (so each
// is a message recipient) and oneTime one-time prekeys of each kind.
func (h *harness) account(user string, n, oneTime int) {
	h.t.Helper()
	for id := uint32(1); id <= uint32(n); id++ {
		d := chat.DeviceOf(user, id)
		if id == 1 {
			if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: user, PasswordHash: "phc " + user, DeviceKey: deviceKeyOf(d), DeviceName: "first", Now: t0}); err != nil {
				h.t.Fatal(err)
			}
		} else {
			got, err := h.s.AddDevice(h.ctx, user, "phc "+user, deviceKeyOf(d), "more", t0)
			if err != nil || got != d {
				h.t.Fatalf("add device: %v %v, want %v", got, err, d)
			}
		}
		h.publish(d, oneTime, false)
	}
}

func (h *harness) publish(d chat.Device, oneTime int, replace bool) {
	h.t.Helper()
	if err := h.s.PublishKeys(h.ctx, d, upload(d, oneTime, replace)); err != nil {
		h.t.Fatalf("publish %v: %v", d, err)
	}
}

func upload(d chat.Device, oneTime int, replace bool) store.KeyUpload {
	up := store.KeyUpload{
		Identity:      identity(d.User),
		Certificate:   fill(100, "cert "+d.String()),
		AuthKey:       deviceKeyOf(d),
		SignedPreKey:  fill(64, "spk "+d.String()),
		LastResortKEM: fill(1200, "lastkem "+d.String()),
		Replace:       replace,
	}
	for i := range oneTime {
		up.OneTime = append(up.OneTime, store.OneTimeKey{ID: uint32(i + 1), Key: fill(36, fmt.Sprint("otk ", d, i))})
		up.OneTimeKEM = append(up.OneTimeKEM, store.OneTimeKey{ID: uint32(i + 1), Key: fill(1188, fmt.Sprint("kem ", d, i))})
	}
	return up
}

// msgID makes a message id from n.
func msgID(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 8, 16), n)
}

func message(from chat.Device, id uint64, at time.Time, to ...chat.Device) store.Message {
	m := store.Message{From: from, ID: msgID(id), Time: at}
	for _, d := range to {
		m.Envelopes = append(m.Envelopes, store.Envelope{To: d, Key: deviceKeyOf(d), Payload: payloadFor(m.ID, d)})
	}
	return m
}

// slots names devs with their keys, as a message's envelopes do.
func slots(devs ...chat.Device) []store.DeviceKey {
	out := make([]store.DeviceKey, len(devs))
	for i, d := range devs {
		out[i] = store.DeviceKey{Device: d, Key: deviceKeyOf(d)}
	}
	return out
}

// payloadFor is the payload the suite sends to d under a message id, so a
// stored one can be checked whole.
func payloadFor(id []byte, d chat.Device) []byte {
	return fmt.Appendf(nil, "%x to %v %s", id, d, bytes.Repeat([]byte{'.'}, int(id[len(id)-1])))
}

func (h *harness) append(m store.Message) store.Appended {
	h.t.Helper()
	res, err := h.s.Append(h.ctx, m)
	if err != nil {
		h.t.Fatalf("append %x: %v", m.ID, err)
	}
	return res
}

func (h *harness) pending(d chat.Device) []store.Entry {
	h.t.Helper()
	p, err := h.s.Pending(d, 0, 1<<20)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

var (
	alice1 = chat.DeviceOf("alice", 1)
	bob1   = chat.DeviceOf("bob", 1)
	bob2   = chat.DeviceOf("bob", 2)
)

func testDurability(t *testing.T, h *harness) {
	h.account("alice", 1, 2)
	h.account("bob", 2, 2)
	res := h.append(message(alice1, 1, t0, bob1, bob2))
	if err := h.s.PutBan(h.ctx, store.Ban{Target: "user:mallory", Reason: "spam", Created: t0}); err != nil {
		t.Fatal(err)
	}
	if err := h.s.PutMute(h.ctx, "bob", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := h.newBlob(blobID(1), 4, 0, bob1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.PutChunks(h.ctx, blobID(1), 0, [][]byte{[]byte("data")}); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	for i, d := range []chat.Device{bob1, bob2} {
		p := h.pending(d)
		if len(p) != 1 || !bytes.Equal(p[0].Payload, payloadFor(msgID(1), d)) || p[0].Seq != res.Entries[i].Entry.Seq || p[0].From != alice1 || !p[0].Time.Equal(t0) {
			t.Errorf("%v after reopen: %+v", d, p)
		}
	}
	if a, err := h.s.Account("bob"); err != nil || a.PasswordHash != "phc bob" || !a.Created.Equal(t0) || !bytes.Equal(a.Identity, identity("bob")) {
		t.Errorf("account after reopen: %+v %v", a, err)
	}
	if again := h.append(message(alice1, 1, t0.Add(time.Minute), bob1, bob2)); !again.Duplicate {
		t.Error("resend after reopen stored again")
	}
	if b, _ := h.s.Bans(); len(b) != 1 || b[0].Reason != "spam" {
		t.Errorf("bans after reopen: %+v", b)
	}
	if m, _ := h.s.Mutes(); !m["bob"].Equal(t0.Add(time.Hour)) {
		t.Errorf("mutes after reopen: %v", m)
	}
	if b, err := h.s.ReadChunk(blobID(1), 0); err != nil || string(b) != "data" {
		t.Errorf("blob after reopen: %q %v", b, err)
	}
}

func testFailedCommitInvisible(t *testing.T, h *harness) {
	h.account("alice", 1, 2)
	h.account("bob", 2, 2)
	carol := chat.DeviceOf("carol", 1)
	// A recipient that does not exist refuses the whole message.
	_, err := h.s.Append(h.ctx, message(alice1, 1, t0, bob1, bob2, carol))
	var nsu *store.NoSuchUserError
	if !errors.As(err, &nsu) || nsu.User != "carol" || !errors.Is(err, store.ErrNoSuchUser) {
		t.Fatalf("unknown recipient: %v", err)
	}
	// Missing a device, an extra device, a duplicate slot: a mismatch listing bob's devices.
	for _, to := range [][]chat.Device{{bob1}, {bob1, bob2, chat.DeviceOf("bob", 3)}, {bob1, bob1}} {
		_, err := h.s.Append(h.ctx, message(alice1, 2, t0, to...))
		var dm *store.DeviceMismatchError
		if !errors.As(err, &dm) || !errors.Is(err, store.ErrDeviceMismatch) || len(dm.Devices) != 2 || dm.Devices[0].Device != bob1 || !bytes.Equal(dm.Devices[1].Key, deviceKeyOf(bob2)) {
			t.Errorf("slots %v: %v, want a mismatch listing bob's 2 devices", to, err)
		}
		if err := h.s.CheckRecipients(alice1, slots(to...)); !errors.Is(err, store.ErrDeviceMismatch) {
			t.Errorf("check %v: %v", to, err)
		}
	}
	// The right devices, one under a key it does not have (a device
	// re-created, an account registered again), or under none: a mismatch
	// listing bob's devices with their current keys.
	for _, key := range []ed25519.PublicKey{deviceKeyOf(chat.DeviceOf("bob", 7)), nil} {
		m := message(alice1, 2, t0, bob1, bob2)
		m.Envelopes[1].Key = key
		_, err := h.s.Append(h.ctx, m)
		var dm *store.DeviceMismatchError
		if !errors.As(err, &dm) || len(dm.Devices) != 2 || !bytes.Equal(dm.Devices[1].Key, deviceKeyOf(bob2)) {
			t.Errorf("bob's device 2 under key %x: %v, want a mismatch listing bob's 2 devices", key, err)
		}
		to := slots(bob1, bob2)
		to[1].Key = key
		if err := h.s.CheckRecipients(alice1, to); !errors.Is(err, store.ErrDeviceMismatch) {
			t.Errorf("check bob's device 2 under key %x: %v", key, err)
		}
	}
	if _, err := h.s.Append(h.ctx, store.Message{From: alice1, ID: msgID(3), Time: t0}); !errors.Is(err, store.ErrNoRecipients) {
		t.Errorf("no recipients: %v", err)
	}
	h.reopen()
	for _, d := range []chat.Device{bob1, bob2} {
		if p := h.pending(d); len(p) != 0 {
			t.Errorf("%v has %d entries from refused appends", d, len(p))
		}
	}
	// The refused ids were not recorded: they store now.
	if res := h.append(message(alice1, 1, t0, bob1, bob2)); res.Duplicate || len(res.Entries) != 2 {
		t.Errorf("refused id then stored: %+v", res)
	}
	// A refused registration leaves no account.
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "dave", PasswordHash: "x", DeviceKey: deviceKeyOf(chat.DeviceOf("dave", 1)), Invite: "nosuchcode", Now: t0}); !errors.Is(err, store.ErrInvalidInvite) {
		t.Errorf("bad invite: %v", err)
	}
	if _, err := h.s.Account("dave"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("refused registration left an account: %v", err)
	}
}

func testIdempotentAppend(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	first := h.append(message(alice1, 7, t0, bob1, bob2))
	if first.Duplicate || len(first.Entries) != 2 || !first.Time.Equal(t0) {
		t.Fatalf("first: %+v", first)
	}
	// Sent again, concurrently: one entry per device, every other answer a duplicate with the first time.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			res, err := h.s.Append(h.ctx, message(alice1, 7, t0.Add(time.Minute), bob1, bob2))
			if err != nil || !res.Duplicate || !res.Time.Equal(t0) || len(res.Entries) != 0 {
				t.Errorf("resend: %+v %v", res, err)
			}
		})
	}
	wg.Wait()
	for _, d := range []chat.Device{bob1, bob2} {
		if p := h.pending(d); len(p) != 1 {
			t.Errorf("%v has %d entries, want 1", d, len(p))
		}
	}
	// The id is the sender device's: another device may use it.
	if res := h.append(message(bob1, 7, t0, alice1, bob2)); res.Duplicate {
		t.Error("another sender's id taken as a duplicate")
	}
	// To one's own other devices: the sending device is excluded.
	if _, err := h.s.Append(h.ctx, message(bob1, 8, t0, bob2)); err != nil {
		t.Errorf("to own other device: %v", err)
	}
}

func testOrdering(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	const n = 60
	for i := range uint64(n) {
		h.append(message(alice1, i+1, t0.Add(time.Duration(i)*time.Millisecond), bob1, bob2))
	}
	for _, d := range []chat.Device{bob1, bob2} {
		var got []store.Entry
		var after uint64
		for { // in pages, as delivery reads them
			p, err := h.s.Pending(d, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) > 7 {
				t.Fatalf("page of %d entries, limit 7", len(p))
			}
			if len(p) == 0 {
				break
			}
			got = append(got, p...)
			after = p[len(p)-1].Seq
		}
		if len(got) != n {
			t.Fatalf("%v: %d entries, want %d", d, len(got), n)
		}
		for i, e := range got {
			if i > 0 && e.Seq <= got[i-1].Seq {
				t.Errorf("%v: seq %d after %d", d, e.Seq, got[i-1].Seq)
			}
			if !bytes.Equal(e.MessageID, msgID(uint64(i+1))) {
				t.Errorf("%v: entry %d is message %x", d, i, e.MessageID)
			}
		}
	}
	// Concurrent appends: each device's sequence numbers are unique and
	// Pending lists them in increasing order.
	var wg sync.WaitGroup
	for i := range uint64(40) {
		wg.Go(func() { h.append(message(alice1, 1000+i, t0, bob1, bob2)) })
	}
	wg.Wait()
	for _, d := range []chat.Device{bob1, bob2} {
		p := h.pending(d)
		if len(p) != n+40 || !slices.IsSortedFunc(p, func(a, b store.Entry) int { return cmp.Compare(a.Seq, b.Seq) }) {
			t.Errorf("%v: %d entries, sorted %v", d, len(p), slices.IsSortedFunc(p, func(a, b store.Entry) int { return cmp.Compare(a.Seq, b.Seq) }))
		}
		seen := map[uint64]bool{}
		for _, e := range p {
			if seen[e.Seq] {
				t.Errorf("%v: seq %d twice", d, e.Seq)
			}
			seen[e.Seq] = true
		}
	}
}

func testAck(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 1, 0)
	for i := range uint64(5) {
		h.append(message(alice1, i+1, t0, bob1))
	}
	p := h.pending(bob1)
	h.s.Ack(bob1, []uint64{p[0].Seq, p[3].Seq, 1 << 40}) // an unknown seq is no error
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	rest := h.pending(bob1)
	if len(rest) != 3 || rest[0].Seq != p[1].Seq || rest[1].Seq != p[2].Seq || rest[2].Seq != p[4].Seq {
		t.Errorf("after ack: %+v", rest)
	}
	if q, _ := h.s.Pending(bob1, p[2].Seq, 10); len(q) != 1 || q[0].Seq != p[4].Seq {
		t.Errorf("pending after %d: %+v", p[2].Seq, q)
	}
	// New entries never reuse an acked entry's sequence number.
	h.append(message(alice1, 9, t0, bob1))
	if q := h.pending(bob1); q[len(q)-1].Seq <= p[4].Seq {
		t.Errorf("new entry has seq %d, not after %d", q[len(q)-1].Seq, p[4].Seq)
	}
}

func testExpiry(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	for i := range uint64(10) {
		h.append(message(alice1, i+1, t0.Add(time.Duration(i)*time.Hour), bob1, bob2))
	}
	// Everything stored before t0+5h goes: 5 messages to 2 devices, and
	// their 5 resend records, 3 deletions at a time.
	cutoff := t0.Add(5 * time.Hour)
	total, calls := 0, 0
	for {
		n, more, err := h.s.Expire(h.ctx, cutoff, 3)
		if err != nil {
			t.Fatal(err)
		}
		if n > 3 {
			t.Fatalf("one call removed %d entries, limit 3", n)
		}
		total += n
		calls++
		if !more {
			break
		}
		if calls > 20 {
			t.Fatal("expiry never finishes")
		}
	}
	if total != 10 || calls < 4 {
		t.Errorf("expired %d entries in %d calls, want 10 in at least 4", total, calls)
	}
	for _, d := range []chat.Device{bob1, bob2} {
		p := h.pending(d)
		if len(p) != 5 || !p[0].Time.Equal(cutoff) {
			t.Errorf("%v after expiry: %d entries, first at %v", d, len(p), p[0].Time)
		}
	}
	// Expired resend records are gone too: the same id stores again; a
	// kept one still answers duplicate.
	if res := h.append(message(alice1, 1, t0.Add(20*time.Hour), bob1, bob2)); res.Duplicate {
		t.Error("expired id still a duplicate")
	}
	if res := h.append(message(alice1, 6, t0.Add(20*time.Hour), bob1, bob2)); !res.Duplicate {
		t.Error("kept id not a duplicate")
	}
	if n, more, err := h.s.Expire(h.ctx, cutoff, 3); n != 0 || more || err != nil {
		t.Errorf("second expiry: %d %v %v", n, more, err)
	}
	if st := h.s.Stats(); st.QueueDepth != 12 || st.Bytes <= 0 {
		t.Errorf("stats %+v, want queue depth 12", st)
	}
}
