package client

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Tests of the engine's end-to-end encryption pieces that need no server:
// payload framing, the sealed records of crypto.go, Trust, and that what
// the e2ee package produces fits the wire and record limits.

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
		{name: "plain content (type 1) is refused", p: cat([]byte{1}, transport.Marshal(&Content{Kind: KindText, Text: "hi"})), wantErrMatch: "unknown payload type 1"},
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
	// (sessionRecord decodes an empty Initial as nil), but the framing must
	// not pass one off as a valid payload either.
	if _, _, err := parsePayload(encodePayload([]byte{}, msg)); err == nil {
		t.Error("a payload with an empty PQXDH header parsed")
	}
	if _, _, err := parsePayload(encodePayload(nil, nil)); err == nil {
		t.Error("a payload with an empty ratchet message parsed")
	}
}

// ratchetStateMax is the longest e2ee.Session encoding, from the layout in
// e2ee/ratchet_codec.go: fixed part, AD of up to 4096 bytes, and
// MaxSkippedKeys skipped keys of 68 bytes.
const ratchetStateMax = 1 + 1 + 6*32 + 3*4 + 2 + 4096 + 2 + e2ee.MaxSkippedKeys*(32+4+32)

func TestRecordLimits(t *testing.T) {
	t.Parallel()
	if ratchetStateMax > 1<<20 {
		t.Errorf("a session state can be %d bytes, over sessionRecord's limit of %d", ratchetStateMax, 1<<20)
	}
	key := bytes.Repeat([]byte{1}, transport.IdentityKeyLen)
	tests := []struct {
		name         string
		atLimit      fieldCodec
		over, under  fieldCodec // under: nil unless the size is fixed
		freshDecoder func() fieldCodec
	}{
		{"contact identity", &contact{Identity: key}, &contact{Identity: make([]byte, transport.IdentityKeyLen+1)}, &contact{Identity: make([]byte, transport.IdentityKeyLen-1)}, func() fieldCodec { return new(contact) }},
		{"contact pending", &contact{Identity: key, Pending: key}, &contact{Pending: make([]byte, transport.IdentityKeyLen+1)}, &contact{Pending: make([]byte, transport.IdentityKeyLen-1)}, func() fieldCodec { return new(contact) }},
		{"session ratchet", &sessionRecord{Ratchet: make([]byte, 1<<20)}, &sessionRecord{Ratchet: make([]byte, 1<<20+1)}, nil, func() fieldCodec { return new(sessionRecord) }},
		{"session initial", &sessionRecord{Initial: make([]byte, 2*transport.MaxKeyElement)}, &sessionRecord{Initial: make([]byte, 2*transport.MaxKeyElement+1)}, nil, func() fieldCodec { return new(sessionRecord) }},
		{"session base key", &sessionRecord{BaseKey: make([]byte, 32)}, &sessionRecord{BaseKey: make([]byte, 33)}, &sessionRecord{BaseKey: make([]byte, 31)}, func() fieldCodec { return new(sessionRecord) }},
		{"session user", &sessionRecord{User: strings.Repeat("u", transport.MaxUserName)}, &sessionRecord{User: strings.Repeat("u", transport.MaxUserName+1)}, nil, func() fieldCodec { return new(sessionRecord) }},
		{"received content", &receivedRecord{Content: make([]byte, transport.MaxPayload)}, &receivedRecord{Content: make([]byte, transport.MaxPayload+1)}, nil, func() fieldCodec { return new(receivedRecord) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.freshDecoder()
			if err := transport.Unmarshal(transport.Marshal(tt.atLimit), got); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			if !reflect.DeepEqual(got, tt.atLimit) {
				t.Errorf("at the limit: decoded %+v", got)
			}
			for _, bad := range []fieldCodec{tt.over, tt.under} {
				if bad == nil {
					continue
				}
				if err := transport.Unmarshal(transport.Marshal(bad), tt.freshDecoder()); err == nil {
					t.Errorf("%T of the wrong size decoded", bad)
				}
			}
		})
	}
}

// TestKDFRecordRange checks that the clear key parameters of a home are
// refused outside their range, rather than making OpenHome spend unbounded
// time or memory, and that a value is never accepted as what is left of it
// after truncation to the parameter's type.
func TestKDFRecordRange(t *testing.T) {
	t.Parallel()
	salt, check := bytes.Repeat([]byte{5}, 16), bytes.Repeat([]byte{6}, 40)
	tests := []struct {
		name                   string
		time, memoryK, threads uint64
		salt                   []byte
		ok                     bool
	}{
		{"cheap", 1, 64, 1, salt, true},
		{"default", uint64(DefaultKDF.Time), uint64(DefaultKDF.MemoryK), uint64(DefaultKDF.Threads), salt, true},
		{"highest", 16, 1 << 20, 64, bytes.Repeat([]byte{1}, 64), true},
		{"lowest", 1, 8, 1, salt, true},
		{"time 0", 0, 64, 1, salt, false},
		{"time 17", 17, 64, 1, salt, false},
		{"memory 7", 1, 7, 1, salt, false},
		{"memory 0", 1, 0, 1, salt, false},
		{"memory over 1 GiB", 1, 1<<20 + 1, 1, salt, false},
		{"threads 0", 1, 64, 0, salt, false},
		{"threads 65", 1, 64, 65, salt, false},
		{"salt 15 bytes", 1, 64, 1, salt[:15], false},
		{"salt 65 bytes", 1, 64, 1, bytes.Repeat([]byte{1}, 65), false},
		{"no salt", 1, 64, 1, nil, false},
		// Values beyond the parameters' types, which would wrap to valid ones.
		{"time 2^32+1", 1<<32 + 1, 64, 1, salt, false},
		{"memory 2^32+64", 1, 1<<32 + 64, 1, salt, false},
		{"threads 256+4", 1, 64, 256 + 4, salt, false},
		{"threads 2^64-1", 1, 64, 1<<64 - 1, salt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r kdfRecord
			err := transport.Unmarshal(kdfFields(tt.time, tt.memoryK, tt.threads, tt.salt, check), &r)
			if ok := err == nil; ok != tt.ok {
				t.Errorf("Unmarshal(time %d, memory %d, threads %d, salt of %d) = %+v, %v; want ok %v", tt.time, tt.memoryK, tt.threads, len(tt.salt), r.Params, err, tt.ok)
			}
		})
	}
	if err := transport.Unmarshal(kdfFields(1, 64, 1, salt, bytes.Repeat([]byte{1}, 257)), new(kdfRecord)); err == nil {
		t.Error("a check value of 257 bytes decoded")
	}
}

// openTestHome opens a new home in a temporary directory with a cheap KDF.
func openTestHome(t *testing.T) *Home {
	t.Helper()
	h, err := OpenHome(t.TempDir(), HomeOptions{Passphrase: "x", Create: true, KDF: KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, h) })
	return h
}

// putRecords stores records in one transaction; keys are bucket, clear key.
func putRecords(t *testing.T, h *Home, records map[[2]string]transport.Marshaler) {
	t.Helper()
	err := h.db.Update(func(tx *bolt.Tx) error {
		for k, m := range records {
			if err := h.putRecord(tx, []byte(k[0]), []byte(k[1]), m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// getRecordT reads one record; false if absent.
func getRecordT(t *testing.T, h *Home, bucket []byte, clearKey string, m transport.Unmarshaler) bool {
	t.Helper()
	var ok bool
	err := h.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = h.getRecord(tx, bucket, []byte(clearKey), m)
		return err
	})
	if err != nil {
		t.Fatalf("reading %s %q: %v", bucket, clearKey, err)
	}
	return ok
}

func TestTrustWithoutChange(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	key := bytes.Repeat([]byte{0x11}, transport.IdentityKeyLen)

	// No contact at all.
	err := h.Trust("bob")
	if err == nil {
		t.Fatal("Trust of an unknown contact succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "bob") || !strings.Contains(msg, "nothing to accept") {
		t.Errorf("Trust of an unknown contact: %q, want the name and that there is nothing to accept", msg)
	}
	if getRecordT(t, h, bucketContacts, "bob", new(contact)) {
		t.Error("Trust of an unknown contact created one")
	}

	// A contact without a pending key: refused, and left as it was.
	want := contact{Identity: key, Verified: true}
	session := &sessionRecord{User: "bob", Device: 1, Ratchet: []byte{1, 2, 3}}
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "bob"}:                        &want,
		{string(bucketSessions), string(sessionKey("bob", 1))}: session,
	})
	err = h.Trust("bob")
	if err == nil || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "has not changed") {
		t.Fatalf("Trust without a pending key = %v, want an error that bob's key has not changed", err)
	}
	var got contact
	if !getRecordT(t, h, bucketContacts, "bob", &got) || !reflect.DeepEqual(got, want) {
		t.Errorf("contact after a refused Trust = %+v, want %+v unchanged", got, want)
	}
	if !getRecordT(t, h, bucketSessions, string(sessionKey("bob", 1)), new(sessionRecord)) {
		t.Error("a refused Trust dropped the session")
	}
	// Names are case-sensitive here: the CLI canonicalizes before calling.
	if err := h.Trust("Bob"); err == nil {
		t.Error("Trust of Bob succeeded for contact bob")
	}
}

func TestTrustPending(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	old, changed, carolKey := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32), bytes.Repeat([]byte{0x33}, 32)
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "bob"}:                          &contact{Identity: old, Pending: changed, Verified: true},
		{string(bucketContacts), "carol"}:                        &contact{Identity: carolKey, Verified: true},
		{string(bucketSessions), string(sessionKey("bob", 1))}:   &sessionRecord{User: "bob", Device: 1, Ratchet: []byte{1}},
		{string(bucketSessions), string(sessionKey("bob", 7))}:   &sessionRecord{User: "bob", Device: 7, Ratchet: []byte{7}, Initial: []byte{7}},
		{string(bucketSessions), string(sessionKey("carol", 1))}: &sessionRecord{User: "carol", Device: 1, Ratchet: []byte{3}},
		// A user whose name starts with bob's is someone else.
		{string(bucketSessions), string(sessionKey("bobby", 1))}: &sessionRecord{User: "bobby", Device: 1, Ratchet: []byte{4}},
		{string(bucketReceived), "kept"}:                         &receivedRecord{Content: []byte{1}, Changed: true},
	})
	if err := h.Trust("bob"); err != nil {
		t.Fatalf("Trust: %v", err)
	}
	var bob contact
	if !getRecordT(t, h, bucketContacts, "bob", &bob) {
		t.Fatal("bob's contact is gone")
	}
	if want := (contact{Identity: changed}); !reflect.DeepEqual(bob, want) {
		t.Errorf("bob after Trust = %+v, want the pending key trusted and not verified: %+v", bob, want)
	}
	for _, dev := range []uint32{1, 7} {
		if getRecordT(t, h, bucketSessions, string(sessionKey("bob", dev)), new(sessionRecord)) {
			t.Errorf("bob's session with device %d survived Trust", dev)
		}
	}
	for _, user := range []string{"carol", "bobby"} {
		if !getRecordT(t, h, bucketSessions, string(sessionKey(user, 1)), new(sessionRecord)) {
			t.Errorf("%s's session was dropped by Trust of bob", user)
		}
	}
	var carol contact
	if !getRecordT(t, h, bucketContacts, "carol", &carol) || !carol.Verified || !bytes.Equal(carol.Identity, carolKey) {
		t.Errorf("carol after Trust of bob = %+v", carol)
	}
	if !getRecordT(t, h, bucketReceived, "kept", new(receivedRecord)) {
		t.Error("Trust dropped a received message")
	}
	// Accepted once: there is nothing left to accept.
	if err := h.Trust("bob"); err == nil || !strings.Contains(err.Error(), "nothing to accept") {
		t.Errorf("second Trust = %v, want nothing to accept", err)
	}
}

// TestRecordsSealed checks that crypto.go's records are bound to their
// bucket and clear key, and that contacts' names do not appear on disk.
func TestRecordsSealed(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	key := bytes.Repeat([]byte{0x5a}, transport.IdentityKeyLen)
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "zebediah"}: &contact{Identity: key},
	})
	if getRecordT(t, h, bucketContacts, "zebediah2", new(contact)) {
		t.Error("a record read under another name")
	}
	// The same sealed value moved under another name's index does not open.
	err := h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContacts)
		v := bytes.Clone(b.Get(h.seal.index(bucketContacts, []byte("zebediah"))))
		if v == nil {
			return errors.New("the record is not under its index")
		}
		return b.Put(h.seal.index(bucketContacts, []byte("mallory")), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = h.db.View(func(tx *bolt.Tx) error {
		_, err := h.getRecord(tx, bucketContacts, []byte("mallory"), new(contact))
		return err
	})
	if err == nil {
		t.Error("a sealed record moved to another name opened")
	}
	dir := h.Dir
	h.Close()
	raw, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("zebediah")) || bytes.Contains(raw, key) {
		t.Error("a contact's name or key is on disk in the clear")
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
	plain := transport.Marshal(&Content{Kind: KindText, Text: "hi", SentAt: 1})
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
	roundTripRecord(t, &sessionRecord{User: bobName, Device: 1<<32 - 1, Ratchet: rb, Initial: hb}, new(sessionRecord))

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
	roundTripRecord(t, &sessionRecord{User: "alice", Device: 1, Ratchet: bobState, BaseKey: parsed.EphemeralKey.Bytes()}, new(sessionRecord))
	roundTripRecord(t, &contact{Identity: rk.RemoteIdentity.Bytes(), Pending: up.IdentityKey.Bytes()}, new(contact))
	roundTripRecord(t, &receivedRecord{Content: got, Changed: true, Received: now.UnixMilli()}, new(receivedRecord))

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
