package e2e

import (
	"slices"
	"strings"
	"testing"
)

// Issue 14 blocker 1: nothing the user sends ends undecryptable without the
// sender being told.

// TestReregisteredRecipient: alice writes to carol; the operator deletes
// carol and carol registers again with a new home (a new identity, a new
// device key under the same device number). alice's next send must not be
// accepted into a session the new carol cannot decrypt: it fails with
// "identity key changed", fingerprint shows the new safety number, and
// once alice accepts it the new carol reads what alice sends.
func TestReregisteredRecipient(t *testing.T) {
	t.Parallel()
	reregisteredRecipient(t, false)
}

// TestReregisteredFingerprintFirst: alice looks at the safety number
// before sending: fingerprint already shows carol's new key as changed.
func TestReregisteredFingerprintFirst(t *testing.T) {
	t.Parallel()
	reregisteredRecipient(t, true)
}

func reregisteredRecipient(t *testing.T, fingerprintFirst bool) {
	s := startServer(t)
	alice, carol := register(t, s, "alice"), register(t, s, "carol")
	alice.send(t, "carol", "hello old carol")
	if got := texts(carol.recv(t, "5s")); !slices.Contains(got, "hello old carol") {
		t.Fatalf("the first carol received %q", got)
	}
	old, _ := safetyNumber(t, alice, "carol")

	if out := s.admin(t, "delete", "carol").Stdout; !strings.Contains(out, "deleted carol") {
		t.Fatalf("admin delete carol: %q", out)
	}
	carol = register(t, s, "carol") // a new home: a new identity
	if fingerprintFirst {
		if now, out := safetyNumber(t, alice, "carol"); now == old || !strings.Contains(out, "CHANGED") {
			t.Fatalf("fingerprint carol after carol registered again: %q, the old number was %s", out, old)
		}
	}

	for range 2 { // refused every time, not only the first
		fails(t, 1, "identity key changed", nil, "send", "--home", alice.home, "--to", "carol", "are you there?")
	}
	seen, out := safetyNumber(t, alice, "carol")
	if seen == old || !strings.Contains(out, "CHANGED") {
		t.Fatalf("fingerprint carol after the refusal: %q, the old number was %s", out, old)
	}
	if theirs, _ := safetyNumber(t, carol, "alice"); theirs != seen {
		t.Fatalf("alice sees %s as the new safety number, the new carol %s", seen, theirs)
	}
	// Nothing reached the new carol, so nothing can fail to decrypt there.
	if msgs := carol.recv(t, "0s"); len(msgs) != 0 {
		t.Fatalf("the new carol received %+v before alice accepted her key", msgs)
	}

	ok(t, nil, "trust", "--home", alice.home, "--safety-number", seen, "carol")
	alice.send(t, "carol", "welcome back")
	msgs := carol.recv(t, "5s")
	if len(msgs) != 1 || msgs[0].Text != "welcome back" || msgs[0].From != "alice" || msgs[0].Kind != "text" {
		t.Fatalf("the new carol received %+v, want alice's \"welcome back\"", msgs)
	}
}

// TestReregisteredOldReceipts (issue 14 review): receipts the old carol
// sent before her account was deleted wait in alice's mailbox while alice
// accepts the new carol's key and writes to her. They still decrypt —
// with the old session, kept among the earlier ones and never sent on —
// instead of turning into "could not be decrypted" lines from carol.
func TestReregisteredOldReceipts(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, carol := register(t, s, "alice"), register(t, s, "carol")
	alice.send(t, "carol", "hi carol")
	if got := texts(carol.recv(t, "0s")); !slices.Equal(got, []string{"hi carol"}) {
		t.Fatalf("carol received %q", got)
	}
	// carol's delivery and read receipts now wait for alice.
	s.admin(t, "delete", "carol")
	carol = register(t, s, "carol")
	seen, _ := safetyNumber(t, alice, "carol")
	ok(t, nil, "trust", "--home", alice.home, "--safety-number", seen, "carol")
	alice.send(t, "carol", "hi again")
	r := ok(t, nil, "recv", "--home", alice.home, "--wait", "0s")
	if strings.Contains(r.Stdout, "could not be decrypted") {
		t.Fatalf("alice's recv after accepting the new carol:\n%s", r.Stdout)
	}
	// And the new carol reads the new session, which stays current.
	if got := texts(carol.recv(t, "0s")); !slices.Equal(got, []string{"hi again"}) {
		t.Fatalf("the new carol received %q", got)
	}
	alice.send(t, "carol", "and again")
	if got := texts(carol.recv(t, "0s")); !slices.Equal(got, []string{"and again"}) {
		t.Fatalf("the new carol received %q", got)
	}
}
