package admin

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
)

const testToken = "0123456789abcdef"

// newTestRemote serves the real API handler over a recServer.
func newTestRemote(t *testing.T) (*Remote, *recServer, *httptest.Server) {
	t.Helper()
	f := &recServer{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts := httptest.NewServer(NewHandler(f, Options{Token: testToken + "\n"}))
	t.Cleanup(ts.Close)
	return NewRemote(ts.URL+"/", testToken), f, ts
}

// TestRemoteRoundTrip calls every method through HTTP and checks that the
// server saw the same call and the answer came back.
func TestRemoteRoundTrip(t *testing.T) {
	r, f, _ := newTestRemote(t)
	ctx := context.Background()
	expect := func(what, want string) {
		t.Helper()
		if len(f.calls) != 1 || f.calls[0] != want {
			t.Errorf("%s: server saw %q, want %q", what, f.calls, want)
		}
		f.calls = nil
	}

	b, err := r.Ban(ctx, "10.0.0.0/8", "noisy", 90*time.Minute)
	if err != nil || b.Target != "10.0.0.0/8" || b.Reason != "noisy" || !b.Expires.Equal(f.now.Add(90*time.Minute)) {
		t.Errorf("Ban: %+v, %v", b, err)
	}
	expect("Ban", `Ban(10.0.0.0/8, "noisy", 1h30m0s)`)
	if _, err := r.Ban(ctx, "user:bob", "", 0); err != nil {
		t.Error(err)
	}
	expect("Ban forever", `Ban(user:bob, "", 0s)`)

	if err := r.Unban(ctx, "fe80::1/64"); err != nil {
		t.Error(err)
	}
	expect("Unban", "Unban(fe80::1/64)")

	if bans, err := r.Bans(ctx); err != nil || len(bans) != 2 || bans[1].Target != "user:eve" || !bans[1].Expires.Equal(f.now.Add(time.Hour)) {
		t.Errorf("Bans: %+v, %v", bans, err)
	}
	expect("Bans", "Bans()")

	if n, err := r.Kick(ctx, "bob"); n != 2 || err != nil {
		t.Errorf("Kick: %d, %v", n, err)
	}
	expect("Kick", "Kick(bob)")

	if err := r.Mute(ctx, "bob", 15*time.Minute); err != nil {
		t.Error(err)
	}
	expect("Mute", "Mute(bob, 15m0s)")
	if err := r.Mute(ctx, "bob", 0); err != nil {
		t.Error(err)
	}
	expect("Mute forever", "Mute(bob, 0s)")
	if err := r.Unmute(ctx, "bob & co"); err != nil {
		t.Error(err)
	}
	expect("Unmute", "Unmute(bob & co)")

	inv, err := r.CreateInvite(ctx, 3, 24*time.Hour)
	if err != nil || inv.Code != "abcdefghijklmnop" || inv.Uses != 3 || !inv.Expires.Equal(f.now.Add(24*time.Hour)) {
		t.Errorf("CreateInvite: %+v, %v", inv, err)
	}
	expect("CreateInvite", "CreateInvite(3, 24h0m0s)")
	if list, err := r.Invites(ctx); err != nil || len(list) != 1 || list[0].Uses != 3 {
		t.Errorf("Invites: %+v, %v", list, err)
	}
	expect("Invites", "Invites()")
	if err := r.RevokeInvite(ctx, "abc?def"); err != nil {
		t.Error(err)
	}
	expect("RevokeInvite", "RevokeInvite(abc?def)")

	if n, err := r.Broadcast(ctx, "back at 22:00 \"sharp\""); n != 7 || err != nil {
		t.Errorf("Broadcast: %d, %v", n, err)
	}
	expect("Broadcast", `Broadcast("back at 22:00 \"sharp\"")`)

	users, err := r.Users(ctx)
	if err != nil || len(users) != 2 || users[0].Name != "alice" || users[0].Online != 1 || !users[0].LastSeen.Equal(f.now) {
		t.Errorf("Users: %+v, %v", users, err)
	}
	expect("Users", "Users()")
	if list, err := r.Groups(ctx); err != nil || len(list) != 1 || list[0].Members != 5 || list[0].ID != "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b" {
		t.Errorf("Groups: %+v, %v", list, err)
	}
	expect("Groups", "Groups()")

	if s, err := r.Snapshot(ctx); err != nil || s.Refused != 4 || s.Fingerprint.String() != strings.Repeat("ab", 32) {
		t.Errorf("Snapshot: %+v", s)
	}
	expect("Snapshot", "Snapshot()")

	var buf bytes.Buffer
	if n, err := r.Backup(ctx, &buf); n != 9 || err != nil || buf.String() != "the store" {
		t.Errorf("Backup: %d, %v, %q", n, err, buf.String())
	}
	expect("Backup", "Backup()")
}

// The server's {"error": ...} answer is the Go error's text.
func TestRemoteServerError(t *testing.T) {
	r, _, _ := newTestRemote(t)
	if _, err := r.Kick(context.Background(), "fail"); err == nil || err.Error() != errFake.Error() {
		t.Errorf("Kick: %v, want %q", err, errFake)
	}
	if err := r.Unban(context.Background(), "fail"); err == nil || err.Error() != errFake.Error() {
		t.Errorf("Unban: %v", err)
	}
	if _, err := r.Ban(context.Background(), "fail", "", 0); err == nil || err.Error() != errFake.Error() {
		t.Errorf("Ban: %v", err)
	}
}

func TestRemoteWrongToken(t *testing.T) {
	_, f, ts := newTestRemote(t)
	r := NewRemote(ts.URL, "not the token")
	ctx := context.Background()
	if _, err := r.Kick(ctx, "bob"); err == nil || !strings.Contains(err.Error(), "wrong admin token") {
		t.Errorf("Kick with a wrong token: %v", err)
	}
	if bans, err := r.Bans(ctx); bans != nil || err == nil || !strings.Contains(err.Error(), "wrong admin token") {
		t.Errorf("Bans with a wrong token: %v, %v", bans, err)
	}
	// Through the interpreter, the failed read is the command's error.
	var out bytes.Buffer
	in := NewInterpreter(r, &out, nil)
	for _, cmd := range []string{"stats", "bans"} {
		if err := in.Exec(context.Background(), cmd); err == nil || !strings.Contains(err.Error(), "wrong admin token") {
			t.Errorf("%s with a wrong token: %v", cmd, err)
		}
	}
	if out.Len() != 0 || len(f.calls) != 0 {
		t.Errorf("printed %q, server calls %v", out.String(), f.calls)
	}
}

func TestRemoteUnreachable(t *testing.T) {
	_, _, ts := newTestRemote(t)
	url := ts.URL
	ts.Close()
	r := NewRemote(url, testToken)
	want := "cannot reach the admin API at " + url + ": is the server running?"
	if _, err := r.Users(context.Background()); err == nil || err.Error() != want {
		t.Errorf("Users: %v, want %q", err, want)
	}
}

func TestRemoteContext(t *testing.T) {
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer ts.Close()
	defer close(block)
	r := NewRemote(ts.URL, testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Users(ctx); err != context.DeadlineExceeded {
		t.Errorf("Users past the deadline: %v", err)
	}
}

// The interpreter over a Remote: the CLI's configuration, end to end in
// process, including the backup file.
func TestInterpreterOverRemote(t *testing.T) {
	r, f, _ := newTestRemote(t)
	var out bytes.Buffer
	in := NewInterpreter(r, &out, nil)
	file := filepath.Join(t.TempDir(), "b.db")
	script := "ban 10.0.0.1 1h scanning\nmute bob 10m\ninvite 2 1d\nbroadcast hello all\nbackup " + file + "\nstats\n"
	if err := in.RunScript(context.Background(), strings.NewReader(script)); err != nil {
		t.Fatal(err)
	}
	want := `Ban(10.0.0.1, "scanning", 1h0m0s); Mute(bob, 10m0s); CreateInvite(2, 24h0m0s); Broadcast("hello all"); Backup(); Snapshot()`
	if got := strings.Join(f.calls, "; "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(file); string(b) != "the store" {
		t.Errorf("backup file %q", b)
	}
	for _, s := range []string{"banned 10.0.0.1 until", "abcdefghijklmnop\n", "queued for 7 accounts", "backup written", "refused (banned)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Discover(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Discover of a missing directory: %v", err)
	}
	if _, _, err := Discover(dir); err == nil || !strings.Contains(err.Error(), "is the server running") {
		t.Errorf("Discover without admin.addr: %v", err)
	}
	os.WriteFile(filepath.Join(dir, appliance.FileListenAddr), []byte("127.0.0.1:4433\n"), 0o644) // running, --admin off
	if _, _, err := Discover(dir); err == nil || !strings.HasPrefix(err.Error(), "the server runs with --admin off: no admin listener") {
		t.Errorf("Discover of a server with --admin off: %v", err)
	}
	os.WriteFile(filepath.Join(dir, appliance.FileAdminAddr), []byte("127.0.0.1:8123\n"), 0o644)
	os.WriteFile(filepath.Join(dir, appliance.FileAdminToken), []byte(testToken+"\n"), 0o600)
	base, token, err := Discover(dir)
	if err != nil || base != "http://127.0.0.1:8123" || token != testToken {
		t.Errorf("Discover: %q %q %v", base, token, err)
	}
}
