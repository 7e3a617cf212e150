package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// End-to-end encryption in the engine (docs/protocol.md §9): one Double
// Ratchet session per pair of devices, started with PQXDH from a prekey
// bundle the server hands out. Sessions, contacts' identity keys and
// decrypted-but-unacked messages live in the sealed home:
//
//	contacts  index(user)              → contact
//	sessions  index(user ‖ 0 ‖ device) → sessionRecord
//	received  index(seen key)          → receivedRecord, until acked
var (
	bucketContacts = []byte("contacts")
	bucketSessions = []byte("sessions")
	bucketReceived = []byte("received")
)

// ErrNotLinked is returned when this device has no end-to-end keys.
var ErrNotLinked = errors.New("this device has no end-to-end keys: it was added with login and is not yet linked to the account's identity, so it cannot send or receive messages")

// IdentityChangedError blocks sending to a contact whose account identity
// key differs from the one this home trusts (docs/design.md §3).
type IdentityChangedError struct {
	User         string
	SafetyNumber string // with the new key
}

func (e *IdentityChangedError) Error() string {
	return fmt.Sprintf("%s's identity key has changed, so sending to %s is blocked: compare the new safety number (securechat fingerprint %s) with %s, then accept it with securechat trust %s", e.User, e.User, e.User, e.User, e.User)
}

// contact is what this home knows of another account.
type contact struct {
	Identity []byte // trusted account identity key
	Pending  []byte // a different key seen since; blocks sending until trusted
	Verified bool   // the user compared the safety number
}

func (m *contact) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Identity)
	e.BytesField(2, m.Pending)
	e.Bool(3, m.Verified)
}

func (m *contact) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Identity, err = f.Fixed(transport.IdentityKeyLen)
		case 2:
			m.Pending, err = f.Fixed(transport.IdentityKeyLen)
		case 3:
			m.Verified, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// sessionRecord is one device-pair session.
type sessionRecord struct {
	User    string
	Device  uint32
	Ratchet []byte // e2ee.Session encoding
	Initial []byte // initiator: the PQXDH header, sent until the peer answers
	BaseKey []byte // responder: the initiator's ephemeral key that started it
	// Previous are earlier sessions with the device, newest first, at
	// most maxPreviousSessions, each without a Previous of its own. When
	// both sides start a session at once, each answers the other's and
	// sends on its own newest; the peer finds the matching one here
	// (protocol.md §9.2, as Signal's session archive).
	Previous []sessionRecord
}

// maxPreviousSessions bounds the earlier sessions kept per device.
const maxPreviousSessions = 4

func (m *sessionRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Ratchet)
	e.BytesField(2, m.Initial)
	e.BytesField(3, m.BaseKey)
	e.String(4, m.User)
	e.Uint(5, uint64(m.Device))
	for i := range m.Previous {
		e.Message(6, &m.Previous[i])
	}
}

// current is the record without its earlier sessions.
func (m *sessionRecord) current() sessionRecord {
	c := *m
	c.Previous = nil
	return c
}

// replacedBy returns next as the current session with m's current one
// first among the earlier ones.
func (m *sessionRecord) replacedBy(next sessionRecord) sessionRecord {
	next.Previous = append([]sessionRecord{m.current()}, m.Previous...)
	if len(next.Previous) > maxPreviousSessions {
		next.Previous = next.Previous[:maxPreviousSessions]
	}
	return next
}

// promoted returns the record with earlier session i made current again.
func (m *sessionRecord) promoted(i int) sessionRecord {
	rest := sessionRecord{User: m.User, Device: m.Device, Ratchet: m.Ratchet, Initial: m.Initial, BaseKey: m.BaseKey,
		Previous: slices.Delete(slices.Clone(m.Previous), i, i+1)}
	return rest.replacedBy(m.Previous[i])
}

func (m *sessionRecord) UnmarshalFields(d *transport.Decoder) error {
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
			if len(m.Previous) >= maxPreviousSessions {
				return errors.New("too many earlier sessions")
			}
			var p sessionRecord
			if err = f.Message(&p); err == nil && p.Previous != nil {
				err = errors.New("an earlier session has earlier sessions")
			}
			m.Previous = append(m.Previous, p)
		default:
			return f.Unknown()
		}
		return err
	})
}

// receivedRecord keeps a decrypted message until it is acked, so that a
// redelivery (its ack lost) shows the same message instead of failing to
// decrypt with a key already used.
type receivedRecord struct {
	Content  []byte
	Changed  bool
	Received int64
}

func (m *receivedRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, m.Content)
	e.Bool(2, m.Changed)
	e.Int(3, m.Received)
}

func (m *receivedRecord) UnmarshalFields(d *transport.Decoder) error {
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

func sessionKey(user string, device uint32) []byte {
	return fmt.Appendf(nil, "%s\x00%d", user, device)
}

// getRecord opens a sealed record stored under a hidden key.
func (h *Home) getRecord(tx *bolt.Tx, bucket, clearKey []byte, m transport.Unmarshaler) (bool, error) {
	v, err := h.get(tx, bucket, h.seal.index(bucket, clearKey))
	if err != nil || v == nil {
		return false, err
	}
	return true, transport.Unmarshal(v, m)
}

func (h *Home) putRecord(tx *bolt.Tx, bucket, clearKey []byte, m transport.Marshaler) error {
	return h.put(tx, bucket, h.seal.index(bucket, clearKey), transport.Marshal(m))
}

// loadKeys parses the device's end-to-end keys from its profile.
func (c *Client) loadKeys() error {
	if len(c.prof.Keys) == 0 {
		return nil // not linked: can authenticate, cannot encrypt
	}
	keys, err := e2ee.ParseDeviceKeys(c.prof.Keys)
	if err != nil {
		return fmt.Errorf("home %s: device keys are damaged: %w", c.home.Dir, err)
	}
	c.keys = keys
	return nil
}

// saveKeysTx stores the device keys in the profile, inside tx.
func (c *Client) saveKeysTx(tx *bolt.Tx) error {
	b, err := c.keys.MarshalBinary()
	if err != nil {
		return err
	}
	c.prof.Keys = b
	return c.home.put(tx, bucketMeta, keyProfile, transport.Marshal(c.prof))
}

// maintainKeys publishes this device's keys when the server lacks them,
// tops up one-time prekeys and rotates the signed prekey (protocol.md §9.3).
func (c *Client) maintainKeys(ctx context.Context, count transport.KeyCount) error {
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	if c.keys == nil {
		return nil
	}
	now := c.now()
	changed := false
	replace := !count.Published
	if now.Sub(c.keys.SignedPreKeyCreated()) > spkRotation {
		if _, err := c.keys.RotateSignedPreKey(c.rand, now); err != nil {
			return err
		}
		changed = true
	}
	if now.Sub(c.keys.LastResortKEMPreKeyCreated()) > spkRotation {
		if _, err := c.keys.RotateLastResortKEMPreKey(c.rand, now); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		c.keys.PruneRetiredPreKeys(now.Add(-retiredKeep))
	}
	var newOTK []e2ee.OneTimePreKeyPublic
	var newKEM []e2ee.KEMPreKeyPublic
	if count.Published && (count.OneTime < oneTimeLow || count.OneTimeKEM < oneTimeLow) {
		pruneOneTime(c.keys, oneTimeTarget)
		var err error
		if newOTK, err = c.keys.AddOneTimePreKeys(c.rand, oneTimeTarget-int(count.OneTime)); err != nil {
			return err
		}
		if newKEM, err = c.keys.AddOneTimeKEMPreKeys(c.rand, oneTimeTarget-int(count.OneTimeKEM), now); err != nil {
			return err
		}
		changed = true
	}
	if !changed && !replace {
		return nil
	}
	// Saved before published: the server must never hold a key we lost.
	if err := c.home.update(c.saveKeysTx); err != nil {
		return err
	}
	up := c.keys.PublicPreKeys()
	if !replace {
		up.OneTimePreKeys, up.OneTimeKEMPreKeys = newOTK, newKEM
	}
	newestUpload(up)
	m, err := PublishMessage(up, replace)
	if err != nil {
		return err
	}
	return c.request(ctx, transport.CodePublishKeys, m, transport.CodeOK, &transport.Empty{})
}

// encryptTo builds one ciphertext per device of devs, starting sessions
// where there are none, and saves the advanced sessions together with the
// outbox entry for msg in one transaction before anything is sent: a crash
// can then never make a message key be used twice.
func (c *Client) encryptTo(ctx context.Context, to string, devs []transport.DeviceInfo, content *Content, id []byte, entry *outboxEntry) (*transport.Send, error) {
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	h := c.home

	var ct contact
	var haveContact bool
	var missing []uint32
	records := make(map[uint32]*sessionRecord)
	err := h.viewState(func(tx *bolt.Tx) error {
		var err error
		if haveContact, err = h.getRecord(tx, bucketContacts, []byte(to), &ct); err != nil {
			return err
		}
		for _, d := range devs {
			var r sessionRecord
			ok, err := h.getRecord(tx, bucketSessions, sessionKey(to, d.ID), &r)
			if err != nil {
				return err
			}
			if ok {
				records[d.ID] = &r
			} else {
				missing = append(missing, d.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if haveContact && ct.Pending != nil {
		return nil, c.identityChanged(to, ct.Pending)
	}
	contactChanged := false
	if len(missing) > 0 {
		var kb transport.KeyBundles
		if err := c.request(ctx, transport.CodeFetchKeys, &transport.FetchKeys{User: to, Devices: missing}, transport.CodeKeyBundles, &kb); err != nil {
			return nil, err
		}
		for _, b := range kb.Bundles {
			bundle, err := e2ee.ParsePreKeyBundle(b.Bundle)
			if err != nil {
				return nil, fmt.Errorf("%s's device %d: bad key bundle: %w", to, b.Device, err)
			}
			if err := bundle.Verify(to, b.Device); err != nil {
				return nil, fmt.Errorf("%s's device %d: key bundle does not verify: %w", to, b.Device, err)
			}
			idKey := bundle.IdentityKey.Bytes()
			switch {
			case !haveContact:
				ct, haveContact, contactChanged = contact{Identity: idKey}, true, true // trust on first use
			case !bytes.Equal(ct.Identity, idKey):
				// A key other than the trusted one: the server (or someone)
				// swapped it. Record it and refuse to send (docs/design.md §3).
				ct.Pending = idKey
				if err := h.update(func(tx *bolt.Tx) error { return h.putRecord(tx, bucketContacts, []byte(to), &ct) }); err != nil {
					return nil, err
				}
				return nil, c.identityChanged(to, idKey)
			}
			header, sk, ad, err := e2ee.InitiateSession(c.rand, c.keys, to, b.Device, bundle)
			if err != nil {
				return nil, fmt.Errorf("%s's device %d: %w", to, b.Device, err)
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
			records[b.Device] = &sessionRecord{User: to, Device: b.Device, Ratchet: rb, Initial: hb}
		}
	}
	plain := transport.Marshal(content)
	msg := &transport.Send{MessageID: id}
	for _, d := range devs {
		r := records[d.ID]
		if r == nil {
			return nil, fmt.Errorf("%s's device %d has no keys on the server", to, d.ID)
		}
		sess, err := e2ee.UnmarshalSession(r.Ratchet)
		if err != nil {
			return nil, fmt.Errorf("session with %s's device %d is damaged: %w", to, d.ID, err)
		}
		ciphertext, err := sess.Encrypt(c.rand, plain)
		if err == nil {
			r.Ratchet, err = sess.MarshalBinary()
		}
		sess.Zero()
		if err != nil {
			return nil, err
		}
		msg.Envelopes = append(msg.Envelopes, transport.Envelope{User: to, Device: d.ID, Payload: encodePayload(r.Initial, ciphertext)})
	}
	if entry != nil {
		entry.Send = transport.Marshal(msg)
	}
	err = h.update(func(tx *bolt.Tx) error {
		if contactChanged {
			if err := h.putRecord(tx, bucketContacts, []byte(to), &ct); err != nil {
				return err
			}
		}
		for devID, r := range records {
			if err := h.putRecord(tx, bucketSessions, sessionKey(to, devID), r); err != nil {
				return err
			}
		}
		if entry == nil {
			return nil // an ephemeral signal: never resent
		}
		return h.put(tx, bucketOutbox, id, transport.Marshal(entry))
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func (c *Client) identityChanged(user string, newKey []byte) error {
	e := &IdentityChangedError{User: user}
	if k, err := e2ee.ParseIdentityKey(newKey); err == nil && c.keys != nil {
		e.SafetyNumber = e2ee.SafetyNumber(c.prof.User, c.keys.IdentityKey(), user, k)
	}
	return e
}

// decrypt opens a delivered payload (protocol.md §9.2). A message already
// decrypted but not yet acked is returned from the home, not decrypted again.
// An ephemeral one (a signal) is not kept.
func (c *Client) decrypt(d *transport.Deliver, ephemeral bool) (content *Content, changed bool, err error) {
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	h := c.home
	rkey := seenKey(d.From, d.FromDevice, d.MessageID)
	skey := sessionKey(d.From, d.FromDevice)
	var rec receivedRecord
	var have bool
	var sr sessionRecord
	var haveSession bool
	var ct contact
	var haveContact bool
	err = h.viewState(func(tx *bolt.Tx) error {
		var err error
		if !ephemeral {
			if have, err = h.getRecord(tx, bucketReceived, rkey, &rec); err != nil || have {
				return err
			}
		}
		if haveSession, err = h.getRecord(tx, bucketSessions, skey, &sr); err != nil {
			return err
		}
		haveContact, err = h.getRecord(tx, bucketContacts, []byte(d.From), &ct)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if have {
		content, err = decodeContent(rec.Content)
		return content, rec.Changed, err
	}
	if c.keys == nil {
		return nil, false, ErrNotLinked
	}
	headerBytes, ciphertext, err := parsePayload(d.Payload)
	if err != nil {
		return nil, false, err
	}

	var sess *e2ee.Session
	var consumed *e2ee.ConsumedPreKeys
	contactDirty := false
	var header *e2ee.InitialMessageHeader
	if headerBytes != nil {
		if header, err = e2ee.ParseInitialMessageHeader(headerBytes); err != nil {
			return nil, false, err
		}
	}
	// An initial header that started the session we have, or one we had,
	// is a repeat: the initiator sends it until we answer. Anything else
	// starts a new session, and the one we had is kept among the earlier.
	newHeader := header != nil && !(haveSession && bytes.Equal(sr.BaseKey, header.EphemeralKey.Bytes()))
	earlier := -1
	if newHeader {
		earlier = slices.IndexFunc(sr.Previous, func(p sessionRecord) bool { return bytes.Equal(p.BaseKey, header.EphemeralKey.Bytes()) })
	}
	if earlier >= 0 {
		sr = sr.promoted(earlier)
		if sess, err = e2ee.UnmarshalSession(sr.Ratchet); err != nil {
			return nil, false, err
		}
	} else if newHeader {
		rk, err := e2ee.RespondSession(c.keys, d.From, d.FromDevice, header)
		if err != nil {
			return nil, false, err
		}
		if sess, err = e2ee.NewResponderSession(rk.SK, rk.RatchetKey, rk.AD); err != nil {
			return nil, false, err
		}
		clear(rk.SK)
		consumed = &rk.Consumed
		next := sessionRecord{User: d.From, Device: d.FromDevice, BaseKey: header.EphemeralKey.Bytes()}
		if haveSession {
			next = sr.replacedBy(next)
		}
		sr = next
		idKey := rk.RemoteIdentity.Bytes()
		switch {
		case !haveContact:
			ct, contactDirty = contact{Identity: idKey}, true
		case !bytes.Equal(ct.Identity, idKey) && !bytes.Equal(ct.Pending, idKey):
			ct.Pending, contactDirty, changed = idKey, true, true
		case !bytes.Equal(ct.Identity, idKey):
			changed = true
		}
	} else {
		if !haveSession {
			return nil, false, errors.New("no session with the sender's device (the message may predate a reset)")
		}
		if sess, err = e2ee.UnmarshalSession(sr.Ratchet); err != nil {
			return nil, false, err
		}
	}
	plain, err := sess.Decrypt(ciphertext)
	if err != nil && header == nil {
		// Perhaps the peer sends on a session we had before (both sides
		// started one at once): the newest earlier session that decrypts
		// it becomes current again.
		for i, p := range sr.Previous {
			s2, err2 := e2ee.UnmarshalSession(p.Ratchet)
			if err2 != nil {
				continue
			}
			if plain2, err2 := s2.Decrypt(ciphertext); err2 == nil {
				sess.Zero()
				sess, plain, err = s2, plain2, nil
				sr = sr.promoted(i)
				break
			}
			s2.Zero()
		}
	}
	defer sess.Zero()
	if err != nil {
		return nil, false, err // the stored states are untouched (Double Ratchet §3.5)
	}
	if content, err = decodeContent(plain); err != nil {
		return nil, false, err
	}
	if sr.Initial != nil {
		sr.Initial = nil // the peer answered: the session is confirmed
	}
	if sr.Ratchet, err = sess.MarshalBinary(); err != nil {
		return nil, false, err
	}
	// A session from an identity this home does not trust (yet) is not
	// kept: a forged first message must not displace the real session.
	keepSession := !changed
	received := &receivedRecord{Content: plain, Changed: changed, Received: c.now().UnixMilli()}
	if consumed == nil && !contactDirty && keepSession {
		// The common case, a message of a session we have: written with
		// the next write transaction, normally the ack's (later.go).
		puts := []laterPut{{bucketSessions, h.seal.index(bucketSessions, skey), transport.Marshal(&sr)}}
		if !ephemeral {
			puts = append(puts, laterPut{bucketReceived, h.seal.index(bucketReceived, rkey), transport.Marshal(received)})
		}
		h.putLater(puts...)
		return content, changed, nil
	}
	if consumed != nil {
		c.keys.RemovePreKeys(*consumed)
	}
	err = h.update(func(tx *bolt.Tx) error {
		if consumed != nil {
			if err := c.saveKeysTx(tx); err != nil {
				return err
			}
		}
		if contactDirty {
			if err := h.putRecord(tx, bucketContacts, []byte(d.From), &ct); err != nil {
				return err
			}
		}
		if keepSession {
			if err := h.putRecord(tx, bucketSessions, skey, &sr); err != nil {
				return err
			}
		}
		if ephemeral {
			return nil
		}
		return h.putRecord(tx, bucketReceived, rkey, received)
	})
	return content, changed, err
}

// Trust accepts a contact's changed identity key: sessions with the old one
// are dropped and new ones start with the new key.
func (h *Home) Trust(user string) error {
	return h.update(func(tx *bolt.Tx) error {
		var ct contact
		ok, err := h.getRecord(tx, bucketContacts, []byte(user), &ct)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no identity key known for %s: nothing to accept", user)
		}
		if ct.Pending == nil {
			return fmt.Errorf("%s's identity key has not changed: nothing to accept", user)
		}
		ct.Identity, ct.Pending, ct.Verified = ct.Pending, nil, false
		if err := h.putRecord(tx, bucketContacts, []byte(user), &ct); err != nil {
			return err
		}
		var stale [][]byte
		b := tx.Bucket(bucketSessions)
		b.ForEach(func(k, sealed []byte) error {
			var r sessionRecord
			v, err := h.seal.open(bucketSessions, k, sealed)
			if err != nil || transport.Unmarshal(v, &r) != nil || r.User == user {
				stale = append(stale, append([]byte(nil), k...))
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

// SafetyInfo describes the safety number with a contact.
type SafetyInfo struct {
	Number   string // 60 digits, for the key to compare
	Changed  bool   // the key is a changed one, not yet trusted
	Verified bool
}

// SafetyNumber returns the safety number with user, learning user's identity
// key from the server on first use.
func (c *Client) SafetyNumber(ctx context.Context, user string) (SafetyInfo, error) {
	if c.keys == nil {
		return SafetyInfo{}, ErrNotLinked
	}
	h := c.home
	var ct contact
	var ok bool
	var err error
	h.db.View(func(tx *bolt.Tx) error {
		ok, err = h.getRecord(tx, bucketContacts, []byte(user), &ct)
		return nil
	})
	if err != nil {
		return SafetyInfo{}, err
	}
	if !ok {
		var ik transport.IdentityKey
		if err := c.request(ctx, transport.CodeIdentity, &transport.DevicesRequest{User: user}, transport.CodeIdentityKey, &ik); err != nil {
			return SafetyInfo{}, err
		}
		ct = contact{Identity: ik.Key}
		if err := h.update(func(tx *bolt.Tx) error { return h.putRecord(tx, bucketContacts, []byte(user), &ct) }); err != nil {
			return SafetyInfo{}, err
		}
	}
	key := ct.Identity
	if ct.Pending != nil {
		key = ct.Pending
	}
	remote, err := e2ee.ParseIdentityKey(key)
	if err != nil {
		return SafetyInfo{}, err
	}
	return SafetyInfo{
		Number:   e2ee.SafetyNumber(c.prof.User, c.keys.IdentityKey(), user, remote),
		Changed:  ct.Pending != nil,
		Verified: ct.Verified && ct.Pending == nil,
	}, nil
}

// Fingerprint is this account's own 30-digit half of every safety number.
func (c *Client) Fingerprint() (string, error) {
	if c.keys == nil {
		return "", ErrNotLinked
	}
	return e2ee.IdentityFingerprint(c.prof.User, c.keys.IdentityKey()), nil
}

// newDeviceKeys makes the first device's identity and keys at registration.
func newDeviceKeys(o EnrollOptions, user string, device uint32, auth []byte, now time.Time) (*e2ee.DeviceKeys, error) {
	identity, err := e2ee.GenerateIdentityKey(o.Rand)
	if err != nil {
		return nil, err
	}
	return e2ee.NewDeviceKeys(o.Rand, identity, e2ee.DeviceInfo{User: user, DeviceID: device, AuthKey: auth}, now, oneTimeTarget, oneTimeTarget)
}
