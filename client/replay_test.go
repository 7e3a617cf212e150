package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// A PQXDH initial message that used no one-time prekey (the bundle had
// none left: the signed prekey and the last-resort ML-KEM key only) can be
// recorded and delivered again by the server. Once its session has left
// the window of earlier sessions, the replay must be refused, not shown
// again as a new session (issue 17 point 13).
func TestReplayedInitialRefused(t *testing.T) {
	t.Parallel()
	now := time.Now()
	newKeys := func(user string) *e2ee.DeviceKeys {
		identity, err := e2ee.GenerateIdentityKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		auth, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: 1, AuthKey: auth}, now, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	alice, bobKeys := newKeys("alice"), newKeys("bob")
	hb, err := home.Open(filepath.Join(t.TempDir(), "bob"), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	bob := &Client{home: hb, sessions: hb, keys: bobKeys, prof: &home.Profile{User: "bob", Device: 1}, now: time.Now, rand: rand.Reader}

	// An initial message from alice without one-time prekeys.
	up := bobKeys.PublicPreKeys()
	bundle := &e2ee.PreKeyBundle{IdentityKey: up.IdentityKey, Certificate: up.Certificate, SignedPreKey: up.SignedPreKey, KEMPreKey: up.LastResortKEMPreKey}
	initial := func(text string) []byte {
		t.Helper()
		header, sk, ad, err := e2ee.InitiateSession(nil, alice, "bob", 1, bundle)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := e2ee.NewInitiatorSession(nil, sk, bundle.SignedPreKey.Key, ad)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := sess.Encrypt(nil, transport.Marshal(&Content{Kind: chat.KindText, Text: text, SentAt: 1}))
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := header.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return encodePayload(hdr, ct)
	}
	id := byte(0)
	deliver := func(payload []byte) (*Content, error) {
		id++
		mid := make([]byte, transport.MessageIDLen)
		mid[0] = id
		content, _, err := bob.decrypt(&transport.Deliver{From: "alice", FromDevice: 1, MessageID: mid, Payload: payload}, false)
		return content, err
	}

	recorded := initial("transfer 100 to mallory? no: hi bob")
	if c, err := deliver(recorded); err != nil || c.Text != "transfer 100 to mallory? no: hi bob" {
		t.Fatalf("the first delivery: %+v, %v", c, err)
	}
	// alice starts more sessions (new devices of hers, resets): the first
	// leaves the window of earlier sessions.
	for i := 0; i <= home.MaxPreviousSessions; i++ {
		if _, err := deliver(initial("later")); err != nil {
			t.Fatalf("a new session: %v", err)
		}
	}
	st, _ := hb.LoadIncoming(chat.Device{User: "alice", ID: 1}, nil)
	if s := st.Sessions[chat.Device{User: "alice", ID: 1}]; s == nil || len(s.Previous) != home.MaxPreviousSessions {
		t.Fatalf("sessions with alice: %+v", s)
	}

	// The server delivers the recorded message again, under a new id.
	c, err := deliver(recorded)
	if !errors.Is(err, ErrReplayedInitial) {
		t.Fatalf("the replay: %+v, %v; want ErrReplayedInitial", c, err)
	}

	// The remembered base keys go once their signed prekey is pruned.
	if err := hb.PruneBaseKeys(bobKeys.HoldsSignedPreKey); err != nil {
		t.Fatal(err)
	}
	if n := hb.Probe().Count("basekeys"); n != home.MaxPreviousSessions+2 {
		t.Errorf("%d base keys kept while their signed prekey is held, want %d", n, home.MaxPreviousSessions+2)
	}
	if err := hb.PruneBaseKeys(func(uint32) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if n := hb.Probe().Count("basekeys"); n != 0 {
		t.Errorf("%d base keys kept after their signed prekey was pruned", n)
	}
}
