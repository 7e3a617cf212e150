package e2ee

import (
	"bytes"
	"sync"
	"testing"
)

// Fuzz targets for every decoder of this file set: no input may panic, and
// whatever parses must marshal back to exactly the same bytes, so there is
// one encoding per value (nothing unauthenticated can ride along). Seeds are
// valid encodings and damaged copies of them.

// pqFuzzData is one handshake's worth of encodings.
type pqFuzzData struct {
	bob                *DeviceKeys
	bundles            [][]byte
	header             []byte
	aliceKeys, bobKeys []byte
}

var pqFuzzOnce struct {
	sync.Once
	data pqFuzzData
}

// pqFuzzFixture makes the encodings once per process.
func pqFuzzFixture(tb testing.TB) *pqFuzzData {
	pqFuzzOnce.Do(func() {
		f := &pqFuzzOnce.data
		p := pqStart(tb, "fuzz", true, true)
		f.bob = p.bob
		for _, opk := range []bool{true, false} {
			f.bundles = append(f.bundles, pqMarshal(tb, pqBundle(tb, p.bob, opk, opk)))
		}
		f.header = pqMarshal(tb, p.header)
		f.aliceKeys = pqMarshal(tb, p.alice)
		f.bobKeys = pqMarshal(tb, p.bob)
	})
	return &pqFuzzOnce.data
}

func pqMarshal(tb testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// pqFuzzSeeds adds b and damaged versions of it.
func pqFuzzSeeds(f *testing.F, b []byte) {
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(b[:len(b)-1])
	f.Add(append(bytes.Clone(b), 0))
	for _, i := range []int{0, 1, len(b) / 3, len(b) - 1} {
		c := bytes.Clone(b)
		c[i] ^= 0xff
		f.Add(c)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
}

func FuzzParseBundle(f *testing.F) {
	for _, b := range pqFuzzFixture(f).bundles {
		pqFuzzSeeds(f, b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParsePreKeyBundle(data)
		if err != nil {
			return
		}
		again, err := b.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed bundle does not marshal: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-marshal differs:\n%x\n%x", data, again)
		}
		_ = b.Verify(b.Certificate.User, b.Certificate.DeviceID)
	})
}

func FuzzParseInitialHeader(f *testing.F) {
	fix := pqFuzzFixture(f)
	pqFuzzSeeds(f, fix.header)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseInitialMessageHeader(data)
		if err != nil {
			return
		}
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed header does not marshal: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-marshal differs:\n%x\n%x", data, again)
		}
		// The responder must not panic on it either.
		_, _ = RespondSession(fix.bob, h.Certificate.User, h.Certificate.DeviceID, h)
	})
}

func FuzzUnmarshalDeviceKeys(f *testing.F) {
	fix := pqFuzzFixture(f)
	pqFuzzSeeds(f, fix.aliceKeys)
	pqFuzzSeeds(f, fix.bobKeys)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDeviceKeys(data)
		if err != nil {
			return
		}
		again, err := d.MarshalBinary()
		if err != nil {
			t.Fatalf("loaded keys do not marshal: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-marshal differs:\n%x\n%x", data, again)
		}
		c := d.Certificate()
		if err := d.PublicPreKeys().Verify(c.User, c.DeviceID); err != nil {
			t.Fatalf("loaded keys publish an upload that does not verify: %v", err)
		}
	})
}
