package e2ee

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// Fuzz targets of the Double Ratchet's decoders: the message (through
// Decrypt) and the stored session.
//
//	go test -run '^$' -fuzz '^FuzzRatchetDecrypt$' -fuzztime 30s ./e2ee
//	go test -run '^$' -fuzz '^FuzzUnmarshalSession$' -fuzztime 30s ./e2ee

// ratchetCorrupted returns b and damaged copies of it, to seed a corpus.
func ratchetCorrupted(b []byte) [][]byte {
	out := [][]byte{b}
	if len(b) == 0 {
		return out
	}
	out = append(out, b[:len(b)/2], b[:len(b)-1], append(bytes.Clone(b), 0))
	for _, i := range []int{0, 1, len(b) / 2, len(b) - 1} {
		flipped := bytes.Clone(b)
		flipped[i] ^= 0x41
		out = append(out, flipped)
	}
	return out
}

// ratchetFuzzFixture is Bob's session in the middle of a conversation, with
// skipped keys, and messages from Alice for every path of Decrypt: keys
// skipped earlier, the current chain, a new chain, and a replay.
type ratchetFuzzFixture struct {
	bob   []byte            // Bob's encoded session
	valid map[string][]byte // message → plaintext, for messages Bob can decrypt
	seeds [][]byte
}

func newRatchetFuzzFixture(tb testing.TB) ratchetFuzzFixture {
	alice, bob, r := newRatchetPair(tb, "fuzz")
	fx := ratchetFuzzFixture{valid: map[string][]byte{}}
	var msgs [][]byte
	send := func(from *Session, text string) []byte {
		pt := []byte(text)
		m := ratchetSend(tb, from, r, pt)
		fx.valid[string(m)] = pt
		msgs = append(msgs, m)
		return m
	}
	for i := range 5 {
		send(alice, fmt.Sprintf("a%d", i))
	}
	ratchetReceive(tb, bob, msgs[3], []byte("a3")) // skips a0, a1, a2
	delete(fx.valid, string(msgs[3]))
	ratchetReceive(tb, alice, ratchetSend(tb, bob, r, []byte("b0")), []byte("b0"))
	send(alice, "c0") // a new chain; its PN skips a4
	send(alice, "c1")
	fx.bob = ratchetMarshal(tb, bob)
	for _, m := range msgs {
		fx.seeds = append(fx.seeds, ratchetCorrupted(m)...)
	}
	fx.seeds = append(fx.seeds, nil, ratchetWithN(msgs[4], 4+MaxSkip+1), ratchetWithN(msgs[4], 4+MaxSkip))
	return fx
}

func FuzzRatchetDecrypt(f *testing.F) {
	fx := newRatchetFuzzFixture(f)
	for _, s := range fx.seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		bob, err := UnmarshalSession(fx.bob)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := bob.Decrypt(msg)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrTooManySkipped) {
				t.Fatalf("error %v wraps no ratchet sentinel", err)
			}
			if !bytes.Equal(ratchetMarshal(t, bob), fx.bob) {
				t.Fatalf("failed Decrypt (%v) changed the session", err)
			}
			return
		}
		// Header and ciphertext are both authenticated: only the genuine
		// messages decrypt.
		want, ok := fx.valid[string(msg)]
		if !ok {
			t.Fatalf("a message Alice never sent decrypted to %q", pt)
		}
		if !bytes.Equal(pt, want) {
			t.Fatalf("Decrypt = %q, want %q", pt, want)
		}
	})
}

func FuzzUnmarshalSession(f *testing.F) {
	alice, bob, r := newRatchetPair(f, "fuzz unmarshal")
	f.Add(ratchetMarshal(f, alice)) // sending, no receiving chain
	f.Add(ratchetMarshal(f, bob))   // awaiting
	var probe []byte
	for i := range 4 {
		m := ratchetSend(f, alice, r, fmt.Appendf(nil, "a%d", i))
		if i == 3 {
			probe = m
		}
	}
	ratchetReceive(f, bob, probe, []byte("a3"))
	for _, b := range ratchetCorrupted(ratchetMarshal(f, bob)) { // pending, skipped keys
		f.Add(b)
	}
	ratchetReceive(f, alice, ratchetSend(f, bob, r, []byte("b0")), []byte("b0"))
	for _, b := range ratchetCorrupted(ratchetMarshal(f, bob)) { // sending, skipped keys
		f.Add(b)
	}
	for _, b := range ratchetCorrupted(ratchetStateV1(ratchetMarshal(f, bob))) { // the same, version 1
		f.Add(b)
	}
	f.Add(ratchetMarshal(f, alice)) // pending
	probe = ratchetSend(f, alice, r, []byte("c0"))

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b) // the fuzz engine owns b
		s, err := UnmarshalSession(in)
		if err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary after a successful decode: %v", err)
		}
		if b[0] == ratchetStateVersion1 {
			// The same state, encoded as the current version.
			if out[0] != ratchetStateVersion || !bytes.Equal(ratchetStateV1(out), b) {
				t.Fatalf("version 1 state re-encoded as another state:\n in %x\nout %x", b, out)
			}
		} else if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the encoding:\n in %x\nout %x", b, out)
		}
		// Whatever decodes must be usable without panics.
		s.Decrypt(probe)
		s.Encrypt(ratchetTestRand("fuzz probe"), []byte("probe"))
		if _, err := s.MarshalBinary(); err != nil {
			t.Fatalf("MarshalBinary after use: %v", err)
		}
	})
}
