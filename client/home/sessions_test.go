package home

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Tests of the session layer's records (sessions.go), Trust, and the
// sealing of records under hidden keys.

// ratchetStateMax is the longest e2ee.Session encoding, from the layout in
// e2ee/ratchet_codec.go: fixed part, AD of up to 4096 bytes, and
// MaxSkippedKeys skipped keys of 68 bytes.
const ratchetStateMax = 1 + 1 + 6*32 + 3*4 + 2 + 4096 + 2 + e2ee.MaxSkippedKeys*(32+4+32)

func TestRecordLimits(t *testing.T) {
	t.Parallel()
	if ratchetStateMax > 1<<20 {
		t.Errorf("a session state can be %d bytes, over Session's limit of %d", ratchetStateMax, 1<<20)
	}
	key := bytes.Repeat([]byte{1}, transport.IdentityKeyLen)
	tests := []struct {
		name         string
		atLimit      fieldCodec
		over, under  fieldCodec // under: nil unless the size is fixed
		freshDecoder func() fieldCodec
	}{
		{"contact identity", &Contact{Identity: key}, &Contact{Identity: make([]byte, transport.IdentityKeyLen+1)}, &Contact{Identity: make([]byte, transport.IdentityKeyLen-1)}, func() fieldCodec { return new(Contact) }},
		{"contact pending", &Contact{Identity: key, Pending: key}, &Contact{Pending: make([]byte, transport.IdentityKeyLen+1)}, &Contact{Pending: make([]byte, transport.IdentityKeyLen-1)}, func() fieldCodec { return new(Contact) }},
		{"session ratchet", &Session{Ratchet: make([]byte, 1<<20)}, &Session{Ratchet: make([]byte, 1<<20+1)}, nil, func() fieldCodec { return new(Session) }},
		{"session initial", &Session{Initial: make([]byte, 2*transport.MaxKeyElement)}, &Session{Initial: make([]byte, 2*transport.MaxKeyElement+1)}, nil, func() fieldCodec { return new(Session) }},
		{"session base key", &Session{BaseKey: make([]byte, 32)}, &Session{BaseKey: make([]byte, 33)}, &Session{BaseKey: make([]byte, 31)}, func() fieldCodec { return new(Session) }},
		{"session user", &Session{User: strings.Repeat("u", transport.MaxUserName)}, &Session{User: strings.Repeat("u", transport.MaxUserName+1)}, nil, func() fieldCodec { return new(Session) }},
		{"received content", &Received{Content: make([]byte, transport.MaxPayload)}, &Received{Content: make([]byte, transport.MaxPayload+1)}, nil, func() fieldCodec { return new(Received) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.freshDecoder()
			if err := transport.Unmarshal(transport.Marshal(tt.atLimit), got); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			if !reflect.DeepEqual(got, tt.atLimit) {
				t.Errorf("at the limit: decoded %+v", got)
			}
			for _, bad := range []fieldCodec{tt.over, tt.under} {
				if bad == nil {
					continue
				}
				if err := transport.Unmarshal(transport.Marshal(bad), tt.freshDecoder()); err == nil {
					t.Errorf("%T of the wrong size decoded", bad)
				}
			}
		})
	}
}

// TestKDFRecordRange checks that the clear key parameters of a home are
// refused outside their range, rather than making Open spend unbounded
// time or memory, and that a value is never accepted as what is left of it
// after truncation to the parameter's type.
func TestKDFRecordRange(t *testing.T) {
	t.Parallel()
	salt, check := bytes.Repeat([]byte{5}, 16), bytes.Repeat([]byte{6}, 40)
	tests := []struct {
		name                   string
		time, memoryK, threads uint64
		salt                   []byte
		ok                     bool
	}{
		{"cheap", 1, 64, 1, salt, true},
		{"default", uint64(DefaultKDF.Time), uint64(DefaultKDF.MemoryK), uint64(DefaultKDF.Threads), salt, true},
		{"highest", 16, 1 << 20, 64, bytes.Repeat([]byte{1}, 64), true},
		{"lowest", 1, 8, 1, salt, true},
		{"time 0", 0, 64, 1, salt, false},
		{"time 17", 17, 64, 1, salt, false},
		{"memory 7", 1, 7, 1, salt, false},
		{"memory 0", 1, 0, 1, salt, false},
		{"memory over 1 GiB", 1, 1<<20 + 1, 1, salt, false},
		{"threads 0", 1, 64, 0, salt, false},
		{"threads 65", 1, 64, 65, salt, false},
		{"salt 15 bytes", 1, 64, 1, salt[:15], false},
		{"salt 65 bytes", 1, 64, 1, bytes.Repeat([]byte{1}, 65), false},
		{"no salt", 1, 64, 1, nil, false},
		// Values beyond the parameters' types, which would wrap to valid ones.
		{"time 2^32+1", 1<<32 + 1, 64, 1, salt, false},
		{"memory 2^32+64", 1, 1<<32 + 64, 1, salt, false},
		{"threads 256+4", 1, 64, 256 + 4, salt, false},
		{"threads 2^64-1", 1, 64, 1<<64 - 1, salt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r kdfRecord
			err := transport.Unmarshal(kdfFields(tt.time, tt.memoryK, tt.threads, tt.salt, check), &r)
			if ok := err == nil; ok != tt.ok {
				t.Errorf("Unmarshal(time %d, memory %d, threads %d, salt of %d) = %+v, %v; want ok %v", tt.time, tt.memoryK, tt.threads, len(tt.salt), r.Params, err, tt.ok)
			}
		})
	}
	if err := transport.Unmarshal(kdfFields(1, 64, 1, salt, bytes.Repeat([]byte{1}, 257)), new(kdfRecord)); err == nil {
		t.Error("a check value of 257 bytes decoded")
	}
}

// openTestHome opens a new home in a temporary directory with a cheap KDF.
func openTestHome(t *testing.T) *Home {
	t.Helper()
	h, err := Open(t.TempDir(), Options{Passphrase: "x", Create: true, KDF: KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, h) })
	return h
}

// putRecords stores records in one transaction; keys are bucket, clear key.
func putRecords(t *testing.T, h *Home, records map[[2]string]transport.Marshaler) {
	t.Helper()
	err := h.Update(func(tx *Tx) error {
		for k, m := range records {
			if err := tx.putRecord([]byte(k[0]), []byte(k[1]), m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// getRecordT reads one record; false if absent.
func getRecordT(t *testing.T, h *Home, bucket []byte, clearKey string, m transport.Unmarshaler) bool {
	t.Helper()
	var ok bool
	err := h.View(func(tx *Tx) error {
		var err error
		ok, err = tx.getRecord(bucket, []byte(clearKey), m)
		return err
	})
	if err != nil {
		t.Fatalf("reading %s %q: %v", bucket, clearKey, err)
	}
	return ok
}

func TestTrustWithoutChange(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	key := bytes.Repeat([]byte{0x11}, transport.IdentityKeyLen)

	// No contact at all.
	err := h.Trust("bob", key)
	if err == nil {
		t.Fatal("Trust of an unknown contact succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "bob") || !strings.Contains(msg, "nothing to accept") {
		t.Errorf("Trust of an unknown contact: %q, want the name and that there is nothing to accept", msg)
	}
	if getRecordT(t, h, bucketContacts, "bob", new(Contact)) {
		t.Error("Trust of an unknown contact created one")
	}

	// A contact without a pending key: refused, and left as it was.
	want := Contact{Identity: key, Verified: true}
	session := &Session{User: "bob", Device: 1, Ratchet: []byte{1, 2, 3}}
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "bob"}:                                               &want,
		{string(bucketSessions), string(sessionKey(chat.Device{User: "bob", ID: 1}))}: session,
	})
	err = h.Trust("bob", key)
	if err == nil || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "has not changed") {
		t.Fatalf("Trust without a pending key = %v, want an error that bob's key has not changed", err)
	}
	var got Contact
	if !getRecordT(t, h, bucketContacts, "bob", &got) || !reflect.DeepEqual(got, want) {
		t.Errorf("contact after a refused Trust = %+v, want %+v unchanged", got, want)
	}
	if !getRecordT(t, h, bucketSessions, string(sessionKey(chat.Device{User: "bob", ID: 1})), new(Session)) {
		t.Error("a refused Trust dropped the session")
	}
	// Names are case-sensitive here: the CLI canonicalizes before calling.
	if err := h.Trust("Bob", key); err == nil {
		t.Error("Trust of Bob succeeded for contact bob")
	}
}

func TestTrustPending(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	old, changed, carolKey := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32), bytes.Repeat([]byte{0x33}, 32)
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "bob"}:                                                 &Contact{Identity: old, Pending: changed, Verified: true},
		{string(bucketContacts), "carol"}:                                               &Contact{Identity: carolKey, Verified: true},
		{string(bucketSessions), string(sessionKey(chat.Device{User: "bob", ID: 1}))}:   &Session{User: "bob", Device: 1, Ratchet: []byte{1}},
		{string(bucketSessions), string(sessionKey(chat.Device{User: "bob", ID: 7}))}:   &Session{User: "bob", Device: 7, Ratchet: []byte{7}, Initial: []byte{7}},
		{string(bucketSessions), string(sessionKey(chat.Device{User: "carol", ID: 1}))}: &Session{User: "carol", Device: 1, Ratchet: []byte{3}},
		// A user whose name starts with bob's is someone else.
		{string(bucketSessions), string(sessionKey(chat.Device{User: "bobby", ID: 1}))}: &Session{User: "bobby", Device: 1, Ratchet: []byte{4}},
		{string(bucketReceived), "kept"}:                                                &Received{Content: []byte{1}, Changed: true},
	})
	// Only the pending key is accepted: another (one swapped in after the
	// user compared) is refused and changes nothing.
	for _, other := range [][]byte{nil, old, carolKey} {
		if err := h.Trust("bob", other); !errors.Is(err, ErrPendingChanged) {
			t.Fatalf("Trust of a key that is not pending = %v, want ErrPendingChanged", err)
		}
	}
	if !getRecordT(t, h, bucketSessions, string(sessionKey(chat.Device{User: "bob", ID: 1})), new(Session)) {
		t.Fatal("a refused Trust dropped a session")
	}
	if err := h.Trust("bob", changed); err != nil {
		t.Fatalf("Trust: %v", err)
	}
	var bob Contact
	if !getRecordT(t, h, bucketContacts, "bob", &bob) {
		t.Fatal("bob's contact is gone")
	}
	if want := (Contact{Identity: changed}); !reflect.DeepEqual(bob, want) {
		t.Errorf("bob after Trust = %+v, want the pending key trusted and not verified: %+v", bob, want)
	}
	// bob's sessions are retired: kept to read what was sent before, never
	// sent on.
	for _, dev := range []uint32{1, 7} {
		var s Session
		if !getRecordT(t, h, bucketSessions, string(sessionKey(chat.Device{User: "bob", ID: dev})), &s) || !s.Retired {
			t.Errorf("bob's session with device %d after Trust: %+v, want it retired", dev, s)
		}
	}
	for _, user := range []string{"carol", "bobby"} {
		var s Session
		if !getRecordT(t, h, bucketSessions, string(sessionKey(chat.Device{User: user, ID: 1})), &s) || s.Retired {
			t.Errorf("%s's session was dropped or retired by Trust of bob: %+v", user, s)
		}
	}
	var carol Contact
	if !getRecordT(t, h, bucketContacts, "carol", &carol) || !carol.Verified || !bytes.Equal(carol.Identity, carolKey) {
		t.Errorf("carol after Trust of bob = %+v", carol)
	}
	if !getRecordT(t, h, bucketReceived, "kept", new(Received)) {
		t.Error("Trust dropped a received message")
	}
	// Accepted once: there is nothing left to accept.
	if err := h.Trust("bob", changed); err == nil || !strings.Contains(err.Error(), "nothing to accept") {
		t.Errorf("second Trust = %v, want nothing to accept", err)
	}
}

// TestRecordsSealed checks that sessions.go's records are bound to their
// bucket and clear key, and that contacts' names do not appear on disk.
func TestRecordsSealed(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	key := bytes.Repeat([]byte{0x5a}, transport.IdentityKeyLen)
	putRecords(t, h, map[[2]string]transport.Marshaler{
		{string(bucketContacts), "zebediah"}: &Contact{Identity: key},
	})
	if getRecordT(t, h, bucketContacts, "zebediah2", new(Contact)) {
		t.Error("a record read under another name")
	}
	// The same sealed value moved under another name's index does not open.
	err := h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContacts)
		v := bytes.Clone(b.Get(h.seal.index(bucketContacts, []byte("zebediah"))))
		if v == nil {
			return errors.New("the record is not under its index")
		}
		return b.Put(h.seal.index(bucketContacts, []byte("mallory")), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = h.View(func(tx *Tx) error {
		_, err := tx.getRecord(bucketContacts, []byte("mallory"), new(Contact))
		return err
	})
	if err == nil {
		t.Error("a sealed record moved to another name opened")
	}
	dir := h.Dir
	h.Close()
	raw, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("zebediah")) || bytes.Contains(raw, key) {
		t.Error("a contact's name or key is on disk in the clear")
	}
}

// An older copy of a home put back in its place (a backup restored) is
// detected when it is opened: its sessions, which were used to encrypt
// past that state, are dropped, so that no message key and nonce is used
// twice; a home that was not rolled back keeps them.
func TestRestoredHomeDetected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Passphrase: "x", Create: true, KDF: cheapKDF}
	bob := chat.Device{User: "bob", ID: 1}
	h, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	save := func(ratchet string) {
		t.Helper()
		if err := h.SaveSessions(&SessionChanges{Sessions: []*Session{{User: "bob", Device: 1, Ratchet: []byte(ratchet)}}}); err != nil {
			t.Fatal(err)
		}
	}
	fp, _ := transport.FingerprintFromBytes(bytes.Repeat([]byte{1}, 32))
	if err := h.SaveProfile(&Profile{Server: "s:1", Fingerprint: fp, User: "alice", Device: 1, DeviceKey: ed25519.NewKeyFromSeed(make([]byte, 32))}); err != nil {
		t.Fatal(err)
	}
	save("chain at 1")
	h.Close()
	backup, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if h, err = Open(dir, o); err != nil {
		t.Fatal(err)
	}
	if h.RolledBack() {
		t.Fatal("a home reopened as it was reported rolled back")
	}
	save("chain at 2") // message keys used past the backup
	h.Close()

	if err := os.WriteFile(filepath.Join(dir, homeDB), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(dir, o); err != nil {
		t.Fatal(err)
	}
	if !h.RolledBack() {
		t.Error("the restored home was not detected")
	}
	st, err := h.LoadSessions([]chat.Device{bob})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sessions[bob]; s != nil {
		t.Fatalf("the restored home kept its used session %q: its message keys would be used again", s.Ratchet)
	}
	save("new session")
	h.Close()
	// Detected once: the home is current again.
	if h, err = Open(dir, o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.RolledBack() {
		t.Error("reported rolled back again")
	}
	if st, _ := h.LoadSessions([]chat.Device{bob}); st.Sessions[bob] == nil {
		t.Error("the new session was dropped")
	}
}

// A new home made where an earlier one was (client.db removed, client.gen
// left) is not an older copy: nothing in it was used.
func TestNewHomeBesideOldCountNotRolledBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Passphrase: "x", Create: true, KDF: cheapKDF}
	h, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.SaveSettings(Settings{})
	}
	h.Close()
	if err := os.Remove(filepath.Join(dir, homeDB)); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(dir, o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.RolledBack() {
		t.Error("a new home was reported as a restored one")
	}
}
