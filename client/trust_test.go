package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Tests that trust follows what the user compared (issue 17 points 11, 12).

func newIdentityKey(t *testing.T) []byte {
	t.Helper()
	k, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().Bytes()
}

func oneShotEngine(t *testing.T, ctx context.Context, h *home.Home, receive bool) *Engine {
	t.Helper()
	e, err := OpenEngine(h, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Connect(ctx, receive); err != nil {
		t.Fatal(err)
	}
	return e
}

// A key swapped in between showing the safety number (securechat
// fingerprint bob) and accepting it (securechat trust bob) is not
// accepted: it does not replace the pending key, and trust accepts only
// the key whose number was shown, or the one whose number is given.
func TestTrustOnlyTheComparedKey(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha := testAccount(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k1, k2, k3 := newIdentityKey(t), newIdentityKey(t), newIdentityKey(t)
	ct := &home.Contact{Identity: k1}
	pendingSeen(ct, k2) // bob's key changes: k2 is pending
	if err := ha.SaveContact("bob", ct); err != nil {
		t.Fatal(err)
	}
	e := oneShotEngine(t, ctx, ha, false)
	defer e.Close()

	// trust before any number was shown accepts nothing.
	if _, err := e.Trust(chat.Peer("bob"), ""); err == nil || !strings.Contains(err.Error(), "fingerprint bob") {
		t.Fatalf("trust before the number was shown = %v, want a refusal", err)
	}
	shown, err := e.SafetyNumber(chat.Peer("bob")) // securechat fingerprint bob
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := e.safetyNumberOf("bob", k2)
	n3, _ := e.safetyNumberOf("bob", k3)
	if !shown.Changed || shown.Number != n2 {
		t.Fatalf("shown %+v, want the pending key k2's number", shown)
	}

	// The server offers yet another key: a conflict the user sees, not a
	// swap.
	ct, _ = ha.Contact("bob")
	if pendingSeen(ct, k3); !bytes.Equal(ct.Pending, k2) || !ct.Conflict {
		t.Fatalf("a second new key replaced the pending one: %+v", ct)
	}
	ha.SaveContact("bob", ct)
	if info, _ := e.SafetyNumber(chat.Peer("bob")); info.Number != n2 || !info.Conflict {
		t.Fatalf("after a second new key: %+v, want k2's number and the conflict", info)
	}
	// The swapped-in key's number is refused.
	if _, err := e.Trust(chat.Peer("bob"), n3); err == nil {
		t.Fatal("trust --safety-number of the swapped-in key succeeded")
	}
	accepted, err := e.Trust(chat.Peer("bob"), "")
	if err != nil || accepted != n2 {
		t.Fatalf("trust = %q, %v; want k2's number accepted", accepted, err)
	}
	if ct, _ := ha.Contact("bob"); !bytes.Equal(ct.Identity, k2) || ct.Pending != nil || ct.Conflict {
		t.Fatalf("bob after trust: %+v, want k2 trusted", ct)
	}

	// Even if a pending key changed by other means after it was shown,
	// trust refuses it: the shown key is bound.
	if err := ha.SaveContact("bob", &home.Contact{Identity: k1, Pending: k2, Shown: k2}); err != nil {
		t.Fatal(err)
	}
	if err := ha.SaveContact("bob", &home.Contact{Identity: k1, Pending: k3, Shown: k2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Trust(chat.Peer("bob"), ""); err == nil {
		t.Fatal("trust accepted a pending key that was never shown")
	}
	if _, err := e.Trust(chat.Peer("bob"), spaced(n2)); err == nil {
		t.Fatal("trust --safety-number of the shown key accepted the key that replaced it")
	}
	if accepted, err := e.Trust(chat.Peer("bob"), spaced(n3)); err != nil || accepted != n3 {
		t.Fatalf("trust --safety-number of the pending key = %q, %v", accepted, err)
	}
	if ct, _ := ha.Contact("bob"); !bytes.Equal(ct.Identity, k3) {
		t.Fatalf("bob after trust --safety-number: %+v", ct)
	}
}

// spaced is a safety number as people type it: groups of five.
func spaced(n string) string {
	var b strings.Builder
	for i := 0; i < len(n); i += 5 {
		b.WriteString(n[i:min(i+5, len(n))] + " ")
	}
	return b.String()
}

// A message that comes with an identity key this home has not accepted for
// its sender is delivered marked unverified (Verified false, the history
// entry Unverified), gets no delivery receipt, and receipts with such a key
// are not applied.
func TestUnacceptedKeyMarked(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// alice trusts another key for bob than the one bob's messages come
	// with (as if the server had swapped one of them).
	if err := ha.SaveContact("bob", &home.Contact{Identity: newIdentityKey(t)}); err != nil {
		t.Fatal(err)
	}
	bob := oneShotEngine(t, ctx, hb, false)
	for _, text := range []string{"it is me, bob", "really"} {
		if _, err := bob.SendText(ctx, "alice", text); err != nil {
			t.Fatal(err)
		}
	}
	bob.Close()

	alice := oneShotEngine(t, ctx, ha, true)
	defer alice.Close()
	var shown []*Message
	if err := alice.Receive(ctx, ReceiveOptions{Show: func(m *Message) error { shown = append(shown, m); return nil }}); err != nil {
		t.Fatal(err)
	}
	// Both decrypt, both marked: a message with a key not accepted starts
	// no session and so consumes no one-time prekey, and the second
	// carries the same initial header as the first.
	if len(shown) != 2 || shown[0].Verified() || shown[1].Verified() || shown[1].Text != "really" {
		t.Fatalf("shown %+v, want two messages marked unverified", shown)
	}
	h, _ := ha.History(chat.Peer("bob"), "", 10)
	if len(h) != 2 || !h[0].Unverified || !h[1].Unverified {
		t.Fatalf("history %+v, want the entries marked unverified", h)
	}
	if n := ha.Probe().Count("pending"); n != 0 {
		t.Errorf("%d receipts queued for a sender whose key is not accepted", n)
	}

	// A delivery receipt with an unaccepted key does not advance alice's
	// message; the same from the accepted key does.
	out := make([]byte, 16)
	out[0] = 7
	err := ha.Update(func(tx *home.Tx) error {
		_, err := tx.AddHistory(chat.Peer("bob"), &home.HistoryRecord{ID: out, From: "alice", Outgoing: true, Kind: chat.KindText, Text: "x", State: home.StateStored}, false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	receipt := func(id byte, changed bool) *Message {
		return &Message{ID: hex.EncodeToString([]byte{id}), rawID: bytes.Repeat([]byte{id}, 16), From: chat.Device{User: "bob", ID: 1},
			Conversation: chat.Peer("bob"), Kind: chat.KindDelivered, Refs: []string{hex.EncodeToString(out)}, IdentityChanged: changed}
	}
	state := func() DeliveryState {
		h, _ := ha.History(chat.Peer("bob"), "", 10)
		for _, e := range h {
			if e.Outgoing {
				return e.State
			}
		}
		return 0
	}
	if err := alice.incoming(alice.client(), []*Message{receipt(1, true)}, nil, false); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != StateStored {
		t.Fatalf("a receipt with an unaccepted key moved the message to %v", st)
	}
	if err := alice.incoming(alice.client(), []*Message{receipt(2, false)}, nil, false); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if st := state(); st != StateDelivered {
		t.Fatalf("a receipt with the accepted key left the message %v", st)
	}
}

// A typing signal that comes with an identity key not accepted for its
// sender is dropped; the same signal from the accepted key is handed on.
func TestUnacceptedTypingIgnored(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := oneShotEngine(t, ctx, hb, false)
	defer bob.Close()
	alice := oneShotEngine(t, ctx, ha, false)
	defer alice.Close()
	signal := func() []byte {
		t.Helper()
		id := make([]byte, 16)
		id[0] = 1
		send, err := bob.client().encryptTo(ctx, chat.Peer("alice"), []chat.Device{{User: "alice", ID: 1}}, &Content{Kind: chat.KindTyping, SentAt: 1}, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		return transport.Marshal(&transport.Signal{From: "bob", FromDevice: 1, MessageID: id, Payload: send.Envelopes[0].Payload})
	}
	typing := func() bool {
		select {
		case ev := <-alice.client().Events():
			return ev.Type == EventSignal && ev.Message.Kind == chat.KindTyping
		default:
			return false
		}
	}
	// alice holds another key for bob than his real one.
	if err := ha.SaveContact("bob", &home.Contact{Identity: newIdentityKey(t)}); err != nil {
		t.Fatal(err)
	}
	alice.client().handleSignal(signal())
	alice.client().handleSignal(signal())
	if typing() {
		t.Fatal("a typing signal with a key alice has not accepted was handed on")
	}
	// With bob's real key accepted, the same kind of signal is.
	ct, _ := ha.Contact("bob")
	if _, err := alice.Trust(chat.Peer("bob"), mustSafetyNumber(t, alice, ct.Pending)); err != nil {
		t.Fatal(err)
	}
	alice.client().handleSignal(signal())
	if !typing() {
		t.Fatal("a typing signal with the accepted key was not handed on")
	}
}

func mustSafetyNumber(t *testing.T, e *Engine, key []byte) string {
	t.Helper()
	n, err := e.safetyNumberOf("bob", key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
