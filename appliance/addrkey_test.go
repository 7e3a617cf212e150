package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/securechat/securechat/appliance/store"
)

func TestSourceKey(t *testing.T) {
	for _, c := range []struct {
		ip   string
		bits int
		want string
	}{
		{"192.0.2.7", 64, "192.0.2.7"},
		{"::ffff:192.0.2.7", 64, "192.0.2.7"}, // v4-mapped is the v4 address
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::1", 128, "2001:db8:1:2::1"},
		{"::1", 64, "::/64"},
	} {
		if got := sourceKey(netip.MustParseAddr(c.ip), c.bits); got != c.want {
			t.Errorf("sourceKey(%s, /%d) = %s, want %s", c.ip, c.bits, got, c.want)
		}
		// A key is a ban target that covers the address.
		bt, err := parseBanTarget(sourceKey(netip.MustParseAddr(c.ip), c.bits))
		if err != nil || !bt.prefix.Contains(netip.MustParseAddr(c.ip).Unmap()) {
			t.Errorf("%s: key %s is not a ban target covering it: %v", c.ip, c.want, err)
		}
	}
}

func udpAddr(ip netip.Addr) net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 40000))
}

// TestAdmitIPv6Prefix drives the admission path (the code every new
// connection's first packet runs) with many addresses of one /64 and of
// many /64s: the connection limit counts the /64, not the address, and a
// ban of one /64 refuses all of it and nothing else.
func TestAdmitIPv6Prefix(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), ConnRate: 1e-9, ConnBurst: 5,
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	admit := func(ip netip.Addr) error {
		_, err := srv.admit(context.Background(), &quic.ClientInfo{RemoteAddr: udpAddr(ip)})
		return err
	}

	// 1000 addresses of one /64: 5 admitted (conn_burst), the rest refused.
	admitted := 0
	for i := range 1000 {
		ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:aaaa:1:%x:%x::1", i>>8, i&0xff))
		if err := admit(ip); err == nil {
			admitted++
		} else if !errors.Is(err, errRateLimited) {
			t.Fatal(err)
		}
	}
	if admitted != 5 {
		t.Errorf("%d of 1000 addresses of one /64 admitted, want 5 (conn_burst)", admitted)
	}
	if n := srv.connLimit.size(); n != 1 {
		t.Errorf("connection limiter holds %d keys for one /64, want 1", n)
	}

	// One address each of 1000 /64s: all admitted.
	for i := range 1000 {
		ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:bbbb:%x::1", i))
		if err := admit(ip); err != nil {
			t.Fatalf("/64 number %d refused: %v", i, err)
		}
	}
	// IPv4 stays per address.
	for i := range 10 {
		if err := admit(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})); err != nil {
			t.Fatalf("192.0.2.%d refused: %v", i, err)
		}
	}

	// A ban of one source key refuses the whole /64 and nothing else.
	key := srv.sourceKey(netip.MustParseAddr("2001:db8:cccc:1::7"))
	if _, err := srv.Ban(context.Background(), key, "test", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := admit(netip.MustParseAddr("2001:db8:cccc:1:ffff:ffff:ffff:ffff")); !errors.Is(err, errBanned) {
		t.Errorf("another address of the banned /64: %v, want refused", err)
	}
	if err := admit(netip.MustParseAddr("2001:db8:cccc:2::7")); err != nil {
		t.Errorf("the next /64: %v, want admitted", err)
	}
}

// TestSourceKeyedLimiters: the failed-login limit counts the /64 too.
func TestSourceKeyedLimiters(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), LoginFailures: 3, LoginFailureWindow: Duration(time.Hour),
		IPv6Prefix: 56, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	refused := 0
	for i := range 100 { // 100 addresses in 100 /64s of one /56
		ss := &session{srv: srv, ip: fmt.Sprintf("2001:db8:0:%x::%x", i, i+1)}
		if ok, _ := srv.failLimit.allow(ss.source(), now); !ok {
			refused++
		}
	}
	if refused != 97 {
		t.Errorf("%d of 100 failures in one /56 over the limit, want 97", refused)
	}

	// max_conns_per_address counts the source too (serveConn keys it by sourceOf).
	l := srv.currentLimits()
	l.MaxConns, l.MaxConnsPerAddress = 1000, 3
	var open connCounts
	admitted := 0
	for i := range 50 {
		if open.addConn(srv.sourceOf(udpAddr(netip.MustParseAddr(fmt.Sprintf("2001:db8:0:%x::1", i)))), l) == nil {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("%d connections from 50 addresses of one /56 admitted, want 3 (max_conns_per_address)", admitted)
	}
}

// TestBanPrefixLookup: matching an address costs a lookup per prefix
// length in force, not per ban; adding and lifting bans keeps the index
// right.
func TestBanPrefixLookup(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var l banList
	all := map[string]Ban{}
	for i := range 20000 {
		target := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + "/32"
		all[target] = Ban{Target: target}
		target6 := fmt.Sprintf("2001:db8:%x::/48", i)
		all[target6] = Ban{Target: target6}
	}
	all["172.16.0.0/12"] = Ban{Target: "172.16.0.0/12"}
	l.set(all)
	if len(l.lens4) != 2 || len(l.lens6) != 1 {
		t.Fatalf("prefix lengths %v %v, want [12 32] [48]", l.lens4, l.lens6)
	}
	for ip, want := range map[string]bool{
		"10.0.78.31": true, "10.0.1.1": true, "10.0.78.32": false, "10.1.0.0": false, "172.20.1.1": true, "172.32.0.1": false,
		"2001:db8:4e1f::9": true, "2001:db8:ffff::1": false, "::ffff:10.0.0.5": true,
	} {
		if got := l.addrBanned(netip.MustParseAddr(ip), now); got != want {
			t.Errorf("%s banned %v, want %v", ip, got, want)
		}
	}
	l.remove("172.16.0.0/12")
	if l.addrBanned(netip.MustParseAddr("172.20.1.1"), now) || len(l.lens4) != 1 {
		t.Errorf("lifted /12 still matches (lengths %v)", l.lens4)
	}
	l.put(Ban{Target: "10.0.0.5/32", Expires: now.Add(time.Minute)})
	if !l.addrBanned(netip.MustParseAddr("10.0.0.5"), now) || l.addrBanned(netip.MustParseAddr("10.0.0.5"), now.Add(time.Hour)) {
		t.Error("a replaced ban's expiry is not the new one")
	}
}

// TestExpiredBansPurged: with a fake clock, expired bans leave memory and
// the store, both by the periodic purge and when the server loads them.
func TestExpiredBansPurged(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	data := t.TempDir()
	cfg := Config{Listen: "127.0.0.1:0", Data: data, Now: clock, Logger: slog.New(slog.DiscardHandler)}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 50 {
		if _, err := srv.Ban(ctx, fmt.Sprintf("192.0.2.%d", i), "short", time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Ban(ctx, fmt.Sprintf("198.51.100.%d", i), "long", 2*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.store.CreateAccount(ctx, store.NewAccount{Name: "mallory", PasswordHash: "x", DeviceKey: make([]byte, 32), Now: clock()}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Ban(ctx, "user:mallory", "forever", 0); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	n, err := srv.purgeBans(ctx)
	if err != nil || n != 50 {
		t.Fatalf("purged %d (%v), want 50", n, err)
	}
	stored, _ := srv.store.Bans()
	if len(stored) != 51 || srv.bans.size() != 51 {
		t.Errorf("after the purge: %d stored, %d in memory, want 51", len(stored), srv.bans.size())
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Loading deletes what expired while the server was down.
	advance(2 * time.Hour)
	srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	stored, _ = srv.store.Bans()
	if len(stored) != 1 || srv.bans.size() != 1 {
		t.Errorf("after loading: %d stored, %d in memory, want 1 (the ban without expiry)", len(stored), srv.bans.size())
	}
}

// TestHashQueue: work whose connection closed while it waited is dropped
// unhashed, and the queue is bounded.
func TestHashQueue(t *testing.T) {
	q := newHashQueue(1, 2)
	release := make(chan struct{})
	started := make(chan struct{})
	go q.do(context.Background(), func() { close(started); <-release }) // holds the only slot
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ran := 0
	var mu sync.Mutex
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			errs <- q.do(ctx, func() { mu.Lock(); ran++; mu.Unlock() })
		})
	}
	for q.waiting.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	// Two wait, the most hash_queue lets wait: a third is refused at once.
	if err := q.do(context.Background(), func() { t.Error("ran without a slot") }); err != errHashBusy {
		t.Fatalf("over the queue: %v, want busy", err)
	}
	cancel()
	wg.Wait()
	close(release)
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled work: %v", err)
		}
	}
	if ran != 0 {
		t.Errorf("%d cancelled hashes ran", ran)
	}
}

// TestAdminHashApart: client password checks holding every slot and a full
// queue do not delay the admin's login, which has its own queue; a full
// admin queue answers ErrAdminBusy.
func TestAdminHashApart(t *testing.T) {
	srv := testServer(t)
	ctx := context.Background()
	if err := srv.SetAdminPassword(ctx, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var held sync.WaitGroup
	for range cap(srv.hashes.slots) {
		held.Add(1)
		go srv.hashes.do(ctx, func() { held.Done(); <-release })
	}
	held.Wait()
	defer close(release)
	ok, err := srv.CheckAdminPassword(ctx, "correct horse battery")
	if err != nil || !ok {
		t.Fatalf("admin login while client hashes hold every slot: %v %v", ok, err)
	}
	srv.adminHash = newHashQueue(1, 1)
	started := make(chan struct{})
	go srv.adminHash.do(ctx, func() { close(started); <-release })
	<-started
	wctx, cancel := context.WithCancel(ctx)
	go srv.adminHash.do(wctx, func() {})
	defer cancel()
	for srv.adminHash.waiting.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := srv.CheckAdminPassword(ctx, "x"); !errors.Is(err, ErrAdminBusy) {
		t.Errorf("full admin queue: %v, want ErrAdminBusy", err)
	}
}
