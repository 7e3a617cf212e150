package appliance

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
	"golang.org/x/crypto/argon2"
)

// MinPassword is the shortest password taken, for an account (checked at
// registration) and for the web admin alike.
const MinPassword = 8

// argon2id parameters: OWASP's recommended minimum (19 MiB, t=2, p=1), which
// a Raspberry Pi computes in well under a second. They are stored with each
// hash, so raising them later needs no migration.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// hashPassword returns the PHC string of an argon2id hash of password.
func hashPassword(rand io.Reader, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// checkPassword reports whether password matches the PHC string phc.
func checkPassword(phc, password string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	if m > 256<<10 || t > 10 || p == 0 || p > 16 {
		return false // refuse to burn resources on a corrupt record
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when a login names an unknown user, so that
// the answer takes as long as for a known one.
var dummyHash = sync.OnceValue(func() string {
	h, _ := hashPassword(strings.NewReader("securechat-dummy-salt"), "securechat-dummy-password")
	return h
})

// errBadCredentials is a Login whose password does not match.
var errBadCredentials = errors.New("invalid user name or password")

// Register, Login and Auth (protocol.md §5). Their checks run before the
// registration limit: a name or signature that fails costs no token.

// checkEnroll checks a Register's or Login's user name and device
// signature, and canonicalizes the name in place.
func checkEnroll(ctx context.Context, ss *session, id uint32, code transport.Code, req *transport.Enroll) bool {
	exporter, err := ss.c.Exporter()
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInternal, Message: "no TLS exporter"})
		return false
	}
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		if code == transport.CodeRegister {
			ss.srv.recordEvent(chat.EventRegisterRefused, ss.source(), err.Error()) // quotes the name
		} else {
			ss.srv.recordEvent(chat.EventAuthFailure, ss.source(), fmt.Sprintf("user %q: invalid user name", req.User))
		}
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return false
	}
	if !ed25519.Verify(req.DeviceKey, transport.AuthTranscript(code, exporter, user, 0), req.Signature) {
		ss.authFailed(id, user, "device signature invalid")
		return false
	}
	req.User = user
	return true
}

func checkLogin(ctx context.Context, ss *session, id uint32, req *transport.Enroll) bool {
	return checkEnroll(ctx, ss, id, transport.CodeLogin, req)
}

// checkRegister adds the password's length and the registration policy.
func checkRegister(ctx context.Context, ss *session, id uint32, req *transport.Enroll) bool {
	if !checkEnroll(ctx, ss, id, transport.CodeRegister, req) {
		return false
	}
	var e *transport.Error
	switch {
	case len(req.Password) < MinPassword:
		e = &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("password must be at least %d characters", MinPassword)}
	case ss.srv.cfg.Registration == RegistrationClosed:
		e = &transport.Error{Code: transport.ErrRegClosed, Message: "registration is closed on this server"}
	case ss.srv.cfg.Registration == RegistrationInvite && req.Invite == "":
		e = &transport.Error{Code: transport.ErrRegClosed, Message: "registration needs a valid invite code (--invite)"}
	default:
		// A taken name is refused before the registration budget is
		// charged: a newcomer trying names does not run out of it. Such
		// a refusal says no more than a lookup does, and counts as one
		// for the address (lookup_rate; protocol.md §5.1).
		if _, err := ss.srv.store.Account(req.User); err == nil {
			e = &transport.Error{Code: transport.ErrUserExists, Message: store.ErrUserExists.Error()}
			if limited := ss.takeName(); limited != nil {
				e = limited
			}
		}
	}
	if e != nil {
		registerRefused(ctx, ss, req, e)
		ss.fail(id, e)
		return false
	}
	return true
}

// checkCheckName refuses, before the name checks are charged, what says
// nothing about accounts: a name outside the allowed form, a server closed
// to registration. It canonicalizes the name in place.
func checkCheckName(ctx context.Context, ss *session, id uint32, req *transport.DevicesRequest) bool {
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return false
	}
	if ss.srv.cfg.Registration == RegistrationClosed {
		ss.fail(id, &transport.Error{Code: transport.ErrRegClosed, Message: "registration is closed on this server"})
		return false
	}
	req.User = user
	return true
}

// handleCheckName answers whether a name is free to register, and whether
// a Register needs an invite code here (protocol.md §5.1): what a
// newcomer's first run asks before the password. It tells no more than a
// Register refused for a taken name, and is charged to the same budget.
func handleCheckName(ctx context.Context, ss *session, id uint32, req *transport.DevicesRequest) {
	switch _, err := ss.srv.store.Account(req.User); {
	case err == nil:
		ss.fail(id, &transport.Error{Code: transport.ErrUserExists, Message: store.ErrUserExists.Error()})
	case errors.Is(err, store.ErrNoSuchUser):
		ss.reply(id, transport.CodeNameFree, &transport.NameFree{Invite: ss.srv.cfg.Registration == RegistrationInvite})
	default:
		ss.fail(id, ss.wireError(err))
	}
}

// registerRefused records a refused registration for the operator.
func registerRefused(ctx context.Context, ss *session, req *transport.Enroll, e *transport.Error) {
	ss.registrationRefused(ctx, req.User, e)
}

func (ss *session) registrationRefused(ctx context.Context, user string, err error) {
	if ctx.Err() == nil {
		ss.srv.recordEvent(chat.EventRegisterRefused, ss.source(), fmt.Sprintf("user name %q: %v", user, err))
	}
}

func handleRegister(ctx context.Context, ss *session, id uint32, req *transport.Enroll) {
	now := ss.srv.cfg.Now()
	if ss.srv.storageFull() { // diskfull.go
		ss.srv.stats.StorageFull.Add(1)
		ss.fail(id, storageFullError())
		return
	}
	if err := ss.register(ctx, req, now); err != nil {
		ss.registrationRefused(ctx, req.User, err)
		ss.fail(id, ss.wireError(err))
		return
	}
	ss.welcome(ctx, id, transport.Welcome{User: req.User, Device: 1}, false, now)
}

// register creates the account with its first device.
func (ss *session) register(ctx context.Context, req *transport.Enroll, now time.Time) error {
	srv := ss.srv
	if _, err := srv.store.Account(req.User); err == nil {
		return store.ErrUserExists // checked early to spare the hash; checked again on write
	}
	var phc string
	var err error
	if herr := ss.srv.hashes.do(ctx, func() { phc, err = hashPassword(srv.rand, req.Password) }); herr != nil {
		return herr
	}
	if err != nil {
		return err
	}
	invite := ""
	if srv.cfg.Registration == RegistrationInvite {
		invite = normInvite(req.Invite)
	}
	err = srv.store.CreateAccount(ctx, store.NewAccount{Name: req.User, PasswordHash: phc, DeviceKey: req.DeviceKey, DeviceName: req.DeviceName, Invite: invite, Now: now})
	if err != nil {
		return err
	}
	ss.log.Info("registered", "user", req.User)
	srv.recordEvent(chat.EventRegistered, req.User, "from "+ss.ip)
	return nil
}

func handleLogin(ctx context.Context, ss *session, id uint32, req *transport.Enroll) {
	now := ss.srv.cfg.Now()
	d, err := ss.login(ctx, req, now)
	var banned *accountBannedError
	switch {
	case ctx.Err() != nil:
		// The connection closed while the Login waited: nobody to answer.
	case errors.Is(err, errBadCredentials), errors.Is(err, store.ErrCredentialsChanged):
		ss.authFailed(id, req.User, "wrong password or unknown user")
	case errors.As(err, &banned):
		ss.log.Warn("banned account refused a new device", "user", req.User)
		ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "account banned: " + banned.ban.Reason})
		ss.close(transport.CloseBanned, "account banned: "+banned.ban.Reason)
	case err != nil:
		ss.fail(id, ss.wireError(err))
	default:
		ss.welcome(ctx, id, transport.Welcome{User: d.User, Device: d.ID}, false, now)
	}
}

// accountBannedError is a Login with the right password to a banned account.
type accountBannedError struct{ ban Ban }

func (e *accountBannedError) Error() string { return "account banned: " + e.ban.Reason }

// login checks the password and adds the device. An account that failed
// account_login_failures password checks (from anywhere) must wait before
// the next is even hashed; a banned account adds no device.
func (ss *session) login(ctx context.Context, req *transport.Enroll, now time.Time) (chat.Device, error) {
	srv := ss.srv
	// Unknown names are counted too, so the answer says nothing of
	// whether the account exists.
	if srv.acctFail.tokens(req.User, now) < 1 {
		_, retry := srv.acctFail.allow(req.User, now) // refused: takes nothing
		srv.stats.Limited.Add(1)
		srv.recordEvent(chat.EventRateLimited, req.User, "failed logins to the account, from "+ss.source())
		return chat.Device{}, rateLimited("too many failed logins to this account", retry)
	}
	acct, err := srv.store.Account(req.User)
	ok := err == nil
	phc := acct.PasswordHash
	if !ok {
		phc = dummyHash() // same cost as for a real account
	}
	var match bool
	if err := srv.hashes.do(ctx, func() { match = checkPassword(phc, req.Password) }); err != nil {
		return chat.Device{}, err
	}
	if !ok || !match {
		srv.acctFail.allow(req.User, now)
		return chat.Device{}, errBadCredentials
	}
	if b, banned := srv.bans.userBanned(req.User, now); banned {
		return chat.Device{}, &accountBannedError{b}
	}
	d, err := srv.store.AddDevice(ctx, req.User, phc, req.DeviceKey, req.DeviceName, now)
	if err == nil {
		ss.log.Info("device added", "user", d.User, "device", d.ID)
	}
	return d, err
}

func handleAuth(ctx context.Context, ss *session, id uint32, req *transport.Auth) {
	exporter, err := ss.c.Exporter()
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInternal, Message: "no TLS exporter"})
		return
	}
	srv := ss.srv
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.authFailed(id, req.User, "invalid user name")
		return
	}
	d := chat.DeviceOf(user, req.Device)
	transcript := transport.AuthTranscript(transport.CodeAuth, exporter, user, req.Device)
	dev, err := srv.store.Device(d)
	if errors.Is(err, store.ErrNoSuchDevice) && ss.revokedAuth(id, d, transcript, req.Signature) {
		return
	}
	if err != nil || !ed25519.Verify(dev.Key, transcript, req.Signature) {
		ss.authFailed(id, user, "unknown device or bad signature")
		return
	}
	now := srv.cfg.Now()
	keys, _ := srv.store.KeyCount(d) // unreadable: reported as none, and the client publishes
	srv.store.TouchDevice(d, now)
	ss.welcome(ctx, id, transport.Welcome{User: user, Device: req.Device, Keys: wireKeyCount(keys)}, req.Receive, now)
}

// welcome completes an authentication: a banned account is refused and
// disconnected; otherwise the session becomes the device's, joins the
// router and, if it asked to receive, starts delivery.
func (ss *session) welcome(ctx context.Context, id uint32, w transport.Welcome, receive bool, now time.Time) {
	srv := ss.srv
	if b, banned := srv.bans.userBanned(w.User, now); banned {
		ss.log.Warn("banned account refused", "user", w.User)
		ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "account banned: " + b.Reason})
		ss.close(transport.CloseBanned, "account banned: "+b.Reason)
		return
	}
	if !ss.admitAccount(id, w.User) {
		return
	}
	if hook := testHookWelcome.Load(); hook != nil {
		(*hook)(w.User)
	}
	ss.dev = chat.DeviceOf(w.User, w.Device)
	ss.log = ss.log.With("user", ss.dev.User, "device", ss.dev.ID)
	close(ss.authed)
	d := ss.authedDevice()
	srv.router.Join(d, ss)
	// Checked again now that the session is the device's (issue 17 point
	// 9): a ban or a DeleteUser that ran while this authentication hashed
	// or verified either sees the session (Ban scans authenticated sessions
	// after storing; DeleteUser kicks the router's after deleting) or is
	// seen here.
	if b, banned := srv.bans.userBanned(w.User, now); banned {
		ss.log.Warn("banned account refused", "user", w.User)
		srv.router.Leave(d, ss)
		ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "account banned: " + b.Reason})
		ss.close(transport.CloseBanned, "account banned: "+b.Reason)
		return
	}
	if _, err := srv.store.Device(d); err != nil {
		ss.log.Warn("device gone during authentication", "err", err)
		srv.router.Leave(d, ss)
		if _, rerr := srv.store.Revoked(d); rerr == nil {
			ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: revokedReason})
			ss.close(transport.CloseRevoked, revokedReason)
			return
		}
		ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "authentication failed: the account or device was deleted"})
		ss.close(transport.CloseKicked, "account deleted by the server operator")
		return
	}
	w.ServerTime = now.UnixMilli()
	ss.reply(id, transport.CodeWelcome, &w)
	ss.log.Debug("authenticated", "receive", receive)
	if receive {
		srv.router.Attach(d, ss)
		ss.bg.Go(func() { ss.deliver(ctx) })
	}
}

// testHookWelcome, when a test sets it, runs in welcome between the first
// ban check and the session becoming the device's: where a ban or a
// DeleteUser racing the authentication lands at worst.
var testHookWelcome atomic.Pointer[func(user string)]

func (ss *session) authFailed(id uint32, user, why string) {
	srv := ss.srv
	srv.stats.AuthFailed.Add(1)
	ss.log.Warn("authentication failed", "user", user, "why", why)
	src := ss.source()
	srv.recordEvent(chat.EventAuthFailure, src, fmt.Sprintf("user %q: %s", user, why))
	// Deliberately vague on the wire (docs/design.md §13: authentication failures stay vague).
	ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "authentication failed: invalid user name, password or device key"})
	if ok, _ := srv.failLimit.allow(src, srv.cfg.Now()); !ok {
		// Like ejabberd's mod_fail2ban; this line is what fail2ban matches.
		srv.autoBan(ss, "too many failed logins", "too many authentication failures, address banned")
	}
}
