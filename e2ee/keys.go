package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	cryptorand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Sizes of keys, signatures and KEM values, in bytes.
const (
	// IdentityKeySize is the size of an account identity (Ed25519) public key.
	IdentityKeySize = ed25519.PublicKeySize

	x25519KeySize     = 32
	signatureSize     = ed25519.SignatureSize
	kemPublicKeySize  = mlkem.EncapsulationKeySize768
	kemCiphertextSize = mlkem.CiphertextSize768
	kemSeedSize       = mlkem.SeedSize
)

// Typed text encodings: a key of one role does not parse as another.
const (
	identityKeyTextPrefix = "idkey:"
)

// identityPrivateKeyVersion is the first byte of IdentityPrivateKey's binary
// encoding (protocol.md §9).
const identityPrivateKeyVersion byte = 1

// IdentityKey is an account's public identity key (Ed25519). It signs every
// device certificate and prekey of the account (PQXDH §2.4: IK). The zero
// value is unset; IdentityKeys are not comparable with ==: use Equal.
type IdentityKey struct {
	_ [0]func() // not comparable with ==: use Equal, which is constant-time
	k [IdentityKeySize]byte
}

// ParseIdentityKey parses the 32 bytes of an Ed25519 public key, as returned by
// Bytes. The all-zero key is refused.
func ParseIdentityKey(b []byte) (IdentityKey, error) {
	var k IdentityKey
	if len(b) != IdentityKeySize {
		return k, fmt.Errorf("%w: identity key must be %d bytes, got %d", ErrMalformedKeyData, IdentityKeySize, len(b))
	}
	copy(k.k[:], b)
	if k.IsZero() {
		return IdentityKey{}, fmt.Errorf("%w: identity key is zero", ErrMalformedKeyData)
	}
	return k, nil
}

// Bytes returns a copy of the 32 key bytes.
func (k IdentityKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// IsZero reports whether k is unset.
func (k IdentityKey) IsZero() bool { return k.k == [IdentityKeySize]byte{} }

// Equal reports whether k and o are the same key, in constant time.
func (k IdentityKey) Equal(o IdentityKey) bool {
	return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1
}

// String is the text encoding, "idkey:" and 64 lowercase hex digits.
func (k IdentityKey) String() string { return identityKeyTextPrefix + hex.EncodeToString(k.k[:]) }

// MarshalText implements encoding.TextMarshaler with the String form.
func (k IdentityKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts only the
// String form.
func (k *IdentityKey) UnmarshalText(text []byte) error {
	s, ok := strings.CutPrefix(string(text), identityKeyTextPrefix)
	if !ok {
		return fmt.Errorf("%w: identity key text must start with %q", ErrMalformedKeyData, identityKeyTextPrefix)
	}
	if len(s) != 2*IdentityKeySize {
		return fmt.Errorf("%w: identity key text must have %d hex digits", ErrMalformedKeyData, 2*IdentityKeySize)
	}
	var b [IdentityKeySize]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil || s != hex.EncodeToString(b[:]) {
		return fmt.Errorf("%w: identity key text is not lowercase hex", ErrMalformedKeyData)
	}
	parsed, err := ParseIdentityKey(b[:])
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// verify checks an Ed25519 signature by k over msg. Go's ed25519.Verify
// rejects non-canonical signatures, so no flipped bit of sig verifies.
func (k IdentityKey) verify(msg, sig []byte) bool {
	if k.IsZero() || len(sig) != signatureSize {
		return false
	}
	return ed25519.Verify(k.k[:], msg, sig)
}

// IdentityPrivateKey is an account's private identity key. Every device of the
// account holds it, since it signs the device's certificate and each prekey the
// device rotates in. The zero value is unset. It has no text encoding, so it
// cannot end up in a log or a JSON document by accident; String is redacted.
type IdentityPrivateKey struct {
	_    [0]func() // not comparable with ==: use Equal, which is constant-time
	priv ed25519.PrivateKey
}

// GenerateIdentityKey makes a new account identity from 32 bytes of rand (nil
// means crypto/rand).
func GenerateIdentityKey(rand io.Reader) (IdentityPrivateKey, error) {
	seed, err := readSecret(rand, ed25519.SeedSize)
	if err != nil {
		return IdentityPrivateKey{}, err
	}
	defer clear(seed)
	return IdentityPrivateKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the public identity key; the zero IdentityKey when k is unset.
func (k IdentityPrivateKey) Public() IdentityKey {
	var pub IdentityKey
	if !k.IsZero() {
		copy(pub.k[:], k.priv[ed25519.SeedSize:])
	}
	return pub
}

// IsZero reports whether k is unset.
func (k IdentityPrivateKey) IsZero() bool { return len(k.priv) != ed25519.PrivateKeySize }

// Equal reports whether k and o are the same key, in constant time.
func (k IdentityPrivateKey) Equal(o IdentityPrivateKey) bool {
	return subtle.ConstantTimeCompare(k.priv, o.priv) == 1
}

// String never shows the key.
func (k IdentityPrivateKey) String() string { return "idpriv:[redacted]" }

// MarshalBinary encodes the key for storage: version 1, then the 32-byte
// Ed25519 seed (protocol.md §9).
func (k IdentityPrivateKey) MarshalBinary() ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("%w: identity private key is unset", ErrInvalidArgument)
	}
	return append([]byte{identityPrivateKeyVersion}, k.priv.Seed()...), nil
}

// UnmarshalBinary is the inverse of MarshalBinary.
func (k *IdentityPrivateKey) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "identity private key"}
	if err := d.version(identityPrivateKeyVersion); err != nil {
		return err
	}
	seed := d.take(ed25519.SeedSize)
	if err := d.finish(); err != nil {
		return err
	}
	k.priv = ed25519.NewKeyFromSeed(seed)
	return nil
}

// sign makes an Ed25519 signature over msg, a domain-separated transcript
// (bundle.go).
func (k IdentityPrivateKey) sign(msg []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("%w: identity private key is unset", ErrInvalidArgument)
	}
	return ed25519.Sign(k.priv, msg), nil
}

// readSecret reads n bytes from rand, crypto/rand when rand is nil (as
// crypto/tls's Config.Rand). The caller clears them when done.
func readSecret(rand io.Reader, n int) ([]byte, error) {
	rand = randOrDefault(rand)
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("e2ee: reading randomness: %w", err)
	}
	return b, nil
}

// randOrDefault is rand, or crypto/rand when rand is nil: every function of
// the package that takes a reader treats nil the same way.
func randOrDefault(rand io.Reader) io.Reader {
	if rand == nil {
		return cryptorand.Reader
	}
	return rand
}

// newX25519Key makes an X25519 key pair from 32 bytes of rand. crypto/ecdh's
// own GenerateKey ignores its reader since Go 1.26, so the bytes are read
// here to keep key generation injectable and testable.
func newX25519Key(rand io.Reader) (*ecdh.PrivateKey, error) {
	b, err := readSecret(rand, x25519KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return ecdh.X25519().NewPrivateKey(b)
}

// newKEMKey makes an ML-KEM-768 key pair from a 64-byte seed read from rand
// (FIPS 203 ML-KEM.KeyGen_internal(d, z)).
func newKEMKey(rand io.Reader) (*mlkem.DecapsulationKey768, error) {
	seed, err := readSecret(rand, kemSeedSize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return mlkem.NewDecapsulationKey768(seed)
}

// x25519 is DH(priv, pub) of X3DH §2.2. crypto/ecdh returns an error when the
// output is all zeros, which happens exactly for low-order points (RFC 7748
// §6.1): such a key would make the DH value known to anyone, so the handshake
// stops there.
func x25519(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	if priv == nil || pub == nil {
		return nil, fmt.Errorf("%w: missing X25519 key", ErrInvalidArgument)
	}
	out, err := priv.ECDH(pub)
	if err != nil {
		return nil, ErrLowOrderPoint
	}
	return out, nil
}

// parseX25519Public decodes a 32-byte X25519 public key in canonical form:
// the u-coordinate below p = 2^255-19, top bit clear. RFC 7748 §5 would have
// a receiver mask the top bit and reduce mod p, which gives some keys two or
// three encodings; this package's encoders only ever write the canonical one,
// so its decoders accept only that, and no altered bit of a key goes
// unnoticed. Low-order points are caught by x25519.
func parseX25519Public(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != x25519KeySize || !x25519Canonical(b) {
		return nil, fmt.Errorf("%w: X25519 public key not in canonical form", ErrMalformedKeyData)
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 public key", ErrMalformedKeyData)
	}
	return pub, nil
}

// x25519Canonical reports whether the little-endian u-coordinate b is below
// p = 2^255 - 19: top bit clear and not one of 2^255-19 … 2^255-1.
func x25519Canonical(b []byte) bool {
	if b[31]&0x80 != 0 {
		return false
	}
	if b[31] != 0x7f || b[0] < 0xed {
		return true
	}
	for _, c := range b[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}

// Bounds on a device's key set, so stored and uploaded key sets stay small.
const (
	// MaxOneTimePreKeys bounds each pool of one-time prekeys (X25519 and
	// ML-KEM) a device holds.
	MaxOneTimePreKeys = 1000
	// MaxRetiredPreKeys bounds how many rotated-out signed prekeys, and how
	// many rotated-out last-resort ML-KEM prekeys, a device keeps for initial
	// messages still in flight.
	MaxRetiredPreKeys = 4
)

// deviceKeysVersion is the first byte of DeviceKeys' storage encoding.
const deviceKeysVersion byte = 1

// signedPreKey is a device's signed X25519 prekey with its private half.
type signedPreKey struct {
	id      uint32
	created int64 // unix milliseconds
	key     *ecdh.PrivateKey
	sig     []byte
}

func (k *signedPreKey) public() SignedPreKeyPublic {
	return SignedPreKeyPublic{ID: k.id, Key: k.key.PublicKey(), Signature: bytes.Clone(k.sig)}
}

// oneTimePreKey is a one-time X25519 prekey with its private half.
type oneTimePreKey struct {
	id  uint32
	key *ecdh.PrivateKey
}

// kemPreKey is a signed ML-KEM-768 prekey with its decapsulation key.
type kemPreKey struct {
	id         uint32
	created    int64 // unix milliseconds
	lastResort bool
	key        *mlkem.DecapsulationKey768
	sig        []byte
}

func (k *kemPreKey) public() KEMPreKeyPublic {
	return KEMPreKeyPublic{ID: k.id, LastResort: k.lastResort, Key: k.key.EncapsulationKey(), Signature: bytes.Clone(k.sig)}
}

// DeviceInfo names a device: what its certificate binds besides the DH key.
type DeviceInfo struct {
	// User is the account's canonical user name.
	User string
	// DeviceID is the device number the server assigned, 1 or more.
	DeviceID uint32
	// AuthKey is the device's Ed25519 login key, 32 bytes.
	AuthKey ed25519.PublicKey
}

// DeviceKeys is one device's private key material (PQXDH §2.4–2.5, §3.2): the
// account identity key, the device certificate and X25519 identity DH key,
// the current and recently retired signed prekeys and last-resort ML-KEM
// prekeys, and the unused one-time X25519 and ML-KEM prekeys. Prekey ids come
// from one counter per device, start at 1 and are never reused, so an old
// initial message can never select a newer key.
//
// A DeviceKeys comes from NewDeviceKeys or ParseDeviceKeys; the zero value
// is not usable. It is not safe for concurrent use. MarshalBinary and
// UnmarshalBinary store and load it; the caller encrypts the bytes at rest.
type DeviceKeys struct {
	identity IdentityPrivateKey
	cert     DeviceCertificate
	dh       *ecdh.PrivateKey
	nextID   uint32 // 0 once the id space is used up

	signed     []*signedPreKey // oldest first; the last is current
	lastResort []*kemPreKey    // oldest first; the last is current
	oneTime    []*oneTimePreKey
	oneTimeKEM []*kemPreKey
}

// NewDeviceKeys makes a device's complete key set: an X25519 identity DH key,
// its certificate signed by identity, a signed prekey, a signed last-resort
// ML-KEM-768 prekey, oneTime one-time X25519 prekeys and oneTimeKEM signed
// one-time ML-KEM-768 prekeys (PQXDH §3.2). now dates the signed prekeys.
// rand nil means crypto/rand.
func NewDeviceKeys(rand io.Reader, identity IdentityPrivateKey, info DeviceInfo, now time.Time, oneTime, oneTimeKEM int) (*DeviceKeys, error) {
	if identity.IsZero() {
		return nil, fmt.Errorf("%w: identity private key is unset", ErrInvalidArgument)
	}
	if oneTime < 0 || oneTimeKEM < 0 || oneTime > MaxOneTimePreKeys || oneTimeKEM > MaxOneTimePreKeys {
		return nil, ErrTooManyPreKeys
	}
	dh, err := newX25519Key(rand)
	if err != nil {
		return nil, err
	}
	cert, err := NewDeviceCertificate(identity, info.User, info.DeviceID, info.AuthKey, dh.PublicKey())
	if err != nil {
		return nil, err
	}
	d := &DeviceKeys{identity: identity, cert: cert, dh: dh, nextID: 1}
	if _, err := d.RotateSignedPreKey(rand, now); err != nil {
		return nil, err
	}
	if _, err := d.RotateLastResortKEMPreKey(rand, now); err != nil {
		return nil, err
	}
	if _, err := d.AddOneTimePreKeys(rand, oneTime); err != nil {
		return nil, err
	}
	if _, err := d.AddOneTimeKEMPreKeys(rand, oneTimeKEM, now); err != nil {
		return nil, err
	}
	return d, nil
}

// IdentityKey returns the account's public identity key.
func (d *DeviceKeys) IdentityKey() IdentityKey { return d.identity.Public() }

// IdentityPrivateKey returns the account's private identity key.
func (d *DeviceKeys) IdentityPrivateKey() IdentityPrivateKey { return d.identity }

// Certificate returns a copy of the device certificate.
func (d *DeviceKeys) Certificate() DeviceCertificate {
	c := d.cert
	c.AuthKey = bytes.Clone(c.AuthKey)
	c.Signature = bytes.Clone(c.Signature)
	return c
}

// SignedPreKeyCreated is when the current signed prekey was made; the client
// rotates it (RotateSignedPreKey) when it is old, e.g. weekly (X3DH §3.2).
func (d *DeviceKeys) SignedPreKeyCreated() time.Time {
	return time.UnixMilli(d.signed[len(d.signed)-1].created)
}

// LastResortKEMPreKeyCreated is when the current last-resort ML-KEM prekey
// was made; it is rotated on the same schedule (PQXDH §3.2).
func (d *DeviceKeys) LastResortKEMPreKeyCreated() time.Time {
	return time.UnixMilli(d.lastResort[len(d.lastResort)-1].created)
}

// OneTimePreKeyCount is the number of unused one-time X25519 prekeys held.
func (d *DeviceKeys) OneTimePreKeyCount() int { return len(d.oneTime) }

// OneTimeKEMPreKeyCount is the number of unused one-time ML-KEM prekeys held.
func (d *DeviceKeys) OneTimeKEMPreKeyCount() int { return len(d.oneTimeKEM) }

// PublicPreKeys returns everything the device publishes (PQXDH §3.2).
func (d *DeviceKeys) PublicPreKeys() *PreKeyUpload {
	u := &PreKeyUpload{
		IdentityKey:         d.IdentityKey(),
		Certificate:         d.Certificate(),
		SignedPreKey:        d.signed[len(d.signed)-1].public(),
		LastResortKEMPreKey: d.lastResort[len(d.lastResort)-1].public(),
	}
	for _, k := range d.oneTime {
		u.OneTimePreKeys = append(u.OneTimePreKeys, OneTimePreKeyPublic{ID: k.id, Key: k.key.PublicKey()})
	}
	for _, k := range d.oneTimeKEM {
		u.OneTimeKEMPreKeys = append(u.OneTimeKEMPreKeys, k.public())
	}
	return u
}

func (d *DeviceKeys) allocID() (uint32, error) {
	if d.nextID == 0 {
		return 0, ErrTooManyPreKeys
	}
	id := d.nextID
	d.nextID++ // wraps to 0 after the last id: no id is ever handed out twice
	return id, nil
}

// RotateSignedPreKey makes a new signed X25519 prekey, signed by the account
// identity key over its id and the device's DH identity key, and makes it
// current (X3DH §3.2). The previous one is kept, for initial messages still
// in flight, until PruneRetiredPreKeys removes it or MaxRetiredPreKeys newer
// ones push it out. It returns the new key to upload.
func (d *DeviceKeys) RotateSignedPreKey(rand io.Reader, now time.Time) (SignedPreKeyPublic, error) {
	id, err := d.allocID()
	if err != nil {
		return SignedPreKeyPublic{}, err
	}
	key, err := newX25519Key(rand)
	if err != nil {
		return SignedPreKeyPublic{}, err
	}
	sig, err := d.identity.sign(signedPreKeyTranscript(d.cert.DHKey, id, key.PublicKey()))
	if err != nil {
		return SignedPreKeyPublic{}, err
	}
	k := &signedPreKey{id: id, created: now.UnixMilli(), key: key, sig: sig}
	d.signed = append(d.signed, k)
	if len(d.signed) > 1+MaxRetiredPreKeys {
		d.signed = slices.Delete(d.signed, 0, 1)
	}
	return k.public(), nil
}

// RotateLastResortKEMPreKey makes a new signed last-resort ML-KEM-768 prekey
// and makes it current (PQXDH §3.2), keeping the previous one as
// RotateSignedPreKey does. It returns the new key to upload.
func (d *DeviceKeys) RotateLastResortKEMPreKey(rand io.Reader, now time.Time) (KEMPreKeyPublic, error) {
	k, err := d.newKEMPreKey(rand, true, now)
	if err != nil {
		return KEMPreKeyPublic{}, err
	}
	d.lastResort = append(d.lastResort, k)
	if len(d.lastResort) > 1+MaxRetiredPreKeys {
		d.lastResort = slices.Delete(d.lastResort, 0, 1)
	}
	return k.public(), nil
}

func (d *DeviceKeys) newKEMPreKey(rand io.Reader, lastResort bool, now time.Time) (*kemPreKey, error) {
	id, err := d.allocID()
	if err != nil {
		return nil, err
	}
	key, err := newKEMKey(rand)
	if err != nil {
		return nil, err
	}
	sig, err := d.identity.sign(kemPreKeyTranscript(d.cert.DHKey, id, lastResort, key.EncapsulationKey()))
	if err != nil {
		return nil, err
	}
	return &kemPreKey{id: id, created: now.UnixMilli(), lastResort: lastResort, key: key, sig: sig}, nil
}

// PruneRetiredPreKeys drops the retired signed prekeys and last-resort
// ML-KEM prekeys that were replaced before cutoff, e.g. now minus the
// server's mailbox lifetime: no initial message naming them can still
// arrive. The current keys stay. It returns how many keys it dropped.
func (d *DeviceKeys) PruneRetiredPreKeys(cutoff time.Time) int {
	c := cutoff.UnixMilli()
	n := 0
	// A retired key was replaced when its successor was made.
	for len(d.signed) > 1 && d.signed[1].created < c {
		d.signed = slices.Delete(d.signed, 0, 1)
		n++
	}
	for len(d.lastResort) > 1 && d.lastResort[1].created < c {
		d.lastResort = slices.Delete(d.lastResort, 0, 1)
		n++
	}
	return n
}

// AddOneTimePreKeys makes n more one-time X25519 prekeys (X3DH §3.2: uploaded
// again when the server's store runs low) and returns them to upload.
func (d *DeviceKeys) AddOneTimePreKeys(rand io.Reader, n int) ([]OneTimePreKeyPublic, error) {
	if n < 0 || len(d.oneTime)+n > MaxOneTimePreKeys {
		return nil, ErrTooManyPreKeys
	}
	var out []OneTimePreKeyPublic
	for range n {
		id, err := d.allocID()
		if err != nil {
			return nil, err
		}
		key, err := newX25519Key(rand)
		if err != nil {
			return nil, err
		}
		d.oneTime = append(d.oneTime, &oneTimePreKey{id: id, key: key})
		out = append(out, OneTimePreKeyPublic{ID: id, Key: key.PublicKey()})
	}
	return out, nil
}

// AddOneTimeKEMPreKeys makes n more signed one-time ML-KEM-768 prekeys
// (PQXDH §3.2) and returns them to upload.
func (d *DeviceKeys) AddOneTimeKEMPreKeys(rand io.Reader, n int, now time.Time) ([]KEMPreKeyPublic, error) {
	if n < 0 || len(d.oneTimeKEM)+n > MaxOneTimePreKeys {
		return nil, ErrTooManyPreKeys
	}
	var out []KEMPreKeyPublic
	for range n {
		k, err := d.newKEMPreKey(rand, false, now)
		if err != nil {
			return nil, err
		}
		d.oneTimeKEM = append(d.oneTimeKEM, k)
		out = append(out, k.public())
	}
	return out, nil
}

// ConsumedPreKeys names the one-time prekeys an initial message used. The
// responder deletes them (DeviceKeys.RemovePreKeys) once the message's first
// ratchet message has decrypted (X3DH §3.4, PQXDH §3.4): a one-time key is
// single use. The signed prekey and the last-resort ML-KEM prekey are not
// consumed.
type ConsumedPreKeys struct {
	// OneTimePreKeyID is the one-time X25519 prekey used; 0 for none.
	OneTimePreKeyID uint32
	// OneTimeKEMPreKeyID is the one-time ML-KEM prekey used; 0 when the
	// last-resort key was used.
	OneTimeKEMPreKeyID uint32
}

// RemovePreKeys deletes the consumed one-time prekeys. Removing a key that is
// already gone is not an error.
func (d *DeviceKeys) RemovePreKeys(c ConsumedPreKeys) {
	if c.OneTimePreKeyID != 0 {
		d.oneTime = slices.DeleteFunc(d.oneTime, func(k *oneTimePreKey) bool { return k.id == c.OneTimePreKeyID })
	}
	if c.OneTimeKEMPreKeyID != 0 {
		d.oneTimeKEM = slices.DeleteFunc(d.oneTimeKEM, func(k *kemPreKey) bool { return k.id == c.OneTimeKEMPreKeyID })
	}
}

// HoldsSignedPreKey reports whether the signed prekey id is still held
// (current, or retired and not yet pruned): an initial message naming it
// can still be answered.
func (d *DeviceKeys) HoldsSignedPreKey(id uint32) bool {
	_, err := d.lookupSignedPreKey(id)
	return err == nil
}

func (d *DeviceKeys) lookupSignedPreKey(id uint32) (*signedPreKey, error) {
	for _, k := range d.signed {
		if k.id == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: signed prekey %d", ErrUnknownPreKey, id)
}

func (d *DeviceKeys) lookupOneTimePreKey(id uint32) (*oneTimePreKey, error) {
	for _, k := range d.oneTime {
		if k.id == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: one-time prekey %d", ErrUnknownPreKey, id)
}

func (d *DeviceKeys) lookupKEMPreKey(id uint32) (*kemPreKey, error) {
	for _, k := range d.lastResort {
		if k.id == id {
			return k, nil
		}
	}
	for _, k := range d.oneTimeKEM {
		if k.id == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: KEM prekey %d", ErrUnknownPreKey, id)
}

// MarshalBinary encodes the key set for storage (protocol.md §9):
//
//	u8  version 1
//	[32] account identity Ed25519 seed
//	     device certificate (its own encoding)
//	[32] device X25519 identity private key
//	u32 next prekey id (0: id space used up)
//	u8  n, n × signed prekey: u32 id ‖ i64 created ms ‖ [32] private ‖ [64] signature   (oldest first, last current)
//	u8  n, n × last-resort KEM prekey: u32 id ‖ i64 created ms ‖ [64] ML-KEM seed ‖ [64] signature
//	u16 n, n × one-time prekey: u32 id ‖ [32] private
//	u16 n, n × one-time KEM prekey: u32 id ‖ i64 created ms ‖ [64] ML-KEM seed ‖ [64] signature
//
// The bytes are secret.
func (d *DeviceKeys) MarshalBinary() ([]byte, error) {
	if d.identity.IsZero() || d.dh == nil || len(d.signed) == 0 || len(d.lastResort) == 0 {
		return nil, fmt.Errorf("%w: incomplete device keys", ErrInvalidArgument)
	}
	var e keyEncoder
	e.u8(deviceKeysVersion)
	e.raw(d.identity.priv.Seed())
	if err := d.cert.encode(&e); err != nil {
		return nil, err
	}
	e.raw(d.dh.Bytes())
	e.u32(d.nextID)
	e.u8(byte(len(d.signed)))
	for _, k := range d.signed {
		e.u32(k.id)
		e.i64(k.created)
		e.raw(k.key.Bytes())
		e.raw(k.sig)
	}
	e.u8(byte(len(d.lastResort)))
	for _, k := range d.lastResort {
		encodeKEMPreKey(&e, k)
	}
	e.u16(uint16(len(d.oneTime)))
	for _, k := range d.oneTime {
		e.u32(k.id)
		e.raw(k.key.Bytes())
	}
	e.u16(uint16(len(d.oneTimeKEM)))
	for _, k := range d.oneTimeKEM {
		encodeKEMPreKey(&e, k)
	}
	return e.b, nil
}

func encodeKEMPreKey(e *keyEncoder, k *kemPreKey) {
	e.u32(k.id)
	e.i64(k.created)
	e.raw(k.key.Bytes())
	e.raw(k.sig)
}

// Stored sizes of the repeated entries, to bound counts before allocating.
const (
	storedSignedPreKeySize  = 4 + 8 + x25519KeySize + signatureSize
	storedKEMPreKeySize     = 4 + 8 + kemSeedSize + signatureSize
	storedOneTimePreKeySize = 4 + x25519KeySize
)

// UnmarshalBinary is the inverse of MarshalBinary. Besides the form it checks
// that the certificate and every prekey signature verify under the identity
// key, that the certificate carries this DH key, and that no prekey id is 0,
// repeated, or at or past the id counter: a damaged store never yields keys
// that would be published.
func (d *DeviceKeys) UnmarshalBinary(data []byte) error {
	dec := keyDecoder{b: data, what: "device keys"}
	if err := dec.version(deviceKeysVersion); err != nil {
		return err
	}
	seed := dec.take(ed25519.SeedSize)
	var out DeviceKeys
	out.cert.decode(&dec)
	dhRaw := dec.take(x25519KeySize)
	out.nextID = dec.u32()
	if dec.err != nil {
		return dec.err
	}
	out.identity = IdentityPrivateKey{priv: ed25519.NewKeyFromSeed(seed)}
	dh, err := ecdh.X25519().NewPrivateKey(dhRaw)
	if err != nil {
		return fmt.Errorf("%w: device keys: DH private key", ErrMalformedKeyData)
	}
	out.dh = dh
	if !bytes.Equal(dh.PublicKey().Bytes(), out.cert.DHKey.Bytes()) {
		return fmt.Errorf("%w: device keys: certificate is for another DH key", ErrMalformedKeyData)
	}
	if err := out.cert.Verify(out.identity.Public()); err != nil {
		return err
	}

	seen := make(map[uint32]bool)
	checkID := func(id uint32) {
		if id == 0 || seen[id] || (out.nextID != 0 && id >= out.nextID) {
			dec.fail("prekey id %d repeated or out of range", id)
		}
		seen[id] = true
	}

	n := int(dec.u8())
	if dec.err == nil && (n == 0 || n > 1+MaxRetiredPreKeys || n*storedSignedPreKeySize > len(dec.b)) {
		dec.fail("%d signed prekeys", n)
	}
	for i := 0; i < n && dec.err == nil; i++ {
		id := dec.u32()
		created := dec.i64()
		raw := dec.take(x25519KeySize)
		sig := dec.take(signatureSize)
		checkID(id)
		if dec.err != nil {
			break
		}
		key, err := ecdh.X25519().NewPrivateKey(raw)
		if err != nil {
			dec.fail("signed prekey")
			break
		}
		k := &signedPreKey{id: id, created: created, key: key, sig: bytes.Clone(sig)}
		if pub := k.public(); pub.Verify(out.identity.Public(), out.cert.DHKey) != nil {
			return fmt.Errorf("%w: stored signed prekey %d", ErrBadSignature, id)
		}
		out.signed = append(out.signed, k)
	}

	n = int(dec.u8())
	if dec.err == nil && (n == 0 || n > 1+MaxRetiredPreKeys || n*storedKEMPreKeySize > len(dec.b)) {
		dec.fail("%d last-resort KEM prekeys", n)
	}
	for i := 0; i < n && dec.err == nil; i++ {
		k, err := out.decodeKEMPreKey(&dec, true, checkID)
		if err != nil {
			return err
		}
		if k != nil {
			out.lastResort = append(out.lastResort, k)
		}
	}

	n = int(dec.u16())
	if dec.err == nil && (n > MaxOneTimePreKeys || n*storedOneTimePreKeySize > len(dec.b)) {
		dec.fail("%d one-time prekeys", n)
	}
	for i := 0; i < n && dec.err == nil; i++ {
		id := dec.u32()
		raw := dec.take(x25519KeySize)
		checkID(id)
		if dec.err != nil {
			break
		}
		key, err := ecdh.X25519().NewPrivateKey(raw)
		if err != nil {
			dec.fail("one-time prekey")
			break
		}
		out.oneTime = append(out.oneTime, &oneTimePreKey{id: id, key: key})
	}

	n = int(dec.u16())
	if dec.err == nil && (n > MaxOneTimePreKeys || n*storedKEMPreKeySize > len(dec.b)) {
		dec.fail("%d one-time KEM prekeys", n)
	}
	for i := 0; i < n && dec.err == nil; i++ {
		k, err := out.decodeKEMPreKey(&dec, false, checkID)
		if err != nil {
			return err
		}
		if k != nil {
			out.oneTimeKEM = append(out.oneTimeKEM, k)
		}
	}
	if err := dec.finish(); err != nil {
		return err
	}
	*d = out
	return nil
}

// decodeKEMPreKey reads one stored ML-KEM prekey and verifies its signature.
// It returns nil, nil when dec has failed (the caller stops on dec.err).
func (d *DeviceKeys) decodeKEMPreKey(dec *keyDecoder, lastResort bool, checkID func(uint32)) (*kemPreKey, error) {
	id := dec.u32()
	created := dec.i64()
	seed := dec.take(kemSeedSize)
	sig := dec.take(signatureSize)
	checkID(id)
	if dec.err != nil {
		return nil, nil
	}
	key, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		dec.fail("ML-KEM seed")
		return nil, nil
	}
	k := &kemPreKey{id: id, created: created, lastResort: lastResort, key: key, sig: bytes.Clone(sig)}
	if pub := k.public(); pub.Verify(d.identity.Public(), d.cert.DHKey) != nil {
		return nil, fmt.Errorf("%w: stored KEM prekey %d", ErrBadSignature, id)
	}
	return k, nil
}

// ParseDeviceKeys decodes a stored key set; see UnmarshalBinary.
func ParseDeviceKeys(data []byte) (*DeviceKeys, error) {
	d := new(DeviceKeys)
	if err := d.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return d, nil
}
