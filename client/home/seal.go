package home

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/securechat/securechat/transport"
)

// The home store is sealed at rest (docs/protocol.md §10): every value is
// encrypted with XChaCha20-Poly1305 under a key derived from the user's
// passphrase by argon2id, bound to its bucket and key as associated data;
// keys that would reveal whom the user talks to are replaced by an HMAC.
// Only the KDF parameters and a verifier are stored in the clear.

// HKDF info labels of the home store, protocol.md §10.
const (
	labelHomeValues  = "securechat home values v1"
	labelHomeIndex   = "securechat home index v1"
	labelHomeCheck   = "securechat home passphrase check v1"
	labelHomeWrap    = "securechat home key wrap v1"
	homeCheckContent = "securechat home"
)

// KDFParams are the argon2id parameters of a home's passphrase.
type KDFParams struct {
	Time    uint32
	MemoryK uint32 // KiB
	Threads uint8
}

// DefaultKDF is RFC 9106's second recommended option (t=3, 64 MiB). A home
// sealed with weaker parameters (earlier versions used t=1) is upgraded
// when it is next opened with the right passphrase (Open, upgradeKDF).
var DefaultKDF = KDFParams{Time: 3, MemoryK: 64 * 1024, Threads: 4}

// weaker reports whether p costs an attacker less than target.
func (p KDFParams) weaker(target KDFParams) bool {
	return p.Time < target.Time || p.MemoryK < target.MemoryK
}

// kdfRecord is stored in the clear: what is needed to derive the key and
// to tell a wrong passphrase from a damaged store. The home's master key is
// argon2id(passphrase, Salt, Params) itself, or, once the parameters were
// upgraded, Wrapped under a key derived from that (the master key of an
// upgraded home stays what it was, so no value needs sealing again).
type kdfRecord struct {
	Params  KDFParams
	Salt    []byte
	Check   []byte // seal(labelHomeCheck, homeCheckContent)
	Wrapped []byte // nonce ‖ XChaCha20-Poly1305(HKDF(argon2id, labelHomeWrap), master)
}

func (r *kdfRecord) MarshalFields(e *transport.Encoder) {
	e.Uint(1, uint64(r.Params.Time))
	e.Uint(2, uint64(r.Params.MemoryK))
	e.Uint(3, uint64(r.Params.Threads))
	e.BytesField(4, r.Salt)
	e.BytesField(5, r.Check)
	e.BytesField(6, r.Wrapped)
}

func (r *kdfRecord) UnmarshalFields(d *transport.Decoder) error {
	err := transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Params.Time, err = f.Uint32()
		case 2:
			r.Params.MemoryK, err = f.Uint32()
		case 3:
			var v uint64
			if v, err = f.Uint(); err == nil && v > 255 {
				err = errors.New("home key parameters are out of range")
			}
			r.Params.Threads = uint8(v)
		case 4:
			r.Salt, err = f.Bytes(64)
		case 5:
			r.Check, err = f.Bytes(256)
		case 6:
			r.Wrapped, err = f.Bytes(256)
		default:
			return f.Unknown()
		}
		return err
	})
	p := r.Params
	if err == nil && (p.Time == 0 || p.Time > 16 || p.MemoryK < 8 || p.MemoryK > 1<<20 || p.Threads == 0 || p.Threads > 64 || len(r.Salt) < 16) {
		err = errors.New("home key parameters are out of range")
	}
	return err
}

// ErrWrongPassphrase is returned when a home's passphrase does not match.
var ErrWrongPassphrase = errors.New("wrong passphrase")

// sealer encrypts and authenticates the values of a home store.
type sealer struct {
	values   []byte // XChaCha20-Poly1305 key
	indexKey []byte // HMAC-SHA256 key for hidden lookup keys
	rand     io.Reader
}

func deriveSealer(passphrase string, rec *kdfRecord, rand io.Reader) (*sealer, error) {
	master, err := masterKey(passphrase, rec)
	if err != nil {
		return nil, err
	}
	defer clear(master)
	return newSealer(master, rand)
}

// masterKey derives the home's master key from the passphrase. A wrapped
// key that does not open is a wrong passphrase.
func masterKey(passphrase string, rec *kdfRecord) ([]byte, error) {
	k := argon2.IDKey([]byte(passphrase), rec.Salt, rec.Params.Time, rec.Params.MemoryK, rec.Params.Threads, 32)
	if rec.Wrapped == nil {
		return k, nil
	}
	defer clear(k)
	aead, err := wrapAEAD(k)
	if err != nil {
		return nil, err
	}
	if len(rec.Wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("home key parameters are damaged")
	}
	n := aead.NonceSize()
	master, err := aead.Open(nil, rec.Wrapped[:n], rec.Wrapped[n:], []byte(labelHomeWrap))
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return master, nil
}

// wrapMaster returns a record with params and a fresh salt whose
// passphrase-derived key wraps master.
func wrapMaster(passphrase string, master []byte, params KDFParams, check []byte, rand io.Reader) (*kdfRecord, error) {
	rec := &kdfRecord{Params: params, Salt: make([]byte, 16), Check: check}
	if _, err := io.ReadFull(rand, rec.Salt); err != nil {
		return nil, err
	}
	k := argon2.IDKey([]byte(passphrase), rec.Salt, params.Time, params.MemoryK, params.Threads, 32)
	defer clear(k)
	aead, err := wrapAEAD(k)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(master)+aead.Overhead())
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, err
	}
	rec.Wrapped = aead.Seal(nonce, nonce, master, []byte(labelHomeWrap))
	return rec, nil
}

func wrapAEAD(k []byte) (cipher.AEAD, error) {
	wk, err := hkdf.Key(sha256.New, k, nil, labelHomeWrap, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(wk)
	return chacha20poly1305.NewX(wk)
}

func newSealer(master []byte, rand io.Reader) (*sealer, error) {
	s := &sealer{rand: rand}
	var err error
	if s.values, err = hkdf.Key(sha256.New, master, nil, labelHomeValues, chacha20poly1305.KeySize); err != nil {
		return nil, err
	}
	if s.indexKey, err = hkdf.Key(sha256.New, master, nil, labelHomeIndex, 32); err != nil {
		return nil, err
	}
	return s, nil
}

// seal encrypts v for the slot (bucket, key): nonce ‖ ciphertext.
func (s *sealer) seal(bucket, key, v []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.values)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(v)+aead.Overhead())
	if _, err := io.ReadFull(s.rand, out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, v, slotAD(bucket, key)), nil
}

// open decrypts a value sealed for (bucket, key). A value moved to another
// slot or altered fails.
func (s *sealer) open(bucket, key, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.values)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	v, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], slotAD(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("home store value in %s does not authenticate", bucket)
	}
	return v, nil
}

// index hides a lookup key: HMAC-SHA256(indexKey, bucket ‖ 0 ‖ key).
func (s *sealer) index(bucket, key []byte) []byte {
	m := hmac.New(sha256.New, s.indexKey)
	m.Write(bucket)
	m.Write([]byte{0})
	m.Write(key)
	return m.Sum(nil)
}

func slotAD(bucket, key []byte) []byte {
	ad := make([]byte, 0, len(bucket)+1+len(key))
	ad = append(ad, bucket...)
	ad = append(ad, 0)
	return append(ad, key...)
}

// check verifies the passphrase against the stored verifier.
func (s *sealer) check(rec *kdfRecord) error {
	v, err := s.open([]byte(labelHomeCheck), nil, rec.Check)
	if err != nil || subtle.ConstantTimeCompare(v, []byte(homeCheckContent)) != 1 {
		return ErrWrongPassphrase
	}
	return nil
}

func (s *sealer) zero() {
	clear(s.values)
	clear(s.indexKey)
}
