package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
)

func TestFanOut(t *testing.T) {
	t.Parallel()
	lists := map[string][]chat.Device{
		"alice": {{User: "alice", ID: 1}, {User: "alice", ID: 2}},
		"bob":   {{User: "bob", ID: 1}, {User: "bob", ID: 3}},
		"carol": {{User: "carol", ID: 5}},
	}
	devices := func(user string) ([]chat.Device, error) {
		if user == "nobody" {
			return nil, errors.New("no such user")
		}
		return lists[user], nil
	}
	self := chat.Device{User: "alice", ID: 1}
	tests := []struct {
		name    string
		members []string
		want    []chat.Device
	}{
		{"a peer: its devices and my other ones", []string{"bob"}, []chat.Device{{User: "bob", ID: 1}, {User: "bob", ID: 3}, {User: "alice", ID: 2}}},
		{"members: every device of each", []string{"bob", "carol"}, []chat.Device{{User: "bob", ID: 1}, {User: "bob", ID: 3}, {User: "carol", ID: 5}, {User: "alice", ID: 2}}},
		{"myself: my other devices, once", []string{"alice"}, []chat.Device{{User: "alice", ID: 2}}},
		{"a member listed twice counts once", []string{"carol", "carol"}, []chat.Device{{User: "carol", ID: 5}, {User: "alice", ID: 2}}},
	}
	for _, tt := range tests {
		got, err := fanOut(self, tt.members, devices)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: fanOut = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := fanOut(self, []string{"bob", "nobody"}, devices); err == nil {
		t.Error("a member whose devices cannot be listed was skipped")
	}
}

// linkedDevice logs a second device of user in and links it with the
// identity of the device in first, as linking will (protocol.md §9.1).
func linkedDevice(t *testing.T, s *testServer, first *home.Home) *home.Home {
	t.Helper()
	p1 := mustProfile(t, first)
	h, err := home.Open(filepath.Join(t.TempDir(), p1.User+"2"), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, h) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p2, err := Login(ctx, h, EnrollOptions{Server: s.addr, User: p1.User, Password: "password1", Pin: s.fp})
	if err != nil {
		t.Fatal(err)
	}
	k1, err := e2ee.ParseDeviceKeys(p1.Keys)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := e2ee.NewDeviceKeys(nil, k1.IdentityPrivateKey(), e2ee.DeviceInfo{User: p2.User, DeviceID: p2.Device, AuthKey: p2.DeviceKey.Public().(ed25519.PublicKey)}, time.Now(), oneTimeTarget, oneTimeTarget)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Keys, err = k2.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if err := h.SaveProfile(p2); err != nil {
		t.Fatal(err)
	}
	// The account's signed device list names it (protocol.md §9.8), as
	// approving a link does.
	c1 := connectHome(t, first, false)
	defer c1.Close()
	dl, err := c1.DeviceList(ctx, p1.User)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := e2ee.ParseDeviceList(dl.SignedList)
	if err != nil {
		t.Fatal(err)
	}
	next := &e2ee.DeviceList{User: p1.User, Seq: cur.Seq + 1, Time: 1, Devices: append(cur.Devices, entryOf(p2.Device, p2.DeviceKey.Public().(ed25519.PublicKey)))}
	if err := e2ee.SignDeviceList(next, k1.IdentityPrivateKey()); err != nil {
		t.Fatal(err)
	}
	b, err := next.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.PublishDeviceList(ctx, b); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestOwnDevicesGetCopies: a message to a peer also goes to the sender's
// other devices, which file it as outgoing in the conversation with the
// peer, and the peer's answer reaches every device of the sender.
func TestOwnDevicesGetCopies(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ha2 := linkedDevice(t, s, ha)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fast := EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	phone, err := StartEngine(ha2, fast) // publishes the second device's keys
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	connected := waitEvent(t, phone, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })
	if connected.Err != nil {
		t.Fatalf("the linked device's keys: %v", connected.Err)
	}
	alice, err := Connect(ctx, ha, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	if _, err := alice.SendText(ctx, "bob", "to bob, and a copy for my phone"); err != nil {
		t.Fatal(err)
	}
	m := nextEvent(t, bob).Message
	if m.Kind != chat.KindText || m.From != (chat.Device{User: "alice", ID: 1}) || m.Conversation != chat.Peer("alice") || m.Outgoing {
		t.Fatalf("bob got %+v", m)
	}
	bob.Ack(m)
	copied := waitEvent(t, phone, "the copy", func(ev UIEvent) bool { return ev.Type == UIMessage })
	if copied.Conversation != chat.Peer("bob") || !copied.Entry.Outgoing || copied.Entry.Text != "to bob, and a copy for my phone" || copied.Entry.State != StateStored {
		t.Fatalf("the phone filed the copy as %+v in %v", copied.Entry, copied.Conversation)
	}
	convs, _ := phone.Conversations()
	if len(convs) != 1 || convs[0].Conversation != chat.Peer("bob") || convs[0].Unread != 0 {
		t.Errorf("the phone's conversations: %+v", convs)
	}

	// bob's answer goes to both of alice's devices.
	if _, err := bob.SendText(ctx, "alice", "hello, both of you"); err != nil {
		t.Fatal(err)
	}
	answer := waitEvent(t, phone, "bob's answer", func(ev UIEvent) bool { return ev.Type == UIMessage })
	if answer.Conversation != chat.Peer("bob") || answer.Entry.Outgoing || answer.Entry.Text != "hello, both of you" {
		t.Fatalf("the phone got %+v", answer.Entry)
	}
	laptop, err := Connect(ctx, ha, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer laptop.Close()
	if m := nextEvent(t, laptop).Message; m.Text != "hello, both of you" || m.Outgoing {
		t.Fatalf("the first device got %+v", m)
	}
	hist, _ := phone.History(chat.Peer("bob"), "", 10)
	if len(hist) != 2 || !hist[0].Outgoing || hist[1].Outgoing {
		t.Errorf("the phone's history with bob: %+v", hist)
	}
}

// TestSenderKeysPerGroup: the session layer keeps this device's sending
// chain and other members' chains per group in its store, across reloads.
func TestSenderKeysPerGroup(t *testing.T) {
	t.Parallel()
	h, err := home.Open(t.TempDir(), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer closeChecked(t, h)
	c := &Client{home: h, sessions: h, prof: &home.Profile{User: "alice", Device: 1}, rand: rand.Reader}
	friends, family := chat.Group("friends"), chat.Group("family")
	k, err := c.ownSenderKey(friends)
	if err != nil {
		t.Fatal(err)
	}
	dist := k.Distribution() // what the other members get, before the first message
	msg, err := k.Encrypt([]byte("hello friends"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.saveSenderKey(friends, chat.Device{User: "alice", ID: 1}, k); err != nil {
		t.Fatal(err)
	}
	again, err := c.ownSenderKey(friends)
	if err != nil || again.ChainID() != k.ChainID() || again.Iteration() != 1 {
		t.Fatalf("the chain reloaded: %v, %v", again, err)
	}
	if other, err := c.ownSenderKey(family); err != nil || other.Distribution().DistributionID == dist.DistributionID {
		t.Fatalf("another group's chain is the same: %v", err)
	}

	// What carol's device keeps of alice's chain.
	hc, err := home.Open(t.TempDir(), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer closeChecked(t, hc)
	carol := &Client{home: hc, sessions: hc, prof: &home.Profile{User: "carol", Device: 4}, rand: rand.Reader}
	from := chat.Device{User: "alice", ID: 1}
	if r, err := carol.peerSenderKeys(friends, from); err != nil || r != nil {
		t.Fatalf("chains before any: %v, %v", r, err)
	}
	if err := carol.saveSenderKey(friends, from, e2ee.NewSenderKeyRecord(dist)); err != nil {
		t.Fatal(err)
	}
	r, err := carol.peerSenderKeys(friends, from)
	if err != nil || r == nil {
		t.Fatalf("alice's chain: %v, %v", r, err)
	}
	if plain, err := r.Decrypt(msg, nil); err != nil || string(plain) != "hello friends" {
		t.Errorf("alice's message with the kept chain: %q, %v", plain, err)
	}
}
