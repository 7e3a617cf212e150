package transport

// The account's own devices as the server records them, and their names
// (protocol.md §5.4, "Devices of one's own account"): what `securechat
// devices list` shows beside the signed list — every device the server
// holds for the account, linked or added with Login, with its name, when
// it was added and last seen — and `devices rename`.

// Codes of the account-devices messages.
const (
	CodeAccountDevices Code = 39 // request, no body: AccountDevices → AccountDeviceList
	CodeAccountList    Code = 40 // response: AccountDeviceList
	CodeRenameDevice   Code = 41 // request: RenameDevice → OK
)

func init() {
	codeNames[CodeAccountDevices] = "AccountDevices"
	codeNames[CodeAccountList] = "AccountDeviceList"
	codeNames[CodeRenameDevice] = "RenameDevice"
}

// AccountDevice is one device of the requester's account as the server
// records it.
type AccountDevice struct {
	ID       uint32
	Key      []byte // its Ed25519 device key
	Name     string
	Added    int64 // unix ms
	LastSeen int64 // unix ms
}

func (m *AccountDevice) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.ID))
	e.BytesField(2, m.Key)
	e.String(3, m.Name)
	e.Int(4, m.Added)
	e.Int(5, m.LastSeen)
}

func (m *AccountDevice) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.ID, err = f.Uint32()
		case 2:
			m.Key, err = f.Fixed(KeyLen)
		case 3:
			m.Name, err = f.String(MaxText)
		case 4:
			m.Added, err = f.Int()
		case 5:
			m.LastSeen, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.ID == 0 || m.Key == nil) {
		err = errorf("missing device or key")
	}
	return err
}

// AccountDeviceList answers AccountDevices: every device of the account,
// in id order.
type AccountDeviceList struct {
	Devices []AccountDevice
}

func (m *AccountDeviceList) MarshalFields(e *Encoder) {
	for i := range m.Devices {
		e.Message(1, &m.Devices[i])
	}
}

func (m *AccountDeviceList) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) error {
		if f.Num != 1 {
			return f.Unknown()
		}
		if len(m.Devices) >= MaxDevices {
			return errorf("too many devices")
		}
		var ad AccountDevice
		if err := f.Message(&ad); err != nil {
			return err
		}
		m.Devices = append(m.Devices, ad)
		return nil
	})
}

// RenameDevice sets the name the server records for a device of the
// requester's account.
type RenameDevice struct {
	Device uint32
	Name   string
}

func (m *RenameDevice) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.Device))
	e.String(2, m.Name)
}

func (m *RenameDevice) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Device, err = f.Uint32()
		case 2:
			m.Name, err = f.String(MaxText)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Device == 0 || m.Name == "") {
		err = errorf("missing device or name")
	}
	return err
}
