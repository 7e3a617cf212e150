package home

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/securechat/securechat/chat"
)

// TestGroupRecords: group records are kept sealed, listed in key order,
// survive a reopen, and only group conversations have them.
func TestGroupRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{Passphrase: "x", Create: true, KDF: KDFParams{Time: 1, MemoryK: 64, Threads: 1}}
	h, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte("the family's secret title")
	b, a := chat.Group("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"), chat.Group("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	err = h.Update(func(tx *Tx) error {
		if err := tx.PutGroup(&GroupRecord{Group: b, Log: marker}); err != nil {
			return err
		}
		if err := tx.PutGroup(&GroupRecord{Group: chat.Peer("bob"), Log: marker}); err == nil {
			t.Error("a peer conversation stored as a group")
		}
		return tx.PutGroup(&GroupRecord{Group: a, Log: []byte("a"), Left: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	raw, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, marker) || bytes.Contains(raw, []byte("bbbbbbbbbbbbbbbb")) {
		t.Error("a group's log or id is on disk in the clear")
	}
	opts.Create = false
	h, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	all, err := h.Groups()
	if err != nil || len(all) != 2 || all[0].Group != a || !all[0].Left || all[1].Group != b || !bytes.Equal(all[1].Log, marker) {
		t.Fatalf("groups after a reopen: %+v %v", all, err)
	}
	if r, err := h.Group(chat.Group("cccccccccccccccccccccccccccccccc")); r != nil || err != nil {
		t.Errorf("an unknown group: %+v %v", r, err)
	}
}
