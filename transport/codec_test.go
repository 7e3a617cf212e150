package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

// wireMessage is what every message of messages.go implements.
type wireMessage interface {
	Marshaler
	Unmarshaler
}

// messageTypes lists every message type of messages.go and prekeys.go, nested ones
// included, for the round-trip tests and FuzzMessages. Append new types at
// the end: FuzzMessages picks a type by its index here, so reordering would
// change what the saved corpus exercises.
var messageTypes = []struct {
	name string
	new  func() wireMessage
}{
	{"Error", func() wireMessage { return new(Error) }},
	{"Enroll", func() wireMessage { return new(Enroll) }},
	{"Auth", func() wireMessage { return new(Auth) }},
	{"Welcome", func() wireMessage { return new(Welcome) }},
	{"DevicesRequest", func() wireMessage { return new(DevicesRequest) }},
	{"DeviceInfo", func() wireMessage { return new(DeviceInfo) }},
	{"DeviceList", func() wireMessage { return new(DeviceList) }},
	{"Envelope", func() wireMessage { return new(Envelope) }},
	{"Send", func() wireMessage { return new(Send) }},
	{"Sent", func() wireMessage { return new(Sent) }},
	{"Deliver", func() wireMessage { return new(Deliver) }},
	{"Ack", func() wireMessage { return new(Ack) }},
	{"Empty", func() wireMessage { return new(Empty) }},
	// prekeys.go
	{"PublishKeys", func() wireMessage { return new(PublishKeys) }},
	{"FetchKeys", func() wireMessage { return new(FetchKeys) }},
	{"KeyBundle", func() wireMessage { return new(KeyBundle) }},
	{"KeyBundles", func() wireMessage { return new(KeyBundles) }},
	{"IdentityKey", func() wireMessage { return new(IdentityKey) }},
	{"KeyCount", func() wireMessage { return new(KeyCount) }},
	{"Signal", func() wireMessage { return new(Signal) }},
	{"NameFree", func() wireMessage { return new(NameFree) }},
	// link.go
	{"LinkStart", func() wireMessage { return new(LinkStart) }},
	{"LinkStarted", func() wireMessage { return new(LinkStarted) }},
	{"LinkFind", func() wireMessage { return new(LinkFind) }},
	{"LinkInfo", func() wireMessage { return new(LinkInfo) }},
	{"LinkApprove", func() wireMessage { return new(LinkApprove) }},
	{"PublishDeviceList", func() wireMessage { return new(PublishDeviceList) }},
	{"RevokeDevice", func() wireMessage { return new(RevokeDevice) }},
	{"LinkApproved", func() wireMessage { return new(LinkApproved) }},
	// devices.go
	{"AccountDevice", func() wireMessage { return new(AccountDevice) }},
	{"AccountDeviceList", func() wireMessage { return new(AccountDeviceList) }},
	{"RenameDevice", func() wireMessage { return new(RenameDevice) }},
	{"BlobLimits", func() wireMessage { return new(BlobLimits) }},
	{"BlobCreate", func() wireMessage { return new(BlobCreate) }},
	{"BlobCreated", func() wireMessage { return new(BlobCreated) }},
	{"BlobRef", func() wireMessage { return new(BlobRef) }},
	{"BlobState", func() wireMessage { return new(BlobState) }},
	{"BlobUpload", func() wireMessage { return new(BlobUpload) }},
	{"BlobDownload", func() wireMessage { return new(BlobDownload) }},
}

// fill returns n bytes counting up from start, so that values differ from
// each other and from zero.
func fill(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// sampleMessages are valid messages with non-trivial values: limits reached,
// extreme integers, repeated and empty nested messages. FuzzMessages seeds
// its corpus from them.
func sampleMessages() []wireMessage {
	key, key2, sig, id := fill(KeyLen, 1), fill(KeyLen, 0x80), fill(SigLen, 7), fill(MessageIDLen, 0xf0)
	ik := fill(IdentityKeyLen, 0xa0)
	return []wireMessage{
		&Error{
			Code:         ErrDeviceMismatch,
			Message:      "message slots do not match the recipients' devices",
			RetryAfterMS: 1500,
			Devices: []DeviceInfo{
				{User: "bob", ID: 1, Key: key},
				{User: "bob", ID: math.MaxUint32, Key: key2},
			},
		},
		&Error{Code: math.MaxUint16, Message: strings.Repeat("x", MaxText), RetryAfterMS: math.MaxUint64},
		&Enroll{
			User:       strings.Repeat("a", MaxUserName),
			Password:   strings.Repeat("p", MaxPassword),
			DeviceKey:  key,
			Signature:  sig,
			Invite:     "INVITE-0042",
			DeviceName: "laptop ☃",
		},
		&Enroll{User: "alice", DeviceKey: key, Signature: sig},
		&Auth{User: "alice", Device: 7, Signature: sig, Receive: true},
		&Auth{Signature: sig},
		&Welcome{User: "alice", Device: math.MaxUint32, ServerTime: -1},
		&Welcome{User: "bob", Device: 1, ServerTime: math.MinInt64},
		&Welcome{ServerTime: math.MaxInt64},
		&DevicesRequest{User: "carol.x-y_z"},
		&DeviceInfo{User: "bob", ID: 300, Key: key},
		&DeviceList{Devices: []DeviceInfo{{User: "bob", ID: 1, Key: key}, {}, {User: "bob", ID: 2, Key: key2}}},
		&Envelope{User: "bob", Device: 2, Payload: fill(256, 0)},
		&Send{
			MessageID: id,
			Envelopes: []Envelope{
				{User: "bob", Device: 2, Payload: fill(300, 9)},
				{User: "carol", Device: math.MaxUint32},
				{},
			},
		},
		&Send{
			MessageID: id,
			Envelopes: []Envelope{{User: "bob", Device: 2, DeviceKey: key}, {User: "carol", Device: 1}},
			Group:     fill(GroupIDLen, 7),
			Shared:    fill(500, 8),
		},
		&Send{MessageID: id, Ephemeral: true, Group: fill(GroupIDLen, 7), Shared: fill(1, 8)},
		&Send{MessageID: id, Group: fill(GroupIDLen, 7), Shared: fill(9, 8), Recipients: fill(RecipientsLen, 6)},
		&Sent{ServerTime: 1_700_000_000_000, Duplicate: true},
		&Sent{ServerTime: 1, Recipients: fill(RecipientsLen, 5)},
		&Sent{ServerTime: -1_700_000_000_000},
		&Deliver{
			Seq:        math.MaxUint64,
			From:       "alice",
			FromDevice: 3,
			MessageID:  id,
			ServerTime: 1_700_000_000_123,
			Payload:    fill(1000, 1),
		},
		&Deliver{Seq: 1, MessageID: id},
		&Deliver{Seq: 2, From: "alice", FromDevice: 1, MessageID: id, Group: fill(GroupIDLen, 3), Shared: fill(70, 4)},
		&Signal{From: "alice", FromDevice: 1, MessageID: id, Group: fill(GroupIDLen, 3), Shared: fill(7, 4)},
		&Ack{Seqs: []uint64{1, 2, 300, math.MaxUint64, 2}},
		&Empty{},
		// prekeys.go, and Welcome with its key counts.
		&Welcome{User: "alice", Device: 2, ServerTime: 1_700_000_000_000, Keys: KeyCount{OneTime: 49, OneTimeKEM: math.MaxUint32, Published: true}},
		&Welcome{Keys: KeyCount{Published: true}},
		&Welcome{User: "bob", Keys: KeyCount{OneTime: 1}},
		&PublishKeys{
			Identity:      ik,
			Certificate:   fill(200, 0x20),
			SignedPreKey:  fill(100, 0x30),
			LastResortKEM: fill(MaxKeyElement, 0x40),
			OneTime:       [][]byte{fill(40, 1), fill(40, 2), fill(MaxKeyElement, 3)},
			OneTimeKEM:    [][]byte{fill(1300, 4), fill(1, 5)},
			Replace:       true,
		},
		&PublishKeys{Identity: ik, Certificate: []byte{1}, SignedPreKey: []byte{2}, LastResortKEM: []byte{3}},
		&FetchKeys{User: "bob", Devices: []uint32{1, 2, 300, math.MaxUint32, 2}},
		&FetchKeys{User: strings.Repeat("b", MaxUserName)},
		&FetchKeys{Devices: []uint32{7}},
		&KeyBundle{Device: 3, Bundle: fill(4*MaxKeyElement, 0x11)},
		&KeyBundle{Device: math.MaxUint32},
		&KeyBundles{Bundles: []KeyBundle{{Device: 1, Bundle: fill(1500, 1)}, {}, {Device: math.MaxUint32, Bundle: []byte{9}}}},
		&KeyBundles{Bundles: []KeyBundle{{}}},
		&IdentityKey{Key: ik},
		&KeyCount{OneTime: 50, OneTimeKEM: math.MaxUint32, Published: true},
		&KeyCount{OneTimeKEM: 1},
		&Signal{From: "alice", FromDevice: 2, MessageID: id, ServerTime: -1, Payload: fill(100, 3)},
		&Signal{MessageID: id},
		&NameFree{Invite: true},
		&NameFree{},
		// link.go
		&DeviceList{Devices: []DeviceInfo{{User: "bob", ID: 1, Key: key}}, SignedList: fill(MaxDeviceList, 3)},
		&LinkStart{User: "alice", DeviceKey: key, LinkKey: key2, DeviceName: strings.Repeat("n", MaxText), Signature: sig},
		&LinkStart{DeviceKey: key, LinkKey: key2, Signature: sig},
		&LinkStarted{Expires: 1_700_000_600_000},
		&LinkStarted{},
		&LinkFind{Code: "ABCD-EFGH-JKMN"},
		&LinkInfo{Device: math.MaxUint32, DeviceKey: key, LinkKey: key2, DeviceName: "phone", Started: 1_700_000_000_000},
		&LinkApprove{Code: strings.Repeat("A", MaxLinkCode), Device: 3, DeviceList: fill(200, 1), Sealed: fill(MaxLinkSealed, 2)},
		&PublishDeviceList{DeviceList: fill(MaxDeviceList, 4)},
		&RevokeDevice{Device: 2, DeviceList: fill(150, 5)},
		&LinkApproved{Device: 4, Sealed: fill(90, 6)},
		// devices.go
		&AccountDeviceList{Devices: []AccountDevice{{ID: 1, Key: key, Name: "laptop", Added: 1_700_000_000_000, LastSeen: 1_700_000_000_001}, {ID: 3, Key: key2}}},
		&AccountDeviceList{},
		&RenameDevice{Device: 2, Name: strings.Repeat("n", MaxText)},
		&BlobLimits{MaxSize: 100 << 20, Quota: 1 << 30, Used: 12345, ChunkSize: 256 << 10, TTLMS: 7 * 24 * 3600 * 1000},
		&BlobCreate{Size: math.MaxUint64, Recipients: []BlobRecipient{{User: "bob", Device: 1}, {User: "carol", Device: math.MaxUint32}}},
		&BlobCreated{ID: fill(BlobIDLen, 1), ChunkSize: 256 << 10, Expires: 1_700_000_000_000},
		&BlobRef{ID: fill(BlobIDLen, 2)},
		&BlobState{ID: fill(BlobIDLen, 3), Size: 50_000_000, ChunkSize: 256 << 10, Chunks: 5, Confirmed: 5 << 18, Expires: 1},
		&BlobUpload{ID: fill(BlobIDLen, 4), First: 7},
		&BlobDownload{ID: fill(BlobIDLen, 5), Offset: 1 << 40},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for i, m := range sampleMessages() {
		name := reflect.TypeOf(m).Elem().Name()
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := Marshal(m)
			got := reflect.New(reflect.TypeOf(m).Elem()).Interface().(wireMessage)
			if err := Unmarshal(b, got); err != nil {
				t.Fatalf("sample %d: Unmarshal: %v", i, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("sample %d: round trip changed the message\n got %+v\nwant %+v", i, got, m)
			}
			if b2 := Marshal(got); !bytes.Equal(b2, b) {
				t.Errorf("sample %d: re-marshalled to %x, first encoding %x", i, b2, b)
			}
		})
	}
}

// TestEncodingVector pins the byte layout of protocol.md §3.2, so an accidental change to
// the encoder shows here rather than as two versions that cannot talk.
func TestEncodingVector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Marshaler
		want string
	}{
		// key 1<<1|1, length 5, "alice"; key 2<<1|1, length 1, 3;
		// key 3<<1|1, length 1, zig-zag(-1) = 1.
		{"Welcome", &Welcome{User: "alice", Device: 3, ServerTime: -1}, "0305616c696365" + "050103" + "070101"},
		// A repeated field repeats its key; 300 is the uvarint ac 02.
		{"Ack", &Ack{Seqs: []uint64{1, 300}}, "030101" + "0302ac02"},
		// An empty nested message is still written, as key and length 0.
		{"DeviceList", &DeviceList{Devices: []DeviceInfo{{}}}, "0300"},
		{"Sent", &Sent{ServerTime: 1, Duplicate: true}, "030102" + "050101"},
		// Welcome's key counts are nested field 4 (key 4<<1|1 = 09), written
		// only when they are not all zero.
		{"Welcome with keys", &Welcome{User: "alice", Keys: KeyCount{OneTime: 2, Published: true}}, "0305616c696365" + "0906" + "030102" + "070101"},
		{"Welcome without keys", &Welcome{Device: 1, Keys: KeyCount{}}, "050101"},
		{"KeyCount", &KeyCount{OneTime: 1, OneTimeKEM: 300, Published: true}, "030101" + "0502ac02" + "070101"},
		{"FetchKeys", &FetchKeys{User: "bob", Devices: []uint32{1, 300}}, "0303626f62" + "050101" + "0502ac02"},
		{"KeyBundles", &KeyBundles{Bundles: []KeyBundle{{Device: 2, Bundle: []byte{0xbb}}, {}}}, "0306" + "030102" + "0501bb" + "0300"},
		{"IdentityKey", &IdentityKey{Key: fill(IdentityKeyLen, 0)}, "0320" + hex.EncodeToString(fill(IdentityKeyLen, 0))},
		{"NameFree", &NameFree{Invite: true}, "030101"},
		{"NameFree without invite", &NameFree{}, ""},
		// Fields in number order; each one-time prekey repeats its field.
		{"PublishKeys", &PublishKeys{
			Identity: fill(IdentityKeyLen, 0), Certificate: []byte{0xc1}, SignedPreKey: []byte{0x51}, LastResortKEM: []byte{0x4b},
			OneTime: [][]byte{{0x01}, {0x02, 0x03}}, OneTimeKEM: [][]byte{{0x0a}}, Replace: true,
		}, "0320" + hex.EncodeToString(fill(IdentityKeyLen, 0)) + "0501c1" + "070151" + "09014b" + "0b0101" + "0b020203" + "0d010a" + "0f0101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := hex.EncodeToString(Marshal(tt.m)); got != tt.want {
				t.Errorf("Marshal = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestZeroValuesOmitted(t *testing.T) {
	t.Parallel()
	for _, mt := range messageTypes {
		t.Run(mt.name, func(t *testing.T) {
			t.Parallel()
			if b := Marshal(mt.new()); len(b) != 0 {
				t.Errorf("zero %s marshals to %x, want nothing", mt.name, b)
			}
		})
	}
	t.Run("Encoder", func(t *testing.T) {
		t.Parallel()
		var e Encoder
		e.Uint(1, 0)
		e.Int(2, 0)
		e.Bool(3, false)
		e.String(4, "")
		e.BytesField(5, nil)
		e.BytesField(6, []byte{})
		e.NonCritical(7, nil)
		if len(e.Bytes()) != 0 {
			t.Errorf("zero values encode to %x, want nothing", e.Bytes())
		}
	})
}

// TestRequiredFields checks the messages that refuse to decode without a
// field, including from an empty body.
func TestRequiredFields(t *testing.T) {
	t.Parallel()
	key, sig, id := fill(KeyLen, 1), fill(SigLen, 2), fill(MessageIDLen, 3)
	ik, cert, spk, kem := fill(IdentityKeyLen, 4), fill(100, 5), fill(40, 6), fill(1200, 7)
	if err := Unmarshal(Marshal(&PublishKeys{Identity: ik, Certificate: cert, SignedPreKey: spk, LastResortKEM: kem}), new(PublishKeys)); err != nil {
		t.Fatalf("PublishKeys with every required field: %v", err)
	}
	tests := []struct {
		name string
		m    wireMessage // encoded, then decoded into a fresh value
	}{
		{"Enroll empty", &Enroll{}},
		{"Enroll without key", &Enroll{User: "alice", Password: "secret123", Signature: sig}},
		{"Enroll without signature", &Enroll{User: "alice", Password: "secret123", DeviceKey: key}},
		{"Auth without signature", &Auth{User: "alice", Device: 1, Receive: true}},
		{"Send without message id", &Send{Envelopes: []Envelope{{User: "bob", Device: 1, Payload: []byte("hi")}}}},
		{"Deliver without seq", &Deliver{From: "alice", FromDevice: 1, MessageID: id}},
		{"Deliver without message id", &Deliver{Seq: 1, From: "alice", FromDevice: 1}},
		{"group Send without shared payload", &Send{MessageID: id, Group: fill(GroupIDLen, 1)}},
		{"shared payload without group", &Send{MessageID: id, Shared: fill(10, 1)}},
		{"group Send with an envelope payload", &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(10, 1), Envelopes: []Envelope{{User: "bob", Device: 1, Payload: []byte("hi")}}}},
		{"recipients beside envelopes", &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(10, 1), Recipients: fill(RecipientsLen, 1), Envelopes: []Envelope{{User: "bob", Device: 1}}}},
		{"recipients of an ordinary Send", &Send{MessageID: id, Recipients: fill(RecipientsLen, 1)}},
		{"short recipients hash", &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(10, 1), Recipients: fill(RecipientsLen-1, 1)}},
		{"group Send with a short group id", &Send{MessageID: id, Group: fill(GroupIDLen-1, 1), Shared: fill(10, 1)}},
		{"group Deliver without group id", &Deliver{Seq: 1, MessageID: id, Shared: fill(10, 1)}},
		{"group Deliver with a payload", &Deliver{Seq: 1, MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(10, 1), Payload: []byte("x")}},
		{"group Signal without shared payload", &Signal{MessageID: id, Group: fill(GroupIDLen, 1)}},
		{"PublishKeys empty", &PublishKeys{}},
		{"PublishKeys without identity", &PublishKeys{Certificate: cert, SignedPreKey: spk, LastResortKEM: kem}},
		{"PublishKeys without certificate", &PublishKeys{Identity: ik, SignedPreKey: spk, LastResortKEM: kem}},
		{"PublishKeys without signed prekey", &PublishKeys{Identity: ik, Certificate: cert, LastResortKEM: kem}},
		{"PublishKeys without last-resort KEM prekey", &PublishKeys{Identity: ik, Certificate: cert, SignedPreKey: spk}},
		{"LinkStart without link key", &LinkStart{User: "alice", DeviceKey: key, Signature: sig}},
		{"LinkStart without signature", &LinkStart{User: "alice", DeviceKey: key, LinkKey: key}},
		{"LinkStart with a short link key", &LinkStart{User: "alice", DeviceKey: key, LinkKey: key[:31], Signature: sig}},
		{"LinkFind without code", &LinkFind{}},
		{"LinkFind with a long code", &LinkFind{Code: strings.Repeat("A", MaxLinkCode+1)}},
		{"LinkInfo without device", &LinkInfo{DeviceKey: key, LinkKey: key}},
		{"LinkApprove without sealed answer", &LinkApprove{Code: "X", Device: 2, DeviceList: fill(10, 1)}},
		{"LinkApprove without device", &LinkApprove{Code: "X", DeviceList: fill(10, 1), Sealed: fill(10, 1)}},
		{"LinkApprove with a long list", &LinkApprove{Code: "X", Device: 2, DeviceList: fill(MaxDeviceList+1, 1), Sealed: fill(10, 1)}},
		{"LinkApprove with a long sealed answer", &LinkApprove{Code: "X", Device: 2, DeviceList: fill(10, 1), Sealed: make([]byte, MaxLinkSealed+1)}},
		{"PublishDeviceList empty", &PublishDeviceList{}},
		{"RevokeDevice without list", &RevokeDevice{Device: 2}},
		{"RevokeDevice without device", &RevokeDevice{DeviceList: fill(10, 1)}},
		{"LinkApproved without sealed answer", &LinkApproved{Device: 2}},
		{"AccountDevice without key", &AccountDevice{ID: 2, Name: "x"}},
		{"AccountDevice without id", &AccountDevice{Key: key}},
		{"RenameDevice without name", &RenameDevice{Device: 2}},
		{"RenameDevice without device", &RenameDevice{Name: "x"}},
		{"RenameDevice with a long name", &RenameDevice{Device: 2, Name: strings.Repeat("n", MaxText+1)}},
		{"BlobCreate without recipients", &BlobCreate{Size: 1}},
		{"BlobCreate without size", &BlobCreate{Recipients: []BlobRecipient{{User: "bob", Device: 1}}}},
		{"BlobCreate to device 0", &BlobCreate{Size: 1, Recipients: []BlobRecipient{{User: "bob"}}}},
		{"BlobCreated without chunk size", &BlobCreated{ID: fill(BlobIDLen, 1)}},
		{"BlobRef without id", &BlobRef{}},
		{"BlobState past its size", &BlobState{ID: fill(BlobIDLen, 1), Size: 1, ChunkSize: 1, Confirmed: 2}},
		{"BlobUpload without id", &BlobUpload{First: 1}},
		{"BlobDownload without id", &BlobDownload{Offset: 1}},
		{"DeviceList with a long signed list", &DeviceList{SignedList: fill(MaxDeviceList+1, 1)}},
		{"PublishKeys with only one-time prekeys", &PublishKeys{OneTime: [][]byte{spk}, OneTimeKEM: [][]byte{kem}, Replace: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := reflect.New(reflect.TypeOf(tt.m).Elem()).Interface().(wireMessage)
			err := Unmarshal(Marshal(tt.m), got)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("Unmarshal = %v, want a *DecodeError", err)
			}
		})
	}
}

// TestUnknownFields checks protocol.md §3.2: a decoder skips a field it does
// not know if the critical bit is clear, and refuses the message if it is set.
func TestUnknownFields(t *testing.T) {
	t.Parallel()
	sig := fill(SigLen, 2)
	tests := []struct {
		name    string
		enc     func(e *Encoder)
		m       wireMessage
		want    wireMessage // nil: decoding must fail
		wantErr string
	}{
		{
			name: "non-critical after known fields",
			enc: func(e *Encoder) {
				e.String(1, "alice")
				e.Uint(2, 4)
				e.NonCritical(9, []byte("extension"))
			},
			m:    new(Welcome),
			want: &Welcome{User: "alice", Device: 4},
		},
		{
			// The critical bit only decides what happens to a field the
			// decoder does not know; a known number is decoded as usual.
			name: "known number without the critical bit",
			enc: func(e *Encoder) {
				e.String(1, "alice")
				e.NonCritical(2, []byte{4})
			},
			m:    new(Welcome),
			want: &Welcome{User: "alice", Device: 4},
		},
		{
			name: "known number without the critical bit, malformed",
			enc: func(e *Encoder) {
				e.String(1, "alice")
				e.NonCritical(2, []byte{0xff, 0xff})
				e.BytesField(3, sig)
			},
			m:       new(Auth),
			wantErr: "field 2: bad integer",
		},
		{
			name: "non-critical in Empty",
			enc:  func(e *Encoder) { e.NonCritical(1, []byte("x")) },
			m:    new(Empty),
			want: new(Empty),
		},
		{
			name: "non-critical in a nested message",
			enc: func(e *Encoder) {
				var inner Encoder
				inner.String(1, "bob")
				inner.NonCritical(5, []byte("x"))
				e.BytesField(1, inner.Bytes())
			},
			m:    new(DeviceList),
			want: &DeviceList{Devices: []DeviceInfo{{User: "bob"}}},
		},
		{
			name: "non-critical in Welcome's key counts",
			enc: func(e *Encoder) {
				e.String(1, "alice")
				var inner Encoder
				inner.Uint(1, 3)
				inner.NonCritical(9, []byte("x"))
				e.BytesField(4, inner.Bytes())
			},
			m:    new(Welcome),
			want: &Welcome{User: "alice", Keys: KeyCount{OneTime: 3}},
		},
		{
			name: "non-critical after PublishKeys' fields",
			enc: func(e *Encoder) {
				e.BytesField(1, fill(IdentityKeyLen, 1))
				e.BytesField(2, []byte{2})
				e.BytesField(3, []byte{3})
				e.BytesField(4, []byte{4})
				e.Bool(7, true)
				e.NonCritical(8, []byte("x"))
			},
			m:    new(PublishKeys),
			want: &PublishKeys{Identity: fill(IdentityKeyLen, 1), Certificate: []byte{2}, SignedPreKey: []byte{3}, LastResortKEM: []byte{4}, Replace: true},
		},
		{
			name: "critical in Welcome's key counts",
			enc: func(e *Encoder) {
				var inner Encoder
				inner.Uint(1, 3)
				inner.Uint(4, 1)
				e.BytesField(4, inner.Bytes())
			},
			m:       new(Welcome),
			wantErr: "unknown critical field 4",
		},
		{
			name: "critical in a key bundle",
			enc: func(e *Encoder) {
				var inner Encoder
				inner.Uint(1, 3)
				inner.Uint(3, 1)
				e.BytesField(1, inner.Bytes())
			},
			m:       new(KeyBundles),
			wantErr: "unknown critical field 3",
		},
		{
			name:    "critical in IdentityKey",
			enc:     func(e *Encoder) { e.BytesField(1, fill(IdentityKeyLen, 0)); e.Uint(2, 1) },
			m:       new(IdentityKey),
			wantErr: "unknown critical field 2",
		},
		{
			name:    "critical",
			enc:     func(e *Encoder) { e.String(1, "alice"); e.BytesField(9, []byte("extension")) },
			m:       new(Welcome),
			wantErr: "unknown critical field 9",
		},
		{
			name:    "critical in Empty",
			enc:     func(e *Encoder) { e.Uint(1, 1) },
			m:       new(Empty),
			wantErr: "unknown critical field 1",
		},
		{
			name: "critical in a nested message",
			enc: func(e *Encoder) {
				e.BytesField(1, fill(MessageIDLen, 0))
				var inner Encoder
				inner.String(1, "bob")
				inner.Uint(6, 1)
				e.BytesField(2, inner.Bytes())
			},
			m:       new(Send),
			wantErr: "unknown critical field 6",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var e Encoder
			tt.enc(&e)
			err := Unmarshal(e.Bytes(), tt.m)
			if tt.want == nil {
				var de *DecodeError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal = %v, want a *DecodeError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(tt.m, tt.want) {
				t.Errorf("decoded %+v, want %+v", tt.m, tt.want)
			}
		})
	}
}

// TestMalformed feeds the decoder bodies that break the framing of protocol.md §3.2.
func TestMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string // hex
		m       wireMessage
		wantErr string
	}{
		{"out of order", "050101" + "030161", new(Welcome), "field 1 out of order"},
		{"out of order nested", "0306" + "050101" + "030161", new(DeviceList), "out of order"},
		{"field number 0", "0100", new(Empty), "field number 0"},
		{"field number 0 non-critical", "0000", new(Empty), "field number 0"},
		{"truncated key", "80", new(Empty), "bad field key"},
		{"key overflows 64 bits", "ffffffffffffffffff02", new(Empty), "bad field key"},
		{"field number over 31 bits", "8180808010" + "00", new(Empty), "bad field key"},
		{"missing length", "03", new(Welcome), "bad length"},
		{"truncated length", "0380", new(Welcome), "bad length"},
		{"length overflows 64 bits", "03ffffffffffffffffff02", new(Welcome), "bad length"},
		{"length beyond buffer", "030561", new(Welcome), "claims 5 bytes, 1 remain"},
		{"length 2^63 beyond buffer", "0380808080808080808001", new(Welcome), "claims"},
		{"nested length beyond buffer", "0302" + "0305", new(DeviceList), "claims 5 bytes"},
		{"empty integer", "0500", new(Welcome), "bad integer"},
		{"integer shorter than value", "05020100", new(Welcome), "bad integer"},
		{"truncated integer", "050180", new(Welcome), "bad integer"},
		{"integer overflows 64 bits", "030affffffffffffffffff02", new(Deliver), "bad integer"},
		{"integer of 11 bytes", "030bffffffffffffffffff8001", new(Deliver), "bad integer"},
		{"uint32 out of range", "05058080808010", new(Welcome), "out of range"},
		{"error code out of range", "0303808004", new(Error), "out of range"},
		{"bool 0", "09" + "0100", new(Auth), "bad boolean"},
		{"bool 2", "09" + "0102", new(Auth), "bad boolean"},
		{"Fixed too short", "07" + "3f" + strings.Repeat("00", SigLen-1), new(Auth), "63 bytes, want 64"},
		{"Fixed too long", "07" + "41" + strings.Repeat("00", SigLen+1), new(Auth), "65 bytes, want 64"},
		{"string over max", "03" + "21" + strings.Repeat("61", MaxUserName+1), new(Welcome), "33 bytes, max 32"},
		{"one-time KEM prekeys before one-time prekeys", "0d010a" + "0b0101", new(PublishKeys), "field 5 out of order"},
		{"Welcome key counts before an earlier field", "0900" + "0300", new(Welcome), "field 1 out of order"},
		{"Welcome key counts malformed", "0903" + "030180", new(Welcome), "bad integer"},
		{"Welcome key count out of range", "0907" + "03058080808010", new(Welcome), "out of range"},
		{"Welcome key counts truncated", "0905" + "0301", new(Welcome), "claims 5 bytes"},
		{"KeyCount published 2", "070102", new(KeyCount), "bad boolean"},
		{"KeyCount out of range", "05058080808010", new(KeyCount), "out of range"},
		{"FetchKeys device out of range", "05058080808010", new(FetchKeys), "out of range"},
		{"FetchKeys device not minimal", "05028000", new(FetchKeys), "bad integer"},
		{"KeyBundle device out of range", "03058080808010", new(KeyBundle), "out of range"},
		{"IdentityKey too short", "031f" + strings.Repeat("00", IdentityKeyLen-1), new(IdentityKey), "31 bytes, want 32"},
		{"IdentityKey too long", "0321" + strings.Repeat("00", IdentityKeyLen+1), new(IdentityKey), "33 bytes, want 32"},
		{"IdentityKey empty", "0300", new(IdentityKey), "0 bytes, want 32"},
		{"PublishKeys identity empty", "0300", new(PublishKeys), "0 bytes, want 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, err := hex.DecodeString(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			err = Unmarshal(body, tt.m)
			var de *DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Unmarshal(%s) = %v, want a *DecodeError containing %q", tt.body, err, tt.wantErr)
			}
		})
	}
}

func TestDecoderNext(t *testing.T) {
	t.Parallel()
	var e Encoder
	e.String(1, "a")
	e.NonCritical(2, []byte("bc"))
	e.Uint(2, 5) // a repeated number is in order
	e.BytesField(7, []byte{0})
	want := []Field{
		{Num: 1, Critical: true, Value: []byte("a")},
		{Num: 2, Critical: false, Value: []byte("bc")},
		{Num: 2, Critical: true, Value: []byte{5}},
		{Num: 7, Critical: true, Value: []byte{0}},
	}
	d := NewDecoder(e.Bytes())
	for i, w := range want {
		f, err := d.Next()
		if err != nil {
			t.Fatalf("field %d: %v", i, err)
		}
		if !reflect.DeepEqual(f, w) {
			t.Errorf("field %d = %+v, want %+v", i, f, w)
		}
		if cap(f.Value) != len(f.Value) {
			t.Errorf("field %d: value has capacity %d beyond its length %d: appending would overwrite the next field", i, cap(f.Value), len(f.Value))
		}
	}
	if _, err := d.Next(); err != io.EOF {
		t.Errorf("Next at the end = %v, want io.EOF", err)
	}
}

func TestFieldUint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string // hex
		want  uint64
		ok    bool
	}{
		{"", 0, false},
		{"00", 0, true},
		{"01", 1, true},
		{"7f", 127, true},
		{"8001", 128, true},
		{"ac02", 300, true},
		{"ffffffffffffffffff01", math.MaxUint64, true},
		{"0100", 0, false},                   // the varint does not fill the value
		{"ac0200", 0, false},                 // likewise
		{"80", 0, false},                     // truncated
		{"ffffffffffffffffff02", 0, false},   // overflows 64 bits
		{"ffffffffffffffffffff01", 0, false}, // 11 bytes
		// Non-minimal encodings are refused: one value, one encoding.
		{"8100", 0, false},
		{"80808000", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			v, _ := hex.DecodeString(tt.value)
			got, err := Field{Num: 1, Value: v}.Uint()
			if ok := err == nil; ok != tt.ok || got != tt.want {
				t.Errorf("Uint(%s) = %d, %v; want %d, ok %v", tt.value, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestFieldIntegers(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{1, -1, 2, -2, 63, -64, 64, -65, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		var e Encoder
		e.Int(1, v)
		f, err := NewDecoder(e.Bytes()).Next()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Int(); err != nil || got != v {
			t.Errorf("Int round trip of %d = %d, %v", v, got, err)
		}
	}
	// zig-zag keeps small magnitudes short
	for v, want := range map[int64]string{-1: "070101", 1: "070102", -64: "07017f", 64: "07028001"} {
		var e Encoder
		e.Int(3, v)
		if got := hex.EncodeToString(e.Bytes()); got != want {
			t.Errorf("Int(%d) encodes to %s, want %s", v, got, want)
		}
	}
	for _, tt := range []struct {
		v  uint64
		ok bool
	}{{0, true}, {math.MaxUint32, true}, {math.MaxUint32 + 1, false}, {math.MaxUint64, false}} {
		var e Encoder
		e.Uint(1, tt.v)
		f := Field{Num: 1, Value: []byte{0}}
		if tt.v != 0 {
			f, _ = NewDecoder(e.Bytes()).Next()
		}
		got, err := f.Uint32()
		if ok := err == nil; ok != tt.ok || (ok && uint64(got) != tt.v) {
			t.Errorf("Uint32 of %d = %d, %v; want ok %v", tt.v, got, err, tt.ok)
		}
	}
}

func TestFieldLimits(t *testing.T) {
	t.Parallel()
	f := Field{Num: 4, Value: []byte("abcd")}
	if s, err := f.String(4); err != nil || s != "abcd" {
		t.Errorf("String(4) = %q, %v", s, err)
	}
	if _, err := f.String(3); err == nil {
		t.Error("String(3) of 4 bytes succeeded")
	}
	b, err := f.Bytes(4)
	if err != nil || string(b) != "abcd" {
		t.Errorf("Bytes(4) = %q, %v", b, err)
	}
	b[0] = 'X'
	if f.Value[0] != 'a' {
		t.Error("Bytes returned the decoder's buffer, not a copy")
	}
	if _, err := f.Bytes(3); err == nil {
		t.Error("Bytes(3) of 4 bytes succeeded")
	}
	if b, err := (Field{Num: 4, Value: []byte{}}).Bytes(4); err != nil || len(b) != 0 {
		t.Errorf("Bytes of an empty value = %x, %v", b, err)
	}
	b, err = f.Fixed(4)
	if err != nil || string(b) != "abcd" {
		t.Errorf("Fixed(4) = %q, %v", b, err)
	}
	b[0] = 'X'
	if f.Value[0] != 'a' {
		t.Error("Fixed returned the decoder's buffer, not a copy")
	}
	for _, size := range []int{0, 3, 5} {
		if _, err := f.Fixed(size); err == nil {
			t.Errorf("Fixed(%d) of 4 bytes succeeded", size)
		}
	}
}

// TestMessageLimits checks the limits of protocol.md §4 through the
// messages that enforce them: at the limit decodes, one past it does not.
func TestMessageLimits(t *testing.T) {
	t.Parallel()
	id, key, sig := fill(MessageIDLen, 1), fill(KeyLen, 2), fill(SigLen, 3)
	envelopes := func(n int) []Envelope {
		envs := make([]Envelope, n)
		for i := range envs {
			envs[i] = Envelope{User: "bob", Device: uint32(i + 1)}
		}
		return envs
	}
	devices := func(n int) []DeviceInfo {
		devs := make([]DeviceInfo, n)
		for i := range devs {
			devs[i] = DeviceInfo{User: "bob", ID: uint32(i + 1), Key: key}
		}
		return devs
	}
	seqs := func(n int) []uint64 {
		s := make([]uint64, n)
		for i := range s {
			s[i] = uint64(i + 1)
		}
		return s
	}
	long := func(n int) string { return strings.Repeat("z", n) }
	keyList := func(n int) [][]byte {
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = fill(3, byte(i))
		}
		return keys
	}
	ids := func(n int) []uint32 {
		s := make([]uint32, n)
		for i := range s {
			s[i] = uint32(i + 1)
		}
		return s
	}
	bundles := func(n int) []KeyBundle {
		bs := make([]KeyBundle, n)
		for i := range bs {
			bs[i] = KeyBundle{Device: uint32(i + 1), Bundle: fill(10, byte(i))}
		}
		return bs
	}
	ik := fill(IdentityKeyLen, 4)
	// publish returns a PublishKeys with every required field, changed by edit.
	publish := func(edit func(m *PublishKeys)) *PublishKeys {
		m := &PublishKeys{Identity: ik, Certificate: fill(100, 5), SignedPreKey: fill(40, 6), LastResortKEM: fill(1200, 7)}
		edit(m)
		return m
	}
	tests := []struct {
		name    string
		atLimit wireMessage
		over    wireMessage
	}{
		{"Send envelopes", &Send{MessageID: id, Envelopes: envelopes(MaxEnvelopes)}, &Send{MessageID: id, Envelopes: envelopes(MaxEnvelopes + 1)}},
		{"group Send envelopes", &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(1, 1), Envelopes: envelopes(MaxGroupEnvelopes)}, &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: fill(1, 1), Envelopes: envelopes(MaxGroupEnvelopes + 1)}},
		{"group Send shared payload", &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: make([]byte, MaxPayload)}, &Send{MessageID: id, Group: fill(GroupIDLen, 1), Shared: make([]byte, MaxPayload+1)}},
		{"Deliver shared payload", &Deliver{Seq: 1, MessageID: id, Group: fill(GroupIDLen, 1), Shared: make([]byte, MaxPayload)}, &Deliver{Seq: 1, MessageID: id, Group: fill(GroupIDLen, 1), Shared: make([]byte, MaxPayload+1)}},
		{"Ack seqs", &Ack{Seqs: seqs(MaxAcks)}, &Ack{Seqs: seqs(MaxAcks + 1)}},
		{"DeviceList devices", &DeviceList{Devices: devices(MaxEnvelopes)}, &DeviceList{Devices: devices(MaxEnvelopes + 1)}},
		{"Error devices", &Error{Code: ErrDeviceMismatch, Devices: devices(MaxEnvelopes)}, &Error{Code: ErrDeviceMismatch, Devices: devices(MaxEnvelopes + 1)}},
		{"Envelope payload", &Envelope{Payload: make([]byte, MaxPayload)}, &Envelope{Payload: make([]byte, MaxPayload+1)}},
		{"Deliver payload", &Deliver{Seq: 1, MessageID: id, Payload: make([]byte, MaxPayload)}, &Deliver{Seq: 1, MessageID: id, Payload: make([]byte, MaxPayload+1)}},
		{"Enroll user", &Enroll{User: long(MaxUserName), DeviceKey: key, Signature: sig}, &Enroll{User: long(MaxUserName + 1), DeviceKey: key, Signature: sig}},
		{"Enroll password", &Enroll{Password: long(MaxPassword), DeviceKey: key, Signature: sig}, &Enroll{Password: long(MaxPassword + 1), DeviceKey: key, Signature: sig}},
		{"Enroll invite", &Enroll{Invite: long(MaxText), DeviceKey: key, Signature: sig}, &Enroll{Invite: long(MaxText + 1), DeviceKey: key, Signature: sig}},
		{"Enroll device name", &Enroll{DeviceName: long(MaxText), DeviceKey: key, Signature: sig}, &Enroll{DeviceName: long(MaxText + 1), DeviceKey: key, Signature: sig}},
		{"Enroll key", &Enroll{DeviceKey: key, Signature: sig}, &Enroll{DeviceKey: fill(KeyLen+1, 0), Signature: sig}},
		{"Send message id", &Send{MessageID: id}, &Send{MessageID: fill(MessageIDLen-1, 0)}},
		{"Error message", &Error{Message: long(MaxText)}, &Error{Message: long(MaxText + 1)}},
		{"DevicesRequest user", &DevicesRequest{User: long(MaxUserName)}, &DevicesRequest{User: long(MaxUserName + 1)}},
		{"Deliver from", &Deliver{Seq: 1, MessageID: id, From: long(MaxUserName)}, &Deliver{Seq: 1, MessageID: id, From: long(MaxUserName + 1)}},

		// prekeys.go. MaxOneTimeUpload applies to each kind on its own.
		{"PublishKeys one-time prekeys", publish(func(m *PublishKeys) { m.OneTime = keyList(MaxOneTimeUpload) }), publish(func(m *PublishKeys) { m.OneTime = keyList(MaxOneTimeUpload + 1) })},
		{"PublishKeys one-time KEM prekeys", publish(func(m *PublishKeys) { m.OneTimeKEM = keyList(MaxOneTimeUpload) }), publish(func(m *PublishKeys) { m.OneTimeKEM = keyList(MaxOneTimeUpload + 1) })},
		{"PublishKeys both kinds", publish(func(m *PublishKeys) { m.OneTime, m.OneTimeKEM = keyList(MaxOneTimeUpload), keyList(MaxOneTimeUpload) }), publish(func(m *PublishKeys) { m.OneTime, m.OneTimeKEM = keyList(MaxOneTimeUpload), keyList(MaxOneTimeUpload+1) })},
		{"PublishKeys both kinds, first over", publish(func(m *PublishKeys) { m.OneTime, m.OneTimeKEM = keyList(MaxOneTimeUpload), keyList(1) }), publish(func(m *PublishKeys) { m.OneTime, m.OneTimeKEM = keyList(MaxOneTimeUpload+1), keyList(1) })},
		{"PublishKeys certificate", publish(func(m *PublishKeys) { m.Certificate = fill(MaxKeyElement, 0) }), publish(func(m *PublishKeys) { m.Certificate = fill(MaxKeyElement+1, 0) })},
		{"PublishKeys signed prekey", publish(func(m *PublishKeys) { m.SignedPreKey = fill(MaxKeyElement, 0) }), publish(func(m *PublishKeys) { m.SignedPreKey = fill(MaxKeyElement+1, 0) })},
		{"PublishKeys last-resort KEM prekey", publish(func(m *PublishKeys) { m.LastResortKEM = fill(MaxKeyElement, 0) }), publish(func(m *PublishKeys) { m.LastResortKEM = fill(MaxKeyElement+1, 0) })},
		{"PublishKeys one-time prekey", publish(func(m *PublishKeys) { m.OneTime = [][]byte{{1}, fill(MaxKeyElement, 0)} }), publish(func(m *PublishKeys) { m.OneTime = [][]byte{{1}, fill(MaxKeyElement+1, 0)} })},
		{"PublishKeys one-time KEM prekey", publish(func(m *PublishKeys) { m.OneTimeKEM = [][]byte{fill(MaxKeyElement, 0)} }), publish(func(m *PublishKeys) { m.OneTimeKEM = [][]byte{fill(MaxKeyElement+1, 0)} })},
		{"PublishKeys identity too long", publish(func(m *PublishKeys) {}), publish(func(m *PublishKeys) { m.Identity = fill(IdentityKeyLen+1, 0) })},
		{"PublishKeys identity too short", publish(func(m *PublishKeys) {}), publish(func(m *PublishKeys) { m.Identity = fill(IdentityKeyLen-1, 0) })},
		{"IdentityKey too long", &IdentityKey{Key: ik}, &IdentityKey{Key: fill(IdentityKeyLen+1, 0)}},
		{"IdentityKey too short", &IdentityKey{Key: ik}, &IdentityKey{Key: fill(IdentityKeyLen-1, 0)}},
		{"FetchKeys devices", &FetchKeys{User: "bob", Devices: ids(MaxDevices)}, &FetchKeys{User: "bob", Devices: ids(MaxDevices + 1)}},
		{"FetchKeys user", &FetchKeys{User: long(MaxUserName)}, &FetchKeys{User: long(MaxUserName + 1)}},
		{"KeyBundles bundles", &KeyBundles{Bundles: bundles(MaxDevices)}, &KeyBundles{Bundles: bundles(MaxDevices + 1)}},
		{"KeyBundles empty bundles", &KeyBundles{Bundles: make([]KeyBundle, MaxDevices)}, &KeyBundles{Bundles: make([]KeyBundle, MaxDevices+1)}},
		{"KeyBundle bundle", &KeyBundle{Device: 1, Bundle: fill(4*MaxKeyElement, 0)}, &KeyBundle{Device: 1, Bundle: fill(4*MaxKeyElement+1, 0)}},
		{"KeyBundles nested bundle", &KeyBundles{Bundles: []KeyBundle{{Device: 1, Bundle: fill(4*MaxKeyElement, 0)}}}, &KeyBundles{Bundles: []KeyBundle{{Device: 1}, {Device: 2, Bundle: fill(4*MaxKeyElement+1, 0)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fresh := func(m wireMessage) wireMessage {
				return reflect.New(reflect.TypeOf(m).Elem()).Interface().(wireMessage)
			}
			if err := Unmarshal(Marshal(tt.atLimit), fresh(tt.atLimit)); err != nil {
				t.Errorf("at the limit: %v", err)
			}
			err := Unmarshal(Marshal(tt.over), fresh(tt.over))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("over the limit: Unmarshal = %v, want a *DecodeError", err)
			}
		})
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	var err error = &Error{Code: ErrRateLimited, RetryAfterMS: 2000}
	if got := err.Error(); got != "rate limited" {
		t.Errorf("Error() without a message = %q, want the code's name", got)
	}
	err = &Error{Code: ErrRateLimited, Message: "slow down"}
	if got := err.Error(); got != "slow down" {
		t.Errorf("Error() = %q, want the message", got)
	}
	var we *Error
	if wrapped := fmt.Errorf("send: %w", err); !errors.As(wrapped, &we) || we.Code != ErrRateLimited {
		t.Errorf("errors.As through %%w lost the *Error")
	}
	if got := ErrorCode(99).String(); got != "error 99" {
		t.Errorf("unknown ErrorCode = %q", got)
	}
	for c := ErrBadRequest; c <= ErrUnavailable; c++ {
		if strings.HasPrefix(c.String(), "error ") {
			t.Errorf("ErrorCode %d has no name", c)
		}
	}
	if got := CodeSend.String(); got != "Send" {
		t.Errorf("CodeSend = %q", got)
	}
	if got := Code(999).String(); got != "Code(999)" {
		t.Errorf("unknown Code = %q", got)
	}
	de := &DecodeError{Msg: "x"}
	if !strings.Contains(de.Error(), "malformed") {
		t.Errorf("DecodeError = %q", de.Error())
	}
}

// TestDecodeDoesNotAlias checks that decoded messages copy what they keep,
// so a connection may reuse its read buffer.
func TestDecodeDoesNotAlias(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMessages() {
		b := Marshal(m)
		got := reflect.New(reflect.TypeOf(m).Elem()).Interface().(wireMessage)
		if err := Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] ^= 0xff
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%T changed when its input buffer was overwritten", m)
		}
	}
}

func TestAuthTranscript(t *testing.T) {
	t.Parallel()
	exp := fill(ExporterLen, 0x10)
	a := AuthTranscript(CodeAuth, exp, "alice", 2)
	if !bytes.Equal(a, AuthTranscript(CodeAuth, exp, "alice", 2)) {
		t.Fatal("AuthTranscript is not deterministic")
	}
	// Every input must change what is signed, or a signature for one
	// purpose, connection, user or device would serve for another.
	for name, other := range map[string][]byte{
		"purpose":  AuthTranscript(CodeLogin, exp, "alice", 2),
		"exporter": AuthTranscript(CodeAuth, fill(ExporterLen, 0x11), "alice", 2),
		"user":     AuthTranscript(CodeAuth, exp, "alicf", 2),
		"device":   AuthTranscript(CodeAuth, exp, "alice", 3),
		"device 0": AuthTranscript(CodeAuth, exp, "alice", 0),
	} {
		if bytes.Equal(a, other) {
			t.Errorf("changing the %s does not change the transcript", name)
		}
	}
	const want = "0319" + "73656375726563686174206465766963652061757468207631" + // "securechat device auth v1"
		"050112" + // purpose 18
		"0720" + "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f" +
		"0905616c696365" +
		"0b0102"
	if got := hex.EncodeToString(a); got != want {
		t.Errorf("AuthTranscript = %s\nwant %s", got, want)
	}
	// Register and Login sign before a device id exists: field 5 is
	// omitted, not written as 0 (protocol.md §5).
	const wantRegister = "0319" + "73656375726563686174206465766963652061757468207631" +
		"050110" + // purpose 16
		"0720" + "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f" +
		"0905616c696365"
	if got := hex.EncodeToString(AuthTranscript(CodeRegister, exp, "alice", 0)); got != wantRegister {
		t.Errorf("AuthTranscript(Register) = %s\nwant %s", got, wantRegister)
	}
}

// TestZeroElements checks the values Marshal would drop inside a message
// that is otherwise valid: an explicit zero or an empty value in a repeated
// field, a nested message of zeros. A decoder must refuse them or decode
// them to something that re-encodes to the same message (checkMessage, the
// property FuzzMessages checks); an element silently lost or gained changes
// what the message asks for.
func TestZeroElements(t *testing.T) {
	t.Parallel()
	var required Encoder // PublishKeys' required fields
	required.BytesField(1, fill(IdentityKeyLen, 1))
	required.BytesField(2, []byte{2})
	required.BytesField(3, []byte{3})
	required.BytesField(4, []byte{4})
	publish := hex.EncodeToString(required.Bytes())
	tests := []struct {
		name string
		body string // hex
		m    func() wireMessage
	}{
		{"FetchKeys device 0", "050100", func() wireMessage { return new(FetchKeys) }},
		{"FetchKeys device 0 among others", "0303626f62" + "050101" + "050100" + "050102", func() wireMessage { return new(FetchKeys) }},
		{"PublishKeys empty one-time prekey", publish + "0b00", func() wireMessage { return new(PublishKeys) }},
		{"PublishKeys empty one-time prekey among others", publish + "0b0101" + "0b00", func() wireMessage { return new(PublishKeys) }},
		{"PublishKeys empty one-time KEM prekey", publish + "0d00", func() wireMessage { return new(PublishKeys) }},
		{"PublishKeys explicit false replace", publish + "0f0100", func() wireMessage { return new(PublishKeys) }},
		{"PublishKeys empty certificate", "0320" + hex.EncodeToString(fill(IdentityKeyLen, 1)) + "0500" + "070103" + "090104", func() wireMessage { return new(PublishKeys) }},
		{"Ack seq 0", "030100", func() wireMessage { return new(Ack) }},
		{"KeyBundles empty bundle", "0300" + "0300", func() wireMessage { return new(KeyBundles) }},
		{"KeyBundles bundle of zeros", "0306" + "030100" + "0500", func() wireMessage { return new(KeyBundles) }},
		{"KeyBundle empty bundle bytes", "030101" + "0500", func() wireMessage { return new(KeyBundle) }},
		{"Welcome empty key counts", "0305616c696365" + "0900", func() wireMessage { return new(Welcome) }},
		{"Welcome key counts of zeros", "0909" + "030100" + "050100" + "0700", func() wireMessage { return new(Welcome) }},
		{"Welcome key counts twice", "0903030101" + "0903050102", func() wireMessage { return new(Welcome) }},
		{"IdentityKey empty", "0300", func() wireMessage { return new(IdentityKey) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, err := hex.DecodeString(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			checkMessage(t, tt.name, tt.m, body)
		})
	}
}

// TestCodes checks that the message codes are distinct and named, the
// prekey codes of prekeys.go included.
func TestCodes(t *testing.T) {
	t.Parallel()
	codes := map[string]Code{
		"Error": CodeError, "OK": CodeOK, "Register": CodeRegister, "Login": CodeLogin, "Auth": CodeAuth,
		"Welcome": CodeWelcome, "Devices": CodeDevices, "DeviceList": CodeDeviceList, "Send": CodeSend,
		"Sent": CodeSent, "Deliver": CodeDeliver, "Ack": CodeAck, "QueueEmpty": CodeQueueEmpty, "Ping": CodePing,
		"PublishKeys": CodePublishKeys, "FetchKeys": CodeFetchKeys, "KeyBundles": CodeKeyBundles,
		"Identity": CodeIdentity, "IdentityKey": CodeIdentityKey, "KeysLow": CodeKeysLow,
		"Signal": CodeSignal, "CheckName": CodeCheckName, "NameFree": CodeNameFree,
		"LinkStart": CodeLinkStart, "LinkStarted": CodeLinkStarted, "LinkFind": CodeLinkFind, "LinkInfo": CodeLinkInfo,
		"LinkApprove": CodeLinkApprove, "PublishDeviceList": CodePublishDeviceList, "RevokeDevice": CodeRevokeDevice,
		"LinkApproved":   CodeLinkApproved,
		"AccountDevices": CodeAccountDevices, "AccountDeviceList": CodeAccountList, "RenameDevice": CodeRenameDevice,
		"BlobLimits": CodeBlobLimits, "BlobLimitsIs": CodeBlobLimitsIs, "BlobCreate": CodeBlobCreate,
		"BlobCreated": CodeBlobCreated, "BlobStatus": CodeBlobStatus, "BlobState": CodeBlobState,
		"BlobDone": CodeBlobDone, "BlobUpload": CodeBlobUpload, "BlobDownload": CodeBlobDownload,
	}
	seen := make(map[Code]string)
	for name, c := range codes {
		if other, dup := seen[c]; dup {
			t.Errorf("%s and %s share code %d", name, other, c)
		}
		seen[c] = name
		if got := c.String(); got != name {
			t.Errorf("Code %d is named %q, want %q", c, got, name)
		}
	}
	if len(codeNames) != len(codes) {
		t.Errorf("codeNames has %d entries, the test knows %d codes", len(codeNames), len(codes))
	}
}
