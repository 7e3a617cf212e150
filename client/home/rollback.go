package home

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Rollback detection (docs/security.md §4.10). A home restored from an
// older copy holds ratchet states that were already used to encrypt: the
// client would encrypt again under message keys and nonces it used before.
// The home therefore counts the commits that keep a sending state — a
// session (written after encrypting) or a sender key — in bucket "gen",
// sealed, and mirrors the count in a file beside client.db, written after
// each such commit. Commits that only receive (acks, deferred sessions of
// decrypted messages) are not counted: going back past one of them makes a
// message arrive again, never a key be used twice, and counting them cost
// a file write and a page write per commit on the receiving path. A home
// whose count is behind the file's is an older copy: when it is opened,
// its sessions and sender keys, which may have been used past that state,
// are dropped (new sessions start with PQXDH, as after a reset), and
// RolledBack reports it. Restoring the whole directory, the file with it,
// is not detected: that needs a record outside the machine.
const genFile = "client.gen"

var keyGen = []byte("count")

// readGen reads the home's commit count (0 for a home without one).
func (t *Tx) readGen() (uint64, error) {
	v, err := t.get(bucketGen, keyGen)
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// bumpGen counts a commit in tx; h.gen follows once it commits.
func (h *Home) bumpGen(tx *bolt.Tx) error {
	next := h.gen + 1
	if err := (&Tx{h: h, tx: tx}).put(bucketGen, keyGen, binary.BigEndian.AppendUint64(nil, next)); err != nil {
		return err
	}
	tx.OnCommit(func() { h.gen = next })
	return nil
}

// fileGen reads the count mirrored beside the home; 0 if there is none or
// it does not read.
func (h *Home) fileGen() uint64 {
	b, err := os.ReadFile(filepath.Join(h.Dir, genFile))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// writeGen mirrors the count beside the home: one write in place of a
// fixed-width line to a file kept open, a single system call on the
// sending path. It is not synced: a count lost in a crash is only lower,
// which never reports a rollback falsely. Only a power cut in the middle
// of the 21-byte write could leave a mix of two counts that reads higher,
// and then the home drops its sessions once, as after a restore.
func (h *Home) writeGen() {
	if h.genOut == nil {
		f, err := os.OpenFile(filepath.Join(h.Dir, genFile), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return
		}
		h.genOut = f
	}
	h.genOut.WriteAt(fmt.Appendf(nil, "%020d\n", h.gen), 0)
}

// checkRollback runs when the home is unlocked: it reads the count, and if
// the file beside the home is ahead, this is an older copy of the home;
// its sessions and sender keys are dropped, in a commit that puts the
// count past the file's.
func (h *Home) checkRollback() error {
	var registered bool
	err := h.View(func(tx *Tx) error {
		var err error
		registered = tx.tx.Bucket(bucketMeta).Get(keyProfile) != nil
		h.gen, err = tx.readGen()
		return err
	})
	if err != nil {
		return err
	}
	f := h.fileGen()
	if f <= h.gen {
		return nil
	}
	h.gen = f
	if !registered {
		return nil // a new home where an earlier one was: nothing was used
	}
	h.rolledBack = true
	return h.updateDeleting(nil, func(tx *bolt.Tx) error {
		h.genDirty = true // the count goes past the file's
		for _, b := range [][]byte{bucketSessions, bucketSenderKeys} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// RolledBack reports whether this home was found to be an older copy of
// itself when it was opened (a backup restored): its sessions were
// dropped, so that no message key is used twice.
func (h *Home) RolledBack() bool { return h.rolledBack }
