package home

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// History lives in the sealed home (docs/protocol.md §10):
//
//	convs     index(name)                    → convRecord
//	history   index(name)[:16] ‖ u64 BE seq  → HistoryRecord
//	msgindex  index(message id)              → (conversation, seq)
//	pending   u64 BE seq                     → Queued: queued sends, in order
//
// A conversation's name is convName's (outbox.go).
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
			m.Name, err = f.String(maxConvName)
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

// MaxTextLen bounds one message's text in bytes.
const MaxTextLen = 64 << 10

// DeliveryState is how far an outgoing message has got.
type DeliveryState int

const (
	StateSending   DeliveryState = 1 // queued or in flight
	StateStored    DeliveryState = 2 // the server has it durably
	StateDelivered DeliveryState = 3 // a device of the recipient has it
	StateRead      DeliveryState = 4 // the recipient has read it
	StateFailed    DeliveryState = 5 // will not be sent (see the entry's Error)
)

func (s DeliveryState) String() string {
	switch s {
	case StateSending:
		return "sending"
	case StateStored:
		return "sent"
	case StateDelivered:
		return "delivered"
	case StateRead:
		return "read"
	case StateFailed:
		return "failed"
	}
	return ""
}

// HistoryEntry is one message of a conversation, as front ends see it.
type HistoryEntry struct {
	ID           string // hex message id
	Conversation chat.Conversation
	From         string
	Outgoing     bool
	Kind         chat.ContentKind // text, system or error
	Text         string
	Time         time.Time     // sent time (sender's clock)
	State        DeliveryState // outgoing messages only
	Error        string        // why it failed
	// Unverified: it came with an identity key this home has not accepted
	// for From (protocol.md §8.1): From is only what it claims.
	Unverified bool
	// An outgoing group message's receipts (protocol.md §8.1): the
	// members it reached and those who read it, of Recipients, the other
	// members when it was sent.
	DeliveredTo, ReadBy []string
	Recipients          int
}

// ConversationInfo summarises one conversation for a list.
type ConversationInfo struct {
	Conversation    chat.Conversation
	Unread          int
	LastActivity    time.Time
	LastText        string
	Verified        bool
	IdentityChanged bool // sending is blocked until the new key is trusted
}

// HistoryRecord is one stored message of a conversation. Its kind is
// stored by name ("text", "system", "error").
type HistoryRecord struct {
	ID       []byte
	From     string
	Outgoing bool
	Kind     chat.ContentKind
	Text     string
	Time     int64 // unix ms, the sender's clock
	State    DeliveryState
	Error    string
	// Unverified: it came with an identity key not accepted for From.
	Unverified bool
	// An outgoing group message's receipts, by member (HistoryEntry).
	DeliveredTo, ReadBy []string
	Recipients          uint32
}

// MaxReceiptMembers bounds the members an outgoing group message keeps
// receipts of (protocol.md §8.1: larger groups send none).
const MaxReceiptMembers = 100

func (m *HistoryRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.ID)
	e.String(2, m.From)
	e.Bool(3, m.Outgoing)
	if m.Kind != 0 {
		e.String(4, m.Kind.String())
	}
	e.String(5, m.Text)
	e.Int(6, m.Time)
	e.Uint(7, uint64(m.State))
	e.String(8, m.Error)
	e.Bool(9, m.Unverified)
	for _, u := range m.DeliveredTo {
		e.String(10, u)
	}
	for _, u := range m.ReadBy {
		e.String(11, u)
	}
	e.Uint(12, uint64(m.Recipients))
}

func (m *HistoryRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(transport.MessageIDLen)
		case 2:
			m.From, err = f.String(transport.MaxUserName)
		case 3:
			m.Outgoing, err = f.Bool()
		case 4:
			var s string
			if s, err = f.String(16); err == nil {
				m.Kind, err = chat.ParseContentKind(s)
			}
		case 5:
			m.Text, err = f.String(MaxTextLen)
		case 6:
			m.Time, err = f.Int()
		case 7:
			var v uint32
			v, err = f.Uint32()
			m.State = DeliveryState(v)
		case 8:
			m.Error, err = f.String(transport.MaxText)
		case 9:
			m.Unverified, err = f.Bool()
		case 10, 11:
			list := &m.DeliveredTo
			if f.Num == 11 {
				list = &m.ReadBy
			}
			if len(*list) >= MaxReceiptMembers {
				return fmt.Errorf("history record with more than %d receipts", MaxReceiptMembers)
			}
			var u string
			if u, err = f.String(transport.MaxUserName); err == nil && u == "" {
				return errors.New("history record with an empty receipt name")
			}
			*list = append(*list, u)
		case 12:
			m.Recipients, err = f.Uint32()
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
			m.Conv, err = f.String(maxConvName)
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

// Entry is the record as front ends see it.
func (r *HistoryRecord) Entry(conv chat.Conversation) HistoryEntry {
	return HistoryEntry{
		ID: hex.EncodeToString(r.ID), Conversation: conv, From: r.From, Outgoing: r.Outgoing,
		Kind: r.Kind, Text: r.Text, Time: time.UnixMilli(r.Time), State: r.State, Error: r.Error,
		Unverified: r.Unverified, DeliveredTo: r.DeliveredTo, ReadBy: r.ReadBy, Recipients: int(r.Recipients),
	}
}

// AddHistory appends an entry to conv's history.
func (t *Tx) AddHistory(conv chat.Conversation, r *HistoryRecord, unread bool) (HistoryEntry, error) {
	name := convName(conv)
	var cr convRecord
	if _, err := t.getRecord(bucketConvs, []byte(name), &cr); err != nil {
		return HistoryEntry{}, err
	}
	cr.Name = name
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
	if err := t.putRecord(bucketConvs, []byte(name), &cr); err != nil {
		return HistoryEntry{}, err
	}
	if err := t.put(bucketHistory, t.h.historyKey(name, seq), transport.Marshal(r)); err != nil {
		return HistoryEntry{}, err
	}
	if err := t.putRecord(bucketMsgIndex, r.ID, &msgRef{Conv: name, Seq: seq}); err != nil {
		return HistoryEntry{}, err
	}
	return r.Entry(conv), nil
}

// InHistory reports whether a message with id is in some conversation's
// history.
func (t *Tx) InHistory(id []byte) (bool, error) {
	var ref msgRef
	return t.getRecord(bucketMsgIndex, id, &ref)
}

// AdvanceState raises an outgoing message's delivery state (never lowers
// it) and returns its conversation; ok is false if nothing changed.
// When peer is not empty, only a message of the conversation with peer
// changes: a receipt speaks only for what was sent to its sender.
func (t *Tx) AdvanceState(id []byte, state DeliveryState, errText, peer string) (conv chat.Conversation, ok bool, err error) {
	var ref msgRef
	found, err := t.getRecord(bucketMsgIndex, id, &ref)
	if err != nil || !found {
		return chat.Conversation{}, false, err
	}
	if conv, err = parseConvName(ref.Conv); err != nil {
		return chat.Conversation{}, false, err
	}
	if peer != "" && conv != chat.Peer(peer) {
		return chat.Conversation{}, false, nil
	}
	key := t.h.historyKey(ref.Conv, ref.Seq)
	v, err := t.get(bucketHistory, key)
	if err != nil || v == nil {
		return chat.Conversation{}, false, err
	}
	var r HistoryRecord
	if err := transport.Unmarshal(v, &r); err != nil {
		return chat.Conversation{}, false, err
	}
	if !r.Outgoing || (r.State >= state && state != StateFailed) || r.State == StateFailed {
		return conv, false, nil
	}
	r.State, r.Error = state, errText
	return conv, true, t.put(bucketHistory, key, transport.Marshal(&r))
}

// AdvanceGroupState records a receipt from member for an outgoing message
// of group: member joins DeliveredTo, and for a read receipt ReadBy too;
// the state rises to delivered at the first delivery (protocol.md §8.1).
// It returns the entry as it is now; ok is false if nothing changed (not
// a message of this group sent from here, or already recorded).
func (t *Tx) AdvanceGroupState(id []byte, read bool, member string, group chat.Conversation) (entry HistoryEntry, ok bool, err error) {
	var ref msgRef
	found, err := t.getRecord(bucketMsgIndex, id, &ref)
	if err != nil || !found || ref.Conv != convName(group) {
		return HistoryEntry{}, false, err
	}
	key := t.h.historyKey(ref.Conv, ref.Seq)
	v, err := t.get(bucketHistory, key)
	if err != nil || v == nil {
		return HistoryEntry{}, false, err
	}
	var r HistoryRecord
	if err := transport.Unmarshal(v, &r); err != nil {
		return HistoryEntry{}, false, err
	}
	if !r.Outgoing || r.State == StateFailed || r.State == StateSending {
		return HistoryEntry{}, false, nil
	}
	add := func(list *[]string) {
		if !slices.Contains(*list, member) && len(*list) < MaxReceiptMembers {
			*list = append(*list, member)
			ok = true
		}
	}
	add(&r.DeliveredTo)
	if read {
		add(&r.ReadBy)
	}
	if r.State < StateDelivered {
		r.State, ok = StateDelivered, true
	}
	if !ok {
		return HistoryEntry{}, false, nil
	}
	return r.Entry(group), true, t.put(bucketHistory, key, transport.Marshal(&r))
}

// Conversations lists the home's conversations, most recent first.
func (h *Home) Conversations() ([]ConversationInfo, error) {
	var out []ConversationInfo
	err := h.View(func(tx *Tx) error {
		return tx.tx.Bucket(bucketConvs).ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketConvs, k, sealed)
			if err != nil {
				return err
			}
			var cr convRecord
			if err := transport.Unmarshal(v, &cr); err != nil {
				return err
			}
			conv, err := parseConvName(cr.Name)
			if err != nil {
				return err
			}
			c := ConversationInfo{Conversation: conv, Unread: int(cr.Unread), LastActivity: time.UnixMilli(cr.LastActivity), LastText: cr.LastText}
			if !conv.IsGroup() {
				if ct, _ := tx.Contact(conv.ID()); ct != nil {
					c.Verified = ct.Verified && ct.Pending == nil
					c.IdentityChanged = ct.Pending != nil
				}
			}
			out = append(out, c)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b ConversationInfo) int { return b.LastActivity.Compare(a.LastActivity) })
	return out, err
}

// History returns up to limit entries of conv, oldest first, before the
// entry with id before ("" for the newest).
func (h *Home) History(conv chat.Conversation, before string, limit int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	name := convName(conv)
	err := h.View(func(tx *Tx) error {
		prefix := h.historyPrefix(name)
		end := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), ^uint64(0))
		if before != "" {
			id, err := hex.DecodeString(before)
			if err != nil {
				return errors.New("bad message id")
			}
			var ref msgRef
			if ok, err := tx.getRecord(bucketMsgIndex, id, &ref); err != nil || !ok {
				return err
			}
			end = h.historyKey(name, ref.Seq)
		}
		c := tx.tx.Bucket(bucketHistory).Cursor()
		k, sealed := c.Seek(end)
		if k == nil || string(k) >= string(end) {
			k, sealed = c.Prev()
		}
		for ; k != nil && hasPrefix(k, prefix) && len(out) < limit; k, sealed = c.Prev() {
			v, err := h.seal.open(bucketHistory, k, sealed)
			if err != nil {
				return err
			}
			var r HistoryRecord
			if err := transport.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r.Entry(conv))
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// MarkRead clears conv's unread count.
func (h *Home) MarkRead(conv chat.Conversation) error {
	return h.Update(func(tx *Tx) error {
		_, err := tx.MarkRead(conv)
		return err
	})
}

// MarkRead clears conv's unread count; changed is false if it had none.
func (t *Tx) MarkRead(conv chat.Conversation) (changed bool, err error) {
	name := []byte(convName(conv))
	var cr convRecord
	ok, err := t.getRecord(bucketConvs, name, &cr)
	if err != nil || !ok || cr.Unread == 0 {
		return false, err
	}
	cr.Unread = 0
	return true, t.putRecord(bucketConvs, name, &cr)
}

func hasPrefix(b, p []byte) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == string(p)
}
