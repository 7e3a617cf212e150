package transport

// Prekey messages, docs/protocol.md §4 and §9.3. Keys travel as the e2ee
// package's encodings (protocol.md §9.1); this package only bounds them.

// Codes of the prekey messages.
const (
	CodePublishKeys Code = 96  // request: PublishKeys → OK
	CodeFetchKeys   Code = 97  // request: FetchKeys → KeyBundles
	CodeKeyBundles  Code = 98  // response: KeyBundles
	CodeIdentity    Code = 99  // request: DevicesRequest → IdentityKey
	CodeIdentityKey Code = 100 // response: IdentityKey
	CodeKeysLow     Code = 67  // push: KeyCount; top up one-time prekeys
)

func init() {
	codeNames[CodePublishKeys] = "PublishKeys"
	codeNames[CodeFetchKeys] = "FetchKeys"
	codeNames[CodeKeyBundles] = "KeyBundles"
	codeNames[CodeIdentity] = "Identity"
	codeNames[CodeIdentityKey] = "IdentityKey"
	codeNames[CodeKeysLow] = "KeysLow"
}

// Bounds of prekey messages.
const (
	MaxKeyElement    = 2048 // one encoded key element (an ML-KEM-768 prekey is ~1.3 KB)
	MaxOneTimeUpload = 200  // one-time prekeys of each kind in one PublishKeys
	IdentityKeyLen   = 32
)

// PublishKeys uploads a device's public keys (protocol.md §9.3): the
// account identity key, the device certificate, the signed prekey, the
// last-resort ML-KEM prekey, and one-time prekeys of both kinds to add.
type PublishKeys struct {
	Identity      []byte
	Certificate   []byte
	SignedPreKey  []byte
	LastResortKEM []byte
	OneTime       [][]byte
	OneTimeKEM    [][]byte
	Replace       bool // drop the one-time prekeys the server holds first
}

func (m *PublishKeys) MarshalFields(e *Encoder) {
	e.BytesField(1, m.Identity)
	e.BytesField(2, m.Certificate)
	e.BytesField(3, m.SignedPreKey)
	e.BytesField(4, m.LastResortKEM)
	for _, k := range m.OneTime {
		e.BytesField(5, k)
	}
	for _, k := range m.OneTimeKEM {
		e.BytesField(6, k)
	}
	e.Bool(7, m.Replace)
}

func (m *PublishKeys) UnmarshalFields(d *Decoder) error {
	err := ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Identity, err = f.Fixed(IdentityKeyLen)
		case 2:
			m.Certificate, err = f.Bytes(MaxKeyElement)
		case 3:
			m.SignedPreKey, err = f.Bytes(MaxKeyElement)
		case 4:
			m.LastResortKEM, err = f.Bytes(MaxKeyElement)
		case 5, 6:
			list := &m.OneTime
			if f.Num == 6 {
				list = &m.OneTimeKEM
			}
			if len(*list) >= MaxOneTimeUpload {
				return errorf("more than %d one-time prekeys", MaxOneTimeUpload)
			}
			var k []byte
			k, err = f.Bytes(MaxKeyElement)
			if err == nil && len(k) == 0 {
				return errorf("empty one-time prekey")
			}
			*list = append(*list, k)
		case 7:
			m.Replace, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (m.Identity == nil || m.Certificate == nil || m.SignedPreKey == nil || m.LastResortKEM == nil) {
		err = errorf("missing identity, certificate, signed prekey or last-resort KEM prekey")
	}
	return err
}

// FetchKeys asks for prekey bundles of a user's devices; each fetch uses up
// one one-time prekey of each kind per device while they last.
type FetchKeys struct {
	User    string
	Devices []uint32 // only these devices; empty means all
}

func (m *FetchKeys) MarshalFields(e *Encoder) {
	e.String(1, m.User)
	for _, id := range m.Devices {
		e.Uint(2, uint64(id))
	}
}

func (m *FetchKeys) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(MaxUserName)
		case 2:
			if len(m.Devices) >= MaxDevices {
				return errorf("more than %d devices", MaxDevices)
			}
			var id uint32
			id, err = f.Uint32()
			if err == nil && id == 0 {
				return errorf("device id 0")
			}
			m.Devices = append(m.Devices, id)
		default:
			return f.Unknown()
		}
		return err
	})
}

// KeyBundle is one device's prekey bundle (e2ee encoding).
type KeyBundle struct {
	Device uint32
	Bundle []byte
}

func (m *KeyBundle) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.Device))
	e.BytesField(2, m.Bundle)
}

func (m *KeyBundle) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.Device, err = f.Uint32()
		case 2:
			m.Bundle, err = f.Bytes(4 * MaxKeyElement)
		default:
			return f.Unknown()
		}
		return err
	})
}

// KeyBundles answers FetchKeys.
type KeyBundles struct {
	Bundles []KeyBundle
}

func (m *KeyBundles) MarshalFields(e *Encoder) {
	for i := range m.Bundles {
		e.Message(1, &m.Bundles[i])
	}
}

func (m *KeyBundles) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) error {
		if f.Num != 1 {
			return f.Unknown()
		}
		if len(m.Bundles) >= MaxDevices {
			return errorf("more than %d bundles", MaxDevices)
		}
		var b KeyBundle
		err := f.Message(&b)
		m.Bundles = append(m.Bundles, b)
		return err
	})
}

// IdentityKey answers Identity: a user's account identity key.
type IdentityKey struct {
	Key []byte
}

func (m *IdentityKey) MarshalFields(e *Encoder) { e.BytesField(1, m.Key) }

func (m *IdentityKey) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		if f.Num == 1 {
			m.Key, err = f.Fixed(IdentityKeyLen)
			return err
		}
		return f.Unknown()
	})
}

// KeyCount tells a device how many one-time prekeys the server still holds
// for it (in Welcome and in a KeysLow push).
type KeyCount struct {
	OneTime    uint32
	OneTimeKEM uint32
	Published  bool // the device has published keys at all
}

func (m *KeyCount) MarshalFields(e *Encoder) {
	e.Uint(1, uint64(m.OneTime))
	e.Uint(2, uint64(m.OneTimeKEM))
	e.Bool(3, m.Published)
}

func (m *KeyCount) UnmarshalFields(d *Decoder) error {
	return ForEachField(d, func(f Field) (err error) {
		switch f.Num {
		case 1:
			m.OneTime, err = f.Uint32()
		case 2:
			m.OneTimeKEM, err = f.Uint32()
		case 3:
			m.Published, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}
