package boltstore

import (
	"context"
	"crypto/ed25519"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// CreateAccount stores a new user with its first device (id 1).
func (s *Store) CreateAccount(ctx context.Context, a store.NewAccount) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if users.Get([]byte(a.Name)) != nil {
			return reject(store.ErrUserExists)
		}
		if a.Invite != "" {
			if err := useInviteTx(tx, a.Invite, a.Now); err != nil {
				return err
			}
		}
		ms := a.Now.UnixMilli()
		rec := userRecord{PasswordHash: a.PasswordHash, Created: ms, NextDevice: 2}
		if err := users.Put([]byte(a.Name), transport.Marshal(&rec)); err != nil {
			return err
		}
		return putDevice(tx, chat.DeviceOf(a.Name, 1), &deviceRecord{Key: a.DeviceKey, Created: ms, LastSeen: ms, Name: a.DeviceName})
	})
}

// AddDevice stores a new device for an existing user and returns it. The
// password was checked by the caller against phc; the write fails if the
// record changed meanwhile.
func (s *Store) AddDevice(ctx context.Context, user, phc string, key ed25519.PublicKey, name string, now time.Time) (chat.Device, error) {
	var d chat.Device
	err := s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		rec, ok := getUser(tx, user)
		if !ok || rec.PasswordHash != phc {
			return reject(store.ErrCredentialsChanged)
		}
		if n := countDevices(tx, user); n >= store.MaxDevices {
			return reject(store.ErrTooManyDevices)
		}
		d = chat.DeviceOf(user, rec.NextDevice)
		rec.NextDevice++
		if err := users.Put([]byte(user), transport.Marshal(&rec)); err != nil {
			return err
		}
		ms := now.UnixMilli()
		return putDevice(tx, d, &deviceRecord{Key: key, Created: ms, LastSeen: ms, Name: name})
	})
	return d, err
}

func putDevice(tx *bolt.Tx, d chat.Device, rec *deviceRecord) error {
	k := deviceKey(d)
	if err := tx.Bucket(bucketDevices).Put(k, transport.Marshal(rec)); err != nil {
		return err
	}
	_, err := tx.Bucket(bucketMailboxes).CreateBucketIfNotExists(k)
	return err
}

func countDevices(tx *bolt.Tx, user string) int {
	n := 0
	prefix := userPrefix(user)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// getUser reads a user's record; ok is false for none or a damaged one.
func getUser(tx *bolt.Tx, user string) (rec userRecord, ok bool) {
	v := tx.Bucket(bucketUsers).Get([]byte(user))
	return rec, v != nil && transport.Unmarshal(v, &rec) == nil
}

// Account returns a user's account.
func (s *Store) Account(name string) (store.Account, error) {
	var a store.Account
	err := s.view("Account", func(tx *bolt.Tx) error {
		rec, ok := getUser(tx, name)
		if !ok {
			return &store.NoSuchUserError{User: name}
		}
		a = store.Account{Name: name, PasswordHash: rec.PasswordHash, Created: ms(rec.Created), Identity: rec.Identity}
		return nil
	})
	return a, err
}

// ListAccounts lists the accounts by name, with their devices' count and
// latest last-seen time.
func (s *Store) ListAccounts() ([]store.AccountSummary, error) {
	var out []store.AccountSummary
	err := s.view("ListAccounts", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var r userRecord
			if transport.Unmarshal(v, &r) != nil {
				return nil
			}
			a := store.AccountSummary{Name: string(k), Created: time.UnixMilli(r.Created)}
			a.DeviceList = deviceRecordsTx(tx, a.Name)
			for _, d := range a.DeviceList {
				a.Devices++
				if d.LastSeen.After(a.LastSeen) {
					a.LastSeen = d.LastSeen
				}
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// DeleteAccount removes an account with its devices, mailboxes, prekeys,
// mute, device list and tombstones.
func (s *Store) DeleteAccount(ctx context.Context, user string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return reject(&store.NoSuchUserError{User: user})
		}
		prefix := userPrefix(user)
		var devs [][]byte
		c := tx.Bucket(bucketDevices).Cursor()
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			devs = append(devs, append([]byte(nil), k...))
		}
		for _, k := range devs {
			if err := deleteDeviceTx(tx, k); err != nil {
				return err
			}
		}
		var tombs [][]byte
		rc := tx.Bucket(bucketRevoked).Cursor()
		for k, _ := rc.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = rc.Next() {
			tombs = append(tombs, append([]byte(nil), k...))
		}
		for _, k := range tombs {
			if err := tx.Bucket(bucketRevoked).Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDeviceLists).Delete([]byte(user)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMutes).Delete([]byte(user)); err != nil {
			return err
		}
		// The groups it started stay (their other members still use
		// them) but no longer count against the name, which may be
		// registered again.
		var starts [][]byte
		sc := tx.Bucket(bucketGroupStarts).Cursor()
		for k, _ := sc.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = sc.Next() {
			starts = append(starts, append([]byte(nil), k...))
		}
		for _, k := range starts {
			if err := tx.Bucket(bucketGroupStarts).Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketUsers).Delete([]byte(user))
	})
}

// Device returns a device's record.
func (s *Store) Device(d chat.Device) (store.DeviceRecord, error) {
	var out store.DeviceRecord
	err := s.view("Device", func(tx *bolt.Tx) error {
		var rec deviceRecord
		v := tx.Bucket(bucketDevices).Get(deviceKey(d))
		if v == nil || transport.Unmarshal(v, &rec) != nil {
			return store.ErrNoSuchDevice
		}
		out = store.DeviceRecord{Device: d, Key: rec.Key, Created: ms(rec.Created), LastSeen: ms(rec.LastSeen), Name: rec.Name}
		return nil
	})
	return out, err
}

// ActiveDevices lists a user's devices that have published keys.
func (s *Store) ActiveDevices(user string) ([]store.DeviceKey, error) {
	var list []store.DeviceKey
	err := s.view("ActiveDevices", func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return &store.NoSuchUserError{User: user}
		}
		list = activeDevicesTx(tx, user)
		return nil
	})
	return list, err
}

// devicesTx lists a user's devices in id order (the keys' order).
func devicesTx(tx *bolt.Tx, user string) []store.DeviceKey {
	var list []store.DeviceKey
	prefix := userPrefix(user)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		d, ok := parseDeviceKey(k)
		var rec deviceRecord
		if !ok || transport.Unmarshal(v, &rec) != nil {
			continue
		}
		list = append(list, store.DeviceKey{Device: d, Key: rec.Key})
	}
	return list
}

// activeDevicesTx lists a user's devices that have published keys: the
// devices messages are encrypted to (protocol.md §6.1).
func activeDevicesTx(tx *bolt.Tx, user string) []store.DeviceKey {
	all := devicesTx(tx, user)
	out := all[:0]
	for _, d := range all {
		if publishedTx(tx, d.Device) {
			out = append(out, d)
		}
	}
	return out
}

// publishedTx reports whether device d has published keys: a signed
// prekey, which only an existing device can have. One lookup, where
// activeDevicesTx decodes every device of the account.
func publishedTx(tx *bolt.Tx, d chat.Device) bool {
	b := tx.Bucket(bucketPrekeys).Bucket(deviceKey(d))
	return b != nil && b.Get(keySPK) != nil
}

// TouchDevice records when a device was last seen, without waiting.
func (s *Store) TouchDevice(d chat.Device, now time.Time) {
	s.updateAsync(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		k := deviceKey(d)
		var rec deviceRecord
		if v := b.Get(k); v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(errors.New("device gone"))
		}
		rec.LastSeen = now.UnixMilli()
		return b.Put(k, transport.Marshal(&rec))
	})
}
