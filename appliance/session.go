package appliance

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
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
// Only Register, Login, Auth and Ping are accepted before authentication.

// maxInFlight bounds the Sends one connection may have waiting for commit.
const maxInFlight = 64

// pushBatch bounds the entries pushed in one stream write.
const pushBatch = 256

type session struct {
	srv  *Server
	c    *transport.Conn
	ip   string
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	// Set once by the read loop at authentication, read by other goroutines
	// only after authed is set.
	user     string
	device   uint32
	authed   chan struct{}
	inFlight chan struct{}

	wake      chan struct{} // mailbox has new entries (capacity 1)
	lastFrame atomic.Int64  // unix ns of the last frame read, for AFK

	inboxMu sync.Mutex
	inbox   []*transport.Deliver // committed entries offered by senders, in no guaranteed order
	bg      sync.WaitGroup       // the deliver goroutine

	closeOnce sync.Once
}

func (s *Server) serveConn(ctx context.Context, qc *quic.Conn) {
	defer s.conns.Done()
	s.stats.Accepted.Add(1)
	s.stats.Connections.Add(1)
	defer s.stats.Connections.Add(-1)

	ip := hostOf(qc.RemoteAddr())
	actx, cancel := context.WithTimeout(ctx, time.Duration(s.cfg.AuthTimeout))
	c, err := transport.Accept(actx, qc, s.cfg.MaxFrame)
	cancel()
	if err != nil {
		qc.CloseWithError(transport.CloseAuthTimeout, "no control stream")
		return
	}
	sctx, stop := context.WithCancel(ctx)
	sess := &session{
		srv: s, c: c, ip: ip, ctx: sctx, stop: stop,
		log:      s.log.With("remote", ip),
		authed:   make(chan struct{}),
		inFlight: make(chan struct{}, maxInFlight),
		wake:     make(chan struct{}, 1),
	}
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer s.removeSession(sess)
	if ctx.Err() != nil { // raced with shutdown
		sess.close(transport.CloseShutdown, "server shutting down")
		return
	}
	sess.run()
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

func (ss *session) run() {
	defer ss.bg.Wait()
	defer ss.stop()
	timer := time.AfterFunc(time.Duration(ss.srv.cfg.AuthTimeout), func() {
		select {
		case <-ss.authed:
		default:
			ss.close(transport.CloseAuthTimeout, "authentication timed out")
		}
	})
	defer timer.Stop()
	var workers sync.WaitGroup
	defer workers.Wait()
	ss.lastFrame.Store(time.Now().UnixNano())
	if afk := time.Duration(ss.srv.cfg.AFKTimeout); afk > 0 {
		ss.bg.Go(func() { ss.afk(afk) })
	}
	for {
		f, err := ss.c.ReadFrame()
		if err != nil {
			ss.readFailed(err)
			return
		}
		ss.lastFrame.Store(time.Now().UnixNano())
		ss.dispatch(f, &workers)
	}
}

// afk closes the connection once the client has sent no frame for d.
func (ss *session) afk(d time.Duration) {
	t := time.NewTicker(min(d/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(time.Unix(0, ss.lastFrame.Load())) >= d {
				// Not ss.log: authenticate replaces it, on another goroutine.
				log := ss.srv.log.With("remote", ss.ip)
				if u := ss.authedUser(); u != "" {
					log = log.With("user", u, "device", ss.device)
				}
				log.Info("idle disconnect", "after", d.String())
				ss.close(transport.CloseIdle, fmt.Sprintf("disconnected after %v without activity", d))
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
	if errors.As(err, &fse) || errors.Is(err, transport.ErrVersion) {
		ss.log.Warn("protocol error", "err", err)
		ss.close(transport.CloseProtocol, "protocol error: "+err.Error())
		return
	}
	ss.close(transport.CloseNormal, "")
}

// authedUser is the session's account once authenticated, else "".
func (ss *session) authedUser() string {
	if ss.isAuthed() {
		return ss.user
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

func (ss *session) dispatch(f transport.Frame, workers *sync.WaitGroup) {
	switch f.Code {
	case transport.CodePing:
		if ss.decode(f, &transport.Empty{}) {
			ss.reply(f.ID, transport.CodeOK, &transport.Empty{})
		}
		return
	case transport.CodeRegister, transport.CodeLogin, transport.CodeAuth:
		if ss.isAuthed() {
			ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: "connection is already authenticated"})
			return
		}
		ss.authenticate(f)
		return
	case transport.CodeDevices, transport.CodeSend, transport.CodeAck,
		transport.CodePublishKeys, transport.CodeFetchKeys, transport.CodeIdentity:
		if !ss.isAuthed() {
			ss.fail(f.ID, &transport.Error{Code: transport.ErrUnauthorized, Message: "authenticate first"})
			return
		}
	default:
		ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("unknown message code %d", f.Code)})
		return
	}
	switch f.Code {
	case transport.CodeDevices:
		var req transport.DevicesRequest
		if !ss.decode(f, &req) {
			return
		}
		ss.handleDevices(f.ID, &req)
	case transport.CodeSend:
		var req transport.Send
		if !ss.decode(f, &req) {
			return
		}
		// Sends wait for a group commit; run them concurrently so one
		// connection can have several in flight.
		select {
		case ss.inFlight <- struct{}{}:
		case <-ss.ctx.Done():
			return
		}
		workers.Go(func() {
			defer func() { <-ss.inFlight }()
			ss.handleSend(f.ID, &req)
		})
	case transport.CodePublishKeys:
		var req transport.PublishKeys
		if !ss.decode(f, &req) {
			return
		}
		if err := ss.srv.store.publishKeys(ss.ctx, ss.user, ss.device, &req); err != nil {
			ss.fail(f.ID, wireError(err))
			return
		}
		ss.log.Debug("keys published", "one_time", len(req.OneTime), "one_time_kem", len(req.OneTimeKEM))
		ss.reply(f.ID, transport.CodeOK, &transport.Empty{})
	case transport.CodeFetchKeys:
		var req transport.FetchKeys
		if !ss.decode(f, &req) {
			return
		}
		ss.handleFetchKeys(f.ID, &req)
	case transport.CodeIdentity:
		var req transport.DevicesRequest
		if !ss.decode(f, &req) {
			return
		}
		user, err := transport.CanonicalUser(req.User)
		if err != nil {
			ss.fail(f.ID, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
			return
		}
		key, ok := ss.srv.store.identity(user)
		switch {
		case !ok:
			ss.fail(f.ID, wireError(&NoSuchUserError{User: user}))
		case key == nil:
			ss.fail(f.ID, &transport.Error{Code: transport.ErrNoSuchUser, Message: fmt.Sprintf("%s has not published an identity key", user)})
		default:
			ss.reply(f.ID, transport.CodeIdentityKey, &transport.IdentityKey{Key: key})
		}
	case transport.CodeAck:
		var req transport.Ack
		if !ss.decode(f, &req) {
			return
		}
		ss.srv.store.ack(ss.user, ss.device, req.Seqs)
		if f.ID != 0 {
			ss.reply(f.ID, transport.CodeOK, &transport.Empty{})
		}
	}
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
		ss.stop()
	}
}

func (ss *session) fail(id uint32, e *transport.Error) {
	if id == 0 {
		return
	}
	ss.reply(id, transport.CodeError, e)
}

// authenticate handles Register, Login and Auth (protocol.md §5).
func (ss *session) authenticate(f transport.Frame) {
	exporter, err := ss.c.Exporter()
	if err != nil {
		ss.fail(f.ID, &transport.Error{Code: transport.ErrInternal, Message: "no TLS exporter"})
		return
	}
	srv := ss.srv
	now := srv.cfg.Now()
	var w transport.Welcome
	receive := false
	switch f.Code {
	case transport.CodeRegister, transport.CodeLogin:
		var req transport.Enroll
		if !ss.decode(f, &req) {
			return
		}
		user, err := transport.CanonicalUser(req.User)
		if err != nil {
			if f.Code == transport.CodeRegister {
				srv.recordEvent(chat.EventRegisterRefused, ss.ip, err.Error()) // quotes the name
			} else {
				srv.recordEvent(chat.EventAuthFailure, ss.ip, fmt.Sprintf("user %q: invalid user name", req.User))
			}
			ss.fail(f.ID, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
			return
		}
		if !ed25519.Verify(req.DeviceKey, transport.AuthTranscript(f.Code, exporter, user, 0), req.Signature) {
			ss.authFailed(f.ID, user, "device signature invalid")
			return
		}
		w.User = user
		if f.Code == transport.CodeRegister {
			w.Device, err = ss.register(user, &req, now)
		} else {
			w.Device, err = ss.login(user, &req, now)
		}
		if err != nil {
			if errors.Is(err, errBadCredentials) {
				ss.authFailed(f.ID, user, "wrong password or unknown user")
			} else {
				if f.Code == transport.CodeRegister && ss.ctx.Err() == nil {
					srv.recordEvent(chat.EventRegisterRefused, ss.ip, fmt.Sprintf("user name %q: %v", user, err))
				}
				ss.fail(f.ID, wireError(err))
			}
			return
		}
	case transport.CodeAuth:
		var req transport.Auth
		if !ss.decode(f, &req) {
			return
		}
		user, err := transport.CanonicalUser(req.User)
		if err != nil {
			ss.authFailed(f.ID, req.User, "invalid user name")
			return
		}
		dev, ok := srv.store.lookupDevice(user, req.Device)
		if !ok || !ed25519.Verify(dev.Key, transport.AuthTranscript(transport.CodeAuth, exporter, user, req.Device), req.Signature) {
			ss.authFailed(f.ID, user, "unknown device or bad signature")
			return
		}
		w.User, w.Device = user, req.Device
		w.Keys = srv.store.keyCount(user, req.Device)
		receive = req.Receive
		srv.store.touchDevice(user, req.Device, now)
	}
	if b, banned := srv.bans.userBanned(w.User, now); banned {
		ss.log.Warn("banned account refused", "user", w.User)
		ss.fail(f.ID, &transport.Error{Code: transport.ErrUnauthorized, Message: "account banned: " + b.Reason})
		ss.close(transport.CloseBanned, "account banned: "+b.Reason)
		return
	}
	ss.user, ss.device = w.User, w.Device
	ss.log = ss.log.With("user", ss.user, "device", ss.device)
	close(ss.authed)
	w.ServerTime = now.UnixMilli()
	ss.reply(f.ID, transport.CodeWelcome, &w)
	ss.log.Debug("authenticated", "receive", receive)
	if receive {
		srv.addReceiver(ss)
		ss.bg.Go(ss.deliver)
	}
}

func (ss *session) authFailed(id uint32, user, why string) {
	srv := ss.srv
	srv.stats.AuthFailed.Add(1)
	ss.log.Warn("authentication failed", "user", user, "why", why)
	srv.recordEvent(chat.EventAuthFailure, ss.ip, fmt.Sprintf("user %q: %s", user, why))
	if ok, _ := srv.failLimit.allow(ss.ip, srv.cfg.Now()); !ok {
		// Like ejabberd's mod_fail2ban; this line is what fail2ban matches.
		ban := time.Duration(srv.currentLimits().LoginBan)
		srv.log.Warn("too many authentication failures, address banned", "remote", ss.ip, "for", ban.String())
		go srv.Ban(context.Background(), ss.ip, "too many failed logins", ban)
	}
	// Deliberately vague on the wire (docs/design.md §13: authentication failures stay vague).
	ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "authentication failed: invalid user name, password or device key"})
}

func (ss *session) hash(fn func()) {
	ss.srv.hashSem <- struct{}{}
	defer func() { <-ss.srv.hashSem }()
	fn()
}

func (ss *session) register(user string, req *transport.Enroll, now time.Time) (uint32, error) {
	if len(req.Password) < MinPassword {
		return 0, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("password must be at least %d characters", MinPassword)}
	}
	srv := ss.srv
	switch srv.cfg.Registration {
	case RegistrationClosed:
		return 0, &transport.Error{Code: transport.ErrRegClosed, Message: "registration is closed on this server"}
	case RegistrationInvite:
		if req.Invite == "" {
			return 0, &transport.Error{Code: transport.ErrRegClosed, Message: "registration needs a valid invite code (--invite)"}
		}
	}
	if ok, retry := srv.regLimit.allow(ss.ip, srv.cfg.Now()); !ok {
		srv.stats.Limited.Add(1)
		srv.recordEvent(chat.EventRateLimited, ss.ip, "registrations")
		return 0, rateLimited("registrations", retry)
	}
	if _, exists := ss.srv.store.lookupUser(user); exists {
		return 0, errUserExists // checked early to spare the hash; checked again on write
	}
	var phc string
	var err error
	ss.hash(func() { phc, err = hashPassword(ss.srv.rand, req.Password) })
	if err != nil {
		return 0, err
	}
	invite := ""
	if srv.cfg.Registration == RegistrationInvite {
		invite = req.Invite
	}
	if err := ss.srv.store.createAccount(ss.ctx, user, phc, req.DeviceKey, req.DeviceName, invite, now); err != nil {
		return 0, err
	}
	ss.log.Info("registered", "user", user)
	srv.recordEvent(chat.EventRegistered, user, "from "+ss.ip)
	return 1, nil
}

func (ss *session) login(user string, req *transport.Enroll, now time.Time) (uint32, error) {
	rec, ok := ss.srv.store.lookupUser(user)
	phc := rec.PasswordHash
	if !ok {
		phc = dummyHash() // same cost as for a real account
	}
	var match bool
	ss.hash(func() { match = checkPassword(phc, req.Password) })
	if !ok || !match {
		return 0, errBadCredentials
	}
	id, err := ss.srv.store.addDevice(ss.ctx, user, phc, req.DeviceKey, req.DeviceName, now)
	if err == nil {
		ss.log.Info("device added", "user", user, "device", id)
	}
	return id, err
}

func (ss *session) handleDevices(id uint32, req *transport.DevicesRequest) {
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return
	}
	list, ok := ss.srv.store.devices(user)
	if !ok {
		ss.fail(id, wireError(&NoSuchUserError{User: user}))
		return
	}
	ss.reply(id, transport.CodeDeviceList, &transport.DeviceList{Devices: list})
}

func (ss *session) handleSend(id uint32, req *transport.Send) {
	for i := range req.Envelopes {
		u, err := transport.CanonicalUser(req.Envelopes[i].User)
		if err != nil {
			ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
			return
		}
		req.Envelopes[i].User = u
	}
	srv := ss.srv
	now := srv.cfg.Now()
	if until, muted := srv.mutes.muted(ss.user, now); muted {
		msg := "you are muted on this server"
		if !until.IsZero() {
			msg += " until " + until.UTC().Format(time.RFC3339)
		}
		ss.fail(id, &transport.Error{Code: transport.ErrMuted, Message: msg})
		return
	}
	size := 0
	for i := range req.Envelopes {
		size += len(req.Envelopes[i].Payload)
	}
	if ok, retry := srv.msgLimit.allow(ss.user, now); !ok {
		ss.throttled(id, "messages", retry)
		return
	}
	if ok, retry := srv.byteLimit.allowN(ss.user, size, now); !ok {
		ss.throttled(id, "bytes", retry)
		return
	}
	if req.Ephemeral {
		ss.handleSignal(id, req)
		return
	}
	res, err := srv.store.storeMessage(ss.ctx, ss.user, ss.device, req, srv.cfg.Now())
	if err != nil {
		if ss.ctx.Err() == nil {
			ss.log.Debug("send refused", "err", err)
		}
		ss.fail(id, wireError(err))
		return
	}
	if !res.Duplicate {
		srv.stats.MessagesIn.Add(1)
		srv.stats.BytesIn.Add(int64(size))
		srv.push(res.Entries)
	}
	ss.reply(id, transport.CodeSent, &transport.Sent{ServerTime: res.ServerTime, Duplicate: res.Duplicate})
}

// throttled refuses a request over a rate limit and, with flood_ban set,
// bans a source that keeps going.
func (ss *session) throttled(id uint32, what string, retry time.Duration) {
	srv := ss.srv
	srv.stats.Limited.Add(1)
	srv.recordEvent(chat.EventRateLimited, ss.user, what+" from "+ss.ip)
	ss.fail(id, rateLimited(what, retry))
	limits := srv.currentLimits()
	if limits.FloodBan == 0 {
		return
	}
	if ok, _ := srv.floodLimit.allow(ss.ip, srv.cfg.Now()); !ok {
		ban := time.Duration(limits.LoginBan)
		srv.log.Warn("flooding, address banned", "remote", ss.ip, "user", ss.user, "for", ban.String())
		go srv.Ban(context.Background(), ss.ip, "flooding", ban)
	}
}

// rateLimited is the answer to a throttled request.
func rateLimited(what string, retry time.Duration) *transport.Error {
	return &transport.Error{
		Code:         transport.ErrRateLimited,
		Message:      fmt.Sprintf("rate limited (%s), retry after %v", what, retry.Round(time.Millisecond)),
		RetryAfterMS: uint64(max(retry.Milliseconds(), 1)),
	}
}

// handleSignal forwards an ephemeral Send to the recipients' connected
// devices and stores nothing (protocol.md §6.5).
func (ss *session) handleSignal(id uint32, req *transport.Send) {
	srv := ss.srv
	if err := srv.store.checkSend(ss.user, ss.device, req.Envelopes); err != nil {
		ss.fail(id, wireError(err))
		return
	}
	now := srv.cfg.Now().UnixMilli()
	var online uint32
	for i := range req.Envelopes {
		env := &req.Envelopes[i]
		srv.mu.Lock()
		peer := srv.receivers[string(deviceKey(env.User, env.Device))]
		srv.mu.Unlock()
		if peer == nil {
			continue
		}
		sig := &transport.Signal{From: ss.user, FromDevice: ss.device, MessageID: req.MessageID, ServerTime: now, Payload: env.Payload}
		online++
		// Never block this sender on another user's stream; a signal that
		// cannot be written soon is worthless anyway.
		go peer.c.WriteFrame(transport.CodeSignal, 0, sig)
	}
	ss.reply(id, transport.CodeSent, &transport.Sent{ServerTime: now, Online: online})
}

// handleFetchKeys hands out prekey bundles, rate-limited per requesting
// account so that one-time prekeys cannot be drained (protocol.md §9.3).
func (ss *session) handleFetchKeys(id uint32, req *transport.FetchKeys) {
	if ok, retry := ss.srv.fetchLimit.allow(ss.user, ss.srv.cfg.Now()); !ok {
		ss.fail(id, &transport.Error{Code: transport.ErrRateLimited, Message: fmt.Sprintf("rate limited: too many key fetches, retry after %v", retry.Round(time.Millisecond)), RetryAfterMS: uint64(retry.Milliseconds())})
		return
	}
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return
	}
	bundles, low, err := ss.srv.store.fetchBundles(ss.ctx, user, req.Devices)
	if err != nil {
		ss.fail(id, wireError(err))
		return
	}
	ss.reply(id, transport.CodeKeyBundles, &transport.KeyBundles{Bundles: bundles})
	for _, l := range low {
		ss.srv.notifyKeysLow(l)
	}
}

// maxInbox bounds the entries a session holds in memory; past it the
// deliver loop reads them from the store instead.
const maxInbox = 1024

// offer gives the session a committed entry of its mailbox.
func (ss *session) offer(d *transport.Deliver) {
	ss.inboxMu.Lock()
	if len(ss.inbox) < maxInbox {
		ss.inbox = append(ss.inbox, d)
	}
	ss.inboxMu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default: // already pending
	}
}

// takeInbox returns the offered entries that continue the mailbox right
// after seq last, in order; ok is false when they do not (a gap, an
// overflow): then the store is read instead, which is always correct.
func (ss *session) takeInbox(last uint64) (_ []*transport.Deliver, ok bool) {
	ss.inboxMu.Lock()
	in := ss.inbox
	ss.inbox = nil
	ss.inboxMu.Unlock()
	slices.SortFunc(in, func(a, b *transport.Deliver) int { return cmp.Compare(a.Seq, b.Seq) })
	in = slices.DeleteFunc(in, func(d *transport.Deliver) bool { return d.Seq <= last })
	for i, d := range in {
		if d.Seq != last+uint64(i)+1 {
			return nil, false
		}
	}
	return in, true
}

// deliver pushes the device's mailbox: first the backlog, then QueueEmpty,
// then new entries as they are stored (protocol.md §6.2). Entries stay in
// the mailbox until acked, so a connection lost mid-push loses nothing.
// New entries come from memory when senders offered them in sequence;
// otherwise from the store.
func (ss *session) deliver() {
	var last uint64
	sentEmpty := false
	frames := make([]transport.Frame, 0, pushBatch+1)
	fromStore := true
	for {
		var entries []*transport.Deliver
		if !fromStore {
			var ok bool
			entries, ok = ss.takeInbox(last)
			fromStore = !ok
		}
		if fromStore {
			ss.takeInbox(last) // what is offered now is in the store too
			for _, d := range ss.srv.store.pending(ss.user, ss.device, last, pushBatch) {
				entries = append(entries, &d)
			}
		}
		frames = frames[:0]
		bytesOut := 0
		for _, d := range entries {
			frames = append(frames, transport.Frame{Code: transport.CodeDeliver, Body: transport.Marshal(d)})
			last = d.Seq
			bytesOut += len(d.Payload)
		}
		if fromStore && len(entries) < pushBatch && !sentEmpty {
			frames = append(frames, transport.Frame{Code: transport.CodeQueueEmpty})
			sentEmpty = true
		}
		if len(frames) > 0 {
			if err := ss.c.WriteFrames(frames...); err != nil {
				ss.stop()
				return
			}
			ss.srv.stats.Deliveries.Add(int64(len(entries)))
			ss.srv.stats.BytesOut.Add(int64(bytesOut))
		}
		if fromStore && len(entries) == pushBatch {
			continue // more backlog
		}
		if fromStore {
			fromStore = false
		} else if len(entries) > 0 {
			continue // more may have been offered meanwhile
		}
		select {
		case <-ss.wake:
		case <-ss.ctx.Done():
			return
		}
	}
}

// wireError maps an error to its wire form; unexpected errors are logged
// and reported without detail.
func wireError(err error) *transport.Error {
	var we *transport.Error
	var nsu *NoSuchUserError
	var dm *DeviceMismatchError
	switch {
	case errors.As(err, &we):
		return we
	case errors.As(err, &nsu):
		return &transport.Error{Code: transport.ErrNoSuchUser, Message: nsu.Error()}
	case errors.As(err, &dm):
		return &transport.Error{Code: transport.ErrDeviceMismatch, Message: dm.Error(), Devices: dm.Devices}
	case errors.Is(err, errUserExists):
		return &transport.Error{Code: transport.ErrUserExists, Message: err.Error()}
	case errors.Is(err, errBadCredentials):
		return &transport.Error{Code: transport.ErrUnauthorized, Message: "authentication failed"}
	case errors.Is(err, errTooManyDevices):
		return &transport.Error{Code: transport.ErrTooManyDevices, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &transport.Error{Code: transport.ErrUnavailable, Message: "server shutting down"}
	}
	slog.Error("request failed", "err", err)
	return &transport.Error{Code: transport.ErrInternal, Message: "internal server error"}
}
