package client

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
)

// TestSimultaneousFirstMessages: alice and bob, with no session yet, each
// send the other a first message before either has read anything, so two
// sessions start at once, one from each side, and each side answers the
// other's. The conversation that follows must decrypt on both sides in
// every order, whichever session each side ends up sending on (Signal
// keeps earlier sessions of a device pair for this; protocol.md §9.2).
func TestSimultaneousFirstMessages(t *testing.T) {
	s := startTestServer(t, filepath.Join(t.TempDir(), "server"), "127.0.0.1:0")
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice, err := Connect(ctx, ha, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := Connect(ctx, hb, Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	// Both first messages are sent before either is read: each side's
	// send starts a session of its own.
	errs := make(chan error, 2)
	go func() { _, err := alice.SendText(ctx, "bob", "alice first"); errs <- err }()
	go func() { _, err := bob.SendText(ctx, "alice", "bob first"); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	expect := func(c *Client, who, want string) {
		t.Helper()
		ev := nextEvent(t, c)
		if ev.Message.Kind != chat.KindText || ev.Message.Text != want {
			t.Fatalf("%s got %s %q, want %q", who, ev.Message.Kind, ev.Message.Text, want)
		}
		if err := c.Ack(ev.Message); err != nil {
			t.Fatal(err)
		}
	}
	expect(bob, "bob", "alice first")
	expect(alice, "alice", "bob first")

	// Then a conversation: turns, and bursts in both directions at once.
	for round := range 6 {
		a := fmt.Sprintf("alice %d", round)
		b := fmt.Sprintf("bob %d", round)
		if round%2 == 0 {
			if _, err := alice.SendText(ctx, "bob", a); err != nil {
				t.Fatal(err)
			}
			expect(bob, "bob", a)
			if _, err := bob.SendText(ctx, "alice", b); err != nil {
				t.Fatal(err)
			}
			expect(alice, "alice", b)
			continue
		}
		go func() { _, err := alice.SendText(ctx, "bob", a); errs <- err }()
		go func() { _, err := bob.SendText(ctx, "alice", b); errs <- err }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		expect(bob, "bob", a)
		expect(alice, "alice", b)
	}
}
