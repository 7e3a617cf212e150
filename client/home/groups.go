package home

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Groups this home is a member of (docs/protocol.md §9.7, §10):
//
//	groups  index(conversation key) → GroupRecord
//
// The record holds the group's membership log (e2ee.GroupLog's encoding),
// which only the session layer interprets.
var bucketGroups = []byte("groups")

// MaxGroupLog bounds one group's stored log.
const MaxGroupLog = 8 << 20

// GroupRecord is what the home keeps of one group.
type GroupRecord struct {
	Group chat.Conversation // a group conversation
	Log   []byte            // e2ee.GroupLog encoding
	Left  bool              // this account left or was removed: kept for its history, sent nothing

	// This device's sending chain in the group (protocol.md §8.3): when it
	// was made, whether it must be replaced before the next message (a
	// member left or was removed since), and the devices that have it,
	// each from the position it was first sent. (Field 7, the key
	// requests to answer with the next message before they were answered
	// at once, is read and dropped.)
	ChainCreated int64 // unix ms
	Rotate       bool
	Holders      []KeyHolder
}

// MaxKeyHolders bounds the devices a group record lists as holding this
// device's sender key.
const MaxKeyHolders = 1 << 16

// maxKeyAsks bounds the old key requests (field 7) a group record is read
// with.
const maxKeyAsks = 1024

// KeyHolder is a device that was sent this device's sender key, under the
// device key it had then.
type KeyHolder struct {
	User      string
	Device    uint32
	DeviceKey []byte
	// Position is the chain's iteration the device was first sent it at:
	// an answer to its key request gives the chain from there, never
	// earlier (protocol.md §8.3). 0 in records kept before it was
	// recorded, whose chain state starts no earlier than where it was
	// read (e2ee.SenderKey.Start).
	Position uint32
	// Answered: the device's key request was answered on this chain; it
	// gets no second answer (a new chain starts a new list).
	Answered bool
}

func (m *KeyHolder) MarshalFields(e *transport.Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.Device))
	e.BytesField(3, m.DeviceKey)
	e.Uint(4, uint64(m.Position))
	e.Bool(5, m.Answered)
}

func (m *KeyHolder) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(transport.MaxUserName)
		case 2:
			m.Device, err = f.Uint32()
		case 3:
			m.DeviceKey, err = f.Bytes(transport.KeyLen)
		case 4:
			m.Position, err = f.Uint32()
		case 5:
			m.Answered, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// Holds reports whether dev, under key, was sent this device's sender key.
func (m *GroupRecord) Holds(dev chat.Device, key []byte) bool {
	return slices.ContainsFunc(m.Holders, func(h KeyHolder) bool {
		return h.User == dev.User && h.Device == dev.ID && bytes.Equal(h.DeviceKey, key)
	})
}

func (m *GroupRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Group.Key())
	e.BytesField(2, m.Log)
	e.Bool(3, m.Left)
	e.Int(4, m.ChainCreated)
	e.Bool(5, m.Rotate)
	for i := range m.Holders {
		e.Message(6, &m.Holders[i])
	}
}

func (m *GroupRecord) UnmarshalFields(d *transport.Decoder) error {
	return m.unmarshal(d, true)
}

// groupBrief decodes a GroupRecord without its key holders.
type groupBrief struct{ r *GroupRecord }

func (b groupBrief) UnmarshalFields(d *transport.Decoder) error { return b.r.unmarshal(d, false) }

func (m *GroupRecord) unmarshal(d *transport.Decoder, holders bool) error {
	asks := 0
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			var k string
			if k, err = f.String(maxConvName); err == nil {
				m.Group, err = chat.ParseKey(k)
				if err == nil && m.Group.Kind() != chat.GroupConversation {
					err = fmt.Errorf("group record for %s", m.Group)
				}
			}
		case 2:
			m.Log, err = f.Bytes(MaxGroupLog)
		case 3:
			m.Left, err = f.Bool()
		case 4:
			m.ChainCreated, err = f.Int()
		case 5:
			m.Rotate, err = f.Bool()
		case 6:
			if !holders {
				return nil
			}
			if len(m.Holders) >= MaxKeyHolders {
				return fmt.Errorf("group record with more than %d key holders", MaxKeyHolders)
			}
			var h KeyHolder
			err = f.Message(&h)
			m.Holders = append(m.Holders, h)
		case 7:
			// A key request kept by an earlier version, to be answered
			// with the next message: read and dropped (the asker asks
			// again on its next connection, and is answered at once).
			if asks++; asks > maxKeyAsks {
				return fmt.Errorf("group record with more than %d key requests", maxKeyAsks)
			}
			var h KeyHolder
			err = f.Message(&h)
		default:
			return f.Unknown()
		}
		return err
	})
}

// Group returns the record of group; nil if this home has none.
func (t *Tx) Group(group chat.Conversation) (*GroupRecord, error) {
	var r GroupRecord
	ok, err := t.getRecord(bucketGroups, []byte(group.Key()), &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// GroupBrief is Group without the key holders (Holders nil, not to be
// stored back): what a group send that names its last address list needs
// (protocol.md §6.7), at a cost that does not grow with the holders.
func (h *Home) GroupBrief(group chat.Conversation) (*GroupRecord, error) {
	var r GroupRecord
	var ok bool
	err := h.View(func(tx *Tx) (err error) {
		ok, err = tx.getRecord(bucketGroups, []byte(group.Key()), groupBrief{&r})
		return err
	})
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// PutGroup stores a group's record.
func (t *Tx) PutGroup(r *GroupRecord) error {
	if r.Group.Kind() != chat.GroupConversation {
		return fmt.Errorf("%s is not a group", r.Group)
	}
	return t.putRecord(bucketGroups, []byte(r.Group.Key()), r)
}

// Groups returns every group record, in the order of their conversation
// keys.
func (h *Home) Groups() ([]*GroupRecord, error) {
	var out []*GroupRecord
	err := h.View(func(tx *Tx) error {
		var err error
		out, err = tx.Groups()
		return err
	})
	return out, err
}

// Groups returns every group record, in the order of their conversation
// keys.
func (t *Tx) Groups() ([]*GroupRecord, error) {
	var out []*GroupRecord
	b := t.tx.Bucket(bucketGroups)
	err := b.ForEach(func(k, sealed []byte) error {
		v, err := t.h.seal.open(bucketGroups, k, sealed)
		if err != nil {
			return err
		}
		var r GroupRecord
		if err := transport.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("home %s: group record: %w", t.h.Dir, err)
		}
		out = append(out, &r)
		return nil
	})
	slices.SortFunc(out, func(a, b *GroupRecord) int { return strings.Compare(a.Group.Key(), b.Group.Key()) })
	return out, err
}

// Group returns the record of group; nil if none.
func (h *Home) Group(group chat.Conversation) (*GroupRecord, error) {
	var r *GroupRecord
	err := h.View(func(tx *Tx) error {
		var err error
		r, err = tx.Group(group)
		return err
	})
	return r, err
}

// DeleteGroup forgets a group (one whose creation never reached anyone).
func (t *Tx) DeleteGroup(group chat.Conversation) error {
	return t.tx.Bucket(bucketGroups).Delete(t.h.seal.index(bucketGroups, []byte(group.Key())))
}
