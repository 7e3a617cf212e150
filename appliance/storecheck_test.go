package appliance

import (
	"bytes"
	"log/slog"
	"path/filepath"
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
