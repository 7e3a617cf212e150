package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Encrypted files (protocol.md §6.8): BlobLimits, BlobCreate, BlobStatus
// and BlobDone on the control stream; uploads and downloads on bulk
// streams of their own (§2.2), so that a large transfer never holds up
// the control stream. Every piece of it is bounded (docs/security.md
// §4.4): the streams per connection (QUIC's MaxIncomingStreams), the
// uploads per account and in all, the bytes per account (byte_rate,
// byte_burst: a bucket of their own per account, so that a transfer paces
// itself and chat messages keep their own), a timeout on every read and
// write of a stream (frame_timeout), and the chunks one upload holds
// before it commits them (blobCommitChunks).

// BlobChunkSize is the size of every chunk but a blob's last.
const BlobChunkSize = 256 << 10

// blobCommitChunks is how many chunks an upload stores in one commit:
// one fsync per 1 MiB, and at most that much held per upload.
const blobCommitChunks = 4

// maxUploads bounds the uploads running at once on the server (each holds
// at most blobCommitChunks chunks); maxDownloadsPerAccount one account's
// downloads.
const (
	maxUploads             = 256
	maxDownloadsPerAccount = 8
)

// noSuchBlob is the message of the wire error of a blob that is not there.
const noSuchBlob = "no such file on this server (fetched by every recipient, expired or never uploaded)"

func init() {
	routes[transport.CodeBlobLimits] = route{auth: afterAuth, limit: limitLookup, handle: on(handleBlobLimits).handle}
	routes[transport.CodeBlobCreate] = route{auth: afterAuth, limit: limitMessages, handle: on(handleBlobCreate).withCost(noBytes[transport.BlobCreate]).handle}
	routes[transport.CodeBlobStatus] = route{auth: afterAuth, limit: limitLookup, handle: on(handleBlobStatus).handle}
	routes[transport.CodeBlobDone] = route{auth: afterAuth, limit: limitMessages, handle: on(handleBlobDone).withCost(noBytes[transport.BlobRef]).handle}
}

// noBytes: a request that costs a message token and no bytes (the
// bytes of a blob are counted as they stream).
func noBytes[T any](*T) int { return 0 }

// blobSlots counts the transfers running per account and in all.
type blobSlots struct {
	mu        sync.Mutex // guards the maps and total
	uploads   map[string]int
	downloads map[string]int
	total     int
}

func (b *blobSlots) take(account string, upload bool, perAccount int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uploads == nil {
		b.uploads, b.downloads = map[string]int{}, map[string]int{}
	}
	m, what := b.downloads, "downloads"
	if upload {
		m, what = b.uploads, "uploads"
		if b.total >= maxUploads {
			return fmt.Errorf("the server runs %d uploads already; try again soon", maxUploads)
		}
	}
	if m[account] >= perAccount {
		return fmt.Errorf("your account runs %d file %s at once already; wait for one to finish", perAccount, what)
	}
	m[account]++
	if upload {
		b.total++
	}
	return nil
}

func (b *blobSlots) give(account string, upload bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.downloads
	if upload {
		m = b.uploads
		b.total--
	}
	if m[account]--; m[account] <= 0 {
		delete(m, account)
	}
}

func handleBlobLimits(ctx context.Context, ss *session, id uint32, _ *transport.Empty) {
	used, err := ss.srv.store.BlobUsage(ss.dev.User)
	if err != nil {
		ss.fail(id, wireError(ss.log, err))
		return
	}
	cfg := ss.srv.cfg
	ss.reply(id, transport.CodeBlobLimitsIs, &transport.BlobLimits{MaxSize: uint64(cfg.BlobMaxSize), Quota: uint64(cfg.BlobQuota),
		Used: uint64(used), ChunkSize: BlobChunkSize, TTLMS: uint64(time.Duration(cfg.BlobTTL).Milliseconds())})
}

func handleBlobCreate(ctx context.Context, ss *session, id uint32, req *transport.BlobCreate) {
	srv := ss.srv
	if req.Size > uint64(srv.cfg.BlobMaxSize) {
		ss.fail(id, &transport.Error{Code: transport.ErrTooLarge, Message: fmt.Sprintf("the file is %s; this server takes files up to %s",
			chat.FormatBytes(int64(min(req.Size, 1<<62))), chat.FormatBytes(int64(srv.cfg.BlobMaxSize)))})
		return
	}
	var to []chat.Device
	var reserved []uint32 // the sender's pending links' ids, read once when needed
	reservedRead := false
	seen := map[chat.Device]bool{}
	for _, r := range req.Recipients {
		user, err := transport.CanonicalUser(r.User)
		if err != nil {
			ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
			return
		}
		d := chat.DeviceOf(user, r.Device)
		if seen[d] {
			continue
		}
		seen[d] = true
		_, err = srv.store.Device(d)
		if err != nil && d.User == ss.dev.User && errors.Is(err, store.ErrNoSuchDevice) {
			// A device of the sender's own account that a pending link
			// reserved may be named before it exists: the history a
			// device hands the one it links (protocol.md §6.8, §10.1).
			if !reservedRead {
				reserved, reservedRead = srv.links.reserved(ss.dev.User), true
			}
			if slices.Contains(reserved, d.ID) {
				err = nil
			}
		}
		if err != nil {
			if errors.Is(err, store.ErrNoSuchDevice) || errors.Is(err, store.ErrNoSuchUser) {
				ss.fail(id, &transport.Error{Code: transport.ErrNoSuchUser, Message: fmt.Sprintf("no device %s to send a file to", d)})
			} else {
				ss.fail(id, wireError(ss.log, err))
			}
			return
		}
		to = append(to, d)
	}
	var bid store.BlobID
	if _, err := io.ReadFull(srv.rand, bid[:]); err != nil {
		ss.fail(id, wireError(ss.log, err))
		return
	}
	now := srv.cfg.Now()
	expires := now.Add(time.Duration(srv.cfg.BlobTTL))
	err := srv.store.CreateBlob(ctx, store.NewBlob{ID: bid, Owner: ss.dev, Size: int64(req.Size), ChunkSize: BlobChunkSize,
		Recipients: to, Now: now, Expires: expires, Quota: int64(srv.cfg.BlobQuota)})
	if err != nil {
		ss.fail(id, wireError(ss.log, err))
		return
	}
	ss.log.Debug("file created", "blob", bid.String(), "size", req.Size, "recipients", len(to))
	ss.reply(id, transport.CodeBlobCreated, &transport.BlobCreated{ID: bid[:], ChunkSize: BlobChunkSize, Expires: expires.UnixMilli()})
}

// blobFor reads a blob the session's device may see: its owner's or a
// recipient's.
func (ss *session) blobFor(id []byte) (store.Blob, *transport.Error) {
	b, err := ss.srv.store.Blob(store.BlobID(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return b, &transport.Error{Code: transport.ErrNoSuchBlob, Message: noSuchBlob}
	case err != nil:
		return b, wireError(ss.log, err)
	case b.Owner != ss.dev && !b.Recipient(ss.dev):
		return b, wireError(ss.log, store.ErrNotRecipient)
	}
	return b, nil
}

func blobState(b store.Blob) *transport.BlobState {
	return &transport.BlobState{ID: b.ID[:], Size: uint64(b.Size), ChunkSize: uint32(b.ChunkSize), Chunks: uint32(b.Chunks),
		Confirmed: uint64(b.Confirmed()), Expires: b.Expires.UnixMilli()}
}

func handleBlobStatus(ctx context.Context, ss *session, id uint32, req *transport.BlobRef) {
	b, e := ss.blobFor(req.ID)
	if e != nil {
		ss.fail(id, e)
		return
	}
	ss.reply(id, transport.CodeBlobState, blobState(b))
}

func handleBlobDone(ctx context.Context, ss *session, id uint32, req *transport.BlobRef) {
	deleted, err := ss.srv.store.BlobFetched(ctx, store.BlobID(req.ID), ss.dev)
	if errors.Is(err, store.ErrNotFound) {
		ss.fail(id, &transport.Error{Code: transport.ErrNoSuchBlob, Message: noSuchBlob})
		return
	}
	if err != nil {
		ss.fail(id, wireError(ss.log, err))
		return
	}
	if deleted {
		ss.log.Debug("file fetched by every recipient, deleted", "blob", store.BlobID(req.ID).String())
	}
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

// acceptStreams serves the connection's bulk streams once it has
// authenticated; streams opened before wait in QUIC's queue (at most
// MaxIncomingStreams).
func (ss *session) acceptStreams(ctx context.Context) {
	select {
	case <-ss.authed:
	case <-ctx.Done():
		return
	}
	var streams sync.WaitGroup
	defer streams.Wait()
	for {
		st, err := ss.c.AcceptStream(ctx, time.Duration(ss.srv.cfg.FrameTimeout))
		if err != nil {
			return
		}
		streams.Go(func() { ss.serveStream(ctx, st) })
	}
}

// serveStream reads a bulk stream's first frame and serves it.
func (ss *session) serveStream(ctx context.Context, st *transport.Stream) {
	defer st.Cancel() // a no-op for a stream finished in order
	ss.busy.Add(1)    // a transfer is activity: no AFK disconnect meanwhile
	defer func() {
		ss.lastFrame.Store(time.Now().UnixNano())
		ss.busy.Add(-1)
	}()
	f, err := st.ReadFrame()
	if err != nil {
		return
	}
	fail := func(e *transport.Error) {
		st.WriteFrame(transport.CodeError, e)
		st.CloseWrite()
	}
	switch f.Code {
	case transport.CodeBlobUpload:
		var req transport.BlobUpload
		if err := transport.Unmarshal(f.Body, &req); err != nil {
			fail(&transport.Error{Code: transport.ErrBadRequest, Message: "BlobUpload: " + err.Error()})
			return
		}
		ss.serveUpload(ctx, st, &req, fail)
	case transport.CodeBlobDownload:
		var req transport.BlobDownload
		if err := transport.Unmarshal(f.Body, &req); err != nil {
			fail(&transport.Error{Code: transport.ErrBadRequest, Message: "BlobDownload: " + err.Error()})
			return
		}
		ss.serveDownload(ctx, st, &req, fail)
	default:
		fail(&transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("a bulk stream cannot start with %s", f.Code)})
	}
}

// pace waits until the account's blob bytes bucket has n bytes: a
// transfer slows to byte_rate rather than failing.
func (ss *session) pace(ctx context.Context, n int) error {
	srv := ss.srv
	for {
		ok, wait := srv.blobBytes.allowN(ss.dev.User, n, srv.cfg.Now())
		if ok {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (ss *session) serveUpload(ctx context.Context, st *transport.Stream, req *transport.BlobUpload, fail func(*transport.Error)) {
	srv := ss.srv
	b, e := ss.blobFor(req.ID)
	switch {
	case e != nil:
		fail(e)
		return
	case b.Owner != ss.dev:
		fail(&transport.Error{Code: transport.ErrUnauthorized, Message: "only the device that created a file uploads it"})
		return
	case int(req.First) != b.Chunks:
		fail(wireError(ss.log, &store.ChunkError{Want: b.Chunks, Got: int(req.First)}))
		return
	}
	if err := srv.blobSlots.take(ss.dev.User, true, srv.cfg.BlobUploadsPerAccount); err != nil {
		fail(&transport.Error{Code: transport.ErrRateLimited, Message: err.Error(), RetryAfterMS: 1000})
		return
	}
	defer srv.blobSlots.give(ss.dev.User, true)
	next, n := b.Chunks, b.NumChunks()
	for next < n {
		var batch [][]byte
		var readErr error
		for i := next; i < min(next+blobCommitChunks, n) && readErr == nil; i++ {
			c := make([]byte, b.ChunkLen(i))
			if readErr = ss.pace(ctx, len(c)); readErr == nil {
				readErr = st.ReadFull(c)
			}
			if readErr == nil {
				srv.stats.BlobBytesIn.Add(int64(len(c)))
				batch = append(batch, c)
			}
		}
		if readErr == nil && next+len(batch) == n {
			// The last chunk: the stream must end with it.
			var extra [1]byte
			if _, err := st.Read(extra[:]); err != io.EOF {
				if err == nil {
					fail(&transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("bytes past the file's size of %d", b.Size)})
					return
				}
				readErr = err
			}
		}
		if len(batch) > 0 {
			// Whole chunks are kept even when the stream broke after
			// them: the client resumes from what is confirmed.
			confirmed, err := srv.store.PutChunks(context.WithoutCancel(ctx), b.ID, next, batch)
			if errors.Is(err, store.ErrNotFound) {
				// Expired (or deleted) while it was uploaded.
				fail(&transport.Error{Code: transport.ErrNoSuchBlob, Message: noSuchBlob})
				return
			}
			if err != nil {
				fail(wireError(ss.log, err))
				return
			}
			b.Chunks, next = confirmed, confirmed
		}
		if readErr != nil {
			ss.log.Debug("upload stopped", "blob", b.ID.String(), "confirmed", b.Chunks, "err", readErr)
			return
		}
		if err := st.WriteFrame(transport.CodeBlobState, blobState(b)); err != nil {
			return
		}
	}
	st.CloseWrite()
	ss.log.Debug("file uploaded", "blob", b.ID.String(), "size", b.Size)
}

func (ss *session) serveDownload(ctx context.Context, st *transport.Stream, req *transport.BlobDownload, fail func(*transport.Error)) {
	srv := ss.srv
	b, e := ss.blobFor(req.ID)
	switch {
	case e != nil:
		fail(e)
		return
	case !b.Recipient(ss.dev):
		fail(wireError(ss.log, store.ErrNotRecipient))
		return
	case !b.Complete():
		fail(wireError(ss.log, store.ErrBlobIncomplete))
		return
	case req.Offset > uint64(b.Size):
		fail(&transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("offset %d past the file's size of %d", req.Offset, b.Size)})
		return
	}
	if err := srv.blobSlots.take(ss.dev.User, false, maxDownloadsPerAccount); err != nil {
		fail(&transport.Error{Code: transport.ErrRateLimited, Message: err.Error(), RetryAfterMS: 1000})
		return
	}
	defer srv.blobSlots.give(ss.dev.User, false)
	if err := st.WriteFrame(transport.CodeBlobState, blobState(b)); err != nil {
		return
	}
	off := int64(req.Offset)
	for i := int(off / int64(b.ChunkSize)); i < b.NumChunks(); i++ {
		c, err := srv.store.ReadChunk(b.ID, i)
		if err != nil {
			ss.log.Debug("download cut", "blob", b.ID.String(), "err", err) // deleted meanwhile
			return
		}
		c = c[off-int64(i)*int64(b.ChunkSize):]
		off = int64(i+1) * int64(b.ChunkSize)
		if err := ss.pace(ctx, len(c)); err != nil {
			return
		}
		if _, err := st.Write(c); err != nil {
			return
		}
		srv.stats.BlobBytesOut.Add(int64(len(c)))
	}
	st.CloseWrite()
}

// blobExpireLoop deletes the blobs past blob_ttl, in bounded batches, every
// min(max(blob_ttl/10, 1 s), 10 min).
func (s *Server) blobExpireLoop(ctx context.Context) {
	every := min(max(time.Duration(s.cfg.BlobTTL)/10, time.Second), 10*time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total := 0
		for {
			n, more, err := s.store.ExpireBlobs(ctx, s.cfg.Now(), blobExpireBatch)
			total += n
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("expiring files", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
		if total > 0 {
			s.log.Info("expired files", "count", total, "ttl", time.Duration(s.cfg.BlobTTL).String())
		}
	}
}

// blobExpireBatch bounds the blobs one expiry commit deletes (each up to
// blob_max_size of chunks).
const blobExpireBatch = 16
