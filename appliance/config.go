package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/securechat/securechat/transport"
)

// Config is the server's configuration: one YAML file (serve --config), each
// key also a flag. The zero value of every field means its default.
type Config struct {
	// Listen is the UDP address QUIC listens on. Default ":4433".
	Listen string `yaml:"listen"`
	// Admin is the admin API's TCP address. Default "127.0.0.1:8080".
	Admin string `yaml:"admin"`
	// AdminCert and AdminKey are PEM files of a certificate and key for the
	// admin listener; AdminSelfSigned makes and keeps a self-signed one in
	// the data directory instead. Either turns on HTTPS. Without TLS the
	// admin listener may bind only loopback, unless AdminInsecure (for a
	// TLS-terminating proxy in front of it).
	AdminCert       string `yaml:"admin_cert"`
	AdminKey        string `yaml:"admin_key"`
	AdminSelfSigned bool   `yaml:"admin_self_signed"`
	AdminInsecure   bool   `yaml:"admin_insecure"`
	// Data is the directory holding server.db and the files the server
	// writes for operators. Default "./securechat-data".
	Data string `yaml:"data"`
	// MailboxTTL is how long an undelivered message waits. Default 30 days.
	MailboxTTL Duration `yaml:"mailbox_ttl"`
	// AuthTimeout is how long a connection may stay unauthenticated.
	// Default 10s.
	AuthTimeout Duration `yaml:"auth_timeout"`
	// IdleTimeout closes a connection that sent nothing, keep-alives
	// included, for this long. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxFrame bounds a control-stream frame in bytes. Default 4 MiB.
	MaxFrame int `yaml:"max_frame"`
	// KeyFetchRate is how many prekey fetches per second an account may
	// make, sustained; KeyFetchBurst how many at once. Defaults 0.5 and
	// 30: below the 100 one-time prekeys a device keeps.
	KeyFetchRate  float64 `yaml:"key_fetch_rate"`
	KeyFetchBurst int     `yaml:"key_fetch_burst"`
	// MessageRate and MessageBurst limit each account's messages per
	// second (defaults 20 and 60); ByteRate and ByteBurst its payload
	// bytes per second (defaults 1 MiB and 8 MiB).
	MessageRate  float64 `yaml:"message_rate"`
	MessageBurst int     `yaml:"message_burst"`
	ByteRate     float64 `yaml:"byte_rate"`
	ByteBurst    int     `yaml:"byte_burst"`
	// ConnRate and ConnBurst limit new connections per source IP
	// (defaults 10 and 30); over it a connection is refused on its first
	// packet.
	ConnRate  float64 `yaml:"conn_rate"`
	ConnBurst int     `yaml:"conn_burst"`
	// RegisterRate and RegisterBurst limit registrations per source IP
	// (defaults 1 per minute and 5).
	RegisterRate  float64 `yaml:"register_rate"`
	RegisterBurst int     `yaml:"register_burst"`
	// LoginFailures failed authentications from one IP, refilled one per
	// LoginFailureWindow, ban the IP for LoginBan (defaults 10, 1m, 15m).
	LoginFailures      int      `yaml:"login_failures"`
	LoginFailureWindow Duration `yaml:"login_failure_window"`
	LoginBan           Duration `yaml:"login_ban"`
	// FloodBan bans a source address for LoginBan once its requests were
	// refused by a rate limit this many times within a minute; 0 (the
	// default) never bans for flooding.
	FloodBan int `yaml:"flood_ban"`
	// HandshakeRate is how many new handshakes per second the server takes
	// before it demands address validation (a QUIC Retry). Default 100.
	HandshakeRate float64 `yaml:"handshake_rate"`
	// AFKTimeout disconnects a connection whose client sent nothing (not
	// even a keep-alive ping) for this long; 0 turns it off. Default 0.
	AFKTimeout Duration `yaml:"afk_timeout"`
	// LimiterTable caps each rate limiter's table of keys (default 100000);
	// the least recently used key is forgotten first.
	LimiterTable int `yaml:"limiter_table"`
	// Registration is open, invite or closed. Default open.
	Registration string `yaml:"registration"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json. Default text.
	LogFormat string `yaml:"log_format"`

	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time `yaml:"-"`
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader `yaml:"-"`
	// Logger overrides LogLevel and LogFormat.
	Logger *slog.Logger `yaml:"-"`
	// Out is where the server prints what its operator needs once it is
	// up (the web admin's address); nil prints nothing. serve gives stdout.
	Out io.Writer `yaml:"-"`
	// AdminHandler makes the admin API's handler; nil serves no admin
	// listener. main wires in package admin (which imports this one).
	AdminHandler func(s *Server, token string, log *slog.Logger) http.Handler `yaml:"-"`
}

// Duration is a time.Duration written as "30s", "720h" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s, 12h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String and Set make a Duration a flag.Value.
func (d *Duration) String() string { return time.Duration(*d).String() }

func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 30s, 12h)", s)
	}
	*d = Duration(v)
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = ":4433"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:8080"
	}
	if c.Data == "" {
		c.Data = "./securechat-data"
	}
	if c.MailboxTTL == 0 {
		c.MailboxTTL = Duration(30 * 24 * time.Hour)
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = Duration(10 * time.Second)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = Duration(60 * time.Second)
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = 4 << 20
	}
	if c.KeyFetchRate == 0 {
		c.KeyFetchRate = 0.5
	}
	if c.KeyFetchBurst == 0 {
		c.KeyFetchBurst = 30
	}
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setI := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setF(&c.MessageRate, 20)
	setI(&c.MessageBurst, 60)
	setF(&c.ByteRate, 1<<20)
	setI(&c.ByteBurst, 8<<20)
	setF(&c.ConnRate, 10)
	setI(&c.ConnBurst, 30)
	setF(&c.RegisterRate, 1.0/60)
	setI(&c.RegisterBurst, 5)
	setI(&c.LoginFailures, 10)
	setI(&c.LimiterTable, 100000)
	setF(&c.HandshakeRate, 100)
	if c.LoginFailureWindow == 0 {
		c.LoginFailureWindow = Duration(time.Minute)
	}
	if c.LoginBan == 0 {
		c.LoginBan = Duration(15 * time.Minute)
	}
	if c.Registration == "" {
		c.Registration = RegistrationOpen
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not HOST:PORT", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.Admin); err != nil {
		return fmt.Errorf("admin: %q is not HOST:PORT", c.Admin)
	}
	if (c.AdminCert == "") != (c.AdminKey == "") {
		return errors.New("admin_cert and admin_key go together")
	}
	if c.AdminCert != "" && c.AdminSelfSigned {
		return errors.New("admin_self_signed and admin_cert are exclusive")
	}
	if host, _, _ := net.SplitHostPort(c.Admin); !loopbackHost(host) && c.AdminCert == "" && !c.AdminSelfSigned && !c.AdminInsecure {
		return fmt.Errorf("admin: %s is not on loopback and has no TLS: set admin_cert and admin_key, or admin_self_signed, or (behind your own TLS proxy) admin_insecure", c.Admin)
	}
	if c.MailboxTTL < Duration(time.Second) {
		return errors.New("mailbox_ttl must be at least 1s")
	}
	if c.AuthTimeout < 0 || c.IdleTimeout < Duration(time.Second) {
		return errors.New("auth_timeout and idle_timeout must be positive (idle_timeout at least 1s)")
	}
	if c.MaxFrame < 64<<10 || c.MaxFrame > 64<<20 {
		return errors.New("max_frame must be between 65536 and 67108864 bytes")
	}
	for _, v := range []float64{c.MessageRate, c.ByteRate, c.ConnRate, c.RegisterRate} {
		if v < 0 {
			return errors.New("rates must not be negative")
		}
	}
	if c.HandshakeRate < 0 || c.AFKTimeout < 0 || c.FloodBan < 0 {
		return errors.New("handshake_rate and afk_timeout must not be negative")
	}
	if c.MessageBurst < 0 || c.ByteBurst < 0 || c.ConnBurst < 0 || c.RegisterBurst < 0 || c.LoginFailures < 0 || c.LimiterTable < 0 {
		return errors.New("bursts and limits must not be negative")
	}
	if c.ByteBurst < transport.MaxPayload {
		return fmt.Errorf("byte_burst must be at least %d (one message)", transport.MaxPayload)
	}
	switch c.Registration {
	case RegistrationOpen, RegistrationInvite, RegistrationClosed:
	default:
		return fmt.Errorf("registration: %q is not open, invite or closed", c.Registration)
	}
	if c.KeyFetchRate < 0 || c.KeyFetchBurst < 0 {
		return errors.New("key_fetch_rate and key_fetch_burst must not be negative")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format: %q is not text or json", c.LogFormat)
	}
	return nil
}

// LoadConfig reads a YAML configuration file. Unknown keys are errors, so a
// misspelt setting is not silently ignored.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return c, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

func (c Config) logger(w io.Writer) *slog.Logger {
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
