package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/time/rate"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Linking a device and the account's signed device list (protocol.md
// §5.4). A new device sends LinkStart before authenticating and waits on
// its connection; a device of the account finds it by the code the new
// device shows (LinkFind), then approves it with a signed list naming it
// (LinkApprove): the device and the list are stored in one commit and the
// approver's sealed answer is pushed to the waiting connection. Pending
// links live in memory only: a link is interactive, and a restart only
// means starting again.

// Bounds of pending links (docs/security.md §4.4).
const (
	linkLife          = 10 * time.Minute // how long a new device waits
	maxLinksPerSource = 4                // pending links from one source
	maxLinksPerUser   = 4                // pending links to one account
	maxLinks          = 1024             // pending links in all
)

// Fixed rates of the linking requests: LinkStart per source, and per
// account LinkFind, LinkApprove, PublishDeviceList and RevokeDevice
// together. People link and revoke devices a few times a year; the
// buckets only stop a client that loops.
var (
	linkStartRate  = rate.Every(15 * time.Second)
	linkStartBurst = 8
	linkRate       = rate.Every(time.Second)
	linkBurst      = 30
)

// pendingLink is a new device waiting for approval on its connection.
type pendingLink struct {
	code       string // e2ee.LinkCode of its user and keys
	user       string
	deviceKey  []byte
	linkKey    []byte
	deviceName string
	started    time.Time
	source     string
	sess       *session // the waiting connection

	// Guarded by linkTable.mu.
	device    uint32 // the id reserved for it at the first LinkFind; 0 before
	approving bool   // a LinkApprove is storing it
	gone      bool   // removed from the table: expired, its connection ended, or approved
	timer     *time.Timer
}

// linkTable holds the pending links, bounded per source, per account and
// in total.
type linkTable struct {
	mu       sync.Mutex // guards every field and the links' guarded fields
	byCode   map[string]*pendingLink
	bySource map[string]int
	byUser   map[string]int
}

func newLinkTable() *linkTable {
	return &linkTable{byCode: make(map[string]*pendingLink), bySource: make(map[string]int), byUser: make(map[string]int)}
}

// errLinkGone is the answer for a code no device of the account waits with.
var errLinkGone = &transport.Error{Code: transport.ErrNoSuchUser, Message: "no device is waiting with this code: the new device stopped waiting or its code expired (start the link again on it), or the code was mistyped"}

// add registers l, which expires after linkLife.
func (t *linkTable) add(l *pendingLink) *transport.Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tooMany := func(what string) *transport.Error {
		return &transport.Error{Code: transport.ErrRateLimited, Message: "too many devices waiting to be linked " + what + ", try again later", RetryAfterMS: uint64(linkLife.Milliseconds())}
	}
	switch {
	case t.byCode[l.code] != nil:
		return &transport.Error{Code: transport.ErrBadRequest, Message: "a device is already waiting with these keys"}
	case len(t.byCode) >= maxLinks:
		return tooMany("on this server")
	case t.bySource[l.source] >= maxLinksPerSource:
		return tooMany("from this address")
	case t.byUser[l.user] >= maxLinksPerUser:
		return tooMany("to " + l.user)
	}
	t.byCode[l.code] = l
	t.bySource[l.source]++
	t.byUser[l.user]++
	l.timer = time.AfterFunc(linkLife, func() {
		if t.remove(l) {
			l.sess.close(transport.CloseAuthTimeout, fmt.Sprintf("the link code expired after %s without approval: start the link again", FormatDuration(linkLife)))
		}
	})
	return nil
}

// remove takes l out of the table; false if it was already out.
func (t *linkTable) remove(l *pendingLink) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeLocked(l)
}

func (t *linkTable) removeLocked(l *pendingLink) bool {
	if l.gone {
		return false
	}
	l.gone = true
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(t.byCode, l.code)
	if t.bySource[l.source]--; t.bySource[l.source] <= 0 {
		delete(t.bySource, l.source)
	}
	if t.byUser[l.user]--; t.byUser[l.user] <= 0 {
		delete(t.byUser, l.user)
	}
	return true
}

// find returns the link waiting with code on user's account.
func (t *linkTable) find(user, code string) (*pendingLink, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byCode[code]
	if l == nil || l.user != user {
		return nil, false
	}
	return l, true
}

// reserved returns the device ids pending links of user's account
// reserved (LinkFind): a file can be meant for one before it is added
// (the history archive, protocol.md §6.8). At most maxLinksPerUser.
func (t *linkTable) reserved(user string) []uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []uint32
	for _, l := range t.byCode {
		if l.user == user && l.device != 0 && !l.gone {
			ids = append(ids, l.device)
		}
	}
	return ids
}

// dropSession removes the link a connection waits with, when it ends.
func (t *linkTable) dropSession(ss *session) {
	if l := ss.link.Load(); l != nil {
		t.remove(l)
	}
}

// checkLinkStart checks the name and the device key's signature, before
// the source's LinkStart budget is charged.
func checkLinkStart(ctx context.Context, ss *session, id uint32, req *transport.LinkStart) bool {
	if ss.link.Load() != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "this connection already waits for a link"})
		return false
	}
	user, err := transport.CanonicalUser(req.User)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
		return false
	}
	if !ed25519.Verify(req.DeviceKey, transport.LinkStartTranscript(user, req.LinkKey), req.Signature) {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "link start: the device key's signature does not verify"})
		return false
	}
	req.User = user
	return true
}

// handleLinkStart registers a new device waiting to be linked; its
// connection then waits, unauthenticated, until it is approved, the link
// expires (linkLife) or it goes.
func handleLinkStart(ctx context.Context, ss *session, id uint32, req *transport.LinkStart) {
	srv := ss.srv
	now := srv.cfg.Now()
	if req.DeviceName != "" && !validDeviceName(req.DeviceName) { // a name is optional
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "a device name must have a visible character and no control characters"})
		return
	}
	if _, err := srv.store.Account(req.User); err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	if b, banned := srv.bans.userBanned(req.User, now); banned {
		ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: "account banned: " + b.Reason})
		ss.close(transport.CloseBanned, "account banned: "+b.Reason)
		return
	}
	l := &pendingLink{
		code: e2ee.LinkCode(req.User, req.DeviceKey, req.LinkKey), user: req.User,
		deviceKey: req.DeviceKey, linkKey: req.LinkKey, deviceName: req.DeviceName,
		started: now, source: ss.source(), sess: ss,
	}
	if e := srv.links.add(l); e != nil {
		ss.fail(id, e)
		return
	}
	// The connection waits from here: no auth timeout, no AFK (run, afk).
	// Should the auth timeout close it before this, its end (serveConn),
	// which cannot come before this handler returns, drops the link.
	ss.link.Store(l)
	ss.log.Info("device waiting to be linked", "user", req.User)
	ss.reply(id, transport.CodeLinkStarted, &transport.LinkStarted{Expires: now.Add(linkLife).UnixMilli()})
}

// linkCode reads a code as typed, answering a malformed one.
func (ss *session) linkCode(id uint32, code string) (string, bool) {
	c, err := e2ee.NormalizeLinkCode(code)
	if err != nil {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "not a link code: a code is 12 letters and digits, like ABCD-EFGH-JKMN"})
		return "", false
	}
	return c, true
}

// handleLinkFind gives the device waiting with a code on the asker's
// account, with the id kept for it.
func handleLinkFind(ctx context.Context, ss *session, id uint32, req *transport.LinkFind) {
	code, ok := ss.linkCode(id, req.Code)
	if !ok {
		return
	}
	srv := ss.srv
	l, ok := srv.links.find(ss.dev.User, code)
	if !ok {
		ss.fail(id, errLinkGone)
		return
	}
	srv.links.mu.Lock()
	device := l.device
	srv.links.mu.Unlock()
	if device == 0 {
		d, err := srv.store.ReserveDevice(ctx, ss.dev.User)
		if err != nil {
			ss.fail(id, ss.wireError(err))
			return
		}
		srv.links.mu.Lock()
		if l.device == 0 { // else another LinkFind reserved first; d is skipped
			l.device = d
		}
		device = l.device
		srv.links.mu.Unlock()
	}
	ss.reply(id, transport.CodeLinkInfo, &transport.LinkInfo{
		Device: device, DeviceKey: l.deviceKey, LinkKey: l.linkKey, DeviceName: l.deviceName, Started: l.started.UnixMilli(),
	})
}

// checkedList parses a signed device list and checks it as the account's
// own (protocol.md §5.4): signed by the identity key the account
// published, for the account, naming the device that sends it under its
// key. It answers a refusal itself.
func (ss *session) checkedList(id uint32, b []byte) (store.NewList, bool) {
	bad := func(msg string) (store.NewList, bool) {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: msg})
		return store.NewList{}, false
	}
	l, err := e2ee.ParseDeviceList(b)
	if err != nil {
		return bad("malformed device list: " + err.Error())
	}
	user := ss.dev.User
	idb, err := ss.srv.store.Identity(user)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return store.NewList{}, false
	}
	if idb == nil {
		return bad("the account has no identity key yet: publish the device's keys first")
	}
	ik, err := e2ee.ParseIdentityKey(idb)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return store.NewList{}, false
	}
	if err := l.Verify(ik, user); err != nil {
		return bad("the device list is not signed by the account's identity key, or not for this account")
	}
	me, err := ss.srv.store.Device(ss.dev)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return store.NewList{}, false
	}
	if e, ok := l.Lookup(ss.dev.ID); !ok || !me.Key.Equal(ed25519.PublicKey(e.AuthKey[:])) {
		return bad(fmt.Sprintf("the device list must name the device that sends it (device %d) under its key", ss.dev.ID))
	}
	out := store.NewList{SignedList: store.SignedList{Seq: l.Seq, Bytes: b}}
	for _, e := range l.Devices {
		out.Devices = append(out.Devices, store.ListedDevice{ID: e.Device, Key: ed25519.PublicKey(e.AuthKey[:])})
	}
	return out, true
}

// handleLinkApprove adds the waiting device under the id kept for it and
// stores the list naming it, in one commit, then hands the device the
// approver's sealed answer.
func handleLinkApprove(ctx context.Context, ss *session, id uint32, req *transport.LinkApprove) {
	code, ok := ss.linkCode(id, req.Code)
	if !ok {
		return
	}
	srv := ss.srv
	l, ok := srv.links.find(ss.dev.User, code)
	if !ok {
		ss.fail(id, errLinkGone)
		return
	}
	list, ok := ss.checkedList(id, req.DeviceList)
	if !ok {
		return
	}
	named := false
	for _, d := range list.Devices {
		if d.ID == req.Device {
			named = d.Key.Equal(ed25519.PublicKey(l.deviceKey))
		}
	}
	srv.links.mu.Lock()
	var refusal *transport.Error
	switch {
	case l.gone:
		refusal = &transport.Error{Code: transport.ErrBadRequest, Message: "the new device stopped waiting: start the link again on it"}
	case l.device == 0 || l.device != req.Device:
		refusal = &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("device %d is not the id kept for the waiting device (find it with its code first)", req.Device)}
	case !named:
		refusal = &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("the device list does not name the new device %d under its key", req.Device)}
	case l.approving:
		refusal = &transport.Error{Code: transport.ErrBadRequest, Message: "the device is being approved already"}
	default:
		l.approving = true
	}
	srv.links.mu.Unlock()
	if refusal != nil {
		ss.fail(id, refusal)
		return
	}
	now := srv.cfg.Now()
	dev := chat.DeviceOf(ss.dev.User, req.Device)
	err := srv.store.LinkDevice(ctx, store.NewDevice{Device: dev, Key: l.deviceKey, Name: l.deviceName, Now: now}, list)
	if err != nil {
		srv.links.mu.Lock()
		l.approving = false
		srv.links.mu.Unlock()
		ss.fail(id, ss.wireError(err))
		return
	}
	srv.links.remove(l)
	ss.log.Info("device linked", "linked", req.Device, "seq", list.Seq)
	srv.recordEvent(chat.EventDeviceLinked, ss.dev.User, fmt.Sprintf("device %d (%s) linked by device %d", req.Device, l.deviceName, ss.dev.ID))
	// The new device may have gone since the check; it is added all the
	// same (its list names it), and can be revoked (protocol.md §5.4).
	l.sess.linkApproved(&transport.LinkApproved{Device: req.Device, Sealed: req.Sealed})
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

// linkApproved pushes the approval to the waiting connection, which then
// has auth_timeout to read it and go: the new device connects again as
// itself.
func (ss *session) linkApproved(m *transport.LinkApproved) {
	if err := ss.c.WriteFrame(transport.CodeLinkApproved, 0, m); err != nil {
		ss.writeFailed(err)
		return
	}
	time.AfterFunc(time.Duration(ss.srv.cfg.AuthTimeout), func() {
		ss.close(transport.CloseNormal, "linked: connect as the new device")
	})
}

// handlePublishDeviceList stores the account's new signed list.
func handlePublishDeviceList(ctx context.Context, ss *session, id uint32, req *transport.PublishDeviceList) {
	list, ok := ss.checkedList(id, req.DeviceList)
	if !ok {
		return
	}
	if err := ss.srv.store.PutDeviceList(ctx, ss.dev.User, list); err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	ss.log.Debug("device list stored", "seq", list.Seq)
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

// handleRevokeDevice removes another device of the account with its
// mailbox and prekeys, stores the list without it and closes its
// connections (CloseRevoked). A device cannot revoke itself: it would
// lock itself out with nobody told; another device of the account does.
func handleRevokeDevice(ctx context.Context, ss *session, id uint32, req *transport.RevokeDevice) {
	if req.Device == ss.dev.ID {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "a device cannot revoke itself: revoke it from another device of the account"})
		return
	}
	list, ok := ss.checkedList(id, req.DeviceList)
	if !ok {
		return
	}
	srv := ss.srv
	d := chat.DeviceOf(ss.dev.User, req.Device)
	if err := srv.store.RevokeDevice(ctx, d, list, srv.cfg.Now()); err != nil {
		if errors.Is(err, store.ErrNoSuchDevice) {
			ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("the account has no device %d", req.Device)})
			return
		}
		ss.fail(id, ss.wireError(err))
		return
	}
	n := srv.router.KickDevice(d, transport.CloseRevoked, revokedReason)
	ss.log.Info("device revoked", "revoked", req.Device, "seq", list.Seq, "connections", n)
	srv.recordEvent(chat.EventDeviceRevoked, ss.dev.User, fmt.Sprintf("device %d revoked by device %d", req.Device, ss.dev.ID))
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}

// revokedReason is what a revoked device is told, on its open connections
// and at its next Auth.
const revokedReason = "this device was removed from the account"

// revokedAuth answers the Auth of a device that is no more: if it was
// revoked and the signature is its key's, it is told so (only the device
// itself can make that signature); otherwise false, and the caller fails
// the authentication as any other.
func (ss *session) revokedAuth(id uint32, d chat.Device, transcript, sig []byte) bool {
	tomb, err := ss.srv.store.Revoked(d)
	if err != nil || !ed25519.Verify(tomb.Key, transcript, sig) {
		return false
	}
	ss.log.Info("revoked device refused", "user", d.User, "device", d.ID)
	ss.fail(id, &transport.Error{Code: transport.ErrUnauthorized, Message: revokedReason})
	ss.close(transport.CloseRevoked, revokedReason)
	return true
}

// handleAccountDevices lists every device of the requester's account as
// the server records it: linked or not, with its name, added and last
// seen (protocol.md §5.4). The signed list says which are linked; this
// says what the server holds beside it.
func handleAccountDevices(ctx context.Context, ss *session, id uint32, req *transport.Empty) {
	recs, err := ss.srv.store.ListDevices(ss.dev.User)
	if err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	out := &transport.AccountDeviceList{Devices: make([]transport.AccountDevice, 0, len(recs))}
	for _, r := range recs {
		out.Devices = append(out.Devices, transport.AccountDevice{ID: r.Device.ID, Key: r.Key, Name: r.Name, Added: r.Created.UnixMilli(), LastSeen: r.LastSeen.UnixMilli()})
	}
	ss.reply(id, transport.CodeAccountList, out)
}

// validDeviceName: a name shown in device lists and on the admin page has
// a visible character and no control character (the same for LinkStart,
// which a stranger may send, and RenameDevice).
func validDeviceName(name string) bool {
	return strings.IndexFunc(name, unicode.IsControl) < 0 && strings.TrimSpace(name) != ""
}

// handleRenameDevice sets the name the server records for a device of
// the requester's account (shown by devices list and the admin's users
// page; the signed list carries no names).
func handleRenameDevice(ctx context.Context, ss *session, id uint32, req *transport.RenameDevice) {
	if !validDeviceName(req.Name) {
		ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: "a device name must have a visible character and no control characters"})
		return
	}
	d := chat.DeviceOf(ss.dev.User, req.Device)
	if err := ss.srv.store.RenameDevice(ctx, d, req.Name); err != nil {
		if errors.Is(err, store.ErrNoSuchDevice) {
			ss.fail(id, &transport.Error{Code: transport.ErrBadRequest, Message: fmt.Sprintf("the account has no device %d", req.Device)})
			return
		}
		ss.fail(id, ss.wireError(err))
		return
	}
	ss.reply(id, transport.CodeOK, &transport.Empty{})
}
