package e2ee

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Group signals (docs/protocol.md §8.3): a typing notice to a group is
// ephemeral — only the members connected at the moment get it — so it
// cannot use a sender chain, whose receivers would have to step over every
// signal they missed. Each sending chain comes instead with a random signal
// key, distributed with it to the same member devices, and each signal is
// sealed under it with a random nonce:
//
//	message = u8 version = 1 ‖ nonce[24] ‖ XChaCha20-Poly1305(key, nonce, plaintext, signalLabel ‖ AD)
//
// Any holder of the key can seal a signal, so a member could forge another
// member's typing notice (never a message: messages are signed); a signal
// says nothing more than "typing".

// SignalKeySize is the length of a signal key.
const SignalKeySize = 32

const (
	signalVersion = 1
	signalLabel   = "securechat group signal v1"
	maxSignalAD   = 4096
)

// ErrSignal reports a group signal that does not open.
var ErrSignal = errors.New("e2ee: group signal does not open")

// NewSignalKey makes a random signal key from rand (nil: crypto/rand).
func NewSignalKey(rand io.Reader) ([SignalKeySize]byte, error) {
	var k [SignalKeySize]byte
	if _, err := io.ReadFull(randOrDefault(rand), k[:]); err != nil {
		return k, fmt.Errorf("e2ee: signal key: %w", err)
	}
	return k, nil
}

// SealSignal seals plaintext under key, bound to ad (at most 4096 bytes).
func SealSignal(rand io.Reader, key *[SignalKeySize]byte, plaintext, ad []byte) ([]byte, error) {
	if len(ad) > maxSignalAD {
		return nil, fmt.Errorf("e2ee: signal associated data of %d bytes", len(ad))
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plaintext)+chacha20poly1305.Overhead)
	msg[0] = signalVersion
	if _, err := io.ReadFull(randOrDefault(rand), msg[1:]); err != nil {
		return nil, fmt.Errorf("e2ee: signal nonce: %w", err)
	}
	return aead.Seal(msg, msg[1:], plaintext, append([]byte(signalLabel), ad...)), nil
}

// OpenSignal opens what SealSignal sealed with the same key and ad.
func OpenSignal(key *[SignalKeySize]byte, msg, ad []byte) ([]byte, error) {
	if len(msg) < 1+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || len(ad) > maxSignalAD {
		return nil, ErrSignal
	}
	if msg[0] != signalVersion {
		return nil, fmt.Errorf("%w: group signal version %d", ErrUnsupportedVersion, msg[0])
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, err
	}
	nonce := msg[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := aead.Open(nil, nonce, msg[1+chacha20poly1305.NonceSizeX:], append([]byte(signalLabel), slices.Clip(ad)...))
	if err != nil {
		return nil, ErrSignal
	}
	return plain, nil
}
