package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
)

func TestOnlineDelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	// bob listens while alice sends: the message is pushed, not polled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "recv", "--home", bob.home, "--json", "--wait", "20s")
	cmd.Env = append(os.Environ(), "SECURECHAT_PASSPHRASE="+passphrase)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "bob's receiving connection", func() bool {
		return strings.Contains(s.stderr.String(), "user=bob device=1") && strings.Contains(s.stderr.String(), "receive=true")
	})

	start := time.Now()
	alice.send(t, "bob", "hello bob, are you there?")
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("recv printed nothing: %v", lines.Err())
	}
	var m message
	if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
		t.Fatalf("bad JSON line %q: %v", lines.Text(), err)
	}
	if m.From != "alice" || m.Text != "hello bob, are you there?" || m.Kind != "text" || m.Group != "" || len(m.ID) != 32 {
		t.Errorf("got %+v", m)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.SentAt); err != nil {
		t.Errorf("sent_at %q: %v", m.SentAt, err)
	}
	t.Logf("online delivery took %v", time.Since(start))
}

func TestOfflineDeliveryAndAcks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	want := []string{"one", "two", "three with spaces", "ünïcödé ✓"}
	for _, text := range want {
		alice.send(t, "bob", text)
	}
	got := bob.recv(t, "0s")
	if !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q in order", texts(got), want)
	}
	// Acked: nothing comes twice, not even after a restart of the server.
	if again := bob.recv(t, "0s"); len(again) != 0 {
		t.Fatalf("redelivered after ack: %q", texts(again))
	}
	s.restart()
	if again := bob.recv(t, "0s"); len(again) != 0 {
		t.Fatalf("redelivered after ack and restart: %q", texts(again))
	}
	// Plain output is one line per message.
	alice.send(t, "bob", "plain")
	r := ok(t, nil, "recv", "--home", bob.home)
	if !strings.HasSuffix(strings.TrimSpace(r.Stdout), "alice: plain") {
		t.Errorf("plain recv output %q", r.Stdout)
	}
}

func TestDeliveryAfterServerRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.send(t, "bob", "queued before restart")
	s.restart()
	alice.send(t, "bob", "sent after restart")
	got := bob.recv(t, "0s")
	if want := []string{"queued before restart", "sent after restart"}; !slices.Equal(texts(got), want) {
		t.Fatalf("got %q, want %q", texts(got), want)
	}
	// Case-folded names: Bob and bob are one account.
	alice.send(t, "Bob", "folded")
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "folded" {
		t.Fatalf("got %q", texts(got))
	}
}

// TestRetriedSendNoDuplicate resends one message id, as the client does
// when a confirmation is lost, and recovers a send "crashed" between
// transmitting and confirming: the recipient gets each message once.
func TestRetriedSendNoDuplicate(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home, err := home.Open(alice.home, home.Options{Passphrase: passphrase})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(ctx, home, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := randomID(t)
	content := &client.Content{Kind: chat.KindText, Text: "exactly once", SentAt: time.Now().UnixMilli()}
	first, err := c.SendContent(ctx, id, chat.Peer("bob"), content)
	if err != nil || first.Duplicate {
		t.Fatalf("first send: %+v, %v", first, err)
	}
	second, err := c.SendContent(ctx, id, chat.Peer("bob"), content)
	if err != nil || !second.Duplicate || !second.ServerTime.Equal(first.ServerTime) {
		t.Fatalf("retried send: %+v, %v; want a duplicate with the first store time", second, err)
	}
	// A send that was transmitted, then the client died before the answer:
	// it waits in the outbox, and was in fact stored too.
	crashed := randomID(t)
	crashedContent := &client.Content{Kind: chat.KindText, Text: "sent before a crash", SentAt: time.Now().UnixMilli()}
	if _, err := c.SendContent(ctx, crashed, chat.Peer("bob"), crashedContent); err != nil {
		t.Fatal(err)
	}
	if err := c.QueueOutbox(ctx, crashed, chat.Peer("bob"), crashedContent); err != nil {
		t.Fatal(err)
	}
	c.Close()
	home.Close()

	// The next command flushes the outbox with the same id: stored once.
	alice.send(t, "bob", "after the crash")
	got := bob.recv(t, "0s")
	if want := []string{"exactly once", "sent before a crash", "after the crash"}; !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q", texts(got), want)
	}
	if got[0].ID != hex.EncodeToString(id) {
		t.Errorf("id %s, want %x", got[0].ID, id)
	}
}

func TestMailboxExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--mailbox-ttl", "2s")
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.send(t, "bob", "expires unread")
	waitFor(t, "expiry", func() bool { return strings.Contains(s.stderr.String(), "expired undelivered messages") })
	if got := bob.recv(t, "0s"); len(got) != 0 {
		t.Fatalf("expired message delivered: %q", texts(got))
	}
	// Expiry does not touch the accounts: bob can still be written to.
	alice.send(t, "bob", "fresh")
}

// TestLoginAddsDevice: login adds a device with the password; until it is
// linked to the account identity (multi-device) it is no message recipient.
func TestLoginAddsDevice(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	laptop := user{name: "bob", home: t.TempDir()}
	r := ok(t, pwEnv, "login", "--server", s.Addr, "--server-key", s.FP, "--user", "bob", "--home", laptop.home)
	if !strings.Contains(r.Stdout, "device 2") || !strings.Contains(r.Stderr, "not linked") {
		t.Errorf("login output %q %q", r.Stdout, r.Stderr)
	}
	alice.send(t, "bob", "to bob's linked device")
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "to bob's linked device" {
		t.Errorf("bob: got %q", texts(got))
	}
	if got := laptop.recv(t, "0s"); len(got) != 0 {
		t.Errorf("unlinked device got %q", texts(got))
	}
	fails(t, 1, "not yet linked", nil, "send", "--home", laptop.home, "--to", "alice", "hi")
}

func TestHomeSealedAtRest(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.send(t, "bob", "hello")
	if got := bob.recv(t, "0s"); len(got) != 1 {
		t.Fatalf("got %q", texts(got))
	}
	db, err := os.ReadFile(filepath.Join(alice.home, "client.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"alice", s.Addr, s.FP} {
		if bytes.Contains(db, []byte(clear)) {
			t.Errorf("alice's home holds %q in the clear", clear)
		}
	}
	fpBytes, _ := hex.DecodeString(s.FP)
	if bytes.Contains(db, fpBytes) {
		t.Errorf("alice's home holds the pinned fingerprint in the clear")
	}

	// A wrong passphrase is a clear error and changes nothing.
	before := sha256.Sum256(db)
	fails(t, 1, "wrong passphrase", []string{"SECURECHAT_PASSPHRASE=not it"}, "send", "--home", alice.home, "--to", "bob", "hi")
	fails(t, 1, "wrong passphrase", []string{"SECURECHAT_PASSPHRASE=not it"}, "recv", "--home", alice.home)
	after, _ := os.ReadFile(filepath.Join(alice.home, "client.db"))
	if sha256.Sum256(after) != before {
		t.Errorf("a wrong passphrase changed the home")
	}
	fails(t, 1, "no passphrase", []string{"SECURECHAT_PASSPHRASE="}, "send", "--home", alice.home, "--to", "bob", "hi")
	alice.send(t, "bob", "still works with the right one")
}

func randomID(t *testing.T) []byte {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
