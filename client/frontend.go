package client

import (
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// Types that front ends (the terminal UI) see through the engine's event
// stream and queries. The engine never calls a front end (docs/design.md
// §6.3). The history's types are the home's, named here so that front ends
// need only this package and chat (docs/design.md §11).

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

// KeyMismatchError is the connection error when the server presents
// another key than the pinned one; it names both fingerprints. The
// interactive engine keeps retrying after it.
type KeyMismatchError = transport.KeyMismatchError

// DeliveryState is how far an outgoing message has got.
type DeliveryState = home.DeliveryState

const (
	StateSending   = home.StateSending
	StateStored    = home.StateStored
	StateDelivered = home.StateDelivered
	StateRead      = home.StateRead
	StateFailed    = home.StateFailed
)

// FileState is where a file stands (FileInfo.State; protocol.md §8.4).
type FileState = home.FileState

const (
	FileUploading = home.FileUploading // this device is uploading it
	FileSent      = home.FileSent      // uploaded, its message queued or sent
	FileOffered   = home.FileOffered   // offered, not fetched whole yet
	FileComplete  = home.FileComplete  // fetched and checked: it can be saved
	FileFailed    = home.FileFailed    // it cannot be had: FileInfo.Error says why
)

// HistoryEntry is one message of a conversation, kept in the sealed home.
type HistoryEntry = home.HistoryEntry

// ConversationInfo summarises one conversation for a list.
type ConversationInfo = home.ConversationInfo

// UIEventType says what a UIEvent reports.
type UIEventType int

const (
	UIConn            UIEventType = 1 // State, Err
	UIMessage         UIEventType = 2 // Entry: a new incoming or outgoing entry
	UIState           UIEventType = 3 // Conversation, ID, State: an outgoing message's state changed
	UITyping          UIEventType = 4 // Conversation: the peer is typing (lasts a few seconds)
	UIIdentityChanged UIEventType = 5 // Conversation
	UIRead            UIEventType = 6 // Conversation: read on another device of this account
	UIFile            UIEventType = 7 // Conversation, ID, File: a file's transfer progressed or its state changed; Err: a transfer failed (tried again later unless File.State is failed)
)

// UIEvent is what the engine tells an interactive front end.
type UIEvent struct {
	Type         UIEventType
	Conversation chat.Conversation
	ID           string
	State        DeliveryState
	Conn         ConnState
	Entry        *HistoryEntry
	File         *FileInfo
	Err          error
}
