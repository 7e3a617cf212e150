// Package appliance is the securechat server of docs/protocol.md: QUIC
// listener, sessions dispatching through one handler table, accounts and
// devices, durable store-and-forward mailboxes behind the store interfaces
// (package store; boltstore keeps them in one bbolt file), and live
// traffic through a Router (docs/design.md §4).
//
// The server sees only opaque payloads: it routes ciphertext by account and
// device and never interprets it.
package appliance

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/chat"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/securechat/securechat/transport"
)

// Files the server keeps in its data directory for operators and scripts.
const (
	FileDB          = "server.db"
	FileFingerprint = "server.fingerprint"
	FileListenAddr  = "listen.addr"
	FileAdminToken  = "admin.token"
	FileAdminAddr   = "admin.addr"
)

// Server is a running securechat server.
type Server struct {
	cfg Config
	// madeData: New made the data directory, so a start that fails
	// before serving removes it (abandon) rather than leave it half made.
	madeData bool
	log      *slog.Logger
	rand     io.Reader
	store    store.Store
	key      ed25519.PrivateKey
	fp       transport.Fingerprint

	hashes    *hashQueue // Register's and Login's argon2id computations
	adminHash *hashQueue // the admin password's, apart

	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	mu       sync.Mutex // guards sessions
	sessions map[*session]struct{}
	router   Router  // live traffic to devices' connections
	changes  Changes // bans, mutes and limits as published changes

	conns sync.WaitGroup

	fetchLimit     *limiter // prekey fetches per requesting account
	pairFetch      *limiter // prekey fetches per requesting account and fetched account (limits.go)
	msgLimit       *limiter // messages per account
	byteLimit      *limiter // payload bytes per account
	connLimit      *limiter // new connections per source (sourceKey)
	regLimit       *limiter // registrations per source
	failLimit      *limiter // failed authentications per source (sourceKey)
	acctFail       *limiter // failed password logins per account name
	floodLimit     *limiter // rate-limit refusals per source, for flood_ban
	keysLimit      *limiter // key uploads per account
	ackLimit       *limiter // acked sequence numbers per account
	lookLimit      *limiter // device and identity lookups per account
	nameLimit      *limiter // name checks per source: CheckNames and Registers refused for a taken name (takeName)
	linkStartLimit *limiter // LinkStarts per source (links.go)
	linkLimit      *limiter // linking requests and device lists per account (links.go)
	links          *linkTable
	blobBytes      *limiter // blob bytes per account (blobs.go): byte_rate, byte_burst
	blobSlots      blobSlots
	open           connCounts
	bans           banList
	banningMu      sync.Mutex      // guards banning
	banning        map[string]bool // address keys an auto-ban is being written for
	mutes          muteList
	started        time.Time

	limitsMu sync.Mutex // serializes SetLimits
	limits   atomic.Pointer[Limits]
	events   eventLog
	disk     diskState // the data directory's free space, and whether the disk is full (diskfull.go)

	stats Stats
}

// Stats are the server's counters.
type Stats struct {
	Connections atomic.Int64 // currently open
	Accepted    atomic.Int64
	MessagesIn  atomic.Int64
	// GroupMessages counts the group messages among MessagesIn.
	GroupMessages atomic.Int64
	BytesIn       atomic.Int64 // payload bytes of the messages stored
	Deliveries    atomic.Int64
	BytesOut      atomic.Int64 // payload bytes of the entries pushed
	AuthFailed    atomic.Int64
	Refused       atomic.Int64 // connections refused for a ban
	Limited       atomic.Int64 // requests and connections refused by a rate limit
	Dropped       atomic.Int64 // signals not queued for a device that does not read them
	BlobBytesIn   atomic.Int64 // bytes of encrypted files uploaded
	BlobBytesOut  atomic.Int64 // bytes of encrypted files downloaded
	StorageFull   atomic.Int64 // requests refused for a full disk (diskfull.go)
	Backups       atomic.Int64 // automatic backups written (backups.go)
	BackupsFailed atomic.Int64 // automatic backups that failed
	StoreDamaged  atomic.Int64 // store operations that met a damaged page (storecheck.go)
}

// New opens the store in cfg.Data, loads or creates the server key, writes
// the operator files and binds the listener. Call Serve to accept clients.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.NewLogger(os.Stderr),
		rand:      cfg.Rand,
		hashes:    newHashQueue(runtime.NumCPU(), cfg.HashQueue),
		adminHash: newHashQueue(1, 8),
		sessions:  make(map[*session]struct{}),
		router:    newLocalRouter(),
		changes:   newLocalChanges(),
		links:     newLinkTable(),
	}
	for _, l := range []**limiter{&s.fetchLimit, &s.pairFetch, &s.msgLimit, &s.byteLimit, &s.connLimit, &s.regLimit, &s.failLimit, &s.acctFail, &s.floodLimit, &s.keysLimit, &s.ackLimit, &s.lookLimit, &s.nameLimit, &s.linkStartLimit, &s.linkLimit, &s.blobBytes} {
		*l = newLimiter(cfg.LimiterTable)
	}
	limits := cfg.limits()
	s.limits.Store(&limits)
	s.applyLimits(limits)
	s.started = cfg.Now()
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if _, err := os.Stat(cfg.Data); errors.Is(err, fs.ErrNotExist) {
		s.madeData = true
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if _, err := CheckStore(cfg.Data, s.log); err != nil {
		return nil, err
	}
	st, err := boltstore.Open(filepath.Join(cfg.Data, FileDB), boltstore.Options{
		OnDamage:          s.storeDamaged,
		MaxMailboxEntries: int64(cfg.MailboxMaxEntries),
		MaxMailboxBytes:   int64(cfg.MailboxMaxBytes),
		MaxStoreBytes:     int64(cfg.StoreMaxBytes),
		MaxBlobBytes:      int64(cfg.BlobStoreMaxBytes),
	})
	if errors.Is(err, store.ErrDataInUse) {
		return nil, fmt.Errorf("data directory %s is in use by another securechat server", cfg.Data)
	}
	if err != nil {
		s.abandon()
		return nil, err
	}
	s.store = st
	if cfg.WrapStore != nil {
		s.store = cfg.WrapStore(st)
	}
	if err := s.init(); err != nil {
		st.Close()
		s.abandon()
		return nil, err
	}
	return s, nil
}

// abandon removes the data directory of a start that failed before
// serving, if this start made it: nothing in it was ever served.
func (s *Server) abandon() {
	if !s.madeData {
		return
	}
	if s.udp != nil {
		s.udp.Close()
	}
	if err := os.RemoveAll(s.cfg.Data); err != nil {
		s.log.Warn("removing the data directory this failed start made", "dir", s.cfg.Data, "err", err)
	}
}

func (s *Server) init() error {
	key, err := s.store.ServerKey(context.Background(), s.rand)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	s.key = key
	s.fp = transport.FingerprintOf(key.Public().(ed25519.PublicKey))
	if err := writeFileAtomic(filepath.Join(s.cfg.Data, FileFingerprint), []byte(s.fp.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := s.ensureAdminToken(); err != nil {
		return err
	}
	s.sweepLeftovers()
	if err := s.loadBans(); err != nil {
		return fmt.Errorf("bans: %w", err)
	}
	if err := s.loadMutes(); err != nil {
		return fmt.Errorf("mutes: %w", err)
	}
	s.changes.Subscribe(s.apply) // for the server's life
	tlsConf, err := transport.ServerTLSConfig(key)
	if err != nil {
		return err
	}
	addr, err := net.ResolveUDPAddr("udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen address %s: %w", s.cfg.Listen, err)
	}
	s.udp, err = net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	// Above handshake_rate new handshakes per second, clients must first
	// prove their address with a Retry round trip (RFC 9000 §8.1.2), so a
	// flood of spoofed sources costs the server no handshake work.
	handshakes := rate.NewLimiter(rate.Limit(s.cfg.HandshakeRate), max(1, int(s.cfg.HandshakeRate)))
	resetKey, err := statelessResetKey(key)
	if err != nil {
		return err
	}
	s.tr = &quic.Transport{
		Conn:                s.udp,
		ConnContext:         s.admit,
		VerifySourceAddress: func(net.Addr) bool { return !handshakes.Allow() },
		StatelessResetKey:   resetKey,
	}
	s.ln, err = s.tr.Listen(tlsConf, s.quicConfig())
	if err != nil {
		s.udp.Close()
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	// listen.addr says "ready": Serve writes it once every listener is up
	// and every file the server makes (admin.addr, admin.crt) is written. A
	// copy left by a crash must not say so meanwhile.
	if err := os.Remove(filepath.Join(s.cfg.Data, FileListenAddr)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.ln.Close()
		s.udp.Close()
		return err
	}
	return nil
}

// errBanned and errRateLimited refuse a connection at admission.
var (
	errBanned      = errors.New("address banned")
	errRateLimited = errors.New("too many connections")
)

// admit runs on a new connection's first packet, before any TLS work:
// banned addresses are refused there (docs/design.md §4.5).
func (s *Server) admit(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	ua, ok := info.RemoteAddr.(*net.UDPAddr)
	if !ok {
		return ctx, nil
	}
	ip, now := ua.AddrPort().Addr().Unmap(), s.cfg.Now()
	if s.bans.addrBanned(ip, now) {
		s.stats.Refused.Add(1)
		return ctx, errBanned
	}
	return ctx, s.admitSource(ip, now)
}

// admitSource counts a new connection from ip against its source's
// (sourceKey's) connection limit.
func (s *Server) admitSource(ip netip.Addr, now time.Time) error {
	key := s.sourceKey(ip)
	if ok, _ := s.connLimit.allow(key, now); !ok {
		s.stats.Limited.Add(1)
		s.log.Warn("rate limited: connections", "remote", ip.String(), "source", key)
		s.recordEvent(chat.EventRateLimited, key, "connections")
		return errRateLimited
	}
	return nil
}

// quicConfig sets quic-go's limits on purpose rather than by default
// (docs/design.md §4.5): one control stream plus a few bulk streams per connection,
// bounded flow-control windows, short handshake and idle timeouts.
func (s *Server) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 time.Duration(s.cfg.IdleTimeout),
		MaxIncomingStreams:             8,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         uint64(2 * s.cfg.MaxFrame),
		InitialConnectionReceiveWindow: 512 << 10,
		MaxConnectionReceiveWindow:     uint64(4 * s.cfg.MaxFrame),
	}
}

// ensureAdminToken writes a random admin token on first start.
func (s *Server) ensureAdminToken() error {
	path := filepath.Join(s.cfg.Data, FileAdminToken)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Fingerprint is the server key's fingerprint, which clients pin.
func (s *Server) Fingerprint() transport.Fingerprint { return s.fp }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts connections until ctx ends, then shuts down: connections
// are closed, queued writes are committed and the store is closed.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	bg.Go(func() { s.expireLoop(ctx) })
	bg.Go(func() { s.blobExpireLoop(ctx) })
	bg.Go(func() { s.banLoop(ctx) })
	bg.Go(func() { s.diskLoop(ctx) })
	bg.Go(func() { s.backupLoop(ctx) })
	if s.cfg.Admin == AdminOff {
		// No admin listener: no admin.addr for `securechat admin` to find
		// (one left by an earlier run names a listener that is gone).
		if err := os.Remove(filepath.Join(s.cfg.Data, FileAdminAddr)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("removing a stale admin address file", "err", err)
		}
	} else if s.cfg.AdminHandler != nil {
		if err := s.serveAdmin(ctx, &bg); err != nil {
			cancel()
			bg.Wait()
			s.shutdown()
			s.abandon()
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(s.cfg.Data, FileListenAddr), []byte(s.Addr().String()+"\n"), 0o644); err != nil {
		cancel()
		bg.Wait()
		s.shutdown()
		s.abandon()
		return err
	}
	s.log.Info("listening", "addr", s.Addr().String(), "fingerprint", s.fp.String())

	var err error
	for {
		qc, aerr := s.ln.Accept(ctx)
		if aerr != nil {
			if ctx.Err() == nil {
				err = aerr
			}
			break
		}
		// Accept in a tight loop; everything per connection happens in its
		// own goroutine (docs/design.md §4.1).
		s.conns.Add(1)
		go s.serveConn(ctx, qc)
	}
	cancel()
	bg.Wait()
	s.shutdown()
	return err
}

// serveAdmin starts the admin API on its own TCP listener and writes its
// address to admin.addr, so `securechat admin --data DIR` finds it.
func (s *Server) serveAdmin(ctx context.Context, bg *sync.WaitGroup) error {
	tlsConf, err := s.adminTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Admin)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	ln = smallSendBuffers{ln}
	scheme := "http"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	token, err := os.ReadFile(filepath.Join(s.cfg.Data, FileAdminToken))
	if err != nil {
		ln.Close()
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.cfg.Data, FileAdminAddr), []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
		ln.Close()
		return err
	}
	if s.cfg.Out != nil { // before the handler starts the console, which prints too
		fmt.Fprintf(s.cfg.Out, "web admin: %s://%s/ (log in with the token in %s)\n", scheme, ln.Addr(), filepath.Join(s.cfg.Data, FileAdminToken))
	}
	hs := &http.Server{
		Handler:           s.cfg.AdminHandler(s, string(token), s.log),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      time.Duration(s.cfg.AdminWriteTimeout),              // a stalled client cannot hold a response
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug), // TLS handshake noise
		IdleTimeout:       time.Minute,
	}
	bg.Go(func() { hs.Serve(ln) })
	bg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		os.Remove(filepath.Join(s.cfg.Data, FileAdminAddr))
	})
	s.log.Info("admin listening", "url", scheme+"://"+ln.Addr().String()+"/")

	return nil
}

// Backup writes a consistent copy of the store to w while serving. The
// copy is first taken into an unlinked temporary file in the data
// directory, at disk speed, and only then copied to w at w's pace: the
// store's read transaction never waits for a slow reader, since a long
// one would stall every writer that must grow the file's mapping and,
// behind it, every reader (issue 17 point 6). It needs free space in the
// data directory for one copy of the store.
func (s *Server) Backup(ctx context.Context, w io.Writer) (int64, error) {
	f, err := os.CreateTemp(s.cfg.Data, ".backup-*.tmp")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	os.Remove(f.Name()) // the open file lives on; nothing is left behind by a crash
	size, err := s.store.Backup(f)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	n, err := io.Copy(w, io.LimitReader(ctxReader{ctx, f}, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// adminSendBuffer is the socket send buffer of an admin connection. The
// write timeout measures how long a write waits for room in it, and the
// kernel makes room only once a good part of the buffer has drained: with
// the default buffers (megabytes) a download read at 10 KiB/s would wait
// minutes per write and be cut off, or a stalled one would look alive.
// A small buffer makes the write timeout a bound on a stall.
const adminSendBuffer = 64 << 10

// smallSendBuffers sets adminSendBuffer on every accepted connection.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(adminSendBuffer)
	}
	return c, err
}

// ctxReader is r until ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *Server) shutdown() {
	s.ln.Close()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.close(transport.CloseShutdown, "server shutting down")
	}
	s.mu.Unlock()
	s.conns.Wait()
	s.tr.Close()
	s.udp.Close() // the transport closes only sockets it made itself
	os.Remove(filepath.Join(s.cfg.Data, FileListenAddr))
	if err := s.store.Close(); err != nil {
		s.log.Error("closing store", "err", err)
	}
	s.log.Info("stopped")
}

// Close releases a Server that was never served.
func (s *Server) Close() error {
	s.ln.Close()
	s.tr.Close()
	s.udp.Close()
	return s.store.Close()
}

// expireBatch bounds the deletions of one expiry commit, so that sends
// never wait behind a long one.
const expireBatch = 4096

func (s *Server) expireLoop(ctx context.Context) {
	ttl := time.Duration(s.cfg.MailboxTTL)
	every := min(max(ttl/10, time.Second), 10*time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.expire(ctx, s.cfg.Now().Add(-ttl))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("expiring mailboxes", "err", err)
		case n > 0:
			s.log.Info("expired undelivered messages", "count", n, "ttl", ttl.String())
		}
	}
}

// expire deletes what was stored before cutoff, in bounded batches, and
// returns how many mailbox entries went.
func (s *Server) expire(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		n, more, err := s.store.Expire(ctx, cutoff, expireBatch)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	if d := sess.authedDevice(); !d.IsZero() {
		s.router.Leave(d, sess)
	}
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// statelessResetLabel is the HKDF info of the stateless reset key.
const statelessResetLabel = "securechat quic stateless reset v1"

// statelessResetKey derives the QUIC stateless reset key (RFC 9000 §10.3)
// from the server key, so that it is the same after a restart: a server
// that crashed and came back answers its old connections' packets with a
// stateless reset, and clients reconnect at once instead of waiting out
// the idle timeout (protocol.md §2.3).
func statelessResetKey(key ed25519.PrivateKey) (*quic.StatelessResetKey, error) {
	k, err := hkdf.Key(sha256.New, key.Seed(), nil, statelessResetLabel, 32)
	if err != nil {
		return nil, err
	}
	var out quic.StatelessResetKey
	copy(out[:], k)
	clear(k)
	return &out, nil
}
