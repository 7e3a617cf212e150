package e2ee

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// This file implements the Double Ratchet of Signal's specification "The
// Double Ratchet Algorithm" (Trevor Perrin, Moxie Marlinspike, revision 1,
// 2016), cited below as "Double Ratchet §n", with the cryptographic functions
// of its §5.2 recommendations:
//
//	DH          X25519 (crypto/ecdh, which refuses low-order points)
//	KDF_RK      HKDF-SHA256(salt = root key, ikm = DH output,
//	            info = ratchetRootLabel) → 64 bytes: root key ‖ chain key
//	KDF_CK      message key = HMAC-SHA256(ck, 0x01), next ck = HMAC-SHA256(ck, 0x02)
//	ENCRYPT     ChaCha20-Poly1305 under key ‖ nonce = HKDF-SHA256(salt = none,
//	            ikm = message key, info = ratchetMessageLabel) → 32 + 12 bytes,
//	            associated data AD ‖ encoded header (§3.4 CONCAT)
//
// Each message key encrypts exactly one message, so a nonce derived from it
// is never reused. The header and message layouts are in ratchet_codec.go.
//
// New ratchet key generation is deferred, as Double Ratchet §6.5 allows
// (Decrypt has no source of randomness anyway): on a new remote ratchet key,
// Decrypt does the receiving half of §3.5's DHRatchet (new root key and
// receiving chain) and the next Encrypt does the sending half (fresh ratchet
// key pair, new root key and sending chain). The root and chain keys, and so
// what goes on the wire, are those of §3.5's pseudocode: no new remote key
// can honestly arrive between the two halves, since the peer turns its
// ratchet only after it has seen our new key. The new private key also
// lives a shorter time.
//
// States of a Session (ratchetPhase), from the fields that §3.2 calls DHr,
// CKs and CKr:
//
//	NewResponderSession                                          NewInitiatorSession
//	        │                                                            │
//	        ▼                                                            ▼
//	  ┌──────────┐ Decrypt: new remote ┌─────────┐ Encrypt: sending ┌─────────┐
//	  │ awaiting ├────────────────────►│ pending ├─────────────────►│ sending │
//	  └──────────┘ key; receiving half └─────────┘ half of the step └────┬────┘
//	  no DHr, no chains;                    ▲                            │
//	  Encrypt refuses                       └────────────────────────────┘
//	                                          Decrypt: new remote key;
//	                                          receiving half of the step
//
// A message of the current receiving chain, or one whose key was skipped,
// leaves the state where it is.

// MaxSkip bounds how many message keys one message may make a receiver skip
// in a single chain (Double Ratchet §3.5 MAX_SKIP). A header asking for more
// is refused before any key is derived.
const MaxSkip = 1000

// MaxSkippedKeys bounds the skipped message keys a Session stores across all
// chains (Double Ratchet §6.4, deletion of skipped message keys). When more
// would be stored, the oldest are dropped first and their messages can no
// longer be decrypted.
const MaxSkippedKeys = 2000

// MaxSkippedSteps bounds how long a skipped message key is kept, in
// receiving DH ratchet steps (Double Ratchet §6.4: skipped keys are deleted
// after some number of ratchet steps). A key of the current receiving chain
// has age 0; once its chain is more than MaxSkippedSteps steps old, the key
// is dropped and its message can no longer be decrypted. A message that
// late is one the sender sent before the conversation went back and forth
// MaxSkippedSteps times; keeping its key forever would keep a key that
// decrypts it forever too.
const MaxSkippedSteps = 4

// HKDF info labels of the ratchet (Double Ratchet §5.2). Every derivation
// has its own label so that no two of them can produce related keys.
const (
	ratchetRootLabel    = "securechat ratchet root v1"
	ratchetMessageLabel = "securechat ratchet message v1"
)

// KDF_CK inputs (Double Ratchet §5.2): HMAC-SHA256 of the chain key over a
// single constant byte.
const (
	ratchetMessageKeyInput = 0x01
	ratchetChainKeyInput   = 0x02
)

// Sizes of the ratchet's secrets and AEAD parameters.
const (
	ratchetKeySize   = 32 // root keys, chain keys, message keys, X25519 keys
	ratchetSKSize    = 32 // the shared secret from PQXDH
	ratchetMaxADSize = 4096
)

// ErrDecrypt reports a ratchet message that could not be decrypted: it is
// malformed, of an unknown version, carries a low-order ratchet key, was
// encrypted for another session, or was modified in transit. The session is
// unchanged (Double Ratchet §3.5).
var ErrDecrypt = errors.New("e2ee: message could not be decrypted")

// ErrTooManySkipped reports a ratchet message whose header would make the
// receiver skip more than MaxSkip message keys in one chain. It is refused
// before any key is derived and the session is unchanged.
var ErrTooManySkipped = errors.New("e2ee: message skips too many message keys")

// ErrDuplicate reports a ratchet message of the current receiving chain whose
// message key is no longer held: the message was already decrypted (a replay)
// or its skipped key was dropped. The session is unchanged.
var ErrDuplicate = errors.New("e2ee: message already received or its key discarded")

// ratchetPhase names where a Session stands in the DH ratchet (the diagram
// at the top of this file). It is derived from the session's fields.
type ratchetPhase uint8

const (
	ratchetZeroed   ratchetPhase = 0 // zero value or after Zero: unusable
	ratchetAwaiting ratchetPhase = 1 // responder before its first message
	ratchetPending  ratchetPhase = 2 // the next Encrypt turns the sending ratchet
	ratchetSending  ratchetPhase = 3 // a sending chain exists
)

func (p ratchetPhase) String() string {
	switch p {
	case ratchetZeroed:
		return "zeroed"
	case ratchetAwaiting:
		return "awaiting"
	case ratchetPending:
		return "pending"
	case ratchetSending:
		return "sending"
	}
	return fmt.Sprintf("ratchetPhase(%d)", uint8(p))
}

// Session is one side of a Double Ratchet session between two devices
// (Double Ratchet §3.2). It is not safe for concurrent use. Its encoding
// (MarshalBinary) holds secrets: store it encrypted.
type Session struct {
	_       [0]func()            // not comparable: compare encodings, not sessions
	dhs     *ecdh.PrivateKey     // DHs: our ratchet key pair; nil in a decoded session until ratchetKey needs it
	dhsPriv [ratchetKeySize]byte // DHs's private key while dhs is nil (a decoded session)
	dhsPub  [ratchetKeySize]byte // DHs's public key, as sent in headers
	dhr     [ratchetKeySize]byte // DHr: the remote ratchet public key
	rk      [ratchetKeySize]byte // RK
	cks     [ratchetKeySize]byte // CKs
	ckr     [ratchetKeySize]byte // CKr
	hasDHr  bool                 // DHr is set
	hasCKs  bool                 // CKs is set
	hasCKr  bool                 // CKr is set
	ns      uint32               // Ns
	nr      uint32               // Nr
	pn      uint32               // PN
	steps   uint32               // receiving DH ratchet steps so far, for skipped keys' age
	ad      []byte               // AD, passed to every AEAD call; never empty, nil once zeroed
	skip    ratchetSkippedKeys   // MKSKIPPED
}

// ratchetSkipID names a skipped message key: the ratchet public key of its
// chain and its message number (Double Ratchet §3.2 MKSKIPPED).
type ratchetSkipID struct {
	pub [ratchetKeySize]byte
	n   uint32
}

// ratchetSkippedKey is one skipped message key, with the receiving step of
// its chain.
type ratchetSkippedKey struct {
	id   ratchetSkipID
	mk   [ratchetKeySize]byte
	step uint32
}

// ratchetSkippedKeys is MKSKIPPED with an insertion order, so that the
// oldest keys are dropped first when MaxSkippedKeys is reached or their
// chain grows too old. order holds exactly the keys of keys, each once;
// steps[i] is the receiving step of order[i]'s chain. Keys are added in
// step order, so steps never decreases along order and the keys to expire
// are always a prefix.
type ratchetSkippedKeys struct {
	keys  map[ratchetSkipID][ratchetKeySize]byte
	order []ratchetSkipID
	steps []uint32
}

// NewInitiatorSession starts the session of the party that ran PQXDH as
// initiator (Alice, Double Ratchet §3.3 RatchetInitAlice, §5.1). sk is the
// 32-byte shared secret from PQXDH; remote is the responder's signed
// prekey, which is the responder's first ratchet public key; ad is the
// associated data that binds both identities, passed to every AEAD call. rand supplies the
// first ratchet key pair; nil means crypto/rand.Reader.
func NewInitiatorSession(rand io.Reader, sk []byte, remote *ecdh.PublicKey, ad []byte) (*Session, error) {
	if err := ratchetCheckInit(sk, ad); err != nil {
		return nil, err
	}
	if remote == nil || remote.Curve() != ecdh.X25519() {
		return nil, errors.New("e2ee: ratchet: remote key must be an X25519 public key")
	}
	dhs, err := ratchetGenerateKey(rand)
	if err != nil {
		return nil, err
	}
	s := &Session{
		dhs:    dhs,
		hasDHr: true,
		hasCKs: true,
		ad:     slices.Clone(ad),
	}
	copy(s.dhsPub[:], dhs.PublicKey().Bytes())
	copy(s.dhr[:], remote.Bytes())
	dh, err := dhs.ECDH(remote)
	if err != nil {
		return nil, fmt.Errorf("e2ee: ratchet: remote key: %w", err)
	}
	var root [ratchetKeySize]byte
	copy(root[:], sk)
	s.rk, s.cks, err = ratchetKDFRK(&root, dh)
	clear(root[:])
	clear(dh)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewResponderSession starts the session of the party that ran PQXDH as
// responder (Bob, Double Ratchet §3.3 RatchetInitBob, §5.1): self is the signed
// prekey pair the initiator used, which becomes the first ratchet key pair.
// The session can send only after its first message has arrived.
func NewResponderSession(sk []byte, self *ecdh.PrivateKey, ad []byte) (*Session, error) {
	if err := ratchetCheckInit(sk, ad); err != nil {
		return nil, err
	}
	if self == nil || self.Curve() != ecdh.X25519() {
		return nil, errors.New("e2ee: ratchet: own key must be an X25519 private key")
	}
	s := &Session{dhs: self, ad: slices.Clone(ad)}
	copy(s.dhsPub[:], self.PublicKey().Bytes())
	copy(s.rk[:], sk)
	return s, nil
}

func ratchetCheckInit(sk, ad []byte) error {
	if len(sk) != ratchetSKSize {
		return fmt.Errorf("e2ee: ratchet: shared secret is %d bytes, want %d", len(sk), ratchetSKSize)
	}
	// An empty AD would bind no identity (Double Ratchet §3.3: AD should
	// hold both parties' identity keys).
	if len(ad) == 0 || len(ad) > ratchetMaxADSize {
		return fmt.Errorf("e2ee: ratchet: associated data is %d bytes, want 1 to %d", len(ad), ratchetMaxADSize)
	}
	return nil
}

// phase reports where s stands in the DH ratchet.
func (s *Session) phase() ratchetPhase {
	switch {
	case len(s.ad) == 0:
		return ratchetZeroed
	case !s.hasDHr:
		return ratchetAwaiting
	case !s.hasCKs:
		return ratchetPending
	}
	return ratchetSending
}

// Encrypt encrypts plaintext as the next message of the sending chain and
// returns the encoded message, header then ciphertext (Double Ratchet §3.4
// RatchetEncrypt). If a remote ratchet key arrived since the last message
// sent, it first completes the DH ratchet step (§3.5, deferred as §6.5
// allows) with a new key pair made from 32 bytes of rand; nil means
// crypto/rand.Reader. On error s is unchanged.
func (s *Session) Encrypt(rand io.Reader, plaintext []byte) ([]byte, error) {
	var (
		dhs    = s.dhs
		dhsPub = s.dhsPub
		rk     = s.rk
		ck     = s.cks
	)
	switch p := s.phase(); p {
	case ratchetSending:
	case ratchetPending:
		// Double Ratchet §3.5 DHRatchet, the sending half: a new DHs,
		// then RK, CKs = KDF_RK(RK, DH(DHs, DHr)).
		var err error
		if dhs, err = ratchetGenerateKey(rand); err != nil {
			return nil, err
		}
		copy(dhsPub[:], dhs.PublicKey().Bytes())
		remote, err := ecdh.X25519().NewPublicKey(s.dhr[:])
		if err != nil {
			return nil, err
		}
		dh, err := dhs.ECDH(remote)
		if err != nil {
			return nil, fmt.Errorf("e2ee: ratchet: remote ratchet key: %w", err)
		}
		rk, ck, err = ratchetKDFRK(&s.rk, dh)
		clear(dh)
		if err != nil {
			return nil, err
		}
	case ratchetAwaiting:
		return nil, errors.New("e2ee: ratchet: cannot send before the first message has arrived")
	default:
		return nil, fmt.Errorf("e2ee: ratchet: session is %v", p)
	}
	if s.ns == math.MaxUint32 {
		clear(rk[:])
		clear(ck[:])
		return nil, errors.New("e2ee: ratchet: sending chain exhausted")
	}
	mk := ratchetChainStep(&ck)
	h := ratchetHeader{dh: dhsPub, pn: s.pn, n: s.ns}
	out := make([]byte, 0, ratchetHeaderSize+len(plaintext)+chacha20poly1305.Overhead)
	out = h.appendTo(out)
	out, err := ratchetSeal(out, &mk, s.ad, plaintext)
	clear(mk[:])
	if err != nil {
		clear(rk[:])
		clear(ck[:])
		return nil, err
	}

	// Commit.
	if dhs != s.dhs {
		s.dhs = dhs
		clear(s.dhsPriv[:])
	}
	s.dhsPub, s.rk, s.cks = dhsPub, rk, ck
	s.hasCKs = true
	s.ns++
	clear(rk[:])
	clear(ck[:])
	return out, nil
}

// Decrypt decrypts an encoded message (Double Ratchet §3.5
// RatchetDecrypt). Like the specification, it works on a copy of the
// state (here: local variables) and commits only when the message
// authenticated; on any error s is unchanged. An error about the message
// wraps ErrDecrypt, ErrTooManySkipped or ErrDuplicate.
func (s *Session) Decrypt(message []byte) ([]byte, error) {
	if p := s.phase(); p == ratchetZeroed {
		return nil, fmt.Errorf("e2ee: ratchet: session is %v", p)
	}
	h, err := ratchetParseHeader(message)
	if err != nil {
		return nil, err
	}

	// TrySkippedMessageKeys.
	id := ratchetSkipID{pub: h.dh, n: h.n}
	if mk, ok := s.skip.keys[id]; ok {
		pt, err := ratchetOpen(message, &mk, s.ad)
		clear(mk[:])
		if err != nil {
			return nil, err
		}
		s.skip.remove(id)
		return pt, nil
	}

	if s.hasDHr && h.dh == s.dhr {
		return s.decryptCurrentChain(message, h)
	}
	return s.decryptNewChain(message, h)
}

// decryptCurrentChain decrypts a message of the current receiving chain,
// skipping (and keeping) the keys of the messages before it.
func (s *Session) decryptCurrentChain(message []byte, h ratchetHeader) ([]byte, error) {
	if !s.hasCKr {
		// The initiator's DHr is the responder's signed prekey, which
		// never heads a chain: the responder's first message brings a new
		// ratchet key.
		return nil, ErrDecrypt
	}
	if h.n < s.nr {
		return nil, ErrDuplicate
	}
	// MAX_SKIP is enforced before any key is derived.
	if h.n-s.nr > MaxSkip {
		return nil, ErrTooManySkipped
	}
	ck := s.ckr
	skipped := ratchetSkipKeys(&ck, h.dh, s.nr, h.n, s.steps)
	mk := ratchetChainStep(&ck)
	pt, err := ratchetOpen(message, &mk, s.ad)
	clear(mk[:])
	if err != nil {
		ratchetClearKeys(skipped)
		clear(ck[:])
		return nil, err
	}

	// Commit.
	s.ckr = ck
	s.nr = h.n + 1
	s.skip.add(skipped)
	clear(ck[:])
	ratchetClearKeys(skipped)
	return pt, nil
}

// decryptNewChain decrypts the first message seen under a new remote
// ratchet key: it skips the rest of the current receiving chain, does the
// receiving half of the DH ratchet step (Double Ratchet §3.5 DHRatchet)
// and skips the new chain's keys up to the message.
func (s *Session) decryptNewChain(message []byte, h ratchetHeader) ([]byte, error) {
	// MAX_SKIP is enforced before any key is derived, in both chains.
	if s.hasCKr && h.pn > s.nr && h.pn-s.nr > MaxSkip {
		return nil, ErrTooManySkipped
	}
	if h.n > MaxSkip {
		return nil, ErrTooManySkipped
	}
	remote, err := ecdh.X25519().NewPublicKey(h.dh[:])
	if err != nil {
		return nil, fmt.Errorf("%w: bad ratchet key", ErrDecrypt)
	}
	dhs, err := s.ratchetKey()
	if err != nil {
		return nil, err
	}
	dh, err := dhs.ECDH(remote)
	if err != nil {
		// crypto/ecdh refuses a low-order point (an all-zero output).
		return nil, fmt.Errorf("%w: ratchet key of low order", ErrDecrypt)
	}
	rk, ckr, err := ratchetKDFRK(&s.rk, dh)
	clear(dh)
	if err != nil {
		return nil, err
	}

	var skipped []ratchetSkippedKey
	if s.hasCKr && h.pn > s.nr {
		old := s.ckr
		skipped = ratchetSkipKeys(&old, s.dhr, s.nr, h.pn, s.steps)
		clear(old[:])
	}
	skipped = append(skipped, ratchetSkipKeys(&ckr, h.dh, 0, h.n, s.steps+1)...)
	mk := ratchetChainStep(&ckr)
	pt, err := ratchetOpen(message, &mk, s.ad)
	clear(mk[:])
	if err != nil {
		clear(rk[:])
		clear(ckr[:])
		ratchetClearKeys(skipped)
		return nil, err
	}

	// Commit: the old sending chain ends (PN = Ns) and the next Encrypt
	// does the sending half of the step; skipped keys of chains now too
	// old are dropped.
	s.skip.add(skipped)
	s.steps++
	s.skip.expire(s.steps)
	s.pn, s.ns = s.ns, 0
	clear(s.cks[:])
	s.hasCKs = false
	s.dhr, s.hasDHr = h.dh, true
	s.rk = rk
	s.ckr, s.hasCKr = ckr, true
	s.nr = h.n + 1
	clear(rk[:])
	clear(ckr[:])
	ratchetClearKeys(skipped)
	return pt, nil
}

// Zero overwrites the session's secrets (Double Ratchet §6.1), as far as Go
// allows: the private key inside crypto/ecdh cannot be overwritten, only
// dropped. The session is unusable afterwards.
func (s *Session) Zero() {
	s.dhs = nil
	clear(s.dhsPriv[:])
	clear(s.dhsPub[:])
	clear(s.dhr[:])
	clear(s.rk[:])
	clear(s.cks[:])
	clear(s.ckr[:])
	s.hasDHr, s.hasCKs, s.hasCKr = false, false, false
	s.ns, s.nr, s.pn, s.steps = 0, 0, 0, 0
	clear(s.ad)
	s.ad = nil
	s.skip.zero()
}

// ratchetKey returns DHs as a crypto/ecdh key. A decoded session holds
// only the key's bytes and its stored public key: making the key derives
// the public key again, an X25519 base-point multiplication that cost more
// than all the rest of loading and using a session. Only the receiving half
// of a DH ratchet step needs the private key (decryptNewChain), so it is
// made then, once, and checked against the stored public key, which the
// session has been sending in its headers.
func (s *Session) ratchetKey() (*ecdh.PrivateKey, error) {
	if s.dhs != nil {
		return s.dhs, nil
	}
	k, err := ecdh.X25519().NewPrivateKey(s.dhsPriv[:])
	if err != nil {
		return nil, fmt.Errorf("%w: ratchet private key", errRatchetState)
	}
	if subtle.ConstantTimeCompare(k.PublicKey().Bytes(), s.dhsPub[:]) != 1 {
		return nil, fmt.Errorf("%w: ratchet public key does not match the private key", errRatchetState)
	}
	s.dhs = k
	clear(s.dhsPriv[:])
	return k, nil
}

// ratchetGenerateKey makes a ratchet key pair from 32 bytes of rand (Double
// Ratchet §5.2 GENERATE_DH). It reads the bytes itself because
// ecdh.Curve.GenerateKey ignores a caller's reader since Go 1.26.
func ratchetGenerateKey(rand io.Reader) (*ecdh.PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var b [ratchetKeySize]byte
	defer clear(b[:])
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("e2ee: ratchet: reading randomness: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}

// ratchetKDFRK is KDF_RK (Double Ratchet §5.2): HKDF-SHA256 with the root
// key as salt and the DH output as input, giving a new root key and a chain
// key.
func ratchetKDFRK(rk *[ratchetKeySize]byte, dh []byte) (root, chain [ratchetKeySize]byte, err error) {
	out, err := hkdf.Key(sha256.New, dh, rk[:], ratchetRootLabel, 2*ratchetKeySize)
	if err != nil {
		return root, chain, fmt.Errorf("e2ee: ratchet: %w", err)
	}
	copy(root[:], out[:ratchetKeySize])
	copy(chain[:], out[ratchetKeySize:])
	clear(out)
	return root, chain, nil
}

// ratchetChainStep is KDF_CK (Double Ratchet §5.2): it returns the chain's
// next message key and advances ck.
func ratchetChainStep(ck *[ratchetKeySize]byte) (mk [ratchetKeySize]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{ratchetMessageKeyInput})
	m.Sum(mk[:0])
	m.Reset()
	m.Write([]byte{ratchetChainKeyInput})
	m.Sum(ck[:0])
	return mk
}

// ratchetSkipKeys derives the message keys from..until-1 of the chain of
// ratchet key pub (Double Ratchet §3.5 SkipMessageKeys), advancing ck; step
// is the chain's receiving step. The caller has bounded until-from by
// MaxSkip.
func ratchetSkipKeys(ck *[ratchetKeySize]byte, pub [ratchetKeySize]byte, from, until, step uint32) []ratchetSkippedKey {
	if until <= from {
		return nil
	}
	out := make([]ratchetSkippedKey, 0, until-from)
	for n := from; n < until; n++ {
		out = append(out, ratchetSkippedKey{id: ratchetSkipID{pub: pub, n: n}, mk: ratchetChainStep(ck), step: step})
	}
	return out
}

func ratchetClearKeys(keys []ratchetSkippedKey) {
	for i := range keys {
		clear(keys[i].mk[:])
	}
}

// ratchetAEAD derives the AEAD and nonce of one message key (Double Ratchet
// §5.2 ENCRYPT, with HKDF as recommended there).
func ratchetAEAD(mk *[ratchetKeySize]byte) (aead cipher.AEAD, nonce []byte, err error) {
	km, err := hkdf.Key(sha256.New, mk[:], nil, ratchetMessageLabel, chacha20poly1305.KeySize+chacha20poly1305.NonceSize)
	if err != nil {
		return nil, nil, fmt.Errorf("e2ee: ratchet: %w", err)
	}
	defer clear(km[:chacha20poly1305.KeySize])
	a, err := chacha20poly1305.New(km[:chacha20poly1305.KeySize])
	if err != nil {
		return nil, nil, err
	}
	return a, km[chacha20poly1305.KeySize:], nil
}

// ratchetAD is the AEAD's associated data: AD ‖ header (Double Ratchet §3.4
// CONCAT). AD is fixed for the session and the header has a fixed size, so
// the concatenation is unambiguous.
func ratchetAD(ad, header []byte) []byte {
	out := make([]byte, 0, len(ad)+len(header))
	return append(append(out, ad...), header...)
}

// ratchetSeal appends the ciphertext of plaintext to out, which holds the
// encoded header.
func ratchetSeal(out []byte, mk *[ratchetKeySize]byte, ad, plaintext []byte) ([]byte, error) {
	aead, nonce, err := ratchetAEAD(mk)
	if err != nil {
		return nil, err
	}
	return aead.Seal(out, nonce, plaintext, ratchetAD(ad, out[:ratchetHeaderSize])), nil
}

// ratchetOpen authenticates and decrypts an encoded message whose header
// has been parsed. Authentication failures say nothing more than ErrDecrypt.
func ratchetOpen(message []byte, mk *[ratchetKeySize]byte, ad []byte) ([]byte, error) {
	aead, nonce, err := ratchetAEAD(mk)
	if err != nil {
		return nil, err
	}
	header, ct := message[:ratchetHeaderSize], message[ratchetHeaderSize:]
	pt, err := aead.Open(nil, nonce, ct, ratchetAD(ad, header))
	if err != nil {
		return nil, ErrDecrypt
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// add stores skipped keys, dropping the oldest beyond MaxSkippedKeys. A key
// already present (only a misbehaving peer can cause that) is replaced in
// place, so order keeps each key once.
func (k *ratchetSkippedKeys) add(keys []ratchetSkippedKey) {
	if len(keys) == 0 {
		return
	}
	if k.keys == nil {
		k.keys = make(map[ratchetSkipID][ratchetKeySize]byte, len(keys))
	}
	for _, e := range keys {
		if _, ok := k.keys[e.id]; !ok {
			k.order = append(k.order, e.id)
			k.steps = append(k.steps, e.step)
		}
		k.keys[e.id] = e.mk
	}
	k.dropOldest(len(k.order) - MaxSkippedKeys)
}

// expire drops the keys of chains more than MaxSkippedSteps receiving steps
// older than now (Double Ratchet §6.4). Ages are differences, so a step
// counter that wraps around does not matter.
func (k *ratchetSkippedKeys) expire(now uint32) {
	n := 0
	for n < len(k.steps) && now-k.steps[n] > MaxSkippedSteps {
		n++
	}
	k.dropOldest(n)
}

// dropOldest deletes the n oldest keys.
func (k *ratchetSkippedKeys) dropOldest(n int) {
	if n <= 0 {
		return
	}
	for _, id := range k.order[:n] {
		k.keys[id] = [ratchetKeySize]byte{}
		delete(k.keys, id)
	}
	k.order = slices.Delete(k.order, 0, n)
	k.steps = slices.Delete(k.steps, 0, n)
}

// remove deletes one key, after its message was decrypted (Double Ratchet
// §3.5: a skipped key is deleted once used).
func (k *ratchetSkippedKeys) remove(id ratchetSkipID) {
	if _, ok := k.keys[id]; !ok {
		return
	}
	k.keys[id] = [ratchetKeySize]byte{}
	delete(k.keys, id)
	if i := slices.Index(k.order, id); i >= 0 {
		k.order = slices.Delete(k.order, i, i+1)
		k.steps = slices.Delete(k.steps, i, i+1)
	}
}

func (k *ratchetSkippedKeys) zero() {
	for id := range k.keys {
		k.keys[id] = [ratchetKeySize]byte{}
	}
	clear(k.keys)
	k.keys = nil
	k.order = nil
	k.steps = nil
}
