package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// ALPN is the application protocol negotiated in TLS, protocol.md §2.
const ALPN = "securechat/1"

// Fingerprint is the SHA-256 of a server's raw Ed25519 public key,
// protocol.md §2.1. Clients pin it.
type Fingerprint struct {
	_ [0]func() // not comparable with ==: use Equal, which is constant-time
	b [sha256.Size]byte
}

// FingerprintOf returns the fingerprint of pub.
func FingerprintOf(pub ed25519.PublicKey) Fingerprint {
	return Fingerprint{b: sha256.Sum256(pub)}
}

// String is 64 lowercase hex digits, the form files and logs keep
// (DATA/server.fingerprint, the log's fingerprint field). People are shown
// Grouped, which ParseFingerprint accepts too.
func (f Fingerprint) String() string { return hex.EncodeToString(f.b[:]) }

// Grouped is the fingerprint as people compare it (docs/design.md §9): the
// 64 hex digits in groups of four separated by spaces. serve's banner,
// register's trust on first use, the first run, the terminal client, a key
// mismatch, the console, `securechat admin` and the web admin all show it
// so; a prefix of it (the status bar's) is a prefix of this.
func (f Fingerprint) Grouped() string {
	digits := f.String()
	var b strings.Builder
	for i := 0; i < len(digits); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(digits[i : i+4])
	}
	return b.String()
}

// MarshalText is String; the zero fingerprint is "". With UnmarshalText it
// keeps a fingerprint as 64 plain digits in JSON (the admin API's stats).
func (f Fingerprint) MarshalText() ([]byte, error) {
	if f.IsZero() {
		return nil, nil
	}
	return []byte(f.String()), nil
}

// UnmarshalText reads what ParseFingerprint reads; "" is the zero
// fingerprint.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*f = Fingerprint{}
		return nil
	}
	v, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// Bytes returns the 32 bytes of the fingerprint.
func (f Fingerprint) Bytes() []byte { return append([]byte(nil), f.b[:]...) }

// FingerprintFromBytes is the inverse of Bytes.
func FingerprintFromBytes(b []byte) (Fingerprint, error) {
	var f Fingerprint
	if len(b) != len(f.b) {
		return f, fmt.Errorf("fingerprint must be %d bytes", len(f.b))
	}
	copy(f.b[:], b)
	return f, nil
}

// IsZero reports whether f is unset.
func (f Fingerprint) IsZero() bool { return f.b == [sha256.Size]byte{} }

// Equal compares in constant time.
func (f Fingerprint) Equal(o Fingerprint) bool {
	return subtle.ConstantTimeCompare(f.b[:], o.b[:]) == 1
}

// ParseFingerprint accepts 64 hex digits, in either case, optionally
// separated by spaces or colons.
func ParseFingerprint(s string) (Fingerprint, error) {
	clean := strings.NewReplacer(" ", "", ":", "", "-", "").Replace(strings.TrimSpace(s))
	var f Fingerprint
	if len(clean) != 2*len(f.b) {
		return f, fmt.Errorf("server key fingerprint must be 64 hex digits, got %d characters", len(clean))
	}
	if _, err := hex.Decode(f.b[:], []byte(strings.ToLower(clean))); err != nil {
		return f, errors.New("server key fingerprint must be hex digits")
	}
	if f.IsZero() {
		return f, errors.New("server key fingerprint of all zeros is not a real key")
	}
	return f, nil
}

// ServerTLSConfig returns a TLS 1.3 configuration presenting a self-signed
// certificate for key.
func ServerTLSConfig(key ed25519.PrivateKey) (*tls.Config, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "securechat server"},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}, nil
}

// KeyMismatchError is the hard failure when a server presents a key other
// than the pinned one. There is no way around it but re-pinning by hand.
type KeyMismatchError struct {
	Pinned, Got Fingerprint
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("server key does not match: expected %s, server presented %s (possibly an attack; do not go on unless the server's operator confirms a new key)", e.Pinned.Grouped(), e.Got.Grouped())
}

// Pinner checks the server key during the TLS handshake. With a zero Pin
// every key is accepted (trust on first use) and recorded in Seen.
type Pinner struct {
	Pin Fingerprint

	mu       sync.Mutex
	seen     Fingerprint
	mismatch *KeyMismatchError
}

// Seen returns the fingerprint the server presented.
func (p *Pinner) Seen() Fingerprint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// Mismatch returns the pinning failure of the last handshake, if any.
func (p *Pinner) Mismatch() *KeyMismatchError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mismatch
}

func (p *Pinner) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("server sent no certificate")
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return errors.New("server certificate is not an Ed25519 key")
	}
	// TLS 1.3 CertificateVerify proves the server holds this key (RFC 8446,
	// Section 4.4.3), so pinning the key pins the server.
	got := FingerprintOf(pub)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = got
	if !p.Pin.IsZero() && !p.Pin.Equal(got) {
		p.mismatch = &KeyMismatchError{Pinned: p.Pin, Got: got}
		return p.mismatch
	}
	return nil
}

// ClientTLSConfig returns a TLS 1.3 configuration that verifies the server
// by its pinned key rather than by a certificate authority.
func ClientTLSConfig(p *Pinner) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{ALPN},
		ServerName:            "securechat",
		InsecureSkipVerify:    true, // replaced by the key pin in VerifyPeerCertificate
		VerifyPeerCertificate: p.verify,
	}
}
