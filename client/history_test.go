package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
)

// TestLinkWithHistory (issue 11, must show): the approving device sends
// its history with the link — a 1 000-message conversation and a few
// more — and the new device shows the same conversations with the same
// messages in the same order; the server holds only ciphertext, and
// deletes it once the new device has it; "since" sends only the newer
// part.
func TestLinkWithHistory(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ha := testAccount(t, s, "alice")
	testAccount(t, s, "bob")
	const marker = "plaintext-marker-7d1f"
	start := time.Now().Add(-48 * time.Hour)
	err := ha.Update(func(tx *home.Tx) error {
		for i := range 1000 {
			r := &home.HistoryRecord{ID: []byte(fmt.Sprintf("bob-%012d", i)), From: "bob", Kind: chat.KindText,
				Text: fmt.Sprintf("%s %d", marker, i), Time: start.Add(time.Duration(i) * time.Minute).UnixMilli()}
			if i%3 == 0 {
				r.From, r.Outgoing, r.State = "alice", true, home.StateRead
			}
			if _, err := tx.AddHistory(chat.Peer("bob"), r, false); err != nil {
				return err
			}
		}
		_, err := tx.AddHistory(chat.Peer("carol"), &home.HistoryRecord{ID: []byte("carol-0000000001"), From: "carol", Kind: chat.KindText, Text: "recent", Time: time.Now().UnixMilli()}, true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	link := func(hist *HistoryOptions) (*home.Home, home.ArchiveStats) {
		t.Helper()
		nl, err := PrepareLink("alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := nl.Start(ctx, s.addr, s.fp, "phone")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		approver := connectHome(t, ha, false)
		cand, err := approver.FindDevice(ctx, nl.Code)
		if err != nil {
			t.Fatal(err)
		}
		var sent int64
		if hist != nil {
			hist.Progress = func(done, total int64) { sent = done }
		}
		if err := approver.Approve(ctx, cand, hist); err != nil {
			t.Fatal(err)
		}
		approver.Close()
		a, err := w.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h, err := home.Open(filepath.Join(t.TempDir(), "phone"), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeChecked(t, h) })
		if _, err := nl.Finish(h, s.addr, s.fp, a); err != nil {
			t.Fatal(err)
		}
		if (nl.Archive != nil) != (hist != nil) || hist != nil && sent != int64(nl.Archive.Size) {
			t.Fatalf("archive %+v, uploaded %d", nl.Archive, sent)
		}
		if nl.Archive == nil {
			return h, home.ArchiveStats{}
		}
		// While the file waits, the server's data holds no plaintext.
		if leaked := grepDir(t, s.data, marker); leaked != "" {
			t.Fatalf("the marker is in %s on the server", leaked)
		}
		c := connectHome(t, h, false)
		// A fetch cut short keeps the reference; the next one resumes.
		cut, stop := context.WithCancel(ctx)
		stop()
		if _, err := c.ReceiveHistory(cut, nl.Archive, nil); err == nil {
			t.Fatal("a cancelled fetch succeeded")
		}
		if p, _ := h.PendingHistory(); p == nil {
			t.Fatal("the history's reference was lost with a cut fetch")
		}
		var got int64
		st, found, err := c.ResumeHistory(ctx, func(done, total int64) { got = done })
		if err != nil || !found {
			t.Fatal(err, found)
		}
		if p, _ := h.PendingHistory(); p != nil {
			t.Fatal("the history's reference is kept after it came")
		}
		if got != int64(nl.Archive.Size) {
			t.Fatalf("downloaded %d of %d", got, nl.Archive.Size)
		}
		// Fetched: the server deleted the file.
		if _, err := c.BlobStatus(ctx, mustBlobID(t, nl.Archive.Blob)); err == nil {
			t.Fatal("the history's file is still on the server after the new device fetched it")
		}
		return h, st
	}

	h, st := link(&HistoryOptions{})
	if st.Messages != 1001 || st.Conversations != 2 {
		t.Fatalf("imported %+v", st)
	}
	for _, conv := range []chat.Conversation{chat.Peer("bob"), chat.Peer("carol")} {
		want, _ := ha.History(conv, "", 2000)
		got, _ := h.History(conv, "", 2000)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%s: %d entries on the new device, %d on the old, or not the same", conv, len(got), len(want))
		}
	}
	wc, _ := ha.Conversations()
	gc, _ := h.Conversations()
	if len(wc) != len(gc) || wc[0].Conversation != gc[0].Conversation || wc[1].Conversation != gc[1].Conversation {
		t.Fatalf("conversations %+v, want %+v", gc, wc)
	}

	// The last day only: carol's message (bob's are 31 to 48 hours old).
	if _, st = link(&HistoryOptions{Since: time.Now().Add(-24 * time.Hour)}); st.Messages != 1 || st.Conversations != 1 {
		t.Fatalf("since a day ago: %+v", st)
	}
	// None: no archive.
	link(nil)
}

func mustBlobID(t *testing.T, s string) BlobID {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(BlobID{}) {
		t.Fatalf("blob id %q", s)
	}
	return BlobID(b)
}

// grepDir returns a file under dir that holds s, or "".
func grepDir(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || found != "" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}
