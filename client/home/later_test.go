package home

import (
	"bytes"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Tests of the deferred writes (later.go) on a home alone.

// closeChecked writes what is deferred, checks the store's integrity and
// closes the home.
func closeChecked(t *testing.T, h *Home) {
	t.Helper()
	if err := h.flushLater(); err != nil {
		t.Errorf("home %s: writing deferred values: %v", h.Dir, err)
	}
	h.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("home %s: %v", h.Dir, err)
		}
		return nil
	})
	if err := h.Close(); err != nil {
		t.Errorf("home %s: close: %v", h.Dir, err)
	}
}

// onDisk reads a record as committed, ignoring deferred values.
func onDisk(t *testing.T, h *Home, bucket []byte, clearKey string, m transport.Unmarshaler) bool {
	t.Helper()
	var ok bool
	err := h.db.View(func(tx *bolt.Tx) error {
		k := h.seal.index(bucket, []byte(clearKey))
		sealed := tx.Bucket(bucket).Get(k)
		if sealed == nil {
			return nil
		}
		ok = true
		v, err := h.seal.open(bucket, k, sealed)
		if err != nil {
			return err
		}
		return transport.Unmarshal(v, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func putLaterRecord(h *Home, bucket []byte, clearKey string, m transport.Marshaler) {
	h.putLater(laterPut{bucket, h.seal.index(bucket, []byte(clearKey)), transport.Marshal(m)})
}

func laterLen(h *Home) int {
	h.laterMu.Lock()
	defer h.laterMu.Unlock()
	return len(h.later)
}

func TestLaterWrites(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	s1 := &Session{User: "bob", Device: 1, Ratchet: []byte("state 1")}
	putLaterRecord(h, bucketSessions, "bob\x001", s1)

	var got Session
	if !getRecordT(t, h, bucketSessions, "bob\x001", &got) || !bytes.Equal(got.Ratchet, s1.Ratchet) {
		t.Fatalf("a deferred value is not read: %+v", got)
	}
	if onDisk(t, h, bucketSessions, "bob\x001", new(Session)) {
		t.Fatal("a deferred value is on disk before any write transaction")
	}
	got.Ratchet[0] = 'X' // readers get copies
	if getRecordT(t, h, bucketSessions, "bob\x001", &got); !bytes.Equal(got.Ratchet, s1.Ratchet) {
		t.Fatal("a reader changed the deferred value")
	}

	// A write transaction that rolls back keeps it deferred.
	boom := errors.New("boom")
	if err := h.Update(func(*Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if laterLen(h) != 1 || onDisk(t, h, bucketSessions, "bob\x001", new(Session)) {
		t.Fatal("a rolled back transaction lost or wrote the deferred value")
	}

	// Any write transaction writes it first; what it writes itself wins.
	s2 := &Session{User: "bob", Device: 1, Ratchet: []byte("state 2")}
	if err := h.Update(func(tx *Tx) error { return tx.putRecord(bucketSessions, []byte("bob\x001"), s2) }); err != nil {
		t.Fatal(err)
	}
	if laterLen(h) != 0 {
		t.Fatal("written values are still deferred")
	}
	if !onDisk(t, h, bucketSessions, "bob\x001", &got) || !bytes.Equal(got.Ratchet, s2.Ratchet) {
		t.Fatalf("on disk after the transaction: %+v", got)
	}

	// A value deleted by the transaction that would write it is never
	// written, and forgotten.
	putLaterRecord(h, bucketReceived, "r", &Received{Content: []byte("hello")})
	putLaterRecord(h, bucketSessions, "bob\x001", s1)
	rk := h.seal.index(bucketReceived, []byte("r"))
	err := h.updateDeleting([]laterPut{{bucket: bucketReceived, key: rk}}, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketReceived).Get(rk) != nil {
			t.Error("the value to delete was written")
		}
		return tx.Bucket(bucketReceived).Delete(rk)
	})
	if err != nil {
		t.Fatal(err)
	}
	if laterLen(h) != 0 || getRecordT(t, h, bucketReceived, "r", new(Received)) {
		t.Fatal("a deleted deferred value survived")
	}
	if !onDisk(t, h, bucketSessions, "bob\x001", &got) || !bytes.Equal(got.Ratchet, s1.Ratchet) {
		t.Fatalf("the other deferred value was not written: %+v", got)
	}
}

// Trust retires sessions after the deferred ones are written, so that
// none comes back unretired.
func TestLaterTrust(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	key := bytes.Repeat([]byte{0x11}, transport.IdentityKeyLen)
	other := bytes.Repeat([]byte{0x22}, transport.IdentityKeyLen)
	putRecords(t, h, map[[2]string]transport.Marshaler{{string(bucketContacts), "bob"}: &Contact{Identity: key, Pending: other}})
	putLaterRecord(h, bucketSessions, "bob\x001", &Session{User: "bob", Device: 1, Ratchet: []byte("old")})
	if err := h.Trust("bob", other); err != nil {
		t.Fatal(err)
	}
	if err := h.flushLater(); err != nil {
		t.Fatal(err)
	}
	var s Session
	if !getRecordT(t, h, bucketSessions, "bob\x001", &s) || !s.Retired {
		t.Fatalf("a deferred session with the old identity after Trust: %+v, want it retired", s)
	}
}

// Close writes what is deferred.
func TestLaterClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Passphrase: "x", Create: true, KDF: cheapKDF}
	h, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	putLaterRecord(h, bucketSessions, "bob\x001", &Session{User: "bob", Device: 1, Ratchet: []byte("kept")})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(dir, o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var got Session
	if !onDisk(t, h, bucketSessions, "bob\x001", &got) || string(got.Ratchet) != "kept" {
		t.Fatalf("after Close and open: %+v", got)
	}
}

// TestLaterReadNotStale: a read (View, the only way to read the home) never meets a write
// transaction that writes and forgets a deferred value, so it cannot miss
// the deferred value and read the older one from a snapshot taken before
// the commit (the session rollback the soak test found).
func TestLaterReadNotStale(t *testing.T) {
	t.Parallel()
	h := openTestHome(t)
	old := &Session{User: "bob", Device: 1, Ratchet: []byte("state 0")}
	if err := h.Update(func(tx *Tx) error { return tx.putRecord(bucketSessions, []byte("bob\x001"), old) }); err != nil {
		t.Fatal(err)
	}
	putLaterRecord(h, bucketSessions, "bob\x001", &Session{User: "bob", Device: 1, Ratchet: []byte("state 1")})

	inView := make(chan struct{})
	committed := make(chan struct{})
	go func() {
		<-inView
		// An ack's write transaction: it writes the deferred state 1 and
		// forgets it when it commits.
		h.Update(func(*Tx) error { return nil })
		close(committed)
	}()
	err := h.View(func(tx *Tx) error {
		close(inView)
		select {
		case <-committed:
			t.Error("a write transaction committed during a read")
		case <-time.After(100 * time.Millisecond):
		}
		var got Session
		if ok, err := tx.getRecord(bucketSessions, []byte("bob\x001"), &got); err != nil || !ok || string(got.Ratchet) != "state 1" {
			t.Errorf("read %q (%v), want the deferred state 1", got.Ratchet, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-committed
	var got Session
	h.View(func(tx *Tx) error {
		_, err := tx.getRecord(bucketSessions, []byte("bob\x001"), &got)
		return err
	})
	if string(got.Ratchet) != "state 1" || laterLen(h) != 0 {
		t.Errorf("after the commit: %q, %d deferred", got.Ratchet, laterLen(h))
	}
}
