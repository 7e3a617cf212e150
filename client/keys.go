package client

import (
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Prekey upkeep (docs/protocol.md §9.3).
const (
	oneTimeTarget = 50               // one-time prekeys of each kind kept on the server
	oneTimeLow    = 20               // top up below this
	spkRotation   = 7 * 24 * 3600e9  // rotate the signed prekey weekly (ns)
	retiredKeep   = 30 * 24 * 3600e9 // keep retired signed prekeys this long (ns)
)

// PublishMessage turns the public part of a device's keys into the
// PublishKeys request that uploads it.
func PublishMessage(up *e2ee.PreKeyUpload, replace bool) (*transport.PublishKeys, error) {
	m := &transport.PublishKeys{Identity: up.IdentityKey.Bytes(), Replace: replace}
	var err error
	if m.Certificate, err = up.Certificate.MarshalBinary(); err != nil {
		return nil, err
	}
	if m.SignedPreKey, err = up.SignedPreKey.MarshalBinary(); err != nil {
		return nil, err
	}
	if m.LastResortKEM, err = up.LastResortKEMPreKey.MarshalBinary(); err != nil {
		return nil, err
	}
	for i := range up.OneTimePreKeys {
		b, err := up.OneTimePreKeys[i].MarshalBinary()
		if err != nil {
			return nil, err
		}
		m.OneTime = append(m.OneTime, b)
	}
	for i := range up.OneTimeKEMPreKeys {
		b, err := up.OneTimeKEMPreKeys[i].MarshalBinary()
		if err != nil {
			return nil, err
		}
		m.OneTimeKEM = append(m.OneTimeKEM, b)
	}
	return m, nil
}
