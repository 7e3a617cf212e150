package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame layout, docs/protocol.md §3.1:
//
//	u32 length of what follows (big endian), HeaderSize ≤ length ≤ max
//	u8  version (Version)
//	u16 message code (big endian)
//	u32 request id (big endian); 0 for pushes and notifications
//	... body: fields, §3.2

// Version is the frame schema version this package speaks.
const Version = 1

// HeaderSize is the size of a frame after its length prefix and before its body.
const HeaderSize = 1 + 2 + 4

// DefaultMaxFrame bounds a control-stream frame (protocol.md §3.1). It leaves
// room for a message of MaxPayload bytes to a few dozen devices.
const DefaultMaxFrame = 4 << 20

// Frame is one control-stream frame.
type Frame struct {
	Code Code
	ID   uint32 // request id; 0 for a push or a notification
	Body []byte
}

// FrameSizeError reports a frame whose declared length is out of bounds.
// The stream cannot be resynchronised after it.
type FrameSizeError struct {
	Size, Max int
}

func (e *FrameSizeError) Error() string {
	if e.Size < HeaderSize {
		return fmt.Sprintf("frame of %d bytes is shorter than its header", e.Size)
	}
	return fmt.Sprintf("frame of %d bytes exceeds the limit of %d", e.Size, e.Max)
}

// ErrVersion is returned for a frame of a schema version this package does not speak.
var ErrVersion = errors.New("unsupported frame version")

// ReadFrame reads one frame of at most max bytes from r. The length is checked
// before the body is allocated, and the body's buffer grows as its bytes
// arrive rather than to the declared length at once. A FrameSizeError or ErrVersion leaves r at an
// unknown position: the caller must close the stream.
func ReadFrame(r io.Reader, max int) (Frame, error) {
	var hdr [4 + HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < HeaderSize || n > max {
		return Frame{}, &FrameSizeError{Size: n, Max: max}
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return Frame{}, noEOF(err)
	}
	if hdr[4] != Version {
		return Frame{}, fmt.Errorf("%w %d", ErrVersion, hdr[4])
	}
	f := Frame{
		Code: Code(binary.BigEndian.Uint16(hdr[5:7])),
		ID:   binary.BigEndian.Uint32(hdr[7:11]),
	}
	if body := n - HeaderSize; body > 0 {
		b, err := readBody(r, body)
		if err != nil {
			return Frame{}, noEOF(err)
		}
		f.Body = b
	}
	return f, nil
}

// bodyStep is the first allocation for a frame's body. The buffer doubles
// as bytes arrive, never past the declared length: a peer that declares
// 4 MiB and sends nothing more holds bodyStep bytes, not 4 MiB, and one
// that sends half holds at most twice what it sent (docs/security.md §4.4).
const bodyStep = 16 << 10

// readBody reads n bytes from r into a buffer that grows as they arrive.
func readBody(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, bodyStep))
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(n, 2*cap(b)))
			copy(nb, b)
			b = nb
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}

// ParseFrame decodes one whole frame from b, for tests and fuzzing.
func ParseFrame(b []byte, max int) (Frame, error) {
	r := &sliceReader{b: b}
	f, err := ReadFrame(r, max)
	if err == nil && len(r.b) != 0 {
		err = errorf("%d bytes after the frame", len(r.b))
	}
	return f, err
}

// AppendFrame appends the encoding of f to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(HeaderSize+len(f.Body)))
	dst = append(dst, Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(f.Code))
	dst = binary.BigEndian.AppendUint32(dst, f.ID)
	return append(dst, f.Body...)
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
