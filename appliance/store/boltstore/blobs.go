package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Blobs (protocol.md §6.8, §7): a record per blob in the blobs bucket, its
// chunks in blobchunks under id ‖ u32 BE index (one bbolt value each), the
// bytes each account's blobs reserve in blobusage, the expiry index in
// blobexpiry and the total in meta's blob_bytes, all written in the same
// commits, so the quotas hold across restarts without a scan. A blob's
// whole size (at least a chunk, store.Charge) is reserved when it is
// created: a quota or the total refuses it before any chunk is sent.

// blobRecord is a blobs bucket value.
type blobRecord struct {
	Owner      string
	OwnerDev   uint32
	Size       uint64
	ChunkSize  uint32
	Created    int64
	Expires    int64
	Chunks     uint32
	Recipients []blobRecipient
}

type blobRecipient struct {
	User    string
	Device  uint32
	Fetched bool
}

func (r *blobRecipient) MarshalFields(e *transport.Encoder) {
	e.String(1, r.User)
	e.Uint(2, uint64(r.Device))
	e.Bool(3, r.Fetched)
}

func (r *blobRecipient) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.User, err = f.String(transport.MaxUserName)
		case 2:
			r.Device, err = f.Uint32()
		case 3:
			r.Fetched, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

func (r *blobRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.Owner)
	e.Uint(2, uint64(r.OwnerDev))
	e.Uint(3, r.Size)
	e.Uint(4, uint64(r.ChunkSize))
	e.Int(5, r.Created)
	e.Int(6, r.Expires)
	e.Uint(7, uint64(r.Chunks))
	for i := range r.Recipients {
		e.Message(8, &r.Recipients[i])
	}
}

func (r *blobRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Owner, err = f.String(transport.MaxUserName)
		case 2:
			r.OwnerDev, err = f.Uint32()
		case 3:
			r.Size, err = f.Uint()
		case 4:
			r.ChunkSize, err = f.Uint32()
		case 5:
			r.Created, err = f.Int()
		case 6:
			r.Expires, err = f.Int()
		case 7:
			r.Chunks, err = f.Uint32()
		case 8:
			if len(r.Recipients) >= store.MaxBlobRecipients {
				return fmt.Errorf("more than %d recipients", store.MaxBlobRecipients)
			}
			var rc blobRecipient
			if err = f.Message(&rc); err == nil {
				r.Recipients = append(r.Recipients, rc)
			}
		default:
			return f.Unknown()
		}
		if err == nil && r.ChunkSize > store.MaxBlobChunk {
			err = fmt.Errorf("chunk size %d", r.ChunkSize)
		}
		return err
	})
}

func (r *blobRecord) blob(id store.BlobID) store.Blob {
	b := store.Blob{ID: id, Owner: chat.DeviceOf(r.Owner, r.OwnerDev), Size: int64(r.Size), ChunkSize: int(r.ChunkSize),
		Created: ms(r.Created), Expires: ms(r.Expires), Chunks: int(r.Chunks)}
	for _, rc := range r.Recipients {
		b.Recipients = append(b.Recipients, store.BlobRecipient{Device: chat.DeviceOf(rc.User, rc.Device), Fetched: rc.Fetched})
	}
	return b
}

func chunkKey(id store.BlobID, i int) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(id[:]), uint32(i))
}

func expiryKey(expires int64, id store.BlobID) []byte {
	return append(u64(uint64(expires)), id[:]...)
}

func getBlob(tx *bolt.Tx, id store.BlobID) (*blobRecord, error) {
	v := tx.Bucket(bucketBlobs).Get(id[:])
	if v == nil {
		return nil, store.ErrNotFound
	}
	var r blobRecord
	if err := transport.Unmarshal(v, &r); err != nil || r.ChunkSize == 0 {
		return nil, fmt.Errorf("blob %s: %w", id, store.ErrCorrupt)
	}
	return &r, nil
}

func putBlob(tx *bolt.Tx, id store.BlobID, r *blobRecord) error {
	return tx.Bucket(bucketBlobs).Put(id[:], transport.Marshal(r))
}

// addBlobUsage adds delta (which may be negative) to an account's blob
// bytes and to the total.
func addBlobUsage(tx *bolt.Tx, account string, delta int64) error {
	ub := tx.Bucket(bucketBlobUsage)
	used := int64(0)
	if v := ub.Get([]byte(account)); len(v) == 8 {
		used = int64(binary.BigEndian.Uint64(v))
	}
	used = max(used+delta, 0)
	var err error
	if used == 0 {
		err = ub.Delete([]byte(account))
	} else {
		err = ub.Put([]byte(account), u64(uint64(used)))
	}
	if err != nil {
		return err
	}
	total := max(int64(metaU64(tx, keyBlobBytes))+delta, 0)
	return tx.Bucket(bucketMeta).Put(keyBlobBytes, u64(uint64(total)))
}

func blobUsage(tx *bolt.Tx, account string) int64 {
	if v := tx.Bucket(bucketBlobUsage).Get([]byte(account)); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// CreateBlob reserves a new blob's charge and stores its record.
func (s *Store) CreateBlob(ctx context.Context, nb store.NewBlob) error {
	switch {
	case nb.Size <= 0 || nb.ChunkSize <= 0 || nb.ChunkSize > store.MaxBlobChunk:
		return fmt.Errorf("blob of %d bytes in chunks of %d", nb.Size, nb.ChunkSize)
	case len(nb.Recipients) == 0 || len(nb.Recipients) > store.MaxBlobRecipients:
		return fmt.Errorf("blob for %d devices", len(nb.Recipients))
	case (nb.Size+int64(nb.ChunkSize)-1)/int64(nb.ChunkSize) > 1<<31:
		return fmt.Errorf("blob of %d bytes in chunks of %d", nb.Size, nb.ChunkSize)
	}
	r := &blobRecord{Owner: nb.Owner.User, OwnerDev: nb.Owner.ID, Size: uint64(nb.Size), ChunkSize: uint32(nb.ChunkSize),
		Created: unixMS(nb.Now), Expires: unixMS(nb.Expires)}
	for _, d := range nb.Recipients {
		r.Recipients = append(r.Recipients, blobRecipient{User: d.User, Device: d.ID})
	}
	charge := store.Charge(nb.Size, nb.ChunkSize)
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketBlobs).Get(nb.ID[:]) != nil {
			return reject(store.ErrDuplicate)
		}
		if used := blobUsage(tx, nb.Owner.User); nb.Quota > 0 && used+charge > nb.Quota {
			return reject(&store.BlobQuotaError{Used: used, Size: charge, Quota: nb.Quota})
		}
		if int64(metaU64(tx, keyBlobBytes))+charge > s.maxBlobs {
			return reject(store.ErrFull)
		}
		if err := putBlob(tx, nb.ID, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBlobExpiry).Put(expiryKey(r.Expires, nb.ID), nil); err != nil {
			return err
		}
		return addBlobUsage(tx, nb.Owner.User, charge)
	})
}

// PutChunks stores the next chunks of a blob in one commit.
func (s *Store) PutChunks(ctx context.Context, id store.BlobID, first int, chunks [][]byte) (int, error) {
	var confirmed int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getBlob(tx, id)
		if err != nil {
			return reject(err)
		}
		b := r.blob(id)
		if first != b.Chunks {
			return reject(&store.ChunkError{Want: b.Chunks, Got: first})
		}
		for i, c := range chunks {
			n := first + i
			if n >= b.NumChunks() {
				return reject(&store.ChunkError{Want: b.NumChunks() - 1, Got: n})
			}
			if len(c) != b.ChunkLen(n) {
				return reject(&store.ChunkError{Want: n, Got: n, Len: len(c)})
			}
		}
		cb := tx.Bucket(bucketBlobChunks)
		for i, c := range chunks {
			if err := cb.Put(chunkKey(id, first+i), c); err != nil {
				return err
			}
		}
		r.Chunks = uint32(first + len(chunks))
		confirmed = int(r.Chunks)
		return putBlob(tx, id, r)
	})
	return confirmed, err
}

// Blob reads a blob's record.
func (s *Store) Blob(id store.BlobID) (store.Blob, error) {
	var b store.Blob
	err := s.view("Blob", func(tx *bolt.Tx) error {
		r, err := getBlob(tx, id)
		if err == nil {
			b = r.blob(id)
		}
		return err
	})
	return b, err
}

// ReadChunk reads one confirmed chunk.
func (s *Store) ReadChunk(id store.BlobID, i int) ([]byte, error) {
	var out []byte
	err := s.view("ReadChunk", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobChunks).Get(chunkKey(id, i))
		if v == nil {
			return store.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// BlobFetched records a recipient's whole fetch; the last deletes the blob.
func (s *Store) BlobFetched(ctx context.Context, id store.BlobID, d chat.Device) (bool, error) {
	var deleted bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		deleted = false
		r, err := getBlob(tx, id)
		if err != nil {
			return reject(err)
		}
		if !r.blob(id).Complete() {
			return reject(store.ErrBlobIncomplete)
		}
		found, all := false, true
		for i := range r.Recipients {
			rc := &r.Recipients[i]
			if rc.User == d.User && rc.Device == d.ID {
				found, rc.Fetched = true, true
			}
			all = all && rc.Fetched
		}
		if !found {
			return reject(store.ErrNotRecipient)
		}
		if all {
			deleted = true
			return deleteBlob(tx, id, r)
		}
		return putBlob(tx, id, r)
	})
	return deleted, err
}

// deleteBlob removes a blob, its chunks, its expiry entry and its usage.
func deleteBlob(tx *bolt.Tx, id store.BlobID, r *blobRecord) error {
	cb := tx.Bucket(bucketBlobChunks)
	for i := range r.blob(id).NumChunks() {
		if err := cb.Delete(chunkKey(id, i)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketBlobExpiry).Delete(expiryKey(r.Expires, id)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketBlobs).Delete(id[:]); err != nil {
		return err
	}
	return addBlobUsage(tx, r.Owner, -store.Charge(int64(r.Size), int(r.ChunkSize)))
}

// DeleteBlob removes a blob.
func (s *Store) DeleteBlob(ctx context.Context, id store.BlobID) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getBlob(tx, id)
		if err != nil {
			return reject(err)
		}
		return deleteBlob(tx, id, r)
	})
}

// ExpireBlobs deletes at most limit blobs due at now, in one commit.
func (s *Store) ExpireBlobs(ctx context.Context, now time.Time, limit int) (int, bool, error) {
	var n int
	var more bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n, more = 0, false
		cut := uint64(unixMS(now))
		var due [][]byte // expiry index keys
		c := tx.Bucket(bucketBlobExpiry).Cursor()
		for k, _ := c.First(); k != nil && len(k) == 8+store.BlobIDLen && binary.BigEndian.Uint64(k) <= cut; k, _ = c.Next() {
			if len(due) == limit {
				more = true
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			id := store.BlobID(k[8:])
			r, err := getBlob(tx, id)
			if err != nil { // an index entry without its blob: drop it
				if err := tx.Bucket(bucketBlobExpiry).Delete(k); err != nil {
					return err
				}
				continue
			}
			if err := deleteBlob(tx, id, r); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, more, err
}

// BlobUsage is the bytes an account's blobs reserve.
func (s *Store) BlobUsage(account string) (int64, error) {
	var n int64
	err := s.view("BlobUsage", func(tx *bolt.Tx) error {
		n = blobUsage(tx, account)
		return nil
	})
	return n, err
}
