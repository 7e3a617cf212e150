package e2ee_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"log"
	"time"

	"github.com/securechat/securechat/e2ee"
)

// ExampleInitiateSession starts an end-to-end encrypted session from Alice's
// device to Bob's, which is offline: Bob published his keys earlier, the
// server hands Alice a bundle, and Bob answers when the first message
// arrives. (rand is nil here: crypto/rand. Error handling is shortened.)
func ExampleInitiateSession() {
	now := time.Now()

	// Each account has an identity; each device a key set certified by it.
	newDevice := func(user string, device uint32) *e2ee.DeviceKeys {
		identity, err := e2ee.GenerateIdentityKey(nil)
		if err != nil {
			log.Fatal(err)
		}
		authKey, _, _ := ed25519.GenerateKey(nil) // the device's login key
		keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: device, AuthKey: authKey}, now, 10, 10)
		if err != nil {
			log.Fatal(err)
		}
		return keys
	}
	alice, bob := newDevice("alice", 1), newDevice("bob", 1)

	// Bob uploads his public keys; the server hands Alice a bundle made of
	// them, with one one-time prekey and one one-time ML-KEM prekey.
	up := bob.PublicPreKeys()
	bundle := &e2ee.PreKeyBundle{
		IdentityKey:   up.IdentityKey,
		Certificate:   up.Certificate,
		SignedPreKey:  up.SignedPreKey,
		OneTimePreKey: &up.OneTimePreKeys[0],
		KEMPreKey:     up.OneTimeKEMPreKeys[0],
	}
	wire, _ := bundle.MarshalBinary()

	// Alice: parse, verify and run PQXDH; start the ratchet with sk, ad and
	// Bob's signed prekey; send the header with her first messages.
	received, err := e2ee.ParsePreKeyBundle(wire)
	if err != nil {
		log.Fatal(err)
	}
	header, sk, ad, err := e2ee.InitiateSession(nil, alice, "bob", 1, received)
	if err != nil {
		log.Fatal(err)
	}
	aliceSession, _ := e2ee.NewInitiatorSession(nil, sk, received.SignedPreKey.Key, ad)
	first, _ := aliceSession.Encrypt(nil, []byte("hi Bob"))
	headerWire, _ := header.MarshalBinary()

	// Bob: parse the header, derive the same keys, decrypt, and only then
	// delete the one-time prekeys used.
	h, err := e2ee.ParseInitialMessageHeader(headerWire)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := e2ee.RespondSession(bob, "alice", 1, h)
	if err != nil {
		log.Fatal(err)
	}
	bobSession, _ := e2ee.NewResponderSession(resp.SK, resp.RatchetKey, resp.AD)
	text, err := bobSession.Decrypt(first)
	if err != nil {
		log.Fatal(err)
	}
	bob.RemovePreKeys(resp.Consumed)

	fmt.Println(string(text), bytes.Equal(sk, resp.SK))
	// Both compare this out of band to rule out a man in the middle.
	aliceSees := e2ee.SafetyNumber("alice", alice.IdentityKey(), "bob", received.IdentityKey)
	bobSees := e2ee.SafetyNumber("bob", bob.IdentityKey(), "alice", resp.RemoteIdentity)
	fmt.Println(aliceSees == bobSees, len(e2ee.FormatSafetyNumber(aliceSees)))
	// Output:
	// hi Bob true
	// true 71
}
