package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
)

// Blobs live in the blobs bucket under their id; meta's blob_bytes is
// their total size, kept in the same commits, so the bound holds across
// restarts without a scan.

func blobBytes(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyBlobBytes)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func checkBlobID(id string) error {
	if id == "" || len(id) > store.MaxBlobID {
		return fmt.Errorf("blob id must be 1 to %d bytes", store.MaxBlobID)
	}
	return nil
}

// PutBlob stores a new blob within the store's bound.
func (s *Store) PutBlob(ctx context.Context, id string, data []byte) error {
	if err := checkBlobID(id); err != nil {
		return err
	}
	if len(data) > store.MaxBlobSize {
		return store.ErrTooLarge
	}
	data = bytes.Clone(data) // the caller may reuse it while the write waits
	return s.update(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketBlobs); b != nil && b.Get([]byte(id)) != nil {
			return reject(store.ErrDuplicate)
		}
		total := blobBytes(tx) + uint64(len(data))
		if total > uint64(s.maxBlobs) {
			return reject(store.ErrFull)
		}
		b, err := tx.CreateBucketIfNotExists(bucketBlobs)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(id), data); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyBlobBytes, u64(total))
	})
}

// Blob returns a copy of a blob.
func (s *Store) Blob(id string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlobs)
		if b == nil || b.Get([]byte(id)) == nil {
			return store.ErrNotFound
		}
		out = bytes.Clone(b.Get([]byte(id)))
		return nil
	})
	return out, err
}

// DeleteBlob removes a blob.
func (s *Store) DeleteBlob(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlobs)
		if b == nil || b.Get([]byte(id)) == nil {
			return reject(store.ErrNotFound)
		}
		v := b.Get([]byte(id))
		total := blobBytes(tx) - min(blobBytes(tx), uint64(len(v)))
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyBlobBytes, u64(total))
	})
}
