package boltstore

import (
	"crypto/ed25519"

	"github.com/securechat/securechat/transport"
)

// The stored records, in the field encoding of protocol.md §3.2; their
// layouts are protocol.md §7's. Decoded records never alias bbolt's memory
// (the decoder copies), so they outlive their transaction.

// userRecord is a users bucket value.
type userRecord struct {
	PasswordHash string // PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
	Created      int64  // unix ms
	NextDevice   uint32
	Identity     []byte // account identity key (e2ee), set by the first device to publish keys
}

func (r *userRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.PasswordHash)
	e.Int(2, r.Created)
	e.Uint(3, uint64(r.NextDevice))
	e.BytesField(4, r.Identity)
}

func (r *userRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.PasswordHash, err = f.String(512)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.NextDevice, err = f.Uint32()
		case 4:
			r.Identity, err = f.Fixed(transport.IdentityKeyLen)
		default:
			return f.Unknown()
		}
		return err
	})
}

// deviceRecord is a devices bucket value.
type deviceRecord struct {
	Key      []byte // Ed25519 public key
	Created  int64
	LastSeen int64
	Name     string
}

func (r *deviceRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, r.Key)
	e.Int(2, r.Created)
	e.Int(3, r.LastSeen)
	e.String(4, r.Name)
}

func (r *deviceRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Key, err = f.Fixed(ed25519.PublicKeySize)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.LastSeen, err = f.Int()
		case 4:
			r.Name, err = f.String(transport.MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
}

// A mailbox entry value is the unix-ms store time as u64 BE, so expiry can
// read it without decoding, followed by the fields of mailboxEntry.
//
// A group message's entry (protocol.md §6.7) has Group and no Payload: it
// refers to the shared payload stored once under the sender's device key
// ‖ message id (groups.go).
type mailboxEntry struct {
	From       string
	FromDevice uint32
	MessageID  []byte
	Payload    []byte
	Group      []byte
}

func (m *mailboxEntry) MarshalFields(e *transport.Encoder) {
	e.String(1, m.From)
	e.Uint(2, uint64(m.FromDevice))
	e.BytesField(3, m.MessageID)
	e.BytesField(4, m.Payload)
	e.BytesField(5, m.Group)
}

func (m *mailboxEntry) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.From, err = f.String(transport.MaxUserName)
		case 2:
			m.FromDevice, err = f.Uint32()
		case 3:
			m.MessageID, err = f.Fixed(transport.MessageIDLen)
		case 4:
			m.Payload, err = f.Bytes(transport.MaxPayload)
		case 5:
			m.Group, err = f.Fixed(transport.GroupIDLen)
		default:
			return f.Unknown()
		}
		return err
	})
}

// banRecord is a bans bucket value.
type banRecord struct {
	Reason  string
	Created int64
	Expires int64
}

func (r *banRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.Reason)
	e.Int(2, r.Created)
	e.Int(3, r.Expires)
}

func (r *banRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Reason, err = f.String(transport.MaxText)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.Expires, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
}

// inviteRecord is an invites bucket value.
type inviteRecord struct {
	Uses    uint32
	Created int64
	Expires int64
}

func (r *inviteRecord) MarshalFields(e *transport.Encoder) {
	e.Uint(1, uint64(r.Uses))
	e.Int(2, r.Created)
	e.Int(3, r.Expires)
}

func (r *inviteRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Uses, err = f.Uint32()
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.Expires, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
}

// groupRecord is a groups bucket value (protocol.md §7).
type groupRecord struct {
	Creator  string
	Created  int64
	Last     int64
	Messages uint64
	Members  uint32
}

func (r *groupRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.Creator)
	e.Int(2, r.Created)
	e.Int(3, r.Last)
	e.Uint(4, r.Messages)
	e.Uint(5, uint64(r.Members))
}

func (r *groupRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Creator, err = f.String(transport.MaxUserName)
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.Last, err = f.Int()
		case 4:
			r.Messages, err = f.Uint()
		case 5:
			r.Members, err = f.Uint32()
		default:
			return f.Unknown()
		}
		return err
	})
}
