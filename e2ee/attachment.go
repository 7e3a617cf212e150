package e2ee

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Attachments (docs/protocol.md §9.5, docs/design.md §3): a file is encrypted under
// a random key of its own as a chunked AEAD stream, the STREAM construction
// of "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance"
// (Hoang, Reyhanitabar, Rogaway, Vizár, 2015, §7) as age's payload uses it:
// each chunk is sealed with a nonce made of its index and a flag that marks
// the last chunk, so chunks cannot be reordered, dropped, duplicated or cut
// off without the reader noticing. The key, the
// ciphertext's SHA-256 and its size go to the recipients inside a Double
// Ratchet message; the ciphertext itself can travel and be stored by anyone.
//
// Encoding:
//
//	version (1 byte, attachmentVersion) ‖ salt (16 bytes)
//	‖ chunk 0 ‖ chunk 1 ‖ … ‖ chunk n   (the last one flagged)
//
// Every chunk but the last holds AttachmentChunkSize bytes of plaintext;
// the last holds 0 to AttachmentChunkSize bytes and is empty only when the
// whole file is. Chunk i is ChaCha20-Poly1305 under the payload key with the
// 12-byte nonce i (11 bytes, big-endian) ‖ last (1 byte: 1 for the last
// chunk, 0 otherwise) and no associated data. The payload key is
// HKDF-SHA-256(file key, salt, attachmentLabel): the salt keeps one file
// key, were it ever reused, from giving two files the same payload key.

const (
	// AttachmentKeySize is the length of a file key.
	AttachmentKeySize = 32
	// AttachmentChunkSize is the plaintext size of every chunk but the last.
	AttachmentChunkSize = 64 << 10
	// AttachmentDigestSize is the length of an attachment's digest, the
	// SHA-256 of its whole encoding.
	AttachmentDigestSize = sha256.Size

	attachmentVersion    = 1
	attachmentSaltSize   = 16
	attachmentHeaderSize = 1 + attachmentSaltSize
	attachmentLabel      = "securechat attachment v1"
	attachmentSealed     = AttachmentChunkSize + chacha20poly1305.Overhead
	// attachmentMaxChunks keeps the 11-byte counter far from wrapping.
	attachmentMaxChunks = 1 << 40
)

// AttachmentSize returns the length of the encoding of a plaintext of n
// bytes.
func AttachmentSize(n int64) int64 {
	chunks := n / AttachmentChunkSize
	if n%AttachmentChunkSize != 0 || n == 0 {
		chunks++
	}
	return attachmentHeaderSize + n + chunks*chacha20poly1305.Overhead
}

// NewAttachmentKey returns a random file key from rand (nil: crypto/rand).
func NewAttachmentKey(rand io.Reader) ([]byte, error) {
	rand = randOrDefault(rand)
	k := make([]byte, AttachmentKeySize)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("e2ee: attachment key: %w", err)
	}
	return k, nil
}

func attachmentAEAD(key, salt []byte) (cipher.AEAD, error) {
	if len(key) != AttachmentKeySize {
		return nil, fmt.Errorf("%w: attachment key of %d bytes", ErrMalformedKeyData, len(key))
	}
	pk, err := hkdf.Key(sha256.New, key, salt, attachmentLabel, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(pk)
	return chacha20poly1305.New(pk)
}

func attachmentNonce(n *[chacha20poly1305.NonceSize]byte, i uint64, last bool) {
	clear(n[:])
	binary.BigEndian.PutUint64(n[3:11], i) // the top 3 bytes of the 11-byte counter stay 0
	if last {
		n[11] = 1
	}
}

// AttachmentWriter encrypts a file into an attachment encoding. Close seals
// the last chunk; Digest and Size are valid after it.
type AttachmentWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	sum    hash.Hash
	buf    []byte // plaintext of the chunk being filled
	out    []byte // sealed chunk
	nonce  [chacha20poly1305.NonceSize]byte
	chunk  uint64
	size   int64 // encoding bytes written
	err    error
	closed bool
}

// NewAttachmentWriter starts the encoding of a file under key into w,
// drawing the salt from rand (nil: crypto/rand), and writes the header.
func NewAttachmentWriter(w io.Writer, key []byte, rand io.Reader) (*AttachmentWriter, error) {
	rand = randOrDefault(rand)
	header := make([]byte, attachmentHeaderSize)
	header[0] = attachmentVersion
	if _, err := io.ReadFull(rand, header[1:]); err != nil {
		return nil, fmt.Errorf("e2ee: attachment salt: %w", err)
	}
	aead, err := attachmentAEAD(key, header[1:])
	if err != nil {
		return nil, err
	}
	aw := &AttachmentWriter{w: w, aead: aead, sum: sha256.New(),
		buf: make([]byte, 0, AttachmentChunkSize), out: make([]byte, 0, attachmentSealed)}
	aw.emit(header)
	return aw, aw.err
}

func (aw *AttachmentWriter) emit(b []byte) {
	if aw.err != nil {
		return
	}
	if _, err := aw.w.Write(b); err != nil {
		aw.err = err
		return
	}
	aw.sum.Write(b)
	aw.size += int64(len(b))
}

// seal encrypts the buffered plaintext as the next chunk.
func (aw *AttachmentWriter) seal(last bool) {
	if aw.chunk >= attachmentMaxChunks {
		aw.err = errors.New("e2ee: attachment too large")
		return
	}
	attachmentNonce(&aw.nonce, aw.chunk, last)
	aw.out = aw.aead.Seal(aw.out[:0], aw.nonce[:], aw.buf, nil)
	clear(aw.buf)
	aw.buf = aw.buf[:0]
	aw.chunk++
	aw.emit(aw.out)
}

// Write encrypts p. A full chunk is sealed only when more data follows, so
// that Close can flag the last one.
func (aw *AttachmentWriter) Write(p []byte) (int, error) {
	if aw.closed {
		return 0, errors.New("e2ee: write to a closed attachment")
	}
	n := 0
	for len(p) > 0 && aw.err == nil {
		if len(aw.buf) == AttachmentChunkSize {
			aw.seal(false)
			continue
		}
		k := copy(aw.buf[len(aw.buf):AttachmentChunkSize], p)
		aw.buf = aw.buf[:len(aw.buf)+k]
		p, n = p[k:], n+k
	}
	return n, aw.err
}

// Close seals the last chunk. It does not close the underlying writer.
func (aw *AttachmentWriter) Close() error {
	if aw.closed {
		return aw.err
	}
	aw.closed = true
	aw.seal(true)
	return aw.err
}

// Digest is the SHA-256 of the whole encoding, after Close.
func (aw *AttachmentWriter) Digest() []byte { return aw.sum.Sum(nil) }

// Size is the length of the encoding written so far.
func (aw *AttachmentWriter) Size() int64 { return aw.size }

// ErrAttachment reports an attachment encoding that does not decrypt: a
// wrong key, a chunk altered, reordered, dropped or repeated, a stream cut
// short or extended past its last chunk, or a digest that does not match.
var ErrAttachment = errors.New("e2ee: attachment does not decrypt")

// AttachmentReader decrypts an attachment encoding. It returns a chunk's
// plaintext only after the chunk authenticated, and io.EOF only after the
// last chunk did and nothing followed it (and, given a digest, the
// encoding's SHA-256 matched).
type AttachmentReader struct {
	r      io.Reader
	aead   cipher.AEAD
	sum    hash.Hash
	digest []byte
	in     []byte // sealed chunk being read, one byte more to see what follows
	pbuf   []byte // plaintext of the chunk last opened
	plain  []byte // authenticated plaintext not yet returned (in pbuf)
	nonce  [chacha20poly1305.NonceSize]byte
	chunk  uint64
	done   bool // the last chunk was read
	err    error
}

// NewAttachmentReader starts decrypting the encoding in r under key. With
// digest (AttachmentDigestSize bytes) the whole encoding must hash to it;
// nil skips that check.
func NewAttachmentReader(r io.Reader, key, digest []byte) (*AttachmentReader, error) {
	if digest != nil && len(digest) != AttachmentDigestSize {
		return nil, fmt.Errorf("%w: attachment digest of %d bytes", ErrMalformedKeyData, len(digest))
	}
	header := make([]byte, attachmentHeaderSize)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("%w: no header", ErrAttachment)
	}
	if header[0] != attachmentVersion {
		return nil, fmt.Errorf("%w: attachment version %d", ErrUnsupportedVersion, header[0])
	}
	aead, err := attachmentAEAD(key, header[1:])
	if err != nil {
		return nil, err
	}
	ar := &AttachmentReader{r: r, aead: aead, sum: sha256.New(), digest: digest,
		in: make([]byte, 0, attachmentSealed+1), pbuf: make([]byte, 0, AttachmentChunkSize)}
	ar.sum.Write(header)
	return ar, nil
}

// Read returns authenticated plaintext.
func (ar *AttachmentReader) Read(p []byte) (int, error) {
	for len(ar.plain) == 0 {
		if ar.err != nil {
			return 0, ar.err
		}
		if ar.done {
			ar.err = ar.finish()
			continue
		}
		ar.next()
	}
	n := copy(p, ar.plain)
	ar.plain = ar.plain[n:]
	return n, nil
}

// next reads and opens one chunk. It reads one byte past a full sealed
// chunk: whether more follows tells a middle chunk from the last one,
// which the nonce's flag then has to confirm (STREAM: a stream cut at a
// chunk boundary does not open).
func (ar *AttachmentReader) next() {
	have := len(ar.in) // 0, or the byte read past the previous chunk
	ar.in = ar.in[:attachmentSealed+1]
	n, err := io.ReadFull(ar.r, ar.in[have:])
	ar.in = ar.in[:have+n]
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		ar.err = err
		return
	}
	last := len(ar.in) <= attachmentSealed
	sealed := ar.in
	if !last {
		sealed = ar.in[:attachmentSealed]
	}
	if len(sealed) < chacha20poly1305.Overhead || ar.chunk >= attachmentMaxChunks {
		ar.err = fmt.Errorf("%w: cut short", ErrAttachment)
		return
	}
	attachmentNonce(&ar.nonce, ar.chunk, last)
	ar.sum.Write(sealed)
	plain, err := ar.aead.Open(ar.pbuf[:0], ar.nonce[:], sealed, nil)
	if err != nil {
		ar.err = fmt.Errorf("%w: chunk %d", ErrAttachment, ar.chunk)
		return
	}
	if last && len(plain) == 0 && ar.chunk > 0 {
		// The writer never makes an empty last chunk after others.
		ar.err = fmt.Errorf("%w: empty last chunk", ErrAttachment)
		return
	}
	ar.chunk++
	ar.plain = plain
	if last {
		ar.done = true
		ar.in = ar.in[:0]
		return
	}
	ar.in[0] = ar.in[attachmentSealed] // it starts the next chunk
	ar.in = ar.in[:1]
}

// finish checks what follows the last chunk and the digest.
func (ar *AttachmentReader) finish() error {
	var one [1]byte
	if n, _ := io.ReadFull(ar.r, one[:]); n != 0 {
		return fmt.Errorf("%w: data after the last chunk", ErrAttachment)
	}
	if ar.digest != nil && subtle.ConstantTimeCompare(ar.sum.Sum(nil), ar.digest) != 1 {
		return fmt.Errorf("%w: digest does not match", ErrAttachment)
	}
	return io.EOF
}

// EncryptAttachment encrypts plaintext in memory, returning the encoding
// and its digest.
func EncryptAttachment(plaintext, key []byte, rand io.Reader) (encoding, digest []byte, err error) {
	var b bytes.Buffer
	b.Grow(int(AttachmentSize(int64(len(plaintext)))))
	aw, err := NewAttachmentWriter(&b, key, rand)
	if err != nil {
		return nil, nil, err
	}
	if _, err := aw.Write(plaintext); err != nil {
		return nil, nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), aw.Digest(), nil
}

// DecryptAttachment decrypts an encoding in memory; digest may be nil.
func DecryptAttachment(encoding, key, digest []byte) ([]byte, error) {
	ar, err := NewAttachmentReader(bytes.NewReader(encoding), key, digest)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(ar)
}
