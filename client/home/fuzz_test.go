package home

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Fuzz targets for the decoders of the home's records. Whatever decodes
// must re-encode to something that decodes to the same value, canonically.

// corruptedBytes returns b and damaged copies of it: cut short, a byte
// flipped, an unknown critical field appended, a length far past the end.
func corruptedBytes(b []byte) [][]byte {
	out := [][]byte{b}
	if len(b) > 0 {
		out = append(out, b[:len(b)/2], b[:len(b)-1])
		for _, i := range []int{0, len(b) / 2, len(b) - 1} {
			flipped := bytes.Clone(b)
			flipped[i] ^= 0x41
			out = append(out, flipped)
		}
	}
	return append(out,
		append(bytes.Clone(b), 0xc7, 0x01, 0x01, 0x00),
		binary.AppendUvarint(append(bytes.Clone(b), 0xc7, 0x01), 1<<62),
	)
}

// explicitZeros returns bodies of one field each, numbers 1 to 7, holding
// the zero of an integer or an empty value. Marshal omits zero values, so a
// decoder must refuse these or decode them to what it decodes from an empty
// body, or the round trip is not stable.
func explicitZeros() [][]byte {
	out := [][]byte{{}}
	for num := byte(1); num <= 7; num++ {
		out = append(out, []byte{num<<1 | 1, 1, 0}, []byte{num<<1 | 1, 0})
	}
	return out
}

type fieldCodec interface {
	transport.Marshaler
	transport.Unmarshaler
}

// marshalChecked is transport.Marshal reporting a panic as a test failure, so that
// one bad record does not abort the other tests of the package. input is
// what v was decoded from.
func marshalChecked(t *testing.T, v transport.Marshaler, input []byte) (b []byte) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("marshalling the %T decoded from %x panicked: %v", v, input, r)
		}
	}()
	return transport.Marshal(v)
}

// checkFieldRoundTrip decodes b into newV() and, if that succeeds, checks
// decode → marshal → decode gives the same value and the same bytes.
func checkFieldRoundTrip(t *testing.T, newV func() fieldCodec, b []byte) {
	in := bytes.Clone(b) // the fuzz engine owns b
	v1 := newV()
	if err := transport.Unmarshal(in, v1); err != nil {
		return
	}
	enc1 := marshalChecked(t, v1, b)
	for i := range in {
		in[i] ^= 0xff // decoded values must not alias bbolt's memory
	}
	if enc := marshalChecked(t, v1, b); !bytes.Equal(enc, enc1) {
		t.Fatalf("%T: the decoded value changed with its input buffer", v1)
	}
	v2 := newV()
	if err := transport.Unmarshal(enc1, v2); err != nil {
		t.Fatalf("%T: re-encoding does not decode: %v\ninput      %x\nre-encoded %x", v1, err, b, enc1)
	}
	if !reflect.DeepEqual(v1, v2) {
		t.Fatalf("round trip changed the value\nfirst  %+v\nsecond %+v", v1, v2)
	}
	if enc2 := marshalChecked(t, v2, b); !bytes.Equal(enc2, enc1) {
		t.Fatalf("%T: encoding is not canonical\nfirst  %x\nsecond %x", v1, enc1, enc2)
	}
}

// FuzzProfile checks the decoder of the home's identity record.
func FuzzProfile(f *testing.F) {
	fp, err := transport.FingerprintFromBytes(bytes.Repeat([]byte{0xab}, 32))
	if err != nil {
		f.Fatal(err)
	}
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	for _, p := range []*Profile{
		{Server: "chat.example.org:4433", Fingerprint: fp, User: "alice", Device: 2, DeviceKey: ed25519.NewKeyFromSeed(seed)},
		{Server: strings.Repeat("s", 512), User: strings.Repeat("u", transport.MaxUserName), Device: 1 << 31, DeviceKey: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))},
	} {
		for _, b := range corruptedBytes(transport.Marshal(p)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(Profile) }, b)
	})
}

// FuzzOutboxEntry checks the decoder of the outbox's records.
func FuzzOutboxEntry(f *testing.F) {
	content := []byte{0x02, 0x01, 0x05, 0x02, 'h', 'i'} // a Content's encoding (opaque here)
	send := transport.Marshal(&transport.Send{
		MessageID: bytes.Repeat([]byte{1}, transport.MessageIDLen),
		Envelopes: []transport.Envelope{{User: "bob", Device: 1, Payload: []byte("\x03ciphertext")}},
	})
	for _, e := range []*OutboxEntry{
		{To: chat.Peer("bob"), Content: content, Send: send},
		{To: chat.Peer(strings.Repeat("b", transport.MaxUserName))},
		{To: chat.Group("friends")},
		{},
	} {
		for _, b := range corruptedBytes(transport.Marshal(e)) {
			f.Add(b)
		}
	}
	for _, name := range []string{"u:", "g:", "u:bob", "x:bob"} {
		var e transport.Encoder
		e.String(1, name)
		f.Add(e.Bytes())
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(OutboxEntry) }, b)
	})
}

// FuzzContact checks the decoder of the contacts bucket's records.
func FuzzContact(f *testing.F) {
	key, key2 := bytes.Repeat([]byte{0x11}, transport.IdentityKeyLen), bytes.Repeat([]byte{0x22}, transport.IdentityKeyLen)
	for _, c := range []*Contact{
		{Identity: key, Pending: key2, Verified: true},
		{Identity: key},
		{Identity: key, Verified: true},
		{Pending: key2},
		{},
	} {
		for _, b := range corruptedBytes(transport.Marshal(c)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Add(append([]byte{0x03, transport.IdentityKeyLen - 1}, key[1:]...)) // a key too short
	f.Add(append([]byte{0x03, transport.IdentityKeyLen + 1}, 0, 0, 0, 0)) // a key too long, truncated
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(Contact) }, b)
		var c Contact
		if transport.Unmarshal(b, &c) == nil {
			for _, k := range [][]byte{c.Identity, c.Pending} {
				if k != nil && len(k) != transport.IdentityKeyLen {
					t.Fatalf("contact %x holds a key of %d bytes", b, len(k))
				}
			}
		}
	})
}

// FuzzSessionRecord checks the decoder of the sessions bucket's records.
func FuzzSessionRecord(f *testing.F) {
	for _, r := range []*Session{
		{User: "bob", Device: 2, Ratchet: bytes.Repeat([]byte{1}, 300), Initial: bytes.Repeat([]byte{2}, 1300)},
		{User: "carol", Device: 1, Ratchet: bytes.Repeat([]byte{3}, 200), BaseKey: bytes.Repeat([]byte{4}, 32)},
		{User: strings.Repeat("u", transport.MaxUserName), Device: 1<<32 - 1, Initial: make([]byte, 2*transport.MaxKeyElement)},
		{},
	} {
		for _, b := range corruptedBytes(transport.Marshal(r)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(Session) }, b)
	})
}

// FuzzReceivedRecord checks the decoder of the received bucket's records.
func FuzzReceivedRecord(f *testing.F) {
	content := []byte{0x02, 0x01, 0x05, 0x05, 'h', 'e', 'l', 'l', 'o'}
	for _, r := range []*Received{
		{Content: content, Changed: true, Received: 1_700_000_000_123},
		{Content: content, Received: -1},
		{Changed: true},
		{},
	} {
		for _, b := range corruptedBytes(transport.Marshal(r)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(Received) }, b)
	})
}

// kdfFields encodes a kdfRecord's fields from raw integers, so that values
// that do not fit the record's types can be written.
func kdfFields(time, memoryK, threads uint64, salt, check []byte) []byte {
	var e transport.Encoder
	e.Uint(1, time)
	e.Uint(2, memoryK)
	e.Uint(3, threads)
	e.BytesField(4, salt)
	e.BytesField(5, check)
	return e.Bytes()
}

// lastUints returns the integer value of the last field of each number in b
// that holds a valid integer.
func lastUints(b []byte) map[int]uint64 {
	out := make(map[int]uint64)
	d := transport.NewDecoder(b)
	for {
		f, err := d.Next()
		if err != nil {
			return out
		}
		if v, err := f.Uint(); err == nil {
			out[f.Num] = v
		} else {
			delete(out, f.Num)
		}
	}
}

// FuzzKDFRecord checks the decoder of the home's clear key parameters: a
// record it accepts round-trips, holds parameters in range, and holds the
// integers its input wrote, not what is left of them after truncation to
// the parameters' types.
func FuzzKDFRecord(f *testing.F) {
	salt, check := bytes.Repeat([]byte{5}, 16), bytes.Repeat([]byte{6}, 40)
	for _, r := range []*kdfRecord{
		{Params: cheapKDF, Salt: salt, Check: check},
		{Params: DefaultKDF, Salt: bytes.Repeat([]byte{7}, 64), Check: bytes.Repeat([]byte{8}, 256)},
		{Params: KDFParams{Time: 16, MemoryK: 1 << 20, Threads: 64}, Salt: salt},
		{Params: KDFParams{Time: 1, MemoryK: 8, Threads: 1}, Salt: salt},
	} {
		for _, b := range corruptedBytes(transport.Marshal(r)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	for _, b := range [][]byte{
		kdfFields(17, 64, 1, salt, check),
		kdfFields(1, 7, 1, salt, check),
		kdfFields(1, 1<<20+1, 1, salt, check),
		kdfFields(1, 64, 65, salt, check),
		kdfFields(1, 64, 1, salt[:15], check),
		kdfFields(1, 64, 1, bytes.Repeat([]byte{1}, 65), check),
		kdfFields(1<<32+1, 64, 1, salt, check),
		kdfFields(1, 1<<32+64, 1, salt, check),
		kdfFields(1, 64, 256+4, salt, check),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(kdfRecord) }, b)
		var r kdfRecord
		if transport.Unmarshal(b, &r) != nil {
			return
		}
		p := r.Params
		if p.Time < 1 || p.Time > 16 || p.MemoryK < 8 || p.MemoryK > 1<<20 || p.Threads < 1 || p.Threads > 64 || len(r.Salt) < 16 || len(r.Salt) > 64 || len(r.Check) > 256 {
			t.Fatalf("accepted out-of-range parameters %+v, salt of %d bytes, check of %d", p, len(r.Salt), len(r.Check))
		}
		raw := lastUints(b)
		if raw[1] != uint64(p.Time) || raw[2] != uint64(p.MemoryK) || raw[3] != uint64(p.Threads) {
			t.Fatalf("record %x writes time %d, memory %d KiB, threads %d; decoded as %+v", b, raw[1], raw[2], raw[3], p)
		}
	})
}

// FuzzFileRecord checks the decoder of the files bucket's records.
func FuzzFileRecord(f *testing.F) {
	for _, r := range []*FileRecord{
		{ID: bytes.Repeat([]byte{3}, 16), Conversation: chat.Peer("bob"), From: "alice", Outgoing: true, Ref: []byte{0x02, 0x01, 0x05},
			State: FileUploading, Time: 1_700_000_000_000, Source: "/home/alice/report.pdf", SourceSize: 12, SourceMod: 1 << 60},
		{ID: bytes.Repeat([]byte{4}, 16), Conversation: chat.Group("0011"), From: "carol", State: FileFailed, Error: "altered", Saved: "/tmp/x", Fetched: true, Unverified: true},
		{},
	} {
		for _, b := range corruptedBytes(transport.Marshal(r)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFieldRoundTrip(t, func() fieldCodec { return new(FileRecord) }, b)
	})
}
