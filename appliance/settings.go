package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/securechat/securechat/internal/usage"
	"github.com/securechat/securechat/transport"
)

// The settings table (docs/design.md §12). Every setting of the server is
// one entry of settings below: its YAML key, its flag, its help, its
// default, its bounds, and whether an operator can change it while the
// server runs. The configuration file (Config's UnmarshalYAML),
// --print-config (MarshalYAML), serve's flags (cli/serve.go), Validate,
// and the live Limits (their JSON, Validate and change events, the admin's
// limits page and the console's limit command) all walk it. Adding a
// setting is a field of Config and one entry here.
var settings = []Setting{
	text("listen", "UDP `address` for QUIC", ":4433", func(c *Config) *string { return &c.Listen }, hostPort),
	text("admin", "admin API `address`, or off for none", "127.0.0.1:8080", func(c *Config) *string { return &c.Admin }, adminAddr),
	text("admin_cert", "PEM certificate `file` for HTTPS on the admin listener", "", func(c *Config) *string { return &c.AdminCert }, nil),
	text("admin_key", "PEM private key `file` for --admin-cert", "", func(c *Config) *string { return &c.AdminKey }, nil),
	boolean("admin_self_signed", "serve the admin listener over HTTPS with a self-signed certificate kept in the data directory", func(c *Config) *bool { return &c.AdminSelfSigned }),
	boolean("admin_insecure", "allow plain HTTP on a non-loopback admin address (behind a TLS proxy)", func(c *Config) *bool { return &c.AdminInsecure }),
	text("data", "data `directory`", "./securechat-data", func(c *Config) *string { return &c.Data }, nil),
	span("admin_write_timeout", "time the admin listener allows for writing a response; a backup download gets it for each piece, so only a stalled download is cut off", 30*time.Second, time.Second, maxDuration, func(c *Config) *Duration { return &c.AdminWriteTimeout }),
	span("mailbox_ttl", "how long undelivered messages wait", 30*24*time.Hour, time.Second, maxDuration, func(c *Config) *Duration { return &c.MailboxTTL }),
	span("auth_timeout", "time allowed to authenticate", 10*time.Second, 0, maxDuration, func(c *Config) *Duration { return &c.AuthTimeout }),
	span("idle_timeout", "close connections silent for this long", 60*time.Second, time.Second, maxDuration, func(c *Config) *Duration { return &c.IdleTimeout }),
	count("mailbox_max_entries", "undelivered messages one device's mailbox may hold", 10000, 1, math.MaxInt32, func(c *Config) *int { return &c.MailboxMaxEntries }),
	size("mailbox_max_bytes", "undelivered `bytes` one device's mailbox may hold", 64<<20, 1<<20, 1<<50, func(c *Config) *int { return &c.MailboxMaxBytes }),
	size("store_max_bytes", "undelivered `bytes` all mailboxes together may hold", 4<<30, 1<<20, 1<<50, func(c *Config) *int { return &c.StoreMaxBytes }),
	size("blob_max_size", "largest encrypted file in `bytes` a client may upload", 100<<20, 1, 1<<40, func(c *Config) *int { return &c.BlobMaxSize }),
	size("blob_quota", "`bytes` one account's encrypted files may hold together until fetched or expired", 1<<30, 1, 1<<50, func(c *Config) *int { return &c.BlobQuota }),
	size("blob_store_max_bytes", "`bytes` all encrypted files together may hold", 16<<30, 1<<20, 1<<50, func(c *Config) *int { return &c.BlobStoreMaxBytes }),
	span("blob_ttl", "how long an encrypted file waits for its recipients to fetch it", 7*24*time.Hour, time.Second, maxDuration, func(c *Config) *Duration { return &c.BlobTTL }),
	count("blob_uploads_per_account", "encrypted file uploads one account may run at once", 4, 1, 1024, func(c *Config) *int { return &c.BlobUploadsPerAccount }),
	count("group_max_members", "accounts one group message may reach, its sender's included", 1000, 1, transport.MaxGroupEnvelopes, func(c *Config) *int { return &c.GroupMaxMembers }).live(),
	count("group_max_per_account", "group ids one account may be the first to use; a group silent for mailbox_ttl no longer counts", 100, 1, 1<<20, func(c *Config) *int { return &c.GroupMaxPerAccount }).live(),
	size("max_frame", "largest control frame in `bytes`", 4<<20, 64<<10, 64<<20, func(c *Config) *int { return &c.MaxFrame }),
	span("frame_timeout", "time a control frame may take from its first byte to its last", 30*time.Second, 100*time.Millisecond, maxDuration, func(c *Config) *Duration { return &c.FrameTimeout }),
	span("write_timeout", "close a connection that does not read what the server sends for this long", 30*time.Second, 100*time.Millisecond, maxDuration, func(c *Config) *Duration { return &c.WriteTimeout }),
	size("push_budget", "`bytes` a receiving connection may hold for its device: offered messages, a delivery batch, signals", 4<<20, 1<<20, 1<<30, func(c *Config) *int { return &c.PushBudget }),
	count("max_conns", "connections open at once", 20000, 1, math.MaxInt32, func(c *Config) *int { return &c.MaxConns }).live(),
	count("max_conns_per_address", "connections open at once from one address", 256, 1, math.MaxInt32, func(c *Config) *int { return &c.MaxConnsPerAddress }).live(),
	count("max_conns_per_account", "authenticated connections open at once of one account", 2*transport.MaxDevices, 1, math.MaxInt32, func(c *Config) *int { return &c.MaxConnsPerAccount }).live(),
	perSecond("publish_keys_rate", "key uploads per second per account", 0.2, 0, maxRate, func(c *Config) *float64 { return &c.PublishKeysRate }).live(),
	count("publish_keys_burst", "key uploads at once per account", 20, 0, maxBurst, func(c *Config) *int { return &c.PublishKeysBurst }).live(),
	perSecond("ack_rate", "acknowledged messages per second per account", 1000, 0, maxRate, func(c *Config) *float64 { return &c.AckRate }).live(),
	count("ack_burst", "acknowledged messages at once per account, at least one full Ack", 4*transport.MaxAcks, transport.MaxAcks, maxBurst, func(c *Config) *int { return &c.AckBurst }).live(),
	perSecond("lookup_rate", "device and identity lookups per second per account", 5, 0, maxRate, func(c *Config) *float64 { return &c.LookupRate }).live(),
	count("lookup_burst", "device and identity lookups at once per account (a group's creator looks up two per member)", 2500, 0, maxBurst, func(c *Config) *int { return &c.LookupBurst }).live(),
	perSecond("name_check_rate", "name checks per second per address (CheckName, and registrations refused for a taken name)", 5, 0, maxRate, func(c *Config) *float64 { return &c.NameCheckRate }).live(),
	count("name_check_burst", "name checks at once per address", 100, 0, maxBurst, func(c *Config) *int { return &c.NameCheckBurst }).live(),
	perSecond("key_fetch_rate", "prekey fetches per second per account", 5, 0, maxRate, func(c *Config) *float64 { return &c.KeyFetchRate }).live(),
	count("key_fetch_burst", "prekey fetches at once per account", 1000, 0, maxBurst, func(c *Config) *int { return &c.KeyFetchBurst }).live(),
	perSecond("message_rate", "messages per second per account", 20, 0, maxRate, func(c *Config) *float64 { return &c.MessageRate }).live(),
	count("message_burst", "messages at once per account", 60, 1, maxBurst, func(c *Config) *int { return &c.MessageBurst }).live(),
	// Bytes come in larger numbers than messages: the bounds let a load
	// test lift the byte limits out of the way (bench/proc.go).
	byteRate("byte_rate", "payload bytes per second per account", 1<<20, 0, 1e15, func(c *Config) *float64 { return &c.ByteRate }).live(),
	size("byte_burst", "payload bytes at once per account, at least one message", 8<<20, transport.MaxPayload, 1<<50, func(c *Config) *int { return &c.ByteBurst }).live(),
	perSecond("conn_rate", "new connections per second per IP", 10, 0, maxRate, func(c *Config) *float64 { return &c.ConnRate }).live(),
	count("conn_burst", "new connections at once per IP", 30, 1, maxBurst, func(c *Config) *int { return &c.ConnBurst }).live(),
	perSecond("register_rate", "registrations per second per IP", 1.0/60, 0, maxRate, func(c *Config) *float64 { return &c.RegisterRate }).live().shown("1/60"),
	count("register_burst", "registrations at once per IP", 5, 0, maxBurst, func(c *Config) *int { return &c.RegisterBurst }).live(),
	count("login_failures", "failed logins from one IP (IPv6: one ipv6_prefix) before it is banned", 10, 1, maxBurst, func(c *Config) *int { return &c.LoginFailures }).live(),
	span("login_failure_window", "one failed login is forgiven per this", time.Minute, time.Second, maxDuration, func(c *Config) *Duration { return &c.LoginFailureWindow }).live(),
	span("login_ban", "how long too many failed logins ban an IP", 15*time.Minute, time.Second, maxDuration, func(c *Config) *Duration { return &c.LoginBan }).live(),
	count("account_login_failures", "failed password logins to one account (from any address) before its logins must wait", 20, 1, maxBurst, func(c *Config) *int { return &c.AccountLoginFailures }).live(),
	count("flood_ban", "rate-limit refusals per minute that get a source address banned", 0, 0, maxBurst, func(c *Config) *int { return &c.FloodBan }).live().shown("0: never"),
	number("handshake_rate", "new handshakes per second before a QUIC Retry is required", 100, 0, math.MaxFloat64, func(c *Config) *float64 { return &c.HandshakeRate }),
	count("ipv6_prefix", "prefix length an IPv6 source is counted and banned by (IPv4: the address)", 64, 16, 128, func(c *Config) *int { return &c.IPv6Prefix }),
	count("hash_queue", "Register and Login requests that may wait for a password hash before more are refused", 64, 1, 1<<20, func(c *Config) *int { return &c.HashQueue }),
	span("afk_timeout", "disconnect clients silent this long", 0, 0, maxDuration, func(c *Config) *Duration { return &c.AFKTimeout }).shown("0: off"),
	count("limiter_table", "keys each rate limiter remembers", 100000, 0, math.MaxInt, func(c *Config) *int { return &c.LimiterTable }),
	text("registration", "open, invite or closed", RegistrationOpen, func(c *Config) *string { return &c.Registration }, oneOf(RegistrationOpen, RegistrationInvite, RegistrationClosed)),
	spanOrOff("backup_every", "how often the server writes a hot copy of the store into backup_dir (0 or off: never)", 24*time.Hour, time.Second, func(c *Config) *Duration { return &c.BackupEvery }),
	count("backup_keep", "automatic backups kept in backup_dir; the oldest go first", 7, 1, 100000, func(c *Config) *int { return &c.BackupKeep }),
	text("backup_dir", "`directory` of the automatic backups (empty: the data directory's backups); on another disk they outlive the store's", "", func(c *Config) *string { return &c.BackupDir }, nil),
	size("disk_free_warn", "free `bytes` on the data directory's filesystem under which the dashboard warns, and an automatic backup is not taken", 256<<20, 1<<20, 1<<50, func(c *Config) *int { return &c.DiskFreeWarn }),
	text("log_level", "debug, info, warn or error", "info", func(c *Config) *string { return &c.LogLevel }, func(s string) error { _, err := parseLevel(s); return err }),
	text("log_format", "text or json", "text", func(c *Config) *string { return &c.LogFormat }, oneOf("text", "json")),
}

// Bounds shared by several settings.
const (
	maxRate     = 1e9
	maxBurst    = 1 << 30
	maxDuration = time.Duration(math.MaxInt64)
)

// A Setting is one entry of the settings table.
type Setting struct {
	// Key is the YAML key; the limits page, the console's limit command and
	// the limits API (Limits' JSON) name a live setting by it too.
	Key string
	// Flag is serve's flag: Key with '-' for '_'.
	Flag string
	// Help is one line; a `word` in backquotes names the flag's argument.
	Help string
	// Live settings can change while the server runs: they are the Limits.
	Live bool

	show string // the default as help shows it, when not just its value
	kind string // its constructor: text, boolean, count, size, number, perSecond, byteRate, span
	v    value
}

// Kind names the setting's kind: text, boolean, count, size (bytes, 1MiB),
// number, perSecond (1/60), byteRate or span (a duration, 30d).
func (s Setting) Kind() string { return s.kind }

// value is a setting's typed field in a Config, and its rules.
type value interface {
	field(c *Config) any // the pointer to the field
	text(c *Config) string
	set(c *Config, s string) error
	setDefault(c *Config) // a zero field takes the default
	defaultText() string  // "" when the default is the zero value
	check(c *Config) error
	equal(a, b *Config) bool
	copy(dst, src *Config)
	decode(c *Config, n *yaml.Node) error
}

// Settings returns the settings table, in the order of --print-config.
func Settings() []Setting { return slices.Clone(settings) }

// LiveSettings returns the settings that can change while the server runs,
// in the table's order: the fields of Limits.
func LiveSettings() []Setting {
	var live []Setting
	for _, s := range settings {
		if s.Live {
			live = append(live, s)
		}
	}
	return live
}

func lookup(key string) (Setting, bool) {
	for _, s := range settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Field returns the pointer to the setting's field in c: a *string, *int,
// *float64, *bool or *Duration.
func (s Setting) Field(c *Config) any { return s.v.field(c) }

// Text returns the setting's value in c as text.
func (s Setting) Text(c *Config) string { return s.v.text(c) }

// Set parses text into the setting's field in c. It does not check bounds
// (Check and Validate do).
func (s Setting) Set(c *Config, text string) error {
	if err := s.v.set(c, strings.TrimSpace(text)); err != nil {
		return fmt.Errorf("%s: %w", s.Key, err)
	}
	return nil
}

// Copy copies the setting's field from src to dst.
func (s Setting) Copy(dst, src *Config) { s.v.copy(dst, src) }

// Check reports whether the setting's value in c is within its bounds.
func (s Setting) Check(c *Config) error {
	err := s.v.check(c)
	var be *boundsError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &be):
		return fmt.Errorf("%s %w", s.Key, err)
	}
	return fmt.Errorf("%s: %w", s.Key, err)
}

// Default is the default as help shows it; "" for none (an empty string,
// false).
func (s Setting) Default() string {
	if s.show != "" {
		return s.show
	}
	return s.v.defaultText()
}

// Usage is the flag's help: Help and the default.
func (s Setting) Usage() string {
	if d := s.Default(); d != "" {
		return s.Help + " (default " + d + ")"
	}
	return s.Help
}

// Summary is Help as prose, without the backquotes of the flag's argument
// name.
func (s Setting) Summary() string { return strings.ReplaceAll(s.Help, "`", "") }

func (s Setting) live() Setting {
	s.Live = true
	return s
}

func (s Setting) shown(def string) Setting {
	s.show = def
	return s
}

// kind is a value of type T: how it is parsed, formatted and bounded.
type kind[T comparable] struct {
	ptr    func(*Config) *T
	def    T
	parse  func(string) (T, error)
	format func(T) string
	bounds func(T) error // nil: any value
}

func newSetting[T comparable](kindName, key, help string, k *kind[T]) Setting {
	return Setting{Key: key, Flag: strings.ReplaceAll(key, "_", "-"), Help: help, kind: kindName, v: k}
}

func (k *kind[T]) field(c *Config) any     { return k.ptr(c) }
func (k *kind[T]) text(c *Config) string   { return k.format(*k.ptr(c)) }
func (k *kind[T]) equal(a, b *Config) bool { return *k.ptr(a) == *k.ptr(b) }
func (k *kind[T]) copy(dst, src *Config)   { *k.ptr(dst) = *k.ptr(src) }
func (k *kind[T]) decode(c *Config, n *yaml.Node) error {
	if n.Tag == "!!null" {
		return nil // "key:" with nothing after it: the default
	}
	return k.set(c, n.Value)
}

func (k *kind[T]) set(c *Config, s string) error {
	v, err := k.parse(s)
	if err != nil {
		return err
	}
	*k.ptr(c) = v
	return nil
}

func (k *kind[T]) setDefault(c *Config) {
	var zero T
	if p := k.ptr(c); *p == zero {
		*p = k.def
	}
}

func (k *kind[T]) defaultText() string {
	var zero T
	if k.def == zero {
		return ""
	}
	return k.format(k.def)
}

func (k *kind[T]) check(c *Config) error {
	if k.bounds == nil {
		return nil
	}
	return k.bounds(*k.ptr(c))
}

// text is a string setting; check (nil: anything) is its rule.
func text(key, help, def string, ptr func(*Config) *string, check func(string) error) Setting {
	id := func(s string) string { return s }
	st := newSetting("text", key, help, &kind[string]{ptr: ptr, def: def, bounds: check, format: id,
		parse: func(s string) (string, error) { return s, nil }})
	if strings.Trim(def, "abcdefghijklmnopqrstuvwxyz") != "" {
		st.show = strconv.Quote(def) // an address or a path, not a word
	}
	return st
}

func boolean(key, help string, ptr func(*Config) *bool) Setting {
	parse := func(s string) (bool, error) {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return false, fmt.Errorf("%q is not true or false", s)
		}
		return v, nil
	}
	return newSetting("boolean", key, help, &kind[bool]{ptr: ptr, parse: parse, format: strconv.FormatBool})
}

func count(key, help string, def, lo, hi int, ptr func(*Config) *int) Setting {
	parse := func(s string) (int, error) {
		v, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", s)
		}
		return v, nil
	}
	return newSetting("count", key, help, &kind[int]{ptr: ptr, def: def, parse: parse, format: strconv.Itoa,
		bounds: within(lo, hi, math.MaxInt, strconv.Itoa)})
}

// size is a count of bytes, written as a number or with a unit: 64KiB,
// 4MiB, 1GiB.
func size(key, help string, def, lo, hi int, ptr func(*Config) *int) Setting {
	parse := func(s string) (int, error) {
		v, err := ParseSize(s)
		if err != nil || v != math.Trunc(v) || v > math.MaxInt {
			return 0, fmt.Errorf("%q is not a size in bytes like 65536 or 64KiB", s)
		}
		return int(v), nil
	}
	format := func(v int) string { return FormatSize(float64(v)) }
	return newSetting("size", key, help, &kind[int]{ptr: ptr, def: def, parse: parse, format: format,
		bounds: within(lo, hi, math.MaxInt, format)})
}

func number(key, help string, def, lo, hi float64, ptr func(*Config) *float64) Setting {
	format := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	parse := func(s string) (float64, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		return v, nil
	}
	return newSetting("number", key, help, &kind[float64]{ptr: ptr, def: def, parse: parse, format: format,
		bounds: within(lo, hi, math.MaxFloat64, format)})
}

// perSecond is a number per second, written as a number (0.5) or a fraction
// (1/60: one a minute).
func perSecond(key, help string, def, lo, hi float64, ptr func(*Config) *float64) Setting {
	parse := func(s string) (float64, error) {
		v, err := ParseRate(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a rate like 20, 0.5 or 1/60", s)
		}
		return v, nil
	}
	return newSetting("perSecond", key, help, &kind[float64]{ptr: ptr, def: def, parse: parse, format: FormatRate,
		bounds: within(lo, hi, math.MaxFloat64, FormatRate)})
}

// byteRate is bytes per second, written as a number or a size (1MiB).
func byteRate(key, help string, def, lo, hi float64, ptr func(*Config) *float64) Setting {
	parse := func(s string) (float64, error) {
		v, err := ParseSize(s)
		if err != nil {
			if v, err = ParseRate(s); err != nil {
				return 0, fmt.Errorf("%q is not a number of bytes like 1048576 or 1MiB", s)
			}
		}
		return v, nil
	}
	format := func(v float64) string {
		if v == math.Trunc(v) {
			return FormatSize(v)
		}
		return FormatRate(v)
	}
	return newSetting("byteRate", key, help, &kind[float64]{ptr: ptr, def: def, parse: parse, format: format,
		bounds: within(lo, hi, math.MaxFloat64, format)})
}

func span(key, help string, def, lo, hi time.Duration, ptr func(*Config) *Duration) Setting {
	parse := func(s string) (Duration, error) {
		var d Duration
		err := d.Set(s)
		return d, err
	}
	format := func(d Duration) string { return FormatDuration(time.Duration(d)) }
	return newSetting("span", key, help, &kind[Duration]{ptr: ptr, def: Duration(def), parse: parse, format: format,
		bounds: within(Duration(lo), Duration(hi), Duration(maxDuration), format)})
}

// Off is the value of a setting made with spanOrOff that is turned off:
// the zero value of a setting means its default, so off is kept apart.
const Off = Duration(-1)

// spanOrOff is a span that 0 or off turns off (Off); otherwise at least lo.
func spanOrOff(key, help string, def, lo time.Duration, ptr func(*Config) *Duration) Setting {
	parse := func(s string) (Duration, error) {
		if s == "off" {
			return Off, nil
		}
		var d Duration
		if err := d.Set(s); err != nil {
			return 0, fmt.Errorf("%q is not a duration like 30s, 12h or 30d, or off", s)
		}
		if d == 0 {
			return Off, nil
		}
		return d, nil
	}
	format := func(d Duration) string {
		if d == Off {
			return "off"
		}
		return FormatDuration(time.Duration(d))
	}
	inner := within(Duration(lo), Duration(maxDuration), Duration(maxDuration), format)
	bounds := func(d Duration) error {
		if d == Off {
			return nil
		}
		return inner(d)
	}
	return newSetting("span", key, help, &kind[Duration]{ptr: ptr, def: Duration(def), parse: parse, format: format, bounds: bounds})
}

// sizeUnits are the units ParseSize takes and FormatSize writes, largest
// first.
var sizeUnits = []struct {
	name string
	n    float64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// ParseSize reads a number of bytes: 65536, 64KiB, 1.5MiB, 4GiB, 1TiB (a
// B alone is bytes; KB, MB, GB and TB are taken as their binary units, as
// people often mean).
func ParseSize(s string) (float64, error) {
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range sizeUnits {
		if n, ok := cutSuffixFold(num, u.name); ok {
			num, mult = n, u.n
			break
		}
		if n, ok := cutSuffixFold(num, u.name[:1]+"B"); ok {
			num, mult = n, u.n
			break
		}
	}
	if mult == 1 {
		num, _ = cutSuffixFold(num, "B")
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a size like 65536 or 64KiB", s)
	}
	return v * mult, nil
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// FormatSize writes bytes with the largest unit that divides them into a
// short number: 1MiB, 64KiB, 1024TiB, but 1000000.
func FormatSize(v float64) string {
	for _, u := range sizeUnits {
		if v >= u.n && math.Mod(v, u.n) == 0 {
			if q := v / u.n; q < 10000 {
				return strconv.FormatFloat(q, 'f', -1, 64) + u.name
			}
			break
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// sizeText is a number of bytes as the log and events show it: 64MiB
// when exact, else 1052673 bytes (FormatSize's unit already says B).
func sizeText(n uint64) string {
	if f := FormatSize(float64(n)); strings.HasSuffix(f, "iB") {
		return f
	}
	return strconv.FormatUint(n, 10) + " bytes"
}

// ParseRate reads a number per second: 20, 0.5, or a fraction, 1/60.
func ParseRate(s string) (float64, error) {
	num, den, frac := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err == nil && frac {
		var d float64
		if d, err = strconv.ParseFloat(strings.TrimSpace(den), 64); err == nil && d > 0 {
			v /= d
		} else if err == nil {
			err = errors.New("zero denominator")
		}
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a rate like 20, 0.5 or 1/60", s)
	}
	return v, nil
}

// FormatRate writes a rate as people write it: 20, 0.5, and 1/60 for a
// rate whose decimals do not end (ParseRate reads it back exactly).
func FormatRate(v float64) string {
	plain := strconv.FormatFloat(v, 'f', -1, 64)
	if len(plain) <= 8 || v <= 0 || v == math.Trunc(v) || math.IsNaN(v) || math.IsInf(v, 0) {
		return plain // a whole number: 1000000000, not 2000000000/2
	}
	for d := 2.0; d <= 86400; d++ {
		if n := math.Round(v * d); n >= 1 && n/d == v {
			return strconv.FormatFloat(n, 'f', -1, 64) + "/" + strconv.FormatFloat(d, 'f', -1, 64)
		}
	}
	return plain
}

// within bounds a number to [lo, hi]; hi at top means no upper bound.
// NaN is out of every bound. The bounds and the value are written in the
// setting's own form (1s, 64KiB, 1/60), as the file and the flag take them.
func within[T int | float64 | Duration](lo, hi, top T, format func(T) string) func(T) error {
	return func(v T) error {
		if v >= lo && v <= hi {
			return nil
		}
		if hi == top {
			return &boundsError{fmt.Sprintf("must be at least %s (got %s)", format(lo), format(v))}
		}
		return &boundsError{fmt.Sprintf("must be between %s and %s (got %s)", format(lo), format(hi), format(v))}
	}
}

// boundsError is a value out of its setting's bounds: Check writes it after
// the key as a sentence, "frame_timeout must be at least 100ms (got 0s)".
type boundsError struct{ msg string }

func (e *boundsError) Error() string { return e.msg }

// hostPort allows HOST:PORT (HOST may be empty: every address) with a
// port from 0 (any free one) to 65535.
func hostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT (like 127.0.0.1:8080 or :4433)", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return fmt.Errorf("%q: the port %q is not a number from 0 to 65535", s, port)
	}
	return nil
}

// AdminOff is the admin setting that serves no admin listener.
const AdminOff = "off"

func adminAddr(s string) error {
	if s == AdminOff {
		return nil
	}
	return hostPort(s)
}

// oneOf allows exactly the given words.
func oneOf(words ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(words, s) {
			return notOneOf(s, words...)
		}
		return nil
	}
}

// notOneOf is the error for a word that is none of words: it lists them,
// and names the one meant when s is near one ("inof": did you mean info?).
func notOneOf(s string, words ...string) error {
	list := strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
	if near := Closest(s, words, 2); near != "" {
		return fmt.Errorf("%q is not %s; did you mean %s?", s, list, near)
	}
	return fmt.Errorf("%q is not %s", s, list)
}

// Closest is the word of words nearest to s by edit distance (case and
// '-' against '_' ignored), if at most maxDist away; "" if none is.
func Closest(s string, words []string, maxDist int) string {
	best, dist := "", maxDist+1
	norm := func(w string) string { return strings.ToLower(strings.ReplaceAll(w, "-", "_")) }
	for _, w := range words {
		if d := usage.EditDistance(norm(s), norm(w)); d < dist {
			best, dist = w, d
		}
	}
	return best
}

// WithDefaults returns c with every zero setting set to its default.
func (c Config) WithDefaults() Config {
	for _, s := range settings {
		s.v.setDefault(&c)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// MarshalYAML writes every setting in the table's order, as people write
// it (1MiB, 1/60, 30d).
func (c Config) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range settings {
		var v yaml.Node
		switch s.v.field(&c).(type) {
		case *string, *bool:
			if err := v.Encode(s.v.field(&c)); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Key, err)
			}
		default: // numbers, sizes, rates, durations: their text, plain
			v = yaml.Node{Kind: yaml.ScalarNode, Value: s.Text(&c)}
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s.Key}, &v)
	}
	return m, nil
}

// UnmarshalYAML reads settings by their keys. An unknown key is an error,
// so that a misspelt setting is not silently ignored.
func (c *Config) UnmarshalYAML(n *yaml.Node) error { return errors.Join(c.decode(n)...) }

// decode reads the settings of n into c, and returns every error, each
// "line N: key: problem"; a setting in error keeps its value in c.
func (c *Config) decode(n *yaml.Node) []error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("line %d: not a list of settings (key: value lines)", n.Line)}
	}
	var errs []error
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		s, ok := lookup(k.Value)
		switch {
		case !ok:
			msg := fmt.Sprintf("line %d: %s: unknown setting", k.Line, k.Value)
			if near := closestKey(k.Value); near != "" {
				msg += "; did you mean " + near + "?"
			}
			errs = append(errs, errors.New(msg))
			continue
		case seen[s.Key]:
			errs = append(errs, fmt.Errorf("line %d: %s is set twice", k.Line, s.Key))
			continue
		}
		seen[s.Key] = true
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: %s: not a single value", v.Line, s.Key))
			continue
		}
		if err := s.v.decode(c, v); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s: %w", v.Line, s.Key, err))
		}
	}
	return errs
}

// closestKey is the known key nearest to key by edit distance, if near
// enough to be the one meant; "" if none is.
func closestKey(key string) string {
	best, dist := "", max(3, len(key)/2)+1
	for _, s := range settings {
		if d := usage.EditDistance(strings.ToLower(strings.ReplaceAll(key, "-", "_")), s.Key); d < dist {
			best, dist = s.Key, d
		}
	}
	return best
}

// YAML is c as --print-config prints it.
func (c Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

// Limits are the live settings of a Config (docs/design.md §5): the rate
// limits an operator can change while the server runs. They have Config's
// fields, but only the ones of the settings marked Live mean anything; the
// others are ignored by Validate, the JSON form and the diff. A change lasts
// until the server stops; the config file is what a restart reads.
type Limits Config

func (c Config) limits() Limits { return Limits(c) }

// Validate reports the first live setting out of its bounds. Unlike the
// config file, zero is taken literally: a rate of 0 refuses everything.
func (l Limits) Validate() error {
	for _, s := range LiveSettings() {
		if err := s.Check((*Config)(&l)); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the live setting key as text; "" for an unknown key.
func (l Limits) Get(key string) string {
	s, err := liveSetting(key)
	if err != nil {
		return ""
	}
	return s.Text((*Config)(&l))
}

// Set sets the live setting key from text, without checking its bounds.
func (l *Limits) Set(key, text string) error {
	s, err := liveSetting(key)
	if err != nil {
		return err
	}
	return s.Set((*Config)(l), text)
}

func liveSetting(key string) (Setting, error) {
	if s, ok := lookup(key); ok && s.Live {
		return s, nil
	}
	return Setting{}, fmt.Errorf("unknown setting %q", key)
}

// MarshalJSON writes the live settings by key, in the table's order.
func (l Limits) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, s := range LiveSettings() {
		v, err := json.Marshal(s.Field((*Config)(&l)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Key, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", s.Key, v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON sets the live settings present; the others keep their
// values. An unknown key is an error.
func (l *Limits) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s, err := liveSetting(k)
		if err != nil {
			return fmt.Errorf("json: unknown field %q", k)
		}
		if err := json.Unmarshal(m[k], s.Field((*Config)(l))); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// diffLimits names each changed live setting as "key old→new".
func diffLimits(a, b Limits) []string {
	var out []string
	for _, s := range LiveSettings() {
		ca, cb := (*Config)(&a), (*Config)(&b)
		if !s.v.equal(ca, cb) {
			out = append(out, fmt.Sprintf("%s %s→%s", s.Key, s.Text(ca), s.Text(cb)))
		}
	}
	return out
}
