package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"

	"github.com/quic-go/quic-go"
	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
)

// Bans (docs/design.md §4): IP addresses and CIDR prefixes (v4 and v6) and
// accounts, with a reason and an optional expiry, kept in the bans bucket
// and mirrored in memory. An address ban refuses a new connection on its
// first packet, before any TLS work (quic-go's ConnContext runs on the
// Initial packet); bans of either kind close matching live connections at
// once.
//
//	bans  "ip:" ‖ prefix text | "user:" ‖ name → banRecord
var bucketBans = []byte("bans")

// Ban is one ban as the admin API shows it.
type Ban struct {
	Target  string    `json:"target"` // an IP, a CIDR prefix, or user:NAME
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: never
}

type banRecord struct {
	Reason  string
	Created int64
	Expires int64
}

func (r *banRecord) MarshalFields(e *transport.Encoder) {
	e.String(1, r.Reason)
	e.Int(2, r.Created)
	e.Int(3, r.Expires)
}

func (r *banRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.Reason, err = f.String(transport.MaxText)
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

// banTarget is a parsed ban target.
type banTarget struct {
	prefix netip.Prefix // valid for an address ban
	user   string       // set for an account ban
}

func (t banTarget) key() string {
	if t.user != "" {
		return "user:" + t.user
	}
	return "ip:" + t.prefix.String()
}

// parseBanTarget accepts an IP address, a CIDR prefix or user:NAME.
func parseBanTarget(s string) (banTarget, error) {
	s = strings.TrimSpace(s)
	if name, ok := strings.CutPrefix(s, "user:"); ok {
		user, err := transport.CanonicalUser(name)
		if err != nil {
			return banTarget{}, err
		}
		return banTarget{user: user}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return banTarget{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return banTarget{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	return banTarget{}, fmt.Errorf("%q is not an IP address, a CIDR prefix or user:NAME", s)
}

// banList is the in-memory mirror of the bans bucket.
type banList struct {
	mu    sync.RWMutex // guards bans
	bans  map[string]Ban
	nets  []banNet // address bans, for matching
	users map[string]Ban
}

type banNet struct {
	prefix  netip.Prefix
	expires time.Time
}

func (l *banList) set(all map[string]Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bans = all
	l.nets = nil
	l.users = make(map[string]Ban)
	for _, b := range all {
		t, err := parseBanTarget(b.Target)
		if err != nil {
			continue
		}
		if t.user != "" {
			l.users[t.user] = b
		} else {
			l.nets = append(l.nets, banNet{prefix: t.prefix, expires: b.Expires})
		}
	}
}

// addrBanned reports whether ip falls in an unexpired address ban.
func (l *banList) addrBanned(ip netip.Addr, now time.Time) bool {
	ip = ip.Unmap()
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, n := range l.nets {
		if n.prefix.Contains(ip) && (n.expires.IsZero() || now.Before(n.expires)) {
			return true
		}
	}
	return false
}

// userBanned returns an unexpired ban of user.
func (l *banList) userBanned(user string, now time.Time) (Ban, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	b, ok := l.users[user]
	if !ok || (!b.Expires.IsZero() && !now.Before(b.Expires)) {
		return Ban{}, false
	}
	return b, true
}

func (l *banList) list(now time.Time) []Ban {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []Ban
	for _, b := range l.bans {
		if b.Expires.IsZero() || now.Before(b.Expires) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Ban) int { return strings.Compare(a.Target, b.Target) })
	return out
}

// loadBans reads the bans bucket.
func (s *Store) loadBans() (map[string]Ban, error) {
	all := make(map[string]Ban)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			var r banRecord
			if err := transport.Unmarshal(v, &r); err != nil {
				return nil // a damaged record is skipped, not fatal
			}
			target := strings.TrimPrefix(string(k), "ip:")
			b := Ban{Target: target, Reason: r.Reason, Created: time.UnixMilli(r.Created)}
			if r.Expires != 0 {
				b.Expires = time.UnixMilli(r.Expires)
			}
			all[b.Target] = b
			return nil
		})
	})
	return all, err
}

// Ban bans an IP, a CIDR prefix or user:NAME for d (0: until unbanned)
// and closes the matching live connections.
func (s *Server) Ban(ctx context.Context, target, reason string, d time.Duration) (Ban, error) {
	t, err := parseBanTarget(target)
	if err != nil {
		return Ban{}, err
	}
	if d < 0 {
		return Ban{}, errors.New("ban duration must not be negative")
	}
	if len(reason) > transport.MaxText {
		return Ban{}, fmt.Errorf("reason is longer than %d bytes", transport.MaxText)
	}
	now := s.cfg.Now()
	b := Ban{Target: strings.TrimPrefix(t.key(), "ip:"), Reason: reason, Created: now}
	r := banRecord{Reason: reason, Created: now.UnixMilli()}
	if d > 0 {
		b.Expires = now.Add(d)
		r.Expires = b.Expires.UnixMilli()
	}
	err = s.store.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).Put([]byte(t.key()), transport.Marshal(&r))
	})
	if err != nil {
		return Ban{}, err
	}
	if err := s.reloadBans(); err != nil {
		return Ban{}, err
	}
	n := s.closeMatching(t, transport.CloseBanned, "banned: "+reason)
	s.log.Warn("ban", "target", b.Target, "reason", reason, "expires", b.Expires, "closed", n)
	detail := reason
	if d > 0 {
		detail += " (for " + d.String() + ")"
	}
	s.recordEvent(chat.EventBan, b.Target, detail)
	return b, nil
}

// Unban lifts a ban.
func (s *Server) Unban(ctx context.Context, target string) error {
	t, err := parseBanTarget(target)
	if err != nil {
		return err
	}
	found := false
	err = s.store.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBans)
		if b.Get([]byte(t.key())) == nil {
			return reject(fmt.Errorf("%s is not banned", strings.TrimPrefix(t.key(), "ip:")))
		}
		found = true
		return b.Delete([]byte(t.key()))
	})
	if err != nil {
		return err
	}
	if found {
		s.log.Info("unban", "target", strings.TrimPrefix(t.key(), "ip:"))
		s.recordEvent(chat.EventUnban, strings.TrimPrefix(t.key(), "ip:"), "")
	}
	return s.reloadBans()
}

// Bans lists the bans in force.
func (s *Server) Bans(ctx context.Context) ([]Ban, error) { return s.bans.list(s.cfg.Now()), nil }

func (s *Server) reloadBans() error {
	all, err := s.store.loadBans()
	if err != nil {
		return err
	}
	s.bans.set(all)
	return nil
}

// closeMatching closes the live connections a ban target covers.
func (s *Server) closeMatching(t banTarget, code quic.ApplicationErrorCode, reason string) int {
	s.mu.Lock()
	var victims []*session
	for sess := range s.sessions {
		ip, err := netip.ParseAddr(sess.ip)
		switch {
		case t.user != "" && sess.authedUser() == t.user:
			victims = append(victims, sess)
		case t.user == "" && err == nil && t.prefix.Contains(ip.Unmap()):
			victims = append(victims, sess)
		}
	}
	s.mu.Unlock()
	for _, v := range victims {
		v.close(code, reason)
	}
	return len(victims)
}

// Kick disconnects every connection of user and returns how many there were.
func (s *Server) Kick(ctx context.Context, user string) (int, error) {
	user, err := transport.CanonicalUser(user)
	if err != nil {
		return 0, err
	}
	n := s.closeMatching(banTarget{user: user}, transport.CloseKicked, "disconnected by the server operator")
	s.log.Info("kick", "user", user, "connections", n)
	s.recordEvent(chat.EventKick, user, fmt.Sprintf("%d connections closed", n))
	return n, nil
}

// UserInfo describes an account for the admin API.
type UserInfo struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Devices  int       `json:"devices"`
	LastSeen time.Time `json:"last_seen"`
	Online   int       `json:"online"` // connected devices
	Banned   bool      `json:"banned"`
	Muted    bool      `json:"muted"`
	// MutedUntil is when a mute ends; zero while muted means until unmuted.
	MutedUntil time.Time `json:"muted_until,omitzero"`
}

// Users lists the accounts, by name.
func (s *Server) Users(ctx context.Context) ([]UserInfo, error) {
	online := make(map[string]int)
	s.mu.Lock()
	for sess := range s.sessions {
		if u := sess.authedUser(); u != "" {
			online[u]++
		}
	}
	s.mu.Unlock()
	now := s.cfg.Now()
	var out []UserInfo
	err := s.store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var r userRecord
			if transport.Unmarshal(v, &r) != nil {
				return nil
			}
			u := UserInfo{Name: string(k), Created: time.UnixMilli(r.Created), Online: online[string(k)]}
			_, u.Banned = s.bans.userBanned(u.Name, now)
			u.MutedUntil, u.Muted = s.mutes.muted(u.Name, now)
			prefix := append([]byte(k), 0)
			c := tx.Bucket(bucketDevices).Cursor()
			for dk, dv := c.Seek(prefix); dk != nil && hasPrefix(dk, prefix); dk, dv = c.Next() {
				var d deviceRecord
				if transport.Unmarshal(dv, &d) == nil {
					u.Devices++
					if t := time.UnixMilli(d.LastSeen); t.After(u.LastSeen) {
						u.LastSeen = t
					}
				}
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}

// StatsSnapshot is the admin API's view of the server's counters.
type StatsSnapshot struct {
	Time          time.Time `json:"time"`
	Uptime        string    `json:"uptime"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Connections   int64     `json:"connections"`
	Accepted      int64     `json:"accepted"`
	MessagesIn    int64     `json:"messages_in"`
	BytesIn       int64     `json:"bytes_in"`
	Deliveries    int64     `json:"deliveries"`
	BytesOut      int64     `json:"bytes_out"`
	AuthFailed    int64     `json:"auth_failed"`
	Refused       int64     `json:"refused"`
	Limited       int64     `json:"limited"`
	QueueDepth    int       `json:"queue_depth"`
	StoreBytes    int64     `json:"store_bytes"`
	Bans          int       `json:"bans"`
	Fingerprint   string    `json:"fingerprint"`
}

// Snapshot reads the counters.
func (s *Server) Snapshot(ctx context.Context) (StatsSnapshot, error) {
	now := s.cfg.Now()
	up := now.Sub(s.started)
	return StatsSnapshot{
		Time:          now,
		Uptime:        up.Round(time.Second).String(),
		UptimeSeconds: int64(up / time.Second),
		Connections:   s.stats.Connections.Load(),
		Accepted:      s.stats.Accepted.Load(),
		MessagesIn:    s.stats.MessagesIn.Load(),
		BytesIn:       s.stats.BytesIn.Load(),
		Deliveries:    s.stats.Deliveries.Load(),
		BytesOut:      s.stats.BytesOut.Load(),
		AuthFailed:    s.stats.AuthFailed.Load(),
		Refused:       s.stats.Refused.Load(),
		Limited:       s.stats.Limited.Load(),
		QueueDepth:    s.store.queueDepth(),
		StoreBytes:    s.store.size(),
		Bans:          len(s.bans.list(now)),
		Fingerprint:   s.fp.String(),
	}, nil
}
