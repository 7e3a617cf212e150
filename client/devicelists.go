package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Signed device lists, the sender's side (docs/protocol.md §9.8): an
// account's devices are the ones its identity key lists. The server gives
// the list with the devices (Devices, signed_list); a client sends only to
// devices the newest list it verified names under the key the server
// lists, keeps that list in the contact's record so that an older one is
// never taken again, and refuses a send whose recipients the server lists
// differently: a device the server added on its own, a device revoked and
// brought back with an older list, or a swapped device key. An account
// that never published a list (registered before lists, or reached only
// through a first message not yet sent) is sent to as before, its devices
// bound to its identity by their certificates (§9.1).

// DeviceListError: the server's devices of an account are not the ones
// its signed device list names.
type DeviceListError struct {
	User   string
	Device uint32
	Why    string
}

func (e *DeviceListError) Error() string {
	return fmt.Sprintf("%s's device %d: %s: not sending (the server may be adding a device of its own; tell its operator)", e.User, e.Device, e.Why)
}

// verifiedList is an account's signed list as this connection verified it.
type verifiedList struct {
	raw  []byte // what the server gave (nil: none)
	list *e2ee.DeviceList
}

// sendDevices is Devices for a send: the server's devices of user,
// checked against user's newest verified device list. The devices of an
// account whose identity key this home does not hold yet are checked when
// it is taken from their bundles (verifyBundle).
func (c *Client) sendDevices(ctx context.Context, user string) ([]chat.Device, error) {
	devs, err := c.Devices(ctx, user)
	if err != nil || c.keys == nil {
		return devs, err
	}
	if ids := c.unlinkedDevices(user); len(ids) > 0 && user != c.prof.User {
		c.note(user, UnlinkedText(user, ids))
	}
	var identity []byte
	if user == c.prof.User {
		identity = c.keys.IdentityKey().Bytes()
	} else if ct, err := c.home.Contact(user); err != nil {
		return nil, err
	} else if ct != nil && ct.Pending == nil {
		identity = ct.Identity
	}
	if identity == nil {
		return devs, nil
	}
	list, err := c.deviceList(user, identity, nil)
	if err != nil || list == nil {
		return devs, err
	}
	for _, d := range devs {
		if err := c.inList(list, d); err != nil {
			if user != c.prof.User {
				// Devices under keys the list does not name: the account
				// may have been deleted and registered again under
				// another identity, which is said as such.
				if moved := c.identityMoved(user, identity); moved != nil {
					return nil, moved
				}
			}
			return nil, err
		}
	}
	return devs, nil
}

// inList checks that list names dev under the key the server lists it
// with.
func (c *Client) inList(list *e2ee.DeviceList, dev chat.Device) error {
	e, ok := list.Lookup(dev.ID)
	switch {
	case !ok:
		return &DeviceListError{User: dev.User, Device: dev.ID, Why: fmt.Sprintf("the server lists it, but %s's signed device list (number %d) does not", dev.User, list.Seq)}
	case !bytes.Equal(e.AuthKey[:], c.listedKey(dev)):
		return &DeviceListError{User: dev.User, Device: dev.ID, Why: fmt.Sprintf("the server lists it under another key than %s's signed device list", dev.User)}
	}
	return nil
}

// deviceList returns user's device list to send by, verified under
// identity: the server's if it verifies and is at least as new as the one
// this home keeps, else the kept one; nil if the account has none. A newer
// list is kept (in ct when the caller stores the contact itself, else in
// the home) with a line in the conversation saying the devices changed; an
// older or unverifiable one is refused with a line saying so.
func (c *Client) deviceList(user string, identity []byte, ct *home.Contact) (*e2ee.DeviceList, error) {
	c.devMu.Lock()
	raw := c.signedLists[user]
	v := c.verified[user]
	c.devMu.Unlock()
	if v != nil && bytes.Equal(v.raw, raw) && (v.list == nil || ct == nil) {
		return v.list, nil
	}
	id, err := e2ee.ParseIdentityKey(identity)
	if err != nil {
		return nil, err
	}
	var kept *e2ee.DeviceList
	keptRaw := []byte(nil)
	if ct != nil {
		keptRaw = ct.DeviceList
	} else if user == c.prof.User {
		// The account's own list, as this home last signed or took it:
		// an older one, or none, does not bring a revoked device back.
		own, err := c.home.OwnDeviceList()
		if err != nil {
			return nil, err
		}
		keptRaw = own
	} else {
		stored, err := c.home.Contact(user)
		if err != nil {
			return nil, err
		}
		if stored != nil {
			keptRaw = stored.DeviceList
		}
	}
	if keptRaw != nil {
		if l, err := e2ee.ParseDeviceList(keptRaw); err == nil && l.Verify(id, user) == nil {
			kept = l
		}
	}
	use, notice := kept, ""
	if len(raw) > 0 {
		l, err := e2ee.ParseDeviceList(raw)
		if err == nil {
			err = l.Verify(id, user)
		}
		switch {
		case err != nil && ct == nil && user != c.prof.User:
			// Signed by another key than the one this home trusts: the
			// account's identity changed (deleted and registered again),
			// which blocks the send as any identity change does, or the
			// list is forged.
			if err := c.identityMoved(user, identity); err != nil {
				return nil, err
			}
			fallthrough
		case err != nil:
			notice = fmt.Sprintf("the server gave a device list of %s's that %s's identity key did not sign: refused", user, user)
			if kept == nil {
				c.note(user, notice)
				return nil, &DeviceListError{User: user, Why: "its device list does not verify"}
			}
		case kept == nil || l.Seq > kept.Seq:
			use = l
			if kept != nil {
				notice = fmt.Sprintf("%s's devices changed: %s", user, describeListChange(kept, l))
			}
			if err := c.keepList(user, raw, ct); err != nil {
				return nil, err
			}
		case l.Seq < kept.Seq:
			notice = fmt.Sprintf("the server gave an older device list of %s's (number %d, this device has seen %d): refused", user, l.Seq, kept.Seq)
		case !bytes.Equal(raw, keptRaw):
			notice = fmt.Sprintf("the server gave another device list of %s's with the number this device has (%d): refused", user, l.Seq)
		}
	}
	if notice != "" {
		c.note(user, notice)
	}
	c.devMu.Lock()
	if c.verified == nil {
		c.verified = make(map[string]*verifiedList)
	}
	c.verified[user] = &verifiedList{raw: raw, list: use}
	c.devMu.Unlock()
	return use, nil
}

// identityMoved asks the server for user's identity key: one other than
// trusted is recorded as pending, as a send's bundle check records it
// (verifyBundle), and returned as the identity change that blocks the
// send; nil when the server says trusted.
func (c *Client) identityMoved(user string, trusted []byte) error {
	var ik transport.IdentityKey
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.request(ctx, transport.CodeIdentity, &transport.DevicesRequest{User: user}, transport.CodeIdentityKey, &ik); err != nil {
		return err
	}
	if bytes.Equal(ik.Key, trusted) || !validIdentity(ik.Key) {
		return nil
	}
	c.cryptoMu.Lock()
	defer c.cryptoMu.Unlock()
	ct, err := c.sessions.Contact(user)
	if err != nil || ct == nil {
		return err
	}
	if !bytes.Equal(ct.Identity, ik.Key) && pendingSeen(ct, ik.Key) {
		if err := c.sessions.SaveContact(user, ct); err != nil {
			return err
		}
	}
	return c.identityChanged(user, ct.Pending)
}

// keepList stores user's newer verified list: in ct, which the caller
// stores, or in the home's contact record.
func (c *Client) keepList(user string, raw []byte, ct *home.Contact) error {
	if user == c.prof.User {
		return c.home.SaveOwnDeviceList(raw)
	}
	if ct != nil {
		ct.DeviceList = bytes.Clone(raw)
		return nil
	}
	return c.home.Update(func(tx *home.Tx) error {
		stored, err := tx.Contact(user)
		if err != nil || stored == nil {
			return err
		}
		stored.DeviceList = bytes.Clone(raw)
		return tx.PutContact(user, stored)
	})
}

// describeListChange says which devices a newer list added and removed.
func describeListChange(old, new *e2ee.DeviceList) string {
	var added, removed []string
	for _, e := range new.Devices {
		if o, ok := old.Lookup(e.Device); !ok || o.AuthKey != e.AuthKey {
			added = append(added, fmt.Sprint(e.Device))
		}
	}
	for _, e := range old.Devices {
		if n, ok := new.Lookup(e.Device); !ok || n.AuthKey != e.AuthKey {
			removed = append(removed, fmt.Sprint(e.Device))
		}
	}
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "added device "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed device "+strings.Join(removed, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "the same devices")
	}
	return fmt.Sprintf("%s (now %d)", strings.Join(parts, "; "), len(new.Devices))
}

// note adds a line to the conversation with user, once: the same text
// again (on this connection or a later one) adds nothing.
func (c *Client) note(user, text string) {
	if user == c.prof.User || !c.askOnce(onceListNote, user+"\x00"+text, user) {
		return
	}
	sum := sha256.Sum256([]byte("securechat device note\x00" + user + "\x00" + text))
	id := sum[:transport.MessageIDLen]
	c.home.Update(func(tx *home.Tx) error {
		if in, err := tx.InHistory(id); err != nil || in {
			return err
		}
		_, err := tx.AddHistory(chat.Peer(user), &home.HistoryRecord{ID: id, From: user, Kind: chat.KindSystem, Text: text, Time: c.now().UnixMilli()}, true)
		return err
	})
}

// unlinkedDevices are the devices of user the server said published no
// keys: added with a password, not linked (Devices must have been asked).
func (c *Client) unlinkedDevices(user string) []uint32 {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	return slices.Clone(c.unlinked[user])
}

// UnlinkedText says that user has devices that are not linked.
func UnlinkedText(user string, ids []uint32) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprint(id))
	}
	what := "a device"
	if len(ids) > 1 {
		what = fmt.Sprintf("%d devices", len(ids))
	}
	return fmt.Sprintf("%s has %s not linked to %s's identity (device %s, added with a password): unverified, and nothing is sent to it until one of %s's devices approves it", user, what, user, strings.Join(s, ", "), user)
}
