package home

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// The session layer's state (docs/design.md §6.1, docs/protocol.md §9):
//
//	contacts    index(user)                      → Contact
//	sessions    index(user ‖ 0 ‖ device)         → Session
//	received    index(seen key)                  → Received, until acked
//	senderkeys  index(group key ‖ 0 ‖ user/dev)  → e2ee sender-key state
//	basekeys    index(u32 BE signed prekey id ‖ base key) → u32 BE signed
//	            prekey id; base keys of initial messages answered without
//	            a one-time prekey, until their signed prekey is pruned
//
// Sessions and received records may be deferred (later.go).
var (
	bucketContacts   = []byte("contacts")
	bucketSessions   = []byte("sessions")
	bucketReceived   = []byte("received")
	bucketSenderKeys = []byte("senderkeys")
	bucketBaseKeys   = []byte("basekeys")
)

// Contact is what this home knows of another account's identity.
type Contact struct {
	Identity []byte // trusted account identity key
	Pending  []byte // a different key seen since; blocks sending until trusted
	Verified bool   // the user compared the safety number
	// Shown is the pending key whose safety number was last shown to the
	// user (securechat fingerprint, the verify screen): trust without a
	// safety number accepts only that key.
	Shown []byte
	// Conflict: yet another key was offered while one was pending. The
	// pending key is never replaced by it (a swap between showing and
	// accepting); the user sees the conflict.
	Conflict bool
	// DeviceList is the newest signed device list of the account this
	// home verified under Identity (protocol.md §9.8): no older one is
	// taken, and only the devices it names are sent to.
	DeviceList []byte
}

func (m *Contact) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Identity)
	e.BytesField(2, m.Pending)
	e.Bool(3, m.Verified)
	e.BytesField(4, m.Shown)
	e.Bool(5, m.Conflict)
	e.BytesField(6, m.DeviceList)
}

func (m *Contact) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Identity, err = f.Fixed(transport.IdentityKeyLen)
		case 2:
			m.Pending, err = f.Fixed(transport.IdentityKeyLen)
		case 3:
			m.Verified, err = f.Bool()
		case 4:
			m.Shown, err = f.Fixed(transport.IdentityKeyLen)
		case 5:
			m.Conflict, err = f.Bool()
		case 6:
			m.DeviceList, err = f.Bytes(transport.MaxDeviceList)
		default:
			return f.Unknown()
		}
		return err
	})
}

// Session is one device-pair Double Ratchet session.
type Session struct {
	User    string
	Device  uint32
	Ratchet []byte // e2ee.Session encoding
	Initial []byte // initiator: the PQXDH header, sent until the peer answers
	BaseKey []byte // responder: the initiator's ephemeral key that started it
	// DeviceKey is the peer device's Ed25519 device key, as its certificate
	// named it when the session started; nil in a session kept before it
	// was recorded. A device the server lists with another key is another
	// device under the same number (re-created, or its account deleted and
	// registered again): the session is not used with it (protocol.md §9.2).
	DeviceKey []byte
	// Retired: the peer's identity key this session was made with is no
	// longer the accepted one (Trust accepted another). The session still
	// reads what the old key's device sent before, but nothing is sent on
	// it: the next send starts a new session and keeps this one among the
	// earlier ones (protocol.md §9.2).
	Retired bool
	// Previous are earlier sessions with the device, newest first, at
	// most MaxPreviousSessions, each without a Previous of its own. When
	// both sides start a session at once, each answers the other's and
	// sends on its own newest; the peer finds the matching one here
	// (protocol.md §9.2, as Signal's session archive).
	Previous []Session
}

// MaxPreviousSessions bounds the earlier sessions kept per device.
const MaxPreviousSessions = 4

// Peer is the device the session is with.
func (m *Session) Peer() chat.Device { return chat.Device{User: m.User, ID: m.Device} }

func (m *Session) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Ratchet)
	e.BytesField(2, m.Initial)
	e.BytesField(3, m.BaseKey)
	e.String(4, m.User)
	e.Uint(5, uint64(m.Device))
	for i := range m.Previous {
		e.Message(6, &m.Previous[i])
	}
	e.BytesField(7, m.DeviceKey)
	e.Bool(8, m.Retired)
}

func (m *Session) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Ratchet, err = f.Bytes(1 << 20)
		case 2:
			m.Initial, err = f.Bytes(transport.MaxKeyElement * 2)
		case 3:
			m.BaseKey, err = f.Fixed(32)
		case 4:
			m.User, err = f.String(transport.MaxUserName)
		case 5:
			m.Device, err = f.Uint32()
		case 6:
			if len(m.Previous) >= MaxPreviousSessions {
				return errors.New("too many earlier sessions")
			}
			var p Session
			if err = f.Message(&p); err == nil && p.Previous != nil {
				err = errors.New("an earlier session has earlier sessions")
			}
			m.Previous = append(m.Previous, p)
		case 7:
			m.DeviceKey, err = f.Fixed(32)
		case 8:
			m.Retired, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// current is the record without its earlier sessions.
func (m *Session) current() Session {
	c := *m
	c.Previous = nil
	return c
}

// ReplacedBy returns next as the current session with m's current one
// first among the earlier ones.
func (m *Session) ReplacedBy(next Session) Session {
	next.Previous = append([]Session{m.current()}, m.Previous...)
	if len(next.Previous) > MaxPreviousSessions {
		next.Previous = next.Previous[:MaxPreviousSessions]
	}
	return next
}

// Promoted returns the record with earlier session i made current again.
func (m *Session) Promoted(i int) Session {
	rest := Session{User: m.User, Device: m.Device, Ratchet: m.Ratchet, Initial: m.Initial, BaseKey: m.BaseKey, DeviceKey: m.DeviceKey,
		Previous: slices.Delete(slices.Clone(m.Previous), i, i+1)}
	return rest.ReplacedBy(m.Previous[i])
}

// Received keeps a decrypted message until it is acked, so that a
// redelivery (its ack lost) shows the same message instead of failing to
// decrypt with a key already used.
type Received struct {
	Content  []byte
	Changed  bool  // it came with an identity key this home does not trust
	Received int64 // unix ms
}

func (m *Received) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Content)
	e.Bool(2, m.Changed)
	e.Int(3, m.Received)
}

func (m *Received) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Content, err = f.Bytes(transport.MaxPayload)
		case 2:
			m.Changed, err = f.Bool()
		case 3:
			m.Received, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
}

// MessageKey names a delivered message: its sending device and the
// sender's message id.
type MessageKey struct {
	From chat.Device
	ID   []byte
}

// seenKey is the clear key of a message's seen and received records.
func (k MessageKey) seenKey() []byte {
	return seenKey(k.From.User, k.From.ID, k.ID)
}

func sessionKey(d chat.Device) []byte {
	return fmt.Appendf(nil, "%s\x00%d", d.User, d.ID)
}

func senderKeyKey(group chat.Conversation, owner chat.Device) []byte {
	return fmt.Appendf(nil, "%s\x00%s", group.Key(), owner)
}

// Contact returns what the home knows of user; nil if nothing.
func (t *Tx) Contact(user string) (*Contact, error) {
	var c Contact
	ok, err := t.getRecord(bucketContacts, []byte(user), &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

// PutContact stores what the home knows of user.
func (t *Tx) PutContact(user string, c *Contact) error {
	return t.putRecord(bucketContacts, []byte(user), c)
}

// Session returns the session with device d; nil if there is none.
func (t *Tx) Session(d chat.Device) (*Session, error) {
	var s Session
	ok, err := t.getRecord(bucketSessions, sessionKey(d), &s)
	if err != nil || !ok {
		return nil, err
	}
	return &s, nil
}

// PutSession stores a session under the device it is with.
func (t *Tx) PutSession(s *Session) error {
	t.h.genDirty = true // rollback.go
	return t.putRecord(bucketSessions, sessionKey(s.Peer()), s)
}

// Received returns the kept plaintext of a decrypted, not yet acked
// message; nil if there is none.
func (t *Tx) Received(k MessageKey) (*Received, error) {
	var r Received
	ok, err := t.getRecord(bucketReceived, k.seenKey(), &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// PutReceived keeps a decrypted message's plaintext until it is acked.
func (t *Tx) PutReceived(k MessageKey, r *Received) error {
	return t.putRecord(bucketReceived, k.seenKey(), r)
}

// SenderKey returns the sender-key state of owner's chain in group (this
// device's own sending chain when owner is this device); nil if none.
func (t *Tx) SenderKey(group chat.Conversation, owner chat.Device) ([]byte, error) {
	return t.get(bucketSenderKeys, t.h.seal.index(bucketSenderKeys, senderKeyKey(group, owner)))
}

// PutSenderKey stores the sender-key state of owner's chain in group.
func (t *Tx) PutSenderKey(group chat.Conversation, owner chat.Device, state []byte) error {
	t.h.genDirty = true // rollback.go
	return t.put(bucketSenderKeys, t.h.seal.index(bucketSenderKeys, senderKeyKey(group, owner)), state)
}

// SessionState is what the home keeps for the session layer about some
// devices, read in one View.
type SessionState struct {
	Contacts map[string]*Contact      // by user; absent: never met
	Sessions map[chat.Device]*Session // absent: no session yet
	Received *Received                // LoadIncoming: the message's kept plaintext, if any
}

// LoadSessions reads the sessions with devs and the contacts of their
// users.
func (h *Home) LoadSessions(devs []chat.Device) (*SessionState, error) {
	st := &SessionState{Contacts: make(map[string]*Contact), Sessions: make(map[chat.Device]*Session)}
	err := h.View(func(tx *Tx) error {
		for _, d := range devs {
			if _, done := st.Contacts[d.User]; !done {
				c, err := tx.Contact(d.User)
				if err != nil {
					return err
				}
				if c != nil {
					st.Contacts[d.User] = c
				}
			}
			s, err := tx.Session(d)
			if err != nil {
				return err
			}
			if s != nil {
				st.Sessions[d] = s
			}
		}
		return nil
	})
	return st, err
}

// LoadIncoming reads what decrypting a message from a device needs: the
// kept plaintext of the message if it was decrypted before (none is looked
// for when id is nil, an ephemeral signal), the session with the device and
// the sender's contact.
func (h *Home) LoadIncoming(from chat.Device, id []byte) (*SessionState, error) {
	st := &SessionState{Contacts: make(map[string]*Contact), Sessions: make(map[chat.Device]*Session)}
	err := h.View(func(tx *Tx) error {
		if id != nil {
			r, err := tx.Received(MessageKey{From: from, ID: id})
			if err != nil || r != nil {
				st.Received = r
				return err
			}
		}
		s, err := tx.Session(from)
		if err != nil {
			return err
		}
		if s != nil {
			st.Sessions[from] = s
		}
		c, err := tx.Contact(from.User)
		if c != nil {
			st.Contacts[from.User] = c
		}
		return err
	})
	return st, err
}

// SessionChanges are what one step of the session layer stores, in one
// commit. Nil and empty fields change nothing.
type SessionChanges struct {
	Profile  *Profile // the device keys changed (prekeys used or added)
	Contacts map[string]*Contact
	Sessions []*Session
	// Received keeps a decrypted message until it is acked.
	Received    *Received
	ReceivedKey MessageKey
	// Outbox is the Send that used the sessions: stored with them, so a
	// crash can never make a message key be used twice (protocol.md §6.1).
	Outbox *OutboxItem
	// BaseKey is an initial message answered without a one-time prekey:
	// remembered so that a replay of it is refused (BaseKeyUsed).
	BaseKey *BaseKeyUse
	// SenderKeys are sender-key states (e2ee encodings) advanced or
	// received; Chain what a group record says of this device's sending
	// chain, changed with them.
	SenderKeys []SenderKeyState
	Chain      *GroupChain
}

// GroupChain is what a group record keeps of this device's sending chain
// (GroupRecord's ChainCreated, Rotate, Holders), written over the record
// as it is at commit. Log is the membership log the sender read: if the
// record's log changed since, a member may have gone meanwhile, and the
// chain is marked to be replaced before the next message.
type GroupChain struct {
	Group        chat.Conversation
	Log          []byte
	ChainCreated int64
	Holders      []KeyHolder
}

// SenderKeyState is the sender-key state of owner's chain in a group, and
// with a new chain its signal key (nil: unchanged).
type SenderKeyState struct {
	Group  chat.Conversation
	Owner  chat.Device
	State  []byte
	Signal []byte
}

// SignalKey returns the signal key of owner's latest chain in group
// (protocol.md §8.3); nil if none.
func (t *Tx) SignalKey(group chat.Conversation, owner chat.Device) ([]byte, error) {
	return t.get(bucketSenderKeys, t.h.seal.index(bucketSenderKeys, append(senderKeyKey(group, owner), "\x00signal"...)))
}

// PutSignalKey stores the signal key of owner's latest chain in group.
func (t *Tx) PutSignalKey(group chat.Conversation, owner chat.Device, key []byte) error {
	return t.put(bucketSenderKeys, t.h.seal.index(bucketSenderKeys, append(senderKeyKey(group, owner), "\x00signal"...)), key)
}

// SignalKey returns the signal key of owner's latest chain in group; nil
// if none.
func (h *Home) SignalKey(group chat.Conversation, owner chat.Device) ([]byte, error) {
	var v []byte
	err := h.View(func(tx *Tx) error {
		var err error
		v, err = tx.SignalKey(group, owner)
		return err
	})
	return v, err
}

// BaseKeyUse names an initial message (protocol.md §9.2) by the signed
// prekey it used and its base key, the initiator's ephemeral key.
type BaseKeyUse struct {
	SignedPreKey uint32
	BaseKey      []byte
}

func (u *BaseKeyUse) clearKey() []byte {
	return append(binary.BigEndian.AppendUint32(nil, u.SignedPreKey), u.BaseKey...)
}

// BaseKeyUsed reports whether an initial message with u was answered
// before without a one-time prekey.
func (h *Home) BaseKeyUsed(u BaseKeyUse) (bool, error) {
	var used bool
	err := h.View(func(tx *Tx) error {
		v, err := tx.get(bucketBaseKeys, h.seal.index(bucketBaseKeys, u.clearKey()))
		used = v != nil
		return err
	})
	return used, err
}

// PruneBaseKeys forgets the base keys remembered for signed prekeys that
// held no longer reports: an initial message naming them cannot be
// answered any more, replayed or not.
func (h *Home) PruneBaseKeys(held func(signedPreKey uint32) bool) error {
	return h.Update(func(tx *Tx) error {
		b := tx.tx.Bucket(bucketBaseKeys)
		var stale [][]byte
		b.ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketBaseKeys, k, sealed)
			if err != nil || len(v) != 4 || !held(binary.BigEndian.Uint32(v)) {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// SaveSessions stores changes in one commit.
func (h *Home) SaveSessions(c *SessionChanges) error {
	return h.Update(func(tx *Tx) error { return tx.saveSessions(c) })
}

func (t *Tx) saveSessions(c *SessionChanges) error {
	if c.Profile != nil {
		if err := t.PutProfile(c.Profile); err != nil {
			return err
		}
	}
	for user, ct := range c.Contacts {
		if err := t.PutContact(user, ct); err != nil {
			return err
		}
	}
	for _, s := range c.Sessions {
		if err := t.PutSession(s); err != nil {
			return err
		}
	}
	if c.Received != nil {
		if err := t.PutReceived(c.ReceivedKey, c.Received); err != nil {
			return err
		}
	}
	if c.BaseKey != nil {
		if err := t.put(bucketBaseKeys, t.h.seal.index(bucketBaseKeys, c.BaseKey.clearKey()), binary.BigEndian.AppendUint32(nil, c.BaseKey.SignedPreKey)); err != nil {
			return err
		}
	}
	for _, k := range c.SenderKeys {
		if err := t.PutSenderKey(k.Group, k.Owner, k.State); err != nil {
			return err
		}
		if k.Signal != nil {
			if err := t.PutSignalKey(k.Group, k.Owner, k.Signal); err != nil {
				return err
			}
		}
	}
	if ch := c.Chain; ch != nil {
		rec, err := t.Group(ch.Group)
		if err != nil {
			return err
		}
		if rec != nil {
			rec.Rotate = !bytes.Equal(rec.Log, ch.Log)
			rec.ChainCreated, rec.Holders = ch.ChainCreated, ch.Holders
			if err := t.PutGroup(rec); err != nil {
				return err
			}
		}
	}
	if c.Outbox != nil {
		return t.PutOutbox(c.Outbox)
	}
	return nil
}

// DeferSessions keeps a session and, if not nil, a received record in
// memory until the next write transaction (later.go): what decrypting a
// message of an established session changes.
func (h *Home) DeferSessions(s *Session, k MessageKey, r *Received) {
	puts := []laterPut{{bucketSessions, h.seal.index(bucketSessions, sessionKey(s.Peer())), transport.Marshal(s)}}
	if r != nil {
		puts = append(puts, laterPut{bucketReceived, h.seal.index(bucketReceived, k.seenKey()), transport.Marshal(r)})
	}
	h.putLater(puts...)
}

// Contact returns what the home knows of user; nil if nothing.
func (h *Home) Contact(user string) (*Contact, error) {
	var c *Contact
	err := h.View(func(tx *Tx) error {
		var err error
		c, err = tx.Contact(user)
		return err
	})
	return c, err
}

// SaveContact stores what the home knows of user.
func (h *Home) SaveContact(user string, c *Contact) error {
	return h.Update(func(tx *Tx) error { return tx.PutContact(user, c) })
}

// SenderKey returns the sender-key state of owner's chain in group; nil if
// none.
func (h *Home) SenderKey(group chat.Conversation, owner chat.Device) ([]byte, error) {
	var v []byte
	err := h.View(func(tx *Tx) error {
		var err error
		v, err = tx.SenderKey(group, owner)
		return err
	})
	return v, err
}

// SaveSenderKey stores the sender-key state of owner's chain in group.
func (h *Home) SaveSenderKey(group chat.Conversation, owner chat.Device, state []byte) error {
	return h.Update(func(tx *Tx) error { return tx.PutSenderKey(group, owner, state) })
}

// ErrPendingChanged is returned when the key to accept is not the one
// pending: the user compared another.
var ErrPendingChanged = errors.New("the pending identity key is not the one you compared: nothing accepted")

// Trust accepts a contact's changed identity key, exactly key, the one the
// user compared: if another key is pending, it is ErrPendingChanged and
// nothing changes. Sessions with the old key are retired: nothing more is
// sent on them (new ones start with the new key), but what the old key's
// devices sent before still reads.
func (h *Home) Trust(user string, key []byte) error {
	return h.Update(func(tx *Tx) error {
		ct, err := tx.Contact(user)
		if err != nil {
			return err
		}
		if ct == nil {
			return fmt.Errorf("no identity key known for %s: nothing to accept", user)
		}
		if ct.Pending == nil {
			return fmt.Errorf("%s's identity key has not changed: nothing to accept", user)
		}
		if len(key) == 0 || !bytes.Equal(ct.Pending, key) {
			return fmt.Errorf("%s: %w", user, ErrPendingChanged)
		}
		ct.Identity, ct.Pending, ct.Verified, ct.Shown, ct.Conflict = ct.Pending, nil, false, nil, false
		if err := tx.PutContact(user, ct); err != nil {
			return err
		}
		return tx.retireSessionsOf(user)
	})
}

// retireSessionsOf marks every session with user's devices retired, and
// drops any that does not open.
func (t *Tx) retireSessionsOf(user string) error {
	b := t.tx.Bucket(bucketSessions)
	var stale [][]byte
	var retired []*Session
	b.ForEach(func(k, sealed []byte) error {
		r := new(Session)
		v, err := t.h.seal.open(bucketSessions, k, sealed)
		switch {
		case err != nil || transport.Unmarshal(v, r) != nil:
			stale = append(stale, append([]byte(nil), k...))
		case r.User == user:
			retired = append(retired, r)
		}
		return nil
	})
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for _, r := range retired {
		r.Retired = true
		for i := range r.Previous {
			r.Previous[i].Retired = true
		}
		if err := t.putRecord(bucketSessions, sessionKey(r.Peer()), r); err != nil {
			return err
		}
	}
	return nil
}

// ShowPending records that the safety number of key, user's pending key,
// was shown to the user. Nothing is recorded if key is no longer pending.
func (h *Home) ShowPending(user string, key []byte) error {
	return h.Update(func(tx *Tx) error {
		ct, err := tx.Contact(user)
		if err != nil || ct == nil || !bytes.Equal(ct.Pending, key) || bytes.Equal(ct.Shown, key) {
			return err
		}
		ct.Shown = bytes.Clone(key)
		return tx.PutContact(user, ct)
	})
}

// Verify marks user's current identity key as verified.
func (h *Home) Verify(user string) error {
	return h.Update(func(tx *Tx) error {
		ct, err := tx.Contact(user)
		if err != nil {
			return err
		}
		if ct == nil {
			return errors.New("no identity key known for " + user + " yet")
		}
		if ct.Pending != nil {
			return errors.New(user + "'s identity key changed: accept the new key first")
		}
		ct.Verified = true
		return tx.PutContact(user, ct)
	})
}
