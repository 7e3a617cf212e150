package client

import (
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Prekey upkeep (docs/protocol.md §9.3).
const (
	oneTimeTarget = 100              // one-time prekeys of each kind kept on the server
	oneTimeLow    = 30               // top up below this
	oneTimeKeep   = 800              // local one-time prekeys kept; the oldest handed-out ones go first
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

// pruneOneTime drops the oldest local one-time prekeys of each kind so that
// room is left for n more. Keys the server handed out but nobody used would
// otherwise pile up (a drained pool is topped up again and again); the
// oldest are the least likely to still be named by a queued message.
func pruneOneTime(keys *e2ee.DeviceKeys, n int) {
	up := keys.PublicPreKeys()
	for i := 0; i < len(up.OneTimePreKeys)+n-oneTimeKeep && i < len(up.OneTimePreKeys); i++ {
		keys.RemovePreKeys(e2ee.ConsumedPreKeys{OneTimePreKeyID: up.OneTimePreKeys[i].ID})
	}
	for i := 0; i < len(up.OneTimeKEMPreKeys)+n-oneTimeKeep && i < len(up.OneTimeKEMPreKeys); i++ {
		keys.RemovePreKeys(e2ee.ConsumedPreKeys{OneTimeKEMPreKeyID: up.OneTimeKEMPreKeys[i].ID})
	}
}

// newestUpload keeps at most transport.MaxOneTimeUpload of each kind of
// one-time prekey in a full upload, the newest.
func newestUpload(up *e2ee.PreKeyUpload) {
	if n := len(up.OneTimePreKeys); n > transport.MaxOneTimeUpload {
		up.OneTimePreKeys = up.OneTimePreKeys[n-transport.MaxOneTimeUpload:]
	}
	if n := len(up.OneTimeKEMPreKeys); n > transport.MaxOneTimeUpload {
		up.OneTimeKEMPreKeys = up.OneTimeKEMPreKeys[n-transport.MaxOneTimeUpload:]
	}
}
