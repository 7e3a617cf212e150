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

	"github.com/securechat/securechat/chat"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Moderation (docs/design.md §4): mutes, invites and the registration policy, and
// server broadcasts.
//
//	mutes    name → u64 BE unix ms until (0: until unmuted)
//	invites  code → inviteRecord
var (
	bucketMutes   = []byte("mutes")
	bucketInvites = []byte("invites")
)

// Registration policies.
const (
	RegistrationOpen   = "open"
	RegistrationInvite = "invite"
	RegistrationClosed = "closed"
)

// muteList mirrors the mutes bucket.
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
	return s.store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMutes).ForEach(func(k, v []byte) error {
			var until time.Time
			if len(v) == 8 && binary.BigEndian.Uint64(v) != 0 {
				until = time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
			}
			s.mutes.set(string(k), until, true)
			return nil
		})
	})
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
	if _, ok := s.store.lookupUser(user); !ok {
		return &NoSuchUserError{User: user}
	}
	var until time.Time
	var ms uint64
	if d > 0 {
		until = s.cfg.Now().Add(d)
		ms = uint64(until.UnixMilli())
	}
	err = s.store.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMutes).Put([]byte(user), u64(ms))
	})
	if err != nil {
		return err
	}
	s.mutes.set(user, until, true)
	s.log.Info("mute", "user", user, "until", until)
	detail := "until unmuted"
	if d > 0 {
		detail = "for " + d.String()
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
	err = s.store.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bucketMutes).Delete([]byte(user)) })
	if err != nil {
		return err
	}
	s.mutes.set(user, time.Time{}, false)
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

type inviteRecord struct {
	Uses    uint32
	Created int64
	Expires int64
}

func (r *inviteRecord) MarshalFields(e *transport.Encoder) {
	e.Uint(1, uint64(r.Uses))
	e.Int(2, r.Created)
	e.Int(3, r.Expires)
}

func (r *inviteRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Uses, err = f.Uint32()
		case 2:
			r.Created, err = f.Int()
		case 3:
			r.Expires, err = f.Int()
		default:
			return f.Unknown()
		}
		return err
	})
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
	rec := inviteRecord{Uses: uint32(uses), Created: now.UnixMilli()}
	if d > 0 {
		inv.Expires = now.Add(d)
		rec.Expires = inv.Expires.UnixMilli()
	}
	err := s.store.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInvites).Put([]byte(inv.Code), transport.Marshal(&rec))
	})
	if err == nil {
		s.log.Info("invite created", "uses", uses, "expires", inv.Expires)
		s.recordEvent(chat.EventInviteCreated, "", fmt.Sprintf("%d uses", uses))
	}
	return inv, err
}

// Invites lists the usable invites.
func (s *Server) Invites(ctx context.Context) ([]Invite, error) {
	now := s.cfg.Now()
	var out []Invite
	err := s.store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInvites).ForEach(func(k, v []byte) error {
			var r inviteRecord
			if transport.Unmarshal(v, &r) != nil || r.Uses == 0 || (r.Expires != 0 && now.UnixMilli() >= r.Expires) {
				return nil
			}
			inv := Invite{Code: string(k), Uses: int(r.Uses), Created: time.UnixMilli(r.Created)}
			if r.Expires != 0 {
				inv.Expires = time.UnixMilli(r.Expires)
			}
			out = append(out, inv)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Invite) int { return a.Created.Compare(b.Created) })
	return out, err
}

// RevokeInvite deletes an invite code.
func (s *Server) RevokeInvite(ctx context.Context, code string) error {
	code = normInvite(code)
	err := s.store.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInvites)
		if b.Get([]byte(code)) == nil {
			return reject(fmt.Errorf("no invite %q", code))
		}
		return b.Delete([]byte(code))
	})
	if err == nil {
		s.log.Info("invite revoked")
		s.recordEvent(chat.EventInviteRevoked, "", "")
	}
	return err
}

// checkInviteTx checks, writing nothing, that an invite is usable.
func checkInviteTx(tx *bolt.Tx, code string, now time.Time) error {
	var r inviteRecord
	v := tx.Bucket(bucketInvites).Get([]byte(normInvite(code)))
	if v == nil || transport.Unmarshal(v, &r) != nil || r.Uses == 0 || (r.Expires != 0 && now.UnixMilli() >= r.Expires) {
		return &transport.Error{Code: transport.ErrRegClosed, Message: "registration needs a valid invite code (--invite); this one is unknown, used up or expired"}
	}
	return nil
}

// useInviteTx consumes one use of a checked invite inside a registration.
func useInviteTx(tx *bolt.Tx, code string, now time.Time) error {
	b := tx.Bucket(bucketInvites)
	var r inviteRecord
	if err := transport.Unmarshal(b.Get([]byte(normInvite(code))), &r); err != nil {
		return err
	}
	r.Uses--
	return b.Put([]byte(normInvite(code)), transport.Marshal(&r))
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
	accounts := 0
	var entries []storedEntry
	err := s.store.update(ctx, func(tx *bolt.Tx) error {
		accounts, entries = 0, nil
		boxes := tx.Bucket(bucketMailboxes)
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			devs := activeDevicesTx(tx, string(k))
			if len(devs) > 0 {
				accounts++
			}
			for _, d := range devs {
				dk := deviceKey(d.User, d.ID)
				box := boxes.Bucket(dk)
				if box == nil {
					continue
				}
				seq, err := box.NextSequence()
				if err != nil {
					return err
				}
				entry := mailboxEntry{MessageID: id, Payload: payload}
				v := binary.BigEndian.AppendUint64(nil, uint64(ms))
				v = append(v, transport.Marshal(&entry)...)
				if err := box.Put(u64(seq), v); err != nil {
					return err
				}
				entries = append(entries, storedEntry{Device: string(dk), Deliver: transport.Deliver{Seq: seq, MessageID: id, ServerTime: ms, Payload: payload}})
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	s.push(entries)
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
	if _, ok := s.store.lookupUser(user); !ok {
		return &NoSuchUserError{User: user}
	}
	s.closeMatching(banTarget{user: user}, transport.CloseKicked, "account deleted by the server operator")
	err = s.store.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return reject(&NoSuchUserError{User: user})
		}
		prefix := append([]byte(user), 0)
		var devs [][]byte
		c := tx.Bucket(bucketDevices).Cursor()
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			devs = append(devs, append([]byte(nil), k...))
		}
		for _, k := range devs {
			if err := tx.Bucket(bucketDevices).Delete(k); err != nil {
				return err
			}
			for _, b := range [][]byte{bucketMailboxes, bucketPrekeys} {
				if tx.Bucket(b).Bucket(k) != nil {
					if err := tx.Bucket(b).DeleteBucket(k); err != nil {
						return err
					}
				}
			}
		}
		if err := tx.Bucket(bucketMutes).Delete([]byte(user)); err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).Delete([]byte(user))
	})
	if err != nil {
		return err
	}
	s.mutes.set(user, time.Time{}, false)
	s.log.Warn("account deleted", "user", user)
	s.recordEvent(chat.EventAccountDeleted, user, "")
	return nil
}
