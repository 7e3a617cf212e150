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
	if user, err := transport.CanonicalUser(s); err == nil {
		return banTarget{}, fmt.Errorf("%q is not an IP address or a CIDR prefix: to ban the account, write user:%s", s, user)
	}
	return banTarget{}, fmt.Errorf("%q is not an IP address, a CIDR prefix or user:NAME", s)
}

// banList is the in-memory mirror of the stored bans. Address bans are
// indexed by prefix length, so matching an address costs one map lookup
// per distinct prefix length in force (at most 33 for IPv4 and 129 for
// IPv6), however many bans there are.
type banList struct {
	mu    sync.RWMutex // guards everything below
	bans  map[string]Ban
	nets  map[int]map[netip.Prefix]time.Time // address bans by prefix length: their expiry
	lens4 []int                              // prefix lengths in nets of IPv4 bans, ascending
	lens6 []int                              // and of IPv6 bans
	users map[string]Ban
}

// set replaces the list with all.
func (l *banList) set(all map[string]Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bans = make(map[string]Ban, len(all))
	l.nets = make(map[int]map[netip.Prefix]time.Time)
	l.lens4, l.lens6 = nil, nil
	l.users = make(map[string]Ban)
	for _, b := range all {
		l.putLocked(b)
	}
}

// put adds or replaces one ban.
func (l *banList) put(b Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.putLocked(b)
}

func (l *banList) putLocked(b Ban) {
	t, err := parseBanTarget(b.Target)
	if err != nil {
		return
	}
	if l.bans == nil {
		l.bans = make(map[string]Ban)
		l.nets = make(map[int]map[netip.Prefix]time.Time)
		l.users = make(map[string]Ban)
	}
	l.bans[b.Target] = b
	if t.user != "" {
		l.users[t.user] = b
		return
	}
	bits := t.prefix.Bits()
	if t.prefix.Addr().Is4() {
		bits += 1000 // v4 and v6 lengths apart
	}
	m := l.nets[bits]
	if m == nil {
		m = make(map[netip.Prefix]time.Time)
		l.nets[bits] = m
		if t.prefix.Addr().Is4() {
			l.lens4 = insertSorted(l.lens4, t.prefix.Bits())
		} else {
			l.lens6 = insertSorted(l.lens6, t.prefix.Bits())
		}
	}
	m[t.prefix] = b.Expires
}

func insertSorted(s []int, v int) []int {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

// remove lifts the ban of target.
func (l *banList) remove(target string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(target)
}

func (l *banList) removeLocked(target string) {
	t, err := parseBanTarget(target)
	if err != nil {
		return
	}
	delete(l.bans, target)
	if t.user != "" {
		delete(l.users, t.user)
		return
	}
	is4 := t.prefix.Addr().Is4()
	bits := t.prefix.Bits()
	key := bits
	if is4 {
		key += 1000
	}
	m := l.nets[key]
	delete(m, t.prefix)
	if m != nil && len(m) == 0 {
		delete(l.nets, key)
		if is4 {
			l.lens4 = slices.DeleteFunc(l.lens4, func(v int) bool { return v == bits })
		} else {
			l.lens6 = slices.DeleteFunc(l.lens6, func(v int) bool { return v == bits })
		}
	}
}

// expired returns the targets of the bans that expired by now.
func (l *banList) expired(now time.Time) []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []string
	for target, b := range l.bans {
		if !b.Expires.IsZero() && !now.Before(b.Expires) {
			out = append(out, target)
		}
	}
	return out
}

// size is the number of bans held, expired or not.
func (l *banList) size() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.bans)
}

// addrBanned reports whether ip falls in an unexpired address ban: one
// lookup per prefix length in force.
func (l *banList) addrBanned(ip netip.Addr, now time.Time) bool {
	ip = ip.Unmap()
	l.mu.RLock()
	defer l.mu.RUnlock()
	lens, off := l.lens6, 0
	if ip.Is4() {
		lens, off = l.lens4, 1000
	}
	for _, bits := range lens {
		p, err := ip.Prefix(bits)
		if err != nil {
			continue
		}
		if exp, ok := l.nets[bits+off][p]; ok && (exp.IsZero() || now.Before(exp)) {
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

// loadBans reads the stored bans into memory; expired ones are deleted
// from the store instead.
func (s *Server) loadBans() error {
	stored, err := s.store.Bans()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	all := make(map[string]Ban, len(stored))
	for _, r := range stored {
		if !r.Expires.IsZero() && !now.Before(r.Expires) {
			if err := s.store.DeleteBan(context.Background(), r.Target); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			continue
		}
		b := Ban{Target: strings.TrimPrefix(r.Target, "ip:"), Reason: r.Reason, Created: r.Created, Expires: r.Expires}
		all[b.Target] = b
	}
	s.bans.set(all)
	return nil
}

// banPurgeEvery is how often expired bans are deleted.
const banPurgeEvery = time.Minute

// banLoop deletes expired bans, from the store and from memory, until ctx ends.
func (s *Server) banLoop(ctx context.Context) {
	t := time.NewTicker(banPurgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.purgeBans(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("purging expired bans", "err", err)
		} else if n > 0 {
			s.log.Info("expired bans deleted", "count", n)
		}
	}
}

// purgeBans deletes the bans that have expired and returns how many went.
func (s *Server) purgeBans(ctx context.Context) (int, error) {
	n := 0
	for _, target := range s.bans.expired(s.cfg.Now()) {
		t, err := parseBanTarget(target)
		if err != nil {
			continue
		}
		if err := s.store.DeleteBan(ctx, t.key()); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		if err := s.changes.Publish(ctx, Change{Kind: ChangeUnban, Ban: Ban{Target: target}}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// autoBan bans the session's source (its address key: the address, or
// its IPv6 prefix) for reason, once: the session is closed at once, and a
// source already banned, or being banned by another request, is not
// banned again (issue 17 point 3: 300 pipelined bad Auths made 290 bans).
// msg is the log line (what fail2ban matches, operations.md §8).
func (s *Server) autoBan(ss *session, reason, msg string) {
	ban := time.Duration(s.currentLimits().LoginBan)
	ss.close(transport.CloseBanned, "banned: "+reason)
	key := ss.source()
	ip, err := netip.ParseAddr(ss.ip)
	if err != nil {
		return
	}
	s.banningMu.Lock()
	if s.banning[key] || s.bans.addrBanned(ip, s.cfg.Now()) {
		s.banningMu.Unlock()
		return
	}
	if s.banning == nil {
		s.banning = make(map[string]bool)
	}
	s.banning[key] = true
	s.banningMu.Unlock()
	defer func() {
		s.banningMu.Lock()
		delete(s.banning, key)
		s.banningMu.Unlock()
	}()
	// Like ejabberd's mod_fail2ban; this line is what fail2ban matches.
	s.log.Warn(msg, "remote", ss.ip, "target", key, "for", ban.String())
	if _, err := s.Ban(context.Background(), key, reason, ban); err != nil {
		s.log.Error("auto-ban", "target", key, "err", err)
	}
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
	if t.user != "" { // as Mute: an account that does not exist is refused
		if _, err := s.store.Account(t.user); err != nil {
			return Ban{}, err
		}
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
		detail += " (for " + FormatDuration(d) + ")"
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
