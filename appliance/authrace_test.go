package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/transport"
)

// TestAuthRacesBanAndDelete (issue 17 point 9): a ban of the account, or
// its deletion, that lands while an Auth is between its checks and the
// Welcome does not leave an authenticated session of it: the Auth is
// refused and the connection closed. A real server and QUIC connection on
// 127.0.0.1; testHookWelcome places the ban or the deletion at the worst
// moment.
func TestAuthRacesBanAndDelete(t *testing.T) {
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	t.Cleanup(func() { testHookWelcome.Store(nil) })

	for _, c := range []struct {
		name, user string
		race       func(user string)
		wantClose  string
	}{
		{"ban", "mallory", func(user string) { srv.Ban(context.Background(), "user:"+user, "spam", 0) }, "account banned"},
		{"delete", "doomed", func(user string) { srv.DeleteUser(context.Background(), user) }, "deleted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pub, priv, _ := ed25519.GenerateKey(nil)
			if err := srv.store.CreateAccount(ctx, store.NewAccount{Name: c.user, PasswordHash: "phc", DeviceKey: pub, Now: time.Now()}); err != nil {
				t.Fatal(err)
			}
			testHookWelcome.Store(&c.race)
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			defer dcancel()
			conn, err := transport.Dial(dctx, srv.Addr().String(), &transport.Pinner{Pin: srv.Fingerprint()})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(transport.CloseNormal, "")
			exp, err := conn.Exporter()
			if err != nil {
				t.Fatal(err)
			}
			sig := ed25519.Sign(priv, transport.AuthTranscript(transport.CodeAuth, exp, c.user, 1))
			if err := conn.WriteFrame(transport.CodeAuth, 1, &transport.Auth{User: c.user, Device: 1, Signature: sig}); err != nil {
				t.Fatal(err)
			}
			f, err := conn.ReadFrame()
			if err == nil && f.Code == transport.CodeWelcome {
				t.Fatalf("welcomed although the %s ran during the authentication", c.name)
			}
			if err == nil {
				var e transport.Error
				transport.Unmarshal(f.Body, &e)
				if f.Code != transport.CodeError || e.Code != transport.ErrUnauthorized {
					t.Errorf("answer %v %+v, want Unauthorized", f.Code, e)
				}
				_, err = conn.ReadFrame()
			}
			var ce *transport.ClosedError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, c.wantClose) {
				t.Errorf("connection ended with %v, want closed with %q", err, c.wantClose)
			}
		})
	}
}
