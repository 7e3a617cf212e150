package e2ee

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Signed device lists (docs/protocol.md §9.8). An account's devices are
// the ones its identity key lists: the list names each linked device by
// its id and its Ed25519 auth (device) key, carries a sequence number
// that grows with every change, and is signed by the account identity,
// which every linked device holds. A contact's client encrypts only to
// devices of the newest list it has verified and never takes one with a
// lower sequence number, so the server can neither add a device of its
// own nor bring back a revoked one by replaying an older list.

const (
	// MaxDeviceListSize bounds an encoded device list.
	MaxDeviceListSize = 4096
	// maxDeviceListDevices is the most devices a list names (an account's
	// bound, transport.MaxDevices).
	maxDeviceListDevices = 64

	deviceListVersion = 1
	deviceListContext = "securechat device list v1"
	maxDeviceListUser = 64
)

// ErrDeviceList reports a device list that is malformed, not signed by
// the identity it is checked against, or for another account.
var ErrDeviceList = errors.New("e2ee: device list refused")

// DeviceListEntry is one linked device.
type DeviceListEntry struct {
	Device  uint32   // the device id, never 0
	AuthKey [32]byte // its Ed25519 device key (protocol.md §5)
	Added   int64    // unix ms, as the signer's clock said: shown, not trusted
}

// DeviceList is an account's signed list of linked devices.
type DeviceList struct {
	User    string // the account's canonical name
	Seq     uint64 // 1 for the first list, then one more with each change
	Time    int64  // unix ms of signing, as the signer's clock said
	Devices []DeviceListEntry
	// Signature is the identity key's Ed25519 signature over
	// deviceListContext ‖ body.
	Signature []byte
}

// body is the list's encoding without its signature:
//
//	u8 1 ‖ u8 len ‖ user ‖ u64 seq ‖ i64 time ‖ u8 n ‖ n × (u32 device ‖ auth key[32] ‖ i64 added)
func (l *DeviceList) body() []byte {
	e := &keyEncoder{}
	e.u8(deviceListVersion)
	e.str8(l.User)
	e.i64(int64(l.Seq))
	e.i64(l.Time)
	e.u8(byte(len(l.Devices)))
	for _, d := range l.Devices {
		e.u32(d.Device)
		e.raw(d.AuthKey[:])
		e.i64(d.Added)
	}
	return e.b
}

// checkShape checks what a list must be whatever signed it: a user name,
// a sequence number, 1 to 64 devices in ascending order of id, none 0.
func (l *DeviceList) checkShape() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrDeviceList, fmt.Sprintf(format, args...))
	}
	switch {
	case l.User == "" || len(l.User) > maxDeviceListUser || !utf8.ValidString(l.User):
		return bad("user %q", l.User)
	case l.Seq == 0:
		return bad("sequence number 0")
	case len(l.Devices) == 0 || len(l.Devices) > maxDeviceListDevices:
		return bad("%d devices", len(l.Devices))
	}
	for i, d := range l.Devices {
		if d.Device == 0 {
			return bad("device id 0")
		}
		if i > 0 && l.Devices[i-1].Device >= d.Device {
			return bad("devices not in ascending order of id")
		}
		if d.AuthKey == [32]byte{} {
			return bad("device %d without a key", d.Device)
		}
	}
	return nil
}

// SignDeviceList sorts l's devices by id and signs l with the account's
// identity key.
func SignDeviceList(l *DeviceList, id IdentityPrivateKey) error {
	l.Devices = slices.Clone(l.Devices)
	slices.SortFunc(l.Devices, func(a, b DeviceListEntry) int { return cmp.Compare(a.Device, b.Device) })
	if err := l.checkShape(); err != nil {
		return err
	}
	sig, err := id.sign(append([]byte(deviceListContext), l.body()...))
	if err != nil {
		return err
	}
	l.Signature = sig
	return nil
}

// MarshalBinary is the list as it travels: body ‖ signature[64].
func (l *DeviceList) MarshalBinary() ([]byte, error) {
	if err := l.checkShape(); err != nil {
		return nil, err
	}
	if len(l.Signature) != signatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrDeviceList)
	}
	return append(l.body(), l.Signature...), nil
}

// ParseDeviceList decodes a list strictly; it checks the shape, not the
// signature (Verify does).
func ParseDeviceList(b []byte) (*DeviceList, error) {
	if len(b) > MaxDeviceListSize {
		return nil, fmt.Errorf("%w: device list: %d bytes", ErrMalformedKeyData, len(b))
	}
	d := &keyDecoder{b: b, what: "device list"}
	if err := d.version(deviceListVersion); err != nil {
		return nil, err
	}
	l := &DeviceList{User: d.str8(), Seq: uint64(d.i64()), Time: d.i64()}
	n := int(d.u8())
	if n > maxDeviceListDevices {
		d.fail("%d devices", n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		e := DeviceListEntry{Device: d.u32()}
		copy(e.AuthKey[:], d.take(32))
		e.Added = d.i64()
		l.Devices = append(l.Devices, e)
	}
	l.Signature = bytes.Clone(d.take(signatureSize))
	if err := d.finish(); err != nil {
		return nil, err
	}
	if err := l.checkShape(); err != nil {
		return nil, err
	}
	return l, nil
}

// Verify checks that l is user's list signed by identity.
func (l *DeviceList) Verify(identity IdentityKey, user string) error {
	if err := l.checkShape(); err != nil {
		return err
	}
	if l.User != user {
		return fmt.Errorf("%w: a list of %q, not of %q", ErrDeviceList, l.User, user)
	}
	if !identity.verify(append([]byte(deviceListContext), l.body()...), l.Signature) {
		return fmt.Errorf("%w: not signed by %s's identity key", ErrDeviceList, user)
	}
	return nil
}

// Lookup returns the entry of a device, if l names it.
func (l *DeviceList) Lookup(device uint32) (DeviceListEntry, bool) {
	i, ok := slices.BinarySearchFunc(l.Devices, device, func(e DeviceListEntry, d uint32) int { return cmp.Compare(e.Device, d) })
	if !ok {
		return DeviceListEntry{}, false
	}
	return l.Devices[i], true
}
