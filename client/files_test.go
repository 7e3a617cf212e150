package client

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
