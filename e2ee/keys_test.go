package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeyTypesNotComparable(t *testing.T) {
	for _, v := range []any{IdentityKey{}, IdentityPrivateKey{}} {
		if reflect.TypeOf(v).Comparable() {
			t.Errorf("%T is comparable with ==", v)
		}
	}
}

func TestIdentityKeyEncodings(t *testing.T) {
	priv, err := GenerateIdentityKey(pqTestRand("identity"))
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public()
	if pub.IsZero() || !pub.Equal(priv.Public()) {
		t.Fatal("public key unset or unequal to itself")
	}

	parsed, err := ParseIdentityKey(pub.Bytes())
	if err != nil || !parsed.Equal(pub) {
		t.Fatalf("ParseIdentityKey(Bytes()): %v", err)
	}
	text, _ := pub.MarshalText()
	if !strings.HasPrefix(string(text), "idkey:") || len(text) != len("idkey:")+64 || string(text) != pub.String() {
		t.Fatalf("text form %q", text)
	}
	var back IdentityKey
	if err := back.UnmarshalText(text); err != nil || !back.Equal(pub) {
		t.Fatalf("UnmarshalText: %v", err)
	}
	// JSON uses the text form.
	j, _ := json.Marshal(struct{ K IdentityKey }{pub})
	if !strings.Contains(string(j), string(text)) {
		t.Errorf("JSON %s", j)
	}

	zero := make([]byte, 32)
	for name, bad := range map[string]string{
		"no prefix":     strings.TrimPrefix(string(text), "idkey:"),
		"other prefix":  "idpriv:" + string(text[6:]),
		"upper case":    "idkey:" + strings.ToUpper(string(text[6:])),
		"short":         string(text[:len(text)-2]),
		"long":          string(text) + "00",
		"not hex":       string(text[:len(text)-1]) + "g",
		"zero key":      fmt.Sprintf("idkey:%x", zero),
		"empty":         "",
		"spaces around": " " + string(text) + " ",
	} {
		var k IdentityKey
		if err := k.UnmarshalText([]byte(bad)); !errors.Is(err, ErrMalformedKeyData) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, b := range [][]byte{nil, zero, pub.Bytes()[:31], append(pub.Bytes(), 0)} {
		if _, err := ParseIdentityKey(b); !errors.Is(err, ErrMalformedKeyData) {
			t.Errorf("ParseIdentityKey(%x): %v", b, err)
		}
	}

	other, _ := GenerateIdentityKey(pqTestRand("identity 2"))
	if other.Public().Equal(pub) || other.Equal(priv) || !priv.Equal(priv) {
		t.Error("Equal")
	}
	if (IdentityKey{}).Equal(pub) || !(IdentityKey{}).IsZero() {
		t.Error("zero IdentityKey")
	}
}

func TestIdentityPrivateKeyEncoding(t *testing.T) {
	priv, err := GenerateIdentityKey(pqTestRand("identity"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := priv.MarshalBinary()
	if err != nil || len(b) != 33 || b[0] != 1 {
		t.Fatalf("MarshalBinary: %x, %v", b, err)
	}
	var back IdentityPrivateKey
	if err := back.UnmarshalBinary(b); err != nil || !back.Equal(priv) || !back.Public().Equal(priv.Public()) {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"short":     b[:32],
		"long":      append(bytes.Clone(b), 0),
		"version 2": append([]byte{2}, b[1:]...),
	} {
		if err := back.UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := back.UnmarshalBinary(append([]byte{2}, b[1:]...)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
	// The key never shows up in formatted output.
	seedHex := fmt.Sprintf("%x", b[1:])
	for _, s := range []string{fmt.Sprint(priv), fmt.Sprintf("%v %+v %s", priv, priv, priv)} {
		if strings.Contains(s, seedHex) || !strings.Contains(s, "redacted") {
			t.Errorf("formatted private key: %q", s)
		}
	}
	if _, err := (IdentityPrivateKey{}).MarshalBinary(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("zero key: %v", err)
	}
	if _, err := GenerateIdentityKey(strings.NewReader("short")); err == nil {
		t.Error("GenerateIdentityKey with too little randomness succeeded")
	}
}

func keysTestDevice(t testing.TB, seed string, oneTime, oneTimeKEM int) *DeviceKeys {
	t.Helper()
	return pqDevice(t, pqTestRand(seed), "bob", 7, oneTime, oneTimeKEM)
}

func keysMarshal(t testing.TB, d *DeviceKeys) []byte {
	t.Helper()
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeviceKeysRoundTrip(t *testing.T) {
	r := pqTestRand("device keys round trip")
	d := pqDevice(t, r, "bob", 7, 3, 2)
	check := func(when string) {
		t.Helper()
		b := keysMarshal(t, d)
		back, err := ParseDeviceKeys(b)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if again := keysMarshal(t, back); !bytes.Equal(again, b) {
			t.Fatalf("%s: re-marshal differs", when)
		}
		u1, u2 := d.PublicPreKeys(), back.PublicPreKeys()
		if err := u2.Verify("bob", 7); err != nil {
			t.Fatalf("%s: loaded keys' upload does not verify: %v", when, err)
		}
		if !reflect.DeepEqual(pqUploadBytes(t, u1), pqUploadBytes(t, u2)) {
			t.Fatalf("%s: public keys differ after load", when)
		}
	}
	check("new")
	if err := d.PublicPreKeys().Verify("bob", 7); err != nil {
		t.Fatal(err)
	}
	later := pqTestNow.Add(24 * time.Hour)
	if _, err := d.RotateSignedPreKey(r, later); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RotateLastResortKEMPreKey(r, later); err != nil {
		t.Fatal(err)
	}
	if !d.SignedPreKeyCreated().Equal(later) || !d.LastResortKEMPreKeyCreated().Equal(later) {
		t.Error("creation times not those of the rotation")
	}
	if _, err := d.AddOneTimePreKeys(r, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddOneTimeKEMPreKeys(r, 1, later); err != nil {
		t.Fatal(err)
	}
	d.RemovePreKeys(ConsumedPreKeys{OneTimePreKeyID: d.oneTime[1].id, OneTimeKEMPreKeyID: d.oneTimeKEM[0].id})
	if d.OneTimePreKeyCount() != 4 || d.OneTimeKEMPreKeyCount() != 2 {
		t.Errorf("counts %d %d", d.OneTimePreKeyCount(), d.OneTimeKEMPreKeyCount())
	}
	check("after rotation, top-up and removal")
	d.PruneRetiredPreKeys(later.Add(time.Hour))
	check("after pruning")

	// Every id is distinct across kinds and below the counter.
	seen := map[uint32]bool{}
	for _, id := range keysIDs(d) {
		if id == 0 || id >= d.nextID || seen[id] {
			t.Errorf("id %d (next %d) repeated or out of range", id, d.nextID)
		}
		seen[id] = true
	}
}

func keysIDs(d *DeviceKeys) []uint32 {
	var ids []uint32
	for _, k := range d.signed {
		ids = append(ids, k.id)
	}
	for _, k := range d.lastResort {
		ids = append(ids, k.id)
	}
	for _, k := range d.oneTime {
		ids = append(ids, k.id)
	}
	for _, k := range d.oneTimeKEM {
		ids = append(ids, k.id)
	}
	return ids
}

// pqUploadBytes encodes every element of an upload, to compare two.
func pqUploadBytes(t testing.TB, u *PreKeyUpload) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(m interface{ MarshalBinary() ([]byte, error) }) {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	out = append(out, u.IdentityKey.Bytes())
	add(&u.Certificate)
	add(&u.SignedPreKey)
	add(&u.LastResortKEMPreKey)
	for i := range u.OneTimePreKeys {
		add(&u.OneTimePreKeys[i])
	}
	for i := range u.OneTimeKEMPreKeys {
		add(&u.OneTimeKEMPreKeys[i])
	}
	return out
}

// TestDeviceKeysUnmarshalRejects: truncation anywhere, trailing bytes, a
// flipped byte in anything signed, an unknown version.
func TestDeviceKeysUnmarshalRejects(t *testing.T) {
	d := keysTestDevice(t, "device keys rejects", 1, 1)
	b := keysMarshal(t, d)
	for n := range len(b) {
		if _, err := ParseDeviceKeys(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := ParseDeviceKeys(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformedKeyData) {
		t.Errorf("trailing byte: %v", err)
	}
	v2 := bytes.Clone(b)
	v2[0] = 2
	if _, err := ParseDeviceKeys(v2); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
	// A flipped byte is caught unless nothing can check it: the creation
	// times, the private scalar of an unsigned one-time prekey, the implicit
	// rejection half z of an ML-KEM seed (d ‖ z; the signed encapsulation key
	// depends on d only), the bits X25519 clamps away in private keys, and
	// a raised next-id counter. Integrity of those is the job of the client's
	// authenticated store encryption.
	accepted := 0
	pqFlipEach(b, func(i int, mask byte, flipped []byte) {
		back, err := ParseDeviceKeys(flipped)
		if err != nil {
			return
		}
		accepted++
		if again := keysMarshal(t, back); !bytes.Equal(again, flipped) {
			t.Fatalf("byte %d ^ %#x: accepted but re-marshals differently", i, mask)
		}
	})
	const (
		createdTimes = 2 * 3 * 8  // 3 signed keys × 8 bytes, 2 masks
		oneTimeKey   = 2 * 32     // 1 one-time prekey
		kemZ         = 2 * 2 * 32 // 2 ML-KEM keys × 32 bytes of z
		clamped      = 2 * 2      // DH and signed prekey: bit 0 of byte 0, bit 7 of byte 31
		nextIDRaised = 3 + 4      // next id 5: bytes 0–2 both masks raise it, byte 3 only ^0x80
		want         = createdTimes + oneTimeKey + kemZ + clamped + nextIDRaised
	)
	if accepted != want {
		t.Errorf("%d flipped encodings accepted, want %d", accepted, want)
	}
}

func TestDeviceKeysLimits(t *testing.T) {
	r := pqTestRand("limits")
	id, _ := GenerateIdentityKey(r)
	auth := make(ed25519.PublicKey, 32)
	info := DeviceInfo{User: "bob", DeviceID: 1, AuthKey: auth}
	if _, err := NewDeviceKeys(r, id, info, pqTestNow, MaxOneTimePreKeys+1, 0); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("too many one-time prekeys: %v", err)
	}
	if _, err := NewDeviceKeys(r, id, info, pqTestNow, -1, 0); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("negative: %v", err)
	}
	d, err := NewDeviceKeys(r, id, info, pqTestNow, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddOneTimePreKeys(r, MaxOneTimePreKeys+1); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("AddOneTimePreKeys: %v", err)
	}
	if _, err := d.AddOneTimeKEMPreKeys(r, MaxOneTimePreKeys+1, pqTestNow); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("AddOneTimeKEMPreKeys: %v", err)
	}
	for i := range MaxRetiredPreKeys + 3 {
		now := pqTestNow.Add(time.Duration(i+1) * time.Hour)
		if _, err := d.RotateSignedPreKey(r, now); err != nil {
			t.Fatal(err)
		}
		if _, err := d.RotateLastResortKEMPreKey(r, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.signed) != 1+MaxRetiredPreKeys || len(d.lastResort) != 1+MaxRetiredPreKeys {
		t.Errorf("kept %d signed and %d last-resort prekeys", len(d.signed), len(d.lastResort))
	}
	if _, err := ParseDeviceKeys(keysMarshal(t, d)); err != nil {
		t.Fatal(err)
	}

	// The id space ends; ids are never handed out twice.
	d.nextID = math.MaxUint32
	if _, err := d.AddOneTimePreKeys(r, 1); err != nil {
		t.Fatal(err)
	}
	if d.nextID != 0 {
		t.Fatalf("next id %d after the last", d.nextID)
	}
	if _, err := d.AddOneTimePreKeys(r, 1); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("after the last id: %v", err)
	}
	if _, err := d.RotateSignedPreKey(r, pqTestNow); !errors.Is(err, ErrTooManyPreKeys) {
		t.Errorf("rotate after the last id: %v", err)
	}
	if _, err := ParseDeviceKeys(keysMarshal(t, d)); err != nil {
		t.Fatalf("exhausted id space does not load: %v", err)
	}
}

func TestNewDeviceKeysInvalid(t *testing.T) {
	r := pqTestRand("invalid")
	id, _ := GenerateIdentityKey(r)
	auth := make(ed25519.PublicKey, 32)
	for name, info := range map[string]DeviceInfo{
		"empty user":        {User: "", DeviceID: 1, AuthKey: auth},
		"long user":         {User: strings.Repeat("a", MaxUserLen+1), DeviceID: 1, AuthKey: auth},
		"control character": {User: "bob\x1b[31m", DeviceID: 1, AuthKey: auth},
		"C1 control":        {User: "bob\u009b", DeviceID: 1, AuthKey: auth},
		"invalid UTF-8":     {User: "bob\xff", DeviceID: 1, AuthKey: auth},
		"device 0":          {User: "bob", DeviceID: 0, AuthKey: auth},
		"no auth key":       {User: "bob", DeviceID: 1},
		"short auth key":    {User: "bob", DeviceID: 1, AuthKey: auth[:31]},
	} {
		if _, err := NewDeviceKeys(r, id, info, pqTestNow, 0, 0); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewDeviceKeys(r, IdentityPrivateKey{}, DeviceInfo{User: "bob", DeviceID: 1, AuthKey: auth}, pqTestNow, 0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("zero identity: %v", err)
	}
	if _, err := NewDeviceKeys(r, id, DeviceInfo{User: strings.Repeat("a", MaxUserLen), DeviceID: math.MaxUint32, AuthKey: auth}, pqTestNow, 0, 0); err != nil {
		t.Errorf("longest user name, largest device id: %v", err)
	}
}

// TestElementEncodings round-trips each public element and checks that its
// signature does not survive a change of the signed fields.
func TestElementEncodings(t *testing.T) {
	d := keysTestDevice(t, "elements", 1, 1)
	u := d.PublicPreKeys()
	ik, dh := u.IdentityKey, u.Certificate.DHKey

	cert := u.Certificate
	b, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var cert2 DeviceCertificate
	if err := cert2.UnmarshalBinary(b); err != nil || cert2.Verify(ik) != nil || !cert2.Names("bob", 7) {
		t.Fatalf("certificate round trip: %v", err)
	}
	if again, _ := cert2.MarshalBinary(); !bytes.Equal(again, b) {
		t.Fatal("certificate re-marshal differs")
	}

	spk := u.SignedPreKey
	b, _ = spk.MarshalBinary()
	var spk2 SignedPreKeyPublic
	if err := spk2.UnmarshalBinary(b); err != nil || spk2.Verify(ik, dh) != nil {
		t.Fatalf("signed prekey round trip: %v", err)
	}
	spk2.ID++
	if err := spk2.Verify(ik, dh); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed prekey with another id: %v", err)
	}

	opk := u.OneTimePreKeys[0]
	b, _ = opk.MarshalBinary()
	var opk2 OneTimePreKeyPublic
	if err := opk2.UnmarshalBinary(b); err != nil || opk2.ID != opk.ID || !bytes.Equal(opk2.Key.Bytes(), opk.Key.Bytes()) {
		t.Fatalf("one-time prekey round trip: %v", err)
	}

	for _, kem := range []KEMPreKeyPublic{u.LastResortKEMPreKey, u.OneTimeKEMPreKeys[0]} {
		b, _ = kem.MarshalBinary()
		var kem2 KEMPreKeyPublic
		if err := kem2.UnmarshalBinary(b); err != nil || kem2.Verify(ik, dh) != nil || kem2.LastResort != kem.LastResort {
			t.Fatalf("KEM prekey round trip: %v", err)
		}
		kem2.ID++
		if err := kem2.Verify(ik, dh); !errors.Is(err, ErrBadSignature) {
			t.Errorf("KEM prekey with another id: %v", err)
		}
	}

	// A signature over one kind of object is no signature over another,
	// even by the same key over the same bytes (distinct contexts).
	if identity := d.IdentityPrivateKey(); identity.IsZero() {
		t.Fatal("no identity")
	}
	if err := (&SignedPreKeyPublic{ID: spk.ID, Key: spk.Key, Signature: cert.Signature}).Verify(ik, dh); !errors.Is(err, ErrBadSignature) {
		t.Errorf("certificate signature accepted for a prekey: %v", err)
	}

	// A signed prekey of another device of the same account does not verify
	// for this one.
	other := pqDeviceOf(t, pqTestRand("elements other"), d.IdentityPrivateKey(), "bob", 8, 0, 0)
	if err := spk.Verify(ik, other.Certificate().DHKey); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed prekey verified for another device: %v", err)
	}
}

// TestX25519Canonical: decoders accept exactly the canonical encodings of
// X25519 public keys.
func TestX25519Canonical(t *testing.T) {
	k, _ := newX25519Key(pqTestRand("canonical"))
	good := k.PublicKey().Bytes()
	if _, err := parseX25519Public(good); err != nil {
		t.Fatal(err)
	}
	pMinus1 := bytes.Repeat([]byte{0xff}, 32)
	pMinus1[0], pMinus1[31] = 0xec, 0x7f
	if _, err := parseX25519Public(pMinus1); err != nil {
		t.Errorf("p-1 is canonical: %v", err)
	}
	for name, b := range map[string][]byte{
		"top bit": func() []byte { c := bytes.Clone(good); c[31] |= 0x80; return c }(),
		"p":       func() []byte { c := bytes.Clone(pMinus1); c[0] = 0xed; return c }(),
		"2^255-1": func() []byte { c := bytes.Clone(pMinus1); c[0] = 0xff; return c }(),
		"short":   good[:31],
	} {
		if _, err := parseX25519Public(b); !errors.Is(err, ErrMalformedKeyData) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Private keys round-trip byte for byte, whatever the clamping bits.
	raw := bytes.Repeat([]byte{0xff}, 32)
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil || !bytes.Equal(priv.Bytes(), raw) {
		t.Fatalf("X25519 private key does not round-trip: %v", err)
	}
}

func TestPreKeyUploadVerify(t *testing.T) {
	d := keysTestDevice(t, "upload", 2, 2)
	if err := d.PublicPreKeys().Verify("bob", 7); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		modify func(u *PreKeyUpload)
		want   error
	}{
		"repeated one-time id":             {func(u *PreKeyUpload) { u.OneTimePreKeys[1].ID = u.OneTimePreKeys[0].ID }, ErrInvalidArgument},
		"one-time id of the signed prekey": {func(u *PreKeyUpload) { u.OneTimePreKeys[0].ID = u.SignedPreKey.ID }, ErrInvalidArgument},
		"one-time KEM marked last resort":  {func(u *PreKeyUpload) { u.OneTimeKEMPreKeys[0].LastResort = true }, ErrInvalidArgument},
		"last resort not marked":           {func(u *PreKeyUpload) { u.LastResortKEMPreKey.LastResort = false }, ErrBadSignature},
		"one-time KEM of another id":       {func(u *PreKeyUpload) { u.OneTimeKEMPreKeys[1].ID++ }, ErrBadSignature},
		"missing one-time key":             {func(u *PreKeyUpload) { u.OneTimePreKeys[0].Key = nil }, ErrInvalidArgument},
		"other device":                     {func(u *PreKeyUpload) { u.Certificate.DeviceID = 8 }, ErrBadSignature},
	} {
		u := d.PublicPreKeys()
		tc.modify(u)
		if err := u.Verify("bob", 7); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
