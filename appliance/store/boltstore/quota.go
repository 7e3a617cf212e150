package boltstore

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// Mailbox quotas (docs/operations.md §2: mailbox_max_entries,
// mailbox_max_bytes, store_max_bytes). Every mailbox's entry count and
// bytes are kept in the usage bucket, their sum over all mailboxes in the
// meta key mailbox_bytes, updated in the transaction that adds or removes
// entries; so a check costs two reads, never a scan. A mailbox's bytes are
// the stored values' lengths (payload and entry header).

// usage is one mailbox's entries and bytes.
type usage struct{ entries, bytes uint64 }

func getUsage(tx *bolt.Tx, box []byte) usage {
	v := tx.Bucket(bucketUsage).Get(box)
	if len(v) != 16 {
		return usage{}
	}
	return usage{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}
}

// addUsage adds (or with negative deltas removes) entries and bytes to a
// mailbox's usage and to the store's total.
func addUsage(tx *bolt.Tx, box []byte, entries, bytes int64) error {
	if entries == 0 && bytes == 0 {
		return nil
	}
	u := getUsage(tx, box)
	u.entries = sub(u.entries, entries)
	u.bytes = sub(u.bytes, bytes)
	b := tx.Bucket(bucketUsage)
	var err error
	if u.entries == 0 {
		err = b.Delete(box)
	} else {
		err = b.Put(box, binary.BigEndian.AppendUint64(u64(u.entries), u.bytes))
	}
	if err != nil {
		return err
	}
	return addTotal(tx, bytes)
}

// addTotal adds bytes (or removes them) to the store's total only: a group
// message's shared payload, counted once (groups.go).
func addTotal(tx *bolt.Tx, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(keyMailboxBytes, u64(sub(totalBytes(tx), bytes)))
}

// sub adds d to v, stopping at 0.
func sub(v uint64, d int64) uint64 {
	if d < 0 && uint64(-d) > v {
		return 0
	}
	return uint64(int64(v) + d)
}

// totalBytes is the bytes of every mailbox together, and of the shared
// payloads of group messages, each once.
func totalBytes(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyMailboxBytes)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// checkQuota refuses adding the values sized to the mailboxes of to
// (parallel slices), and shared bytes to the store's total alone, if a
// mailbox or the store would exceed its bound. It writes nothing.
func (s *Store) checkQuota(tx *bolt.Tx, to []chat.Device, sizes []int, shared int) error {
	total := uint64(shared)
	for i, d := range to {
		u := getUsage(tx, deviceKey(d))
		if u.entries+1 > uint64(s.limits.MaxMailboxEntries) || u.bytes+uint64(sizes[i]) > uint64(s.limits.MaxMailboxBytes) {
			return &store.MailboxFullError{Device: d}
		}
		total += uint64(sizes[i])
	}
	if totalBytes(tx)+total > uint64(s.limits.MaxStoreBytes) {
		return store.ErrStoreFull
	}
	return nil
}

// recountUsage rebuilds the usage bucket and the total from the mailboxes
// (the migration from schema 1, which kept no counts and no shared
// payloads).
func recountUsage(tx *bolt.Tx) error {
	if tx.Bucket(bucketUsage) != nil {
		if err := tx.DeleteBucket(bucketUsage); err != nil {
			return err
		}
	}
	ub, err := tx.CreateBucket(bucketUsage)
	if err != nil {
		return err
	}
	var total uint64
	boxes := tx.Bucket(bucketMailboxes)
	err = boxes.ForEachBucket(func(name []byte) error {
		var u usage
		boxes.Bucket(name).ForEach(func(_, v []byte) error {
			u.entries++
			u.bytes += uint64(len(v))
			return nil
		})
		total += u.bytes
		if u.entries == 0 {
			return nil
		}
		return ub.Put(name, binary.BigEndian.AppendUint64(u64(u.entries), u.bytes))
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyMailboxBytes, u64(total))
}
