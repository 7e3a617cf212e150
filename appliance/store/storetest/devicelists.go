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

// Linked devices and the signed device list (protocol.md §5.4): the store
// keeps the list's bytes and sequence number, adds a linked device with
// its list and revokes one with its list, each in one commit.

// list is a signed list of seq naming devs under their suite keys; its
// bytes are opaque to the store.
func list(seq uint64, devs ...chat.Device) store.NewList {
	l := store.NewList{SignedList: store.SignedList{Seq: seq, Bytes: fmt.Appendf(nil, "list %d of %v", seq, devs)}}
	for _, d := range devs {
		l.Devices = append(l.Devices, store.ListedDevice{ID: d.ID, Key: deviceKeyOf(d)})
	}
	return l
}

func (h *harness) storedList(user string) store.SignedList {
	h.t.Helper()
	l, err := h.s.DeviceList(user)
	if err != nil {
		h.t.Fatalf("device list of %s: %v", user, err)
	}
	return l
}

func testDeviceLists(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 1, 0)
	if l := h.storedList("alice"); l.Seq != 0 || l.Bytes != nil {
		t.Fatalf("a new account's list: %+v", l)
	}
	if _, err := h.s.DeviceList("nobody"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("list of nobody: %v", err)
	}
	if err := h.s.PutDeviceList(h.ctx, "alice", list(1, alice1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		l    store.NewList
		want error
	}{
		{"the same seq again", list(1, alice1), store.ErrStaleDeviceList},
		{"an older seq", list(0, alice1), store.ErrStaleDeviceList},
		{"a device the account does not have", list(2, alice1, chat.DeviceOf("alice", 2)), store.ErrDeviceListRefused},
		{"another account's device", list(2, alice1, bob1), store.ErrDeviceListRefused},
	} {
		if err := h.s.PutDeviceList(h.ctx, "alice", tc.l); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	wrongKey := list(2, alice1)
	wrongKey.Devices[0].Key = deviceKeyOf(bob1)
	if err := h.s.PutDeviceList(h.ctx, "alice", wrongKey); !errors.Is(err, store.ErrDeviceListRefused) {
		t.Errorf("a device under another key: %v", err)
	}

	// Linking: an id reserved, the device and its list in one commit.
	id, err := h.s.ReserveDevice(h.ctx, "alice")
	if err != nil || id != 2 {
		t.Fatalf("reserve: %d %v", id, err)
	}
	alice2 := chat.DeviceOf("alice", id)
	dev := store.NewDevice{Device: alice2, Key: deviceKeyOf(alice2), Name: "phone", Now: t0.Add(time.Minute)}
	for _, tc := range []struct {
		name string
		dev  store.NewDevice
		l    store.NewList
		want error
	}{
		{"a list without the new device", dev, list(2, alice1), store.ErrDeviceListRefused},
		{"a stale list", dev, list(1, alice1, alice2), store.ErrStaleDeviceList},
		{"an id not reserved", store.NewDevice{Device: chat.DeviceOf("alice", 9), Key: deviceKeyOf(chat.DeviceOf("alice", 9)), Now: t0}, list(2, alice1, chat.DeviceOf("alice", 9)), store.ErrDeviceListRefused},
		{"an id in use", store.NewDevice{Device: alice1, Key: deviceKeyOf(alice1), Now: t0}, list(2, alice1), store.ErrDeviceListRefused},
	} {
		if err := h.s.LinkDevice(h.ctx, tc.dev, tc.l); !errors.Is(err, tc.want) {
			t.Errorf("link with %s: %v, want %v", tc.name, err, tc.want)
		}
		if _, err := h.s.Device(alice2); !errors.Is(err, store.ErrNoSuchDevice) {
			t.Errorf("link with %s added the device: %v", tc.name, err)
		}
		if l := h.storedList("alice"); l.Seq != 1 {
			t.Errorf("link with %s stored list %d", tc.name, l.Seq)
		}
	}
	if err := h.s.LinkDevice(h.ctx, dev, list(2, alice1, alice2)); err != nil {
		t.Fatalf("link: %v", err)
	}
	h.reopen()
	rec, err := h.s.Device(alice2)
	if err != nil || rec.Name != "phone" || !rec.Created.Equal(dev.Now) || !bytes.Equal(rec.Key, deviceKeyOf(alice2)) {
		t.Errorf("linked device after reopen: %+v %v", rec, err)
	}
	if l := h.storedList("alice"); l.Seq != 2 || !bytes.Equal(l.Bytes, list(2, alice1, alice2).Bytes) {
		t.Errorf("list after linking: %d %q", l.Seq, l.Bytes)
	}
	if err := h.s.LinkDevice(h.ctx, dev, list(3, alice1, alice2)); !errors.Is(err, store.ErrDeviceListRefused) {
		t.Errorf("the same id linked twice: %v", err)
	}
	devs, err := h.s.ListDevices("alice")
	if err != nil || len(devs) != 2 || devs[0].Name != "first" || devs[1].Name != "phone" {
		t.Errorf("list devices: %+v %v", devs, err)
	}
	// Renaming: the name, kept across a reopen; a device that is not, refused.
	if err := h.s.RenameDevice(h.ctx, alice2, "tablet"); err != nil {
		t.Errorf("rename: %v", err)
	}
	if err := h.s.RenameDevice(h.ctx, chat.DeviceOf("alice", 40), "x"); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("rename a device that does not exist: %v", err)
	}
	h.reopen()
	if rec, err := h.s.Device(alice2); err != nil || rec.Name != "tablet" || !rec.Created.Equal(dev.Now) {
		t.Errorf("renamed device after reopen: %+v %v", rec, err)
	}
	// A login after a reservation gets the next id: ids are never reused.
	if d, err := h.s.AddDevice(h.ctx, "alice", "phc alice", deviceKeyOf(chat.DeviceOf("alice", 3)), "pw", t0); err != nil || d.ID != 3 {
		t.Errorf("login after a link: %v %v", d, err)
	}

	// Revoking: the device, its mailbox and prekeys go, the tombstone and
	// the list stay, in one commit.
	h.publish(alice2, 3, false)
	h.append(message(bob1, 1, t0, alice1, alice2))
	if err := h.s.RevokeDevice(h.ctx, alice2, list(3, alice1, alice2), t0); !errors.Is(err, store.ErrDeviceListRefused) {
		t.Errorf("revoke with a list naming the device: %v", err)
	}
	if err := h.s.RevokeDevice(h.ctx, alice2, list(2, alice1), t0); !errors.Is(err, store.ErrStaleDeviceList) {
		t.Errorf("revoke with a stale list: %v", err)
	}
	if _, err := h.s.Device(alice2); err != nil {
		t.Errorf("a refused revocation removed the device: %v", err)
	}
	if err := h.s.RevokeDevice(h.ctx, chat.DeviceOf("alice", 40), list(3, alice1), t0); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("revoke a device that does not exist: %v", err)
	}
	before := h.s.Stats().QueueDepth
	revokedAt := t0.Add(time.Hour)
	if err := h.s.RevokeDevice(h.ctx, alice2, list(3, alice1), revokedAt); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	h.reopen()
	if _, err := h.s.Device(alice2); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("revoked device: %v", err)
	}
	if n := h.s.Stats().QueueDepth; n != before-1 {
		t.Errorf("queue depth %d after revoking a device with 1 entry, was %d", n, before)
	}
	if kc, err := h.s.KeyCount(alice2); err == nil && kc.Published {
		t.Errorf("revoked device still has keys: %+v", kc)
	}
	if act, _ := h.s.ActiveDevices("alice"); len(act) != 1 || act[0].Device != alice1 {
		t.Errorf("active devices after revoking: %+v", act)
	}
	tomb, err := h.s.Revoked(alice2)
	if err != nil || !bytes.Equal(tomb.Key, deviceKeyOf(alice2)) || !tomb.Revoked.Equal(revokedAt) {
		t.Errorf("tombstone: %+v %v", tomb, err)
	}
	if _, err := h.s.Revoked(alice1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tombstone of a device not revoked: %v", err)
	}
	if l := h.storedList("alice"); l.Seq != 3 {
		t.Errorf("list after revoking: %d", l.Seq)
	}
	// A revoked id is never linked again.
	if err := h.s.LinkDevice(h.ctx, dev, list(4, alice1, alice2)); !errors.Is(err, store.ErrDeviceListRefused) {
		t.Errorf("a revoked id linked again: %v", err)
	}

	// The tombstones are bounded: the oldest go.
	for i := range store.MaxRevoked + 2 {
		d, err := h.s.AddDevice(h.ctx, "bob", "phc bob", deviceKeyOf(chat.DeviceOf("bob", uint32(i+2))), "", t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.s.RevokeDevice(h.ctx, d, list(uint64(i+1), bob1), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range store.MaxRevoked + 2 {
		_, err := h.s.Revoked(chat.DeviceOf("bob", uint32(i+2)))
		if kept := i >= 2; kept != (err == nil) {
			t.Errorf("tombstone %d of %d: %v", i+1, store.MaxRevoked+2, err)
		}
	}
	if err := h.s.DeleteAccount(h.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "alice", PasswordHash: "x", DeviceKey: deviceKeyOf(alice1), Now: t0}); err != nil {
		t.Fatal(err)
	}
	if l := h.storedList("alice"); l.Seq != 0 {
		t.Errorf("a deleted account's list outlived it: %d", l.Seq)
	}
	if _, err := h.s.Revoked(alice2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted account's tombstone outlived it: %v", err)
	}
}

// testLinkRollbackInBatch: a LinkDevice or RevokeDevice refused after it
// wrote in its transaction (the list's check runs after the device is put
// or removed) rolls back alone: the writes committed with it stay, and
// nothing of it is seen, also after a reopen.
func testLinkRollbackInBatch(t *testing.T, h *harness) {
	h.account("alice", 2, 0)
	h.account("bob", 2, 0)
	alice2 := chat.DeviceOf("alice", 2)
	if err := h.s.PutDeviceList(h.ctx, "alice", list(1, alice1, alice2)); err != nil {
		t.Fatal(err)
	}
	const n = 40
	ids := make([]uint32, n)
	for i := range ids {
		id, err := h.s.ReserveDevice(h.ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	var wg sync.WaitGroup
	errs := make([]error, 3*n)
	for i := range n {
		d := chat.DeviceOf("alice", ids[i])
		// Refused after the device is put: the list names a device the
		// account does not have.
		wg.Go(func() {
			errs[i] = h.s.LinkDevice(h.ctx, store.NewDevice{Device: d, Key: deviceKeyOf(d), Now: t0}, list(2, alice1, d, chat.DeviceOf("alice", 999)))
		})
		// Refused after the device is removed: likewise.
		wg.Go(func() {
			errs[n+i] = h.s.RevokeDevice(h.ctx, alice2, list(2, alice1, chat.DeviceOf("alice", 999)), t0)
		})
		wg.Go(func() {
			_, errs[2*n+i] = h.s.Append(h.ctx, message(bob1, uint64(i+1), t0, alice1, alice2, bob2))
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i < 2*n && !errors.Is(err, store.ErrDeviceListRefused):
			t.Errorf("refused write %d: %v", i, err)
		case i >= 2*n && err != nil:
			t.Errorf("append %d beside refused links: %v", i-2*n, err)
		}
	}
	h.reopen()
	for _, id := range ids {
		if _, err := h.s.Device(chat.DeviceOf("alice", id)); !errors.Is(err, store.ErrNoSuchDevice) {
			t.Errorf("a refused link left device %d: %v", id, err)
		}
	}
	if _, err := h.s.Device(alice2); err != nil {
		t.Errorf("a refused revocation removed the device: %v", err)
	}
	if _, err := h.s.Revoked(alice2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused revocation left a tombstone: %v", err)
	}
	if l := h.storedList("alice"); l.Seq != 1 {
		t.Errorf("refused lists stored: seq %d", l.Seq)
	}
	for _, d := range []chat.Device{alice1, alice2, bob2} {
		if p := h.pending(d); len(p) != n {
			t.Errorf("%v has %d entries, want %d", d, len(p), n)
		}
	}
}
