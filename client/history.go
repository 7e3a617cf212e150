package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// History transfer at link time (issue 11 point 4; protocol.md §10.1,
// §9.8, §6.8): the approving device exports its history as an archive,
// encrypts it as an attachment under a key of its own making, uploads it
// as a file for the device id the link reserved, and puts the file's id,
// key, digest and size in the sealed link message. The new device fetches
// it, the attachment cipher checking every chunk and the digest, adds it
// to its home, and tells the server it has it, which deletes it. The
// server holds ciphertext only, for at most the files' TTL.

// HistoryOptions says what history goes to a device being linked.
type HistoryOptions struct {
	// Since: only messages sent at or after it; the zero time: all.
	Since time.Time
	// Progress, if set, is told the upload's progress.
	Progress func(done, total int64)
}

// sendHistory uploads this home's history for this account's device dev
// (reserved by the link, not yet added) and returns the reference the
// sealed link message carries.
func (c *Client) sendHistory(ctx context.Context, dev uint32, o *HistoryOptions) (*ArchiveRef, home.ArchiveStats, error) {
	key, err := e2ee.NewAttachmentKey(c.rand)
	if err != nil {
		return nil, home.ArchiveStats{}, err
	}
	f, err := os.CreateTemp("", "securechat-history-*")
	if err != nil {
		return nil, home.ArchiveStats{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	aw, err := e2ee.NewAttachmentWriter(f, key, c.rand)
	if err != nil {
		return nil, home.ArchiveStats{}, err
	}
	st, err := c.home.ExportArchive(aw, home.ExportOptions{Since: o.Since})
	if err == nil {
		err = aw.Close()
	}
	if err != nil {
		return nil, st, fmt.Errorf("exporting the history: %w", err)
	}
	size := aw.Size()
	lim, err := c.BlobLimits(ctx)
	if err != nil {
		return nil, st, err
	}
	if err := lim.CheckBlobSize(size); err != nil {
		return nil, st, fmt.Errorf("the history does not fit: %w; link with less history (fewer days) or none", err)
	}
	id, err := c.Upload(ctx, f, size, []chat.Device{{User: c.prof.User, ID: dev}}, o.Progress)
	if err != nil {
		return nil, st, fmt.Errorf("uploading the history: %w", err)
	}
	return &ArchiveRef{Blob: id.String(), Key: key, Digest: aw.Digest(), Size: uint64(size)}, st, nil
}

// ResumeHistory fetches the history a linking device sent, if this home
// still waits for it (a fetch that was cut short): found is false when
// there is none.
func (c *Client) ResumeHistory(ctx context.Context, progress func(done, total int64)) (st home.ArchiveStats, found bool, err error) {
	b, err := c.home.PendingHistory()
	if err != nil || b == nil {
		return st, false, err
	}
	var ref ArchiveRef
	if err := transport.Unmarshal(b, &ref); err != nil {
		c.home.ClearPendingHistory()
		return st, true, fmt.Errorf("the history's reference: %w", err)
	}
	st, err = c.ReceiveHistory(ctx, &ref, progress)
	return st, true, err
}

// ResumeHistory: Client.ResumeHistory over the engine's connection.
func (e *Engine) ResumeHistory(ctx context.Context, progress func(done, total int64)) (home.ArchiveStats, bool, error) {
	c, err := e.connected()
	if err != nil {
		return home.ArchiveStats{}, false, err
	}
	return c.ResumeHistory(ctx, progress)
}

// limitWriter refuses writes past n bytes.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errors.New("the server sent more than the file's size")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// ReceiveHistory fetches the history archive ref names (from the sealed
// link message, NewLink.Archive), checks it with its key and digest, adds
// it to the home and tells the server it was fetched. What the home has
// already is kept; an archive that does not check out stops the import
// with what came before it kept.
func (c *Client) ReceiveHistory(ctx context.Context, ref *ArchiveRef, progress func(done, total int64)) (home.ArchiveStats, error) {
	raw, err := hex.DecodeString(ref.Blob)
	if err != nil || len(raw) != transport.BlobIDLen {
		return home.ArchiveStats{}, errors.New("the history's file id is not one")
	}
	id := BlobID(raw)
	f, err := os.CreateTemp("", "securechat-history-*")
	if err != nil {
		return home.ArchiveStats{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// No more than the link said: a server cannot fill the disk.
	n, err := c.Download(ctx, id, &limitWriter{w: f, n: int64(ref.Size)}, 0, progress)
	var te *transport.Error
	if errors.As(err, &te) && te.Code == transport.ErrNoSuchBlob {
		c.home.ClearPendingHistory() // expired on the server: it will not come
	}
	if err != nil {
		return home.ArchiveStats{}, fmt.Errorf("fetching the history: %w", err)
	}
	if uint64(n) != ref.Size {
		return home.ArchiveStats{}, fmt.Errorf("the history is %d bytes, the link said %d", n, ref.Size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return home.ArchiveStats{}, err
	}
	ar, err := e2ee.NewAttachmentReader(f, ref.Key, ref.Digest)
	if err != nil {
		return home.ArchiveStats{}, err
	}
	st, err := c.home.ImportArchive(ar)
	if err != nil {
		// Damaged: fetching it again gives the same bytes.
		c.home.ClearPendingHistory()
		return st, fmt.Errorf("the history: %w", err)
	}
	if err := c.home.ClearPendingHistory(); err != nil {
		return st, err
	}
	if err := c.BlobDone(ctx, id); err != nil {
		return st, fmt.Errorf("history added, but the server was not told it can delete it (it expires anyway): %w", err)
	}
	return st, nil
}
