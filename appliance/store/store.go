// Package store is the server's storage seam (docs/design.md §4.2): the
// interfaces a storage implementation provides, the domain types they
// speak and the domain errors they return. It holds no implementation;
// boltstore is the one on a single bbolt file, and storetest is the
// conformance suite every implementation must pass.
//
// Writes take a context and return once durably committed, unless their
// comment says they are queued: then Sync waits for them. Reads see every
// write that has returned. Times are stored to the millisecond.
package store

import (
	"context"
	"crypto/ed25519"
	"io"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Bounds every implementation keeps.
const (
	// MaxDevices is how many devices an account may have (protocol.md §5).
	MaxDevices = transport.MaxDevices
	// MaxOneTimeKeys caps each kind of one-time prekey a device has
	// stored; past it the oldest go first.
	MaxOneTimeKeys = 1000
)

// Store is all of a server's durable state.
type Store interface {
	Accounts
	Devices
	Prekeys
	Mailboxes
	Moderation
	Blobs
	Groups
	Meta

	// Sync returns once every write queued before it is committed.
	Sync(ctx context.Context) error
	// Verify checks the store's structure and that every record decodes.
	Verify() error
	// Backup writes a consistent copy of the store to w while it serves.
	Backup(w io.Writer) (int64, error)
	// Close commits the writes already queued and releases the store.
	// Writes after Close fail with ErrClosed.
	Close() error
}

// Account is a user account.
type Account struct {
	Name         string
	PasswordHash string // PHC string of an argon2id hash
	Created      time.Time
	// Identity is the account identity key (e2ee), set by the first
	// device to publish keys; nil until then.
	Identity []byte
}

// AccountSummary is an account as the admin lists it.
type AccountSummary struct {
	Name     string
	Created  time.Time
	Devices  int
	LastSeen time.Time // the latest of its devices'
	// DeviceList is its devices, in id order: name, added, last seen.
	DeviceList []DeviceRecord
}

// NewAccount is a registration: the account and its first device (id 1).
type NewAccount struct {
	Name         string
	PasswordHash string
	DeviceKey    ed25519.PublicKey
	DeviceName   string
	// Invite, when set, must be usable at Now; one use of it is taken in
	// the same commit.
	Invite string
	Now    time.Time
}

// Accounts stores user accounts.
type Accounts interface {
	// CreateAccount stores a new account with its first device.
	// ErrUserExists, ErrInvalidInvite.
	CreateAccount(ctx context.Context, a NewAccount) error
	// Account returns an account. *NoSuchUserError.
	Account(name string) (Account, error)
	// ListAccounts lists every account, by name.
	ListAccounts() ([]AccountSummary, error)
	// DeleteAccount removes an account with its devices, mailboxes,
	// prekeys, mute, signed device list and revoked devices' tombstones. Messages it sent stay with their recipients.
	// *NoSuchUserError.
	DeleteAccount(ctx context.Context, name string) error
}

// DeviceRecord is a stored device.
type DeviceRecord struct {
	Device   chat.Device
	Key      ed25519.PublicKey // authenticates the device's connections
	Created  time.Time
	LastSeen time.Time
	Name     string
}

// DeviceKey is a device that has published keys, with its device key: a
// recipient of messages (protocol.md §6.1).
type DeviceKey struct {
	Device chat.Device
	Key    ed25519.PublicKey
}

// Devices stores the devices of accounts.
type Devices interface {
	// AddDevice adds a device to an account and returns its address. The
	// caller checked the password against phc; ErrCredentialsChanged if
	// the account's hash is no longer phc. ErrTooManyDevices.
	AddDevice(ctx context.Context, user, phc string, key ed25519.PublicKey, name string, now time.Time) (chat.Device, error)
	// Device returns a device. ErrNoSuchDevice.
	Device(d chat.Device) (DeviceRecord, error)
	// ActiveDevices lists the devices of user that have published keys,
	// in id order. *NoSuchUserError.
	ActiveDevices(user string) ([]DeviceKey, error)
	// TouchDevice records when a device was last seen. It is queued, not
	// waited for.
	TouchDevice(d chat.Device, now time.Time)

	// Linked devices and the account's signed device list (protocol.md
	// §5.4). The store keeps the list's bytes and sequence number; the
	// server checks its signature before it calls these.

	// ReserveDevice takes the account's next device id for a device being
	// linked, without adding a device: ids are never used twice.
	// *NoSuchUserError, ErrTooManyDevices.
	ReserveDevice(ctx context.Context, user string) (uint32, error)
	// DeviceList returns the account's stored signed list, the zero
	// SignedList if none was stored. *NoSuchUserError.
	DeviceList(user string) (SignedList, error)
	// PutDeviceList stores a signed list: its Seq must be above the
	// stored one's (ErrStaleDeviceList) and every device it names must
	// be the account's under the key it names (*DeviceListError).
	// *NoSuchUserError.
	PutDeviceList(ctx context.Context, user string, l NewList) error
	// LinkDevice adds a device under an id ReserveDevice gave, not in
	// use and never revoked, and stores l, which must name it under its
	// key, in one commit; the list is checked as PutDeviceList checks it.
	// ErrTooManyDevices, ErrStaleDeviceList, *DeviceListError.
	LinkDevice(ctx context.Context, dev NewDevice, l NewList) error
	// RevokeDevice removes d with its mailbox and prekeys, keeps its
	// tombstone (Revoked) and stores l, which must not name it, in one
	// commit; the list is checked as PutDeviceList checks it. An account
	// keeps the MaxRevoked newest tombstones. ErrNoSuchDevice,
	// ErrStaleDeviceList, *DeviceListError.
	RevokeDevice(ctx context.Context, d chat.Device, l NewList, now time.Time) error
	// Revoked returns the tombstone of a revoked device. ErrNotFound.
	Revoked(d chat.Device) (RevokedDevice, error)
	// ListDevices lists every device of user, in id order, with its
	// name, added and last-seen times. *NoSuchUserError.
	ListDevices(user string) ([]DeviceRecord, error)
	// RenameDevice sets the name of a device. ErrNoSuchDevice.
	RenameDevice(ctx context.Context, d chat.Device, name string) error
}

// MaxRevoked is how many revoked devices' tombstones an account keeps.
const MaxRevoked = 64

// SignedList is an account's device list as its identity signed it
// (protocol.md §5.4): the encoding, which the store does not read, and
// its sequence number.
type SignedList struct {
	Seq   uint64
	Bytes []byte
}

// ListedDevice is a device a signed list names, with the key it names.
type ListedDevice struct {
	ID  uint32
	Key ed25519.PublicKey
}

// NewList is a signed list to store, with the devices it names.
type NewList struct {
	SignedList
	Devices []ListedDevice
}

// NewDevice is a device being linked: its reserved id, key and name.
type NewDevice struct {
	Device chat.Device
	Key    ed25519.PublicKey
	Name   string
	Now    time.Time
}

// RevokedDevice is the tombstone of a device removed from its account:
// its key, so that only the device itself is told why its Auth fails.
type RevokedDevice struct {
	Device  chat.Device
	Key     ed25519.PublicKey
	Revoked time.Time
}

// KeyUpload is a device's verified key publication (protocol.md §9.3):
// the elements in their e2ee encodings, exactly as uploaded.
type KeyUpload struct {
	Identity      []byte
	Certificate   []byte
	AuthKey       ed25519.PublicKey // the device key the certificate names
	SignedPreKey  []byte
	LastResortKEM []byte
	OneTime       []OneTimeKey // one-time X25519 prekeys to add
	OneTimeKEM    []OneTimeKey // one-time ML-KEM prekeys to add
	Replace       bool         // drop the stored one-time prekeys first
}

// OneTimeKey is one one-time prekey's id and encoding.
type OneTimeKey struct {
	ID  uint32
	Key []byte
}

// KeyCount is how many one-time prekeys a device has left.
type KeyCount struct {
	OneTime    uint32
	OneTimeKEM uint32
	Published  bool // the device has published keys at all
}

// Bundle is what a fetch hands out for one device; its one-time prekeys
// are used up by the fetch.
type Bundle struct {
	Device       uint32
	Identity     []byte
	Certificate  []byte
	SignedPreKey []byte
	OneTime      []byte // nil when none is left
	KEM          []byte // a one-time ML-KEM prekey, or the last-resort one
	Left         KeyCount
}

// Prekeys stores the public keys devices publish.
type Prekeys interface {
	// PublishKeys stores a device's keys. The first publication of an
	// account sets its identity key; later ones must carry the same.
	// ErrNoSuchDevice, ErrDeviceKeyMismatch, ErrIdentityMismatch.
	PublishKeys(ctx context.Context, d chat.Device, up KeyUpload) error
	// FetchBundles returns a bundle for each of user's devices with
	// published keys (only those in want, if want is not empty), taking
	// one one-time prekey of each kind. *NoSuchUserError.
	FetchBundles(ctx context.Context, user string, want []uint32) ([]Bundle, error)
	// KeyCount reports a device's remaining one-time prekeys.
	KeyCount(d chat.Device) (KeyCount, error)
	// Identity returns an account's identity key, nil if none was
	// published. *NoSuchUserError.
	Identity(user string) ([]byte, error)
}

// Envelope is one recipient device's slot of a message.
type Envelope struct {
	To chat.Device
	// Key is the device key of the device the sender encrypted for
	// (protocol.md §6.1): a slot whose key is not To's current one is a
	// mismatch, as a slot for a device that does not exist is.
	Key     ed25519.PublicKey
	Payload []byte
}

// Message is a message to store in its recipients' mailboxes.
type Message struct {
	From      chat.Device
	ID        []byte // the sender's message id; a resend of it stores nothing
	Envelopes []Envelope
	Time      time.Time
	// Group and Shared make a group message (protocol.md §6.7): Shared,
	// the one ciphertext, is stored once and each envelope's mailbox gets
	// a small entry that refers to it; the envelopes carry no payload.
	Group  []byte
	Shared []byte
	// MaxGroups bounds the group ids From's account may be the first to
	// use (group_max_per_account); 0 is no bound. A group message under a
	// new id past it is refused with *TooManyGroupsError.
	MaxGroups int
}

// Entry is one mailbox entry.
type Entry struct {
	Seq       uint64      // increasing within its mailbox
	From      chat.Device // zero for a server notice
	MessageID []byte
	Time      time.Time // when it was stored
	Payload   []byte
	// Group and Shared are a group message's (protocol.md §6.7): its
	// group id and the one ciphertext every member device gets; Payload
	// is then empty.
	Group  []byte
	Shared []byte
}

// Delivery is an entry as committed to one device's mailbox.
type Delivery struct {
	To    chat.Device
	Entry Entry
}

// Appended is the outcome of an Append.
type Appended struct {
	Time time.Time // the store time; a duplicate's is the first store's
	// Duplicate says the message id was already stored: nothing was.
	Duplicate bool
	// Entries are what each mailbox got, to push without reading back.
	Entries []Delivery
}

// Mailboxes are the devices' store-and-forward queues (protocol.md §6).
type Mailboxes interface {
	// Append stores a message in every recipient's mailbox in one
	// commit, or, for a message id the sender already stored, nothing.
	// A group message's shared payload is stored once, with a count of
	// the entries that refer to it, and the group's record is updated in
	// the same commit; the last ack or expiry of an entry frees it.
	// The sending device must have published keys (ErrNotPublished); the
	// envelopes must be exactly one per current device of every
	// recipient, the sending device excepted, each naming the device's
	// current key: ErrNoRecipients,
	// *NoSuchUserError, *NoDevicesError (an account none of whose devices
	// published keys), ErrToSendingDevice, *DeviceMismatchError. Every
	// mailbox must have room: *MailboxFullError, ErrStoreFull. On any
	// error nothing is stored, and no other Append is affected.
	Append(ctx context.Context, m Message) (Appended, error)
	// CheckRecipients checks the sender and the envelopes' devices and
	// keys as Append does, storing nothing; it does not check room.
	CheckRecipients(from chat.Device, to []DeviceKey) error
	// Broadcast stores a server notice (from the zero device) in the
	// mailbox of every active device of every account, in one commit,
	// and returns how many accounts it reached. Quotas do not refuse it;
	// its entries count against them.
	Broadcast(ctx context.Context, id, payload []byte, now time.Time) (int, []Delivery, error)
	// Pending returns up to limit entries of d's mailbox after seq, in
	// order. Entries that do not decode are skipped.
	Pending(d chat.Device, after uint64, limit int) ([]Entry, error)
	// Ack deletes delivered entries. It is queued, not waited for: a lost
	// ack only means a redelivery, which clients recognise by message id.
	Ack(d chat.Device, seqs []uint64)
	// Expire deletes up to limit entries and resend records stored before
	// cutoff, in one commit of bounded work, and says how many entries it
	// removed and whether more are left to expire; calls with the same
	// cutoff until more is false make one sweep.
	Expire(ctx context.Context, cutoff time.Time, limit int) (removed int, more bool, err error)
}

// Ban is a stored ban. Target is its key: "ip:" and a CIDR prefix, or
// "user:" and an account name.
type Ban struct {
	Target  string
	Reason  string
	Created time.Time
	Expires time.Time // zero: never
}

// Invite is a stored invite code.
type Invite struct {
	Code    string
	Uses    int // registrations left
	Created time.Time
	Expires time.Time // zero: never
}

// Moderation stores bans, mutes and invites.
type Moderation interface {
	// PutBan stores a ban, replacing one of the same target.
	PutBan(ctx context.Context, b Ban) error
	// DeleteBan removes a ban. ErrNotFound.
	DeleteBan(ctx context.Context, target string) error
	// Bans lists the stored bans, expired ones included.
	Bans() ([]Ban, error)
	// PutMute mutes user until (zero: until unmuted).
	PutMute(ctx context.Context, user string, until time.Time) error
	// DeleteMute removes a mute. ErrNotFound.
	DeleteMute(ctx context.Context, user string) error
	// Mutes lists the stored mutes, expired ones included.
	Mutes() (map[string]time.Time, error)
	// PutInvite stores a new invite. ErrDuplicate.
	PutInvite(ctx context.Context, inv Invite) error
	// DeleteInvite removes an invite. ErrNotFound.
	DeleteInvite(ctx context.Context, code string) error
	// Invites lists the stored invites, used-up and expired ones included.
	Invites() ([]Invite, error)
}

// Group is what the server knows of a group (protocol.md §6.7): its id
// and traffic, never its title or who is a member.
type Group struct {
	ID []byte
	// Members is how many accounts the last group message addressed,
	// its sender's included.
	Members     int
	Creator     string // the account that first sent under the id
	Created     time.Time
	LastMessage time.Time
	Messages    uint64 // group messages stored under the id
}

// Groups reads the group records that group messages keep (Append writes
// them; expiry drops one whose last message is older than its cutoff).
type Groups interface {
	// ListGroups lists the groups, by id.
	ListGroups() ([]Group, error)
}

// Stats are the store's gauges.
type Stats struct {
	QueueDepth int   // entries waiting in all mailboxes
	Bytes      int64 // size on disk
	Groups     int   // group records
	// SharedPayloads and SharedBytes are the group messages' shared
	// payloads stored (once each) and their bytes.
	SharedPayloads int
	SharedBytes    int64
	// Blobs and BlobBytes are the encrypted files stored (blobs.go) and
	// the bytes reserved for them (their whole sizes, uploaded or not).
	Blobs     int
	BlobBytes int64
}

// Meta stores the server's own secrets and settings.
type Meta interface {
	// ServerKey returns the server's Ed25519 key, generating it from rand
	// and storing it on first use.
	ServerKey(ctx context.Context, rand io.Reader) (ed25519.PrivateKey, error)
	// AdminPasswordHash returns the admin password's PHC string, "" if
	// none is set.
	AdminPasswordHash() (string, error)
	// SetAdminPasswordHash stores it; "" removes it.
	SetAdminPasswordHash(ctx context.Context, phc string) error
	// Stats reads the store's gauges.
	Stats() Stats
}
