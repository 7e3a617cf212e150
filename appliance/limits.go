package appliance

import (
	"context"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"

	"golang.org/x/time/rate"
)

// Limits returns the limits in force.
func (s *Server) Limits(ctx context.Context) (Limits, error) { return s.currentLimits(), nil }

func (s *Server) currentLimits() Limits { return *s.limits.Load() }

// SetLimits changes the limits of the running server: every table of
// token buckets takes the new rate and burst at once, for the keys it
// already tracks too.
func (s *Server) SetLimits(ctx context.Context, l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	old := s.currentLimits()
	// Applied through the change feed, as another node would (changes.go).
	if err := s.changes.Publish(ctx, Change{Kind: ChangeLimits, Limits: l}); err != nil {
		return err
	}
	if changed := diffLimits(old, l); len(changed) > 0 {
		s.log.Warn("rate limits changed", "changes", strings.Join(changed, ", "))
		s.recordEvent(chat.EventLimitsChanged, "", strings.Join(changed, ", "))
	}
	return nil
}

// pairFetchRate and pairFetchBurst bound one account's prekey fetches of
// one other account (protocol.md §9.3): what protects a device's one-time
// prekeys from being drained, so that the per-account budget can be large
// enough for a client starting sessions with a whole group at once.
const (
	pairFetchRate  = rate.Limit(1.0 / 60)
	pairFetchBurst = 5
)

func (s *Server) applyLimits(l Limits) {
	now := s.cfg.Now()
	s.msgLimit.set(rate.Limit(l.MessageRate), l.MessageBurst, now)
	s.byteLimit.set(rate.Limit(l.ByteRate), l.ByteBurst, now)
	s.blobBytes.set(rate.Limit(l.ByteRate), l.ByteBurst, now)
	s.connLimit.set(rate.Limit(l.ConnRate), l.ConnBurst, now)
	s.regLimit.set(rate.Limit(l.RegisterRate), l.RegisterBurst, now)
	s.fetchLimit.set(rate.Limit(l.KeyFetchRate), l.KeyFetchBurst, now)
	s.pairFetch.set(pairFetchRate, pairFetchBurst, now)
	s.linkStartLimit.set(linkStartRate, linkStartBurst, now)
	s.linkLimit.set(linkRate, linkBurst, now)
	s.failLimit.set(rate.Every(time.Duration(l.LoginFailureWindow)), l.LoginFailures, now)
	s.keysLimit.set(rate.Limit(l.PublishKeysRate), l.PublishKeysBurst, now)
	s.ackLimit.set(rate.Limit(l.AckRate), l.AckBurst, now)
	s.lookLimit.set(rate.Limit(l.LookupRate), l.LookupBurst, now)
	s.nameLimit.set(rate.Limit(l.NameCheckRate), l.NameCheckBurst, now)
	s.acctFail.set(rate.Every(time.Duration(l.LoginFailureWindow)), l.AccountLoginFailures, now)
	s.floodLimit.set(rate.Limit(float64(l.FloodBan)/60), l.FloodBan, now)
}
