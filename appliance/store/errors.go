package store

import (
	"errors"
	"fmt"

	"github.com/securechat/securechat/chat"
)

// Domain errors (docs/design.md §4.2). A Store returns these, wrapped or as
// is, and nothing from the wire protocol: the session code turns them into
// wire errors in one place. Test with errors.Is; the typed errors carry
// detail for errors.As.
var (
	// ErrNoSuchUser: the named account does not exist (*NoSuchUserError).
	ErrNoSuchUser = errors.New("no such user")
	// ErrNoSuchDevice: the device does not exist.
	ErrNoSuchDevice = errors.New("no such device")
	// ErrDeviceMismatch: a message's recipients are not exactly the
	// recipients' current devices (*DeviceMismatchError lists them).
	ErrDeviceMismatch = errors.New("message slots do not match the recipients' devices")
	// ErrNoRecipients: a message addressed to nobody.
	ErrNoRecipients = errors.New("message has no recipients")
	// ErrNoDevices: a message to an account none of whose devices has
	// published keys, so none can receive (*NoDevicesError).
	ErrNoDevices = errors.New("the account has no device that can receive messages")
	// ErrToSendingDevice: a message with a slot for the device that sends
	// it; a device never messages itself (docs/design.md §10).
	ErrToSendingDevice = errors.New("a message cannot be addressed to the device that sends it")
	// ErrNotPublished: the sending device has not published its end-to-end
	// keys, and such a device cannot send (protocol.md §5.1).
	ErrNotPublished = errors.New("this device has not published its end-to-end keys, so it cannot send")
	// ErrMailboxFull: a recipient device's mailbox holds its bound of
	// entries or bytes (*MailboxFullError names it).
	ErrMailboxFull = errors.New("mailbox is full")
	// ErrStoreFull: the mailboxes together hold the store's total bound.
	ErrStoreFull = errors.New("server storage is full, try again later")
	// ErrUserExists: CreateAccount of a name that is taken.
	ErrUserExists = errors.New("user name is taken")
	// ErrCredentialsChanged: AddDevice found the account's password hash
	// changed (or the account gone) since the caller checked the password.
	ErrCredentialsChanged = errors.New("invalid user name or password")
	// ErrTooManyDevices: the account already has MaxDevices devices.
	ErrTooManyDevices = fmt.Errorf("the account already has %d devices", MaxDevices)
	// ErrInvalidInvite: the invite is unknown, used up or expired.
	ErrInvalidInvite = errors.New("registration needs a valid invite code (--invite); this one is unknown, used up or expired")
	// ErrDeviceKeyMismatch: published keys certify another device key.
	ErrDeviceKeyMismatch = errors.New("device certificate names another device key")
	// ErrIdentityMismatch: published keys are signed by another identity
	// than the one the account's first device set.
	ErrIdentityMismatch = errors.New("device certificate is not signed by the account's identity key")
	// ErrDuplicate: a put of an id or code that is already stored.
	ErrDuplicate = errors.New("already stored")
	// ErrNotFound: no ban, mute, invite or blob under that key.
	ErrNotFound = errors.New("not found")
	// ErrFull: the blobs together would pass the store's bound for them.
	ErrFull = errors.New("server storage for files is full, try again later")
	// ErrCorrupt: a record the store needs does not decode.
	ErrCorrupt = errors.New("store record is corrupt")
	// ErrClosed: a write to a store that is closed or closing.
	ErrClosed = errors.New("store is closed")
	// ErrDataInUse: another process holds the store.
	ErrDataInUse = errors.New("data directory is in use by another securechat server")
)

// NoSuchUserError names a user that does not exist. It is ErrNoSuchUser.
type NoSuchUserError struct{ User string }

func (e *NoSuchUserError) Error() string        { return fmt.Sprintf("no such user %q", e.User) }
func (e *NoSuchUserError) Is(target error) bool { return target == ErrNoSuchUser }

// DeviceMismatchError is returned when a message's recipients are not
// exactly the recipients' current devices. Devices lists the current
// devices of every mismatched recipient (protocol.md §6.1). It is
// ErrDeviceMismatch.
type DeviceMismatchError struct{ Devices []DeviceKey }

func (e *DeviceMismatchError) Error() string        { return ErrDeviceMismatch.Error() }
func (e *DeviceMismatchError) Is(target error) bool { return target == ErrDeviceMismatch }

// NoDevicesError names an account that has no device able to receive. It
// is ErrNoDevices.
type NoDevicesError struct{ User string }

func (e *NoDevicesError) Error() string {
	return fmt.Sprintf("%s has no device that can receive messages (none has published keys)", e.User)
}
func (e *NoDevicesError) Is(target error) bool { return target == ErrNoDevices }

// MailboxFullError names a device whose mailbox is full. It is
// ErrMailboxFull.
type MailboxFullError struct{ Device chat.Device }

func (e *MailboxFullError) Error() string {
	return fmt.Sprintf("%s's mailbox is full (device %d); try again once they have read their messages", e.Device.User, e.Device.ID)
}
func (e *MailboxFullError) Is(target error) bool { return target == ErrMailboxFull }

// ErrTooManyGroups: a group message under a new group id from an account
// that was already the first to use as many as the server allows
// (*TooManyGroupsError).
var ErrTooManyGroups = errors.New("too many groups")

// TooManyGroupsError names the account and the bound. It is
// ErrTooManyGroups.
type TooManyGroupsError struct {
	User string
	Max  int
}

func (e *TooManyGroupsError) Error() string {
	return fmt.Sprintf("%s already started %d groups, as many as this server allows (group_max_per_account)", e.User, e.Max)
}
func (e *TooManyGroupsError) Is(target error) bool { return target == ErrTooManyGroups }

// ErrStaleDeviceList: a signed device list whose sequence number is not
// above the stored one's (protocol.md §5.4): an old list replayed, or
// one signed from an out-of-date view.
var ErrStaleDeviceList = errors.New("the device list is not newer than the account's stored list (its sequence number must grow)")

// ErrDeviceListRefused: a signed device list that does not match the
// account's devices (*DeviceListError says how).
var ErrDeviceListRefused = errors.New("the device list does not match the account's devices")

// DeviceListError says how a device list does not match the account's
// devices. It is ErrDeviceListRefused.
type DeviceListError struct{ Why string }

func (e *DeviceListError) Error() string        { return "the device list " + e.Why }
func (e *DeviceListError) Is(target error) bool { return target == ErrDeviceListRefused }

// ErrDamaged: the store's file is damaged where an operation read or
// wrote it (*DamagedError says which operation and what the storage
// engine found). The operation did nothing; the store goes on serving
// what it can read (docs/design.md §4.2, operations.md §7).
var ErrDamaged = errors.New("server storage is damaged")

// DamagedError is an operation that met a damaged part of the store. It is
// ErrDamaged.
type DamagedError struct {
	Op    string // the store operation, e.g. "KeyCount"
	Cause string // what the storage engine found
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("store damaged (%s): %s", e.Op, e.Cause)
}
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }
