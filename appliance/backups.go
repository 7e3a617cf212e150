package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/chat"
)

// Automatic backups (docs/operations.md §7): every backup_every the server
// writes a consistent hot copy of the store into backup_dir, named with
// the UTC time it was taken, and keeps the newest backup_keep. A backup
// that fails is an event, a counter and a log line; the server serves on.

// DirBackups is the automatic backups' directory in the data directory,
// unless backup_dir names another.
const DirBackups = "backups"

// Backup files are server-TIME.db, TIME in backupLayout (UTC): their names
// sort by time.
const (
	backupPrefix = "server-"
	backupSuffix = ".db"
	backupLayout = "20060102T150405Z"
)

// BackupInfo describes one automatic backup.
type BackupInfo struct {
	Name string    `json:"name"`
	Path string    `json:"path"`
	Time time.Time `json:"time"` // when it was taken
	Size int64     `json:"size"`
}

// BackupDirectory is the directory of the automatic backups: backup_dir,
// or DATA/backups.
func (c Config) BackupDirectory() string {
	if c.BackupDir != "" {
		return c.BackupDir
	}
	return filepath.Join(c.Data, DirBackups)
}

// backupTime reads the time from an automatic backup's name.
func backupTime(name string) (time.Time, bool) {
	stamp, ok := strings.CutPrefix(name, backupPrefix)
	if !ok {
		return time.Time{}, false
	}
	if stamp, ok = strings.CutSuffix(stamp, backupSuffix); !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(backupLayout, stamp)
	return t, err == nil
}

// listBackups lists the automatic backups in dir, newest first. Files
// with other names are not the server's and are never listed or removed.
func listBackups(dir string) ([]BackupInfo, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []BackupInfo
	for _, e := range entries {
		t, ok := backupTime(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, BackupInfo{Name: e.Name(), Path: filepath.Join(dir, e.Name()), Time: t, Size: info.Size()})
	}
	slices.SortFunc(out, func(a, b BackupInfo) int { return cmp.Compare(b.Name, a.Name) })
	return out, nil
}

// Backups lists the automatic backups, newest first.
func (s *Server) Backups(ctx context.Context) ([]BackupInfo, error) {
	list, err := listBackups(s.cfg.BackupDirectory())
	if err != nil {
		return nil, fmt.Errorf("backups: %w", err)
	}
	return list, nil
}

// backupLoop takes the automatic backups: one at once when there is none,
// then one backup_every after the newest, so a server restarted more
// often than that still takes them.
func (s *Server) backupLoop(ctx context.Context) {
	every := time.Duration(s.cfg.BackupEvery)
	if every <= 0 {
		return
	}
	for {
		wait := time.Duration(0)
		if list, _ := listBackups(s.cfg.BackupDirectory()); len(list) > 0 {
			// At most one interval: a clock set back does not stop them.
			wait = min(list[0].Time.Add(every).Sub(s.cfg.Now()), every)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := s.autoBackup(ctx); err != nil && ctx.Err() == nil {
			// Not again at once: the next try is one interval on.
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}
}

// autoBackup takes one automatic backup and removes the oldest past
// backup_keep. Its failure is recorded, never fatal.
func (s *Server) autoBackup(ctx context.Context) (BackupInfo, error) {
	b, err := s.writeBackup(ctx)
	if err != nil {
		s.stats.BackupsFailed.Add(1)
		s.log.Error("automatic backup failed", "dir", s.cfg.BackupDirectory(), "err", err)
		s.recordEvent(chat.EventBackupFailed, s.cfg.BackupDirectory(), err.Error())
		return BackupInfo{}, err
	}
	s.stats.Backups.Add(1)
	s.log.Info("automatic backup written", "file", b.Path, "bytes", b.Size)
	s.recordEvent(chat.EventBackup, b.Name, sizeText(uint64(b.Size)))
	removed, err := s.rotateBackups()
	for _, r := range removed {
		s.log.Info("old automatic backup removed", "file", r)
	}
	if err != nil {
		s.log.Warn("removing old automatic backups", "err", err)
	}
	return b, nil
}

// writeBackup writes the store's hot copy into the backup directory: into
// a temporary file (mode 0600, as admin backup writes), synced, then
// renamed to its name.
func (s *Server) writeBackup(ctx context.Context) (BackupInfo, error) {
	dir := s.cfg.BackupDirectory()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return BackupInfo{}, err
	}
	// A backup must not be what fills the disk: it needs the store's
	// size, and leaves at least disk_free_warn.
	need := s.store.Stats().Bytes
	if free, _, ok := diskSpace(dir); ok && free < uint64(need)+uint64(s.cfg.DiskFreeWarn) {
		return BackupInfo{}, fmt.Errorf("not enough free space in %s: %s free, the backup needs %s and would leave less than disk_free_warn (%s)",
			dir, sizeText(free), sizeText(uint64(need)), sizeText(uint64(s.cfg.DiskFreeWarn)))
	}
	now := s.cfg.Now().UTC()
	name := backupPrefix + now.Format(backupLayout) + backupSuffix
	f, err := os.CreateTemp(dir, "."+name+".*.partial")
	if err != nil {
		return BackupInfo{}, err
	}
	tmp := f.Name()
	n, err := s.store.Backup(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = checkBackup(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return BackupInfo{}, err
	}
	syncDir(dir)
	return BackupInfo{Name: name, Path: filepath.Join(dir, name), Time: now.Truncate(time.Second), Size: n}, nil
}

// checkBackup checks a backup as the start checks the store: a hot copy
// holds the store's pages as they are, so a page the card damaged is in
// it. A damaged backup is not kept, so that rotation never replaces the
// sound backups with damaged ones, and the damage is told the day it is
// copied, before a request meets it.
func checkBackup(path string) error {
	r, err := boltstore.Check(path, nil)
	if err != nil {
		return fmt.Errorf("checking the backup: %w", err)
	}
	if len(r.Damage) > 0 {
		more := ""
		if len(r.Damage) > 1 {
			more = fmt.Sprintf(" (and %d more damaged parts)", len(r.Damage)-1)
		}
		return fmt.Errorf("the store is damaged, so this backup is not kept and the older ones stay: %s%s; run check", r.Damage[0], more)
	}
	return nil
}

// rotateBackups removes the automatic backups past the newest
// backup_keep, and returns the paths removed. A backup dated after now
// was taken before the clock was set back (a Raspberry Pi without a
// real-time clock, booted before NTP; a clock corrected after running
// ahead): it counts as older than any other, so the backups taken since
// are kept and it goes first.
func (s *Server) rotateBackups() ([]string, error) {
	list, err := listBackups(s.cfg.BackupDirectory())
	if err != nil || len(list) <= s.cfg.BackupKeep {
		return nil, err
	}
	now := s.cfg.Now()
	slices.SortStableFunc(list, func(a, b BackupInfo) int {
		return cmp.Compare(boolInt(a.Time.After(now)), boolInt(b.Time.After(now))) // newest first otherwise
	})
	var removed []string
	var errs []error
	for _, b := range list[s.cfg.BackupKeep:] {
		if err := os.Remove(b.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, b.Path)
	}
	return removed, errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
