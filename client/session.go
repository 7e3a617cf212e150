package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// The session layer (docs/design.md §6.1, docs/protocol.md §9): one Double
// Ratchet session per pair of devices, started with PQXDH from a prekey
// bundle the server hands out, and sender-key state per group. It keeps
// its state behind SessionStore. Sending (encryptTo) and receiving
// (decrypt) are written as named steps over a state value, the way
// crypto/tls writes its handshake.

// SessionStore is where the session layer keeps its state; client/home's
// Home implements it. Reads see what is deferred; SaveSessions commits all
// its changes or none.
type SessionStore interface {
	// LoadSessions reads the sessions with devs and their users' contacts.
	LoadSessions(devs []chat.Device) (*home.SessionState, error)
	// LoadIncoming reads what decrypting message id from a device needs:
	// its kept plaintext if it was decrypted before (id nil: none is
	// looked for), the session with the device, the sender's contact.
	LoadIncoming(from chat.Device, id []byte) (*home.SessionState, error)
	// SaveSessions stores one step's changes in one commit.
	SaveSessions(*home.SessionChanges) error
	// DeferSessions keeps an advanced session and a received message
	// (nil: none) until the next commit (client/home/later.go).
	DeferSessions(s *home.Session, k home.MessageKey, r *home.Received)
	// Contact and SaveContact read and store what is known of an account.
	Contact(user string) (*home.Contact, error)
	SaveContact(user string, c *home.Contact) error
	// SenderKey and SaveSenderKey keep the sender-key state (e2ee
	// encoding) of one device's chain in a group; owner is this device
	// for its own sending chain.
	SenderKey(group chat.Conversation, owner chat.Device) ([]byte, error)
	SaveSenderKey(group chat.Conversation, owner chat.Device, state []byte) error
	// BaseKeyUsed reports whether an initial message with this signed
	// prekey and base key was answered before without a one-time prekey
	// (SessionChanges.BaseKey remembers one); PruneBaseKeys forgets those
	// of signed prekeys no longer held.
	BaseKeyUsed(u home.BaseKeyUse) (bool, error)
	PruneBaseKeys(held func(signedPreKey uint32) bool) error
}

var _ SessionStore = (*home.Home)(nil)

// ErrNotLinked is returned when this device has no end-to-end keys.
var ErrNotLinked = errors.New("this device has no end-to-end keys: it was added with login and is not yet linked to the account's identity, so it cannot send or receive messages")

// IdentityChangedError blocks sending to a contact whose account identity
// key differs from the one this home trusts (docs/design.md §3).
type IdentityChangedError struct {
	User         string
	SafetyNumber string // with the new key
}

func (e *IdentityChangedError) Error() string {
	return fmt.Sprintf("%s's identity key changed, so sending to %s is blocked: compare the new safety number (securechat fingerprint %s) with %s, then accept it with securechat trust %s", e.User, e.User, e.User, e.User, e.User)
}

// fanOut is the fan-out rule (docs/design.md §10), the one place that
// decides who receives: a message to a conversation goes to every device
// of every member and to the sender's own other devices; for a peer
// conversation the members are the peer. devices lists an account's
// devices that can receive. The sending device itself never receives; the
// sender's other devices file their copy as outgoing in its conversation
// (Content.Conversation, protocol.md §8).
func fanOut(self chat.Device, members []string, devices func(user string) ([]chat.Device, error)) ([]chat.Device, error) {
	users := slices.Clone(members)
	if !slices.Contains(users, self.User) {
		users = append(users, self.User)
	}
	var out []chat.Device
	seen := make(map[chat.Device]bool)
	for _, u := range users {
		devs, err := devices(u)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if d != self && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// members are the accounts of a conversation besides this one: the peer,
// or a group's members as its log says (groups.go).
func (c *Client) members(conv chat.Conversation) ([]string, error) {
	if conv.IsGroup() {
		return c.groupMembers(conv)
	}
	return []string{conv.ID()}, nil
}

// encryptState is one encryption in progress: encryptTo's steps share it.
type encryptState struct {
	c       *Client
	ctx     context.Context
	targets []chat.Device
	st      *home.SessionState
	changes home.SessionChanges
	msg     *transport.Send
	// setAside are the sessions setAsideStale left out: kept as the new
	// sessions' earlier ones, so that what the old device sent before it
	// went (its receipts, say) can still be read.
	setAside map[chat.Device]*home.Session
	// vouched are the identity keys this home's groups name their members
	// with (groupVouched), read on first need.
	vouched map[string][][]byte
}

// encryptTo builds one ciphertext per device of targets, starting sessions
// where there are none, and saves the advanced sessions together with the
// outbox entry for the message (entry nil: an ephemeral signal, never
// resent) in one transaction before anything is sent: a crash can then
// never make a message key be used twice.
func (c *Client) encryptTo(ctx context.Context, conv chat.Conversation, targets []chat.Device, content *Content, id []byte, entry *home.OutboxEntry) (*transport.Send, error) {
	plain := plaintexts(c.prof.User, conv, content)
	return c.encryptEachTo(ctx, targets, func(d chat.Device) []byte { return plain(d.User) }, id, entry)
}

// encryptEachTo is encryptTo with each device's plaintext of its own
// (plainFor): a key request's answer gives each device the chain from
// its own position (senderkeys.go).
func (c *Client) encryptEachTo(ctx context.Context, targets []chat.Device, plainFor func(chat.Device) []byte, id []byte, entry *home.OutboxEntry) (*transport.Send, error) {
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	es := &encryptState{c: c, ctx: ctx, targets: targets, msg: &transport.Send{MessageID: id},
		changes: home.SessionChanges{Contacts: make(map[string]*home.Contact)}}
	if err := es.loadSessions(); err != nil {
		return nil, err
	}
	es.setAsideStale()
	if err := es.checkTrusted(); err != nil {
		return nil, err
	}
	if err := es.startMissingSessions(); err != nil {
		return nil, err
	}
	if err := es.encryptEach(plainFor); err != nil {
		return nil, err
	}
	if entry != nil {
		entry.Send = transport.Marshal(es.msg)
		es.changes.Outbox = &home.OutboxItem{ID: id, Entry: entry}
	}
	if err := c.sessions.SaveSessions(&es.changes); err != nil {
		return nil, err
	}
	return es.msg, nil
}

// loadSessions reads the sessions with the targets and their contacts.
func (es *encryptState) loadSessions() error {
	var err error
	es.st, err = es.c.sessions.LoadSessions(es.targets)
	return err
}

// setAsideStale leaves out the retired sessions (made with an identity key
// since replaced by the one the user accepted, home.Trust) and those with
// devices the server lists under another device key than the session's
// peer had: the device was
// re-created, or its account deleted and registered again, and a message
// in the old session would reach a device that cannot decrypt it. Such a
// device is sent to as one never met: its bundle is fetched and its
// identity key checked (verifyBundle), so a new account identity is
// recorded as pending and blocks the send. A session that recorded no
// device key (kept before they were) cannot be matched, so it is set
// aside the same way once. A set-aside session is kept among the new
// session's earlier ones: messages the old device sent before it went
// still decrypt (ratchetDecrypt), without making it current again.
func (es *encryptState) setAsideStale() {
	for _, d := range es.targets {
		s := es.st.Sessions[d]
		if s == nil {
			continue
		}
		listed := es.c.listedKey(d)
		if !s.Retired && (listed == nil || bytes.Equal(s.DeviceKey, listed)) {
			continue
		}
		if es.setAside == nil {
			es.setAside = make(map[chat.Device]*home.Session)
		}
		es.setAside[d] = s
		delete(es.st.Sessions, d)
	}
}

// checkTrusted refuses to send to an account whose identity key changed.
func (es *encryptState) checkTrusted() error {
	for user, ct := range es.st.Contacts {
		if ct.Pending != nil {
			return es.c.identityChanged(user, ct.Pending)
		}
	}
	return nil
}

// startMissingSessions fetches the bundles of the devices without a
// session, verifies them and starts a session with each (PQXDH).
func (es *encryptState) startMissingSessions() error {
	missing := make(map[string][]uint32)
	var users []string
	for _, d := range es.targets {
		if es.st.Sessions[d] == nil {
			if missing[d.User] == nil {
				users = append(users, d.User)
			}
			missing[d.User] = append(missing[d.User], d.ID)
		}
	}
	for _, user := range users {
		var kb transport.KeyBundles
		if err := es.c.request(es.ctx, transport.CodeFetchKeys, &transport.FetchKeys{User: user, Devices: missing[user]}, transport.CodeKeyBundles, &kb); err != nil {
			return err
		}
		for _, b := range kb.Bundles {
			dev := chat.Device{User: user, ID: b.Device}
			bundle, err := es.verifyBundle(dev, b.Bundle)
			if err != nil {
				return err
			}
			s, err := es.initiate(dev, bundle)
			if err != nil {
				return err
			}
			if old := es.setAside[dev]; old != nil {
				*s = old.ReplacedBy(*s)
			}
			es.st.Sessions[dev] = s
		}
	}
	return nil
}

// verifyBundle parses a device's bundle and checks its identity key
// against what this home trusts: trusted on first use, and a different
// one recorded as pending and refused (docs/design.md §3). This account's
// own devices must have this device's identity key.
func (es *encryptState) verifyBundle(dev chat.Device, raw []byte) (*e2ee.PreKeyBundle, error) {
	c := es.c
	bundle, err := e2ee.ParsePreKeyBundle(raw)
	if err != nil {
		return nil, fmt.Errorf("%s's device %d: bad key bundle: %w", dev.User, dev.ID, err)
	}
	if err := bundle.Verify(dev.User, dev.ID); err != nil {
		return nil, fmt.Errorf("%s's device %d: key bundle does not verify: %w", dev.User, dev.ID, err)
	}
	idKey := bundle.IdentityKey.Bytes()
	if dev.User == c.prof.User {
		if !bytes.Equal(idKey, c.keys.IdentityKey().Bytes()) {
			return nil, fmt.Errorf("your device %d has another identity key than this device: not sending to it", dev.ID)
		}
		return bundle, nil
	}
	ct := es.st.Contacts[dev.User]
	switch {
	case ct == nil:
		if vouched := es.groupVouched(dev.User, idKey); vouched != nil {
			// A group this home is in names the user with another key
			// than the server's: neither is taken on trust (protocol.md
			// §8.2); the user compares safety numbers, then trusts.
			ct = &home.Contact{Identity: vouched, Pending: idKey}
			if err := c.sessions.SaveContact(dev.User, ct); err != nil {
				return nil, err
			}
			return nil, c.identityChanged(dev.User, idKey)
		}
		ct = &home.Contact{Identity: idKey} // trust on first use
		es.st.Contacts[dev.User] = ct
		es.changes.Contacts[dev.User] = ct
	case !bytes.Equal(ct.Identity, idKey):
		// A key other than the trusted one: the server (or someone)
		// swapped it. Record it and refuse to send. A key already
		// pending is never replaced: the user may be comparing it.
		if pendingSeen(ct, idKey) {
			if err := c.sessions.SaveContact(dev.User, ct); err != nil {
				return nil, err
			}
		}
		return nil, c.identityChanged(dev.User, ct.Pending)
	}
	if tofu := es.changes.Contacts[dev.User]; tofu != nil {
		// An account met for the first time: its devices are checked
		// against its device list now that its identity key is known
		// (devicelists.go); the list is kept with the contact.
		list, err := c.deviceList(dev.User, tofu.Identity, tofu)
		if err != nil {
			return nil, err
		}
		if list != nil {
			if err := c.inList(list, dev); err != nil {
				return nil, err
			}
		}
	}
	return bundle, nil
}

// groupVouched returns an identity key that a group of this home names
// user with and that is not idKey, the server's; nil when every group that
// names user names idKey, or none does. Groups that disagree among
// themselves always yield one. The groups are read once per encryption.
func (es *encryptState) groupVouched(user string, idKey []byte) []byte {
	if es.vouched == nil {
		es.vouched = make(map[string][][]byte)
		recs, _ := es.c.home.Groups()
		for _, rec := range recs {
			l, err := parseLog(rec)
			if err != nil || rec.Left {
				continue
			}
			for _, m := range l.State().Members {
				k := m.Identity.Bytes()
				if !slices.ContainsFunc(es.vouched[m.User], func(o []byte) bool { return bytes.Equal(o, k) }) {
					es.vouched[m.User] = append(es.vouched[m.User], k)
				}
			}
		}
	}
	for _, k := range es.vouched[user] {
		if !bytes.Equal(k, idKey) {
			return k
		}
	}
	return nil
}

// initiate starts a session with dev from its bundle.
func (es *encryptState) initiate(dev chat.Device, bundle *e2ee.PreKeyBundle) (*home.Session, error) {
	c := es.c
	header, sk, ad, err := e2ee.InitiateSession(c.rand, c.keys, dev.User, dev.ID, bundle)
	if err != nil {
		return nil, fmt.Errorf("%s's device %d: %w", dev.User, dev.ID, err)
	}
	sess, err := e2ee.NewInitiatorSession(c.rand, sk, bundle.SignedPreKey.Key, ad)
	clear(sk)
	if err != nil {
		return nil, err
	}
	hb, err := header.MarshalBinary()
	if err != nil {
		return nil, err
	}
	rb, err := sess.MarshalBinary()
	sess.Zero()
	if err != nil {
		return nil, err
	}
	return &home.Session{User: dev.User, Device: dev.ID, Ratchet: rb, Initial: hb, DeviceKey: bytes.Clone(bundle.Certificate.AuthKey)}, nil
}

// plaintexts returns the encoded content for a device of user: the copy
// for this account's own other devices names the conversation.
func plaintexts(self string, conv chat.Conversation, content *Content) func(user string) []byte {
	plain := transport.Marshal(content)
	var own []byte // made for the first own device, if any
	return func(user string) []byte {
		if user != self || conv == chat.Peer(self) {
			return plain
		}
		if own == nil {
			c := *content
			c.Conversation = conv
			own = transport.Marshal(&c)
		}
		return own
	}
}

// encryptEach encrypts each target's plaintext, in order, and collects the
// advanced sessions.
func (es *encryptState) encryptEach(plainFor func(chat.Device) []byte) error {
	for _, d := range es.targets {
		plain := plainFor(d)
		r := es.st.Sessions[d]
		if r == nil {
			return fmt.Errorf("%s's device %d has no keys on the server", d.User, d.ID)
		}
		sess, err := e2ee.UnmarshalSession(r.Ratchet)
		if err != nil {
			return fmt.Errorf("session with %s's device %d is damaged: %w", d.User, d.ID, err)
		}
		ciphertext, err := sess.Encrypt(es.c.rand, plain)
		if err == nil {
			r.Ratchet, err = sess.MarshalBinary()
		}
		sess.Zero()
		if err != nil {
			return err
		}
		es.changes.Sessions = append(es.changes.Sessions, r)
		es.msg.Envelopes = append(es.msg.Envelopes, transport.Envelope{User: d.User, Device: d.ID, DeviceKey: r.DeviceKey, Payload: encodePayload(r.Initial, ciphertext)})
	}
	return nil
}

func (c *Client) identityChanged(user string, newKey []byte) error {
	e := &IdentityChangedError{User: user}
	if k, err := e2ee.ParseIdentityKey(newKey); err == nil && c.keys != nil {
		e.SafetyNumber = e2ee.SafetyNumber(c.prof.User, c.keys.IdentityKey(), user, k)
	}
	return e
}

// decryptState is one decryption in progress: decrypt's steps share it.
type decryptState struct {
	c         *Client
	from      chat.Device
	key       home.MessageKey
	ephemeral bool

	sr           home.Session // the session record as it will be kept
	haveSession  bool
	ct           *home.Contact
	contactDirty bool
	header       *e2ee.InitialMessageHeader
	ciphertext   []byte
	sess         *e2ee.Session
	consumed     *e2ee.ConsumedPreKeys
	baseKey      *home.BaseKeyUse // an initial message answered without a one-time prekey
	changed      bool             // the sender's identity key is not the trusted one
	earlier      int              // ≥ 0: an earlier session with another device decrypted it (ratchetDecrypt)
	plain        []byte
}

// decrypt opens a delivered payload (protocol.md §9.2). A message already
// decrypted but not yet acked is returned from the home, not decrypted
// again. An ephemeral one (a signal) is not kept.
func (c *Client) decrypt(d *transport.Deliver, ephemeral bool) (content *Content, changed bool, err error) {
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	from := chat.Device{User: d.From, ID: d.FromDevice}
	ds := &decryptState{c: c, from: from, key: home.MessageKey{From: from, ID: d.MessageID}, ephemeral: ephemeral, earlier: -1}
	kept, err := ds.loadSession()
	if err != nil {
		return nil, false, err
	}
	if kept != nil {
		content, err = decodeContent(kept.Content)
		return content, kept.Changed, err
	}
	if c.keys == nil {
		return nil, false, ErrNotLinked
	}
	if err := ds.openEnvelope(d.Payload); err != nil {
		return nil, false, err
	}
	if err := ds.findSession(); err != nil {
		return nil, false, err
	}
	if err := ds.ratchetDecrypt(); err != nil {
		return nil, false, err // the stored states are untouched (Double Ratchet §3.5)
	}
	defer ds.sess.Zero()
	if content, err = decodeContent(ds.plain); err != nil {
		return nil, false, err
	}
	return content, ds.changed, ds.keepPlaintext()
}

// loadSession reads the session with the sender, its contact, and the
// message's kept plaintext, returned if it was decrypted before.
func (ds *decryptState) loadSession() (*home.Received, error) {
	var id []byte
	if !ds.ephemeral {
		id = ds.key.ID
	}
	st, err := ds.c.sessions.LoadIncoming(ds.from, id)
	if err != nil || st.Received != nil {
		return st.Received, err
	}
	if s := st.Sessions[ds.from]; s != nil {
		ds.sr, ds.haveSession = *s, true
	}
	ds.ct = st.Contacts[ds.from.User]
	return nil, nil
}

// openEnvelope splits the payload into its PQXDH header, if any, and its
// ratchet message.
func (ds *decryptState) openEnvelope(payload []byte) error {
	headerBytes, ciphertext, err := parsePayload(payload)
	if err != nil {
		return err
	}
	ds.ciphertext = ciphertext
	if headerBytes != nil {
		ds.header, err = e2ee.ParseInitialMessageHeader(headerBytes)
	}
	return err
}

// findSession picks the session the message belongs to. An initial header
// that started the session we have, or one we had, is a repeat: the
// initiator sends it until we answer. Anything else starts a new session
// (openInitial), and the one we had is kept among the earlier.
func (ds *decryptState) findSession() error {
	h := ds.header
	newHeader := h != nil && !(ds.haveSession && bytes.Equal(ds.sr.BaseKey, h.EphemeralKey.Bytes()))
	earlier := -1
	if newHeader {
		earlier = slices.IndexFunc(ds.sr.Previous, func(p home.Session) bool { return bytes.Equal(p.BaseKey, h.EphemeralKey.Bytes()) })
	}
	var err error
	switch {
	case earlier >= 0:
		ds.sr = ds.sr.Promoted(earlier)
		ds.sess, err = e2ee.UnmarshalSession(ds.sr.Ratchet)
	case newHeader:
		err = ds.openInitial()
	case !ds.haveSession:
		err = errors.New("no session with the sender's device (the message may predate a reset)")
	default:
		ds.sess, err = e2ee.UnmarshalSession(ds.sr.Ratchet)
	}
	return err
}

// openInitial answers a PQXDH initial message: a new session, with the
// one-time prekeys it used to be removed, and the sender's identity key
// checked (verifyIdentity).
func (ds *decryptState) openInitial() error {
	rk, err := e2ee.RespondSession(ds.c.keys, ds.from.User, ds.from.ID, ds.header)
	if err != nil {
		return err
	}
	ds.sess, err = e2ee.NewResponderSession(rk.SK, rk.RatchetKey, rk.AD)
	clear(rk.SK)
	if err != nil {
		return err
	}
	ds.consumed = &rk.Consumed
	next := home.Session{User: ds.from.User, Device: ds.from.ID, BaseKey: ds.header.EphemeralKey.Bytes(), DeviceKey: bytes.Clone(ds.header.Certificate.AuthKey)}
	if ds.haveSession {
		next = ds.sr.ReplacedBy(next)
	}
	ds.sr = next
	if err := ds.verifyIdentity(rk.RemoteIdentity.Bytes()); err != nil {
		return err
	}
	return ds.refuseReplay()
}

// ErrReplayedInitial refuses an initial message answered before.
var ErrReplayedInitial = errors.New("a repeated initial message whose session has ended (a replay): refused")

// refuseReplay refuses an initial message that used no one-time prekey and
// whose base key started an accepted session before: without a one-time
// prekey, nothing else stops a recorded initial message from starting its
// session again once the session has left the window of earlier ones or
// after a reset (protocol.md §9.2). The base key of such a session is
// remembered until its signed prekey is pruned.
//
// A message with a key not accepted for its sender starts no session, so
// it consumes nothing and is remembered nowhere: the sender's later
// messages carry the same header, and must decrypt too (marked unverified),
// also once the key is accepted.
func (ds *decryptState) refuseReplay() error {
	oneTime := ds.consumed.OneTimePreKeyID != 0 || ds.consumed.OneTimeKEMPreKeyID != 0
	if ds.changed {
		ds.consumed = nil
	}
	if oneTime {
		return nil // the one-time prekey is gone once a session is kept: no replay
	}
	u := home.BaseKeyUse{SignedPreKey: ds.header.SignedPreKeyID, BaseKey: ds.header.EphemeralKey.Bytes()}
	used, err := ds.c.sessions.BaseKeyUsed(u)
	if err != nil {
		return err
	}
	if used {
		ds.sess.Zero()
		return ErrReplayedInitial
	}
	if !ds.changed {
		ds.baseKey = &u
	}
	return nil
}

// verifyIdentity compares the identity key a new session came with to
// the one this home trusts: trusted on first use; a different one is
// recorded as pending and marks the message as changed. This account's
// own other devices must have this device's identity key.
func (ds *decryptState) verifyIdentity(idKey []byte) error {
	if ds.from.User == ds.c.prof.User {
		if !bytes.Equal(idKey, ds.c.keys.IdentityKey().Bytes()) {
			return errors.New("a device of this account with another identity key")
		}
		return nil
	}
	switch {
	case ds.ct == nil:
		ds.ct, ds.contactDirty = &home.Contact{Identity: idKey}, true
	case !bytes.Equal(ds.ct.Identity, idKey):
		ds.changed = true
		if pendingSeen(ds.ct, idKey) {
			ds.contactDirty = true
		}
	}
	return nil
}

// pendingSeen records idKey, a key other than ct's trusted one: it becomes
// the pending key if none is, and a different one while another is pending
// is a conflict, never a replacement: the user may be comparing the
// pending key's safety number, and trust accepts only that key. It reports
// whether ct changed.
func pendingSeen(ct *home.Contact, idKey []byte) bool {
	switch {
	case ct.Pending == nil:
		ct.Pending = bytes.Clone(idKey)
		return true
	case bytes.Equal(ct.Pending, idKey) || ct.Conflict:
		return false
	default:
		ct.Conflict = true
		return true
	}
}

// ratchetDecrypt decrypts with the session found. Perhaps the peer sends
// on a session we had before (both sides started one at once): the newest
// earlier session that decrypts it becomes current again.
func (ds *decryptState) ratchetDecrypt() error {
	plain, err := ds.sess.Decrypt(ds.ciphertext)
	if err != nil && ds.header == nil {
		for i, p := range ds.sr.Previous {
			s2, err2 := e2ee.UnmarshalSession(p.Ratchet)
			if err2 != nil {
				continue
			}
			if plain2, err2 := s2.Decrypt(ds.ciphertext); err2 == nil {
				ds.sess.Zero()
				ds.sess, plain, err = s2, plain2, nil
				if p.Retired || p.DeviceKey != nil && ds.sr.DeviceKey != nil && !bytes.Equal(p.DeviceKey, ds.sr.DeviceKey) {
					// A session with the device this number named
					// before (re-created, or its account registered
					// again): read what it sent, never send on it.
					ds.earlier = i
				} else {
					ds.sr = ds.sr.Promoted(i)
				}
				break
			}
			s2.Zero()
		}
	}
	if err != nil {
		ds.sess.Zero()
		return err
	}
	ds.plain = plain
	return nil
}

// keepPlaintext stores the advanced session and the plaintext until the
// ack. A session from an identity this home does not trust (yet) is not
// kept: a forged first message must not displace the real session.
func (ds *decryptState) keepPlaintext() error {
	c := ds.c
	var err error
	if ds.earlier >= 0 {
		// Only the earlier session advanced (ratchetDecrypt).
		ds.sr.Previous = slices.Clone(ds.sr.Previous)
		if ds.sr.Previous[ds.earlier].Ratchet, err = ds.sess.MarshalBinary(); err != nil {
			return err
		}
	} else {
		ds.sr.Initial = nil // the peer answered: the session is confirmed
		if ds.sr.Ratchet, err = ds.sess.MarshalBinary(); err != nil {
			return err
		}
	}
	keepSession := !ds.changed
	var received *home.Received
	if !ds.ephemeral {
		received = &home.Received{Content: ds.plain, Changed: ds.changed, Received: c.now().UnixMilli()}
	}
	if ds.consumed == nil && !ds.contactDirty && keepSession {
		// The common case, a message of a session we have: written with
		// the next write transaction, normally the ack's.
		c.sessions.DeferSessions(&ds.sr, ds.key, received)
		return nil
	}
	ch := &home.SessionChanges{Received: received, ReceivedKey: ds.key, BaseKey: ds.baseKey}
	if ds.consumed != nil {
		c.keys.RemovePreKeys(*ds.consumed)
		p, err := c.profileWithKeys()
		if err != nil {
			return err
		}
		ch.Profile = p
	}
	if ds.contactDirty {
		ch.Contacts = map[string]*home.Contact{ds.from.User: ds.ct}
	}
	if keepSession {
		ch.Sessions = []*home.Session{&ds.sr}
	}
	return c.sessions.SaveSessions(ch)
}

// ownSenderKey returns this device's sending chain in group, making and
// storing a new one the first time (protocol.md §9.6).
func (c *Client) ownSenderKey(group chat.Conversation) (*e2ee.SenderKey, error) {
	self := chat.Device{User: c.prof.User, ID: c.prof.Device}
	b, err := c.sessions.SenderKey(group, self)
	if err != nil {
		return nil, err
	}
	if b != nil {
		return e2ee.UnmarshalSenderKey(b)
	}
	var dist [e2ee.DistributionIDSize]byte
	if _, err := c.rand.Read(dist[:]); err != nil {
		return nil, err
	}
	k, err := e2ee.NewSenderKey(c.rand, dist)
	if err != nil {
		return nil, err
	}
	return k, c.saveSenderKey(group, self, k)
}

// saveSenderKey stores a sender-key state (an *e2ee.SenderKey or an
// *e2ee.SenderKeyRecord) of owner's chain in group.
func (c *Client) saveSenderKey(group chat.Conversation, owner chat.Device, k interface{ MarshalBinary() ([]byte, error) }) error {
	b, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	return c.sessions.SaveSenderKey(group, owner, b)
}

// peerSenderKeys returns what this device holds of owner's chains in
// group; nil if nothing yet.
func (c *Client) peerSenderKeys(group chat.Conversation, owner chat.Device) (*e2ee.SenderKeyRecord, error) {
	b, err := c.sessions.SenderKey(group, owner)
	if err != nil || b == nil {
		return nil, err
	}
	return e2ee.UnmarshalSenderKeyRecord(b)
}
