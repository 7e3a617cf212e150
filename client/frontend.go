package client

import "time"

// Types that front ends (the terminal UI) see through the engine's event
// stream and queries. The engine never calls a front end (docs/design.md §1).

// ConnState is the state of the engine's connection to its server.
type ConnState int

const (
	ConnConnecting   ConnState = 1 // dialling or authenticating
	ConnConnected    ConnState = 2
	ConnDisconnected ConnState = 3 // waiting to retry; Err says why
)

func (s ConnState) String() string {
	switch s {
	case ConnConnecting:
		return "connecting"
	case ConnConnected:
		return "connected"
	case ConnDisconnected:
		return "disconnected"
	}
	return "unknown"
}

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

// HistoryEntry is one message of a conversation, kept in the sealed home.
type HistoryEntry struct {
	ID           string // hex message id
	Conversation string // the other user's name
	From         string
	Outgoing     bool
	Kind         string // "text", "system", "error"
	Text         string
	Time         time.Time     // sent time (sender's clock)
	State        DeliveryState // outgoing messages only
	Error        string        // why it failed
}

// Conversation summarises one conversation for a list.
type Conversation struct {
	Name            string
	Unread          int
	LastActivity    time.Time
	LastText        string
	Verified        bool
	IdentityChanged bool // sending is blocked until the new key is trusted
}

// UIEventType says what a UIEvent reports.
type UIEventType int

const (
	UIConn            UIEventType = 1 // State, Err
	UIMessage         UIEventType = 2 // Entry: a new incoming or outgoing entry
	UIState           UIEventType = 3 // Conversation, ID, State: an outgoing message's state changed
	UITyping          UIEventType = 4 // Conversation: the peer is typing (lasts a few seconds)
	UIIdentityChanged UIEventType = 5 // Conversation
)

// UIEvent is what the engine tells an interactive front end.
type UIEvent struct {
	Type         UIEventType
	Conversation string
	ID           string
	State        DeliveryState
	Conn         ConnState
	Entry        *HistoryEntry
	Err          error
}
