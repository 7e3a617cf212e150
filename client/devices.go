package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Linked devices, the client's side (docs/protocol.md §5.4, §9.8): the
// account's own signed device list (its first at registration, or at
// connect for an account from before lists), the new device's link and
// the sealed message it receives, and what a device of the account does
// with its devices — approve a link, list, rename, revoke. The requests
// themselves are link.go's.

// linkMessageVersion is the version of the sealed link message.
const linkMessageVersion = 1

// LinkMessage is what the approving device seals to the new device's link
// key (protocol.md §9.8, "Sealed link message"):
//
//	1 version u8 (1)   2 identity: the account identity private key (e2ee
//	storage encoding: 0x01 ‖ seed[32])   3 the signed device list naming
//	the new device   4 archive (optional): ArchiveRef
type LinkMessage struct {
	Identity   e2ee.IdentityPrivateKey
	DeviceList []byte
	// Archive, if set, is where the history archive (protocol.md §10.1)
	// waits for the new device. Optional: the transfer comes later.
	Archive *ArchiveRef
}

// ArchiveRef names an encrypted history archive on the server:
//
//	1 blob id string ≤128   2 file key [32]   3 digest [32] (SHA-256 of the
//	encoding, protocol.md §9.5)   4 size u64 (of the encoding)
type ArchiveRef struct {
	Blob   string
	Key    []byte
	Digest []byte
	Size   uint64
}

func (a *ArchiveRef) MarshalFields(e *transport.Encoder) {
	e.String(1, a.Blob)
	e.BytesField(2, a.Key)
	e.BytesField(3, a.Digest)
	e.Uint(4, a.Size)
}

func (a *ArchiveRef) UnmarshalFields(d *transport.Decoder) error {
	err := transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			a.Blob, err = f.String(128)
		case 2:
			a.Key, err = f.Fixed(e2ee.AttachmentKeySize)
		case 3:
			a.Digest, err = f.Fixed(e2ee.AttachmentDigestSize)
		case 4:
			a.Size, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (a.Blob == "" || a.Key == nil || a.Digest == nil) {
		err = errors.New("archive reference without blob, key or digest")
	}
	return err
}

func (m *LinkMessage) MarshalFields(e *transport.Encoder) {
	e.Uint(1, linkMessageVersion)
	id, _ := m.Identity.MarshalBinary()
	e.BytesField(2, id)
	e.BytesField(3, m.DeviceList)
	if m.Archive != nil {
		e.Message(4, m.Archive)
	}
}

func (m *LinkMessage) UnmarshalFields(d *transport.Decoder) error {
	var version uint64
	err := transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			version, err = f.Uint()
		case 2:
			var b []byte
			if b, err = f.Bytes(64); err == nil {
				err = m.Identity.UnmarshalBinary(b)
			}
		case 3:
			m.DeviceList, err = f.Bytes(e2ee.MaxDeviceListSize)
		case 4:
			m.Archive = new(ArchiveRef)
			err = f.Message(m.Archive)
		default:
			return f.Unknown()
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case version != linkMessageVersion:
		return fmt.Errorf("link message version %d, not %d: update securechat on this device", version, linkMessageVersion)
	case m.Identity.IsZero() || m.DeviceList == nil:
		return errors.New("link message without the identity or the device list")
	}
	return nil
}

// ErrLinkMismatch is a code whose keys, as the server gave them, are not
// the ones the new device showed it for: a server in the middle, or a code
// typed for another device. Nothing is linked.
var ErrLinkMismatch = errors.New("the server's keys for this code do not match: do not link")

// ErrRevokeSelf: a device cannot revoke itself (protocol.md §5.4).
var ErrRevokeSelf = errors.New("a device cannot revoke itself: revoke it from another device of the account")

// entryFor is the list entry of a device under its Ed25519 key.
func entryFor(device uint32, key ed25519.PublicKey, added time.Time) e2ee.DeviceListEntry {
	e := e2ee.DeviceListEntry{Device: device, Added: added.UnixMilli()}
	copy(e.AuthKey[:], key)
	return e
}

// signList signs the account's list with seq and devices.
func (c *Client) signList(seq uint64, devices []e2ee.DeviceListEntry) ([]byte, *e2ee.DeviceList, error) {
	l := &e2ee.DeviceList{User: c.prof.User, Seq: seq, Time: c.now().UnixMilli(), Devices: devices}
	if err := e2ee.SignDeviceList(l, c.keys.IdentityPrivateKey()); err != nil {
		return nil, nil, err
	}
	b, err := l.MarshalBinary()
	return b, l, err
}

// verifiedList parses b as this account's list signed by its identity;
// nil, nil for no list.
func (c *Client) verifiedList(b []byte) (*e2ee.DeviceList, error) {
	if b == nil {
		return nil, nil
	}
	l, err := e2ee.ParseDeviceList(b)
	if err != nil {
		return nil, err
	}
	if err := l.Verify(c.keys.IdentityKey(), c.prof.User); err != nil {
		return nil, err
	}
	return l, nil
}

// publishFirstList publishes the account's first signed list, sequence
// number 1, naming this device, and keeps it in the home: at registration
// and, for an account from before device lists, at connect.
func (c *Client) publishFirstList(ctx context.Context) error {
	b, _, err := c.signList(1, []e2ee.DeviceListEntry{entryFor(c.prof.Device, c.prof.DeviceKey.Public().(ed25519.PublicKey), c.now())})
	if err != nil {
		return err
	}
	if err := c.PublishDeviceList(ctx, b); err != nil {
		return err
	}
	return c.home.SaveOwnDeviceList(b)
}

// ensureDeviceList runs at connect on a linked device whose home keeps no
// list of its account (one from before device lists): if the server has
// none either, it publishes the first; if it has one signed by the
// account's identity, the home keeps it.
func (c *Client) ensureDeviceList(ctx context.Context) error {
	if c.keys == nil || c.home == nil {
		return nil
	}
	if b, err := c.home.OwnDeviceList(); err != nil || b != nil {
		return err
	}
	dl, err := c.DeviceList(ctx, c.prof.User)
	if err != nil {
		return err
	}
	if dl.SignedList == nil {
		return c.publishFirstList(ctx)
	}
	if _, err := c.verifiedList(dl.SignedList); err != nil {
		return fmt.Errorf("the server's device list of %s: %w", c.prof.User, err)
	}
	return c.home.SaveOwnDeviceList(dl.SignedList)
}

// currentList is the account's newest verified list: the home's or the
// server's, whichever has the higher sequence number. A server's list that
// does not verify is refused, not ignored: the account's devices cannot
// be known.
func (c *Client) currentList(ctx context.Context) (*e2ee.DeviceList, []byte, error) {
	if c.keys == nil {
		return nil, nil, ErrNotLinked
	}
	mine, err := c.home.OwnDeviceList()
	if err != nil {
		return nil, nil, err
	}
	local, err := c.verifiedList(mine)
	if err != nil {
		return nil, nil, fmt.Errorf("this home's device list: %w", err)
	}
	dl, err := c.DeviceList(ctx, c.prof.User)
	if err != nil {
		return nil, nil, err
	}
	server, err := c.verifiedList(dl.SignedList)
	if err != nil {
		return nil, nil, fmt.Errorf("the server's device list of %s: %w", c.prof.User, err)
	}
	switch {
	case server != nil && (local == nil || server.Seq > local.Seq):
		if err := c.home.SaveOwnDeviceList(dl.SignedList); err != nil {
			return nil, nil, err
		}
		return server, dl.SignedList, nil
	case local != nil:
		return local, mine, nil
	}
	return nil, nil, errors.New("the account has no device list yet: connect again to publish it")
}

// LinkCandidate is a device waiting to be linked, as FindLink found it
// and its code checked.
type LinkCandidate struct {
	Code    string // as the new device shows it
	Device  uint32 // the id the server keeps for it
	Name    string // the name it gave itself
	Started time.Time
	key     ed25519.PublicKey
	linkKey []byte
}

// FindLink finds the device waiting with code on this account and checks
// that the keys the server gives for it are the ones the code commits to
// (ErrLinkMismatch otherwise).
func (c *Client) FindDevice(ctx context.Context, code string) (*LinkCandidate, error) {
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	typed, err := e2ee.NormalizeLinkCode(code)
	if err != nil {
		return nil, err
	}
	info, err := c.FindLink(ctx, typed)
	if err != nil {
		return nil, err
	}
	if e2ee.LinkCode(c.prof.User, info.DeviceKey, info.LinkKey) != typed {
		return nil, ErrLinkMismatch
	}
	return &LinkCandidate{Code: typed, Device: info.Device, Name: info.DeviceName, Started: time.UnixMilli(info.Started), key: ed25519.PublicKey(info.DeviceKey), linkKey: info.LinkKey}, nil
}

// Approve links the candidate: the account's next list names it, the
// identity and the list are sealed to its link key, and the server adds
// it and hands it the sealed message. The home keeps the new list.
//
// With hist, this home's history goes to the new device first (history.go).
func (c *Client) Approve(ctx context.Context, cand *LinkCandidate, hist *HistoryOptions) error {
	var archive *ArchiveRef
	if hist != nil {
		var err error
		if archive, _, err = c.sendHistory(ctx, cand.Device, hist); err != nil {
			return err
		}
	}
	cur, _, err := c.currentList(ctx)
	if err != nil {
		return err
	}
	devices := append([]e2ee.DeviceListEntry(nil), cur.Devices...)
	devices = append(devices, entryFor(cand.Device, cand.key, c.now()))
	b, _, err := c.signList(cur.Seq+1, devices)
	if err != nil {
		return err
	}
	plain := transport.Marshal(&LinkMessage{Identity: c.keys.IdentityPrivateKey(), DeviceList: b, Archive: archive})
	sealed, err := e2ee.SealLink(c.rand, cand.linkKey, plain)
	clear(plain)
	if err != nil {
		return err
	}
	if err := c.ApproveLink(ctx, cand.Code, cand.Device, b, sealed); err != nil {
		return err
	}
	return c.home.SaveOwnDeviceList(b)
}

// Revoke removes device from the account: the next list without it, then
// the server's RevokeDevice. This device cannot (ErrRevokeSelf).
func (c *Client) Revoke(ctx context.Context, device uint32) error {
	if device == c.prof.Device {
		return ErrRevokeSelf
	}
	cur, _, err := c.currentList(ctx)
	if err != nil {
		return err
	}
	var devices []e2ee.DeviceListEntry
	for _, d := range cur.Devices {
		if d.Device != device {
			devices = append(devices, d)
		}
	}
	b, _, err := c.signList(cur.Seq+1, devices)
	if err != nil {
		return err
	}
	if err := c.RevokeDevice(ctx, device, b); err != nil {
		return err
	}
	return c.home.SaveOwnDeviceList(b)
}

// DeviceStatus is one device of the account as devices list shows it.
type DeviceStatus struct {
	ID       uint32
	Name     string
	Added    time.Time
	LastSeen time.Time
	This     bool // this device
	// Linked: the account's signed list names it; a device added with
	// login is not, and nothing is encrypted to it.
	Linked bool
}

// AccountDevices lists the account's devices: those the signed list names, and
// the server's others (added with login, not linked), in id order.
func (c *Client) AccountDevices(ctx context.Context) ([]DeviceStatus, error) {
	var list *e2ee.DeviceList
	if c.keys != nil {
		var err error
		if list, _, err = c.currentList(ctx); err != nil {
			return nil, err
		}
	}
	var recs transport.AccountDeviceList
	if err := c.request(ctx, transport.CodeAccountDevices, &transport.Empty{}, transport.CodeAccountList, &recs); err != nil {
		return nil, err
	}
	var out []DeviceStatus
	for _, r := range recs.Devices {
		s := DeviceStatus{ID: r.ID, Name: r.Name, Added: time.UnixMilli(r.Added), LastSeen: time.UnixMilli(r.LastSeen), This: r.ID == c.prof.Device}
		if list != nil {
			e, ok := list.Lookup(r.ID)
			s.Linked = ok && bytes.Equal(e.AuthKey[:], r.Key)
		}
		out = append(out, s)
	}
	return out, nil
}

// RenameDevice sets the name the server records for a device of the
// account.
func (c *Client) RenameDevice(ctx context.Context, device uint32, name string) error {
	return c.request(ctx, transport.CodeRenameDevice, &transport.RenameDevice{Device: device, Name: name}, transport.CodeOK, &transport.Empty{})
}

// NewLink is a new device about to be linked: its keys and the code it
// shows, until Start.
type NewLink struct {
	User string
	Code string // e2ee.LinkCode of the user and the keys
	priv ed25519.PrivateKey
	link *ecdh.PrivateKey
	rand io.Reader
	// Archive is where the history the approving device sent waits
	// (Finish sets it; nil: none was sent): ReceiveHistory fetches it.
	Archive *ArchiveRef
}

// PrepareLink makes a new device's Ed25519 device key and X25519 link key
// for user (rand nil: crypto/rand).
func PrepareLink(user string, rand io.Reader) (*NewLink, error) {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	lk, err := e2ee.NewLinkKey(rand)
	if err != nil {
		return nil, err
	}
	return &NewLink{User: user, Code: e2ee.LinkCode(user, pub, lk.PublicKey().Bytes()), priv: priv, link: lk, rand: rand}, nil
}

// Start sends LinkStart to server (pin zero: trust on first use).
func (n *NewLink) Start(ctx context.Context, server string, pin transport.Fingerprint, name string) (*LinkWait, error) {
	return StartLink(ctx, server, pin, n.User, name, n.priv, n.link.PublicKey().Bytes())
}

// Finish makes the linked device in h from the approval a: it opens the
// sealed message, checks that its list verifies under the identity it
// carries and names this device under its key, makes the device's keys
// under that identity, and saves the profile and the list. server and pin
// are what the link connected to. The caller then connects, which
// publishes the keys.
func (n *NewLink) Finish(h *home.Home, server string, pin transport.Fingerprint, a transport.LinkApproved) (*home.Profile, error) {
	plain, err := e2ee.OpenLink(n.link, a.Sealed)
	if err != nil {
		return nil, fmt.Errorf("the approval does not open with this device's link key: %w", err)
	}
	var m LinkMessage
	err = transport.Unmarshal(plain, &m)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("the approval is not a link message: %w", err)
	}
	l, err := e2ee.ParseDeviceList(m.DeviceList)
	if err != nil {
		return nil, err
	}
	if err := l.Verify(m.Identity.Public(), n.User); err != nil {
		return nil, err
	}
	pub := n.priv.Public().(ed25519.PublicKey)
	if e, ok := l.Lookup(a.Device); !ok || !bytes.Equal(e.AuthKey[:], pub) {
		return nil, fmt.Errorf("the approval's device list does not name this device (%d) under its key: not linked", a.Device)
	}
	keys, err := e2ee.NewDeviceKeys(n.rand, m.Identity, e2ee.DeviceInfo{User: n.User, DeviceID: a.Device, AuthKey: pub}, time.Now(), oneTimeTarget, oneTimeTarget)
	if err != nil {
		return nil, err
	}
	kb, err := keys.MarshalBinary()
	if err != nil {
		return nil, err
	}
	prof := &home.Profile{Server: server, Fingerprint: pin, User: n.User, Device: a.Device, DeviceKey: n.priv, Keys: kb}
	err = h.Update(func(tx *home.Tx) error {
		if err := tx.PutProfile(prof); err != nil {
			return err
		}
		if m.Archive != nil {
			// Kept until fetched (ResumeHistory): a fetch cut short is
			// tried again, not lost with the key.
			if err := tx.PutPendingHistory(transport.Marshal(m.Archive)); err != nil {
				return err
			}
		}
		return tx.PutOwnDeviceList(m.DeviceList)
	})
	if err != nil {
		return nil, err
	}
	n.Archive = m.Archive
	return prof, nil
}

// The engine's device commands, for `securechat devices` and the terminal
// client's /devices: each needs the engine connected.

// FindDevice: Client.FindDevice.
func (e *Engine) FindDevice(ctx context.Context, code string) (*LinkCandidate, error) {
	c, err := e.connected()
	if err != nil {
		return nil, err
	}
	return c.FindDevice(ctx, code)
}

// ApproveDevice: Client.Approve.
func (e *Engine) ApproveDevice(ctx context.Context, cand *LinkCandidate, hist *HistoryOptions) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	return c.Approve(ctx, cand, hist)
}

// AccountDevices: Client.AccountDevices.
func (e *Engine) AccountDevices(ctx context.Context) ([]DeviceStatus, error) {
	c, err := e.connected()
	if err != nil {
		return nil, err
	}
	return c.AccountDevices(ctx)
}

// RenameDevice: Client.RenameDevice.
func (e *Engine) RenameDevice(ctx context.Context, device uint32, name string) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	return c.RenameDevice(ctx, device, name)
}

// RevokeDevice: Client.Revoke.
func (e *Engine) RevokeDevice(ctx context.Context, device uint32) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	return c.Revoke(ctx, device)
}
