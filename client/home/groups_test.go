package home

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
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

// oldGroupRecord writes a group record as an earlier version did: with a
// key request to answer with the next message (field 7).
type oldGroupRecord struct{ GroupRecord }

func (m *oldGroupRecord) MarshalFields(e *transport.Encoder) {
	m.GroupRecord.MarshalFields(e)
	e.Message(7, &KeyHolder{User: "bob", Device: 1})
}

// TestGroupRecordHolders: a holder keeps the position it was first sent
// the chain at and whether its key request was answered; a record kept
// with key requests by an earlier version still reads, without them.
func TestGroupRecordHolders(t *testing.T) {
	rec := GroupRecord{Group: chat.Group("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), Log: []byte("log"),
		Holders: []KeyHolder{{User: "bob", Device: 1, DeviceKey: bytes.Repeat([]byte{1}, 32), Position: 7, Answered: true}, {User: "carol", Device: 2}}}
	var back GroupRecord
	if err := transport.Unmarshal(transport.Marshal(&rec), &back); err != nil || !reflect.DeepEqual(back, rec) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	var old GroupRecord
	if err := transport.Unmarshal(transport.Marshal(&oldGroupRecord{rec}), &old); err != nil || !reflect.DeepEqual(old, rec) {
		t.Fatalf("a record with a key request of an earlier version: %+v %v", old, err)
	}
	q := Queued{ID: bytes.Repeat([]byte{2}, 16), To: chat.Peer("bob"), Content: []byte("c"), KeyAnswer: 3}
	var qb Queued
	if err := transport.Unmarshal(transport.Marshal(&q), &qb); err != nil || !reflect.DeepEqual(qb, q) {
		t.Fatalf("a queued key answer: %+v %v", qb, err)
	}
}
