package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// Fuzz targets for every decoder of the package (docs/design.md §2). Each one
// checks parse → marshal → parse: whatever a decoder accepts must survive
// re-encoding unchanged, and re-encoding must be canonical, as age's
// FuzzMalleability and tailscale's types/key fuzz tests do.
//
//	go test -run '^$' -fuzz '^FuzzMessages$' -fuzztime 30s ./transport

// corrupted returns b and damaged copies of it, to seed a corpus: the
// decoder's error paths are where its bugs hide.
func corrupted(b []byte) [][]byte {
	out := [][]byte{b}
	if len(b) > 0 {
		out = append(out, b[:len(b)/2], b[:len(b)-1])
		for _, i := range []int{0, len(b) / 2, len(b) - 1} {
			flipped := bytes.Clone(b)
			flipped[i] ^= 0x41
			out = append(out, flipped)
		}
	}
	// An unknown critical field, an unknown non-critical one, and a field
	// whose length runs far past the end.
	out = append(out,
		append(bytes.Clone(b), 0xc7, 0x01, 0x01, 0x00),
		append(bytes.Clone(b), 0xc6, 0x01, 0x01, 0x00),
		binary.AppendUvarint(append(bytes.Clone(b), 0xc7, 0x01), 1<<62),
	)
	return out
}

// explicitZeros returns bodies of one field each, numbers 1 to 7, holding
// the zero of an integer or an empty value. Marshal omits zero values, so a
// decoder must refuse these or decode them to what it decodes from an empty
// body, or the round trip is not stable.
func explicitZeros() [][]byte {
	var out [][]byte
	for num := byte(1); num <= 7; num++ {
		out = append(out, []byte{num<<1 | 1, 1, 0}, []byte{num<<1 | 1, 0})
	}
	return out
}

// withZeroFields returns copies of the valid body b with one explicit-zero
// field of explicitZeros inserted where its number keeps the fields in
// order: a zero or empty element next to real ones, or a required field
// present but empty, which a body of one field cannot reach.
func withZeroFields(b []byte) [][]byte {
	type span struct{ num, end int }
	var spans []span // each field's number and where it ends in b
	d := NewDecoder(b)
	for {
		f, err := d.Next()
		if err != nil {
			break
		}
		spans = append(spans, span{f.Num, len(b) - len(d.buf)})
	}
	var out [][]byte
	for _, z := range explicitZeros() {
		num := int(z[0] >> 1)
		at := 0 // after the last field numbered num or lower
		for _, s := range spans {
			if s.num <= num {
				at = s.end
			}
		}
		body := append(bytes.Clone(b[:at]), z...)
		out = append(out, append(body, b[at:]...))
	}
	return out
}

// checkMessage is the round-trip property for one message type.
func checkMessage(t *testing.T, name string, newMsg func() wireMessage, body []byte) {
	in := bytes.Clone(body) // the fuzz engine owns body
	m1 := newMsg()
	if err := Unmarshal(in, m1); err != nil {
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("%s: error %q is a %T, not a *DecodeError", name, err, err)
		}
		return
	}
	enc1 := Marshal(m1)
	if len(enc1) > len(body) {
		t.Fatalf("%s: %d bytes decoded and re-encoded to %d", name, len(body), len(enc1))
	}
	// Decoded values must not alias the input: connections reuse buffers.
	for i := range in {
		in[i] ^= 0xff
	}
	if enc := Marshal(m1); !bytes.Equal(enc, enc1) {
		t.Fatalf("%s: the decoded message changed with its input buffer", name)
	}
	m2 := newMsg()
	if err := Unmarshal(enc1, m2); err != nil {
		t.Fatalf("%s: re-encoding does not decode: %v\ninput      %x\nre-encoded %x", name, err, body, enc1)
	}
	if !reflect.DeepEqual(m1, m2) {
		t.Fatalf("%s: round trip changed the message\ninput      %x\nre-encoded %x\nfirst  %+v\nsecond %+v", name, body, enc1, m1, m2)
	}
	if enc2 := Marshal(m2); !bytes.Equal(enc2, enc1) {
		t.Fatalf("%s: encoding is not canonical\nfirst  %x\nsecond %x", name, enc1, enc2)
	}
}

// FuzzMessages decodes body as the message type messageTypes[kind] and
// checks the round trip.
func FuzzMessages(f *testing.F) {
	index := make(map[string]byte)
	for i, mt := range messageTypes {
		index[mt.name] = byte(i)
	}
	for _, m := range sampleMessages() {
		kind := index[reflect.TypeOf(m).Elem().Name()]
		for _, b := range corrupted(Marshal(m)) {
			f.Add(kind, b)
		}
		for _, b := range withZeroFields(Marshal(m)) {
			f.Add(kind, b)
		}
	}
	for kind := range messageTypes {
		f.Add(byte(kind), []byte{})
		for _, b := range explicitZeros() {
			f.Add(byte(kind), b)
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		mt := messageTypes[int(kind)%len(messageTypes)]
		checkMessage(t, mt.name, mt.new, body)
	})
}

// fuzzMaxFrame keeps FuzzReadFrame from allocating DefaultMaxFrame for every
// input that declares a long frame.
const fuzzMaxFrame = 1 << 16

// FuzzReadFrame checks ParseFrame and ReadFrame: a frame that parses
// re-encodes to exactly its input, and reading a stream of frames consumes
// exactly the frames it returns.
func FuzzReadFrame(f *testing.F) {
	frames := []Frame{
		{Code: CodePing, ID: 1},
		{Code: CodeQueueEmpty},
		{Code: CodeAck, Body: Marshal(&Ack{Seqs: []uint64{1, 2}})},
		{Code: CodeSend, ID: math.MaxUint32, Body: Marshal(&Send{MessageID: fill(MessageIDLen, 0), Envelopes: []Envelope{{User: "bob", Device: 1, Payload: []byte("hi")}}})},
	}
	for _, fr := range frames {
		for _, b := range corrupted(AppendFrame(nil, fr)) {
			f.Add(b)
		}
	}
	ping := AppendFrame(nil, frames[0])
	f.Add(append(bytes.Clone(ping), ping...))                    // two frames
	f.Add(header(math.MaxUint32, Version, CodePing, 1))          // huge length prefix
	f.Add(header(1<<31, Version, CodePing, 1))                   // 2 GiB
	f.Add(header(fuzzMaxFrame+1, Version, CodePing, 1))          // just over the limit
	f.Add(header(HeaderSize-1, Version, CodePing, 1))            // shorter than its header
	f.Add(append(header(HeaderSize+1, Version+1, CodeOK, 1), 0)) // another version
	f.Add([]byte{})
	// Half-sent frames: the whole length declared, a part of the body sent,
	// across the body buffer's first growth (readBody).
	f.Add(header(fuzzMaxFrame, Version, CodeSend, 1))
	f.Add(append(header(fuzzMaxFrame, Version, CodeSend, 1), fill(bodyStep+1, 5)...))
	f.Add(AppendFrame(nil, Frame{Code: CodeSend, ID: 2, Body: fill(bodyStep+1, 6)}))
	f.Add(AppendFrame(nil, Frame{Code: CodeSend, ID: 2, Body: fill(2*bodyStep, 7)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b, fuzzMaxFrame)
		if err == nil {
			enc := AppendFrame(nil, fr)
			if !bytes.Equal(enc, b) {
				t.Fatalf("frame %x re-encodes to %x", b, enc)
			}
			again, err := ParseFrame(enc, fuzzMaxFrame)
			if err != nil || !reflect.DeepEqual(again, fr) {
				t.Fatalf("re-encoded frame does not parse to the same frame: %v", err)
			}
		}
		r := bytes.NewReader(b)
		var read []byte
		for {
			fr, err := ReadFrame(r, fuzzMaxFrame)
			if err != nil {
				break
			}
			if len(fr.Body) > fuzzMaxFrame-HeaderSize {
				t.Fatalf("ReadFrame returned a body of %d bytes over the limit", len(fr.Body))
			}
			read = AppendFrame(read, fr)
		}
		if !bytes.HasPrefix(b, read) {
			t.Fatalf("frames read from %x re-encode to %x, not a prefix of the stream", b, read)
		}
	})
}

// FuzzCanonicalUser checks that CanonicalUser never panics and that what
// it returns is a valid, already canonical name that differs from its input
// only in ASCII case.
func FuzzCanonicalUser(f *testing.F) {
	for _, s := range []string{
		"alice", "Alice", "a.b-c_d", "0", strings.Repeat("a", MaxUserName), strings.Repeat("a", MaxUserName+1),
		"", "a b", "\u212Aelvin", "\u017Fam", "élise", "a\x00", "\xff", "ALICE@EXAMPLE",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalUser(s)
		if err != nil {
			return
		}
		if len(c) == 0 || len(c) > MaxUserName || len(c) != len(s) || strings.ToLower(s) != c {
			t.Fatalf("CanonicalUser(%q) = %q", s, c)
		}
		for i := 0; i < len(c); i++ {
			if b := c[i]; !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_' || b == '.' || b == '-') {
				t.Fatalf("CanonicalUser(%q) = %q holds %q", s, c, b)
			}
		}
		if again, err := CanonicalUser(c); err != nil || again != c {
			t.Fatalf("CanonicalUser(%q) = %q, %v; not idempotent", c, again, err)
		}
	})
}

// FuzzParseFingerprint checks that an accepted fingerprint is not zero, is
// the hex digits of its input, and survives its text forms.
func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{
		testFingerprint,
		strings.ToUpper(testFingerprint),
		"00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:18:19:1a:1b:1c:1d:1e:1f",
		"0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f",
		" " + testFingerprint + "\n",
		testFingerprint[:63],
		testFingerprint + "0",
		"g" + testFingerprint[1:],
		strings.Repeat("0", 64),
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		if fp.IsZero() {
			t.Fatalf("ParseFingerprint(%q) accepted the zero fingerprint", s)
		}
		digits := strings.ToLower(strings.NewReplacer(" ", "", ":", "", "-", "").Replace(strings.TrimSpace(s)))
		if str := fp.String(); str != digits {
			t.Fatalf("ParseFingerprint(%q) = %s, not the digits of its input", s, str)
		}
		if _, err := hex.DecodeString(fp.String()); err != nil || len(fp.String()) != 64 {
			t.Fatalf("String() = %q", fp.String())
		}
		grouped := fp.Grouped() // as people are shown it
		for _, text := range []string{fp.String(), grouped, strings.ToUpper(grouped)} {
			if g, err := ParseFingerprint(text); err != nil || !g.Equal(fp) {
				t.Fatalf("ParseFingerprint(%q) = %v, %v; want %v", text, g, err, fp)
			}
		}
		if g, err := FingerprintFromBytes(fp.Bytes()); err != nil || !g.Equal(fp) {
			t.Fatalf("FingerprintFromBytes(Bytes()) = %v, %v", g, err)
		}
	})
}
