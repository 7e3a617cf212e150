package appliance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/chat"
)

// The store is checked before the server serves (docs/design.md §4.2,
// operations.md §7): the whole file, page by page, before
// the listener is bound, so no client is accepted until it passes; a
// damaged store stops the start with one message saying what is damaged,
// what it holds and the ways out. A request that meets damage the check
// could not see fails alone (boltstore's damage.go): storeDamaged records
// it for the operator.

// largeStore is the size from which the check logs its progress (a
// variable for tests).
var largeStore int64 = 64 << 20

// progressEvery is how often the check of a large store logs its progress
// (a variable for tests).
var progressEvery = 5 * time.Second

// StoreDamageHelp is what to do about a damaged store in the data
// directory dir.
func StoreDamageHelp(dir string) string {
	return fmt.Sprintf("with the server stopped, either salvage it: securechat admin --data %s salvage OUT copies every record that can be read into the new file OUT; move OUT to %s and start again; or put a backup of the store (as securechat admin backup writes them) in its place (docs/operations.md §7, \"Store damage\")",
		dir, filepath.Join(dir, FileDB))
}

// StoreDamagedError is a store the check found damaged, with the ways
// out. It is store.ErrDamaged.
type StoreDamagedError struct {
	Dir string
	Err error // a *boltstore.DamagedStoreError
}

func (e *StoreDamagedError) Error() string { return e.Err.Error() + "; " + StoreDamageHelp(e.Dir) }
func (e *StoreDamagedError) Unwrap() error { return e.Err }

// dataInUseError is a data directory another server holds. It is
// store.ErrDataInUse.
type dataInUseError struct{ dir string }

func (e *dataInUseError) Error() string {
	return fmt.Sprintf("data directory %s is in use by another securechat server", e.dir)
}
func (e *dataInUseError) Is(target error) bool { return target == store.ErrDataInUse }

// CheckStore checks the store of the data directory dir, which no server
// may hold (store.ErrDataInUse), logging its progress on a large store.
// The report is nil if dir holds no store yet; the error is a
// *StoreDamagedError for a damaged store.
func CheckStore(dir string, log *slog.Logger) (*boltstore.Report, error) {
	path := filepath.Join(dir, FileDB)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var progress func(done, total uint64)
	start := time.Now()
	if fi.Size() >= largeStore && log != nil {
		log.Info("checking the store before serving; clients wait until it passes", "file", path, "bytes", fi.Size())
		last := start
		progress = func(done, total uint64) {
			if time.Since(last) >= progressEvery {
				last = time.Now()
				log.Info("checking the store", "pages", done, "of", total)
			}
		}
	}
	r, err := boltstore.Check(path, progress)
	if errors.Is(err, store.ErrDataInUse) {
		return nil, &dataInUseError{dir}
	}
	if err != nil {
		return nil, fmt.Errorf("checking the store: %w", err)
	}
	if log != nil {
		for _, n := range r.Notes {
			log.Warn("store: " + n)
		}
		if progress != nil {
			log.Info("store checked", "took", time.Since(start).Round(time.Millisecond))
		}
	}
	if err := r.Err(); err != nil {
		return r, &StoreDamagedError{Dir: dir, Err: err}
	}
	return r, nil
}

// storeDamaged is told of each store operation that met a damaged part of
// the store: it fails alone, the server goes on; the operator sees it in
// the log, the events and the store_damaged_total metric.
func (s *Server) storeDamaged(e *store.DamagedError) {
	s.stats.StoreDamaged.Add(1)
	s.recordEvent(chat.EventStoreDamaged, e.Op, e.Cause)
	s.log.Error("store damaged: an operation failed; the server goes on serving what it can read", "op", e.Op, "err", e.Cause,
		"what to do", "securechat admin --data "+s.cfg.Data+" check, then "+StoreDamageHelp(s.cfg.Data))
}

// StoreCheck is what a check of the store found, as the admin API and
// the commands show it.
type StoreCheck struct {
	Dir     string        `json:"dir"` // the data directory
	Path    string        `json:"path"`
	Bytes   int64         `json:"bytes"`
	Pages   uint64        `json:"pages"`
	TxID    uint64        `json:"txid"`
	Records []BucketCount `json:"records"` // per bucket, protocol.md §7's order
	Notes   []string      `json:"notes,omitempty"`
	Damage  []string      `json:"damage,omitempty"` // none: the store is sound
}

// BucketCount is the records a bucket of the store holds.
type BucketCount struct {
	Bucket  string `json:"bucket"`
	Records int    `json:"records"`
}

// StoreCheckOf is a report as the admin shows it.
func StoreCheckOf(dir string, r *boltstore.Report) StoreCheck {
	c := StoreCheck{Dir: dir, Path: r.Path, Bytes: r.Size, Pages: r.Pages, TxID: r.TxID, Notes: r.Notes}
	for _, b := range boltstore.BucketNames() {
		if n, ok := r.Records[b]; ok {
			c.Records = append(c.Records, BucketCount{b, n})
		}
	}
	for _, d := range r.Damage {
		c.Damage = append(c.Damage, d.String())
	}
	return c
}

// CheckStore checks the store the running server holds, as the start
// does: a hot copy of it (Backup: the same pages, at the same commit) is
// taken into a temporary file of the data directory and checked there,
// so no read transaction stays open for the check. It needs free space
// for one copy of the store.
func (s *Server) CheckStore(ctx context.Context) (StoreCheck, error) {
	// The copy must not be what fills the disk under the users' sends:
	// it leaves at least disk_free_warn, as an automatic backup does.
	need := s.store.Stats().Bytes
	if free, _, ok := diskSpace(s.cfg.Data); ok && free < uint64(need)+uint64(s.cfg.DiskFreeWarn) {
		return StoreCheck{}, fmt.Errorf("check: not enough free space in %s for a copy of the store: %s free, the copy needs %s and would leave less than disk_free_warn (%s); stop the server and run securechat admin --data %s check, which needs no copy",
			s.cfg.Data, sizeText(free), sizeText(uint64(need)), sizeText(uint64(s.cfg.DiskFreeWarn)), s.cfg.Data)
	}
	f, err := os.CreateTemp(s.cfg.Data, ".check-*.tmp")
	if err != nil {
		return StoreCheck{}, fmt.Errorf("check: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = s.store.Backup(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return StoreCheck{}, fmt.Errorf("check: copying the store: %w", err)
	}
	r, err := boltstore.Check(f.Name(), nil)
	if err != nil {
		return StoreCheck{}, fmt.Errorf("check: %w", err)
	}
	r.Path = filepath.Join(s.cfg.Data, FileDB)
	return StoreCheckOf(s.cfg.Data, r), nil
}

// leftovers are the temporary files a server or restore killed midway
// (a power cut) leaves, each up to a copy of the store: a running check's
// copy, a restore's, and an automatic backup's partial file. The server
// holds the store's lock when it sweeps them (at its start), so no other
// server or restore is writing them.
var leftovers = []struct {
	backupDir bool
	pattern   string
}{
	{false, ".check-*.tmp"},
	{false, "." + FileDB + ".restore-*.tmp"},
	{true, "." + backupPrefix + "*" + backupSuffix + ".*.partial"},
}

// sweepLeftovers removes the leftovers of a run killed midway.
func (s *Server) sweepLeftovers() {
	for _, l := range leftovers {
		dir := s.cfg.Data
		if l.backupDir {
			dir = s.cfg.BackupDirectory()
		}
		found, _ := filepath.Glob(filepath.Join(dir, l.pattern))
		for _, f := range found {
			if err := os.Remove(f); err == nil {
				s.log.Info("removed what a run killed midway left", "file", f)
			}
		}
	}
}
