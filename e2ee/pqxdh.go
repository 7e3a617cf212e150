package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/sha256"
	"fmt"
	"io"
)

// PQXDH parameters (PQXDH §2.1): curve X25519, hash SHA-256, pqkem
// ML-KEM-768 (FIPS 203), and this info string, which names the application
// and every parameter so that keys derived here serve nothing else.
const pqxdhInfo = "securechat_PQXDH_X25519_SHA-256_ML-KEM-768_v1"

// SessionKeySize is the size of the shared secret SK that PQXDH derives and
// the Double Ratchet starts from (X3DH §2.2: 32 bytes).
const SessionKeySize = 32

// InitialMessageHeader is the PQXDH part of an initiator's first message
// (PQXDH §3.3): who the initiator is and what the responder needs to derive
// the same secret key. The initiator sends it with every message until the
// responder's first reply, since any of them may be the first to arrive.
//
// Encoding: version 1 ‖ identity key[32] ‖ certificate ‖ ephemeral key[32] ‖
// u32 signed prekey id ‖ u32 one-time prekey id (0: none) ‖ u32 KEM prekey
// id ‖ KEM ciphertext[1088].
type InitialMessageHeader struct {
	// IdentityKey is the initiator's account identity key IK_A.
	IdentityKey IdentityKey
	// Certificate is the initiator's device certificate; its DHKey is the
	// initiator's DH identity key.
	Certificate DeviceCertificate
	// EphemeralKey is EK_A.
	EphemeralKey *ecdh.PublicKey
	// SignedPreKeyID names the responder's signed prekey used.
	SignedPreKeyID uint32
	// OneTimePreKeyID names the responder's one-time prekey used; 0 for none.
	OneTimePreKeyID uint32
	// KEMPreKeyID names the responder's ML-KEM prekey used.
	KEMPreKeyID uint32
	// KEMCiphertext is CT, the ML-KEM-768 encapsulation to that prekey.
	KEMCiphertext []byte
}

// MarshalBinary encodes the header (see the type's comment).
func (h *InitialMessageHeader) MarshalBinary() ([]byte, error) {
	if h.IdentityKey.IsZero() || h.EphemeralKey == nil || h.EphemeralKey.Curve() != ecdh.X25519() ||
		h.SignedPreKeyID == 0 || h.KEMPreKeyID == 0 || len(h.KEMCiphertext) != kemCiphertextSize {
		return nil, fmt.Errorf("%w: incomplete initial message header", ErrInvalidArgument)
	}
	var e keyEncoder
	e.u8(keyEncodingV1)
	e.raw(h.IdentityKey.k[:])
	if err := h.Certificate.encode(&e); err != nil {
		return nil, err
	}
	e.raw(h.EphemeralKey.Bytes())
	e.u32(h.SignedPreKeyID)
	e.u32(h.OneTimePreKeyID)
	e.u32(h.KEMPreKeyID)
	e.raw(h.KEMCiphertext)
	return e.b, nil
}

// UnmarshalBinary is the inverse of MarshalBinary. It checks the form only;
// RespondSession checks the rest.
func (h *InitialMessageHeader) UnmarshalBinary(data []byte) error {
	d := keyDecoder{b: data, what: "initial message header"}
	var out InitialMessageHeader
	if d.version(keyEncodingV1) == nil {
		out.IdentityKey = d.identityKey()
		out.Certificate.decode(&d)
		out.EphemeralKey = d.x25519()
		out.SignedPreKeyID = d.id()
		out.OneTimePreKeyID = d.u32()
		out.KEMPreKeyID = d.id()
		out.KEMCiphertext = bytes.Clone(d.take(kemCiphertextSize))
	}
	if err := d.finish(); err != nil {
		return err
	}
	*h = out
	return nil
}

// ParseInitialMessageHeader decodes a header; see UnmarshalBinary.
func ParseInitialMessageHeader(data []byte) (*InitialMessageHeader, error) {
	h := new(InitialMessageHeader)
	if err := h.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return h, nil
}

// encapsulateFunc is ML-KEM encapsulation; tests substitute the derandomized
// FIPS 203 ML-KEM.Encaps_internal to generate reproducible vectors.
type encapsulateFunc func(*mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

func encapsulate(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error) {
	sharedKey, ciphertext = ek.Encapsulate()
	return sharedKey, ciphertext, nil
}

// InitiateSession runs the initiator's side of PQXDH (PQXDH §3.3) from self,
// this device's keys, to one device of remoteUser described by bundle, as
// the server handed it out. It verifies the bundle for that user and device,
// and returns the header to send, the secret key sk (SessionKeySize bytes)
// and the associated data ad.
//
// The caller starts the Double Ratchet with sk, ad and the bundle's signed
// prekey as the responder's first ratchet public key (Double Ratchet §7.1),
// and must itself check that bundle.IdentityKey is the identity it trusts for
// remoteUser (X3DH §4.1; SafetyNumber).
//
// rand supplies the ephemeral key (nil means crypto/rand); the ML-KEM
// encapsulation always draws from crypto/rand, as crypto/mlkem takes no
// randomness source.
func InitiateSession(rand io.Reader, self *DeviceKeys, remoteUser string, remoteDevice uint32, bundle *PreKeyBundle) (header *InitialMessageHeader, sk, ad []byte, err error) {
	return initiate(rand, self, remoteUser, remoteDevice, bundle, encapsulate)
}

func initiate(rand io.Reader, self *DeviceKeys, remoteUser string, remoteDevice uint32, bundle *PreKeyBundle, encap encapsulateFunc) (*InitialMessageHeader, []byte, []byte, error) {
	if self == nil || bundle == nil {
		return nil, nil, nil, fmt.Errorf("%w: nil device keys or bundle", ErrInvalidArgument)
	}
	// PQXDH §3.3: verify the prekey signatures, abort if verification fails.
	if err := bundle.Verify(remoteUser, remoteDevice); err != nil {
		return nil, nil, nil, err
	}
	ek, err := newX25519Key(rand)
	if err != nil {
		return nil, nil, nil, err
	}
	// (CT, SS) = PQKEM-ENC(PQPK_B). ML-KEM's shared secret depends on the
	// encapsulation key, so SS is bound to the prekey the signature covers.
	ss, ct, err := encap(bundle.KEMPreKey.Key)
	if err != nil {
		return nil, nil, nil, err
	}
	defer clear(ss)

	spk := bundle.SignedPreKey.Key
	var opk *ecdh.PublicKey
	if bundle.OneTimePreKey != nil {
		opk = bundle.OneTimePreKey.Key
	}
	sk, err := deriveSessionKey(ss,
		dhPair{self.dh, spk},                 // DH1 = DH(IK_A, SPK_B)
		dhPair{ek, bundle.Certificate.DHKey}, // DH2 = DH(EK_A, IK_B)
		dhPair{ek, spk},                      // DH3 = DH(EK_A, SPK_B)
		dhPair{ek, opk},                      // DH4 = DH(EK_A, OPK_B), skipped without OPK
	)
	if err != nil {
		return nil, nil, nil, err
	}
	// EK_A's private half goes out of scope here and is never stored (PQXDH
	// §3.3: Alice deletes her ephemeral private key and the DH outputs).
	h := &InitialMessageHeader{
		IdentityKey:    self.IdentityKey(),
		Certificate:    self.Certificate(),
		EphemeralKey:   ek.PublicKey(),
		SignedPreKeyID: bundle.SignedPreKey.ID,
		KEMPreKeyID:    bundle.KEMPreKey.ID,
		KEMCiphertext:  ct,
	}
	if bundle.OneTimePreKey != nil {
		h.OneTimePreKeyID = bundle.OneTimePreKey.ID
	}
	ad := associatedData(h.IdentityKey, &h.Certificate, bundle.IdentityKey, &bundle.Certificate)
	return h, sk, ad, nil
}

// ResponderKeys is what RespondSession derives for the responder.
type ResponderKeys struct {
	// SK is the shared secret key, SessionKeySize bytes.
	SK []byte
	// AD is the associated data, initiator first.
	AD []byte
	// RatchetKey is the signed prekey the initiator used: the responder's
	// first ratchet key pair (Double Ratchet §7.1).
	RatchetKey *ecdh.PrivateKey
	// RemoteIdentity is the initiator's account identity key. The caller
	// compares it with the identity it trusts for the sender (X3DH §4.1).
	RemoteIdentity IdentityKey
	// RemoteCertificate is the initiator's verified device certificate.
	RemoteCertificate DeviceCertificate
	// Consumed names the one-time prekeys to delete once the first message
	// has decrypted.
	Consumed ConsumedPreKeys
}

// RespondSession runs the responder's side of PQXDH (PQXDH §3.4) for an
// initial message that the server says came from remoteUser's device
// remoteDevice. It verifies the initiator's certificate against the
// header's identity key and checks that it names that sender, looks up the
// prekeys the header names, and derives the same sk and ad as the initiator.
//
// A tampered ephemeral key or KEM ciphertext does not fail here: it yields a
// different sk (ML-KEM decapsulation rejects implicitly), so the first
// ratchet message fails to decrypt, which is where the responder learns it
// (PQXDH §3.4: Bob deletes SK if decryption fails). Only then should the
// caller delete resp.Consumed (DeviceKeys.RemovePreKeys).
func RespondSession(self *DeviceKeys, remoteUser string, remoteDevice uint32, header *InitialMessageHeader) (*ResponderKeys, error) {
	if self == nil || header == nil {
		return nil, fmt.Errorf("%w: nil device keys or header", ErrInvalidArgument)
	}
	if header.IdentityKey.IsZero() || header.EphemeralKey == nil {
		return nil, fmt.Errorf("%w: incomplete initial message header", ErrInvalidArgument)
	}
	// The initiator's DH identity key counts only as vouched for by its
	// account (PQXDH §4.10), and only for the sender the server named.
	if err := header.Certificate.Verify(header.IdentityKey); err != nil {
		return nil, err
	}
	if !header.Certificate.Names(remoteUser, remoteDevice) {
		return nil, ErrWrongDevice
	}
	spk, err := self.lookupSignedPreKey(header.SignedPreKeyID)
	if err != nil {
		return nil, err
	}
	var opk *ecdh.PrivateKey
	if header.OneTimePreKeyID != 0 {
		k, err := self.lookupOneTimePreKey(header.OneTimePreKeyID)
		if err != nil {
			return nil, err
		}
		opk = k.key
	}
	kem, err := self.lookupKEMPreKey(header.KEMPreKeyID)
	if err != nil {
		return nil, err
	}
	ss, err := kem.key.Decapsulate(header.KEMCiphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: KEM ciphertext", ErrMalformedKeyData)
	}
	defer clear(ss)

	ek := header.EphemeralKey
	dhs := []dhPair{
		{spk.key, header.Certificate.DHKey}, // DH1 = DH(SPK_B, IK_A)
		{self.dh, ek},                       // DH2 = DH(IK_B, EK_A)
		{spk.key, ek},                       // DH3 = DH(SPK_B, EK_A)
	}
	if opk != nil {
		dhs = append(dhs, dhPair{opk, ek}) // DH4 = DH(OPK_B, EK_A)
	}
	sk, err := deriveSessionKey(ss, dhs...)
	if err != nil {
		return nil, err
	}
	bobCert := self.Certificate()
	r := &ResponderKeys{
		SK:                sk,
		AD:                associatedData(header.IdentityKey, &header.Certificate, self.IdentityKey(), &bobCert),
		RatchetKey:        spk.key,
		RemoteIdentity:    header.IdentityKey,
		RemoteCertificate: header.Certificate,
		Consumed:          ConsumedPreKeys{OneTimePreKeyID: header.OneTimePreKeyID},
	}
	r.RemoteCertificate.AuthKey = bytes.Clone(r.RemoteCertificate.AuthKey)
	r.RemoteCertificate.Signature = bytes.Clone(r.RemoteCertificate.Signature)
	if !kem.lastResort {
		r.Consumed.OneTimeKEMPreKeyID = kem.id
	}
	return r, nil
}

// dhPair is one Diffie-Hellman of the key agreement; a nil public key means
// the optional DH4 without a one-time prekey.
type dhPair struct {
	priv *ecdh.PrivateKey
	pub  *ecdh.PublicKey
}

// deriveSessionKey computes SK = KDF(DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS), the KDF
// of X3DH §2.2 and PQXDH §2.2: HKDF-SHA-256 with input F ‖ KM, where F is 32
// 0xFF bytes (domain separation from XEdDSA, kept for fidelity to the spec),
// salt 32 zero bytes and info pqxdhInfo. It erases the DH outputs and the
// input keying material; the caller erases SS.
func deriveSessionKey(ss []byte, dhs ...dhPair) ([]byte, error) {
	ikm := make([]byte, 0, 32+len(dhs)*32+len(ss))
	defer func() { clear(ikm[:cap(ikm)]) }()
	ikm = append(ikm, bytes.Repeat([]byte{0xFF}, 32)...)
	for _, p := range dhs {
		if p.pub == nil {
			continue
		}
		out, err := x25519(p.priv, p.pub)
		if err != nil {
			return nil, err
		}
		ikm = append(ikm, out...)
		clear(out)
	}
	ikm = append(ikm, ss...)
	return hkdf.Key(sha256.New, ikm, make([]byte, sha256.Size), pqxdhInfo, SessionKeySize)
}

// associatedData is AD = Encode(IK_A) ‖ Encode(IK_B) of X3DH §3.3 / PQXDH
// §3.3, extended with each party's device (X3DH §3.3 allows appending
// identifying information): per party, initiator first,
//
//	identity key[32] ‖ DH identity key[32] ‖ u32 device id ‖ u8 len ‖ user
//
// so a ciphertext is bound to both accounts and both devices.
func associatedData(ikA IdentityKey, certA *DeviceCertificate, ikB IdentityKey, certB *DeviceCertificate) []byte {
	var e keyEncoder
	for _, p := range []struct {
		ik   IdentityKey
		cert *DeviceCertificate
	}{{ikA, certA}, {ikB, certB}} {
		e.raw(p.ik.k[:])
		e.raw(p.cert.DHKey.Bytes())
		e.u32(p.cert.DeviceID)
		e.str8(p.cert.User)
	}
	return e.b
}
