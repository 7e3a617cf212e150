package appliance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"

	"github.com/securechat/securechat/transport"
)

// Moderation (docs/design.md §4.6): mutes, invites and the registration
// policy, server broadcasts and account deletion. Mutes are stored
// (store.Moderation) and mirrored in memory through published changes.

// Registration policies.
const (
	RegistrationOpen   = "open"
	RegistrationInvite = "invite"
	RegistrationClosed = "closed"
)

// muteList mirrors the stored mutes.
type muteList struct {
	mu    sync.RWMutex // guards until
	until map[string]time.Time
}

func (m *muteList) muted(user string, now time.Time) (time.Time, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.until[user]
	if !ok || (!t.IsZero() && !now.Before(t)) {
		return time.Time{}, false
	}
	return t, true
}

func (m *muteList) set(user string, until time.Time, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = make(map[string]time.Time)
	}
	if on {
		m.until[user] = until
	} else {
		delete(m.until, user)
	}
}

func (s *Server) loadMutes() error {
	all, err := s.store.Mutes()
	for user, until := range all {
		s.mutes.set(user, until, true)
	}
	return err
}

// Mute stops user from sending for d (0: until unmuted).
func (s *Server) Mute(ctx context.Context, user string, d time.Duration) error {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return err
	}
	if d < 0 {
		return errors.New("mute duration must not be negative")
	}
	if _, err := s.store.Account(user); err != nil {
		return err
	}
	var until time.Time
	if d > 0 {
		until = s.cfg.Now().Add(d)
	}
	if err := s.store.PutMute(ctx, user, until); err != nil {
		return err
	}
	if err := s.changes.Publish(ctx, Change{Kind: ChangeMute, User: user, Until: until}); err != nil {
		return err
	}
	s.log.Info("mute", "user", user, "until", logExpiry(until))
	detail := "until unmuted"
	if d > 0 {
		detail = "for " + FormatDuration(d)
	}
	s.recordEvent(chat.EventMute, user, detail)
	return nil
}

// Unmute lets user send again.
func (s *Server) Unmute(ctx context.Context, user string) error {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return err
	}
	if _, ok := s.mutes.muted(user, s.cfg.Now()); !ok {
		return fmt.Errorf("%s is not muted", user)
	}
	if err := s.store.DeleteMute(ctx, user); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err // not found: an expired mute, lifted all the same
	}
	if err := s.changes.Publish(ctx, Change{Kind: ChangeUnmute, User: user}); err != nil {
		return err
	}
	s.log.Info("unmute", "user", user)
	s.recordEvent(chat.EventUnmute, user, "")
	return nil
}

// Invite is an invite code for registration.
type Invite struct {
	Code    string    `json:"code"`
	Uses    int       `json:"uses"` // registrations left
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

var inviteEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// CreateInvite makes an invite code good for uses registrations (1 if 0)
// until it expires (d 0: never).
func (s *Server) CreateInvite(ctx context.Context, uses int, d time.Duration) (Invite, error) {
	if uses == 0 {
		uses = 1
	}
	if uses < 0 || uses > 100000 || d < 0 {
		return Invite{}, errors.New("an invite needs 1 to 100000 uses and a positive or no expiry")
	}
	b := make([]byte, 10)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return Invite{}, err
	}
	now := s.cfg.Now()
	inv := Invite{Code: strings.ToLower(inviteEncoding.EncodeToString(b)), Uses: uses, Created: now}
	if d > 0 {
		inv.Expires = now.Add(d)
	}
	err := s.store.PutInvite(ctx, store.Invite{Code: inv.Code, Uses: uses, Created: now, Expires: inv.Expires})
	if err == nil {
		s.log.Info("invite created", "uses", uses, "expires", logExpiry(inv.Expires))
		s.recordEvent(chat.EventInviteCreated, "", fmt.Sprintf("%d uses", uses))
	}
	return inv, err
}

// Invites lists the usable invites.
func (s *Server) Invites(ctx context.Context) ([]Invite, error) {
	now := s.cfg.Now()
	stored, err := s.store.Invites()
	var out []Invite
	for _, r := range stored {
		if r.Uses == 0 || (!r.Expires.IsZero() && !now.Before(r.Expires)) {
			continue
		}
		out = append(out, Invite{Code: r.Code, Uses: r.Uses, Created: r.Created, Expires: r.Expires})
	}
	slices.SortFunc(out, func(a, b Invite) int { return a.Created.Compare(b.Created) })
	return out, err
}

// RevokeInvite deletes an invite code.
func (s *Server) RevokeInvite(ctx context.Context, code string) error {
	code = normInvite(code)
	err := s.store.DeleteInvite(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("no invite %q", code)
	}
	if err == nil {
		s.log.Info("invite revoked")
		s.recordEvent(chat.EventInviteRevoked, "", "")
	}
	return err
}

func normInvite(code string) string { return strings.ToLower(strings.TrimSpace(code)) }

// Server notices (protocol.md §8): a broadcast is stored in every active
// device's mailbox as from the empty user, device 0, with payload type 4:
//
//	0x04 ‖ server Ed25519 public key[32] ‖ signature[64] ‖ u64 BE unix ms ‖ text
//
// signed over "securechat server notice v1" ‖ 0 ‖ u64 ms ‖ text. Clients
// check the key against their pinned fingerprint and the signature.
const (
	PayloadNotice       byte = 4
	noticeSignedContext      = "securechat server notice v1"
)

// NoticeTranscript is what a server notice's signature covers.
func NoticeTranscript(ms int64, text string) []byte {
	b := append([]byte(noticeSignedContext), 0)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	return append(b, text...)
}

// Broadcast queues a signed notice for every active device of every
// account, offline ones included; it returns how many accounts it reached.
func (s *Server) Broadcast(ctx context.Context, text string) (int, error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > 4096 {
		return 0, errors.New("a broadcast needs 1 to 4096 bytes of text")
	}
	now := s.cfg.Now()
	ms := now.UnixMilli()
	pub := s.key.Public().(ed25519.PublicKey)
	payload := append([]byte{PayloadNotice}, pub...)
	payload = append(payload, ed25519.Sign(s.key, NoticeTranscript(ms, text))...)
	payload = binary.BigEndian.AppendUint64(payload, uint64(ms))
	payload = append(payload, text...)
	id := make([]byte, transport.MessageIDLen)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return 0, err
	}
	accounts, deliveries, err := s.store.Broadcast(ctx, id, payload, now)
	if err != nil {
		return 0, err
	}
	s.router.Push(deliveries)
	s.log.Info("broadcast", "accounts", accounts, "bytes", len(text))
	s.recordEvent(chat.EventBroadcast, "", fmt.Sprintf("to %d accounts, %d bytes", accounts, len(text)))
	return accounts, nil
}

// DeleteUser removes an account with its devices, mailboxes, prekeys and
// mute, after closing its connections. Messages it already sent stay in
// their recipients' mailboxes.
func (s *Server) DeleteUser(ctx context.Context, user string) error {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return err
	}
	if _, err := s.store.Account(user); err != nil {
		return err
	}
	// Deleted first, then kicked: an authentication in progress either
	// joined the router before the kick or finds the device gone after
	// joining (welcome).
	if err := s.store.DeleteAccount(ctx, user); err != nil {
		return err
	}
	s.router.Kick(user, transport.CloseKicked, "account deleted by the server operator")
	// The store dropped the account's mute with it.
	if err := s.changes.Publish(ctx, Change{Kind: ChangeUnmute, User: user}); err != nil {
		return err
	}
	s.log.Warn("account deleted", "user", user)
	s.recordEvent(chat.EventAccountDeleted, user, "")
	return nil
}

// Kick disconnects every connection of user and returns how many there were.
func (s *Server) Kick(ctx context.Context, user string) (int, error) {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return 0, err
	}
	n := s.router.Kick(user, transport.CloseKicked, "disconnected by the server operator")
	s.log.Info("kick", "user", user, "connections", n)
	s.recordEvent(chat.EventKick, user, fmt.Sprintf("%d connections closed", n))
	return n, nil
}
