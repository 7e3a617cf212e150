package admin

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
)

type fakeServer struct{ banned []string }

func (f *fakeServer) Ban(_ context.Context, target, reason string, d time.Duration) (appliance.Ban, error) {
	f.banned = append(f.banned, target)
	return appliance.Ban{Target: target, Reason: reason}, nil
}
func (f *fakeServer) Unban(context.Context, string) error               { return nil }
func (f *fakeServer) Bans() []appliance.Ban                             { return nil }
func (f *fakeServer) DeleteUser(context.Context, string) error          { return nil }
func (f *fakeServer) Kick(string) (int, error)                          { return 1, nil }
func (f *fakeServer) Users() ([]appliance.UserInfo, error)              { return nil, nil }
func (f *fakeServer) Snapshot() appliance.StatsSnapshot                 { return appliance.StatsSnapshot{} }
func (f *fakeServer) Mute(context.Context, string, time.Duration) error { return nil }
func (f *fakeServer) Unmute(context.Context, string) error              { return nil }
func (f *fakeServer) CreateInvite(context.Context, int, time.Duration) (appliance.Invite, error) {
	return appliance.Invite{Code: "c"}, nil
}
func (f *fakeServer) Invites() ([]appliance.Invite, error)           { return nil, nil }
func (f *fakeServer) RevokeInvite(context.Context, string) error     { return nil }
func (f *fakeServer) Broadcast(context.Context, string) (int, error) { return 2, nil }
func (f *fakeServer) Backup(w io.Writer) (int64, error) {
	n, err := w.Write([]byte("db"))
	return int64(n), err
}

// TestEveryRouteNeedsTheToken walks every route with no token, a wrong one
// and the right one.
func TestEveryRouteNeedsTheToken(t *testing.T) {
	f := &fakeServer{}
	h := NewHandler(f, "secret-token\n", slog.New(slog.NewTextHandler(io.Discard, nil)))
	routes := []struct{ method, path, body string }{
		{"GET", "/api/stats", ""}, {"GET", "/api/users", ""}, {"GET", "/api/bans", ""},
		{"POST", "/api/bans", `{"target":"127.0.0.1"}`}, {"DELETE", "/api/bans?target=127.0.0.1", ""},
		{"POST", "/api/kick", `{"user":"bob"}`}, {"GET", "/api/backup", ""},
		{"POST", "/api/mute", `{"user":"bob"}`}, {"DELETE", "/api/mute?user=bob", ""},
		{"GET", "/api/invites", ""}, {"POST", "/api/invites", `{"uses":1}`}, {"DELETE", "/api/invites?code=c", ""},
		{"POST", "/api/broadcast", `{"text":"hi"}`}, {"DELETE", "/api/users?user=bob", ""},
		{"GET", "/metrics", ""},
	}
	for _, r := range routes {
		for _, auth := range []string{"", "Bearer wrong", "secret-token", "Bearer secret-token"} {
			req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			ok := auth == "Bearer secret-token"
			if ok && w.Code >= 300 {
				t.Errorf("%s %s with the token: %d %s", r.method, r.path, w.Code, w.Body)
			}
			if !ok && w.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: %d, want 401", r.method, r.path, auth, w.Code)
			}
		}
	}
	if len(f.banned) != 1 {
		t.Errorf("ban called %d times, want once (only with the token)", len(f.banned))
	}
}

func TestCrossOriginRefused(t *testing.T) {
	f := &fakeServer{}
	h := NewHandler(f, "tok", slog.New(slog.NewTextHandler(io.Discard, nil)))
	req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/bans", bytes.NewReader([]byte(`{"target":"10.0.0.1"}`)))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Origin", "http://evil.example")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || len(f.banned) != 0 {
		t.Fatalf("cross-origin POST: %d, banned %v", w.Code, f.banned)
	}
	bad := httptest.NewRequest("POST", "/api/bans", strings.NewReader(`{"target":"1.2.3.4","extra":1}`))
	bad.Header.Set("Authorization", "Bearer tok")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, bad)
	if w.Code != http.StatusBadRequest {
		t.Errorf("unknown field: %d", w.Code)
	}
}
