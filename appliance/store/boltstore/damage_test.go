package boltstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// Tests of a damaged store (docs/design.md §4.2, operations.md §7): a real store, made through the store API and closed, whose
// copy has one page overwritten as an SD card might lose it.

var damageT0 = time.UnixMilli(1_700_000_000_000)

func fillBytes(n int, seed string) []byte {
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func devKey(d chat.Device) ed25519.PublicKey {
	return fillBytes(ed25519.PublicKeySize, "key "+d.String())
}

// damageFixture makes a store with enough of every kind of record that
// each bucket the server fills has pages of its own: 40 accounts with
// published keys, direct and group messages queued for them, bans,
// mutes, invites and a file. It returns the file's path.
func damageFixture(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.ServerKey(ctx, bytes.NewReader(make([]byte, 32))); err != nil {
		t.Fatal(err)
	}
	const users = 40
	for i := range users {
		u := fmt.Sprintf("user%02d", i)
		d := chat.DeviceOf(u, 1)
		if err := s.CreateAccount(ctx, store.NewAccount{Name: u, PasswordHash: "$argon2id$" + strings.Repeat("h", 80), DeviceKey: devKey(d), DeviceName: "first", Now: damageT0}); err != nil {
			t.Fatal(err)
		}
		up := store.KeyUpload{Identity: fillBytes(32, "id "+u), Certificate: fillBytes(100, "cert "+u), AuthKey: devKey(d),
			SignedPreKey: fillBytes(64, "spk "+u), LastResortKEM: fillBytes(1200, "kem "+u)}
		for k := range 3 {
			up.OneTime = append(up.OneTime, store.OneTimeKey{ID: uint32(k + 1), Key: fillBytes(36, fmt.Sprint("otk", u, k))})
			up.OneTimeKEM = append(up.OneTimeKEM, store.OneTimeKey{ID: uint32(k + 1), Key: fillBytes(1188, fmt.Sprint("kem", u, k))})
		}
		if err := s.PublishKeys(ctx, d, up); err != nil {
			t.Fatal(err)
		}
	}
	from := chat.DeviceOf("user00", 1)
	n := uint64(0)
	for i := 1; i < users; i++ {
		to := chat.DeviceOf(fmt.Sprintf("user%02d", i), 1)
		for range 12 {
			n++
			id := fmt.Appendf(nil, "msg-%012d", n)
			m := store.Message{From: from, ID: id, Time: damageT0.Add(time.Duration(n) * time.Second),
				Envelopes: []store.Envelope{{To: to, Key: devKey(to), Payload: fillBytes(300, fmt.Sprintf("to %v %d ", to, n))}}}
			if _, err := s.Append(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for g := range 30 {
		n++
		var env []store.Envelope
		for i := 1; i < 6; i++ {
			to := chat.DeviceOf(fmt.Sprintf("user%02d", i+g%10), 1)
			env = append(env, store.Envelope{To: to, Key: devKey(to), Payload: []byte("slot")})
		}
		m := store.Message{From: from, ID: fmt.Appendf(nil, "grp-%012d", n), Time: damageT0.Add(time.Duration(n) * time.Second),
			Group: fillBytes(16, fmt.Sprint("g", g%3)), Shared: fillBytes(600, fmt.Sprint("shared ", n)), Envelopes: env}
		if _, err := s.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		if err := s.PutBan(ctx, store.Ban{Target: fmt.Sprintf("ip:10.0.%d.0/24", i), Reason: strings.Repeat("abuse ", 10), Created: damageT0}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutInvite(ctx, store.Invite{Code: fmt.Sprintf("invite-%040d", i), Uses: 3, Created: damageT0}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := s.PutMute(ctx, fmt.Sprintf("user%02d", 30+i), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	var bid store.BlobID
	copy(bid[:], "blob-id-0123456789abcdef")
	to := chat.DeviceOf("user01", 1)
	if err := s.CreateBlob(ctx, store.NewBlob{ID: bid, Owner: from, Size: 3000, ChunkSize: 1000, Recipients: []chat.Device{to}, Now: damageT0, Expires: damageT0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutChunks(ctx, bid, 0, [][]byte{fillBytes(1000, "a"), fillBytes(1000, "b"), fillBytes(1000, "c")}); err != nil {
		t.Fatal(err)
	}
	// A file smaller than its chunk size is charged a chunk (store.Charge).
	copy(bid[:], "blob-id-small-0123456789")
	from2 := chat.DeviceOf("user02", 1)
	if err := s.CreateBlob(ctx, store.NewBlob{ID: bid, Owner: from2, Size: 500, ChunkSize: 1000, Recipients: []chat.Device{to}, Now: damageT0, Expires: damageT0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutChunks(ctx, bid, 0, [][]byte{fillBytes(500, "d")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	// Both meta pages at the same records, so that either may be lost.
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// damagedCopy copies the store at path and overwrites page id of the copy
// with bytes no page holds.
func damagedCopy(t testing.TB, path string, id uint64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	copy(b[int(id)*ps:int(id+1)*ps], bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, ps/4))
	out := filepath.Join(t.TempDir(), "server.db")
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// targets are the pages the tests damage: both meta pages, the freelist,
// and the first leaf of each bucket that has pages of its own.
type target struct {
	name string
	page PageInfo
}

func damageTargets(t testing.TB, path string) []target {
	t.Helper()
	pages, freelist, err := Pages(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := []target{{"meta page 0", PageInfo{ID: 0}}, {"meta page 1", PageInfo{ID: 1}}}
	if freelist != 0 {
		ts = append(ts, target{"freelist", PageInfo{ID: freelist}})
	}
	seen := map[string]bool{}
	branch := false
	for _, p := range pages {
		switch {
		case p.Bucket == "" && p.Leaf && len(pages) > 0:
			ts = append(ts, target{"list of buckets", p})
		case p.Leaf && !seen[p.Bucket]:
			seen[p.Bucket] = true
			ts = append(ts, target{"leaf of " + p.Bucket, p})
		case !p.Leaf && !branch && p.Bucket != "":
			branch = true
			ts = append(ts, target{"branch of " + p.Bucket, p})
		}
	}
	if !branch {
		t.Error("the fixture has no branch page")
	}
	for _, b := range []string{"users", "devices", "mailboxes", "prekeys", "bans", "invites", "shared"} {
		if !seen[b] {
			t.Errorf("the fixture gives bucket %s no page of its own", b)
		}
	}
	return ts
}

// TestCheckFindsDamage: Check finds a sound store sound, and names each
// damaged page of a copy with the bucket that holds it and what that
// holds; a damaged meta page is a note (bbolt opens the other's commit).
func TestCheckFindsDamage(t *testing.T) {
	path := damageFixture(t)
	var last [2]uint64
	r, err := Check(path, func(done, total uint64) { last = [2]uint64{done, total} })
	if last[0] == 0 || last[0] != last[1] || last[1] != r.Pages {
		t.Errorf("the last progress said %d of %d pages; the file has %d", last[0], last[1], r.Pages)
	}
	if err != nil || r.Err() != nil || len(r.Notes) > 0 {
		t.Fatalf("sound store: %v %v %v", err, r.Err(), r.Notes)
	}
	if r.Records["users"] != 40 || r.Records["mailboxes"] != 39*12+30*5 {
		t.Errorf("records read: %v", r.Records)
	}
	for _, tg := range damageTargets(t, path) {
		t.Run(tg.name, func(t *testing.T) {
			r, err := Check(damagedCopy(t, path, tg.page.ID), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tg.page.ID < 2 {
				if r.Err() != nil || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], fmt.Sprintf("meta page %d does not verify", tg.page.ID)) {
					t.Errorf("damaged meta page: %v %q", r.Err(), r.Notes)
				}
				return
			}
			err = r.Err()
			if !errors.Is(err, store.ErrDamaged) {
				t.Fatalf("damage not found: %v", err)
			}
			msg := err.Error()
			want := fmt.Sprintf("page %d ", tg.page.ID)
			if tg.page.Bucket != "" {
				want += fmt.Sprintf("(bucket %s: %s)", tg.page.Bucket, Holds(tg.page.Bucket))
			}
			if !strings.Contains(msg, want) {
				t.Errorf("the message does not name %q: %s", want, msg)
			}
			if tg.name == "freelist" && !strings.Contains(msg, "freelist") {
				t.Errorf("the message does not say it is the freelist: %s", msg)
			}
		})
	}
}

// TestDamagedPageFailsCleanly: a store opened on a copy whose leaf of
// users (or of a mailbox) is damaged serves: each read or write that
// meets the page fails with store.ErrDamaged naming the operation and is
// reported to OnDamage, the others succeed, and the writer goes on.
func TestDamagedPageFailsCleanly(t *testing.T) {
	path := damageFixture(t)
	for _, bucket := range []string{"users", "mailboxes", "prekeys"} {
		t.Run(bucket, func(t *testing.T) {
			var leaf PageInfo
			pages, _, _ := Pages(path)
			for _, p := range pages {
				if p.Bucket == bucket && p.Leaf {
					leaf = p
					break
				}
			}
			var reported []string
			s, err := Open(damagedCopy(t, path, leaf.ID), Options{OnDamage: func(e *store.DamagedError) { reported = append(reported, e.Op) }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			failed, served := 0, 0
			for i := range 40 {
				d := chat.DeviceOf(fmt.Sprintf("user%02d", i), 1)
				var err error
				switch bucket {
				case "users":
					_, err = s.Account(d.User)
				case "mailboxes":
					_, err = s.Pending(d, 0, 100)
				case "prekeys":
					_, err = s.KeyCount(d)
				}
				var de *store.DamagedError
				switch {
				case err == nil:
					served++
				case errors.As(err, &de) && errors.Is(err, store.ErrDamaged) && de.Op != "":
					failed++
				default:
					t.Errorf("%v: %v", d, err)
				}
			}
			if failed == 0 || served == 0 {
				t.Errorf("%d reads failed, %d served: want some of each", failed, served)
			}
			// A write into the damaged page fails alone; the writer goes on.
			var werr error
			switch bucket {
			case "users":
				werr = s.CreateAccount(ctx, store.NewAccount{Name: "user00a", PasswordHash: "x", DeviceKey: devKey(chat.DeviceOf("user00a", 1)), Now: damageT0})
			case "mailboxes":
				s.Ack(chat.DeviceOf("user01", 1), []uint64{1, 2, 3})
				werr = s.Sync(ctx)
			case "prekeys":
				_, werr = s.FetchBundles(ctx, "user01", nil)
			}
			t.Logf("write into the damaged part: %v", werr)
			if werr != nil && !errors.Is(werr, store.ErrDamaged) {
				t.Errorf("write failed otherwise than damaged: %v", werr)
			}
			if err := s.PutBan(ctx, store.Ban{Target: "user:later", Created: damageT0}); err != nil {
				t.Errorf("a write after the damage: %v", err)
			}
			if len(reported) < failed {
				t.Errorf("OnDamage told of %d operations, %d failed", len(reported), failed)
			}
			if !errors.Is(s.Verify(), store.ErrDamaged) {
				t.Errorf("Verify on the damaged store: %v", s.Verify())
			}
		})
	}
}

// TestSalvage: salvage of each damaged copy keeps every record outside
// the damaged page (per bucket: what the sound store holds less what the
// page held), reports the page lost, refuses to overwrite its output,
// and makes a store that verifies, opens and serves what it kept.
func TestSalvage(t *testing.T) {
	path := damageFixture(t)
	sound, err := Check(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	soundUsage := func() map[string]int64 {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		u := map[string]int64{"": s.Stats().BlobBytes}
		for _, a := range []string{"user00", "user02"} {
			if u[a], err = s.BlobUsage(a); err != nil || u[a] == 0 {
				t.Fatalf("the fixture's file quota of %s: %d %v", a, u[a], err)
			}
		}
		return u
	}()
	for _, tg := range damageTargets(t, path) {
		t.Run(tg.name, func(t *testing.T) {
			src := damagedCopy(t, path, tg.page.ID)
			out := filepath.Join(t.TempDir(), "salvaged.db")
			rep, err := Salvage(src, out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Salvage(src, out); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("salvage over its own output: %v", err)
			}
			got := map[string]BucketSalvage{}
			for _, b := range rep.Buckets {
				got[b.Bucket] = b
			}
			for _, b := range []string{"users", "devices", "mailboxes", "prekeys", "bans", "invites", "mutes", "groups", "blobs", "blobchunks"} {
				want := sound.Records[b]
				if tg.page.Bucket == b {
					want -= tg.page.Records
				}
				if tg.name == "list of buckets" {
					want = 0 // the list of buckets: every bucket is lost
				}
				if b := got[b]; b.Read != want {
					t.Errorf("%s: read %d records, want %d (report %+v)", b.Bucket, b.Read, want, b)
				}
			}
			if lost := strings.Contains(strings.Join(rep.Notes, "\n"), "server key"); lost != (tg.name == "list of buckets") {
				t.Errorf("notes on the server key: %q", rep.Notes)
			}
			// Only a page of the list of buckets empties buckets: not the
			// freelist, which holds no records.
			if empty := strings.Contains(strings.Join(rep.Notes, "\n"), "list of buckets were lost"); empty != (tg.name == "list of buckets") {
				t.Errorf("notes on the list of buckets: %q", rep.Notes)
			}
			if tg.page.ID >= 2 {
				if got[tg.page.Bucket].LostPages != 1 && tg.page.Bucket != "" {
					t.Errorf("%s: %d pages lost reported, want 1", tg.page.Bucket, got[tg.page.Bucket].LostPages)
				}
			}
			r, err := Check(out, nil)
			if err != nil || r.Err() != nil {
				t.Fatalf("salvaged store: %v %v", err, r.Err())
			}
			s, err := Open(out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Verify(); err != nil {
				t.Error(err)
			}
			if tg.page.Bucket != "meta" && tg.name != "list of buckets" {
				key, err := s.ServerKey(context.Background(), strings.NewReader(""))
				if err != nil || !bytes.Equal(key.Seed(), make([]byte, 32)) {
					t.Errorf("server key not kept: %v", err)
				}
			}
			if got["blobs"].Kept == 2 { // the quotas and the total, recomputed
				for a, want := range soundUsage {
					u, err := s.BlobUsage(a)
					if a == "" {
						u = s.Stats().BlobBytes
					}
					if err != nil || u != want {
						t.Errorf("file bytes of %q: %d %v, the sound store's %d", a, u, err, want)
					}
				}
			}
			for i := range 40 {
				d := chat.DeviceOf(fmt.Sprintf("user%02d", i), 1)
				if _, err := s.Pending(d, 0, 1000); err != nil {
					t.Errorf("pending %v: %v", d, err)
				}
			}
			if _, err := s.Append(context.Background(), store.Message{From: chat.DeviceOf("user00", 1), ID: []byte("after-salvage"), Time: damageT0,
				Envelopes: []store.Envelope{{To: chat.DeviceOf("user39", 1), Key: devKey(chat.DeviceOf("user39", 1)), Payload: []byte("x")}}}); err != nil && tg.page.Bucket != "devices" && tg.page.Bucket != "prekeys" && tg.name != "list of buckets" {
				t.Errorf("append on the salvaged store: %v", err)
			}
		})
	}
}

// TestCheckOddFiles: files that are not whole stores — empty, noise, a
// store cut short — are damage for Check and nothing to salvage, one
// error each; never a panic, never an allocation for pages not there.
func TestCheckOddFiles(t *testing.T) {
	sound, err := os.ReadFile(damageFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 64<<10)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>8)
	}
	for name, b := range map[string][]byte{"empty": nil, "noise": noise, "cut short": sound[:len(sound)/2]} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Check(path, nil)
			if err != nil || r.Err() == nil {
				t.Fatalf("check: %v %v", err, r.Err())
			}
			t.Log(r.Err())
			if _, err := Salvage(path, filepath.Join(t.TempDir(), "out.db")); err == nil || !strings.Contains(err.Error(), "nothing can be salvaged") {
				t.Errorf("salvage: %v", err)
			}
		})
	}
}
