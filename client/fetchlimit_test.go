package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// TestKeyFetchLimits (protocol.md §9.3): one account may fetch the prekey
// bundles of a whole group's members at once (40 accounts here, more than
// the old per-account burst of 30), but not drain one account's one-time
// prekeys: its sixth fetch of the same account in a minute is refused.
func TestKeyFetchLimits(t *testing.T) {
	s := startTestServer(t, t.TempDir(), "127.0.0.1:0")
	defer s.stop()
	l, _ := s.srv.Limits(context.Background())
	l.RegisterRate, l.RegisterBurst = 1e6, 1e6
	if err := s.srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	ha := testAccount(t, s, "alice")
	for i := range 40 {
		testAccount(t, s, fmt.Sprintf("member%02d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := oneShotEngine(t, ctx, ha, false)
	defer e.Close()
	c, _ := e.connected()
	fetch := func(user string) error {
		var kb transport.KeyBundles
		return c.request(ctx, transport.CodeFetchKeys, &transport.FetchKeys{User: user}, transport.CodeKeyBundles, &kb)
	}
	for i := range 40 {
		if err := fetch(fmt.Sprintf("member%02d", i)); err != nil {
			t.Fatalf("fetching member %d's keys: %v", i, err)
		}
	}
	for i := 1; i < 5; i++ {
		if err := fetch("member00"); err != nil {
			t.Fatalf("fetch %d of one account: %v", i+1, err)
		}
	}
	err := fetch("member00")
	var we *transport.Error
	if !errors.As(err, &we) || we.Code != transport.ErrRateLimited || !strings.Contains(we.Message, "key fetches of member00") {
		t.Fatalf("the sixth fetch of one account in a minute: %v", err)
	}
	if err := fetch("member01"); err != nil {
		t.Errorf("another account's keys after that: %v", err)
	}
}
