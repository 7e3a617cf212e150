package storetest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

func testAccounts(t *testing.T, h *harness) {
	h.account("bob", 2, 0)
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "bob", PasswordHash: "other", DeviceKey: deviceKeyOf(bob1), Now: t0}); !errors.Is(err, store.ErrUserExists) {
		t.Errorf("second registration of bob: %v", err)
	}
	if _, err := h.s.AddDevice(h.ctx, "bob", "stale hash", deviceKeyOf(bob2), "", t0); !errors.Is(err, store.ErrCredentialsChanged) {
		t.Errorf("add device with a stale hash: %v", err)
	}
	if _, err := h.s.AddDevice(h.ctx, "nobody", "x", deviceKeyOf(bob2), "", t0); !errors.Is(err, store.ErrCredentialsChanged) {
		t.Errorf("add device to no account: %v", err)
	}
	// A device without published keys exists but receives nothing.
	d3, err := h.s.AddDevice(h.ctx, "bob", "phc bob", deviceKeyOf(chat.DeviceOf("bob", 3)), "phone", t0.Add(time.Hour))
	if err != nil || d3 != chat.DeviceOf("bob", 3) {
		t.Fatalf("third device: %v %v", d3, err)
	}
	if r, err := h.s.Device(d3); err != nil || r.Name != "phone" || !r.Key.Equal(deviceKeyOf(d3)) || !r.Created.Equal(t0.Add(time.Hour)) {
		t.Errorf("device record: %+v %v", r, err)
	}
	if _, err := h.s.Device(chat.DeviceOf("bob", 9)); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("unknown device: %v", err)
	}
	if list, err := h.s.ActiveDevices("bob"); err != nil || len(list) != 2 || list[0].Device != bob1 || list[1].Device != bob2 {
		t.Errorf("active devices: %+v %v", list, err)
	}
	if _, err := h.s.ActiveDevices("nobody"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("devices of nobody: %v", err)
	}
	h.s.TouchDevice(bob2, t0.Add(3*time.Hour))
	if err := h.s.Sync(h.ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.s.Device(bob2); !r.LastSeen.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("last seen %v after touch", r.LastSeen)
	}
	list, err := h.s.ListAccounts()
	if err != nil || len(list) != 1 || list[0].Name != "bob" || list[0].Devices != 3 || !list[0].LastSeen.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("accounts: %+v %v", list, err)
	}
	// Up to MaxDevices devices.
	for n := 4; n <= store.MaxDevices; n++ {
		if _, err := h.s.AddDevice(h.ctx, "bob", "phc bob", deviceKeyOf(chat.DeviceOf("bob", uint32(n))), "", t0); err != nil {
			t.Fatalf("device %d: %v", n, err)
		}
	}
	if _, err := h.s.AddDevice(h.ctx, "bob", "phc bob", deviceKeyOf(bob1), "", t0); !errors.Is(err, store.ErrTooManyDevices) {
		t.Errorf("device past the maximum: %v", err)
	}
	// Deleting removes the account, its devices, mailboxes and mute.
	h.account("alice", 1, 0)
	h.append(message(alice1, 1, t0, bob1, bob2))
	if err := h.s.PutMute(h.ctx, "bob", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteAccount(h.ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteAccount(h.ctx, "bob"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("second delete: %v", err)
	}
	h.reopen()
	if _, err := h.s.Account("bob"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("deleted account: %v", err)
	}
	if _, err := h.s.Device(bob1); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("deleted account's device: %v", err)
	}
	if p := h.pending(bob1); len(p) != 0 {
		t.Errorf("deleted account's mailbox: %d entries", len(p))
	}
	if m, _ := h.s.Mutes(); len(m) != 0 {
		t.Errorf("deleted account's mute: %v", m)
	}
	// The name is free again, and starts from device 1.
	h.account("bob", 1, 0)
	if p := h.pending(bob1); len(p) != 0 {
		t.Errorf("new bob inherited %d entries", len(p))
	}
}

func testPrekeys(t *testing.T, h *harness) {
	h.account("bob", 2, 3)
	if c, err := h.s.KeyCount(bob1); err != nil || c != (store.KeyCount{OneTime: 3, OneTimeKEM: 3, Published: true}) {
		t.Errorf("key count %+v %v", c, err)
	}
	if k, err := h.s.Identity("bob"); err != nil || !bytes.Equal(k, identity("bob")) {
		t.Errorf("identity %x %v", k, err)
	}
	seen := map[string]bool{}
	for i := range 5 {
		bundles, err := h.s.FetchBundles(h.ctx, "bob", nil)
		if err != nil || len(bundles) != 2 {
			t.Fatalf("fetch %d: %d bundles, %v", i, len(bundles), err)
		}
		for _, b := range bundles {
			d := chat.DeviceOf("bob", b.Device)
			up := upload(d, 3, false)
			if !bytes.Equal(b.Identity, up.Identity) || !bytes.Equal(b.Certificate, up.Certificate) || !bytes.Equal(b.SignedPreKey, up.SignedPreKey) {
				t.Fatalf("fetch %d: bundle of %v does not hold its published keys", i, d)
			}
			left := uint32(max(0, 3-i-1))
			if b.Left != (store.KeyCount{OneTime: left, OneTimeKEM: left, Published: true}) {
				t.Errorf("fetch %d: %v has %+v left", i, d, b.Left)
			}
			if i < 3 {
				if b.OneTime == nil || bytes.Equal(b.KEM, up.LastResortKEM) || seen[string(b.OneTime)] || seen[string(b.KEM)] {
					t.Fatalf("fetch %d: one-time keys of %v missing or handed out twice", i, d)
				}
				seen[string(b.OneTime)], seen[string(b.KEM)] = true, true
			} else if b.OneTime != nil || !bytes.Equal(b.KEM, up.LastResortKEM) {
				t.Fatalf("fetch %d: want no one-time prekey and the last-resort KEM key", i)
			}
		}
	}
	if bundles, err := h.s.FetchBundles(h.ctx, "bob", []uint32{2}); err != nil || len(bundles) != 1 || bundles[0].Device != 2 {
		t.Errorf("fetch of device 2 only: %+v %v", bundles, err)
	}
	if _, err := h.s.FetchBundles(h.ctx, "nobody", nil); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("fetch of nobody: %v", err)
	}
	// Another identity, or a certificate naming another device key, is refused.
	bad := upload(bob2, 1, false)
	bad.Identity = identity("mallory")
	if err := h.s.PublishKeys(h.ctx, bob2, bad); !errors.Is(err, store.ErrIdentityMismatch) {
		t.Errorf("another identity: %v", err)
	}
	bad = upload(bob2, 1, false)
	bad.AuthKey = deviceKeyOf(bob1)
	if err := h.s.PublishKeys(h.ctx, bob2, bad); !errors.Is(err, store.ErrDeviceKeyMismatch) {
		t.Errorf("another device key: %v", err)
	}
	if err := h.s.PublishKeys(h.ctx, chat.DeviceOf("bob", 7), upload(chat.DeviceOf("bob", 7), 1, false)); !errors.Is(err, store.ErrNoSuchDevice) {
		t.Errorf("keys of no device: %v", err)
	}
	// Replace drops the stored one-time keys; the count is capped.
	h.publish(bob1, 2, true)
	if c, _ := h.s.KeyCount(bob1); c.OneTime != 2 || c.OneTimeKEM != 2 {
		t.Errorf("after replace: %+v", c)
	}
	big := upload(bob1, 0, false)
	for i := range store.MaxOneTimeKeys + 5 {
		big.OneTime = append(big.OneTime, store.OneTimeKey{ID: uint32(100 + i), Key: fill(36, fmt.Sprint("otk ", i))})
	}
	if err := h.s.PublishKeys(h.ctx, bob1, big); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.s.KeyCount(bob1); c.OneTime != store.MaxOneTimeKeys {
		t.Errorf("%d one-time keys stored, cap %d", c.OneTime, store.MaxOneTimeKeys)
	}
	if c, _ := h.s.KeyCount(chat.DeviceOf("bob", 9)); c.Published {
		t.Errorf("key count of no device: %+v", c)
	}
}

func testBroadcast(t *testing.T, h *harness) {
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	// An account whose device has published no keys gets nothing.
	if err := h.s.CreateAccount(h.ctx, store.NewAccount{Name: "quiet", PasswordHash: "x", DeviceKey: deviceKeyOf(chat.DeviceOf("quiet", 1)), Now: t0}); err != nil {
		t.Fatal(err)
	}
	n, deliveries, err := h.s.Broadcast(h.ctx, msgID(99), []byte("notice"), t0)
	if err != nil || n != 2 || len(deliveries) != 3 {
		t.Fatalf("broadcast: %d accounts, %d deliveries, %v; want 2 and 3", n, len(deliveries), err)
	}
	h.reopen()
	for _, d := range []chat.Device{alice1, bob1, bob2} {
		p := h.pending(d)
		if len(p) != 1 || !p[0].From.IsZero() || string(p[0].Payload) != "notice" {
			t.Errorf("%v: %+v", d, p)
		}
	}
}

func testModeration(t *testing.T, h *harness) {
	bans := []store.Ban{
		{Target: "ip:10.0.0.0/8", Reason: "net", Created: t0},
		{Target: "user:mallory", Reason: "spam", Created: t0, Expires: t0.Add(time.Hour)},
	}
	for _, b := range bans {
		if err := h.s.PutBan(h.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	bans[0].Reason = "replaced"
	if err := h.s.PutBan(h.ctx, bans[0]); err != nil {
		t.Fatal(err)
	}
	if err := h.s.PutMute(h.ctx, "bob", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := h.s.PutMute(h.ctx, "carol", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	got, err := h.s.Bans()
	if err != nil || len(got) != 2 {
		t.Fatalf("bans: %+v %v", got, err)
	}
	for _, want := range bans {
		found := false
		for _, b := range got {
			found = found || (b.Target == want.Target && b.Reason == want.Reason && b.Created.Equal(want.Created) && b.Expires.Equal(want.Expires))
		}
		if !found {
			t.Errorf("ban %+v not in %+v", want, got)
		}
	}
	if err := h.s.DeleteBan(h.ctx, "ip:10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteBan(h.ctx, "ip:10.0.0.0/8"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second unban: %v", err)
	}
	mutes, err := h.s.Mutes()
	if err != nil || len(mutes) != 2 || !mutes["bob"].IsZero() || !mutes["carol"].Equal(t0.Add(time.Minute)) {
		t.Errorf("mutes: %v %v", mutes, err)
	}
	if err := h.s.DeleteMute(h.ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteMute(h.ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second unmute: %v", err)
	}
	h.reopen()
	if b, _ := h.s.Bans(); len(b) != 1 || b[0].Target != "user:mallory" {
		t.Errorf("bans after unban: %+v", b)
	}
	if m, _ := h.s.Mutes(); len(m) != 1 {
		t.Errorf("mutes after unmute: %v", m)
	}
}

func testInvites(t *testing.T, h *harness) {
	invites := []store.Invite{
		{Code: "twice", Uses: 2, Created: t0},
		{Code: "expiring", Uses: 5, Created: t0, Expires: t0.Add(time.Hour)},
	}
	for _, inv := range invites {
		if err := h.s.PutInvite(h.ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.s.PutInvite(h.ctx, invites[0]); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("same code again: %v", err)
	}
	register := func(name, code string, at time.Time) error {
		return h.s.CreateAccount(h.ctx, store.NewAccount{Name: name, PasswordHash: "x", DeviceKey: deviceKeyOf(chat.DeviceOf(name, 1)), Invite: code, Now: at})
	}
	for i, name := range []string{"u1", "u2"} {
		if err := register(name, "twice", t0); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	if err := register("u3", "twice", t0); !errors.Is(err, store.ErrInvalidInvite) {
		t.Errorf("third use of a two-use invite: %v", err)
	}
	if err := register("u3", "expiring", t0.Add(2*time.Hour)); !errors.Is(err, store.ErrInvalidInvite) {
		t.Errorf("expired invite: %v", err)
	}
	if err := register("u1", "expiring", t0); !errors.Is(err, store.ErrUserExists) {
		t.Errorf("taken name with an invite: %v", err)
	}
	h.reopen()
	list, err := h.s.Invites()
	if err != nil || len(list) != 2 {
		t.Fatalf("invites: %+v %v", list, err)
	}
	for _, inv := range list {
		want := map[string]int{"twice": 0, "expiring": 5}[inv.Code] // a refused registration takes no use
		if inv.Uses != want || !inv.Created.Equal(t0) {
			t.Errorf("invite %+v, want %d uses left", inv, want)
		}
	}
	if err := h.s.DeleteInvite(h.ctx, "expiring"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteInvite(h.ctx, "expiring"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second revoke: %v", err)
	}
}

func testMeta(t *testing.T, h *harness) {
	key, err := h.s.ServerKey(h.ctx, bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	if phc, err := h.s.AdminPasswordHash(); phc != "" || err != nil {
		t.Errorf("admin password before any: %q %v", phc, err)
	}
	if err := h.s.SetAdminPasswordHash(h.ctx, "$argon2id$x"); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	again, err := h.s.ServerKey(h.ctx, strings.NewReader("")) // a new key would fail to read rand
	if err != nil || !again.Equal(key) || !again.Public().(ed25519.PublicKey).Equal(key.Public()) {
		t.Errorf("server key changed across reopen: %v", err)
	}
	if phc, _ := h.s.AdminPasswordHash(); phc != "$argon2id$x" {
		t.Errorf("admin password %q", phc)
	}
	if err := h.s.SetAdminPasswordHash(h.ctx, ""); err != nil {
		t.Fatal(err)
	}
	if phc, _ := h.s.AdminPasswordHash(); phc != "" {
		t.Errorf("admin password %q after removal", phc)
	}
	h.s.Close()
	if err := h.s.PutMute(h.ctx, "x", time.Time{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	h.s = h.open(t, h.dir, h.bounds)
}
