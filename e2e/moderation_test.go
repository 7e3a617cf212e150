package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// api calls the server's admin JSON API with its token.
func (s *server) api(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+adminAddr(t, s)+path, rd)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestMuteAndBroadcast(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	if code := s.api(t, "POST", "/api/mute", map[string]string{"user": "alice", "duration": "1h"}, nil); code != http.StatusNoContent {
		t.Fatalf("mute: %d", code)
	}
	fails(t, 1, "you are muted", nil, "send", "--home", alice.home, "--to", "bob", "muted?")
	bob.send(t, "alice", "bob is not muted")
	if code := s.api(t, "DELETE", "/api/mute?user=alice", nil, nil); code != http.StatusNoContent {
		t.Fatalf("unmute: %d", code)
	}
	alice.send(t, "bob", "unmuted")

	// A broadcast reaches everyone, offline ones included, signed by the
	// server key, as a system message.
	var res struct{ Queued int }
	if code := s.api(t, "POST", "/api/broadcast", map[string]string{"text": "maintenance at 22:00"}, &res); code != http.StatusOK || res.Queued != 2 {
		t.Fatalf("broadcast: %d %+v", code, res)
	}
	for _, u := range []user{alice, bob} {
		var system []message
		for _, m := range u.recv(t, "0s") {
			if m.Kind == "system" {
				system = append(system, m)
			}
		}
		if len(system) != 1 || system[0].Text != "maintenance at 22:00" || system[0].From != "" {
			t.Errorf("%s: system messages %+v", u.name, system)
		}
	}
}

func TestRegistrationPolicy(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--registration", "invite")
	fails(t, 1, "invite code", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "nocode", "--home", t.TempDir())
	fails(t, 1, "unknown, used up or expired", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "badcode", "--invite", "nope", "--home", t.TempDir())
	var inv struct{ Code string }
	if code := s.api(t, "POST", "/api/invites", map[string]any{"uses": 1, "duration": "1h"}, &inv); code != http.StatusCreated || inv.Code == "" {
		t.Fatalf("invite: %d %+v", code, inv)
	}
	ok(t, pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "invited", "--invite", inv.Code, "--home", t.TempDir())
	fails(t, 1, "used up", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "second", "--invite", inv.Code, "--home", t.TempDir())

	closed := startServer(t, "--registration", "closed")
	fails(t, 1, "registration is closed", pwEnv, "register", "--server", closed.Addr, "--server-key", closed.FP, "--user", "anyone", "--home", t.TempDir())
}

func TestRateLimitsAndFailedLogins(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--message-rate", "0.01", "--message-burst", "3", "--login-failures", "3", "--login-failure-window", "1h")
	alice, _ := register(t, s, "alice"), register(t, s, "bob")
	for i := 0; i < 3; i++ {
		alice.send(t, "bob", "within the burst")
	}
	fails(t, 1, "rate limited (messages), retry after", nil, "send", "--home", alice.home, "--to", "bob", "over the limit")

	// Failed logins from one address get it banned for a while.
	for i := 0; i < 4; i++ {
		run(t, []string{"SECURECHAT_PASSWORD=wrong password"}, "", "login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	}
	waitFor(t, "the log line", func() bool {
		return strings.Contains(s.stderr.String(), "too many authentication failures, address banned")
	})
	var bans []struct{ Target, Reason string }
	waitFor(t, "the automatic ban", func() bool {
		s.api(t, "GET", "/api/bans", nil, &bans)
		return len(bans) > 0
	})
	if len(bans) != 1 || bans[0].Target != "127.0.0.1/32" || bans[0].Reason != "too many failed logins" {
		t.Errorf("bans after failed logins: %+v", bans)
	}
	fails(t, 1, "", nil, "send", "--home", alice.home, "--to", "bob", "from a banned address")
}

func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, carol := register(t, s, "alice"), register(t, s, "carol")
	alice.send(t, "carol", "queued for carol")
	if out := s.admin(t, "delete", "carol").Stdout; !strings.Contains(out, "deleted carol") {
		t.Errorf("delete output %q", out)
	}
	fails(t, 1, "authentication failed", nil, "recv", "--home", carol.home)
	fails(t, 1, `no such user "carol"`, nil, "send", "--home", alice.home, "--to", "carol", "hello?")
	if out := s.admin(t, "users").Stdout; strings.Contains(out, "carol") {
		t.Errorf("carol still listed: %q", out)
	}
	fails(t, 1, "no such user", nil, "admin", "--data", s.data, "delete", "carol")
	// The name is free again.
	register(t, s, "carol")
}

func TestAFKDisconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--afk-timeout", "1s")
	bob := register(t, s, "bob")
	start := time.Now()
	fails(t, 1, "disconnected after 1s without activity", nil, "recv", "--home", bob.home, "--wait", "20s")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("idle connection lasted %v", d)
	}
}

// TestMetrics scrapes /metrics and finds the counters this test's traffic
// must have moved; without the token it is refused.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	for i := 0; i < 3; i++ {
		alice.send(t, "bob", "counted")
	}
	bob.recv(t, "0s")
	run(t, []string{"SECURECHAT_PASSWORD=wrong password"}, "", "login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())

	token, _ := os.ReadFile(filepath.Join(s.data, "admin.token"))
	scrape := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+adminAddr(t, s)+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("metrics without a token: %d", code)
	}
	code, body := scrape("Bearer " + strings.TrimSpace(string(token)))
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	value := func(name string) float64 {
		for _, l := range strings.Split(body, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == name {
				var v float64
				fmt.Sscan(f[1], &v)
				return v
			}
		}
		t.Errorf("metric %s missing", name)
		return -1
	}
	if v := value("securechat_messages_in_total"); v < 3 {
		t.Errorf("messages_in_total %v, want >= 3", v)
	}
	if v := value("securechat_deliveries_total"); v < 3 {
		t.Errorf("deliveries_total %v, want >= 3", v)
	}
	if v := value("securechat_bytes_in_total"); v < 3*64 {
		t.Errorf("bytes_in_total %v: three encrypted messages are more", v)
	}
	if v := value("securechat_bytes_out_total"); v < 3*64 {
		t.Errorf("bytes_out_total %v: three delivered encrypted messages are more", v)
	}
	if v := value("securechat_auth_failures_total"); v < 1 {
		t.Errorf("auth_failures_total %v, want >= 1", v)
	}
	if v := value("securechat_connections_accepted_total"); v < 5 {
		t.Errorf("connections_accepted_total %v", v)
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Error("no Go runtime metrics")
	}
}
