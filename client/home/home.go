// Package home is the sealed client home (docs/design.md §6.2): one
// identity's profile, sessions, contacts, history, outbox and settings in
// a bbolt file sealed at rest. It is reached only through the repository
// methods of a unit of work (Tx, tx.go); no transaction or database handle
// leaves the package, and reads of values whose writes may be deferred
// (later.go) cannot run beside a write.
package home

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securechat/securechat/transport"
)

// The home directory (--home, docs/design.md §7) holds one identity in
// client.db, a bbolt file sealed at rest (seal.go, docs/protocol.md §10):
//
//	meta    "kdf" → kdfRecord (clear); "profile" → sealed Profile;
//	        "settings" → sealed front-end settings
//	seen    index(sender deviceKey ‖ message id) → sealed u64 BE unix ms;
//	        deliveries already handed on
//	outbox  message id → sealed OutboxEntry; Sends transmitted but not yet confirmed
//
// and the buckets of sessions.go and history.go.
const homeDB = "client.db"

var (
	bucketMeta = []byte("meta")
	// bucketGen holds only the commit count (rollback.go): a bucket that
	// small is stored inline in the root page, which every commit writes
	// anyway, so counting costs no page write of its own.
	bucketGen    = []byte("gen")
	bucketSeen   = []byte("seen")
	bucketOutbox = []byte("outbox")
	keyProfile   = []byte("profile")
	keyKDF       = []byte("kdf")
)

// seenTTL is how long a delivered message id is remembered to drop
// redeliveries; the server's mailbox TTL bounds how late one can come.
const seenTTL = 45 * 24 * time.Hour

// ErrNotRegistered is returned when a home holds no identity yet.
var ErrNotRegistered = errors.New("this home has no account yet: run securechat register (or login) first")

// ErrHomeInUse is returned when another process has the home open.
var ErrHomeInUse = errors.New("home is in use by another securechat process")

// Home is an open client home directory.
type Home struct {
	Dir    string
	db     *bolt.DB
	seal   *sealer
	pruned bool // seen records older than seenTTL were dropped this session

	gen        uint64   // commits that kept a sending state, counted (rollback.go); written under stateMu
	genDirty   bool     // the write transaction in progress keeps a sending state; under stateMu
	genOut     *os.File // client.gen, open once written; under stateMu
	rolledBack bool

	laterMu  sync.Mutex            // guards later, laterSeq
	later    map[string]laterValue // deferred writes (later.go), by laterKey
	laterSeq uint64
	// stateMu keeps every read (View) apart from write transactions
	// (Update), which write the deferred values and forget them when
	// they commit (later.go).
	stateMu sync.RWMutex
}

// Options open a home.
type Options struct {
	// Passphrase unlocks the home; a new home is sealed with it.
	Passphrase string
	// KDF is the argon2id cost for a new home; zero means DefaultKDF.
	KDF KDFParams
	// Create allows making a new home (register, login). Without it a
	// missing home is ErrNotRegistered.
	Create bool
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
}

// Profile is the identity a home holds.
type Profile struct {
	Server      string // HOST:PORT
	Fingerprint transport.Fingerprint
	User        string
	Device      uint32
	DeviceKey   ed25519.PrivateKey
	Keys        []byte // e2ee.DeviceKeys encoding; empty for a device not linked to the account identity
}

func (p *Profile) MarshalFields(e *transport.Encoder) {
	e.String(1, p.Server)
	e.BytesField(2, p.Fingerprint.Bytes())
	e.String(3, p.User)
	e.Uint(4, uint64(p.Device))
	if len(p.DeviceKey) == ed25519.PrivateKeySize {
		e.BytesField(5, p.DeviceKey.Seed())
	}
	e.BytesField(6, p.Keys)
}

func (p *Profile) UnmarshalFields(d *transport.Decoder) error {
	err := transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			p.Server, err = f.String(512)
		case 2:
			p.Fingerprint, err = transport.FingerprintFromBytes(f.Value)
		case 3:
			p.User, err = f.String(transport.MaxUserName)
		case 4:
			p.Device, err = f.Uint32()
		case 5:
			var seed []byte
			if seed, err = f.Fixed(ed25519.SeedSize); err == nil {
				p.DeviceKey = ed25519.NewKeyFromSeed(seed)
			}
		case 6:
			p.Keys, err = f.Bytes(4 << 20)
		default:
			return f.Unknown()
		}
		return err
	})
	if err == nil && (p.DeviceKey == nil || p.Fingerprint.IsZero() || p.User == "" || p.Device == 0) {
		// A damaged profile must not fall back to trusting any server key.
		err = errors.New("profile lacks its device key, server key or account")
	}
	return err
}

// Default is $SECURECHAT_HOME, else $XDG_DATA_HOME/securechat, else
// ~/.local/share/securechat.
func Default() string {
	if h := os.Getenv("SECURECHAT_HOME"); h != "" {
		return h
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "securechat")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "securechat")
	}
	return ".securechat"
}

// Open opens the home directory dir and unlocks it with the
// passphrase. A wrong passphrase is ErrWrongPassphrase and changes nothing.
// Only one process may have a home open at a time.
func Open(dir string, o Options) (*Home, error) {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.KDF == (KDFParams{}) {
		o.KDF = DefaultKDF
	}
	path := filepath.Join(dir, homeDB)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !o.Create {
		return nil, ErrNotRegistered
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("home %s: %w", dir, err)
	}
	// The freelist is not written at each commit but rebuilt by a scan
	// when the home opens (a home is small): one page write fewer per
	// commit. Data and meta pages are synced as before.
	db, err := openDB(path)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("home %s: %w", dir, ErrHomeInUse)
	}
	if errors.Is(err, ErrHomeInUse) || errors.Is(err, ErrDamaged) {
		return nil, err // naming the home already
	}
	if err != nil {
		return nil, fmt.Errorf("home %s: %w", dir, err)
	}
	h := &Home{Dir: dir, db: db}
	if err := h.unlock(o); err != nil {
		db.Close()
		return nil, err
	}
	if err := h.checkRollback(); err != nil {
		db.Close()
		return nil, fmt.Errorf("home %s: %w", dir, err)
	}
	return h, nil
}

// openDB opens client.db. bbolt rebuilds the freelist by walking every
// tree, in a goroutine of its own where a damaged page's panic cannot be
// recovered, so the file is walked first with the page reader (damage.go)
// under a shared lock; a damaged home is then ErrDamaged, naming the page.
func openDB(path string) (db *bolt.DB, err error) {
	dir := filepath.Dir(path)
	if err := scanHome(dir); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, damagedError(dir, r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 300 * time.Millisecond, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
}

// unlock derives the home's keys. A home without a profile may be sealed
// anew: it holds nothing yet.
func (h *Home) unlock(o Options) error {
	if o.Passphrase == "" {
		return errors.New("the passphrase is empty")
	}
	var rec kdfRecord
	var haveKDF, haveProfile bool
	err := h.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		haveProfile = meta.Get(keyProfile) != nil
		if v := meta.Get(keyKDF); v != nil {
			haveKDF = true
			return transport.Unmarshal(v, &rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("home %s: key parameters are damaged: %w", h.Dir, err)
	}
	if haveKDF {
		master, err := masterKey(o.Passphrase, &rec)
		if errors.Is(err, ErrWrongPassphrase) && (haveProfile || !o.Create) {
			return fmt.Errorf("home %s: %w", h.Dir, ErrWrongPassphrase)
		}
		var s *sealer
		if err == nil {
			s, err = newSealer(master, o.Rand)
		}
		if err != nil && !errors.Is(err, ErrWrongPassphrase) {
			clear(master)
			return err
		}
		if s != nil && s.check(&rec) == nil {
			h.seal = s
			err := h.db.Update(func(tx *bolt.Tx) error {
				if err := createBuckets(tx); err != nil { // buckets added by later versions
					return err
				}
				return upgradeKDF(tx, o, &rec, master)
			})
			clear(master)
			return err
		}
		clear(master)
		if s != nil {
			s.zero()
		}
		if haveProfile || !o.Create {
			return fmt.Errorf("home %s: %w", h.Dir, ErrWrongPassphrase)
		}
	}
	if haveProfile {
		return fmt.Errorf("home %s: key parameters are missing", h.Dir)
	}
	// A new (or still empty) home: seal it with this passphrase.
	rec = kdfRecord{Params: o.KDF, Salt: make([]byte, 16)}
	if _, err := io.ReadFull(o.Rand, rec.Salt); err != nil {
		return err
	}
	s, err := deriveSealer(o.Passphrase, &rec, o.Rand)
	if err != nil {
		return err
	}
	if rec.Check, err = s.seal([]byte(labelHomeCheck), nil, []byte(homeCheckContent)); err != nil {
		return err
	}
	err = h.db.Update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyKDF, transport.Marshal(&rec))
	})
	if err != nil {
		return fmt.Errorf("home %s: %w", h.Dir, err)
	}
	h.seal = s
	return nil
}

// upgradeKDF protects the master key of a home sealed with weaker key
// parameters than o.KDF (earlier versions used argon2id t=1) by o.KDF: the
// master key is wrapped under the stronger passphrase key, and the record
// with the weaker parameters is replaced in the same commit.
func upgradeKDF(tx *bolt.Tx, o Options, rec *kdfRecord, master []byte) error {
	if !rec.Params.weaker(o.KDF) {
		return nil
	}
	up, err := wrapMaster(o.Passphrase, master, o.KDF, rec.Check, o.Rand)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyKDF, transport.Marshal(up))
}

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketSeen, bucketOutbox, bucketContacts, bucketSessions, bucketReceived,
		bucketConvs, bucketHistory, bucketMsgIndex, bucketPending, bucketSenderKeys, bucketBaseKeys, bucketGen, bucketGroups, bucketFiles} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Close writes what is deferred, closes the home and forgets its keys.
func (h *Home) Close() error {
	err := h.flushLater()
	h.seal.zero()
	if h.genOut != nil {
		err = errors.Join(err, h.genOut.Close())
	}
	return errors.Join(err, h.db.Close())
}

// Profile returns the home's identity, or ErrNotRegistered.
func (h *Home) Profile() (*Profile, error) {
	var p *Profile
	err := h.View(func(tx *Tx) error {
		var err error
		p, err = tx.Profile()
		return err
	})
	return p, err
}

// SaveProfile stores the home's identity.
func (h *Home) SaveProfile(p *Profile) error {
	return h.Update(func(tx *Tx) error { return tx.PutProfile(p) })
}

// Exists reports whether dir holds a home store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, homeDB))
	return err == nil
}
