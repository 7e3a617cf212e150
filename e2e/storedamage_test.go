package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/internal/boltfile"
)

// The store survives damage (issue 15 points 1 and 2, operations.md
// §7): a store the built binary wrote, with accounts, queued
// messages, a ban and an invite, copied and one 4 KiB page of the copy
// overwritten — each meta page, the freelist, the list of buckets and a
// leaf and a branch of each bucket with pages of its own and of their
// sub-buckets (the small buckets live inside the list of buckets).

// damagedDataDir copies the data directory dir (its files) and overwrites
// page id of the copy's store.
func damagedDataDir(t *testing.T, dir string, id uint64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	damagePage(t, filepath.Join(out, "server.db"), id)
	return out
}

// damagePage overwrites page id of the store file at path in place.
func damagePage(t *testing.T, path string, id uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := os.Getpagesize()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, ps/4), int64(id)*int64(ps)); err != nil {
		t.Fatal(err)
	}
}

// TestStoreDamage: on each damaged copy serve refuses to start with one
// message naming the page, its bucket and what that holds, and the ways
// out (a damaged meta page is bbolt's own recovery: a note, and the
// server starts); admin check and serve --check-store name the damage;
// admin salvage keeps every record outside the damaged page, and a server
// on the salvaged store serves the queued messages of the users whose
// records survived, and a device whose keys were lost publishes them again.
func TestStoreDamage(t *testing.T) {
	s := startServer(t)
	alice, bob, carol := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol")
	for i := range 3 {
		alice.send(t, "bob", fmt.Sprintf("to bob %d", i))
		alice.send(t, "carol", fmt.Sprintf("to carol %d", i))
	}
	ok(t, nil, "admin", "--data", s.data, "ban", "10.9.8.0/24", "1d", "testing")
	ok(t, nil, "admin", "--data", s.data, "invite", "2")
	s.stop()

	if out := ok(t, nil, "admin", "--data", s.data, "check").Stdout; !strings.Contains(out, "store ok") || !strings.Contains(out, "users 3") {
		t.Errorf("admin check on the sound store:\n%s", out)
	}
	if out := ok(t, nil, "serve", "--data", s.data, "--check-store").Stdout; !strings.Contains(out, "store ok") {
		t.Errorf("serve --check-store on the sound store:\n%s", out)
	}
	path := filepath.Join(s.data, "server.db")
	sound, err := boltstore.Check(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	pages, freelist, err := boltstore.Pages(path)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		name string
		page boltstore.PageInfo
	}
	targets := []target{{"meta page 0", boltstore.PageInfo{ID: 0}}, {"meta page 1", boltstore.PageInfo{ID: 1}}, {"freelist", boltstore.PageInfo{ID: freelist}}}
	var carolKeys boltstore.PageInfo // the root of carol's prekeys: pages come after their subtree
	// A page of each kind: the list of buckets, and per bucket its
	// first leaf and first branch, of its own tree or of a sub-bucket's.
	seen := map[string]bool{}
	for _, p := range pages {
		if p.Bucket == "prekeys" && p.SubBucket == "carol\x00\x00\x00\x00\x01" {
			carolKeys = p
		}
		kind := fmt.Sprintf("%s leaf=%v sub=%v", p.Bucket, p.Leaf, p.SubBucket != "")
		if seen[kind] {
			continue
		}
		seen[kind] = true
		name := "list of buckets"
		if p.Bucket != "" {
			name = fmt.Sprintf("%s page %d", kind, p.ID)
		}
		targets = append(targets, target{name, p})
	}
	t.Logf("%d pages; damaging %d", len(pages), len(targets))
	if carolKeys.ID == 0 || freelist == 0 {
		t.Fatalf("the store has no page of carol's prekeys (%+v) or no freelist (%d): %+v", carolKeys, freelist, pages)
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			dir := damagedDataDir(t, s.data, tg.page.ID)
			if tg.page.ID < 2 {
				out := ok(t, nil, "admin", "--data", dir, "check").Stdout
				if !strings.Contains(out, fmt.Sprintf("note: meta page %d does not verify", tg.page.ID)) || !strings.Contains(out, "store ok") {
					t.Errorf("admin check with a damaged meta page:\n%s", out)
				}
				return
			}
			want := fmt.Sprintf("page %d ", tg.page.ID)
			if tg.page.Bucket != "" {
				want += fmt.Sprintf("(bucket %s: %s)", tg.page.Bucket, boltstore.Holds(tg.page.Bucket))
			}
			r := fails(t, 1, "is damaged", nil, "admin", "--data", dir, "check")
			if !strings.Contains(r.Stdout, "damaged: "+want) {
				t.Errorf("admin check does not name %q:\n%s", want, r.Stdout)
			}
			r = fails(t, 1, "is damaged", nil, "serve", "--data", dir, "--check-store")
			if !strings.Contains(r.Stdout, "damaged: "+want) {
				t.Errorf("serve --check-store does not name %q:\n%s", want, r.Stdout)
			}
			r = fails(t, 1, want, nil, "serve", "--data", dir, "--listen", "127.0.0.1:0", "--admin", "off")
			for _, w := range []string{"salvage OUT", "backup", "admin --data " + dir} {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("serve's message does not say %q: %s", w, r.Stderr)
				}
			}
			if r.Stdout != "" {
				t.Errorf("serve printed on a damaged store: %s", r.Stdout)
			}

			out := filepath.Join(t.TempDir(), "salvaged.db")
			rep := ok(t, nil, "admin", "--data", dir, "salvage", out).Stdout
			if !strings.Contains(rep, "the new store verifies") {
				t.Errorf("salvage report:\n%s", rep)
			}
			fails(t, 1, "already exists", nil, "admin", "--data", dir, "salvage", out)
			got, err := boltstore.Check(out, nil)
			if err != nil || got.Err() != nil {
				t.Fatalf("the salvaged store: %v %v", err, got.Err())
			}
			for _, b := range []string{"users", "devices", "mailboxes", "prekeys", "bans", "invites", "devicelists"} {
				want := sound.Records[b]
				switch {
				case tg.name == "list of buckets":
					want = 0
				case tg.page.Bucket == b:
					want -= tg.page.Records
				}
				if got.Records[b] != want {
					t.Errorf("%s: %d records salvaged, want %d (the sound store's %d less the damaged page's)", b, got.Records[b], want, sound.Records[b])
				}
			}
		})
	}

	// carol's prekeys damaged: a server on the salvaged store serves bob
	// and carol the messages queued for them.
	dir := damagedDataDir(t, s.data, carolKeys.ID)
	out := filepath.Join(t.TempDir(), "salvaged.db")
	ok(t, nil, "admin", "--data", dir, "salvage", out)
	if err := os.Rename(out, filepath.Join(dir, "server.db")); err != nil {
		t.Fatal(err)
	}
	salvaged := &server{t: t, data: dir, listen: s.listen, stderr: &syncBuffer{}}
	salvaged.start()
	if got := texts(bob.recv(t, "0s")); !slices.Equal(got, []string{"to bob 0", "to bob 1", "to bob 2"}) {
		t.Errorf("bob on the salvaged store: %q", got)
	}
	if got := texts(carol.recv(t, "0s")); !slices.Equal(got, []string{"to carol 0", "to carol 1", "to carol 2"}) {
		t.Errorf("carol on the salvaged store: %q", got)
	}
	// carol's client published her keys again at that connection: she
	// can be messaged.
	alice.send(t, "carol", "after the salvage")
	if got := texts(carol.recv(t, "0s")); !slices.Equal(got, []string{"after the salvage"}) {
		t.Errorf("carol after the salvage: %q", got)
	}
	salvaged.alive()
	salvaged.stop()
	if strings.Contains(salvaged.stderr.String(), "panic") {
		t.Errorf("the server on the salvaged store panicked:\n%s", salvaged.stderr.String())
	}
}

// TestStoreDamageWhileServing: a page damaged under a running server (its
// mapping of the file sees the new bytes) fails the requests that need
// it, cleanly: carol, whose prekeys are on it, gets one line saying the
// server's storage is damaged; the server records the event and the
// metric, keeps serving bob, and admin check names the damage.
func TestStoreDamageWhileServing(t *testing.T) {
	s := startServer(t)
	alice, bob, carol := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol")
	alice.send(t, "bob", "to bob")
	alice.send(t, "carol", "to carol")
	pages, _, err := boltstore.Pages(filepath.Join(s.data, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	var carolKeys boltstore.PageInfo
	for _, p := range pages {
		if p.Bucket == "prekeys" && p.SubBucket == "carol\x00\x00\x00\x00\x01" {
			carolKeys = p // the last: the root of her subtree
		}
	}
	if carolKeys.ID == 0 {
		t.Fatalf("no page of carol's prekeys: %+v", pages)
	}
	damagePage(t, filepath.Join(s.data, "server.db"), carolKeys.ID)

	// carol's mailbox is sound: she gets her message, and a warning that
	// her keys could not be counted.
	r := ok(t, nil, "recv", "--home", carol.home, "--json", "--wait", "0s")
	if got := texts(parseMessages(t, r.Stdout)); !slices.Equal(got, []string{"to carol"}) || !strings.Contains(r.Stderr, "storage is damaged") {
		t.Errorf("carol's recv: %q, stderr %s", got, r.Stderr)
	}
	// A message to her needs her keys: it fails, with one line.
	fails(t, 1, "storage is damaged", nil, "send", "--home", alice.home, "--to", "carol", "again")
	s.alive()
	if got := texts(bob.recv(t, "0s")); !slices.Equal(got, []string{"to bob"}) {
		t.Errorf("bob beside the damage: %q", got)
	}
	if n := metric(t, s, "securechat_store_damaged_total"); n < 1 {
		t.Errorf("securechat_store_damaged_total = %v", n)
	}
	if out := ok(t, nil, "admin", "--data", s.data, "events").Stdout; !strings.Contains(out, "store_damaged") {
		t.Errorf("no store_damaged event:\n%s", out)
	}
	if !strings.Contains(s.stderr.String(), "store damaged") {
		t.Errorf("the log does not say the store is damaged")
	}
	r = fails(t, 1, "is damaged", nil, "admin", "--data", s.data, "check")
	if !strings.Contains(r.Stdout, fmt.Sprintf("damaged: page %d (bucket prekeys", carolKeys.ID)) {
		t.Errorf("admin check through the running server:\n%s", r.Stdout)
	}
	s.alive()
}

// copyDir copies the regular files of dir, and of its directories one
// level down, into a new directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir))
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(out, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHomeDamage: a page of a client home overwritten: home check names
// it, recv on the damaged home fails with one line (no panic), home
// salvage copies what can be read and refuses to overwrite its output,
// and recv on the salvaged home, moved into place, works.
func TestHomeDamage(t *testing.T) {
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	for i := range 4 { // long enough that history has pages of its own
		alice.send(t, "bob", fmt.Sprintf("to bob %d %s", i, strings.Repeat("x", 1500)))
	}
	if got := bob.recv(t, "0s"); len(got) != 4 {
		t.Fatalf("bob got %d messages", len(got))
	}
	if out := ok(t, nil, "home", "--home", bob.home, "check").Stdout; !strings.Contains(out, "home ok") {
		t.Errorf("home check on a sound home:\n%s", out)
	}
	pf, err := boltfile.Open(filepath.Join(bob.home, "client.db"))
	if err != nil {
		t.Fatal(err)
	}
	var page boltfile.PageInfo
	sc := &boltfile.Scanner{Page: func(p boltfile.PageInfo) {
		if page.ID == 0 && p.Bucket == "history" {
			page = p
		}
	}}
	if err := pf.Scan(sc); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	if page.ID == 0 {
		t.Fatal("bob's home has no page of history of its own")
	}
	dir := copyDir(t, bob.home)
	damagePage(t, filepath.Join(dir, "client.db"), page.ID)
	r := fails(t, 1, "is damaged", nil, "home", "--home", dir, "check")
	if want := fmt.Sprintf("damaged: page %d (bucket history: message history)", page.ID); !strings.Contains(r.Stdout, want) {
		t.Errorf("home check does not say %q:\n%s", want, r.Stdout)
	}
	if !strings.Contains(r.Stderr, "home --home "+dir+" salvage OUT") {
		t.Errorf("home check does not say how to salvage: %s", r.Stderr)
	}
	fails(t, 1, fmt.Sprintf("this home's file is damaged: page %d (bucket history: message history)", page.ID), nil, "recv", "--home", dir, "--json", "--wait", "0s")
	out := filepath.Join(t.TempDir(), "client.db")
	if rep := ok(t, nil, "home", "--home", dir, "salvage", out).Stdout; !strings.Contains(rep, "lost: page") {
		t.Errorf("salvage report:\n%s", rep)
	}
	fails(t, 1, "already exists", nil, "home", "--home", dir, "salvage", out)
	if err := os.Rename(out, filepath.Join(dir, "client.db")); err != nil {
		t.Fatal(err)
	}
	ok(t, nil, "home", "--home", dir, "check")
	alice.send(t, "bob", "after the salvage")
	if got := texts(parseMessages(t, ok(t, nil, "recv", "--home", dir, "--json", "--wait", "0s").Stdout)); !slices.Equal(got, []string{"after the salvage"}) {
		t.Errorf("recv on the salvaged home: %q", got)
	}
}
