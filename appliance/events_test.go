package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"

	"golang.org/x/time/rate"
)

func TestEventLogRingAndCoalescing(t *testing.T) {
	var l eventLog
	now := time.Unix(1000, 0)
	l.add(now, chat.EventAuthFailure, "10.0.0.1", "user \"bob\"")
	l.add(now.Add(time.Second), chat.EventAuthFailure, "10.0.0.1", "user \"bob\"")
	l.add(now.Add(2*time.Second), chat.EventAuthFailure, "10.0.0.1", "user \"eve\"")
	got := l.list(10)
	if len(got) != 2 || got[0].Detail != "user \"eve\"" || got[1].Count != 2 || !got[1].Time.Equal(now.Add(time.Second)) {
		t.Fatalf("coalesced: %+v", got)
	}
	l.add(now.Add(time.Minute), chat.EventAuthFailure, "10.0.0.1", "user \"eve\"")
	if got := l.list(10); len(got) != 3 || got[0].Count != 1 {
		t.Errorf("an event after the coalescing window joined the old line: %+v", got)
	}
	for i := range 2 * eventKeep {
		l.add(now.Add(time.Duration(i)*time.Hour), chat.EventBan, "x", strings.Repeat("é", i%300))
	}
	got = l.list(eventKeep + 10)
	if len(got) != eventKeep || !got[0].Time.Equal(now.Add(time.Duration(2*eventKeep-1)*time.Hour)) {
		t.Fatalf("ring: %d events, newest %v", len(got), got[0].Time)
	}
	for _, e := range got {
		if len(e.Detail) > maxEventField+len("…") || !strings.HasPrefix(strings.Repeat("é", 300), strings.TrimSuffix(e.Detail, "…")) {
			t.Fatalf("detail not clipped on a rune boundary: %d bytes", len(e.Detail))
		}
	}
}

func TestSetLimitsAppliesToKnownKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(100)
	l.set(rate.Limit(1), 1, now)
	if ok, _ := l.allow("a", now); !ok {
		t.Fatal("first token refused")
	}
	if ok, _ := l.allow("a", now); ok {
		t.Fatal("burst of 1 allowed two")
	}
	l.set(rate.Limit(1), 5, now)
	l.set(rate.Limit(1000), 5, now)
	if ok, _ := l.allow("a", now.Add(10*time.Millisecond)); !ok {
		t.Error("a known key kept its old rate after set")
	}
}

func TestLimitsValidate(t *testing.T) {
	good := Config{}.WithDefaults().limits()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, change := range map[string]func(*Limits){
		"negative rate":   func(l *Limits) { l.MessageRate = -1 },
		"zero burst":      func(l *Limits) { l.MessageBurst = 0 },
		"tiny byte burst": func(l *Limits) { l.ByteBurst = 10 },
		"short ban":       func(l *Limits) { l.LoginBan = Duration(time.Millisecond) },
		"huge":            func(l *Limits) { l.ConnBurst = 1 << 31 },
	} {
		l := good
		change(&l)
		if err := l.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSetLimitsLive(t *testing.T) {
	s := newTestServer(t)
	l := s.currentLimits()
	l.MessageBurst, l.MessageRate = 1, 0.001
	if err := s.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Limits(context.Background()); err != nil || got.MessageBurst != 1 {
		t.Errorf("limits after set: %+v", got)
	}
	now := time.Now()
	if ok, _ := s.msgLimit.allow("alice", now); !ok {
		t.Fatal("first message refused")
	}
	if ok, _ := s.msgLimit.allow("alice", now); ok {
		t.Error("the new burst of 1 was not applied")
	}
	ev, err := s.Events(context.Background(), 1)
	if err != nil || len(ev) != 1 || ev[0].Kind != chat.EventLimitsChanged || !strings.Contains(ev[0].Detail, "message_burst 60→1") {
		t.Errorf("limits event: %+v", ev)
	}
	l.MessageBurst = 0
	if err := s.SetLimits(context.Background(), l); err == nil || s.currentLimits().MessageBurst != 1 {
		t.Error("invalid limits taken")
	}
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestAdminPassword(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	check := func(pw string) bool {
		t.Helper()
		ok, err := s.CheckAdminPassword(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if check("") || check("anything at all") {
		t.Fatal("a password matched with none set")
	}
	if err := s.SetAdminPassword(ctx, "short"); err == nil {
		t.Error("a short admin password was taken")
	}
	if err := s.SetAdminPassword(ctx, "a long admin password"); err != nil {
		t.Fatal(err)
	}
	if !check("a long admin password") || check("a long admin passwore") {
		t.Error("password check wrong")
	}
	if err := s.SetAdminPassword(ctx, ""); err != nil || check("a long admin password") {
		t.Error("the password survived its removal")
	}
}

func TestAdminTLSRequiredOffLoopback(t *testing.T) {
	dir := t.TempDir()
	s := &Server{cfg: Config{Admin: "0.0.0.0:8080", Data: dir}.WithDefaults(), log: slog.New(slog.DiscardHandler)}
	if _, err := s.adminTLS(); err == nil || !strings.Contains(err.Error(), "not on loopback and has no TLS") {
		t.Errorf("plain HTTP on 0.0.0.0: %v", err)
	}
	s.cfg.AdminInsecure = true
	if c, err := s.adminTLS(); err != nil || c != nil {
		t.Errorf("admin_insecure: %v %v", c, err)
	}
	s.cfg.AdminInsecure, s.cfg.AdminSelfSigned = false, true
	s.rand = rand.Reader
	c, err := s.adminTLS()
	if err != nil || c == nil {
		t.Fatalf("self-signed: %v", err)
	}
	again, err := s.adminTLS()
	if err != nil || !bytes.Equal(again.Certificates[0].Certificate[0], c.Certificates[0].Certificate[0]) {
		t.Error("the self-signed certificate was not kept across restarts")
	}
	if _, err := os.Stat(filepath.Join(dir, FileAdminCert)); err != nil {
		t.Error(err)
	}
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080"} {
		s := &Server{cfg: Config{Admin: addr, Data: dir}.WithDefaults(), log: slog.New(slog.DiscardHandler)}
		if c, err := s.adminTLS(); err != nil || c != nil {
			t.Errorf("%s: %v %v", addr, c, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileAdminCert)); err == nil {
		t.Error("admin.crt left behind by a plain-HTTP start")
	}
}
