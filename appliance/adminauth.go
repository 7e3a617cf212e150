package appliance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files the server writes for the admin listener's TLS.
const (
	// FileAdminCert is the certificate the admin listener serves, written
	// when it serves TLS so that `securechat admin --data DIR` can pin it.
	FileAdminCert = "admin.crt"
	// fileAdminKey is the private key of a self-signed admin certificate.
	fileAdminKey = "admin.key"
)

// SetAdminPassword sets the admin web page's password (argon2id, like
// account passwords); "" removes it, leaving the admin token the only way in.
func (s *Server) SetAdminPassword(ctx context.Context, password string) error {
	var phc string
	if password != "" {
		if len(password) < MinPassword {
			return fmt.Errorf("the admin password must be at least %d characters", MinPassword)
		}
		var err error
		if phc, err = hashPassword(s.rand, password); err != nil {
			return err
		}
	}
	err := s.store.SetAdminPasswordHash(ctx, phc)
	if err == nil {
		s.log.Warn("admin password changed", "set", phc != "")
	}
	return err
}

// ErrAdminBusy is CheckAdminPassword's answer when more admin logins wait
// for their hash than its queue holds (they have one of their own, apart
// from the clients').
var ErrAdminBusy = errors.New("too many admin logins at once")

// CheckAdminPassword reports whether password is the admin password. It
// costs one argon2id hash whether or not a password is set.
func (s *Server) CheckAdminPassword(ctx context.Context, password string) (bool, error) {
	phc, err := s.store.AdminPasswordHash()
	if err != nil {
		return false, err
	}
	set := phc != ""
	if !set {
		phc = dummyHash()
	}
	var ok bool
	if err := s.adminHash.do(ctx, func() { ok = checkPassword(phc, password) }); err != nil {
		if errors.Is(err, errHashBusy) {
			return false, ErrAdminBusy
		}
		return false, err
	}
	return ok && set, nil
}

// adminTLS returns the admin listener's TLS configuration, or nil for
// plain HTTP, which only loopback addresses (or admin_insecure) get.
func (s *Server) adminTLS() (*tls.Config, error) {
	c := s.cfg
	var cert tls.Certificate
	var err error
	switch {
	case c.AdminCert != "" || c.AdminKey != "":
		if c.AdminCert == "" || c.AdminKey == "" {
			return nil, errors.New("admin_cert and admin_key go together")
		}
		if cert, err = tls.LoadX509KeyPair(c.AdminCert, c.AdminKey); err != nil {
			return nil, fmt.Errorf("admin certificate: %w", err)
		}
	case c.AdminSelfSigned:
		if cert, err = s.selfSignedAdminCert(); err != nil {
			return nil, fmt.Errorf("admin self-signed certificate: %w", err)
		}
	default:
		if host, _, _ := net.SplitHostPort(c.Admin); !loopbackHost(host) && !c.AdminInsecure {
			return nil, fmt.Errorf("admin listener %s is not on loopback and has no TLS: set admin_cert and admin_key, or admin_self_signed, or (behind your own TLS proxy) admin_insecure", c.Admin)
		}
		os.Remove(filepath.Join(c.Data, FileAdminCert))
		return nil, nil
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := writeFileAtomic(filepath.Join(c.Data, FileAdminCert), pemCert, 0o644); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Certificate[0])
	s.log.Info("admin listener serves TLS", "cert_sha256", hex.EncodeToString(sum[:]))
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// selfSignedAdminCert loads DIR/admin.crt and DIR/admin.key, or makes them:
// an ECDSA P-256 certificate for the admin address, localhost and the
// loopback addresses, good for ten years. Browsers will warn once; its
// SHA-256 is in the log to check against.
func (s *Server) selfSignedAdminCert() (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(s.cfg.Data, FileAdminCert), filepath.Join(s.cfg.Data, fileAdminKey)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := randSerial(s)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := s.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "securechat admin"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, _ := net.SplitHostPort(s.cfg.Admin); host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(s.rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func randSerial(s *Server) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}
