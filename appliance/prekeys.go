package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Prekeys, docs/protocol.md §9.3. The server keeps each device's published
// elements in their e2ee encodings and assembles a bundle per fetch by
// concatenation (e2ee.PreKeyBundle's layout), so it never holds anything
// secret and never re-encodes what devices signed.
//
//	prekeys  deviceKey → bucket:
//	           "cert", "spk", "lastkem"  → element encodings
//	           "otk" ‖ u32 BE id         → one-time X25519 prekey encoding
//	           "kem" ‖ u32 BE id         → one-time ML-KEM prekey encoding
var bucketPrekeys = []byte("prekeys")

var (
	keyCert    = []byte("cert")
	keySPK     = []byte("spk")
	keyLastKEM = []byte("lastkem")
	prefixOTK  = []byte("otk")
	prefixKEM  = []byte("kem")
)

// keysLowMark is where the server tells a device to top up; maxStoredOneTime
// caps each kind of one-time prekey per device (the oldest go first).
const (
	keysLowMark      = 10
	maxStoredOneTime = 1000
)

var errIdentityMismatch = errors.New("device certificate is not signed by the account's identity key")

// publishKeys verifies and stores a device's keys (protocol.md §9.3). The
// first device to publish sets the account's identity key; every later
// publish, of any device, must be signed by that same key.
func (s *Store) publishKeys(ctx context.Context, user string, device uint32, m *transport.PublishKeys) error {
	up, err := parseUpload(m)
	if err != nil {
		return &transport.Error{Code: transport.ErrBadRequest, Message: "keys: " + err.Error()}
	}
	if err := up.Verify(user, device); err != nil {
		return &transport.Error{Code: transport.ErrBadRequest, Message: "keys do not verify: " + err.Error()}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var rec userRecord
		if v := users.Get([]byte(user)); v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(errBadCredentials)
		}
		var dev deviceRecord
		if v := tx.Bucket(bucketDevices).Get(deviceKey(user, device)); v == nil || transport.Unmarshal(v, &dev) != nil {
			return reject(errBadCredentials)
		}
		if !bytes.Equal(dev.Key, up.Certificate.AuthKey) {
			return reject(&transport.Error{Code: transport.ErrBadRequest, Message: "device certificate names another device key"})
		}
		switch {
		case rec.Identity == nil:
			rec.Identity = m.Identity
			if err := users.Put([]byte(user), transport.Marshal(&rec)); err != nil {
				return err
			}
		case !bytes.Equal(rec.Identity, m.Identity):
			return reject(&transport.Error{Code: transport.ErrBadRequest, Message: errIdentityMismatch.Error()})
		}
		b, err := tx.Bucket(bucketPrekeys).CreateBucketIfNotExists(deviceKey(user, device))
		if err != nil {
			return err
		}
		if m.Replace {
			if err := deletePrefix(b, prefixOTK); err != nil {
				return err
			}
			if err := deletePrefix(b, prefixKEM); err != nil {
				return err
			}
		}
		for _, kv := range [][2][]byte{{keyCert, m.Certificate}, {keySPK, m.SignedPreKey}, {keyLastKEM, m.LastResortKEM}} {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for i, k := range m.OneTime {
			if err := b.Put(idKey(prefixOTK, up.OneTimePreKeys[i].ID), k); err != nil {
				return err
			}
		}
		for i, k := range m.OneTimeKEM {
			if err := b.Put(idKey(prefixKEM, up.OneTimeKEMPreKeys[i].ID), k); err != nil {
				return err
			}
		}
		for _, prefix := range [][]byte{prefixOTK, prefixKEM} {
			for n := countPrefix(b, prefix); n > maxStoredOneTime; n-- {
				if _, err := takeFirst(b, prefix); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func parseUpload(m *transport.PublishKeys) (*e2ee.PreKeyUpload, error) {
	var up e2ee.PreKeyUpload
	var err error
	if up.IdentityKey, err = e2ee.ParseIdentityKey(m.Identity); err != nil {
		return nil, err
	}
	if err := up.Certificate.UnmarshalBinary(m.Certificate); err != nil {
		return nil, err
	}
	if err := up.SignedPreKey.UnmarshalBinary(m.SignedPreKey); err != nil {
		return nil, err
	}
	if err := up.LastResortKEMPreKey.UnmarshalBinary(m.LastResortKEM); err != nil {
		return nil, err
	}
	up.OneTimePreKeys = make([]e2ee.OneTimePreKeyPublic, len(m.OneTime))
	for i, k := range m.OneTime {
		if err := up.OneTimePreKeys[i].UnmarshalBinary(k); err != nil {
			return nil, err
		}
	}
	up.OneTimeKEMPreKeys = make([]e2ee.KEMPreKeyPublic, len(m.OneTimeKEM))
	for i, k := range m.OneTimeKEM {
		if err := up.OneTimeKEMPreKeys[i].UnmarshalBinary(k); err != nil {
			return nil, err
		}
	}
	return &up, nil
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

// keysLow names a device whose one-time prekeys ran low in a fetch.
type keysLow struct {
	Device string // deviceKey
	Count  transport.KeyCount
}

// fetchBundles assembles a bundle for each wanted device of user that has
// published keys, using up one one-time prekey of each kind (PQXDH §3.3).
func (s *Store) fetchBundles(ctx context.Context, user string, want []uint32) ([]transport.KeyBundle, []keysLow, error) {
	var out []transport.KeyBundle
	var low []keysLow
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out, low = nil, nil
		var rec userRecord
		if v := tx.Bucket(bucketUsers).Get([]byte(user)); v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(&NoSuchUserError{User: user})
		}
		for _, d := range activeDevicesTx(tx, user) {
			if len(want) > 0 && !containsID(want, d.ID) {
				continue
			}
			b := tx.Bucket(bucketPrekeys).Bucket(deviceKey(user, d.ID))
			otk, err := takeFirst(b, prefixOTK)
			if err != nil {
				return err
			}
			kem, err := takeFirst(b, prefixKEM)
			if err != nil {
				return err
			}
			if kem == nil {
				kem = b.Get(keyLastKEM)
			}
			// e2ee.PreKeyBundle encoding: version ‖ identity ‖ cert ‖ spk ‖ flag ‖ [otk] ‖ kem.
			bundle := []byte{1}
			bundle = append(bundle, rec.Identity...)
			bundle = append(bundle, b.Get(keyCert)...)
			bundle = append(bundle, b.Get(keySPK)...)
			if otk != nil {
				bundle = append(bundle, 1)
				bundle = append(bundle, otk...)
			} else {
				bundle = append(bundle, 0)
			}
			bundle = append(bundle, kem...)
			out = append(out, transport.KeyBundle{Device: d.ID, Bundle: bundle})
			count := transport.KeyCount{OneTime: countPrefix(b, prefixOTK), OneTimeKEM: countPrefix(b, prefixKEM), Published: true}
			if count.OneTime < keysLowMark || count.OneTimeKEM < keysLowMark {
				low = append(low, keysLow{Device: string(deviceKey(user, d.ID)), Count: count})
			}
		}
		return nil
	})
	return out, low, err
}

func containsID(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// keyCount reports a device's remaining one-time prekeys.
func (s *Store) keyCount(user string, device uint32) transport.KeyCount {
	var c transport.KeyCount
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrekeys).Bucket(deviceKey(user, device))
		if b == nil || b.Get(keySPK) == nil {
			return nil
		}
		c = transport.KeyCount{OneTime: countPrefix(b, prefixOTK), OneTimeKEM: countPrefix(b, prefixKEM), Published: true}
		return nil
	})
	return c
}

// identity returns a user's account identity key, nil if none was published.
func (s *Store) identity(user string) (key []byte, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		var rec userRecord
		v := tx.Bucket(bucketUsers).Get([]byte(user))
		if v == nil || transport.Unmarshal(v, &rec) != nil {
			return nil
		}
		ok = true
		key = rec.Identity
		return nil
	})
	return key, ok
}

// activeDevicesTx lists a user's devices that have published keys: the
// devices messages are encrypted to (protocol.md §6.1).
func activeDevicesTx(tx *bolt.Tx, user string) []transport.DeviceInfo {
	all := devicesTx(tx, user)
	pk := tx.Bucket(bucketPrekeys)
	out := all[:0]
	for _, d := range all {
		if b := pk.Bucket(deviceKey(user, d.ID)); b != nil && b.Get(keySPK) != nil {
			out = append(out, d)
		}
	}
	return out
}
