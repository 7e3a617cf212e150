package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// The handler table (docs/design.md §4.1): every request a session accepts,
// with when it is accepted, the rate limit it counts against and its
// handler. A code missing from the table is refused as unknown.

// authRule says when a request is accepted (protocol.md §5).
type authRule uint8

const (
	anyTime    authRule = iota // before and after authentication
	beforeAuth                 // only before: the requests that authenticate
	afterAuth                  // only after authentication
)

// limitClass is the rate limit a request counts against (session.take).
type limitClass uint8

const (
	noLimit        limitClass = iota
	limitRegister             // registrations per address: register_rate
	limitMessages             // messages and payload bytes per account: message_rate, byte_rate, flood_ban
	limitKeyFetch             // prekey fetches per account: key_fetch_rate
	limitKeys                 // key uploads per account: publish_keys_rate
	limitAck                  // acked sequence numbers per account: ack_rate
	limitLookup               // device and identity lookups per account: lookup_rate
	limitName                 // names checked per address: lookup_rate, shared with Registers refused for a taken name
	limitLinkStart            // LinkStarts per address (fixed, links.go)
	limitLink                 // LinkFind, LinkApprove, PublishDeviceList, RevokeDevice and RenameDevice per account (fixed, links.go)
)

// route is one row of the handler table.
type route struct {
	auth  authRule
	limit limitClass
	// concurrent requests run on a worker of their own, at most
	// maxInFlight per connection: Sends wait for a group commit, and one
	// connection may have several waiting.
	concurrent bool
	// notify: the request may come with id 0, as a notification whose
	// outcome the client does not learn (protocol.md §3.3). Any other
	// request with id 0 closes the connection: it would run unanswered
	// (a FetchKeys burning prekeys nobody receives, a Login that
	// authenticates silently).
	notify bool
	handle func(ctx context.Context, ss *session, f transport.Frame, limit limitClass)
}

var routes = map[transport.Code]route{
	transport.CodePing:        {auth: anyTime, handle: on(handlePing).handle},
	transport.CodeRegister:    {auth: beforeAuth, limit: limitRegister, handle: on(handleRegister).withCheck(checkRegister).withRefused(registerRefused).handle},
	transport.CodeLogin:       {auth: beforeAuth, handle: on(handleLogin).withCheck(checkLogin).handle},
	transport.CodeAuth:        {auth: beforeAuth, handle: on(handleAuth).handle},
	transport.CodeCheckName:   {auth: beforeAuth, limit: limitName, handle: on(handleCheckName).withCheck(checkCheckName).handle},
	transport.CodeDevices:     {auth: afterAuth, limit: limitLookup, handle: on(handleDevices).handle},
	transport.CodeSend:        {auth: afterAuth, limit: limitMessages, concurrent: true, notify: true, handle: on(handleSend).withCheck(checkSend).withTokens(sendTokens).withCost(sendSize).handle},
	transport.CodeAck:         {auth: afterAuth, limit: limitAck, notify: true, handle: on(handleAck).withCost(ackSize).handle},
	transport.CodePublishKeys: {auth: afterAuth, limit: limitKeys, handle: on(handlePublishKeys).handle},
	transport.CodeFetchKeys:   {auth: afterAuth, limit: limitKeyFetch, handle: on(handleFetchKeys).handle},
	transport.CodeIdentity:    {auth: afterAuth, limit: limitLookup, handle: on(handleIdentity).handle},
	// Linking a device and the signed device list (links.go, protocol.md §5.4).
	transport.CodeLinkStart:         {auth: beforeAuth, limit: limitLinkStart, handle: on(handleLinkStart).withCheck(checkLinkStart).handle},
	transport.CodeLinkFind:          {auth: afterAuth, limit: limitLink, handle: on(handleLinkFind).handle},
	transport.CodeLinkApprove:       {auth: afterAuth, limit: limitLink, handle: on(handleLinkApprove).handle},
	transport.CodePublishDeviceList: {auth: afterAuth, limit: limitLink, handle: on(handlePublishDeviceList).handle},
	transport.CodeRevokeDevice:      {auth: afterAuth, limit: limitLink, handle: on(handleRevokeDevice).handle},
	transport.CodeAccountDevices:    {auth: afterAuth, limit: limitLookup, handle: on(handleAccountDevices).handle},
	transport.CodeRenameDevice:      {auth: afterAuth, limit: limitLink, handle: on(handleRenameDevice).handle},
}

// request is a decodable request body.
type request[T any] interface {
	*T
	transport.Unmarshaler
}

// handler is how a route handles its request: decode, check, count against
// the route's limit, serve.
type handler[T any, P request[T]] struct {
	// check refuses a request before it counts against the limit: the
	// cheap checks that must not cost a client tokens. It answers a
	// refusal itself and may canonicalize the request in place.
	check func(ctx context.Context, ss *session, id uint32, req P) bool
	// cost is what the request counts against the limit; nil is 1. For
	// the messages limit it is the bytes, and tokens the messages.
	cost   func(req P) int
	tokens func(req P) int
	// refused, if set, is told of a refusal by the limit before the
	// refusal is answered.
	refused func(ctx context.Context, ss *session, req P, e *transport.Error)
	serve   func(ctx context.Context, ss *session, id uint32, req P)
}

// on is the handler that serves requests with serve.
func on[T any, P request[T]](serve func(ctx context.Context, ss *session, id uint32, req P)) handler[T, P] {
	return handler[T, P]{serve: serve}
}

func (h handler[T, P]) withCheck(check func(ctx context.Context, ss *session, id uint32, req P) bool) handler[T, P] {
	h.check = check
	return h
}

func (h handler[T, P]) withCost(cost func(req P) int) handler[T, P] {
	h.cost = cost
	return h
}

func (h handler[T, P]) withTokens(tokens func(req P) int) handler[T, P] {
	h.tokens = tokens
	return h
}

func (h handler[T, P]) withRefused(refused func(ctx context.Context, ss *session, req P, e *transport.Error)) handler[T, P] {
	h.refused = refused
	return h
}

func (h handler[T, P]) handle(ctx context.Context, ss *session, f transport.Frame, limit limitClass) {
	req := P(new(T))
	if !ss.decode(f, req) {
		return
	}
	if h.check != nil && !h.check(ctx, ss, f.ID, req) {
		return
	}
	cost, tokens := 1, 1
	if h.cost != nil {
		cost = h.cost(req)
	}
	if h.tokens != nil {
		tokens = h.tokens(req)
	}
	if e := ss.take(limit, tokens, cost); e != nil {
		if h.refused != nil {
			h.refused(ctx, ss, req, e)
		}
		ss.fail(f.ID, e)
		return
	}
	h.serve(ctx, ss, f.ID, req)
}

// dispatch looks a frame up in the handler table and runs its handler.
func (ss *session) dispatch(ctx context.Context, f transport.Frame, workers *sync.WaitGroup) {
	r, ok := routes[f.Code]
	if f.ID == 0 && !r.notify {
		ss.log.Debug("request without an id", "code", f.Code.String())
		ss.close(transport.CloseProtocol, fmt.Sprintf("protocol error: %s with request id 0 (only Ack and Send may be notifications)", f.Code))
		return
	}
	if !ok {
		ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("unknown message code %d", f.Code)})
		return
	}
	switch authed := ss.isAuthed(); {
	case ss.link.Load() != nil && f.Code != transport.CodePing:
		ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: "this connection waits for its link to be approved"})
		return
	case r.auth == beforeAuth && authed:
		ss.fail(f.ID, &transport.Error{Code: transport.ErrBadRequest, Message: "connection is already authenticated"})
		return
	case r.auth == afterAuth && !authed:
		ss.fail(f.ID, &transport.Error{Code: transport.ErrUnauthorized, Message: "authenticate first"})
		return
	}
	// The time the server takes over a request is not the client's
	// silence: the idle clock (afk_timeout) starts again when it answers.
	if !r.concurrent {
		ss.busy.Add(1)
		r.handle(ctx, ss, f, r.limit)
		ss.lastFrame.Store(time.Now().UnixNano())
		ss.busy.Add(-1)
		return
	}
	select {
	case ss.inFlight <- struct{}{}:
	case <-ctx.Done():
		return
	}
	ss.busy.Add(1)
	workers.Go(func() {
		defer func() { <-ss.inFlight }()
		r.handle(ctx, ss, f, r.limit)
		ss.lastFrame.Store(time.Now().UnixNano())
		ss.busy.Add(-1)
	})
}

// take counts a request against its limit class and returns the refusal
// to answer when it is over. tokens is what a Send counts as messages,
// capped at the burst so that a group Send to the largest group allowed is
// never refused for ever, and cost as bytes (protocol.md §6.6).
func (ss *session) take(class limitClass, tokens, cost int) *transport.Error {
	srv := ss.srv
	now := srv.cfg.Now()
	switch class {
	case limitRegister:
		if ok, retry := srv.regLimit.allow(ss.source(), now); !ok {
			srv.stats.Limited.Add(1)
			srv.recordEvent(chat.EventRateLimited, ss.source(), "registrations")
			return rateLimited("registrations", retry)
		}
	case limitMessages:
		l := srv.currentLimits()
		if ok, retry := srv.msgLimit.allowN(ss.dev.User, min(tokens, l.MessageBurst), now); !ok {
			return ss.throttled("messages", retry)
		}
		if ok, retry := srv.byteLimit.allowN(ss.dev.User, cost, now); !ok {
			return ss.throttled("bytes", retry)
		}
	case limitKeyFetch:
		if ok, retry := srv.fetchLimit.allow(ss.dev.User, now); !ok {
			return rateLimited("key fetches", retry)
		}
	case limitKeys:
		if ok, retry := srv.keysLimit.allow(ss.dev.User, now); !ok {
			return ss.throttled("key uploads", retry)
		}
	case limitAck:
		// A refused Ack (id 0) gets no answer and deletes nothing: the
		// entries stay in the mailbox and come again; nothing is lost.
		if ok, retry := srv.ackLimit.allowN(ss.dev.User, cost, now); !ok {
			return ss.throttled("acks", retry)
		}
	case limitLookup:
		if ok, retry := srv.lookLimit.allow(ss.dev.User, now); !ok {
			return ss.throttled("lookups", retry)
		}
	case limitName:
		return ss.takeName()
	case limitLinkStart:
		if ok, retry := srv.linkStartLimit.allow(ss.source(), now); !ok {
			srv.stats.Limited.Add(1)
			srv.recordEvent(chat.EventRateLimited, ss.source(), "link starts")
			return rateLimited("link starts", retry)
		}
	case limitLink:
		if ok, retry := srv.linkLimit.allow(ss.dev.User, now); !ok {
			return ss.throttled("device links and lists", retry)
		}
	}
	return nil
}

// takeName counts one answer about whether a name is taken against the
// address's name checks (lookup_rate per source): a CheckName, or a
// Register refused because the name is taken. Both say the same, so they
// share one budget (protocol.md §5.1, docs/security.md §4.4).
func (ss *session) takeName() *transport.Error {
	srv := ss.srv
	if ok, retry := srv.nameLimit.allow(ss.source(), srv.cfg.Now()); !ok {
		srv.stats.Limited.Add(1)
		srv.recordEvent(chat.EventRateLimited, ss.source(), "name checks")
		return rateLimited("name checks", retry)
	}
	return nil
}

// throttled counts a refusal by the messages limit and, with flood_ban
// set, bans a source that keeps going.
func (ss *session) throttled(what string, retry time.Duration) *transport.Error {
	srv := ss.srv
	srv.stats.Limited.Add(1)
	srv.recordEvent(chat.EventRateLimited, ss.dev.User, what+" from "+ss.ip)
	if limits := srv.currentLimits(); limits.FloodBan > 0 {
		if ok, _ := srv.floodLimit.allow(ss.source(), srv.cfg.Now()); !ok {
			go srv.autoBan(ss, "flooding", "flooding, address banned")
		}
	}
	return rateLimited(what, retry)
}

// rateLimited is the answer to a throttled request.
func rateLimited(what string, retry time.Duration) *transport.Error {
	return &transport.Error{
		Code:         transport.ErrRateLimited,
		Message:      fmt.Sprintf("rate limited (%s), retry after %s", what, retryText(retry)),
		RetryAfterMS: uint64(max(retry.Milliseconds(), 1)),
	}
}

// retryText is how long to wait, as people write it (FormatDuration):
// whole seconds, rounded up, from one second on (15m, 1m30s), else
// milliseconds (250ms).
func retryText(d time.Duration) string {
	if d >= time.Second {
		d = (d + time.Second - 1).Truncate(time.Second)
	} else {
		d = max(d.Round(time.Millisecond), time.Millisecond)
	}
	return FormatDuration(d)
}

func handlePing(ctx context.Context, ss *session, id uint32, _ *transport.Empty) {
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

func handleDevices(ctx context.Context, ss *session, id uint32, req *transport.DevicesRequest) {
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return
	}
	list, err := ss.srv.store.ActiveDevices(user)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	signed, err := ss.srv.store.DeviceList(user)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	all, err := ss.srv.store.ListDevices(user)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	answer := &transport.DeviceList{Devices: wireDevices(list), SignedList: signed.Bytes}
	for _, d := range all {
		if !slices.ContainsFunc(list, func(k store.DeviceKey) bool { return k.Device == d.Device }) {
			answer.Unlinked = append(answer.Unlinked, transport.DeviceInfo{User: d.Device.User, ID: d.Device.ID, Key: d.Key})
		}
	}
	ss.reply(id, transport.CodeDeviceList, answer)
}

// ackSize is an Ack's sequence numbers, what the acks limit counts: each
// is a delete on the store's single writer.
func ackSize(req *transport.Ack) int { return max(1, len(req.Seqs)) }

func handleAck(ctx context.Context, ss *session, id uint32, req *transport.Ack) {
	ss.srv.store.Ack(ss.authedDevice(), req.Seqs)
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

func handlePublishKeys(ctx context.Context, ss *session, id uint32, req *transport.PublishKeys) {
	if err := publishKeys(ctx, ss.srv.store, ss.authedDevice(), req); err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	ss.log.Debug("keys published", "one_time", len(req.OneTime), "one_time_kem", len(req.OneTimeKEM))
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

// handleFetchKeys hands out prekey bundles, rate-limited per requesting
// account so that one-time prekeys cannot be drained (protocol.md §9.3).
func handleFetchKeys(ctx context.Context, ss *session, id uint32, req *transport.FetchKeys) {
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return
	}
	if ok, retry := ss.srv.pairFetch.allow(ss.dev.User+"\x00"+user, ss.srv.cfg.Now()); !ok {
		ss.fail(id, rateLimited("key fetches of "+user, retry))
		return
	}
	bundles, err := ss.srv.store.FetchBundles(ctx, user, req.Devices)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	out := &transport.KeyBundles{Bundles: make([]transport.KeyBundle, len(bundles))}
	for i, b := range bundles {
		out.Bundles[i] = transport.KeyBundle{Device: b.Device, Bundle: encodeBundle(b)}
	}
	ss.reply(id, transport.CodeKeyBundles, out)
	for _, b := range bundles {
		if keysLow(b.Left) {
			ss.srv.router.KeysLow(chat.DeviceOf(user, b.Device), wireKeyCount(b.Left))
		}
	}
}

func handleIdentity(ctx context.Context, ss *session, id uint32, req *transport.DevicesRequest) {
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return
	}
	key, err := ss.srv.store.Identity(user)
	switch {
	case err != nil:
		ss.fail(id, ss.wireError(err))
	case key == nil:
		ss.fail(id, &transport.Error{Code: transport.ErrNoSuchUser, Message: fmt.Sprintf("%s has not published an identity key", user)})
	default:
		ss.reply(id, transport.CodeIdentityKey, &transport.IdentityKey{Key: key})
	}
}

// wireDevices is a device list as the wire carries it.
func wireDevices(list []store.DeviceKey) []transport.DeviceInfo {
	out := make([]transport.DeviceInfo, len(list))
	for i, d := range list {
		out[i] = transport.DeviceInfo{User: d.Device.User, ID: d.Device.ID, Key: d.Key}
	}
	return out
}

// wireError is where domain errors become wire errors (protocol.md §4.1):
// the one place. Errors already in wire form pass through; unexpected
// ones are logged (to log; nil: slog's default) and reported without
// detail. A disk that is full is reported as the store's total bound is,
// "storage full" (protocol.md §4.1), which the client retries.
func wireError(log *slog.Logger, err error) *transport.Error {
	if log == nil {
		log = slog.Default()
	}
	var we *transport.Error
	var nsu *store.NoSuchUserError
	var dm *store.DeviceMismatchError
	switch {
	case errors.As(err, &we):
		return we
	case errors.As(err, &nsu):
		return &transport.Error{Code: transport.ErrNoSuchUser, Message: nsu.Error()}
	case errors.As(err, &dm):
		return &transport.Error{Code: transport.ErrDeviceMismatch, Message: dm.Error(), Devices: wireDevices(dm.Devices)}
	case errors.Is(err, store.ErrNoDevices):
		return &transport.Error{Code: transport.ErrNoSuchUser, Message: err.Error()}
	case errors.Is(err, store.ErrMailboxFull):
		return &transport.Error{Code: transport.ErrFull, Message: err.Error()}
	case errors.Is(err, store.ErrStoreFull):
		return storageFullError()
	case isDiskFull(err):
		// The session's wireError has the server note it (diskfull.go).
		log.Debug("request refused: storage full", "err", err)
		return storageFullError()
	case errors.Is(err, store.ErrNoRecipients), errors.Is(err, store.ErrDeviceKeyMismatch), errors.Is(err, store.ErrIdentityMismatch),
		errors.Is(err, store.ErrToSendingDevice), errors.Is(err, store.ErrNotPublished):
		return &transport.Error{Code: transport.ErrBadRequest, Message: err.Error()}
	case errors.Is(err, store.ErrStaleDeviceList), errors.Is(err, store.ErrDeviceListRefused):
		return &transport.Error{Code: transport.ErrBadRequest, Message: err.Error()}
	case errors.As(err, new(*store.BlobQuotaError)):
		return &transport.Error{Code: transport.ErrTooLarge, Message: err.Error()}
	case errors.Is(err, store.ErrFull):
		return &transport.Error{Code: transport.ErrFull, Message: err.Error()}
	case errors.As(err, new(*store.ChunkError)), errors.Is(err, store.ErrBlobIncomplete):
		return &transport.Error{Code: transport.ErrBadRequest, Message: err.Error()}
	case errors.Is(err, store.ErrNotRecipient):
		return &transport.Error{Code: transport.ErrUnauthorized, Message: err.Error()}
	case errors.Is(err, store.ErrUserExists):
		return &transport.Error{Code: transport.ErrUserExists, Message: err.Error()}
	case errors.Is(err, store.ErrCredentialsChanged), errors.Is(err, store.ErrNoSuchDevice), errors.Is(err, errBadCredentials):
		return &transport.Error{Code: transport.ErrUnauthorized, Message: "authentication failed"}
	case errors.Is(err, store.ErrTooManyGroups):
		return &transport.Error{Code: transport.ErrTooLarge, Message: err.Error()}
	case errors.Is(err, store.ErrTooManyDevices):
		return &transport.Error{Code: transport.ErrTooManyDevices, Message: err.Error()}
	case errors.Is(err, store.ErrInvalidInvite):
		return &transport.Error{Code: transport.ErrRegClosed, Message: err.Error()}
	case errors.Is(err, store.ErrDamaged):
		// Logged, counted and recorded where the store met it
		// (storecheck.go); the client may retry later.
		return &transport.Error{Code: transport.ErrInternal, Message: "the server's storage is damaged where this request needs it; its operator has been told"}
	case errors.Is(err, context.Canceled):
		return &transport.Error{Code: transport.ErrUnavailable, Message: "server shutting down"}
	}
	log.Error("request failed", "err", err)
	return &transport.Error{Code: transport.ErrInternal, Message: "internal server error"}
}
