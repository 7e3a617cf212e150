package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"

	"github.com/securechat/securechat/transport"
)

// testStore opens a store in a temp dir and checks its integrity on cleanup.
func testStore(t *testing.T) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileDB)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := s.db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("store integrity: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestGroupCommit(t *testing.T) {
	s := testStore(t)
	const n = 300
	var mu sync.Mutex
	txs := map[int]bool{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := s.update(context.Background(), func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()] = true
				mu.Unlock()
				return tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(txs) >= n {
		t.Errorf("%d writes took %d transactions: no group commit", n, len(txs))
	}
	t.Logf("%d writes in %d transactions", n, len(txs))
	s.db.View(func(tx *bolt.Tx) error {
		for i := range n {
			if tx.Bucket(bucketMeta).Get(fmt.Appendf(nil, "k%d", i)) == nil {
				t.Errorf("write %d lost", i)
			}
		}
		return nil
	})
}

// A write that fails aborts only itself; a rejected write aborts nothing.
func TestBatchFailureIsolated(t *testing.T) {
	s := testStore(t)
	boom := errors.New("boom")
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]error, 30)
	for i := range results {
		wg.Go(func() {
			<-start
			results[i] = s.update(context.Background(), func(tx *bolt.Tx) error {
				switch i % 10 {
				case 3:
					tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "k%d", i), []byte("partial"))
					return boom // wrote, then failed: must be rolled back
				case 7:
					return reject(boom)
				}
				return tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
			})
		})
	}
	close(start)
	wg.Wait()
	s.db.View(func(tx *bolt.Tx) error {
		for i, err := range results {
			v := tx.Bucket(bucketMeta).Get(fmt.Appendf(nil, "k%d", i))
			switch i % 10 {
			case 3, 7:
				if !errors.Is(err, boom) || v != nil {
					t.Errorf("write %d: err %v, value %q; want boom and nothing stored", i, err, v)
				}
			default:
				if err != nil || string(v) != "v" {
					t.Errorf("write %d: err %v, value %q", i, err, v)
				}
			}
		}
		return nil
	})
}

func TestSchemaVersionChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileDB)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.update(context.Background(), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion+1))
	})
	s.Close()
	if _, err := openStore(path); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("opened a newer schema: %v", err)
	}
}

func TestDataInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileDB)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := openStore(path); !errors.Is(err, ErrDataInUse) {
		t.Fatalf("second open: %v, want ErrDataInUse", err)
	}
}

// mustAccount creates user with devices devices, each with published keys
// (so each is a message recipient), and returns the account identity.
func mustAccount(t *testing.T, s *Store, user string, devices int, now time.Time) e2ee.IdentityPrivateKey {
	t.Helper()
	ctx := context.Background()
	identity, err := e2ee.GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for id := uint32(1); id <= uint32(devices); id++ {
		pub, _, _ := ed25519.GenerateKey(nil)
		if id == 1 {
			err = s.createAccount(ctx, user, "phc", pub, "", "", now)
		} else {
			var got uint32
			got, err = s.addDevice(ctx, user, "phc", pub, "", now)
			if got != id {
				t.Fatalf("device id %d, want %d", got, id)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		publishTestKeys(t, s, identity, user, id, pub, 3)
	}
	return identity
}

func publishTestKeys(t *testing.T, s *Store, identity e2ee.IdentityPrivateKey, user string, id uint32, auth ed25519.PublicKey, oneTime int) *e2ee.DeviceKeys {
	t.Helper()
	keys, err := e2ee.NewDeviceKeys(nil, identity, e2ee.DeviceInfo{User: user, DeviceID: id, AuthKey: auth}, time.Now(), oneTime, oneTime)
	if err != nil {
		t.Fatal(err)
	}
	m, err := client.PublishMessage(keys.PublicPreKeys(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.publishKeys(context.Background(), user, id, m); err != nil {
		t.Fatal(err)
	}
	return keys
}

func send(id byte, envs ...transport.Envelope) *transport.Send {
	mid := make([]byte, transport.MessageIDLen)
	mid[0] = id
	return &transport.Send{MessageID: mid, Envelopes: envs}
}

func env(user string, dev uint32, payload string) transport.Envelope {
	return transport.Envelope{User: user, Device: dev, Payload: []byte(payload)}
}

func TestStoreMessageDedupAndDevices(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	mustAccount(t, s, "alice", 1, now)
	mustAccount(t, s, "bob", 2, now)

	res, err := s.storeMessage(ctx, "alice", 1, send(1, env("bob", 1, "a"), env("bob", 2, "b")), now)
	if err != nil || res.Duplicate || len(res.Entries) != 2 {
		t.Fatalf("store: %+v %v", res, err)
	}
	again, err := s.storeMessage(ctx, "alice", 1, send(1, env("bob", 1, "a"), env("bob", 2, "b")), now.Add(time.Minute))
	if err != nil || !again.Duplicate || again.ServerTime != res.ServerTime {
		t.Fatalf("resend: %+v %v", again, err)
	}
	if p := s.pending("bob", 1, 0, 10); len(p) != 1 || string(p[0].Payload) != "a" {
		t.Fatalf("bob/1 mailbox: %+v", p)
	}
	if p := s.pending("bob", 2, 0, 10); len(p) != 1 || string(p[0].Payload) != "b" {
		t.Fatalf("bob/2 mailbox: %+v", p)
	}

	// Missing a device, an extra device, a duplicate slot: mismatch, listing bob's devices.
	for _, m := range []*transport.Send{
		send(2, env("bob", 1, "a")),
		send(3, env("bob", 1, "a"), env("bob", 2, "b"), env("bob", 3, "c")),
		send(4, env("bob", 1, "a"), env("bob", 1, "a")),
	} {
		_, err := s.storeMessage(ctx, "alice", 1, m, now)
		var dm *DeviceMismatchError
		if !errors.As(err, &dm) || len(dm.Devices) != 2 {
			t.Errorf("slots %v: %v, want a mismatch listing 2 devices", m.Envelopes, err)
		}
	}
	var nsu *NoSuchUserError
	if _, err := s.storeMessage(ctx, "alice", 1, send(5, env("carol", 1, "x")), now); !errors.As(err, &nsu) || nsu.User != "carol" {
		t.Errorf("unknown recipient: %v", err)
	}
	// To one's own other devices: the sending device is excluded.
	if _, err := s.storeMessage(ctx, "bob", 1, send(6, env("bob", 2, "note to self")), now); err != nil {
		t.Errorf("to own other device: %v", err)
	}
	// Nothing was stored by the refused sends.
	if p := s.pending("bob", 1, 0, 10); len(p) != 1 {
		t.Errorf("bob/1 has %d entries", len(p))
	}
}

func TestAckAndExpiry(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	mustAccount(t, s, "alice", 1, t0)
	mustAccount(t, s, "bob", 1, t0)
	for i := range 5 {
		if _, err := s.storeMessage(ctx, "alice", 1, send(byte(i+1), env("bob", 1, "m")), t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	p := s.pending("bob", 1, 0, 10)
	if len(p) != 5 {
		t.Fatalf("%d pending", len(p))
	}
	s.ack("bob", 1, []uint64{p[0].Seq})
	// pending after the last seen seq only
	if q := s.pending("bob", 1, p[2].Seq, 10); len(q) != 2 || q[0].Seq != p[3].Seq {
		t.Fatalf("pending after %d: %+v", p[2].Seq, q)
	}
	// Expire what is older than 2h30 at t0+2h30: entries stored at t0+1h, t0+2h go.
	n, err := s.expire(ctx, t0.Add(150*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("expired %d, want 2 (the acked one is already gone)", n)
	}
	rest := s.pending("bob", 1, 0, 10)
	if len(rest) != 2 || rest[0].ServerTime != t0.Add(3*time.Hour).UnixMilli() {
		t.Errorf("after expiry: %+v", rest)
	}
	// Expired dedup records are gone too: the same id may be stored again.
	res, err := s.storeMessage(ctx, "alice", 1, send(1, env("bob", 1, "m")), t0.Add(5*time.Hour))
	if err != nil || res.Duplicate {
		t.Errorf("id reused after expiry: %+v %v", res, err)
	}
	if d := s.queueDepth(); d != 3 {
		t.Errorf("queue depth %d, want 3", d)
	}
}

func TestPasswordHash(t *testing.T) {
	phc, err := hashPassword(randReader{}, "hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !checkPassword(phc, "hunter2hunter2") || checkPassword(phc, "hunter2hunter3") {
		t.Error("password check wrong")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", phc + "$x"} {
		if checkPassword(bad, "hunter2hunter2") {
			t.Errorf("corrupt hash %q accepted", bad)
		}
	}
	if !checkPassword(dummyHash(), "securechat-dummy-password") {
		t.Error("dummy hash is not a valid hash")
	}
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func TestWriteAfterClose(t *testing.T) {
	s, err := openStore(filepath.Join(t.TempDir(), FileDB))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.update(context.Background(), func(*bolt.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	s.updateAsync(func(*bolt.Tx) error { return nil }) // must not panic
}

func TestTakeInbox(t *testing.T) {
	ss := &session{wake: make(chan struct{}, 1)}
	d := func(seq uint64) *transport.Deliver { return &transport.Deliver{Seq: seq} }
	seqs := func(ds []*transport.Deliver) (out []uint64) {
		for _, x := range ds {
			out = append(out, x.Seq)
		}
		return out
	}
	// Out of order but contiguous after last: sorted and taken.
	for _, s := range []uint64{7, 5, 6, 4} {
		ss.offer(d(s))
	}
	got, ok := ss.takeInbox(4)
	if !ok || fmt.Sprint(seqs(got)) != "[5 6 7]" {
		t.Fatalf("got %v %v", seqs(got), ok)
	}
	// A gap (8 missing) sends the loop to the store.
	ss.offer(d(9))
	if _, ok := ss.takeInbox(7); ok {
		t.Fatal("gap not detected")
	}
	// Nothing offered: ok with nothing.
	if got, ok := ss.takeInbox(9); !ok || len(got) != 0 {
		t.Fatalf("empty inbox: %v %v", got, ok)
	}
	// Overflow drops offers; the gap then shows.
	for i := range uint64(maxInbox + 10) {
		ss.offer(d(10 + i))
	}
	got, ok = ss.takeInbox(9)
	if !ok || len(got) != maxInbox {
		t.Fatalf("after overflow: %d entries, %v", len(got), ok)
	}
}
