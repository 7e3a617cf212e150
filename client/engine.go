package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Engine is the one facade front ends use (docs/design.md §6.3): the
// terminal client, `securechat send` and `securechat recv` all go through
// it, with one set of rules for acks, receipts, history and the outbox.
//
// An interactive engine (StartEngine) stays connected, reconnecting with
// jittered backoff; it queues messages typed while offline in the sealed
// home and sends them in order; it keeps the history, sends delivery and
// read receipts and typing signals, and reports everything on one event
// stream. Front ends only call it and read its events; it never calls them.
//
// Connection states:
//
//	connecting ──ok──▶ connected ──lost──▶ disconnected ──backoff──▶ connecting
//	     └──fails──▶ disconnected ──backoff──▶ connecting (a wrong home stops it)
//
// A server presenting another key than the pinned one is a failure like
// any other: it is reported (the error names both keys) and retried, so
// that the engine is back when the right server is.
//
// A one-shot engine (OpenEngine) is the scriptable commands': Connect goes
// online once, and SendText and Receive work over that connection.
type Engine struct {
	home *home.Home
	prof *home.Profile
	opts EngineOptions

	events chan UIEvent  // nil for a one-shot engine: nobody reads events
	kick   chan struct{} // the send queue has work or the connection came up
	active chan struct{} // the user did something (after an idle disconnect)

	mu           sync.Mutex // guards c, sendTyping, sendReceipts, typingMute
	c            *Client
	sendTyping   bool
	sendReceipts bool
	typingMute   map[chat.Conversation]time.Time // no typing signals to a peer offline until then

	xfers    transfers     // the file transfers running (files.go)
	xferKick chan struct{} // the interactive engine's transfers have work (nil: one-shot)
	// autoFetch is resumeFetches' budget (files.go); 0: autoFetchBudget.
	autoFetch int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// EngineOptions configure an Engine. Zero values are defaults.
type EngineOptions struct {
	Now  func() time.Time
	Rand io.Reader
	// MinBackoff and MaxBackoff bound the reconnect delay (1s and 30s).
	MinBackoff, MaxBackoff time.Duration
}

// StartEngine starts an interactive engine on an open, registered home.
// Stop it with Close.
func StartEngine(h *home.Home, opts EngineOptions) (*Engine, error) {
	e, err := newEngine(h, opts)
	if err != nil {
		return nil, err
	}
	e.events = make(chan UIEvent, 256)
	e.xferKick = make(chan struct{}, 1)
	e.wg.Go(e.connLoop)
	e.wg.Go(e.sendLoop)
	e.wg.Go(e.transferLoop)
	return e, nil
}

// OpenEngine makes a one-shot engine on an open, registered home: nothing
// runs until Connect. Stop it with Close.
func OpenEngine(h *home.Home, opts EngineOptions) (*Engine, error) {
	return newEngine(h, opts)
}

func newEngine(h *home.Home, opts EngineOptions) (*Engine, error) {
	prof, err := h.Profile()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	s := h.Settings()
	e := &Engine{
		home: h, prof: prof, opts: opts,
		kick:         make(chan struct{}, 1),
		active:       make(chan struct{}, 1),
		sendTyping:   s.SendTyping,
		sendReceipts: s.SendReceipts,
		typingMute:   make(map[chat.Conversation]time.Time),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.sweepFiles()
	return e, nil
}

// Close stops the engine and closes Events. A one-shot engine ends its
// connection with a round trip first, so that the server reads its acks.
func (e *Engine) Close() {
	e.cancel()
	e.mu.Lock()
	c := e.c
	e.mu.Unlock()
	if c != nil {
		if e.events == nil {
			c.Close()
		} else {
			c.conn.Close(transport.CloseNormal, "")
		}
	}
	e.wg.Wait()
	if e.events != nil {
		close(e.events)
	}
}

// Events is the engine's event stream; nil for a one-shot engine.
func (e *Engine) Events() <-chan UIEvent { return e.events }

func (e *Engine) emit(ev UIEvent) {
	if e.events == nil {
		return
	}
	select {
	case e.events <- ev:
	case <-e.ctx.Done():
	}
}

// Self names this account, its server and the pinned server key
// (grouped, transport.Fingerprint.Grouped).
func (e *Engine) Self() (user, server, fingerprint string) {
	return e.prof.User, e.prof.Server, e.prof.Fingerprint.Grouped()
}

func (e *Engine) client() *Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c
}

// fatalConnErr reports errors that retrying cannot fix. A server key
// that does not match the pinned one is not among them: nothing is sent to
// that server, but the right one may come back on the same address (an
// impostor, or another server started there by mistake), so the engine
// keeps trying, with backoff, and the front end says why meanwhile.
func fatalConnErr(err error) bool {
	return errors.Is(err, home.ErrNotRegistered) || errors.Is(err, home.ErrWrongPassphrase)
}

// Connect takes a one-shot engine online: it authenticates, with receive
// asking the server to push this device's mailbox. Why the device's keys
// could not be published, if so, is KeysError.
func (e *Engine) Connect(ctx context.Context, receive bool) error {
	c, err := Connect(ctx, e.home, e.oneShotOptions(receive))
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.c = c
	e.mu.Unlock()
	return nil
}

// oneShotOptions are the connection options of a one-shot engine: a
// server that is down is reported after transport.QuickHandshakeTimeout.
// The interactive engine keeps the longer default, and retries anyway.
func (e *Engine) oneShotOptions(receive bool) Options {
	return Options{Receive: receive, Now: e.opts.Now, Rand: e.opts.Rand, HandshakeTimeout: transport.QuickHandshakeTimeout}
}

// KeysError reports why this device's keys could not be published when it
// connected; nil if all went well or not connected.
func (e *Engine) KeysError() error {
	if c := e.client(); c != nil {
		return c.KeysError()
	}
	return nil
}

func (e *Engine) connLoop() {
	backoff := e.opts.MinBackoff
	for e.ctx.Err() == nil {
		e.emit(UIEvent{Type: UIConn, Conn: ConnConnecting})
		cctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
		c, err := Connect(cctx, e.home, Options{Receive: true, Now: e.opts.Now, Rand: e.opts.Rand, RequestTimeout: requestTimeout})
		cancel()
		if err != nil {
			if e.ctx.Err() != nil {
				return
			}
			e.emit(UIEvent{Type: UIConn, Conn: ConnDisconnected, Err: err})
			if fatalConnErr(err) {
				return
			}
			// Jittered exponential backoff: a restarted server is not met
			// by every client at the same instant.
			wait := backoff/2 + mrand.N(backoff/2+1)
			backoff = min(2*backoff, e.opts.MaxBackoff)
			select {
			case <-time.After(wait):
			case <-e.ctx.Done():
				return
			}
			continue
		}
		backoff = e.opts.MinBackoff
		e.mu.Lock()
		e.c = c
		e.mu.Unlock()
		e.emit(UIEvent{Type: UIConn, Conn: ConnConnected, Err: c.KeysError()})
		e.poke()
		e.kickTransfers()
		err = e.receive(e.ctx, c, nil)
		e.mu.Lock()
		e.c = nil
		e.mu.Unlock()
		c.conn.Close(transport.CloseNormal, "")
		if e.ctx.Err() != nil {
			return
		}
		e.emit(UIEvent{Type: UIConn, Conn: ConnDisconnected, Err: err})
		wait := time.After(e.opts.MinBackoff/2 + mrand.N(e.opts.MinBackoff/2+1))
		var sc *ServerClosedError
		if errors.As(err, &sc) && sc.Code == transport.CloseIdle {
			wait = nil // disconnected for idling: back when the user is
			select {
			case <-e.active: // drop a stale signal
			default:
			}
		}
		select {
		case <-wait:
		case <-e.active:
		case <-e.ctx.Done():
			return
		}
	}
}

// requestTimeout bounds the interactive engine's wait for each answer of
// the server. A connection that does not answer in time is closed and made
// again: what was being sent stays in the outbox and goes again under its
// id (docs/protocol.md §6.1), instead of waiting out QUIC's idle timeout on
// a connection that is gone without a close or reset.
const requestTimeout = 15 * time.Second

// ReceiveOptions say how Receive ends and how a front end shows messages.
type ReceiveOptions struct {
	// Wait is how long to keep waiting for new messages once the server
	// has pushed what it had queued, counted from the last message.
	Wait time.Duration
	// Show is called for every message a person reads (not receipts),
	// before it is kept and acked: if it fails, Receive stops and the
	// message is not acked, so the server delivers it again.
	Show func(*Message) error
	// Read says that what Show shows is read by a person as it arrives
	// (`recv` prints it): it is kept as read, not unread, and the texts a
	// delivery receipt answers get a read receipt too, unless the receipts
	// setting is off, as when the terminal client has their conversation
	// open (docs/protocol.md §8.1).
	Read bool
}

// Receive takes a one-shot engine's queued messages and what arrives until
// o.Wait passes with nothing new, or ctx is done. It keeps, acks and
// answers them by the same rules as the interactive engine (incoming),
// then sends what those rules queued (delivery receipts).
func (e *Engine) Receive(ctx context.Context, o ReceiveOptions) error {
	c := e.client()
	if c == nil {
		return errors.New("not connected")
	}
	err := e.receive(ctx, c, &o)
	if err == nil && ctx.Err() == nil {
		e.sendQueued(ctx, c)
	}
	return err
}

// receive handles c's events until the connection ends, ctx is done, or,
// for a command (o not nil), o.Wait passes after the queue was pushed with
// nothing new. Messages that arrived together are handled as one batch:
// a burst costs one durable write, not one per message.
func (e *Engine) receive(ctx context.Context, c *Client, o *ReceiveOptions) error {
	var wait *time.Duration
	if o == nil {
		o = &ReceiveOptions{}
	} else {
		wait = &o.Wait
	}
	var timeout <-chan time.Time
	var batch []*Message
	for {
		var ev Event
		var ok bool
		if len(batch) > 0 {
			// Take whatever else has already arrived first.
			select {
			case ev, ok = <-c.Events():
			default:
				// The interactive engine goes on after a failed ack, as a
				// redelivery is acked as seen; a command reports it.
				if err := e.incoming(c, batch, o.Show, o.Read); err != nil && wait != nil {
					return err
				}
				batch = batch[:0]
				if timeout != nil {
					timeout = time.After(*wait) // the wait counts from the last message
				}
				continue
			}
		} else {
			select {
			case <-ctx.Done():
				return nil
			case <-timeout:
				return nil
			case ev, ok = <-c.Events():
			}
		}
		if !ok {
			return errors.New("connection closed")
		}
		switch ev.Type {
		case EventClosed:
			return ev.Err
		case EventQueueEmpty:
			if wait != nil {
				timeout = time.After(*wait)
			}
		case EventMessage:
			batch = append(batch, ev.Message)
		case EventSignal:
			if ev.Message.Kind == chat.KindTyping && !ev.Message.Outgoing {
				// In a group, ID names who is typing.
				e.emit(UIEvent{Type: UITyping, Conversation: ev.Message.Conversation, ID: ev.Message.From.User})
			}
		}
	}
}

// incoming applies the receiving rules (docs/protocol.md §8.1) to messages
// that arrived together: a receipt advances the delivery state of what it
// names in the conversation with its sender (a copy of one this account's
// other device sent changes nothing); any other message goes into its
// conversation's history (as outgoing, for a copy of what this account's
// other device sent; else as unread); every incoming text is answered with
// a delivery receipt naming it, one receipt per sender for the batch. All
// of it and the messages' seen records commit together, and then the
// messages are acked: kept and acked together, or neither and they come
// again. Once kept they are shown, even if the ack itself could not go out
// (the connection ended): their redelivery is then acked as seen, not
// shown again. show, if not nil, is called first for each message a person
// reads; its error leaves the batch unacked. read says the person reads
// them as they are shown: they are kept as read, and each sender's texts
// that get a delivery receipt get a read receipt too (after it, in the
// same commit) when the receipts setting is on.
func (e *Engine) incoming(c *Client, msgs []*Message, show func(*Message) error, read bool) error {
	if slices.ContainsFunc(msgs, func(m *Message) bool { return m.Waiting }) {
		var waiting []*Message
		msgs = slices.DeleteFunc(slices.Clone(msgs), func(m *Message) bool {
			if m.Waiting {
				waiting = append(waiting, m)
			}
			return m.Waiting
		})
		if err := e.noteWaiting(c, waiting, show); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
	}
	// A group change decides who may write to the group from then on:
	// what follows it is handled once it is applied.
	if i := slices.IndexFunc(msgs, func(m *Message) bool { return m.Kind == chat.KindGroupChange }); i >= 0 && i < len(msgs)-1 {
		if err := e.incoming(c, msgs[:i+1], show, read); err != nil {
			return err
		}
		return e.incoming(c, msgs[i+1:], show, read)
	}
	if show != nil {
		for _, m := range msgs {
			// A group change is shown as what it did, once applied.
			if !m.Kind.IsReceipt() && !m.Outgoing && m.Kind != chat.KindGroupChange && m.Kind != chat.KindSenderKey && m.Kind != chat.KindSettings {
				if m.Conversation.IsGroup() && m.Kind != chat.KindError {
					var why string
					c.home.View(func(tx *home.Tx) (err error) {
						why, err = checkGroupSender(tx, m, e.opts.Now())
						return err
					})
					if why != "" {
						continue // shown as a note instead
					}
				}
				if err := show(m); err != nil {
					return err
				}
			}
		}
	}
	var events []UIEvent
	var receipts []*home.Queued
	var notes []*Message      // what group changes did, and group messages not shown
	var synced *home.Settings // settings from another device of this account
	var files bool            // a file was offered
	e.mu.Lock()
	sendRead := read && e.sendReceipts
	e.mu.Unlock()
	committed, err := c.ackWith(func(tx *home.Tx) error {
		events, receipts, notes, synced, files = events[:0], receipts[:0], notes[:0], nil, false
		note := func(m *Message, i int, text string) error {
			id := noteID(m.rawID, i)
			if kept, err := tx.InHistory(id); err != nil || kept {
				return err
			}
			rec := &home.HistoryRecord{ID: id, From: m.From.User, Kind: chat.KindSystem, Text: text, Time: m.ServerTime.UnixMilli()}
			entry, err := tx.AddHistory(m.Conversation, rec, false)
			if err != nil {
				return err
			}
			events = append(events, UIEvent{Type: UIMessage, Conversation: m.Conversation, Entry: &entry})
			notes = append(notes, &Message{ID: hex.EncodeToString(id), From: m.From, Conversation: m.Conversation,
				Kind: chat.KindSystem, Text: text, SentAt: m.SentAt, ServerTime: m.ServerTime, rawID: id})
			return nil
		}
		delivered := make(map[receiptTo][][]byte)
		var senders []receiptTo
		for _, m := range msgs {
			id, _ := hex.DecodeString(m.ID)
			switch {
			case m.Kind == chat.KindRead && m.Outgoing && !m.IdentityChanged && m.From.User == e.prof.User:
				// Another device of this account read the conversation
				// (its read receipt's copy, the fan-out rule): it is read
				// here too (docs/protocol.md §8.1).
				if changed, err := tx.MarkRead(m.Conversation); err != nil {
					return err
				} else if changed {
					events = append(events, UIEvent{Type: UIRead, Conversation: m.Conversation})
				}
			case m.Kind.IsReceipt() && (m.Outgoing || m.IdentityChanged):
				// A receipt with an identity key not accepted for its
				// sender says nothing about what the sender got; a
				// delivery receipt of this account's other device says
				// nothing this device needs: acked, not applied.
			case m.Kind.IsReceipt() && m.Conversation.IsGroup():
				// A member's receipt for a group message: counted per
				// member, from members only (protocol.md §8.1).
				if !isMember(tx, m.Conversation, m.From.User) {
					continue
				}
				for _, ref := range m.Refs {
					rid, err := hex.DecodeString(ref)
					if err != nil {
						continue
					}
					if entry, changed, err := tx.AdvanceGroupState(rid, m.Kind == chat.KindRead, m.From.User, m.Conversation); err == nil && changed {
						events = append(events, UIEvent{Type: UIState, Conversation: m.Conversation, ID: ref, State: entry.State, Entry: &entry})
					}
				}
			case m.Kind.IsReceipt():
				state := home.StateDelivered
				if m.Kind == chat.KindRead {
					state = home.StateRead
				}
				// A ref that cannot be applied is skipped (AdvanceState
				// writes last, so a failure leaves nothing of it) and the
				// receipt acked anyway.
				for _, ref := range m.Refs {
					rid, err := hex.DecodeString(ref)
					if err != nil {
						continue
					}
					if conv, changed, err := tx.AdvanceState(rid, state, "", m.From.User); err == nil && changed {
						events = append(events, UIEvent{Type: UIState, Conversation: conv, ID: ref, State: state})
					}
				}
			case m.Kind == chat.KindSenderKey:
				// Kept by the client as it arrived (applySenderKey).
			case m.Kind == chat.KindSettings:
				// Another device of this account changed the settings
				// (protocol.md §8.1); anyone else's are ignored.
				if m.From.User == e.prof.User && !m.IdentityChanged {
					s := home.Settings{SendTyping: m.settingsOff&1 == 0, SendReceipts: m.settingsOff&2 == 0}
					if err := tx.PutSettings(s); err != nil {
						return err
					}
					synced = &s
				}
			case m.Kind == chat.KindGroupChange:
				texts, err := c.receiveGroup(tx, m)
				if err != nil {
					return err
				}
				for i, text := range texts {
					if err := note(m, i, text); err != nil {
						return err
					}
				}
			default:
				if kept, err := tx.InHistory(id); err != nil || kept {
					continue
				}
				if m.Conversation.IsGroup() && !m.Outgoing && m.Kind != chat.KindError {
					why, rec, l, err := groupSender(tx, m, e.opts.Now())
					if err != nil {
						return err
					}
					if why != "" {
						if err := note(m, 0, why); err != nil {
							return err
						}
						continue
					}
					if err := c.compareHeads(tx, m, rec, l); err != nil {
						return err
					}
				}
				rec := &home.HistoryRecord{ID: id, From: m.From.User, Outgoing: m.Outgoing, Kind: m.Kind, Text: m.Text, Time: m.SentAt.UnixMilli(), Unverified: m.IdentityChanged}
				if m.Outgoing {
					rec.State = home.StateStored
				}
				entry, err := tx.AddHistory(m.Conversation, rec, !m.Outgoing && !read)
				if err != nil {
					return err
				}
				if m.Kind == chat.KindFile && m.File != nil {
					// Offered to this device: fetched by the terminal
					// client at once, by `files get` when asked.
					if err := tx.PutFile(&home.FileRecord{ID: id, Conversation: m.Conversation, From: m.From.User, Outgoing: m.Outgoing,
						Ref: transport.Marshal(m.File), State: home.FileOffered, Time: m.SentAt.UnixMilli(), Unverified: m.IdentityChanged}); err != nil {
						return err
					}
					files = true
				}
				events = append(events, UIEvent{Type: UIMessage, Conversation: m.Conversation, Entry: &entry})
				if m.IdentityChanged {
					events = append(events, UIEvent{Type: UIIdentityChanged, Conversation: chat.Peer(m.From.User)})
				}
				// Receipts go to the sender; for a group message, with
				// the group named, in groups small enough (protocol.md §8.1).
				if (m.Kind == chat.KindText || m.Kind == chat.KindFile) && !m.Outgoing && !m.IdentityChanged && (!m.Conversation.IsGroup() || groupReceipts(tx, m.Conversation)) {
					to := receiptTo{user: m.From.User}
					if m.Conversation.IsGroup() {
						to.group = m.Conversation.ID()
					}
					if delivered[to] == nil {
						senders = append(senders, to)
					}
					delivered[to] = append(delivered[to], id)
				}
			}
		}
		kinds := []chat.ContentKind{chat.KindDelivered}
		if sendRead {
			kinds = append(kinds, chat.KindRead)
		}
		for _, to := range senders {
			for _, kind := range kinds {
				for refs := range chunks(delivered[to], maxRefs) {
					q, err := e.receipt(chat.Peer(to.user), to.group, kind, refs)
					if err != nil {
						return err
					}
					if err := tx.Enqueue(q); err != nil {
						return err
					}
					receipts = append(receipts, q)
				}
			}
		}
		return nil
	}, msgs...)
	if !committed {
		return err
	}
	if synced != nil {
		e.mu.Lock()
		e.sendTyping, e.sendReceipts = synced.SendTyping, synced.SendReceipts
		e.mu.Unlock()
	}
	if show != nil {
		for _, n := range notes {
			show(n) // already kept: a failure here loses nothing
		}
	}
	for _, ev := range events {
		e.emit(ev)
	}
	if len(receipts) > 0 || c.queuedCatchUp.Swap(false) {
		e.poke()
	}
	if files {
		e.kickTransfers()
	}
	return err
}

// noteWaiting keeps in the group's history, once per message, that a
// group message waits for its sender's key, and shows it; the message
// itself is not acked (Message.Waiting).
func (e *Engine) noteWaiting(c *Client, msgs []*Message, show func(*Message) error) error {
	var events []UIEvent
	var notes []*Message
	asked := false
	err := c.home.Update(func(tx *home.Tx) error {
		events, notes, asked = events[:0], notes[:0], false
		for _, m := range msgs {
			id := noteID(m.rawID, 0xff)
			if kept, err := tx.InHistory(id); err != nil || kept {
				if err != nil {
					return err
				}
				continue
			}
			rec := &home.HistoryRecord{ID: id, From: m.From.User, Kind: chat.KindSystem, Text: m.Text, Time: m.ServerTime.UnixMilli()}
			entry, err := tx.AddHistory(m.Conversation, rec, false)
			if err != nil {
				return err
			}
			events = append(events, UIEvent{Type: UIMessage, Conversation: m.Conversation, Entry: &entry})
			notes = append(notes, &Message{ID: hex.EncodeToString(id), From: m.From, Conversation: m.Conversation,
				Kind: chat.KindSystem, Text: m.Text, SentAt: m.SentAt, ServerTime: m.ServerTime, rawID: id})
			// Ask the sender for its chain, once per connection: its next
			// messages then come with it (protocol.md §8.3).
			if c.askOnce(onceAskKey, m.Group+"/"+m.From.User, m.From.User) {
				ask := &Content{Kind: chat.KindSenderKey, Group: m.Group, SentAt: e.opts.Now().UnixMilli()}
				if err := tx.Enqueue(&home.Queued{ID: newID(c), To: chat.Peer(m.From.User), Content: transport.Marshal(ask)}); err != nil {
					return err
				}
				asked = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if show != nil {
		for _, n := range notes {
			show(n)
		}
	}
	for _, ev := range events {
		e.emit(ev)
	}
	if asked {
		e.poke()
	}
	return nil
}

// receiptTo is where receipts go: the sender, and for a group message the
// group they name.
type receiptTo struct{ user, group string }

// isMember reports whether user is a member of group as this home knows it.
func isMember(tx *home.Tx, group chat.Conversation, user string) bool {
	rec, err := tx.Group(group)
	if err != nil || rec == nil {
		return false
	}
	l, err := parseLog(rec)
	if err != nil {
		return false
	}
	_, in := l.State().Member(user)
	return in
}

// groupReceipts reports whether this home sends receipts for group's
// messages: only in groups of at most home.MaxReceiptMembers members, as
// each member's receipts go to the sender one by one (protocol.md §8.1).
func groupReceipts(tx *home.Tx, group chat.Conversation) bool {
	rec, err := tx.Group(group)
	if err != nil || rec == nil || rec.Left {
		return false
	}
	l, err := parseLog(rec)
	return err == nil && len(l.State().Members) <= home.MaxReceiptMembers+1
}

// chunks yields s in pieces of at most n.
func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// receipt makes a queued receipt of kind for refs.
func (e *Engine) receipt(to chat.Conversation, group string, kind chat.ContentKind, refs [][]byte) (*home.Queued, error) {
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(e.opts.Rand, id); err != nil {
		return nil, err
	}
	content := &Content{Kind: kind, SentAt: e.opts.Now().UnixMilli(), Refs: refs, Group: group}
	return &home.Queued{ID: id, To: to, Content: transport.Marshal(content)}, nil
}

// Send queues text for a peer and returns its history entry at once.
func (e *Engine) Send(to chat.Conversation, text string) (*HistoryEntry, error) {
	var group string
	if to.IsGroup() {
		if err := checkCanSend(e.home, e.prof.User, to, e.opts.Now()); err != nil {
			return nil, err
		}
		group = to.ID()
	} else {
		user, err := transport.CanonicalUser(to.ID())
		if err != nil {
			return nil, err
		}
		if err := e.checkContact(user); err != nil {
			return nil, err
		}
		to = chat.Peer(user)
	}
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil, errors.New("message is empty")
	}
	if len(text) > MaxTextLen {
		return nil, fmt.Errorf("message is too long: %d bytes, the limit is %d", len(text), MaxTextLen)
	}
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(e.opts.Rand, id); err != nil {
		return nil, err
	}
	now := e.opts.Now()
	content := &Content{Kind: chat.KindText, Text: text, SentAt: now.UnixMilli(), Group: group}
	rec := &home.HistoryRecord{ID: id, From: e.prof.User, Outgoing: true, Kind: chat.KindText, Text: text, Time: now.UnixMilli(), State: home.StateSending}
	var entry HistoryEntry
	err := e.home.Update(func(tx *home.Tx) error {
		var err error
		if to.IsGroup() {
			rec.Recipients = othersIn(tx, to, e.prof.User)
		}
		if entry, err = tx.AddHistory(to, rec, false); err != nil {
			return err
		}
		return tx.Enqueue(&home.Queued{ID: id, To: to, Content: transport.Marshal(content), History: true})
	})
	if err != nil {
		return nil, err
	}
	e.poke()
	return &entry, nil
}

// SendText sends text to a user over a one-shot engine's connection and
// returns once the server has stored it; it goes into the history then.
func (e *Engine) SendText(ctx context.Context, to, text string) (SendResult, error) {
	c := e.client()
	if c == nil {
		return SendResult{}, errors.New("not connected")
	}
	return c.SendText(ctx, to, text)
}

// FlushOutbox sends, over a one-shot engine's connection, what earlier
// runs left: messages whose confirmation was lost (reported, and an
// UnconfirmedError if the connection failed again), then the queue (delivery
// receipts a Receive could not send; failures there wait for the next run).
func (e *Engine) FlushOutbox(ctx context.Context) ([]Outboxed, error) {
	c := e.client()
	if c == nil {
		return nil, errors.New("not connected")
	}
	done, err := c.FlushOutbox(ctx)
	if err == nil {
		e.sendQueued(ctx, c)
	}
	return done, err
}

// sendQueued sends the queue until it is empty or the connection fails.
// A command waits at most queueTimeout: what is left is sent next time.
func (e *Engine) sendQueued(ctx context.Context, c *Client) {
	if e.events == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, queueTimeout)
		defer cancel()
	}
	for e.sendNext(ctx, c) {
	}
}

// queueTimeout bounds how long a command spends sending the queue.
const queueTimeout = 10 * time.Second

// checkContact refuses to queue for a contact whose identity changed.
func (e *Engine) checkContact(to string) error {
	ct, err := e.home.Contact(to)
	if err != nil {
		return err
	}
	if ct != nil && ct.Pending != nil {
		return &IdentityChangedError{User: to}
	}
	return nil
}

func (e *Engine) queueReceipt(to chat.Conversation, group string, kind chat.ContentKind, refs [][]byte) {
	q, err := e.receipt(to, group, kind, refs)
	if err != nil {
		return
	}
	if err := e.home.Update(func(tx *home.Tx) error { return tx.Enqueue(q) }); err == nil {
		e.poke()
	}
}

func (e *Engine) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
	e.touch()
}

// touch records user activity, which ends a wait after an idle disconnect.
func (e *Engine) touch() {
	select {
	case e.active <- struct{}{}:
	default:
	}
}

// sendLoop sends the queue in order whenever connected.
func (e *Engine) sendLoop() {
	for {
		select {
		case <-e.kick:
		case <-e.ctx.Done():
			return
		}
		c := e.client()
		if c == nil {
			continue
		}
		if _, err := c.FlushOutbox(e.ctx); err != nil {
			continue // the connection failed; connLoop reconnects and pokes
		}
		e.sendQueued(e.ctx, c)
	}
}

// sendNext sends the oldest queued message; false when the queue is empty
// or the connection failed.
func (e *Engine) sendNext(ctx context.Context, c *Client) bool {
	key, q, ok, err := e.home.NextQueued()
	if err != nil || !ok {
		return false
	}
	var content Content
	err = transport.Unmarshal(q.Content, &content)
	switch {
	case err != nil:
	case q.KeyAnswer != 0:
		// A member device's key request: the chain is given now, from
		// where that device needs it (senderkeys.go).
		if q.To.IsGroup() || !validGroupID(content.Group) {
			err = errors.New("a key answer for no group")
		} else {
			err = c.answerKeyRequest(ctx, q.ID, chat.Group(content.Group), chat.Device{User: q.To.ID(), ID: q.KeyAnswer})
		}
	default:
		_, err = c.SendContent(ctx, q.ID, q.To, &content)
	}
	var ue *UnconfirmedError
	var ce *ConnError
	if errors.As(err, &ue) || errors.As(err, &ce) || ctx.Err() != nil {
		return false // stays queued; sent again after reconnecting
	}
	state, errText := home.StateStored, ""
	if err != nil {
		state, errText = home.StateFailed, err.Error()
	}
	var conv chat.Conversation
	var changed bool
	e.home.Update(func(tx *home.Tx) error {
		if q.History {
			conv, changed, _ = tx.AdvanceState(q.ID, state, errText, "")
		}
		return tx.Dequeue(key)
	})
	if changed {
		e.emit(UIEvent{Type: UIState, Conversation: conv, ID: hex.EncodeToString(q.ID), State: state, Err: err})
	}
	var ic *IdentityChangedError
	if errors.As(err, &ic) {
		e.emit(UIEvent{Type: UIIdentityChanged, Conversation: chat.Peer(ic.User)})
	}
	return true
}

// Typing sends an ephemeral typing signal to a conversation (docs/design.md
// §4: never stored); none to a group.
func (e *Engine) Typing(to chat.Conversation) {
	e.touch()
	e.mu.Lock()
	on, muted := e.sendTyping, e.opts.Now().Before(e.typingMute[to])
	e.mu.Unlock()
	c := e.client()
	if !on || muted || c == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		send := c.SendSignal
		if to.IsGroup() {
			// Sealed once for the group (protocol.md §8.3).
			send = c.SendGroupSignal
		}
		online, err := send(ctx, to, &Content{Kind: chat.KindTyping, SentAt: e.opts.Now().UnixMilli()})
		if err == nil && online == 0 {
			// Nobody took it: each lost signal is a skipped ratchet key on
			// the peer, so don't keep sending into the void.
			e.mu.Lock()
			e.typingMute[to] = e.opts.Now().Add(time.Minute)
			e.mu.Unlock()
		}
	}()
}

// MarkRead clears a conversation's unread count and sends read receipts for
// what it received since the last time (none for a group's).
func (e *Engine) MarkRead(conv chat.Conversation) error {
	e.touch()
	entries, err := e.home.History(conv, "", 200)
	if err != nil {
		return err
	}
	var unread int
	convs, _ := e.home.Conversations()
	for _, c := range convs {
		if c.Conversation == conv {
			unread = c.Unread
		}
	}
	if unread == 0 {
		return nil
	}
	if err := e.home.MarkRead(conv); err != nil {
		return err
	}
	e.mu.Lock()
	receipts := e.sendReceipts
	e.mu.Unlock()
	if !receipts || conv == SystemConversation {
		return nil
	}
	if conv.IsGroup() {
		// Each sender gets its read receipt, naming the group, in a
		// group small enough (protocol.md §8.1).
		ok := false
		e.home.View(func(tx *home.Tx) error { ok = groupReceipts(tx, conv); return nil })
		if !ok {
			return nil
		}
		bySender := make(map[string][][]byte)
		var senders []string
		for i := len(entries) - 1; i >= 0 && unread > 0; i-- {
			en := entries[i]
			if en.Outgoing || (en.Kind != chat.KindText && en.Kind != chat.KindFile) || en.Unverified {
				continue
			}
			unread--
			id, _ := hex.DecodeString(en.ID)
			if bySender[en.From] == nil {
				senders = append(senders, en.From)
			}
			bySender[en.From] = append(bySender[en.From], id)
		}
		for _, from := range senders {
			e.queueReceipt(chat.Peer(from), conv.ID(), chat.KindRead, bySender[from])
		}
		return nil
	}
	var refs [][]byte
	for i := len(entries) - 1; i >= 0 && len(refs) < unread; i-- {
		if !entries[i].Outgoing && (entries[i].Kind == chat.KindText || entries[i].Kind == chat.KindFile) {
			id, _ := hex.DecodeString(entries[i].ID)
			refs = append(refs, id)
		}
	}
	if len(refs) > 0 {
		e.queueReceipt(conv, "", chat.KindRead, refs)
	}
	return nil
}

// Conversations lists the conversations, most recent first.
func (e *Engine) Conversations() ([]ConversationInfo, error) { return e.home.Conversations() }

// History returns a conversation's entries; see home.Home.History.
func (e *Engine) History(conv chat.Conversation, before string, limit int) ([]HistoryEntry, error) {
	return e.home.History(conv, before, limit)
}

// ErrNotConnected is what needs the server and finds no connection.
var ErrNotConnected = errors.New("not connected")

// SafetyNumber returns the safety number with a peer; it needs the
// connection the first time the peer is met. Without a connection, a known
// peer's number comes from this home's records (SafetyInfo.Offline); an
// unknown one is ErrNotConnected.
func (e *Engine) SafetyNumber(conv chat.Conversation) (SafetyInfo, error) {
	c := e.client()
	if c == nil {
		return e.recordedSafetyNumber(conv.ID())
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	return c.SafetyNumber(ctx, conv.ID())
}

// recordedSafetyNumber is the safety number with user from the contact
// this home keeps, as Client.SafetyNumber shows it (a pending key is the
// one shown, and recorded as shown), for when the server cannot be
// reached.
func (e *Engine) recordedSafetyNumber(user string) (SafetyInfo, error) {
	ct, err := e.home.Contact(user)
	if err != nil {
		return SafetyInfo{}, err
	}
	if ct == nil {
		return SafetyInfo{}, ErrNotConnected
	}
	key := ct.Identity
	if ct.Pending != nil {
		key = ct.Pending
	}
	number, err := e.safetyNumberOf(user, key)
	if err != nil {
		return SafetyInfo{}, err
	}
	if ct.Pending != nil {
		// Trust without a safety number accepts only a key shown.
		if err := e.home.ShowPending(user, ct.Pending); err != nil {
			return SafetyInfo{}, err
		}
	}
	return SafetyInfo{
		Number:   number,
		Changed:  ct.Pending != nil,
		Conflict: ct.Conflict,
		Verified: ct.Verified && ct.Pending == nil,
		Offline:  true,
	}, nil
}

// Fingerprint is this account's own half of every safety number; it needs
// no connection.
func (e *Engine) Fingerprint() (string, error) {
	if len(e.prof.Keys) == 0 {
		return "", ErrNotLinked
	}
	keys, err := e2ee.ParseDeviceKeys(e.prof.Keys)
	if err != nil {
		return "", err
	}
	return e2ee.IdentityFingerprint(e.prof.User, keys.IdentityKey()), nil
}

// Trust accepts a peer's changed identity key: the pending key whose
// safety number is safetyNumber (spaces ignored), or, if safetyNumber is
// empty, the pending key whose safety number was last shown (Fingerprint,
// SafetyNumber). Any other key is refused: a key swapped in after the user
// compared is never accepted. It returns the safety number accepted.
func (e *Engine) Trust(conv chat.Conversation, safetyNumber string) (string, error) {
	user := conv.ID()
	ct, err := e.home.Contact(user)
	if err != nil {
		return "", err
	}
	if ct == nil || ct.Pending == nil {
		return "", e.home.Trust(user, nil) // says why there is nothing to accept
	}
	number, err := e.safetyNumberOf(user, ct.Pending)
	if err != nil {
		return "", err
	}
	want := strings.Join(strings.Fields(safetyNumber), "")
	switch {
	case want == "" && !bytes.Equal(ct.Shown, ct.Pending):
		return "", fmt.Errorf("%s's new identity key has not been shown to you yet: compare its safety number first (securechat fingerprint %s, or /verify %s in chat), then accept it", user, user, user)
	case want != "" && want != number:
		return "", fmt.Errorf("the safety number of %s's pending identity key is not the one given: nothing accepted (securechat fingerprint %s shows it)", user, user)
	}
	if err := e.home.Trust(user, ct.Pending); err != nil {
		return "", err
	}
	return number, nil
}

// safetyNumberOf is the safety number with user for its identity key key.
func (e *Engine) safetyNumberOf(user string, key []byte) (string, error) {
	if len(e.prof.Keys) == 0 {
		return "", ErrNotLinked
	}
	keys, err := e2ee.ParseDeviceKeys(e.prof.Keys)
	if err != nil {
		return "", err
	}
	remote, err := e2ee.ParseIdentityKey(key)
	if err != nil {
		return "", err
	}
	return e2ee.SafetyNumber(e.prof.User, keys.IdentityKey(), user, remote), nil
}

// Verify marks a peer's identity key verified.
func (e *Engine) Verify(conv chat.Conversation) error { return e.home.Verify(conv.ID()) }

// SetSendTyping turns outgoing typing signals on or off; the setting is
// kept in the home.
func (e *Engine) SetSendTyping(on bool) {
	e.mu.Lock()
	changed := e.sendTyping != on
	e.sendTyping = on
	s := home.Settings{SendTyping: e.sendTyping, SendReceipts: e.sendReceipts}
	e.mu.Unlock()
	e.saveSettings(s, changed)
}

// saveSettings keeps s and, when they changed, queues them for this
// account's other devices (protocol.md §8.1).
func (e *Engine) saveSettings(s home.Settings, changed bool) {
	if !changed {
		e.home.SaveSettings(s)
		return
	}
	var off uint8
	if !s.SendTyping {
		off |= 1
	}
	if !s.SendReceipts {
		off |= 2
	}
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(e.opts.Rand, id); err != nil {
		e.home.SaveSettings(s)
		return
	}
	content := &Content{Kind: chat.KindSettings, SentAt: e.opts.Now().UnixMilli(), SettingsOff: off}
	err := e.home.Update(func(tx *home.Tx) error {
		if err := tx.PutSettings(s); err != nil {
			return err
		}
		return tx.Enqueue(&home.Queued{ID: id, To: chat.Peer(e.prof.User), Content: transport.Marshal(content)})
	})
	if err == nil {
		e.poke()
	}
}

// Settings reports whether typing signals and read receipts are sent.
func (e *Engine) Settings() (sendTyping, sendReceipts bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sendTyping, e.sendReceipts
}

// SetSendReceipts turns outgoing read receipts on or off. Delivery receipts
// are always sent: they say only that a device has the message.
func (e *Engine) SetSendReceipts(on bool) {
	e.mu.Lock()
	changed := e.sendReceipts != on
	e.sendReceipts = on
	s := home.Settings{SendTyping: e.sendTyping, SendReceipts: e.sendReceipts}
	e.mu.Unlock()
	e.saveSettings(s, changed)
}
