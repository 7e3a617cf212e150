package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// SendResult is the server's confirmation of a Send.
type SendResult struct {
	ID         string    // hex message id
	ServerTime time.Time // when the server stored it
	Duplicate  bool      // the server already had it (a resend)
}

// UnconfirmedError means the message was transmitted but the connection
// ended before the server confirmed it, or the server was shutting down.
// It stays in the outbox and is sent
// again, with the same id, by the next FlushOutbox; the server stores it at
// most once.
type UnconfirmedError struct{ Err error }

func (e *UnconfirmedError) Error() string {
	return fmt.Sprintf("%v; the server did not confirm the message, it will be retried with the same id on the next send or recv", e.Err)
}
func (e *UnconfirmedError) Unwrap() error { return e.Err }

// outboxEntry is an outbox bucket value: what is needed to send a message
// again, unchanged, or rebuilt for a changed device list.
type outboxEntry struct {
	To      string
	Content []byte // marshalled Content
	Send    []byte // marshalled transport.Send as last transmitted
	// Keep: once stored, the message goes into the sender's history
	// (SendText's messages), also when a FlushOutbox resends it.
	Keep bool
}

func (o *outboxEntry) MarshalFields(e *transport.Encoder) {
	e.String(1, o.To)
	e.BytesField(2, o.Content)
	e.BytesField(3, o.Send)
	e.Bool(4, o.Keep)
}

func (o *outboxEntry) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			o.To, err = f.String(transport.MaxUserName)
		case 2:
			o.Content, err = f.Bytes(transport.MaxPayload)
		case 3:
			o.Send, err = f.Bytes(transport.DefaultMaxFrame)
		case 4:
			o.Keep, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// SendText sends a text message to user and returns once the server has
// durably stored it for every device of user.
func (c *Client) SendText(ctx context.Context, to, text string) (SendResult, error) {
	if text == "" {
		return SendResult{}, errors.New("message is empty")
	}
	if len(text) > MaxTextLen {
		return SendResult{}, fmt.Errorf("message is too long: %d bytes, the limit is %d", len(text), MaxTextLen)
	}
	to, err := transport.CanonicalUser(to)
	if err != nil {
		return SendResult{}, err
	}
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(c.rand, id); err != nil {
		return SendResult{}, err
	}
	content := &Content{Kind: KindText, Text: text, SentAt: c.now().UnixMilli()}
	return c.sendContent(ctx, id, to, content, c.sentRecord(id, content))
}

// SendContent sends content under the given message id. Sending the same id
// again is safe: the server stores a message id once.
func (c *Client) SendContent(ctx context.Context, id []byte, to string, content *Content) (SendResult, error) {
	return c.sendContent(ctx, id, to, content, nil)
}

// sendContent is SendContent that, when keep is not nil, adds keep to the
// history once the server has stored the message (history.go, keepSent).
func (c *Client) sendContent(ctx context.Context, id []byte, to string, content *Content, keep *historyRecord) (SendResult, error) {
	entry := &outboxEntry{To: to, Content: transport.Marshal(content), Keep: keep != nil}
	msg, err := c.buildSend(ctx, id, entry, content)
	if err != nil {
		return SendResult{}, err
	}
	return c.transmit(ctx, id, entry, msg, keep)
}

// transmit sends msg, which is in the outbox, keeps it there until the
// server answers, and rebuilds it when the recipient's devices changed.
// When the server stored it, keep (if not nil) goes into the history in
// the transaction that takes the message out of the outbox.
func (c *Client) transmit(ctx context.Context, id []byte, entry *outboxEntry, msg *transport.Send, keep *historyRecord) (SendResult, error) {
	var content Content
	if err := transport.Unmarshal(entry.Content, &content); err != nil {
		return SendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		var sent transport.Sent
		err := c.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent)
		var ce *ConnError
		var we *transport.Error
		if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
			(errors.As(err, &we) && we.Code == transport.ErrUnavailable) {
			// The server may or may not have it (shutting down: it has
			// not); the outbox keeps it for FlushOutbox, under its id.
			return SendResult{}, &UnconfirmedError{Err: err}
		}
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch && attempt < 3 {
			c.updateDevices(entry.To, we.Devices)
			if msg, err = c.buildSend(ctx, id, entry, &content); err != nil {
				c.deleteOutbox(id)
				return SendResult{}, err
			}
			continue
		}
		if err != nil {
			c.deleteOutbox(id)
			return SendResult{}, err
		}
		res := SendResult{ID: hex.EncodeToString(id), ServerTime: time.UnixMilli(sent.ServerTime), Duplicate: sent.Duplicate}
		if keep == nil {
			c.deleteOutbox(id)
			return res, nil
		}
		return res, c.keepSent(id, entry.To, keep)
	}
}

// SendSignal sends content ephemerally to to's connected devices (typing);
// the server stores nothing. It returns how many devices took it.
func (c *Client) SendSignal(ctx context.Context, to string, content *Content) (uint32, error) {
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(c.rand, id); err != nil {
		return 0, err
	}
	devs, err := c.Devices(ctx, to)
	if err != nil {
		return 0, err
	}
	var targets []transport.DeviceInfo
	for _, d := range devs {
		if d.User != c.prof.User || d.ID != c.prof.Device {
			targets = append(targets, d)
		}
	}
	if len(targets) == 0 {
		return 0, nil
	}
	msg, err := c.encryptTo(ctx, to, targets, content, id, nil)
	if err != nil {
		return 0, err
	}
	msg.Ephemeral = true
	var sent transport.Sent
	if err := c.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent); err != nil {
		return 0, err
	}
	return sent.Online, nil
}

// buildSend encrypts content for every device of entry.To but this one and
// puts the result in the outbox (crypto.go, encryptTo).
func (c *Client) buildSend(ctx context.Context, id []byte, entry *outboxEntry, content *Content) (*transport.Send, error) {
	devs, err := c.Devices(ctx, entry.To)
	if err != nil {
		return nil, err
	}
	var targets []transport.DeviceInfo
	for _, d := range devs {
		if d.User != c.prof.User || d.ID != c.prof.Device {
			targets = append(targets, d)
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s has no device that can receive messages", entry.To)
	}
	return c.encryptTo(ctx, entry.To, targets, content, id, entry)
}

// Devices returns user's devices, from the cache or the server.
func (c *Client) Devices(ctx context.Context, user string) ([]transport.DeviceInfo, error) {
	c.devMu.Lock()
	devs, ok := c.devices[user]
	c.devMu.Unlock()
	if ok {
		return devs, nil
	}
	var list transport.DeviceList
	if err := c.request(ctx, transport.CodeDevices, &transport.DevicesRequest{User: user}, transport.CodeDeviceList, &list); err != nil {
		return nil, err
	}
	c.updateDevices(user, list.Devices)
	return list.Devices, nil
}

func (c *Client) updateDevices(user string, devs []transport.DeviceInfo) {
	var mine []transport.DeviceInfo
	for _, d := range devs {
		if d.User == user {
			mine = append(mine, d)
		}
	}
	c.devMu.Lock()
	c.devices[user] = mine
	c.devMu.Unlock()
}

func (c *Client) deleteOutbox(id []byte) {
	c.home.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Delete(id)
	})
}

// Outboxed is a message the outbox held, and what became of it.
type Outboxed struct {
	To     string
	Text   string // the message's text, for a text message
	Result SendResult
	Err    error
}

// FlushOutbox sends again every message whose confirmation was lost, with
// its original id. It stops at the first connection failure.
func (c *Client) FlushOutbox(ctx context.Context) ([]Outboxed, error) {
	type item struct {
		id    []byte
		entry outboxEntry
	}
	var items []item
	err := c.home.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, sealed []byte) error {
			it := item{id: append([]byte(nil), k...)}
			v, err := c.home.seal.open(bucketOutbox, k, sealed)
			if err == nil && transport.Unmarshal(v, &it.entry) == nil {
				items = append(items, it)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var out []Outboxed
	for _, it := range items {
		var msg transport.Send
		if err := transport.Unmarshal(it.entry.Send, &msg); err != nil {
			c.deleteOutbox(it.id)
			continue
		}
		var content Content
		if err := transport.Unmarshal(it.entry.Content, &content); err != nil {
			c.deleteOutbox(it.id)
			continue
		}
		var keep *historyRecord
		if it.entry.Keep {
			keep = c.sentRecord(it.id, &content)
		}
		res, err := c.transmit(ctx, it.id, &it.entry, &msg, keep)
		out = append(out, Outboxed{To: it.entry.To, Text: content.Text, Result: res, Err: err})
		var ue *UnconfirmedError
		if errors.As(err, &ue) {
			return out, err
		}
	}
	return out, nil
}

// QueueOutbox encrypts a message and leaves it in the outbox as if an
// earlier send had transmitted it and then lost its confirmation. It is for
// tests of crash recovery and for front ends that queue while offline.
func (c *Client) QueueOutbox(ctx context.Context, id []byte, to string, content *Content) error {
	_, err := c.buildSend(ctx, id, &outboxEntry{To: to, Content: transport.Marshal(content)}, content)
	return err
}
