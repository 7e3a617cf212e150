// Package boltstore is the server store on one bbolt file (docs/design.md
// §4.2, protocol.md §7): the only server package that imports bbolt. Every
// write goes through one writer goroutine that group-commits; reads are
// bbolt read transactions.
package boltstore

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// The store is one bbolt file, docs/protocol.md §7. Buckets:
//
//	meta       schema version, server key, admin password, blob bytes
//	users      name → userRecord
//	devices    deviceKey(name, id) → deviceRecord
//	mailboxes  deviceKey(name, id) → bucket: seq (u64 BE) → mailbox entry
//	dedup      sender deviceKey ‖ message id → u64 BE unix ms of the first store
//	prekeys    deviceKey → bucket (prekeys.go)
//	bans       "ip:" ‖ prefix text | "user:" ‖ name → banRecord
//	mutes      name → u64 BE unix ms until (0: until unmuted)
//	invites    code → inviteRecord
//	blobs      blob id → blobRecord (blobs.go)
//	blobchunks blob id ‖ u32 BE index → one chunk
//	blobusage  account → u64 BE bytes its blobs reserve
//	blobexpiry u64 BE expires ms ‖ blob id → empty
//	usage      deviceKey → u64 BE entries ‖ u64 BE bytes of its mailbox
//	           (quota.go); absent for an empty mailbox
//	shared     sender deviceKey ‖ message id → a group message's payload
//	refs       the same key → u64 BE count of the entries referring to it
//	groups     group id → groupRecord
//	groupstarts creator ‖ 0 ‖ group id → empty (groups.go)
//	devicelists name → u64 BE seq ‖ the account's signed device list (devicelists.go)
//	revoked    deviceKey → revokedRecord: a revoked device's tombstone
//
// Schema 2 added the usage bucket and meta's mailbox_bytes; Open migrates
// a schema 1 file by counting its mailboxes. Schema 3 added the shared,
// refs, groups and groupstarts buckets, which start empty: a schema 2
// file needs nothing but its version. Schema 4 added the devicelists and
// revoked buckets, which start empty too. Schema 5 replaced the blobs
// bucket (id → bytes, which no server wrote) with the encrypted files'
// buckets: blobs, blobchunks, blobusage, blobexpiry; Open drops the old one.
const schemaVersion = 5

var (
	bucketMeta      = []byte("meta")
	bucketUsers     = []byte("users")
	bucketDevices   = []byte("devices")
	bucketMailboxes = []byte("mailboxes")
	bucketDedup     = []byte("dedup")
	bucketPrekeys   = []byte("prekeys")
	bucketBans      = []byte("bans")
	bucketMutes     = []byte("mutes")
	bucketInvites   = []byte("invites")
	bucketBlobs     = []byte("blobs")
	bucketUsage     = []byte("usage")
	bucketShared    = []byte("shared")
	bucketRefs      = []byte("refs")
	bucketGroups    = []byte("groups")
	// bucketGroupStarts indexes group ids by the account that first used them.
	bucketGroupStarts = []byte("groupstarts")
	bucketDeviceLists = []byte("devicelists")
	bucketRevoked     = []byte("revoked")
	bucketBlobChunks  = []byte("blobchunks")
	bucketBlobUsage   = []byte("blobusage")
	bucketBlobExpiry  = []byte("blobexpiry")

	allBuckets = [][]byte{bucketMeta, bucketUsers, bucketDevices, bucketMailboxes, bucketDedup, bucketPrekeys, bucketBans, bucketMutes, bucketInvites, bucketUsage,
		bucketShared, bucketRefs, bucketGroups, bucketGroupStarts, bucketDeviceLists, bucketRevoked,
		bucketBlobs, bucketBlobChunks, bucketBlobUsage, bucketBlobExpiry}

	keySchema        = []byte("schema")
	keyServerKey     = []byte("server_key")
	keyAdminPassword = []byte("admin_password")
	keyBlobBytes     = []byte("blob_bytes")
	keyMailboxBytes  = []byte("mailbox_bytes")
	keySharedBytes   = []byte("shared_bytes")
)

// maxBatch bounds how many writes share one commit.
const maxBatch = 512

// DefaultMaxBlobBytes bounds the blobs' total size unless Options say otherwise.
const DefaultMaxBlobBytes = 16 << 30

// Default mailbox bounds, unless Options say otherwise.
const (
	DefaultMaxMailboxEntries = 10000
	DefaultMaxMailboxBytes   = 64 << 20
	DefaultMaxStoreBytes     = 4 << 30
)

// Options tune a store.
type Options struct {
	// MaxBlobBytes bounds the blobs' total size (what they reserve); 0 is
	// DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// MaxMailboxEntries and MaxMailboxBytes bound one device's mailbox;
	// MaxStoreBytes bounds all mailboxes together. An Append past one
	// fails with *store.MailboxFullError or store.ErrStoreFull. 0 is the
	// Default… value.
	MaxMailboxEntries int64
	MaxMailboxBytes   int64
	MaxStoreBytes     int64
	// OnDamage, if set, is told of every operation that met a damaged
	// part of the store (damage.go), from the goroutine that ran it.
	OnDamage func(*store.DamagedError)
}

// withDefaults fills the zero bounds.
func (o Options) withDefaults() Options {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxBlobBytes, DefaultMaxBlobBytes)
	def(&o.MaxMailboxEntries, DefaultMaxMailboxEntries)
	def(&o.MaxMailboxBytes, DefaultMaxMailboxBytes)
	def(&o.MaxStoreBytes, DefaultMaxStoreBytes)
	return o
}

// Store is the server's bbolt database with its single writer goroutine.
// Every write goes through update, which group-commits: the writer takes
// the first pending write, then whatever else is already waiting, runs them
// all in one transaction and fsyncs once (docs/design.md §4.2).
type Store struct {
	db       *bolt.DB
	path     string
	done     chan struct{} // closed when the writer has exited
	maxBlobs int64
	limits   Options
	onDamage func(*store.DamagedError)

	expireMu        sync.Mutex // serializes Expire calls; guards expire and expireLastSteps
	expire          expireCursor
	expireLastSteps int // cursor steps of the last Expire, for tests

	reruns atomic.Int64 // batches run again after a write failed in them, for tests

	mu     sync.RWMutex // guards closed and sending on writes; Close holds it to close writes
	closed bool
	writes chan *writeOp
}

var _ store.Store = (*Store)(nil)

type writeOp struct {
	fn   func(tx *bolt.Tx) error
	err  chan error
	name string // the operation, for a *store.DamagedError
}

// rejectError marks a write that refused its input before writing anything:
// the rest of its batch commits.
type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

// reject wraps err so the writer knows the op wrote nothing.
func reject(err error) error { return &rejectError{err} }

// Open opens or creates the database at path. A database held by another
// process fails after a short wait with store.ErrDataInUse.
func Open(path string, o Options) (s *Store, err error) {
	// bbolt reads the freelist and the list of buckets here: a damaged
	// page panics, which must not crash the server (damage.go).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			s, err = nil, fmt.Errorf("open store %s: %w", path, &store.DamagedError{Op: "Open", Cause: strings.TrimPrefix(fmt.Sprint(r), "assertion failed: ")})
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, store.ErrDataInUse
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta); v != nil && len(v.Get(keySchema)) == 8 && binary.BigEndian.Uint64(v.Get(keySchema)) < 5 {
			// 4 → 5: the old blobs bucket (id → bytes) goes; nothing
			// but tests ever wrote it.
			if err := tx.DeleteBucket(bucketBlobs); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return fmt.Errorf("store migration to schema 5: %w", err)
			}
			if err := v.Delete(keyBlobBytes); err != nil {
				return err
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		switch {
		case v == nil:
			return meta.Put(keySchema, u64(schemaVersion))
		case len(v) != 8:
			return fmt.Errorf("store schema version is corrupt")
		case binary.BigEndian.Uint64(v) > schemaVersion:
			return fmt.Errorf("store schema version %d is newer than this binary supports (%d)", binary.BigEndian.Uint64(v), schemaVersion)
		}
		// Migrations from older versions, one step at a time.
		if binary.BigEndian.Uint64(v) < 2 {
			if err := recountUsage(tx); err != nil {
				return fmt.Errorf("store migration to schema 2: %w", err)
			}
		}
		// 2 → 3: the buckets of group messages, created above, empty.
		// 3 → 4: the devicelists and revoked buckets, likewise.
		// 4 → 5: the blob buckets (above).
		return meta.Put(keySchema, u64(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	o = o.withDefaults()
	s = &Store{db: db, path: path, writes: make(chan *writeOp, maxBatch), done: make(chan struct{}), maxBlobs: o.MaxBlobBytes, limits: o, onDamage: o.OnDamage}
	go s.writer()
	return s, nil
}

// Close stops the writer after the writes already queued and closes the
// file. Writes after Close fail with store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.writes)
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}

// queue hands op to the writer.
func (s *Store) queue(ctx context.Context, op *writeOp) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	select {
	case s.writes <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// update runs fn in the writer's next transaction and returns once that
// transaction is durably committed. fn may run more than once if another
// write in its batch fails; it must return a reject error only before it
// has written anything.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	op := &writeOp{fn: fn, err: make(chan error, 1), name: callerName()}
	if err := s.queue(ctx, op); err != nil {
		return err
	}
	// Once queued the op runs; wait for it even if ctx ends, so that a
	// caller never reports failure for a write that committed.
	return <-op.err
}

// updateAsync queues fn without waiting for its commit.
func (s *Store) updateAsync(fn func(tx *bolt.Tx) error) {
	s.queue(context.Background(), &writeOp{fn: fn, err: make(chan error, 1), name: callerName()})
}

// Sync waits for the writes queued before it: the writer runs them in
// order, so an empty write committed after them is enough.
func (s *Store) Sync(ctx context.Context) error {
	return s.update(ctx, func(*bolt.Tx) error { return nil })
}

func (s *Store) writer() {
	defer close(s.done)
	debug.SetPanicOnFault(true) // a damaged page fails its batch, not the process (damage.go)
	batch := make([]*writeOp, 0, maxBatch)
	for op := range s.writes {
		batch = append(batch[:0], op)
	drain:
		for len(batch) < maxBatch {
			select {
			case op, ok := <-s.writes:
				if !ok {
					break drain
				}
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// commit runs a batch in one transaction. A write that fails other than by
// rejecting its input aborts the transaction; it is then reported and the
// rest of the batch runs again without it, as bolt.DB.Batch does. A write
// that meets a damaged page fails so, alone; damage met while committing
// fails the batch (damage.go); the writer goes on either way.
func (s *Store) commit(batch []*writeOp) {
	for len(batch) > 0 {
		results := make([]error, len(batch))
		failed := -1
		err := s.update1(batch[0].name, len(batch), func(tx *bolt.Tx) error {
			for i, op := range batch {
				err := s.runOp(op, tx)
				var rej *rejectError
				if errors.As(err, &rej) {
					results[i] = rej.err
					continue
				}
				if err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			s.reruns.Add(1)
			batch[failed].err <- err
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		for i, op := range batch {
			if err != nil {
				op.err <- err // the commit itself failed
			} else {
				op.err <- results[i]
			}
		}
		return
	}
}

// update1 runs one transaction of the writer; a panic in bbolt while it
// commits becomes a *store.DamagedError.
func (s *Store) update1(first string, n int, fn func(tx *bolt.Tx) error) (err error) {
	op := "commit of " + first
	if n > 1 {
		op = fmt.Sprintf("commit of %s and %d other writes", first, n-1)
	}
	defer s.recoverDamage(op, &err)
	return s.db.Update(fn)
}

// ServerKey returns the server's Ed25519 key, generating and storing it on
// first start.
func (s *Store) ServerKey(ctx context.Context, rand io.Reader) (ed25519.PrivateKey, error) {
	var seed []byte
	err := s.view("ServerKey", func(tx *bolt.Tx) error {
		seed = append(seed, tx.Bucket(bucketMeta).Get(keyServerKey)...)
		return nil
	})
	if err != nil {
		return nil, err // never a new key for a store that holds one
	}
	if len(seed) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if seed != nil {
		return nil, fmt.Errorf("server key: %w", store.ErrCorrupt)
	}
	_, key, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyServerKey); v != nil {
			return reject(errors.New("server key created concurrently"))
		}
		return meta.Put(keyServerKey, key.Seed())
	})
	return key, err
}

// AdminPasswordHash returns the admin password's PHC string, "" if unset.
func (s *Store) AdminPasswordHash() (string, error) {
	var phc string
	err := s.view("AdminPasswordHash", func(tx *bolt.Tx) error {
		phc = string(tx.Bucket(bucketMeta).Get(keyAdminPassword))
		return nil
	})
	return phc, err
}

// SetAdminPasswordHash stores the admin password's hash; "" removes it.
func (s *Store) SetAdminPasswordHash(ctx context.Context, phc string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if phc == "" {
			return tx.Bucket(bucketMeta).Delete(keyAdminPassword)
		}
		return tx.Bucket(bucketMeta).Put(keyAdminPassword, []byte(phc))
	})
}

// Stats reads the mailboxes' depth and the file's size.
func (s *Store) Stats() store.Stats {
	var st store.Stats
	s.view("Stats", func(tx *bolt.Tx) error {
		st.Bytes = tx.Size()
		st.Groups = tx.Bucket(bucketGroups).Stats().KeyN
		st.SharedPayloads = tx.Bucket(bucketShared).Stats().KeyN
		st.SharedBytes = int64(metaU64(tx, keySharedBytes))
		st.Blobs = tx.Bucket(bucketBlobs).Stats().KeyN
		st.BlobBytes = int64(metaU64(tx, keyBlobBytes))
		boxes := tx.Bucket(bucketMailboxes)
		return boxes.ForEachBucket(func(name []byte) error {
			st.QueueDepth += boxes.Bucket(name).Stats().KeyN
			return nil
		})
	})
	return st
}

// Backup writes a consistent copy of the database to w while it serves.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view("Backup", func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// metaU64 reads a u64 BE meta value; 0 when absent.
func metaU64(tx *bolt.Tx, key []byte) uint64 {
	v := tx.Bucket(bucketMeta).Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// deviceKey is the key of a device in the devices, mailboxes and prekeys
// buckets: name ‖ 0 ‖ u32 BE id.
func deviceKey(d chat.Device) []byte {
	k := make([]byte, 0, len(d.User)+5)
	k = append(k, d.User...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, d.ID)
}

// parseDeviceKey splits a deviceKey.
func parseDeviceKey(k []byte) (chat.Device, bool) {
	if len(k) < 6 || k[len(k)-5] != 0 {
		return chat.Device{}, false
	}
	return chat.Device{User: string(k[:len(k)-5]), ID: binary.BigEndian.Uint32(k[len(k)-4:])}, true
}

// userPrefix is what the keys of a user's devices start with.
func userPrefix(user string) []byte { return append([]byte(user), 0) }

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// ms reads a stored unix-ms time; 0 is the zero time.
func ms(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// unixMS is the stored form of t; the zero time is 0.
func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
