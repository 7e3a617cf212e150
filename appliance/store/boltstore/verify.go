package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Verify checks the file's page structure (bbolt's own check) and that
// every record of the users, devices, mailboxes, bans and invites buckets
// decodes: what a crash may not leave half-written.
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
		return boxes.ForEachBucket(func(name []byte) error {
			return boxes.Bucket(name).ForEach(func(k, v []byte) error {
				if _, ok := decodeEntry(k, v); !ok {
					return fmt.Errorf("mailbox %q entry %x does not decode", name, k)
				}
				return nil
			})
		})
	})
}
