package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Encrypted files on the server (protocol.md §6.8): the client library
// that send-file, files and the history transfer build on. The bytes it
// moves are already ciphertext (an e2ee attachment encoding, protocol.md
// §9.5); this layer only stores and fetches them, in chunks, resuming
// from what the server confirmed.

// BlobID names a file on the server.
type BlobID [transport.BlobIDLen]byte

func (id BlobID) String() string { return fmt.Sprintf("%x", id[:]) }

// BlobLimits are what the server takes, told before an upload.
type BlobLimits struct {
	MaxSize   int64 // the largest file
	Quota     int64 // what this account's files may hold together
	Used      int64 // what they hold now
	ChunkSize int
	TTL       time.Duration // how long a file waits for its recipients
}

// BlobStatus is what the server holds of a file.
type BlobStatus struct {
	Size      int64
	ChunkSize int
	Confirmed int64 // bytes durably stored, from the start
	Expires   time.Time
}

// Complete says whether the whole file is stored.
func (s BlobStatus) Complete() bool { return s.Confirmed == s.Size }

// blobStreamTimeout bounds each read and write of a bulk stream: a server
// that neither takes nor sends bytes for this long is taken as gone.
const blobStreamTimeout = 30 * time.Second

// BlobLimits asks the server what it takes.
func (c *Client) BlobLimits(ctx context.Context) (BlobLimits, error) {
	var l transport.BlobLimits
	if err := c.request(ctx, transport.CodeBlobLimits, &transport.Empty{}, transport.CodeBlobLimitsIs, &l); err != nil {
		return BlobLimits{}, err
	}
	return BlobLimits{MaxSize: int64(l.MaxSize), Quota: int64(l.Quota), Used: int64(l.Used), ChunkSize: int(l.ChunkSize),
		TTL: time.Duration(l.TTLMS) * time.Millisecond}, nil
}

// CheckBlobSize says, before anything is sent, whether the server takes a
// file of size bytes: a clear error if not.
func (l BlobLimits) CheckBlobSize(size int64) error {
	switch {
	case size > l.MaxSize:
		return fmt.Errorf("the file is %s; this server takes files up to %s", chat.FormatBytes(size), chat.FormatBytes(l.MaxSize))
	case l.Used+size > l.Quota:
		return fmt.Errorf("this file needs %s but your account has %s of its %s for files left on this server",
			chat.FormatBytes(size), chat.FormatBytes(max(l.Quota-l.Used, 0)), chat.FormatBytes(l.Quota))
	}
	return nil
}

// CreateBlob reserves a file of size bytes on the server for the devices
// to. The caller keeps the id to resume the upload (UploadBlob) after a
// lost connection or a restart.
func (c *Client) CreateBlob(ctx context.Context, size int64, to []chat.Device) (BlobID, error) {
	l, err := c.BlobLimits(ctx)
	if err != nil {
		return BlobID{}, err
	}
	if err := l.CheckBlobSize(size); err != nil {
		return BlobID{}, err
	}
	req := &transport.BlobCreate{Size: uint64(size)}
	for _, d := range to {
		req.Recipients = append(req.Recipients, transport.BlobRecipient{User: d.User, Device: d.ID})
	}
	var created transport.BlobCreated
	if err := c.request(ctx, transport.CodeBlobCreate, req, transport.CodeBlobCreated, &created); err != nil {
		return BlobID{}, err
	}
	return BlobID(created.ID), nil
}

// Upload stores size bytes of r on the server for the devices to and
// returns the file's id; progress (if not nil) is told the bytes the
// server confirmed. An upload cut off returns an error and the id, which
// UploadBlob resumes.
func (c *Client) Upload(ctx context.Context, r io.ReaderAt, size int64, to []chat.Device, progress func(done, total int64)) (BlobID, error) {
	id, err := c.CreateBlob(ctx, size, to)
	if err != nil {
		return id, err
	}
	return id, c.UploadBlob(ctx, id, r, progress)
}

// BlobStatus asks the server what it holds of a file.
func (c *Client) BlobStatus(ctx context.Context, id BlobID) (BlobStatus, error) {
	var st transport.BlobState
	if err := c.request(ctx, transport.CodeBlobStatus, &transport.BlobRef{ID: id[:]}, transport.CodeBlobState, &st); err != nil {
		return BlobStatus{}, err
	}
	return blobStatus(&st), nil
}

func blobStatus(st *transport.BlobState) BlobStatus {
	return BlobStatus{Size: int64(st.Size), ChunkSize: int(st.ChunkSize), Confirmed: int64(st.Confirmed), Expires: time.UnixMilli(st.Expires)}
}

// UploadBlob sends what the server does not have yet of a file it
// created, from the first chunk it has not confirmed, on a stream of its
// own; r holds the whole file.
func (c *Client) UploadBlob(ctx context.Context, id BlobID, r io.ReaderAt, progress func(done, total int64)) error {
	status, err := c.BlobStatus(ctx, id)
	if err != nil {
		return err
	}
	if progress != nil {
		progress(status.Confirmed, status.Size)
	}
	if status.Complete() {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.conn.OpenStream(ctx, blobStreamTimeout)
	if err != nil {
		return c.openFailed(ctx, err)
	}
	defer st.Cancel()
	// The caller giving up ends the stream: a paced server keeps taking
	// bytes, so no stream timeout would.
	defer context.AfterFunc(ctx, st.Cancel)()
	first := status.Confirmed / int64(status.ChunkSize)
	if err := st.WriteFrame(transport.CodeBlobUpload, &transport.BlobUpload{ID: id[:], First: uint32(first)}); err != nil {
		return c.openFailed(ctx, err)
	}
	// The chunks go from their own goroutine while this one reads the
	// server's confirmations. A write the server stopped (it refused the
	// upload) leaves the reading to this one, which reads why; a local
	// read that failed abandons the stream.
	go func() {
		src := &readErr{r: io.NewSectionReader(r, status.Confirmed, status.Size-status.Confirmed)}
		if _, err := io.Copy(st, src); err == nil {
			st.CloseWrite()
		} else if src.err != nil {
			st.Cancel()
		}
	}()
	confirmed := status.Confirmed
	for confirmed < status.Size {
		f, err := st.ReadFrame()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("upload cut after %s of %s: %w", chat.FormatBytes(confirmed), chat.FormatBytes(status.Size), c.streamErr(err))
		}
		switch f.Code {
		case transport.CodeBlobState:
			var bs transport.BlobState
			if err := transport.Unmarshal(f.Body, &bs); err != nil {
				return fmt.Errorf("server sent a malformed BlobState: %w", err)
			}
			confirmed = int64(bs.Confirmed)
			if progress != nil {
				progress(confirmed, status.Size)
			}
		case transport.CodeError:
			return streamError(f.Body)
		default:
			return fmt.Errorf("server answered an upload with %s", f.Code)
		}
	}
	return nil
}

// readErr keeps the error its reader gave, io.EOF aside.
type readErr struct {
	r   io.Reader
	err error
}

func (x *readErr) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err != nil && err != io.EOF {
		x.err = err
	}
	return n, err
}

func streamError(body []byte) error {
	var e transport.Error
	if err := transport.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("server sent a malformed error: %w", err)
	}
	return &e
}

// openFailed is why a bulk stream could not be opened or written: the
// caller's context, or the connection's end (closedErr waits for the read
// loop to end, which only a closed connection does).
func (c *Client) openFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ce *transport.ClosedError
	if errors.As(err, &ce) {
		return &ConnError{c.closedErr(err)}
	}
	return &ConnError{err}
}

// streamErr is a bulk stream's error as the connection explains it.
func (c *Client) streamErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the server ended the stream")
	}
	var ce *transport.ClosedError
	if errors.As(err, &ce) {
		return c.closedErr(err)
	}
	return err
}

// Download writes a file's bytes from offset on to w and returns the
// file's size; progress (if not nil) is told the bytes written so far,
// offset included. Only a recipient device may download. A download cut
// off returns an error after writing what came: call again from offset
// plus what was written. A whole download is not a fetch: BlobDone tells
// the server, once the caller has checked the file.
func (c *Client) Download(ctx context.Context, id BlobID, w io.Writer, offset int64, progress func(done, total int64)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.conn.OpenStream(ctx, blobStreamTimeout)
	if err != nil {
		return 0, c.openFailed(ctx, err)
	}
	defer st.Cancel()
	defer context.AfterFunc(ctx, st.Cancel)() // as in UploadBlob
	if err := st.WriteFrame(transport.CodeBlobDownload, &transport.BlobDownload{ID: id[:], Offset: uint64(offset)}); err != nil {
		return 0, c.openFailed(ctx, err)
	}
	st.CloseWrite()
	f, err := st.ReadFrame()
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("download: %w", c.streamErr(err))
	}
	switch f.Code {
	case transport.CodeBlobState:
	case transport.CodeError:
		return 0, streamError(f.Body)
	default:
		return 0, fmt.Errorf("server answered a download with %s", f.Code)
	}
	var bs transport.BlobState
	if err := transport.Unmarshal(f.Body, &bs); err != nil {
		return 0, fmt.Errorf("server sent a malformed BlobState: %w", err)
	}
	size := int64(bs.Size)
	done := offset
	buf := make([]byte, 64<<10)
	for done < size {
		n, err := st.Read(buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return size, werr
			}
			done += int64(n)
			if progress != nil {
				progress(done, size)
			}
		}
		if err != nil && done < size && ctx.Err() != nil {
			return size, ctx.Err()
		}
		if err != nil && done < size {
			return size, fmt.Errorf("download cut after %s of %s: %w", chat.FormatBytes(done), chat.FormatBytes(size), c.streamErr(err))
		}
	}
	return size, nil
}

// BlobDone tells the server this device has the whole file; once every
// recipient device has, the server deletes it.
func (c *Client) BlobDone(ctx context.Context, id BlobID) error {
	return c.request(ctx, transport.CodeBlobDone, &transport.BlobRef{ID: id[:]}, transport.CodeOK, &transport.Empty{})
}
