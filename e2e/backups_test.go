package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store/boltstore"
)

// TestAutomaticBackupRestore (issue 15 point 3): with backup_every 1s the
// server takes backups by itself, keeps backup_keep of them and lists them
// (admin backups); restore refuses beside the running server, then, with
// it stopped, puts a backup in place: the store verifies, the server
// starts on it, and it holds every message acknowledged before the backup
// was taken.
func TestAutomaticBackupRestore(t *testing.T) {
	s := startServer(t, "--backup-every", "1s", "--backup-keep", "2")
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	before := []string{"one, before the backup", "two, before the backup", "three, before the backup"}
	for _, m := range before {
		alice.send(t, "bob", m) // returns once acknowledged
	}
	acked := time.Now().UTC()

	// A backup taken wholly after the acknowledgements: named with a
	// second after the one they ended in.
	var backup string
	deadline := time.Now().Add(20 * time.Second)
	for backup == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no automatic backup after the messages; admin backups:\n%s", s.admin(t, "backups").Stdout)
		}
		time.Sleep(200 * time.Millisecond)
		for _, line := range strings.Split(s.admin(t, "backups").Stdout, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], "server-") {
				continue
			}
			taken, err := time.Parse("20060102T150405Z", strings.TrimSuffix(strings.TrimPrefix(f[0], "server-"), ".db"))
			if err != nil {
				t.Fatalf("admin backups line %q: %v", line, err)
			}
			if taken.After(acked) {
				backup = f[len(f)-1] // PATH
				break
			}
		}
	}
	// Out of the directory the server rotates.
	kept := filepath.Join(t.TempDir(), "chosen.db")
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(backup); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600 as admin backup writes", backup, fi.Mode().Perm())
	}
	alice.send(t, "bob", "four, after the backup")

	// Rotation: never more than backup_keep.
	time.Sleep(2500 * time.Millisecond)
	entries, err := os.ReadDir(filepath.Join(s.data, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "server-") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 || len(names) > 2 {
		t.Errorf("backups kept: %v, want at most backup_keep (2)", names)
	}
	if ev := s.admin(t, "events").Stdout; !strings.Contains(ev, "backup ") {
		t.Errorf("no backup event:\n%s", ev)
	}

	fails(t, 1, "a securechat server is running on "+s.data, nil, "admin", "--data", s.data, "restore", kept)
	s.stop()
	fails(t, 1, "is not a store the server can use", nil, "admin", "--data", s.data, "restore", writeTemp(t, "not a store at all"))
	// A damaged backup (a page of its mailboxes overwritten) is refused
	// with one line naming the page, as the start would.
	pages, _, err := boltstore.Pages(kept)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	os.WriteFile(damaged, b, 0o600)
	mailbox := slices.IndexFunc(pages, func(p boltstore.PageInfo) bool { return p.Bucket == "mailboxes" && p.SubBucket != "" })
	if mailbox < 0 {
		t.Fatalf("the backup has no page of a mailbox of its own: %+v", pages)
	}
	damagePage(t, damaged, pages[mailbox].ID)
	fails(t, 1, fmt.Sprintf("is not a store the server can use: damaged: page %d (bucket mailboxes: queued messages)", pages[mailbox].ID), nil, "admin", "--data", s.data, "restore", damaged)
	// Another server's backup is restored with a warning naming both keys.
	other := startServer(t)
	otherBackup := filepath.Join(t.TempDir(), "other.db")
	ok(t, nil, "admin", "--data", other.data, "backup", otherBackup)
	other.stop()
	r := ok(t, nil, "admin", "--data", s.data, "restore", otherBackup)
	if want := "holds another server key than the server that ran on " + s.data + " (fingerprint " + other.FP + ", was " + s.FP + ")"; !strings.Contains(r.Stderr, want) || strings.Count(r.Stderr, "\n") != 1 {
		t.Errorf("restore of another server's backup: stderr %q, want one line with %q", r.Stderr, want)
	}
	r = ok(t, nil, "admin", "--data", s.data, "restore", kept)
	if !strings.Contains(r.Stdout, "restored "+kept) || !strings.Contains(r.Stdout, "server.db.before-restore-") || r.Stderr != "" {
		t.Errorf("restore said %q, %q", r.Stdout, r.Stderr)
	}
	aside, _ := filepath.Glob(filepath.Join(s.data, "server.db.before-restore-*"))
	if len(aside) != 2 {
		t.Errorf("kept aside: %v, want the store before each of the two restores", aside)
	}
	st, err := boltstore.Open(filepath.Join(s.data, "server.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Verify(); err != nil {
		t.Errorf("the restored store: %v", err)
	}
	st.Close()

	s.start()
	got := texts(bob.recv(t, "2s"))
	if !slices.Equal(got, before) {
		t.Errorf("bob received %q from the restored store, want exactly %q", got, before)
	}
}
