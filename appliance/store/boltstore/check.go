package boltstore

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/internal/boltfile"
)

// Check (docs/design.md §4.2, operations.md §7) reads a store
// file that no server holds, page by page (internal/boltfile), so that damage is
// found before a request meets it: the meta pages, the freelist, every
// page of every bucket's B+tree (that it names itself by its place, has
// the right type and elements that fit), that every page is reachable or
// free and never both; then, if the pages are sound, bbolt's own check and
// the record decoding and counts Verify checks.

// holds says what each bucket holds, for the operator (protocol.md §7).
var holds = map[string]string{
	"meta":        "the server key, the admin password and the store's totals",
	"users":       "accounts",
	"devices":     "devices of accounts",
	"mailboxes":   "queued messages",
	"dedup":       "ids of messages stored, against duplicates",
	"prekeys":     "devices' published keys (identity certificates, signed and one-time prekeys)",
	"bans":        "bans",
	"mutes":       "mutes",
	"invites":     "invites",
	"usage":       "mailbox usage counts (recomputed by salvage)",
	"shared":      "group messages' shared payloads",
	"refs":        "shared payloads' reference counts (recomputed by salvage)",
	"groups":      "group records",
	"groupstarts": "the index of groups by their first user",
	"devicelists": "accounts' signed device lists",
	"revoked":     "revoked devices' tombstones",
	"blobs":       "encrypted files' records",
	"blobchunks":  "encrypted files' contents",
	"blobusage":   "accounts' file quotas (recomputed by salvage)",
	"blobexpiry":  "encrypted files' expiry index (recomputed by salvage)",
}

// BucketNames lists the store's buckets in the order of protocol.md §7.
func BucketNames() []string {
	names := make([]string, len(allBuckets))
	for i, b := range allBuckets {
		names[i] = string(b)
	}
	return names
}

// Holds says what a bucket of the store holds ("" for the file's own
// pages: the bucket list, meta pages, freelist).
func Holds(bucket string) string {
	switch {
	case bucket == "":
		return "the list of buckets"
	case holds[bucket] != "":
		return holds[bucket]
	}
	return "a bucket this version does not know"
}

// Damage is one damaged part of a store file.
type Damage struct {
	// Page is the damaged page; 0 for damage that is not one page (a
	// record, a count, or an inline bucket inside its parent's page).
	Page uint64
	// Bucket is the top-level bucket whose tree holds it; "" for the
	// file's own pages.
	Bucket string
	// What is wrong.
	What string
}

func (d Damage) String() string {
	var b strings.Builder
	if d.Page != 0 {
		fmt.Fprintf(&b, "page %d ", d.Page)
	}
	if d.Bucket != "" {
		fmt.Fprintf(&b, "(bucket %s: %s) ", d.Bucket, Holds(d.Bucket))
	}
	b.WriteString(d.What)
	return b.String()
}

// Report is what Check found.
type Report struct {
	Path  string
	Size  int64  // bytes
	Pages uint64 // pages in use or free
	TxID  uint64 // the transaction the file is at
	// Records counts the records read per top-level bucket (those in
	// sub-buckets included).
	Records map[string]int
	// Damage lists what is damaged; none means the store is sound.
	Damage []Damage
	// Notes are findings that are not damage: a meta page that does not
	// verify while the other does (a write a power loss cut, or damage),
	// so the file opens at the other's commit.
	Notes []string
}

// Err is nil for a sound store, else a *DamagedStoreError.
func (r *Report) Err() error {
	if len(r.Damage) == 0 {
		return nil
	}
	return &DamagedStoreError{Report: r}
}

// DamagedStoreError is a store file Check found damaged. It is
// store.ErrDamaged.
type DamagedStoreError struct{ Report *Report }

func (e *DamagedStoreError) Error() string {
	d := e.Report.Damage
	msg := fmt.Sprintf("the store %s is damaged: %s", e.Report.Path, d[0])
	if len(d) > 1 {
		msg += fmt.Sprintf(" (and %d more damaged parts)", len(d)-1)
	}
	return msg
}
func (e *DamagedStoreError) Is(target error) bool { return target == store.ErrDamaged }

// Check checks the store file at path, which no server may hold
// (store.ErrDataInUse if one does). progress, if set, is told of the pages
// read so far and the file's pages, every few thousand pages. The error is
// for a file that cannot be checked at all; damage is in the report.
func Check(path string, progress func(done, total uint64)) (*Report, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	// bbolt's read-only open takes the file's shared lock, which a
	// running server's exclusive one refuses; it reads neither the
	// freelist nor the tree, so damage there does not stop it.
	db, err := openReadOnly(path)
	if errors.Is(err, store.ErrDataInUse) {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	r := &Report{Path: path, Records: map[string]int{}}
	pf, err := boltfile.Open(path)
	if err != nil {
		r.Damage = append(r.Damage, Damage{What: err.Error() + "; nothing says where the records are"})
		return r, nil
	}
	defer pf.Close()
	r.Size, r.Pages, r.TxID = pf.Size(), pf.Pages(), pf.TxID()
	for page, why := range pf.BadMeta() {
		r.Notes = append(r.Notes, fmt.Sprintf("meta page %d does not verify (%s): a write a power loss cut, or damage; the store is at its other meta page's commit, transaction %d, and the next commit rewrites page %d", page, why, pf.TxID(), page))
	}
	sc := &boltfile.Scanner{Progress: progress}
	if err := pf.Scan(sc); err != nil {
		return nil, err
	}
	r.Records = sc.Records
	r.Damage = append(r.Damage, damages(sc.Damage)...)
	free, err := pf.Freelist()
	if err != nil {
		r.Damage = append(r.Damage, damages([]boltfile.Damage{boltfile.DamageOf(err, "", "(the freelist: the list of free pages; it holds no records, and salvage rebuilds it) ")})...)
	}
	if len(r.Damage) == 0 {
		r.Damage = append(r.Damage, damages(pf.Reachability(free))...)
	}
	if len(r.Damage) == 0 && db != nil {
		// bbolt's check reads both meta pages: with one damaged it
		// would only say so again, so the pages walked above stand.
		r.Damage = append(r.Damage, checkDB(db, len(pf.BadMeta()) == 0)...)
	}
	if len(r.Damage) > boltfile.MaxDamage {
		r.Damage = r.Damage[:boltfile.MaxDamage]
	}
	return r, nil
}

// damages are the page reader's findings as Damage.
func damages(ds []boltfile.Damage) []Damage {
	out := make([]Damage, len(ds))
	for i, d := range ds {
		out[i] = Damage(d)
	}
	return out
}

// openReadOnly opens path with bbolt, read-only, for its lock and its
// checks; nil and no error if bbolt cannot read the file (Check says why).
func openReadOnly(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, nil
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, store.ErrDataInUse
	}
	if err != nil {
		return nil, nil
	}
	return db, nil
}

// checkDB runs bbolt's check and the record checks on a file whose pages
// read whole.
func checkDB(db *bolt.DB, bboltCheck bool) (out []Damage) {
	defer func() {
		if r := recover(); r != nil {
			out = append(out, Damage{What: fmt.Sprint(r)})
		}
	}()
	db.View(func(tx *bolt.Tx) error {
		if bboltCheck {
			for err := range tx.Check() {
				if len(out) < boltfile.MaxDamage {
					out = append(out, Damage{What: err.Error()})
				}
			}
		}
		if len(out) == 0 {
			if err := verifyRecords(tx); err != nil {
				out = append(out, Damage{What: err.Error()})
			}
		}
		return nil
	})
	return out
}

// PageInfo is one page of a store file's trees, as Pages reads it.
type PageInfo = boltfile.PageInfo

// Pages lists the pages of every bucket's tree (a page after its
// subtree), with the file's freelist page (0 if none) apart; the meta
// pages are 0 and 1: what tests damage, and what an operator may look at.
func Pages(path string) (pages []PageInfo, freelist uint64, err error) {
	pf, err := boltfile.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer pf.Close()
	sc := &boltfile.Scanner{Page: func(p PageInfo) { pages = append(pages, p) }}
	if err := pf.Scan(sc); err != nil {
		return nil, 0, err
	}
	if len(sc.Damage) > 0 {
		return nil, 0, fmt.Errorf("page %d: %s", sc.Damage[0].Page, sc.Damage[0].What)
	}
	return pages, pf.FreelistPage(), nil
}
