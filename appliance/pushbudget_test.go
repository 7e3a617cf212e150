package appliance

import (
	"context"
	"math"
	"runtime"
	"testing"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// TestInboxByteBudget: a device that never reads cannot make the server
// hold more than push_budget of offered entries (issue 17 point 2: 1024 ×
// 256 KiB could be pinned); past it the deliver loop reads the store.
func TestInboxByteBudget(t *testing.T) {
	cfg := Config{}.WithDefaults()
	ss := &session{srv: &Server{cfg: cfg}, wake: make(chan struct{}, 1)}
	for i := range uint64(maxInbox) {
		ss.Offer(&transport.Deliver{Seq: 1 + i, Payload: make([]byte, transport.MaxPayload)})
	}
	if ss.inboxBytes > cfg.PushBudget || len(ss.inbox) > cfg.PushBudget/transport.MaxPayload {
		t.Errorf("inbox holds %d entries, %d bytes; push_budget is %d", len(ss.inbox), ss.inboxBytes, cfg.PushBudget)
	}
	if _, ok := ss.takeInbox(0); ok {
		t.Error("offers over the budget were dropped but the loop was not sent to the store")
	}
}

// TestDeliverBatchBudget: a batch read from the store fits push_budget
// even when every entry is as large as the protocol allows.
func TestDeliverBatchBudget(t *testing.T) {
	for _, budget := range []int{1 << 20, 4 << 20, 1 << 30} {
		n := deliverBatch(budget)
		if n < 1 || n > pushBatch || n*transport.MaxPayload > budget {
			t.Errorf("push_budget %d: batch of %d entries of up to %d bytes", budget, n, transport.MaxPayload)
		}
	}
}

// TestSignalsToABlockedDevice: signals and keys-low notices for a device
// whose deliver loop is stuck are queued up to a bound and then dropped,
// and no goroutine is started per signal (issue 17 point 2: 62 signals
// were 62 goroutines waiting forever).
func TestSignalsToABlockedDevice(t *testing.T) {
	srv := &Server{cfg: Config{}.WithDefaults()}
	ss := &session{srv: srv, wake: make(chan struct{}, 1)} // nothing drains it
	before := runtime.NumGoroutine()
	const storm = 1000
	for i := range storm {
		ss.Signal(transport.Marshal(&transport.Signal{From: "mallory", FromDevice: 1, MessageID: make([]byte, 16), Payload: make([]byte, 4<<10)}))
		if i%10 == 0 {
			ss.KeysLow(transport.KeyCount{})
		}
	}
	if g := runtime.NumGoroutine(); g > before+5 {
		t.Errorf("%d goroutines after %d signals, %d before", g, storm, before)
	}
	if len(ss.signals) > maxSignals || ss.sigBytes > srv.cfg.PushBudget/4 {
		t.Errorf("%d signals of %d bytes queued", len(ss.signals), ss.sigBytes)
	}
	if d := srv.stats.Dropped.Load(); d < storm-maxSignals {
		t.Errorf("%d signals dropped, want at least %d", d, storm-maxSignals)
	}
	if got := ss.takeSignals(); len(got) == 0 || len(ss.signals) != 0 || ss.sigBytes != 0 {
		t.Errorf("took %d signals; %d left", len(got), len(ss.signals))
	}
}

// TestMaxFrameBeforeAuth: the largest request accepted before
// authentication, an Enroll with every field at its maximum, fits the
// small frame limit with room to spare.
func TestMaxFrameBeforeAuth(t *testing.T) {
	long := func(n int) string { return string(make([]byte, n)) }
	e := &transport.Enroll{User: long(transport.MaxUserName), Password: long(transport.MaxPassword),
		DeviceKey: make([]byte, transport.KeyLen), Signature: make([]byte, transport.SigLen),
		Invite: long(transport.MaxText), DeviceName: long(transport.MaxText)}
	a := &transport.Auth{User: long(transport.MaxUserName), Device: math.MaxUint32, Signature: make([]byte, transport.SigLen), Receive: true}
	for _, m := range []transport.Marshaler{e, a} {
		if n := transport.HeaderSize + len(transport.Marshal(m)); 2*n > maxFrameBeforeAuth {
			t.Errorf("%T of %d bytes: less than twice that before authentication (%d)", m, n, maxFrameBeforeAuth)
		}
	}
}

// TestConnCaps: max_conns, max_conns_per_address and max_conns_per_account,
// and that closing frees the slot.
func TestConnCaps(t *testing.T) {
	l := Config{MaxConns: 5, MaxConnsPerAddress: 3, MaxConnsPerAccount: 2}.WithDefaults().limits()
	var c connCounts
	for range 3 {
		if err := c.addConn("192.0.2.1", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.addConn("192.0.2.1", l); err == nil {
		t.Error("a fourth connection from one address with max_conns_per_address 3")
	}
	c.addConn("192.0.2.2", l)
	c.addConn("192.0.2.3", l)
	if err := c.addConn("192.0.2.4", l); err == nil {
		t.Error("a sixth connection with max_conns 5")
	}
	c.dropConn("192.0.2.1")
	if err := c.addConn("192.0.2.1", l); err != nil {
		t.Errorf("after one closed: %v", err)
	}
	for range 2 {
		if err := c.addUser("bob", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.addUser("bob", l); err == nil {
		t.Error("a third connection of one account with max_conns_per_account 2")
	}
	if err := c.addUser("carol", l); err != nil {
		t.Errorf("another account: %v", err)
	}
	c.dropUser("bob")
	if err := c.addUser("bob", l); err != nil {
		t.Errorf("after one closed: %v", err)
	}
}

// TestTakeRequestLimits: key uploads, acks (counted by sequence number)
// and device and identity lookups are limited per account (issue 17
// point 5), set through SetLimits like every live limit.
func TestTakeRequestLimits(t *testing.T) {
	srv := testServer(t)
	l := srv.currentLimits()
	l.PublishKeysRate, l.PublishKeysBurst = 0, 2
	l.AckRate, l.AckBurst = 0, transport.MaxAcks
	l.LookupRate, l.LookupBurst = 0, 3
	if err := srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	ss := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("bob", 1)}
	other := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("carol", 1)}
	for _, tt := range []struct {
		class    limitClass
		cost, ok int
	}{
		{limitKeys, 1, 2},
		{limitAck, transport.MaxAcks / 4, 4},
		{limitLookup, 1, 3},
	} {
		for i := range tt.ok {
			if e := ss.take(tt.class, 1, tt.cost); e != nil {
				t.Fatalf("class %d, request %d: %v", tt.class, i, e)
			}
		}
		if e := ss.take(tt.class, 1, tt.cost); e == nil || e.Code != transport.ErrRateLimited || e.RetryAfterMS == 0 {
			t.Errorf("class %d over its burst: %v", tt.class, e)
		}
		if e := other.take(tt.class, 1, tt.cost); e != nil {
			t.Errorf("class %d: another account is limited by bob's requests: %v", tt.class, e)
		}
	}
	if got := srv.stats.Limited.Load(); got != 3 {
		t.Errorf("%d refusals counted, want 3", got)
	}
}
