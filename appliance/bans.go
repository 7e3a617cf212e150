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

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/transport"
)

// Bans (docs/design.md §4.5): IP addresses and CIDR prefixes (v4 and v6) and
// accounts, with a reason and an optional expiry, stored (store.Moderation)
// and mirrored in memory through published changes (changes.go). An
// address ban refuses a new connection on its first packet, before any TLS
// work (quic-go's ConnContext runs on the Initial packet); bans of either
// kind close matching live connections at once.

// Ban is one ban as the admin API shows it.
type Ban struct {
	Target  string    `json:"target"` // an IP, a CIDR prefix, or user:NAME
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: never
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

// banList is the in-memory mirror of the stored bans.
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

// set replaces the list with all.
func (l *banList) set(all map[string]Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bans = all
	l.index()
}

// put adds or replaces one ban.
func (l *banList) put(b Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bans == nil {
		l.bans = make(map[string]Ban)
	}
	l.bans[b.Target] = b
	l.index()
}

// remove lifts the ban of target.
func (l *banList) remove(target string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.bans, target)
	l.index()
}

// index rebuilds the matching tables from bans; l.mu is held.
func (l *banList) index() {
	all := l.bans
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

// loadBans reads the stored bans into memory.
func (s *Server) loadBans() error {
	stored, err := s.store.Bans()
	if err != nil {
		return err
	}
	all := make(map[string]Ban, len(stored))
	for _, r := range stored {
		b := Ban{Target: strings.TrimPrefix(r.Target, "ip:"), Reason: r.Reason, Created: r.Created, Expires: r.Expires}
		all[b.Target] = b
	}
	s.bans.set(all)
	return nil
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
	if d > 0 {
		b.Expires = now.Add(d)
	}
	if err := s.store.PutBan(ctx, store.Ban{Target: t.key(), Reason: reason, Created: now, Expires: b.Expires}); err != nil {
		return Ban{}, err
	}
	if err := s.changes.Publish(ctx, Change{Kind: ChangeBan, Ban: b}); err != nil {
		return Ban{}, err
	}
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
	target = strings.TrimPrefix(t.key(), "ip:")
	err = s.store.DeleteBan(ctx, t.key())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s is not banned", target)
	}
	if err != nil {
		return err
	}
	s.log.Info("unban", "target", target)
	s.recordEvent(chat.EventUnban, target, "")
	return s.changes.Publish(ctx, Change{Kind: ChangeUnban, Ban: Ban{Target: target}})
}

// Bans lists the bans in force.
func (s *Server) Bans(ctx context.Context) ([]Ban, error) { return s.bans.list(s.cfg.Now()), nil }

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
