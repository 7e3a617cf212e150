package client

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Tests of the session layer's pieces that need no server: payload framing,
// and that what the e2ee package produces fits the wire and record limits.

func TestParsePayload(t *testing.T) {
	t.Parallel()
	header := bytes.Repeat([]byte{0x48}, 300)
	long := bytes.Repeat([]byte{0x4c}, 0xffff)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name         string
		p            []byte
		header, msg  []byte // want; msg nil means refused
		wantErrMatch string
	}{
		{name: "empty", p: nil, wantErrMatch: "empty payload"},
		{name: "empty slice", p: []byte{}, wantErrMatch: "empty payload"},
		{name: "plain content (type 1) is refused", p: cat([]byte{1}, transport.Marshal(&Content{Kind: chat.KindText, Text: "hi"})), wantErrMatch: "unknown payload type 1"},
		{name: "type 0", p: []byte{0, 1, 2}, wantErrMatch: "unknown payload type 0"},
		{name: "type 4", p: []byte{4, 1, 2}, wantErrMatch: "unknown payload type 4"},
		{name: "type 255", p: []byte{255}, wantErrMatch: "unknown payload type 255"},
		{name: "ratchet without message", p: []byte{payloadRatchet}, wantErrMatch: "empty ratchet message"},
		{name: "ratchet of one byte", p: []byte{payloadRatchet, 9}, msg: []byte{9}},
		{name: "ratchet", p: cat([]byte{payloadRatchet}, header), msg: header},
		// A ratchet payload is its type byte and the rest: what looks like a
		// header length is message.
		{name: "ratchet starting like a header", p: []byte{payloadRatchet, 0, 1, 7, 8}, msg: []byte{0, 1, 7, 8}},
		{name: "prekey type only", p: []byte{payloadPreKey}, wantErrMatch: "truncated"},
		{name: "prekey half a length", p: []byte{payloadPreKey, 0}, wantErrMatch: "truncated"},
		{name: "prekey length only", p: []byte{payloadPreKey, 0, 1}, wantErrMatch: "truncated"},
		{name: "prekey header of length 0", p: []byte{payloadPreKey, 0, 0, 5}, wantErrMatch: "truncated"},
		{name: "prekey header without message", p: []byte{payloadPreKey, 0, 2, 7, 8}, wantErrMatch: "truncated"},
		{name: "prekey header cut short", p: []byte{payloadPreKey, 0, 3, 7, 8}, wantErrMatch: "truncated"},
		{name: "prekey length past the end", p: []byte{payloadPreKey, 0xff, 0xff, 1, 2, 3}, wantErrMatch: "truncated"},
		{name: "prekey minimal", p: []byte{payloadPreKey, 0, 1, 7, 8}, header: []byte{7}, msg: []byte{8}},
		{name: "prekey big-endian length", p: cat([]byte{payloadPreKey, 1, 44}, header, []byte{1, 2}), header: header, msg: []byte{1, 2}},
		{name: "prekey longest header", p: cat([]byte{payloadPreKey, 0xff, 0xff}, long, []byte{3}), header: long, msg: []byte{3}},
		{name: "prekey longest header without message", p: cat([]byte{payloadPreKey, 0xff, 0xff}, long), wantErrMatch: "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, m, err := parsePayload(tt.p)
			if tt.msg == nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrMatch) {
					t.Fatalf("parsePayload(%x) = %x, %x, %v; want an error containing %q", tt.p, h, m, err, tt.wantErrMatch)
				}
				if h != nil || m != nil {
					t.Errorf("refused payload also returned header %x, message %x", h, m)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePayload: %v", err)
			}
			if !bytes.Equal(h, tt.header) || (h == nil) != (tt.header == nil) || !bytes.Equal(m, tt.msg) {
				t.Fatalf("parsePayload = header %x, message %x; want %x, %x", h, m, tt.header, tt.msg)
			}
			if again := encodePayload(h, m); !bytes.Equal(again, tt.p) {
				t.Errorf("encodePayload(parsePayload(p)) = %x, want p = %x", again, tt.p)
			}
		})
	}
}

func TestEncodePayload(t *testing.T) {
	t.Parallel()
	msg := []byte("ratchet message")
	if got := encodePayload(nil, msg); !bytes.Equal(got, append([]byte{payloadRatchet}, msg...)) {
		t.Errorf("encodePayload(nil, msg) = %x", got)
	}
	if got, want := encodePayload([]byte{0xaa, 0xbb}, msg), append([]byte{payloadPreKey, 0, 2, 0xaa, 0xbb}, msg...); !bytes.Equal(got, want) {
		t.Errorf("encodePayload(header, msg) = %x, want %x", got, want)
	}
	// Every header length the u16 prefix can carry survives the round trip.
	for _, n := range []int{1, 0xff, 0x100, 1300, 2 * transport.MaxKeyElement, 0xffff} {
		header := bytes.Repeat([]byte{byte(n)}, n)
		h, m, err := parsePayload(encodePayload(header, msg))
		if err != nil || !bytes.Equal(h, header) || !bytes.Equal(m, msg) {
			t.Errorf("header of %d bytes: parsePayload(encodePayload) = %d bytes, %q, %v", n, len(h), m, err)
		}
	}
	// encodePayload does not copy into its input: callers keep using msg.
	in := []byte("abc")
	p := encodePayload([]byte{1}, in)
	p[len(p)-1] = 'X'
	if string(in) != "abc" {
		t.Error("encodePayload aliases its message")
	}
	// An encoding whose parse fails: a session never holds an empty header
	// (home.Session decodes an empty Initial as nil), but the framing must
	// not pass one off as a valid payload either.
	if _, _, err := parsePayload(encodePayload([]byte{}, msg)); err == nil {
		t.Error("a payload with an empty PQXDH header parsed")
	}
	if _, _, err := parsePayload(encodePayload(nil, nil)); err == nil {
		t.Error("a payload with an empty ratchet message parsed")
	}
}

// TestE2EEFitsLimits runs the e2ee package's real keys through the wire
// messages and records that carry them: a device's full upload, a bundle
// with both one-time prekeys, a PQXDH header, and sessions on both sides.
func TestE2EEFitsLimits(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	newDevice := func(user string, device uint32) *e2ee.DeviceKeys {
		identity, err := e2ee.GenerateIdentityKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		auth, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: device, AuthKey: auth}, now, oneTimeTarget, oneTimeTarget)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	alice, bob := newDevice("alice", 1), newDevice(strings.Repeat("b", transport.MaxUserName), 1<<32-1)
	bobName := strings.Repeat("b", transport.MaxUserName)

	// The full upload of a new device (Replace) decodes as sent.
	if oneTimeTarget > transport.MaxOneTimeUpload {
		t.Fatalf("oneTimeTarget %d is over MaxOneTimeUpload %d", oneTimeTarget, transport.MaxOneTimeUpload)
	}
	up := bob.PublicPreKeys()
	pub, err := PublishMessage(up, true)
	if err != nil {
		t.Fatal(err)
	}
	var gotPub transport.PublishKeys
	if err := transport.Unmarshal(transport.Marshal(pub), &gotPub); err != nil {
		t.Fatalf("PublishKeys of a new device does not decode: %v", err)
	}
	if !reflect.DeepEqual(&gotPub, pub) {
		t.Error("PublishKeys of a new device changed on the wire")
	}
	if len(gotPub.OneTime) != oneTimeTarget || len(gotPub.OneTimeKEM) != oneTimeTarget || !gotPub.Replace {
		t.Errorf("PublishKeys carries %d and %d one-time prekeys, replace %v", len(gotPub.OneTime), len(gotPub.OneTimeKEM), gotPub.Replace)
	}
	if err := transport.Unmarshal(transport.Marshal(&transport.IdentityKey{Key: up.IdentityKey.Bytes()}), new(transport.IdentityKey)); err != nil {
		t.Errorf("an identity key does not fit IdentityKey: %v", err)
	}

	// The largest bundle, with both one-time prekeys, fits a KeyBundle.
	bundle := &e2ee.PreKeyBundle{
		IdentityKey:   up.IdentityKey,
		Certificate:   up.Certificate,
		SignedPreKey:  up.SignedPreKey,
		OneTimePreKey: &up.OneTimePreKeys[0],
		KEMPreKey:     up.OneTimeKEMPreKeys[0],
	}
	wire, err := bundle.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var kb transport.KeyBundles
	if err := transport.Unmarshal(transport.Marshal(&transport.KeyBundles{Bundles: []transport.KeyBundle{{Device: 1<<32 - 1, Bundle: wire}}}), &kb); err != nil {
		t.Fatalf("a bundle of %d bytes does not fit KeyBundles: %v", len(wire), err)
	}
	received, err := e2ee.ParsePreKeyBundle(kb.Bundles[0].Bundle)
	if err != nil {
		t.Fatal(err)
	}

	// Alice starts a session: her record and her first payload.
	header, sk, ad, err := e2ee.InitiateSession(nil, alice, bobName, 1<<32-1, received)
	if err != nil {
		t.Fatal(err)
	}
	aliceSess, err := e2ee.NewInitiatorSession(nil, sk, received.SignedPreKey.Key, ad)
	if err != nil {
		t.Fatal(err)
	}
	plain := transport.Marshal(&Content{Kind: chat.KindText, Text: "hi", SentAt: 1})
	ciphertext, err := aliceSess.Encrypt(nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := header.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := aliceSess.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	roundTripRecord(t, &home.Session{User: bobName, Device: 1<<32 - 1, Ratchet: rb, Initial: hb}, new(home.Session))

	payload := encodePayload(hb, ciphertext)
	if len(payload) > transport.MaxPayload {
		t.Fatalf("the first payload is %d bytes, over MaxPayload", len(payload))
	}
	gotHeader, gotMsg, err := parsePayload(payload)
	if err != nil || !bytes.Equal(gotHeader, hb) || !bytes.Equal(gotMsg, ciphertext) {
		t.Fatalf("parsePayload of the first payload: %v", err)
	}

	// Bob answers from what he parsed: his record holds the base key.
	parsed, err := e2ee.ParseInitialMessageHeader(gotHeader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := e2ee.RespondSession(bob, "alice", 1, parsed)
	if err != nil {
		t.Fatal(err)
	}
	bobSess, err := e2ee.NewResponderSession(rk.SK, rk.RatchetKey, rk.AD)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bobSess.Decrypt(gotMsg)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Decrypt = %x, %v", got, err)
	}
	if content, err := decodeContent(got); err != nil || content.Text != "hi" {
		t.Fatalf("decodeContent = %+v, %v", content, err)
	}
	bobState, err := bobSess.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if idKey := rk.RemoteIdentity.Bytes(); len(idKey) != transport.IdentityKeyLen {
		t.Fatalf("an identity key is %d bytes, not IdentityKeyLen", len(idKey))
	}
	roundTripRecord(t, &home.Session{User: "alice", Device: 1, Ratchet: bobState, BaseKey: parsed.EphemeralKey.Bytes()}, new(home.Session))
	roundTripRecord(t, &home.Contact{Identity: rk.RemoteIdentity.Bytes(), Pending: up.IdentityKey.Bytes()}, new(home.Contact))
	roundTripRecord(t, &home.Received{Content: got, Changed: true, Received: now.UnixMilli()}, new(home.Received))

	// Bob's reply is a ratchet payload.
	reply, err := bobSess.Encrypt(nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	if h, m, err := parsePayload(encodePayload(nil, reply)); err != nil || h != nil || !bytes.Equal(m, reply) {
		t.Errorf("parsePayload of a reply = %x, %x, %v", h, m, err)
	}
}

// roundTripRecord checks that m decodes as itself into fresh.
func roundTripRecord(t *testing.T, m fieldCodec, fresh fieldCodec) {
	t.Helper()
	if err := transport.Unmarshal(transport.Marshal(m), fresh); err != nil {
		t.Fatalf("%T does not decode: %v", m, err)
	}
	if !reflect.DeepEqual(fresh, m) {
		t.Fatalf("%T changed in a round trip", m)
	}
}

// TestContentConversation: the conversation a copy for the sender's own
// devices names is "u:" or "g:" and a name (protocol.md §8), nothing else.
func TestContentConversation(t *testing.T) {
	t.Parallel()
	for conv, ok := range map[string]bool{"u:bob": true, "g:friends": true, "bob": false, "u:": false, "g:": false, "x:bob": false} {
		var e transport.Encoder
		e.Uint(1, uint64(chat.KindText))
		e.String(2, "hi")
		e.String(6, conv)
		c, err := decodeContent(e.Bytes())
		if (err == nil) != ok {
			t.Errorf("conversation %q: %+v, %v; want ok %v", conv, c, err, ok)
			continue
		}
		if ok && c.Conversation.Key() != conv {
			t.Errorf("conversation %q decoded as %v", conv, c.Conversation)
		}
	}
}
