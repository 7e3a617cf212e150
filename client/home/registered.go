package home

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securechat/securechat/transport"
)

// Registered reports whether dir holds a home with an account, without
// writing to it: register and login refuse such a home before they ask
// anything (docs/design.md §7). Whether a profile is stored is visible
// without the passphrase; what it holds is sealed, so the profile is
// returned only when passphrase opens the home (nil otherwise, or when
// passphrase is empty). A home sealed but never registered holds no
// profile: it is not registered, and register or login may finish it.
func Registered(dir, passphrase string) (registered bool, p *Profile, err error) {
	path := filepath.Join(dir, homeDB)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 300 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return false, nil, fmt.Errorf("home %s: %w", dir, ErrHomeInUse)
	}
	if err != nil {
		return false, nil, fmt.Errorf("home %s: %w", dir, err)
	}
	defer db.Close()
	var sealed, kdf []byte
	err = viewDamaged(dir, db, func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			sealed = meta.Get(keyProfile)
			kdf = meta.Get(keyKDF)
		}
		sealed, kdf = bytesClone(sealed), bytesClone(kdf)
		return nil
	})
	if err != nil {
		return false, nil, err
	}
	if sealed == nil || passphrase == "" || kdf == nil {
		return sealed != nil, nil, nil
	}
	var rec kdfRecord
	if err := transport.Unmarshal(kdf, &rec); err != nil {
		return true, nil, nil
	}
	s, err := deriveSealer(passphrase, &rec, nil)
	if err != nil {
		return true, nil, nil
	}
	defer s.zero()
	if s.check(&rec) != nil {
		return true, nil, nil // another passphrase: the profile stays sealed
	}
	v, err := s.open(bucketMeta, keyProfile, sealed)
	if err != nil {
		return true, nil, nil
	}
	p = new(Profile)
	if transport.Unmarshal(v, p) != nil {
		return true, nil, nil
	}
	return true, p, nil
}

// bytesClone copies a value read in a bbolt transaction, which is valid
// only until the transaction ends; nil stays nil.
func bytesClone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
