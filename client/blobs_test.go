package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Encrypted files through a real server over QUIC (protocol.md §6.8).

// startBlobServer runs a real server with cfg's blob settings; the byte
// rate is out of the way unless cfg sets it.
func startBlobServer(t *testing.T, data, listen string, cfg appliance.Config) *testServer {
	t.Helper()
	cfg.Listen, cfg.Data, cfg.Admin = listen, data, "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.ByteRate == 0 {
		cfg.ByteRate, cfg.ByteBurst = 1e12, 1<<40
	}
	srv, err := appliance.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), cancel: cancel, done: make(chan struct{}), srv: srv}
	go func() { srv.Serve(ctx); close(ts.done) }()
	t.Cleanup(func() {
		select {
		case <-ts.done:
		default:
			ts.stop()
		}
	})
	return ts
}

func randomFile(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

func snapshot(t *testing.T, s *testServer) appliance.StatsSnapshot {
	t.Helper()
	st, err := s.srv.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantWireError(t *testing.T, what string, err error, code transport.ErrorCode, text string) {
	t.Helper()
	var we *transport.Error
	if !errors.As(err, &we) || we.Code != code || !strings.Contains(we.Message, text) {
		t.Errorf("%s: %v, want %s containing %q", what, err, code, text)
	}
}

// TestBlobRoundTrip uploads 50 MB for bob, who downloads it whole and from
// an offset with equal SHA-256; carol and the uploader cannot download it;
// the admin's stats show it stored, and it is gone once bob fetched it.
func TestBlobRoundTrip(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	carol := connectHome(t, testAccount(t, s, "carol"), false)
	defer alice.Close()
	defer bob.Close()
	defer carol.Close()

	const size = 50_000_000
	file := randomFile(size, 1)
	var calls int
	var last int64
	id, err := alice.Upload(ctx, bytes.NewReader(file), size, []chat.Device{chat.DeviceOf("bob", 1)}, func(done, total int64) {
		if done < last || total != size {
			t.Errorf("progress %d of %d after %d", done, total, last)
		}
		calls++
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != size || calls < 10 {
		t.Errorf("progress ended at %d after %d calls", last, calls)
	}
	if st := snapshot(t, s); st.Blobs != 1 || st.BlobBytes != size || st.BlobBytesIn != size {
		t.Errorf("stats while stored: %d files, %d bytes, %d in", st.Blobs, st.BlobBytes, st.BlobBytesIn)
	}
	if l, err := alice.BlobLimits(ctx); err != nil || l.Used != size || l.MaxSize != 100<<20 || l.Quota != 1<<30 || l.TTL != 7*24*time.Hour {
		t.Errorf("limits %+v, %v", l, err)
	}

	h := sha256.New()
	got, err := bob.Download(ctx, id, h, 0, nil)
	if err != nil || got != size {
		t.Fatalf("download: %d, %v", got, err)
	}
	if want := sha256.Sum256(file); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("downloaded file differs")
	}
	var tail bytes.Buffer
	if _, err := bob.Download(ctx, id, &tail, size-300_000, nil); err != nil || !bytes.Equal(tail.Bytes(), file[size-300_000:]) {
		t.Errorf("download from an offset: %d bytes, %v", tail.Len(), err)
	}
	_, err = carol.Download(ctx, id, io.Discard, 0, nil)
	wantWireError(t, "carol's download", err, transport.ErrUnauthorized, "not a recipient")
	_, err = alice.Download(ctx, id, io.Discard, 0, nil)
	wantWireError(t, "the uploader's download", err, transport.ErrUnauthorized, "not a recipient")
	wantWireError(t, "carol's BlobDone", carol.BlobDone(ctx, id), transport.ErrUnauthorized, "not a recipient")

	if err := bob.BlobDone(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = alice.BlobStatus(ctx, id)
	wantWireError(t, "status after every fetch", err, transport.ErrNoSuchBlob, "no such file")
	_, err = bob.Download(ctx, id, io.Discard, 0, nil)
	wantWireError(t, "download after every fetch", err, transport.ErrNoSuchBlob, "no such file")
	if st := snapshot(t, s); st.Blobs != 0 || st.BlobBytes != 0 || st.BlobBytesOut != size+300_000 {
		t.Errorf("stats after the fetch: %d files, %d bytes, %d out", st.Blobs, st.BlobBytes, st.BlobBytesOut)
	}
	if l, _ := alice.BlobLimits(ctx); l.Used != 0 {
		t.Errorf("alice still uses %d", l.Used)
	}
}

// TestBlobResume cuts an upload halfway (the client's connection closed),
// restarts the server, and resumes: the server receives only what it had
// not confirmed, and the file arrives whole.
func TestBlobResume(t *testing.T) {
	data := t.TempDir()
	// Paced, so that the cut comes halfway rather than at the end.
	cfg := appliance.Config{ByteRate: 20 << 20, ByteBurst: 1 << 20}
	s := startBlobServer(t, data, "127.0.0.1:0", cfg)
	addr := s.addr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ha := testAccount(t, s, "alice")
	hb := testAccount(t, s, "bob")
	alice := connectHome(t, ha, false)

	const size = 50_000_000
	file := randomFile(size, 2)
	id, err := alice.CreateBlob(ctx, size, []chat.Device{chat.DeviceOf("bob", 1)})
	if err != nil {
		t.Fatal(err)
	}
	var before atomic.Int64
	err = alice.UploadBlob(ctx, id, bytes.NewReader(file), func(done, total int64) {
		before.Store(done)
		if done >= size/2 {
			go alice.Close() // the connection is gone mid-upload
		}
	})
	if err == nil {
		t.Fatal("the upload went on after its connection closed")
	}
	t.Logf("cut: %v", err)
	firstIn := snapshot(t, s).BlobBytesIn
	s.stop()

	s = startBlobServer(t, data, addr, cfg)
	alice = connectHome(t, ha, false)
	defer alice.Close()
	status, err := alice.BlobStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// It holds what it confirmed, and what was still arriving when its
	// received count was read (chunks in flight are committed before it
	// stops): never less than either.
	if status.Confirmed < before.Load() || status.Confirmed >= size || status.Confirmed < firstIn {
		t.Fatalf("after the restart the server holds %d bytes; %d were confirmed and %d received before", status.Confirmed, before.Load(), firstIn)
	}
	var resumedFrom int64 = -1
	if err := alice.UploadBlob(ctx, id, bytes.NewReader(file), func(done, total int64) {
		if resumedFrom < 0 {
			resumedFrom = done
		}
	}); err != nil {
		t.Fatal(err)
	}
	if secondIn := snapshot(t, s).BlobBytesIn; resumedFrom != status.Confirmed || secondIn != size-status.Confirmed {
		t.Errorf("resumed from %d; the server received %d more bytes, want %d (nothing confirmed sent again)", resumedFrom, secondIn, size-status.Confirmed)
	}
	bob := connectHome(t, hb, false)
	defer bob.Close()
	h := sha256.New()
	if _, err := bob.Download(ctx, id, h, 0, nil); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(file); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("resumed file differs")
	}
}

// TestBlobRefused: over the size limit and over the quota, a clear error
// before any byte (from the client's check and from the server's own);
// nothing half-stored. A file for two devices stays until both fetched it.
func TestBlobRefused(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{BlobMaxSize: 1 << 20, BlobQuota: 3 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	carol := connectHome(t, testAccount(t, s, "carol"), false)
	defer alice.Close()
	defer bob.Close()
	defer carol.Close()
	to := []chat.Device{chat.DeviceOf("bob", 1), chat.DeviceOf("carol", 1)}

	big := randomFile(2<<20, 3)
	_, err := alice.Upload(ctx, bytes.NewReader(big), int64(len(big)), to, nil)
	if err == nil || err.Error() != "the file is 2 MiB; this server takes files up to 1 MiB" {
		t.Errorf("too large: %v", err)
	}
	var created transport.BlobCreated
	err = alice.request(ctx, transport.CodeBlobCreate, &transport.BlobCreate{Size: 2 << 20, Recipients: []transport.BlobRecipient{{User: "bob", Device: 1}}}, transport.CodeBlobCreated, &created)
	wantWireError(t, "too large, asked anyway", err, transport.ErrTooLarge, "the file is 2 MiB; this server takes files up to 1 MiB")

	file := randomFile(1<<20, 4)
	var ids []BlobID
	for range 3 {
		id, err := alice.Upload(ctx, bytes.NewReader(file), int64(len(file)), to, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	_, err = alice.Upload(ctx, bytes.NewReader(file[:10]), 10, to, nil)
	if err == nil || err.Error() != "this file needs 10 bytes but your account has 0 bytes of its 3 MiB for files left on this server" {
		t.Errorf("over quota: %v", err)
	}
	err = alice.request(ctx, transport.CodeBlobCreate, &transport.BlobCreate{Size: 10, Recipients: []transport.BlobRecipient{{User: "bob", Device: 1}}}, transport.CodeBlobCreated, &created)
	wantWireError(t, "over quota, asked anyway", err, transport.ErrTooLarge, "for files left on this server")
	err = alice.request(ctx, transport.CodeBlobCreate, &transport.BlobCreate{Size: 10, Recipients: []transport.BlobRecipient{{User: "dave", Device: 1}}}, transport.CodeBlobCreated, &created)
	wantWireError(t, "an unknown recipient", err, transport.ErrNoSuchUser, "dave")
	if st := snapshot(t, s); st.Blobs != 3 || st.BlobBytes != 3<<20 || st.BlobBytesIn != 3<<20 {
		t.Errorf("after the refusals: %d files, %d bytes, %d received", st.Blobs, st.BlobBytes, st.BlobBytesIn)
	}

	// Out of order: an upload stream that starts past the confirmed chunks.
	_, err = alice.Download(ctx, BlobID{1}, io.Discard, 0, nil)
	wantWireError(t, "an unknown file", err, transport.ErrNoSuchBlob, "no such file")

	// Deleted once both recipients fetched it.
	for _, c := range []*Client{bob, carol} {
		var got bytes.Buffer
		if _, err := c.Download(ctx, ids[0], &got, 0, nil); err != nil || !bytes.Equal(got.Bytes(), file) {
			t.Fatalf("download: %d bytes, %v", got.Len(), err)
		}
		if _, err := alice.BlobStatus(ctx, ids[0]); err != nil {
			t.Errorf("gone before every recipient fetched it: %v", err)
		}
		if err := c.BlobDone(ctx, ids[0]); err != nil {
			t.Fatal(err)
		}
	}
	_, err = alice.BlobStatus(ctx, ids[0])
	wantWireError(t, "after both fetched it", err, transport.ErrNoSuchBlob, "no such file")
	if _, err := alice.Upload(ctx, bytes.NewReader(file[:10]), 10, to, nil); err != nil {
		t.Errorf("quota not given back: %v", err)
	}
}

// TestBlobUploadStream: an upload stream that starts at a chunk the
// server has not confirmed, and one that sends past the file's size, are
// refused; the chunks before stay.
func TestBlobUploadStream(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	defer alice.Close()
	defer bob.Close()
	id, err := alice.CreateBlob(ctx, appliance.BlobChunkSize+10, []chat.Device{chat.DeviceOf("bob", 1)})
	if err != nil {
		t.Fatal(err)
	}
	stream := func(first uint32, body []byte) error {
		st, err := alice.conn.OpenStream(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Cancel()
		st.WriteFrame(transport.CodeBlobUpload, &transport.BlobUpload{ID: id[:], First: first})
		st.Write(body)
		st.CloseWrite()
		for {
			f, err := st.ReadFrame()
			if err != nil {
				return nil
			}
			if f.Code == transport.CodeError {
				return streamError(f.Body)
			}
		}
	}
	wantWireError(t, "chunk 1 first", stream(1, make([]byte, 10)), transport.ErrBadRequest, "the server expects chunk 0")
	wantWireError(t, "past the size", stream(0, make([]byte, appliance.BlobChunkSize+11)), transport.ErrBadRequest, "past the file's size")
	if st, err := alice.BlobStatus(ctx, id); err != nil || st.Confirmed != 0 {
		t.Errorf("after a refused last chunk: %+v, %v", st, err)
	}
	if err := stream(0, make([]byte, appliance.BlobChunkSize)); err != nil {
		t.Fatal(err)
	}
	if st, err := alice.BlobStatus(ctx, id); err != nil || st.Confirmed != appliance.BlobChunkSize {
		t.Errorf("after the first chunk alone: %+v, %v", st, err)
	}
	_, err = bob.Download(ctx, id, io.Discard, 0, nil)
	wantWireError(t, "an unfinished file", err, transport.ErrBadRequest, "has not finished")
	if err := alice.UploadBlob(ctx, id, bytes.NewReader(make([]byte, appliance.BlobChunkSize+10)), nil); err != nil {
		t.Fatal(err)
	}
}

// TestBlobExpiry: a file nobody fetched goes after blob_ttl.
func TestBlobExpiry(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{BlobTTL: appliance.Duration(time.Second)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	testAccount(t, s, "bob")
	defer alice.Close()
	id, err := alice.Upload(ctx, bytes.NewReader([]byte("soon gone")), 9, []chat.Device{chat.DeviceOf("bob", 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := alice.BlobStatus(ctx, id)
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrNoSuchBlob {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("the file never expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := snapshot(t, s); st.Blobs != 0 || st.BlobBytes != 0 {
		t.Errorf("after expiry: %d files, %d bytes", st.Blobs, st.BlobBytes)
	}
}

// TestBlobChatLatency: chat messages keep flowing while a 50 MB upload
// runs (paced to take seconds): 15 are sent and delivered, one after
// another, before it ends. Their latency with and without the upload is
// logged, not compared: another process's load moves it.
func TestBlobChatLatency(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{ByteRate: 25 << 20, ByteBurst: 1 << 20, MessageRate: 1000, MessageBurst: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ha := testAccount(t, s, "alice")
	alice := connectHome(t, ha, false)
	bob := connectHome(t, testAccount(t, s, "bob"), true)
	defer alice.Close()
	defer bob.Close()

	latency := func(n int) time.Duration {
		var ds []time.Duration
		for range n {
			start := time.Now()
			if _, err := alice.SendText(ctx, "bob", "ping"); err != nil {
				t.Fatal(err)
			}
			for {
				ev := <-bob.Events()
				if ev.Type == EventMessage {
					break
				}
				if ev.Type == EventClosed {
					t.Fatal(ev.Err)
				}
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	latency(3) // the session starts
	quiet := latency(15)

	uploader := connectHome(t, ha, false)
	defer uploader.Close()
	const size = 50_000_000
	var done atomic.Int64
	upload := make(chan error, 1)
	go func() {
		_, err := uploader.Upload(ctx, bytes.NewReader(randomFile(size, 5)), size, []chat.Device{chat.DeviceOf("bob", 1)},
			func(d, _ int64) { done.Store(d) })
		upload <- err
	}()
	for done.Load() < 4<<20 {
		time.Sleep(10 * time.Millisecond)
	}
	busy := latency(15)
	if d := done.Load(); d >= size {
		t.Fatalf("the upload ended (%d bytes) before the messages did: nothing was measured", d)
	}
	// The messages were delivered while the upload ran (checked above).
	// How much slower is a figure, not a test condition: on a shared
	// machine another process's load moves it (it belongs in make bench).
	t.Logf("median send→deliver: %v quiet, %v during the upload", quiet, busy)
	if err := <-upload; err != nil {
		t.Fatal(err)
	}
}

// TestBlobTransferCancelled: an upload and a download end when the
// caller's context does (Ctrl-C in send-file or files get, the engine
// closing), not when the transfer would: a paced server keeps sending or
// taking bytes, so no stream timeout would end them.
func TestBlobTransferCancelled(t *testing.T) {
	slow := appliance.Config{ByteRate: 64 << 10, ByteBurst: transport.MaxPayload}
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", slow)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	defer alice.Close()
	defer bob.Close()
	const size = 2 << 20 // 32 s at the paced rate
	file := randomFile(size, 6)
	id, err := alice.CreateBlob(ctx, size, []chat.Device{chat.DeviceOf("bob", 1)})
	if err != nil {
		t.Fatal(err)
	}
	// cancelSoon cancels a context once the transfer has started.
	cancelSoon := func() (context.Context, func(done, total int64)) {
		tctx, tcancel := context.WithCancel(ctx)
		var once atomic.Bool
		return tctx, func(done, total int64) {
			if !once.Swap(true) {
				time.AfterFunc(300*time.Millisecond, tcancel)
			}
		}
	}
	uctx, progress := cancelSoon()
	err = alice.UploadBlob(uctx, id, bytes.NewReader(file), progress)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("upload cancelled: %v, want %v", err, context.Canceled)
	}
	if st, err := alice.BlobStatus(ctx, id); err != nil || st.Complete() {
		t.Fatalf("after the cancelled upload the server holds %+v, %v: it went on", st, err)
	}

	lim := s.srv.Limits
	l, _ := lim(ctx)
	l.ByteRate = 1e12
	if err := s.srv.SetLimits(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := alice.UploadBlob(ctx, id, bytes.NewReader(file), nil); err != nil {
		t.Fatal(err)
	}
	l.ByteRate = slow.ByteRate
	if err := s.srv.SetLimits(ctx, l); err != nil {
		t.Fatal(err)
	}
	dctx, progress := cancelSoon()
	var got bytes.Buffer
	_, err = bob.Download(dctx, id, &got, 0, progress)
	if !errors.Is(err, context.Canceled) || got.Len() >= size {
		t.Errorf("download cancelled: %v after %d of %d bytes, want %v before the end", err, got.Len(), size, context.Canceled)
	}
}

// TestBlobTinyFilesCharged: a file counts against the quota as at least
// one chunk, so that the quota bounds what an account's files hold on the
// server, their records included: tiny files (a record of up to 1 024
// recipients for a byte each) cannot be created by the million. Under a
// 1 MiB quota, four 10-byte files fill it and a fifth is refused by the
// server; one fetched makes room again.
func TestBlobTinyFilesCharged(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{BlobQuota: 4 * appliance.BlobChunkSize})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	bob := connectHome(t, testAccount(t, s, "bob"), false)
	defer alice.Close()
	defer bob.Close()
	create := func() ([]byte, error) {
		var created transport.BlobCreated
		err := alice.request(ctx, transport.CodeBlobCreate, &transport.BlobCreate{Size: 10, Recipients: []transport.BlobRecipient{{User: "bob", Device: 1}}},
			transport.CodeBlobCreated, &created)
		return created.ID, err
	}
	var first BlobID
	for i := range 4 {
		id, err := create()
		if err != nil {
			t.Fatalf("tiny file %d: %v", i+1, err)
		}
		if i == 0 {
			first = BlobID(id)
		}
	}
	_, err := create()
	wantWireError(t, "a fifth tiny file", err, transport.ErrTooLarge, "for files left on this server")
	if l, err := alice.BlobLimits(ctx); err != nil || l.Used != l.Quota {
		t.Errorf("alice's limits: %+v, %v: want the quota used", l, err)
	}
	if st := snapshot(t, s); st.Blobs != 4 || st.BlobBytes != 4*appliance.BlobChunkSize {
		t.Errorf("the server holds %d files reserving %d bytes", st.Blobs, st.BlobBytes)
	}
	if err := alice.UploadBlob(ctx, first, bytes.NewReader([]byte("ten bytes!")), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Download(ctx, first, io.Discard, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.BlobDone(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := create(); err != nil {
		t.Errorf("after one was fetched: %v", err)
	}
}

// TestBlobExpiresMidUpload: a file that expires while its upload runs
// ends the upload with "no such file", as a resume would find it (not an
// internal server error), so the sender fails it at once: "send it again".
func TestBlobExpiresMidUpload(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{BlobTTL: appliance.Duration(time.Second),
		ByteRate: 256 << 10, ByteBurst: transport.MaxPayload})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := connectHome(t, testAccount(t, s, "alice"), false)
	testAccount(t, s, "bob")
	defer alice.Close()
	const size = 4 << 20 // 16 s at the paced rate, the blob kept 1 s
	_, err := alice.Upload(ctx, bytes.NewReader(randomFile(size, 7)), size, []chat.Device{chat.DeviceOf("bob", 1)}, nil)
	wantWireError(t, "an upload past its file's expiry", err, transport.ErrNoSuchBlob, "no such file")
}
