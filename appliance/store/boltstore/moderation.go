package boltstore

import (
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/transport"
)

// PutBan stores a ban under its target.
func (s *Store) PutBan(ctx context.Context, b store.Ban) error {
	r := banRecord{Reason: b.Reason, Created: b.Created.UnixMilli(), Expires: unixMS(b.Expires)}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).Put([]byte(b.Target), transport.Marshal(&r))
	})
}

// DeleteBan removes a ban.
func (s *Store) DeleteBan(ctx context.Context, target string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return deleteKey(tx.Bucket(bucketBans), target)
	})
}

// deleteKey deletes k from b, refusing with store.ErrNotFound if absent.
func deleteKey(b *bolt.Bucket, k string) error {
	if b.Get([]byte(k)) == nil {
		return reject(store.ErrNotFound)
	}
	return b.Delete([]byte(k))
}

// Bans lists the stored bans; a damaged record is skipped, not fatal.
func (s *Store) Bans() ([]store.Ban, error) {
	var out []store.Ban
	err := s.view("Bans", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			var r banRecord
			if transport.Unmarshal(v, &r) != nil {
				return nil
			}
			out = append(out, store.Ban{Target: string(k), Reason: r.Reason, Created: time.UnixMilli(r.Created), Expires: ms(r.Expires)})
			return nil
		})
	})
	return out, err
}

// PutMute mutes user until (zero: until unmuted).
func (s *Store) PutMute(ctx context.Context, user string, until time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMutes).Put([]byte(user), u64(uint64(unixMS(until))))
	})
}

// DeleteMute removes a mute.
func (s *Store) DeleteMute(ctx context.Context, user string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return deleteKey(tx.Bucket(bucketMutes), user)
	})
}

// Mutes lists the stored mutes.
func (s *Store) Mutes() (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	err := s.view("Mutes", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMutes).ForEach(func(k, v []byte) error {
			var until time.Time
			if len(v) == 8 {
				until = ms(int64(binary.BigEndian.Uint64(v)))
			}
			out[string(k)] = until
			return nil
		})
	})
	return out, err
}

// PutInvite stores a new invite.
func (s *Store) PutInvite(ctx context.Context, inv store.Invite) error {
	r := inviteRecord{Uses: uint32(inv.Uses), Created: inv.Created.UnixMilli(), Expires: unixMS(inv.Expires)}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInvites)
		if b.Get([]byte(inv.Code)) != nil {
			return reject(store.ErrDuplicate)
		}
		return b.Put([]byte(inv.Code), transport.Marshal(&r))
	})
}

// DeleteInvite removes an invite.
func (s *Store) DeleteInvite(ctx context.Context, code string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return deleteKey(tx.Bucket(bucketInvites), code)
	})
}

// Invites lists the stored invites; damaged records are skipped.
func (s *Store) Invites() ([]store.Invite, error) {
	var out []store.Invite
	err := s.view("Invites", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInvites).ForEach(func(k, v []byte) error {
			var r inviteRecord
			if transport.Unmarshal(v, &r) != nil {
				return nil
			}
			out = append(out, store.Invite{Code: string(k), Uses: int(r.Uses), Created: time.UnixMilli(r.Created), Expires: ms(r.Expires)})
			return nil
		})
	})
	return out, err
}

// useInviteTx takes one use of an invite inside a registration; an invite
// that is unknown, used up or expired refuses the registration before it
// writes anything.
func useInviteTx(tx *bolt.Tx, code string, now time.Time) error {
	b := tx.Bucket(bucketInvites)
	var r inviteRecord
	v := b.Get([]byte(code))
	if v == nil || transport.Unmarshal(v, &r) != nil || r.Uses == 0 || (r.Expires != 0 && now.UnixMilli() >= r.Expires) {
		return reject(store.ErrInvalidInvite)
	}
	r.Uses--
	return b.Put([]byte(code), transport.Marshal(&r))
}
