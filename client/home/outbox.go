package home

import (
	"fmt"
	"strings"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// convName is a conversation as the home stores it: a peer by its user
// name alone, as before groups existed, so that existing homes read the
// same; a group by its chat.Conversation key ("g:id"), which no user name
// can be.
func convName(c chat.Conversation) string {
	if c.IsGroup() {
		return c.Key()
	}
	return c.ID()
}

// parseConvName reads exactly what convName writes: "g:" and a group's id,
// or a user name, which holds no ':'.
func parseConvName(s string) (chat.Conversation, error) {
	if id, ok := strings.CutPrefix(s, "g:"); ok && id != "" {
		return chat.Group(id), nil
	}
	if s == "" || strings.Contains(s, ":") {
		return chat.Conversation{}, fmt.Errorf("conversation name %q names no one", s)
	}
	return chat.Peer(s), nil
}

// maxConvName bounds a stored conversation name: a user name, or a group's
// key.
const maxConvName = transport.MaxText

// OutboxEntry is what is needed to send a message again, unchanged, or
// rebuilt for a changed device list.
type OutboxEntry struct {
	To      chat.Conversation
	Content []byte // marshalled Content
	Send    []byte // marshalled transport.Send as last transmitted
	// Keep: once stored, the message goes into the sender's history
	// (SendText's messages), also when a FlushOutbox resends it.
	Keep bool
}

func (o *OutboxEntry) MarshalFields(e *transport.Encoder) {
	if !o.To.IsZero() {
		e.String(1, convName(o.To))
	}
	e.BytesField(2, o.Content)
	e.BytesField(3, o.Send)
	e.Bool(4, o.Keep)
}

func (o *OutboxEntry) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			var s string
			if s, err = f.String(maxConvName); err == nil {
				o.To, err = parseConvName(s)
			}
		case 2:
			o.Content, err = f.Bytes(transport.MaxPayload)
		case 3:
			o.Send, err = f.Bytes(transport.DefaultMaxFrame)
		case 4:
			o.Keep, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// OutboxItem is an outbox entry under its message id.
type OutboxItem struct {
	ID    []byte
	Entry *OutboxEntry
}

// PutOutbox stores a Send transmitted (or about to be) and not yet
// confirmed.
func (t *Tx) PutOutbox(it *OutboxItem) error {
	return t.put(bucketOutbox, it.ID, transport.Marshal(it.Entry))
}

// DeleteOutbox drops a message from the outbox.
func (t *Tx) DeleteOutbox(id []byte) error {
	return t.tx.Bucket(bucketOutbox).Delete(id)
}

// Outbox lists the outbox, in message id order. Entries that do not open
// are left out.
func (h *Home) Outbox() ([]OutboxItem, error) {
	var items []OutboxItem
	err := h.View(func(tx *Tx) error {
		return tx.tx.Bucket(bucketOutbox).ForEach(func(k, sealed []byte) error {
			it := OutboxItem{ID: append([]byte(nil), k...), Entry: new(OutboxEntry)}
			v, err := h.seal.open(bucketOutbox, k, sealed)
			if err == nil && transport.Unmarshal(v, it.Entry) == nil {
				items = append(items, it)
			}
			return nil
		})
	})
	return items, err
}

// DeleteOutbox drops a message from the outbox.
func (h *Home) DeleteOutbox(id []byte) error {
	return h.Update(func(tx *Tx) error { return tx.DeleteOutbox(id) })
}

// Queued is a message the engine queued for sending, in order
// (the pending bucket, history.go).
type Queued struct {
	ID      []byte
	To      chat.Conversation
	Content []byte // marshalled Content
	History bool   // an entry of the history tracks it (texts, not receipts)
	// KeyAnswer, when not 0, is the device of To (a peer) whose key
	// request this answers: Content names the group, and the chain is
	// given when the answer is sent, to that account's devices, each from
	// its own position (protocol.md §8.3).
	KeyAnswer uint32
}

func (m *Queued) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.ID)
	if !m.To.IsZero() {
		e.String(2, convName(m.To))
	}
	e.BytesField(3, m.Content)
	e.Bool(4, m.History)
	e.Uint(5, uint64(m.KeyAnswer))
}

func (m *Queued) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(transport.MessageIDLen)
		case 2:
			var s string
			if s, err = f.String(maxConvName); err == nil {
				m.To, err = parseConvName(s)
			}
		case 3:
			m.Content, err = f.Bytes(transport.MaxPayload)
		case 4:
			m.History, err = f.Bool()
		case 5:
			m.KeyAnswer, err = f.Uint32()
		default:
			return f.Unknown()
		}
		return err
	})
}

// QueueKey is a queued message's place in the queue.
type QueueKey uint64

// Enqueue appends a message to the send queue.
func (t *Tx) Enqueue(q *Queued) error {
	b := t.tx.Bucket(bucketPending)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return t.put(bucketPending, u64key(seq), transport.Marshal(q))
}

// Dequeue removes a message from the send queue.
func (t *Tx) Dequeue(k QueueKey) error {
	return t.tx.Bucket(bucketPending).Delete(u64key(uint64(k)))
}

// NextQueued returns the oldest queued message; ok is false when the queue
// is empty.
func (h *Home) NextQueued() (k QueueKey, q *Queued, ok bool, err error) {
	err = h.View(func(tx *Tx) error {
		key, sealed := tx.tx.Bucket(bucketPending).Cursor().First()
		if key == nil {
			return nil
		}
		if len(key) != 8 {
			return fmt.Errorf("home %s: a queued message has a damaged key", h.Dir)
		}
		v, err := h.seal.open(bucketPending, key, sealed)
		if err != nil {
			return err
		}
		q = new(Queued)
		k, ok = QueueKey(beU64(key)), true
		return transport.Unmarshal(v, q)
	})
	return k, q, ok, err
}

func u64key(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func beU64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
