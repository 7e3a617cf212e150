package home

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

func seenKey(from string, device uint32, id []byte) []byte {
	k := make([]byte, 0, len(from)+5+len(id))
	k = append(k, from...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint32(k, device)
	return append(k, id...)
}

// WasSeen reports whether a message was already handed on.
func (h *Home) WasSeen(k MessageKey) bool {
	seen := false
	h.View(func(tx *Tx) error {
		seen = tx.tx.Bucket(bucketSeen).Get(h.seal.index(bucketSeen, k.seenKey())) != nil
		return nil
	})
	return seen
}

// MarkSeen durably records messages as handed on, drops their received
// records and forgets old seen records. also, if not nil, runs in the same
// transaction first: the front end's own record of the messages (the
// history) and the ack commit together.
func (h *Home) MarkSeen(msgs []MessageKey, now time.Time, also func(*Tx) error) error {
	received := make([]laterPut, len(msgs))
	for i, m := range msgs {
		received[i] = laterPut{bucket: bucketReceived, key: h.seal.index(bucketReceived, m.seenKey())}
	}
	return h.updateDeleting(received, func(btx *bolt.Tx) error {
		tx := &Tx{h: h, tx: btx}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		b := btx.Bucket(bucketSeen)
		for i, m := range msgs {
			k := h.seal.index(bucketSeen, m.seenKey())
			if err := tx.put(bucketSeen, k, binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))); err != nil {
				return err
			}
			if err := btx.Bucket(bucketReceived).Delete(received[i].key); err != nil {
				return err
			}
		}
		if h.pruned {
			return nil
		}
		h.pruned = true
		cutoff := uint64(now.Add(-seenTTL).UnixMilli())
		var old [][]byte
		b.ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketSeen, k, sealed)
			if err != nil || len(v) != 8 || binary.BigEndian.Uint64(v) < cutoff {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
