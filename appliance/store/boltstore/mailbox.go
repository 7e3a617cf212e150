package boltstore

import (
	"bytes"
	"cmp"
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
// Every refusal (recipients, quotas) happens before the first write, as a
// reject, so a bad Append never aborts the others of its group commit.
func (s *Store) Append(ctx context.Context, m store.Message) (store.Appended, error) {
	dedupKey := append(deviceKey(m.From), m.ID...)
	to := make([]store.DeviceKey, len(m.Envelopes))
	devs := make([]chat.Device, len(m.Envelopes))
	for i, e := range m.Envelopes {
		to[i] = store.DeviceKey{Device: e.To, Key: e.Key}
		devs[i] = e.To
	}
	ms := m.Time.UnixMilli()
	values := make([][]byte, len(m.Envelopes))
	sizes := make([]int, len(m.Envelopes))
	for i, env := range m.Envelopes {
		values[i] = entryValue(&mailboxEntry{From: m.From.User, FromDevice: m.From.ID, MessageID: m.ID, Payload: env.Payload}, ms)
		sizes[i] = len(values[i])
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
		if err := s.checkQuota(tx, devs, sizes); err != nil {
			return reject(err)
		}
		out.Time = time.UnixMilli(ms)
		for i, env := range m.Envelopes {
			seq, err := appendValue(tx, env.To, values[i])
			if err != nil {
				return err
			}
			out.Entries = append(out.Entries, store.Delivery{To: env.To, Entry: store.Entry{
				Seq: seq, From: m.From, MessageID: m.ID, Time: out.Time, Payload: env.Payload}})
		}
		return dedup.Put(dedupKey, u64(uint64(ms)))
	})
	return out, err
}

// entryValue is a mailbox entry's stored value: u64 BE unix ms ‖ entry.
func entryValue(e *mailboxEntry, ms int64) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 64+len(e.Payload)), uint64(ms))
	return append(v, transport.Marshal(e)...)
}

// appendValue adds a stored value to d's mailbox, counting it in the
// mailbox's usage, and returns its sequence number. The callers checked
// that the mailbox exists (checkRecipients, or Broadcast's own check).
func appendValue(tx *bolt.Tx, d chat.Device, v []byte) (uint64, error) {
	k := deviceKey(d)
	box := tx.Bucket(bucketMailboxes).Bucket(k)
	if box == nil {
		return 0, fmt.Errorf("mailbox of %s is missing: %w", d, store.ErrCorrupt)
	}
	seq, err := box.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := box.Put(u64(seq), v); err != nil {
		return 0, err
	}
	return seq, addUsage(tx, k, 1, int64(len(v)))
}

// CheckRecipients checks a message's recipients without storing anything.
func (s *Store) CheckRecipients(from chat.Device, to []store.DeviceKey) error {
	return s.db.View(func(tx *bolt.Tx) error { return checkRecipients(tx, from, to) })
}

// checkRecipients verifies that the sending device may send (it has
// published keys, protocol.md §5.1) and that to holds exactly one slot for
// every current device of every recipient, the sending device excepted
// (docs/design.md §10: a message goes to the sender's other devices, never
// to the sending one), each naming the device's current key: a slot for a
// device re-created, or of an account deleted and registered again, is
// stale (protocol.md §6.1). It writes nothing.
func checkRecipients(tx *bolt.Tx, from chat.Device, to []store.DeviceKey) error {
	if len(to) == 0 {
		return store.ErrNoRecipients
	}
	if !publishedTx(tx, from) {
		return store.ErrNotPublished
	}
	given := make(map[string][]store.DeviceKey)
	var users []string // in first-named order, so errors do not depend on map order
	for _, d := range to {
		if d.Device == from {
			return store.ErrToSendingDevice
		}
		if _, ok := given[d.Device.User]; !ok {
			users = append(users, d.Device.User)
		}
		given[d.Device.User] = append(given[d.Device.User], d)
	}
	usersB := tx.Bucket(bucketUsers)
	boxes := tx.Bucket(bucketMailboxes)
	var mismatch []store.DeviceKey
	mismatched := false
	for _, user := range users {
		ids := given[user]
		if usersB.Get([]byte(user)) == nil {
			return &store.NoSuchUserError{User: user}
		}
		current := activeDevicesTx(tx, user)
		if user == from.User {
			current = slices.DeleteFunc(current, func(d store.DeviceKey) bool { return d.Device.ID == from.ID })
		} else if len(current) == 0 {
			return &store.NoDevicesError{User: user}
		}
		slices.SortFunc(ids, func(a, b store.DeviceKey) int { return cmp.Compare(a.Device.ID, b.Device.ID) })
		match := len(ids) == len(current)
		for i := 0; match && i < len(ids); i++ {
			// activeDevicesTx lists in id order
			match = ids[i].Device.ID == current[i].Device.ID && bytes.Equal(ids[i].Key, current[i].Key)
		}
		if !match {
			// The sender's own account may have no other device: then
			// its slots are all stale and the list for it is empty.
			mismatched = true
			mismatch = append(mismatch, current...)
			continue
		}
		for _, d := range current {
			if boxes.Bucket(deviceKey(d.Device)) == nil {
				return fmt.Errorf("mailbox of %s is missing: %w", d.Device, store.ErrCorrupt)
			}
		}
	}
	if mismatched {
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
			v := entryValue(&mailboxEntry{MessageID: id, Payload: payload}, ms)
			for _, d := range devs {
				if boxes.Bucket(deviceKey(d.Device)) == nil {
					continue
				}
				// A server notice is the operator's: quotas do not refuse it.
				seq, err := appendValue(tx, d.Device, v)
				if err != nil {
					return err
				}
				out = append(out, store.Delivery{To: d.Device, Entry: store.Entry{Seq: seq, MessageID: id, Time: time.UnixMilli(ms), Payload: payload}})
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
		k := deviceKey(d)
		box := tx.Bucket(bucketMailboxes).Bucket(k)
		if box == nil {
			return reject(fmt.Errorf("mailbox gone"))
		}
		var n, size int64
		for _, seq := range seqs {
			v := box.Get(u64(seq))
			if v == nil {
				continue
			}
			size += int64(len(v))
			n++
			if err := box.Delete(u64(seq)); err != nil {
				return err
			}
		}
		return addUsage(tx, k, -n, -size)
	})
}

// Expire deletes up to limit mailbox entries and dedup records stored
// before cutoff, in one commit. One call's work is bounded too: it takes at
// most expireSteps(limit) cursor steps, then says more and resumes where it
// stopped on the next call with the same cutoff (a new cutoff is a new
// sweep and starts over). Mailboxes first, each from its oldest entry
// (entries are in store order, so the scan of a mailbox stops at its first
// unexpired entry), then the dedup records, which are in no time order.
func (s *Store) Expire(ctx context.Context, cutoff time.Time, limit int) (int, bool, error) {
	s.expireMu.Lock()
	defer s.expireMu.Unlock()
	before := uint64(cutoff.UnixMilli())
	if before != s.expire.cutoff {
		s.expire = expireCursor{cutoff: before}
	}
	limit = max(limit, 1) // a batch that deletes nothing would never finish
	budget := expireSteps(limit)
	removed, more, steps := 0, false, 0
	var next expireCursor
	err := s.update(ctx, func(tx *bolt.Tx) error {
		removed, more, steps = 0, false, 0
		next = s.expire
		type old struct {
			box, seq []byte
			size     int
		}
		var olds []old
		boxes := tx.Bucket(bucketMailboxes)
		if !next.boxesDone {
			c := boxes.Cursor()
			k, v := c.First()
			if next.box != nil {
				k, v = c.Seek(next.box)
			}
		boxLoop:
			for ; k != nil; k, v = c.Next() {
				if v != nil {
					continue // not a mailbox
				}
				if steps >= budget || len(olds) >= limit {
					break
				}
				steps++
				bc := boxes.Bucket(k).Cursor()
				for ek, ev := bc.First(); ek != nil; ek, ev = bc.Next() {
					if len(ev) >= 8 && binary.BigEndian.Uint64(ev[:8]) >= before {
						break // entries are in store order
					}
					if len(olds) == limit || steps >= budget {
						break boxLoop // resume at this mailbox
					}
					steps++
					olds = append(olds, old{slices.Clone(k), slices.Clone(ek), len(ev)})
				}
			}
			if k != nil {
				next.box, more = slices.Clone(k), true
			} else {
				next.box, next.boxesDone = nil, true
			}
		}
		for _, o := range olds {
			if err := boxes.Bucket(o.box).Delete(o.seq); err != nil {
				return err
			}
			if err := addUsage(tx, o.box, -1, -int64(o.size)); err != nil {
				return err
			}
		}
		removed = len(olds)
		if !next.boxesDone {
			return nil
		}
		dedup := tx.Bucket(bucketDedup)
		var stale [][]byte
		c := dedup.Cursor()
		k, v := c.First()
		if next.dedup != nil {
			k, v = c.Seek(next.dedup)
		}
		for ; k != nil; k, v = c.Next() {
			if steps >= budget || len(olds)+len(stale) >= limit {
				break
			}
			steps++
			if len(v) != 8 || binary.BigEndian.Uint64(v) < before {
				stale = append(stale, slices.Clone(k))
			}
		}
		if k != nil {
			next.dedup, more = slices.Clone(k), true
		} else {
			next = expireCursor{cutoff: before} // the sweep is done
		}
		for _, k := range stale {
			if err := dedup.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.expire = next
		s.expireLastSteps = steps
	}
	return removed, more, err
}

// expireSteps bounds the cursor steps of one Expire call of limit.
func expireSteps(limit int) int { return 4*limit + 64 }

// expireCursor is where an expiry sweep resumes.
type expireCursor struct {
	cutoff    uint64 // unix ms: the sweep's
	boxesDone bool   // every mailbox was scanned; now the dedup records
	box       []byte // the mailbox to resume at
	dedup     []byte // the dedup record to resume at
}
