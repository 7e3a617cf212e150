package home

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
)

// testGroupLog is a real one-member group's log, as a home keeps it.
func testGroupLog(t *testing.T, title string) (chat.Conversation, []byte) {
	t.Helper()
	id, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &e2ee.GroupChange{Op: e2ee.OpCreate, Actor: "alice", Title: title, Time: 1,
		Members: []e2ee.GroupMember{{User: "alice", Identity: id.Public(), Role: e2ee.RoleOwner}}}
	c.Salt[0] = title[0]
	c.Group = e2ee.GroupID(c)
	if err := e2ee.SignGroupChange(c, id); err != nil {
		t.Fatal(err)
	}
	l, err := e2ee.NewGroupLog(c, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return chat.Group(fmt.Sprintf("%x", c.Group)), b
}

func addMessages(t *testing.T, h *Home, conv chat.Conversation, from string, start int64, n int) {
	addMessagesTB(t, h, conv, from, start, n)
}

func addMessagesTB(t testing.TB, h *Home, conv chat.Conversation, from string, start int64, n int) {
	t.Helper()
	err := h.Update(func(tx *Tx) error {
		for i := range n {
			id := make([]byte, 16)
			copy(id, fmt.Sprintf("%.6s%d", conv.ID(), start+int64(i)))
			r := &HistoryRecord{ID: id, From: from, Kind: chat.KindText, Text: fmt.Sprintf("%s %d", conv.ID(), i), Time: start + int64(i), Outgoing: from == "alice", State: StateRead}
			if i == n-1 && from == "alice" {
				r.State = StateSending
			}
			if _, err := tx.AddHistory(conv, r, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func allHistory(t *testing.T, h *Home) map[chat.Conversation][]HistoryEntry {
	t.Helper()
	convs, err := h.Conversations()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[chat.Conversation][]HistoryEntry)
	for _, c := range convs {
		es, err := h.History(c.Conversation, "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out[c.Conversation] = es
	}
	return out
}

// An archive carries every conversation in order, the contacts' trust,
// the groups' logs and the settings to another home, which then shows the
// same conversations in the same order (issue 11 point 4); "since" keeps
// only the newer messages; a damaged or cut archive stops with ErrArchive
// and keeps what came before; importing twice adds nothing.
func TestArchiveRoundTrip(t *testing.T) {
	src := openTestHome(t)
	g, log := testGroupLog(t, "family")
	addMessages(t, src, chat.Peer("bob"), "bob", 1000, 1200)
	addMessages(t, src, g, "alice", 500, 30)
	addMessages(t, src, chat.Peer("carol"), "alice", 3000, 5)
	bobKey := bytes.Repeat([]byte{3}, 32)
	err := src.Update(func(tx *Tx) error {
		if err := tx.PutContact("bob", &Contact{Identity: bobKey, Verified: true}); err != nil {
			return err
		}
		if err := tx.PutSettings(Settings{SendTyping: false, SendReceipts: true}); err != nil {
			return err
		}
		return tx.PutGroup(&GroupRecord{Group: g, Log: log, ChainCreated: 5, Holders: []KeyHolder{{User: "bob", Device: 1}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	st, err := src.ExportArchive(&archive, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 1235 || st.Conversations != 3 || st.Groups != 1 || st.Contacts != 1 {
		t.Fatalf("exported %+v", st)
	}

	dst := openTestHome(t)
	got, err := dst.ImportArchive(bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Messages != 1235 || got.Conversations != 3 || got.Groups != 1 || got.Contacts != 1 {
		t.Fatalf("imported %+v", got)
	}
	want, have := allHistory(t, src), allHistory(t, dst)
	for conv, es := range want {
		for i := range es {
			if es[i].State == StateSending {
				es[i].State = StateStored // the exporting device is still sending it
			}
		}
		if !reflect.DeepEqual(es, have[conv]) {
			t.Fatalf("%s: %d entries, want %d; first differing entries differ", conv, len(have[conv]), len(es))
		}
	}
	sc, _ := src.Conversations()
	dc, _ := dst.Conversations()
	if len(sc) != len(dc) {
		t.Fatalf("%d conversations, want %d", len(dc), len(sc))
	}
	for i := range sc {
		if sc[i].Conversation != dc[i].Conversation || !sc[i].LastActivity.Equal(dc[i].LastActivity) {
			t.Fatalf("conversation %d: %v, want %v", i, dc[i].Conversation, sc[i].Conversation)
		}
	}
	if ct, _ := dst.Contact("bob"); ct == nil || !ct.Verified || !bytes.Equal(ct.Identity, bobKey) {
		t.Fatalf("bob's contact: %+v", ct)
	}
	if s := dst.Settings(); s.SendTyping || !s.SendReceipts {
		t.Fatalf("settings %+v", s)
	}
	rec, err := dst.Group(g)
	if err != nil || rec == nil || !bytes.Equal(rec.Log, log) || len(rec.Holders) != 0 || !rec.Rotate {
		t.Fatalf("the group's record: %+v, %v", rec, err)
	}
	// Again: nothing added.
	again, err := dst.ImportArchive(bytes.NewReader(archive.Bytes()))
	if err != nil || again.Messages != 0 || again.Skipped != 1235 {
		t.Fatalf("a second import: %+v, %v", again, err)
	}

	// Since: only the newer messages.
	var newer bytes.Buffer
	if st, err := src.ExportArchive(&newer, ExportOptions{Since: time.UnixMilli(2190)}); err != nil || st.Messages != 10+5 || st.Conversations != 2 {
		t.Fatalf("since: %+v, %v", st, err)
	}

	// Damaged, cut short, or not an archive: ErrArchive, what came first kept.
	b := archive.Bytes()
	for name, bad := range map[string][]byte{
		"cut":          b[:len(b)/2],
		"no end":       b[:len(b)-3],
		"not one":      []byte("hello"),
		"extra bytes":  append(bytes.Clone(b), 0),
		"huge record":  append(bytes.Clone(b[:5]), 1, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"unknown kind": append(bytes.Clone(b[:5]), 9, 0),
	} {
		h := openTestHome(t)
		if _, err := h.ImportArchive(bytes.NewReader(bad)); !errors.Is(err, ErrArchive) {
			t.Errorf("%s: %v", name, err)
		}
	}
	part := openTestHome(t)
	st2, err := part.ImportArchive(bytes.NewReader(b[:len(b)/2]))
	if err == nil || st2.Messages == 0 {
		t.Fatalf("a cut archive: %+v, %v", st2, err)
	}
	n := 0
	for _, es := range allHistory(t, part) {
		n += len(es)
	}
	if n != st2.Messages {
		t.Fatalf("a cut archive kept %d messages, said %d", n, st2.Messages)
	}
}

// FuzzImportArchive: an archive comes from another device of the account
// over the link; whatever its bytes, an import ends with a result or
// ErrArchive, never a panic, and a home that still opens its history.
func FuzzImportArchive(f *testing.F) {
	src, err := Open(f.TempDir(), Options{Passphrase: "x", Create: true, KDF: KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
	if err != nil {
		f.Fatal(err)
	}
	addMessagesTB(f, src, chat.Peer("bob"), "bob", 1, 3)
	src.Update(func(tx *Tx) error { return tx.PutContact("bob", &Contact{Identity: bytes.Repeat([]byte{3}, 32)}) })
	var b bytes.Buffer
	if _, err := src.ExportArchive(&b, ExportOptions{}); err != nil {
		f.Fatal(err)
	}
	src.Close()
	for _, c := range corruptedBytes(b.Bytes()) {
		f.Add(c)
	}
	dst, err := Open(f.TempDir(), Options{Passphrase: "x", Create: true, KDF: KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
	if err != nil {
		f.Fatal(err)
	}
	defer dst.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := dst.ImportArchive(bytes.NewReader(b)); err != nil && !errors.Is(err, ErrArchive) {
			t.Fatalf("not ErrArchive: %v", err)
		}
		if _, err := dst.Conversations(); err != nil {
			t.Fatal(err)
		}
	})
}
