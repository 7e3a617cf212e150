package appliance

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestBanMatchingAndExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var l banList
	l.set(map[string]Ban{
		"10.0.0.0/8":    {Target: "10.0.0.0/8"},
		"192.0.2.7/32":  {Target: "192.0.2.7/32", Expires: now.Add(time.Hour)},
		"2001:db8::/32": {Target: "2001:db8::/32"},
		"user:mallory":  {Target: "user:mallory", Reason: "spam", Expires: now.Add(time.Minute)},
	})
	for _, c := range []struct {
		ip   string
		at   time.Time
		want bool
	}{
		{"10.1.2.3", now, true},
		{"::ffff:10.1.2.3", now, true}, // v4-mapped v6 is the v4 address
		{"11.0.0.1", now, false},
		{"192.0.2.7", now, true},
		{"192.0.2.7", now.Add(2 * time.Hour), false}, // expired
		{"192.0.2.8", now, false},
		{"2001:db8:1::5", now, true},
		{"2001:db9::1", now, false},
	} {
		if got := l.addrBanned(netip.MustParseAddr(c.ip), c.at); got != c.want {
			t.Errorf("%s at %v: banned %v, want %v", c.ip, c.at, got, c.want)
		}
	}
	if b, ok := l.userBanned("mallory", now); !ok || b.Reason != "spam" {
		t.Error("account ban not found")
	}
	if _, ok := l.userBanned("mallory", now.Add(2*time.Minute)); ok {
		t.Error("expired account ban still in force")
	}
	if got := len(l.list(now.Add(2 * time.Hour))); got != 2 {
		t.Errorf("%d bans in force after expiry, want 2", got)
	}
}

func TestParseBanTarget(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":      "ip:127.0.0.1/32",
		"10.1.2.3/8":     "ip:10.0.0.0/8",
		"::1":            "ip:::1/128",
		"2001:db8::1/32": "ip:2001:db8::/32",
		"user:Mallory":   "user:mallory",
		" 192.0.2.1 ":    "ip:192.0.2.1/32",
	} {
		got, err := parseBanTarget(in)
		if err != nil || got.key() != want {
			t.Errorf("%q: %q %v, want %q", in, got.key(), err, want)
		}
	}
	for _, bad := range []string{"", "host.example", "user:", "user:a b", "300.1.1.1", "10.0.0.0/33"} {
		if _, err := parseBanTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestPermanentLogsNever: a ban, mute or invite without expiry is logged
// as expiring never, not at 0001-01-01.
func TestPermanentLogsNever(t *testing.T) {
	var log bytes.Buffer
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	if _, err := srv.Ban(ctx, "198.51.100.7", "spam", 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Mute(ctx, "nobody", 0); err != nil && !strings.Contains(err.Error(), "no such") {
		t.Fatal(err)
	}
	if _, err := srv.CreateInvite(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	if strings.Contains(out, "0001-01-01") || !strings.Contains(out, "expires=never") {
		t.Errorf("log:\n%s", out)
	}
}
