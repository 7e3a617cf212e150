package client

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/securechat/securechat/transport"
)

// The requests of linking a device and of the account's signed device
// list (protocol.md §5.4): what the new device sends before it has an
// account device (StartLink, LinkWait), and what a device of the account
// sends (FindLink, ApproveLink, PublishDeviceList, RevokeDevice,
// DeviceList). They carry what e2ee makes (the signed list, the sealed
// answer) and check none of it: the caller verifies.

// LinkWait is a new device's connection, waiting for a device of its
// account to approve it.
type LinkWait struct {
	c *Client
	// Expires is when the server forgets the link (its clock).
	Expires time.Time
	// Fingerprint is the server key the connection saw (to pin).
	Fingerprint transport.Fingerprint
}

// StartLink connects to server, whose key must be pin (zero: trust on
// first use, Fingerprint tells what was seen), and asks it to hold a link
// for a new device of user: deviceKey is the new device's Ed25519 key,
// linkKey the X25519 public key the answer is sealed to. The code to show
// is e2ee.LinkCode(user, device key, linkKey); the server never picks it.
func StartLink(ctx context.Context, server string, pin transport.Fingerprint, user, deviceName string, deviceKey ed25519.PrivateKey, linkKey []byte) (*LinkWait, error) {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return nil, err
	}
	p := &transport.Pinner{Pin: pin}
	c, err := dial(ctx, nil, server, p, Options{HandshakeTimeout: transport.QuickHandshakeTimeout})
	if err != nil {
		return nil, err
	}
	req := &transport.LinkStart{
		User:       user,
		DeviceKey:  deviceKey.Public().(ed25519.PublicKey),
		LinkKey:    linkKey,
		DeviceName: deviceName,
		Signature:  ed25519.Sign(deviceKey, transport.LinkStartTranscript(user, linkKey)),
	}
	var started transport.LinkStarted
	if err := c.request(ctx, transport.CodeLinkStart, req, transport.CodeLinkStarted, &started); err != nil {
		c.Close()
		return nil, err
	}
	return &LinkWait{c: c, Expires: time.UnixMilli(started.Expires), Fingerprint: p.Seen()}, nil
}

// Wait returns the approval — the device id the new device has and what
// the approving device sealed to the link key — once it comes, or why the
// link ended: the connection closed (the link expired, the server went:
// a *ServerClosedError with the server's reason) or ctx.
func (w *LinkWait) Wait(ctx context.Context) (transport.LinkApproved, error) {
	select {
	case a := <-w.c.linkApproved:
		return a, nil
	case <-w.c.done:
		select {
		case a := <-w.c.linkApproved: // came just before the close
			return a, nil
		default:
		}
		return transport.LinkApproved{}, w.c.closedErr(nil)
	case <-ctx.Done():
		return transport.LinkApproved{}, ctx.Err()
	}
}

// Close ends the waiting connection; the server forgets the link.
func (w *LinkWait) Close() error { return w.c.Close() }

// FindLink asks for the device waiting with code on this account: its
// keys, its name and the id the server keeps for it. A code no device of
// this account waits with is a *transport.Error (ErrNoSuchUser).
func (c *Client) FindLink(ctx context.Context, code string) (transport.LinkInfo, error) {
	var info transport.LinkInfo
	err := c.request(ctx, transport.CodeLinkFind, &transport.LinkFind{Code: code}, transport.CodeLinkInfo, &info)
	return info, err
}

// ApproveLink adds the device waiting with code as device, with list (the
// account's new signed device list, naming it) and hands it sealed.
func (c *Client) ApproveLink(ctx context.Context, code string, device uint32, list, sealed []byte) error {
	req := &transport.LinkApprove{Code: code, Device: device, DeviceList: list, Sealed: sealed}
	return c.request(ctx, transport.CodeLinkApprove, req, transport.CodeOK, &transport.Empty{})
}

// PublishDeviceList stores the account's new signed device list, which
// must name this device.
func (c *Client) PublishDeviceList(ctx context.Context, list []byte) error {
	return c.request(ctx, transport.CodePublishDeviceList, &transport.PublishDeviceList{DeviceList: list}, transport.CodeOK, &transport.Empty{})
}

// RevokeDevice removes another device of the account, with list, the
// signed device list without it.
func (c *Client) RevokeDevice(ctx context.Context, device uint32, list []byte) error {
	return c.request(ctx, transport.CodeRevokeDevice, &transport.RevokeDevice{Device: device, DeviceList: list}, transport.CodeOK, &transport.Empty{})
}

// DeviceList asks for user's devices that can receive and the account's
// stored signed device list (SignedList, nil if none), uncached.
func (c *Client) DeviceList(ctx context.Context, user string) (transport.DeviceList, error) {
	var list transport.DeviceList
	err := c.request(ctx, transport.CodeDevices, &transport.DevicesRequest{User: user}, transport.CodeDeviceList, &list)
	return list, err
}
