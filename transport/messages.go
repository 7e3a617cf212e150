package transport

import (
	"crypto/ed25519"
	"fmt"
	"io"
)

// Code identifies a frame's message type, docs/protocol.md §4. The numbers
// are part of the wire format: never renumber, never use iota.
type Code uint16

const (
	CodeError      Code = 1  // response: Error
	CodeOK         Code = 2  // response: empty
	CodeRegister   Code = 16 // request: Enroll; creates an account and its first device
	CodeLogin      Code = 17 // request: Enroll; adds a device to an account
	CodeAuth       Code = 18 // request: Auth; authenticates a known device
	CodeWelcome    Code = 19 // response to Register, Login, Auth: Welcome
	CodeCheckName  Code = 20 // request: DevicesRequest; is the name free to register?
	CodeNameFree   Code = 21 // response to CheckName: NameFree
	CodeDevices    Code = 32 // request: DevicesRequest
	CodeDeviceList Code = 33 // response: DeviceList
	CodeSend       Code = 48 // request: Send
	CodeSent       Code = 49 // response: Sent
	CodeDeliver    Code = 64 // push: Deliver
	CodeAck        Code = 65 // notification: Ack
	CodeQueueEmpty Code = 66 // push: no body; the mailbox backlog has been pushed
	CodeSignal     Code = 68 // push: Signal; an ephemeral envelope
	CodePing       Code = 80 // request: no body
)

var codeNames = map[Code]string{
	CodeError: "Error", CodeOK: "OK", CodeRegister: "Register", CodeLogin: "Login",
	CodeAuth: "Auth", CodeWelcome: "Welcome", CodeDevices: "Devices",
	CodeDeviceList: "DeviceList", CodeSend: "Send", CodeSent: "Sent",
	CodeDeliver: "Deliver", CodeAck: "Ack", CodeQueueEmpty: "QueueEmpty", CodePing: "Ping",
	CodeSignal: "Signal", CodeCheckName: "CheckName", CodeNameFree: "NameFree",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("Code(%d)", uint16(c))
}

// Limits checked by the decoders, protocol.md §4.
const (
	MaxUserName  = 32
	MaxPassword  = 1024
	MaxText      = 256       // error texts, device names, invite codes
	MaxPayload   = 256 << 10 // one ciphertext slot
	MaxEnvelopes = 1024      // slots in one Send
	// MaxGroupEnvelopes bounds the slots of a group Send (one with a
	// shared payload, protocol.md §6.7): address-only slots, so a group of
	// group_max_members accounts with several devices each fits one Send.
	MaxGroupEnvelopes = 8192
	GroupIDLen        = 16   // a group's random id, protocol.md §6.7
	MaxDevices        = 64   // devices per account
	MaxAcks           = 4096 // sequence numbers in one Ack
	MessageIDLen      = 16
	KeyLen            = ed25519.PublicKeySize
	SigLen            = ed25519.SignatureSize
)

// ErrorCode is the machine-readable part of an Error, protocol.md §4.1.
type ErrorCode uint16

const (
	ErrBadRequest     ErrorCode = 1  // malformed or invalid request
	ErrUnauthorized   ErrorCode = 2  // authentication failed or required; deliberately vague
	ErrUserExists     ErrorCode = 3  // registration: the name is taken
	ErrNoSuchUser     ErrorCode = 4  // a recipient does not exist
	ErrDeviceMismatch ErrorCode = 5  // Send: slots do not match the recipients' devices; Devices lists them
	ErrRateLimited    ErrorCode = 6  // RetryAfterMS says when to retry
	ErrInternal       ErrorCode = 7  // the server failed; retry later
	ErrInvalidName    ErrorCode = 8  // a user name outside the allowed form
	ErrTooLarge       ErrorCode = 9  // a payload or request over a limit
	ErrRegClosed      ErrorCode = 10 // registration is closed or needs a valid invite
	ErrTooManyDevices ErrorCode = 11 // Login: the account has MaxDevices devices
	ErrUnavailable    ErrorCode = 12 // the server is shutting down
	ErrMuted          ErrorCode = 13 // the account may not send for now
	ErrFull           ErrorCode = 14 // a recipient's mailbox or the server's store is full
	// ErrRecipientsUnknown: a group Send names an address list this
	// connection has not sent, or the server no longer keeps: send the list.
	ErrRecipientsUnknown ErrorCode = 15
	// ErrStorageFull: the server cannot store anything now (its disk is
	// full, or its mailboxes together hold their total bound); retry
	// later. Code 16 is ErrNoSuchBlob (blobs.go).
	ErrStorageFull ErrorCode = 17
)

var errorCodeNames = map[ErrorCode]string{
	ErrBadRequest: "bad request", ErrUnauthorized: "unauthorized", ErrUserExists: "user exists",
	ErrNoSuchUser: "no such user", ErrDeviceMismatch: "device mismatch", ErrRateLimited: "rate limited",
	ErrInternal: "internal error", ErrInvalidName: "invalid name", ErrTooLarge: "too large",
	ErrRegClosed: "registration closed", ErrTooManyDevices: "too many devices", ErrUnavailable: "unavailable",
	ErrMuted: "muted", ErrFull: "full", ErrRecipientsUnknown: "recipients unknown",
	ErrStorageFull: "storage full",
}

func (c ErrorCode) String() string {
	if s, ok := errorCodeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("error %d", uint16(c))
}

// Error is the response to a failed request. It is also a Go error.
type Error struct {
	Code         ErrorCode
	Message      string
	RetryAfterMS uint64
	Devices      []DeviceInfo // ErrDeviceMismatch: the recipients' current devices
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

func (e *Error) MarshalFields(enc *Encoder) {
	enc.Uint(1, uint64(e.Code))
	enc.String(2, e.Message)
	enc.Uint(3, e.RetryAfterMS)
	for i := range e.Devices {
		enc.Message(4, &e.Devices[i])
	}
}

func (e *Error) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			var v uint64
			v, err = f.Uint()
			if v > 0xffff {
				return errorf("error code out of range")
			}
			e.Code = ErrorCode(v)
		case 2:
			e.Message, err = f.String(MaxText)
		case 3:
			e.RetryAfterMS, err = f.Uint()
		case 4:
			if len(e.Devices) >= MaxEnvelopes {
				return errorf("too many devices")
			}
			var di DeviceInfo
			err = f.Message(&di)
			e.Devices = append(e.Devices, di)
		default:
			return f.Unknown()
		}
		return err
	})
}

// Enroll is the body of Register and Login, protocol.md §5.1. Signature is
// the device key's signature over AuthTranscript.
type Enroll struct {
	User       string
	Password   string
	DeviceKey  []byte // Ed25519 public key
	Signature  []byte
	Invite     string
	DeviceName string
}

func (m *Enroll) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.String(2, m.Password)
	e.BytesField(3, m.DeviceKey)
	e.BytesField(4, m.Signature)
	e.String(5, m.Invite)
	e.String(6, m.DeviceName)
}

func (m *Enroll) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.Password, err = f.String(MaxPassword)
		case 3:
			m.DeviceKey, err = f.Fixed(KeyLen)
		case 4:
			m.Signature, err = f.Fixed(SigLen)
		case 5:
			m.Invite, err = f.String(MaxText)
		case 6:
			m.DeviceName, err = f.String(MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.DeviceKey == nil || m.Signature == nil) {
		err = errorf("missing device key or signature")
	}
	return err
}

// Auth authenticates a known device, protocol.md §5.2.
type Auth struct {
	User      string
	Device    uint32
	Signature []byte
	Receive   bool // push this device's mailbox on this connection
}

func (m *Auth) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.Device))
	e.BytesField(3, m.Signature)
	e.Bool(4, m.Receive)
}

func (m *Auth) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.Device, err = f.Uint32()
		case 3:
			m.Signature, err = f.Fixed(SigLen)
		case 4:
			m.Receive, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && m.Signature == nil {
		err = errorf("missing signature")
	}
	return err
}

// Welcome answers a successful Register, Login or Auth.
type Welcome struct {
	User       string // canonical (case-folded) name
	Device     uint32
	ServerTime int64 // unix milliseconds
	Keys       KeyCount
}

func (m *Welcome) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.Device))
	e.Int(3, m.ServerTime)
	if m.Keys != (KeyCount{}) {
		e.Message(4, &m.Keys)
	}
}

func (m *Welcome) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.Device, err = f.Uint32()
		case 3:
			m.ServerTime, err = f.Int()
		case 4:
			err = f.Message(&m.Keys)
		default:
			return f.Unknown()
		}
		return err
	})
}

// DevicesRequest asks for an account's devices.
type DevicesRequest struct {
	User string
}

func (m *DevicesRequest) MarshalFields(e *Encoder) { e.String(1, m.User) }

func (m *DevicesRequest) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.User, err = f.String(MaxUserName)
			return err
		}
		return f.Unknown()
	})
}

// NameFree answers a CheckName whose name is free to register
// (protocol.md §5.1). Invite says that a Register must carry an invite
// code on this server.
type NameFree struct {
	Invite bool
}

func (m *NameFree) MarshalFields(e *Encoder) { e.Bool(1, m.Invite) }

func (m *NameFree) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.Invite, err = f.Bool()
			return err
		}
		return f.Unknown()
	})
}

// DeviceInfo names one device and its public key.
type DeviceInfo struct {
	User string
	ID   uint32
	Key  []byte
}

func (m *DeviceInfo) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.ID))
	e.BytesField(3, m.Key)
}

func (m *DeviceInfo) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.ID, err = f.Uint32()
		case 3:
			m.Key, err = f.Fixed(KeyLen)
		default:
			return f.Unknown()
		}
		return err
	})
}

// DeviceList answers DevicesRequest.
type DeviceList struct {
	Devices []DeviceInfo
	// SignedList is the account's signed device list as its devices last
	// stored it (protocol.md §5.4), nil if none was; the client verifies it.
	SignedList []byte
	// Unlinked, in the answer to a Devices request, are the account's
	// devices that have published no keys (added with Login, not linked):
	// nobody sends to them, and contacts are told they exist.
	Unlinked []DeviceInfo
}

func (m *DeviceList) MarshalFields(e *Encoder) {
	for i := range m.Devices {
		e.Message(1, &m.Devices[i])
	}
	e.BytesField(2, m.SignedList)
	for i := range m.Unlinked {
		e.Message(3, &m.Unlinked[i])
	}
}

func (m *DeviceList) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			if len(m.Devices) >= MaxEnvelopes {
				return errorf("too many devices")
			}
			var di DeviceInfo
			err = f.Message(&di)
			m.Devices = append(m.Devices, di)
		case 2:
			m.SignedList, err = f.Bytes(MaxDeviceList)
		case 3:
			if len(m.Unlinked) >= MaxDevices {
				return errorf("too many unlinked devices")
			}
			var di DeviceInfo
			err = f.Message(&di)
			m.Unlinked = append(m.Unlinked, di)
		default:
			return f.Unknown()
		}
		return err
	})
}

// Send asks the server to store one message for a set of devices,
// protocol.md §6.1: one opaque payload per recipient device.
type Send struct {
	MessageID []byte // MessageIDLen random bytes chosen by the sender; makes resends idempotent
	Envelopes []Envelope
	// Ephemeral asks the server to hand the envelopes to the recipients'
	// connected devices only and store nothing (typing signals, protocol.md §6.5).
	Ephemeral bool
	// Group and Shared make a group Send (protocol.md §6.7): one ciphertext,
	// Shared, for every envelope, whose payloads are then empty; Group is
	// the group's id, which the server counts members and limits by.
	Group  []byte
	Shared []byte
	// Recipients, on a group Send without envelopes, names the address
	// list of an earlier group Send of this connection to the same group
	// by the hash its Sent returned (protocol.md §6.7): the server uses
	// that list, so that a sender whose group has not changed does not
	// send and encode it again.
	Recipients []byte
}

// RecipientsLen is the length of a group Send's address-list hash.
const RecipientsLen = 32

// Envelope is one recipient device's slot of a Send.
type Envelope struct {
	User   string
	Device uint32
	// DeviceKey is the recipient device's Ed25519 device key, as the
	// sender's session with it knows it: the server refuses a slot whose
	// key is not the device's current one (protocol.md §6.1).
	DeviceKey []byte
	Payload   []byte
}

func (m *Envelope) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.Uint(2, uint64(m.Device))
	e.BytesField(3, m.Payload)
	e.BytesField(4, m.DeviceKey)
}

func (m *Envelope) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.Device, err = f.Uint32()
		case 3:
			m.Payload, err = f.Bytes(MaxPayload)
		case 4:
			m.DeviceKey, err = f.Fixed(ed25519.PublicKeySize)
		default:
			return f.Unknown()
		}
		return err
	})
}

func (m *Send) MarshalFields(e *Encoder) {
	e.BytesField(1, m.MessageID)
	for i := range m.Envelopes {
		e.Message(2, &m.Envelopes[i])
	}
	e.Bool(3, m.Ephemeral)
	e.BytesField(4, m.Group)
	e.BytesField(5, m.Shared)
	e.BytesField(6, m.Recipients)
}

func (m *Send) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.MessageID, err = f.Fixed(MessageIDLen)
		case 2:
			if len(m.Envelopes) >= MaxGroupEnvelopes {
				return errorf("more than %d envelopes", MaxGroupEnvelopes)
			}
			var env Envelope
			err = f.Message(&env)
			m.Envelopes = append(m.Envelopes, env)
		case 3:
			m.Ephemeral, err = f.Bool()
		case 4:
			m.Group, err = f.Fixed(GroupIDLen)
		case 5:
			m.Shared, err = f.Bytes(MaxPayload)
		case 6:
			m.Recipients, err = f.Fixed(RecipientsLen)
		default:
			return f.Unknown()
		}
		return err
	})
	if err != nil {
		return err
	}
	return m.check()
}

// check applies the rules that tie a Send's fields together (protocol.md
// §6.1, §6.7).
func (m *Send) check() error {
	switch {
	case m.MessageID == nil:
		return errorf("missing message id")
	case (m.Group == nil) != (m.Shared == nil):
		return errorf("a group send needs both a group id and a shared payload")
	case m.Shared == nil && len(m.Envelopes) > MaxEnvelopes:
		return errorf("more than %d envelopes", MaxEnvelopes)
	case m.Recipients != nil && (m.Shared == nil || len(m.Envelopes) != 0):
		return errorf("only a group send without envelopes names an earlier one's recipients")
	}
	if m.Shared != nil {
		for i := range m.Envelopes {
			if len(m.Envelopes[i].Payload) != 0 {
				return errorf("a group send's envelopes carry no payload of their own")
			}
		}
	}
	return nil
}

// Sent answers a Send once every slot is durably stored.
type Sent struct {
	ServerTime int64  // unix milliseconds of the first store
	Duplicate  bool   // the message id was seen before; nothing was stored again
	Online     uint32 // Ephemeral: how many recipient devices were connected to take it
	// Recipients, for a group Send, is the hash of its address list, which
	// a later group Send to the same group on this connection may name
	// instead of the list (protocol.md §6.7).
	Recipients []byte
}

func (m *Sent) MarshalFields(e *Encoder) {
	e.Int(1, m.ServerTime)
	e.Bool(2, m.Duplicate)
	e.Uint(3, uint64(m.Online))
	e.BytesField(4, m.Recipients)
}

func (m *Sent) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ServerTime, err = f.Int()
		case 2:
			m.Duplicate, err = f.Bool()
		case 3:
			m.Online, err = f.Uint32()
		case 4:
			m.Recipients, err = f.Fixed(RecipientsLen)
		default:
			return f.Unknown()
		}
		return err
	})
}

// Signal pushes an ephemeral envelope to a connected device (protocol.md §6.5): a
// Deliver without a mailbox sequence number (Seq stays 0 and field 1 is
// refused), never stored, never acked.
type Signal Deliver

func (m *Signal) MarshalFields(e *Encoder) { (*Deliver)(m).MarshalFields(e) }

func (m *Signal) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, (*Deliver)(m).field)
	if err == nil && m.MessageID == nil {
		err = errorf("missing message id")
	}
	if err == nil {
		err = (*Deliver)(m).checkGroup()
	}
	return err
}

// Deliver pushes one mailbox entry to its device, protocol.md §6.2.
type Deliver struct {
	Seq        uint64
	From       string
	FromDevice uint32
	MessageID  []byte
	ServerTime int64
	Payload    []byte
	// Group and Shared come from a group Send (protocol.md §6.7): the
	// group's id and the one ciphertext every member device gets; Payload
	// is then empty.
	Group  []byte
	Shared []byte
}

func (m *Deliver) MarshalFields(e *Encoder) {
	e.Uint(1, m.Seq)
	e.String(2, m.From)
	e.Uint(3, uint64(m.FromDevice))
	e.BytesField(4, m.MessageID)
	e.Int(5, m.ServerTime)
	e.BytesField(6, m.Payload)
	e.BytesField(7, m.Group)
	e.BytesField(8, m.Shared)
}

func (m *Deliver) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.Seq, err = f.Uint()
			return err
		}
		return m.field(f)
	})
	if err == nil && (m.Seq == 0 || m.MessageID == nil) {
		err = errorf("missing sequence number or message id")
	}
	if err == nil {
		err = m.checkGroup()
	}
	return err
}

// checkGroup: a group entry has both its group id and the shared payload,
// and no payload of its own (protocol.md §6.7).
func (m *Deliver) checkGroup() error {
	if (m.Group == nil) != (m.Shared == nil) {
		return errorf("a group entry needs both a group id and a shared payload")
	}
	if m.Shared != nil && len(m.Payload) != 0 {
		return errorf("a group entry carries no payload of its own")
	}
	return nil
}

// field decodes the fields Deliver and Signal share.
func (m *Deliver) field(f Field) (err error) {
	switch f.Num {
	case 2:
		m.From, err = f.String(MaxUserName)
	case 3:
		m.FromDevice, err = f.Uint32()
	case 4:
		m.MessageID, err = f.Fixed(MessageIDLen)
	case 5:
		m.ServerTime, err = f.Int()
	case 6:
		m.Payload, err = f.Bytes(MaxPayload)
	case 7:
		m.Group, err = f.Fixed(GroupIDLen)
	case 8:
		m.Shared, err = f.Bytes(MaxPayload)
	default:
		return f.Unknown()
	}
	return err
}

// Ack tells the server which deliveries the device has stored; the server
// deletes them, protocol.md §6.3.
type Ack struct {
	Seqs []uint64
}

func (m *Ack) MarshalFields(e *Encoder) {
	for _, s := range m.Seqs {
		e.Uint(1, s)
	}
}

func (m *Ack) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) error {
		if f.Num != 1 {
			return f.Unknown()
		}
		if len(m.Seqs) >= MaxAcks {
			return errorf("more than %d acks", MaxAcks)
		}
		s, err := f.Uint()
		if err == nil && s == 0 {
			return errorf("sequence number 0") // mailbox sequence numbers start at 1
		}
		m.Seqs = append(m.Seqs, s)
		return err
	})
}

// Empty is the body of messages that carry none (OK, QueueEmpty, Ping).
// Unknown critical fields are still refused.
type Empty struct{}

func (*Empty) MarshalFields(*Encoder) {}

func (*Empty) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) error { return f.Unknown() })
}

// ForEachField calls fn for every field of d and stops at the first error.
func ForEachField(d *Decoder, fn func(Field) error) error {
	for {
		f, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
	}
}

// Auth transcripts, protocol.md §5: what a device key signs. The exporter
// value binds the signature to this TLS connection, so it cannot be replayed
// on another.
const (
	ExporterLabel     = "EXPORTER-securechat-device-auth"
	ExporterLen       = 32
	transcriptContext = "securechat device auth v1"
)

// AuthTranscript is the byte string a device signs to prove possession of
// its key on this connection. purpose is the request code (Register, Login or
// Auth), device is 0 before the server has assigned one.
func AuthTranscript(purpose Code, exporter []byte, user string, device uint32) []byte {
	var e Encoder
	e.String(1, transcriptContext)
	e.Uint(2, uint64(purpose))
	e.BytesField(3, exporter)
	e.String(4, user)
	e.Uint(5, uint64(device))
	return e.Bytes()
}
