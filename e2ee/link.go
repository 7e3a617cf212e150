package e2ee

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Linking a device (docs/protocol.md §9.8). The new device makes an
// Ed25519 device key and an X25519 link key and shows a short code that
// commits to both; the approving device is given the keys by the server,
// computes the code again and compares it with the one the user typed, so
// a server that substitutes keys of its own would need a second preimage
// of 60 bits within the link's life. The approving device then seals what
// the new device needs — the account identity, its device id, the signed
// device list — to the link key:
//
//	sealed = u8 1 ‖ ephemeral X25519 public key[32] ‖ ChaCha20-Poly1305(k, nonce 0, plaintext, linkSealLabel)
//	k      = HKDF-SHA256(ikm = X25519(ephemeral, link key), salt = ephemeral ‖ link key, info = linkSealLabel)
//
// The key is used once (the ephemeral key is fresh), so the zero nonce is
// safe.

const (
	linkCodeContext = "securechat link code v1"
	linkSealLabel   = "securechat link seal v1"
	linkSealVersion = 1
	// linkCodeChars is the code's length in base-32 characters: 60 bits.
	linkCodeChars = 12
	// MaxLinkSealed bounds a sealed link message.
	MaxLinkSealed = 64 << 10
)

// ErrLinkCode reports a link code that is not of the form the new device
// shows.
var ErrLinkCode = errors.New("e2ee: not a link code")

// ErrLinkSealed reports a sealed link message that does not open.
var ErrLinkSealed = errors.New("e2ee: the link message does not open")

// linkAlphabet is Crockford's base 32: no I, L, O or U, so that a code
// read aloud or typed is not misread (NormalizeLinkCode maps them back).
const linkAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// LinkCode is the code a new device shows for its keys: 12 characters of
// SHA-256(linkCodeContext ‖ u8 len ‖ user ‖ device key ‖ link key) in
// base 32, as three groups of four ("ABCD-EFGH-JKMN").
func LinkCode(user string, deviceKey, linkKey []byte) string {
	h := sha256.New()
	h.Write([]byte(linkCodeContext))
	h.Write([]byte{byte(len(user))})
	h.Write([]byte(user))
	h.Write(deviceKey)
	h.Write(linkKey)
	sum := h.Sum(nil)
	var v uint64
	for _, b := range sum[:8] {
		v = v<<8 | uint64(b)
	}
	var b strings.Builder
	for i := range linkCodeChars {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(linkAlphabet[(v>>(64-5*(i+1)))&31])
	}
	return b.String()
}

// NormalizeLinkCode reads a code as a user typed it: case, spaces and
// dashes do not matter, and I, L, O and U read as 1, 1, 0 and V. It
// returns the code as LinkCode writes it.
func NormalizeLinkCode(s string) (string, error) {
	var out []byte
	for _, r := range strings.ToUpper(s) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'I', 'L':
			r = '1'
		case 'O':
			r = '0'
		case 'U':
			r = 'V'
		}
		if r > 0x7f || strings.IndexByte(linkAlphabet, byte(r)) < 0 {
			return "", fmt.Errorf("%w: %q has a character a code does not", ErrLinkCode, s)
		}
		out = append(out, byte(r))
		if len(out) > linkCodeChars {
			break
		}
	}
	if len(out) != linkCodeChars {
		return "", fmt.Errorf("%w: a code has %d characters, like ABCD-EFGH-JKMN", ErrLinkCode, linkCodeChars)
	}
	return string(out[0:4]) + "-" + string(out[4:8]) + "-" + string(out[8:12]), nil
}

// NewLinkKey makes a link key pair from rand (nil: crypto/rand).
func NewLinkKey(rand io.Reader) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(randOrDefault(rand))
}

func linkAEAD(shared, ephemeral, linkKey []byte) (cipher.AEAD, error) {
	salt := append(append([]byte(nil), ephemeral...), linkKey...)
	k, err := hkdf.Key(sha256.New, shared, salt, linkSealLabel, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.New(k)
}

// SealLink seals plaintext to a new device's link key (32 bytes).
func SealLink(rand io.Reader, linkKey []byte, plaintext []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(linkKey)
	if err != nil {
		return nil, fmt.Errorf("%w: link key: %v", ErrInvalidArgument, err)
	}
	if len(plaintext)+1+x25519KeySize+chacha20poly1305.Overhead > MaxLinkSealed {
		return nil, fmt.Errorf("%w: %d bytes to seal, more than a link message holds", ErrInvalidArgument, len(plaintext))
	}
	eph, err := ecdh.X25519().GenerateKey(randOrDefault(rand))
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, err
	}
	aead, err := linkAEAD(shared, eph.PublicKey().Bytes(), linkKey)
	if err != nil {
		return nil, err
	}
	out := append([]byte{linkSealVersion}, eph.PublicKey().Bytes()...)
	return aead.Seal(out, make([]byte, aead.NonceSize()), plaintext, []byte(linkSealLabel)), nil
}

// OpenLink opens a sealed link message with the link key's private half.
func OpenLink(priv *ecdh.PrivateKey, sealed []byte) ([]byte, error) {
	if len(sealed) > MaxLinkSealed || len(sealed) < 1+x25519KeySize+chacha20poly1305.Overhead || sealed[0] != linkSealVersion {
		return nil, ErrLinkSealed
	}
	eph, err := ecdh.X25519().NewPublicKey(sealed[1 : 1+x25519KeySize])
	if err != nil {
		return nil, ErrLinkSealed
	}
	shared, err := priv.ECDH(eph)
	if err != nil {
		return nil, ErrLinkSealed
	}
	aead, err := linkAEAD(shared, sealed[1:1+x25519KeySize], priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), sealed[1+x25519KeySize:], []byte(linkSealLabel))
	if err != nil {
		return nil, ErrLinkSealed
	}
	return plain, nil
}
