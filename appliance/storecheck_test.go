package appliance

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store/boltstore"
)

// TestCheckStoreProgress: the start's check of a store it takes for large
// says so before it begins, logs its progress as it goes and says when it
// is done; a data directory without a store yet passes.
func TestCheckStoreProgress(t *testing.T) {
	dir := t.TempDir()
	if r, err := CheckStore(dir, nil); r != nil || err != nil {
		t.Fatalf("no store yet: %v %v", r, err)
	}
	s, err := boltstore.Open(filepath.Join(dir, FileDB), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAccount(t, s, "alice", 2, time.UnixMilli(1_700_000_000_000))
	s.Close()
	defer func(size int64, every time.Duration) { largeStore, progressEvery = size, every }(largeStore, progressEvery)
	largeStore, progressEvery = 0, 0
	var out bytes.Buffer
	r, err := CheckStore(dir, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil || r == nil || r.Records["users"] != 1 {
		t.Fatalf("check: %+v %v", r, err)
	}
	log := out.String()
	for _, want := range []string{"checking the store before serving", `msg="checking the store" pages=`, `msg="store checked"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
}

// TestLeftoversSwept: what a server killed in the middle of a check of
// its running store or of an automatic backup, or a restore killed
// midway, leaves (each up to a copy of the store, on an SD card that
// fills) is removed at the next start; other files stay.
func TestLeftoversSwept(t *testing.T) {
	data := t.TempDir()
	backups := filepath.Join(data, DirBackups)
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	left := []string{
		filepath.Join(data, ".check-123456.tmp"),
		filepath.Join(data, ".server.db.restore-42.tmp"),
		filepath.Join(backups, ".server-20261201T020000Z.db.987.partial"),
	}
	kept := []string{
		filepath.Join(data, "notes.tmp"),
		filepath.Join(backups, "server-20261201T020000Z.db"),
		filepath.Join(backups, ".mine.partial"),
	}
	for _, f := range slices.Concat(left, kept) {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	for _, f := range left {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s is still there", f)
		}
	}
	for _, f := range kept {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s went: %v", f, err)
		}
	}
}

// TestCheckRunningShortOfSpace: a check of the running server's store,
// which copies it into the data directory, is refused when the copy would
// leave less than disk_free_warn (it would have taken the room the users'
// sends need), saying how to check without a copy; it leaves nothing.
func TestCheckRunningShortOfSpace(t *testing.T) {
	data := t.TempDir()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: data, Logger: slog.New(slog.DiscardHandler), DiskFreeWarn: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if c, err := srv.CheckStore(t.Context()); err != nil || len(c.Damage) != 0 {
		t.Fatalf("check with room: %+v %v", c, err)
	}
	srv.cfg.DiskFreeWarn = 1 << 50
	_, err = srv.CheckStore(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not enough free space") || !strings.Contains(err.Error(), "admin --data "+data+" check") {
		t.Errorf("check short of space: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".check-*")); len(left) != 0 {
		t.Errorf("left %v", left)
	}
}
