package appliance

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"

	"github.com/securechat/securechat/transport"
)

// MinPassword is the shortest password accepted at registration.
const MinPassword = 8

// argon2id parameters: OWASP's recommended minimum (19 MiB, t=2, p=1), which
// a Raspberry Pi computes in well under a second. They are stored with each
// hash, so raising them later needs no migration.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// userRecord is a users bucket value.
type userRecord struct {
	PasswordHash string // PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
	Created      int64  // unix ms
	NextDevice   uint32
	Identity     []byte // account identity key (e2ee), set by the first device to publish keys
}

func (r *userRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.PasswordHash)
	e.Int(2, r.Created)
	e.Uint(3, uint64(r.NextDevice))
	e.BytesField(4, r.Identity)
}

func (r *userRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.PasswordHash, err = f.String(512)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.NextDevice, err = f.Uint32()
		case 4:
			r.Identity, err = f.Fixed(transport.IdentityKeyLen)
		default:
			return f.Unknown()
		}
		return err
	})
}

// deviceRecord is a devices bucket value.
type deviceRecord struct {
	Key      []byte // Ed25519 public key
	Created  int64
	LastSeen int64
	Name     string
}

func (r *deviceRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, r.Key)
	e.Int(2, r.Created)
	e.Int(3, r.LastSeen)
	e.String(4, r.Name)
}

func (r *deviceRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Key, err = f.Fixed(ed25519.PublicKeySize)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.LastSeen, err = f.Int()
		case 4:
			r.Name, err = f.String(transport.MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
}

// hashPassword returns the PHC string of an argon2id hash of password.
func hashPassword(rand io.Reader, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// checkPassword reports whether password matches the PHC string phc.
func checkPassword(phc, password string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	if m > 256<<10 || t > 10 || p == 0 || p > 16 {
		return false // refuse to burn resources on a corrupt record
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when a login names an unknown user, so that
// the answer takes as long as for a known one.
var dummyHash = sync.OnceValue(func() string {
	h, _ := hashPassword(strings.NewReader("securechat-dummy-salt"), "securechat-dummy-password")
	return h
})

// errUserExists and friends are the account errors handlers map to wire codes.
var (
	errUserExists     = errors.New("user name is taken")
	errBadCredentials = errors.New("invalid user name or password")
	errTooManyDevices = fmt.Errorf("the account already has %d devices", transport.MaxDevices)
)

// createAccount stores a new user with its first device (id 1).
func (s *Store) createAccount(ctx context.Context, user, phc string, key []byte, deviceName, invite string, now time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if users.Get([]byte(user)) != nil {
			return reject(errUserExists)
		}
		if invite != "" {
			if err := checkInviteTx(tx, invite, now); err != nil {
				return reject(err)
			}
			if err := useInviteTx(tx, invite, now); err != nil {
				return err
			}
		}
		ms := now.UnixMilli()
		rec := userRecord{PasswordHash: phc, Created: ms, NextDevice: 2}
		if err := users.Put([]byte(user), transport.Marshal(&rec)); err != nil {
			return err
		}
		return putDevice(tx, user, 1, &deviceRecord{Key: key, Created: ms, LastSeen: ms, Name: deviceName})
	})
}

// addDevice stores a new device for an existing user and returns its id.
// The password was checked by the caller against phc; the write fails if
// the record changed meanwhile.
func (s *Store) addDevice(ctx context.Context, user, phc string, key []byte, deviceName string, now time.Time) (uint32, error) {
	var id uint32
	err := s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		v := users.Get([]byte(user))
		var rec userRecord
		if v == nil || transport.Unmarshal(v, &rec) != nil || rec.PasswordHash != phc {
			return reject(errBadCredentials)
		}
		if n := countDevices(tx, user); n >= transport.MaxDevices {
			return reject(errTooManyDevices)
		}
		id = rec.NextDevice
		rec.NextDevice++
		if err := users.Put([]byte(user), transport.Marshal(&rec)); err != nil {
			return err
		}
		ms := now.UnixMilli()
		return putDevice(tx, user, id, &deviceRecord{Key: key, Created: ms, LastSeen: ms, Name: deviceName})
	})
	return id, err
}

func putDevice(tx *bolt.Tx, user string, id uint32, rec *deviceRecord) error {
	k := deviceKey(user, id)
	if err := tx.Bucket(bucketDevices).Put(k, transport.Marshal(rec)); err != nil {
		return err
	}
	_, err := tx.Bucket(bucketMailboxes).CreateBucketIfNotExists(k)
	return err
}

func countDevices(tx *bolt.Tx, user string) int {
	n := 0
	prefix := append([]byte(user), 0)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// lookupUser returns a user's record, or ok false.
func (s *Store) lookupUser(user string) (rec userRecord, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get([]byte(user))
		ok = v != nil && transport.Unmarshal(v, &rec) == nil
		return nil
	})
	return rec, ok
}

// lookupDevice returns a device's record, or ok false.
func (s *Store) lookupDevice(user string, id uint32) (rec deviceRecord, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDevices).Get(deviceKey(user, id))
		ok = v != nil && transport.Unmarshal(v, &rec) == nil
		return nil
	})
	return rec, ok
}

// devices lists a user's devices; ok is false for an unknown user.
func (s *Store) devices(user string) (list []transport.DeviceInfo, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return nil
		}
		ok = true
		list = activeDevicesTx(tx, user)
		return nil
	})
	return list, ok
}

func devicesTx(tx *bolt.Tx, user string) []transport.DeviceInfo {
	var list []transport.DeviceInfo
	prefix := append([]byte(user), 0)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		_, id, ok := parseDeviceKey(k)
		var rec deviceRecord
		if !ok || transport.Unmarshal(v, &rec) != nil {
			continue
		}
		list = append(list, transport.DeviceInfo{User: user, ID: id, Key: rec.Key})
	}
	return list
}

// touchDevice records when a device was last seen, without waiting.
func (s *Store) touchDevice(user string, id uint32, now time.Time) {
	s.updateAsync(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		k := deviceKey(user, id)
		var rec deviceRecord
		if v := b.Get(k); v == nil || transport.Unmarshal(v, &rec) != nil {
			return reject(errors.New("device gone"))
		}
		rec.LastSeen = now.UnixMilli()
		return b.Put(k, transport.Marshal(&rec))
	})
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
