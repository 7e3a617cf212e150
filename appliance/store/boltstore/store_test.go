package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/appliance/store/storetest"
	"github.com/securechat/securechat/chat"
)

// TestConformance runs the storage conformance suite on the bbolt store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string, b storetest.Bounds) store.Store {
		s, err := Open(filepath.Join(dir, "server.db"), Options{MaxBlobBytes: b.Blobs,
			MaxMailboxEntries: b.MailboxEntries, MaxMailboxBytes: b.MailboxBytes, MaxStoreBytes: b.StoreBytes})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// testStore opens a store in a temp dir and checks its integrity on cleanup.
func testStore(t *testing.T) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Verify(); err != nil {
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
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.update(context.Background(), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion+1))
	})
	s.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("opened a newer schema: %v", err)
	}
}

func TestDataInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, store.ErrDataInUse) {
		t.Fatalf("second open: %v, want store.ErrDataInUse", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "server.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.update(context.Background(), func(*bolt.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	s.updateAsync(func(*bolt.Tx) error { return nil }) // must not panic
}

// TestBadAppendNeverRerunsBatch: concurrent appends, some refused (a
// device that does not exist, an account without published devices, the
// sending device itself), share group commits; no refusal aborts a
// commit, so no batch runs again and every good append commits once.
func TestBadAppendNeverRerunsBatch(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	account := func(user string, publish bool) chat.Device {
		d := chat.DeviceOf(user, 1)
		key := keyOf(user)
		if err := s.CreateAccount(ctx, store.NewAccount{Name: user, PasswordHash: "x", DeviceKey: key, Now: t0}); err != nil {
			t.Fatal(err)
		}
		if publish {
			if err := s.PublishKeys(ctx, d, store.KeyUpload{Identity: make([]byte, 32), AuthKey: key, Certificate: []byte("c"), SignedPreKey: []byte("s"), LastResortKEM: []byte("k")}); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	alice, bob := account("alice", true), account("bob", true)
	account("carol", false)
	bad := [][]chat.Device{{chat.DeviceOf("carol", 4)}, {chat.DeviceOf("carol", 1)}, {alice}, {chat.DeviceOf("bob", 2)}}
	const n = 400
	var wg sync.WaitGroup
	start := make(chan struct{})
	var refused atomic.Int64
	for i := range n {
		wg.Go(func() {
			to := []chat.Device{bob}
			if i%8 == 5 {
				to = bad[i/8%len(bad)]
			}
			m := store.Message{From: alice, ID: binary.BigEndian.AppendUint64(make([]byte, 8), uint64(i)), Time: t0}
			for _, d := range to {
				m.Envelopes = append(m.Envelopes, store.Envelope{To: d, Key: keyOf(d.User), Payload: []byte("hi")})
			}
			<-start
			_, err := s.Append(ctx, m)
			switch {
			case i%8 == 5 && err == nil:
				t.Errorf("bad append %d to %v stored", i, to)
			case i%8 == 5:
				refused.Add(1)
			case err != nil:
				t.Errorf("good append %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if r := s.reruns.Load(); r != 0 {
		t.Errorf("%d batches ran again after a refused append aborted them", r)
	}
	p, err := s.Pending(bob, 0, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	if want := n - int(refused.Load()); len(p) != want {
		t.Errorf("bob holds %d entries, want %d", len(p), want)
	}
}

// TestExpireBoundedWork: with many mailboxes and resend records that are
// not expired, one Expire call still takes a bounded number of cursor
// steps (before, each batch scanned every mailbox and the whole dedup
// bucket on the writer), each batch is its own commit, and a sweep of
// calls removes exactly the expired entries.
func TestExpireBoundedWork(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	const users, msgs = 200, 20
	var devs []chat.Device
	for i := range users {
		name := fmt.Sprintf("u%03d", i)
		key := keyOf(name)
		if err := s.CreateAccount(ctx, store.NewAccount{Name: name, PasswordHash: "x", DeviceKey: key, Now: t0}); err != nil {
			t.Fatal(err)
		}
		d := chat.DeviceOf(name, 1)
		if err := s.PublishKeys(ctx, d, store.KeyUpload{Identity: make([]byte, 32), AuthKey: key, Certificate: []byte("c"), SignedPreKey: []byte("s"), LastResortKEM: []byte("k")}); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	// Each user sends msgs messages to the next: the first one old, the
	// others new. 4000 resend records, 200 of them expired.
	var wg sync.WaitGroup
	for i, from := range devs {
		wg.Go(func() {
			to := devs[(i+1)%users]
			for j := range msgs {
				at := t0.Add(time.Hour)
				if j == 0 {
					at = t0
				}
				m := store.Message{From: from, ID: binary.BigEndian.AppendUint64(make([]byte, 8), uint64(j)), Time: at,
					Envelopes: []store.Envelope{{To: to, Key: keyOf(to.User), Payload: []byte("x")}}}
				if _, err := s.Append(ctx, m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	const limit = 10
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	txBefore := writes()
	removed, calls := 0, 0
	for {
		n, more, err := s.Expire(ctx, t0.Add(time.Minute), limit)
		if err != nil {
			t.Fatal(err)
		}
		if steps := s.expireLastSteps; steps > expireSteps(limit) {
			t.Fatalf("one Expire call took %d cursor steps, bound %d", steps, expireSteps(limit))
		}
		removed += n
		calls++
		if !more {
			break
		}
		if calls > 10000 {
			t.Fatal("the sweep does not end")
		}
	}
	if removed != users {
		t.Errorf("the sweep removed %d entries, want %d", removed, users)
	}
	if commits := writes() - txBefore; commits < int64(calls) {
		t.Errorf("%d calls made %d commits: each batch must be its own", calls, commits)
	}
	for _, d := range devs {
		if p, _ := s.Pending(d, 0, 100); len(p) != msgs-1 {
			t.Fatalf("%v holds %d entries after expiry, want %d", d, len(p), msgs-1)
		}
	}
	// The expired resend records went too: id 0 stores again.
	m := store.Message{From: devs[0], ID: make([]byte, 16), Time: t0.Add(2 * time.Hour), Envelopes: []store.Envelope{{To: devs[1], Key: keyOf(devs[1].User), Payload: []byte("x")}}}
	if res, err := s.Append(ctx, m); err != nil || res.Duplicate {
		t.Errorf("expired id: %+v %v", res, err)
	}
}

// keyOf is the device key these tests give the first device of user.
func keyOf(user string) []byte {
	key := make([]byte, 32)
	copy(key, user)
	return key
}
