package home

import (
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Probe looks at a home from outside its API: what is committed, ignoring
// deferred values, and what the file wrote. It is for the tests of the
// layers above (crash, durability and write-cost tests), never for
// feature code. Its reads, too, wait for a write in progress.
type Probe struct{ h *Home }

// Probe returns a probe of h.
func (h *Home) Probe() Probe { return Probe{h} }

// Count is the number of committed keys in a bucket ("outbox", "seen",
// "received", ...); -1 for a bucket that does not exist.
func (p Probe) Count(bucket string) int {
	n := -1
	p.h.stateMu.RLock()
	defer p.h.stateMu.RUnlock()
	p.h.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// Session returns the committed session with d; nil if none.
func (p Probe) Session(d chat.Device) (*Session, error) {
	var s *Session
	p.h.stateMu.RLock()
	defer p.h.stateMu.RUnlock()
	err := p.h.db.View(func(tx *bolt.Tx) error {
		k := p.h.seal.index(bucketSessions, sessionKey(d))
		sealed := tx.Bucket(bucketSessions).Get(k)
		if sealed == nil {
			return nil
		}
		v, err := p.h.seal.open(bucketSessions, k, sealed)
		if err != nil {
			return err
		}
		s = new(Session)
		return transport.Unmarshal(v, s)
	})
	return s, err
}

// Deferred is the number of values waiting for the next write.
func (p Probe) Deferred() int {
	p.h.laterMu.Lock()
	defer p.h.laterMu.Unlock()
	return len(p.h.later)
}

// Crash forgets the deferred values, as the end of the process would.
func (p Probe) Crash() {
	p.h.laterMu.Lock()
	p.h.later = nil
	p.h.laterMu.Unlock()
}

// PageWrites is the number of pages the home's file has written.
func (p Probe) PageWrites() int64 {
	st := p.h.db.Stats()
	return st.TxStats.GetWrite()
}

// Check writes what is deferred and checks the file's consistency.
func (p Probe) Check() error {
	err := p.h.flushLater()
	p.h.stateMu.RLock()
	defer p.h.stateMu.RUnlock()
	p.h.db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			err = errors.Join(err, e)
		}
		return nil
	})
	return err
}
