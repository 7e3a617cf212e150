package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The file read page by page, without bbolt (docs/design.md §4.2,
// protocol.md §7): Check and Salvage must read a damaged file that bbolt
// would panic on, and name each damaged page with the bucket that holds
// it. The layout is bbolt's (go.etcd.io/bbolt/internal/common): every
// page starts with a 16-byte header (id u64, flags u16, count u16,
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

	// maxTreeDepth bounds the walk: a B+tree of a file this program
	// could write is far shallower; a deeper one is a loop.
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

// pageFile is a store file opened for reading pages.
type pageFile struct {
	f    *os.File
	size int64
	meta fileMeta // the meta page in use: the valid one with the higher txid
	// badMeta says why a meta page did not verify, by page; the file is
	// readable if the other did.
	badMeta map[uint64]string
	seen    []uint64 // a bit per page read by a walk: a page met twice is a loop
}

// openPages opens path and picks its meta page as bbolt does. Both meta
// pages damaged is an error: nothing says where the data is.
func openPages(path string) (*pageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	pf := &pageFile{f: f, size: fi.Size(), badMeta: map[uint64]string{}}
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
	var err1 error
	for _, ps := range sizes {
		var m1 fileMeta
		if m1, err1 = pf.metaAt(1, int64(ps), buf); err1 == nil && m1.pageSize == ps {
			metas = append(metas, m1)
			break
		} else if err1 == nil {
			err1 = fmt.Errorf("its page size %d is not where it lies", m1.pageSize)
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

func (pf *pageFile) metaAt(page uint64, off int64, buf []byte) (fileMeta, error) {
	if _, err := pf.f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fileMeta{}, errors.New("the file ends before it")
		}
		return fileMeta{}, err
	}
	return parseMeta(page, buf)
}

func (pf *pageFile) Close() error { return pf.f.Close() }

// pageError is a page that cannot be used: why, and the page.
type pageError struct {
	id  uint64
	why string
}

func (e *pageError) Error() string { return fmt.Sprintf("page %d %s", e.id, e.why) }

// page reads page id with its overflow pages, checking its header: the id
// it names itself by, a type of want (a mask of page flags) and a count
// of elements that fits.
func (pf *pageFile) page(id uint64, want uint16) ([]byte, error) {
	ps := pf.meta.pageSize
	if id < 2 || id >= pf.meta.pgid {
		return nil, &pageError{id, fmt.Sprintf("is outside the file's pages (2 to %d)", pf.meta.pgid-1)}
	}
	off := int64(id) * int64(ps)
	if off+int64(ps) > pf.size {
		return nil, &pageError{id, "lies past the end of the file"}
	}
	buf := make([]byte, ps)
	if _, err := pf.f.ReadAt(buf, off); err != nil {
		return nil, &pageError{id, "cannot be read: " + err.Error()}
	}
	self, flags, overflow := ne.Uint64(buf), ne.Uint16(buf[8:]), ne.Uint32(buf[12:])
	if self != id {
		return nil, &pageError{id, fmt.Sprintf("identifies itself as page %d", self)}
	}
	if flags&want == 0 || flags&^(pageBranch|pageLeaf|pageMeta|pageFreelist) != 0 || flags&(flags-1) != 0 {
		return nil, &pageError{id, fmt.Sprintf("has type %#x, not %s", flags, pageKind(want))}
	}
	if overflow > 0 {
		if uint64(overflow) >= pf.meta.pgid-id || off+int64(overflow+1)*int64(ps) > pf.size {
			return nil, &pageError{id, fmt.Sprintf("runs on for %d pages past the file's end", overflow)}
		}
		buf = append(buf, make([]byte, int(overflow)*ps)...)
		if _, err := pf.f.ReadAt(buf[ps:], off+int64(ps)); err != nil {
			return nil, &pageError{id, "cannot be read: " + err.Error()}
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

// freelist reads the free page ids; nil, nil if the file keeps none.
func (pf *pageFile) freelist() ([]uint64, error) {
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
		return nil, &pageError{id, fmt.Sprintf("lists %d free pages, more than it can hold", n)}
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = ne.Uint64(buf[at+8*i:])
		if ids[i] < 2 || ids[i] >= pf.meta.pgid {
			return nil, &pageError{id, fmt.Sprintf("lists page %d, outside the file's pages", ids[i])}
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
func (pf *pageFile) walk(root uint64, inline []byte, v *treeVisitor) (int, error) {
	if inline != nil {
		return pf.walkPage(0, inline, 0, v)
	}
	return pf.walkID(root, 0, v)
}

func (pf *pageFile) walkID(id uint64, depth int, v *treeVisitor) (int, error) {
	if depth > maxTreeDepth {
		v.damaged(id, &pageError{id, "is deeper than any tree of the store: a loop"})
		return 0, nil
	}
	buf, err := pf.page(id, pageBranch|pageLeaf)
	if err != nil {
		v.damaged(id, err)
		return 0, nil
	}
	for p := id; p <= id+uint64(ne.Uint32(buf[12:])); p++ {
		if pf.seen[p/64]&(1<<(p%64)) != 0 {
			v.damaged(id, &pageError{id, fmt.Sprintf("is reached twice (page %d): a loop or a stray reference", p)})
			return 0, nil
		}
	}
	for p := id; p <= id+uint64(ne.Uint32(buf[12:])); p++ {
		pf.seen[p/64] |= 1 << (p % 64)
	}
	return pf.walkPage(id, buf, depth, v)
}

// walkPage visits one page's elements; id 0 is an inline bucket's page.
func (pf *pageFile) walkPage(id uint64, buf []byte, depth int, v *treeVisitor) (int, error) {
	if len(buf) < pageHeaderSize {
		v.damaged(id, &pageError{id, "is shorter than a page header"})
		return 0, nil
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if id == 0 && flags != pageLeaf {
		v.damaged(id, &pageError{id, fmt.Sprintf("(inline) has type %#x, not leaf", flags)})
		return 0, nil
	}
	if pageHeaderSize+count*elementSize > len(buf) {
		v.damaged(id, &pageError{id, fmt.Sprintf("holds %d elements, more than fit", count)})
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
			v.damaged(id, &pageError{id, fmt.Sprintf("element %d lies past the page's end", i)})
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
