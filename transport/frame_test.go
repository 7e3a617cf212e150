package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// header returns a frame's first bytes: length prefix, version, code, id.
func header(length uint32, version byte, code Code, id uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, version)
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	return binary.BigEndian.AppendUint32(b, id)
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	frames := []Frame{
		{Code: CodePing, ID: 1},
		{Code: CodeDeliver, ID: 0, Body: Marshal(&Deliver{Seq: 9, MessageID: fill(MessageIDLen, 0)})},
		{Code: Code(math.MaxUint16), ID: math.MaxUint32, Body: fill(1000, 3)},
		{Code: CodeSend, ID: 7, Body: make([]byte, DefaultMaxFrame-HeaderSize)},
	}
	var stream []byte
	for _, f := range frames {
		stream = AppendFrame(stream, f)
	}
	if want := header(HeaderSize, Version, CodePing, 1); !bytes.Equal(stream[:len(want)], want) {
		t.Fatalf("first frame = %x, want %x", stream[:len(want)], want)
	}
	r := bytes.NewReader(stream)
	for i, want := range frames {
		got, err := ReadFrame(r, DefaultMaxFrame)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("frame %d = {%v %d %d bytes}, want {%v %d %d bytes}", i, got.Code, got.ID, len(got.Body), want.Code, want.ID, len(want.Body))
		}
		one, err := ParseFrame(AppendFrame(nil, want), DefaultMaxFrame)
		if err != nil || !reflect.DeepEqual(one, want) {
			t.Errorf("ParseFrame of frame %d = %v, %v", i, one.Code, err)
		}
	}
	// The end of the stream between frames is a clean io.EOF.
	if _, err := ReadFrame(r, DefaultMaxFrame); err != io.EOF {
		t.Errorf("ReadFrame at the end = %v, want io.EOF", err)
	}
}

func TestFrameSizeLimits(t *testing.T) {
	t.Parallel()
	const max = 100
	tests := []struct {
		length uint32
		ok     bool
	}{
		{0, false},
		{1, false},
		{HeaderSize - 1, false},
		{HeaderSize, true},
		{max, true},
		{max + 1, false},
		{math.MaxUint32, false},
	}
	for _, tt := range tests {
		b := header(tt.length, Version, CodeOK, 5)
		if tt.ok {
			b = append(b, make([]byte, int(tt.length)-HeaderSize)...)
		}
		f, err := ReadFrame(bytes.NewReader(b), max)
		if tt.ok {
			if err != nil || len(f.Body) != int(tt.length)-HeaderSize {
				t.Errorf("length %d: %d bytes of body, %v", tt.length, len(f.Body), err)
			}
			continue
		}
		var se *FrameSizeError
		if !errors.As(err, &se) || se.Size != int(tt.length) || se.Max != max {
			t.Errorf("length %d: %v, want a *FrameSizeError", tt.length, err)
			continue
		}
		short := tt.length < HeaderSize
		if strings.Contains(se.Error(), "shorter") != short {
			t.Errorf("length %d: message %q", tt.length, se.Error())
		}
	}
}

// prefixReader yields a length prefix and then fails the test if anything
// more is read: a frame over the limit must be refused from its prefix.
type prefixReader struct {
	t      *testing.T
	prefix []byte
}

func (r *prefixReader) Read(p []byte) (int, error) {
	if len(r.prefix) == 0 {
		r.t.Error("ReadFrame read past the length prefix of an oversized frame")
		return 0, io.EOF
	}
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	return n, nil
}

// TestFrameTooLongNotAllocated checks protocol.md §3.1: the declared length
// is checked before the body is allocated, so a peer cannot make the server
// allocate 2 GiB with four bytes. Not parallel: it measures allocation.
func TestFrameTooLongNotAllocated(t *testing.T) {
	for _, n := range []uint32{DefaultMaxFrame + 1, 1 << 31, math.MaxUint32} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadFrame(&prefixReader{t: t, prefix: binary.BigEndian.AppendUint32(nil, n)}, DefaultMaxFrame)
		runtime.ReadMemStats(&after)
		var se *FrameSizeError
		if !errors.As(err, &se) || se.Size != int(n) {
			t.Errorf("length %d: %v, want a *FrameSizeError", n, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
			t.Errorf("length %d: refusing the frame allocated %d bytes", n, got)
		}
	}
}

func TestFrameVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []byte{0, Version + 1, 0xff} {
		b := append(header(HeaderSize+1, v, CodeOK, 1), 0)
		_, err := ReadFrame(bytes.NewReader(b), DefaultMaxFrame)
		if !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: %v, want ErrVersion", v, err)
		}
	}
}

func TestFrameTruncated(t *testing.T) {
	t.Parallel()
	full := AppendFrame(nil, Frame{Code: CodeSend, ID: 3, Body: []byte("body")})
	// Cut anywhere after the first byte: io.ErrUnexpectedEOF. Only an empty
	// stream is a clean io.EOF.
	for n := 1; n < len(full); n++ {
		_, err := ReadFrame(bytes.NewReader(full[:n]), DefaultMaxFrame)
		if err != io.ErrUnexpectedEOF {
			t.Errorf("frame cut to %d of %d bytes: %v, want io.ErrUnexpectedEOF", n, len(full), err)
		}
	}
	if _, err := ReadFrame(bytes.NewReader(nil), DefaultMaxFrame); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	// Errors of the underlying reader pass through.
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(full[:6]), iotest.ErrReader(boom))
	if _, err := ReadFrame(r, DefaultMaxFrame); err != boom {
		t.Errorf("reader failing mid-frame: %v, want its error", err)
	}
}

func TestParseFrame(t *testing.T) {
	t.Parallel()
	full := AppendFrame(nil, Frame{Code: CodeAck, Body: Marshal(&Ack{Seqs: []uint64{1}})})
	if _, err := ParseFrame(full, DefaultMaxFrame); err != nil {
		t.Fatalf("ParseFrame: %v", err)
	}
	_, err := ParseFrame(append(full, 0), DefaultMaxFrame)
	var de *DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "1 bytes after the frame") {
		t.Errorf("trailing byte: %v, want a *DecodeError", err)
	}
	two := AppendFrame(full, Frame{Code: CodePing, ID: 2})
	if _, err := ParseFrame(two, DefaultMaxFrame); err == nil {
		t.Error("ParseFrame accepted two frames")
	}
	if _, err := ParseFrame(full[:len(full)-1], DefaultMaxFrame); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated: %v, want io.ErrUnexpectedEOF", err)
	}
}
