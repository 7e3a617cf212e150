package main

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Payload type bytes and layout of an end-to-end encrypted envelope, as
// client/content.go encodePayload writes them (docs/protocol.md §9.2).
const (
	payloadPreKey  = 2 // type, u16 BE header length, PQXDH initial header, ratchet message
	payloadRatchet = 3 // type, ratchet message
)

// sendBodies are the sizes of the Send body that client.SendText produces
// for one text to one recipient device.
type sendBodies struct {
	Established int // confirmed session: a Double Ratchet message (payload type 3)
	Initial     int // before the peer has answered: PQXDH initial header too (type 2)
	Header      int // the PQXDH initial header alone
}

// sendBodySizes measures sendBodies for text to user to by running, in
// memory, what the client engine does: PQXDH between two fresh devices,
// then one Double Ratchet encryption of the marshalled content. The sizes
// do not depend on the keys, only on the text.
func sendBodySizes(text, to string) (sendBodies, error) {
	now := time.Now()
	device := func(user string, id uint32) (*e2ee.DeviceKeys, error) {
		identity, err := e2ee.GenerateIdentityKey(nil)
		if err != nil {
			return nil, err
		}
		auth, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		return e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: id, AuthKey: auth}, now, 1, 1)
	}
	from, err := device(senderName(0), 1)
	if err != nil {
		return sendBodies{}, err
	}
	peer, err := device(to, 1)
	if err != nil {
		return sendBodies{}, err
	}
	up := peer.PublicPreKeys()
	bundle := &e2ee.PreKeyBundle{
		IdentityKey:   up.IdentityKey,
		Certificate:   up.Certificate,
		SignedPreKey:  up.SignedPreKey,
		OneTimePreKey: &up.OneTimePreKeys[0],
		KEMPreKey:     up.OneTimeKEMPreKeys[0],
	}
	header, sk, ad, err := e2ee.InitiateSession(nil, from, to, 1, bundle)
	if err != nil {
		return sendBodies{}, fmt.Errorf("PQXDH: %w", err)
	}
	sess, err := e2ee.NewInitiatorSession(nil, sk, bundle.SignedPreKey.Key, ad)
	if err != nil {
		return sendBodies{}, err
	}
	defer sess.Zero()
	content := &client.Content{Kind: chat.KindText, Text: text, SentAt: now.UnixMilli()}
	msg, err := sess.Encrypt(nil, transport.Marshal(content))
	if err != nil {
		return sendBodies{}, err
	}
	hb, err := header.MarshalBinary()
	if err != nil {
		return sendBodies{}, err
	}
	body := func(payload []byte) int {
		return len(transport.Marshal(&transport.Send{
			MessageID: make([]byte, transport.MessageIDLen),
			Envelopes: []transport.Envelope{{User: to, Device: 1, DeviceKey: make([]byte, 32), Payload: payload}},
		}))
	}
	established := append([]byte{payloadRatchet}, msg...)
	initial := append([]byte{payloadPreKey, byte(len(hb) >> 8), byte(len(hb))}, hb...)
	initial = append(initial, msg...)
	return sendBodies{Established: body(established), Initial: body(initial), Header: len(hb)}, nil
}

// frameSize is the size on the wire of a frame with a body of n bytes:
// length prefix and header (protocol.md §3.1).
func frameSize(n int) int { return n + 4 + 7 }
