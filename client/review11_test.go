package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// TestOwnDeviceListReplayRefused (review of issue 11): a send fans out to
// the sender's own other devices too (fanOut adds self). After alice
// revokes her device 2, a server that hands alice her own older list (the
// one naming device 2) with device 2 back among her devices, or no list
// at all, must not get alice's client to encrypt to device 2: the list
// alice's home keeps (meta devicelist, number 4) is newer.
func TestOwnDeviceListReplayRefused(t *testing.T) {
	lie, s := startListLieServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ha := testAccount(t, s, "alice")
	testAccount(t, s, "bob")
	alice := connectHome(t, ha, false)
	id := alice.keys.IdentityPrivateKey()
	n := makeNewDevice(t)
	n.start(t, s, "alice")
	cand, err := alice.FindDevice(ctx, n.code("alice"))
	if err != nil {
		t.Fatal(err)
	}
	dev2 := cand.Device
	if err := alice.Approve(ctx, cand, nil); err != nil {
		t.Fatal(err)
	}
	old, err := ha.OwnDeviceList()
	if err != nil || old == nil {
		t.Fatalf("own list after approve: %v", err)
	}
	h2 := linkedHome(t, s, "alice", dev2, n, id)
	connectHome(t, h2, false).Close() // publishes its keys
	if err := alice.Revoke(ctx, dev2); err != nil {
		t.Fatal(err)
	}
	alice.Close()

	back := func(devs []store.DeviceKey) []store.DeviceKey {
		return append(devs, store.DeviceKey{Device: chat.DeviceOf("alice", dev2), Key: n.pub})
	}
	for _, c := range []struct {
		what string
		list []byte
	}{{"the older own list replayed", old}, {"no own list", []byte{}}} {
		lie.set(back, c.list)
		a := connectHome(t, ha, false)
		devs, err := a.sendDevices(ctx, "alice")
		a.Close()
		var le *DeviceListError
		if errors.As(err, &le) {
			continue
		}
		for _, d := range devs {
			if d.ID == dev2 {
				t.Errorf("%s: alice's client sends to her revoked device %d (err %v)", c.what, dev2, err)
			}
		}
	}
}
