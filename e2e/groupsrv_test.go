package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// TestGroupSendStoredOnce (issue 10 point 6, protocol.md §6.7): alice
// sends one group Send of one shared payload to the devices of five
// registered accounts, twice (a retransmission); the built server stores
// the payload once — a marker in it appears once in server.db, compacted —
// every device gets the Deliver with the group and the shared payload
// exactly once, also across a restart; `securechat admin groups` shows the
// group's id and its 6 accounts and nothing else; the acks free the
// payload (securechat_shared_payload_bytes).
func TestGroupSendStoredOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--register-burst", "10")
	alice := account(t, s, "alice")
	publish(t, alice)
	names := []string{"bob", "carol", "dave", "erin", "frank"}
	members := map[string]*home.Home{}
	var envs []transport.Envelope
	for _, n := range names {
		h := account(t, s, n)
		publish(t, h)
		members[n] = h
		prof, err := h.Profile()
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, transport.Envelope{User: n, Device: prof.Device, DeviceKey: prof.DeviceKey.Public().(ed25519.PublicKey)})
	}
	group := make([]byte, transport.GroupIDLen)
	rand.Read(group)
	marker := make([]byte, 12)
	rand.Read(marker)
	markerText := []byte("GROUP-MARKER-" + hex.EncodeToString(marker))
	shared := append(append([]byte{}, markerText...), make([]byte, 20<<10)...)
	rand.Read(shared[len(markerText):])
	id := make([]byte, transport.MessageIDLen)
	rand.Read(id)

	ac := rawAuth(t, s, alice, false)
	for i := range 2 {
		if err := ac.WriteFrame(transport.CodeSend, uint32(1+i), &transport.Send{MessageID: id, Envelopes: envs, Group: group, Shared: shared}); err != nil {
			t.Fatal(err)
		}
		f, err := ac.ReadFrame()
		var sent transport.Sent
		if err != nil || f.Code != transport.CodeSent || transport.Unmarshal(f.Body, &sent) != nil || sent.Duplicate != (i == 1) {
			var e transport.Error
			transport.Unmarshal(f.Body, &e)
			t.Fatalf("group send %d: %v %v %+v %+v", i+1, f.Code, err, sent, e)
		}
	}
	if v := metric(t, s, "securechat_shared_payload_bytes"); v != float64(len(shared)) {
		t.Errorf("securechat_shared_payload_bytes %.0f, want %d", v, len(shared))
	}
	if v := metric(t, s, "securechat_groups"); v != 1 {
		t.Errorf("securechat_groups %.0f, want 1", v)
	}
	if v := metric(t, s, "securechat_group_messages_total"); v != 1 {
		t.Errorf("securechat_group_messages_total %.0f, want 1", v)
	}

	// The operator sees the id, 6 accounts (alice's included) and 1
	// message; the server has no title to show.
	out := ok(t, nil, "admin", "--data", s.data, "groups").Stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "GROUP") {
		t.Fatalf("admin groups:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) < 3 || f[0] != hex.EncodeToString(group) || f[1] != "6" || f[2] != "1" || !strings.Contains(lines[1], "alice") {
		t.Errorf("admin groups row %q, want id %x, 6 accounts, 1 message, started by alice", lines[1], group)
	}

	// Stored once: a compacted copy of server.db holds the marker once.
	s.stop()
	if n := markerCount(t, filepath.Join(s.data, "server.db"), markerText); n != 1 {
		t.Errorf("the shared payload's marker is %d times in the compacted store, want once", n)
	}
	s.start()

	for _, n := range names {
		c := rawAuth(t, s, members[n], true)
		var got []transport.Deliver
		for {
			f, err := c.ReadFrame()
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			if f.Code == transport.CodeQueueEmpty {
				break
			}
			if f.Code == transport.CodeDeliver {
				var d transport.Deliver
				if err := transport.Unmarshal(f.Body, &d); err != nil {
					t.Fatal(err)
				}
				got = append(got, d)
			}
		}
		if len(got) != 1 || !bytes.Equal(got[0].Group, group) || !bytes.Equal(got[0].Shared, shared) || len(got[0].Payload) != 0 || got[0].From != "alice" || !bytes.Equal(got[0].MessageID, id) {
			t.Fatalf("%s got %d deliveries, want the group message once: %+v", n, len(got), got)
		}
		if err := c.WriteFrame(transport.CodeAck, 0, &transport.Ack{Seqs: []uint64{got[0].Seq}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the shared payload freed by the last ack", func() bool { return metric(t, s, "securechat_shared_payload_bytes") == 0 })
	if out := ok(t, nil, "admin", "--data", s.data, "groups").Stdout; !strings.Contains(out, hex.EncodeToString(group)) {
		t.Errorf("the group's record went with its payload:\n%s", out)
	}
}

// markerCount counts marker in a compacted copy of the store at path
// (bbolt keeps freed pages, whose stale bytes are not the store's).
func markerCount(t *testing.T, path string, marker []byte) int {
	t.Helper()
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "compact.db")
	dst, err := bolt.Open(out, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.Compact(dst, src, 0); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, marker)
}
