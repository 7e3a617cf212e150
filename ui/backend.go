package ui

import (
	"context"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Backend is what the terminal UI needs of the client engine. The real one
// is client.Engine; tests use a fake (uitest.Backend). Every method may be
// called from the UI goroutine and must not block for long: slow work
// (network) happens in the engine, which reports through Events. The
// exceptions are SafetyNumber, which may need the server the first time,
// and the group changes, which wait for the server: the UI calls them from
// goroutines of its own, so methods must be safe for concurrent use.
type Backend interface {
	// Events delivers what happens: connection state, messages, delivery
	// state changes, typing, identity changes. Closed when the engine stops.
	Events() <-chan client.UIEvent
	// Self is this account's user name, its server and the server key
	// fingerprint pinned in the home, grouped as people are shown it (64 hex
	// digits in groups of four).
	Self() (user, server, fingerprint string)
	// Conversations lists conversations, most recent activity first.
	Conversations() ([]client.ConversationInfo, error)
	// History returns up to limit entries of a conversation, oldest first,
	// ending before the entry with id before ("" for the newest).
	History(conversation chat.Conversation, before string, limit int) ([]client.HistoryEntry, error)
	// Send queues text to the conversation's user, or group, and returns
	// the entry at once, in state Sending; later states arrive as UIState
	// events. It fails at once for an identity change, an invalid name, or
	// a group this account is no longer in.
	Send(conversation chat.Conversation, text string) (*client.HistoryEntry, error)
	// Typing tells the peer this user is typing (ephemeral; may be a no-op
	// when the setting is off or the engine is offline; the UI sends none
	// to a group).
	Typing(conversation chat.Conversation)
	// MarkRead marks a conversation read and sends read receipts (unless
	// turned off; never for a group's messages).
	MarkRead(conversation chat.Conversation) error
	// SafetyNumber returns the safety number with the conversation's user.
	SafetyNumber(conversation chat.Conversation) (client.SafetyInfo, error)
	// Trust accepts a changed identity key: only the pending key whose
	// safety number is safetyNumber (the one the user was shown), or, if
	// it is empty, the one whose number was last shown. It returns the
	// safety number accepted. Verify marks the current key verified after
	// the user compared safety numbers.
	Trust(conversation chat.Conversation, safetyNumber string) (string, error)
	Verify(conversation chat.Conversation) error
	// SetSendTyping and SetSendReceipts turn the outgoing typing and read
	// signals on or off (both on by default).
	SetSendTyping(on bool)
	SetSendReceipts(on bool)
	// Settings reports those two settings, which the engine keeps across
	// runs.
	Settings() (sendTyping, sendReceipts bool)

	// Groups lists this account's groups, as the home knows them: title,
	// members with their roles and verification, and whether this
	// account left (docs/protocol.md §8.2). It needs no connection.
	Groups() ([]client.GroupInfo, error)
	// CreateGroup, AddToGroup, RemoveFromGroup, LeaveGroup and
	// SetGroupRole change a group over the connection and return once
	// the members were sent the change (they fail when offline). Each
	// shows the line it keeps in the group's history ("you added dave")
	// as a UIMessage event.
	CreateGroup(ctx context.Context, title string, members []string) (client.GroupInfo, error)
	AddToGroup(ctx context.Context, group chat.Conversation, users []string) error
	RemoveFromGroup(ctx context.Context, group chat.Conversation, users []string) error
	LeaveGroup(ctx context.Context, group chat.Conversation) error
	SetGroupRole(ctx context.Context, group chat.Conversation, users []string, admin bool) error
	// MuteInGroup keeps members from writing to the group until until
	// (zero: lifts it).
	MuteInGroup(ctx context.Context, group chat.Conversation, users []string, until time.Time) error
	// RenameGroup gives the group a new title.
	RenameGroup(ctx context.Context, group chat.Conversation, title string) error

	DeviceBackend
	FileBackend
}

// DeviceBackend is what /devices needs of the engine: the account's
// devices, linking one by its code and revoking one (docs/protocol.md
// §5.4). Each waits for the server: the UI calls them from goroutines of
// its own.
type DeviceBackend interface {
	AccountDevices(ctx context.Context) ([]client.DeviceStatus, error)
	FindDevice(ctx context.Context, code string) (*client.LinkCandidate, error)
	ApproveDevice(ctx context.Context, cand *client.LinkCandidate, hist *client.HistoryOptions) error
	RevokeDevice(ctx context.Context, device uint32) error
}

// FileBackend is what /file, /files and /save need of the engine
// (docs/protocol.md §8.4). StartFile, Files and FindFile read the home
// and return at once; FetchFile waits for the server and SaveFile
// decrypts a whole file: the UI calls those from goroutines of its own.
type FileBackend interface {
	// StartFile checks the path and the conversation and fails at once
	// (one line to show), then encrypts, uploads and sends the file in the
	// background, reporting as UIFile events and, once uploaded, the file
	// message as a UIMessage whose ID is the file's.
	StartFile(to chat.Conversation, path string) error
	// Files lists the files sent and received, oldest first.
	Files() ([]*client.FileInfo, error)
	// FindFile finds a file by 4 or more of its id's first hex digits.
	FindFile(id string) (*client.FileInfo, error)
	// FetchFile fetches a received file not complete yet, telling
	// progress how far it got; it returns once the file is complete (a
	// UIFile event says so too) or failed.
	FetchFile(ctx context.Context, id string, progress func(*client.FileInfo)) (*client.FileInfo, error)
	// SaveFile writes a complete file in the clear to path (a directory:
	// under its name there; "": in the current directory), never over
	// another file, and returns the path written.
	SaveFile(id, path string) (string, error)
}
