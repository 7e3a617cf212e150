package home

import (
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
}

func (m *GroupRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Group.Key())
	e.BytesField(2, m.Log)
	e.Bool(3, m.Left)
}

func (m *GroupRecord) UnmarshalFields(d *transport.Decoder) error {
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
		b := tx.tx.Bucket(bucketGroups)
		return b.ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketGroups, k, sealed)
			if err != nil {
				return err
			}
			var r GroupRecord
			if err := transport.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("home %s: group record: %w", h.Dir, err)
			}
			out = append(out, &r)
			return nil
		})
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
