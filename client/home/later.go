package home

import (
	"bytes"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// Deferred writes of the receiving side. Decrypting a message advances its
// session and keeps the plaintext in a received record until the message is
// acked (the session layer, client/session.go); the ack then records it as
// seen and deletes the received record (seen.go, MarkSeen). Committed one after the other,
// that is two commits per message, and the received record is written only
// to be deleted. Instead decrypt leaves both in memory (Defer), and the
// home's next write transaction writes them first (Update): normally the
// ack's, so a message costs one commit and its received record, deleted in
// that same transaction, never reaches the disk.
//
// Nothing that leaves the process depends on a deferred write before it is
// committed: the Ack frame that lets the server delete a message is sent
// after MarkSeen's commit, and a Send frame after encryptTo's, and both are
// write transactions. If the process ends first, the home holds the session
// as it was before the message and the server, never acked, delivers the
// message again; it decrypts again to the same content, which is what the
// received record gives after a crash, too. A message that fails to decrypt
// defers nothing: the session is unchanged (Double Ratchet §3.5).
//
// Reads see deferred values first (Tx.get). Every write transaction of
// the home goes through Update, so no later transaction can be overwritten
// by an older deferred value: Trust, for instance, deletes sessions after
// the deferred ones were written, in the same transaction.
//
// No read runs at the same time as a write transaction: the only way to
// read the home is View, which takes stateMu for reading, and Update takes
// it for writing. Otherwise a read transaction begun before a commit could
// miss a deferred value that the commit wrote and then forgot, and read the
// older value from its snapshot instead: a session rolled back by one
// message, which then encrypts with keys the peer has left behind and fails
// to decrypt what the peer sends (found by the soak test,
// e2e/soak_test.go). Deferred values are only ever sessions and received
// records (Defer takes nothing else).

// laterValue is a value waiting for the next write transaction.
type laterValue struct {
	bucket, key []byte // key as stored (hidden, for hidden buckets)
	value       []byte // clear; sealed when written
	seq         uint64 // which putLater made it, to forget only what was written
}

// laterPut is one value of a putLater.
type laterPut struct {
	bucket, key, value []byte
}

func laterKey(bucket, key []byte) string {
	return string(bucket) + "\x00" + string(key)
}

// putLater defers puts, which later reach the disk together or not at all.
func (h *Home) putLater(puts ...laterPut) {
	h.laterMu.Lock()
	defer h.laterMu.Unlock()
	if h.later == nil {
		h.later = make(map[string]laterValue)
	}
	h.laterSeq++
	for _, p := range puts {
		h.later[laterKey(p.bucket, p.key)] = laterValue{bucket: p.bucket, key: p.key, value: p.value, seq: h.laterSeq}
	}
}

// getLater returns a copy of a deferred value.
func (h *Home) getLater(bucket, key []byte) ([]byte, bool) {
	h.laterMu.Lock()
	defer h.laterMu.Unlock()
	v, ok := h.later[laterKey(bucket, key)]
	if !ok {
		return nil, false
	}
	return bytes.Clone(v.value), true
}

// writeLaterTx writes the deferred values in tx, except those of deleted
// (which the caller deletes in tx), and forgets them once tx has committed,
// except those replaced meanwhile. On rollback they stay: until then reads
// still see them.
func (h *Home) writeLaterTx(tx *bolt.Tx, deleted []laterPut) error {
	skip := make(map[string]bool, len(deleted))
	for _, d := range deleted {
		skip[laterKey(d.bucket, d.key)] = true
	}
	h.laterMu.Lock()
	pending := make([]laterValue, 0, len(h.later))
	for _, v := range h.later {
		pending = append(pending, v)
	}
	h.laterMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	for _, v := range pending {
		if skip[laterKey(v.bucket, v.key)] {
			continue
		}
		if err := (&Tx{h: h, tx: tx}).put(v.bucket, v.key, v.value); err != nil {
			return err
		}
	}
	tx.OnCommit(func() {
		h.laterMu.Lock()
		defer h.laterMu.Unlock()
		for _, v := range pending {
			k := laterKey(v.bucket, v.key)
			if cur, ok := h.later[k]; ok && cur.seq == v.seq {
				delete(h.later, k)
			}
		}
	})
	return nil
}

// updateDeleting is Update for an fn that deletes the keys of deleted: the
// deferred values of those keys are not written, and are forgotten when
// the deletion commits.
func (h *Home) updateDeleting(deleted []laterPut, fn func(tx *bolt.Tx) error) (err error) {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer h.recoverDamage(&err)
	h.genDirty = false
	err = h.db.Update(func(tx *bolt.Tx) error {
		if err := h.writeLaterTx(tx, deleted); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		if !h.genDirty {
			return nil
		}
		return h.bumpGen(tx) // rollback.go
	})
	if err == nil && h.genDirty {
		h.writeGen()
	}
	return err
}

// flushLater commits the deferred values, if there are any.
func (h *Home) flushLater() error {
	h.laterMu.Lock()
	n := len(h.later)
	h.laterMu.Unlock()
	if n == 0 {
		return nil
	}
	return h.Update(func(*Tx) error { return nil })
}
