package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Tests of linking a device and of the signed device list through a real
// server (protocol.md §5.4): each request's success and its refusals.

// connectHome authenticates h's device.
func connectHome(t *testing.T, h *home.Home, receive bool) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, h, Options{Receive: receive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// entryOf is a device list entry for a device key.
func entryOf(device uint32, key ed25519.PublicKey) e2ee.DeviceListEntry {
	e := e2ee.DeviceListEntry{Device: device, Added: 1}
	copy(e.AuthKey[:], key)
	return e
}

// signedList signs a list of user with identity. seq counts from the list
// registration published (sequence number 1): the list signed is seq+1.
func signedList(t *testing.T, identity e2ee.IdentityPrivateKey, user string, seq uint64, entries ...e2ee.DeviceListEntry) []byte {
	t.Helper()
	l := &e2ee.DeviceList{User: user, Seq: seq + 1, Time: 1, Devices: entries}
	if err := e2ee.SignDeviceList(l, identity); err != nil {
		t.Fatal(err)
	}
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// me is c's own list entry.
func (c *Client) me() e2ee.DeviceListEntry {
	return entryOf(c.prof.Device, c.prof.DeviceKey.Public().(ed25519.PublicKey))
}

// newDevice is a device about to be linked: its keys.
type newDevice struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	link *ecdh.PrivateKey
}

func makeNewDevice(t *testing.T) newDevice {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := e2ee.NewLinkKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return newDevice{priv: priv, pub: pub, link: lk}
}

func (n newDevice) code(user string) string {
	return e2ee.LinkCode(user, n.pub, n.link.PublicKey().Bytes())
}

func (n newDevice) start(t *testing.T, s *testServer, user string) *LinkWait {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := StartLink(ctx, s.addr, s.fp, user, "phone", n.priv, n.link.PublicKey().Bytes())
	if err != nil {
		t.Fatalf("start link: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// wantRefusal checks that err is a server error of code whose message
// holds text.
func wantRefusal(t *testing.T, what string, err error, code transport.ErrorCode, text string) {
	t.Helper()
	var e *transport.Error
	if !errors.As(err, &e) || e.Code != code || !strings.Contains(e.Message, text) {
		t.Errorf("%s: %v, want %s with %q", what, err, code, text)
	}
}

// linkedHome is the home of a device linked as device of user, with keys
// under the account's identity, as the new device makes it from the
// sealed answer.
func linkedHome(t *testing.T, s *testServer, user string, device uint32, n newDevice, identity e2ee.IdentityPrivateKey) *home.Home {
	t.Helper()
	h, err := home.Open(filepath.Join(t.TempDir(), "linked"), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, h) })
	keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: device, AuthKey: n.pub}, time.Now(), 5, 5)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := keys.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SaveProfile(&home.Profile{Server: s.addr, Fingerprint: s.fp, User: user, Device: device, DeviceKey: n.priv, Keys: kb}); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLinkDevice: a new device waits with its code, the account's device
// finds it (another account cannot), every bad list is refused, and the
// approval adds it with the list in one step, hands it the sealed answer
// and makes it a device that authenticates and receives.
func TestLinkDevice(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	id := alice.keys.IdentityPrivateKey()
	list1 := signedList(t, id, "alice", 1, alice.me())
	if err := alice.PublishDeviceList(ctx, list1); err != nil {
		t.Fatalf("first list: %v", err)
	}

	n := makeNewDevice(t)
	w := n.start(t, s, "alice")
	if !w.Fingerprint.Equal(s.fp) || !w.Expires.After(time.Now()) {
		t.Errorf("link wait: %+v", w)
	}
	code := n.code("alice")
	_, err := bob.FindLink(ctx, code)
	wantRefusal(t, "another account's code", err, transport.ErrNoSuchUser, "no device is waiting with this code")
	_, err = alice.FindLink(ctx, "ABCD-EFGH")
	wantRefusal(t, "a short code", err, transport.ErrBadRequest, "not a link code")
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	info, err := alice.FindLink(ctx, typed)
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	if info.Device != 2 || !bytes.Equal(info.DeviceKey, n.pub) || !bytes.Equal(info.LinkKey, n.link.PublicKey().Bytes()) || info.DeviceName != "phone" {
		t.Errorf("link info: %+v, want alice's next id, 2", info)
	}
	if again, err := alice.FindLink(ctx, code); err != nil || again.Device != info.Device {
		t.Errorf("found again: %+v %v, want the same reserved id", again, err)
	}
	dev := info.Device
	sealed, err := e2ee.SealLink(nil, info.LinkKey, []byte("the account identity and list"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := e2ee.GenerateIdentityKey(nil)
	for _, tc := range []struct {
		name   string
		device uint32
		list   []byte
		want   string
	}{
		{"a list signed by another identity", dev, signedList(t, other, "alice", 2, alice.me(), entryOf(dev, n.pub)), "not signed by the account's identity key"},
		{"bob's list", dev, signedList(t, id, "bob", 2, alice.me(), entryOf(dev, n.pub)), "not signed by the account's identity key, or not for this account"},
		{"a replayed sequence number", dev, signedList(t, id, "alice", 1, alice.me(), entryOf(dev, n.pub)), "not newer"},
		{"a list without the new device", dev, signedList(t, id, "alice", 2, alice.me()), "does not name the new device"},
		{"the new device under another key", dev, signedList(t, id, "alice", 2, alice.me(), entryOf(dev, bob.prof.DeviceKey.Public().(ed25519.PublicKey))), "does not name the new device"},
		{"a device not added", dev, signedList(t, id, "alice", 2, alice.me(), entryOf(dev, n.pub), entryOf(40, n.pub)), "names device 40, which the account does not have"},
		{"a list without the approver", dev, signedList(t, id, "alice", 2, entryOf(dev, n.pub)), "must name the device that sends it"},
		{"another device id", dev + 1, signedList(t, id, "alice", 2, alice.me(), entryOf(dev+1, n.pub)), "not the id kept"},
		{"garbage", dev, []byte("not a list"), "malformed device list"},
	} {
		err := alice.ApproveLink(ctx, code, tc.device, tc.list, sealed)
		wantRefusal(t, tc.name, err, transport.ErrBadRequest, tc.want)
	}
	if l, err := bob.DeviceList(ctx, "alice"); err != nil || !bytes.Equal(l.SignedList, list1) {
		t.Errorf("after refused approvals the list is %x, %v; want the first", l.SignedList, err)
	}

	list2 := signedList(t, id, "alice", 2, alice.me(), entryOf(dev, n.pub))
	if err := alice.ApproveLink(ctx, code, dev, list2, sealed); err != nil {
		t.Fatalf("approve: %v", err)
	}
	got, err := w.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if plain, err := e2ee.OpenLink(n.link, got.Sealed); got.Device != dev || err != nil || string(plain) != "the account identity and list" {
		t.Errorf("approval: device %d, %q, %v", got.Device, plain, err)
	}
	_, err = alice.FindLink(ctx, code)
	wantRefusal(t, "the code after approval", err, transport.ErrNoSuchUser, "no device is waiting")
	if l, err := bob.DeviceList(ctx, "alice"); err != nil || !bytes.Equal(l.SignedList, list2) || len(l.Devices) != 1 {
		t.Errorf("bob's view after the link: %d devices, list %x, %v", len(l.Devices), l.SignedList, err)
	}
	// The new device authenticates as itself, publishes its keys and is
	// a recipient from then on.
	linked := connectHome(t, linkedHome(t, s, "alice", dev, n, id), true)
	if linked.KeysError() != nil {
		t.Fatalf("linked device's keys: %v", linked.KeysError())
	}
	if l, err := bob.DeviceList(ctx, "alice"); err != nil || len(l.Devices) != 2 || l.Devices[1].ID != dev {
		t.Errorf("bob's view once the linked device published: %+v %v", l.Devices, err)
	}
	// The admin's users page lists it with its name, added and last seen.
	users, err := s.srv.Users(ctx)
	if err != nil || len(users) != 2 || len(users[0].DeviceList) != 2 {
		t.Fatalf("admin users: %+v %v", users, err)
	}
	if d := users[0].DeviceList[1]; d.ID != dev || d.Name != "phone" || d.Added.IsZero() || d.LastSeen.Before(d.Added) {
		t.Errorf("the linked device as the admin sees it: %+v", d)
	}
	// Publishing: a replayed list, and one without its publisher, are refused.
	wantRefusal(t, "a replayed list", alice.PublishDeviceList(ctx, list1), transport.ErrBadRequest, "not newer")
	wantRefusal(t, "a list without its publisher", linked.PublishDeviceList(ctx, signedList(t, id, "alice", 3, alice.me())), transport.ErrBadRequest, "must name the device that sends it")
	if err := linked.PublishDeviceList(ctx, signedList(t, id, "alice", 3, alice.me(), entryOf(dev, n.pub))); err != nil {
		t.Errorf("the linked device publishes: %v", err)
	}
}

// TestLinkAbandoned: a link whose new device's connection closed cannot
// be approved and adds nothing; a LinkStart whose signature does not
// verify is refused; pending links are bounded per address.
func TestLinkAbandoned(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	id := alice.keys.IdentityPrivateKey()

	n := makeNewDevice(t)
	w := n.start(t, s, "alice")
	info, err := alice.FindLink(ctx, n.code("alice"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The server learns of the close on the new device's connection,
	// not on alice's: wait until it has forgotten the link.
	for i := 0; ; i++ {
		if _, err := alice.FindLink(ctx, n.code("alice")); err != nil {
			break
		}
		if i == 50 {
			t.Fatal("the link outlived its connection")
		}
		time.Sleep(100 * time.Millisecond)
	}
	list := signedList(t, id, "alice", 1, alice.me(), entryOf(info.Device, n.pub))
	sealed, _ := e2ee.SealLink(nil, info.LinkKey, []byte("x"))
	err = alice.ApproveLink(ctx, n.code("alice"), info.Device, list, sealed)
	wantRefusal(t, "a link whose device went", err, transport.ErrNoSuchUser, "the new device stopped waiting")
	if l, err := alice.DeviceList(ctx, "alice"); err != nil || len(l.SignedList) == 0 || bytes.Equal(l.SignedList, list) {
		t.Errorf("a refused link stored its list (or the registration's is gone): %x %v", l.SignedList, err)
	}

	// A LinkStart whose signature is not the device key's.
	c, err := dial(ctx, nil, s.addr, &transport.Pinner{Pin: s.fp}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := &transport.LinkStart{User: "alice", DeviceKey: n.pub, LinkKey: n.link.PublicKey().Bytes(),
		Signature: ed25519.Sign(n.priv, transport.LinkStartTranscript("bob", n.link.PublicKey().Bytes()))}
	err = c.request(ctx, transport.CodeLinkStart, bad, transport.CodeLinkStarted, &transport.LinkStarted{})
	wantRefusal(t, "a bad signature", err, transport.ErrBadRequest, "signature does not verify")
	bad.User = "nobody"
	bad.Signature = ed25519.Sign(n.priv, transport.LinkStartTranscript("nobody", n.link.PublicKey().Bytes()))
	err = c.request(ctx, transport.CodeLinkStart, bad, transport.CodeLinkStarted, &transport.LinkStarted{})
	wantRefusal(t, "an unknown account", err, transport.ErrNoSuchUser, "nobody")
	c.Close()

	// At most 4 pending links from one address.
	for i := range 5 {
		d := makeNewDevice(t)
		w, err := StartLink(ctx, s.addr, s.fp, "alice", "", d.priv, d.link.PublicKey().Bytes())
		if i < 4 {
			if err != nil {
				t.Fatalf("link %d: %v", i+1, err)
			}
			defer w.Close()
			continue
		}
		wantRefusal(t, "a fifth pending link", err, transport.ErrRateLimited, "too many devices waiting to be linked")
	}
	// The linking requests of one account are rate limited.
	for i := 0; ; i++ {
		_, err := alice.FindLink(ctx, "0000-0000-0000")
		var e *transport.Error
		if errors.As(err, &e) && e.Code == transport.ErrRateLimited {
			wantRefusal(t, "many finds", err, transport.ErrRateLimited, "rate limited (device links and lists)")
			break
		}
		if i == 100 {
			t.Fatalf("100 finds were never rate limited: %v", err)
		}
	}
}

// TestRevokeDevice: a device revoked by another of its account is closed
// with CloseRevoked, told why when it authenticates again, and no longer
// a recipient; a device cannot revoke itself, and a list still naming the
// device or replayed is refused.
func TestRevokeDevice(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	id := alice.keys.IdentityPrivateKey()
	n := makeNewDevice(t)
	n.start(t, s, "alice")
	info, err := alice.FindLink(ctx, n.code("alice"))
	if err != nil {
		t.Fatal(err)
	}
	dev := info.Device
	sealed, _ := e2ee.SealLink(nil, info.LinkKey, []byte("x"))
	if err := alice.ApproveLink(ctx, n.code("alice"), dev, signedList(t, id, "alice", 1, alice.me(), entryOf(dev, n.pub)), sealed); err != nil {
		t.Fatal(err)
	}
	h2 := linkedHome(t, s, "alice", dev, n, id)
	linked := connectHome(t, h2, true)

	wantRefusal(t, "revoking itself", linked.RevokeDevice(ctx, dev, signedList(t, id, "alice", 2, entryOf(dev, n.pub))), transport.ErrBadRequest, "cannot revoke itself")
	wantRefusal(t, "a list still naming it", alice.RevokeDevice(ctx, dev, signedList(t, id, "alice", 2, alice.me(), entryOf(dev, n.pub))), transport.ErrBadRequest, "still names device")
	wantRefusal(t, "a replayed list", alice.RevokeDevice(ctx, dev, signedList(t, id, "alice", 1, alice.me())), transport.ErrBadRequest, "not newer")
	wantRefusal(t, "a device the account lacks", alice.RevokeDevice(ctx, 40, signedList(t, id, "alice", 2, alice.me())), transport.ErrBadRequest, "has no device 40")
	if l, err := bob.DeviceList(ctx, "alice"); err != nil || len(l.Devices) != 2 {
		t.Fatalf("before the revocation bob sees %+v %v", l.Devices, err)
	}

	list2 := signedList(t, id, "alice", 2, alice.me())
	if err := alice.RevokeDevice(ctx, dev, list2); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	var closed *ServerClosedError
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case ev := <-linked.Events():
			if ev.Type == EventClosed {
				if !errors.As(ev.Err, &closed) || closed.Code != transport.CloseRevoked || !strings.Contains(closed.Reason, "removed from the account") {
					t.Errorf("the revoked device's connection ended with %v", ev.Err)
				}
				break wait
			}
		case <-timeout:
			t.Fatal("the revoked device's connection stayed open")
		}
	}
	// The answer, or the close that follows it, says why.
	_, err = Connect(ctx, h2, Options{})
	var e *transport.Error
	switch {
	case err == nil || !strings.Contains(err.Error(), "this device was removed from the account"):
		t.Errorf("the revoked device's Auth: %v", err)
	case errors.As(err, &e) && e.Code != transport.ErrUnauthorized:
		t.Errorf("the revoked device's Auth: %v (code %s)", err, e.Code)
	case errors.As(err, &closed) && closed.Code != transport.CloseRevoked:
		t.Errorf("the revoked device's Auth closed with %d", closed.Code)
	}
	if l, err := bob.DeviceList(ctx, "alice"); err != nil || len(l.Devices) != 1 || !bytes.Equal(l.SignedList, list2) {
		t.Errorf("after the revocation bob sees %+v, list %x, %v", l.Devices, l.SignedList, err)
	}
}

// TestLinkWaitsPastAuthTimeout: a new device's waiting connection sends
// no frame and is not authenticated, yet neither auth_timeout nor
// afk_timeout closes it (the link's life does), while a connection that
// only stays unauthenticated is closed.
func TestLinkWaitsPastAuthTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Admin: "127.0.0.1:0",
		AuthTimeout: appliance.Duration(timeout), AFKTimeout: appliance.Duration(timeout),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	defer func() { stop(); <-done }()
	s := &testServer{t: t, addr: srv.Addr().String(), fp: srv.Fingerprint()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aliceHome := testAccount(t, s, "alice")

	idle, err := dial(ctx, nil, s.addr, &transport.Pinner{Pin: s.fp}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := makeNewDevice(t)
	w := n.start(t, s, "alice")
	select {
	case <-idle.done:
		var closed *ServerClosedError
		if !errors.As(idle.closedErr(nil), &closed) || closed.Code != transport.CloseAuthTimeout {
			t.Errorf("the unauthenticated connection ended with %v", idle.closedErr(nil))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("an unauthenticated connection outlived auth_timeout")
	}
	time.Sleep(5 * timeout) // past auth_timeout and afk_timeout, without a frame
	select {
	case <-w.c.done:
		t.Fatalf("the waiting connection was closed: %v", w.c.closedErr(nil))
	default:
	}
	alice := connectHome(t, aliceHome, false) // now: afk_timeout closes an idle authenticated one
	info, err := alice.FindLink(ctx, n.code("alice"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := e2ee.SealLink(nil, info.LinkKey, []byte("x"))
	id := alice.keys.IdentityPrivateKey()
	if err := alice.ApproveLink(ctx, n.code("alice"), info.Device, signedList(t, id, "alice", 1, alice.me(), entryOf(info.Device, n.pub)), sealed); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if got, err := w.Wait(ctx); err != nil || got.Device != info.Device {
		t.Errorf("wait: %+v %v", got, err)
	}
}
