// Package boltfile reads a bbolt file page by page, without bbolt
// (docs/design.md §4.2): the server's store check and salvage
// (appliance/store/boltstore) and the client home's (client/home) must read
// a damaged file that bbolt would panic on, and name each damaged page with
// the bucket that holds it. It imports nothing but the standard library,
// bbolt included; its tests are theirs, on files bbolt wrote
// (boltstore's and home's damage tests).
package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The layout is bbolt's (go.etcd.io/bbolt/internal/common): every page
// starts with a 16-byte header (id u64, flags u16, count u16,
// overflow u32) in the machine's byte order; pages 0 and 1 are the meta
// pages; a branch page holds count elements (pos u32, ksize u32, pgid
// u64), a leaf page count elements (flags u32, pos u32, ksize u32, vsize
// u32), pos counting from the element itself; a bucket's value is its
// root page id and sequence (u64 each), followed, for an inline bucket
// (root 0), by the bucket's one leaf page.

const (
	pageHeaderSize = 16
	elementSize    = 16
	metaSize       = 64

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageMeta     = 0x04
	pageFreelist = 0x10

	leafBucketFlag = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	// maxTreeDepth bounds the walk: a B+tree bbolt could write is far
	// shallower; a deeper one is a loop.
	maxTreeDepth = 64
)

var ne = binary.NativeEndian

// fileMeta is one meta page.
type fileMeta struct {
	page     uint64 // 0 or 1
	pageSize int
	root     uint64 // the root bucket's page
	freelist uint64
	pgid     uint64 // the high water mark: pages 0 … pgid-1 are in use or free
	txid     uint64
}

// parseMeta reads the meta page whose bytes start at b.
func parseMeta(page uint64, b []byte) (fileMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return fileMeta{}, errors.New("the file is too short")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	h := fnv.New64a()
	h.Write(m[:56])
	switch {
	case ne.Uint32(m[0:]) != boltMagic:
		return fileMeta{}, errors.New("its magic number is wrong")
	case ne.Uint32(m[4:]) != boltVersion:
		return fileMeta{}, fmt.Errorf("its version is %d, not %d", ne.Uint32(m[4:]), boltVersion)
	case h.Sum64() != ne.Uint64(m[56:]):
		return fileMeta{}, errors.New("its checksum does not match")
	}
	fm := fileMeta{page: page, pageSize: int(ne.Uint32(m[8:])), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}
	if fm.pageSize < 512 || fm.pageSize > 1<<20 || fm.pageSize&(fm.pageSize-1) != 0 {
		return fileMeta{}, fmt.Errorf("its page size %d is impossible", fm.pageSize)
	}
	return fm, nil
}

// File is a bbolt file opened for reading page by page.
type File struct {
	f    *os.File
	size int64
	meta fileMeta // the meta page in use: the valid one with the higher txid
	// badMeta says why a meta page did not verify, by page; the file is
	// readable if the other did.
	badMeta map[uint64]string
	seen    []uint64 // a bit per page read by a walk: a page met twice is a loop
}

// Open opens path and picks its meta page as bbolt does. Both meta
// pages damaged is an error: nothing says where the data is.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	pf := &File{f: f, size: fi.Size(), badMeta: map[uint64]string{}}
	buf := make([]byte, pageHeaderSize+metaSize)
	var metas []fileMeta
	m0, err0 := pf.metaAt(0, 0, buf)
	if err0 == nil {
		metas = append(metas, m0)
	} else {
		pf.badMeta[0] = err0.Error()
	}
	// Page 1 is one page in: the page size meta 0 gives, or, if it is
	// damaged, the first size at which a valid meta page is found.
	sizes := []int{4096, 8192, 16384, 32768, 65536, 1024, 2048}
	if err0 == nil {
		sizes = []int{m0.pageSize}
	} else if ps := os.Getpagesize(); ps != 4096 {
		sizes = append([]int{ps}, sizes...)
	}
	var err1 error // what the first place tried gave: the likeliest
	for i, ps := range sizes {
		m1, err := pf.metaAt(1, int64(ps), buf)
		if err == nil && m1.pageSize == ps {
			metas, err1 = append(metas, m1), nil
			break
		} else if err == nil {
			err = fmt.Errorf("its page size %d is not where it lies", m1.pageSize)
		}
		if i == 0 {
			err1 = err
		}
	}
	if err1 != nil {
		pf.badMeta[1] = err1.Error()
	}
	switch {
	case len(metas) == 0:
		f.Close()
		return nil, fmt.Errorf("both meta pages are damaged (page 0: %s; page 1: %s)", pf.badMeta[0], pf.badMeta[1])
	case len(metas) == 2 && metas[1].txid > metas[0].txid:
		pf.meta = metas[1]
	default:
		pf.meta = metas[0]
	}
	pf.seen = make([]uint64, pf.meta.pgid/64+1)
	return pf, nil
}

func (pf *File) metaAt(page uint64, off int64, buf []byte) (fileMeta, error) {
	if _, err := pf.f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fileMeta{}, errors.New("the file ends before it")
		}
		return fileMeta{}, err
	}
	m, err := parseMeta(page, buf)
	if err == nil && m.pgid > uint64(pf.size)/uint64(m.pageSize) {
		// bbolt grows the file before it writes a page: a file shorter
		// than its pages was cut, and reading it could allocate for pages
		// that are not there.
		return fileMeta{}, fmt.Errorf("it counts %d pages, the file holds %d: the file was cut short", m.pgid, pf.size/int64(m.pageSize))
	}
	return m, err
}

func (pf *File) Close() error { return pf.f.Close() }

// PageError is a page that cannot be used: why, and the page.
type PageError struct {
	ID  uint64
	Why string // "identifies itself as page 7", …
}

func (e *PageError) Error() string { return fmt.Sprintf("page %d %s", e.ID, e.Why) }

// page reads page id with its overflow pages, checking its header: the id
// it names itself by, a type of want (a mask of page flags) and a count
// of elements that fits.
func (pf *File) page(id uint64, want uint16) ([]byte, error) {
	ps := pf.meta.pageSize
	if id < 2 || id >= pf.meta.pgid {
		return nil, &PageError{id, fmt.Sprintf("is outside the file's pages (2 to %d)", pf.meta.pgid-1)}
	}
	off := int64(id) * int64(ps)
	if off+int64(ps) > pf.size {
		return nil, &PageError{id, "lies past the end of the file"}
	}
	buf := make([]byte, ps)
	if _, err := pf.f.ReadAt(buf, off); err != nil {
		return nil, &PageError{id, "cannot be read: " + err.Error()}
	}
	self, flags, overflow := ne.Uint64(buf), ne.Uint16(buf[8:]), ne.Uint32(buf[12:])
	if self != id {
		return nil, &PageError{id, fmt.Sprintf("identifies itself as page %d", self)}
	}
	if flags&want == 0 || flags&^(pageBranch|pageLeaf|pageMeta|pageFreelist) != 0 || flags&(flags-1) != 0 {
		return nil, &PageError{id, fmt.Sprintf("has type %#x, not %s", flags, pageKind(want))}
	}
	if overflow > 0 {
		if uint64(overflow) >= pf.meta.pgid-id || off+int64(overflow+1)*int64(ps) > pf.size {
			return nil, &PageError{id, fmt.Sprintf("runs on for %d pages past the file's end", overflow)}
		}
		buf = append(buf, make([]byte, int(overflow)*ps)...)
		if _, err := pf.f.ReadAt(buf[ps:], off+int64(ps)); err != nil {
			return nil, &PageError{id, "cannot be read: " + err.Error()}
		}
	}
	return buf, nil
}

func pageKind(flags uint16) string {
	switch flags {
	case pageBranch:
		return "branch"
	case pageLeaf:
		return "leaf"
	case pageBranch | pageLeaf:
		return "branch or leaf"
	case pageMeta:
		return "meta"
	case pageFreelist:
		return "freelist"
	}
	return fmt.Sprintf("%#x", flags)
}

// Freelist reads the free page ids; nil, nil if the file keeps none.
func (pf *File) Freelist() ([]uint64, error) {
	id := pf.meta.freelist
	if id == noFreelist {
		return nil, nil
	}
	buf, err := pf.page(id, pageFreelist)
	if err != nil {
		return nil, err
	}
	n, at := uint64(ne.Uint16(buf[10:])), pageHeaderSize
	if n == 0xFFFF {
		n, at = ne.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(buf)-at)/8 {
		return nil, &PageError{id, fmt.Sprintf("lists %d free pages, more than it can hold", n)}
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = ne.Uint64(buf[at+8*i:])
		if ids[i] < 2 || ids[i] >= pf.meta.pgid {
			return nil, &PageError{id, fmt.Sprintf("lists page %d, outside the file's pages", ids[i])}
		}
	}
	return ids, nil
}

// treeVisitor is told of a B+tree's walk: each leaf element, each page
// read (after its subtree, with the records under it) and each page that
// could not be read.
type treeVisitor struct {
	// leaf is told of each leaf element and returns how many records it
	// stands for: 1 for a record, a sub-bucket's records for a bucket
	// (whose value is its header, and inline page, as stored).
	leaf func(k, v []byte, bucket bool) (int, error)
	// page, if set, is told of each page of the tree (id, its overflow
	// pages, whether a leaf) with the records under it.
	page func(id uint64, overflow uint32, leaf bool, records int)
	// damaged is told of a page that could not be read, or whose elements
	// do not fit it; its subtree is skipped.
	damaged func(id uint64, err error)
}

// walk visits the tree rooted at page root (an inline bucket's page when
// inline is set) in key order and returns the records read.
func (pf *File) walk(root uint64, inline []byte, v *treeVisitor) (int, error) {
	if inline != nil {
		return pf.walkPage(0, inline, 0, v)
	}
	return pf.walkID(root, 0, v)
}

func (pf *File) walkID(id uint64, depth int, v *treeVisitor) (int, error) {
	if depth > maxTreeDepth {
		v.damaged(id, &PageError{id, "is deeper than any tree of the store: a loop"})
		return 0, nil
	}
	buf, err := pf.page(id, pageBranch|pageLeaf)
	if err != nil {
		v.damaged(id, err)
		return 0, nil
	}
	for p := id; p <= id+uint64(ne.Uint32(buf[12:])); p++ {
		if pf.seen[p/64]&(1<<(p%64)) != 0 {
			v.damaged(id, &PageError{id, fmt.Sprintf("is reached twice (page %d): a loop or a stray reference", p)})
			return 0, nil
		}
	}
	for p := id; p <= id+uint64(ne.Uint32(buf[12:])); p++ {
		pf.seen[p/64] |= 1 << (p % 64)
	}
	return pf.walkPage(id, buf, depth, v)
}

// walkPage visits one page's elements; id 0 is an inline bucket's page.
func (pf *File) walkPage(id uint64, buf []byte, depth int, v *treeVisitor) (int, error) {
	if len(buf) < pageHeaderSize {
		v.damaged(id, &PageError{id, "is shorter than a page header"})
		return 0, nil
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if id == 0 && flags != pageLeaf {
		v.damaged(id, &PageError{id, fmt.Sprintf("(inline) has type %#x, not leaf", flags)})
		return 0, nil
	}
	if pageHeaderSize+count*elementSize > len(buf) {
		v.damaged(id, &PageError{id, fmt.Sprintf("holds %d elements, more than fit", count)})
		return 0, nil
	}
	// Check every element before visiting any, so that a damaged page
	// is skipped whole.
	for i := range count {
		e := buf[pageHeaderSize+i*elementSize:]
		at := pageHeaderSize + i*elementSize
		var end uint64
		if flags == pageBranch {
			end = uint64(at) + uint64(ne.Uint32(e)) + uint64(ne.Uint32(e[4:]))
		} else {
			end = uint64(at) + uint64(ne.Uint32(e[4:])) + uint64(ne.Uint32(e[8:])) + uint64(ne.Uint32(e[12:]))
		}
		if end > uint64(len(buf)) {
			v.damaged(id, &PageError{id, fmt.Sprintf("element %d lies past the page's end", i)})
			return 0, nil
		}
	}
	records := 0
	for i := range count {
		e := buf[pageHeaderSize+i*elementSize:]
		var n int
		var err error
		if flags == pageBranch {
			n, err = pf.walkID(ne.Uint64(e[8:]), depth+1, v)
		} else {
			pos, ks, vs := ne.Uint32(e[4:]), ne.Uint32(e[8:]), ne.Uint32(e[12:])
			n, err = v.leaf(e[pos:pos+ks], e[pos+ks:pos+ks+vs], ne.Uint32(e)&leafBucketFlag != 0)
		}
		if err != nil {
			return records, err
		}
		records += n
	}
	if v.page != nil && id != 0 {
		v.page(id, ne.Uint32(buf[12:]), flags == pageLeaf, records)
	}
	return records, nil
}

// subBucket reads a bucket value: its root page, or its inline page.
func subBucket(v []byte) (root uint64, inline []byte, ok bool) {
	if len(v) < 16 {
		return 0, nil, false
	}
	root = ne.Uint64(v)
	if root == 0 {
		if len(v) < 16+pageHeaderSize {
			return 0, nil, false
		}
		return 0, v[16:], true
	}
	return root, nil, true
}

// Size, Pages and TxID describe the file: its bytes, its pages in use or
// free (the high water mark), and the commit its meta page is at.
func (pf *File) Size() int64   { return pf.size }
func (pf *File) Pages() uint64 { return pf.meta.pgid }
func (pf *File) TxID() uint64  { return pf.meta.txid }

// BadMeta says, per meta page (0, 1), why it did not verify; the file is
// read through the other.
func (pf *File) BadMeta() map[uint64]string { return pf.badMeta }

// FreelistPage is the freelist's page, 0 if the file keeps none.
func (pf *File) FreelistPage() uint64 {
	if pf.meta.freelist == noFreelist {
		return 0
	}
	return pf.meta.freelist
}

// MaxDamage bounds the damage one scan lists.
const MaxDamage = 100

// Damage is one damaged part of a file.
type Damage struct {
	// Page is the damaged page; 0 for damage that is not one page (a
	// malformed bucket header, or an inline bucket inside its parent's
	// page).
	Page uint64
	// Bucket is the top-level bucket whose tree holds it; "" for the
	// file's own pages.
	Bucket string
	// What is wrong, after what the part held if the caller said: "(the
	// freelist: …) identifies itself as page 7".
	What string
}

// DamageOf turns a walk's error into Damage; held, if not "", says what
// the page held: "(…) ".
func DamageOf(err error, bucket, held string) Damage {
	var pe *PageError
	if errors.As(err, &pe) {
		return Damage{Page: pe.ID, Bucket: bucket, What: held + pe.Why}
	}
	return Damage{Bucket: bucket, What: held + err.Error()}
}

// Reachability checks, after a Scan that found no damage, that every page
// below the high water mark is in a tree (or is a meta or the freelist
// page) or free, never both; free is what Freelist read. A file that keeps
// no freelist has nothing to check.
func (pf *File) Reachability(free []uint64) []Damage {
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
	for id := uint64(2); id < pf.meta.pgid && len(out) < MaxDamage; id++ {
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

// PageInfo is one page of a file's trees, as a Scan reads it.
type PageInfo struct {
	ID       uint64
	Overflow uint32 // pages after it that belong to it
	Leaf     bool   // a leaf page, else a branch page
	// Bucket is the top-level bucket whose tree holds it; "" for the
	// list of buckets. SubBucket is the key of the bucket under it whose
	// tree holds it, if any.
	Bucket, SubBucket string
	// Records is how many records the page and its subtree hold,
	// sub-buckets' included: what damage to it loses.
	Records int
}

// Scanner walks every bucket of a file: the root bucket's tree, whose
// leaves are the top-level buckets, and each bucket's tree, sub-buckets
// included, noting damage and skipping what it cannot read. Set what it
// should tell, then call File.Scan; Records and Damage hold the results.
type Scanner struct {
	// Record, if set, is told of each record with its bucket path (the
	// top-level bucket first); Bucket of each bucket met, before its
	// records. The slices stay valid after the call: each page is read
	// into a buffer of its own.
	Record func(path [][]byte, k, v []byte) error
	Bucket func(path [][]byte) error
	// Page, if set, is told of each page read, after its subtree.
	Page func(PageInfo)
	// Progress, if set, is told of the pages read and the file's pages
	// every few thousand pages, and at the end.
	Progress func(done, total uint64)

	Records map[string]int // records read per top-level bucket
	Damage  []Damage       // at most MaxDamage

	pf   *File
	done uint64 // pages read
	next uint64 // Progress is told when done reaches it
}

// progressEvery is how many pages a scan reads between progress calls.
const progressEvery = 4096

// Scan walks the file with sc.
func (pf *File) Scan(sc *Scanner) error {
	sc.pf, sc.Records = pf, map[string]int{}
	_, err := pf.walk(pf.meta.root, nil, sc.visitor(nil))
	if sc.Progress != nil {
		sc.Progress(pf.meta.pgid, pf.meta.pgid)
	}
	return err
}

func (sc *Scanner) damaged(d Damage) {
	if len(sc.Damage) < MaxDamage {
		sc.Damage = append(sc.Damage, d)
	}
}

func (sc *Scanner) visitor(path [][]byte) *treeVisitor {
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
					sc.damaged(Damage{What: fmt.Sprintf("the list of buckets holds a value under %q", k)})
					return 0, nil
				}
				if sc.Record != nil {
					if err := sc.Record(path, k, v); err != nil {
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
				sc.damaged(Damage{Bucket: name, What: fmt.Sprintf("the header of bucket %q is malformed", k)})
				return 0, nil
			}
			if sc.Bucket != nil {
				if err := sc.Bucket(sub); err != nil {
					return 0, err
				}
			}
			n, err := sc.pf.walk(root, inline, sc.visitor(sub))
			if len(path) == 0 {
				sc.Records[name] += n
			}
			return n, err
		},
		page: func(id uint64, overflow uint32, leaf bool, records int) {
			if sc.Page != nil {
				sc.Page(PageInfo{ID: id, Overflow: overflow, Leaf: leaf, Bucket: top, SubBucket: sub, Records: records})
			}
			sc.done += 1 + uint64(overflow)
			if sc.Progress != nil && sc.done >= sc.next {
				sc.next = sc.done + progressEvery
				sc.Progress(sc.done, sc.pf.meta.pgid)
			}
		},
		damaged: func(id uint64, err error) {
			held := ""
			if top == "" {
				held = "(the list of buckets: the buckets under it cannot be found) "
			}
			sc.damaged(DamageOf(err, top, held))
		},
	}
}
