package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Verify checks the file's page structure (bbolt's own check) and that
// every record of the users, devices, mailboxes, bans and invites buckets
// decodes: what a crash may not leave half-written; and that the mailbox
// usage counts (quota.go) match the mailboxes.
func (s *Store) Verify() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		records := []struct {
			bucket []byte
			decode func(v []byte) error
		}{
			{bucketUsers, func(v []byte) error { return transport.Unmarshal(v, &userRecord{}) }},
			{bucketDevices, func(v []byte) error { return transport.Unmarshal(v, &deviceRecord{}) }},
			{bucketBans, func(v []byte) error { return transport.Unmarshal(v, &banRecord{}) }},
			{bucketInvites, func(v []byte) error { return transport.Unmarshal(v, &inviteRecord{}) }},
		}
		for _, r := range records {
			err := tx.Bucket(r.bucket).ForEach(func(k, v []byte) error {
				if err := r.decode(v); err != nil {
					return fmt.Errorf("%s record %q: %w", r.bucket, k, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		boxes := tx.Bucket(bucketMailboxes)
		var total uint64
		err := boxes.ForEachBucket(func(name []byte) error {
			var u usage
			err := boxes.Bucket(name).ForEach(func(k, v []byte) error {
				if _, ok := decodeEntry(k, v); !ok {
					return fmt.Errorf("mailbox %q entry %x does not decode", name, k)
				}
				u.entries++
				u.bytes += uint64(len(v))
				return nil
			})
			if err != nil {
				return err
			}
			if got := getUsage(tx, name); got != u {
				return fmt.Errorf("mailbox %q holds %d entries of %d bytes, its usage record says %d of %d", name, u.entries, u.bytes, got.entries, got.bytes)
			}
			total += u.bytes
			return nil
		})
		if err != nil {
			return err
		}
		if got := totalBytes(tx); got != total {
			return fmt.Errorf("mailboxes hold %d bytes, the store's total says %d", total, got)
		}
		return nil
	})
}
