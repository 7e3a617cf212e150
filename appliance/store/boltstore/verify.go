package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/transport"
)

// Verify checks the file's page structure (bbolt's own check) and that
// every record of the users, devices, mailboxes, bans and invites buckets
// decodes: what a crash may not leave half-written; that the mailbox
// usage counts (quota.go) match the mailboxes; and that every shared
// payload of a group message is counted by exactly the entries that refer
// to it (groups.go).
func (s *Store) Verify() error {
	return s.view("Verify", func(tx *bolt.Tx) error {
		if err := checkTx(tx); err != nil {
			return &store.DamagedError{Op: "Verify", Cause: err.Error()}
		}
		return verifyRecords(tx)
	})
}

// checkTx runs bbolt's own check of the page structure: its first error.
func checkTx(tx *bolt.Tx) error {
	var first error
	for err := range tx.Check() { // drained: the check runs on until it closes
		if first == nil {
			first = err
		}
	}
	return first
}

// verifyRecords decodes every record Verify checks and checks the counts.
func verifyRecords(tx *bolt.Tx) error {
	records := []struct {
		bucket []byte
		decode func(v []byte) error
	}{
		{bucketUsers, func(v []byte) error { return transport.Unmarshal(v, &userRecord{}) }},
		{bucketDevices, func(v []byte) error { return transport.Unmarshal(v, &deviceRecord{}) }},
		{bucketBans, func(v []byte) error { return transport.Unmarshal(v, &banRecord{}) }},
		{bucketInvites, func(v []byte) error { return transport.Unmarshal(v, &inviteRecord{}) }},
		{bucketGroups, func(v []byte) error { return transport.Unmarshal(v, &groupRecord{}) }},
		{bucketRevoked, func(v []byte) error { return transport.Unmarshal(v, &revokedRecord{}) }},
		{bucketBlobs, func(v []byte) error { return transport.Unmarshal(v, &blobRecord{}) }},
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
	refs := map[string]uint64{} // shared key → entries referring to it
	err := boxes.ForEachBucket(func(name []byte) error {
		var u usage
		err := boxes.Bucket(name).ForEach(func(k, v []byte) error {
			e, ok := decodeEntry(k, v)
			if !ok {
				return fmt.Errorf("mailbox %q entry %x does not decode", name, k)
			}
			if e.Group != nil {
				refs[string(sharedKey(e.From, e.MessageID))]++
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
	shared, err := verifyShared(tx, refs)
	if err != nil {
		return err
	}
	if got := totalBytes(tx); got != total+shared {
		return fmt.Errorf("mailboxes hold %d bytes and shared payloads %d, the store's total says %d", total, shared, got)
	}
	return nil
}
