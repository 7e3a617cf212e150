package client

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// History lives in the sealed home (docs/protocol.md §10):
//
//	convs     index(name)                    → convRecord
//	history   index(name)[:16] ‖ u64 BE seq  → historyRecord
//	msgindex  index(message id)              → (conversation, seq)
//	pending   u64 BE seq                     → pendingEntry: queued sends, in order
var (
	bucketConvs    = []byte("convs")
	bucketHistory  = []byte("history")
	bucketMsgIndex = []byte("msgindex")
	bucketPending  = []byte("pending")
)

type convRecord struct {
	Name         string
	Unread       uint32
	LastActivity int64
	LastText     string
	NextSeq      uint64
}

func (m *convRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Name)
	e.Uint(2, uint64(m.Unread))
	e.Int(3, m.LastActivity)
	e.String(4, m.LastText)
	e.Uint(5, m.NextSeq)
}

func (m *convRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Name, err = f.String(transport.MaxUserName)
		case 2:
			m.Unread, err = f.Uint32()
		case 3:
			m.LastActivity, err = f.Int()
		case 4:
			m.LastText, err = f.String(256)
		case 5:
			m.NextSeq, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
}

type historyRecord struct {
	ID       []byte
	From     string
	Outgoing bool
	Kind     string
	Text     string
	Time     int64
	State    uint32
	Error    string
}

func (m *historyRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.ID)
	e.String(2, m.From)
	e.Bool(3, m.Outgoing)
	e.String(4, m.Kind)
	e.String(5, m.Text)
	e.Int(6, m.Time)
	e.Uint(7, uint64(m.State))
	e.String(8, m.Error)
}

func (m *historyRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(transport.MessageIDLen)
		case 2:
			m.From, err = f.String(transport.MaxUserName)
		case 3:
			m.Outgoing, err = f.Bool()
		case 4:
			m.Kind, err = f.String(16)
		case 5:
			m.Text, err = f.String(MaxTextLen)
		case 6:
			m.Time, err = f.Int()
		case 7:
			m.State, err = f.Uint32()
		case 8:
			m.Error, err = f.String(transport.MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
}

type msgRef struct {
	Conv string
	Seq  uint64
}

func (m *msgRef) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Conv)
	e.Uint(2, m.Seq)
}

func (m *msgRef) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Conv, err = f.String(transport.MaxUserName)
		case 2:
			m.Seq, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
}

func (h *Home) historyKey(conv string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(h.historyPrefix(conv), seq)
}

func (h *Home) historyPrefix(conv string) []byte {
	return h.seal.index(bucketHistory, []byte(conv))[:16]
}

func (r *historyRecord) entry(conv string) HistoryEntry {
	return HistoryEntry{
		ID: hex.EncodeToString(r.ID), Conversation: conv, From: r.From, Outgoing: r.Outgoing,
		Kind: r.Kind, Text: r.Text, Time: time.UnixMilli(r.Time), State: DeliveryState(r.State), Error: r.Error,
	}
}

// addHistory appends an entry to conv's history, inside tx.
func (h *Home) addHistory(tx *bolt.Tx, conv string, r *historyRecord, unread bool) (HistoryEntry, error) {
	var cr convRecord
	if _, err := h.getRecord(tx, bucketConvs, []byte(conv), &cr); err != nil {
		return HistoryEntry{}, err
	}
	cr.Name = conv
	cr.NextSeq++
	seq := cr.NextSeq
	if unread {
		cr.Unread++
	}
	cr.LastActivity = r.Time
	cr.LastText = r.Text
	if len(cr.LastText) > 200 {
		cr.LastText = cr.LastText[:200]
	}
	if err := h.putRecord(tx, bucketConvs, []byte(conv), &cr); err != nil {
		return HistoryEntry{}, err
	}
	if err := h.put(tx, bucketHistory, h.historyKey(conv, seq), transport.Marshal(r)); err != nil {
		return HistoryEntry{}, err
	}
	if err := h.putRecord(tx, bucketMsgIndex, r.ID, &msgRef{Conv: conv, Seq: seq}); err != nil {
		return HistoryEntry{}, err
	}
	return r.entry(conv), nil
}

// advanceState raises an outgoing message's delivery state (never lowers
// it) and returns its conversation; ok is false if nothing changed.
// When peer is not empty, only a message of the conversation with peer
// changes: a receipt speaks only for what was sent to its sender.
func (h *Home) advanceState(tx *bolt.Tx, id []byte, state DeliveryState, errText, peer string) (conv string, ok bool, err error) {
	var ref msgRef
	found, err := h.getRecord(tx, bucketMsgIndex, id, &ref)
	if err != nil || !found || (peer != "" && ref.Conv != peer) {
		return "", false, err
	}
	key := h.historyKey(ref.Conv, ref.Seq)
	v, err := h.get(tx, bucketHistory, key)
	if err != nil || v == nil {
		return "", false, err
	}
	var r historyRecord
	if err := transport.Unmarshal(v, &r); err != nil {
		return "", false, err
	}
	if !r.Outgoing || (DeliveryState(r.State) >= state && state != StateFailed) || DeliveryState(r.State) == StateFailed {
		return ref.Conv, false, nil
	}
	r.State, r.Error = uint32(state), errText
	return ref.Conv, true, h.put(tx, bucketHistory, key, transport.Marshal(&r))
}

// Conversations lists the home's conversations, most recent first.
func (h *Home) Conversations() ([]Conversation, error) {
	var out []Conversation
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConvs).ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketConvs, k, sealed)
			if err != nil {
				return err
			}
			var cr convRecord
			if err := transport.Unmarshal(v, &cr); err != nil {
				return err
			}
			c := Conversation{Name: cr.Name, Unread: int(cr.Unread), LastActivity: time.UnixMilli(cr.LastActivity), LastText: cr.LastText}
			var ct contact
			if ok, _ := h.getRecord(tx, bucketContacts, []byte(cr.Name), &ct); ok {
				c.Verified = ct.Verified && ct.Pending == nil
				c.IdentityChanged = ct.Pending != nil
			}
			out = append(out, c)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Conversation) int { return b.LastActivity.Compare(a.LastActivity) })
	return out, err
}

// History returns up to limit entries of conv, oldest first, before the
// entry with id before ("" for the newest).
func (h *Home) History(conv, before string, limit int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := h.db.View(func(tx *bolt.Tx) error {
		prefix := h.historyPrefix(conv)
		end := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), ^uint64(0))
		if before != "" {
			id, err := hex.DecodeString(before)
			if err != nil {
				return errors.New("bad message id")
			}
			var ref msgRef
			if ok, err := h.getRecord(tx, bucketMsgIndex, id, &ref); err != nil || !ok {
				return err
			}
			end = h.historyKey(conv, ref.Seq)
		}
		c := tx.Bucket(bucketHistory).Cursor()
		k, sealed := c.Seek(end)
		if k == nil || string(k) >= string(end) {
			k, sealed = c.Prev()
		}
		for ; k != nil && hasPrefix(k, prefix) && len(out) < limit; k, sealed = c.Prev() {
			v, err := h.seal.open(bucketHistory, k, sealed)
			if err != nil {
				return err
			}
			var r historyRecord
			if err := transport.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r.entry(conv))
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// markRead clears conv's unread count.
func (h *Home) markRead(conv string) error {
	return h.update(func(tx *bolt.Tx) error {
		var cr convRecord
		ok, err := h.getRecord(tx, bucketConvs, []byte(conv), &cr)
		if err != nil || !ok || cr.Unread == 0 {
			return err
		}
		cr.Unread = 0
		return h.putRecord(tx, bucketConvs, []byte(conv), &cr)
	})
}

// Verify marks user's current identity key as verified.
func (h *Home) Verify(user string) error {
	return h.update(func(tx *bolt.Tx) error {
		var ct contact
		ok, err := h.getRecord(tx, bucketContacts, []byte(user), &ct)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("no identity key known for " + user + " yet")
		}
		if ct.Pending != nil {
			return errors.New(user + "'s identity key changed: accept the new key first")
		}
		ct.Verified = true
		return h.putRecord(tx, bucketContacts, []byte(user), &ct)
	})
}

func hasPrefix(b, p []byte) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == string(p)
}

// KeepInHistory adds a received message to its conversation's history, as
// unread; the scriptable recv calls it so that the terminal client shows
// what was read from a script.
func (c *Client) KeepInHistory(m *Message) error {
	if m.Kind != KindText.String() && m.Kind != "error" && m.Kind != "system" {
		return nil
	}
	id, err := hex.DecodeString(m.ID)
	if err != nil {
		return err
	}
	rec := &historyRecord{ID: id, From: m.From, Kind: m.Kind, Text: m.Text, Time: m.SentAt.UnixMilli()}
	return c.home.update(func(tx *bolt.Tx) error {
		var ref msgRef
		if ok, err := c.home.getRecord(tx, bucketMsgIndex, id, &ref); ok || err != nil {
			return err // already kept
		}
		conv := m.From
		if m.Kind == "system" {
			conv = SystemConversation
		}
		_, err := c.home.addHistory(tx, conv, rec, true)
		return err
	})
}

// sentRecord is the history record of an outgoing text once the server
// has stored it.
func (c *Client) sentRecord(id []byte, content *Content) *historyRecord {
	return &historyRecord{ID: id, From: c.prof.User, Outgoing: true, Kind: content.Kind.String(), Text: content.Text, Time: content.SentAt, State: uint32(StateStored)}
}

// keepSent takes a message the server stored out of the outbox and records
// it in the history, in one transaction: one commit per sent message
// rather than two. If that fails, the outbox entry is still removed, as
// for any answered send, and the error is returned.
func (c *Client) keepSent(id []byte, to string, rec *historyRecord) error {
	err := c.home.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOutbox).Delete(id); err != nil {
			return err
		}
		_, err := c.home.addHistory(tx, to, rec, false)
		return err
	})
	if err != nil {
		c.deleteOutbox(id)
	}
	return err
}

var keySettings = []byte("settings")

// settings reads the front-end settings: whether typing signals and read
// receipts are sent (both on unless turned off).
func (h *Home) settings() (sendTyping, sendReceipts bool) {
	sendTyping, sendReceipts = true, true
	h.db.View(func(tx *bolt.Tx) error {
		v, err := h.get(tx, bucketMeta, keySettings)
		if err == nil && len(v) == 2 {
			sendTyping, sendReceipts = v[0] == 1, v[1] == 1
		}
		return nil
	})
	return sendTyping, sendReceipts
}

func (h *Home) saveSettings(sendTyping, sendReceipts bool) error {
	b := func(v bool) byte {
		if v {
			return 1
		}
		return 0
	}
	return h.update(func(tx *bolt.Tx) error {
		return h.put(tx, bucketMeta, keySettings, []byte{b(sendTyping), b(sendReceipts)})
	})
}
