package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// TestPQXDHFromSpec replays the PQXDH vectors with an implementation written
// from docs/protocol.md §9.1 and §9.2 alone: it reads the bundle, the
// initial message header and the device key storage by their byte layouts,
// derives SK and AD on both sides with the standard library, and builds the
// header the initiator sends. It uses nothing of this package.
func TestPQXDHFromSpec(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/pqxdh.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name, Expect           string
			AliceUser              string `json:"alice_user"`
			BobUser                string `json:"bob_user"`
			AliceDevice            uint32 `json:"alice_device"`
			BobDevice              uint32 `json:"bob_device"`
			AliceKeys              string `json:"alice_keys"`
			BobKeys                string `json:"bob_keys"`
			Bundle, Header, SK, AD string
			InitiateRand           string `json:"initiate_rand"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	checked := 0
	for _, v := range file.Vectors {
		if v.BobKeys == "" || v.Header == "" {
			continue // a vector that fails before a header exists
		}
		t.Run(v.Name, func(t *testing.T) {
			alice := specParseDeviceKeys(t, unhex(v.AliceKeys))
			bob := specParseDeviceKeys(t, unhex(v.BobKeys))
			bundle := specParseBundle(t, unhex(v.Bundle))
			header := unhex(v.Header)
			wantSK, wantAD := unhex(v.SK), unhex(v.AD)

			// The responder, from the header.
			h := specReader{t: t, b: header}
			h.expect(1)
			ikA := h.take(32)
			certA := specParseCert(&h)
			ek := h.take(32)
			spkID, opkID, kemID := h.u32(), h.u32(), h.u32()
			ct := h.take(1088)
			h.end()
			if certA.user != v.AliceUser || certA.device != v.AliceDevice {
				t.Fatalf("header certificate names %s/%d", certA.user, certA.device)
			}
			spk, ok := bob.signed[spkID]
			if !ok {
				t.Fatalf("no signed prekey %d", spkID)
			}
			var opk []byte
			if opkID != 0 {
				if opk, ok = bob.oneTime[opkID]; !ok {
					if v.Expect != "respond: unknown prekey" {
						t.Fatalf("no one-time prekey %d", opkID)
					}
					checked++
					return
				}
			}
			kemSeed, ok := bob.kem[kemID] // one id space: the id alone finds the key
			if !ok {
				t.Fatalf("no ML-KEM prekey %d", kemID)
			}
			dk, err := mlkem.NewDecapsulationKey768(kemSeed)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := dk.Decapsulate(ct)
			if err != nil {
				t.Fatal(err)
			}
			dhs := [][2][]byte{{spk, certA.dh}, {bob.dh, ek}, {spk, ek}}
			if opk != nil {
				dhs = append(dhs, [2][]byte{opk, ek})
			}
			sk, lowOrder := specSK(t, dhs, ss)
			ad := append(specParty(ikA, certA), specParty(bob.identity, bob.cert)...)
			switch v.Expect {
			case "success":
				if !bytes.Equal(sk, wantSK) || !bytes.Equal(ad, wantAD) {
					t.Fatalf("responder: sk %x ad %x\nwant sk %x ad %x", sk, ad, wantSK, wantAD)
				}
			case "respond: different sk":
				if bytes.Equal(sk, wantSK) {
					t.Fatal("responder derived the initiator's sk from a flipped ciphertext")
				}
			case "respond: low-order point":
				if !lowOrder {
					t.Fatal("no all-zero DH output")
				}
				checked++
				return
			default:
				t.Fatalf("unexpected expect %q", v.Expect)
			}

			// The initiator, from the bundle: same SK and AD, and the header.
			if v.Expect != "success" {
				checked++
				return
			}
			r := unhex(v.InitiateRand)
			ekPriv, m := r[:32], r[32:64]
			ekKey, err := ecdh.X25519().NewPrivateKey(ekPriv)
			if err != nil {
				t.Fatal(err)
			}
			encKey, err := mlkem.NewEncapsulationKey768(bundle.kem)
			if err != nil {
				t.Fatal(err)
			}
			ss2, ct2, err := mlkemtest.Encapsulate768(encKey, m)
			if err != nil {
				t.Fatal(err)
			}
			dhs = [][2][]byte{{alice.dh, bundle.spk}, {ekPriv, bundle.cert.dh}, {ekPriv, bundle.spk}}
			if bundle.opk != nil {
				dhs = append(dhs, [2][]byte{ekPriv, bundle.opk})
			}
			sk2, _ := specSK(t, dhs, ss2)
			ad2 := append(specParty(alice.identity, alice.cert), specParty(bundle.identity, bundle.cert)...)
			if !bytes.Equal(sk2, wantSK) || !bytes.Equal(ad2, wantAD) {
				t.Fatalf("initiator: sk %x ad %x\nwant sk %x ad %x", sk2, ad2, wantSK, wantAD)
			}
			hdr := []byte{1}
			hdr = append(hdr, alice.identity...)
			hdr = append(hdr, alice.certRaw...)
			hdr = append(hdr, ekKey.PublicKey().Bytes()...)
			hdr = binary.BigEndian.AppendUint32(hdr, bundle.spkID)
			hdr = binary.BigEndian.AppendUint32(hdr, bundle.opkID)
			hdr = binary.BigEndian.AppendUint32(hdr, bundle.kemID)
			hdr = append(hdr, ct2...)
			if !bytes.Equal(hdr, header) {
				t.Fatalf("initiator header:\n got %x\nwant %x", hdr, header)
			}
			checked++
		})
	}
	if checked == 0 {
		t.Fatal("no vector checked")
	}
}

// specSK is SK = HKDF-SHA-256(salt = 32 zero bytes, IKM = 32 × 0xFF ‖ DH… ‖
// SS, info, 32); lowOrder reports an all-zero DH output.
func specSK(t *testing.T, dhs [][2][]byte, ss []byte) (sk []byte, lowOrder bool) {
	ikm := bytes.Repeat([]byte{0xFF}, 32)
	for _, p := range dhs {
		out, err := specDHErr(p[0], p[1])
		if err != nil {
			return nil, true
		}
		ikm = append(ikm, out...)
	}
	ikm = append(ikm, ss...)
	sk, err := hkdf.Key(sha256.New, ikm, make([]byte, 32), "securechat_PQXDH_X25519_SHA-256_ML-KEM-768_v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	return sk, false
}

// specParty is identity key[32] ‖ DH identity key[32] ‖ u32 device id ‖ u8 len ‖ user.
func specParty(identity []byte, c specCert) []byte {
	out := append(bytes.Clone(identity), c.dh...)
	out = binary.BigEndian.AppendUint32(out, c.device)
	out = append(out, byte(len(c.user)))
	return append(out, c.user...)
}

type specCert struct {
	user   string
	device uint32
	dh     []byte
}

// specParseCert reads u8 1 ‖ u8 len ‖ user ‖ u32 device ‖ auth key[32] ‖
// DH key[32] ‖ signature[64].
func specParseCert(r *specReader) specCert {
	r.expect(1)
	var c specCert
	c.user = string(r.take(int(r.take(1)[0])))
	c.device = r.u32()
	r.take(32)
	c.dh = r.take(32)
	r.take(64)
	return c
}

type specKeys struct {
	identity []byte // public
	cert     specCert
	certRaw  []byte
	dh       []byte // private
	signed   map[uint32][]byte
	oneTime  map[uint32][]byte
	kem      map[uint32][]byte // ML-KEM seeds, last-resort and one-time alike
}

// specParseDeviceKeys reads the device key storage of protocol.md §9.1.
func specParseDeviceKeys(t *testing.T, b []byte) specKeys {
	r := specReader{t: t, b: b}
	r.expect(1)
	k := specKeys{signed: map[uint32][]byte{}, oneTime: map[uint32][]byte{}, kem: map[uint32][]byte{}}
	k.identity = ed25519.NewKeyFromSeed(r.take(32)).Public().(ed25519.PublicKey)
	start := len(r.b)
	k.cert = specParseCert(&r)
	k.certRaw = b[len(b)-start : len(b)-len(r.b)]
	k.dh = r.take(32)
	r.u32() // next prekey id
	for range int(r.take(1)[0]) {
		id := r.u32()
		r.take(8)
		k.signed[id] = r.take(32)
		r.take(64)
	}
	for range int(r.take(1)[0]) {
		id := r.u32()
		r.take(8)
		k.kem[id] = r.take(64)
		r.take(64)
	}
	for range int(r.u16()) {
		id := r.u32()
		k.oneTime[id] = r.take(32)
	}
	for range int(r.u16()) {
		id := r.u32()
		r.take(8)
		k.kem[id] = r.take(64)
		r.take(64)
	}
	r.end()
	return k
}

type specBundle struct {
	identity            []byte
	cert                specCert
	spk, opk, kem       []byte
	spkID, opkID, kemID uint32
}

// specParseBundle reads the bundle of protocol.md §9.1 byte by byte; the one-time
// prekey is its whole 37-byte encoding.
func specParseBundle(t *testing.T, b []byte) specBundle {
	r := specReader{t: t, b: b}
	var out specBundle
	r.expect(1)
	out.identity = r.take(32)
	out.cert = specParseCert(&r)
	r.expect(1)
	out.spkID, out.spk = r.u32(), r.take(32)
	r.take(64)
	switch r.take(1)[0] {
	case 0:
	case 1:
		r.expect(1)
		out.opkID, out.opk = r.u32(), r.take(32)
	default:
		t.Fatal("has_opk is neither 0 nor 1")
	}
	r.expect(1)
	out.kemID = r.u32()
	r.take(1) // kind: not needed to use the key
	out.kem = r.take(1184)
	r.take(64)
	r.end()
	return out
}

type specReader struct {
	t *testing.T
	b []byte
}

func (r *specReader) take(n int) []byte {
	if n > len(r.b) {
		r.t.Fatalf("truncated: want %d bytes, %d left", n, len(r.b))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *specReader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *specReader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }

func (r *specReader) expect(version byte) {
	if v := r.take(1)[0]; v != version {
		r.t.Fatalf("version %d, want %d", v, version)
	}
}

func (r *specReader) end() {
	if len(r.b) != 0 {
		r.t.Fatalf("%d bytes left over", len(r.b))
	}
}
