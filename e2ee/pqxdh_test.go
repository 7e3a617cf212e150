package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// pqTestNow dates every key made in these tests and the vectors.
var pqTestNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// pqTestRand is a deterministic randomness source named by seed.
func pqTestRand(seed string) *mrand.ChaCha8 {
	return mrand.NewChaCha8(sha256.Sum256([]byte("e2ee pqxdh test " + seed)))
}

// pqDevice makes an account identity and one device's keys for it.
func pqDevice(t testing.TB, r io.Reader, user string, device uint32, oneTime, oneTimeKEM int) *DeviceKeys {
	t.Helper()
	id, err := GenerateIdentityKey(r)
	if err != nil {
		t.Fatal(err)
	}
	return pqDeviceOf(t, r, id, user, device, oneTime, oneTimeKEM)
}

// pqDeviceOf makes another device of the account whose identity is id.
func pqDeviceOf(t testing.TB, r io.Reader, id IdentityPrivateKey, user string, device uint32, oneTime, oneTimeKEM int) *DeviceKeys {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		t.Fatal(err)
	}
	auth := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	d, err := NewDeviceKeys(r, id, DeviceInfo{User: user, DeviceID: device, AuthKey: auth}, pqTestNow, oneTime, oneTimeKEM)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pqBundle is what a server would hand out for d: its first one-time prekey
// when withOPK, its first one-time KEM prekey when withOneTimeKEM, else the
// last-resort one.
func pqBundle(t testing.TB, d *DeviceKeys, withOPK, withOneTimeKEM bool) *PreKeyBundle {
	t.Helper()
	u := d.PublicPreKeys()
	b := &PreKeyBundle{IdentityKey: u.IdentityKey, Certificate: u.Certificate, SignedPreKey: u.SignedPreKey, KEMPreKey: u.LastResortKEMPreKey}
	if withOPK {
		if len(u.OneTimePreKeys) == 0 {
			t.Fatal("no one-time prekey left")
		}
		b.OneTimePreKey = &u.OneTimePreKeys[0]
	}
	if withOneTimeKEM {
		if len(u.OneTimeKEMPreKeys) == 0 {
			t.Fatal("no one-time KEM prekey left")
		}
		b.KEMPreKey = u.OneTimeKEMPreKeys[0]
	}
	return b
}

// pqEncap is derandomized ML-KEM encapsulation (FIPS 203
// ML-KEM.Encaps_internal) drawing its 32 bytes from r, for reproducible runs.
func pqEncap(r io.Reader) encapsulateFunc {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		m := make([]byte, 32)
		if _, err := io.ReadFull(r, m); err != nil {
			return nil, nil, err
		}
		return mlkemtest.Encapsulate768(ek, m)
	}
}

// pqPair is a session start between alice's device 1 and bob's device 2.
type pqPair struct {
	alice, bob *DeviceKeys
	bundle     *PreKeyBundle
	header     *InitialMessageHeader
	sk, ad     []byte
	resp       *ResponderKeys
}

func pqStart(t testing.TB, seed string, withOPK, withOneTimeKEM bool) *pqPair {
	t.Helper()
	r := pqTestRand(seed)
	p := &pqPair{
		alice: pqDevice(t, r, "alice", 1, 0, 0),
		bob:   pqDevice(t, r, "bob", 2, 2, 2),
	}
	p.bundle = pqBundle(t, p.bob, withOPK, withOneTimeKEM)
	var err error
	p.header, p.sk, p.ad, err = initiate(r, p.alice, "bob", 2, p.bundle, pqEncap(r))
	if err != nil {
		t.Fatal(err)
	}
	p.resp, err = RespondSession(p.bob, "alice", 1, p.header)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPQXDHRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		withOPK, withOneTimeKEM bool
	}{
		{"one-time prekey and one-time KEM prekey", true, true},
		{"one-time prekey and last-resort KEM prekey", true, false},
		{"no one-time prekey, one-time KEM prekey", false, true},
		{"no one-time prekey, last-resort KEM prekey", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pqStart(t, tc.name, tc.withOPK, tc.withOneTimeKEM)
			if len(p.sk) != SessionKeySize || !bytes.Equal(p.sk, p.resp.SK) {
				t.Fatalf("sk differs: initiator %x, responder %x", p.sk, p.resp.SK)
			}
			if !bytes.Equal(p.ad, p.resp.AD) {
				t.Fatalf("ad differs:\n%x\n%x", p.ad, p.resp.AD)
			}
			if !p.resp.RemoteIdentity.Equal(p.alice.IdentityKey()) || !p.resp.RemoteCertificate.Names("alice", 1) {
				t.Error("responder sees the wrong initiator")
			}
			if !bytes.Equal(p.resp.RatchetKey.PublicKey().Bytes(), p.bundle.SignedPreKey.Key.Bytes()) {
				t.Error("responder's ratchet key is not the signed prekey")
			}
			want := ConsumedPreKeys{}
			if tc.withOPK {
				want.OneTimePreKeyID = p.bundle.OneTimePreKey.ID
			}
			if tc.withOneTimeKEM {
				want.OneTimeKEMPreKeyID = p.bundle.KEMPreKey.ID
			}
			if p.resp.Consumed != want {
				t.Errorf("consumed %+v, want %+v", p.resp.Consumed, want)
			}

			// The header survives the wire.
			wire, err := p.header.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseInitialMessageHeader(wire)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := RespondSession(p.bob, "alice", 1, h)
			if err != nil || !bytes.Equal(r2.SK, p.sk) {
				t.Fatalf("parsed header: %v", err)
			}

			// One-time keys are single use: once deleted, a replay of the
			// initial message fails (X3DH §4.2). Without one, only the
			// ratchet's duplicate detection stops a replay.
			p.bob.RemovePreKeys(p.resp.Consumed)
			_, err = RespondSession(p.bob, "alice", 1, h)
			if tc.withOPK || tc.withOneTimeKEM {
				if !errors.Is(err, ErrUnknownPreKey) {
					t.Errorf("replay after deleting one-time keys: %v, want ErrUnknownPreKey", err)
				}
			} else if err != nil {
				t.Errorf("last-resort keys are not deleted, yet: %v", err)
			}
		})
	}
}

// TestPQXDHPreKeysRunOut: a device whose one-time prekeys are all used (or
// that never had any) can still be reached (PQXDH §3.3).
func TestPQXDHPreKeysRunOut(t *testing.T) {
	r := pqTestRand("run out")
	alice := pqDevice(t, r, "alice", 1, 0, 0)
	bob := pqDevice(t, r, "bob", 1, 1, 1)
	for i := range 3 {
		u := bob.PublicPreKeys()
		b := &PreKeyBundle{IdentityKey: u.IdentityKey, Certificate: u.Certificate, SignedPreKey: u.SignedPreKey, KEMPreKey: u.LastResortKEMPreKey}
		if len(u.OneTimePreKeys) > 0 {
			b.OneTimePreKey = &u.OneTimePreKeys[0]
		}
		if len(u.OneTimeKEMPreKeys) > 0 {
			b.KEMPreKey = u.OneTimeKEMPreKeys[0]
		}
		h, sk, _, err := InitiateSession(r, alice, "bob", 1, b)
		if err != nil {
			t.Fatal(i, err)
		}
		resp, err := RespondSession(bob, "alice", 1, h)
		if err != nil || !bytes.Equal(resp.SK, sk) {
			t.Fatalf("session %d: %v", i, err)
		}
		bob.RemovePreKeys(resp.Consumed)
	}
	if bob.OneTimePreKeyCount() != 0 || bob.OneTimeKEMPreKeyCount() != 0 {
		t.Error("one-time prekeys were not consumed")
	}
}

// TestPQXDHRatchet starts the Double Ratchet from both sides' results
// (Double Ratchet §7.1) and exchanges messages; a flipped KEM ciphertext
// gives the responder another sk, so the first message fails to decrypt.
func TestPQXDHRatchet(t *testing.T) {
	p := pqStart(t, "ratchet", true, true)
	r := pqTestRand("ratchet messages")
	alice, err := NewInitiatorSession(r, p.sk, p.bundle.SignedPreKey.Key, p.ad)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewResponderSession(p.resp.SK, p.resp.RatchetKey, p.resp.AD)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := alice.Encrypt(r, []byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := bob.Decrypt(msg); err != nil || string(pt) != "hello bob" {
		t.Fatalf("bob: %q, %v", pt, err)
	}
	reply, err := bob.Encrypt(r, []byte("hello alice"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := alice.Decrypt(reply); err != nil || string(pt) != "hello alice" {
		t.Fatalf("alice: %q, %v", pt, err)
	}

	// ML-KEM rejects a damaged ciphertext implicitly: decapsulation returns
	// a pseudorandom secret, the handshake "succeeds" with another sk, and
	// the first ratchet message is where it fails.
	h := *p.header
	h.KEMCiphertext = bytes.Clone(h.KEMCiphertext)
	h.KEMCiphertext[100] ^= 0x01
	resp, err := RespondSession(p.bob, "alice", 1, &h)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(resp.SK, p.sk) {
		t.Fatal("a flipped KEM ciphertext gave the same sk")
	}
	bob2, err := NewResponderSession(resp.SK, resp.RatchetKey, resp.AD)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob2.Decrypt(msg); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("first message under a wrong sk: %v, want ErrDecrypt", err)
	}
}

// pqFlipEach calls f with a copy of b with byte i xored with mask, for every
// i and each mask.
func pqFlipEach(b []byte, f func(i int, mask byte, flipped []byte)) {
	for _, mask := range []byte{0x01, 0x80} {
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= mask
			f(i, mask, c)
		}
	}
}

// TestPQXDHTamperBundle flips every bit 0 and bit 7 of every byte of a
// serialized bundle: each must fail to parse, fail Verify, fail the
// handshake, or make the two sides derive different keys (an unsigned
// one-time prekey: its DH4 differs).
func TestPQXDHTamperBundle(t *testing.T) {
	for _, withOPK := range []bool{true, false} {
		r := pqTestRand("tamper bundle")
		alice := pqDevice(t, r, "alice", 1, 0, 0)
		bob := pqDevice(t, r, "bob", 2, 1, 1)
		wire, err := pqBundle(t, bob, withOPK, true).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		verifyFailures, differentKeys := 0, 0
		pqFlipEach(wire, func(i int, mask byte, flipped []byte) {
			b, err := ParsePreKeyBundle(flipped)
			if err != nil {
				return
			}
			if err := b.Verify("bob", 2); err != nil {
				verifyFailures++
				return
			}
			h, sk, ad, err := InitiateSession(r, alice, "bob", 2, b)
			if err != nil {
				return
			}
			resp, err := RespondSession(bob, "alice", 1, h)
			if err != nil {
				return
			}
			if bytes.Equal(resp.SK, sk) && bytes.Equal(resp.AD, ad) {
				t.Errorf("byte %d ^ %#x: handshake succeeded with the same keys", i, mask)
			}
			differentKeys++
		})
		if verifyFailures == 0 || (withOPK && differentKeys == 0) {
			t.Errorf("withOPK=%v: %d Verify failures, %d key mismatches: the test is not testing", withOPK, verifyFailures, differentKeys)
		}
	}
}

// TestPQXDHTamperHeader flips every bit 0 and bit 7 of every byte of a
// serialized initial message header: each must fail to parse, fail
// RespondSession (bad certificate, unknown prekey, low-order key) or make the
// responder derive other keys than the initiator.
func TestPQXDHTamperHeader(t *testing.T) {
	p := pqStart(t, "tamper header", true, true)
	wire, err := p.header.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pqFlipEach(wire, func(i int, mask byte, flipped []byte) {
		h, err := ParseInitialMessageHeader(flipped)
		if err != nil {
			return
		}
		resp, err := RespondSession(p.bob, "alice", 1, h)
		if err != nil {
			return
		}
		if bytes.Equal(resp.SK, p.sk) && bytes.Equal(resp.AD, p.ad) {
			t.Errorf("byte %d ^ %#x: responder derived the initiator's keys", i, mask)
		}
	})
}

// TestPQXDHMaliciousServer: substitutions a server could try on a bundle.
func TestPQXDHMaliciousServer(t *testing.T) {
	r := pqTestRand("malicious server")
	alice := pqDevice(t, r, "alice", 1, 0, 0)
	bob := pqDevice(t, r, "bob", 2, 1, 1)
	bob3 := pqDeviceOf(t, r, bob.IdentityPrivateKey(), "bob", 3, 1, 1)
	server := pqDevice(t, r, "bob", 2, 1, 1) // the server's own keys for "bob"

	for _, tc := range []struct {
		name   string
		modify func(b *PreKeyBundle)
		want   error
	}{
		{"signed prekey swapped for the server's", func(b *PreKeyBundle) {
			b.SignedPreKey.Key = server.PublicPreKeys().SignedPreKey.Key
		}, ErrBadSignature},
		{"signed prekey and signature swapped for the server's", func(b *PreKeyBundle) {
			b.SignedPreKey = server.PublicPreKeys().SignedPreKey
		}, ErrBadSignature},
		{"signed prekey of another device of the account", func(b *PreKeyBundle) {
			b.SignedPreKey = bob3.PublicPreKeys().SignedPreKey
		}, ErrBadSignature},
		{"KEM prekey of another device of the account", func(b *PreKeyBundle) {
			b.KEMPreKey = bob3.PublicPreKeys().OneTimeKEMPreKeys[0]
		}, ErrBadSignature},
		{"one-time KEM prekey relabeled last resort", func(b *PreKeyBundle) {
			b.KEMPreKey.LastResort = true
		}, ErrBadSignature},
		{"KEM prekey swapped for the server's", func(b *PreKeyBundle) {
			b.KEMPreKey.Key = server.PublicPreKeys().LastResortKEMPreKey.Key
		}, ErrBadSignature},
		{"certificate of another device", func(b *PreKeyBundle) {
			b.Certificate = bob3.Certificate()
		}, ErrWrongDevice},
		{"certificate's DH key swapped", func(b *PreKeyBundle) {
			b.Certificate.DHKey = server.Certificate().DHKey
		}, ErrBadSignature},
		{"device id changed in the certificate", func(b *PreKeyBundle) {
			b.Certificate.DeviceID = 3
		}, ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := pqBundle(t, bob, true, true)
			tc.modify(b)
			if err := b.Verify("bob", 2); !errors.Is(err, tc.want) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
			if _, _, _, err := InitiateSession(r, alice, "bob", 2, b); !errors.Is(err, tc.want) {
				t.Errorf("InitiateSession: %v, want %v", err, tc.want)
			}
		})
	}

	// A bundle for another user or device fails even when all is signed.
	b := pqBundle(t, bob, true, true)
	if err := b.Verify("bob", 3); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("wrong device: %v", err)
	}
	if err := b.Verify("mallory", 2); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("wrong user: %v", err)
	}
}

// TestPQXDHSubstitutedIdentity: a server that replaces Bob's identity key
// with its own and re-signs everything hands out a bundle that verifies —
// PQXDH cannot tell (X3DH §4.1, §4.7) — but the safety number Alice sees
// changes, which is how users find out.
func TestPQXDHSubstitutedIdentity(t *testing.T) {
	r := pqTestRand("substituted identity")
	alice := pqDevice(t, r, "alice", 1, 0, 0)
	bob := pqDevice(t, r, "bob", 2, 1, 1)
	mitm := pqDevice(t, r, "bob", 2, 1, 1)

	fake := pqBundle(t, mitm, true, true)
	if err := fake.Verify("bob", 2); err != nil {
		t.Fatalf("a consistently re-signed bundle should verify: %v", err)
	}
	h, sk, _, err := InitiateSession(r, alice, "bob", 2, fake)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := RespondSession(mitm, "alice", 1, h); err != nil || !bytes.Equal(resp.SK, sk) {
		t.Fatalf("the man in the middle completes the handshake: %v", err)
	}
	// The real Bob holds prekeys with the same ids, so he derives a key,
	// but not Alice's: her first message would not decrypt.
	if resp, err := RespondSession(bob, "alice", 1, h); err == nil && bytes.Equal(resp.SK, sk) {
		t.Error("the real Bob derived the key Alice shares with the man in the middle")
	}
	real := SafetyNumber("alice", alice.IdentityKey(), "bob", bob.IdentityKey())
	seen := SafetyNumber("alice", alice.IdentityKey(), "bob", fake.IdentityKey)
	if real == seen {
		t.Fatal("the safety number did not change with the identity key")
	}
	if bobSees := SafetyNumber("bob", bob.IdentityKey(), "alice", alice.IdentityKey()); bobSees != real {
		t.Fatal("the real safety number is not symmetric")
	}
}

// TestPQXDHWrongSender: the responder checks the initiator's certificate
// against its identity key and the sender the server named.
func TestPQXDHWrongSender(t *testing.T) {
	p := pqStart(t, "wrong sender", true, true)
	if _, err := RespondSession(p.bob, "alice", 2, p.header); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("other device: %v", err)
	}
	if _, err := RespondSession(p.bob, "carol", 1, p.header); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("other user: %v", err)
	}
	other := pqDevice(t, pqTestRand("other identity"), "alice", 1, 0, 0)
	h := *p.header
	h.IdentityKey = other.IdentityKey()
	if _, err := RespondSession(p.bob, "alice", 1, &h); !errors.Is(err, ErrBadSignature) {
		t.Errorf("certificate under another identity: %v", err)
	}
}

func TestPQXDHUnknownPreKeys(t *testing.T) {
	p := pqStart(t, "unknown prekeys", true, true)
	for name, modify := range map[string]func(h *InitialMessageHeader){
		"signed prekey":   func(h *InitialMessageHeader) { h.SignedPreKeyID = 999 },
		"one-time prekey": func(h *InitialMessageHeader) { h.OneTimePreKeyID = 999 },
		"KEM prekey":      func(h *InitialMessageHeader) { h.KEMPreKeyID = 999 },
	} {
		h := *p.header
		modify(&h)
		if _, err := RespondSession(p.bob, "alice", 1, &h); !errors.Is(err, ErrUnknownPreKey) {
			t.Errorf("%s: %v, want ErrUnknownPreKey", name, err)
		}
	}
	// Dropping the one-time prekey id from the header makes a different
	// key agreement (no DH4), not a failure here.
	h := *p.header
	h.OneTimePreKeyID = 0
	if resp, err := RespondSession(p.bob, "alice", 1, &h); err != nil || bytes.Equal(resp.SK, p.sk) {
		t.Errorf("without DH4: %v", err)
	}
}

// TestPQXDHRotation: an initial message made with a since-rotated signed
// prekey and last-resort KEM prekey still works until they are pruned.
func TestPQXDHRotation(t *testing.T) {
	r := pqTestRand("rotation")
	alice := pqDevice(t, r, "alice", 1, 0, 0)
	bob := pqDevice(t, r, "bob", 2, 0, 0)
	old := pqBundle(t, bob, false, false)
	rotated := pqTestNow.Add(7 * 24 * time.Hour)
	if _, err := bob.RotateSignedPreKey(r, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.RotateLastResortKEMPreKey(r, rotated); err != nil {
		t.Fatal(err)
	}
	h, sk, _, err := InitiateSession(r, alice, "bob", 2, old)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := RespondSession(bob, "alice", 1, h); err != nil || !bytes.Equal(resp.SK, sk) {
		t.Fatalf("retired prekeys: %v", err)
	}
	if n := bob.PruneRetiredPreKeys(rotated); n != 0 {
		t.Fatalf("pruned %d keys replaced exactly at the cutoff", n)
	}
	if n := bob.PruneRetiredPreKeys(rotated.Add(time.Millisecond)); n != 2 {
		t.Fatalf("pruned %d keys, want 2", n)
	}
	if _, err := RespondSession(bob, "alice", 1, h); !errors.Is(err, ErrUnknownPreKey) {
		t.Fatalf("pruned prekeys: %v", err)
	}
	h2, sk2, _, err := InitiateSession(r, alice, "bob", 2, pqBundle(t, bob, false, false))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := RespondSession(bob, "alice", 1, h2); err != nil || !bytes.Equal(resp.SK, sk2) {
		t.Fatalf("current prekeys: %v", err)
	}
}

// pqLowOrderPoints are the X25519 public keys of small order (and their
// non-canonical encodings), for which DH is all zeros.
func pqLowOrderPoints(t testing.TB) []*ecdh.PublicKey {
	var out []*ecdh.PublicKey
	for _, s := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000", // 0
		"0100000000000000000000000000000000000000000000000000000000000000", // 1
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (= 0)
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1 (= 1)
	} {
		b, _ := hex.DecodeString(s)
		k, err := ecdh.X25519().NewPublicKey(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// TestPQXDHLowOrderPoints: a low-order X25519 key in any role stops the
// handshake with ErrLowOrderPoint, even when it is correctly signed.
func TestPQXDHLowOrderPoints(t *testing.T) {
	r := pqTestRand("low order")
	alice := pqDevice(t, r, "alice", 1, 0, 0)
	bob := pqDevice(t, r, "bob", 2, 1, 1)
	p := pqStart(t, "low order header", true, true)
	for i, pt := range pqLowOrderPoints(t) {
		// Bob's signed prekey, signed by Bob's account.
		b := pqBundle(t, bob, true, true)
		b.SignedPreKey.Key = pt
		sig, err := bob.identity.sign(signedPreKeyTranscript(b.Certificate.DHKey, b.SignedPreKey.ID, pt))
		if err != nil {
			t.Fatal(err)
		}
		b.SignedPreKey.Signature = sig
		if err := b.Verify("bob", 2); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := InitiateSession(r, alice, "bob", 2, b); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("point %d as signed prekey: %v", i, err)
		}

		// Bob's one-time prekey (unsigned).
		b = pqBundle(t, bob, true, true)
		b.OneTimePreKey.Key = pt
		if _, _, _, err := InitiateSession(r, alice, "bob", 2, b); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("point %d as one-time prekey: %v", i, err)
		}

		// Bob's device DH identity key, certified by Bob's account.
		b = pqBundle(t, bob, true, true)
		cert, err := NewDeviceCertificate(bob.identity, "bob", 2, b.Certificate.AuthKey, pt)
		if err != nil {
			t.Fatal(err)
		}
		b.Certificate = cert
		b.SignedPreKey.Signature, _ = bob.identity.sign(signedPreKeyTranscript(pt, b.SignedPreKey.ID, b.SignedPreKey.Key))
		b.KEMPreKey.Signature, _ = bob.identity.sign(kemPreKeyTranscript(pt, b.KEMPreKey.ID, b.KEMPreKey.LastResort, b.KEMPreKey.Key))
		if err := b.Verify("bob", 2); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := InitiateSession(r, alice, "bob", 2, b); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("point %d as responder DH identity key: %v", i, err)
		}

		// Alice's ephemeral key.
		h := *p.header
		h.EphemeralKey = pt
		if _, err := RespondSession(p.bob, "alice", 1, &h); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("point %d as ephemeral key: %v", i, err)
		}

		// Alice's device DH identity key, certified by Alice's account.
		h = *p.header
		h.Certificate, err = NewDeviceCertificate(p.alice.identity, "alice", 1, h.Certificate.AuthKey, pt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := RespondSession(p.bob, "alice", 1, &h); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("point %d as initiator DH identity key: %v", i, err)
		}
	}
}

func TestPQXDHInvalidArguments(t *testing.T) {
	p := pqStart(t, "invalid arguments", false, false)
	if _, _, _, err := InitiateSession(nil, nil, "bob", 2, p.bundle); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil self: %v", err)
	}
	if _, _, _, err := InitiateSession(nil, p.alice, "bob", 2, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil bundle: %v", err)
	}
	if _, err := RespondSession(p.bob, "alice", 1, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil header: %v", err)
	}
	if _, err := RespondSession(p.bob, "alice", 1, &InitialMessageHeader{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty header: %v", err)
	}
	if _, err := (&InitialMessageHeader{}).MarshalBinary(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("marshal empty header: %v", err)
	}
	if _, err := (&PreKeyBundle{}).MarshalBinary(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("marshal empty bundle: %v", err)
	}
	failing := io.MultiReader() // always EOF
	if _, _, _, err := InitiateSession(failing, p.alice, "bob", 2, p.bundle); err == nil {
		t.Error("InitiateSession with a failing rand succeeded")
	}
	// nil rand means crypto/rand.
	h, sk, _, err := InitiateSession(nil, p.alice, "bob", 2, p.bundle)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := RespondSession(p.bob, "alice", 1, h); err != nil || !bytes.Equal(resp.SK, sk) {
		t.Fatalf("crypto/rand session: %v", err)
	}
}

func BenchmarkPQXDH(b *testing.B) {
	r := pqTestRand("bench")
	alice := pqDevice(b, r, "alice", 1, 0, 0)
	bob := pqDevice(b, r, "bob", 2, 1, 1)
	bundle := pqBundle(b, bob, true, true)
	b.ReportAllocs()
	for b.Loop() {
		h, _, _, err := InitiateSession(r, alice, "bob", 2, bundle)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := RespondSession(bob, "alice", 1, h); err != nil {
			b.Fatal(err)
		}
	}
}

func init() {
	// -update rewrites the test vectors in testdata/. Registered only if no
	// other test file of the package has registered it.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the test vectors in testdata/")
	}
}

func vectorsUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// vectorsGolden compares generated vector bytes with path byte for byte, or
// writes them with -update.
func vectorsGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if vectorsUpdate() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate with: go test ./e2ee -run TestVectors -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what the code generates: an encoding or derivation changed. "+
			"If that is intended, run go test ./e2ee -run TestVectors -update and review the diff", path)
	}
}

// TestVectors regenerates testdata/pqxdh.json and testdata/safety.json
// deterministically and requires them unchanged (-update rewrites them),
// then checks every vector from the file's bytes alone, as parallel subtests.
func TestVectors(t *testing.T) {
	t.Run("pqxdh", func(t *testing.T) {
		const path = "testdata/pqxdh.json"
		vectorsGolden(t, path, pqGenerateVectors(t))
		var file pqVectorFile
		pqReadJSON(t, path, &file)
		for _, v := range file.Vectors {
			t.Run(v.Name, func(t *testing.T) {
				t.Parallel()
				pqCheckVector(t, v)
			})
		}
	})
	t.Run("safety", func(t *testing.T) {
		const path = "testdata/safety.json"
		vectorsGolden(t, path, safetyGenerateVectors(t))
		var file safetyVectorFile
		pqReadJSON(t, path, &file)
		for _, v := range file.Vectors {
			t.Run(v.Name, func(t *testing.T) {
				t.Parallel()
				safetyCheckVector(t, v)
			})
		}
	})
}

func pqReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func vectorsJSON(t *testing.T, v any) []byte {
	t.Helper()
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

type pqVectorFile struct {
	File    string     `json:"file"`
	Expect  []string   `json:"expect"`
	Format  []string   `json:"format"`
	Vectors []pqVector `json:"vectors"`
}

type pqVector struct {
	Name        string `json:"name"`
	Expect      string `json:"expect"`
	AliceUser   string `json:"alice_user"`
	AliceDevice uint32 `json:"alice_device"`
	BobUser     string `json:"bob_user"`
	BobDevice   uint32 `json:"bob_device"`
	AliceKeys   string `json:"alice_keys,omitempty"`
	BobKeys     string `json:"bob_keys,omitempty"`
	Bundle      string `json:"bundle"`
	InitRand    string `json:"initiate_rand,omitempty"`
	Header      string `json:"header,omitempty"`
	SK          string `json:"sk,omitempty"`
	AD          string `json:"ad,omitempty"`
}

// pqVectorErrors names the sentinel errors an expect line can name.
var pqVectorErrors = map[string]error{
	"bad signature":   ErrBadSignature,
	"wrong device":    ErrWrongDevice,
	"low-order point": ErrLowOrderPoint,
	"unknown prekey":  ErrUnknownPreKey,
}

func pqGenerateVectors(t *testing.T) []byte {
	file := pqVectorFile{
		File: "PQXDH session setup vectors for securechat e2ee (docs/protocol.md §9). Generated by " +
			"`go test ./e2ee -run TestVectors -update` from fixed seeds; TestVectors requires the file unchanged.",
		Expect: []string{
			"success: bundle parses and verifies for bob_user/bob_device; InitiateSession(alice_keys, bob_user, bob_device, bundle) with initiate_rand gives header, sk and ad; RespondSession(bob_keys, alice_user, alice_device, header) gives sk and ad",
			"verify: ERROR: PreKeyBundle.Verify(bob_user, bob_device) fails with ERROR",
			"initiate: ERROR: the bundle verifies; InitiateSession(alice_keys, …) fails with ERROR",
			"respond: ERROR: RespondSession fails with ERROR",
			"respond: different sk: RespondSession succeeds but derives another sk than the initiator's sk (the first ratchet message would fail)",
			"ERROR is one of: bad signature, wrong device, low-order point, unknown prekey",
		},
		Format: []string{
			"all byte strings are lowercase hex",
			"alice_keys, bob_keys: DeviceKeys.MarshalBinary (storage encoding, secret)",
			"bundle: PreKeyBundle.MarshalBinary; header: InitialMessageHeader.MarshalBinary",
			"initiate_rand: the randomness InitiateSession read: EK_A's X25519 private key[32] ‖ the ML-KEM-768 encapsulation's m[32] (FIPS 203 ML-KEM.Encaps_internal)",
			"sk: the initiator's 32-byte secret key; ad: the initiator's associated data",
			"KDF: HKDF-SHA-256, ikm = 32×0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS, salt = 32×0x00, info = " + pqxdhInfo,
		},
	}
	type mods struct {
		bundle func(bob *DeviceKeys, b *PreKeyBundle)
		header func(h *InitialMessageHeader)
		bob    func(bob *DeviceKeys, c ConsumedPreKeys)
	}
	for _, tc := range []struct {
		name                    string
		expect                  string
		withOPK, withOneTimeKEM bool
		bundleDevice            uint32 // whose bundle the server hands out; 0 means 2, the one asked for
		mods
	}{
		{name: "one-time prekey, one-time KEM prekey", expect: "success", withOPK: true, withOneTimeKEM: true},
		{name: "one-time prekey, last-resort KEM prekey", expect: "success", withOPK: true},
		{name: "no one-time prekey, one-time KEM prekey", expect: "success", withOneTimeKEM: true},
		{name: "no one-time prekey, last-resort KEM prekey", expect: "success"},
		{name: "signed prekey swapped by the server", expect: "verify: bad signature", withOPK: true, withOneTimeKEM: true,
			mods: mods{bundle: func(_ *DeviceKeys, b *PreKeyBundle) {
				k, _ := newX25519Key(pqTestRand("server's signed prekey"))
				b.SignedPreKey.Key = k.PublicKey()
			}}},
		{name: "one-time KEM prekey relabeled last resort", expect: "verify: bad signature", withOneTimeKEM: true,
			mods: mods{bundle: func(_ *DeviceKeys, b *PreKeyBundle) { b.KEMPreKey.LastResort = true }}},
		{name: "bundle of another device", expect: "verify: wrong device", bundleDevice: 3},
		{name: "low-order signed prekey signed by the account", expect: "initiate: low-order point",
			mods: mods{bundle: func(bob *DeviceKeys, b *PreKeyBundle) {
				b.SignedPreKey.Key = pqLowOrderPoints(t)[2]
				b.SignedPreKey.Signature, _ = bob.identity.sign(signedPreKeyTranscript(b.Certificate.DHKey, b.SignedPreKey.ID, b.SignedPreKey.Key))
			}}},
		{name: "low-order ephemeral key", expect: "respond: low-order point", withOPK: true,
			mods: mods{header: func(h *InitialMessageHeader) { h.EphemeralKey = pqLowOrderPoints(t)[3] }}},
		{name: "KEM ciphertext flipped", expect: "respond: different sk", withOPK: true, withOneTimeKEM: true,
			mods: mods{header: func(h *InitialMessageHeader) { h.KEMCiphertext[0] ^= 0x01 }}},
		{name: "one-time prekey already used", expect: "respond: unknown prekey", withOPK: true,
			mods: mods{bob: func(bob *DeviceKeys, c ConsumedPreKeys) { bob.RemovePreKeys(c) }}},
	} {
		r := pqTestRand("vector " + tc.name)
		alice := pqDevice(t, r, "alice", 1, 0, 0)
		bob := pqDevice(t, r, "bob", 2, 1, 1)
		if tc.bundleDevice != 0 {
			bob = pqDeviceOf(t, r, bob.IdentityPrivateKey(), "bob", tc.bundleDevice, 1, 1)
		}
		bundle := pqBundle(t, bob, tc.withOPK, tc.withOneTimeKEM)
		if tc.bundle != nil {
			tc.bundle(bob, bundle)
		}
		v := pqVector{Name: tc.name, Expect: tc.expect, AliceUser: "alice", AliceDevice: 1, BobUser: "bob", BobDevice: 2}
		v.Bundle = pqHex(t, bundle)
		if !strings.HasPrefix(tc.expect, "verify:") {
			v.AliceKeys = pqHex(t, alice)
		}
		if tc.expect == "success" || strings.HasPrefix(tc.expect, "respond:") {
			var read bytes.Buffer
			tee := io.TeeReader(r, &read)
			h, sk, ad, err := initiate(tee, alice, "bob", 2, bundle, pqEncap(tee))
			if err != nil {
				t.Fatal(tc.name, err)
			}
			v.InitRand = hex.EncodeToString(read.Bytes())
			if tc.header != nil {
				tc.header(h)
			}
			if tc.bob != nil {
				tc.bob(bob, ConsumedPreKeys{OneTimePreKeyID: h.OneTimePreKeyID})
			}
			v.BobKeys, v.Header = pqHex(t, bob), pqHex(t, h)
			v.SK, v.AD = hex.EncodeToString(sk), hex.EncodeToString(ad)
		}
		file.Vectors = append(file.Vectors, v)
	}
	return vectorsJSON(t, file)
}

func pqHex(t *testing.T, m interface{ MarshalBinary() ([]byte, error) }) string {
	t.Helper()
	return hex.EncodeToString(pqMarshal(t, m))
}

func pqUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pqCheckVector runs one vector from its bytes alone.
func pqCheckVector(t *testing.T, v pqVector) {
	stage, errName, _ := strings.Cut(v.Expect, ": ")
	wantErr := pqVectorErrors[errName]
	if v.Expect != "success" && v.Expect != "respond: different sk" && wantErr == nil {
		t.Fatalf("unknown expect %q", v.Expect)
	}
	bundleBytes := pqUnhex(t, v.Bundle)
	bundle, err := ParsePreKeyBundle(bundleBytes)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := bundle.MarshalBinary(); err != nil || !bytes.Equal(again, bundleBytes) {
		t.Fatalf("bundle does not re-marshal to the same bytes: %v", err)
	}
	err = bundle.Verify(v.BobUser, v.BobDevice)
	if stage == "verify" {
		if !errors.Is(err, wantErr) {
			t.Fatalf("Verify: %v, want %v", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	alice, err := ParseDeviceKeys(pqUnhex(t, v.AliceKeys))
	if err != nil {
		t.Fatal(err)
	}
	if stage == "initiate" {
		if _, _, _, err := InitiateSession(nil, alice, v.BobUser, v.BobDevice, bundle); !errors.Is(err, wantErr) {
			t.Fatalf("InitiateSession: %v, want %v", err, wantErr)
		}
		return
	}
	// The initiator's side, replayed with the recorded randomness.
	rand := bytes.NewReader(pqUnhex(t, v.InitRand))
	h0, sk, ad, err := initiate(rand, alice, v.BobUser, v.BobDevice, bundle, pqEncap(rand))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sk) != v.SK || hex.EncodeToString(ad) != v.AD || rand.Len() != 0 {
		t.Fatalf("initiator derived sk %x ad %x, want %s %s", sk, ad, v.SK, v.AD)
	}
	if v.Expect == "success" && pqHex(t, h0) != v.Header {
		t.Fatal("initiator's header differs")
	}
	bob, err := ParseDeviceKeys(pqUnhex(t, v.BobKeys))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseInitialMessageHeader(pqUnhex(t, v.Header))
	if err != nil {
		t.Fatal(err)
	}
	if !h.IdentityKey.Equal(alice.IdentityKey()) {
		t.Fatal("header's identity key is not alice's")
	}
	resp, err := RespondSession(bob, v.AliceUser, v.AliceDevice, h)
	switch {
	case v.Expect == "success":
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(resp.SK) != v.SK || hex.EncodeToString(resp.AD) != v.AD {
			t.Fatalf("responder derived sk %x ad %x, want %s %s", resp.SK, resp.AD, v.SK, v.AD)
		}
	case v.Expect == "respond: different sk":
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(resp.SK) == v.SK {
			t.Fatal("responder derived the initiator's sk")
		}
	default:
		if !errors.Is(err, wantErr) {
			t.Fatalf("RespondSession: %v, want %v", err, wantErr)
		}
	}
}
