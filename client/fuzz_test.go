package client

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Fuzz targets for the client's decoders of what other users send (via the
// server): payloads and their content. Whatever decodes must re-encode to
// something that decodes to the same value, canonically.

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

// FuzzParsePayload checks that parsePayload never panics on what another
// user sends and that encodePayload(parsePayload(p)) gives p back.
func FuzzParsePayload(f *testing.F) {
	for _, p := range [][]byte{
		encodePayload(nil, []byte("ratchet message")),
		encodePayload(bytes.Repeat([]byte{7}, 1200), []byte("first message")),
		encodePayload([]byte{1}, []byte{2}),
	} {
		for _, c := range corruptedBytes(p) {
			f.Add(c)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{2, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		header, msg, err := parsePayload(p)
		if err != nil {
			return
		}
		if len(msg) == 0 || (header != nil && len(header) == 0) {
			t.Fatalf("parsed %x into header %x, message %x", p, header, msg)
		}
		if p2 := encodePayload(header, msg); !bytes.Equal(p2, p) {
			t.Fatalf("re-encoding changed the payload\nfirst  %x\nsecond %x", p, p2)
		}
	})
}

// FuzzContent checks the decoder of decrypted message content.
func FuzzContent(f *testing.F) {
	for _, c := range []*Content{
		{Kind: chat.KindText, Text: "hello", SentAt: 1_700_000_000_000},
		{Kind: chat.KindText, Text: strings.Repeat("☃", MaxTextLen/3), SentAt: -1, Group: "friends"},
		{Kind: chat.KindText, Text: "a copy", SentAt: 1, Conversation: chat.Peer("bob")},
		{Kind: chat.KindRead, Refs: [][]byte{make([]byte, 16)}, Conversation: chat.Group("friends")},
		{Kind: 255, Group: strings.Repeat("g", transport.MaxText)},
		{Kind: chat.KindFile, SentAt: 5, Group: "friends", File: &FileRef{Blob: BlobID{1, 2}, Key: make([]byte, 32), Digest: make([]byte, 32),
			Plain: 100_000, Size: e2ee.AttachmentSize(100_000), Name: "report.pdf", Type: "application/pdf"}},
		{Kind: chat.KindFile, File: &FileRef{Key: make([]byte, 32), Digest: make([]byte, 32), Size: e2ee.AttachmentSize(0), Name: strings.Repeat("é", 127)}},
	} {
		for _, b := range corruptedBytes(transport.Marshal(c)) {
			f.Add(b)
		}
	}
	for _, b := range explicitZeros() {
		f.Add(b)
	}
	// A text with one empty group change (field 7): an empty repeated
	// element has no encoding, so the decoder refuses it.
	f.Add(append(transport.Marshal(&Content{Kind: chat.KindText, Text: "\n\n\n"}), 7<<1|1, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeContent(b)
		if err != nil {
			return
		}
		c2, err := decodeContent(transport.Marshal(c))
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip: %+v → %+v, %v", c, c2, err)
		}
	})
}
