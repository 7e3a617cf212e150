package client

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Prekey upkeep (docs/protocol.md §9.3).
const (
	oneTimeTarget = 100              // one-time prekeys of each kind kept on the server
	oneTimeLow    = 30               // top up below this
	oneTimeKeep   = 800              // local one-time prekeys kept; the oldest handed-out ones go first
	spkRotation   = 7 * 24 * 3600e9  // rotate the signed prekey weekly (ns)
	retiredKeep   = 30 * 24 * 3600e9 // keep retired signed prekeys this long (ns)
)

// PublishMessage turns the public part of a device's keys into the
// PublishKeys request that uploads it.
func PublishMessage(up *e2ee.PreKeyUpload, replace bool) (*transport.PublishKeys, error) {
	m := &transport.PublishKeys{Identity: up.IdentityKey.Bytes(), Replace: replace}
	var err error
	if m.Certificate, err = up.Certificate.MarshalBinary(); err != nil {
		return nil, err
	}
	if m.SignedPreKey, err = up.SignedPreKey.MarshalBinary(); err != nil {
		return nil, err
	}
	if m.LastResortKEM, err = up.LastResortKEMPreKey.MarshalBinary(); err != nil {
		return nil, err
	}
	for i := range up.OneTimePreKeys {
		b, err := up.OneTimePreKeys[i].MarshalBinary()
		if err != nil {
			return nil, err
		}
		m.OneTime = append(m.OneTime, b)
	}
	for i := range up.OneTimeKEMPreKeys {
		b, err := up.OneTimeKEMPreKeys[i].MarshalBinary()
		if err != nil {
			return nil, err
		}
		m.OneTimeKEM = append(m.OneTimeKEM, b)
	}
	return m, nil
}

// pruneOneTime drops the oldest local one-time prekeys of each kind so that
// room is left for n more. Keys the server handed out but nobody used would
// otherwise pile up (a drained pool is topped up again and again); the
// oldest are the least likely to still be named by a queued message.
func pruneOneTime(keys *e2ee.DeviceKeys, n int) {
	up := keys.PublicPreKeys()
	for i := 0; i < len(up.OneTimePreKeys)+n-oneTimeKeep && i < len(up.OneTimePreKeys); i++ {
		keys.RemovePreKeys(e2ee.ConsumedPreKeys{OneTimePreKeyID: up.OneTimePreKeys[i].ID})
	}
	for i := 0; i < len(up.OneTimeKEMPreKeys)+n-oneTimeKeep && i < len(up.OneTimeKEMPreKeys); i++ {
		keys.RemovePreKeys(e2ee.ConsumedPreKeys{OneTimeKEMPreKeyID: up.OneTimeKEMPreKeys[i].ID})
	}
}

// newestUpload keeps at most transport.MaxOneTimeUpload of each kind of
// one-time prekey in a full upload, the newest.
func newestUpload(up *e2ee.PreKeyUpload) {
	if n := len(up.OneTimePreKeys); n > transport.MaxOneTimeUpload {
		up.OneTimePreKeys = up.OneTimePreKeys[n-transport.MaxOneTimeUpload:]
	}
	if n := len(up.OneTimeKEMPreKeys); n > transport.MaxOneTimeUpload {
		up.OneTimeKEMPreKeys = up.OneTimeKEMPreKeys[n-transport.MaxOneTimeUpload:]
	}
}

// This device's end-to-end keys (docs/protocol.md §9.3) and the safety
// numbers of docs/protocol.md §9.4.

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

// profileWithKeys puts the device keys as they are now into the profile,
// to be stored.
func (c *Client) profileWithKeys() (*home.Profile, error) {
	b, err := c.keys.MarshalBinary()
	if err != nil {
		return nil, err
	}
	c.prof.Keys = b
	return c.prof, nil
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
	pruned := false
	if changed {
		pruned = c.keys.PruneRetiredPreKeys(now.Add(-retiredKeep)) > 0
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
	p, err := c.profileWithKeys()
	if err != nil {
		return err
	}
	if err := c.sessions.SaveSessions(&home.SessionChanges{Profile: p}); err != nil {
		return err
	}
	if pruned {
		// Replays naming a pruned signed prekey cannot be answered.
		if err := c.sessions.PruneBaseKeys(c.keys.HoldsSignedPreKey); err != nil {
			return err
		}
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

// SafetyInfo describes the safety number with a contact.
type SafetyInfo struct {
	Number   string // 60 digits, for the key to compare
	Changed  bool   // the key is a changed one, not yet trusted
	Conflict bool   // yet another key was offered while this one was pending
	Verified bool
	// Offline: the server could not be asked; the number is from this
	// home's records (Engine.SafetyNumber without a connection).
	Offline bool
	// Unlinked are the account's devices not linked to its identity
	// (added with a password): unverified, never sent to.
	Unlinked []uint32
}

// SafetyNumber returns the safety number with user, learning user's identity
// key from the server on first use. A known contact's key is compared
// with the server's too: a different one (the account was deleted and
// registered again, or the server swapped it) becomes the pending key,
// whose number is then the one shown, as a send would find it
// (verifyBundle). If the server cannot say, the known key is shown.
func (c *Client) SafetyNumber(ctx context.Context, user string) (SafetyInfo, error) {
	if c.keys == nil {
		return SafetyInfo{}, ErrNotLinked
	}
	ct, err := c.sessions.Contact(user)
	if err != nil {
		return SafetyInfo{}, err
	}
	var ik transport.IdentityKey
	switch err := c.request(ctx, transport.CodeIdentity, &transport.DevicesRequest{User: user}, transport.CodeIdentityKey, &ik); {
	case ct == nil && err != nil:
		return SafetyInfo{}, err
	case ct == nil:
		ct = &home.Contact{Identity: ik.Key}
		if err := c.sessions.SaveContact(user, ct); err != nil {
			return SafetyInfo{}, err
		}
	case err == nil && ct.Pending == nil && !bytes.Equal(ct.Identity, ik.Key) && validIdentity(ik.Key):
		c.cryptoMu.Lock() // verifyBundle's pendingSeen runs under it
		now, err := c.sessions.Contact(user)
		if err == nil && now != nil {
			ct = now
			if !bytes.Equal(ct.Identity, ik.Key) && pendingSeen(ct, ik.Key) {
				err = c.sessions.SaveContact(user, ct)
			}
		}
		c.cryptoMu.Unlock()
		if err != nil {
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
	if ct.Pending != nil {
		// Trust without a safety number accepts only a key shown.
		if err := c.home.ShowPending(user, ct.Pending); err != nil {
			return SafetyInfo{}, err
		}
	}
	info := SafetyInfo{
		Number:   e2ee.SafetyNumber(c.prof.User, c.keys.IdentityKey(), user, remote),
		Changed:  ct.Pending != nil,
		Conflict: ct.Conflict,
		Verified: ct.Verified && ct.Pending == nil,
	}
	if _, err := c.Devices(ctx, user); err == nil {
		info.Unlinked = c.unlinkedDevices(user)
	}
	return info, nil
}

func validIdentity(key []byte) bool {
	_, err := e2ee.ParseIdentityKey(key)
	return err == nil
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
