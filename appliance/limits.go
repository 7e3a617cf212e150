package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"

	"golang.org/x/time/rate"

	"github.com/securechat/securechat/transport"
)

// Limits are the rate limits an operator can change while the server runs
// (the admin's limits page, docs/design.md §5). The names are the configuration
// keys; a change lasts until the server stops, and the config file is what
// a restart reads.
type Limits struct {
	MessageRate        float64  `json:"message_rate"`
	MessageBurst       int      `json:"message_burst"`
	ByteRate           float64  `json:"byte_rate"`
	ByteBurst          int      `json:"byte_burst"`
	ConnRate           float64  `json:"conn_rate"`
	ConnBurst          int      `json:"conn_burst"`
	RegisterRate       float64  `json:"register_rate"`
	RegisterBurst      int      `json:"register_burst"`
	KeyFetchRate       float64  `json:"key_fetch_rate"`
	KeyFetchBurst      int      `json:"key_fetch_burst"`
	LoginFailures      int      `json:"login_failures"`
	LoginFailureWindow Duration `json:"login_failure_window"`
	LoginBan           Duration `json:"login_ban"`
	FloodBan           int      `json:"flood_ban"`
}

// MarshalJSON and UnmarshalJSON write a Duration as "15m0s" in JSON too.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	return d.Set(s)
}

func (c Config) limits() Limits {
	return Limits{
		MessageRate: c.MessageRate, MessageBurst: c.MessageBurst,
		ByteRate: c.ByteRate, ByteBurst: c.ByteBurst,
		ConnRate: c.ConnRate, ConnBurst: c.ConnBurst,
		RegisterRate: c.RegisterRate, RegisterBurst: c.RegisterBurst,
		KeyFetchRate: c.KeyFetchRate, KeyFetchBurst: c.KeyFetchBurst,
		LoginFailures: c.LoginFailures, LoginFailureWindow: c.LoginFailureWindow,
		LoginBan: c.LoginBan, FloodBan: c.FloodBan,
	}
}

// Validate reports the first setting out of range. Unlike the config
// file, zero is taken literally: a rate of 0 refuses everything.
func (l Limits) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"message_rate", l.MessageRate}, {"byte_rate", l.ByteRate}, {"conn_rate", l.ConnRate}, {"register_rate", l.RegisterRate}, {"key_fetch_rate", l.KeyFetchRate}} {
		if r.v < 0 || r.v > 1e9 {
			return fmt.Errorf("%s must be between 0 and 1e9 per second", r.name)
		}
	}
	for _, b := range []struct {
		name string
		v    int
	}{{"message_burst", l.MessageBurst}, {"byte_burst", l.ByteBurst}, {"conn_burst", l.ConnBurst}, {"register_burst", l.RegisterBurst}, {"key_fetch_burst", l.KeyFetchBurst}, {"login_failures", l.LoginFailures}, {"flood_ban", l.FloodBan}} {
		if b.v < 0 || b.v > 1<<30 {
			return fmt.Errorf("%s must be between 0 and %d", b.name, 1<<30)
		}
	}
	if l.MessageBurst < 1 || l.ConnBurst < 1 || l.LoginFailures < 1 {
		return errors.New("message_burst, conn_burst and login_failures must be at least 1")
	}
	if l.ByteBurst < transport.MaxPayload {
		return fmt.Errorf("byte_burst must be at least %d (one message)", transport.MaxPayload)
	}
	if l.LoginFailureWindow < Duration(time.Second) || l.LoginBan < Duration(time.Second) {
		return errors.New("login_failure_window and login_ban must be at least 1s")
	}
	return nil
}

// Limits returns the limits in force.
func (s *Server) Limits() Limits { return *s.limits.Load() }

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
	old := s.Limits()
	s.limits.Store(&l)
	s.applyLimits(l)
	if changed := diffLimits(old, l); len(changed) > 0 {
		s.log.Warn("rate limits changed", "changes", strings.Join(changed, ", "))
		s.RecordEvent(chat.EventLimitsChanged, "", strings.Join(changed, ", "))
	}
	return nil
}

func (s *Server) applyLimits(l Limits) {
	now := s.cfg.Now()
	s.msgLimit.set(rate.Limit(l.MessageRate), l.MessageBurst, now)
	s.byteLimit.set(rate.Limit(l.ByteRate), l.ByteBurst, now)
	s.connLimit.set(rate.Limit(l.ConnRate), l.ConnBurst, now)
	s.regLimit.set(rate.Limit(l.RegisterRate), l.RegisterBurst, now)
	s.fetchLimit.set(rate.Limit(l.KeyFetchRate), l.KeyFetchBurst, now)
	s.failLimit.set(rate.Every(time.Duration(l.LoginFailureWindow)), l.LoginFailures, now)
	s.floodLimit.set(rate.Limit(float64(l.FloodBan)/60), l.FloodBan, now)
}

// diffLimits names each changed setting as "key old→new".
func diffLimits(a, b Limits) []string {
	type kv struct {
		key      string
		old, new any
	}
	var out []string
	for _, f := range []kv{
		{"message_rate", a.MessageRate, b.MessageRate}, {"message_burst", a.MessageBurst, b.MessageBurst},
		{"byte_rate", a.ByteRate, b.ByteRate}, {"byte_burst", a.ByteBurst, b.ByteBurst},
		{"conn_rate", a.ConnRate, b.ConnRate}, {"conn_burst", a.ConnBurst, b.ConnBurst},
		{"register_rate", a.RegisterRate, b.RegisterRate}, {"register_burst", a.RegisterBurst, b.RegisterBurst},
		{"key_fetch_rate", a.KeyFetchRate, b.KeyFetchRate}, {"key_fetch_burst", a.KeyFetchBurst, b.KeyFetchBurst},
		{"login_failures", a.LoginFailures, b.LoginFailures},
		{"login_failure_window", time.Duration(a.LoginFailureWindow), time.Duration(b.LoginFailureWindow)},
		{"login_ban", time.Duration(a.LoginBan), time.Duration(b.LoginBan)},
		{"flood_ban", a.FloodBan, b.FloodBan},
	} {
		if f.old != f.new {
			out = append(out, fmt.Sprintf("%s %v→%v", f.key, f.old, f.new))
		}
	}
	return out
}
