package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
)

// Issue 14 blocker 1: a session is used only with the device it was
// started with. The server lists every device with its device key; a
// session with a device number the server lists under another key is with
// a device that no longer exists (re-created, or its account deleted and
// registered again), and a message in it could not be decrypted.

// sessionWith reads h's session with dev.
func sessionWith(t *testing.T, h *home.Home, dev chat.Device) *home.Session {
	t.Helper()
	st, err := h.LoadSessions([]chat.Device{dev})
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sessions[dev]
	if s == nil {
		t.Fatalf("no session with %v", dev)
	}
	return s
}

// sendOnce sends text from h over a connection of its own, as the
// send command does.
func sendOnce(t *testing.T, ctx context.Context, h *home.Home, to, text string) error {
	t.Helper()
	c, err := Connect(ctx, h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.SendText(ctx, to, text)
	return err
}

// TestSessionBoundToDeviceKey: a session records its peer device's key; a
// session whose recorded key differs from the listed one is not used (a
// new session is started from a fresh bundle and the old one dropped), and
// one kept before keys were recorded is replaced once and kept among the
// earlier sessions. bob decrypts every message.
func TestSessionBoundToDeviceKey(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bobDev := chat.Device{User: "bob", ID: 1}
	bobKey := mustProfile(t, hb).DeviceKey.Public().(ed25519.PublicKey)

	if err := sendOnce(t, ctx, ha, "bob", "one"); err != nil {
		t.Fatal(err)
	}
	first := sessionWith(t, ha, bobDev)
	if !bytes.Equal(first.DeviceKey, bobKey) {
		t.Fatalf("the session recorded device key %x, bob's is %x", first.DeviceKey, bobKey)
	}

	// A session with another device under bob's number.
	stale := *first
	stale.DeviceKey = bytes.Repeat([]byte{7}, ed25519.PublicKeySize)
	if err := ha.SaveSessions(&home.SessionChanges{Sessions: []*home.Session{&stale}}); err != nil {
		t.Fatal(err)
	}
	if err := sendOnce(t, ctx, ha, "bob", "two"); err != nil {
		t.Fatal(err)
	}
	second := sessionWith(t, ha, bobDev)
	if !bytes.Equal(second.DeviceKey, bobKey) || len(second.Initial) == 0 || bytes.Equal(second.Ratchet, stale.Ratchet) ||
		len(second.Previous) != 1 || !bytes.Equal(second.Previous[0].DeviceKey, stale.DeviceKey) {
		t.Fatalf("after a send to a device listed under another key: %v, want a new session with bob's key and the old one kept before it", second.DeviceKey)
	}

	// A session kept before device keys were recorded.
	legacy := *second
	legacy.DeviceKey = nil
	if err := ha.SaveSessions(&home.SessionChanges{Sessions: []*home.Session{&legacy}}); err != nil {
		t.Fatal(err)
	}
	if err := sendOnce(t, ctx, ha, "bob", "three"); err != nil {
		t.Fatal(err)
	}
	third := sessionWith(t, ha, bobDev)
	if !bytes.Equal(third.DeviceKey, bobKey) || bytes.Equal(third.Initial, legacy.Initial) || len(third.Previous) == 0 || !bytes.Equal(third.Previous[0].Ratchet, legacy.Ratchet) {
		t.Fatalf("after a send over a session without a device key: %+v, want a new one with bob's key, the old one earlier", third)
	}
	if err := sendOnce(t, ctx, ha, "bob", "four"); err != nil {
		t.Fatal(err)
	}
	if fourth := sessionWith(t, ha, bobDev); !bytes.Equal(fourth.Initial, third.Initial) {
		t.Fatal("a session whose device key matches was not reused")
	}

	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for _, want := range []string{"one", "two", "three", "four"} {
		m := nextEvent(t, bob).Message
		if m.Kind != chat.KindText || m.Text != want || m.From.User != "alice" || m.IdentityChanged {
			t.Fatalf("bob got %+v, want alice's %q", m, want)
		}
		if err := bob.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	// bob's answer goes to alice's device in a session that recorded it.
	if err := sendOnce(t, ctx, hb, "alice", "back"); err != nil {
		t.Fatal(err)
	}
	aliceKey := mustProfile(t, ha).DeviceKey.Public().(ed25519.PublicKey)
	if s := sessionWith(t, hb, chat.Device{User: "alice", ID: 1}); !bytes.Equal(s.DeviceKey, aliceKey) {
		t.Fatalf("bob's session with alice recorded device key %x, alice's is %x", s.DeviceKey, aliceKey)
	}
}

// TestEngineReregisteredRecipient: the terminal client's engine keeps its
// connection, and with it its device lists. bob's account is deleted and
// registered again under the same device number: alice's next message is
// refused with IdentityChangedError (state failed, an identity-changed
// event), not stored for a device that cannot decrypt it.
func TestEngineReregisteredRecipient(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha := testAccount(t, s, "alice")
	testAccount(t, s, "bob")
	fast := EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	alice, err := StartEngine(ha, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	waitEvent(t, alice, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })
	first, err := alice.Send(chat.Peer("bob"), "one")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, "one stored", func(ev UIEvent) bool { return ev.Type == UIState && ev.ID == first.ID && ev.State == StateStored })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.srv.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	testAccount(t, s, "bob") // a new home: a new identity, device 1 again

	second, err := alice.Send(chat.Peer("bob"), "two")
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, alice, "two refused", func(ev UIEvent) bool {
		return ev.Type == UIState && ev.ID == second.ID && ev.State != StateSending
	})
	var ic *IdentityChangedError
	if ev.State != StateFailed || !errors.As(ev.Err, &ic) || ic.User != "bob" {
		t.Fatalf("the message to the new bob: %v %v, want failed with bob's identity changed", ev.State, ev.Err)
	}
	waitEvent(t, alice, "identity changed", func(ev UIEvent) bool {
		return ev.Type == UIIdentityChanged && ev.Conversation == chat.Peer("bob")
	})
}
