package chat

import (
	"encoding/json"
	"testing"
)

func TestDeviceRoundTrip(t *testing.T) {
	for _, d := range []Device{DeviceOf("alice", 1), DeviceOf("bob", 4294967295), DeviceOf("a/b", 7)} {
		got, err := ParseDevice(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v", d.String(), got, err, d)
		}
	}
	for _, bad := range []string{"", "alice", "alice/", "/3", "alice/0", "alice/x", "alice/4294967296", "alice/-1"} {
		if d, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) = %v, want an error", bad, d)
		}
	}
	if !(Device{}).IsZero() || DeviceOf("a", 1).IsZero() {
		t.Error("IsZero")
	}
}

func TestConversation(t *testing.T) {
	p, g := Peer("alice"), Group("alice")
	if p == g {
		t.Fatal("a peer and a group of the same id are equal")
	}
	if p.IsGroup() || !g.IsGroup() || p.Kind() != PeerConversation || g.Kind() != GroupConversation {
		t.Error("kinds")
	}
	if p.String() != "alice" || g.String() != "#alice" || p.ID() != "alice" || g.ID() != "alice" {
		t.Errorf("String/ID: %q %q", p, g)
	}
	if !(Conversation{}).IsZero() || p.IsZero() || (Conversation{}).Key() != "" {
		t.Error("zero value")
	}
	for _, c := range []Conversation{p, g, Peer("u:x"), Group("g:y"), Peer("")} {
		got, err := ParseKey(c.Key())
		if err != nil || got != c {
			t.Errorf("ParseKey(%q) = %v, %v; want %v", c.Key(), got, err, c)
		}
	}
	// Keys written before groups existed are peers' names.
	if got, err := ParseKey("bob"); err != nil || got != Peer("bob") {
		t.Errorf("ParseKey(bob) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "x:bob"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestContentKind(t *testing.T) {
	for k, name := range contentKindNames {
		if k.String() != name {
			t.Errorf("%d.String() = %q", k, k.String())
		}
		got, err := ParseContentKind(name)
		if err != nil || got != k {
			t.Errorf("ParseContentKind(%q) = %v, %v", name, got, err)
		}
	}
	if k, err := ParseContentKind("kind42"); err != nil || k != 42 || k.String() != "kind42" {
		t.Errorf("kind42: %v %v", k, err)
	}
	for _, bad := range []string{"", "texts", "kind0", "kind256", "kindx"} {
		if _, err := ParseContentKind(bad); err == nil {
			t.Errorf("ParseContentKind(%q) accepted", bad)
		}
	}
	for k, want := range map[ContentKind]bool{0: false, KindText: true, KindTyping: true, 127: true, 128: false, KindSystem: false, KindError: false} {
		if k.OnWire() != want {
			t.Errorf("%v.OnWire() = %v", k, !want)
		}
	}
	if !KindRead.IsReceipt() || !KindDelivered.IsReceipt() || KindText.IsReceipt() {
		t.Error("IsReceipt")
	}
	b, err := json.Marshal(struct{ Kind ContentKind }{KindSystem})
	if err != nil || string(b) != `{"Kind":"system"}` {
		t.Errorf("JSON: %s %v", b, err)
	}
	var v struct{ Kind ContentKind }
	if err := json.Unmarshal([]byte(`{"Kind":"read"}`), &v); err != nil || v.Kind != KindRead {
		t.Errorf("JSON in: %v %v", v.Kind, err)
	}
}

func TestEventKinds(t *testing.T) {
	seen := map[EventKind]bool{}
	for _, k := range EventKinds {
		if seen[k] {
			t.Errorf("%q listed twice", k)
		}
		seen[k] = true
		if got, err := ParseEventKind(string(k)); err != nil || got != k {
			t.Errorf("ParseEventKind(%q) = %v, %v", k, got, err)
		}
	}
	if _, err := ParseEventKind("nope"); err == nil {
		t.Error("unknown event kind accepted")
	}
}
