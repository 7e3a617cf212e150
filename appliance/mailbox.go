package appliance

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// A mailbox entry value is the unix-ms store time as u64 BE, so expiry can
// read it without decoding, followed by the fields of mailboxEntry
// (docs/protocol.md §7).
type mailboxEntry struct {
	From       string
	FromDevice uint32
	MessageID  []byte
	Payload    []byte
}

func (m *mailboxEntry) MarshalFields(e *transport.Encoder) {
	e.String(1, m.From)
	e.Uint(2, uint64(m.FromDevice))
	e.BytesField(3, m.MessageID)
	e.BytesField(4, m.Payload)
}

func (m *mailboxEntry) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.From, err = f.String(transport.MaxUserName)
		case 2:
			m.FromDevice, err = f.Uint32()
		case 3:
			m.MessageID, err = f.Fixed(transport.MessageIDLen)
		case 4:
			m.Payload, err = f.Bytes(transport.MaxPayload)
		default:
			return f.Unknown()
		}
		return err
	})
}

// NoSuchUserError names a recipient that does not exist.
type NoSuchUserError struct{ User string }

func (e *NoSuchUserError) Error() string { return fmt.Sprintf("no such user %q", e.User) }

// DeviceMismatchError is returned when a Send's slots are not exactly the
// recipients' current devices; Devices lists the current ones of every
// mismatched recipient (protocol.md §6.1).
type DeviceMismatchError struct{ Devices []transport.DeviceInfo }

func (e *DeviceMismatchError) Error() string {
	return "message slots do not match the recipients' devices"
}

// storedEntry is one committed mailbox entry and its device.
type storedEntry struct {
	Device  string // deviceKey
	Deliver transport.Deliver
}

// stored is the outcome of storeMessage.
type stored struct {
	ServerTime int64
	Duplicate  bool
	Entries    []storedEntry // what each device's mailbox got, to push without re-reading
}

// storeMessage durably stores msg in every recipient device's mailbox, or
// recognises a resend by its message id and stores nothing (protocol.md §6.1).
func (s *Store) storeMessage(ctx context.Context, from string, fromDevice uint32, msg *transport.Send, now time.Time) (stored, error) {
	dedupKey := append(deviceKey(from, fromDevice), msg.MessageID...)
	var out stored
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = stored{}
		dedup := tx.Bucket(bucketDedup)
		if v := dedup.Get(dedupKey); len(v) == 8 {
			out.ServerTime, out.Duplicate = int64(binary.BigEndian.Uint64(v)), true
			return nil
		}
		if err := checkRecipients(tx, from, fromDevice, msg.Envelopes); err != nil {
			return reject(err)
		}
		ms := now.UnixMilli()
		out.ServerTime = ms
		boxes := tx.Bucket(bucketMailboxes)
		for i := range msg.Envelopes {
			env := &msg.Envelopes[i]
			k := deviceKey(env.User, env.Device)
			box := boxes.Bucket(k)
			if box == nil {
				return fmt.Errorf("mailbox of %s/%d is missing", env.User, env.Device)
			}
			seq, err := box.NextSequence()
			if err != nil {
				return err
			}
			entry := mailboxEntry{From: from, FromDevice: fromDevice, MessageID: msg.MessageID, Payload: env.Payload}
			v := binary.BigEndian.AppendUint64(make([]byte, 0, 64+len(env.Payload)), uint64(ms))
			v = append(v, transport.Marshal(&entry)...)
			if err := box.Put(u64(seq), v); err != nil {
				return err
			}
			out.Entries = append(out.Entries, storedEntry{Device: string(k), Deliver: transport.Deliver{
				Seq: seq, From: from, FromDevice: fromDevice, MessageID: msg.MessageID, ServerTime: ms, Payload: env.Payload,
			}})
		}
		return dedup.Put(dedupKey, u64(uint64(ms)))
	})
	return out, err
}

// checkSend checks a Send's recipients without storing anything.
func (s *Store) checkSend(from string, fromDevice uint32, envs []transport.Envelope) error {
	return s.db.View(func(tx *bolt.Tx) error { return checkRecipients(tx, from, fromDevice, envs) })
}

// checkRecipients verifies that envs hold exactly one slot for every current
// device of every recipient, the sending device excepted.
func checkRecipients(tx *bolt.Tx, from string, fromDevice uint32, envs []transport.Envelope) error {
	if len(envs) == 0 {
		return &transport.Error{Code: transport.ErrBadRequest, Message: "message has no recipients"}
	}
	given := make(map[string][]uint32)
	for _, env := range envs {
		given[env.User] = append(given[env.User], env.Device)
	}
	users := tx.Bucket(bucketUsers)
	var mismatch []transport.DeviceInfo
	for user, ids := range given {
		if users.Get([]byte(user)) == nil {
			return &NoSuchUserError{User: user}
		}
		current := activeDevicesTx(tx, user)
		if user == from {
			current = slices.DeleteFunc(current, func(d transport.DeviceInfo) bool { return d.ID == fromDevice })
		}
		slices.Sort(ids)
		match := len(ids) == len(current)
		for i := 0; match && i < len(ids); i++ {
			match = ids[i] == current[i].ID // devicesTx lists in id order
		}
		if !match {
			mismatch = append(mismatch, current...)
		}
	}
	if mismatch != nil {
		return &DeviceMismatchError{Devices: mismatch}
	}
	return nil
}

// pending returns up to limit entries of a device's mailbox after seq.
func (s *Store) pending(user string, id uint32, after uint64, limit int) []transport.Deliver {
	var out []transport.Deliver
	s.db.View(func(tx *bolt.Tx) error {
		box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(user, id))
		if box == nil {
			return nil
		}
		c := box.Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e mailboxEntry
			if len(k) != 8 || len(v) < 8 || transport.Unmarshal(v[8:], &e) != nil {
				continue // unreadable entries are left for expiry rather than wedging delivery
			}
			out = append(out, transport.Deliver{
				Seq:        binary.BigEndian.Uint64(k),
				From:       e.From,
				FromDevice: e.FromDevice,
				MessageID:  e.MessageID,
				ServerTime: int64(binary.BigEndian.Uint64(v[:8])),
				Payload:    e.Payload,
			})
		}
		return nil
	})
	return out
}

// ack deletes delivered entries from a device's mailbox, without waiting
// for the commit: a lost ack only means a redelivery, which the client
// recognises by message id.
func (s *Store) ack(user string, id uint32, seqs []uint64) {
	s.updateAsync(func(tx *bolt.Tx) error {
		box := tx.Bucket(bucketMailboxes).Bucket(deviceKey(user, id))
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

// expire deletes mailbox entries and dedup records stored before cutoff and
// returns how many mailbox entries it removed.
func (s *Store) expire(ctx context.Context, cutoff time.Time) (int, error) {
	limit := uint64(cutoff.UnixMilli())
	removed := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		removed = 0
		boxes := tx.Bucket(bucketMailboxes)
		var old [][2][]byte // (mailbox, seq) pairs; never delete while iterating
		err := boxes.ForEachBucket(func(name []byte) error {
			c := boxes.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(v) >= 8 && binary.BigEndian.Uint64(v[:8]) >= limit {
					break // entries are in store order
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
		dedup.ForEach(func(k, v []byte) error {
			if len(v) != 8 || binary.BigEndian.Uint64(v) < limit {
				stale = append(stale, k)
			}
			return nil
		})
		for _, k := range stale {
			if err := dedup.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return removed, err
}

// queueDepth counts the entries waiting in all mailboxes.
func (s *Store) queueDepth() int {
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		boxes := tx.Bucket(bucketMailboxes)
		return boxes.ForEachBucket(func(name []byte) error {
			n += boxes.Bucket(name).Stats().KeyN
			return nil
		})
	})
	return n
}
