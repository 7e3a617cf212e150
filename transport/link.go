package transport

import "github.com/quic-go/quic-go"

// Linking a device and the account's signed device list, protocol.md §5.4.
// The server relays the keys and the sealed answer and stores the list;
// the list's signature and the code's check are the clients' (e2ee).

// Codes of the linking and device-list messages.
const (
	CodeLinkStart         Code = 22 // request, before authentication: LinkStart → LinkStarted
	CodeLinkStarted       Code = 23 // response: LinkStarted
	CodeLinkFind          Code = 34 // request: LinkFind → LinkInfo
	CodeLinkInfo          Code = 35 // response: LinkInfo
	CodeLinkApprove       Code = 36 // request: LinkApprove → OK
	CodePublishDeviceList Code = 37 // request: PublishDeviceList → OK
	CodeRevokeDevice      Code = 38 // request: RevokeDevice → OK
	CodeLinkApproved      Code = 69 // push to the waiting new device: LinkApproved
)

// CloseRevoked closes the connections of a device removed from its
// account (protocol.md §2.3).
const CloseRevoked quic.ApplicationErrorCode = 9

func init() {
	codeNames[CodeLinkStart] = "LinkStart"
	codeNames[CodeLinkStarted] = "LinkStarted"
	codeNames[CodeLinkFind] = "LinkFind"
	codeNames[CodeLinkInfo] = "LinkInfo"
	codeNames[CodeLinkApprove] = "LinkApprove"
	codeNames[CodePublishDeviceList] = "PublishDeviceList"
	codeNames[CodeRevokeDevice] = "RevokeDevice"
	codeNames[CodeLinkApproved] = "LinkApproved"
}

// Bounds of the linking messages (the e2ee encodings' own bounds: the
// transport does not import e2ee).
const (
	// MaxDeviceList bounds a signed device list (e2ee.MaxDeviceListSize).
	MaxDeviceList = 4096
	// MaxLinkSealed bounds the sealed answer to a new device (e2ee.MaxLinkSealed).
	MaxLinkSealed = 64 << 10
	// MaxLinkCode bounds a link code as typed: 12 characters with
	// dashes or spaces between them.
	MaxLinkCode = 64
)

// linkStartContext is what a LinkStart's signature starts with.
const linkStartContext = "securechat link start v1"

// LinkStartTranscript is what a new device's key signs in LinkStart:
// "securechat link start v1" ‖ u8 len ‖ user ‖ link key. It proves that
// the device holds the key it asks to be linked with.
func LinkStartTranscript(user string, linkKey []byte) []byte {
	b := make([]byte, 0, len(linkStartContext)+1+len(user)+len(linkKey))
	b = append(b, linkStartContext...)
	b = append(b, byte(len(user)))
	b = append(b, user...)
	return append(b, linkKey...)
}

// LinkStart asks, before authentication, to link a new device to an
// account: the connection then waits for LinkApproved.
type LinkStart struct {
	User       string
	DeviceKey  []byte // the new device's Ed25519 device key
	LinkKey    []byte // X25519: the answer is sealed to it
	DeviceName string
	Signature  []byte // DeviceKey's over LinkStartTranscript
}

func (m *LinkStart) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	e.BytesField(2, m.DeviceKey)
	e.BytesField(3, m.LinkKey)
	e.String(4, m.DeviceName)
	e.BytesField(5, m.Signature)
}

func (m *LinkStart) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			m.DeviceKey, err = f.Fixed(KeyLen)
		case 3:
			m.LinkKey, err = f.Fixed(KeyLen)
		case 4:
			m.DeviceName, err = f.String(MaxText)
		case 5:
			m.Signature, err = f.Fixed(SigLen)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.DeviceKey == nil || m.LinkKey == nil || m.Signature == nil) {
		err = errorf("missing device key, link key or signature")
	}
	return err
}

// LinkStarted answers LinkStart: the link waits until Expires (unix ms).
type LinkStarted struct {
	Expires int64
}

func (m *LinkStarted) MarshalFields(e *Encoder) { e.Int(1, m.Expires) }

func (m *LinkStarted) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.Expires, err = f.Int()
			return err
		}
		return f.Unknown()
	})
}

// LinkFind asks for the device waiting with a code, on the asker's account.
type LinkFind struct {
	Code string
}

func (m *LinkFind) MarshalFields(e *Encoder) { e.String(1, m.Code) }

func (m *LinkFind) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.Code, err = f.String(MaxLinkCode)
			return err
		}
		return f.Unknown()
	})
	if err == nil && m.Code == "" {
		err = errorf("missing code")
	}
	return err
}

// LinkInfo answers LinkFind: the waiting device's keys and name, and the
// device id the server keeps for it.
type LinkInfo struct {
	Device     uint32
	DeviceKey  []byte
	LinkKey    []byte
	DeviceName string
	Started    int64 // unix ms
}

func (m *LinkInfo) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.Device))
	e.BytesField(2, m.DeviceKey)
	e.BytesField(3, m.LinkKey)
	e.String(4, m.DeviceName)
	e.Int(5, m.Started)
}

func (m *LinkInfo) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Device, err = f.Uint32()
		case 2:
			m.DeviceKey, err = f.Fixed(KeyLen)
		case 3:
			m.LinkKey, err = f.Fixed(KeyLen)
		case 4:
			m.DeviceName, err = f.String(MaxText)
		case 5:
			m.Started, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Device == 0 || m.DeviceKey == nil || m.LinkKey == nil) {
		err = errorf("missing device, device key or link key")
	}
	return err
}

// LinkApprove adds the device waiting with Code as Device, stores the
// account's new signed list, and hands the new device Sealed.
type LinkApprove struct {
	Code       string
	Device     uint32
	DeviceList []byte // the signed list naming the new device
	Sealed     []byte // sealed to the new device's link key
}

func (m *LinkApprove) MarshalFields(e *Encoder) {
	e.String(1, m.Code)
	e.Uint(2, uint64(m.Device))
	e.BytesField(3, m.DeviceList)
	e.BytesField(4, m.Sealed)
}

func (m *LinkApprove) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Code, err = f.String(MaxLinkCode)
		case 2:
			m.Device, err = f.Uint32()
		case 3:
			m.DeviceList, err = f.Bytes(MaxDeviceList)
		case 4:
			m.Sealed, err = f.Bytes(MaxLinkSealed)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Code == "" || m.Device == 0 || m.DeviceList == nil || m.Sealed == nil) {
		err = errorf("missing code, device, device list or sealed answer")
	}
	return err
}

// PublishDeviceList stores the account's new signed device list.
type PublishDeviceList struct {
	DeviceList []byte
}

func (m *PublishDeviceList) MarshalFields(e *Encoder) { e.BytesField(1, m.DeviceList) }

func (m *PublishDeviceList) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.DeviceList, err = f.Bytes(MaxDeviceList)
			return err
		}
		return f.Unknown()
	})
	if err == nil && m.DeviceList == nil {
		err = errorf("missing device list")
	}
	return err
}

// RevokeDevice removes a device of the account and stores the signed list
// without it.
type RevokeDevice struct {
	Device     uint32
	DeviceList []byte
}

func (m *RevokeDevice) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.Device))
	e.BytesField(2, m.DeviceList)
}

func (m *RevokeDevice) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Device, err = f.Uint32()
		case 2:
			m.DeviceList, err = f.Bytes(MaxDeviceList)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Device == 0 || m.DeviceList == nil) {
		err = errorf("missing device or device list")
	}
	return err
}

// LinkApproved is pushed to the waiting new device: its device id and
// what the approving device sealed to its link key.
type LinkApproved struct {
	Device uint32
	Sealed []byte
}

func (m *LinkApproved) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.Device))
	e.BytesField(2, m.Sealed)
}

func (m *LinkApproved) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Device, err = f.Uint32()
		case 2:
			m.Sealed, err = f.Bytes(MaxLinkSealed)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Device == 0 || m.Sealed == nil) {
		err = errorf("missing device or sealed answer")
	}
	return err
}
