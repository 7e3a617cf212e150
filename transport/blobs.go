package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Encrypted files (blobs), protocol.md §6.8: created, asked about and
// released on the control stream; uploaded and downloaded on bulk streams
// of their own (§2.2), each opened by the client and starting with one
// frame that says what it is for.

// Codes of the blob messages.
const (
	CodeBlobLimits   Code = 112 // request: empty → BlobLimits
	CodeBlobLimitsIs Code = 113 // response: BlobLimits
	CodeBlobCreate   Code = 114 // request: BlobCreate → BlobCreated
	CodeBlobCreated  Code = 115 // response: BlobCreated
	CodeBlobStatus   Code = 116 // request: BlobRef → BlobState
	CodeBlobState    Code = 117 // response: BlobState; also on an upload stream after each commit
	CodeBlobDone     Code = 118 // request: BlobRef → OK; this device fetched the whole blob
	CodeBlobUpload   Code = 119 // the first frame of an upload stream: BlobUpload
	CodeBlobDownload Code = 120 // the first frame of a download stream: BlobDownload
)

func init() {
	codeNames[CodeBlobLimits] = "BlobLimits"
	codeNames[CodeBlobLimitsIs] = "BlobLimitsIs"
	codeNames[CodeBlobCreate] = "BlobCreate"
	codeNames[CodeBlobCreated] = "BlobCreated"
	codeNames[CodeBlobStatus] = "BlobStatus"
	codeNames[CodeBlobState] = "BlobState"
	codeNames[CodeBlobDone] = "BlobDone"
	codeNames[CodeBlobUpload] = "BlobUpload"
	codeNames[CodeBlobDownload] = "BlobDownload"
}

// ErrNoSuchBlob: the blob is not on the server (fetched by every
// recipient, expired, or never created).
const ErrNoSuchBlob ErrorCode = 16

func init() { errorCodeNames[ErrNoSuchBlob] = "no such file" }

// Bounds of the blob messages.
const (
	BlobIDLen = 16
	// MaxBlobRecipients bounds the devices one blob is for.
	MaxBlobRecipients = 1024
	// MaxBlobStreamFrame bounds the frames of a bulk stream (its header,
	// the server's BlobState and Error answers).
	MaxBlobStreamFrame = 4 << 10
)

// BlobLimits tells a client, before it uploads, what the server takes:
// the largest blob, the account's quota and what it uses of it, the chunk
// size and how long a blob is kept.
type BlobLimits struct {
	MaxSize   uint64
	Quota     uint64
	Used      uint64
	ChunkSize uint32
	TTLMS     uint64
}

func (m *BlobLimits) MarshalFields(e *Encoder) {
	e.Uint(1, m.MaxSize)
	e.Uint(2, m.Quota)
	e.Uint(3, m.Used)
	e.Uint(4, uint64(m.ChunkSize))
	e.Uint(5, m.TTLMS)
}

func (m *BlobLimits) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.MaxSize, err = f.Uint()
		case 2:
			m.Quota, err = f.Uint()
		case 3:
			m.Used, err = f.Uint()
		case 4:
			m.ChunkSize, err = f.Uint32()
		case 5:
			m.TTLMS, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
}

// BlobRecipient is a device a blob is for.
type BlobRecipient struct {
	User   string
	Device uint32
}

func (m *BlobRecipient) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.Device))
}

func (m *BlobRecipient) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.Device, err = f.Uint32()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.User == "" || m.Device == 0) {
		err = errorf("recipient without a user or device")
	}
	return err
}

// BlobCreate asks to store a blob of Size bytes for Recipients.
type BlobCreate struct {
	Size       uint64
	Recipients []BlobRecipient
}

func (m *BlobCreate) MarshalFields(e *Encoder) {
	e.Uint(1, m.Size)
	for i := range m.Recipients {
		e.Message(2, &m.Recipients[i])
	}
}

func (m *BlobCreate) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Size, err = f.Uint()
		case 2:
			if len(m.Recipients) >= MaxBlobRecipients {
				return errorf("more than %d recipients", MaxBlobRecipients)
			}
			var r BlobRecipient
			if err = f.Message(&r); err == nil {
				m.Recipients = append(m.Recipients, r)
			}
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Size == 0 || len(m.Recipients) == 0) {
		err = errorf("a blob needs a size and recipients")
	}
	return err
}

// BlobCreated answers BlobCreate: the blob's id, its chunk size and when
// it expires (unix ms).
type BlobCreated struct {
	ID        []byte
	ChunkSize uint32
	Expires   int64
}

func (m *BlobCreated) MarshalFields(e *Encoder) {
	e.BytesField(1, m.ID)
	e.Uint(2, uint64(m.ChunkSize))
	e.Int(3, m.Expires)
}

func (m *BlobCreated) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(BlobIDLen)
		case 2:
			m.ChunkSize, err = f.Uint32()
		case 3:
			m.Expires, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.ID == nil || m.ChunkSize == 0) {
		err = errorf("missing id or chunk size")
	}
	return err
}

// BlobRef names a blob: BlobStatus, BlobDone.
type BlobRef struct {
	ID []byte
}

func (m *BlobRef) MarshalFields(e *Encoder) { e.BytesField(1, m.ID) }

func (m *BlobRef) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.ID, err = f.Fixed(BlobIDLen)
			return err
		}
		return f.Unknown()
	})
	if err == nil && m.ID == nil {
		err = errorf("missing blob id")
	}
	return err
}

// BlobState is what the server holds of a blob: its size and chunk size,
// the chunks confirmed (durably stored, from chunk 0 on) and their bytes,
// and when it expires.
type BlobState struct {
	ID        []byte
	Size      uint64
	ChunkSize uint32
	Chunks    uint32
	Confirmed uint64
	Expires   int64
}

func (m *BlobState) MarshalFields(e *Encoder) {
	e.BytesField(1, m.ID)
	e.Uint(2, m.Size)
	e.Uint(3, uint64(m.ChunkSize))
	e.Uint(4, uint64(m.Chunks))
	e.Uint(5, m.Confirmed)
	e.Int(6, m.Expires)
}

func (m *BlobState) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(BlobIDLen)
		case 2:
			m.Size, err = f.Uint()
		case 3:
			m.ChunkSize, err = f.Uint32()
		case 4:
			m.Chunks, err = f.Uint32()
		case 5:
			m.Confirmed, err = f.Uint()
		case 6:
			m.Expires, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.ID == nil || m.ChunkSize == 0 || m.Confirmed > m.Size) {
		err = errorf("missing id or chunk size, or more confirmed than the size")
	}
	return err
}

// BlobUpload starts an upload stream: chunk First and the ones after it
// follow as raw bytes.
type BlobUpload struct {
	ID    []byte
	First uint32
}

func (m *BlobUpload) MarshalFields(e *Encoder) {
	e.BytesField(1, m.ID)
	e.Uint(2, uint64(m.First))
}

func (m *BlobUpload) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(BlobIDLen)
		case 2:
			m.First, err = f.Uint32()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && m.ID == nil {
		err = errorf("missing blob id")
	}
	return err
}

// BlobDownload starts a download stream: the blob's bytes from Offset to
// its end follow the server's BlobState.
type BlobDownload struct {
	ID     []byte
	Offset uint64
}

func (m *BlobDownload) MarshalFields(e *Encoder) {
	e.BytesField(1, m.ID)
	e.Uint(2, m.Offset)
}

func (m *BlobDownload) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(BlobIDLen)
		case 2:
			m.Offset, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && m.ID == nil {
		err = errorf("missing blob id")
	}
	return err
}

// Stream is a bulk stream (protocol.md §2.2): frames and raw bytes, with
// deadlines. One goroutine reads, one writes.
type Stream struct {
	st *quic.Stream
	r  *bufio.Reader
	// timeout bounds each read and write; 0: none.
	timeout time.Duration
	// closed: CloseWrite was called, so what was written is delivered
	// and Cancel only stops reading.
	closed atomic.Bool
}

func newStream(st *quic.Stream, timeout time.Duration) *Stream {
	return &Stream{st: st, r: bufio.NewReaderSize(st, 64<<10), timeout: timeout}
}

// OpenStream opens a bulk stream on the client's connection; each read and
// write on it must complete within timeout (0: none).
func (c *Conn) OpenStream(ctx context.Context, timeout time.Duration) (*Stream, error) {
	st, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, c.wrapErr(err)
	}
	return newStream(st, timeout), nil
}

// AcceptStream waits for the client's next bulk stream.
func (c *Conn) AcceptStream(ctx context.Context, timeout time.Duration) (*Stream, error) {
	st, err := c.qc.AcceptStream(ctx)
	if err != nil {
		return nil, c.wrapErr(err)
	}
	return newStream(st, timeout), nil
}

func (s *Stream) readDeadline() {
	if s.timeout > 0 {
		s.st.SetReadDeadline(time.Now().Add(s.timeout))
	}
}

// ReadFrame reads one frame of at most MaxBlobStreamFrame bytes.
func (s *Stream) ReadFrame() (Frame, error) {
	s.readDeadline()
	f, err := ReadFrame(s.r, MaxBlobStreamFrame)
	return f, streamErr(err)
}

// ReadFull reads exactly len(p) raw bytes.
func (s *Stream) ReadFull(p []byte) error {
	s.readDeadline()
	_, err := io.ReadFull(s.r, p)
	return streamErr(err)
}

// Read reads raw bytes.
func (s *Stream) Read(p []byte) (int, error) {
	s.readDeadline()
	n, err := s.r.Read(p)
	if err == io.EOF {
		return n, err
	}
	return n, streamErr(err)
}

// WriteFrame writes one frame.
func (s *Stream) WriteFrame(code Code, body Marshaler) error {
	_, err := s.Write(AppendFrame(nil, Frame{Code: code, Body: Marshal(body)}))
	return err
}

// Write writes raw bytes.
func (s *Stream) Write(p []byte) (int, error) {
	if s.timeout > 0 {
		s.st.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	n, err := s.st.Write(p)
	return n, streamErr(err)
}

// CloseWrite ends the stream's sending side: the peer reads what was
// written, then EOF. For the writing goroutine.
func (s *Stream) CloseWrite() error {
	s.closed.Store(true)
	return s.st.Close()
}

// Cancel abandons the stream: it stops reading, and writing too unless
// CloseWrite was called (what was written before it is still delivered).
// Safe beside a Write.
func (s *Stream) Cancel() {
	s.st.CancelRead(0)
	if !s.closed.Load() {
		s.st.CancelWrite(0)
	}
}

// ErrStreamTimeout: a bulk stream's peer neither sent nor took bytes
// within the stream's timeout.
var ErrStreamTimeout = errors.New("bulk stream idle too long")

func streamErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return &ClosedError{Code: ae.ErrorCode, Reason: ae.ErrorMessage}
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return ErrIdleTimeout
	}
	if isTimeout(err) {
		return fmt.Errorf("%w: %v", ErrStreamTimeout, err)
	}
	return err
}
