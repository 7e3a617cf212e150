package appliance

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/chat"
)

// TestBackupRotation: automatic backups, with an injected clock, are named
// with the UTC time they were taken, mode 0600, each a store that
// verifies; only the newest backup_keep stay, and files that are not the
// server's backups are never touched.
func TestBackupRotation(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.FixedZone("CET", 3600))
	data := t.TempDir()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler),
		BackupKeep: 3, DiskFreeWarn: 1 << 20, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mustAccount(t, srv.store, "alice", 1, now)
	dir := filepath.Join(data, DirBackups)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	strays := []string{"notes.txt", "server-garbage.db", "server-20200101T000000Z.db.partial"}
	for _, s := range strays {
		if err := os.WriteFile(filepath.Join(dir, s), []byte("not a backup"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var taken []string
	for i := range 5 {
		b, err := srv.autoBackup(context.Background())
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		want := "server-" + now.UTC().Format("20060102T150405Z") + ".db"
		if b.Name != want || b.Path != filepath.Join(dir, want) || !b.Time.Equal(now) {
			t.Errorf("backup %d: %+v, want %s at %v", i, b, want, now)
		}
		taken = append(taken, b.Name)
		list, err := srv.Backups(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range list {
			names = append(names, l.Name)
		}
		newest := slices.Clone(taken[max(0, len(taken)-3):])
		slices.Reverse(newest)
		if !slices.Equal(names, newest) {
			t.Errorf("after %d backups: %v, want %v", i+1, names, newest)
		}
		now = now.Add(7 * time.Hour) // across a day: the names still sort by time
	}
	for _, s := range strays {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			t.Errorf("a file that is not a backup went: %v", err)
		}
	}
	list, _ := srv.Backups(context.Background())
	for _, b := range list {
		st, err := os.Stat(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 || st.Size() != b.Size {
			t.Errorf("%s: mode %v size %d, listed %d", b.Name, st.Mode().Perm(), st.Size(), b.Size)
		}
		bs, err := boltstore.Open(b.Path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bs.Verify(); err != nil {
			t.Errorf("%s: %v", b.Name, err)
		}
		if _, err := bs.Account("alice"); err != nil {
			t.Errorf("%s: %v", b.Name, err)
		}
		bs.Close()
	}
	if srv.stats.Backups.Load() != 5 || srv.stats.BackupsFailed.Load() != 0 {
		t.Errorf("counted %d backups, %d failed", srv.stats.Backups.Load(), srv.stats.BackupsFailed.Load())
	}
	events, _ := srv.Events(context.Background(), 10)
	if len(events) != 5 || events[0].Kind != chat.EventBackup || events[0].Subject != taken[4] {
		t.Errorf("events %+v", events)
	}
	if d := events[0].Detail; !regexp.MustCompile(`^\d+(KiB|MiB|GiB| bytes)$`).MatchString(d) {
		t.Errorf("a backup's size reads %q", d) // it read 1028KiBB
	}
}

// TestBackupFailure: a backup that cannot be written is an event, a
// counter and an error, and leaves nothing behind; the server is fine.
func TestBackupFailure(t *testing.T) {
	data := t.TempDir()
	blocker := filepath.Join(data, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler), BackupDir: filepath.Join(blocker, "backups")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if _, err := srv.autoBackup(context.Background()); err == nil {
		t.Fatal("a backup into a directory under a file succeeded")
	}
	events, _ := srv.Events(context.Background(), 10)
	if srv.stats.BackupsFailed.Load() != 1 || len(events) != 1 || events[0].Kind != chat.EventBackupFailed || !strings.Contains(events[0].Detail, "not a directory") {
		t.Errorf("failed %d, events %+v", srv.stats.BackupsFailed.Load(), events)
	}
	snap, err := srv.Snapshot(context.Background())
	if err != nil || snap.BackupsFailed != 1 {
		t.Errorf("snapshot %+v, %v", snap, err)
	}
	// Short of space: refused before a byte is written.
	srv.cfg.BackupDir, srv.cfg.DiskFreeWarn = "", 1<<50
	if _, err := srv.autoBackup(context.Background()); err == nil || !strings.Contains(err.Error(), "not enough free space") {
		t.Errorf("a backup that would leave less than disk_free_warn: %v", err)
	}
	if list, _ := srv.Backups(context.Background()); len(list) != 0 {
		t.Errorf("left %v", list)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, DirBackups)); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// TestRestore: a backup restored in place of a stopped server's store;
// refused while a server holds the store, and for a file that is not a
// store, changing nothing.
func TestRestore(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	data := t.TempDir()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler), DiskFreeWarn: 1 << 20, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	mustAccount(t, srv.store, "alice", 1, now)
	b, err := srv.autoBackup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustAccount(t, srv.store, "bob", 1, now)
	if _, err := Restore(data, b.Path, now); err == nil || !strings.Contains(err.Error(), "a securechat server is running on") {
		t.Errorf("restore beside a running server: %v", err)
	}
	srv.Close()

	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, []byte(strings.Repeat("not a store ", 1000)), 0o600)
	if _, err := Restore(data, junk, now); err == nil || !strings.Contains(err.Error(), "is not a store the server can use") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("restore of junk: %v", err)
	}
	if _, err := Restore(data, filepath.Join(data, "nothing.db"), now); err == nil {
		t.Error("restore of a missing file")
	}
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || strings.Contains(e.Name(), "before-restore") {
			t.Errorf("a failed restore left %s", e.Name())
		}
	}

	r, err := Restore(data, b.Path, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if r.Aside != filepath.Join(data, "server.db.before-restore-20261201T030000Z") {
		t.Errorf("kept aside as %q", r.Aside)
	}
	for path, bob := range map[string]bool{r.Path: false, r.Aside: true} {
		st, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Verify(); err != nil {
			t.Error(err)
		}
		if _, err := st.Account("alice"); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		if _, err := st.Account("bob"); (err == nil) != bob {
			t.Errorf("%s: bob: %v", path, err)
		}
		st.Close()
	}
	if fi, err := os.Stat(r.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored store: %v %v", fi, err)
	}
	if _, err := os.Stat(b.Path); err != nil {
		t.Errorf("the backup restored went: %v", err)
	}
}

// TestRestoreDamaged: restore checks a backup as the start does, page by
// page, before bbolt reads it: a backup whose branch page points past the
// file (which faulted the process in bbolt's own check, a fatal error and
// no message), one cut short, one with its tail zeroed are each refused
// with one line naming the damage, changing nothing; a sound backup of
// another server is restored with its key named beside the one before.
func TestRestoreDamaged(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	newServer := func(data string) *Server {
		srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler), DiskFreeWarn: 1 << 20, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	data := t.TempDir()
	srv := newServer(data)
	for i := range 60 { // enough devices for a branch page
		mustAccount(t, srv.store, fmt.Sprintf("user%03d", i), 1, now)
	}
	b, err := srv.autoBackup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fp := srv.Fingerprint().String()
	srv.Close()
	pages, _, err := boltstore.Pages(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	branch := slices.IndexFunc(pages, func(p boltstore.PageInfo) bool { return !p.Leaf && p.Bucket != "" })
	if branch < 0 {
		t.Fatalf("no branch page: %+v", pages)
	}
	sound, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	for name, damage := range map[string]func(d []byte) []byte{
		"a branch pointing past the file": func(d []byte) []byte {
			// The first element's child: a page header is 16 bytes, a
			// branch element's page id is its last 8.
			at := int(pages[branch].ID)*ps + 16 + 8
			binary.LittleEndian.PutUint64(d[at:], uint64(len(d)/ps+2))
			return d
		},
		"cut short":   func(d []byte) []byte { return d[:len(d)/2] },
		"tail zeroed": func(d []byte) []byte { clear(d[len(d)/2:]); return d },
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(file, damage(slices.Clone(sound)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Restore(data, file, now)
			if err == nil || !strings.Contains(err.Error(), "is not a store the server can use: damaged: ") || !strings.Contains(err.Error(), "nothing was changed") || strings.Contains(err.Error(), "\n") {
				t.Errorf("restore of a damaged backup: %v", err)
			}
			entries, _ := os.ReadDir(data)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || strings.Contains(e.Name(), "before-restore") {
					t.Errorf("a failed restore left %s", e.Name())
				}
			}
		})
	}

	r, err := Restore(data, b.Path, now)
	if err != nil || r.OtherKey != "" {
		t.Fatalf("restore of this server's backup: %+v %v", r, err)
	}
	other := t.TempDir()
	srv = newServer(other)
	mustAccount(t, srv.store, "mallory", 1, now)
	ob, err := srv.autoBackup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ofp := srv.Fingerprint().String()
	srv.Close()
	r, err = Restore(data, ob.Path, now)
	if err != nil || r.OtherKey != ofp || r.Before != fp {
		t.Errorf("restore of another server's backup: %+v %v, want its key %s and %s before", r, err, ofp, fp)
	}
	// Restored in the same second as the one before: the store that one
	// kept aside stays.
	first := filepath.Join(data, "server.db.before-restore-20261201T020000Z")
	if r.Aside != first+"-2" {
		t.Errorf("the second restore of a second kept its store aside as %s", r.Aside)
	}
	st, err := boltstore.Open(first, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Account("user000"); err != nil {
		t.Errorf("the store the first restore kept aside: %v", err)
	}
}

// TestBackupClockSetBack: after the clock is set back (a Raspberry Pi
// without a real-time clock booting before NTP, a clock corrected after
// running ahead), the backups dated after now are the older ones: a new
// backup is kept and they go first, instead of each new backup being the
// one rotation removes, as an order by name alone would have it.
func TestBackupClockSetBack(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	data := t.TempDir()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler),
		BackupKeep: 3, DiskFreeWarn: 1 << 20, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	take := func() string {
		t.Helper()
		b, err := srv.autoBackup(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(24 * time.Hour)
		return b.Name
	}
	names := func() []string {
		list, _ := srv.Backups(context.Background())
		var out []string
		for _, b := range list {
			out = append(out, b.Name)
		}
		return out
	}
	var ahead []string
	for range 3 {
		ahead = append(ahead, take())
	}
	now = now.AddDate(-1, 0, 0)
	var behind []string
	for i := range 3 {
		behind = append(behind, take())
		// The future ones sort first by name; the backups written since
		// the clock went back are kept, the oldest future ones went.
		want := slices.Concat(ahead[i+1:], behind)
		slices.Sort(want)
		slices.Reverse(want)
		if got := names(); !slices.Equal(got, want) {
			t.Fatalf("after %d backups with the clock set back: %v, want %v", i+1, got, want)
		}
	}
}

// TestBackupOfDamagedStore: a page the card damaged under the running
// server is in its hot copy; the automatic backup checks the copy as the
// start would, keeps none of it and fails, naming the damage, so the
// sound backups before it stay instead of being rotated out one a day.
func TestBackupOfDamagedStore(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	data := t.TempDir()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler),
		BackupKeep: 1, DiskFreeWarn: 1 << 20, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for i := range 60 {
		mustAccount(t, srv.store, fmt.Sprintf("user%03d", i), 1, now)
	}
	good, err := srv.autoBackup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, FileDB)
	pages, _, err := boltstore.Pages(path)
	if err != nil {
		t.Fatal(err)
	}
	leaf := slices.IndexFunc(pages, func(p boltstore.PageInfo) bool { return p.Leaf && p.Bucket == "users" })
	if leaf < 0 {
		t.Fatalf("no leaf of users: %+v", pages)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	if _, err := f.WriteAt(make([]byte, ps), int64(pages[leaf].ID)*int64(ps)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	now = now.Add(24 * time.Hour)
	_, err = srv.autoBackup(context.Background())
	want := fmt.Sprintf("the store is damaged, so this backup is not kept and the older ones stay: page %d (bucket users: accounts)", pages[leaf].ID)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("backup of a damaged store: %v, want %q", err, want)
	}
	list, _ := srv.Backups(context.Background())
	if len(list) != 1 || list[0].Name != good.Name {
		t.Errorf("backups after one of a damaged store: %+v, want only %s", list, good.Name)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, DirBackups)); len(entries) != 1 {
		t.Errorf("left %v", entries)
	}
	events, _ := srv.Events(context.Background(), 10)
	if srv.stats.BackupsFailed.Load() != 1 || len(events) == 0 || events[0].Kind != chat.EventBackupFailed || !strings.Contains(events[0].Detail, "damaged") {
		t.Errorf("failed %d, events %+v", srv.stats.BackupsFailed.Load(), events)
	}
}
