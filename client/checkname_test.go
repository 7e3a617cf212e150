package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// TestCheckNameLimited (issue 14, first run): CheckName says whether a name
// is free before any password is typed; as an enumeration oracle it is
// charged, per address, to the same budget as a Register refused for a
// taken name (lookup_burst here), and over it both are refused with the
// limit's error. A malformed name costs nothing, and the registration
// budget is untouched: a free name still registers.
func TestCheckNameLimited(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0")
	t.Cleanup(s.stop)
	testAccount(t, s, "taken")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := s.srv.Limits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.NameCheckRate, l.NameCheckBurst = 0, 4 // no refill: the run's timing does not matter
	if err := s.srv.SetLimits(ctx, l); err != nil {
		t.Fatal(err)
	}
	code := func(err error) transport.ErrorCode {
		var te *transport.Error
		if errors.As(err, &te) {
			return te.Code
		}
		return 0
	}
	registerTaken := func() error {
		h, err := home.Open(filepath.Join(t.TempDir(), "try"), home.Options{Passphrase: "pp", Create: true, KDF: testKDF})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, err = Register(ctx, h, EnrollOptions{Server: s.addr, User: "taken", Password: "password1", Pin: s.fp})
		return err
	}

	if free, err := CheckName(ctx, s.addr, s.fp, "Newcomer"); err != nil || free.Invite {
		t.Fatalf("a free name: %+v, %v", free, err)
	}
	if _, err := CheckName(ctx, s.addr, s.fp, "TAKEN"); code(err) != transport.ErrUserExists {
		t.Fatalf("a taken name: %v", err)
	}
	if err := registerTaken(); code(err) != transport.ErrUserExists {
		t.Fatalf("registering a taken name: %v", err)
	}
	if _, err := CheckName(ctx, s.addr, s.fp, "other"); err != nil {
		t.Fatalf("the fourth answer of a budget of 4: %v", err)
	}
	for i := range 12 { // a malformed name is refused before the budget
		if _, err := CheckName(ctx, s.addr, s.fp, "no spaces"); code(err) != transport.ErrInvalidName {
			t.Fatalf("malformed name %d: %v", i, err)
		}
	}
	_, err = CheckName(ctx, s.addr, s.fp, "another")
	if code(err) != transport.ErrRateLimited || !strings.Contains(err.Error(), "rate limited (name checks)") {
		t.Fatalf("a fifth name check of a budget of 4 (one spent by a refused Register): %v", err)
	}
	if err := registerTaken(); code(err) != transport.ErrRateLimited || !strings.Contains(err.Error(), "name checks") {
		t.Fatalf("a taken-name Register once the name checks are spent: %v", err)
	}
	testAccount(t, s, "newcomer") // the registration budget is untouched
}

// TestCheckNameInviteAndClosed: the answer says when registering needs an
// invite code, and a closed server says so whatever the name.
func TestCheckNameInviteAndClosed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wrongFP, err := transport.ParseFingerprint(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		policy string
		invite bool
		code   transport.ErrorCode
	}{{"invite", true, 0}, {"closed", false, transport.ErrRegClosed}} {
		srv, err := appliance.New(appliance.Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Registration: tt.policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { srv.Serve(sctx); close(done) }()
		free, err := CheckName(ctx, srv.Addr().String(), srv.Fingerprint(), "dave")
		var te *transport.Error
		switch {
		case tt.code != 0 && (!errors.As(err, &te) || te.Code != tt.code):
			t.Errorf("registration %s: %v, want %v", tt.policy, err, tt.code)
		case tt.code == 0 && (err != nil || free.Invite != tt.invite):
			t.Errorf("registration %s: %+v, %v; want invite %v", tt.policy, free, err, tt.invite)
		}
		if _, err := CheckName(ctx, srv.Addr().String(), wrongFP, "dave"); err == nil {
			t.Errorf("registration %s: CheckName with another server key pinned went through", tt.policy)
		}
		stop()
		<-done
	}
}
