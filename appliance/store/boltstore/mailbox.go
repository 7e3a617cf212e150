package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Append durably stores m in every recipient device's mailbox, or
// recognises a resend by its message id and stores nothing (protocol.md §6.1).
func (s *Store) Append(ctx context.Context, m store.Message) (store.Appended, error) {
	dedupKey := append(deviceKey(m.From), m.ID...)
	to := make([]chat.Device, len(m.Envelopes))
	for i, e := range m.Envelopes {
		to[i] = e.To
	}
	var out store.Appended
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = store.Appended{}
		dedup := tx.Bucket(bucketDedup)
		if v := dedup.Get(dedupKey); len(v) == 8 {
			out.Time, out.Duplicate = time.UnixMilli(int64(binary.BigEndian.Uint64(v))), true
			return nil
		}
		if err := checkRecipients(tx, m.From, to); err != nil {
			return reject(err)
		}
		ms := m.Time.UnixMilli()
		out.Time = time.UnixMilli(ms)
		for _, env := range m.Envelopes {
			e, err := appendEntry(tx, env.To, &mailboxEntry{From: m.From.User, FromDevice: m.From.ID, MessageID: m.ID, Payload: env.Payload}, ms)
			if err != nil {
				return err
			}
			out.Entries = append(out.Entries, store.Delivery{To: env.To, Entry: e})
		}
		return dedup.Put(dedupKey, u64(uint64(ms)))
	})
	return out, err
}

// appendEntry adds an entry stored at ms to d's mailbox.
func appendEntry(tx *bolt.Tx, d chat.Device, e *mailboxEntry, ms int64) (store.Entry, error) {
	box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(d))
	if box == nil {
		return store.Entry{}, fmt.Errorf("mailbox of %s is missing", d)
	}
	seq, err := box.NextSequence()
	if err != nil {
		return store.Entry{}, err
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 64+len(e.Payload)), uint64(ms))
	v = append(v, transport.Marshal(e)...)
	if err := box.Put(u64(seq), v); err != nil {
		return store.Entry{}, err
	}
	return store.Entry{Seq: seq, From: chat.DeviceOf(e.From, e.FromDevice), MessageID: e.MessageID, Time: time.UnixMilli(ms), Payload: e.Payload}, nil
}

// CheckRecipients checks a message's recipients without storing anything.
func (s *Store) CheckRecipients(from chat.Device, to []chat.Device) error {
	return s.db.View(func(tx *bolt.Tx) error { return checkRecipients(tx, from, to) })
}

// checkRecipients verifies that to holds exactly one slot for every
// current device of every recipient, the sending device excepted.
func checkRecipients(tx *bolt.Tx, from chat.Device, to []chat.Device) error {
	if len(to) == 0 {
		return store.ErrNoRecipients
	}
	given := make(map[string][]uint32)
	for _, d := range to {
		given[d.User] = append(given[d.User], d.ID)
	}
	users := tx.Bucket(bucketUsers)
	var mismatch []store.DeviceKey
	for user, ids := range given {
		if users.Get([]byte(user)) == nil {
			return &store.NoSuchUserError{User: user}
		}
		current := activeDevicesTx(tx, user)
		if user == from.User {
			current = slices.DeleteFunc(current, func(d store.DeviceKey) bool { return d.Device.ID == from.ID })
		}
		slices.Sort(ids)
		match := len(ids) == len(current)
		for i := 0; match && i < len(ids); i++ {
			match = ids[i] == current[i].Device.ID // activeDevicesTx lists in id order
		}
		if !match {
			mismatch = append(mismatch, current...)
		}
	}
	if mismatch != nil {
		return &store.DeviceMismatchError{Devices: mismatch}
	}
	return nil
}

// Broadcast stores a server notice in every active device's mailbox.
func (s *Store) Broadcast(ctx context.Context, id, payload []byte, now time.Time) (int, []store.Delivery, error) {
	ms := now.UnixMilli()
	accounts := 0
	var out []store.Delivery
	err := s.update(ctx, func(tx *bolt.Tx) error {
		accounts, out = 0, nil
		boxes := tx.Bucket(bucketMailboxes)
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			devs := activeDevicesTx(tx, string(k))
			if len(devs) > 0 {
				accounts++
			}
			for _, d := range devs {
				if boxes.Bucket(deviceKey(d.Device)) == nil {
					continue
				}
				e, err := appendEntry(tx, d.Device, &mailboxEntry{MessageID: id, Payload: payload}, ms)
				if err != nil {
					return err
				}
				out = append(out, store.Delivery{To: d.Device, Entry: e})
			}
			return nil
		})
	})
	return accounts, out, err
}

// Pending returns up to limit entries of a device's mailbox after seq.
func (s *Store) Pending(d chat.Device, after uint64, limit int) ([]store.Entry, error) {
	var out []store.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(d))
		if box == nil {
			return nil
		}
		c := box.Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			e, ok := decodeEntry(k, v)
			if !ok {
				continue // unreadable entries are left for expiry rather than wedging delivery
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// decodeEntry reads a mailbox entry.
func decodeEntry(k, v []byte) (store.Entry, bool) {
	var e mailboxEntry
	if len(k) != 8 || len(v) < 8 || transport.Unmarshal(v[8:], &e) != nil {
		return store.Entry{}, false
	}
	return store.Entry{
		Seq:       binary.BigEndian.Uint64(k),
		From:      chat.DeviceOf(e.From, e.FromDevice),
		MessageID: e.MessageID,
		Time:      time.UnixMilli(int64(binary.BigEndian.Uint64(v[:8]))),
		Payload:   e.Payload,
	}, true
}

// Ack deletes delivered entries from a device's mailbox, without waiting
// for the commit.
func (s *Store) Ack(d chat.Device, seqs []uint64) {
	s.updateAsync(func(tx *bolt.Tx) error {
		box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(d))
		if box == nil {
			return reject(fmt.Errorf("mailbox gone"))
		}
		for _, seq := range seqs {
			if err := box.Delete(u64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Expire deletes up to limit mailbox entries and dedup records stored
// before cutoff, entries first, so that one call's transaction stays small.
func (s *Store) Expire(ctx context.Context, cutoff time.Time, limit int) (int, bool, error) {
	before := uint64(cutoff.UnixMilli())
	limit = max(limit, 1) // a batch that deletes nothing would never finish
	removed, more := 0, false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		removed, more = 0, false
		boxes := tx.Bucket(bucketMailboxes)
		var old [][2][]byte // (mailbox, seq) pairs; never delete while iterating
		err := boxes.ForEachBucket(func(name []byte) error {
			c := boxes.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(v) >= 8 && binary.BigEndian.Uint64(v[:8]) >= before {
					break // entries are in store order
				}
				if len(old) == limit {
					more = true
					return nil
				}
				old = append(old, [2][]byte{slices.Clone(name), slices.Clone(k)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := boxes.Bucket(o[0]).Delete(o[1]); err != nil {
				return err
			}
		}
		removed = len(old)
		dedup := tx.Bucket(bucketDedup)
		var stale [][]byte
		c := dedup.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) != 8 || binary.BigEndian.Uint64(v) < before {
				if len(old)+len(stale) >= limit {
					more = true
					break
				}
				stale = append(stale, slices.Clone(k))
			}
		}
		for _, k := range stale {
			if err := dedup.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return removed, more, err
}
