package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/internal/boltfile"
	"github.com/securechat/securechat/transport"
)

// Salvage (docs/design.md §4.2, operations.md §7) copies every
// record it can read from a damaged store file into a new one, reading
// page by page as Check does (internal/boltfile): a damaged page loses the records
// of its subtree and nothing else. The counts the store keeps beside its
// records — mailbox usage, the total, shared payloads' reference counts,
// file quotas, the files' expiry index — are recomputed from what was
// kept; records that do not decode, and records that refer to one that
// was lost (a group entry whose shared payload is gone, a file missing a
// chunk it confirmed), are dropped. The result passes Verify.

// BucketSalvage is what Salvage did with one bucket.
type BucketSalvage struct {
	Bucket string
	// Kept is how many records the new store holds (recomputed ones
	// included); Read how many were read from the damaged one.
	Kept, Read int
	// LostPages is how many of its pages could not be read: their
	// records are lost, and so not counted anywhere.
	LostPages int
	// Dropped is how many records were read but not kept: they did not
	// decode, or referred to a record that was lost.
	Dropped int
	// Recomputed: the bucket holds counts made again from the records
	// (meta: its totals).
	Recomputed bool
}

// SalvageReport says, per bucket, what was kept and what was lost.
type SalvageReport struct {
	Buckets []BucketSalvage // in the order of protocol.md §7
	Damage  []Damage        // the parts that could not be read
	Notes   []string
}

// derived are the buckets and meta keys salvage recomputes, never copies.
var derived = map[string]bool{"usage": true, "refs": true, "blobusage": true, "blobexpiry": true}
var derivedMeta = map[string]bool{"schema": true, "mailbox_bytes": true, "shared_bytes": true, "blob_bytes": true}

// salvageBatch and salvageBatchBytes bound the records one commit of the
// copy holds, and their bytes.
const (
	salvageBatch      = 4096
	salvageBatchBytes = 64 << 20
)

// Salvage copies what it can read of the store file src into a new store
// file out, which must not exist. src must not be held by a server
// (store.ErrDataInUse).
func Salvage(src, out string) (*SalvageReport, error) {
	if _, err := os.Stat(src); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("%s already exists: salvage writes a new file and never replaces one", out)
	}
	db, err := openReadOnly(src) // for its lock
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	pf, err := boltfile.Open(src)
	if err != nil {
		return nil, fmt.Errorf("nothing can be salvaged from %s: %v", src, err)
	}
	defer pf.Close()
	rep := &SalvageReport{}
	for page, why := range pf.BadMeta() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("meta page %d does not verify (%s): salvaged from transaction %d, the other meta page's", page, why, pf.TxID()))
	}
	dst, err := Open(out, Options{})
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
	c := &copier{db: dst.db, read: map[string]int{}}
	schema := uint64(0)
	serverKey := false
	sc := &boltfile.Scanner{}
	sc.Bucket = func(path [][]byte) error {
		if len(path) == 1 {
			return nil // Open made every bucket this version knows
		}
		if _, known := holds[string(path[0])]; !known || derived[string(path[0])] {
			return nil
		}
		return c.add(path, nil, nil)
	}
	sc.Record = func(path [][]byte, k, v []byte) error {
		top := string(path[0])
		if _, known := holds[top]; !known {
			return nil
		}
		c.read[top]++
		if derived[top] {
			return nil
		}
		if top == "meta" && len(path) == 1 {
			serverKey = serverKey || string(k) == string(keyServerKey)
			if string(k) == string(keySchema) && len(v) == 8 {
				schema = binary.BigEndian.Uint64(v)
			}
			if derivedMeta[string(k)] {
				return nil
			}
		}
		return c.add(path, k, v)
	}
	if err := pf.Scan(sc); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	if schema != 0 && schema != schemaVersion {
		return nil, fmt.Errorf("%s is a store of schema %d; salvage reads schema %d (start it once with the securechat version that wrote it, or salvage with that version)", src, schema, schemaVersion)
	}
	rep.Damage = damages(sc.Damage)
	if free, err := pf.Freelist(); err != nil {
		rep.Damage = append(rep.Damage, damages([]boltfile.Damage{boltfile.DamageOf(err, "", "(the freelist: it held no records) ")})...)
	} else if len(sc.Damage) == 0 {
		rep.Damage = append(rep.Damage, damages(pf.Reachability(free))...)
	}
	dropped := map[string]int{}
	err = dst.db.Update(func(tx *bolt.Tx) error { return repair(tx, dropped) })
	if err != nil {
		return nil, fmt.Errorf("salvage: recomputing the counts: %w", err)
	}
	if err := dst.Verify(); err != nil {
		return nil, fmt.Errorf("salvage: the new store does not verify: %w", err)
	}
	// Pages lost per bucket, "" for the list of buckets: the trees'
	// damage, not the freelist's or pages neither reachable nor free,
	// which hold no records.
	lost := map[string]int{}
	for _, d := range damages(sc.Damage) {
		if d.Page != 0 || d.Bucket != "" {
			lost[d.Bucket]++
		}
	}
	err = dst.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			name := string(b)
			bs := BucketSalvage{Bucket: name, Read: c.read[name], LostPages: lost[name], Dropped: dropped[name], Recomputed: derived[name] || name == "meta"}
			bs.Kept = countRecords(tx.Bucket(b))
			rep.Buckets = append(rep.Buckets, bs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !serverKey {
		rep.Notes = append(rep.Notes, "the server key was lost: a server on the new store makes a new one, and every client must then be told to accept it (its fingerprint changes)")
	}
	if lost[""] > 0 {
		rep.Notes = append(rep.Notes, "pages of the list of buckets were lost: the buckets under them are empty in the new store")
	}
	if err := dst.Close(); err != nil {
		return nil, err
	}
	ok = true
	return rep, nil
}

// countRecords counts a bucket's records, its sub-buckets' included.
func countRecords(b *bolt.Bucket) int {
	n := 0
	b.ForEach(func(k, v []byte) error {
		if v == nil {
			n += countRecords(b.Bucket(k))
		} else {
			n++
		}
		return nil
	})
	return n
}

// copier writes records into the new store, salvageBatch to a commit.
type copier struct {
	db      *bolt.DB
	pending []copyOp
	bytes   int // of the pending records
	read    map[string]int
}

type copyOp struct {
	path [][]byte
	k, v []byte // nil k: create the bucket path
}

func (c *copier) add(path [][]byte, k, v []byte) error {
	c.pending = append(c.pending, copyOp{path, k, v})
	c.bytes += len(k) + len(v)
	if len(c.pending) >= salvageBatch || c.bytes >= salvageBatchBytes {
		return c.flush()
	}
	return nil
}

func (c *copier) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, op := range c.pending {
			b := tx.Bucket(op.path[0])
			for _, name := range op.path[1:] {
				var err error
				if b, err = b.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			if op.k == nil {
				continue
			}
			if err := b.Put(op.k, op.v); err != nil {
				return err
			}
		}
		return nil
	})
	c.pending, c.bytes = c.pending[:0], 0
	return err
}

// repair drops what does not decode or refers to what was lost, and
// recomputes the counts Verify checks, counting drops per bucket.
func repair(tx *bolt.Tx, dropped map[string]int) error {
	del := func(b *bolt.Bucket, name string, keys [][]byte) error {
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
			dropped[name]++
		}
		return nil
	}
	decoders := map[string]func(v []byte) error{
		"users":   func(v []byte) error { return transport.Unmarshal(v, &userRecord{}) },
		"devices": func(v []byte) error { return transport.Unmarshal(v, &deviceRecord{}) },
		"bans":    func(v []byte) error { return transport.Unmarshal(v, &banRecord{}) },
		"invites": func(v []byte) error { return transport.Unmarshal(v, &inviteRecord{}) },
		"groups":  func(v []byte) error { return transport.Unmarshal(v, &groupRecord{}) },
		"revoked": func(v []byte) error { return transport.Unmarshal(v, &revokedRecord{}) },
		"blobs": func(v []byte) error {
			var r blobRecord
			if err := transport.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.ChunkSize == 0 {
				return errors.New("no chunk size")
			}
			return nil
		},
	}
	for name, decode := range decoders {
		b := tx.Bucket([]byte(name))
		var bad [][]byte
		b.ForEach(func(k, v []byte) error {
			if v == nil || decode(v) != nil {
				bad = append(bad, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range bad { // a stray sub-bucket, or a record
			if b.Bucket(k) != nil {
				if err := b.DeleteBucket(k); err != nil {
					return err
				}
				dropped[name]++
			} else if err := del(b, name, [][]byte{k}); err != nil {
				return err
			}
		}
	}
	// Mailboxes: entries that decode and whose shared payload survived.
	shared := tx.Bucket(bucketShared)
	refs := map[string]uint64{}
	boxes := tx.Bucket(bucketMailboxes)
	var names [][]byte
	boxes.ForEach(func(k, v []byte) error {
		names = append(names, bytes.Clone(k))
		return nil
	})
	for _, name := range names {
		box := boxes.Bucket(name)
		if box == nil {
			if err := del(boxes, "mailboxes", [][]byte{name}); err != nil {
				return err
			}
			continue
		}
		var bad [][]byte
		box.ForEach(func(k, v []byte) error {
			e, ok := decodeEntry(k, v)
			switch {
			case !ok:
				bad = append(bad, bytes.Clone(k))
			case e.Group != nil && shared.Get(sharedKey(e.From, e.MessageID)) == nil:
				bad = append(bad, bytes.Clone(k))
			case e.Group != nil:
				refs[string(sharedKey(e.From, e.MessageID))]++
			}
			return nil
		})
		if err := del(box, "mailboxes", bad); err != nil {
			return err
		}
	}
	// Shared payloads: those some entry refers to, counted again.
	var orphans [][]byte
	var sharedBytes uint64
	shared.ForEach(func(k, v []byte) error {
		if refs[string(k)] == 0 {
			orphans = append(orphans, bytes.Clone(k))
		} else {
			sharedBytes += uint64(len(v))
		}
		return nil
	})
	if err := del(shared, "shared", orphans); err != nil {
		return err
	}
	rb := tx.Bucket(bucketRefs)
	for k, n := range refs {
		if err := rb.Put([]byte(k), u64(n)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketMeta).Put(keySharedBytes, u64(sharedBytes)); err != nil {
		return err
	}
	if err := recountUsage(tx); err != nil {
		return err
	}
	if err := addTotal(tx, int64(sharedBytes)); err != nil {
		return err
	}
	// Group starts that name a group that is gone.
	gs := tx.Bucket(bucketGroupStarts)
	var badStarts [][]byte
	gs.ForEach(func(k, _ []byte) error {
		if len(k) < transport.GroupIDLen+1 || k[len(k)-transport.GroupIDLen-1] != 0 || tx.Bucket(bucketGroups).Get(k[len(k)-transport.GroupIDLen:]) == nil {
			badStarts = append(badStarts, bytes.Clone(k))
		}
		return nil
	})
	if err := del(gs, "groupstarts", badStarts); err != nil {
		return err
	}
	return repairBlobs(tx, del)
}

// repairBlobs keeps the files whose confirmed chunks all survived, drops
// the chunks of no file, and recomputes the quotas and the total (each
// file's store.Charge) and the expiry index.
func repairBlobs(tx *bolt.Tx, del func(*bolt.Bucket, string, [][]byte) error) error {
	blobs, chunks := tx.Bucket(bucketBlobs), tx.Bucket(bucketBlobChunks)
	var gone [][]byte
	kept := map[string]bool{}
	usage := map[string]uint64{}
	var total uint64
	exp := tx.Bucket(bucketBlobExpiry)
	err := blobs.ForEach(func(k, v []byte) error {
		var r blobRecord
		if len(k) != len(store.BlobID{}) || transport.Unmarshal(v, &r) != nil {
			gone = append(gone, bytes.Clone(k))
			return nil
		}
		var id store.BlobID
		copy(id[:], k)
		for i := range int(r.Chunks) {
			if chunks.Get(chunkKey(id, i)) == nil {
				gone = append(gone, bytes.Clone(k))
				return nil
			}
		}
		kept[string(k)] = true
		charge := uint64(store.Charge(int64(r.Size), int(r.ChunkSize)))
		usage[r.Owner] += charge
		total += charge
		return exp.Put(expiryKey(r.Expires, id), nil)
	})
	if err != nil {
		return err
	}
	if err := del(blobs, "blobs", gone); err != nil {
		return err
	}
	var strays [][]byte
	chunks.ForEach(func(k, _ []byte) error {
		if len(k) != len(store.BlobID{})+4 || !kept[string(k[:len(k)-4])] {
			strays = append(strays, bytes.Clone(k))
		}
		return nil
	})
	if err := del(chunks, "blobchunks", strays); err != nil {
		return err
	}
	ub := tx.Bucket(bucketBlobUsage)
	for owner, n := range usage {
		if err := ub.Put([]byte(owner), u64(n)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyBlobBytes, u64(total))
}
