package boltstore

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// TestOpensExistingStore opens testdata/v1.db.gz, a store the server wrote
// before the store moved behind interfaces (the last commit with
// appliance/store.go), and reads every kind of record back: the on-disk
// format is protocol.md §7's, unchanged.
func TestOpensExistingStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	gz, err := os.Open("testdata/v1.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, zr); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	if _, err := s.ServerKey(ctx, strings.NewReader("")); err != nil { // generating one would fail to read
		t.Errorf("stored server key: %v", err)
	}
	accounts, err := s.ListAccounts()
	if err != nil || len(accounts) != 2 || accounts[0].Name != "alice" || accounts[1].Devices != 2 || !accounts[1].Created.Equal(t0) {
		t.Errorf("accounts: %+v %v", accounts, err)
	}
	if a, err := s.Account("bob"); err != nil || a.PasswordHash != "phc" || len(a.Identity) != 32 {
		t.Errorf("bob: %+v %v", a, err)
	}
	bob1 := chat.DeviceOf("bob", 1)
	if devs, err := s.ActiveDevices("bob"); err != nil || len(devs) != 2 || devs[1].Device != chat.DeviceOf("bob", 2) {
		t.Errorf("bob's devices: %+v %v", devs, err)
	}
	p, err := s.Pending(bob1, 0, 10)
	if err != nil || len(p) != 3 {
		t.Fatalf("bob/1 mailbox: %+v %v", p, err)
	}
	for i, e := range p {
		if e.From != chat.DeviceOf("alice", 1) || string(e.Payload) != "to bob 1" || !e.Time.Equal(t0.Add(time.Duration(i+1)*time.Minute)) || e.MessageID[0] != byte(i+1) {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	if c, err := s.KeyCount(bob1); err != nil || c != (store.KeyCount{OneTime: 3, OneTimeKEM: 3, Published: true}) {
		t.Errorf("bob/1 keys: %+v %v", c, err)
	}
	if b, err := s.FetchBundles(ctx, "bob", []uint32{2}); err != nil || len(b) != 1 || b[0].OneTime == nil {
		t.Errorf("bundles: %+v %v", b, err)
	}
	if bans, err := s.Bans(); err != nil || len(bans) != 2 {
		t.Errorf("bans: %+v %v", bans, err)
	}
	if m, err := s.Mutes(); err != nil || len(m) != 1 || !m["bob"].IsZero() {
		t.Errorf("mutes: %v %v", m, err)
	}
	if inv, err := s.Invites(); err != nil || len(inv) != 1 || inv[0].Uses != 2 {
		t.Errorf("invites: %+v %v", inv, err)
	}
	if phc, err := s.AdminPasswordHash(); err != nil || phc != "$argon2id$fixture" {
		t.Errorf("admin password: %q %v", phc, err)
	}
	// A resend of a stored message is still recognised.
	id := make([]byte, 16)
	id[0] = 1
	res, err := s.Append(ctx, store.Message{From: chat.DeviceOf("alice", 1), ID: id, Time: t0.Add(time.Hour),
		Envelopes: []store.Envelope{{To: bob1, Payload: []byte("x")}, {To: chat.DeviceOf("bob", 2), Payload: []byte("y")}}})
	if err != nil || !res.Duplicate || !res.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("resend: %+v %v", res, err)
	}
	// The store is at schema 5 now, and takes group messages, device
	// lists and files (protocol.md §7: 2 → 3, 3 → 4 and 4 → 5 add their buckets, empty).
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := metaU64(tx, keySchema); v != schemaVersion || schemaVersion != 5 {
			t.Errorf("schema %d after open, want 5", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.DeviceList("bob"); err != nil || l.Seq != 0 || l.Bytes != nil {
		t.Errorf("device list on the migrated store: %+v %v", l, err)
	}
	bob1Rec, _ := s.Device(bob1)
	if err := s.PutDeviceList(ctx, "bob", store.NewList{SignedList: store.SignedList{Seq: 1, Bytes: []byte("list")},
		Devices: []store.ListedDevice{{ID: 1, Key: bob1Rec.Key}}}); err != nil {
		t.Errorf("device list stored on the migrated store: %v", err)
	}
	devs, _ := s.ActiveDevices("bob")
	gid := make([]byte, 16)
	gid[0] = 9
	id[0] = 99
	if _, err := s.Append(ctx, store.Message{From: bob1, ID: id, Time: t0.Add(time.Hour), Group: gid, Shared: []byte("group ciphertext"),
		Envelopes: []store.Envelope{{To: devs[1].Device, Key: devs[1].Key}}}); err != nil {
		t.Fatalf("group message on the migrated store: %v", err)
	}
	if p, err := s.Pending(devs[1].Device, 0, 10); err != nil || string(p[len(p)-1].Shared) != "group ciphertext" {
		t.Errorf("group entry on the migrated store: %+v %v", p, err)
	}
	if err := s.Verify(); err != nil {
		t.Error(err)
	}
}
