package e2ee

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"
)

// Safety numbers: Signal's numeric fingerprint, as libsignal's
// NumericFingerprintGenerator computes it (version 0, the displayable form),
// over an account identity key and the account's user name as the stable
// identifier. Each party's half is 30 digits; the 60-digit safety number is
// both halves, the smaller first, so both parties see the same number.
//
// Per party:
//
//	hash = u16 BE 0 ‖ identity key[32] ‖ user
//	5200 times: hash = SHA-512(hash ‖ identity key[32])
//	digits = the first 30 bytes of hash as six 5-byte big-endian integers,
//	         each mod 100000 and written as 5 digits
const (
	fingerprintVersion    = 0
	fingerprintIterations = 5200
	fingerprintChunks     = 6
	fingerprintChunkSize  = 5 // bytes per 5-digit group

	// FingerprintDigits is the length of one party's half of a safety number.
	FingerprintDigits = fingerprintChunks * 5
	// SafetyNumberDigits is the length of a safety number.
	SafetyNumberDigits = 2 * FingerprintDigits
)

// IdentityFingerprint is one account's half of every safety number it is
// part of: 30 digits that depend only on its user name and identity key, for
// `securechat fingerprint` to show.
func IdentityFingerprint(user string, key IdentityKey) string {
	return numericFingerprint(key.k[:], []byte(user))
}

// SafetyNumber is the 60-digit number two users compare, out of band, to
// check that each holds the other's real identity key (X3DH §4.1). Both
// sides get the same number whichever is local; it changes when either
// identity key or user name changes.
func SafetyNumber(localUser string, local IdentityKey, remoteUser string, remote IdentityKey) string {
	l := IdentityFingerprint(localUser, local)
	r := IdentityFingerprint(remoteUser, remote)
	if l <= r {
		return l + r
	}
	return r + l
}

// FormatSafetyNumber writes a safety number (or a fingerprint) in groups of
// five digits separated by spaces: twelve groups for a safety number.
func FormatSafetyNumber(number string) string {
	var b strings.Builder
	for i := 0; i < len(number); i += 5 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(number[i:min(i+5, len(number))])
	}
	return b.String()
}

// numericFingerprint is libsignal's getFingerprint followed by its
// getDisplayStringFor, for one key.
func numericFingerprint(key, stableID []byte) string {
	hash := make([]byte, 0, sha512.Size+len(key)+len(stableID))
	hash = binary.BigEndian.AppendUint16(hash, fingerprintVersion)
	hash = append(hash, key...)
	hash = append(hash, stableID...)
	h := sha512.New()
	var sum [sha512.Size]byte
	for range fingerprintIterations {
		h.Reset()
		h.Write(hash)
		h.Write(key)
		hash = h.Sum(sum[:0])
	}
	var b strings.Builder
	for i := range fingerprintChunks {
		var chunk [8]byte
		copy(chunk[3:], hash[i*fingerprintChunkSize:(i+1)*fingerprintChunkSize])
		fmt.Fprintf(&b, "%05d", binary.BigEndian.Uint64(chunk[:])%100000)
	}
	return b.String()
}
