package appliance

import (
	"context"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Prekeys, docs/protocol.md §9.3. The server verifies what a device
// publishes and keeps its elements in their e2ee encodings; it assembles a
// bundle per fetch by concatenation (e2ee.PreKeyBundle's layout), so it
// never holds anything secret and never re-encodes what devices signed.

// keysLowMark is where the server tells a device to top up.
const keysLowMark = 10

// publishKeys verifies a device's keys (protocol.md §9.3) and stores them.
func publishKeys(ctx context.Context, st store.Prekeys, d chat.Device, m *transport.PublishKeys) error {
	up, err := parseUpload(m)
	if err != nil {
		return &transport.Error{Code: transport.ErrBadRequest, Message: "keys: " + err.Error()}
	}
	if err := up.Verify(d.User, d.ID); err != nil {
		return &transport.Error{Code: transport.ErrBadRequest, Message: "keys do not verify: " + err.Error()}
	}
	ku := store.KeyUpload{
		Identity:      m.Identity,
		Certificate:   m.Certificate,
		AuthKey:       up.Certificate.AuthKey,
		SignedPreKey:  m.SignedPreKey,
		LastResortKEM: m.LastResortKEM,
		Replace:       m.Replace,
	}
	for i, k := range m.OneTime {
		ku.OneTime = append(ku.OneTime, store.OneTimeKey{ID: up.OneTimePreKeys[i].ID, Key: k})
	}
	for i, k := range m.OneTimeKEM {
		ku.OneTimeKEM = append(ku.OneTimeKEM, store.OneTimeKey{ID: up.OneTimeKEMPreKeys[i].ID, Key: k})
	}
	return st.PublishKeys(ctx, d, ku)
}

func parseUpload(m *transport.PublishKeys) (*e2ee.PreKeyUpload, error) {
	var up e2ee.PreKeyUpload
	var err error
	if up.IdentityKey, err = e2ee.ParseIdentityKey(m.Identity); err != nil {
		return nil, err
	}
	if err := up.Certificate.UnmarshalBinary(m.Certificate); err != nil {
		return nil, err
	}
	if err := up.SignedPreKey.UnmarshalBinary(m.SignedPreKey); err != nil {
		return nil, err
	}
	if err := up.LastResortKEMPreKey.UnmarshalBinary(m.LastResortKEM); err != nil {
		return nil, err
	}
	up.OneTimePreKeys = make([]e2ee.OneTimePreKeyPublic, len(m.OneTime))
	for i, k := range m.OneTime {
		if err := up.OneTimePreKeys[i].UnmarshalBinary(k); err != nil {
			return nil, err
		}
	}
	up.OneTimeKEMPreKeys = make([]e2ee.KEMPreKeyPublic, len(m.OneTimeKEM))
	for i, k := range m.OneTimeKEM {
		if err := up.OneTimeKEMPreKeys[i].UnmarshalBinary(k); err != nil {
			return nil, err
		}
	}
	return &up, nil
}

// encodeBundle is a fetched bundle in the e2ee.PreKeyBundle encoding:
// version ‖ identity ‖ cert ‖ spk ‖ flag ‖ [otk] ‖ kem.
func encodeBundle(b store.Bundle) []byte {
	out := []byte{1}
	out = append(out, b.Identity...)
	out = append(out, b.Certificate...)
	out = append(out, b.SignedPreKey...)
	if b.OneTime != nil {
		out = append(out, 1)
		out = append(out, b.OneTime...)
	} else {
		out = append(out, 0)
	}
	return append(out, b.KEM...)
}

// keysLow reports whether a device should top up its one-time prekeys.
func keysLow(c store.KeyCount) bool {
	return c.OneTime < keysLowMark || c.OneTimeKEM < keysLowMark
}

// wireKeyCount is a key count as the wire carries it.
func wireKeyCount(c store.KeyCount) transport.KeyCount {
	return transport.KeyCount{OneTime: c.OneTime, OneTimeKEM: c.OneTimeKEM, Published: c.Published}
}
