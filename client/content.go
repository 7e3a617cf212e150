package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/securechat/securechat/transport"
)

// Payload types: the first byte of every payload the server carries,
// docs/protocol.md §8. Numbers are wire format; never renumber.
const (
	// payloadPlain is a Content in the clear. It exists until end-to-end
	// encryption (protocol.md §9) replaces it.
	payloadPlain byte = 1
)

// Content kinds, protocol.md §8.
type ContentKind uint8

const (
	KindText ContentKind = 1
)

func (k ContentKind) String() string {
	switch k {
	case KindText:
		return "text"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// MaxTextLen bounds one message's text in bytes.
const MaxTextLen = 64 << 10

// Content is what a sender says, before end-to-end encryption.
type Content struct {
	Kind   ContentKind
	Text   string
	SentAt int64 // sender's clock, unix ms
	Group  string
}

func (c *Content) MarshalFields(e *transport.Encoder) {
	e.Uint(1, uint64(c.Kind))
	e.String(2, c.Text)
	e.Int(3, c.SentAt)
	e.String(4, c.Group)
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
			c.Kind = ContentKind(v)
		case 2:
			c.Text, err = f.String(MaxTextLen)
		case 3:
			c.SentAt, err = f.Int()
		case 4:
			c.Group, err = f.String(transport.MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
}

// sealContent produces the payload for one recipient device.
func sealContent(c *Content) []byte {
	return append([]byte{payloadPlain}, transport.Marshal(c)...)
}

// openPayload parses a payload.
func openPayload(p []byte) (*Content, error) {
	if len(p) == 0 {
		return nil, errors.New("empty payload")
	}
	switch p[0] {
	case payloadPlain:
		var c Content
		if err := transport.Unmarshal(p[1:], &c); err != nil {
			return nil, err
		}
		return &c, nil
	}
	return nil, fmt.Errorf("unknown payload type %d", p[0])
}

// Message is a received message, as front ends see it.
type Message struct {
	Seq        uint64 // mailbox sequence number, for Ack
	ID         string // hex of the sender's message id
	From       string
	FromDevice uint32
	Group      string
	Kind       string // "text"; "error" when the payload could not be read
	Text       string
	SentAt     time.Time // sender's clock
	ServerTime time.Time // when the server stored it

	rawID []byte
}
