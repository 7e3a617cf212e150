package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// TestRatchetFromSpec replays the Double Ratchet vectors with an
// implementation written from docs/protocol.md §9.2 alone: the initial
// states, Encrypt, Decrypt, KDF_RK, KDF_CK, ENCRYPT and the session state
// encoding, on the standard library's HKDF, HMAC and X25519 and on
// ChaCha20-Poly1305. It uses nothing of this package, so if the code and
// the document part ways, one of the two must be changed on purpose.
func TestRatchetFromSpec(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(ratchetVectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name       string `json:"name"`
			SK         string `json:"sk"`
			AD         string `json:"ad"`
			BobSPK     string `json:"bob_signed_prekey_private"`
			AliceRand  string `json:"alice_init_rand"`
			AliceState string `json:"alice_state"`
			BobState   string `json:"bob_state"`
			Steps      []struct {
				Op, Party, Expect, Rand, Plaintext, Message string
			} `json:"steps"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			sk, ad := unhex(v.SK), unhex(v.AD)
			spk, err := ecdh.X25519().NewPrivateKey(unhex(v.BobSPK))
			if err != nil {
				t.Fatal(err)
			}
			// Initial states, protocol.md §9.2.
			bob := &specSession{dhsPriv: spk.Bytes(), dhsPub: spk.PublicKey().Bytes(), rk: sk, ad: ad}
			alice := &specSession{ad: ad, dhr: spk.PublicKey().Bytes()}
			alice.dhsPriv = unhex(v.AliceRand) // GENERATE_DH: 32 random bytes as they are
			if len(alice.dhsPriv) != 32 {
				t.Fatalf("alice_init_rand is %d bytes, want 32", len(alice.dhsPriv))
			}
			alice.dhsPub = specPublic(t, alice.dhsPriv)
			alice.rk, alice.cks = specKDFRK(sk, specDH(t, alice.dhsPriv, alice.dhr))
			parties := map[string]*specSession{"alice": alice, "bob": bob}
			for i, st := range v.Steps {
				s := parties[st.Party]
				switch st.Op {
				case "encrypt":
					msg, err := s.encrypt(t, unhex(st.Rand), unhex(st.Plaintext))
					if err != nil {
						t.Fatalf("step %d: encrypt: %v", i, err)
					}
					if want := unhex(st.Message); !bytes.Equal(msg, want) {
						t.Fatalf("step %d: encrypt = %x\nwant %x", i, msg, want)
					}
				case "decrypt":
					before := s.encode()
					pt, err := s.decrypt(unhex(st.Message))
					got := "success"
					if err != nil {
						got = err.Error()
						if !bytes.Equal(before, s.encode()) {
							t.Fatalf("step %d: a failed decrypt changed the state", i)
						}
					}
					if got != st.Expect {
						t.Fatalf("step %d: decrypt: %s, want %s", i, got, st.Expect)
					}
					if err == nil && !bytes.Equal(pt, unhex(st.Plaintext)) {
						t.Fatalf("step %d: decrypt = %q, want %q", i, pt, unhex(st.Plaintext))
					}
				default:
					t.Fatalf("step %d: unknown op %q", i, st.Op)
				}
			}
			// The session state encoding of protocol.md §9.2, version 3.
			if got, want := alice.encode(), unhex(v.AliceState); !bytes.Equal(got, want) {
				t.Errorf("Alice's state:\n got %x\nwant %x", got, want)
			}
			if got, want := bob.encode(), unhex(v.BobState); !bytes.Equal(got, want) {
				t.Errorf("Bob's state:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// specSession is the state of protocol.md §9.2; a nil key is "none".
type specSession struct {
	dhsPriv, dhsPub, dhr, rk, cks, ckr []byte
	ns, nr, pn, steps                  uint32
	ad                                 []byte
	skipped                            []specSkipped // in the order added
}

type specSkipped struct {
	pub  []byte
	n    uint32
	step uint32
	mk   []byte
}

var (
	errSpecDecrypt   = errors.New("decrypt error")
	errSpecDuplicate = errors.New("duplicate")
	errSpecTooMany   = errors.New("too many skipped")
)

func specPublic(t *testing.T, priv []byte) []byte {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

func specDH(t *testing.T, priv, pub []byte) []byte {
	out, err := specDHErr(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func specDHErr(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p) // refuses an all-zero output
}

// specKDFRK: HKDF-SHA-256(salt = rk, IKM = dh, info, 64) → rk ‖ ck.
func specKDFRK(rk, dh []byte) (newRK, ck []byte) {
	out, err := hkdf.Key(sha256.New, dh, rk, "securechat ratchet root v1", 64)
	if err != nil {
		panic(err)
	}
	return out[:32], out[32:]
}

// specKDFCK: mk = HMAC(ck, 0x01), next ck = HMAC(ck, 0x02).
func specKDFCK(ck []byte) (next, mk []byte) {
	h := func(b byte) []byte {
		m := hmac.New(sha256.New, ck)
		m.Write([]byte{b})
		return m.Sum(nil)
	}
	return h(0x02), h(0x01)
}

// specAEAD: key ‖ nonce = HKDF-SHA-256(salt = 32 zero bytes, IKM = mk, info, 44).
func specAEAD(mk []byte) (key, nonce []byte) {
	out, err := hkdf.Key(sha256.New, mk, make([]byte, 32), "securechat ratchet message v1", 44)
	if err != nil {
		panic(err)
	}
	return out[:32], out[32:]
}

func specSeal(mk, pt, ad []byte) []byte {
	key, nonce := specAEAD(mk)
	a, err := chacha20poly1305.New(key)
	if err != nil {
		panic(err)
	}
	return a.Seal(nil, nonce, pt, ad)
}

func specOpen(mk, ct, ad []byte) ([]byte, error) {
	key, nonce := specAEAD(mk)
	a, err := chacha20poly1305.New(key)
	if err != nil {
		panic(err)
	}
	pt, err := a.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, errSpecDecrypt
	}
	return pt, nil
}

func (s *specSession) encrypt(t *testing.T, rand, pt []byte) ([]byte, error) {
	if s.dhr == nil {
		return nil, errors.New("cannot send yet")
	}
	if s.cks == nil { // the sending half of a DH ratchet step
		if len(rand) != 32 {
			t.Fatalf("a DH ratchet step needs 32 random bytes, the vector has %d", len(rand))
		}
		s.dhsPriv, s.dhsPub = rand, specPublic(t, rand)
		s.rk, s.cks = specKDFRK(s.rk, specDH(t, s.dhsPriv, s.dhr))
	} else if len(rand) != 0 {
		t.Fatalf("no DH ratchet step, yet the vector gives %d random bytes", len(rand))
	}
	var mk []byte
	s.cks, mk = specKDFCK(s.cks)
	header := []byte{1}
	header = append(header, s.dhsPub...)
	header = binary.BigEndian.AppendUint32(header, s.pn)
	header = binary.BigEndian.AppendUint32(header, s.ns)
	s.ns++
	return append(header, specSeal(mk, pt, append(slices.Clone(s.ad), header...))...), nil
}

// decrypt works on a copy and commits only on success.
func (s *specSession) decrypt(msg []byte) ([]byte, error) {
	c := *s
	c.skipped = slices.Clone(s.skipped)
	pt, err := c.decryptInPlace(msg)
	if err == nil {
		*s = c
	}
	return pt, err
}

func (s *specSession) decryptInPlace(msg []byte) ([]byte, error) {
	if len(msg) < 57 || msg[0] != 1 {
		return nil, errSpecDecrypt
	}
	header, ct := msg[:41], msg[41:]
	dh := header[1:33]
	pn := binary.BigEndian.Uint32(header[33:])
	n := binary.BigEndian.Uint32(header[37:])
	if n == 1<<32-1 {
		return nil, errSpecDecrypt
	}
	ad := append(slices.Clone(s.ad), header...)
	for i, k := range s.skipped {
		if bytes.Equal(k.pub, dh) && k.n == n {
			pt, err := specOpen(k.mk, ct, ad)
			if err != nil {
				return nil, err
			}
			s.skipped = slices.Delete(s.skipped, i, i+1)
			return pt, nil
		}
	}
	skip := func(ck []byte, pub []byte, from, until, step uint32) []byte {
		for i := from; i < until; i++ {
			var mk []byte
			ck, mk = specKDFCK(ck)
			s.skipped = append(s.skipped, specSkipped{pub: pub, n: i, step: step, mk: mk})
		}
		return ck
	}
	if s.dhr != nil && bytes.Equal(dh, s.dhr) {
		switch {
		case s.ckr == nil:
			return nil, errSpecDecrypt
		case n < s.nr:
			return nil, errSpecDuplicate
		case n-s.nr > 1000:
			return nil, errSpecTooMany
		}
		ck := skip(s.ckr, s.dhr, s.nr, n, s.steps)
		ck, mk := specKDFCK(ck)
		pt, err := specOpen(mk, ct, ad)
		if err != nil {
			return nil, err
		}
		s.ckr, s.nr = ck, n+1
		s.capSkipped()
		return pt, nil
	}
	if s.ckr != nil && pn > s.nr && pn-s.nr > 1000 {
		return nil, errSpecTooMany
	}
	if n > 1000 {
		return nil, errSpecTooMany
	}
	out, err := specDHErr(s.dhsPriv, dh)
	if err != nil {
		return nil, errSpecDecrypt
	}
	rk, ckr := specKDFRK(s.rk, out)
	if s.ckr != nil && pn > s.nr {
		skip(s.ckr, s.dhr, s.nr, pn, s.steps)
	}
	ckr = skip(ckr, slices.Clone(dh), 0, n, s.steps+1)
	ckr, mk := specKDFCK(ckr)
	pt, err := specOpen(mk, ct, ad)
	if err != nil {
		return nil, err
	}
	s.capSkipped()
	s.steps++
	s.skipped = slices.DeleteFunc(s.skipped, func(k specSkipped) bool { return s.steps-k.step > 4 })
	s.pn, s.ns, s.cks = s.ns, 0, nil
	s.dhr, s.rk, s.ckr, s.nr = slices.Clone(dh), rk, ckr, n+1
	return pt, nil
}

// capSkipped keeps the 2000 newest skipped keys.
func (s *specSession) capSkipped() {
	if len(s.skipped) > 2000 {
		s.skipped = slices.Delete(s.skipped, 0, len(s.skipped)-2000)
	}
}

// encode is the session state encoding of protocol.md §9.2, version 3; absent keys
// are zeros.
func (s *specSession) encode() []byte {
	var flags byte
	key := func(k []byte, flag byte) []byte {
		if k == nil {
			return make([]byte, 32)
		}
		flags |= flag
		return k
	}
	var body []byte
	body = append(body, s.dhsPriv...)
	body = append(body, s.dhsPub...)
	body = append(body, key(s.dhr, 0x01)...)
	body = append(body, s.rk...)
	body = append(body, key(s.cks, 0x02)...)
	body = append(body, key(s.ckr, 0x04)...)
	for _, v := range []uint32{s.ns, s.nr, s.pn, s.steps} {
		body = binary.BigEndian.AppendUint32(body, v)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(s.ad)))
	body = append(body, s.ad...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(s.skipped)))
	for _, k := range s.skipped {
		body = append(body, k.pub...)
		body = binary.BigEndian.AppendUint32(body, k.n)
		body = binary.BigEndian.AppendUint32(body, k.step)
		body = append(body, k.mk...)
	}
	return append([]byte{3, flags}, body...)
}
