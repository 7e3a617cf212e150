package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/transport"
)

// Restore (docs/operations.md §7): `securechat admin restore FILE` puts a
// backup in place of a stopped server's store. The backup is copied into
// the data directory and verified there (the copy, not FILE, which stays
// as it was), the store it replaces is kept aside as
// server.db.before-restore-TIME, and the copy renamed into place. A
// server running on the directory holds its store's lock: then nothing
// is done.

// errInUse: a server holds the data directory's store.
var errInUse = errors.New("in use")

// Restored is what Restore did.
type Restored struct {
	Path  string // the store restored, DATA/server.db
	Size  int64
	Aside string // where the store it replaced is kept; "" if there was none
	// OtherKey is set when the backup holds another server key than the
	// one the server last ran with here (DATA/server.fingerprint): its
	// fingerprint, and the one before it. Every client that pinned the
	// old one refuses the restored server until its user accepts the new.
	OtherKey, Before string
}

// Restore puts the backup file in place of data's store, as of now. The
// server must be stopped.
func Restore(data, file string, now time.Time) (Restored, error) {
	dbPath := filepath.Join(data, FileDB)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return Restored{}, fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockStore(dbPath)
	if errors.Is(err, errInUse) {
		return Restored{}, fmt.Errorf("a securechat server is running on %s: stop it first (SIGTERM, or shutdown in its console); nothing was changed", data)
	}
	if err != nil {
		return Restored{}, fmt.Errorf("cannot lock %s: %w", dbPath, err)
	}
	defer unlock()

	tmp, size, err := copyBackup(data, file)
	if err != nil {
		return Restored{}, err
	}
	fp, err := verifyStore(tmp)
	if err != nil {
		os.Remove(tmp)
		return Restored{}, fmt.Errorf("%s is not a store the server can use: %w; nothing was changed", file, err)
	}
	out := Restored{Path: dbPath, Size: size}
	if b, err := os.ReadFile(filepath.Join(data, FileFingerprint)); err == nil && fp != "" {
		if before, err := transport.ParseFingerprint(string(b)); err == nil && before.String() != fp {
			out.OtherKey, out.Before = fp, before.String()
		}
	}
	switch _, err := os.Lstat(dbPath); {
	case err == nil:
		// Never over an earlier restore's: two in one second (the wrong
		// backup, then the right one) would lose the store before both.
		out.Aside = dbPath + ".before-restore-" + now.UTC().Format(backupLayout)
		for i := 2; ; i++ {
			if _, err := os.Lstat(out.Aside); errors.Is(err, fs.ErrNotExist) {
				break
			}
			out.Aside = fmt.Sprintf("%s.before-restore-%s-%d", dbPath, now.UTC().Format(backupLayout), i)
		}
		// A second name for the store, then one rename over it: a power
		// cut at any moment leaves a server.db, the old or the new. A file
		// system without hard links (FAT) moves it aside instead.
		if err := os.Link(dbPath, out.Aside); err == nil {
			syncDir(data)
		} else if err := os.Rename(dbPath, out.Aside); err != nil {
			os.Remove(tmp)
			return Restored{}, fmt.Errorf("keeping the current store aside: %w; nothing was changed", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		os.Remove(tmp)
		return Restored{}, err
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return Restored{}, fmt.Errorf("putting the backup in place: %w (the store before is %s, the verified copy %s)", err, out.Aside, tmp)
	}
	syncDir(data)
	return out, nil
}

// copyBackup copies file into a temporary file of data (mode 0600),
// synced.
func copyBackup(data, file string) (string, int64, error) {
	in, err := os.Open(file)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return "", 0, err
	} else if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a file", file)
	}
	out, err := os.CreateTemp(data, "."+FileDB+".restore-*.tmp")
	if err != nil {
		return "", 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", 0, fmt.Errorf("copying %s into %s: %w", file, data, err)
	}
	return out.Name(), n, nil
}

// verifyStore checks the store at path as the server's start does
// (boltstore.Check: page by page, before bbolt reads a page, since a page
// that points past the file faults in bbolt's own check), opens it
// (bringing an older schema up to date) and checks it again (Store.Verify).
// fp is the fingerprint of the server key it holds, "" if none.
func verifyStore(path string) (fp string, err error) {
	defer func() {
		// bbolt checks some pages with a panic: a damaged file is an
		// answer here, not a crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged: %v", r)
		}
	}()
	r, err := boltstore.Check(path, nil)
	if err != nil {
		return "", err
	}
	if len(r.Damage) > 0 {
		err = fmt.Errorf("damaged: %s", r.Damage[0])
		if len(r.Damage) > 1 {
			err = fmt.Errorf("%w (and %d more damaged parts)", err, len(r.Damage)-1)
		}
		return "", err
	}
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	if err := st.Verify(); err != nil {
		return "", err
	}
	// A store without a key is given none here (the reader fails): the
	// server makes one at its start.
	if key, err := st.ServerKey(context.Background(), failingReader{}); err == nil {
		fp = transport.FingerprintOf(key.Public().(ed25519.PublicKey)).String()
	}
	return fp, nil
}

// failingReader is a source of randomness that has none.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no key") }
