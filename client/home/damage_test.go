package home

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/internal/boltfile"
	"github.com/securechat/securechat/transport"
)

// homePages lists the pages of the home in dir's trees.
func homePages(t *testing.T, dir string) []boltfile.PageInfo {
	t.Helper()
	pf, err := boltfile.Open(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	var pages []boltfile.PageInfo
	sc := &boltfile.Scanner{Page: func(p boltfile.PageInfo) { pages = append(pages, p) }}
	if err := pf.Scan(sc); err != nil || len(sc.Damage) > 0 {
		t.Fatalf("scan: %v %v", err, sc.Damage)
	}
	return pages
}

// damagedHomeCopy copies the home dir's client.db into a new home
// directory and overwrites page id of the copy.
func damagedHomeCopy(t *testing.T, dir string, id uint64) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	copy(b[int(id)*ps:int(id+1)*ps], bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, ps/4))
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, homeDB), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHomeDamage: a home with a profile and two conversations' history,
// one page of a copy overwritten at a time (each meta page, the list of
// buckets, and the first leaf and branch of each bucket with pages of its
// own): CheckFile names
// the page and its bucket (a meta page is a note), opening or reading the
// damaged home fails with ErrDamaged, SalvageFile keeps every
// record outside it, sealed as it was, refuses to overwrite its output,
// and the salvaged home opens with the passphrase and shows what was kept.
func TestHomeDamage(t *testing.T) {
	kdf := KDFParams{Time: 1, MemoryK: 64, Threads: 1}
	dir := t.TempDir()
	h, err := Open(dir, Options{Passphrase: "x", Create: true, KDF: kdf})
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := transport.ParseFingerprint(strings.Repeat("ab", 32))
	if err := h.SaveProfile(&Profile{Server: "s:1", Fingerprint: fp, User: "alice", Device: 1, DeviceKey: ed25519.NewKeyFromSeed(make([]byte, 32))}); err != nil {
		t.Fatal(err)
	}
	addMessages(t, h, chat.Peer("bob"), "bob", 1000, 300)
	addMessages(t, h, chat.Peer("carol"), "carol", 5000, 40)
	// Both meta pages at the same records, so that either may be lost.
	if err := h.Update(func(*Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := CheckFile(dir)
	if err != nil || r.Err() != nil || len(r.Notes) > 0 {
		t.Fatalf("sound home: %v %v %v", err, r.Err(), r.Notes)
	}
	if r.Records["history"] != 340 {
		t.Errorf("records: %v", r.Records)
	}
	type target struct {
		name string
		page boltfile.PageInfo
	}
	targets := []target{{"meta page 0", boltfile.PageInfo{ID: 0}}, {"meta page 1", boltfile.PageInfo{ID: 1}}}
	seen := map[string]bool{}
	for _, p := range homePages(t, dir) {
		kind := fmt.Sprintf("%s leaf=%v", p.Bucket, p.Leaf)
		if p.Bucket == "" {
			kind = "list of buckets"
		}
		if !seen[kind] {
			seen[kind] = true
			targets = append(targets, target{kind, p})
		}
	}
	if !seen["history leaf=false"] || !seen["msgindex leaf=true"] {
		t.Fatalf("the home has no branch of history or no leaf of msgindex: %v", seen)
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			d := damagedHomeCopy(t, dir, tg.page.ID)
			r, err := CheckFile(d)
			if err != nil {
				t.Fatal(err)
			}
			if tg.page.ID < 2 {
				if r.Err() != nil || len(r.Notes) != 1 {
					t.Errorf("damaged meta page: %v %q", r.Err(), r.Notes)
				}
			} else {
				var de *DamagedHomeError
				want := fmt.Sprintf("page %d (bucket %s: %s)", tg.page.ID, tg.page.Bucket, homeHolds[tg.page.Bucket])
				if tg.page.Bucket == "" {
					want = fmt.Sprintf("page %d (the list of buckets", tg.page.ID)
				}
				if err := r.Err(); !errors.As(err, &de) || !strings.Contains(err.Error(), want) {
					t.Errorf("check: %v, want it to name %q", err, want)
				}
			}
			// Opening the damaged home fails with ErrDamaged, or reading
			// what is on the page does: never a panic.
			if tg.page.ID >= 2 {
				dh, err := Open(d, Options{Passphrase: "x", KDF: kdf})
				if err == nil {
					_, err = dh.History(chat.Peer("bob"), "", 1000)
					if err == nil {
						_, err = dh.History(chat.Peer("carol"), "", 1000)
					}
					dh.Close()
				}
				if !errors.Is(err, ErrDamaged) && tg.name != "list of buckets" {
					t.Errorf("the damaged home: %v", err)
				}
			}
			out := filepath.Join(t.TempDir(), homeDB)
			rep, err := SalvageFile(d, out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := SalvageFile(d, out); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("salvage over its own output: %v", err)
			}
			if tg.name == "list of buckets" {
				if len(rep.Notes) == 0 || !strings.Contains(strings.Join(rep.Notes, " "), "key parameters or the profile were lost") {
					t.Errorf("notes: %q", rep.Notes)
				}
				return
			}
			kept := map[string]int{}
			for _, b := range rep.Buckets {
				kept[b.Bucket] = b.Kept
			}
			for b, n := range r.Records {
				want := n
				if b == tg.page.Bucket {
					want = sound(t, dir).Records[b] - tg.page.Records
				}
				if kept[b] != want {
					t.Errorf("%s: %d records kept, want %d", b, kept[b], want)
				}
			}
			// The salvaged home, moved into place, opens and reads.
			home := t.TempDir()
			if err := os.Rename(out, filepath.Join(home, homeDB)); err != nil {
				t.Fatal(err)
			}
			if r, err := CheckFile(home); err != nil || r.Err() != nil {
				t.Fatalf("salvaged home: %v %v", err, r.Err())
			}
			s, err := Open(home, Options{Passphrase: "x", KDF: kdf})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if p, err := s.Profile(); err != nil || p.User != "alice" {
				t.Errorf("profile: %+v %v", p, err)
			}
			got := 0
			for _, es := range allHistory(t, s) {
				got += len(es)
			}
			want := 340
			if tg.page.Bucket == "history" {
				want -= tg.page.Records
			}
			if got != want && tg.page.Bucket != "convs" {
				t.Errorf("%d history lines in the salvaged home, want %d", got, want)
			}
		})
	}
}

// sound checks the home in dir, which must be sound.
func sound(t *testing.T, dir string) *CheckReport {
	t.Helper()
	r, err := CheckFile(dir)
	if err != nil || r.Err() != nil {
		t.Fatalf("%v %v", err, r.Err())
	}
	return r
}
