package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// SendResult is the server's confirmation of a Send.
type SendResult struct {
	ID         string    // hex message id
	ServerTime time.Time // when the server stored it
	Duplicate  bool      // the server already had it (a resend)
}

// UnconfirmedError means the message was transmitted but the connection
// ended before the server confirmed it, or the server was shutting down,
// or its storage was full (protocol.md §4.1, storage full: nothing was
// stored). It stays in the outbox and is sent again, with the same id, by
// the next FlushOutbox; the server stores it at most once.
type UnconfirmedError struct{ Err error }

func (e *UnconfirmedError) Error() string {
	if StorageFull(e.Err) {
		return fmt.Sprintf("%v: the message stays queued and is sent by the next send, recv or chat", e.Err)
	}
	return fmt.Sprintf("%v; the server did not confirm the message, it will be retried with the same id on the next send or recv", e.Err)
}

// StorageFull reports whether err is the server's "storage full"
// (protocol.md §4.1): it stored nothing and takes the message later.
func StorageFull(err error) bool {
	var we *transport.Error
	return errors.As(err, &we) && we.Code == transport.ErrStorageFull
}
func (e *UnconfirmedError) Unwrap() error { return e.Err }

// SendText sends a text message to user and returns once the server has
// durably stored it for every device of user (and of this account's other
// devices, the fan-out rule).
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
	content := &Content{Kind: chat.KindText, Text: text, SentAt: c.now().UnixMilli()}
	return c.sendContent(ctx, id, chat.Peer(to), content, c.sentRecord(id, content))
}

// SendContent sends content to a conversation under the given message id.
// Sending the same id again is safe: the server stores a message id once.
func (c *Client) SendContent(ctx context.Context, id []byte, to chat.Conversation, content *Content) (SendResult, error) {
	return c.sendContent(ctx, id, to, content, nil)
}

// sendContent is SendContent that, when keep is not nil, adds keep to the
// history once the server has stored the message (keepSent).
func (c *Client) sendContent(ctx context.Context, id []byte, to chat.Conversation, content *Content, keep *home.HistoryRecord) (SendResult, error) {
	entry := &home.OutboxEntry{To: to, Content: transport.Marshal(content), Keep: keep != nil}
	msg, err := c.buildSend(ctx, id, entry, content)
	if err != nil {
		return SendResult{}, err
	}
	if keep != nil && msg.Group != nil && keep.Recipients == 0 {
		// The members it went to, as the build counted them.
		if n, ok := c.othersBuiltFor(to); ok {
			keep.Recipients = n
		} else {
			c.home.View(func(tx *home.Tx) error {
				keep.Recipients = othersIn(tx, to, c.prof.User)
				return nil
			})
		}
	}
	return c.transmit(ctx, id, entry, msg, keep)
}

// transmit sends msg, which is in the outbox, keeps it there until the
// server answers, and rebuilds it when the recipients' devices changed.
// When the server stored it, keep (if not nil) goes into the history in
// the transaction that takes the message out of the outbox.
func (c *Client) transmit(ctx context.Context, id []byte, entry *home.OutboxEntry, msg *transport.Send, keep *home.HistoryRecord) (SendResult, error) {
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
			(errors.As(err, &we) && (we.Code == transport.ErrUnavailable || we.Code == transport.ErrStorageFull)) {
			// The server may or may not have it (shutting down, or its
			// storage full: it has not); the outbox keeps it for
			// FlushOutbox, under its id.
			return SendResult{}, &UnconfirmedError{Err: err}
		}
		if errors.As(err, &we) && (we.Code == transport.ErrDeviceMismatch || we.Code == transport.ErrRecipientsUnknown) && attempt < 3 {
			c.forgetRecipients(msg)
			if we.Code == transport.ErrDeviceMismatch {
				c.forgetDevices(msg)
				c.updateDevices(we.Devices)
			}
			if msg, err = c.buildSend(ctx, id, entry, &content); err != nil {
				c.home.DeleteOutbox(id)
				return SendResult{}, err
			}
			continue
		}
		if err != nil {
			c.home.DeleteOutbox(id)
			return SendResult{}, err
		}
		c.noteRecipients(msg, sent.Recipients)
		res := SendResult{ID: hex.EncodeToString(id), ServerTime: time.UnixMilli(sent.ServerTime), Duplicate: sent.Duplicate}
		if keep == nil {
			c.home.DeleteOutbox(id)
			return res, nil
		}
		return res, c.keepSent(id, entry.To, keep)
	}
}

// sentRecord is the history record of an outgoing text once the server
// has stored it.
func (c *Client) sentRecord(id []byte, content *Content) *home.HistoryRecord {
	r := c.outgoingRecord(id, content)
	if content.Group != "" {
		c.home.View(func(tx *home.Tx) error {
			r.Recipients = othersIn(tx, chat.Group(content.Group), c.prof.User)
			return nil
		})
	}
	return r
}

// outgoingRecord is sentRecord without a group's member count, which
// sendContent fills in from the build.
func (c *Client) outgoingRecord(id []byte, content *Content) *home.HistoryRecord {
	return &home.HistoryRecord{ID: id, From: c.prof.User, Outgoing: true, Kind: content.Kind, Text: content.Text, Time: content.SentAt, State: home.StateStored}
}

// keepSent takes a message the server stored out of the outbox and records
// it in the history, in one transaction: one commit per sent message
// rather than two. If that fails, the outbox entry is still removed, as
// for any answered send, and the error is returned.
func (c *Client) keepSent(id []byte, to chat.Conversation, rec *home.HistoryRecord) error {
	err := c.home.Update(func(tx *home.Tx) error {
		if err := tx.DeleteOutbox(id); err != nil {
			return err
		}
		_, err := tx.AddHistory(to, rec, false)
		return err
	})
	if err != nil {
		c.home.DeleteOutbox(id)
	}
	return err
}

// SendSignal sends content ephemerally to the connected devices of a
// conversation (typing); the server stores nothing. It returns how many
// devices took it.
func (c *Client) SendSignal(ctx context.Context, to chat.Conversation, content *Content) (uint32, error) {
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(c.rand, id); err != nil {
		return 0, err
	}
	targets, err := c.recipients(ctx, to)
	if err != nil {
		return 0, err
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
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch {
			// A signal is not resent, but the next message uses the
			// lists (protocol.md §6.5).
			c.forgetDevices(msg)
			c.updateDevices(we.Devices)
		}
		return 0, err
	}
	return sent.Online, nil
}

// recipients are the devices a message to conv goes to: the fan-out rule
// over the device lists.
func (c *Client) recipients(ctx context.Context, conv chat.Conversation) ([]chat.Device, error) {
	users, err := c.members(conv)
	if err != nil {
		return nil, err
	}
	return fanOut(chat.Device{User: c.prof.User, ID: c.prof.Device}, users, func(user string) ([]chat.Device, error) {
		return c.sendDevices(ctx, user)
	})
}

// buildSend encrypts content for the recipients of entry.To and puts the
// result in the outbox (session.go, encryptTo).
func (c *Client) buildSend(ctx context.Context, id []byte, entry *home.OutboxEntry, content *Content) (*transport.Send, error) {
	if usesSenderKey(entry.To, content) {
		return c.buildGroupSend(ctx, id, entry, content)
	}
	targets, err := c.recipients(ctx, entry.To)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(targets, func(d chat.Device) bool { return d.User != c.prof.User || entry.To == chat.Peer(c.prof.User) }) {
		return nil, fmt.Errorf("%s has no device that can receive messages", entry.To)
	}
	return c.encryptTo(ctx, entry.To, targets, content, id, entry)
}

// Devices returns the devices of user that can receive, from the cache or
// the server.
func (c *Client) Devices(ctx context.Context, user string) ([]chat.Device, error) {
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
	c.devMu.Lock()
	c.devices[user] = nil // known to have none, unless listed
	c.devGen++
	if c.signedLists == nil {
		c.signedLists = make(map[string][]byte)
	}
	c.signedLists[user] = list.SignedList
	if c.unlinked == nil {
		c.unlinked = make(map[string][]uint32)
	}
	c.unlinked[user] = nil
	for _, d := range list.Unlinked {
		if d.User == user {
			c.unlinked[user] = append(c.unlinked[user], d.ID)
		}
	}
	c.devMu.Unlock()
	c.updateDevices(list.Devices)
	c.devMu.Lock()
	defer c.devMu.Unlock()
	return c.devices[user], nil
}

// updateDevices replaces the cached device lists of the users in devs,
// with each device's device key.
func (c *Client) updateDevices(devs []transport.DeviceInfo) {
	lists := make(map[string][]chat.Device)
	for _, d := range devs {
		lists[d.User] = append(lists[d.User], chat.Device{User: d.User, ID: d.ID})
	}
	c.devMu.Lock()
	defer c.devMu.Unlock()
	c.devGen++
	for user := range lists {
		for _, d := range c.devices[user] {
			delete(c.devKeys, d)
		}
	}
	maps.Copy(c.devices, lists)
	for _, d := range devs {
		c.devKeys[chat.Device{User: d.User, ID: d.ID}] = d.Key
	}
}

// listedKey is the device key the server listed dev with; nil if it
// listed none.
func (c *Client) listedKey(dev chat.Device) []byte {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	return c.devKeys[dev]
}

// forgetDevices drops the cached device lists of msg's recipients, so that
// after a device mismatch those the server did not list are asked again.
func (c *Client) forgetDevices(msg *transport.Send) {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	c.devGen++
	for _, e := range msg.Envelopes {
		delete(c.devices, e.User)
	}
}

// Outboxed is a message the outbox held, and what became of it.
type Outboxed struct {
	To     chat.Conversation
	Text   string // the message's text, for a text message
	Result SendResult
	Err    error
}

// FlushOutbox sends again every message whose confirmation was lost, with
// its original id. It stops at the first connection failure.
func (c *Client) FlushOutbox(ctx context.Context) ([]Outboxed, error) {
	items, err := c.home.Outbox()
	if err != nil {
		return nil, err
	}
	var out []Outboxed
	for _, it := range items {
		var msg transport.Send
		if err := transport.Unmarshal(it.Entry.Send, &msg); err != nil {
			c.home.DeleteOutbox(it.ID)
			continue
		}
		var content Content
		if err := transport.Unmarshal(it.Entry.Content, &content); err != nil {
			c.home.DeleteOutbox(it.ID)
			continue
		}
		if msg.Shared != nil && len(msg.Envelopes) == 0 {
			// A group Send is kept without its addresses (senderkeys.go).
			if msg.Envelopes, err = c.groupEnvelopes(ctx, it.Entry.To); err != nil {
				var ce *ConnError
				var we *transport.Error
				if errors.As(err, &ce) || ctx.Err() != nil || errors.As(err, &we) && (we.Code == transport.ErrRateLimited || we.Code == transport.ErrUnavailable || we.Code == transport.ErrInternal || we.Code == transport.ErrStorageFull) {
					// Kept for the next flush: the addresses could not be
					// had now, the message is still good.
					err = &UnconfirmedError{Err: err}
					out = append(out, Outboxed{To: it.Entry.To, Text: content.Text, Err: err})
					return out, err
				}
				c.home.DeleteOutbox(it.ID)
				out = append(out, Outboxed{To: it.Entry.To, Text: content.Text, Err: err})
				continue
			}
		}
		var keep *home.HistoryRecord
		if it.Entry.Keep {
			keep = c.sentRecord(it.ID, &content)
		}
		res, err := c.transmit(ctx, it.ID, it.Entry, &msg, keep)
		out = append(out, Outboxed{To: it.Entry.To, Text: content.Text, Result: res, Err: err})
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
func (c *Client) QueueOutbox(ctx context.Context, id []byte, to chat.Conversation, content *Content) error {
	_, err := c.buildSend(ctx, id, &home.OutboxEntry{To: to, Content: transport.Marshal(content)}, content)
	return err
}
