package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Fuzz targets for the store's record decoders (protocol.md §7). A record
// read back from disk must decode to what was written, and whatever decodes
// must re-encode canonically, the same property as transport's FuzzMessages.

type storedRecord interface {
	transport.Marshaler
	transport.Unmarshaler
}

// storedRecordTypes lists the stored record types. FuzzRecords picks one by its
// index: append, never reorder, or the saved corpus changes meaning.
var storedRecordTypes = []struct {
	name string
	new  func() storedRecord
}{
	{"userRecord", func() storedRecord { return new(userRecord) }},
	{"deviceRecord", func() storedRecord { return new(deviceRecord) }},
	{"mailboxEntry", func() storedRecord { return new(mailboxEntry) }},
	{"banRecord", func() storedRecord { return new(banRecord) }},
	{"inviteRecord", func() storedRecord { return new(inviteRecord) }},
	{"revokedRecord", func() storedRecord { return new(revokedRecord) }},
}

func countUp(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func sampleRecords() []storedRecord {
	return []storedRecord{
		&userRecord{
			PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
			Created:      1_700_000_000_000,
			NextDevice:   2,
		},
		&userRecord{PasswordHash: strings.Repeat("$", 512), Created: math.MinInt64, NextDevice: math.MaxUint32},
		&deviceRecord{Key: countUp(32, 1), Created: 1_700_000_000_000, LastSeen: 1_700_000_360_000, Name: "laptop"},
		&deviceRecord{Key: countUp(32, 0xe0), Created: -1, LastSeen: math.MaxInt64, Name: strings.Repeat("n", transport.MaxText)},
		&mailboxEntry{From: "alice", FromDevice: 1, MessageID: countUp(transport.MessageIDLen, 7), Payload: countUp(500, 3)},
		&mailboxEntry{From: strings.Repeat("z", transport.MaxUserName), FromDevice: math.MaxUint32, MessageID: countUp(transport.MessageIDLen, 0)},
		&banRecord{Reason: "spam", Created: 1_700_000_000_000, Expires: 1_700_000_360_000},
		&inviteRecord{Uses: 3, Created: 1_700_000_000_000},
		&revokedRecord{Key: countUp(32, 9), Revoked: 1_700_000_000_000},
	}
}

// corruptedRecord returns b and damaged copies of it: cut short, a byte
// flipped, an unknown critical field appended, a length far past the end.
func corruptedRecord(b []byte) [][]byte {
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

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range sampleRecords() {
		b := transport.Marshal(r)
		got := reflect.New(reflect.TypeOf(r).Elem()).Interface().(storedRecord)
		if err := transport.Unmarshal(b, got); err != nil {
			t.Fatalf("%T: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip changed the record\n got %+v\nwant %+v", got, r)
		}
	}
}

func FuzzRecords(f *testing.F) {
	index := make(map[string]byte)
	for i, rt := range storedRecordTypes {
		index[rt.name] = byte(i)
	}
	for _, r := range sampleRecords() {
		kind := index[reflect.TypeOf(r).Elem().Name()]
		for _, b := range corruptedRecord(transport.Marshal(r)) {
			f.Add(kind, b)
		}
	}
	for kind := range storedRecordTypes {
		for _, b := range explicitZeros() {
			f.Add(byte(kind), b)
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		rt := storedRecordTypes[int(kind)%len(storedRecordTypes)]
		in := bytes.Clone(b) // the fuzz engine owns b
		r1 := rt.new()
		if err := transport.Unmarshal(in, r1); err != nil {
			var de *transport.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%s: error %q is a %T, not a *transport.DecodeError", rt.name, err, err)
			}
			return
		}
		enc1 := transport.Marshal(r1)
		for i := range in {
			in[i] ^= 0xff // decoded records must not alias bbolt's memory
		}
		if enc := transport.Marshal(r1); !bytes.Equal(enc, enc1) {
			t.Fatalf("%s: the decoded record changed with its input buffer", rt.name)
		}
		r2 := rt.new()
		if err := transport.Unmarshal(enc1, r2); err != nil {
			t.Fatalf("%s: re-encoding does not decode: %v\ninput      %x\nre-encoded %x", rt.name, err, b, enc1)
		}
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("%s: round trip changed the record\nfirst  %+v\nsecond %+v", rt.name, r1, r2)
		}
		if enc2 := transport.Marshal(r2); !bytes.Equal(enc2, enc1) {
			t.Fatalf("%s: encoding is not canonical\nfirst  %x\nsecond %x", rt.name, enc1, enc2)
		}
	})
}

// FuzzDeviceKey checks that parseDeviceKey inverts deviceKey, and that the
// devices of one user never fall under another's prefix scan (countDevices,
// devicesTx).
func FuzzDeviceKey(f *testing.F) {
	f.Add(deviceKey(chat.DeviceOf("alice", 1)), "alice", "alice.x", uint32(1))
	f.Add(deviceKey(chat.DeviceOf("a", math.MaxUint32)), "bob", "bo", uint32(0))
	f.Add([]byte{}, "", "a", uint32(7))
	f.Add([]byte{0, 0, 0, 0, 0}, "x", "y", uint32(1<<24))
	f.Add([]byte("alice\x00\x00\x00\x01"), "Alice", "alice", uint32(2))
	f.Fuzz(func(t *testing.T, k []byte, user, other string, id uint32) {
		if d, ok := parseDeviceKey(k); ok {
			if back := deviceKey(d); !bytes.Equal(back, k) {
				t.Fatalf("parseDeviceKey(%x) = %v; which makes %x", k, d, back)
			}
		}
		cu, err := transport.CanonicalUser(user)
		if err != nil {
			return
		}
		k = deviceKey(chat.DeviceOf(cu, id))
		d, ok := parseDeviceKey(k)
		if !ok || d != chat.DeviceOf(cu, id) {
			t.Fatalf("parseDeviceKey(deviceKey(%q, %d)) = %v, %v", cu, id, d, ok)
		}
		co, err := transport.CanonicalUser(other)
		if err != nil || co == cu {
			return
		}
		if hasPrefix(deviceKey(chat.DeviceOf(co, id)), userPrefix(cu)) {
			t.Fatalf("a device of %q falls under the device prefix of %q", co, cu)
		}
	})
}
