package transport

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
)

// testFingerprint is 00 01 02 … 1f.
const testFingerprint = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func TestParseFingerprint(t *testing.T) {
	t.Parallel()
	colons := func(s string) string {
		var parts []string
		for i := 0; i < len(s); i += 2 {
			parts = append(parts, s[i:i+2])
		}
		return strings.Join(parts, ":")
	}
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"plain", testFingerprint, true},
		{"upper case", strings.ToUpper(testFingerprint), true},
		{"colons", colons(testFingerprint), true},
		{"upper case colons", strings.ToUpper(colons(testFingerprint)), true},
		{"grouped", "0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f", true},
		{"dashes", "00010203-04050607-08090a0b-0c0d0e0f-10111213-14151617-18191a1b-1c1d1e1f", true},
		{"surrounding white space", "\t " + testFingerprint + "\n", true},
		{"empty", "", false},
		{"63 digits", testFingerprint[:63], false},
		{"65 digits", testFingerprint + "0", false},
		{"31 bytes", testFingerprint[:62], false},
		{"33 bytes", testFingerprint + "20", false},
		{"non-hex", "g" + testFingerprint[1:], false},
		{"non-hex sign", "+" + testFingerprint[1:], false},
		{"inner tab", testFingerprint[:32] + "\t" + testFingerprint[32:], false},
		{"all zero", strings.Repeat("0", 64), false},
		{"all zero grouped", strings.TrimSpace(strings.Repeat("0000 ", 16)), false},
		{"base64", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", false},
	}
	want, err := FingerprintFromBytes(fill(32, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFingerprint(tt.in)
			if !tt.ok {
				if err == nil {
					t.Errorf("ParseFingerprint(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFingerprint(%q): %v", tt.in, err)
			}
			if !got.Equal(want) || got.String() != testFingerprint {
				t.Errorf("ParseFingerprint(%q) = %v, want %s", tt.in, got, testFingerprint)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	pub := ed25519.NewKeyFromSeed(fill(ed25519.SeedSize, 9)).Public().(ed25519.PublicKey)
	f := FingerprintOf(pub)
	if sum := sha256.Sum256(pub); string(f.Bytes()) != string(sum[:]) {
		t.Errorf("FingerprintOf = %x, want the SHA-256 of the raw key %x", f.Bytes(), sum)
	}
	if f.IsZero() || !(Fingerprint{}).IsZero() {
		t.Error("IsZero is wrong")
	}

	g, err := ParseFingerprint(f.String())
	if err != nil || !g.Equal(f) {
		t.Errorf("ParseFingerprint(String()) = %v, %v", g, err)
	}
	other := FingerprintOf(ed25519.NewKeyFromSeed(fill(ed25519.SeedSize, 10)).Public().(ed25519.PublicKey))
	if f.Equal(other) || other.Equal(f) || f.Equal(Fingerprint{}) {
		t.Error("Equal reports different fingerprints equal")
	}
	if !f.Equal(f) {
		t.Error("Equal reports a fingerprint unequal to itself")
	}
	// Fingerprints differing only in the last byte.
	a, b := fill(32, 1), fill(32, 1)
	b[31] ^= 1
	fa, _ := FingerprintFromBytes(a)
	fb, _ := FingerprintFromBytes(b)
	if fa.Equal(fb) {
		t.Error("Equal ignores the last byte")
	}

	bs := f.Bytes()
	bs[0] ^= 0xff
	if string(f.Bytes()) == string(bs) {
		t.Error("Bytes returned the fingerprint's own array")
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := FingerprintFromBytes(make([]byte, n)); err == nil {
			t.Errorf("FingerprintFromBytes accepted %d bytes", n)
		}
	}
}

// TestFingerprintGrouped: the form people are shown (Grouped) is the 64
// digits in sixteen groups of four, parses back, and a key mismatch names
// both keys in it; the text form (JSON) stays 64 plain digits.
func TestFingerprintGrouped(t *testing.T) {
	t.Parallel()
	f, err := ParseFingerprint(testFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	grouped := f.Grouped()
	groups := strings.Split(grouped, " ")
	if len(groups) != 16 || strings.Join(groups, "") != f.String() {
		t.Errorf("Grouped() = %q", grouped)
	}
	for _, g := range groups {
		if len(g) != 4 {
			t.Errorf("Grouped() = %q: a group of %d", grouped, len(g))
		}
	}
	if g, err := ParseFingerprint(grouped); err != nil || !g.Equal(f) {
		t.Errorf("ParseFingerprint(%q) = %v, %v", grouped, g, err)
	}
	other, _ := ParseFingerprint(strings.Repeat("cd", 32))
	msg := (&KeyMismatchError{Pinned: f, Got: other}).Error()
	if !strings.Contains(msg, "expected "+grouped+", server presented "+other.Grouped()+" ") || strings.Contains(msg, f.String()) {
		t.Errorf("the mismatch does not name both keys grouped: %s", msg)
	}
	b, err := json.Marshal(struct{ F, Z Fingerprint }{F: f})
	if err != nil || string(b) != `{"F":"`+f.String()+`","Z":""}` {
		t.Errorf("JSON %s, %v", b, err)
	}
	var back struct{ F, Z Fingerprint }
	if err := json.Unmarshal(b, &back); err != nil || !back.F.Equal(f) || !back.Z.IsZero() {
		t.Errorf("JSON back: %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"F":"12"}`), &back); err == nil {
		t.Error("JSON took a short fingerprint")
	}
}
