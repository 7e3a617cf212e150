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
)

// Check (docs/design.md §4.2, operations.md §7) reads a store
// file that no server holds, page by page (pages.go), so that damage is
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
	"prekeys":     "devices' published keys: identity certificates, signed and one-time prekeys",
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

// maxDamage bounds the damage one report lists.
const maxDamage = 100

// Check checks the store file at path, which no server may hold
// (store.ErrDataInUse if one does). progress, if set, is told of the pages
// read so far and the file's pages, every few thousand pages. The error is
// for a file that cannot be checked at all; damage is in the report.
func Check(path string, progress func(done, total uint64)) (*Report, error) {
	// bbolt's read-only open takes the file's shared lock, which a
	// running server's exclusive one refuses; it reads neither the
	// freelist nor the tree, so damage there does not stop it.
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := openReadOnly(path)
	if errors.Is(err, store.ErrDataInUse) {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	r := &Report{Path: path, Records: map[string]int{}}
	pf, err := openPages(path)
	if err != nil {
		r.Damage = append(r.Damage, Damage{What: err.Error() + "; nothing says where the records are"})
		return r, nil
	}
	defer pf.Close()
	r.Size, r.Pages, r.TxID = pf.size, pf.meta.pgid, pf.meta.txid
	for page, why := range pf.badMeta {
		r.Notes = append(r.Notes, fmt.Sprintf("meta page %d does not verify (%s): a write a power loss cut, or damage; the store is at its other meta page's commit, transaction %d, and the next commit rewrites page %d", page, why, pf.meta.txid, page))
	}
	sc := &scanner{pf: pf, records: r.Records, progress: progress}
	if err := sc.run(); err != nil {
		return nil, err
	}
	r.Damage = append(r.Damage, sc.damage...)
	free, err := pf.freelist()
	if err != nil {
		r.Damage = append(r.Damage, damageOf(err, "", "(the freelist: the list of free pages; it holds no records, and salvage rebuilds it) "))
	}
	if len(r.Damage) == 0 {
		r.Damage = append(r.Damage, reachability(pf, free)...)
	}
	if len(r.Damage) == 0 && db != nil {
		// bbolt's check reads both meta pages: with one damaged it
		// would only say so again, so the pages walked above stand.
		r.Damage = append(r.Damage, checkDB(db, len(pf.badMeta) == 0)...)
	}
	if len(r.Damage) > maxDamage {
		r.Damage = r.Damage[:maxDamage]
	}
	return r, nil
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

// damageOf turns a walk's error into Damage; held, if not "", says what
// the page held: "(…) ".
func damageOf(err error, bucket, held string) Damage {
	var pe *pageError
	if errors.As(err, &pe) {
		return Damage{Page: pe.id, Bucket: bucket, What: held + pe.why}
	}
	return Damage{Bucket: bucket, What: held + err.Error()}
}

// reachability: every page below the high water mark is in a tree (or a
// meta or freelist page) or free, never both. Only for a file whose trees
// read whole: a damaged page's subtree is unreachable anyway.
func reachability(pf *pageFile, free []uint64) []Damage {
	var out []Damage
	if pf.meta.freelist == noFreelist {
		return nil
	}
	isFree := make([]uint64, len(pf.seen))
	for _, id := range free {
		if isFree[id/64]&(1<<(id%64)) != 0 {
			out = append(out, Damage{Page: id, What: "is listed twice in the freelist"})
		}
		isFree[id/64] |= 1 << (id % 64)
	}
	reached := func(id uint64) bool { return pf.seen[id/64]&(1<<(id%64)) != 0 }
	fl, _ := pf.page(pf.meta.freelist, pageFreelist)
	flEnd := pf.meta.freelist + uint64(ne.Uint32(fl[12:]))
	for id := uint64(2); id < pf.meta.pgid && len(out) < maxDamage; id++ {
		inUse := reached(id) || (id >= pf.meta.freelist && id <= flEnd)
		free := isFree[id/64]&(1<<(id%64)) != 0
		switch {
		case inUse && free:
			out = append(out, Damage{Page: id, What: "is both in use and free"})
		case !inUse && !free:
			out = append(out, Damage{Page: id, What: "is neither reachable nor free"})
		}
	}
	return out
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
				if len(out) < maxDamage {
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
type PageInfo struct {
	ID       uint64
	Overflow uint32 // pages after it that belong to it
	Leaf     bool   // a leaf page, else a branch page
	// Bucket is the top-level bucket whose tree holds it; "" for the
	// list of buckets. SubBucket is the key of the bucket under it whose
	// tree holds it (a device's mailbox or prekeys), if any.
	Bucket, SubBucket string
	// Records is how many records the page and its subtree hold,
	// sub-buckets' included: what damage to it loses.
	Records int
}

// Pages lists the pages of every bucket's tree, with the file's meta
// pages' ids (0 and 1) and its freelist page (0 if none) apart: what
// tests damage, and what an operator may look at.
func Pages(path string) (pages []PageInfo, freelist uint64, err error) {
	pf, err := openPages(path)
	if err != nil {
		return nil, 0, err
	}
	defer pf.Close()
	sc := &scanner{pf: pf, records: map[string]int{}, pages: func(p PageInfo) { pages = append(pages, p) }}
	if err := sc.run(); err != nil {
		return nil, 0, err
	}
	if len(sc.damage) > 0 {
		return nil, 0, fmt.Errorf("page %d: %s", sc.damage[0].Page, sc.damage[0].What)
	}
	if pf.meta.freelist != noFreelist {
		freelist = pf.meta.freelist
	}
	return pages, freelist, nil
}

// scanner walks every bucket of a file: the root bucket's tree, whose
// leaves are the top-level buckets, and each bucket's tree, sub-buckets
// included, noting damage and skipping what it cannot read.
type scanner struct {
	pf      *pageFile
	records map[string]int // per top-level bucket
	damage  []Damage
	// record, if set, is told of each record with its bucket path (the
	// top-level bucket first); bucket of each bucket met, before its
	// records.
	record func(path [][]byte, k, v []byte) error
	bucket func(path [][]byte) error
	// pages, if set, is told of each page read.
	pages    func(PageInfo)
	progress func(done, total uint64)
	done     uint64 // pages read
	next     uint64 // progress is told when done reaches it
}

// progressEvery is how many pages a check reads between progress calls.
const progressEvery = 4096

func (sc *scanner) run() error {
	_, err := sc.pf.walk(sc.pf.meta.root, nil, sc.visitor(nil))
	if sc.progress != nil {
		sc.progress(sc.pf.meta.pgid, sc.pf.meta.pgid)
	}
	return err
}

func (sc *scanner) visitor(path [][]byte) *treeVisitor {
	top, sub := "", ""
	if len(path) > 0 {
		top = string(path[0])
	}
	if len(path) > 1 {
		sub = string(path[1])
	}
	return &treeVisitor{
		leaf: func(k, v []byte, bucket bool) (int, error) {
			if !bucket {
				if len(path) == 0 {
					sc.damage = append(sc.damage, Damage{What: fmt.Sprintf("the list of buckets holds a value under %q", k)})
					return 0, nil
				}
				if sc.record != nil {
					if err := sc.record(path, k, v); err != nil {
						return 0, err
					}
				}
				return 1, nil
			}
			sub := append(path[:len(path):len(path)], k)
			name := top
			if name == "" {
				name = string(k)
			}
			root, inline, ok := subBucket(v)
			if !ok {
				sc.damage = append(sc.damage, Damage{Bucket: name, What: fmt.Sprintf("the header of bucket %q is malformed", k)})
				return 0, nil
			}
			if sc.bucket != nil {
				if err := sc.bucket(sub); err != nil {
					return 0, err
				}
			}
			n, err := sc.pf.walk(root, inline, sc.visitor(sub))
			if len(path) == 0 {
				sc.records[name] += n
			}
			return n, err
		},
		page: func(id uint64, overflow uint32, leaf bool, records int) {
			if sc.pages != nil {
				sc.pages(PageInfo{ID: id, Overflow: overflow, Leaf: leaf, Bucket: top, SubBucket: sub, Records: records})
			}
			sc.done += 1 + uint64(overflow)
			if sc.progress != nil && sc.done >= sc.next {
				sc.next = sc.done + progressEvery
				sc.progress(sc.done, sc.pf.meta.pgid)
			}
		},
		damaged: func(id uint64, err error) {
			held := ""
			if top == "" {
				held = "(the list of buckets: the buckets under it cannot be found) "
			}
			if len(sc.damage) < maxDamage {
				sc.damage = append(sc.damage, damageOf(err, top, held))
			}
		},
	}
}
