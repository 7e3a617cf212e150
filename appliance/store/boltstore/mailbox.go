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
// A group message's payload is stored once and each mailbox gets an entry
// referring to it (protocol.md §6.7, groups.go).
// Every refusal (recipients, quotas, groups) happens before the first
// write, as a reject, so a bad Append never aborts the others of its group
// commit.
func (s *Store) Append(ctx context.Context, m store.Message) (store.Appended, error) {
	dedupKey := sharedKey(m.From, m.ID)
	group := m.Shared != nil
	to := make([]store.DeviceKey, len(m.Envelopes))
	devs := make([]chat.Device, len(m.Envelopes))
	for i, e := range m.Envelopes {
		to[i] = store.DeviceKey{Device: e.To, Key: e.Key}
		devs[i] = e.To
	}
	ms := m.Time.UnixMilli()
	values := make([][]byte, len(m.Envelopes))
	sizes := make([]int, len(m.Envelopes))
	var ref []byte // a group message's entry, the same in every mailbox
	if group {
		ref = entryValue(&mailboxEntry{From: m.From.User, FromDevice: m.From.ID, MessageID: m.ID, Group: m.Group}, ms)
	}
	for i, env := range m.Envelopes {
		if group {
			values[i] = ref
		} else {
			values[i] = entryValue(&mailboxEntry{From: m.From.User, FromDevice: m.From.ID, MessageID: m.ID, Payload: env.Payload}, ms)
		}
		sizes[i] = len(values[i])
	}
	members := 0
	if group {
		members = groupMembers(m.From, m.Envelopes)
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
		shared := 0
		if group {
			if tx.Bucket(bucketShared).Get(dedupKey) != nil {
				// Its dedup record expired while entries referring to it
				// did not: never, as both expire by the same time.
				return reject(fmt.Errorf("shared payload %x without its resend record: %w", dedupKey, store.ErrCorrupt))
			}
			if err := checkGroupStart(tx, m.From.User, m.Group, m.MaxGroups); err != nil {
				return reject(err)
			}
			shared = len(m.Shared)
		}
		if err := s.checkQuota(tx, devs, sizes, shared); err != nil {
			return reject(err)
		}
		out.Time = time.UnixMilli(ms)
		for i, env := range m.Envelopes {
			seq, err := appendValue(tx, env.To, values[i])
			if err != nil {
				return err
			}
			e := store.Entry{Seq: seq, From: m.From, MessageID: m.ID, Time: out.Time, Payload: env.Payload}
			if group {
				e.Payload, e.Group, e.Shared = nil, m.Group, m.Shared
			}
			out.Entries = append(out.Entries, store.Delivery{To: env.To, Entry: e})
		}
		if group {
			if err := putShared(tx, dedupKey, m.Shared, len(m.Envelopes)); err != nil {
				return err
			}
			if err := recordGroupMessage(tx, m.From, m.Group, members, ms); err != nil {
				return err
			}
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
	return s.view("CheckRecipients", func(tx *bolt.Tx) error { return checkRecipients(tx, from, to) })
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
	err := s.view("Pending", func(tx *bolt.Tx) error {
		box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(d))
		if box == nil {
			return nil
		}
		shared := tx.Bucket(bucketShared)
		c := box.Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			e, ok := decodeEntry(k, v)
			if !ok {
				continue // unreadable entries are left for expiry rather than wedging delivery
			}
			if e.Group != nil {
				// A group message's entry: its payload is stored once
				// (groups.go). A copy, as the entry outlives the
				// transaction.
				p := shared.Get(sharedKey(e.From, e.MessageID))
				if p == nil {
					continue // Verify reports it
				}
				e.Shared = slices.Clone(p)
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
		Group:     e.Group,
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
		for _, seq := range seqs {
			if err := removeEntry(tx, box, k, u64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Expire deletes up to limit mailbox entries and dedup records stored
// before cutoff, in one commit. One call's work is bounded too: it takes at
// most expireSteps(limit) cursor steps, then says more and resumes where it
// stopped on the next call with the same cutoff (a new cutoff is a new
// sweep and starts over). Mailboxes first, each from its oldest entry
// (entries are in store order, so the scan of a mailbox stops at its first
// unexpired entry), then the dedup records, which are in no time order,
// then the records of groups whose last message is older than cutoff. An
// expired group message's entry gives up its reference to the shared
// payload, and the last one frees it (groups.go).
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
		type old struct{ box, seq []byte }
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
					olds = append(olds, old{slices.Clone(k), slices.Clone(ek)})
				}
			}
			if k != nil {
				next.box, more = slices.Clone(k), true
			} else {
				next.box, next.boxesDone = nil, true
			}
		}
		for _, o := range olds {
			if err := removeEntry(tx, boxes.Bucket(o.box), o.box, o.seq); err != nil {
				return err
			}
		}
		removed = len(olds)
		if !next.boxesDone {
			return nil
		}
		if !next.dedupDone {
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
				next.dedup, next.dedupDone = nil, true
			}
			for _, k := range stale {
				if err := dedup.Delete(k); err != nil {
					return err
				}
			}
			if !next.dedupDone {
				return nil
			}
		}
		// Then the records of groups silent since before the cutoff.
		if steps >= budget {
			more = true
			return nil
		}
		after, n, err := expireGroups(tx, before, next.group, budget-steps)
		if err != nil {
			return err
		}
		steps += n
		if after != nil {
			next.group, more = after, true
		} else {
			next = expireCursor{cutoff: before} // the sweep is done
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
	dedupDone bool   // and every dedup record; now the group records
	box       []byte // the mailbox to resume at
	dedup     []byte // the dedup record to resume at
	group     []byte // the group record to resume at
}
