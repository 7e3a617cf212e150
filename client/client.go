// Package client is the securechat client (docs/design.md §6): the
// connection to the server (this file), the session layer that encrypts
// and decrypts (session.go) over the sealed home (client/home), and the
// Engine, the one facade front ends use (engine.go): it registers and
// authenticates devices, sends and receives messages, and reports to front
// ends (the scriptable commands, the terminal UI) through an event stream.
// It never calls a front end.
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// EventType says what an Event reports.
type EventType int

const (
	EventMessage    EventType = 1 // Message arrived
	EventQueueEmpty EventType = 2 // the server pushed all it had queued
	EventClosed     EventType = 3 // the connection ended; Err says why
	EventSignal     EventType = 4 // an ephemeral Message (typing); not to be acked
)

// Event is what the engine tells front ends.
type Event struct {
	Type    EventType
	Message *Message
	Err     error
}

// Options configure a Client. Zero values are defaults.
type Options struct {
	// Receive asks the server to push this device's mailbox.
	Receive bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// LocalAddr is the local UDP address to connect from ("" for any).
	LocalAddr string
	// HandshakeTimeout bounds the handshake's wait for a silent server
	// (transport.DialOptions); 0 means transport.ClientHandshakeTimeout.
	// One-shot commands use transport.QuickHandshakeTimeout, so that a
	// server that is down is reported in about that time.
	HandshakeTimeout time.Duration
	// RequestTimeout, if not zero, bounds the wait for the answer to each
	// request: a server that does not answer in time is taken as gone
	// and the connection is closed, so that its user connects again
	// instead of waiting for QUIC's idle timeout.
	RequestTimeout time.Duration
}

// Client is an authenticated connection of the home's device.
type Client struct {
	home     *home.Home
	sessions SessionStore // the home, as the session layer sees it
	prof     *home.Profile
	conn     *transport.Conn
	now      func() time.Time
	rand     io.Reader

	requestTimeout time.Duration // Options.RequestTimeout

	mu      sync.Mutex // guards pending, nextID, err
	pending map[uint32]chan transport.Frame
	nextID  uint32
	err     error // why the connection ended

	events chan Event
	done   chan struct{} // closed when the read loop ends
	// inbox holds the pushes (deliveries, signals) the read loop took
	// off the connection, for dispatch to handle in order. Handling a
	// push waits for cryptoMu, which a request (a key fetch, a key
	// upload) may hold until its answer arrives: the read loop must go on
	// reading answers meanwhile, so it never handles pushes itself.
	inbox *frameQueue

	devMu   sync.Mutex // guards devices, devKeys and devGen
	devices map[string][]chat.Device
	devKeys map[chat.Device][]byte // each listed device's Ed25519 device key
	devGen  uint64                 // counts changes of devices and devKeys
	// signedLists are the accounts' signed device lists as the server last
	// gave them with their devices (devicelists.go); verified, the
	// accepted ones are in verified.
	signedLists map[string][]byte
	verified    map[string]*verifiedList
	unlinked    map[string][]uint32 // devices an account has that published no keys (not linked)

	memoMu    sync.Mutex                  // guards groupMemo
	groupMemo map[string]*groupRecipients // per group id (senderkeys.go)

	keysErr error // why publishing this device's keys failed at connect, if it did

	cryptoMu sync.Mutex // serialises session and prekey use and their storage
	groupMu  sync.Mutex // one group change at a time (groups.go)
	senderMu sync.Mutex // one use of this device's sending chains at a time (senderkeys.go)
	// queuedCatchUp: receiveGroup queued a group's log for members added
	// at the same time as a change of this account's (groups.go).
	queuedCatchUp atomic.Bool
	groupMu2      sync.Mutex                 // guards once, onceOrder, asksBy
	once          [onceKinds]map[string]bool // asked or answered once on this connection (groups.go, askOnce)
	onceOrder     [onceKinds][]string
	asksBy        map[string]int
	// waiting are group messages whose sender's key has not arrived
	// (senderkeys.go); only the dispatch goroutine touches them.
	waiting []*transport.Deliver
	// welcomed are the groups whose whole log came on this connection
	// (a new member's); only the dispatch goroutine touches it.
	welcomed map[string]bool
	keys     *e2ee.DeviceKeys // nil for a device not linked to the account identity

	// linkApproved takes the LinkApproved push of a new device's waiting
	// connection (link.go).
	linkApproved chan transport.LinkApproved
}

// dial connects to server and starts the read loop.
func dial(ctx context.Context, h *home.Home, server string, pin *transport.Pinner, opts Options) (*Client, error) {
	conn, err := transport.DialWith(ctx, server, pin, transport.DialOptions{Local: opts.LocalAddr, HandshakeTimeout: opts.HandshakeTimeout})
	if err != nil {
		return nil, err
	}
	c := &Client{
		home:           h,
		sessions:       h,
		conn:           conn,
		now:            opts.Now,
		requestTimeout: opts.RequestTimeout,
		rand:           opts.Rand,
		pending:        make(map[uint32]chan transport.Frame),
		events:         make(chan Event, 256),
		done:           make(chan struct{}),
		devices:        make(map[string][]chat.Device),
		devKeys:        make(map[chat.Device][]byte),
		inbox:          newFrameQueue(),
		linkApproved:   make(chan transport.LinkApproved, 1),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	go c.readLoop()
	go c.dispatch()
	return c, nil
}

// Connect authenticates the home's device to its server (protocol.md §5.2).
func Connect(ctx context.Context, h *home.Home, opts Options) (*Client, error) {
	prof, err := h.Profile()
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx, h, prof.Server, &transport.Pinner{Pin: prof.Fingerprint}, opts)
	if err != nil {
		return nil, err
	}
	c.prof = prof
	if err := c.loadKeys(); err != nil {
		c.Close()
		return nil, err
	}
	exporter, err := c.conn.Exporter()
	if err != nil {
		c.Close()
		return nil, err
	}
	req := &transport.Auth{
		User:      prof.User,
		Device:    prof.Device,
		Signature: ed25519.Sign(prof.DeviceKey, transport.AuthTranscript(transport.CodeAuth, exporter, prof.User, prof.Device)),
		Receive:   opts.Receive,
	}
	var w transport.Welcome
	if err := c.request(ctx, transport.CodeAuth, req, transport.CodeWelcome, &w); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.maintainKeys(ctx, w.Keys); err != nil {
		// Not fatal: what is queued can still be read. But the front end
		// must say so: a refusal can mean the account's identity key on the
		// server is not this device's.
		c.keysErr = fmt.Errorf("the server refused this device's keys: %w", err)
	} else if err := c.ensureDeviceList(ctx); err != nil && c.keysErr == nil {
		// An account from before device lists gets its first here
		// (protocol.md §5.4); tried again at the next connection.
		c.keysErr = fmt.Errorf("the account's device list could not be published: %w", err)
	}
	return c, nil
}

// EnrollOptions are the inputs of Register and Login.
type EnrollOptions struct {
	Server     string
	User       string
	Password   string
	Pin        transport.Fingerprint // zero: trust on first use
	Invite     string
	DeviceName string
	Rand       io.Reader
}

// Register creates an account with this home as its first device; Login
// adds this home as a new device of an existing account. Both store the
// profile in home and return it; Profile.Fingerprint is the server key that
// is now pinned.
func Register(ctx context.Context, h *home.Home, o EnrollOptions) (*home.Profile, error) {
	return enroll(ctx, h, transport.CodeRegister, o)
}

// Login: see Register.
func Login(ctx context.Context, h *home.Home, o EnrollOptions) (*home.Profile, error) {
	return enroll(ctx, h, transport.CodeLogin, o)
}

func enroll(ctx context.Context, h *home.Home, code transport.Code, o EnrollOptions) (*home.Profile, error) {
	if p, err := h.Profile(); err == nil {
		return nil, fmt.Errorf("%s already holds the account %s (device %d): use another --home", h.Dir, p.User, p.Device)
	} else if !errors.Is(err, home.ErrNotRegistered) {
		return nil, err
	}
	user, err := transport.CanonicalUser(o.User)
	if err != nil {
		return nil, err
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	pub, priv, err := ed25519.GenerateKey(o.Rand)
	if err != nil {
		return nil, err
	}
	pin := &transport.Pinner{Pin: o.Pin}
	c, err := dial(ctx, h, o.Server, pin, Options{Rand: o.Rand, HandshakeTimeout: transport.QuickHandshakeTimeout})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	exporter, err := c.conn.Exporter()
	if err != nil {
		return nil, err
	}
	req := &transport.Enroll{
		User:       user,
		Password:   o.Password,
		DeviceKey:  pub,
		Signature:  ed25519.Sign(priv, transport.AuthTranscript(code, exporter, user, 0)),
		Invite:     o.Invite,
		DeviceName: o.DeviceName,
	}
	var w transport.Welcome
	if err := c.request(ctx, code, req, transport.CodeWelcome, &w); err != nil {
		return nil, err
	}
	prof := &home.Profile{Server: o.Server, Fingerprint: pin.Seen(), User: w.User, Device: w.Device, DeviceKey: priv}
	if code == transport.CodeRegister {
		// The first device makes the account identity (docs/design.md §3). Devices
		// added with login get theirs by linking (multi-device).
		keys, err := newDeviceKeys(o, w.User, w.Device, pub, time.Now())
		if err != nil {
			return nil, err
		}
		if prof.Keys, err = keys.MarshalBinary(); err != nil {
			return nil, err
		}
		c.keys, c.prof = keys, prof
	}
	if err := h.SaveProfile(prof); err != nil {
		return nil, fmt.Errorf("account created on the server but not saved in %s: %w", h.Dir, err)
	}
	if c.keys != nil {
		if err := c.maintainKeys(ctx, transport.KeyCount{}); err != nil {
			return prof, fmt.Errorf("registered, but publishing the device's keys failed (they are published at the next connection): %w", err)
		}
		// The account's first signed device list names this device
		// (protocol.md §5.4), right after the identity it verifies under.
		if err := c.publishFirstList(ctx); err != nil {
			return prof, fmt.Errorf("registered, but publishing the account's device list failed (it is published at the next connection): %w", err)
		}
	}
	return prof, nil
}

// KeysError reports why this device's keys could not be published or topped
// up when it connected; nil if all went well.
func (c *Client) KeysError() error { return c.keysErr }

// Profile is the identity this client authenticated as.
func (c *Client) Profile() *home.Profile { return c.prof }

// Events delivers pushes and the end of the connection; it is closed after
// the EventClosed event.
func (c *Client) Events() <-chan Event { return c.events }

// Close ends the connection. It first makes one round trip, so that acks
// written before it are read by the server rather than lost with the
// connection.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c.request(ctx, transport.CodePing, &transport.Empty{}, transport.CodeOK, &transport.Empty{})
	cancel()
	c.conn.Close(transport.CloseNormal, "")
	<-c.done
	return nil
}

// ConnError reports that the connection failed while a request was
// outstanding: its outcome is unknown.
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// request sends a request and decodes the response of code want into resp.
// A server Error response is returned as *transport.Error.
func (c *Client) request(ctx context.Context, code transport.Code, body transport.Marshaler, want transport.Code, resp transport.Unmarshaler) error {
	ch := make(chan transport.Frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return &ConnError{err}
	}
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.conn.WriteFrame(code, id, body); err != nil {
		return &ConnError{c.closedErr(err)}
	}
	var timeout <-chan time.Time
	if c.requestTimeout > 0 {
		t := time.NewTimer(c.requestTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return &ConnError{c.closedErr(nil)}
		}
		switch f.Code {
		case want:
			if err := transport.Unmarshal(f.Body, resp); err != nil {
				return fmt.Errorf("server sent a malformed %s: %w", want, err)
			}
			return nil
		case transport.CodeError:
			var e transport.Error
			if err := transport.Unmarshal(f.Body, &e); err != nil {
				return fmt.Errorf("server sent a malformed error: %w", err)
			}
			localTimes(&e, c.now())
			return &e
		default:
			return fmt.Errorf("server answered %s with %s", code, f.Code)
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout:
		// No answer: the connection is as good as lost (the request's
		// outcome is unknown, as when it breaks).
		c.conn.Close(transport.CloseNormal, "")
		return &ConnError{fmt.Errorf("the server did not answer %s within %v", code, c.requestTimeout)}
	}
}

// localTimes rewrites the time in a server's error in this client's time
// zone (now's: the client's clock gives local time), where the error says
// it (protocol.md §4.1): the end of a mute.
func localTimes(e *transport.Error, now time.Time) {
	if e.Code == transport.ErrMuted && e.RetryAfterMS > 0 {
		until := now.Add(time.Duration(e.RetryAfterMS) * time.Millisecond).Round(time.Second)
		e.Message = "you are muted on this server until " + until.Format(chat.TimeLayout)
	}
}

func (c *Client) closedErr(fallback error) error {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return fallback
}

func (c *Client) readLoop() {
	var err error
	for {
		var f transport.Frame
		f, err = c.conn.ReadFrame()
		if err != nil {
			break
		}
		if f.ID != 0 {
			c.mu.Lock()
			ch := c.pending[f.ID]
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			continue
		}
		switch f.Code {
		case transport.CodeDeliver, transport.CodeSignal, transport.CodeQueueEmpty:
			c.inbox.push(f)
		case transport.CodeKeysLow:
			var kc transport.KeyCount
			if transport.Unmarshal(f.Body, &kc) == nil {
				go c.maintainKeys(context.Background(), kc) // not on the read loop: it makes a request
			}
		case transport.CodeError:
			var e transport.Error
			if transport.Unmarshal(f.Body, &e) == nil {
				err = &e
			}
		case transport.CodeLinkApproved:
			var a transport.LinkApproved
			if transport.Unmarshal(f.Body, &a) == nil {
				select {
				case c.linkApproved <- a:
				default: // one approval per link; another is not the server's to send
				}
			}
		}
	}
	err = describeClose(err)
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
	c.inbox.close() // dispatch handles what was read, then reports the end
}

// dispatch handles the pushes in the order they arrived, then, once the
// read loop has ended, sends EventClosed and closes the event stream.
func (c *Client) dispatch() {
	for {
		f, ok := c.inbox.pop()
		if !ok {
			break
		}
		switch f.Code {
		case transport.CodeDeliver:
			c.handleDeliver(f.Body)
		case transport.CodeSignal:
			c.handleSignal(f.Body)
		case transport.CodeQueueEmpty:
			c.events <- Event{Type: EventQueueEmpty}
		}
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	c.events <- Event{Type: EventClosed, Err: err}
	close(c.events)
}

// frameQueue is an unbounded FIFO of frames between the read loop and
// dispatch: the read loop never waits for the handling of a push. The
// server sends no more than a device's mailbox holds.
type frameQueue struct {
	mu     sync.Mutex // guards frames and closed
	frames []transport.Frame
	closed bool
	wake   chan struct{} // a pop may be waiting
}

func newFrameQueue() *frameQueue { return &frameQueue{wake: make(chan struct{}, 1)} }

func (q *frameQueue) push(f transport.Frame) {
	q.mu.Lock()
	q.frames = append(q.frames, f)
	q.mu.Unlock()
	q.notify()
}

// close lets pop return false once the frames pushed before are popped.
func (q *frameQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notify()
}

func (q *frameQueue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop waits for the next frame; false once the queue is closed and empty.
func (q *frameQueue) pop() (transport.Frame, bool) {
	for {
		q.mu.Lock()
		if len(q.frames) > 0 {
			f := q.frames[0]
			q.frames[0] = transport.Frame{}
			q.frames = q.frames[1:]
			if len(q.frames) == 0 {
				q.frames = nil // let the backing array go
			}
			q.mu.Unlock()
			return f, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return transport.Frame{}, false
		}
		<-q.wake
	}
}

// ServerClosedError is the server closing the connection, with its code
// (protocol.md §2.3) and reason.
type ServerClosedError struct {
	Code   quic.ApplicationErrorCode
	Reason string
}

func (e *ServerClosedError) Error() string {
	if e.Code == transport.CloseNormal || e.Reason == "" {
		return "server closed the connection"
	}
	return "server closed the connection: " + e.Reason
}

func describeClose(err error) error {
	var ce *transport.ClosedError
	if errors.As(err, &ce) {
		return &ServerClosedError{Code: ce.Code, Reason: ce.Reason}
	}
	if errors.Is(err, io.EOF) {
		return errors.New("server closed the connection")
	}
	if errors.Is(err, transport.ErrIdleTimeout) {
		return errors.New("connection lost: the server stopped answering")
	}
	if err == nil {
		return errors.New("connection closed")
	}
	return fmt.Errorf("connection lost: %w", err)
}

func (c *Client) handleDeliver(body []byte) {
	var d transport.Deliver
	if err := transport.Unmarshal(body, &d); err != nil {
		return // nothing to ack it by; the server resends it next time
	}
	c.handleDeliverMsg(&d, false)
}

// handleDeliverMsg hands on one delivered entry, decrypted. keyCame: a
// held group message tried again after its chain came (retryWaiting).
func (c *Client) handleDeliverMsg(dp *transport.Deliver, keyCame bool) {
	d := *dp
	from := chat.Device{User: d.From, ID: d.FromDevice}
	if c.home.WasSeen(home.MessageKey{From: from, ID: d.MessageID}) {
		c.sendAck(d.Seq) // a redelivery of something already handed on
		return
	}
	m := &Message{
		Seq:          d.Seq,
		ID:           hex.EncodeToString(d.MessageID),
		From:         from,
		Conversation: chat.Peer(d.From),
		ServerTime:   time.UnixMilli(d.ServerTime),
		rawID:        d.MessageID,
	}
	if d.Shared != nil {
		c.handleGroupDeliver(dp, m, keyCame)
		return
	}
	if len(d.Payload) > 0 && d.Payload[0] == payloadNotice {
		text, ms, err := openNotice(d.Payload, c.prof.Fingerprint)
		m.Conversation = SystemConversation
		m.Kind, m.Text, m.SentAt = chat.KindSystem, text, time.UnixMilli(ms)
		if err != nil {
			m.Kind, m.Text, m.SentAt = chat.KindError, "server notice rejected: "+err.Error(), m.ServerTime
		}
		c.events <- Event{Type: EventMessage, Message: m}
		return
	}
	content, changed, err := c.decrypt(&d, false)
	if err != nil {
		m.Kind, m.Text, m.SentAt = chat.KindError, undecryptable(err), m.ServerTime
	} else {
		m.Kind, m.Text, m.Group, m.SentAt = content.Kind, content.Text, content.Group, time.UnixMilli(content.SentAt)
		m.IdentityChanged = changed
		m.settingsOff = content.SettingsOff
		m.setFile(content.File)
		for _, r := range content.Refs {
			m.Refs = append(m.Refs, hex.EncodeToString(r))
		}
		if d.From == c.prof.User && !content.Conversation.IsZero() {
			// A copy of what this account's other device sent (the
			// fan-out rule): it belongs where that device sent it.
			m.Conversation, m.Outgoing = content.Conversation, true
		}
		switch {
		case content.Group == "":
		case !validGroupID(content.Group):
			m.Kind, m.Text = chat.KindError, "a message names a group that cannot exist"
		case sharedKind(content.Kind):
			// Group texts and files travel only under sender keys (protocol.md §8.3).
			m.Conversation = chat.Group(content.Group)
			m.Kind, m.Text = chat.KindError, fmt.Sprintf("a group message from %s came over a pairwise session: not shown", d.From)
		default:
			// A group's content belongs to the group, whoever it was
			// sent to (a new member gets the group's log on its own).
			m.Conversation = chat.Group(content.Group)
			m.groupChanges, m.groupLog, m.groupHeads = content.GroupChanges, content.GroupLog, content.GroupHeads
			if content.Kind == chat.KindGroupChange && content.GroupLog != nil && !changed && c.plausibleWelcome(from.User, content) {
				if c.welcomed == nil {
					c.welcomed = make(map[string]bool)
				}
				if len(c.welcomed) < maxWaiting {
					c.welcomed[content.Group] = true
				}
			}
		}
		if m.Kind == chat.KindSenderKey && len(content.SenderKey) == 0 {
			// A member device that lacks this device's chain asks for it:
			// answered at once (protocol.md §8.3). A copy of this
			// account's own request to someone else is not one.
			if !changed && !m.Outgoing {
				c.noteKeyRequest(content.Group, from)
			}
		} else if m.Kind == chat.KindSenderKey {
			if changed {
				m.Kind, m.Text = chat.KindError, fmt.Sprintf("a group key from %s was not kept: %s's identity key changed", d.From, d.From)
			} else if chain, err := c.applySenderKey(from, content); err != nil {
				m.Conversation = chat.Peer(d.From) // no group is made up for it
				m.Kind, m.Text = chat.KindError, fmt.Sprintf("a group key from %s was not kept: %v", d.From, err)
			} else {
				defer c.retryWaiting(content.Group, from, chain)
			}
		}
	}
	c.events <- Event{Type: EventMessage, Message: m}
}

// handleSignal decrypts an ephemeral envelope (protocol.md §6.5).
func (c *Client) handleSignal(body []byte) {
	var sig transport.Signal
	if transport.Unmarshal(body, &sig) != nil {
		return
	}
	if sig.Shared != nil {
		if m, ok := c.openGroupSignal(&sig); ok {
			c.events <- Event{Type: EventSignal, Message: m}
		}
		return
	}
	d := transport.Deliver(sig)
	content, changed, err := c.decrypt(&d, true)
	if err != nil || changed {
		// A lost or garbled signal matters to no one; one with an
		// identity key not accepted for its sender is not believed.
		return
	}
	m := &Message{
		ID: hex.EncodeToString(sig.MessageID), From: chat.Device{User: sig.From, ID: sig.FromDevice}, Conversation: chat.Peer(sig.From),
		Kind: content.Kind, SentAt: time.UnixMilli(content.SentAt), ServerTime: time.UnixMilli(sig.ServerTime),
	}
	if sig.From == c.prof.User && !content.Conversation.IsZero() {
		m.Conversation, m.Outgoing = content.Conversation, true
	}
	c.events <- Event{Type: EventSignal, Message: m}
}

// Ack records msgs as handed on and tells the server to delete them. Call
// it once the front end has kept them (printed, stored in history).
func (c *Client) Ack(msgs ...*Message) error {
	_, err := c.ackWith(nil, msgs...)
	return err
}

// ackWith is Ack with keep, if not nil, run first in the transaction that
// records msgs as seen: the front end's own record of them (the engine's
// history) and the ack commit together. committed reports whether that
// transaction committed, even if sending the ack then failed.
func (c *Client) ackWith(keep func(*home.Tx) error, msgs ...*Message) (committed bool, err error) {
	if len(msgs) == 0 {
		return false, nil
	}
	keys := make([]home.MessageKey, len(msgs))
	for i, m := range msgs {
		keys[i] = m.key()
	}
	if err := c.home.MarkSeen(keys, c.now(), keep); err != nil {
		return false, err
	}
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	return true, c.sendAck(seqs...)
}

func (c *Client) sendAck(seqs ...uint64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), transport.MaxAcks)
		if err := c.conn.WriteFrame(transport.CodeAck, 0, &transport.Ack{Seqs: seqs[:n]}); err != nil {
			return err
		}
		seqs = seqs[n:]
	}
	return nil
}

// ProbeServer connects to server without authenticating and returns the
// fingerprint of the key it presents, for a person to confirm before
// registering (trust on first use, shown).
func ProbeServer(ctx context.Context, server string) (transport.Fingerprint, error) {
	pin := &transport.Pinner{}
	conn, err := transport.DialWith(ctx, server, pin, transport.DialOptions{HandshakeTimeout: transport.QuickHandshakeTimeout})
	if err != nil {
		return transport.Fingerprint{}, err
	}
	conn.Close(transport.CloseNormal, "")
	return pin.Seen(), nil
}

// CheckName asks server, whose key must be pin, whether user is free to
// register, before a person types a password for it (protocol.md §5.1).
// Free, it returns what the server said: NameFree.Invite when a Register
// needs an invite code there. Otherwise the error is a *transport.Error:
// ErrUserExists, ErrInvalidName, ErrRegClosed, or ErrRateLimited when the
// address asked about too many names.
func CheckName(ctx context.Context, server string, pin transport.Fingerprint, user string) (transport.NameFree, error) {
	var free transport.NameFree
	c, err := dial(ctx, nil, server, &transport.Pinner{Pin: pin}, Options{HandshakeTimeout: transport.QuickHandshakeTimeout})
	if err != nil {
		return free, err
	}
	defer c.Close()
	err = c.request(ctx, transport.CodeCheckName, &transport.DevicesRequest{User: user}, transport.CodeNameFree, &free)
	return free, err
}

// undecryptable is the text shown for a message that did not decrypt.
func undecryptable(err error) string {
	const msg = "message could not be decrypted"
	why := strings.TrimPrefix(err.Error(), "e2ee: ")
	if why == msg {
		return msg
	}
	return msg + ": " + why
}
