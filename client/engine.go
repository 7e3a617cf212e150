package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Engine keeps an interactive client running (docs/design.md §6): it stays
// connected, reconnecting with jittered backoff; it queues messages typed
// while offline in the sealed home and sends them in order; it keeps the
// history, sends delivery and read receipts and typing signals, and
// reports everything on one event stream. Front ends only call it and read
// its events; it never calls them.
//
// Connection states:
//
//	connecting ──ok──▶ connected ──lost──▶ disconnected ──backoff──▶ connecting
//	     └──fails──▶ disconnected (a changed server key or a wrong home stops it)
type Engine struct {
	home *Home
	prof *Profile
	opts EngineOptions

	events chan UIEvent
	kick   chan struct{} // the send queue has work or the connection came up
	active chan struct{} // the user did something (after an idle disconnect)

	mu           sync.Mutex // guards c, sendTyping, sendReceipts, typingMute
	c            *Client
	sendTyping   bool
	sendReceipts bool
	typingMute   map[string]time.Time // no typing signals to a peer offline until then

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

// pendingEntry is a message queued for sending.
type pendingEntry struct {
	ID      []byte
	To      string
	Content []byte // marshalled Content
	History bool   // an entry of the history tracks it (texts, not receipts)
}

func (m *pendingEntry) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.ID)
	e.String(2, m.To)
	e.BytesField(3, m.Content)
	e.Bool(4, m.History)
}

func (m *pendingEntry) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Fixed(transport.MessageIDLen)
		case 2:
			m.To, err = f.String(transport.MaxUserName)
		case 3:
			m.Content, err = f.Bytes(transport.MaxPayload)
		case 4:
			m.History, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// StartEngine starts an engine on an open, registered home. Stop it with Close.
func StartEngine(home *Home, opts EngineOptions) (*Engine, error) {
	prof, err := home.Profile()
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
	e := &Engine{
		home: home, prof: prof, opts: opts,
		events:       make(chan UIEvent, 256),
		kick:         make(chan struct{}, 1),
		active:       make(chan struct{}, 1),
		sendTyping:   true,
		sendReceipts: true,
		typingMute:   make(map[string]time.Time),
	}
	e.sendTyping, e.sendReceipts = home.settings()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Go(e.connLoop)
	e.wg.Go(e.sendLoop)
	return e, nil
}

// Close stops the engine and closes Events.
func (e *Engine) Close() {
	e.cancel()
	e.mu.Lock()
	c := e.c
	e.mu.Unlock()
	if c != nil {
		c.conn.Close(transport.CloseNormal, "")
	}
	e.wg.Wait()
	close(e.events)
}

// Events is the engine's event stream.
func (e *Engine) Events() <-chan UIEvent { return e.events }

func (e *Engine) emit(ev UIEvent) {
	select {
	case e.events <- ev:
	case <-e.ctx.Done():
	}
}

// Self names this account, its server and the pinned server key.
func (e *Engine) Self() (user, server, fingerprint string) {
	return e.prof.User, e.prof.Server, e.prof.Fingerprint.String()
}

func (e *Engine) client() *Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c
}

// fatalConnErr reports errors that retrying cannot fix.
func fatalConnErr(err error) bool {
	var km *transport.KeyMismatchError
	return errors.As(err, &km) || errors.Is(err, ErrNotRegistered) || errors.Is(err, ErrWrongPassphrase)
}

func (e *Engine) connLoop() {
	backoff := e.opts.MinBackoff
	for e.ctx.Err() == nil {
		e.emit(UIEvent{Type: UIConn, Conn: ConnConnecting})
		cctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
		c, err := Connect(cctx, e.home, Options{Receive: true, Now: e.opts.Now, Rand: e.opts.Rand})
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
		err = e.consume(c)
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

// consume handles one connection's events until it ends.
func (e *Engine) consume(c *Client) error {
	for ev := range c.Events() {
		switch ev.Type {
		case EventClosed:
			return ev.Err
		case EventMessage:
			e.incoming(c, ev.Message)
		case EventSignal:
			if ev.Message.Kind == KindTyping.String() {
				e.emit(UIEvent{Type: UITyping, Conversation: ev.Message.From})
			}
		}
	}
	return errors.New("connection closed")
}

// incoming keeps a received message and acks it.
func (e *Engine) incoming(c *Client, m *Message) {
	id, _ := hex.DecodeString(m.ID)
	switch m.Kind {
	case KindDelivered.String(), KindRead.String():
		state := StateDelivered
		if m.Kind == KindRead.String() {
			state = StateRead
		}
		// The receipt's effects and its seen record in one commit. A ref
		// that cannot be applied is skipped (advanceState writes last, so
		// a failure leaves nothing of it) and the receipt acked anyway.
		var events []UIEvent
		committed := false
		c.ackWith(func(tx *bolt.Tx) error {
			tx.OnCommit(func() { committed = true })
			events = events[:0]
			for _, ref := range m.Refs {
				rid, err := hex.DecodeString(ref)
				if err != nil {
					continue
				}
				if conv, changed, err := e.home.advanceState(tx, rid, state, "", m.From); err == nil && changed {
					events = append(events, UIEvent{Type: UIState, Conversation: conv, ID: ref, State: state})
				}
			}
			return nil
		}, m)
		if committed {
			for _, ev := range events {
				e.emit(ev)
			}
		}
		return
	}
	conv := m.From
	if m.Kind == "system" {
		conv = SystemConversation
	}
	rec := &historyRecord{ID: id, From: m.From, Kind: m.Kind, Text: m.Text, Time: m.SentAt.UnixMilli()}
	var entry HistoryEntry
	// The history entry and the seen record in one commit: the message is
	// kept and acked together, or neither and it comes again. Once kept it
	// is shown, even if the ack itself could not go out (the connection
	// ended): its redelivery is then acked as seen, not shown again.
	committed := false
	c.ackWith(func(tx *bolt.Tx) error {
		tx.OnCommit(func() { committed = true })
		var err error
		entry, err = e.home.addHistory(tx, conv, rec, true)
		return err
	}, m)
	if !committed {
		return
	}
	e.emit(UIEvent{Type: UIMessage, Conversation: conv, Entry: &entry})
	if m.IdentityChanged {
		e.emit(UIEvent{Type: UIIdentityChanged, Conversation: m.From})
	}
	if m.Kind == KindText.String() {
		e.queueReceipt(m.From, KindDelivered, [][]byte{id})
	}
}

// SystemConversation holds the server's signed broadcasts; it is no user
// name, so nothing can be sent to it.
const SystemConversation = "*server*"

// Send queues text for user and returns its history entry at once.
func (e *Engine) Send(to, text string) (*HistoryEntry, error) {
	to, err := transport.CanonicalUser(to)
	if err != nil {
		return nil, err
	}
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil, errors.New("message is empty")
	}
	if len(text) > MaxTextLen {
		return nil, fmt.Errorf("message is too long: %d bytes, the limit is %d", len(text), MaxTextLen)
	}
	if err := e.checkContact(to); err != nil {
		return nil, err
	}
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(e.opts.Rand, id); err != nil {
		return nil, err
	}
	now := e.opts.Now()
	content := &Content{Kind: KindText, Text: text, SentAt: now.UnixMilli()}
	rec := &historyRecord{ID: id, From: e.prof.User, Outgoing: true, Kind: "text", Text: text, Time: now.UnixMilli(), State: uint32(StateSending)}
	var entry HistoryEntry
	err = e.home.update(func(tx *bolt.Tx) error {
		var err error
		if entry, err = e.home.addHistory(tx, to, rec, false); err != nil {
			return err
		}
		return e.putPending(tx, &pendingEntry{ID: id, To: to, Content: transport.Marshal(content), History: true})
	})
	if err != nil {
		return nil, err
	}
	e.poke()
	return &entry, nil
}

// checkContact refuses to queue for a contact whose identity changed.
func (e *Engine) checkContact(to string) error {
	var ct contact
	var ok bool
	err := e.home.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = e.home.getRecord(tx, bucketContacts, []byte(to), &ct)
		return err
	})
	if err != nil {
		return err
	}
	if ok && ct.Pending != nil {
		return &IdentityChangedError{User: to}
	}
	return nil
}

func (e *Engine) putPending(tx *bolt.Tx, p *pendingEntry) error {
	b := tx.Bucket(bucketPending)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return e.home.put(tx, bucketPending, u64key(seq), transport.Marshal(p))
}

func u64key(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func (e *Engine) queueReceipt(to string, kind ContentKind, refs [][]byte) {
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(e.opts.Rand, id); err != nil {
		return
	}
	content := &Content{Kind: kind, SentAt: e.opts.Now().UnixMilli(), Refs: refs}
	err := e.home.update(func(tx *bolt.Tx) error {
		return e.putPending(tx, &pendingEntry{ID: id, To: to, Content: transport.Marshal(content)})
	})
	if err == nil {
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
		for e.sendNext(c) {
		}
	}
}

// sendNext sends the oldest queued message; false when the queue is empty
// or the connection failed.
func (e *Engine) sendNext(c *Client) bool {
	var key []byte
	var p pendingEntry
	err := e.home.db.View(func(tx *bolt.Tx) error {
		k, sealed := tx.Bucket(bucketPending).Cursor().First()
		if k == nil {
			return nil
		}
		v, err := e.home.seal.open(bucketPending, k, sealed)
		if err != nil {
			return err
		}
		key = append([]byte(nil), k...)
		return transport.Unmarshal(v, &p)
	})
	if err != nil || key == nil {
		return false
	}
	var content Content
	err = transport.Unmarshal(p.Content, &content)
	if err == nil {
		_, err = c.SendContent(e.ctx, p.ID, p.To, &content)
	}
	var ue *UnconfirmedError
	var ce *ConnError
	if errors.As(err, &ue) || errors.As(err, &ce) || e.ctx.Err() != nil {
		return false // stays queued; sent again after reconnecting
	}
	state, errText := StateStored, ""
	if err != nil {
		state, errText = StateFailed, err.Error()
	}
	var conv string
	var changed bool
	e.home.update(func(tx *bolt.Tx) error {
		if p.History {
			conv, changed, _ = e.home.advanceState(tx, p.ID, state, errText, "")
		}
		return tx.Bucket(bucketPending).Delete(key)
	})
	if changed {
		e.emit(UIEvent{Type: UIState, Conversation: conv, ID: hex.EncodeToString(p.ID), State: state, Err: err})
	}
	var ic *IdentityChangedError
	if errors.As(err, &ic) {
		e.emit(UIEvent{Type: UIIdentityChanged, Conversation: ic.User})
	}
	return true
}

// Typing sends an ephemeral typing signal to user (docs/design.md §4: never stored).
func (e *Engine) Typing(to string) {
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
		online, err := c.SendSignal(ctx, to, &Content{Kind: KindTyping, SentAt: e.opts.Now().UnixMilli()})
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
// what it received since the last time.
func (e *Engine) MarkRead(conv string) error {
	e.touch()
	entries, err := e.home.History(conv, "", 200)
	if err != nil {
		return err
	}
	var unread int
	for _, c := range must(e.home.Conversations()) {
		if c.Name == conv {
			unread = c.Unread
		}
	}
	if unread == 0 {
		return nil
	}
	if err := e.home.markRead(conv); err != nil {
		return err
	}
	e.mu.Lock()
	receipts := e.sendReceipts
	e.mu.Unlock()
	if !receipts {
		return nil
	}
	var refs [][]byte
	for i := len(entries) - 1; i >= 0 && len(refs) < unread; i-- {
		if !entries[i].Outgoing && entries[i].Kind == "text" {
			id, _ := hex.DecodeString(entries[i].ID)
			refs = append(refs, id)
		}
	}
	if len(refs) > 0 {
		e.queueReceipt(conv, KindRead, refs)
	}
	return nil
}

func must[T any](v T, _ error) T { return v }

// Conversations lists the conversations, most recent first.
func (e *Engine) Conversations() ([]Conversation, error) { return e.home.Conversations() }

// History returns a conversation's entries; see Home.History.
func (e *Engine) History(conv, before string, limit int) ([]HistoryEntry, error) {
	return e.home.History(conv, before, limit)
}

// SafetyNumber returns the safety number with user; it needs the
// connection the first time user is met.
func (e *Engine) SafetyNumber(user string) (SafetyInfo, error) {
	c := e.client()
	if c == nil {
		return SafetyInfo{}, errors.New("not connected")
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	return c.SafetyNumber(ctx, user)
}

// Trust accepts user's changed identity key.
func (e *Engine) Trust(user string) error { return e.home.Trust(user) }

// Verify marks user's identity key verified.
func (e *Engine) Verify(user string) error { return e.home.Verify(user) }

// SetSendTyping turns outgoing typing signals on or off; the setting is
// kept in the home.
func (e *Engine) SetSendTyping(on bool) {
	e.mu.Lock()
	e.sendTyping = on
	typing, receipts := e.sendTyping, e.sendReceipts
	e.mu.Unlock()
	e.home.saveSettings(typing, receipts)
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
	e.sendReceipts = on
	typing, receipts := e.sendTyping, e.sendReceipts
	e.mu.Unlock()
	e.home.saveSettings(typing, receipts)
}
