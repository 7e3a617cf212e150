package appliance

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"go.yaml.in/yaml/v3"
)

// Config is the server's configuration: one YAML file (serve --config), each
// key also a flag. The settings are the fields down to LogFormat, one
// entry each in the settings table (settings.go), which gives their keys,
// defaults and bounds; the zero value of each means its default.
type Config struct {
	Listen string // UDP address QUIC listens on
	Admin  string // the admin listener's TCP address
	// AdminCert and AdminKey are PEM files of a certificate and key for the
	// admin listener; AdminSelfSigned makes and keeps a self-signed one in
	// the data directory instead. Either turns on HTTPS. Without TLS the
	// admin listener may bind only loopback, unless AdminInsecure (for a
	// TLS-terminating proxy in front of it).
	AdminCert       string
	AdminKey        string
	AdminSelfSigned bool
	AdminInsecure   bool
	// Data is the directory holding server.db and the files the server
	// writes for operators.
	Data string
	// MailboxTTL is how long an undelivered message waits.
	MailboxTTL Duration
	// AuthTimeout is how long a connection may stay unauthenticated.
	AuthTimeout Duration
	// IdleTimeout closes a connection that sent nothing, keep-alives
	// included, for this long.
	IdleTimeout Duration
	// MaxFrame bounds a control-stream frame in bytes.
	MaxFrame int
	// FrameTimeout bounds the time from a frame's first byte to its last;
	// a frame not complete by then closes the connection.
	FrameTimeout Duration
	// WriteTimeout closes a connection that does not take what the server
	// writes (a reply, a push, a signal) within this long.
	WriteTimeout Duration
	// PushBudget bounds in bytes what a receiving connection holds for its
	// device: the offered entries, a delivery batch, the queued signals.
	PushBudget int
	// AdminWriteTimeout bounds the writing of one admin response; a backup
	// download gets it afresh for each piece it writes.
	AdminWriteTimeout Duration
	// MailboxMaxEntries and MailboxMaxBytes bound one device's mailbox;
	// StoreMaxBytes bounds all mailboxes together. A Send past one is
	// refused with "mailbox full" (protocol.md §6.1).
	MailboxMaxEntries int
	MailboxMaxBytes   int
	StoreMaxBytes     int
	// Encrypted files (blobs.go, protocol.md §6.8): the largest file,
	// what one account's files may hold together, what all files may
	// hold together, how long one is kept, and how many uploads one
	// account may run at once.
	BlobMaxSize           int
	BlobQuota             int
	BlobStoreMaxBytes     int
	BlobTTL               Duration
	BlobUploadsPerAccount int
	// GroupMaxMembers bounds the accounts one group Send reaches, its
	// sender's included; GroupMaxPerAccount the group ids an account may
	// be the first to use (protocol.md §6.7). Live.
	GroupMaxMembers    int
	GroupMaxPerAccount int

	// The rate limits, the live settings (Limits): per account, prekey
	// fetches (sustained rate and burst), messages and payload bytes; per
	// source IP, new connections (refused on their first packet) and
	// registrations.
	KeyFetchRate  float64
	KeyFetchBurst int
	MessageRate   float64
	MessageBurst  int
	ByteRate      float64
	ByteBurst     int
	ConnRate      float64
	ConnBurst     int
	RegisterRate  float64
	RegisterBurst int
	// LoginFailures failed authentications from one IP, refilled one per
	// LoginFailureWindow, ban the IP for LoginBan.
	LoginFailures      int
	LoginFailureWindow Duration
	LoginBan           Duration
	// Connections open at once: in total, from one address, of one account.
	MaxConns           int
	MaxConnsPerAddress int
	MaxConnsPerAccount int
	// Per account: key uploads, acked sequence numbers, and lookups of
	// devices and identities (sustained rate and burst).
	PublishKeysRate  float64
	PublishKeysBurst int
	AckRate          float64
	AckBurst         int
	LookupRate       float64
	LookupBurst      int
	NameCheckRate    float64
	NameCheckBurst   int
	// AccountLoginFailures failed password logins to one account, from
	// anywhere, refilled one per LoginFailureWindow, make further Logins to
	// it wait (the account is not banned: its devices still Auth).
	AccountLoginFailures int
	// FloodBan bans a source address for LoginBan once its requests were
	// refused by a rate limit this many times within a minute; 0 never bans
	// for flooding.
	FloodBan int

	// IPv6Prefix is the prefix length an IPv6 source is counted and
	// banned under (sourceKey); IPv4 sources are keyed by full address.
	IPv6Prefix int
	// HashQueue bounds the Register and Login requests waiting for an
	// argon2id slot; beyond it they are refused as busy.
	HashQueue int

	// HandshakeRate is how many new handshakes per second the server takes
	// before it demands address validation (a QUIC Retry).
	HandshakeRate float64
	// AFKTimeout disconnects a connection whose client sent nothing (not
	// even a keep-alive ping) for this long; 0 turns it off.
	AFKTimeout Duration
	// LimiterTable caps each rate limiter's table of keys; the least
	// recently used key is forgotten first.
	LimiterTable int
	// BackupEvery is how often the server writes a hot copy of the store
	// into BackupDir (default DATA/backups), keeping the newest BackupKeep
	// (backups.go); Off: never.
	BackupEvery Duration
	BackupKeep  int
	BackupDir   string
	// DiskFreeWarn: free bytes on the data directory's filesystem under
	// which the dashboard warns (diskfull.go).
	DiskFreeWarn int
	// Registration is open, invite or closed.
	Registration string
	LogLevel     string // debug, info, warn or error
	LogFormat    string // text or json

	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// Logger overrides LogLevel and LogFormat.
	Logger *slog.Logger
	// Out is where the server prints what its operator needs once it is
	// up (the web admin's address); nil prints nothing. serve gives stdout.
	Out io.Writer
	// AdminHandler makes the admin API's handler; nil serves no admin
	// listener. cli wires in package admin (which imports this one).
	AdminHandler func(s *Server, token string, log *slog.Logger) http.Handler
	// WrapStore, if not nil, wraps the storage the server uses: the seam
	// through which tests put a lying store under a real server (the
	// malicious-server tests, docs/security.md §4.14). Nil in serve.
	WrapStore func(store.Store) store.Store
}

// Duration is a time.Duration written as "30s", "720h" in YAML.
type Duration time.Duration

// MarshalJSON and UnmarshalJSON write a Duration as "15m0s" in JSON, a
// form any program reads (time.ParseDuration); UnmarshalJSON takes days
// too.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	return d.Set(s)
}

func (d Duration) MarshalYAML() (any, error) { return FormatDuration(time.Duration(d)), nil }

// String and Set make a Duration a flag.Value.
func (d *Duration) String() string { return FormatDuration(time.Duration(*d)) }

func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads a duration as the settings and the admin's commands
// take it: a Go duration (90s, 15m, 12h) after an optional number of days
// (30d, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration like 30s, 12h or 30d", s)
	rest, days := strings.TrimSpace(s), int64(0)
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n < 0 || n > int64(maxDuration/(24*time.Hour)) {
			return 0, bad
		}
		days, rest = n, rest[i+1:]
		if rest == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(rest)
	if err != nil || (days > 0 && v < 0) {
		return 0, bad
	}
	total := time.Duration(days)*24*time.Hour + v
	if total < v {
		return 0, bad // overflow
	}
	return total, nil
}

// FormatDuration writes d as people write it and ParseDuration reads it
// back exactly: whole days first, then hours, minutes and seconds, leaving
// out the units that are zero (30d, 1d12h, 1h30m, 1m30s, 0s; 1.5s and
// 100ms below a minute's seconds). Every duration shown to a person —
// --print-config, the bounds of a setting, the admin's limits, a ban or
// mute's length, "retry after" — is written this way.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d == math.MinInt64:
		return d.String()
	case d < 0: // no days: ParseDuration takes "-36h", not "-1d12h"
		return "-" + clock(-d, false)
	}
	return clock(d, true)
}

// clock is d > 0 in d, h, m and s, days only when withDays.
func clock(d time.Duration, withDays bool) string {
	var b strings.Builder
	unit := func(n time.Duration, u string) {
		if n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u)
		}
	}
	const day = 24 * time.Hour
	if withDays {
		unit(d/day, "d")
		d %= day
	}
	unit(d/time.Hour, "h")
	d %= time.Hour
	unit(d/time.Minute, "m")
	if d %= time.Minute; d > 0 {
		b.WriteString(d.String()) // 30s, 1.5s, 100ms, 1ns
	}
	return b.String()
}

// Validate reports every invalid setting, one error each (joined):
// out of its bounds in the settings table, or in conflict with another.
func (c Config) Validate() error { return errors.Join(c.Problems()...) }

// Problems lists every invalid setting, each error naming its key.
func (c Config) Problems() []error {
	c = c.WithDefaults()
	var errs []error
	for _, s := range settings {
		if err := s.Check(&c); err != nil {
			errs = append(errs, err)
		}
	}
	if (c.AdminCert == "") != (c.AdminKey == "") {
		errs = append(errs, errors.New("admin_cert and admin_key go together"))
	}
	if c.AdminCert != "" && c.AdminSelfSigned {
		errs = append(errs, errors.New("admin_self_signed and admin_cert are exclusive"))
	}
	if host, _, err := net.SplitHostPort(c.Admin); err == nil && !loopbackHost(host) && c.AdminCert == "" && !c.AdminSelfSigned && !c.AdminInsecure {
		errs = append(errs, fmt.Errorf("admin: %s is not on loopback and has no TLS: set admin_cert and admin_key, or admin_self_signed, or (behind your own TLS proxy) admin_insecure", c.Admin))
	}
	return errs
}

// LoadConfig reads a YAML configuration file (Config.UnmarshalYAML). On
// errors it returns them all, one line each, and what it could read.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return Config{}, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(n.Content) == 0 { // an empty file
		return c, nil
	}
	var errs []error
	for _, err := range c.decode(n.Content[0]) {
		errs = append(errs, fmt.Errorf("config %s %w", path, err))
	}
	return c, errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, notOneOf(s, "debug", "info", "warn", "error")
	}
	return l, nil
}

// NewLogger returns the logger c asks for, writing to w: c.Logger if set.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loopbackHost reports whether host names this machine only.
func loopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
