package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func (s *server) admin(t *testing.T, args ...string) result {
	t.Helper()
	return ok(t, nil, append([]string{"admin", "--data", s.data}, args...)...)
}

// TestBansAndKick: an IP ban refuses new connections, a CIDR covers the
// address, an account ban closes the account's live connection and refuses
// it; kick disconnects; unban restores; everything through `securechat admin`.
func TestBansAndKick(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	s.admin(t, "ban", "127.0.0.1", "--reason", "testing the ban")
	r := fails(t, 1, "", nil, "send", "--home", alice.home, "--to", "bob", "refused?")
	if !strings.Contains(r.Stderr, "refused") && !strings.Contains(r.Stderr, "cannot reach") {
		t.Errorf("banned client's error: %q", r.Stderr)
	}
	out := s.admin(t, "bans").Stdout
	if !strings.Contains(out, "127.0.0.1/32") || !strings.Contains(out, "testing the ban") {
		t.Errorf("bans list: %q", out)
	}
	s.admin(t, "unban", "127.0.0.1")
	alice.send(t, "bob", "after unban")

	s.admin(t, "ban", "127.0.0.0/8", "--for", "1h")
	fails(t, 1, "", nil, "send", "--home", alice.home, "--to", "bob", "covered by the prefix")
	s.admin(t, "unban", "127.0.0.0/8")
	fails(t, 1, "is not banned", nil, "admin", "--data", s.data, "unban", "127.0.0.0/8")

	// An account ban closes bob's live connection and refuses him.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recv := exec.CommandContext(ctx, bin, "recv", "--home", bob.home, "--wait", "25s")
	recv.Env = append(os.Environ(), "SECURECHAT_PASSPHRASE="+passphrase)
	var recvErr strings.Builder
	recv.Stderr = &recvErr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob online", func() bool {
		return strings.Contains(s.admin(t, "users").Stdout, "bob") && onlineCount(s.admin(t, "users").Stdout, "bob") == "1"
	})
	s.admin(t, "ban", "user:bob", "--reason", "spam")
	done := make(chan error, 1)
	go func() { done <- recv.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the banned account's connection stayed open")
	}
	if !strings.Contains(recvErr.String(), "banned") {
		t.Errorf("bob was not told he is banned: %q", recvErr.String())
	}
	fails(t, 1, "account banned: spam", nil, "send", "--home", bob.home, "--to", "alice", "still here?")
	alice.send(t, "bob", "alice is not banned")
	s.admin(t, "unban", "user:bob")
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "alice is not banned" {
		t.Errorf("bob after unban got %q", texts(got))
	}

	// Kick disconnects now, without a ban.
	recv2 := exec.CommandContext(ctx, bin, "recv", "--home", bob.home, "--wait", "25s")
	recv2.Env = append(os.Environ(), "SECURECHAT_PASSPHRASE="+passphrase)
	if err := recv2.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob online again", func() bool { return onlineCount(s.admin(t, "users").Stdout, "bob") == "1" })
	if out := s.admin(t, "kick", "bob").Stdout; !strings.Contains(out, "1 connections") {
		t.Errorf("kick output %q", out)
	}
	kicked := make(chan error, 1)
	go func() { kicked <- recv2.Wait() }()
	select {
	case <-kicked:
	case <-time.After(10 * time.Second):
		t.Fatal("kick did not disconnect")
	}
	bob.send(t, "alice", "kicked, not banned")

	stats := s.admin(t, "stats").Stdout
	if !strings.Contains(stats, "refused (banned)") || !strings.Contains(stats, groupedFP(s.FP)) {
		t.Errorf("stats: %q", stats)
	}
	fails(t, 2, "unknown command", nil, "admin", "--data", s.data, "frobnicate")
	fails(t, 1, "not an IP address", nil, "admin", "--data", s.data, "ban", "not-an-address")
	fails(t, 1, "wrong admin token", nil, "admin", "--admin-url", "http://"+adminAddr(t, s), "--token-file", writeTemp(t, "not the token"), "stats")
}

func onlineCount(users, name string) string {
	for _, l := range strings.Split(users, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == name {
			return f[2]
		}
	}
	return ""
}

func adminAddr(t *testing.T, s *server) string {
	b, err := os.ReadFile(filepath.Join(s.data, "admin.addr"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func writeTemp(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte(content), 0o600)
	return p
}

// TestHotBackup takes a backup while a client sends, then opens the copy
// and finds every acknowledged message's mailbox entry.
func TestHotBackup(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, _ := register(t, s, "alice"), register(t, s, "bob")
	for i := 0; i < 5; i++ {
		alice.send(t, "bob", "before the backup")
	}
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		for i := 0; i < 5; i++ {
			run(t, nil, "", "send", "--home", alice.home, "--to", "bob", "during the backup")
		}
	}()
	out := filepath.Join(t.TempDir(), "backup.db")
	r := s.admin(t, "backup", out)
	if !strings.Contains(r.Stdout, "backup written") {
		t.Errorf("backup output %q", r.Stdout)
	}
	<-sending
	db, err := bolt.Open(out, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		box := tx.Bucket([]byte("mailboxes")).Bucket(append([]byte("bob\x00"), 0, 0, 0, 1))
		if n := box.Stats().KeyN; n < 5 {
			t.Errorf("the backup holds %d of bob's messages, want at least the 5 acknowledged before it", n)
		}
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Restore: a server on the copy serves bob his messages.
	restored := &server{t: t, data: filepath.Join(t.TempDir(), "restored"), listen: "127.0.0.1:0", stderr: &syncBuffer{}}
	os.MkdirAll(restored.data, 0o700)
	b, _ := os.ReadFile(out)
	os.WriteFile(filepath.Join(restored.data, "server.db"), b, 0o600)
	restored.start()
	defer restored.stop()
	if restored.FP != s.FP {
		t.Errorf("restored server has another key: %s vs %s", restored.FP, s.FP)
	}
}
