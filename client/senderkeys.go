package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Group messages over sender keys (docs/protocol.md §8.3): a group's text
// is encrypted once with this device's sending chain (e2ee.SenderKey) and
// sent as one shared ciphertext that the server fans out (protocol.md
// §6.7). Every member device that has not got the chain yet gets it first,
// as a KindSenderKey content over the pairwise sessions; the group record
// lists who has it. The chain is replaced after senderKeyMaxMessages
// messages, after senderKeyMaxAge, and before the first message after a
// member left or was removed, so that one who is gone reads nothing new.

const (
	senderKeyMaxMessages = 100
	senderKeyMaxAge      = 7 * 24 * time.Hour
	// maxSenderKeyDistribution bounds a KindSenderKey content's key.
	maxSenderKeyDistribution = 256
	// maxWaiting bounds the group messages held in memory while their
	// sender's key is on its way; beyond it they stay on the server, which
	// delivers them again on the next connection.
	maxWaiting = 1024
	// groupADLabel starts the associated data a group message is bound to.
	groupADLabel = "securechat group message v1"
)

// errWaitingForKey: a group message whose sender's chain this device does
// not have (yet).
var errWaitingForKey = errors.New("waiting for the sender's key")

// usesSenderKey reports whether content to conv travels as one shared
// ciphertext: a group's texts. Membership changes and sender keys
// themselves go over the pairwise sessions.
func usesSenderKey(conv chat.Conversation, content *Content) bool {
	return conv.IsGroup() && sharedKind(content.Kind)
}

// sharedKind says whether a group's content of kind k travels under the
// sender keys (a text, a file), never pairwise (protocol.md §8.3).
func sharedKind(k chat.ContentKind) bool { return k == chat.KindText || k == chat.KindFile }

// groupAD is what a group message is bound to: the group and the sending
// device, so that it cannot be moved to another group or passed off as
// another member's (protocol.md §8.3).
func groupAD(group []byte, from chat.Device) []byte {
	ad := make([]byte, 0, len(groupADLabel)+1+len(group)+1+len(from.User)+4)
	ad = append(ad, groupADLabel...)
	ad = append(ad, 0)
	ad = append(ad, group...)
	ad = append(ad, byte(len(from.User)))
	ad = append(ad, from.User...)
	return binary.BigEndian.AppendUint32(ad, from.ID)
}

// groupIDBytes is a group conversation's id as the 16 bytes on the wire.
func groupIDBytes(conv chat.Conversation) ([]byte, error) {
	b, err := hex.DecodeString(conv.ID())
	if err != nil || len(b) != transport.GroupIDLen {
		return nil, fmt.Errorf("%s is not a group", conv)
	}
	return b, nil
}

// buildGroupSend encrypts content once with this device's sending chain in
// the group of entry.To, first sending the chain to every recipient device
// that does not have it, and stores the advanced chain, the group record
// and the outbox entry in one commit before anything of the message is
// sent (protocol.md §8.3).
func (c *Client) buildGroupSend(ctx context.Context, id []byte, entry *home.OutboxEntry, content *Content) (*transport.Send, error) {
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	conv := entry.To
	gid, err := groupIDBytes(conv)
	if err != nil {
		return nil, err
	}
	c.senderMu.Lock()
	defer c.senderMu.Unlock()
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	for attempt := 0; ; attempt++ {
		brief, err := c.home.GroupBrief(conv)
		if err != nil {
			return nil, err
		}
		if brief == nil {
			return nil, fmt.Errorf("no group %s in this home", conv.ID())
		}
		if msg, ok, err := c.buildSameRecipients(id, entry, content, brief, gid); ok || err != nil {
			return msg, err
		}
		rec, err := c.home.Group(conv)
		if err != nil || rec == nil {
			return nil, cmp.Or(err, fmt.Errorf("no group %s in this home", conv.ID()))
		}
		// The record and its log are read once per attempt: a send costs
		// a few steps per member device, never a read per member.
		l, err := parseLog(rec)
		if err != nil {
			return nil, err
		}
		st := l.State()
		// Checked here too for what was queued before a removal or a mute.
		if err := canSend(rec, st, c.prof.User, c.now()); err != nil {
			return nil, err
		}
		var members []string
		for _, m := range st.Members {
			if m.User != c.prof.User {
				members = append(members, m.User)
			}
		}
		targets, err := fanOut(self, members, func(user string) ([]chat.Device, error) { return c.sendDevices(ctx, user) })
		if err != nil {
			return nil, err
		}
		if len(targets) == 0 {
			return nil, errors.New("nobody else in the group has a device that can receive messages")
		}
		key, fresh, err := c.sendingChain(conv, rec, gid)
		if err != nil {
			return nil, err
		}
		var signal []byte // the chain's signal key
		if fresh {
			sk, err := e2ee.NewSignalKey(c.rand)
			if err != nil {
				return nil, err
			}
			signal = sk[:]
		} else if signal, err = c.home.SignalKey(conv, self); err != nil {
			return nil, err
		}
		// Who holds the chain, by device, under which key, from which
		// position: one pass, so that a send costs no more than a few
		// steps per member device.
		held := make(map[chat.Device]home.KeyHolder, len(rec.Holders))
		if !fresh {
			for _, h := range rec.Holders {
				held[chat.Device{User: h.User, ID: h.Device}] = h
			}
		}
		var missing []chat.Device
		for _, d := range targets {
			if h, ok := held[d]; !ok || !bytes.Equal(h.DeviceKey, c.listedKey(d)) {
				missing = append(missing, d)
			}
		}
		if len(missing) > 0 {
			err := c.distribute(ctx, conv, missing, key, signal)
			var we *transport.Error
			if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch && attempt < 3 {
				continue // the lists are updated: work out the recipients again
			}
			if err != nil {
				return nil, err
			}
			for _, d := range missing {
				held[d] = home.KeyHolder{User: d.User, Device: d.ID, DeviceKey: c.listedKey(d), Position: key.Iteration()}
			}
			rec.Holders = sortedHolders(held)
		}
		heads := l.HeadsHash()
		shared, state, err := sealGroupText(key, content, heads, gid, self)
		if err != nil {
			return nil, err
		}
		msg := &transport.Send{MessageID: id, Group: gid, Shared: shared}
		// The outbox keeps the ciphertext without the addresses: a resend
		// works them out again (FlushOutbox), so a message costs the
		// sender's disk the same whatever the group's size.
		entry.Send = transport.Marshal(msg)
		for _, d := range targets {
			msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: c.listedKey(d)})
		}
		ks := home.SenderKeyState{Group: conv, Owner: self, State: state}
		if fresh {
			ks.Signal = signal
		}
		ch := &home.SessionChanges{
			SenderKeys: []home.SenderKeyState{ks},
			Outbox:     &home.OutboxItem{ID: id, Entry: entry},
		}
		if fresh || len(missing) > 0 {
			// The group record changes only with the chain or its holders.
			ch.Chain = &home.GroupChain{Group: conv, Log: rec.Log, ChainCreated: rec.ChainCreated, Holders: rec.Holders}
		}
		if err := c.sessions.SaveSessions(ch); err != nil {
			return nil, err
		}
		// The server names this address list in its answer; until the
		// group, a device list or the chain changes, the next messages
		// name it instead (buildSameRecipients).
		c.memoMu.Lock()
		if c.groupMemo == nil {
			c.groupMemo = make(map[string]*groupRecipients)
		}
		// The generation after the device lists were read: one that
		// changed since is caught by the server, which expands a named
		// list only to the devices now current.
		c.groupMemo[conv.ID()] = &groupRecipients{log: rec.Log, devGen: c.devGeneration(), chain: key.ChainID(), st: st, heads: heads,
			others: uint32(len(members)), msgID: id}
		c.memoMu.Unlock()
		return msg, nil
	}
}

// groupRecipients is what the last group Send to a group on this
// connection was worked out from, and the server's name for its address
// list (protocol.md §6.7, Sent.recipients): while none of it changes, a
// message to the group names that list rather than sending it, so that
// the sender's work per message does not grow with the group.
type groupRecipients struct {
	log    []byte // the group record's log
	devGen uint64 // the device lists' generation (Client.devGen)
	chain  uint32 // the sending chain
	st     e2ee.GroupState
	heads  [32]byte
	others uint32 // members besides this account
	msgID  []byte // the Send it was worked out for, until answered
	hash   []byte // Sent.recipients; nil until the server answered
}

func (c *Client) devGeneration() uint64 {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	return c.devGen
}

// buildSameRecipients is buildGroupSend when nothing changed since the
// last group Send to the group on this connection: the same log, device
// lists and chain, every recipient holding it, none asking for it. The
// Send names the server's hash of that list and carries no envelopes; ok
// is false when a full send is needed. The server checks the list it
// expands as any Send's (current devices under their keys), so a list
// gone stale is refused, not used.
func (c *Client) buildSameRecipients(id []byte, entry *home.OutboxEntry, content *Content, rec *home.GroupRecord, gid []byte) (_ *transport.Send, ok bool, _ error) {
	conv := entry.To
	c.memoMu.Lock()
	m := c.groupMemo[conv.ID()]
	c.memoMu.Unlock()
	if m == nil || m.hash == nil || rec.Rotate || !bytes.Equal(m.log, rec.Log) || m.devGen != c.devGeneration() {
		return nil, false, nil
	}
	if err := canSend(rec, m.st, c.prof.User, c.now()); err != nil {
		return nil, false, err
	}
	key, fresh, err := c.sendingChain(conv, rec, gid)
	if err != nil || fresh || key.ChainID() != m.chain {
		return nil, false, err
	}
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	shared, state, err := sealGroupText(key, content, m.heads, gid, self)
	if err != nil {
		return nil, false, err
	}
	msg := &transport.Send{MessageID: id, Group: gid, Shared: shared}
	entry.Send = transport.Marshal(msg) // without addresses, as buildGroupSend keeps it
	msg.Recipients = m.hash
	err = c.sessions.SaveSessions(&home.SessionChanges{
		SenderKeys: []home.SenderKeyState{{Group: conv, Owner: self, State: state}},
		Outbox:     &home.OutboxItem{ID: id, Entry: entry},
	})
	return msg, err == nil, err
}

// noteRecipients keeps the server's name for the address list of a group
// Send it stored (transmit).
func (c *Client) noteRecipients(msg *transport.Send, hash []byte) {
	if msg.Group == nil || len(hash) != transport.RecipientsLen {
		return
	}
	c.memoMu.Lock()
	defer c.memoMu.Unlock()
	if m := c.groupMemo[hex.EncodeToString(msg.Group)]; m != nil && bytes.Equal(m.msgID, msg.MessageID) {
		m.hash, m.msgID = hash, nil
	}
}

// forgetRecipients drops the remembered list of msg's group: the server
// did not know it, or its devices changed.
func (c *Client) forgetRecipients(msg *transport.Send) {
	if msg.Group == nil {
		return
	}
	c.memoMu.Lock()
	defer c.memoMu.Unlock()
	delete(c.groupMemo, hex.EncodeToString(msg.Group))
}

// othersBuiltFor is how many members besides this account the group
// Send just built for id went to (for its history record), if it is the
// one remembered; ok false otherwise.
func (c *Client) othersBuiltFor(conv chat.Conversation) (n uint32, ok bool) {
	c.memoMu.Lock()
	defer c.memoMu.Unlock()
	if m := c.groupMemo[conv.ID()]; m != nil {
		return m.others, true
	}
	return 0, false
}

// sortedHolders lists held in order, at most home.MaxKeyHolders.
func sortedHolders(held map[chat.Device]home.KeyHolder) []home.KeyHolder {
	out := make([]home.KeyHolder, 0, min(len(held), home.MaxKeyHolders))
	for _, h := range held {
		if len(out) < home.MaxKeyHolders {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b home.KeyHolder) int {
		return cmp.Or(strings.Compare(a.User, b.User), cmp.Compare(a.Device, b.Device))
	})
	return out
}

// sealGroupText encrypts content, with the sender's heads hash, once
// under key, bound to the group and the sending device, and returns the
// shared ciphertext and the advanced chain's state (protocol.md §8.3).
func sealGroupText(key *e2ee.SenderKey, content *Content, heads [32]byte, gid []byte, self chat.Device) (shared, state []byte, err error) {
	withHeads := *content
	withHeads.GroupHeads = heads[:]
	if shared, err = key.Encrypt(transport.Marshal(&withHeads), groupAD(gid, self)); err != nil {
		return nil, nil, err
	}
	state, err = key.MarshalBinary()
	return shared, state, err
}

// sendingChain returns this device's sending chain in the group of rec: the stored one, or a new one (fresh) when there is none, it has
// sent senderKeyMaxMessages messages, is older than senderKeyMaxAge, or a
// member left or was removed since it was made. A new chain is stored with
// the message that first uses it.
func (c *Client) sendingChain(conv chat.Conversation, rec *home.GroupRecord, gid []byte) (key *e2ee.SenderKey, fresh bool, err error) {
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	b, err := c.sessions.SenderKey(conv, self)
	if err != nil {
		return nil, false, err
	}
	now := c.now()
	if b != nil && !rec.Rotate && now.Sub(time.UnixMilli(rec.ChainCreated)) < senderKeyMaxAge {
		if key, err = e2ee.UnmarshalSenderKey(b); err == nil && key.Iteration() < senderKeyMaxMessages {
			return key, false, nil
		}
	}
	if key, err = e2ee.NewSenderKey(c.rand, [e2ee.DistributionIDSize]byte(gid)); err != nil {
		return nil, false, err
	}
	rec.ChainCreated, rec.Rotate = now.UnixMilli(), false
	return key, true, nil
}

// distribute sends key's distribution to devs over the pairwise sessions,
// stored by the server before the message that needs it, so that it
// reaches each device first (protocol.md §6.2: a mailbox is delivered in
// order).
func (c *Client) distribute(ctx context.Context, conv chat.Conversation, devs []chat.Device, key *e2ee.SenderKey, signal []byte) error {
	dist, err := key.Distribution().MarshalBinary()
	if err != nil {
		return err
	}
	content := &Content{Kind: chat.KindSenderKey, Group: conv.ID(), SentAt: c.now().UnixMilli(), SenderKey: dist, SignalKey: signal}
	_, err = c.sendBatches(ctx, conv, devs, content)
	return err
}

// applySenderKey keeps the chain a device sent this device (KindSenderKey)
// for a group this home is in, or whose log came on this connection (the
// engine applies it after the batch it came in), and never moves a chain
// already held back (e2ee.SenderKeyRecord.Add). The sender's membership
// is not checked here: the change that added it may still be on its way;
// whether its messages are shown is decided when they are kept
// (checkGroupSender).
func (c *Client) applySenderKey(from chat.Device, content *Content) (chain uint32, err error) {
	if !validGroupID(content.Group) {
		return 0, errors.New("a sender key names a group that cannot exist")
	}
	conv := chat.Group(content.Group)
	if !c.groupKnown(conv) {
		return 0, errors.New("it is for a group you are not in")
	}
	d, err := e2ee.ParseSenderKeyDistribution(content.SenderKey)
	if err != nil {
		return 0, err
	}
	if hex.EncodeToString(d.DistributionID[:]) != content.Group {
		return 0, errors.New("a sender key for another group")
	}
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	r, err := c.peerSenderKeys(conv, from)
	if err != nil {
		return 0, err
	}
	if r == nil {
		r = e2ee.NewSenderKeyRecord(d)
	} else if err := r.Add(d); err != nil {
		// A chain already held, from before the position held, adds the
		// keys of the messages between (e2ee.SenderKeyRecord.Add): what
		// waited for them is read, nothing read is opened again.
		return 0, err
	}
	state, err := r.MarshalBinary()
	if err != nil {
		return 0, err
	}
	ks := home.SenderKeyState{Group: conv, Owner: from, State: state, Signal: content.SignalKey}
	return d.ChainID, c.sessions.SaveSessions(&home.SessionChanges{SenderKeys: []home.SenderKeyState{ks}})
}

// SendGroupSignal sends content (typing) to the connected devices of a
// group's members, sealed once under this device's signal key (protocol.md
// §8.3); the server stores nothing. It sends nothing before this device's
// first message to the group made a chain and its signal key. It returns
// how many devices took it.
func (c *Client) SendGroupSignal(ctx context.Context, conv chat.Conversation, content *Content) (uint32, error) {
	if c.keys == nil {
		return 0, ErrNotLinked
	}
	gid, err := groupIDBytes(conv)
	if err != nil {
		return 0, err
	}
	if err := checkCanSend(c.home, c.prof.User, conv, c.now()); err != nil {
		return 0, err // left, or muted: nothing to tell anyone
	}
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	sk, err := c.home.SignalKey(conv, self)
	if err != nil || len(sk) != e2ee.SignalKeySize {
		return 0, err
	}
	targets, err := c.recipients(ctx, conv)
	if err != nil || len(targets) == 0 {
		return 0, err
	}
	content.Group = conv.ID()
	shared, err := e2ee.SealSignal(c.rand, (*[e2ee.SignalKeySize]byte)(sk), transport.Marshal(content), groupAD(gid, self))
	if err != nil {
		return 0, err
	}
	msg := &transport.Send{MessageID: newID(c), Ephemeral: true, Group: gid, Shared: shared}
	for _, d := range targets {
		msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: c.listedKey(d)})
	}
	var sent transport.Sent
	if err := c.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent); err != nil {
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch {
			c.forgetDevices(msg)
			c.updateDevices(we.Devices)
		}
		return 0, err
	}
	return sent.Online, nil
}

// openGroupSignal opens a group Signal under its sender's signal key: a
// typing notice from a member device of a group this home is in. Any
// other is dropped silently, as a garbled signal is.
func (c *Client) openGroupSignal(sig *transport.Signal) (*Message, bool) {
	conv := chat.Group(hex.EncodeToString(sig.Group))
	from := chat.Device{User: sig.From, ID: sig.FromDevice}
	sk, err := c.home.SignalKey(conv, from)
	if err != nil || len(sk) != e2ee.SignalKeySize {
		return nil, false
	}
	plain, err := e2ee.OpenSignal((*[e2ee.SignalKeySize]byte)(sk), sig.Shared, groupAD(sig.Group, from))
	if err != nil {
		return nil, false
	}
	content, err := decodeContent(plain)
	if err != nil || content.Kind != chat.KindTyping || content.Group != conv.ID() {
		return nil, false
	}
	rec, err := c.home.Group(conv)
	if err != nil || rec == nil || rec.Left {
		return nil, false
	}
	l, err := parseLog(rec)
	if err != nil {
		return nil, false
	}
	if mem, in := l.State().Member(sig.From); !in || mem.MutedUntil > c.now().UnixMilli() {
		return nil, false
	}
	return &Message{
		ID: hex.EncodeToString(sig.MessageID), From: from, Conversation: conv, Group: conv.ID(), Outgoing: sig.From == c.prof.User,
		Kind: content.Kind, SentAt: time.UnixMilli(content.SentAt), ServerTime: time.UnixMilli(sig.ServerTime),
	}, true
}

// decryptGroup opens a group Deliver's shared ciphertext with the sender's
// chain and keeps the plaintext until the ack, with the advanced chain,
// in one commit. A message decrypted before and not yet acked comes from
// the home. errWaitingForKey: no chain of the sender's for it here.
func (c *Client) decryptGroup(d *transport.Deliver) (*Content, error) {
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	from := chat.Device{User: d.From, ID: d.FromDevice}
	key := home.MessageKey{From: from, ID: d.MessageID}
	st, err := c.sessions.LoadIncoming(from, d.MessageID)
	if err != nil {
		return nil, err
	}
	conv := chat.Group(hex.EncodeToString(d.Group))
	if st.Received != nil {
		// Decrypted before and not yet acked: the same checks as below,
		// so that a redelivery cannot move it to another group or pass a
		// pairwise message off as a group's.
		content, err := decodeContent(st.Received.Content)
		if err == nil && (content.Group != conv.ID() || !sharedKind(content.Kind)) {
			err = errors.New("a group message that names another group")
		}
		return content, err
	}
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	r, err := c.peerSenderKeys(conv, from)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errWaitingForKey
	}
	plain, err := r.Decrypt(d.Shared, groupAD(d.Group, from))
	if errors.Is(err, e2ee.ErrUnknownSenderChain) {
		return nil, errWaitingForKey
	}
	if err != nil {
		return nil, err
	}
	content, err := decodeContent(plain)
	if err != nil {
		return nil, err
	}
	if content.Group != conv.ID() {
		return nil, errors.New("a group message that names another group")
	}
	state, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return content, c.sessions.SaveSessions(&home.SessionChanges{
		SenderKeys:  []home.SenderKeyState{{Group: conv, Owner: from, State: state}},
		Received:    &home.Received{Content: plain, Received: c.now().UnixMilli()},
		ReceivedKey: key,
	})
}

// handleGroupDeliver turns a group Deliver into a Message. One whose
// sender's key has not arrived, or that was sent before the position this
// device holds the sender's chain from, is held (not acked) and shown as
// waiting; it is tried again when a key of the sender's comes, or
// delivered again by the server on the next connection. keyCame: this is
// that retry, after the sender gave the chain of this message: one still
// from before the position held can never be read.
func (c *Client) handleGroupDeliver(d *transport.Deliver, m *Message, keyCame bool) {
	m.Conversation = chat.Group(hex.EncodeToString(d.Group))
	m.Group = m.Conversation.ID()
	m.Outgoing = d.From == c.prof.User
	content, err := c.decryptGroup(d)
	if errors.Is(err, e2ee.ErrBeforeSenderKey) && !keyCame {
		// The sender can give its chain from an earlier position: asked
		// like a missing key (protocol.md §8.3).
		err = errWaitingForKey
	}
	if errors.Is(err, errWaitingForKey) {
		if why := c.mayWait(d); why != "" {
			// Not held: acked, with a line saying what was dropped, in
			// the sender's conversation (no group is made up for it).
			m.Conversation, m.Group = chat.Peer(d.From), ""
			m.Kind, m.Text, m.SentAt = chat.KindError, why, m.ServerTime
			c.events <- Event{Type: EventMessage, Message: m}
			return
		}
	}
	switch {
	case errors.Is(err, errWaitingForKey):
		m.Kind, m.Waiting, m.SentAt = chat.KindSystem, true, m.ServerTime
		m.Text = fmt.Sprintf("a message from %s is waiting for the key from %s", d.From, d.From)
		if !slices.ContainsFunc(c.waiting, func(w *transport.Deliver) bool {
			return w.From == d.From && w.FromDevice == d.FromDevice && bytes.Equal(w.MessageID, d.MessageID)
		}) {
			if len(c.waiting) >= maxWaiting {
				c.waiting = c.waiting[1:]
			}
			c.waiting = append(c.waiting, d)
		}
	case errors.Is(err, e2ee.ErrBeforeSenderKey):
		// The sender answered with its chain from this device's position,
		// which is after this message: sent before this device was given
		// the chain (before its account joined, say).
		m.Kind, m.SentAt = chat.KindError, m.ServerTime
		m.Text = fmt.Sprintf("a message from %s could not be read: it was sent before you had %s's key", d.From, d.From)
	case errors.Is(err, e2ee.ErrDuplicate):
		// A copy of one already read (or, for a chain kept before the
		// position it was given at was recorded, one from before it):
		// it cannot be read, and the line says which it may be.
		m.Kind, m.SentAt = chat.KindError, m.ServerTime
		m.Text = fmt.Sprintf("a message from %s could not be read: it was sent before you had %s's key, or it is a copy of one already read", d.From, d.From)
	case err != nil:
		m.Kind, m.Text, m.SentAt = chat.KindError, undecryptable(err), m.ServerTime
	case !sharedKind(content.Kind):
		m.Kind, m.Text, m.SentAt = chat.KindError, fmt.Sprintf("a group message of kind %s, which only travels pairwise", content.Kind), m.ServerTime
	default:
		m.Kind, m.Text, m.SentAt = content.Kind, content.Text, time.UnixMilli(content.SentAt)
		m.setFile(content.File)
		m.groupHeads = content.GroupHeads
	}
	c.events <- Event{Type: EventMessage, Message: m}
}

// Bounds on what waits for a key (protocol.md §8.3): per group and sending
// device, and in age, after which the key is taken never to come.
const (
	maxWaitingPerSender = 100
	maxWaitAge          = 7 * 24 * time.Hour
)

// mayWait says why a group message without its key is not held, or "":
// held only for a group this home is in (or whose log came on this
// connection), from a member by the stored log, not older than
// maxWaitAge, and no more than maxWaitingPerSender of one device — so
// that nobody can keep another's mailbox full of messages never acked.
func (c *Client) mayWait(d *transport.Deliver) string {
	conv := chat.Group(hex.EncodeToString(d.Group))
	if time.UnixMilli(d.ServerTime).Before(c.now().Add(-maxWaitAge)) {
		return fmt.Sprintf("a group message from %s was dropped: its key never came", d.From)
	}
	n := 0
	for _, w := range c.waiting {
		if w.From == d.From && w.FromDevice == d.FromDevice && bytes.Equal(w.Group, d.Group) {
			n++
		}
	}
	if n >= maxWaitingPerSender {
		return fmt.Sprintf("a group message from %s was dropped: too many of %s's messages wait for a key", d.From, d.From)
	}
	if c.welcomed[conv.ID()] {
		return ""
	}
	rec, err := c.home.Group(conv)
	if err != nil || rec == nil {
		return fmt.Sprintf("a message from %s for a group you are not in was dropped", d.From)
	}
	if d.From == c.prof.User {
		return ""
	}
	l, err := parseLog(rec)
	if err != nil {
		return err.Error()
	}
	if _, in := l.State().Member(d.From); !in {
		return fmt.Sprintf("a message from %s, who is not in the group, was dropped", d.From)
	}
	return ""
}

// plausibleWelcome reports whether a group log that came on this
// connection, not yet applied, is one the engine may take: it parses (its
// creation verified, protocol.md §9.7), names
// this account with this account's identity key, and names its sender as
// a member (receiveGroup checks the rest). Only such a log lets what
// follows it be held or kept (welcomed).
func (c *Client) plausibleWelcome(from string, content *Content) bool {
	if c.keys == nil {
		return false
	}
	l, err := e2ee.ParseGroupLog(content.GroupLog, groupMaxMembers)
	if err != nil {
		return false
	}
	st := l.State()
	me, in := st.Member(c.prof.User)
	if !in || !me.Identity.Equal(c.keys.IdentityKey()) || groupConv(st.ID).ID() != content.Group {
		return false
	}
	_, sender := st.Member(from)
	return sender || from == c.prof.User
}

// groupKnown reports whether conv is a group this home is in, or whose
// log came on this connection (the engine applies it after the batch it
// came in: what follows it in the batch must not be refused meanwhile).
func (c *Client) groupKnown(conv chat.Conversation) bool {
	if c.welcomed[conv.ID()] {
		return true
	}
	rec, err := c.home.Group(conv)
	return err == nil && rec != nil
}

// noteKeyRequest takes a key request: dev asked for this device's chain
// in group (a kind-6 Content without a key). It is answered at once, not
// with the next message: queued (home.Queued.KeyAnswer) for the send
// loop, which gives the chain (answerKeyRequest), if dev's account is a
// member by the log and this device has a chain in the group. Bounded:
// once per asking device and group per connection (askOnce), not for a
// device already answered on this chain; answerKeyRequest checks again.
// One small write, not under the sending lock (which a send holds while
// it waits for the server, whose answers this goroutine must not block).
func (c *Client) noteKeyRequest(group string, dev chat.Device) {
	if !validGroupID(group) || c.keys == nil {
		return
	}
	conv := chat.Group(group)
	if !c.askOnce(onceAnswerKey, fmt.Sprintf("%s/%s/%d", group, dev.User, dev.ID), dev.User) {
		return
	}
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	queued := false
	err := c.home.Update(func(tx *home.Tx) error {
		queued = false
		rec, err := tx.Group(conv)
		if err != nil || rec == nil || rec.Left {
			return err
		}
		if slices.ContainsFunc(rec.Holders, func(h home.KeyHolder) bool { return h.User == dev.User && h.Device == dev.ID && h.Answered }) {
			return nil
		}
		l, err := parseLog(rec)
		if err != nil {
			return err
		}
		if _, in := l.State().Member(dev.User); !in {
			return nil
		}
		if own, err := tx.SenderKey(conv, self); err != nil || own == nil {
			return err // no chain here: nothing to give
		}
		ask := &Content{Kind: chat.KindSenderKey, Group: group, SentAt: c.now().UnixMilli()}
		queued = true
		return tx.Enqueue(&home.Queued{ID: newID(c), To: chat.Peer(dev.User), Content: transport.Marshal(ask), KeyAnswer: dev.ID})
	})
	if err == nil && queued {
		c.queuedCatchUp.Store(true) // the engine sends the queue after this batch
	}
}

// answerKeyRequest answers asker's key request in conv, queued by
// noteKeyRequest: this device's chain, to every device of asker's account
// (a Send names whole accounts, protocol.md §6.1), each from its own
// position — where it was first sent the chain, never earlier, so a
// member added later still cannot read what came before it joined; the
// current position for a device never sent it — over the pairwise
// sessions. Nothing is sent if asker's account is no longer a member by
// the log, asker is not listed any more, this device has no chain, or
// asker's request was already answered on this chain; the group record
// then notes the answer and any new holders.
func (c *Client) answerKeyRequest(ctx context.Context, id []byte, conv chat.Conversation, asker chat.Device) error {
	if c.keys == nil {
		return ErrNotLinked
	}
	c.senderMu.Lock()
	defer c.senderMu.Unlock()
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	for attempt := 0; ; attempt++ {
		rec, l, err := readGroup(c.home, conv)
		if err != nil {
			return err
		}
		if _, in := l.State().Member(asker.User); !in || rec.Left {
			return nil
		}
		b, err := c.sessions.SenderKey(conv, self)
		if err != nil || b == nil {
			return err
		}
		key, err := e2ee.UnmarshalSenderKey(b)
		if err != nil {
			return err
		}
		signal, err := c.home.SignalKey(conv, self)
		if err != nil {
			return err
		}
		devs, err := c.sendDevices(ctx, asker.User)
		if err != nil {
			return err
		}
		devs = slices.DeleteFunc(slices.Clone(devs), func(d chat.Device) bool { return d == self })
		if !slices.Contains(devs, asker) {
			return nil
		}
		held := make(map[chat.Device]home.KeyHolder, len(rec.Holders))
		for _, h := range rec.Holders {
			held[chat.Device{User: h.User, ID: h.Device}] = h
		}
		plain := make(map[chat.Device][]byte, len(devs))
		for _, d := range devs {
			h, ok := held[d]
			if !ok || !bytes.Equal(h.DeviceKey, c.listedKey(d)) {
				// Never sent this chain (or sent to a device since
				// re-created): from now on, as with the next message.
				h = home.KeyHolder{User: d.User, Device: d.ID, DeviceKey: c.listedKey(d), Position: key.Iteration()}
			} else if d == asker && h.Answered {
				return nil
			}
			dist, err := key.DistributionAt(min(max(h.Position, key.Start()), key.Iteration()))
			if err != nil {
				return err
			}
			db, err := dist.MarshalBinary()
			if err != nil {
				return err
			}
			plain[d] = transport.Marshal(&Content{Kind: chat.KindSenderKey, Group: conv.ID(), SentAt: c.now().UnixMilli(), SenderKey: db, SignalKey: signal})
			h.Answered = h.Answered || d == asker
			held[d] = h
		}
		msg, err := c.encryptEachTo(ctx, devs, func(d chat.Device) []byte { return plain[d] }, id, nil)
		if err != nil {
			return err
		}
		var sent transport.Sent
		err = c.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent)
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch && attempt < 3 {
			c.forgetDevices(msg)
			c.updateDevices(we.Devices)
			continue // the lists are updated: address the account again
		}
		if err != nil {
			return err
		}
		holders := sortedHolders(held)
		return c.home.Update(func(tx *home.Tx) error {
			rec, err := tx.Group(conv)
			if err != nil || rec == nil {
				return err
			}
			rec.Holders = holders // the sending lock is held: nothing else changed them
			return tx.PutGroup(rec)
		})
	}
}

// groupEnvelopes addresses a group Send kept in the outbox without its
// addresses: every current recipient device, as buildGroupSend does.
func (c *Client) groupEnvelopes(ctx context.Context, conv chat.Conversation) ([]transport.Envelope, error) {
	targets, err := c.recipients(ctx, conv)
	if err != nil {
		return nil, err
	}
	envs := make([]transport.Envelope, 0, len(targets))
	for _, d := range targets {
		envs = append(envs, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: c.listedKey(d)})
	}
	return envs, nil
}

// retryWaiting tries again the held group messages from dev in group,
// after its key (of chain) arrived: in the order they came, so that they
// are read in order.
func (c *Client) retryWaiting(group string, dev chat.Device, chain uint32) {
	var again []*transport.Deliver
	c.waiting = slices.DeleteFunc(c.waiting, func(w *transport.Deliver) bool {
		if w.From == dev.User && w.FromDevice == dev.ID && hex.EncodeToString(w.Group) == group {
			again = append(again, w)
			return true
		}
		return false
	})
	for _, d := range again {
		c.handleDeliverMsg(d, messageChain(d.Shared) == chain)
	}
}

// messageChain is the chain id in a sender-key message's header
// (protocol.md §9.6); 0 if it has none.
func messageChain(shared []byte) uint32 {
	const at = 1 + e2ee.DistributionIDSize
	if len(shared) < at+4 {
		return 0
	}
	return binary.BigEndian.Uint32(shared[at:])
}
