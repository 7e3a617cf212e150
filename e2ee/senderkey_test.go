package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"testing"
)

var testGroup = [DistributionIDSize]byte{'g', 'r', 'o', 'u', 'p'}

func newTestSenderKey(t testing.TB) *SenderKey {
	k, err := NewSenderKey(rand.Reader, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// roundTripRecord encodes and decodes r, as a client storing it would.
func roundTripRecord(t testing.TB, r *SenderKeyRecord) *SenderKeyRecord {
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSenderKeyRecord(b)
	if err != nil {
		t.Fatalf("stored record does not decode: %v", err)
	}
	if again, _ := back.MarshalBinary(); !bytes.Equal(again, b) {
		t.Fatal("record encoding is not canonical")
	}
	return back
}

func TestSenderKeyInOrderOutOfOrderDuplicates(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("group g / alice device 1")
	bob := NewSenderKeyRecord(alice.Distribution())
	var msgs [][]byte
	for i := range 50 {
		m, err := alice.Encrypt(fmt.Appendf(nil, "message %d", i), ad)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	// Shuffled delivery with a few duplicates, the record stored between
	// messages.
	order := mrand.New(mrand.NewPCG(1, 2)).Perm(len(msgs))
	seen := map[int]bool{}
	for k, i := range append(order, order[3], order[17]) {
		got, err := bob.Decrypt(msgs[i], ad)
		if seen[i] {
			if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("message %d again (step %d): %v", i, k, err)
			}
			continue
		}
		if err != nil || string(got) != fmt.Sprintf("message %d", i) {
			t.Fatalf("message %d: %q %v", i, got, err)
		}
		seen[i] = true
		bob = roundTripRecord(t, bob)
	}
	if n := len(bob.chains[0].skipped); n != 0 {
		t.Errorf("%d skipped keys left after every message arrived", n)
	}
}

func TestSenderKeyLateJoinerAndBounds(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("ad")
	early, _ := alice.Encrypt([]byte("before carol joined"), ad)
	carol := NewSenderKeyRecord(alice.Distribution())
	if _, err := carol.Decrypt(early, ad); !errors.Is(err, ErrBeforeSenderKey) {
		t.Errorf("a message from before the distribution: %v", err)
	}
	var edge []byte
	for range MaxSenderKeySkip + 1 {
		edge, _ = alice.Encrypt([]byte("at the edge"), ad) // ends MaxSenderKeySkip ahead of carol
	}
	far, _ := alice.Encrypt([]byte("too far ahead"), ad)
	before, _ := carol.MarshalBinary()
	if _, err := carol.Decrypt(far, ad); !errors.Is(err, ErrTooManySkipped) {
		t.Errorf("a message %d ahead: %v", MaxSenderKeySkip+1, err)
	}
	if after, _ := carol.MarshalBinary(); !bytes.Equal(before, after) {
		t.Error("a refused message changed the record")
	}
	// Exactly MaxSenderKeySkip ahead is taken, keeping every key it
	// passed, up to the cap.
	if got, err := carol.Decrypt(edge, ad); err != nil || string(got) != "at the edge" {
		t.Fatalf("a message %d ahead: %q %v", MaxSenderKeySkip, got, err)
	}
	if n := len(carol.chains[0].skipped); n != MaxSenderKeySkipped {
		t.Errorf("%d skipped keys kept, want %d", n, MaxSenderKeySkipped)
	}
	if got, err := carol.Decrypt(far, ad); err != nil || string(got) != "too far ahead" {
		t.Errorf("the far message once the chain caught up: %q %v", got, err)
	}
}

// TestSenderKeyForgeryAndTampering: a member who holds the chain key
// cannot make a message the record takes as the sender's; any change to a
// message, its AD or its group fails; nothing fails by changing state.
func TestSenderKeyForgeryAndTampering(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("group g / alice")
	dist := alice.Distribution()
	bob := NewSenderKeyRecord(dist)
	good, _ := alice.Encrypt([]byte("real"), ad)

	// Mallory, another member, has alice's chain key from the same
	// distribution but her own signing key.
	mallory := &SenderKey{distribution: dist.DistributionID, chainID: dist.ChainID, iteration: dist.Iteration, chainKey: dist.ChainKey}
	_, mallory.signing, _ = ed25519.GenerateKey(rand.Reader)
	forged, _ := mallory.Encrypt([]byte("forged"), ad)

	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	otherGroup := bytes.Clone(good)
	otherGroup[1] ^= 1
	before, _ := bob.MarshalBinary()
	for name, c := range map[string]struct {
		msg, ad []byte
		want    error
	}{
		"forged by a member": {forged, ad, ErrBadSignature},
		"ciphertext changed": {flip(good, senderKeyHeaderSize+1), ad, ErrBadSignature},
		"signature changed":  {flip(good, len(good)-1), ad, ErrBadSignature},
		"iteration changed":  {flip(good, senderKeyHeaderSize-1), ad, ErrBadSignature},
		"other AD":           {good, []byte("group h / alice"), ErrBadSignature},
		"other group":        {otherGroup, ad, ErrDecrypt},
		"unknown chain":      {flip(good, 1+DistributionIDSize), ad, ErrUnknownSenderChain},
		"version 2":          {append([]byte{2}, good[1:]...), ad, ErrUnsupportedVersion},
		"truncated":          {good[:40], ad, ErrDecrypt},
		"empty":              {nil, ad, ErrDecrypt},
	} {
		if _, err := bob.Decrypt(c.msg, c.ad); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if after, _ := bob.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatal("a refused message changed the record")
	}
	if got, err := bob.Decrypt(good, ad); err != nil || string(got) != "real" {
		t.Fatalf("the real message after the refusals: %q %v", got, err)
	}

	// A record whose chain key is wrong (a corrupted distribution) fails
	// the AEAD after a good signature, and changes nothing.
	bad := *dist
	bad.ChainKey[0] ^= 1
	eve := NewSenderKeyRecord(&bad)
	before, _ = eve.MarshalBinary()
	if _, err := eve.Decrypt(good, ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong chain key: %v", err)
	}
	if after, _ := eve.MarshalBinary(); !bytes.Equal(before, after) {
		t.Error("a message that did not decrypt moved the chain")
	}
}

// TestSenderKeyRotation: after alice rotates because carol left, bob
// (who got the new distribution) reads the new chain and the old one's
// late messages; carol reads neither the new chain nor can be given it by
// replaying an old distribution.
func TestSenderKeyRotation(t *testing.T) {
	ad := []byte("ad")
	old := newTestSenderKey(t)
	bob, carol := NewSenderKeyRecord(old.Distribution()), NewSenderKeyRecord(old.Distribution())
	late, _ := old.Encrypt([]byte("sent before the rotation"), ad)

	rotated := newTestSenderKey(t)
	if err := bob.Add(rotated.Distribution()); err != nil {
		t.Fatal(err)
	}
	fresh, _ := rotated.Encrypt([]byte("after carol left"), ad)
	if got, err := bob.Decrypt(fresh, ad); err != nil || string(got) != "after carol left" {
		t.Fatalf("bob, new chain: %q %v", got, err)
	}
	if got, err := bob.Decrypt(late, ad); err != nil || string(got) != "sent before the rotation" {
		t.Fatalf("bob, late message of the old chain: %q %v", got, err)
	}
	if _, err := carol.Decrypt(fresh, ad); !errors.Is(err, ErrUnknownSenderChain) {
		t.Errorf("carol read the new chain: %v", err)
	}
	// An old distribution again does not move a chain back.
	if err := bob.Add(rotated.Distribution()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Decrypt(fresh, ad); !errors.Is(err, ErrDuplicate) {
		t.Errorf("replayed distribution reopened a read message: %v", err)
	}
	// The same chain id with another signing key is refused.
	hijack := rotated.Distribution()
	hijack.SigningKey[0] ^= 1
	if err := bob.Add(hijack); !errors.Is(err, ErrBadSignature) {
		t.Errorf("chain redistributed with another signing key: %v", err)
	}
	// At most MaxSenderChains chains are kept.
	for range MaxSenderChains + 2 {
		bob.Add(newTestSenderKey(t).Distribution())
	}
	if len(bob.chains) != MaxSenderChains {
		t.Errorf("%d chains kept", len(bob.chains))
	}
	other := rotated.Distribution()
	other.DistributionID[0] ^= 1
	if err := bob.Add(other); err == nil {
		t.Error("a distribution of another group was added")
	}
}

func TestSenderKeyEncodings(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("ad")
	alice.Encrypt([]byte("one"), ad)
	b, _ := alice.MarshalBinary()
	back, err := UnmarshalSenderKey(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := NewSenderKeyRecord(alice.Distribution())
	m1, _ := back.Encrypt([]byte("from the stored key"), ad)
	if got, err := rec.Decrypt(m1, ad); err != nil || string(got) != "from the stored key" {
		t.Fatalf("stored sender key: %q %v", got, err)
	}
	db, _ := alice.Distribution().MarshalBinary()
	d, err := ParseSenderKeyDistribution(db)
	if err != nil || *d != *alice.Distribution() {
		t.Fatalf("distribution round trip: %v", err)
	}
	for name, bad := range map[string][]byte{
		"truncated": db[:len(db)-1], "trailing": append(bytes.Clone(db), 0), "version": append([]byte{9}, db[1:]...),
		"zero signing key": append(bytes.Clone(db[:len(db)-32]), make([]byte, 32)...),
	} {
		if _, err := ParseSenderKeyDistribution(bad); err == nil {
			t.Errorf("distribution %s: accepted", name)
		}
	}
	// A record with skipped keys survives storage; corrupt records do not
	// decode.
	for range 3 {
		alice.Encrypt([]byte("skipped"), ad)
	}
	m5, _ := alice.Encrypt([]byte("five"), ad)
	rec.Decrypt(m5, ad)
	rb, _ := rec.MarshalBinary()
	if _, err := UnmarshalSenderKeyRecord(rb); err != nil {
		t.Fatal(err)
	}
	dup := bytes.Clone(rb)
	dup[1+DistributionIDSize] = 2 // two chains claimed, one present
	for name, bad := range map[string][]byte{"truncated": rb[:len(rb)-3], "trailing": append(bytes.Clone(rb), 1), "chain count": dup} {
		if _, err := UnmarshalSenderKeyRecord(bad); err == nil {
			t.Errorf("record %s: accepted", name)
		}
	}
}

// TestSenderKeyDistributionAt: the sender gives its chain from any
// position between its start and its next message, and a record made
// from it reads exactly the messages from there on.
func TestSenderKeyDistributionAt(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("ad")
	var msgs [][]byte
	for i := range 6 {
		m, _ := alice.Encrypt(fmt.Appendf(nil, "m%d", i), ad)
		msgs = append(msgs, m)
	}
	if d, err := alice.DistributionAt(alice.Iteration()); err != nil || *d != *alice.Distribution() {
		t.Fatalf("at the current position: %+v %v", d, err)
	}
	d, err := alice.DistributionAt(2)
	if err != nil || d.Iteration != 2 {
		t.Fatalf("at 2: %+v %v", d, err)
	}
	r := NewSenderKeyRecord(d)
	for i := 5; i >= 0; i-- {
		got, err := r.Decrypt(msgs[i], ad)
		switch {
		case i < 2 && !errors.Is(err, ErrBeforeSenderKey):
			t.Errorf("m%d, before the position given: %q %v", i, got, err)
		case i >= 2 && (err != nil || string(got) != fmt.Sprintf("m%d", i)):
			t.Errorf("m%d: %q %v", i, got, err)
		}
	}
	if _, err := alice.DistributionAt(7); err == nil {
		t.Error("a position after the next message was given")
	}
	// A state stored and read back keeps its start; one stored in version
	// 1 (no start) starts where it was.
	b, _ := alice.MarshalBinary()
	back, err := UnmarshalSenderKey(b)
	if err != nil || back.Start() != 0 {
		t.Fatalf("stored state: start %v, %v", back, err)
	}
	if d0, err := back.DistributionAt(0); err != nil || d0.ChainKey != alice.startKey {
		t.Fatalf("the stored state's start: %v", err)
	}
	v1 := append([]byte{1}, b[1:1+DistributionIDSize+4+4+32+32]...)
	old, err := UnmarshalSenderKey(v1)
	if err != nil || old.Start() != 6 || old.Iteration() != 6 {
		t.Fatalf("a version 1 state: %+v %v", old, err)
	}
	if _, err := old.DistributionAt(5); err == nil {
		t.Error("a version 1 state gave a position before the one it was stored at")
	}
	bad := bytes.Clone(b)
	binary.BigEndian.PutUint32(bad[len(bad)-36:], 7) // start after the iteration
	if _, err := UnmarshalSenderKey(bad); err == nil {
		t.Error("a state whose start is after its iteration decoded")
	}
}

// TestSenderKeyEarlierDistribution: a member that holds a chain from a
// later position than messages it waits for takes the chain from an
// earlier position and reads them, once each; what it read before the
// earlier distribution stays read, replays included; a distribution of
// another chain key under the same id and signing key is refused.
func TestSenderKeyEarlierDistribution(t *testing.T) {
	alice := newTestSenderKey(t)
	ad := []byte("ad")
	var msgs [][]byte
	for i := range 8 {
		m, _ := alice.Encrypt(fmt.Appendf(nil, "m%d", i), ad)
		msgs = append(msgs, m)
	}
	late, _ := alice.DistributionAt(5)
	bob := NewSenderKeyRecord(late)
	if got, err := bob.Decrypt(msgs[6], ad); err != nil || string(got) != "m6" {
		t.Fatalf("m6: %q %v", got, err)
	}
	if _, err := bob.Decrypt(msgs[3], ad); !errors.Is(err, ErrBeforeSenderKey) {
		t.Fatalf("m3 before the earlier distribution: %v", err)
	}
	// Another chain key under the chain's id and signing key.
	forged, _ := alice.DistributionAt(2)
	forged.ChainKey[0] ^= 1
	before, _ := bob.MarshalBinary()
	if err := bob.Add(forged); err == nil {
		t.Error("a distribution with another chain key was added")
	}
	if after, _ := bob.MarshalBinary(); !bytes.Equal(before, after) {
		t.Error("a refused distribution changed the record")
	}
	early, _ := alice.DistributionAt(2)
	if err := bob.Add(early); err != nil {
		t.Fatal(err)
	}
	bob = roundTripRecord(t, bob)
	for _, i := range []int{3, 2, 4, 7, 5} {
		if got, err := bob.Decrypt(msgs[i], ad); err != nil || string(got) != fmt.Sprintf("m%d", i) {
			t.Errorf("m%d after the earlier distribution: %q %v", i, got, err)
		}
	}
	// Everything read stays read: a replay, or the same or an earlier
	// distribution again, opens nothing twice.
	for _, again := range []func() error{
		func() error { return nil },
		func() error { d, _ := alice.DistributionAt(2); return bob.Add(d) },
		func() error { d, _ := alice.DistributionAt(3); return bob.Add(d) },
		func() error { d, _ := alice.DistributionAt(6); return bob.Add(d) },
		func() error { bob = roundTripRecord(t, bob); return nil },
	} {
		if err := again(); err != nil {
			t.Fatal(err)
		}
		for i := 2; i < 8; i++ {
			if _, err := bob.Decrypt(msgs[i], ad); !errors.Is(err, ErrDuplicate) {
				t.Errorf("m%d again: %v", i, err)
			}
		}
	}
	for _, i := range []int{0, 1} {
		if _, err := bob.Decrypt(msgs[i], ad); !errors.Is(err, ErrBeforeSenderKey) {
			t.Errorf("m%d, before every distribution: %v", i, err)
		}
	}
	// An even earlier one adds only the keys before the last base: m0 and
	// m1 become readable, once.
	first, _ := alice.DistributionAt(0)
	if err := bob.Add(first); err != nil {
		t.Fatal(err)
	}
	if n := len(bob.chains[0].skipped); n != 2 {
		t.Errorf("%d skipped keys after the first distribution, want 2", n)
	}
	for _, i := range []int{1, 0} {
		if got, err := bob.Decrypt(msgs[i], ad); err != nil || string(got) != fmt.Sprintf("m%d", i) {
			t.Errorf("m%d: %q %v", i, got, err)
		}
		if _, err := bob.Decrypt(msgs[i], ad); !errors.Is(err, ErrDuplicate) {
			t.Errorf("m%d twice: %v", i, err)
		}
	}
	// A record stored in version 1 (base unknown, taken as 0) is given no
	// earlier keys: what it read could be read again.
	old := NewSenderKeyRecord(late)
	old.Decrypt(msgs[6], ad)
	ob, _ := old.MarshalBinary()
	v1 := append([]byte{1}, ob[1:1+DistributionIDSize+1+8]...)
	v1 = append(v1, ob[1+DistributionIDSize+1+12:]...)
	back, err := UnmarshalSenderKeyRecord(v1)
	if err != nil || back.chains[0].base != 0 || back.chains[0].iteration != 7 {
		t.Fatalf("a version 1 record: %v", err)
	}
	if err := back.Add(early); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Decrypt(msgs[3], ad); !errors.Is(err, ErrDuplicate) {
		t.Errorf("a version 1 record took earlier keys: %v", err)
	}
	if _, err := back.Decrypt(msgs[5], ad); err != nil {
		t.Errorf("a version 1 record's skipped key: %v", err)
	}
}

// senderKeyVector is one message of testdata/senderkey.json.
type senderKeyVector struct {
	Plaintext string `json:"plaintext"`
	AD        string `json:"ad"`
	Message   string `json:"message"`
}

type senderKeyVectorFile struct {
	File         string            `json:"file"`
	Expect       []string          `json:"expect"`
	Distribution string            `json:"distribution"`
	SigningSeed  string            `json:"signing_seed"`
	Messages     []senderKeyVector `json:"messages"`
}

func senderKeyGenerateVectors(t *testing.T) []byte {
	// The randomness NewSenderKey reads: chain id, chain key, signing seed.
	seed := bytes.Join([][]byte{{0, 0, 0, 42}, bytes.Repeat([]byte{0x33}, 32), bytes.Repeat([]byte{0x44}, 32)}, nil)
	k, err := NewSenderKey(bytes.NewReader(seed), testGroup)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := k.Distribution().MarshalBinary()
	f := senderKeyVectorFile{
		File: "Sender key vectors for securechat e2ee (docs/protocol.md §9.6). Generated by `go test ./e2ee -run TestSenderKeyVectors -update` " +
			"from fixed keys; TestSenderKeyVectors requires the file unchanged.",
		Expect: []string{
			"distribution = 0x01 ‖ distribution id[16] ‖ u32 chain id ‖ u32 iteration ‖ chain key[32] ‖ Ed25519 public signing key[32]",
			"for each message in order: mk = HMAC-SHA256(ck, 0x01), ck = HMAC-SHA256(ck, 0x02); key ‖ nonce = HKDF-SHA256(ikm = mk, no salt, info = \"securechat sender key message v1\") → 32 ‖ 12 bytes",
			"message = header ‖ ChaCha20-Poly1305(key, nonce, plaintext, ad ‖ header) ‖ Ed25519(signing key, \"securechat sender key signature v1\" ‖ u16 len(ad) ‖ ad ‖ header ‖ ciphertext); header = 0x01 ‖ distribution id ‖ u32 chain id ‖ u32 iteration",
		},
		Distribution: hex.EncodeToString(db),
		SigningSeed:  hex.EncodeToString(k.signing.Seed()),
	}
	for i, p := range []string{"", "hello group", "third", "a longer message, to span more than one ChaCha20 block of sixty-four bytes"} {
		ad := fmt.Appendf(nil, "group vector / sender %d", i%2)
		m, err := k.Encrypt([]byte(p), ad)
		if err != nil {
			t.Fatal(err)
		}
		f.Messages = append(f.Messages, senderKeyVector{Plaintext: p, AD: string(ad), Message: hex.EncodeToString(m)})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestSenderKeyVectors regenerates testdata/senderkey.json, requires it
// unchanged, and reads every message with a record made from the file's
// distribution alone, in reverse order.
func TestSenderKeyVectors(t *testing.T) {
	const path = "testdata/senderkey.json"
	vectorsGolden(t, path, senderKeyGenerateVectors(t))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f senderKeyVectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	d, err := ParseSenderKeyDistribution(mustHex(t, f.Distribution))
	if err != nil {
		t.Fatal(err)
	}
	if d.ChainID != 42 || d.Iteration != 0 {
		t.Fatalf("distribution %+v", d)
	}
	r := NewSenderKeyRecord(d)
	for i := len(f.Messages) - 1; i >= 0; i-- {
		v := f.Messages[i]
		m := mustHex(t, v.Message)
		if got := binary.BigEndian.Uint32(m[1+DistributionIDSize+4:]); got != uint32(i) {
			t.Fatalf("message %d has iteration %d", i, got)
		}
		got, err := r.Decrypt(m, []byte(v.AD))
		if err != nil || string(got) != v.Plaintext {
			t.Fatalf("message %d: %q %v", i, got, err)
		}
	}
}

// FuzzSenderKeyDecrypt: any bytes as a group message never panic and never
// change the record unless they decrypt.
//
//	go test -run '^$' -fuzz '^FuzzSenderKeyDecrypt$' -fuzztime 30s ./e2ee
func FuzzSenderKeyDecrypt(f *testing.F) {
	seed := bytes.Join([][]byte{{0, 0, 0, 7}, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}, nil)
	k, err := NewSenderKey(bytes.NewReader(seed), testGroup)
	if err != nil {
		f.Fatal(err)
	}
	dist := k.Distribution()
	ad := []byte("ad")
	for i := range 3 {
		m, _ := k.Encrypt(fmt.Appendf(nil, "m%d", i), ad)
		for _, c := range ratchetCorrupted(m) {
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := NewSenderKeyRecord(dist)
		before, _ := r.MarshalBinary()
		if _, err := r.Decrypt(msg, ad); err != nil {
			if after, _ := r.MarshalBinary(); !bytes.Equal(before, after) {
				t.Fatalf("a refused message (%v) changed the record", err)
			}
		}
	})
}

// FuzzUnmarshalSenderKeyRecord: decoding is strict and canonical.
//
//	go test -run '^$' -fuzz '^FuzzUnmarshalSenderKeyRecord$' -fuzztime 30s ./e2ee
func FuzzUnmarshalSenderKeyRecord(f *testing.F) {
	k := newTestSenderKey(f)
	r := NewSenderKeyRecord(k.Distribution())
	for range 3 {
		k.Encrypt([]byte("x"), nil)
	}
	m, _ := k.Encrypt([]byte("x"), nil)
	r.Decrypt(m, nil)
	b, _ := r.MarshalBinary()
	v1 := append([]byte{1}, b[1:1+DistributionIDSize+1+8]...) // the same without the base
	v1 = append(v1, b[1+DistributionIDSize+1+12:]...)
	for _, c := range append(ratchetCorrupted(b), ratchetCorrupted(v1)...) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalSenderKeyRecord(b)
		if err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if b[0] == 1 {
			// A version 1 record is re-encoded as version 2, canonically.
			if r, err = UnmarshalSenderKeyRecord(again); err != nil {
				t.Fatalf("a version 1 record re-encoded does not decode: %v", err)
			}
			b, again = again, nil
			again, _ = r.MarshalBinary()
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded record re-encodes differently")
		}
	})
}
