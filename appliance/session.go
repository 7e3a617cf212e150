package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securechat/securechat/chat"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/transport"
)

// Session states (protocol.md §5):
//
//	new ──Register/Login/Auth ok──▶ authenticated ──(Auth with Receive)──▶ receiving
//	 │
//	 └── AuthTimeout without success: closed
//
// Only Register, Login, Auth and Ping are accepted before authentication;
// the handler table (handlers.go) says which request is accepted when.

// maxInFlight bounds the Sends one connection may have waiting for commit.
const maxInFlight = 64

// pushBatch bounds the entries pushed in one stream write; push_budget
// bounds their bytes (deliver).
const pushBatch = 256

// maxFrameBeforeAuth bounds a frame before authentication: Register,
// Login, Auth and Ping are small (the largest, an Enroll with every field
// at its maximum, is under 1.8 KiB; TestMaxFrameBeforeAuth), so a
// connection that has not authenticated cannot make the server buffer a
// max_frame body (docs/security.md §4.4).
const maxFrameBeforeAuth = 4 << 10

// maxSignals bounds the signals and keys-low notices queued for one
// connection; push_budget/4 bounds their bytes.
const maxSignals = 64

// session is one client connection. Once authenticated it is a Conn of
// the router.
type session struct {
	srv  *Server
	c    *transport.Conn
	ip   string
	log  *slog.Logger
	stop context.CancelFunc // ends the connection's context, which run holds

	// Set once by the read loop at authentication, read by other goroutines
	// only after authed is set.
	dev      chat.Device
	authed   chan struct{}
	inFlight chan struct{}

	wake      chan struct{} // mailbox has new entries (capacity 1)
	lastFrame atomic.Int64  // unix ns of the last frame read or request answered, for AFK
	busy      atomic.Int32  // requests being handled: the connection is not idle

	counted bool // counted against max_conns_per_account; set by the read loop

	inboxMu    sync.Mutex
	inbox      []*transport.Deliver // committed entries offered by senders, in no guaranteed order
	inboxBytes int                  // their payload bytes, at most push_budget
	overflow   bool                 // an offer was dropped: read the store
	signals    []transport.Frame    // signals and keys-low notices to write
	sigBytes   int                  // their body bytes, at most push_budget/4

	bg sync.WaitGroup // the deliver goroutine

	recipients recipientLists // group Sends' address lists (recipients.go)

	// link is the pending link this connection waits with (links.go), set
	// by a LinkStart: the connection then waits unauthenticated, with no
	// auth timeout and no AFK, until the link is approved or expires.
	link atomic.Pointer[pendingLink]

	closeOnce sync.Once
}

func (s *Server) serveConn(ctx context.Context, qc *quic.Conn) {
	defer s.conns.Done()
	s.stats.Accepted.Add(1)
	s.stats.Connections.Add(1)
	defer s.stats.Connections.Add(-1)

	ip := hostOf(qc.RemoteAddr())
	src := s.sourceOf(qc.RemoteAddr()) // max_conns_per_address counts the source (ipv6_prefix)
	if err := s.open.addConn(src, s.currentLimits()); err != nil {
		s.stats.Limited.Add(1)
		s.log.Debug("connection refused", "remote", ip, "why", err.Error())
		qc.CloseWithError(transport.CloseLimit, err.Error())
		return
	}
	defer s.open.dropConn(src)
	actx, cancel := context.WithTimeout(ctx, time.Duration(s.cfg.AuthTimeout))
	c, err := transport.Accept(actx, qc, maxFrameBeforeAuth)
	cancel()
	if err != nil {
		qc.CloseWithError(transport.CloseAuthTimeout, "no control stream")
		return
	}
	c.SetFrameTimeout(time.Duration(s.cfg.FrameTimeout))
	c.SetWriteTimeout(time.Duration(s.cfg.WriteTimeout))
	sctx, stop := context.WithCancel(ctx)
	sess := &session{
		srv: s, c: c, ip: ip, stop: stop,
		log:      s.log.With("remote", ip),
		authed:   make(chan struct{}),
		inFlight: make(chan struct{}, maxInFlight),
		wake:     make(chan struct{}, 1),
	}
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer s.removeSession(sess)
	defer s.links.dropSession(sess)
	defer func() {
		if sess.counted { // run has returned: nothing sets it any more
			s.open.dropUser(sess.dev.User)
		}
	}()
	if ctx.Err() != nil { // raced with shutdown
		sess.close(transport.CloseShutdown, "server shutting down")
		return
	}
	sess.run(sctx)
}

func hostOf(a net.Addr) string {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort().Addr().Unmap().String()
	}
	return a.String()
}

func (ss *session) close(code quic.ApplicationErrorCode, reason string) {
	ss.closeOnce.Do(func() {
		ss.c.Close(code, reason)
		ss.stop()
	})
}

// run reads and dispatches frames until the connection ends; ctx is the
// connection's, which close cancels.
func (ss *session) run(ctx context.Context) {
	defer ss.bg.Wait()
	defer ss.stop()
	timer := time.AfterFunc(time.Duration(ss.srv.cfg.AuthTimeout), func() {
		select {
		case <-ss.authed:
		default:
			if ss.link.Load() == nil { // a new device waiting to be linked has its link's life
				ss.close(transport.CloseAuthTimeout, "authentication timed out")
			}
		}
	})
	defer timer.Stop()
	var workers sync.WaitGroup
	defer workers.Wait()
	ss.lastFrame.Store(time.Now().UnixNano())
	if afk := time.Duration(ss.srv.cfg.AFKTimeout); afk > 0 {
		ss.bg.Go(func() { ss.afk(ctx, afk) })
	}
	ss.bg.Go(func() { ss.acceptStreams(ctx) }) // bulk streams (blobs.go)
	for {
		f, err := ss.c.ReadFrame()
		if err != nil {
			ss.readFailed(err)
			return
		}
		ss.lastFrame.Store(time.Now().UnixNano())
		ss.dispatch(ctx, f, &workers)
	}
}

// afk closes the connection once the client has sent no frame for d and
// the server is handling none of its requests.
func (ss *session) afk(ctx context.Context, d time.Duration) {
	t := time.NewTicker(min(d/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if ss.busy.Load() == 0 && ss.link.Load() == nil && now.Sub(time.Unix(0, ss.lastFrame.Load())) >= d {
				// Not ss.log: authenticate replaces it, on another goroutine.
				log := ss.srv.log.With("remote", ss.ip)
				if u := ss.authedUser(); u != "" {
					log = log.With("user", u, "device", ss.dev.ID)
				}
				log.Info("idle disconnect", "after", d.String())
				ss.close(transport.CloseIdle, fmt.Sprintf("disconnected after %s without activity", FormatDuration(d)))
				return
			}
		}
	}
}

// readFailed handles the end of the control stream. A malformed frame makes
// the stream unreadable from there on, so the connection is closed with the
// reason (protocol.md §3.1); the server carries on.
func (ss *session) readFailed(err error) {
	var fse *transport.FrameSizeError
	if errors.As(err, &fse) || errors.Is(err, transport.ErrVersion) || errors.Is(err, transport.ErrFrameTimeout) {
		ss.log.Warn("protocol error", "err", err)
		ss.close(transport.CloseProtocol, "protocol error: "+err.Error())
		return
	}
	ss.close(transport.CloseNormal, "")
}

// authedUser is the session's account once authenticated, else "".
func (ss *session) authedUser() string {
	if ss.isAuthed() {
		return ss.dev.User
	}
	return ""
}

func (ss *session) isAuthed() bool {
	select {
	case <-ss.authed:
		return true
	default:
		return false
	}
}

// authedDevice is the session's device once authenticated, else zero.
func (ss *session) authedDevice() chat.Device {
	if ss.isAuthed() {
		return ss.dev
	}
	return chat.Device{}
}

// decode parses a request body, answering a malformed one with an error.
func (ss *session) decode(f transport.Frame, m transport.Unmarshaler) bool {
	if err := transport.Unmarshal(f.Body, m); err != nil {
		ss.log.Debug("malformed request", "code", f.Code.String(), "err", err)
		ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("%s: %v", f.Code, err)})
		return false
	}
	return true
}

func (ss *session) reply(id uint32, code transport.Code, body transport.Marshaler) {
	if id == 0 {
		return // a notification gets no answer
	}
	if err := ss.c.WriteFrame(code, id, body); err != nil {
		ss.writeFailed(err)
	}
}

// writeFailed ends the connection after a failed write. A peer that did
// not take the bytes within write_timeout is closed, so that nothing
// stays pinned behind a stream nobody reads (docs/security.md §4.4).
func (ss *session) writeFailed(err error) {
	if errors.Is(err, transport.ErrWriteTimeout) {
		ss.srv.log.Warn("peer does not read, disconnected", "remote", ss.ip, "user", ss.authedUser(), "err", err)
		ss.close(transport.CloseLimit, "disconnected: "+err.Error())
		return
	}
	ss.stop()
}

// admitAccount counts an authenticating connection against
// max_conns_per_account; over it, the request is refused and the
// connection closed. For the read loop, before authed is closed.
func (ss *session) admitAccount(id uint32, user string) bool {
	srv := ss.srv
	if err := srv.open.addUser(user, srv.currentLimits()); err != nil {
		srv.stats.Limited.Add(1)
		ss.log.Warn("connection refused", "user", user, "why", err.Error())
		ss.fail(id, &transport.Error{Code: transport.ErrRateLimited, Message: err.Error(), RetryAfterMS: 1000})
		ss.close(transport.CloseLimit, err.Error())
		return false
	}
	ss.counted = true
	ss.c.SetMaxFrame(srv.cfg.MaxFrame) // authenticated: frames up to max_frame
	return true
}

func (ss *session) fail(id uint32, e *transport.Error) {
	if id == 0 {
		return
	}
	ss.reply(id, transport.CodeError, e)
}

// Signal forwards an ephemeral message (Conn). It never blocks the sender
// on another user's stream: the signal is queued for the deliver loop, and
// dropped when the queue is full — a device that does not read its pushes
// gets no more, and a signal that cannot be written soon is worthless
// anyway. No goroutine per signal.
func (ss *session) Signal(body []byte) {
	ss.queueSignal(transport.Frame{Code: transport.CodeSignal, Body: body})
}

// KeysLow tells the device to top up its prekeys (Conn), without blocking
// the fetching session; like a signal, it is dropped for a device that
// does not read (it is asked again at its next fetch or Auth).
func (ss *session) KeysLow(c transport.KeyCount) {
	ss.queueSignal(transport.Frame{Code: transport.CodeKeysLow, Body: transport.Marshal(&c)})
}

func (ss *session) queueSignal(f transport.Frame) {
	ss.inboxMu.Lock()
	ok := len(ss.signals) < maxSignals && ss.sigBytes+len(f.Body) <= ss.srv.cfg.PushBudget/4
	if ok {
		ss.signals = append(ss.signals, f)
		ss.sigBytes += len(f.Body)
	}
	ss.inboxMu.Unlock()
	if !ok {
		ss.srv.stats.Dropped.Add(1)
		return
	}
	select {
	case ss.wake <- struct{}{}:
	default: // already pending
	}
}

// takeSignals returns the queued signals and empties the queue.
func (ss *session) takeSignals() []transport.Frame {
	ss.inboxMu.Lock()
	defer ss.inboxMu.Unlock()
	out := ss.signals
	ss.signals, ss.sigBytes = nil, 0
	return out
}

// Close closes the connection (Conn).
func (ss *session) Close(code quic.ApplicationErrorCode, reason string) { ss.close(code, reason) }
