package home

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securechat/securechat/internal/boltfile"
)

// A damaged home (docs/design.md §6.2, protocol.md §10): the same page
// reader as the server's store (internal/boltfile) checks client.db page
// by page, and salvage copies every record it can read into a new file,
// sealed as it is — no passphrase is needed, and nothing is unsealed. A
// damaged page loses its records and nothing else; a record that refers
// to a lost one (a message index entry to a lost history line) finds it
// absent, as after a deletion. A lost commit count (bucket gen) makes the
// home look like a restored older copy at its next open: its sessions are
// dropped and start again (rollback.go), the safe side.

// ErrDamaged: the home's file is damaged where an operation read or
// wrote it. The operation did nothing; `securechat home check` says where.
var ErrDamaged = errors.New("this home's file is damaged")

// damagedError is ErrDamaged for the home in dir, with what bbolt found.
func damagedError(dir string, found any) error {
	return fmt.Errorf("home %s: %w: %s; securechat home --home %s check lists the damage, and securechat home --home %s salvage OUT copies what can be read", dir, ErrDamaged,
		strings.TrimPrefix(fmt.Sprint(found), "assertion failed: "), dir, dir)
}

// scanHome walks the home in dir page by page, under bbolt's shared lock
// (a home another process has open is ErrHomeInUse, or a bolt timeout for
// Open to report): ErrDamaged, naming the first damaged page, if a page of
// its trees does not read. A home that does not exist yet passes.
func scanHome(dir string) error {
	db, err := lockHome(dir)
	if errors.Is(err, ErrNotRegistered) {
		return nil
	}
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	pf, err := boltfile.Open(filepath.Join(dir, homeDB))
	if err != nil {
		return damagedError(dir, err)
	}
	defer pf.Close()
	sc := &boltfile.Scanner{}
	if err := pf.Scan(sc); err != nil {
		return err
	}
	if len(sc.Damage) > 0 {
		return damagedError(dir, HomeDamage(sc.Damage[0]))
	}
	return nil
}

// viewDamaged is db.View with bbolt's panic on a damaged page an
// ErrDamaged.
func viewDamaged(dir string, db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damagedError(dir, r)
		}
	}()
	return db.View(fn)
}

// recoverDamage, deferred by View and Update, turns bbolt's panic on a
// damaged page into ErrDamaged in *err.
func (h *Home) recoverDamage(err *error) {
	if r := recover(); r != nil {
		*err = damagedError(h.Dir, r)
	}
}

// homeHolds says what each bucket of a home holds, for the user.
var homeHolds = map[string]string{
	"meta":       "the key parameters and the sealed profile: identity, device key, server",
	"gen":        "the commit count that detects a restored older copy",
	"seen":       "ids of messages delivered, against redelivery",
	"outbox":     "sent messages the server has not confirmed",
	"contacts":   "what is known of other accounts' identity keys",
	"sessions":   "end-to-end sessions with other devices",
	"received":   "decrypted messages not yet acknowledged",
	"senderkeys": "group sender keys",
	"basekeys":   "base keys of answered first messages, against replays",
	"convs":      "conversations",
	"history":    "message history",
	"msgindex":   "the index of messages by id",
	"pending":    "queued sends",
	"groups":     "groups and their membership logs",
	"files":      "file records",
}

// HomeDamage is one damaged part of a home's file.
type HomeDamage struct {
	Page   uint64 // 0: not one page
	Bucket string // the bucket whose tree holds it; "" for the file's own pages
	What   string
}

func (d HomeDamage) String() string {
	var b strings.Builder
	if d.Page != 0 {
		fmt.Fprintf(&b, "page %d ", d.Page)
	}
	if d.Bucket != "" {
		holds := homeHolds[d.Bucket]
		if holds == "" {
			holds = "a bucket this version does not know"
		}
		fmt.Fprintf(&b, "(bucket %s: %s) ", d.Bucket, holds)
	}
	b.WriteString(d.What)
	return b.String()
}

// CheckReport is what CheckFile found.
type CheckReport struct {
	Path    string
	Size    int64
	Pages   uint64
	TxID    uint64
	Records map[string]int // per bucket
	Damage  []HomeDamage
	Notes   []string
}

// DamagedHomeError is a home CheckFile found damaged.
type DamagedHomeError struct{ Report *CheckReport }

func (e *DamagedHomeError) Error() string {
	d := e.Report.Damage
	msg := fmt.Sprintf("the home %s is damaged: %s", e.Report.Path, d[0])
	if len(d) > 1 {
		msg += fmt.Sprintf(" (and %d more damaged parts)", len(d)-1)
	}
	return msg
}

// Err is nil for a sound home, else a *DamagedHomeError.
func (r *CheckReport) Err() error {
	if len(r.Damage) == 0 {
		return nil
	}
	return &DamagedHomeError{Report: r}
}

// lockHome opens dir's client.db read-only with bbolt, for its lock
// (ErrHomeInUse if a client has it open); nil and no error if bbolt
// cannot read it (the check says why).
func lockHome(dir string) (db *bolt.DB, err error) {
	path := filepath.Join(dir, homeDB)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotRegistered
	} else if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, nil
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 300 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("home %s: %w", dir, ErrHomeInUse)
	}
	if err != nil {
		return nil, nil
	}
	return db, nil
}

func homeDamages(ds []boltfile.Damage) []HomeDamage {
	out := make([]HomeDamage, len(ds))
	for i, d := range ds {
		out[i] = HomeDamage(d)
	}
	return out
}

// CheckFile checks the home in dir, page by page, then with bbolt's own
// check; no client may have it open. It needs no passphrase: it reads the
// file's structure, not the sealed records.
func CheckFile(dir string) (*CheckReport, error) {
	db, err := lockHome(dir)
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	path := filepath.Join(dir, homeDB)
	r := &CheckReport{Path: path, Records: map[string]int{}}
	pf, err := boltfile.Open(path)
	if err != nil {
		r.Damage = append(r.Damage, HomeDamage{What: err.Error() + "; nothing says where the records are"})
		return r, nil
	}
	defer pf.Close()
	r.Size, r.Pages, r.TxID = pf.Size(), pf.Pages(), pf.TxID()
	for page, why := range pf.BadMeta() {
		r.Notes = append(r.Notes, fmt.Sprintf("meta page %d does not verify (%s): a write a power loss cut, or damage; the home is at its other meta page's commit, transaction %d", page, why, pf.TxID()))
	}
	sc := &boltfile.Scanner{}
	if err := pf.Scan(sc); err != nil {
		return nil, err
	}
	r.Records = sc.Records
	r.Damage = homeDamages(sc.Damage)
	// A home keeps no freelist (home.go: NoFreelistSync): bbolt finds the
	// free pages by walking the trees, as its check does.
	if len(r.Damage) == 0 && db != nil && len(pf.BadMeta()) == 0 {
		r.Damage = append(r.Damage, bboltCheck(db)...)
	}
	return r, nil
}

// bboltCheck runs bbolt's check on a home whose pages read whole.
func bboltCheck(db *bolt.DB) (out []HomeDamage) {
	defer func() {
		if r := recover(); r != nil {
			out = append(out, HomeDamage{What: fmt.Sprint(r)})
		}
	}()
	db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if len(out) < boltfile.MaxDamage {
				out = append(out, HomeDamage{What: err.Error()})
			}
		}
		return nil
	})
	return out
}

// BucketSalvage is what SalvageFile did with one bucket of a home.
type BucketSalvage struct {
	Bucket    string
	Kept      int // records copied
	LostPages int // pages that could not be read: their records are lost
}

// SalvageReport says, per bucket, what was kept and what was lost.
type SalvageReport struct {
	Buckets []BucketSalvage
	Damage  []HomeDamage
	Notes   []string
}

// salvageBatch bounds the records, and salvageBatchBytes their bytes, one
// commit of the copy holds.
const (
	salvageBatch      = 4096
	salvageBatchBytes = 64 << 20
)

// SalvageFile copies every record it can read of the home in dir into the
// new file out (which must not exist), sealed as it is. No client may
// have the home open.
func SalvageFile(dir, out string) (*SalvageReport, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("%s already exists: salvage writes a new file and never replaces one", out)
	}
	db, err := lockHome(dir)
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	src := filepath.Join(dir, homeDB)
	pf, err := boltfile.Open(src)
	if err != nil {
		return nil, fmt.Errorf("nothing can be salvaged from %s: %v", src, err)
	}
	defer pf.Close()
	dst, err := bolt.Open(out, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			dst.Close()
			os.Remove(out)
		}
	}()
	if err := dst.Update(createBuckets); err != nil {
		return nil, err
	}
	rep := &SalvageReport{}
	for page, why := range pf.BadMeta() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("meta page %d does not verify (%s): salvaged from transaction %d, the other meta page's", page, why, pf.TxID()))
	}
	type op struct {
		path [][]byte
		k, v []byte
	}
	var pending []op
	size := 0
	flush := func() error {
		err := dst.Update(func(tx *bolt.Tx) error {
			for _, o := range pending {
				b, err := tx.CreateBucketIfNotExists(o.path[0])
				for _, name := range o.path[1:] {
					if err == nil {
						b, err = b.CreateBucketIfNotExists(name)
					}
				}
				if err == nil && o.k != nil {
					err = b.Put(o.k, o.v)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		pending, size = pending[:0], 0
		return err
	}
	add := func(o op) error {
		pending = append(pending, o)
		size += len(o.k) + len(o.v)
		if len(pending) >= salvageBatch || size >= salvageBatchBytes {
			return flush()
		}
		return nil
	}
	var sawKDF, sawProfile bool
	sc := &boltfile.Scanner{
		Bucket: func(path [][]byte) error { return add(op{path: path}) },
		Record: func(path [][]byte, k, v []byte) error {
			if len(path) == 1 && bytes.Equal(path[0], bucketMeta) {
				sawKDF = sawKDF || bytes.Equal(k, keyKDF)
				sawProfile = sawProfile || bytes.Equal(k, keyProfile)
			}
			return add(op{path, k, v})
		},
	}
	if err := pf.Scan(sc); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	rep.Damage = homeDamages(sc.Damage)
	lost := map[string]int{}
	for _, d := range rep.Damage {
		lost[d.Bucket]++
	}
	if !sawKDF || !sawProfile {
		rep.Notes = append(rep.Notes, "the key parameters or the profile were lost: nothing in the home can be unsealed or used; set this device up again (register, login or link with a new home)")
	}
	if lost["gen"] > 0 || lost[""] > 0 {
		rep.Notes = append(rep.Notes, "the commit count may be lost: at its next open the home takes itself for a restored older copy and drops its sessions, which start again")
	}
	err = dst.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n := 0
			b.ForEach(func(k, v []byte) error {
				n++
				return nil
			})
			rep.Buckets = append(rep.Buckets, BucketSalvage{Bucket: string(name), Kept: n, LostPages: lost[string(name)]})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if err := dst.Close(); err != nil {
		return nil, err
	}
	ok = true
	return rep, nil
}
