package appliance

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"
)

// testStore opens a store in a temp dir and verifies it on cleanup.
func testStore(t *testing.T) store.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), FileDB), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Verify(); err != nil {
			t.Errorf("store integrity: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// mustAccount creates user with devices devices, each with published keys
// (so each is a message recipient), and returns the account identity.
func mustAccount(t *testing.T, s store.Store, user string, devices int, now time.Time) e2ee.IdentityPrivateKey {
	t.Helper()
	ctx := context.Background()
	identity, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for id := uint32(1); id <= uint32(devices); id++ {
		pub, _, _ := ed25519.GenerateKey(nil)
		if id == 1 {
			err = s.CreateAccount(ctx, store.NewAccount{Name: user, PasswordHash: "phc", DeviceKey: pub, Now: now})
		} else {
			var got chat.Device
			got, err = s.AddDevice(ctx, user, "phc", pub, "", now)
			if got.ID != id {
				t.Fatalf("device id %d, want %d", got.ID, id)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		publishTestKeys(t, s, identity, user, id, pub, 3)
	}
	return identity
}

func publishTestKeys(t *testing.T, s store.Store, identity e2ee.IdentityPrivateKey, user string, id uint32, auth ed25519.PublicKey, oneTime int) *e2ee.DeviceKeys {
	t.Helper()
	keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: id, AuthKey: auth}, time.Now(), oneTime, oneTime)
	if err != nil {
		t.Fatal(err)
	}
	m, err := client.PublishMessage(keys.PublicPreKeys(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := publishKeys(context.Background(), s, chat.DeviceOf(user, id), m); err != nil {
		t.Fatal(err)
	}
	return keys
}
