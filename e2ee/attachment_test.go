package e2ee

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"testing"
	"testing/iotest"

	"golang.org/x/crypto/chacha20poly1305"
)

const sealedChunk = AttachmentChunkSize + chacha20poly1305.Overhead

func attachmentKey(t testing.TB) []byte {
	k, err := NewAttachmentKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomBytes(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestAttachmentRoundTrip(t *testing.T) {
	key := attachmentKey(t)
	for _, n := range []int{0, 1, 100, AttachmentChunkSize - 1, AttachmentChunkSize, AttachmentChunkSize + 1, 3 * AttachmentChunkSize, 3*AttachmentChunkSize + 777} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			plain := randomBytes(n, uint64(n))
			enc, digest, err := EncryptAttachment(plain, key, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(enc)) != AttachmentSize(int64(n)) {
				t.Errorf("encoding of %d bytes is %d bytes, AttachmentSize says %d", n, len(enc), AttachmentSize(int64(n)))
			}
			if sum := sha256.Sum256(enc); !bytes.Equal(sum[:], digest) {
				t.Error("digest is not the SHA-256 of the encoding")
			}
			got, err := DecryptAttachment(enc, key, digest)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("decrypt: %v (%d bytes back of %d)", err, len(got), n)
			}
			// Streaming, in odd-sized writes and one-byte reads.
			var b bytes.Buffer
			aw, err := NewAttachmentWriter(&b, key, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			for p := plain; len(p) > 0; {
				k := min(len(p), 1+len(p)%9973)
				if _, err := aw.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
			if err := aw.Close(); err != nil {
				t.Fatal(err)
			}
			if aw.Size() != int64(b.Len()) || aw.Size() != AttachmentSize(int64(n)) {
				t.Errorf("Size %d, wrote %d", aw.Size(), b.Len())
			}
			ar, err := NewAttachmentReader(iotest.OneByteReader(&b), key, aw.Digest())
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(iotest.OneByteReader(ar))
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("streaming decrypt: %v", err)
			}
		})
	}
}

// TestAttachmentTampering: every way of changing the encoding fails, and
// no plaintext of a chunk that does not authenticate is returned.
func TestAttachmentTampering(t *testing.T) {
	key := attachmentKey(t)
	plain := randomBytes(3*AttachmentChunkSize+500, 7)
	enc, digest, err := EncryptAttachment(plain, key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const h = attachmentHeaderSize
	chunk := func(i int) []byte { return enc[h+i*sealedChunk : min(len(enc), h+(i+1)*sealedChunk)] }
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flip := func(i int) []byte {
		b := bytes.Clone(enc)
		b[i] ^= 1
		return b
	}
	cases := map[string][]byte{
		"salt changed":                 flip(1),
		"first chunk changed":          flip(h + 10),
		"middle chunk tag changed":     flip(h + 2*sealedChunk - 1),
		"last chunk changed":           flip(len(enc) - 1),
		"cut at a chunk boundary":      enc[:h+3*sealedChunk],
		"cut after the first chunk":    enc[:h+sealedChunk],
		"cut in a chunk":               enc[:len(enc)-7],
		"cut to the header":            enc[:h],
		"last chunk dropped, one more": join(enc[:h+3*sealedChunk], []byte{0}),
		"middle chunk dropped":         join(enc[:h], chunk(0), chunk(2), chunk(3)),
		"chunks swapped":               join(enc[:h], chunk(1), chunk(0), chunk(2), chunk(3)),
		"chunk repeated":               join(enc[:h], chunk(0), chunk(0), chunk(1), chunk(2), chunk(3)),
		"data after the last chunk":    join(enc, []byte("x")),
		"empty last chunk appended":    join(enc[:h], chunk(0), chunk(1), chunk(2), chunk(3), enc[len(enc)-16:]),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			ar, err := NewAttachmentReader(bytes.NewReader(bad), key, nil)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(ar)
			}
			if !errors.Is(err, ErrAttachment) {
				t.Fatalf("got %v, want ErrAttachment", err)
			}
			if len(got)%AttachmentChunkSize != 0 || !bytes.Equal(got, plain[:len(got)]) {
				t.Errorf("returned %d bytes that are not whole authenticated chunks of the file", len(got))
			}
		})
	}
	if _, err := DecryptAttachment(enc, attachmentKey(t), nil); !errors.Is(err, ErrAttachment) {
		t.Errorf("wrong key: %v", err)
	}
	wrongDigest := bytes.Clone(digest)
	wrongDigest[0] ^= 1
	if _, err := DecryptAttachment(enc, key, wrongDigest); !errors.Is(err, ErrAttachment) {
		t.Errorf("wrong digest: %v", err)
	}
	v2 := bytes.Clone(enc)
	v2[0] = 2
	if _, err := DecryptAttachment(v2, key, nil); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
	if _, err := DecryptAttachment(enc, key[:16], nil); !errors.Is(err, ErrMalformedKeyData) {
		t.Errorf("short key: %v", err)
	}
}

// TestAttachmentSaltSeparatesFiles: the same key and file give unrelated
// encodings under two salts.
func TestAttachmentSaltSeparatesFiles(t *testing.T) {
	key := attachmentKey(t)
	plain := []byte("the same file twice")
	a, _, _ := EncryptAttachment(plain, key, rand.Reader)
	b, _, _ := EncryptAttachment(plain, key, rand.Reader)
	if bytes.Equal(a[attachmentHeaderSize:], b[attachmentHeaderSize:]) {
		t.Error("two encryptions under one key share their chunks")
	}
}

// attachmentVectors are in testdata/attachment.json.
type attachmentVector struct {
	Key       string `json:"key"`
	Salt      string `json:"salt"`
	Plaintext string `json:"plaintext_sha256"`
	Size      int    `json:"plaintext_size"`
	Seed      uint64 `json:"plaintext_seed"`
	Encoding  string `json:"encoding_sha256"`
	Head      string `json:"encoding_head"` // the header and the first 48 bytes of chunk 0
	Digest    string `json:"digest"`
}

type attachmentVectorFile struct {
	File    string             `json:"file"`
	Expect  []string           `json:"expect"`
	Vectors []attachmentVector `json:"vectors"`
}

func attachmentGenerateVectors(t *testing.T) []byte {
	f := attachmentVectorFile{
		File: "Attachment encoding vectors for securechat e2ee (docs/protocol.md §9.5). Generated by `go test ./e2ee -run TestAttachmentVectors -update` " +
			"from fixed keys and salts; TestAttachmentVectors requires the file unchanged.",
		Expect: []string{
			"plaintext = plaintext_size bytes of math/rand/v2 PCG(seed, seed), each byte the low 8 bits of Uint32()",
			"payload key = HKDF-SHA-256(ikm = key, salt = salt, info = \"securechat attachment v1\", 32 bytes)",
			"encoding = 0x01 ‖ salt ‖ chunks; chunk i = ChaCha20-Poly1305(payload key, nonce = i as 11 bytes big-endian ‖ last flag byte, 64 KiB of plaintext, the last chunk the rest)",
			"digest = encoding_sha256 = SHA-256(encoding)",
		},
	}
	for i, n := range []int{0, 5, AttachmentChunkSize, AttachmentChunkSize + 5, 2*AttachmentChunkSize + 123} {
		key := bytes.Repeat([]byte{byte(0x10 + i)}, AttachmentKeySize)
		salt := bytes.Repeat([]byte{byte(0xa0 + i)}, attachmentSaltSize)
		seed := uint64(100 + i)
		plain := randomBytes(n, seed)
		enc, digest, err := EncryptAttachment(plain, key, bytes.NewReader(salt))
		if err != nil {
			t.Fatal(err)
		}
		ps, es := sha256.Sum256(plain), sha256.Sum256(enc)
		f.Vectors = append(f.Vectors, attachmentVector{
			Key: hex.EncodeToString(key), Salt: hex.EncodeToString(salt), Size: n, Seed: seed,
			Plaintext: hex.EncodeToString(ps[:]), Encoding: hex.EncodeToString(es[:]),
			Head: hex.EncodeToString(enc[:attachmentHeaderSize+min(48, len(enc)-attachmentHeaderSize)]), Digest: hex.EncodeToString(digest),
		})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestAttachmentVectors regenerates testdata/attachment.json and requires
// it unchanged, then checks each vector from the file alone: the
// plaintext it names encrypts to the encoding it names and back.
func TestAttachmentVectors(t *testing.T) {
	const path = "testdata/attachment.json"
	vectorsGolden(t, path, attachmentGenerateVectors(t))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f attachmentVectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for i, v := range f.Vectors {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			key, _ := hex.DecodeString(v.Key)
			salt, _ := hex.DecodeString(v.Salt)
			plain := randomBytes(v.Size, v.Seed)
			if s := sha256.Sum256(plain); hex.EncodeToString(s[:]) != v.Plaintext {
				t.Fatal("plaintext generator differs")
			}
			enc, digest, err := EncryptAttachment(plain, key, bytes.NewReader(salt))
			if err != nil {
				t.Fatal(err)
			}
			if s := sha256.Sum256(enc); hex.EncodeToString(s[:]) != v.Encoding || hex.EncodeToString(digest) != v.Digest ||
				!bytes.HasPrefix(enc, mustHex(t, v.Head)) {
				t.Fatal("encoding differs from the vector")
			}
			want, _ := hex.DecodeString(v.Digest)
			got, err := DecryptAttachment(enc, key, want)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("decrypt: %v", err)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzAttachmentReader: any bytes, as an encoding under a fixed key,
// either decrypt to whole authenticated chunks or fail with ErrAttachment
// or ErrUnsupportedVersion; never a panic.
//
//	go test -run '^$' -fuzz '^FuzzAttachmentReader$' -fuzztime 30s ./e2ee
func FuzzAttachmentReader(f *testing.F) {
	key := bytes.Repeat([]byte{7}, AttachmentKeySize)
	for _, n := range []int{0, 3, 40} {
		enc, _, err := EncryptAttachment(randomBytes(n, 1), key, bytes.NewReader(make([]byte, attachmentSaltSize)))
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range ratchetCorrupted(enc) {
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecryptAttachment(b, key, nil)
		if err == nil {
			// It decrypted: encrypting it again under the same salt gives
			// the same bytes (the encoding is canonical).
			again, _, err := EncryptAttachment(got, key, bytes.NewReader(b[1:attachmentHeaderSize]))
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("decrypted %d bytes that do not re-encrypt to the input", len(got))
			}
			return
		}
		if !errors.Is(err, ErrAttachment) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// TestNilRandIsCryptoRand: a nil reader means crypto/rand in every function
// of the package that takes one, never a panic.
func TestNilRandIsCryptoRand(t *testing.T) {
	key, err := NewAttachmentKey(nil)
	if err != nil || len(key) == 0 {
		t.Fatalf("NewAttachmentKey(nil): %v", err)
	}
	enc, digest, err := EncryptAttachment([]byte("file"), key, nil)
	if err != nil {
		t.Fatalf("EncryptAttachment(nil rand): %v", err)
	}
	if got, err := DecryptAttachment(enc, key, digest); err != nil || string(got) != "file" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	var b bytes.Buffer
	if _, err := NewAttachmentWriter(&b, key, nil); err != nil {
		t.Fatalf("NewAttachmentWriter(nil rand): %v", err)
	}
	k1, err := NewSenderKey(nil, [DistributionIDSize]byte{1})
	if err != nil {
		t.Fatalf("NewSenderKey(nil): %v", err)
	}
	k2, _ := NewSenderKey(nil, [DistributionIDSize]byte{1})
	if k1.ChainID() == k2.ChainID() && bytes.Equal(k1.chainKey[:], k2.chainKey[:]) {
		t.Error("two sender keys from crypto/rand are equal")
	}
}
