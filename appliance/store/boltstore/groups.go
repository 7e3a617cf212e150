package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Group messages (protocol.md §6.7, §7). A group message's ciphertext is
// stored once, in the shared bucket under the sender's device key ‖
// message id (the key of its dedup record); the refs bucket counts the
// mailbox entries that refer to it under the same key. Each recipient
// device's mailbox gets a small entry with the group id and no payload.
// The count is written in the transaction that adds or removes the
// entries (Append, Ack, Expire, DeleteAccount), so a crash leaves it
// right; the entry that takes it to zero frees the payload. The store's
// total (meta mailbox_bytes) counts the payload once, each mailbox only
// its entry.
//
// The groups bucket keeps the operator's view of each group id; the
// groupstarts bucket indexes the ids by the account that first used them,
// for group_max_per_account.

// maxRefValue bounds a group message's mailbox entry value: the time,
// sender, device, message id and group id. A larger value is an ordinary
// entry, which Ack and Expire need not decode.
const maxRefValue = 8 + 2*8 + transport.MaxUserName + 5 + 2*transport.MessageIDLen + transport.GroupIDLen

// sharedKey is where a group message's payload is stored: the sender's
// device key ‖ message id.
func sharedKey(from chat.Device, id []byte) []byte {
	return append(deviceKey(from), id...)
}

// groupStartKey is a groupstarts key: creator ‖ 0 ‖ group id.
func groupStartKey(user string, id []byte) []byte {
	return append(userPrefix(user), id...)
}

// refOf returns the shared key a stored mailbox value refers to, or nil
// for an ordinary entry.
func refOf(v []byte) []byte {
	if len(v) > maxRefValue || len(v) < 8 {
		return nil
	}
	var e mailboxEntry
	if transport.Unmarshal(v[8:], &e) != nil || e.Group == nil {
		return nil
	}
	return sharedKey(chat.DeviceOf(e.From, e.FromDevice), e.MessageID)
}

// getRefs reads the count of entries that refer to a shared payload.
func getRefs(tx *bolt.Tx, key []byte) uint64 {
	v := tx.Bucket(bucketRefs).Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// putShared stores a group message's payload with n entries referring to
// it, and counts it once in the store's total.
func putShared(tx *bolt.Tx, key, payload []byte, n int) error {
	if err := tx.Bucket(bucketShared).Put(key, payload); err != nil {
		return err
	}
	if err := tx.Bucket(bucketRefs).Put(key, u64(uint64(n))); err != nil {
		return err
	}
	return addShared(tx, int64(len(payload)))
}

// addShared counts shared payload bytes in the store's total and in meta
// shared_bytes.
func addShared(tx *bolt.Tx, bytes int64) error {
	if err := tx.Bucket(bucketMeta).Put(keySharedBytes, u64(sub(metaU64(tx, keySharedBytes), bytes))); err != nil {
		return err
	}
	return addTotal(tx, bytes)
}

// unref drops one entry's reference to a shared payload, freeing the
// payload with the last one.
func unref(tx *bolt.Tx, key []byte) error {
	n := getRefs(tx, key)
	if n > 1 {
		return tx.Bucket(bucketRefs).Put(key, u64(n-1))
	}
	size := len(tx.Bucket(bucketShared).Get(key))
	if err := tx.Bucket(bucketShared).Delete(key); err != nil {
		return err
	}
	if err := tx.Bucket(bucketRefs).Delete(key); err != nil {
		return err
	}
	return addShared(tx, -int64(size))
}

// removeEntry deletes a mailbox entry, with its usage and its reference.
func removeEntry(tx *bolt.Tx, box *bolt.Bucket, boxKey, seq []byte) error {
	v := box.Get(seq)
	if v == nil {
		return nil
	}
	size, ref := len(v), refOf(v)
	if err := box.Delete(seq); err != nil {
		return err
	}
	if ref != nil {
		if err := unref(tx, ref); err != nil {
			return err
		}
	}
	return addUsage(tx, boxKey, -1, -int64(size))
}

// groupMembers is how many accounts a group message addresses: its
// recipients' and its sender's.
func groupMembers(from chat.Device, envs []store.Envelope) int {
	users := map[string]bool{from.User: true}
	for _, e := range envs {
		users[e.To.User] = true
	}
	return len(users)
}

// checkGroupStart refuses a group message under an id nobody used yet from
// an account that already started max groups (0: no bound). It writes
// nothing, and costs at most max steps.
func checkGroupStart(tx *bolt.Tx, user string, id []byte, max int) error {
	if max <= 0 || tx.Bucket(bucketGroups).Get(id) != nil {
		return nil
	}
	prefix := userPrefix(user)
	n := 0
	c := tx.Bucket(bucketGroupStarts).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		if n++; n >= max {
			return &store.TooManyGroupsError{User: user, Max: max}
		}
	}
	return nil
}

// recordGroupMessage counts a stored group message in its group's record,
// creating the record (and its creator's index) for a new id.
func recordGroupMessage(tx *bolt.Tx, from chat.Device, id []byte, members int, ms int64) error {
	groups := tx.Bucket(bucketGroups)
	var rec groupRecord
	if v := groups.Get(id); v != nil {
		if err := transport.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("group %x: %w", id, store.ErrCorrupt)
		}
	} else {
		rec = groupRecord{Creator: from.User, Created: ms}
		if err := tx.Bucket(bucketGroupStarts).Put(groupStartKey(from.User, id), []byte{}); err != nil {
			return err
		}
	}
	rec.Last = max(rec.Last, ms)
	rec.Messages++
	rec.Members = uint32(members)
	return groups.Put(id, transport.Marshal(&rec))
}

// deleteGroup removes a group's record and its creator's index entry.
func deleteGroup(tx *bolt.Tx, id []byte) error {
	groups := tx.Bucket(bucketGroups)
	var rec groupRecord
	if v := groups.Get(id); v != nil && transport.Unmarshal(v, &rec) == nil {
		if err := tx.Bucket(bucketGroupStarts).Delete(groupStartKey(rec.Creator, id)); err != nil {
			return err
		}
	}
	return groups.Delete(id)
}

// ListGroups lists the group records by id.
func (s *Store) ListGroups() ([]store.Group, error) {
	var out []store.Group
	err := s.view("ListGroups", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			var rec groupRecord
			if transport.Unmarshal(v, &rec) != nil {
				return nil // Verify reports it
			}
			out = append(out, store.Group{ID: slices.Clone(k), Members: int(rec.Members), Creator: rec.Creator,
				Created: ms(rec.Created), LastMessage: ms(rec.Last), Messages: rec.Messages})
			return nil
		})
	})
	return out, err
}

// expireGroups deletes the records of groups whose last message was
// stored before cutoff (ms), from after on, taking at most budget steps;
// it returns the key to resume at (nil: done) and the steps taken.
func expireGroups(tx *bolt.Tx, before uint64, after []byte, budget int) ([]byte, int, error) {
	groups := tx.Bucket(bucketGroups)
	var stale [][]byte
	steps := 0
	c := groups.Cursor()
	k, v := c.First()
	if after != nil {
		k, v = c.Seek(after)
	}
	for ; k != nil && steps < budget; k, v = c.Next() {
		steps++
		var rec groupRecord
		if transport.Unmarshal(v, &rec) != nil || uint64(rec.Last) < before {
			stale = append(stale, slices.Clone(k))
		}
	}
	var next []byte
	if k != nil {
		next = slices.Clone(k)
	}
	for _, id := range stale {
		if err := deleteGroup(tx, id); err != nil {
			return nil, 0, err
		}
	}
	return next, steps, nil
}

// verifyShared checks that every shared payload is counted by exactly the
// entries that refer to it (refs, from the mailboxes), that no entry
// refers to a payload that is missing, and returns their bytes.
func verifyShared(tx *bolt.Tx, refs map[string]uint64) (uint64, error) {
	var total uint64
	shared := tx.Bucket(bucketShared)
	err := shared.ForEach(func(k, v []byte) error {
		want := refs[string(k)]
		if want == 0 {
			return fmt.Errorf("shared payload %x has no entry referring to it", k)
		}
		if got := getRefs(tx, k); got != want {
			return fmt.Errorf("shared payload %x has %d entries referring to it, its count says %d", k, want, got)
		}
		total += uint64(len(v))
		return nil
	})
	if err != nil {
		return 0, err
	}
	for k := range refs {
		if shared.Get([]byte(k)) == nil {
			return 0, fmt.Errorf("entries refer to a missing shared payload %x", k)
		}
	}
	if n, m := tx.Bucket(bucketRefs).Stats().KeyN, shared.Stats().KeyN; n != m {
		return 0, fmt.Errorf("%d reference counts for %d shared payloads", n, m)
	}
	if got := metaU64(tx, keySharedBytes); got != total {
		return 0, fmt.Errorf("shared payloads hold %d bytes, meta shared_bytes says %d", total, got)
	}
	err = tx.Bucket(bucketGroupStarts).ForEach(func(k, _ []byte) error {
		if len(k) < transport.GroupIDLen+1 || !bytes.Equal(k[len(k)-transport.GroupIDLen-1:len(k)-transport.GroupIDLen], []byte{0}) {
			return fmt.Errorf("group start key %x is malformed", k)
		}
		if tx.Bucket(bucketGroups).Get(k[len(k)-transport.GroupIDLen:]) == nil {
			return fmt.Errorf("group start key %x names no group", k)
		}
		return nil
	})
	return total, err
}
