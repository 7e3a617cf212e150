package boltstore

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Linked devices (protocol.md §5.4, §7): the account's signed device list
// in the devicelists bucket (name → u64 BE seq ‖ the list's bytes), and
// the tombstones of revoked devices in the revoked bucket (deviceKey →
// revokedRecord), at most store.MaxRevoked per account.

// revokedRecord is a revoked bucket value.
type revokedRecord struct {
	Key     []byte // the device's Ed25519 key
	Revoked int64  // unix ms
}

func (r *revokedRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, r.Key)
	e.Int(2, r.Revoked)
}

func (r *revokedRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Key, err = f.Fixed(ed25519.PublicKeySize)
		case 2:
			r.Revoked, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
}

// ReserveDevice takes the account's next device id.
func (s *Store) ReserveDevice(ctx context.Context, user string) (uint32, error) {
	var id uint32
	err := s.update(ctx, func(tx *bolt.Tx) error {
		rec, ok := getUser(tx, user)
		if !ok {
			return reject(&store.NoSuchUserError{User: user})
		}
		if countDevices(tx, user) >= store.MaxDevices {
			return reject(store.ErrTooManyDevices)
		}
		id = rec.NextDevice
		rec.NextDevice++
		return tx.Bucket(bucketUsers).Put([]byte(user), transport.Marshal(&rec))
	})
	return id, err
}

// DeviceList returns the account's stored signed list.
func (s *Store) DeviceList(user string) (store.SignedList, error) {
	var l store.SignedList
	err := s.view("DeviceList", func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return &store.NoSuchUserError{User: user}
		}
		var err error
		l, err = deviceListTx(tx, user)
		return err
	})
	return l, err
}

func deviceListTx(tx *bolt.Tx, user string) (store.SignedList, error) {
	v := tx.Bucket(bucketDeviceLists).Get([]byte(user))
	if v == nil {
		return store.SignedList{}, nil
	}
	if len(v) < 8 {
		return store.SignedList{}, fmt.Errorf("device list of %s: %w", user, store.ErrCorrupt)
	}
	return store.SignedList{Seq: binary.BigEndian.Uint64(v), Bytes: append([]byte(nil), v[8:]...)}, nil
}

// putListTx checks l against the stored list and the account's devices
// as they are in tx, and stores it. Every failure is a reject: it runs
// before anything of its write is written.
func putListTx(tx *bolt.Tx, user string, l store.NewList) error {
	old, err := deviceListTx(tx, user)
	if err != nil {
		return err
	}
	if l.Seq <= old.Seq {
		return reject(store.ErrStaleDeviceList)
	}
	for _, d := range l.Devices {
		var rec deviceRecord
		v := tx.Bucket(bucketDevices).Get(deviceKey(chat.DeviceOf(user, d.ID)))
		if v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(&store.DeviceListError{Why: fmt.Sprintf("names device %d, which the account does not have", d.ID)})
		}
		if !ed25519.PublicKey(rec.Key).Equal(d.Key) {
			return reject(&store.DeviceListError{Why: fmt.Sprintf("names device %d under another key than its own", d.ID)})
		}
	}
	val := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(l.Bytes)), l.Seq)
	return tx.Bucket(bucketDeviceLists).Put([]byte(user), append(val, l.Bytes...))
}

// PutDeviceList stores a signed list.
func (s *Store) PutDeviceList(ctx context.Context, user string, l store.NewList) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return reject(&store.NoSuchUserError{User: user})
		}
		return putListTx(tx, user, l)
	})
}

// LinkDevice adds a linked device and stores the list, in one commit.
func (s *Store) LinkDevice(ctx context.Context, dev store.NewDevice, l store.NewList) error {
	d := dev.Device
	return s.update(ctx, func(tx *bolt.Tx) error {
		rec, ok := getUser(tx, d.User)
		if !ok {
			return reject(&store.NoSuchUserError{User: d.User})
		}
		k := deviceKey(d)
		switch {
		case d.ID == 0 || d.ID >= rec.NextDevice:
			return reject(&store.DeviceListError{Why: fmt.Sprintf("names device %d, an id the server did not reserve", d.ID)})
		case tx.Bucket(bucketDevices).Get(k) != nil || tx.Bucket(bucketRevoked).Get(k) != nil:
			return reject(&store.DeviceListError{Why: fmt.Sprintf("names device %d as new, an id already used", d.ID)})
		case countDevices(tx, d.User) >= store.MaxDevices:
			return reject(store.ErrTooManyDevices)
		}
		named := false
		for _, ld := range l.Devices {
			if ld.ID == d.ID {
				named = ed25519.PublicKey(dev.Key).Equal(ld.Key)
			}
		}
		if !named {
			return reject(&store.DeviceListError{Why: fmt.Sprintf("does not name the new device %d under its key", d.ID)})
		}
		// The device first, so that the list's check finds it; a refused
		// list then rolls back the write (not a reject: the put happened).
		ms := dev.Now.UnixMilli()
		if err := putDevice(tx, d, &deviceRecord{Key: dev.Key, Created: ms, LastSeen: ms, Name: dev.Name}); err != nil {
			return err
		}
		return unrejected(putListTx(tx, d.User, l))
	})
}

// RevokeDevice removes a device, keeps its tombstone and stores the list,
// in one commit.
func (s *Store) RevokeDevice(ctx context.Context, d chat.Device, l store.NewList, now time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		k := deviceKey(d)
		var rec deviceRecord
		v := tx.Bucket(bucketDevices).Get(k)
		if v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(store.ErrNoSuchDevice)
		}
		for _, ld := range l.Devices {
			if ld.ID == d.ID {
				return reject(&store.DeviceListError{Why: fmt.Sprintf("still names device %d", d.ID)})
			}
		}
		if old, err := deviceListTx(tx, d.User); err != nil {
			return err
		} else if l.Seq <= old.Seq {
			return reject(store.ErrStaleDeviceList)
		}
		if err := deleteDeviceTx(tx, k); err != nil {
			return err
		}
		if err := putRevokedTx(tx, d, &revokedRecord{Key: rec.Key, Revoked: now.UnixMilli()}); err != nil {
			return err
		}
		return unrejected(putListTx(tx, d.User, l))
	})
}

// unrejected turns a reject into a plain error, for a check that runs
// after its write has written: the transaction must roll back (the writer
// runs the rest of the batch again without it).
func unrejected(err error) error {
	if rej, ok := err.(*rejectError); ok {
		return rej.err
	}
	return err
}

// putRevokedTx stores a tombstone, dropping the account's oldest beyond
// store.MaxRevoked.
func putRevokedTx(tx *bolt.Tx, d chat.Device, rec *revokedRecord) error {
	b := tx.Bucket(bucketRevoked)
	prefix := userPrefix(d.User)
	for {
		n := 0
		var oldest []byte
		var oldestAt int64
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			n++
			var r revokedRecord
			if transport.Unmarshal(v, &r) != nil || oldest == nil || r.Revoked < oldestAt {
				oldest, oldestAt = append([]byte(nil), k...), r.Revoked
			}
		}
		if n < store.MaxRevoked {
			break
		}
		if err := b.Delete(oldest); err != nil {
			return err
		}
	}
	return b.Put(deviceKey(d), transport.Marshal(rec))
}

// Revoked returns a revoked device's tombstone.
func (s *Store) Revoked(d chat.Device) (store.RevokedDevice, error) {
	var out store.RevokedDevice
	err := s.view("Revoked", func(tx *bolt.Tx) error {
		var rec revokedRecord
		v := tx.Bucket(bucketRevoked).Get(deviceKey(d))
		if v == nil || transport.Unmarshal(v, &rec) != nil {
			return store.ErrNotFound
		}
		out = store.RevokedDevice{Device: d, Key: rec.Key, Revoked: ms(rec.Revoked)}
		return nil
	})
	return out, err
}

// ListDevices lists every device of an account.
func (s *Store) ListDevices(user string) ([]store.DeviceRecord, error) {
	var out []store.DeviceRecord
	err := s.view("ListDevices", func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return &store.NoSuchUserError{User: user}
		}
		out = deviceRecordsTx(tx, user)
		return nil
	})
	return out, err
}

// RenameDevice sets the name of a device.
func (s *Store) RenameDevice(ctx context.Context, d chat.Device, name string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		k := deviceKey(d)
		var rec deviceRecord
		if v := b.Get(k); v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(store.ErrNoSuchDevice)
		}
		rec.Name = name
		return b.Put(k, transport.Marshal(&rec))
	})
}

// deviceRecordsTx reads an account's devices in id order.
func deviceRecordsTx(tx *bolt.Tx, user string) []store.DeviceRecord {
	var out []store.DeviceRecord
	prefix := userPrefix(user)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		d, ok := parseDeviceKey(k)
		var rec deviceRecord
		if !ok || transport.Unmarshal(v, &rec) != nil {
			continue
		}
		out = append(out, store.DeviceRecord{Device: d, Key: rec.Key, Created: ms(rec.Created), LastSeen: ms(rec.LastSeen), Name: rec.Name})
	}
	return out
}

// deleteDeviceTx removes a device with its mailbox (giving its usage and
// its group entries' references back) and its prekeys.
func deleteDeviceTx(tx *bolt.Tx, k []byte) error {
	if err := tx.Bucket(bucketDevices).Delete(k); err != nil {
		return err
	}
	if u := getUsage(tx, k); u.entries > 0 {
		if err := addUsage(tx, k, -int64(u.entries), -int64(u.bytes)); err != nil {
			return err
		}
	}
	// Its group messages' entries give up their references (groups.go);
	// at most mailbox_max_entries of them.
	if box := tx.Bucket(bucketMailboxes).Bucket(k); box != nil {
		err := box.ForEach(func(_, v []byte) error {
			if ref := refOf(v); ref != nil {
				return unref(tx, ref)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, b := range [][]byte{bucketMailboxes, bucketPrekeys} {
		if tx.Bucket(b).Bucket(k) != nil {
			if err := tx.Bucket(b).DeleteBucket(k); err != nil {
				return err
			}
		}
	}
	return nil
}
