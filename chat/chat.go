// Package chat is the vocabulary both sides of securechat share
// (docs/design.md §9): the address of a device, the conversation a message
// belongs to, the kind of content a message carries and the kinds of event
// the server records. It imports nothing from the project, so the server,
// the client, the front ends and the admin can all speak in its types
// instead of strings.
package chat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Device is the address of one device: an account's user name and the
// device's number within it (protocol.md §5). The zero Device addresses
// nothing.
type Device struct {
	User string
	ID   uint32
}

// DeviceOf is a device address.
func DeviceOf(user string, id uint32) Device { return Device{User: user, ID: id} }

// IsZero reports whether d addresses nothing.
func (d Device) IsZero() bool { return d.User == "" && d.ID == 0 }

// String is "user/id", the form logs, the admin and ParseDevice use.
func (d Device) String() string { return d.User + "/" + strconv.FormatUint(uint64(d.ID), 10) }

// ParseDevice reads "user/id".
func ParseDevice(s string) (Device, error) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return Device{}, fmt.Errorf("device address %q is not USER/NUMBER", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil || n == 0 {
		return Device{}, fmt.Errorf("device address %q is not USER/NUMBER", s)
	}
	return Device{User: s[:i], ID: uint32(n)}, nil
}

// ConversationKind says whether a conversation is with a peer or a group.
type ConversationKind uint8

const (
	PeerConversation  ConversationKind = 1
	GroupConversation ConversationKind = 2
)

func (k ConversationKind) String() string {
	switch k {
	case PeerConversation:
		return "peer"
	case GroupConversation:
		return "group"
	}
	return "kind" + strconv.Itoa(int(k))
}

// Conversation names where a message belongs: the conversation with one
// peer account, or a group by its id. The zero Conversation names none.
// Conversations are comparable with ==.
type Conversation struct {
	kind ConversationKind
	id   string
}

// Peer is the conversation with the account user.
func Peer(user string) Conversation { return Conversation{PeerConversation, user} }

// Group is the conversation of the group with id.
func Group(id string) Conversation { return Conversation{GroupConversation, id} }

// Kind says whether c is with a peer or a group; 0 for the zero value.
func (c Conversation) Kind() ConversationKind { return c.kind }

// IsZero reports whether c names no conversation.
func (c Conversation) IsZero() bool { return c.kind == 0 }

// IsGroup reports whether c is a group's conversation.
func (c Conversation) IsGroup() bool { return c.kind == GroupConversation }

// ID is the peer's user name or the group's id.
func (c Conversation) ID() string { return c.id }

// String is how a conversation is shown: the peer's name, or "#" and the
// group's id.
func (c Conversation) String() string {
	if c.kind == GroupConversation {
		return "#" + c.id
	}
	return c.id
}

// Key is the conversation as a storage key: "u:" or "g:" and the id. It
// round-trips through ParseKey and never confuses a peer with a group.
func (c Conversation) Key() string {
	switch c.kind {
	case PeerConversation:
		return "u:" + c.id
	case GroupConversation:
		return "g:" + c.id
	}
	return ""
}

// ParseKey reads a Key. For homes written before groups existed, a key
// without a prefix is a peer's user name.
func ParseKey(k string) (Conversation, error) {
	switch {
	case k == "":
		return Conversation{}, errors.New("empty conversation key")
	case strings.HasPrefix(k, "u:"):
		return Peer(k[2:]), nil
	case strings.HasPrefix(k, "g:"):
		return Group(k[2:]), nil
	case strings.Contains(k, ":"):
		return Conversation{}, fmt.Errorf("conversation key %q has an unknown prefix", k)
	}
	return Peer(k), nil
}

// ContentKind is what a message's content is (protocol.md §8). Kinds 1 to
// 127 travel inside end-to-end-encrypted messages; kinds from 200 on are
// the client's own and never go on the wire.
type ContentKind uint8

const (
	KindText      ContentKind = 1
	KindDelivered ContentKind = 2 // delivery receipt for the content's Refs
	KindRead      ContentKind = 3 // read receipt for the content's Refs
	KindTyping    ContentKind = 4 // the sender is typing; sent ephemerally
	// KindGroupChange carries signed group membership changes, and for a
	// new member the group's log (protocol.md §9.7).
	KindGroupChange ContentKind = 5
	// KindSenderKey hands a member device's sender key for a group to
	// another member device, over their pairwise session (protocol.md §8.3).
	KindSenderKey ContentKind = 6
	// KindSettings carries the front-end settings (typing notices, read
	// receipts) from one device of an account to its others (protocol.md
	// §8.1).
	KindSettings ContentKind = 7
	// KindFile offers an encrypted file: its key, digest, size, name and
	// type travel in the message, its ciphertext on the server
	// (protocol.md §8.4).
	KindFile ContentKind = 8

	// KindSystem is a notice signed by the server key (protocol.md §6.6).
	KindSystem ContentKind = 200
	// KindError is a message that arrived but could not be read.
	KindError ContentKind = 201
)

// contentKindNames are the kinds' names, as `recv --json` prints them and
// the home stores them.
var contentKindNames = map[ContentKind]string{
	KindText:        "text",
	KindDelivered:   "delivered",
	KindRead:        "read",
	KindTyping:      "typing",
	KindGroupChange: "group",
	KindSenderKey:   "senderkey",
	KindSettings:    "settings",
	KindFile:        "file",
	KindSystem:      "system",
	KindError:       "error",
}

func (k ContentKind) String() string {
	if s, ok := contentKindNames[k]; ok {
		return s
	}
	return "kind" + strconv.Itoa(int(k))
}

// OnWire reports whether k may travel inside a message: a kind between 1
// and 127, known or not (a newer client's kind is carried, and shown as
// unreadable by an older one).
func (k ContentKind) OnWire() bool { return k >= 1 && k <= 127 }

// IsReceipt reports whether k is a delivery or read receipt.
func (k ContentKind) IsReceipt() bool { return k == KindDelivered || k == KindRead }

// ParseContentKind reads a kind's name, or "kindN".
func ParseContentKind(s string) (ContentKind, error) {
	for k, name := range contentKindNames {
		if name == s {
			return k, nil
		}
	}
	if n, ok := strings.CutPrefix(s, "kind"); ok {
		if v, err := strconv.ParseUint(n, 10, 8); err == nil && v > 0 {
			return ContentKind(v), nil
		}
	}
	return 0, fmt.Errorf("unknown content kind %q", s)
}

// MarshalText and UnmarshalText make a ContentKind its name in JSON.
func (k ContentKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *ContentKind) UnmarshalText(b []byte) error {
	v, err := ParseContentKind(string(b))
	*k = v
	return err
}

// EventKind is the kind of an event the server records for its operator
// (docs/operations.md §10): the recent-events page and its filter.
type EventKind string

const (
	EventAuthFailure      EventKind = "auth_failure"
	EventRegistered       EventKind = "registered"
	EventRegisterRefused  EventKind = "register_refused"
	EventRateLimited      EventKind = "rate_limited"
	EventBan              EventKind = "ban"
	EventUnban            EventKind = "unban"
	EventKick             EventKind = "kick"
	EventMute             EventKind = "mute"
	EventUnmute           EventKind = "unmute"
	EventAccountDeleted   EventKind = "account_deleted"
	EventInviteCreated    EventKind = "invite_created"
	EventInviteRevoked    EventKind = "invite_revoked"
	EventBroadcast        EventKind = "broadcast"
	EventLimitsChanged    EventKind = "limits_changed"
	EventAdminLogin       EventKind = "admin_login"
	EventAdminLoginFailed EventKind = "admin_login_failed"
	EventDeviceLinked     EventKind = "device_linked"
	EventDeviceRevoked    EventKind = "device_revoked"
	EventBackup           EventKind = "backup"
	EventBackupFailed     EventKind = "backup_failed"
	EventStorageFull      EventKind = "storage_full"
	EventStorageRecovered EventKind = "storage_recovered"
	// EventStoreDamaged: a store operation met a damaged part of the
	// store and failed alone (subject: the operation).
	EventStoreDamaged EventKind = "store_damaged"
)

// EventKinds lists every EventKind, in the order the admin shows them.
var EventKinds = []EventKind{
	EventAuthFailure, EventRegistered, EventRegisterRefused, EventRateLimited,
	EventBan, EventUnban, EventKick, EventMute, EventUnmute, EventAccountDeleted,
	EventInviteCreated, EventInviteRevoked, EventBroadcast, EventLimitsChanged,
	EventAdminLogin, EventAdminLoginFailed, EventDeviceLinked, EventDeviceRevoked,
	EventBackup, EventBackupFailed, EventStorageFull, EventStorageRecovered,
	EventStoreDamaged,
}

// ParseEventKind reads an event kind's name.
func ParseEventKind(s string) (EventKind, error) {
	for _, k := range EventKinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown event kind %q", s)
}
