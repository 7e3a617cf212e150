package home

import (
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Tx is one unit of work on the home, a read (View) or a write (Update):
// what its repository methods read is one consistent state, and what they
// write commits together or not at all. The bbolt transaction stays inside;
// a Tx is valid only during the function it is passed to.
type Tx struct {
	h  *Home
	tx *bolt.Tx
}

// View runs fn in a read of the home. Every read waits for a write in
// progress and keeps writes out until it ends: a read that began before a
// commit could otherwise miss a deferred value that the commit wrote and
// then forgot, and read the older value from its snapshot (later.go). fn
// must not start another View or an Update.
func (h *Home) View(fn func(*Tx) error) (err error) {
	h.stateMu.RLock()
	defer h.stateMu.RUnlock()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer h.recoverDamage(&err)
	return h.db.View(func(tx *bolt.Tx) error { return fn(&Tx{h: h, tx: tx}) })
}

// Update runs fn in a write transaction, after the deferred values
// (later.go), which it therefore never overwrites with older ones. Every
// write of the home goes through it.
func (h *Home) Update(fn func(*Tx) error) error {
	return h.updateDeleting(nil, func(tx *bolt.Tx) error { return fn(&Tx{h: h, tx: tx}) })
}

// get reads and opens a sealed value, or a deferred one (later.go); nil if
// absent.
func (t *Tx) get(bucket, key []byte) ([]byte, error) {
	if v, ok := t.h.getLater(bucket, key); ok {
		return v, nil
	}
	v := t.tx.Bucket(bucket).Get(key)
	if v == nil {
		return nil, nil
	}
	return t.h.seal.open(bucket, key, v)
}

// put seals and stores a value.
func (t *Tx) put(bucket, key, value []byte) error {
	sealed, err := t.h.seal.seal(bucket, key, value)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucket).Put(key, sealed)
}

// getRecord opens a sealed record stored under a hidden key.
func (t *Tx) getRecord(bucket, clearKey []byte, m transport.Unmarshaler) (bool, error) {
	v, err := t.get(bucket, t.h.seal.index(bucket, clearKey))
	if err != nil || v == nil {
		return false, err
	}
	return true, transport.Unmarshal(v, m)
}

func (t *Tx) putRecord(bucket, clearKey []byte, m transport.Marshaler) error {
	return t.put(bucket, t.h.seal.index(bucket, clearKey), transport.Marshal(m))
}

// Profile returns the home's identity, or ErrNotRegistered.
func (t *Tx) Profile() (*Profile, error) {
	v, err := t.get(bucketMeta, keyProfile)
	if err != nil {
		return nil, fmt.Errorf("home %s: %w", t.h.Dir, err)
	}
	if v == nil {
		return nil, ErrNotRegistered
	}
	p := new(Profile)
	if err := transport.Unmarshal(v, p); err != nil {
		return nil, fmt.Errorf("home %s: profile is corrupt: %w", t.h.Dir, err)
	}
	return p, nil
}

// PutProfile stores the home's identity (with its device keys).
func (t *Tx) PutProfile(p *Profile) error {
	return t.put(bucketMeta, keyProfile, transport.Marshal(p))
}

var keySettings = []byte("settings")

// Settings are the front end's choices, kept across runs.
type Settings struct {
	SendTyping   bool // typing signals go out
	SendReceipts bool // read receipts go out (delivery receipts always do)
}

// Settings reads the front-end settings; both are on unless turned off.
func (t *Tx) Settings() Settings {
	s := Settings{SendTyping: true, SendReceipts: true}
	if v, err := t.get(bucketMeta, keySettings); err == nil && len(v) == 2 {
		s.SendTyping, s.SendReceipts = v[0] == 1, v[1] == 1
	}
	return s
}

// PutSettings stores the front-end settings.
func (t *Tx) PutSettings(s Settings) error {
	b := func(v bool) byte {
		if v {
			return 1
		}
		return 0
	}
	return t.put(bucketMeta, keySettings, []byte{b(s.SendTyping), b(s.SendReceipts)})
}

// Settings reads the front-end settings.
func (h *Home) Settings() Settings {
	var s Settings
	h.View(func(tx *Tx) error { s = tx.Settings(); return nil })
	return s
}

// SaveSettings stores the front-end settings.
func (h *Home) SaveSettings(s Settings) error {
	return h.Update(func(tx *Tx) error { return tx.PutSettings(s) })
}
