package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// TestServerSeesNoPlaintext sends a random marker to an offline user and
// looks for it, while it is queued, in every file of the server's data
// directory and in the server's debug log; then the recipient reads it.
func TestServerSeesNoPlaintext(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	mark := make([]byte, 12)
	rand.Read(mark)
	marker := "marker-" + hex.EncodeToString(mark)
	alice.send(t, "bob", "the secret is "+marker)

	forms := [][]byte{[]byte(marker), mark, []byte(hex.EncodeToString(mark)), []byte(strings.ToUpper(hex.EncodeToString(mark)))}
	err := filepath.WalkDir(s.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, f := range forms {
			if bytes.Contains(b, f) {
				t.Errorf("%s holds the marker (%q) while it is queued", path, f)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range forms {
		if strings.Contains(s.stderr.String(), string(f)) || strings.Contains(s.stdout.String(), string(f)) {
			t.Errorf("the server's output holds the marker")
		}
	}
	got := bob.recv(t, "0s")
	if len(got) != 1 || got[0].Text != "the secret is "+marker {
		t.Fatalf("bob got %q", texts(got))
	}
	// And back: bob's reply confirms the session; alice reads it.
	bob.send(t, "alice", "got it")
	if got := alice.recv(t, "0s"); len(got) != 1 || got[0].Text != "got it" {
		t.Fatalf("alice got %q", texts(got))
	}
}

var safetyRE = regexp.MustCompile(`safety number with [a-z0-9_.-]+: ((?:\d{5} ){11}\d{5})`)

func safetyNumber(t *testing.T, u user, name string) (string, string) {
	t.Helper()
	r := ok(t, nil, "fingerprint", "--home", u.home, name)
	m := safetyRE.FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("fingerprint %s printed %q", name, r.Stdout)
	}
	return m[1], r.Stdout
}

// TestMaliciousServerKeySwap plays a malicious server that replaces bob's
// identity key and prekeys with its own, properly signed: alice's safety
// number with bob changes and sending to bob is blocked until alice accepts
// the new key.
func TestMaliciousServerKeySwap(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")

	before, _ := safetyNumber(t, alice, "bob")
	// Both sides compute the same number.
	r := ok(t, nil, "fingerprint", "--home", bob.home, "alice")
	if !strings.Contains(r.Stdout, before) {
		t.Fatalf("bob's safety number with alice %q differs from alice's %q", r.Stdout, before)
	}
	own := ok(t, nil, "fingerprint", "--home", alice.home)
	if !regexp.MustCompile(`alice's fingerprint: (\d{5} ){5}\d{5}`).MatchString(own.Stdout) {
		t.Errorf("own fingerprint output %q", own.Stdout)
	}

	s.stop()
	swapIdentity(t, filepath.Join(s.data, "server.db"), "bob")
	s.start()

	fails(t, 1, "identity key changed", nil, "send", "--home", alice.home, "--to", "bob", "for bob's eyes only")
	after, out := safetyNumber(t, alice, "bob")
	if after == before {
		t.Fatal("the safety number did not change with bob's identity key")
	}
	if !strings.Contains(out, "CHANGED") {
		t.Errorf("fingerprint does not warn of the change: %q", out)
	}
	// Still blocked on a retry.
	fails(t, 1, "identity key changed", nil, "send", "--home", alice.home, "--to", "bob", "again")

	// Only once alice accepts does she send, now to the substituted key,
	// which bob's real device cannot read.
	ok(t, nil, "trust", "--home", alice.home, "bob")
	fails(t, 1, "nothing to accept", nil, "trust", "--home", alice.home, "bob")
	alice.send(t, "bob", "accepted the new key")
	r = ok(t, nil, "recv", "--home", bob.home, "--json")
	got := parseMessages(t, r.Stdout)
	if len(got) != 1 || got[0].Kind != "error" || strings.Contains(got[0].Text, "accepted the new key") {
		t.Fatalf("bob's real device got %+v; want one undecryptable message", got)
	}
	// bob's device notices that the server no longer takes its keys.
	if !strings.Contains(r.Stderr, "refused this device's keys") {
		t.Errorf("bob was not warned: %q", r.Stderr)
	}
}

// swapIdentity rewrites the server store as a malicious operator could:
// user's account identity and every device's published keys are replaced
// by ones from a new identity key, all correctly signed by it.
func swapIdentity(t *testing.T, path, user string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	attacker, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket([]byte("users"))
		users.Put([]byte(user), replaceField(t, users.Get([]byte(user)), 4, attacker.Public().Bytes()))
		devKey := append([]byte(user+"\x00"), 0, 0, 0, 1)
		auth := fieldValue(t, tx.Bucket([]byte("devices")).Get(devKey), 1)
		keys, err := e2ee.NewDeviceKeys(nil, attacker, e2ee.DeviceInfo{User: user, DeviceID: 1, AuthKey: ed25519.PublicKey(auth)}, time.Now(), 2, 2)
		if err != nil {
			return err
		}
		m, err := client.PublishMessage(keys.PublicPreKeys(), true)
		if err != nil {
			return err
		}
		pk := tx.Bucket([]byte("prekeys"))
		if err := pk.DeleteBucket(devKey); err != nil {
			return err
		}
		b, err := pk.CreateBucket(devKey)
		if err != nil {
			return err
		}
		b.Put([]byte("cert"), m.Certificate)
		b.Put([]byte("spk"), m.SignedPreKey)
		b.Put([]byte("lastkem"), m.LastResortKEM)
		for i, k := range keys.PublicPreKeys().OneTimePreKeys {
			b.Put(binary.BigEndian.AppendUint32([]byte("otk"), k.ID), m.OneTime[i])
		}
		for i, k := range keys.PublicPreKeys().OneTimeKEMPreKeys {
			b.Put(binary.BigEndian.AppendUint32([]byte("kem"), k.ID), m.OneTimeKEM[i])
		}
		// The attacker holds the identity it swapped in, so it signs the
		// account's device list too (protocol.md §9.8): the list is no
		// obstacle once the new key is accepted, only the safety number.
		list := &e2ee.DeviceList{User: user, Seq: 99, Time: 1, Devices: []e2ee.DeviceListEntry{{Device: 1, Added: 1}}}
		copy(list.Devices[0].AuthKey[:], auth)
		if err := e2ee.SignDeviceList(list, attacker); err != nil {
			return err
		}
		lb, err := list.MarshalBinary()
		if err != nil {
			return err
		}
		return tx.Bucket([]byte("devicelists")).Put([]byte(user), append(binary.BigEndian.AppendUint64(nil, list.Seq), lb...))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replaceField re-encodes a record with field num's value replaced.
func replaceField(t *testing.T, rec []byte, num int, value []byte) []byte {
	t.Helper()
	var e transport.Encoder
	d := transport.NewDecoder(rec)
	for {
		f, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Num == num {
			e.BytesField(num, value)
			value = nil
			continue
		}
		if value != nil && f.Num > num {
			e.BytesField(num, value)
			value = nil
		}
		e.BytesField(f.Num, f.Value)
	}
	if value != nil {
		e.BytesField(num, value)
	}
	return e.Bytes()
}

func fieldValue(t *testing.T, rec []byte, num int) []byte {
	t.Helper()
	d := transport.NewDecoder(rec)
	for {
		f, err := d.Next()
		if err != nil {
			t.Fatalf("field %d not found: %v", num, err)
		}
		if f.Num == num {
			return f.Value
		}
	}
}
