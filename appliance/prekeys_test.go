package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

func TestPublishVerifiesKeys(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	now := time.Now()
	pub, _, _ := ed25519.GenerateKey(nil)
	if err := s.CreateAccount(ctx, store.NewAccount{Name: "bob", PasswordHash: "phc", DeviceKey: pub, Now: now}); err != nil {
		t.Fatal(err)
	}
	identity, _ := e2ee.GenerateIdentityKey(nil)
	keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: "bob", DeviceID: 1, AuthKey: pub}, now, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := client.PublishMessage(keys.PublicPreKeys(), true)

	// Every flipped byte of a signed element is refused.
	for _, field := range []*[]byte{&good.Certificate, &good.SignedPreKey, &good.LastResortKEM, &good.OneTimeKEM[0]} {
		for i := range *field {
			m := *good
			bad := append([]byte(nil), (*field)...)
			bad[i] ^= 0x40
			switch field {
			case &good.Certificate:
				m.Certificate = bad
			case &good.SignedPreKey:
				m.SignedPreKey = bad
			case &good.LastResortKEM:
				m.LastResortKEM = bad
			default:
				m.OneTimeKEM = [][]byte{bad}
			}
			if err := publishKeys(ctx, s, chat.DeviceOf("bob", 1), &m); err == nil {
				t.Fatalf("flipped byte %d of an element accepted", i)
			}
		}
	}
	// Keys certified for another device or another auth key are refused.
	if err := publishKeys(ctx, s, chat.DeviceOf("bob", 2), good); err == nil {
		t.Error("keys for device 1 accepted for device 2")
	}
	other, _, _ := ed25519.GenerateKey(nil)
	wrongAuth, _ := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: "bob", DeviceID: 1, AuthKey: other}, now, 0, 0)
	m, _ := client.PublishMessage(wrongAuth.PublicPreKeys(), true)
	if err := publishKeys(ctx, s, chat.DeviceOf("bob", 1), m); err == nil {
		t.Error("certificate for another auth key accepted")
	}
	if err := publishKeys(ctx, s, chat.DeviceOf("bob", 1), good); err != nil {
		t.Fatal(err)
	}
	// A second device must carry the same account identity.
	pub2, _, _ := ed25519.GenerateKey(nil)
	if _, err := s.AddDevice(ctx, "bob", "phc", pub2, "", now); err != nil {
		t.Fatal(err)
	}
	stranger, _ := e2ee.GenerateIdentityKey(nil)
	k2, _ := e2ee.NewDeviceKeys(nil, stranger, e2ee.DeviceInfo{User: "bob", DeviceID: 2, AuthKey: pub2}, now, 0, 0)
	m2, _ := client.PublishMessage(k2.PublicPreKeys(), true)
	if err := publishKeys(ctx, s, chat.DeviceOf("bob", 2), m2); !errors.Is(err, store.ErrIdentityMismatch) || wireError(nil, err).Code != transport.ErrBadRequest {
		t.Errorf("device signed by another identity: %v", err)
	}
	if d, _ := s.ActiveDevices("bob"); len(d) != 1 {
		t.Errorf("%d active devices, want 1 (device 2 has no keys)", len(d))
	}
}

func TestFetchConsumesOneTimeKeys(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	mustAccount(t, s, "bob", 2, time.Now()) // 3 one-time keys of each kind per device
	seenOTK := map[uint32]bool{}
	for i := 0; i < 5; i++ {
		bundles, err := s.FetchBundles(ctx, "bob", nil)
		if err != nil || len(bundles) != 2 {
			t.Fatalf("fetch %d: %d bundles, %v", i, len(bundles), err)
		}
		low := 0
		for _, sb := range bundles {
			kb := transport.KeyBundle{Device: sb.Device, Bundle: encodeBundle(sb)}
			b, err := e2ee.ParsePreKeyBundle(kb.Bundle)
			if err != nil {
				t.Fatalf("server-assembled bundle does not parse: %v", err)
			}
			if err := b.Verify("bob", kb.Device); err != nil {
				t.Fatalf("bundle does not verify: %v", err)
			}
			if i < 3 {
				if b.OneTimePreKey == nil || b.KEMPreKey.LastResort {
					t.Fatalf("fetch %d: one-time keys missing", i)
				}
				k := fmt.Sprint(kb.Device, b.OneTimePreKey.ID)
				if seenOTK[b.OneTimePreKey.ID<<8|kb.Device] {
					t.Fatalf("one-time prekey %s handed out twice", k)
				}
				seenOTK[b.OneTimePreKey.ID<<8|kb.Device] = true
			} else if b.OneTimePreKey != nil || !b.KEMPreKey.LastResort {
				t.Fatalf("fetch %d: want no one-time prekey and the last-resort KEM key", i)
			}
			if keysLow(sb.Left) {
				low++
			}
		}
		if low != 2 {
			t.Errorf("fetch %d: %d low notices, want 2", i, low)
		}
	}
}

func TestLimiterBoundedAndRefills(t *testing.T) {
	l := newLimiter(100)
	now := time.Unix(1000, 0)
	l.set(rate.Limit(1), 2, now)
	for i := 0; i < 2; i++ {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, retry := l.allow("a", now)
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("third at once: %v %v", ok, retry)
	}
	if ok, _ := l.allow("a", now.Add(time.Second)); !ok {
		t.Fatal("not refilled after 1s")
	}
	for i := 0; i < 50000; i++ {
		l.allow(fmt.Sprint("k", i), now)
	}
	if n := l.size(); n != 100 {
		t.Fatalf("limiter holds %d keys, cap 100", n)
	}
}
