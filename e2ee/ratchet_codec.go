package e2ee

import (
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// Encodings of the Double Ratchet: the message that goes on the wire and
// the session state a client stores. Both are fixed, versioned binary
// layouts, all integers big endian; every length is checked before use.
//
// Message, version 1 (Double Ratchet §3.4 HEADER and CONCAT):
//
//	u8   version = 1
//	[32] DHs: the sender's X25519 ratchet public key
//	u32  PN: number of messages in the sender's previous sending chain
//	u32  N: message number in the current sending chain (< 2^32-1)
//	...  ChaCha20-Poly1305 ciphertext of the plaintext, with its 16-byte tag
//
// The first 41 bytes are the header. The AEAD's associated data is the
// session's AD followed by those 41 bytes.
//
// Session state, version 3 (Double Ratchet §3.2):
//
//	u8   version = 3
//	u8   flags: 0x01 DHr set, 0x02 CKs set, 0x04 CKr set; other bits 0
//	[32] DHs private key
//	[32] DHs public key
//	[32] DHr (zeros when not set)
//	[32] RK
//	[32] CKs (zeros when not set)
//	[32] CKr (zeros when not set)
//	u32  Ns
//	u32  Nr
//	u32  PN
//	u32  receiving DH ratchet steps so far
//	u16  length of AD, 1 to 4096
//	...  AD
//	u16  number of skipped message keys, at most MaxSkippedKeys
//	...  that many entries, oldest first:
//	     [32] ratchet public key, u32 N, u32 receiving step of its chain,
//	     [32] message key
//
// The steps let skipped keys expire (MaxSkippedSteps, Double Ratchet §6.4):
// entries are in step order and none is more than MaxSkippedSteps steps
// old.
//
// Version 2 is version 3 without the steps (all taken as 0), and version 1,
// which sessions were stored in before that, is version 2 without the DHs
// public key. Both still decode (the public key is derived from the private
// key then) and are encoded as version 3. Version 2 added
// the public key because deriving it, an X25519 base-point multiplication,
// cost more than the rest of decoding and using a session together; the
// private key is checked against it when a DH ratchet step first needs it
// (ratchetKey in ratchet.go).
//
// Decoding is strict, so that encoding what was decoded gives the same
// bytes (a version 1 state: the same state as version 2): unknown flags,
// fields set that the flags say are absent, flag combinations no session
// can reach, duplicate skipped keys and trailing bytes are all refused.

const (
	ratchetMessageVersion = 1
	ratchetStateVersion   = 3
	ratchetStateVersion2  = 2 // no steps: still decoded
	ratchetStateVersion1  = 1 // no steps, no DHs public key: still decoded

	// ratchetHeaderSize is the size of an encoded header: version, DHs, PN, N.
	ratchetHeaderSize = 1 + ratchetKeySize + 4 + 4

	ratchetFlagDHr      = 0x01
	ratchetFlagCKs      = 0x02
	ratchetFlagCKr      = 0x04
	ratchetStateFixed   = 1 + 1 + 6*ratchetKeySize + 4*4      // up to the AD length
	ratchetStateFixed2  = ratchetStateFixed - 4               // version 2
	ratchetStateFixed1  = ratchetStateFixed2 - ratchetKeySize // version 1
	ratchetSkippedSize  = ratchetKeySize + 4 + 4 + ratchetKeySize
	ratchetSkippedSize2 = ratchetSkippedSize - 4 // versions 1 and 2
)

// ratchetHeader is a message header (Double Ratchet §3.4).
type ratchetHeader struct {
	dh    [ratchetKeySize]byte
	pn, n uint32
}

func (h *ratchetHeader) appendTo(b []byte) []byte {
	b = append(b, ratchetMessageVersion)
	b = append(b, h.dh[:]...)
	b = binary.BigEndian.AppendUint32(b, h.pn)
	return binary.BigEndian.AppendUint32(b, h.n)
}

// ratchetParseHeader checks an encoded message's size and version and
// decodes its header. The ciphertext is message[ratchetHeaderSize:].
func ratchetParseHeader(message []byte) (ratchetHeader, error) {
	var h ratchetHeader
	if len(message) < ratchetHeaderSize+chacha20poly1305.Overhead {
		return h, fmt.Errorf("%w: message of %d bytes is too short", ErrDecrypt, len(message))
	}
	if message[0] != ratchetMessageVersion {
		return h, fmt.Errorf("%w: unsupported message version %d", ErrDecrypt, message[0])
	}
	copy(h.dh[:], message[1:1+ratchetKeySize])
	h.pn = binary.BigEndian.Uint32(message[1+ratchetKeySize:])
	h.n = binary.BigEndian.Uint32(message[1+ratchetKeySize+4:])
	if h.n == math.MaxUint32 {
		// Encrypt never uses it: Nr = N+1 must fit.
		return h, fmt.Errorf("%w: message number out of range", ErrDecrypt)
	}
	return h, nil
}

// MarshalBinary encodes the session state. The encoding holds the session's
// secrets: keep it encrypted at rest and zero it after use.
func (s *Session) MarshalBinary() ([]byte, error) {
	if p := s.phase(); p == ratchetZeroed {
		return nil, fmt.Errorf("e2ee: ratchet: session is %v", p)
	}
	b := make([]byte, 0, ratchetStateFixed+2+len(s.ad)+2+len(s.skip.order)*ratchetSkippedSize)
	var flags byte
	if s.hasDHr {
		flags |= ratchetFlagDHr
	}
	if s.hasCKs {
		flags |= ratchetFlagCKs
	}
	if s.hasCKr {
		flags |= ratchetFlagCKr
	}
	b = append(b, ratchetStateVersion, flags)
	if s.dhs != nil {
		priv := s.dhs.Bytes()
		b = append(b, priv...)
		clear(priv)
	} else {
		b = append(b, s.dhsPriv[:]...)
	}
	b = append(b, s.dhsPub[:]...)
	b = append(b, s.dhr[:]...)
	b = append(b, s.rk[:]...)
	b = append(b, s.cks[:]...)
	b = append(b, s.ckr[:]...)
	b = binary.BigEndian.AppendUint32(b, s.ns)
	b = binary.BigEndian.AppendUint32(b, s.nr)
	b = binary.BigEndian.AppendUint32(b, s.pn)
	b = binary.BigEndian.AppendUint32(b, s.steps)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.ad)))
	b = append(b, s.ad...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.skip.order)))
	for i, id := range s.skip.order {
		mk := s.skip.keys[id]
		b = append(b, id.pub[:]...)
		b = binary.BigEndian.AppendUint32(b, id.n)
		b = binary.BigEndian.AppendUint32(b, s.skip.steps[i])
		b = append(b, mk[:]...)
		clear(mk[:])
	}
	return b, nil
}

// errRatchetState is the error of UnmarshalSession; it names no detail of
// the secret contents.
var errRatchetState = errors.New("e2ee: malformed ratchet session state")

// UnmarshalSession decodes a session encoded by MarshalBinary, of this
// version or versions 1 and 2.
func UnmarshalSession(b []byte) (*Session, error) {
	bad := func(what string) (*Session, error) {
		return nil, fmt.Errorf("%w: %s", errRatchetState, what)
	}
	if len(b) < 1 {
		return bad("too short")
	}
	version := b[0]
	fixed, entry := ratchetStateFixed, ratchetSkippedSize
	switch version {
	case ratchetStateVersion:
	case ratchetStateVersion2:
		fixed, entry = ratchetStateFixed2, ratchetSkippedSize2
	case ratchetStateVersion1:
		fixed, entry = ratchetStateFixed1, ratchetSkippedSize2
	default:
		return bad(fmt.Sprintf("unsupported version %d", b[0]))
	}
	if len(b) < fixed+2 {
		return bad("too short")
	}
	flags := b[1]
	if flags&^(ratchetFlagDHr|ratchetFlagCKs|ratchetFlagCKr) != 0 {
		return bad("unknown flags")
	}
	s := &Session{
		hasDHr: flags&ratchetFlagDHr != 0,
		hasCKs: flags&ratchetFlagCKs != 0,
		hasCKr: flags&ratchetFlagCKr != 0,
	}
	// Reachable states (see the diagram in ratchet.go): awaiting has no
	// DHr and no chains; pending has DHr and CKr; sending has DHr and CKs.
	switch {
	case !s.hasDHr && (s.hasCKs || s.hasCKr):
		return bad("chain key without a remote ratchet key")
	case s.hasDHr && !s.hasCKs && !s.hasCKr:
		return bad("remote ratchet key without a chain")
	}
	off := 2
	next := func(dst []byte) {
		copy(dst, b[off:off+len(dst)])
		off += len(dst)
	}
	next(s.dhsPriv[:])
	if version == ratchetStateVersion1 {
		dhs, err := ecdh.X25519().NewPrivateKey(s.dhsPriv[:])
		clear(s.dhsPriv[:])
		if err != nil {
			return bad("ratchet private key")
		}
		s.dhs = dhs
		copy(s.dhsPub[:], dhs.PublicKey().Bytes())
	} else {
		next(s.dhsPub[:])
	}
	next(s.dhr[:])
	next(s.rk[:])
	next(s.cks[:])
	next(s.ckr[:])
	s.ns = binary.BigEndian.Uint32(b[off:])
	s.nr = binary.BigEndian.Uint32(b[off+4:])
	s.pn = binary.BigEndian.Uint32(b[off+8:])
	off += 12
	if version == ratchetStateVersion {
		s.steps = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	zero := [ratchetKeySize]byte{}
	switch {
	case !s.hasDHr && s.dhr != zero, !s.hasCKs && s.cks != zero, !s.hasCKr && s.ckr != zero:
		s.Zero()
		return bad("key set that the flags say is absent")
	case !s.hasCKs && s.ns != 0:
		s.Zero()
		return bad("message number without a sending chain")
	case !s.hasCKr && (s.nr != 0 || s.pn != 0):
		s.Zero()
		return bad("message number without a receiving chain")
	}
	adLen := int(binary.BigEndian.Uint16(b[off:]))
	off += 2
	if adLen == 0 || adLen > ratchetMaxADSize || len(b)-off < adLen+2 {
		s.Zero()
		return bad("associated data length")
	}
	s.ad = make([]byte, adLen)
	next(s.ad)
	count := int(binary.BigEndian.Uint16(b[off:]))
	off += 2
	if count > MaxSkippedKeys || (count > 0 && !s.hasCKr) {
		s.Zero()
		return bad("skipped key count")
	}
	if len(b)-off != count*entry {
		s.Zero()
		return bad("length does not match the skipped key count")
	}
	if count > 0 {
		s.skip.keys = make(map[ratchetSkipID][ratchetKeySize]byte, count)
		s.skip.order = make([]ratchetSkipID, 0, count)
		s.skip.steps = make([]uint32, 0, count)
	}
	for range count {
		var id ratchetSkipID
		var mk [ratchetKeySize]byte
		next(id.pub[:])
		id.n = binary.BigEndian.Uint32(b[off:])
		off += 4
		var step uint32
		if version == ratchetStateVersion {
			step = binary.BigEndian.Uint32(b[off:])
			off += 4
		}
		next(mk[:])
		if _, dup := s.skip.keys[id]; dup {
			s.Zero()
			return bad("duplicate skipped key")
		}
		// Ages (differences, as expire reads them) never grow along the
		// order, and none is past MaxSkippedSteps: no session stores
		// anything else.
		age := s.steps - step
		if age > MaxSkippedSteps || (len(s.skip.steps) > 0 && age > s.steps-s.skip.steps[len(s.skip.steps)-1]) {
			s.Zero()
			return bad("skipped key step")
		}
		s.skip.keys[id] = mk
		s.skip.order = append(s.skip.order, id)
		s.skip.steps = append(s.skip.steps, step)
		clear(mk[:])
	}
	return s, nil
}
