package e2ee

import (
	"bytes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sender keys for groups (docs/protocol.md §9.6, docs/design.md §3), as Signal's
// libsignal does them ("sender keys"; Signal has published no
// specification): each member device has, per group, a sending chain — a
// chain key that a symmetric ratchet advances with every message (the
// KDF_CK of Double Ratchet §5.2) and an Ed25519 signing key. It gives the
// chain key, its position and the public signing key to every other
// member in a SenderKeyDistribution, sent over the pairwise Double Ratchet
// sessions; then each group message is encrypted once, for everyone, and
// signed, so that a member, who can derive the message keys, still cannot
// forge messages from another member. A member that leaves is cut off by
// the remaining members making new chains (NewSenderKey again) and sending
// them only to each other.
//
//	message key  = HMAC-SHA256(chain key, 0x01)
//	next chain   = HMAC-SHA256(chain key, 0x02)
//	key ‖ nonce  = HKDF-SHA256(ikm = message key, salt = none,
//	               info = senderKeyMessageLabel) → 32 + 12 bytes
//
// Message, version 1:
//
//	u8   version = 1
//	[16] distribution id (the group's)
//	u32  chain id
//	u32  iteration (the message's number in the chain)
//	...  ChaCha20-Poly1305 ciphertext with its tag; associated data
//	     AD ‖ the 25 bytes above
//	[64] Ed25519 signature by the chain's signing key over
//	     senderKeySignatureContext ‖ u16 len(AD) ‖ AD ‖ every byte above
//
// AD is the caller's: the group and the sending device, so that a message
// cannot be replayed into another group or under another sender's name.

const (
	// DistributionIDSize is the length of a distribution id.
	DistributionIDSize = 16
	// MaxSenderKeySkip bounds how far one message may move a chain
	// forward; a message further ahead is refused before any key is
	// derived.
	MaxSenderKeySkip = 2000
	// MaxSenderKeySkipped bounds the skipped message keys stored per
	// chain; the oldest are dropped first.
	MaxSenderKeySkipped = 2000
	// MaxSenderChains is how many chains of one sender a record keeps,
	// newest first: messages sent just before a rotation still decrypt.
	MaxSenderChains = 5

	senderKeyVersion          = 1
	senderKeyStateVersion     = 2 // the stored states; version 1 is still read
	senderKeyHeaderSize       = 1 + DistributionIDSize + 4 + 4
	senderKeyMessageLabel     = "securechat sender key message v1"
	senderKeySignatureContext = "securechat sender key signature v1"
	senderKeyMaxAD            = 4096
)

// ErrUnknownSenderChain reports a group message from a chain this member
// holds no key for: the sender rotated its key and did not send this
// member the new one (it left the group, or the distribution is still on
// its way).
var ErrUnknownSenderChain = errors.New("e2ee: no sender key for this message's chain")

// ErrBeforeSenderKey reports a group message of a chain this member holds
// but from before the first position it was given: it was never readable
// here (unlike a duplicate, ErrDuplicate), and becomes readable if the
// sender gives the chain from an earlier position (SenderKey.DistributionAt,
// SenderKeyRecord.Add).
var ErrBeforeSenderKey = errors.New("e2ee: message sent before the sender key this member was given")

// SenderKey is a member device's own sending chain in one group.
type SenderKey struct {
	distribution [DistributionIDSize]byte
	chainID      uint32
	iteration    uint32
	chainKey     [32]byte
	signing      ed25519.PrivateKey
	// start and startKey are the earliest position this state can give
	// the chain from (DistributionAt) and the chain key there: 0 and the
	// first chain key for a chain made by NewSenderKey; for a state stored
	// before version 2, the position it was read at. Keeping them costs
	// forward secrecy within the chain: whoever takes this state can
	// derive the keys of the chain's messages already sent, whose
	// plaintext the sender keeps anyway (docs/security.md).
	start    uint32
	startKey [32]byte
}

// NewSenderKey makes a new sending chain for the group with distribution
// id distribution: a random chain id, chain key and signing key, from rand
// (nil: crypto/rand).
func NewSenderKey(rand io.Reader, distribution [DistributionIDSize]byte) (*SenderKey, error) {
	rand = randOrDefault(rand)
	k := &SenderKey{distribution: distribution}
	var id [4]byte
	if _, err := io.ReadFull(rand, id[:]); err != nil {
		return nil, fmt.Errorf("e2ee: sender key: %w", err)
	}
	k.chainID = binary.BigEndian.Uint32(id[:])
	if _, err := io.ReadFull(rand, k.chainKey[:]); err != nil {
		return nil, fmt.Errorf("e2ee: sender key: %w", err)
	}
	k.startKey = k.chainKey
	seed := make([]byte, ed25519.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("e2ee: sender key: %w", err)
	}
	k.signing = ed25519.NewKeyFromSeed(seed)
	return k, nil
}

// ChainID names the chain.
func (k *SenderKey) ChainID() uint32 { return k.chainID }

// Iteration is the number of the next message.
func (k *SenderKey) Iteration() uint32 { return k.iteration }

// Start is the earliest position DistributionAt can give the chain from.
func (k *SenderKey) Start() uint32 { return k.start }

// Distribution is what another member needs to read this chain from the
// next message on (not the ones before).
func (k *SenderKey) Distribution() *SenderKeyDistribution {
	return &SenderKeyDistribution{
		DistributionID: k.distribution,
		ChainID:        k.chainID,
		Iteration:      k.iteration,
		ChainKey:       k.chainKey,
		SigningKey:     [32]byte(k.signing.Public().(ed25519.PublicKey)),
	}
}

// DistributionAt is what another member needs to read this chain from
// message n on, Start() ≤ n ≤ Iteration(), derived forward from the start
// (at most MaxSenderKeySkip steps): for a member that lost the chain, or
// was handed it at a later position than the messages it waits for read
// (docs/protocol.md §8.3, "Waiting for a key").
func (k *SenderKey) DistributionAt(n uint32) (*SenderKeyDistribution, error) {
	if n < k.start || n > k.iteration {
		return nil, fmt.Errorf("e2ee: sender chain position %d is outside %d..%d", n, k.start, k.iteration)
	}
	if n-k.start > MaxSenderKeySkip {
		return nil, ErrTooManySkipped
	}
	ck := k.startKey
	for range n - k.start {
		mk, next := senderKDF(&ck)
		clear(mk[:])
		ck = next
	}
	d := k.Distribution()
	d.Iteration, d.ChainKey = n, ck
	clear(ck[:])
	return d, nil
}

// senderKDF is KDF_CK (Double Ratchet §5.2) of a sender chain.
func senderKDF(ck *[32]byte) (mk, next [32]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x01})
	m.Sum(mk[:0])
	m.Reset()
	m.Write([]byte{0x02})
	m.Sum(next[:0])
	return mk, next
}

func senderAEAD(mk *[32]byte) (cipher.AEAD, []byte, error) {
	okm, err := hkdf.Key(sha256.New, mk[:], nil, senderKeyMessageLabel, chacha20poly1305.KeySize+chacha20poly1305.NonceSize)
	if err != nil {
		return nil, nil, err
	}
	defer clear(okm[:chacha20poly1305.KeySize])
	aead, err := chacha20poly1305.New(okm[:chacha20poly1305.KeySize])
	return aead, okm[chacha20poly1305.KeySize:], err
}

func senderSigned(ad, body []byte) []byte {
	b := make([]byte, 0, len(senderKeySignatureContext)+2+len(ad)+len(body))
	b = append(b, senderKeySignatureContext...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ad)))
	b = append(b, ad...)
	return append(b, body...)
}

// Encrypt encrypts and signs plaintext as the chain's next message, bound
// to ad (at most 4096 bytes), and advances the chain.
func (k *SenderKey) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if len(ad) > senderKeyMaxAD {
		return nil, fmt.Errorf("e2ee: sender key associated data of %d bytes", len(ad))
	}
	if k.iteration == math.MaxUint32 {
		return nil, errors.New("e2ee: sender chain exhausted: make a new sender key")
	}
	mk, next := senderKDF(&k.chainKey)
	defer clear(mk[:])
	aead, nonce, err := senderAEAD(&mk)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 0, senderKeyHeaderSize+len(plaintext)+chacha20poly1305.Overhead+ed25519.SignatureSize)
	msg = append(msg, senderKeyVersion)
	msg = append(msg, k.distribution[:]...)
	msg = binary.BigEndian.AppendUint32(msg, k.chainID)
	msg = binary.BigEndian.AppendUint32(msg, k.iteration)
	msg = aead.Seal(msg, nonce, plaintext, append(slices.Clip(ad), msg...))
	msg = append(msg, ed25519.Sign(k.signing, senderSigned(ad, msg))...)
	k.chainKey = next
	clear(next[:])
	k.iteration++
	return msg, nil
}

// SenderKeyDistribution hands one member's chain to another member.
type SenderKeyDistribution struct {
	DistributionID [DistributionIDSize]byte
	ChainID        uint32
	Iteration      uint32
	ChainKey       [32]byte
	SigningKey     [32]byte // Ed25519 public key
}

const senderKeyDistributionSize = 1 + DistributionIDSize + 4 + 4 + 32 + 32

// MarshalBinary encodes d: u8 version = 1 ‖ [16] distribution id ‖ u32
// chain id ‖ u32 iteration ‖ [32] chain key ‖ [32] signing key.
func (d *SenderKeyDistribution) MarshalBinary() ([]byte, error) {
	e := keyEncoder{b: make([]byte, 0, senderKeyDistributionSize)}
	e.u8(senderKeyVersion)
	e.raw(d.DistributionID[:])
	e.u32(d.ChainID)
	e.u32(d.Iteration)
	e.raw(d.ChainKey[:])
	e.raw(d.SigningKey[:])
	return e.b, nil
}

// ParseSenderKeyDistribution decodes what MarshalBinary wrote.
func ParseSenderKeyDistribution(b []byte) (*SenderKeyDistribution, error) {
	d := &keyDecoder{b: b, what: "sender key distribution"}
	if err := d.version(senderKeyVersion); err != nil {
		return nil, err
	}
	var out SenderKeyDistribution
	copy(out.DistributionID[:], d.take(DistributionIDSize))
	out.ChainID = d.u32()
	out.Iteration = d.u32()
	copy(out.ChainKey[:], d.take(32))
	copy(out.SigningKey[:], d.take(32))
	if err := d.finish(); err != nil {
		return nil, err
	}
	if out.SigningKey == [32]byte{} {
		return nil, fmt.Errorf("%w: sender key distribution: zero signing key", ErrMalformedKeyData)
	}
	return &out, nil
}

// senderChain is one chain of another member, as a record holds it.
type senderChain struct {
	chainID   uint32
	iteration uint32 // the next message's number
	// base is the earliest position the record was given the chain at:
	// a message before it was never readable here (ErrBeforeSenderKey),
	// one from base on that is neither ahead nor skipped was read
	// (ErrDuplicate). 0 for a chain stored before version 2, whose base
	// is unknown: nothing before its position is added to it.
	base     uint32
	chainKey [32]byte
	signing  [32]byte
	skipped  []skippedSenderKey // oldest first
}

type skippedSenderKey struct {
	iteration uint32
	key       [32]byte
}

func (c *senderChain) clone() *senderChain {
	cc := *c
	cc.skipped = slices.Clone(c.skipped)
	return &cc
}

// SenderKeyRecord is what a member device holds of another member
// device's sender key in one group: its chains, newest first.
type SenderKeyRecord struct {
	distribution [DistributionIDSize]byte
	chains       []*senderChain
}

// NewSenderKeyRecord starts a record from a distribution.
func NewSenderKeyRecord(d *SenderKeyDistribution) *SenderKeyRecord {
	r := &SenderKeyRecord{distribution: d.DistributionID}
	r.Add(d)
	return r
}

// Add takes another distribution of the same group. A chain the record
// already has is never moved back, nor made to accept a message it has
// already read: a distribution from before the chain's base (the earliest
// position the record was given) adds the keys of the messages between
// the two as skipped keys — messages never readable here, so none of
// them was read — once the chain key it gives leads, derived forward, to
// the one the record holds (a distribution more than MaxSenderKeySkip
// behind the record's position, or from its base on, changes nothing).
// A new chain becomes the newest, and the oldest beyond MaxSenderChains
// is forgotten.
func (r *SenderKeyRecord) Add(d *SenderKeyDistribution) error {
	if d.DistributionID != r.distribution {
		return fmt.Errorf("%w: sender key distribution of another group", ErrMalformedKeyData)
	}
	for i, c := range r.chains {
		if c.chainID == d.ChainID {
			if c.signing != d.SigningKey {
				return fmt.Errorf("%w: chain %d redistributed with another signing key", ErrBadSignature, d.ChainID)
			}
			return r.extend(i, d)
		}
	}
	c := &senderChain{chainID: d.ChainID, iteration: d.Iteration, base: d.Iteration, chainKey: d.ChainKey, signing: d.SigningKey}
	r.chains = append([]*senderChain{c}, r.chains...)
	if len(r.chains) > MaxSenderChains {
		r.chains = r.chains[:MaxSenderChains]
	}
	return nil
}

// extend gives chain i the keys from d's position to its base, if d is
// from before the base and is the same chain (its key, derived forward,
// is the one the record holds at its position).
func (r *SenderKeyRecord) extend(i int, d *SenderKeyDistribution) error {
	c := r.chains[i]
	if d.Iteration >= c.base || c.iteration-d.Iteration > MaxSenderKeySkip {
		return nil
	}
	ck := d.ChainKey
	earlier := make([]skippedSenderKey, 0, c.base-d.Iteration)
	for n := d.Iteration; n < c.iteration; n++ {
		mk, next := senderKDF(&ck)
		if n < c.base {
			earlier = append(earlier, skippedSenderKey{iteration: n, key: mk})
		}
		clear(mk[:])
		ck = next
	}
	same := hmac.Equal(ck[:], c.chainKey[:])
	clear(ck[:])
	if !same {
		for j := range earlier {
			clear(earlier[j].key[:])
		}
		return fmt.Errorf("%w: chain %d redistributed with another chain key", ErrMalformedKeyData, d.ChainID)
	}
	cc := c.clone()
	cc.skipped = append(earlier, cc.skipped...)
	if over := len(cc.skipped) - MaxSenderKeySkipped; over > 0 {
		// The oldest go first, as when a message skips ahead: those
		// messages read as already received.
		cc.skipped = slices.Delete(cc.skipped, 0, over)
	}
	cc.base = d.Iteration
	r.chains[i] = cc
	return nil
}

// Decrypt checks the signature of a group message and decrypts it. A
// message that fails changes nothing; one that succeeds cannot be
// decrypted again (ErrDuplicate). A message from before the position the
// record was given its chain at is ErrBeforeSenderKey.
func (r *SenderKeyRecord) Decrypt(message, ad []byte) ([]byte, error) {
	if len(message) < senderKeyHeaderSize+chacha20poly1305.Overhead+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: message too short", ErrDecrypt)
	}
	if message[0] != senderKeyVersion {
		return nil, fmt.Errorf("%w: sender key message version %d", ErrUnsupportedVersion, message[0])
	}
	if !bytes.Equal(message[1:1+DistributionIDSize], r.distribution[:]) {
		return nil, fmt.Errorf("%w: message of another group", ErrDecrypt)
	}
	chainID := binary.BigEndian.Uint32(message[1+DistributionIDSize:])
	iteration := binary.BigEndian.Uint32(message[1+DistributionIDSize+4:])
	i := slices.IndexFunc(r.chains, func(c *senderChain) bool { return c.chainID == chainID })
	if i < 0 {
		return nil, ErrUnknownSenderChain
	}
	body, sig := message[:len(message)-ed25519.SignatureSize], message[len(message)-ed25519.SignatureSize:]
	if len(ad) > senderKeyMaxAD || !ed25519.Verify(r.chains[i].signing[:], senderSigned(ad, body), sig) {
		return nil, fmt.Errorf("%w: group message", ErrBadSignature)
	}
	c := r.chains[i].clone()
	mk, err := c.messageKey(iteration)
	if err != nil {
		return nil, err
	}
	defer clear(mk[:])
	aead, nonce, err := senderAEAD(&mk)
	if err != nil {
		return nil, err
	}
	header := body[:senderKeyHeaderSize]
	plain, err := aead.Open(nil, nonce, body[senderKeyHeaderSize:], append(slices.Clip(ad), header...))
	if err != nil {
		return nil, ErrDecrypt
	}
	r.chains[i] = c
	return plain, nil
}

// messageKey returns the key of message n, moving the chain forward and
// keeping the keys it passes (on c, a copy the caller commits).
func (c *senderChain) messageKey(n uint32) ([32]byte, error) {
	if n < c.iteration {
		j := slices.IndexFunc(c.skipped, func(s skippedSenderKey) bool { return s.iteration == n })
		if j < 0 && n < c.base {
			return [32]byte{}, ErrBeforeSenderKey
		}
		if j < 0 {
			return [32]byte{}, ErrDuplicate
		}
		mk := c.skipped[j].key
		c.skipped = slices.Delete(c.skipped, j, j+1)
		return mk, nil
	}
	if n-c.iteration > MaxSenderKeySkip {
		return [32]byte{}, ErrTooManySkipped
	}
	for c.iteration < n {
		mk, next := senderKDF(&c.chainKey)
		c.skipped = append(c.skipped, skippedSenderKey{iteration: c.iteration, key: mk})
		c.chainKey = next
		c.iteration++
	}
	if over := len(c.skipped) - MaxSenderKeySkipped; over > 0 {
		c.skipped = slices.Delete(c.skipped, 0, over)
	}
	mk, next := senderKDF(&c.chainKey)
	c.chainKey = next
	if c.iteration == math.MaxUint32 {
		return [32]byte{}, ErrTooManySkipped // the chain is spent
	}
	c.iteration++
	return mk, nil
}

// Encodings of the stored states, version 2, big endian:
//
//	SenderKey:       u8 2 ‖ [16] distribution ‖ u32 chain id ‖ u32 iteration
//	                 ‖ [32] chain key ‖ [32] signing key seed ‖ u32 start
//	                 ‖ [32] start chain key
//	SenderKeyRecord: u8 2 ‖ [16] distribution ‖ u8 chains (1..5), newest
//	                 first, each: u32 chain id ‖ u32 iteration ‖ u32 base
//	                 ‖ [32] chain key ‖ [32] signing key ‖ u16 skipped
//	                 (≤ 2000), oldest first, each: u32 iteration ‖ [32]
//	                 message key
//
// Version 1 (written before) is still read: the same without start,
// start key and base; its SenderKey starts where it is, its chains have
// base 0. Decoding is strict: a start after the iteration, a base after
// it, duplicate chains or skipped keys, skipped keys not below the
// chain's iteration or below its base and trailing bytes are refused.

// MarshalBinary encodes the sender's own chain, secrets included.
func (k *SenderKey) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	e.u8(senderKeyStateVersion)
	e.raw(k.distribution[:])
	e.u32(k.chainID)
	e.u32(k.iteration)
	e.raw(k.chainKey[:])
	e.raw(k.signing.Seed())
	e.u32(k.start)
	e.raw(k.startKey[:])
	return e.b, nil
}

// stateVersion reads a stored state's version: 1 or 2.
func (d *keyDecoder) stateVersion() byte {
	v := d.u8()
	if d.err == nil && v != 1 && v != senderKeyStateVersion {
		d.err = fmt.Errorf("%w: %s: version %d", ErrUnsupportedVersion, d.what, v)
	}
	return v
}

// UnmarshalSenderKey decodes what SenderKey.MarshalBinary wrote.
func UnmarshalSenderKey(b []byte) (*SenderKey, error) {
	d := &keyDecoder{b: b, what: "sender key"}
	v := d.stateVersion()
	var k SenderKey
	copy(k.distribution[:], d.take(DistributionIDSize))
	k.chainID = d.u32()
	k.iteration = d.u32()
	copy(k.chainKey[:], d.take(32))
	seed := d.take(ed25519.SeedSize)
	k.start, k.startKey = k.iteration, k.chainKey
	if v == senderKeyStateVersion {
		k.start = d.u32()
		copy(k.startKey[:], d.take(32))
		if d.err == nil && k.start > k.iteration {
			d.fail("start %d after iteration %d", k.start, k.iteration)
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	k.signing = ed25519.NewKeyFromSeed(seed)
	return &k, nil
}

// MarshalBinary encodes the record.
func (r *SenderKeyRecord) MarshalBinary() ([]byte, error) {
	var e keyEncoder
	e.u8(senderKeyStateVersion)
	e.raw(r.distribution[:])
	e.u8(byte(len(r.chains)))
	for _, c := range r.chains {
		e.u32(c.chainID)
		e.u32(c.iteration)
		e.u32(c.base)
		e.raw(c.chainKey[:])
		e.raw(c.signing[:])
		e.u16(uint16(len(c.skipped)))
		for _, s := range c.skipped {
			e.u32(s.iteration)
			e.raw(s.key[:])
		}
	}
	return e.b, nil
}

// UnmarshalSenderKeyRecord decodes what SenderKeyRecord.MarshalBinary wrote.
func UnmarshalSenderKeyRecord(b []byte) (*SenderKeyRecord, error) {
	d := &keyDecoder{b: b, what: "sender key record"}
	v := d.stateVersion()
	r := &SenderKeyRecord{}
	copy(r.distribution[:], d.take(DistributionIDSize))
	n := int(d.u8())
	if d.err == nil && (n < 1 || n > MaxSenderChains) {
		d.fail("%d chains", n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		c := &senderChain{chainID: d.u32(), iteration: d.u32()}
		if v == senderKeyStateVersion {
			c.base = d.u32()
			if d.err == nil && c.base > c.iteration {
				d.fail("base %d after iteration %d", c.base, c.iteration)
			}
		}
		copy(c.chainKey[:], d.take(32))
		copy(c.signing[:], d.take(32))
		k := int(d.u16())
		if d.err == nil && k > MaxSenderKeySkipped {
			d.fail("%d skipped keys", k)
		}
		for j := 0; j < k && d.err == nil; j++ {
			s := skippedSenderKey{iteration: d.u32()}
			copy(s.key[:], d.take(32))
			if d.err == nil && (s.iteration >= c.iteration || s.iteration < c.base || (j > 0 && s.iteration <= c.skipped[j-1].iteration)) {
				d.fail("skipped key %d out of order", s.iteration)
			}
			c.skipped = append(c.skipped, s)
		}
		if d.err == nil && slices.ContainsFunc(r.chains, func(o *senderChain) bool { return o.chainID == c.chainID }) {
			d.fail("chain %d twice", c.chainID)
		}
		r.chains = append(r.chains, c)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return r, nil
}
