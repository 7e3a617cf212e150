package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Context strings that start every signed transcript, one per kind of signed
// object, so a signature over one can never be taken for another (PQXDH §2.1:
// "the ranges of all encoding functions must be pairwise disjoint").
const (
	deviceCertContext   = "securechat device cert v1"
	signedPreKeyContext = "securechat signed prekey v1"
	kemPreKeyContext    = "securechat kem prekey v1"
)

// Key type codes inside signed transcripts. Explicit numbers: they are part of
// what is signed.
const (
	keyTypeX25519     byte = 1
	keyTypeMLKEM768   byte = 2
	kemKindOneTime    byte = 1 // a one-time ML-KEM prekey, deleted after use
	kemKindLastResort byte = 2 // the last-resort ML-KEM prekey, kept until rotated out
)

// keyEncodingV1 is the version byte that starts every encoding of this
// package: each element (certificate, prekey) and each container (bundle,
// initial message header, stored keys). protocol.md §9 has the layouts.
const keyEncodingV1 byte = 1

// MaxUserLen bounds the user name in a device certificate, in bytes.
const MaxUserLen = 64

// DeviceCertificate binds one device's keys to its account: the account
// identity key's signature over the user name, the device id, the device's
// Ed25519 login (auth) key and its X25519 identity DH key. It is the device's
// "identity" in the PQXDH sense (IK_dh, PQXDH §2.4), vouched for by the
// account (PQXDH §4.10, "Identity binding").
//
// Encoding: version 1 ‖ u8 len ‖ user ‖ u32 device id ‖ auth key[32] ‖
// DH key[32] ‖ signature[64]. Signed transcript: u8 len ‖ "securechat device
// cert v1" ‖ u8 len ‖ user ‖ u32 device id ‖ auth key[32] ‖ DH key[32].
type DeviceCertificate struct {
	// User is the account's canonical user name.
	User string
	// DeviceID is the server-assigned device number, 1 or more.
	DeviceID uint32
	// AuthKey is the device's Ed25519 login key (transport authentication).
	AuthKey ed25519.PublicKey
	// DHKey is the device's X25519 identity key, IK_dh in PQXDH.
	DHKey *ecdh.PublicKey
	// Signature is the account identity key's Ed25519 signature.
	Signature []byte
}

// NewDeviceCertificate signs a certificate for a device of the account whose
// identity is identity.
func NewDeviceCertificate(identity IdentityPrivateKey, user string, deviceID uint32, authKey ed25519.PublicKey, dh *ecdh.PublicKey) (DeviceCertificate, error) {
	c := DeviceCertificate{
		User:      user,
		DeviceID:  deviceID,
		AuthKey:   bytes.Clone(authKey),
		DHKey:     dh,
		Signature: make([]byte, signatureSize),
	}
	if err := c.check(); err != nil {
		return DeviceCertificate{}, err
	}
	sig, err := identity.sign(c.transcript())
	if err != nil {
		return DeviceCertificate{}, err
	}
	c.Signature = sig
	return c, nil
}

// Verify checks the signature against the account identity key.
func (c *DeviceCertificate) Verify(identity IdentityKey) error {
	if err := c.check(); err != nil {
		return err
	}
	if !identity.verify(c.transcript(), c.Signature) {
		return fmt.Errorf("%w: device certificate", ErrBadSignature)
	}
	return nil
}

// Names reports whether c names the given user and device.
func (c *DeviceCertificate) Names(user string, deviceID uint32) bool {
	return c.User == user && c.DeviceID == deviceID
}

// MarshalBinary encodes the certificate (see the type's comment).
func (c *DeviceCertificate) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	if err := c.encode(&e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary. It does not verify the
// signature.
func (c *DeviceCertificate) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "device certificate"}
	var out DeviceCertificate
	out.decode(&d)
	if err := d.finish(); err != nil {
		return err
	}
	*c = out
	return nil
}

func (c *DeviceCertificate) check() error {
	if err := checkUser(c.User); err != nil {
		return err
	}
	switch {
	case c.DeviceID == 0:
		return fmt.Errorf("%w: device id 0", ErrInvalidArgument)
	case len(c.AuthKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: device auth key must be %d bytes", ErrInvalidArgument, ed25519.PublicKeySize)
	case c.DHKey == nil || c.DHKey.Curve() != ecdh.X25519():
		return fmt.Errorf("%w: device DH key must be an X25519 key", ErrInvalidArgument)
	case len(c.Signature) != signatureSize:
		return fmt.Errorf("%w: device certificate signature must be %d bytes", ErrInvalidArgument, signatureSize)
	}
	return nil
}

// checkUser accepts 1–MaxUserLen bytes of UTF-8 without control characters,
// so a name from a certificate is safe to show in a terminal.
func checkUser(user string) error {
	if len(user) == 0 || len(user) > MaxUserLen || !utf8.ValidString(user) {
		return fmt.Errorf("%w: user name must be 1–%d bytes of UTF-8", ErrInvalidArgument, MaxUserLen)
	}
	for _, r := range user {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: user name has a control character", ErrInvalidArgument)
		}
	}
	return nil
}

func (c *DeviceCertificate) transcript() []byte {
	var e keyEncoder
	e.str8(deviceCertContext)
	e.str8(c.User)
	e.u32(c.DeviceID)
	e.raw(c.AuthKey)
	e.raw(c.DHKey.Bytes())
	return e.b
}

func (c *DeviceCertificate) encode(e *keyEncoder) error {
	if err := c.check(); err != nil {
		return err
	}
	e.u8(keyEncodingV1)
	e.str8(c.User)
	e.u32(c.DeviceID)
	e.raw(c.AuthKey)
	e.raw(c.DHKey.Bytes())
	e.raw(c.Signature)
	return nil
}

func (c *DeviceCertificate) decode(d *keyDecoder) {
	if d.version(keyEncodingV1) != nil {
		return
	}
	user := string(d.take(int(d.u8())))
	id := d.u32()
	auth := d.take(ed25519.PublicKeySize)
	dh := d.x25519()
	sig := d.take(signatureSize)
	if d.err != nil {
		return
	}
	if checkUser(user) != nil || id == 0 {
		d.fail("user name or device id out of range")
		return
	}
	*c = DeviceCertificate{User: user, DeviceID: id, AuthKey: bytes.Clone(auth), DHKey: dh, Signature: bytes.Clone(sig)}
}

// SignedPreKeyPublic is a device's signed X25519 prekey as published (SPK_B,
// X3DH §3.2). The account identity key signs it together with the device's
// DH identity key, so a server cannot move it to another device's bundle.
//
// Encoding: version 1 ‖ u32 id ‖ public key[32] ‖ signature[64]. Signed
// transcript: u8 len ‖ "securechat signed prekey v1" ‖ u8 1 (X25519) ‖
// device DH key[32] ‖ u32 id ‖ public key[32].
type SignedPreKeyPublic struct {
	// ID names the prekey in an initial message; never 0.
	ID uint32
	// Key is the X25519 public key.
	Key *ecdh.PublicKey
	// Signature is the account identity key's Ed25519 signature.
	Signature []byte
}

// Verify checks the signature for the device whose DH identity key is device.
func (k *SignedPreKeyPublic) Verify(identity IdentityKey, device *ecdh.PublicKey) error {
	if k.ID == 0 || k.Key == nil || device == nil {
		return fmt.Errorf("%w: incomplete signed prekey", ErrInvalidArgument)
	}
	if !identity.verify(signedPreKeyTranscript(device, k.ID, k.Key), k.Signature) {
		return fmt.Errorf("%w: signed prekey", ErrBadSignature)
	}
	return nil
}

// MarshalBinary encodes the prekey (see the type's comment).
func (k *SignedPreKeyPublic) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	if err := k.encode(&e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary; it does not verify.
func (k *SignedPreKeyPublic) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "signed prekey"}
	var out SignedPreKeyPublic
	out.decode(&d)
	if err := d.finish(); err != nil {
		return err
	}
	*k = out
	return nil
}

func signedPreKeyTranscript(device *ecdh.PublicKey, id uint32, pub *ecdh.PublicKey) []byte {
	var e keyEncoder
	e.str8(signedPreKeyContext)
	e.u8(keyTypeX25519)
	e.raw(device.Bytes())
	e.u32(id)
	e.raw(pub.Bytes())
	return e.b
}

func (k *SignedPreKeyPublic) encode(e *keyEncoder) error {
	if k.ID == 0 || k.Key == nil || k.Key.Curve() != ecdh.X25519() || len(k.Signature) != signatureSize {
		return fmt.Errorf("%w: incomplete signed prekey", ErrInvalidArgument)
	}
	e.u8(keyEncodingV1)
	e.u32(k.ID)
	e.raw(k.Key.Bytes())
	e.raw(k.Signature)
	return nil
}

func (k *SignedPreKeyPublic) decode(d *keyDecoder) {
	if d.version(keyEncodingV1) != nil {
		return
	}
	id := d.id()
	pub := d.x25519()
	sig := d.take(signatureSize)
	if d.err == nil {
		*k = SignedPreKeyPublic{ID: id, Key: pub, Signature: bytes.Clone(sig)}
	}
}

// OneTimePreKeyPublic is a one-time X25519 prekey as published (OPK_B, X3DH
// §3.2). It is not signed: a server that swaps it learns DH4 but none of the
// other inputs of the key derivation (X3DH §4.7, "Server trust").
//
// Encoding: version 1 ‖ u32 id ‖ public key[32].
type OneTimePreKeyPublic struct {
	// ID names the prekey in an initial message; never 0.
	ID uint32
	// Key is the X25519 public key.
	Key *ecdh.PublicKey
}

// MarshalBinary encodes the prekey (see the type's comment).
func (k *OneTimePreKeyPublic) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	if err := k.encode(&e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary.
func (k *OneTimePreKeyPublic) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "one-time prekey"}
	var out OneTimePreKeyPublic
	out.decode(&d)
	if err := d.finish(); err != nil {
		return err
	}
	*k = out
	return nil
}

func (k *OneTimePreKeyPublic) encode(e *keyEncoder) error {
	if k.ID == 0 || k.Key == nil || k.Key.Curve() != ecdh.X25519() {
		return fmt.Errorf("%w: incomplete one-time prekey", ErrInvalidArgument)
	}
	e.u8(keyEncodingV1)
	e.u32(k.ID)
	e.raw(k.Key.Bytes())
	return nil
}

func (k *OneTimePreKeyPublic) decode(d *keyDecoder) {
	if d.version(keyEncodingV1) != nil {
		return
	}
	id := d.id()
	pub := d.x25519()
	if d.err == nil {
		*k = OneTimePreKeyPublic{ID: id, Key: pub}
	}
}

// KEMPreKeyPublic is a signed ML-KEM-768 prekey as published (PQXDH §3.2):
// the last-resort key PQSPK_B or a one-time key PQOPK_B. Its kind is signed
// too, so a server cannot relabel one as the other.
//
// Encoding: version 1 ‖ u32 id ‖ u8 kind (1 one-time, 2 last resort) ‖
// encapsulation key[1184] ‖ signature[64]. Signed transcript: u8 len ‖
// "securechat kem prekey v1" ‖ u8 2 (ML-KEM-768) ‖ u8 kind ‖ device DH
// key[32] ‖ u32 id ‖ encapsulation key[1184].
type KEMPreKeyPublic struct {
	// ID names the prekey in an initial message; never 0.
	ID uint32
	// LastResort marks the signed last-resort prekey, which is not deleted
	// after use (PQXDH §3.4).
	LastResort bool
	// Key is the ML-KEM-768 encapsulation key.
	Key *mlkem.EncapsulationKey768
	// Signature is the account identity key's Ed25519 signature.
	Signature []byte
}

// Verify checks the signature for the device whose DH identity key is device.
func (k *KEMPreKeyPublic) Verify(identity IdentityKey, device *ecdh.PublicKey) error {
	if k.ID == 0 || k.Key == nil || device == nil {
		return fmt.Errorf("%w: incomplete KEM prekey", ErrInvalidArgument)
	}
	if !identity.verify(kemPreKeyTranscript(device, k.ID, k.LastResort, k.Key), k.Signature) {
		return fmt.Errorf("%w: KEM prekey", ErrBadSignature)
	}
	return nil
}

// MarshalBinary encodes the prekey (see the type's comment).
func (k *KEMPreKeyPublic) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	if err := k.encode(&e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary; it does not verify.
func (k *KEMPreKeyPublic) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "KEM prekey"}
	var out KEMPreKeyPublic
	out.decode(&d)
	if err := d.finish(); err != nil {
		return err
	}
	*k = out
	return nil
}

func kemKind(lastResort bool) byte {
	if lastResort {
		return kemKindLastResort
	}
	return kemKindOneTime
}

func kemPreKeyTranscript(device *ecdh.PublicKey, id uint32, lastResort bool, pub *mlkem.EncapsulationKey768) []byte {
	var e keyEncoder
	e.str8(kemPreKeyContext)
	e.u8(keyTypeMLKEM768)
	e.u8(kemKind(lastResort))
	e.raw(device.Bytes())
	e.u32(id)
	e.raw(pub.Bytes())
	return e.b
}

func (k *KEMPreKeyPublic) encode(e *keyEncoder) error {
	if k.ID == 0 || k.Key == nil || len(k.Signature) != signatureSize {
		return fmt.Errorf("%w: incomplete KEM prekey", ErrInvalidArgument)
	}
	e.u8(keyEncodingV1)
	e.u32(k.ID)
	e.u8(kemKind(k.LastResort))
	e.raw(k.Key.Bytes())
	e.raw(k.Signature)
	return nil
}

func (k *KEMPreKeyPublic) decode(d *keyDecoder) {
	if d.version(keyEncodingV1) != nil {
		return
	}
	id := d.id()
	kind := d.u8()
	raw := d.take(kemPublicKeySize)
	sig := d.take(signatureSize)
	if d.err != nil {
		return
	}
	if kind != kemKindOneTime && kind != kemKindLastResort {
		d.fail("unknown KEM prekey kind %d", kind)
		return
	}
	pub, err := mlkem.NewEncapsulationKey768(raw)
	if err != nil {
		d.fail("ML-KEM-768 encapsulation key does not decode")
		return
	}
	*k = KEMPreKeyPublic{ID: id, LastResort: kind == kemKindLastResort, Key: pub, Signature: bytes.Clone(sig)}
}

// PreKeyBundle is what the server hands an initiator for one device of the
// responder (PQXDH §3.2–3.3): the account identity key, the device
// certificate, the signed prekey, at most one one-time prekey and one signed
// ML-KEM prekey (a one-time one while any are left, else the last-resort one).
//
// Encoding: version 1 ‖ identity key[32] ‖ certificate ‖ signed prekey ‖
// u8 one-time prekey present (0 or 1) ‖ [one-time prekey] ‖ KEM prekey, each
// element in its own encoding (with its version byte). A server can assemble
// a bundle by concatenating the elements a device uploaded.
type PreKeyBundle struct {
	// IdentityKey is the account identity key IK_B. Whether it is the right
	// one for the user is for the caller to know: pinned on first use and
	// compared with a safety number (X3DH §4.1, "Authentication").
	IdentityKey IdentityKey
	// Certificate names the device and carries its DH identity key.
	Certificate DeviceCertificate
	// SignedPreKey is SPK_B.
	SignedPreKey SignedPreKeyPublic
	// OneTimePreKey is OPK_B; nil when the device has none left on the server.
	OneTimePreKey *OneTimePreKeyPublic
	// KEMPreKey is PQOPK_B, or PQSPK_B (LastResort) when no one-time KEM
	// prekey is left.
	KEMPreKey KEMPreKeyPublic
}

// Verify checks that the certificate names user and deviceID and that every
// signature in the bundle verifies under the bundle's identity key: PQXDH §3.3
// ("Alice verifies the prekey signatures and aborts the protocol if
// verification fails"). It does not say whether the identity key is the
// user's: see IdentityKey.
func (b *PreKeyBundle) Verify(user string, deviceID uint32) error {
	if b.IdentityKey.IsZero() {
		return fmt.Errorf("%w: bundle has no identity key", ErrInvalidArgument)
	}
	if err := b.Certificate.Verify(b.IdentityKey); err != nil {
		return err
	}
	if !b.Certificate.Names(user, deviceID) {
		return ErrWrongDevice
	}
	if err := b.SignedPreKey.Verify(b.IdentityKey, b.Certificate.DHKey); err != nil {
		return err
	}
	if b.OneTimePreKey != nil && (b.OneTimePreKey.ID == 0 || b.OneTimePreKey.Key == nil) {
		return fmt.Errorf("%w: incomplete one-time prekey", ErrInvalidArgument)
	}
	return b.KEMPreKey.Verify(b.IdentityKey, b.Certificate.DHKey)
}

// MarshalBinary encodes the bundle (see the type's comment).
func (b *PreKeyBundle) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	if b.IdentityKey.IsZero() {
		return nil, fmt.Errorf("%w: bundle has no identity key", ErrInvalidArgument)
	}
	e.u8(keyEncodingV1)
	e.raw(b.IdentityKey.k[:])
	if err := b.Certificate.encode(&e); err != nil {
		return nil, err
	}
	if err := b.SignedPreKey.encode(&e); err != nil {
		return nil, err
	}
	if b.OneTimePreKey == nil {
		e.u8(0)
	} else {
		e.u8(1)
		if err := b.OneTimePreKey.encode(&e); err != nil {
			return nil, err
		}
	}
	if err := b.KEMPreKey.encode(&e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary. It checks the form, not the
// signatures: call Verify.
func (b *PreKeyBundle) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "prekey bundle"}
	var out PreKeyBundle
	if d.version(keyEncodingV1) == nil {
		out.IdentityKey = d.identityKey()
		out.Certificate.decode(&d)
		out.SignedPreKey.decode(&d)
		switch d.u8() {
		case 0:
		case 1:
			out.OneTimePreKey = new(OneTimePreKeyPublic)
			out.OneTimePreKey.decode(&d)
		default:
			d.fail("one-time prekey flag must be 0 or 1")
		}
		out.KEMPreKey.decode(&d)
	}
	if err := d.finish(); err != nil {
		return err
	}
	*b = out
	return nil
}

// ParsePreKeyBundle decodes a bundle; see UnmarshalBinary.
func ParsePreKeyBundle(data []byte) (*PreKeyBundle, error) {
	b := new(PreKeyBundle)
	if err := b.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return b, nil
}

// PreKeyUpload is everything public a device publishes (PQXDH §3.2): to the
// server at registration, and again after rotating or topping up prekeys.
// The server keeps it and builds a PreKeyBundle per initiator from it.
type PreKeyUpload struct {
	// IdentityKey is the account identity key.
	IdentityKey IdentityKey
	// Certificate is the device's certificate.
	Certificate DeviceCertificate
	// SignedPreKey is the current signed prekey.
	SignedPreKey SignedPreKeyPublic
	// LastResortKEMPreKey is the current signed last-resort ML-KEM prekey.
	LastResortKEMPreKey KEMPreKeyPublic
	// OneTimePreKeys are the unused one-time X25519 prekeys.
	OneTimePreKeys []OneTimePreKeyPublic
	// OneTimeKEMPreKeys are the unused signed one-time ML-KEM prekeys.
	OneTimeKEMPreKeys []KEMPreKeyPublic
}

// Verify checks what PreKeyBundle.Verify checks, for every key of the upload,
// that the last-resort flags are where they belong and that no prekey id
// repeats (a device's prekeys of all kinds share one id space). A server may
// call it before storing an upload; whether the identity key is the
// account's is for the server to compare.
func (u *PreKeyUpload) Verify(user string, deviceID uint32) error {
	b := PreKeyBundle{IdentityKey: u.IdentityKey, Certificate: u.Certificate, SignedPreKey: u.SignedPreKey, KEMPreKey: u.LastResortKEMPreKey}
	if err := b.Verify(user, deviceID); err != nil {
		return err
	}
	if !u.LastResortKEMPreKey.LastResort {
		return fmt.Errorf("%w: last-resort KEM prekey not marked last resort", ErrInvalidArgument)
	}
	if len(u.OneTimePreKeys) > MaxOneTimePreKeys || len(u.OneTimeKEMPreKeys) > MaxOneTimePreKeys {
		return ErrTooManyPreKeys
	}
	ids := map[uint32]bool{u.SignedPreKey.ID: true}
	unique := func(id uint32) error {
		if ids[id] {
			return fmt.Errorf("%w: prekey id %d repeated", ErrInvalidArgument, id)
		}
		ids[id] = true
		return nil
	}
	if err := unique(u.LastResortKEMPreKey.ID); err != nil {
		return err
	}
	for i := range u.OneTimePreKeys {
		k := &u.OneTimePreKeys[i]
		if k.ID == 0 || k.Key == nil {
			return fmt.Errorf("%w: incomplete one-time prekey", ErrInvalidArgument)
		}
		if err := unique(k.ID); err != nil {
			return err
		}
	}
	for i := range u.OneTimeKEMPreKeys {
		k := &u.OneTimeKEMPreKeys[i]
		if k.LastResort {
			return fmt.Errorf("%w: one-time KEM prekey marked last resort", ErrInvalidArgument)
		}
		if err := k.Verify(u.IdentityKey, u.Certificate.DHKey); err != nil {
			return err
		}
		if err := unique(k.ID); err != nil {
			return err
		}
	}
	return nil
}

// keyEncoder appends the fixed-layout big-endian encodings of protocol.md §9.
type keyEncoder struct{ b []byte }

func (e *keyEncoder) u8(v byte)     { e.b = append(e.b, v) }
func (e *keyEncoder) u16(v uint16)  { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *keyEncoder) u32(v uint32)  { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *keyEncoder) i64(v int64)   { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *keyEncoder) raw(v []byte)  { e.b = append(e.b, v...) }
func (e *keyEncoder) str8(s string) { e.u8(byte(len(s))); e.b = append(e.b, s...) }

// keyDecoder reads what keyEncoder writes. The first error sticks; after it
// every read returns zero values of the requested size, so decode functions
// can read a whole layout and check d.err once. Every length is checked
// against the bytes that remain before anything is sliced or allocated.
type keyDecoder struct {
	b    []byte
	what string // for error messages
	err  error
}

func (d *keyDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrMalformedKeyData, d.what, fmt.Sprintf(format, args...))
	}
}

// take returns the next n bytes, aliasing the input. n is at most a few
// kilobytes (a fixed key size or a u8 length).
func (d *keyDecoder) take(n int) []byte {
	if d.err == nil && n > len(d.b) {
		d.fail("truncated")
	}
	if d.err != nil {
		return make([]byte, n)
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *keyDecoder) u8() byte    { return d.take(1)[0] }
func (d *keyDecoder) u16() uint16 { return binary.BigEndian.Uint16(d.take(2)) }
func (d *keyDecoder) u32() uint32 { return binary.BigEndian.Uint32(d.take(4)) }
func (d *keyDecoder) i64() int64  { return int64(binary.BigEndian.Uint64(d.take(8))) }

// id reads a prekey id, which is never 0.
func (d *keyDecoder) id() uint32 {
	id := d.u32()
	if id == 0 {
		d.fail("prekey id 0")
	}
	return id
}

func (d *keyDecoder) x25519() *ecdh.PublicKey {
	b := d.take(x25519KeySize)
	if d.err != nil {
		return nil
	}
	pub, err := parseX25519Public(b)
	if err != nil {
		d.fail("X25519 public key")
	}
	return pub
}

func (d *keyDecoder) identityKey() IdentityKey {
	k, err := ParseIdentityKey(d.take(IdentityKeySize))
	if err != nil && d.err == nil {
		d.fail("identity key is zero")
	}
	return k
}

// version reads the version byte and fails unless it is want.
func (d *keyDecoder) version(want byte) error {
	v := d.u8()
	if d.err == nil && v != want {
		d.err = fmt.Errorf("%w: %s: version %d", ErrUnsupportedVersion, d.what, v)
	}
	return d.err
}

// finish fails on trailing bytes and returns the first error.
func (d *keyDecoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
