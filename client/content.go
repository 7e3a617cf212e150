package client

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Payload types: the first byte of every payload the server carries,
// docs/protocol.md §8. Numbers are wire format; never renumber. Type 1, a
// Content in the clear, existed before end-to-end encryption and is refused.
const (
	// payloadPreKey starts or continues a session the responder may not have
	// yet: u16 BE header length ‖ PQXDH initial message header ‖ ratchet message.
	payloadPreKey byte = 2
	// payloadRatchet is a Double Ratchet message of an established session.
	payloadRatchet byte = 3
	// payloadNotice is a broadcast signed by the server key (from no user):
	// key[32] ‖ signature[64] ‖ u64 BE unix ms ‖ text.
	payloadNotice byte = 4
)

// noticeContext is what a server notice's signature starts with; it must
// match appliance.NoticeTranscript.
const noticeContext = "securechat server notice v1"

// openNotice checks a server notice against the pinned server key.
func openNotice(p []byte, pinned transport.Fingerprint) (string, int64, error) {
	if len(p) < 1+32+64+8 {
		return "", 0, errors.New("truncated notice")
	}
	pub := ed25519.PublicKey(p[1:33])
	if !transport.FingerprintOf(pub).Equal(pinned) {
		return "", 0, errors.New("signed by a key other than the pinned server key")
	}
	sig, ms, text := p[33:97], int64(binary.BigEndian.Uint64(p[97:105])), p[105:]
	msg := append([]byte(noticeContext), 0)
	msg = binary.BigEndian.AppendUint64(msg, uint64(ms))
	msg = append(msg, text...)
	if !ed25519.Verify(pub, msg, sig) {
		return "", 0, errors.New("bad signature")
	}
	return string(text), ms, nil
}

// maxRefs bounds the message ids one receipt names.
const maxRefs = 256

// MaxTextLen bounds one message's text in bytes.
const MaxTextLen = home.MaxTextLen

// Content is what a sender says, before end-to-end encryption.
type Content struct {
	Kind   chat.ContentKind
	Text   string
	SentAt int64 // sender's clock, unix ms
	Group  string
	Refs   [][]byte // receipts: the message ids they acknowledge
	// Conversation is set in the copy of a message that goes to the
	// sender's own other devices (the fan-out rule): where the sender
	// sent it, so that they file it as outgoing there.
	Conversation chat.Conversation
	// GroupChanges are signed membership changes of Group, newest first:
	// the one made and up to maxRecentChanges before it, so a member who
	// missed one catches up (KindGroupChange, protocol.md §9.7).
	GroupChanges [][]byte
	// GroupLog is the group's whole log, for a member just added.
	GroupLog []byte
	// SenderKey is an e2ee.SenderKeyDistribution of Group (KindSenderKey,
	// protocol.md §8.3), and SignalKey the chain's key for typing signals.
	SenderKey []byte
	SignalKey []byte
	// GroupHeads is the hash of the sender's group log heads, in a group
	// text (protocol.md §9.7): a member whose own differs lacks a change,
	// or the sender does.
	GroupHeads []byte
	// SettingsOff, in a KindSettings content, says which settings are off:
	// 1 typing notices, 2 read receipts (protocol.md §8.1).
	SettingsOff uint8
	// File, in a KindFile content, is the file it offers (protocol.md
	// §8.4); Text is then empty.
	File *FileRef
}

// maxGroupChanges bounds the changes one content carries.
const maxGroupChanges = 8

func (c *Content) MarshalFields(e *transport.Encoder) {
	e.Uint(1, uint64(c.Kind))
	e.String(2, c.Text)
	e.Int(3, c.SentAt)
	e.String(4, c.Group)
	for _, r := range c.Refs {
		e.BytesField(5, r)
	}
	if !c.Conversation.IsZero() {
		e.String(6, c.Conversation.Key())
	}
	for _, g := range c.GroupChanges {
		e.BytesField(7, g)
	}
	e.BytesField(8, c.GroupLog)
	e.BytesField(9, c.SenderKey)
	e.BytesField(10, c.SignalKey)
	e.BytesField(11, c.GroupHeads)
	e.Uint(12, uint64(c.SettingsOff))
	if c.File != nil {
		e.Message(13, c.File)
	}
}

func (c *Content) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			var v uint64
			v, err = f.Uint()
			if v == 0 || v > 255 {
				return errors.New("bad content kind")
			}
			c.Kind = chat.ContentKind(v)
		case 2:
			c.Text, err = f.String(MaxTextLen)
		case 3:
			c.SentAt, err = f.Int()
		case 4:
			c.Group, err = f.String(transport.MaxText)
		case 5:
			if len(c.Refs) >= maxRefs {
				return errors.New("too many receipt references")
			}
			var r []byte
			r, err = f.Fixed(transport.MessageIDLen)
			c.Refs = append(c.Refs, r)
		case 6:
			var k string
			if k, err = f.String(transport.MaxText); err == nil {
				c.Conversation, err = parseConversation(k)
			}
		case 7:
			if len(c.GroupChanges) >= maxGroupChanges {
				return errors.New("too many group changes")
			}
			var g []byte
			if g, err = f.Bytes(transport.MaxPayload); err == nil && len(g) == 0 {
				return errors.New("empty group change")
			}
			c.GroupChanges = append(c.GroupChanges, g)
		case 8:
			c.GroupLog, err = f.Bytes(transport.MaxPayload)
		case 9:
			c.SenderKey, err = f.Bytes(maxSenderKeyDistribution)
		case 10:
			c.SignalKey, err = f.Fixed(e2ee.SignalKeySize)
		case 11:
			c.GroupHeads, err = f.Fixed(32)
		case 12:
			var v uint64
			if v, err = f.Uint(); err == nil && (v == 0 || v > 3) {
				return errors.New("bad settings")
			}
			c.SettingsOff = uint8(v)
		case 13:
			c.File = new(FileRef)
			err = f.Message(c.File)
		default:
			return f.Unknown()
		}
		return err
	})
}

// parseConversation reads Content's conversation: "u:" or "g:" and a name
// (protocol.md §8), nothing else.
func parseConversation(k string) (chat.Conversation, error) {
	if !strings.HasPrefix(k, "u:") && !strings.HasPrefix(k, "g:") {
		return chat.Conversation{}, fmt.Errorf("content names conversation %q, which is not u:NAME or g:ID", k)
	}
	c, err := chat.ParseKey(k)
	if err == nil && c.ID() == "" {
		err = errors.New("content names an empty conversation")
	}
	return c, err
}

// encodePayload frames a ratchet message, with the PQXDH header when the
// session is not yet confirmed by the peer (header non-nil).
func encodePayload(header, msg []byte) []byte {
	if len(header) > 0xffff {
		panic("client: PQXDH header longer than 65535 bytes") // e2ee headers are ~1.3 KB
	}
	if header == nil {
		return append([]byte{payloadRatchet}, msg...)
	}
	p := make([]byte, 0, 3+len(header)+len(msg))
	p = append(p, payloadPreKey, byte(len(header)>>8), byte(len(header)))
	p = append(p, header...)
	return append(p, msg...)
}

// parsePayload splits a payload into its PQXDH header (nil for a ratchet
// message) and its ratchet message.
func parsePayload(p []byte) (header, msg []byte, err error) {
	if len(p) == 0 {
		return nil, nil, errors.New("empty payload")
	}
	switch p[0] {
	case payloadRatchet:
		if len(p) < 2 {
			return nil, nil, errors.New("empty ratchet message")
		}
		return nil, p[1:], nil
	case payloadPreKey:
		if len(p) < 3 {
			return nil, nil, errors.New("truncated prekey message")
		}
		n := int(p[1])<<8 | int(p[2])
		if n == 0 || len(p) < 3+n+1 {
			return nil, nil, errors.New("truncated prekey message")
		}
		return p[3 : 3+n], p[3+n:], nil
	}
	return nil, nil, fmt.Errorf("unknown payload type %d", p[0])
}

// decodeContent parses a decrypted Content.
func decodeContent(b []byte) (*Content, error) {
	var c Content
	if err := transport.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.Kind == 0 {
		return nil, errors.New("content has no kind")
	}
	if (c.Kind == chat.KindFile) != (c.File != nil) {
		return nil, errors.New("a file message without its file, or a file in another kind of message")
	}
	return &c, nil
}

// Message is a received message, as front ends see it.
type Message struct {
	Seq  uint64 // mailbox sequence number, for Ack
	ID   string // hex of the sender's message id
	From chat.Device
	// Conversation is where the message belongs: the sender's, the
	// server's notices (SystemConversation), or for a copy of what this
	// account's other device sent, the conversation it was sent to.
	Conversation chat.Conversation
	// Outgoing: a copy of what this account's other device sent.
	Outgoing   bool
	Group      string
	Kind       chat.ContentKind // KindError when the payload could not be read
	Text       string
	SentAt     time.Time // sender's clock
	ServerTime time.Time // when the server stored it
	// IdentityChanged: the sender's identity key is not the one this home
	// trusts; sending to them is blocked until it is accepted, and From is
	// only what the message claims (Verified is false).
	IdentityChanged bool
	// Refs are the message ids a receipt acknowledges (hex).
	Refs []string
	// Waiting: a group message whose sender's key has not arrived yet;
	// Text says so. It is not acked, and comes again once the key is here
	// (senderkeys.go).
	Waiting bool
	// File is the file a KindFile message offers (protocol.md §8.4);
	// Text is then its name.
	File *FileRef

	rawID []byte
	// A KindGroupChange content's changes and log (groups.go).
	groupChanges [][]byte
	groupLog     []byte
	groupHeads   []byte // a group text's sender's heads hash
	settingsOff  uint8  // a KindSettings content's (Content.SettingsOff)
}

// setFile makes m offer the file of a KindFile content.
func (m *Message) setFile(f *FileRef) {
	if f != nil {
		m.File, m.Text = f, f.Name
	}
}

// Verified reports whether the message came with the identity key this
// home accepted for its sender (a server notice: signed with the pinned
// server key). An unverified one is delivered marked, never as if it were
// from From (docs/protocol.md §8.1).
func (m *Message) Verified() bool { return !m.IdentityChanged && m.Kind != chat.KindError }

// key names the message in the home's seen and received records.
func (m *Message) key() home.MessageKey { return home.MessageKey{From: m.From, ID: m.rawID} }

// SystemConversation holds the server's signed broadcasts. "*server*" is
// no user name, so nothing can be sent to it.
var SystemConversation = chat.Peer("*server*")
