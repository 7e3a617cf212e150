package e2ee

import "errors"

// Sentinel errors of the key, prekey bundle and PQXDH code. Errors returned by
// this package wrap one of them (test with errors.Is) and add which element
// failed, never secret material. The Double Ratchet's errors (ErrDecrypt …)
// live with the ratchet.

// ErrMalformedKeyData reports bytes that are not a valid encoding of a key,
// certificate, prekey bundle, initial message header or stored device key set:
// truncated, a length out of bounds, a field out of range, trailing bytes, or a
// public key that does not decode.
var ErrMalformedKeyData = errors.New("e2ee: malformed key data")

// ErrUnsupportedVersion reports an encoding whose version byte this code does
// not know.
var ErrUnsupportedVersion = errors.New("e2ee: unsupported encoding version")

// ErrBadSignature reports a device certificate or prekey signature that does
// not verify under the account identity key it is checked against.
var ErrBadSignature = errors.New("e2ee: signature does not verify")

// ErrWrongDevice reports a certificate that names another user or device than
// the one the caller asked for: a server handing out the wrong bundle, or a
// sender whose certificate does not match the envelope it came in.
var ErrWrongDevice = errors.New("e2ee: certificate names a different user or device")

// ErrLowOrderPoint reports an X25519 public key for which Diffie-Hellman gives
// the all-zero output (a low-order point): crypto/ecdh refuses it, and so does
// the handshake.
var ErrLowOrderPoint = errors.New("e2ee: X25519 public key of low order")

// ErrUnknownPreKey reports an initial message that names a prekey id this
// device does not hold: never issued, already used (one-time prekeys are
// single use, X3DH §3.4), or retired and pruned. A replayed initial message
// fails this way once its one-time prekey is gone.
var ErrUnknownPreKey = errors.New("e2ee: unknown or already used prekey")

// ErrTooManyPreKeys reports a request that would hold more one-time prekeys
// than MaxOneTimePreKeys, or exhaust the device's prekey id space.
var ErrTooManyPreKeys = errors.New("e2ee: too many prekeys")

// ErrInvalidArgument reports a caller error: an empty or too long user name,
// device id 0, a device auth key that is not 32 bytes, a nil key.
var ErrInvalidArgument = errors.New("e2ee: invalid argument")
