package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Prekeys, docs/protocol.md §9.3. The store keeps each device's published
// elements in their e2ee encodings, exactly as uploaded:
//
//	prekeys  deviceKey → bucket:
//	           "cert", "spk", "lastkem"  → element encodings
//	           "otk" ‖ u32 BE id         → one-time X25519 prekey encoding
//	           "kem" ‖ u32 BE id         → one-time ML-KEM prekey encoding
var (
	keyCert    = []byte("cert")
	keySPK     = []byte("spk")
	keyLastKEM = []byte("lastkem")
	prefixOTK  = []byte("otk")
	prefixKEM  = []byte("kem")
)

// PublishKeys stores a device's verified keys. The first device to
// publish sets the account's identity key; every later publish, of any
// device, must carry that same key.
func (s *Store) PublishKeys(ctx context.Context, d chat.Device, up store.KeyUpload) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		rec, ok := getUser(tx, d.User)
		if !ok {
			return reject(store.ErrNoSuchDevice)
		}
		var dev deviceRecord
		if v := tx.Bucket(bucketDevices).Get(deviceKey(d)); v == nil || transport.Unmarshal(v, &dev) != nil {
			return reject(store.ErrNoSuchDevice)
		}
		if !bytes.Equal(dev.Key, up.AuthKey) {
			return reject(store.ErrDeviceKeyMismatch)
		}
		switch {
		case rec.Identity == nil:
			rec.Identity = up.Identity
			if err := users.Put([]byte(d.User), transport.Marshal(&rec)); err != nil {
				return err
			}
		case !bytes.Equal(rec.Identity, up.Identity):
			return reject(store.ErrIdentityMismatch)
		}
		b, err := tx.Bucket(bucketPrekeys).CreateBucketIfNotExists(deviceKey(d))
		if err != nil {
			return err
		}
		if up.Replace {
			if err := deletePrefix(b, prefixOTK); err != nil {
				return err
			}
			if err := deletePrefix(b, prefixKEM); err != nil {
				return err
			}
		}
		for _, kv := range [][2][]byte{{keyCert, up.Certificate}, {keySPK, up.SignedPreKey}, {keyLastKEM, up.LastResortKEM}} {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for _, k := range up.OneTime {
			if err := b.Put(idKey(prefixOTK, k.ID), k.Key); err != nil {
				return err
			}
		}
		for _, k := range up.OneTimeKEM {
			if err := b.Put(idKey(prefixKEM, k.ID), k.Key); err != nil {
				return err
			}
		}
		for _, prefix := range [][]byte{prefixOTK, prefixKEM} {
			for n := countPrefix(b, prefix); n > store.MaxOneTimeKeys; n-- {
				if _, err := takeFirst(b, prefix); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func idKey(prefix []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), prefix...), id)
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// takeFirst removes and returns the first entry under prefix.
func takeFirst(b *bolt.Bucket, prefix []byte) ([]byte, error) {
	c := b.Cursor()
	k, v := c.Seek(prefix)
	if k == nil || !hasPrefix(k, prefix) {
		return nil, nil
	}
	v = append([]byte(nil), v...)
	return v, c.Delete()
}

func countPrefix(b *bolt.Bucket, prefix []byte) uint32 {
	var n uint32
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// FetchBundles hands out a bundle for each wanted device of user that has
// published keys, using up one one-time prekey of each kind (PQXDH §3.3).
func (s *Store) FetchBundles(ctx context.Context, user string, want []uint32) ([]store.Bundle, error) {
	var out []store.Bundle
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = nil
		rec, ok := getUser(tx, user)
		if !ok {
			return reject(&store.NoSuchUserError{User: user})
		}
		for _, d := range activeDevicesTx(tx, user) {
			if len(want) > 0 && !slices.Contains(want, d.Device.ID) {
				continue
			}
			b := tx.Bucket(bucketPrekeys).Bucket(deviceKey(d.Device))
			otk, err := takeFirst(b, prefixOTK)
			if err != nil {
				return err
			}
			kem, err := takeFirst(b, prefixKEM)
			if err != nil {
				return err
			}
			if kem == nil {
				kem = bytes.Clone(b.Get(keyLastKEM))
			}
			out = append(out, store.Bundle{
				Device:       d.Device.ID,
				Identity:     bytes.Clone(rec.Identity),
				Certificate:  bytes.Clone(b.Get(keyCert)),
				SignedPreKey: bytes.Clone(b.Get(keySPK)),
				OneTime:      otk,
				KEM:          kem,
				Left:         store.KeyCount{OneTime: countPrefix(b, prefixOTK), OneTimeKEM: countPrefix(b, prefixKEM), Published: true},
			})
		}
		return nil
	})
	return out, err
}

// KeyCount reports a device's remaining one-time prekeys.
func (s *Store) KeyCount(d chat.Device) (store.KeyCount, error) {
	var c store.KeyCount
	err := s.view("KeyCount", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrekeys).Bucket(deviceKey(d))
		if b == nil || b.Get(keySPK) == nil {
			return nil
		}
		c = store.KeyCount{OneTime: countPrefix(b, prefixOTK), OneTimeKEM: countPrefix(b, prefixKEM), Published: true}
		return nil
	})
	return c, err
}

// Identity returns a user's account identity key, nil if none was published.
func (s *Store) Identity(user string) ([]byte, error) {
	var key []byte
	err := s.view("Identity", func(tx *bolt.Tx) error {
		rec, ok := getUser(tx, user)
		if !ok {
			return &store.NoSuchUserError{User: user}
		}
		key = rec.Identity
		return nil
	})
	return key, err
}
